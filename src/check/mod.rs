//! Data checks: declarative conditions on a data-producing task's output, evaluated before any
//! task downstream of it starts. A failing `error` check fails the task (exit 65, nothing
//! downstream written); a failing `warn` check is recorded and alerted; `on_fail: quarantine` moves
//! the failing rows to a side table and lets the passing rows go on.

mod eval;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::spec::de::one_or_many;

pub(crate) use eval::{Subject, evaluate};

/// One check of a task's `checks:`: what it asserts, and what a failure does.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "RawCheck", into = "RawCheck")]
pub struct Check {
    pub kind: Kind,
    /// How receipts, logs, alerts and `dpf test` name the check.
    pub name: String,
    pub severity: Severity,
    pub on_fail: OnFail,
}

/// What a check asserts.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// No row has a null in these columns.
    NotNull(Vec<String>),
    /// No two rows share the values of these columns.
    Unique(Vec<String>),
    /// Every non-null value of `column` is one of `values`.
    AcceptedValues { column: String, values: Vec<Value> },
    /// Every non-null value of `column` lies in `[min, max]`.
    Range {
        column: String,
        min: Option<Value>,
        max: Option<Value>,
    },
    /// The task yields between `min` and `max` rows.
    RowCount { min: Option<u64>, max: Option<u64> },
    /// A SQL boolean every row satisfies (rows where it is null pass).
    Expect(String),
    /// The newest value of `column` is at most `max_age` older than the run's logical time.
    Freshness { column: String, max_age: String },
}

impl Kind {
    /// The key the check is written with.
    pub fn key(&self) -> &'static str {
        match self {
            Kind::NotNull(_) => "not_null",
            Kind::Unique(_) => "unique",
            Kind::AcceptedValues { .. } => "accepted_values",
            Kind::Range { .. } => "range",
            Kind::RowCount { .. } => "row_count",
            Kind::Expect(_) => "expect",
            Kind::Freshness { .. } => "freshness",
        }
    }

    /// The columns the check names.
    pub fn columns(&self) -> Vec<&str> {
        match self {
            Kind::NotNull(columns) | Kind::Unique(columns) => columns.iter().map(String::as_str).collect(),
            Kind::AcceptedValues { column, .. } | Kind::Range { column, .. } | Kind::Freshness { column, .. } => {
                vec![column.as_str()]
            }
            Kind::RowCount { .. } | Kind::Expect(_) => Vec::new(),
        }
    }

    /// Whether the check judges each row (and so can quarantine rows), not the table as a whole.
    pub fn per_row(&self) -> bool {
        !matches!(self, Kind::RowCount { .. } | Kind::Freshness { .. })
    }

    /// The name a check gets when it has no `name:`.
    fn default_name(&self) -> String {
        match self {
            Kind::RowCount { .. } => "row_count".to_owned(),
            Kind::Expect(sql) => sql.trim().to_owned(),
            _ => format!("{}({})", self.key(), self.columns().join(", ")),
        }
    }
}

/// What a failing check does to the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The task fails: nothing downstream runs, the run exits 65.
    #[default]
    Error,
    /// Logged, recorded and alerted; the run goes on.
    Warn,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warn => "warn",
        }
    }
}

/// What happens to the rows a check rejects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFail {
    /// The check fails or warns as its severity says.
    #[default]
    Report,
    /// The failing rows go to `<table>__rejected` beside each BigQuery store of the task's rows;
    /// the passing rows go on.
    Quarantine,
}

/// A check as written: one kind key beside `name`, `severity` and `on_fail`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    #[serde(
        default,
        deserialize_with = "some_one_or_many",
        skip_serializing_if = "Option::is_none"
    )]
    not_null: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "some_one_or_many",
        skip_serializing_if = "Option::is_none"
    )]
    unique: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    accepted_values: Option<AcceptedValues>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    range: Option<Range>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    row_count: Option<RowCount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    freshness: Option<Freshness>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default)]
    severity: Severity,
    #[serde(default)]
    on_fail: OnFail,
}

fn some_one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    one_or_many(deserializer).map(Some)
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct AcceptedValues {
    column: String,
    values: Vec<Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Range {
    column: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RowCount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Freshness {
    column: String,
    max_age: String,
}

/// The keys that choose a check's kind.
pub(crate) const KINDS: [&str; 7] = [
    "not_null",
    "unique",
    "accepted_values",
    "range",
    "row_count",
    "expect",
    "freshness",
];

/// Why a check as written is not one check.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("a check needs one of {}", KINDS.join(", "))]
    NoKind,
    #[error("a check has one kind, this one has {0}")]
    SeveralKinds(String),
}

impl TryFrom<RawCheck> for Check {
    type Error = CheckError;

    fn try_from(raw: RawCheck) -> Result<Self, CheckError> {
        let mut kinds = Vec::new();
        if let Some(columns) = raw.not_null {
            kinds.push(Kind::NotNull(columns));
        }
        if let Some(columns) = raw.unique {
            kinds.push(Kind::Unique(columns));
        }
        if let Some(AcceptedValues { column, values }) = raw.accepted_values {
            kinds.push(Kind::AcceptedValues { column, values });
        }
        if let Some(Range { column, min, max }) = raw.range {
            kinds.push(Kind::Range { column, min, max });
        }
        if let Some(RowCount { min, max }) = raw.row_count {
            kinds.push(Kind::RowCount { min, max });
        }
        if let Some(sql) = raw.expect {
            kinds.push(Kind::Expect(sql));
        }
        if let Some(Freshness { column, max_age }) = raw.freshness {
            kinds.push(Kind::Freshness { column, max_age });
        }
        let kind = match kinds.len() {
            0 => return Err(CheckError::NoKind),
            1 => kinds.pop().expect("one kind"),
            _ => {
                let keys: Vec<&str> = kinds.iter().map(Kind::key).collect();
                return Err(CheckError::SeveralKinds(keys.join(" and ")));
            }
        };
        Ok(Check {
            name: raw.name.unwrap_or_else(|| kind.default_name()),
            kind,
            severity: raw.severity,
            on_fail: raw.on_fail,
        })
    }
}

impl From<Check> for RawCheck {
    fn from(check: Check) -> Self {
        let mut raw = RawCheck {
            name: Some(check.name),
            severity: check.severity,
            on_fail: check.on_fail,
            ..RawCheck::default()
        };
        match check.kind {
            Kind::NotNull(columns) => raw.not_null = Some(columns),
            Kind::Unique(columns) => raw.unique = Some(columns),
            Kind::AcceptedValues { column, values } => raw.accepted_values = Some(AcceptedValues { column, values }),
            Kind::Range { column, min, max } => raw.range = Some(Range { column, min, max }),
            Kind::RowCount { min, max } => raw.row_count = Some(RowCount { min, max }),
            Kind::Expect(sql) => raw.expect = Some(sql),
            Kind::Freshness { column, max_age } => raw.freshness = Some(Freshness { column, max_age }),
        }
        raw
    }
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Failed,
}

/// One check's outcome, as receipts, logs and alerts show it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CheckResult {
    pub name: String,
    /// Its kind: `not_null`, `unique`, `accepted_values`, `range`, `row_count`, `expect`, `freshness`.
    pub check: &'static str,
    pub severity: Severity,
    pub status: Status,
    /// Rows that fail it (per-row checks), of `rows` checked.
    pub failing_rows: u64,
    pub rows: u64,
    /// Moved to the quarantine table instead of failing or warning.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub quarantined: bool,
    /// What was found, in words: the row count, the newest value, the failing rows.
    pub message: String,
    /// Up to 5 failing rows, with the values the check is about.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Map<String, Value>>,
}

impl CheckResult {
    /// Whether this failure fails the task.
    pub(crate) fn fails_task(&self) -> bool {
        self.status == Status::Failed && self.severity == Severity::Error && !self.quarantined
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "check `{}` ", self.name)?;
        match (self.status, self.quarantined) {
            (Status::Passed, _) => write!(f, "passed"),
            (Status::Failed, true) => write!(f, "quarantined {}", self.message),
            (Status::Failed, false) => write!(f, "failed ({}): {}", self.severity.as_str(), self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<Check, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn one_kind_per_check_with_default_names() {
        let not_null = check(r#"{"not_null": ["a", "b"]}"#).unwrap();
        assert_eq!(not_null.kind, Kind::NotNull(vec!["a".into(), "b".into()]));
        assert_eq!(not_null.name, "not_null(a, b)");
        assert_eq!(check(r#"{"unique": "id"}"#).unwrap().name, "unique(id)");
        let expect = check(r#"{"expect": "x >= 0", "name": "x is never negative", "severity": "warn"}"#).unwrap();
        assert_eq!(expect.name, "x is never negative");
        assert_eq!(expect.severity, Severity::Warn);
        assert_eq!(check(r#"{"row_count": {"min": 1}}"#).unwrap().name, "row_count");
        assert!(
            check(r#"{"name": "nothing"}"#)
                .unwrap_err()
                .contains("a check needs one of")
        );
        let two = check(r#"{"not_null": "a", "unique": "a"}"#).unwrap_err();
        assert!(two.contains("not_null and unique"), "{two}");
        assert!(check(r#"{"not_nul": "a"}"#).is_err());
    }

    #[test]
    fn checks_serialize_as_written() {
        let range = check(r#"{"range": {"column": "t", "min": -60, "max": 60}, "on_fail": "quarantine"}"#).unwrap();
        let value = serde_json::to_value(&range).unwrap();
        assert_eq!(value["range"]["min"], -60);
        assert_eq!(value["on_fail"], "quarantine");
        let back: Check = serde_json::from_value(value).unwrap();
        assert_eq!(back.kind, range.kind);
    }
}
