//! Why a write to BigQuery failed: transient or permanent, with BigQuery's reason and message.

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::parquet::errors::ParquetError;

use super::model::{ErrorBody, ErrorProto, FieldType, Mode};
use crate::error::{ErrorKind, TaskError};
use crate::target::gcp::cloud::TokenError;

/// Why a write to BigQuery failed. A stop is not one of these: it is a [`TaskError::stopped`] that
/// says what was committed.
#[derive(Debug, thiserror::Error)]
pub(super) enum BigQueryError {
    #[error("key column `{column}` is not a column of the rows; they have: {}", .columns.join(", "))]
    MissingKey { column: String, columns: Vec<String> },
    #[error(
        "partition_by: column `{column}` is {field_type}; BigQuery partitions by a DATE, TIMESTAMP or DATETIME \
         column"
    )]
    PartitionType { column: String, field_type: FieldType },
    #[error("partition_by: `{column}` is not a column of the rows")]
    NoPartitionColumn { column: String },
    #[error("cluster_by: `{column}` is not a column of the rows")]
    NoClusterColumn { column: String },
    #[error("column `{column}` is a list of lists, which BigQuery cannot store; unnest it in SQL first")]
    ListOfLists { column: String },
    #[error("column `{column}` has type {data_type}, which BigQuery cannot store; CAST it in SQL first")]
    Unstorable { column: String, data_type: DataType },
    #[error(
        "column `{column}` is {theirs} in {table} but the rows have {ours}; CAST it in SQL, or write to a new table"
    )]
    TypeChanged {
        column: String,
        table: String,
        theirs: FieldType,
        ours: FieldType,
    },
    #[error("column `{column}` is {theirs} in {table} but the rows have it {ours}")]
    ModeChanged {
        column: String,
        table: String,
        theirs: Mode,
        ours: Mode,
    },
    #[error("column `{column}` is REQUIRED in {table} but the rows do not have it")]
    RequiredMissing { column: String, table: String },
    #[error("`method: streaming` appends rows; use `method: load` for `write: replace` or `write: merge`")]
    StreamingNotAppend,
    #[error("cannot convert the rows for BigQuery")]
    Convert(#[source] ArrowError),
    #[error("cannot write the rows as Parquet")]
    Parquet(#[source] ParquetError),
    #[error("cannot turn the rows into JSON")]
    Json(#[source] ArrowError),
    #[error("cannot turn the rows into JSON")]
    JsonLine(#[source] serde_json::Error),
    #[error("cannot read dataset {dataset}")]
    ReadDataset { dataset: String, source: ApiError },
    #[error("cannot create dataset {dataset}")]
    CreateDataset { dataset: String, source: ApiError },
    #[error("cannot read table {table}")]
    ReadTable { table: String, source: ApiError },
    #[error("cannot create table {table}")]
    CreateTable { table: String, source: ApiError },
    #[error("cannot create the staging table {table}")]
    CreateStaging { table: String, source: ApiError },
    #[error("cannot add fields to the records of {table}")]
    AddFields { table: String, source: ApiError },
    /// The query job that adds columns could not be started.
    #[error("{}", adding_columns(.columns, .table))]
    AddColumns {
        columns: Vec<String>,
        table: String,
        source: Box<BigQueryError>,
    },
    #[error("cannot look up job {job}")]
    LookUpJob { job: String, source: ApiError },
    #[error("cannot start query job {job}")]
    StartQuery { job: String, source: ApiError },
    #[error("cannot follow job {job}")]
    FollowJob { job: String, source: ApiError },
    /// The upload that starts a load job into `table` (`dataset.table`) failed.
    #[error("the load job into {table}")]
    StartLoad { table: String, source: ApiError },
    #[error("cannot stream rows into {table}")]
    Stream { table: String, source: ApiError },
    #[error("BigQuery answered with a running job without an id")]
    JobWithoutId,
    /// A job ended with `error`; `details` are its other errors, up to five.
    #[error("{job} failed: {}", job_errors(.error, .details))]
    JobFailed {
        job: String,
        error: Box<ErrorProto>,
        details: Vec<ErrorProto>,
    },
    #[error("100 earlier jobs of this run failed ({base} …); look at them in BigQuery")]
    EarlierJobsFailed { base: String },
    /// insertAll refused `rows` rows of a request; `reasons` says why, row by row.
    #[error(
        "BigQuery rejected {rows} row(s) of the request starting at row {first}: {}",
        rejections(.reasons)
    )]
    Rejected {
        rows: usize,
        first: usize,
        reasons: Vec<String>,
    },
}

impl BigQueryError {
    /// Transient when BigQuery was busy or out of reach, or a job failed for a retryable reason;
    /// permanent otherwise.
    pub(super) fn kind(&self) -> ErrorKind {
        match self {
            BigQueryError::ReadDataset { source, .. }
            | BigQueryError::CreateDataset { source, .. }
            | BigQueryError::ReadTable { source, .. }
            | BigQueryError::CreateTable { source, .. }
            | BigQueryError::CreateStaging { source, .. }
            | BigQueryError::AddFields { source, .. }
            | BigQueryError::LookUpJob { source, .. }
            | BigQueryError::StartQuery { source, .. }
            | BigQueryError::FollowJob { source, .. }
            | BigQueryError::StartLoad { source, .. }
            | BigQueryError::Stream { source, .. } => source.kind(),
            BigQueryError::AddColumns { source, .. } => source.kind(),
            BigQueryError::JobWithoutId => ErrorKind::Transient,
            BigQueryError::JobFailed { error, .. } => {
                if error.reason.as_deref().is_some_and(transient_reason)
                    || error.message.as_deref().is_some_and(concurrent_update)
                {
                    ErrorKind::Transient
                } else {
                    ErrorKind::Permanent
                }
            }
            BigQueryError::MissingKey { .. }
            | BigQueryError::PartitionType { .. }
            | BigQueryError::NoPartitionColumn { .. }
            | BigQueryError::NoClusterColumn { .. }
            | BigQueryError::ListOfLists { .. }
            | BigQueryError::Unstorable { .. }
            | BigQueryError::TypeChanged { .. }
            | BigQueryError::ModeChanged { .. }
            | BigQueryError::RequiredMissing { .. }
            | BigQueryError::StreamingNotAppend
            | BigQueryError::Convert(_)
            | BigQueryError::Parquet(_)
            | BigQueryError::Json(_)
            | BigQueryError::JsonLine(_)
            | BigQueryError::EarlierJobsFailed { .. }
            | BigQueryError::Rejected { .. } => ErrorKind::Permanent,
        }
    }
}

/// The one place a BigQuery error becomes a task's: its kind, its text with its causes (what
/// receipts show), and the error itself as the source.
impl From<BigQueryError> for TaskError {
    fn from(error: BigQueryError) -> Self {
        TaskError::of(error.kind(), error)
    }
}

/// What the query job that adds `columns` to `table` does, for messages.
pub(super) fn adding_columns(columns: &[String], table: &str) -> String {
    format!("adding column(s) {} to {table}", columns.join(", "))
}

/// A failed job's error, then its other errors in parentheses.
fn job_errors(error: &ErrorProto, details: &[ErrorProto]) -> String {
    let mut text = proto_text(error);
    if !details.is_empty() {
        let details: Vec<String> = details.iter().map(proto_text).collect();
        text.push_str(&format!(" ({})", details.join("; ")));
    }
    text
}

/// The first five reasons rows were rejected, and `…` when there are more.
fn rejections(reasons: &[String]) -> String {
    let mut text = reasons
        .iter()
        .take(5)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("; ");
    if reasons.len() > 5 {
        text.push_str("; …");
    }
    text
}

/// Why a BigQuery API call failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ApiError {
    /// BigQuery answered with an error status.
    #[error("BigQuery answered {code}{}: {message}", reason.as_deref().map(|r| format!(" {r}")).unwrap_or_default())]
    Status {
        code: u16,
        reason: Option<String>,
        message: String,
    },
    #[error("cannot reach BigQuery")]
    Unreachable(#[source] reqwest::Error),
    #[error("BigQuery answered with something unexpected")]
    Unexpected(#[source] serde_json::Error),
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl ApiError {
    /// The error of an answer with status `code` and body `body`.
    pub(super) fn of_answer(code: u16, body: &str) -> ApiError {
        let parsed: ErrorBody = serde_json::from_str(body).unwrap_or_default();
        let error = parsed.error;
        let reason = error
            .errors
            .into_iter()
            .find_map(|e| e.reason)
            .or(error.status)
            .filter(|r| !r.is_empty());
        let message = error.message.unwrap_or_else(|| {
            let text = body.trim();
            // An HTML or other long page says little; its start is enough.
            text.char_indices()
                .nth(300)
                .map_or(text, |(at, _)| &text[..at])
                .to_owned()
        });
        ApiError::Status { code, reason, message }
    }

    /// The HTTP status BigQuery answered with, if it answered.
    pub(super) fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Transient for 408, 429, 5xx, the retryable reasons and an unreachable service; permanent
    /// otherwise.
    pub(super) fn kind(&self) -> ErrorKind {
        let transient = match self {
            ApiError::Status { code, reason, message } => {
                crate::http::transient_status(*code)
                    || reason.as_deref().is_some_and(transient_reason)
                    || concurrent_update(message)
            }
            ApiError::Unreachable(_) | ApiError::Unexpected(_) => true,
            ApiError::Token(TokenError::Refused(_)) => true,
            ApiError::Token(TokenError::NoHeader) => false,
        };
        if transient {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        }
    }
}

/// BigQuery error reasons worth another attempt.
fn transient_reason(reason: &str) -> bool {
    matches!(
        reason,
        "backendError" | "internalError" | "rateLimitExceeded" | "jobBackendError" | "jobInternalError" | "timeout"
    )
}

/// Whether BigQuery refused a DML statement because another one changed the table at the same time
/// (shards merging into one table): the statement succeeds when tried again.
fn concurrent_update(message: &str) -> bool {
    message.contains("due to concurrent update")
}

/// BigQuery's reason, message and location of an error, as one line.
fn proto_text(error: &ErrorProto) -> String {
    let mut text = match (&error.reason, &error.message) {
        (Some(reason), Some(message)) => format!("{reason}: {message}"),
        (Some(text), None) | (None, Some(text)) => text.clone(),
        (None, None) => "no reason given".to_owned(),
    };
    if let Some(location) = error.location.as_deref().filter(|l| !l.is_empty()) {
        text.push_str(&format!(" at {location}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_task_errors() {
        let body = r#"{"error": {"code": 403, "message": "Access Denied", "status": "PERMISSION_DENIED",
            "errors": [{"reason": "accessDenied", "message": "Access Denied"}]}}"#;
        let error = TaskError::from(BigQueryError::ReadTable {
            table: "p.d.t".to_owned(),
            source: ApiError::of_answer(403, body),
        });
        assert_eq!(
            error.message,
            "cannot read table p.d.t: BigQuery answered 403 accessDenied: Access Denied"
        );
        assert!(!error.is_transient());
        let source = std::error::Error::source(&error).expect("the BigQuery error is kept as the source");
        assert_eq!(source.to_string(), "cannot read table p.d.t");
        let api = std::error::Error::source(source).expect("the API error is kept as its source");
        assert!(api.to_string().starts_with("BigQuery answered 403"));
        let busy = ApiError::of_answer(400, r#"{"error": {"errors": [{"reason": "rateLimitExceeded"}]}}"#);
        assert_eq!(busy.kind(), ErrorKind::Transient);
        let page = ApiError::of_answer(502, "<html>Bad Gateway</html>");
        assert_eq!(page.to_string(), "BigQuery answered 502: <html>Bad Gateway</html>");
        assert_eq!(page.kind(), ErrorKind::Transient);
        // Two shards merging into one table at once: the later is tried again.
        let concurrent = ApiError::of_answer(
            400,
            r#"{"error": {"errors": [{"reason": "invalidQuery"}], "message": "Could not serialize access to table p.d.t due to concurrent update"}}"#,
        );
        assert_eq!(concurrent.kind(), ErrorKind::Transient);
        let failed = BigQueryError::JobFailed {
            job: "dpf_j".to_owned(),
            error: Box::new(ErrorProto {
                reason: Some("invalidQuery".to_owned()),
                message: Some("Transaction is aborted due to concurrent update against table p.d.t".to_owned()),
                ..ErrorProto::default()
            }),
            details: Vec::new(),
        };
        assert_eq!(failed.kind(), ErrorKind::Transient);
    }

    #[test]
    fn failed_jobs_and_rejected_rows() {
        let proto = |reason: &str, message: &str| ErrorProto {
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            location: None,
        };
        let failed = BigQueryError::JobFailed {
            job: "query job j".to_owned(),
            error: Box::new(proto("backendError", "try again")),
            details: vec![proto("invalid", "bad row")],
        };
        let task = TaskError::from(failed);
        assert_eq!(
            task.message,
            "query job j failed: backendError: try again (invalid: bad row)"
        );
        assert!(task.is_transient());
        let rejected = BigQueryError::Rejected {
            rows: 7,
            first: 10,
            reasons: (10..17).map(|i| format!("row {i}: no")).collect(),
        };
        assert_eq!(
            rejected.to_string(),
            "BigQuery rejected 7 row(s) of the request starting at row 10: row 10: no; row 11: no; row 12: no; \
             row 13: no; row 14: no; …"
        );
        assert_eq!(rejected.kind(), ErrorKind::Permanent);
    }
}
