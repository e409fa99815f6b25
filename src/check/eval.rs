//! Evaluating a task's checks over its output: one aggregate query answers every check of the
//! task; only failing checks read their sample rows, and only quarantine checks split the rows.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::arrow::json::ArrayWriter;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use serde_json::{Map, Value};

use super::{Check, CheckResult, Kind, OnFail, Status};
use crate::error::TaskError;
use crate::table::Table;
use crate::transform::sql::{self, Locator};

/// Failing rows shown per check.
const SAMPLES: usize = 5;
/// The row's position in the task's output, the quarantine table's key with the run id.
const ROW: &str = "_dpf_row";
/// The prefix of the columns checks add (the row, the check and run of a quarantined row, and
/// each `unique` check's count), which the checked output may not use.
const RESERVED: &str = "_dpf_";

/// A task's output after its checks.
pub(crate) struct Checked {
    pub(crate) results: Vec<CheckResult>,
    /// The rows that go on: all of them, or those no quarantine check rejected.
    pub(crate) table: Table,
    /// The rows quarantine checks rejected, with `_dpf_check`, `_dpf_run_id` and `_dpf_row`.
    pub(crate) rejected: Option<Table>,
}

/// What a check is evaluated against.
pub(crate) struct Subject<'a> {
    /// The task whose output is checked.
    pub(crate) task: &'a str,
    pub(crate) run_id: &'a str,
    /// The run's logical time, which `freshness` measures against.
    pub(crate) logical_time: DateTime<Utc>,
    pub(crate) session: &'a SessionContext,
    /// Places errors in `expect` SQL, and checks that cannot be evaluated, in the product file.
    pub(crate) locator: Locator<'a>,
}

/// Evaluates `checks` over `table`, the output of `subject.task`.
pub(crate) async fn evaluate(subject: &Subject<'_>, checks: &[Check], table: Table) -> Result<Checked, TaskError> {
    if let Some(clash) = table.column_names().into_iter().find(|c| c.starts_with(RESERVED)) {
        return Err(TaskError::permanent(format!(
            "`{}` yields a column `{clash}`; names starting with `{RESERVED}` are kept for the checks' own columns",
            subject.task
        )));
    }
    for check in checks {
        for column in check.kind.columns() {
            if table.schema.field_with_name(column).is_err() {
                return Err(unknown_column(subject.task, check, column, &table));
            }
        }
    }
    let name = format!("__dpf_checked_{}", subject.task);
    let quarantining = checks.iter().any(|c| c.on_fail == OnFail::Quarantine);
    // Quarantine reads the rows' positions: rows on disk are read back for it.
    let registered = if quarantining {
        numbered(&*table.in_memory().map_err(TaskError::caused)?)?
    } else {
        table.clone()
    };
    sql::register(subject.session, &name, &registered).map_err(TaskError::from)?;
    let result = run(subject, checks, &name, &table).await;
    let _ = subject.session.deregister_table(&name);
    result
}

async fn run(subject: &Subject<'_>, checks: &[Check], name: &str, table: &Table) -> Result<Checked, TaskError> {
    let windows: String = checks
        .iter()
        .enumerate()
        .filter_map(|(i, check)| match &check.kind {
            Kind::Unique(columns) => Some(format!(
                ", count(*) OVER (PARTITION BY {}) AS \"_dpf_u{i}\"",
                quoted(columns)
            )),
            _ => None,
        })
        .collect();
    // The rows with each `unique` check's count of their key: what samples and quarantine read.
    let from = format!("(SELECT *{windows} FROM \"{name}\") AS checked");
    // The one query: every check measured in one scan, except that each `unique` check counts its
    // repeated keys by grouping them, far cheaper than a window over every row.
    let mut scanned = vec!["CAST(count(*) AS BIGINT) AS m0".to_owned()];
    let mut grouped = String::new();
    for (i, check) in checks.iter().enumerate() {
        let m = i + 1;
        match &check.kind {
            Kind::Unique(columns) => grouped.push_str(&format!(
                " CROSS JOIN (SELECT CAST(COALESCE(sum(n), 0) AS BIGINT) AS m{m} FROM (SELECT count(*) AS n \
                 FROM \"{name}\" WHERE {} GROUP BY {} HAVING count(*) > 1) AS keys{m}) AS repeated{m}",
                not_null(columns),
                quoted(columns)
            )),
            kind => scanned.push(format!("CAST({} AS BIGINT) AS m{m}", measure(i, kind))),
        }
    }
    let query = format!(
        "SELECT {} FROM (SELECT {} FROM \"{name}\") AS scanned{grouped}",
        (0..=checks.len())
            .map(|m| format!("m{m}"))
            .collect::<Vec<_>>()
            .join(", "),
        scanned.join(", ")
    );
    let counts = match sql::run(subject.session, &query).await {
        Ok(counts) => counts,
        Err(error) => return Err(located_error(subject, checks, &from, error).await),
    };
    let value = |i: usize| -> Option<i64> {
        let batch = counts.batches.iter().find(|b| b.num_rows() > 0)?;
        let column = batch.column(i).as_primitive::<Int64Type>();
        (!column.is_null(0)).then(|| column.value(0))
    };
    let rows = value(0).unwrap_or(0).max(0) as u64;
    let mut results = Vec::with_capacity(checks.len());
    for (i, check) in checks.iter().enumerate() {
        let measured = value(i + 1);
        let (failed, failing_rows, message) = judge(check, measured, rows, subject.logical_time);
        let samples = if failed && check.kind.per_row() {
            samples(subject, i, check, &from, table).await?
        } else {
            Vec::new()
        };
        results.push(CheckResult {
            name: check.name.clone(),
            check: check.kind.key(),
            severity: check.severity,
            status: if failed { Status::Failed } else { Status::Passed },
            failing_rows,
            rows,
            quarantined: failed && check.on_fail == OnFail::Quarantine,
            message,
            samples,
        });
    }
    let quarantine: Vec<(usize, &Check)> = checks
        .iter()
        .enumerate()
        .filter(|(i, c)| c.on_fail == OnFail::Quarantine && results[*i].status == Status::Failed)
        .collect();
    if quarantine.is_empty() {
        return Ok(Checked {
            results,
            table: table.clone(),
            rejected: None,
        });
    }
    let predicates: Vec<(String, &Check)> = quarantine
        .iter()
        .filter_map(|(i, c)| failing(*i, &c.kind).map(|p| (p, *c)))
        .collect();
    let any = predicates
        .iter()
        .map(|(p, _)| p.as_str())
        .collect::<Vec<_>>()
        .join(" OR ");
    let columns = quoted(&table.column_names());
    let passing = sql::run(
        subject.session,
        &format!("SELECT {columns} FROM {from} WHERE NOT ({any}) ORDER BY \"{ROW}\""),
    )
    .await
    .map_err(TaskError::from)?;
    let which = predicates
        .iter()
        .map(|(p, c)| format!("WHEN {p} THEN {}", literal(&Value::from(c.name.as_str()))))
        .collect::<Vec<_>>()
        .join(" ");
    let rejected = sql::run(
        subject.session,
        &format!(
            "SELECT {columns}, CASE {which} END AS _dpf_check, {} AS _dpf_run_id, \"{ROW}\" FROM {from} \
             WHERE {any} ORDER BY \"{ROW}\"",
            literal(&Value::from(subject.run_id))
        ),
    )
    .await
    .map_err(TaskError::from)?;
    Ok(Checked {
        results,
        table: Table::new(table.schema.clone(), passing.batches),
        rejected: Some(rejected),
    })
}

/// Whether the check failed, how many rows fail it, and what was found, in words.
fn judge(check: &Check, measured: Option<i64>, rows: u64, logical: DateTime<Utc>) -> (bool, u64, String) {
    let plural = |n: u64| if n == 1 { "row" } else { "rows" };
    match &check.kind {
        Kind::RowCount { min, max } => {
            let low = min.is_some_and(|min| rows < min);
            let high = max.is_some_and(|max| rows > max);
            let bounds = match (min, max) {
                (Some(min), Some(max)) => format!("between {min} and {max}"),
                (Some(min), None) => format!("at least {min}"),
                (None, Some(max)) => format!("at most {max}"),
                (None, None) => "any number".to_owned(),
            };
            (
                low || high,
                0,
                format!("{rows} {} where {bounds} are expected", plural(rows)),
            )
        }
        Kind::Freshness { column, max_age } => {
            let limit = crate::spec::duration::parse(max_age).unwrap_or_default();
            match measured.and_then(|seconds| DateTime::from_timestamp(seconds, 0)) {
                None => (true, 0, format!("`{column}` has no values")),
                Some(newest) => {
                    let age = logical.signed_duration_since(newest);
                    let stale = age.num_seconds() > limit.as_secs() as i64;
                    let message = format!(
                        "the newest `{column}` is {}, {} the run's logical time {} (at most {max_age} allowed)",
                        newest.to_rfc3339(),
                        human_age(age),
                        logical.to_rfc3339()
                    );
                    (stale, 0, message)
                }
            }
        }
        _ => {
            let failing = measured.unwrap_or(0).max(0) as u64;
            let what = match &check.kind {
                Kind::NotNull(columns) => format!("a null in {}", columns.join(" or ")),
                Kind::Unique(columns) => format!("the {} of another row", columns.join(", ")),
                Kind::AcceptedValues { column, .. } => format!("a `{column}` outside the accepted values"),
                Kind::Range { column, .. } => format!("a `{column}` out of range"),
                _ => "a value for which the expectation is false".to_owned(),
            };
            (
                failing > 0,
                failing,
                format!(
                    "{failing} of {rows} {} {} {what}",
                    plural(rows),
                    if failing == 1 { "has" } else { "have" }
                ),
            )
        }
    }
}

/// An age in words: "3h 20m before" or "5m after".
fn human_age(age: chrono::TimeDelta) -> String {
    let seconds = age.num_seconds().unsigned_abs();
    let text = match seconds {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    };
    format!("{text} {}", if age.num_seconds() >= 0 { "before" } else { "after" })
}

/// What the aggregate query measures for check `i`: its failing rows, or the newest instant.
fn measure(i: usize, kind: &Kind) -> String {
    match kind {
        // The newest instant, not the largest text: values may carry different offsets.
        Kind::Freshness { column, .. } => format!("max(to_unixtime({}))", ident(column)),
        _ => match failing(i, kind) {
            Some(predicate) => format!("sum(CASE WHEN {predicate} THEN 1 ELSE 0 END)"),
            None => "0".to_owned(),
        },
    }
}

/// The SQL that holds for the rows check `i` rejects; none for checks of the whole table.
fn failing(i: usize, kind: &Kind) -> Option<String> {
    Some(match kind {
        Kind::NotNull(columns) => columns
            .iter()
            .map(|c| format!("{} IS NULL", ident(c)))
            .collect::<Vec<_>>()
            .join(" OR "),
        // Like a SQL UNIQUE constraint, a row with a null in the columns passes.
        Kind::Unique(columns) => format!("(\"_dpf_u{i}\" > 1 AND {})", not_null(columns)),
        Kind::AcceptedValues { column, values } => format!(
            "COALESCE({} NOT IN ({}), false)",
            ident(column),
            values.iter().map(literal).collect::<Vec<_>>().join(", ")
        ),
        Kind::Range { column, min, max } => {
            let mut parts = Vec::new();
            if let Some(min) = min {
                parts.push(format!("{} < {}", ident(column), literal(min)));
            }
            if let Some(max) = max {
                parts.push(format!("{} > {}", ident(column), literal(max)));
            }
            if parts.is_empty() {
                return Some("false".to_owned());
            }
            format!("COALESCE({}, false)", parts.join(" OR "))
        }
        // The line break ends a `--` comment at the end of the condition.
        Kind::Expect(sql) => format!("COALESCE(NOT ({sql}\n), false)"),
        Kind::RowCount { .. } | Kind::Freshness { .. } => return None,
    })
}

/// Up to [`SAMPLES`] rows that fail check `i`, with the columns it is about.
async fn samples(
    subject: &Subject<'_>,
    i: usize,
    check: &Check,
    from: &str,
    table: &Table,
) -> Result<Vec<Map<String, Value>>, TaskError> {
    let Some(predicate) = failing(i, &check.kind) else {
        return Ok(Vec::new());
    };
    let named = check.kind.columns();
    let columns = if named.is_empty() { table.column_names() } else { named };
    let query = format!(
        "SELECT {} FROM {from} WHERE {predicate} LIMIT {SAMPLES}",
        quoted(&columns)
    );
    let found = sql::run(subject.session, &query).await.map_err(TaskError::from)?;
    let batches: Vec<&RecordBatch> = found.batches.iter().filter(|b| b.num_rows() > 0).collect();
    if batches.is_empty() {
        return Ok(Vec::new());
    }
    let mut writer = ArrayWriter::new(Vec::new());
    writer.write_batches(&batches).map_err(arrow)?;
    writer.finish().map_err(arrow)?;
    let mut rows: Vec<Map<String, Value>> =
        serde_json::from_slice(&writer.into_inner()).map_err(|e| TaskError::permanent(e.to_string()))?;
    // Arrow's JSON leaves nulls out; a sample shows them.
    for row in &mut rows {
        for column in &columns {
            row.entry(column.to_string()).or_insert(Value::Null);
        }
    }
    Ok(rows)
}

/// `table` with its rows' positions as a last column, [`ROW`].
fn numbered(table: &Table) -> Result<Table, TaskError> {
    let mut fields: Vec<Arc<Field>> = table.schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(ROW, DataType::Int64, false)));
    let schema = Arc::new(Schema::new(fields));
    let mut offset = 0i64;
    let mut batches = Vec::with_capacity(table.batches.len());
    for batch in &table.batches {
        let n = batch.num_rows() as i64;
        let mut columns: Vec<Arc<dyn Array>> = batch.columns().to_vec();
        columns.push(Arc::new(Int64Array::from_iter_values(offset..offset + n)));
        offset += n;
        batches.push(RecordBatch::try_new(schema.clone(), columns).map_err(arrow)?);
    }
    Ok(Table::new(schema, batches))
}

/// The check the aggregate query failed on, and why: an error in an `expect` condition placed in
/// the product file at its line and column; otherwise the check that cannot be evaluated (such as
/// accepted values of another type than the column's), at the check; otherwise the query's error.
async fn located_error(subject: &Subject<'_>, checks: &[Check], from: &str, error: DataFusionError) -> TaskError {
    for (j, check) in checks.iter().enumerate() {
        // Only on this failure path does each check run alone.
        let probe = format!("SELECT {} FROM {from}", measure(j, &check.kind));
        let Err(own) = sql::run(subject.session, &probe).await else {
            continue;
        };
        if let Kind::Expect(condition) = &check.kind {
            let select = format!("SELECT * FROM {from} WHERE ");
            let probe = format!("{select}{condition}");
            if let Err(own) = subject.session.sql(&probe).await {
                let (message, position) = sql::explain(&own, &probe);
                // On its first line, the condition starts after the SELECT in front of it.
                let position = position.map(|(line, column)| match line {
                    1 => (1, column.saturating_sub(select.len()).max(1)),
                    _ => (line, column),
                });
                return subject.locator.error_at(
                    &format!("checks/{j}/expect"),
                    condition,
                    &format!("check `{}`: {message}", check.name),
                    position,
                );
            }
        }
        let (message, _) = sql::explain(&own, &probe);
        return subject.locator.error_at_node(
            &format!("checks/{j}"),
            &format!("check `{}` cannot be evaluated: {message}", check.name),
        );
    }
    TaskError::from(error)
}

fn unknown_column(task: &str, check: &Check, column: &str, table: &Table) -> TaskError {
    let names = table.column_names();
    let hint = match crate::diagnostic::closest(column, names.iter().copied()) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!("its columns: {}", names.join(", ")),
    };
    TaskError::permanent(format!(
        "check `{}` names column `{column}`, which `{task}` does not yield; {hint}",
        check.name
    ))
}

fn arrow(error: datafusion::arrow::error::ArrowError) -> TaskError {
    TaskError::from(DataFusionError::from(error))
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// SQL that holds when none of `columns` is null.
fn not_null(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| format!("{} IS NOT NULL", ident(c)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn quoted(columns: &[impl AsRef<str>]) -> String {
    columns.iter().map(|c| ident(c.as_ref())).collect::<Vec<_>>().join(", ")
}

/// A YAML scalar as a SQL literal.
fn literal(value: &Value) -> String {
    match value {
        Value::String(text) => format!("'{}'", text.replace('\'', "''")),
        Value::Bool(b) => b.to_string().to_uppercase(),
        Value::Null => "NULL".to_owned(),
        other => other.to_string(),
    }
}
