//! BigQuery's REST resources, as far as dpf reads and writes them. A table's fields keep every
//! attribute dpf has no use for (descriptions, policy tags, default values, …), so a schema patch
//! sends them back as they were.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// A column's type. BigQuery answers with either spelling (`INTEGER` or `INT64`, `RECORD` or
/// `STRUCT`, …); dpf reads both and writes the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FieldType {
    String,
    Bytes,
    Integer,
    Float,
    Numeric,
    Bignumeric,
    Boolean,
    Timestamp,
    Date,
    Time,
    Datetime,
    Record,
    Geography,
    Json,
    Interval,
    /// A type dpf does not write (`RANGE`, say), kept as BigQuery named it.
    Other(String),
}

impl FieldType {
    pub(super) fn as_str(&self) -> &str {
        match self {
            FieldType::String => "STRING",
            FieldType::Bytes => "BYTES",
            FieldType::Integer => "INTEGER",
            FieldType::Float => "FLOAT",
            FieldType::Numeric => "NUMERIC",
            FieldType::Bignumeric => "BIGNUMERIC",
            FieldType::Boolean => "BOOLEAN",
            FieldType::Timestamp => "TIMESTAMP",
            FieldType::Date => "DATE",
            FieldType::Time => "TIME",
            FieldType::Datetime => "DATETIME",
            FieldType::Record => "RECORD",
            FieldType::Geography => "GEOGRAPHY",
            FieldType::Json => "JSON",
            FieldType::Interval => "INTERVAL",
            FieldType::Other(name) => name,
        }
    }

    fn parse(name: &str) -> FieldType {
        match name {
            "STRING" => FieldType::String,
            "BYTES" => FieldType::Bytes,
            "INTEGER" | "INT64" => FieldType::Integer,
            "FLOAT" | "FLOAT64" => FieldType::Float,
            "NUMERIC" | "DECIMAL" => FieldType::Numeric,
            "BIGNUMERIC" | "BIGDECIMAL" => FieldType::Bignumeric,
            "BOOLEAN" | "BOOL" => FieldType::Boolean,
            "TIMESTAMP" => FieldType::Timestamp,
            "DATE" => FieldType::Date,
            "TIME" => FieldType::Time,
            "DATETIME" => FieldType::Datetime,
            "RECORD" | "STRUCT" => FieldType::Record,
            "GEOGRAPHY" => FieldType::Geography,
            "JSON" => FieldType::Json,
            "INTERVAL" => FieldType::Interval,
            other => FieldType::Other(other.to_owned()),
        }
    }

    /// The type's name in BigQuery's DDL, which spells some of them differently.
    pub(super) fn ddl_name(&self) -> &str {
        match self {
            FieldType::Integer => "INT64",
            FieldType::Float => "FLOAT64",
            FieldType::Boolean => "BOOL",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FieldType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FieldType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(FieldType::parse(&name.to_ascii_uppercase()))
    }
}

/// A column's mode; BigQuery leaves it out for `NULLABLE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum Mode {
    #[default]
    Nullable,
    Required,
    Repeated,
}

impl Mode {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Mode::Nullable => "NULLABLE",
            Mode::Required => "REQUIRED",
            Mode::Repeated => "REPEATED",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One column of a table's schema (`TableFieldSchema`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct TableFieldSchema {
    pub(super) name: String,
    #[serde(rename = "type")]
    pub(super) field_type: FieldType,
    #[serde(default)]
    pub(super) mode: Mode,
    /// The fields of a `RECORD`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) fields: Vec<TableFieldSchema>,
    /// Everything else BigQuery says of the column.
    #[serde(flatten)]
    pub(super) other: Map<String, Value>,
}

impl TableFieldSchema {
    pub(super) fn new(name: &str, field_type: FieldType) -> TableFieldSchema {
        TableFieldSchema {
            name: name.to_owned(),
            field_type,
            mode: Mode::Nullable,
            fields: Vec::new(),
            other: Map::new(),
        }
    }
}

/// The part of a table resource dpf reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Table {
    #[serde(default)]
    pub(super) schema: Schema,
    /// Its rows, as a decimal string.
    pub(super) num_rows: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Schema {
    #[serde(default)]
    pub(super) fields: Vec<TableFieldSchema>,
}

/// The part of a job resource dpf reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Job {
    pub(super) job_reference: Option<JobReference>,
    pub(super) status: Option<JobStatus>,
    pub(super) statistics: Option<JobStatistics>,
}

/// What a job measured; a dry run's estimate of the bytes its query reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JobStatistics {
    pub(super) total_bytes_processed: Option<String>,
    pub(super) query: Option<QueryStatistics>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct QueryStatistics {
    pub(super) total_bytes_processed: Option<String>,
}

impl Job {
    /// Whether BigQuery is done with the job (a job without a state is taken as done).
    pub(super) fn done(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.state)
            .is_none_or(|s| s == JobState::Done)
    }

    /// The error the job ended with, if it failed.
    pub(super) fn error(&self) -> Option<&ErrorProto> {
        self.status.as_ref().and_then(|s| s.error_result.as_ref())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JobReference {
    pub(super) job_id: Option<String>,
    pub(super) location: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JobStatus {
    pub(super) state: Option<JobState>,
    pub(super) error_result: Option<ErrorProto>,
    #[serde(default)]
    pub(super) errors: Vec<ErrorProto>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum JobState {
    Pending,
    Running,
    Done,
}

/// An error of a job or of a streamed row (`ErrorProto`).
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
pub(super) struct ErrorProto {
    pub(super) reason: Option<String>,
    pub(super) message: Option<String>,
    pub(super) location: Option<String>,
}

/// The answer to `tabledata.insertAll`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InsertAllResponse {
    #[serde(default)]
    pub(super) insert_errors: Vec<InsertErrors>,
}

/// The errors of one row of an insertAll request.
#[derive(Debug, Default, Deserialize)]
pub(super) struct InsertErrors {
    #[serde(default)]
    pub(super) index: usize,
    #[serde(default)]
    pub(super) errors: Vec<ErrorProto>,
}

/// The body of an error answer: `{"error": {"code", "message", "status", "errors": [...]}}`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ErrorBody {
    #[serde(default)]
    pub(super) error: ErrorStatus,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ErrorStatus {
    pub(super) message: Option<String>,
    pub(super) status: Option<String>,
    #[serde(default)]
    pub(super) errors: Vec<ErrorProto>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_what_dpf_does_not_read() {
        let json = serde_json::json!({
            "name": "tags",
            "type": "STRUCT",
            "mode": "REPEATED",
            "description": "labels",
            "fields": [{"name": "k", "type": "INT64", "policyTags": {"names": ["p"]}}],
        });
        let field: TableFieldSchema = serde_json::from_value(json).unwrap();
        assert_eq!(field.field_type, FieldType::Record);
        assert_eq!(field.mode, Mode::Repeated);
        assert_eq!(field.fields[0].field_type, FieldType::Integer);
        assert_eq!(field.fields[0].mode, Mode::Nullable);
        assert_eq!(
            serde_json::to_value(&field).unwrap(),
            serde_json::json!({
                "name": "tags",
                "type": "RECORD",
                "mode": "REPEATED",
                "fields": [{"name": "k", "type": "INTEGER", "mode": "NULLABLE", "policyTags": {"names": ["p"]}}],
                "description": "labels",
            })
        );
        let range: TableFieldSchema =
            serde_json::from_value(serde_json::json!({"name": "r", "type": "RANGE"})).unwrap();
        assert_eq!(range.field_type.as_str(), "RANGE");
    }

    #[test]
    fn jobs_without_a_state_are_done() {
        let running: Job = serde_json::from_value(serde_json::json!({"status": {"state": "RUNNING"}})).unwrap();
        assert!(!running.done());
        assert!(Job::default().done());
        let failed: Job = serde_json::from_value(
            serde_json::json!({"status": {"state": "DONE", "errorResult": {"reason": "invalid", "message": "m"}}}),
        )
        .unwrap();
        assert!(failed.done());
        assert_eq!(failed.error().and_then(|e| e.reason.as_deref()), Some("invalid"));
    }
}
