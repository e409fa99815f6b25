//! A product's `tests:`: runs against recorded fixtures and what they must yield — rows per task,
//! alerts fired or not, values in chosen rows.

use std::collections::BTreeMap;

use datafusion::arrow::json::ArrayWriter;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::check::Status;
use crate::receipt::{Outcome, RunStatus, Trigger};
use crate::spec::Role;

/// One test of a product: a replayed run and its expectations.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    /// An earlier test case whose data dir this one runs in: its tables and saved cursors
    /// [default: a fresh data dir].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Fixtures folder, relative to the product file [default: fixtures/<product>].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixtures: Option<String>,
    /// The run's logical time (RFC 3339): its tick, data interval and templates [default: now].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// How the run ends [default: succeeded].
    #[serde(default)]
    pub status: ExpectedStatus,
    /// Rows yielded, written or matched, per task.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rows: BTreeMap<String, u64>,
    /// Per alert task: whether it sends an alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub alerts: BTreeMap<String, bool>,
    /// Per data-producing task: whether all its checks pass (`passed`) or some fail (`failed`);
    /// or per check of the task, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, ExpectedChecks>,
    /// Values in the one row of a task's output that a condition selects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<ValueCheck>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedStatus {
    #[default]
    Succeeded,
    /// Any failure.
    Failed,
    /// An `error` check failed (exit 65).
    CheckFailed,
}

/// What a test expects of a task's checks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ExpectedChecks {
    /// All of them (`passed`), or at least one (`failed`).
    All(Status),
    /// Each named check.
    Each(BTreeMap<String, Status>),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ValueCheck {
    pub task: String,
    /// A SQL condition that selects exactly one row of the task's output.
    #[serde(rename = "where")]
    pub condition: String,
    pub equals: Map<String, Value>,
}

/// What did not hold, one line each; empty when the test passes.
pub(crate) async fn check(outcome: &Outcome, expect: &Expect) -> Vec<String> {
    let receipt = &outcome.receipt;
    let mut failures = Vec::new();
    let succeeded = receipt.status == RunStatus::Succeeded;
    match (expect.status, succeeded) {
        (ExpectedStatus::Succeeded, false) => {
            failures.push(format!("the run did not succeed (exit {})", receipt.exit_code));
            for task in receipt.tasks.iter().filter(|t| t.error.is_some()) {
                failures.push(format!(
                    "  `{}`: {}",
                    task.id,
                    task.error.as_deref().unwrap_or_default()
                ));
            }
        }
        (ExpectedStatus::Failed | ExpectedStatus::CheckFailed, true) => {
            failures.push("the run succeeded, but the test expects it to fail".into())
        }
        (ExpectedStatus::CheckFailed, false) if receipt.status != RunStatus::CheckFailed => failures.push(format!(
            "the run did not fail a data check: it ended {:?} (exit {})",
            receipt.status, receipt.exit_code
        )),
        _ => {}
    }
    for (task, expected) in &expect.rows {
        match receipt.tasks.iter().find(|t| &t.id == task) {
            None => failures.push(format!("rows of `{task}`: no such task")),
            // A store that did not run wrote nothing.
            Some(found) if *expected == 0 && found.rows.is_none() && found.function.role() == Role::Store => {}
            Some(found) if found.rows != Some(*expected) => failures.push(format!(
                "rows of `{task}`: expected {expected}, got {}",
                found
                    .rows
                    .map_or("none (the task did not run)".to_owned(), |r| r.to_string())
            )),
            Some(_) => {}
        }
    }
    for (task, expected) in &expect.alerts {
        let fired = receipt
            .alerts
            .iter()
            .any(|a| &a.task == task && a.trigger != Trigger::Failure);
        if fired != *expected {
            failures.push(format!(
                "alert `{task}`: expected it {}, but it {}",
                if *expected { "to fire" } else { "not to fire" },
                if fired { "fired" } else { "did not fire" }
            ));
        }
    }
    for (task, expected) in &expect.checks {
        failures.extend(check_checks(outcome, task, expected));
    }
    for value in &expect.values {
        if let Err(failure) = check_values(outcome, value).await {
            failures.push(format!(
                "values of `{}` where {}: {failure}",
                value.task, value.condition
            ));
        }
    }
    failures
}

/// What does not hold of the checks of `task`.
fn check_checks(outcome: &Outcome, task: &str, expected: &ExpectedChecks) -> Vec<String> {
    let Some(found) = outcome.receipt.tasks.iter().find(|t| t.id == task) else {
        return vec![format!("checks of `{task}`: no such task")];
    };
    if found.checks.is_empty() {
        return vec![format!(
            "checks of `{task}`: none ran (the task has no checks, or its output was not checked)"
        )];
    }
    let failed: Vec<&str> = found
        .checks
        .iter()
        .filter(|c| c.status == Status::Failed)
        .map(|c| c.name.as_str())
        .collect();
    match expected {
        ExpectedChecks::All(Status::Passed) if !failed.is_empty() => {
            vec![format!(
                "checks of `{task}`: expected all to pass, but {} failed",
                failed.join(", ")
            )]
        }
        ExpectedChecks::All(Status::Failed) if failed.is_empty() => {
            vec![format!("checks of `{task}`: expected one to fail, but all passed")]
        }
        ExpectedChecks::All(_) => Vec::new(),
        ExpectedChecks::Each(each) => each
            .iter()
            .filter_map(|(name, status)| match found.checks.iter().find(|c| &c.name == name) {
                None => Some(format!("check `{name}` of `{task}`: no such check")),
                Some(check) if check.status != *status => Some(format!(
                    "check `{name}` of `{task}`: expected {status:?}, got {:?}: {}",
                    check.status, check.message
                )),
                Some(_) => None,
            })
            .collect(),
    }
}

/// Why a `values` expectation does not hold.
#[derive(Debug, thiserror::Error)]
enum Mismatch {
    #[error("the task yielded no rows (it did not run, or it is not an extract or transform)")]
    NoRows,
    /// The condition's SQL error, as [`crate::transform::sql::explain`] words it.
    #[error("{0}")]
    Condition(String),
    #[error("the condition selects {0} rows, not exactly one")]
    NotOneRow(usize),
    #[error(transparent)]
    Query(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Rows(#[from] datafusion::arrow::error::ArrowError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("{}", .0.join("; "))]
    Values(Vec<String>),
}

async fn check_values(outcome: &Outcome, check: &ValueCheck) -> Result<(), Mismatch> {
    let table = outcome.tables.get(&check.task).ok_or(Mismatch::NoRows)?;
    let session = crate::transform::sql::session();
    crate::transform::sql::register(&session, &check.task, table)?;
    let sql = format!("SELECT * FROM \"{}\" WHERE {}", check.task, check.condition);
    let found = crate::transform::sql::run(&session, &sql)
        .await
        .map_err(|error| Mismatch::Condition(crate::transform::sql::explain(&error, &sql).0))?;
    if found.rows() != 1 {
        return Err(Mismatch::NotOneRow(found.rows()));
    }
    let mut writer = ArrayWriter::new(Vec::new());
    let batches: Vec<_> = found.batches.iter().filter(|b| b.num_rows() > 0).collect();
    writer.write_batches(&batches)?;
    writer.finish()?;
    let rows: Vec<Map<String, Value>> = serde_json::from_slice(&writer.into_inner())?;
    let row = rows.into_iter().next().unwrap_or_default();
    let mut differences = Vec::new();
    for (column, expected) in &check.equals {
        match row.get(column) {
            None if table.schema.field_with_name(column).is_err() => {
                differences.push(format!("no column `{column}`"));
            }
            actual => {
                let actual = actual.cloned().unwrap_or(Value::Null);
                if !same(expected, &actual) {
                    differences.push(format!("`{column}` is {actual}, expected {expected}"));
                }
            }
        }
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(Mismatch::Values(differences))
    }
}

/// Equal as JSON, numbers within a relative 1e-9, and text compared with what a number prints as.
fn same(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap_or(f64::NAN), b.as_f64().unwrap_or(f64::NAN));
            a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
        }
        (Value::String(a), Value::String(b)) => a == b || a.replace(' ', "T") == b.replace(' ', "T"),
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::same;
    use serde_json::json;

    #[test]
    fn values_compare_loosely_where_it_helps() {
        assert!(same(&json!(31.2), &json!(31.200000000000003)));
        assert!(!same(&json!(31.2), &json!(31.3)));
        assert!(same(&json!("2025-01-01 12:00:00"), &json!("2025-01-01T12:00:00")));
        assert!(!same(&json!("1"), &json!(1)));
    }
}
