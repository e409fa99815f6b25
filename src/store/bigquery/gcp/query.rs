//! `transform_sql` with `engine: bigquery` on the gcp target: the query runs as a BigQuery job into
//! a staging table, which one more job commits into the destination as a store would (`replace`,
//! `append`, `merge`); the result's rows come back into dpf only when a later task needs them.

use serde::Deserialize;
use serde_json::Value;

use super::api::{Api, ensure_dataset, ensure_table, finish, query};
use super::error::BigQueryError;
use super::load::{Previous, commit_sql, previous, replace_sql};
use super::model::{FieldType, Table as BqTable, TableFieldSchema};
use super::schema::quote;
use super::writer::{TableRef, Writer, Written, job_id};
use crate::error::TaskError;
use crate::store::bigquery::{StoreToBigquery, WriteMode};
use crate::table::{Cell, RowsBuilder, Table};
use crate::target::gcp::cloud::Cloud;

/// What a query into a table did.
#[derive(Debug, Default)]
pub(crate) struct Queried {
    pub written: Written,
    /// The result's rows, when they were asked for.
    pub rows: Option<Table>,
}

/// Runs `sql` in BigQuery and commits its result into the table `store` names, in `project`; with
/// `pull`, reads at most that many result rows back (more fail the task, the table written).
pub(crate) async fn run(
    cloud: &std::sync::Arc<Cloud>,
    project: &str,
    store: &StoreToBigquery,
    writer: &Writer<'_>,
    sql: &str,
    pull: Option<u64>,
) -> Result<Queried, TaskError> {
    let mut api = Api::new(cloud);
    let table = TableRef::of(project, store);
    ensure_dataset(&mut api, table).await?;
    let base = job_id(writer.run_id, writer.task);
    let mut queried = Queried::default();
    let (job_id, done) = match previous(&mut api, project, &base, writer.cancel).await? {
        Previous::Done(id) => (id, true),
        Previous::Free(id) => (id, false),
    };
    if done && pull.is_none() {
        queried.written.already_loaded = Some(job_id);
        queried.written.requests = api.requests;
        return Ok(queried);
    }
    // The result, in a staging table that expires after a day should a killed run leave it.
    let staging_name = format!("_dpf_staging_{}", job_id.replace('-', "_"));
    let staging = TableRef {
        table: &staging_name,
        ..table
    };
    let create = format!(
        "CREATE OR REPLACE TABLE {} OPTIONS(expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 1 DAY)) \
         AS {sql}",
        quote(&staging.to_string())
    );
    let result = async {
        let job = query(
            &mut api,
            project,
            &format!("{job_id}_result_{:08x}", fastrand::u32(..)),
            create,
        )
        .await?;
        finish(&mut api, project, job, "the query", writer.cancel).await?;
        let staged: BqTable = api
            .get(&[project, "datasets", table.dataset, "tables", &staging_name])
            .await
            .map_err(|source| BigQueryError::ReadTable {
                table: staging.to_string(),
                source,
            })?;
        let fields = staged.schema.fields;
        queried.written.rows = staged.num_rows.as_deref().and_then(|n| n.parse().ok()).unwrap_or(0);
        if done {
            queried.written.already_loaded = Some(job_id.clone());
        } else {
            let sql = match store.write {
                WriteMode::Replace => replace_sql(table, staging, store, &fields),
                WriteMode::Append | WriteMode::Merge => {
                    ensure_table(&mut api, table, store, writer, &fields).await?;
                    commit_sql(table, staging, store, &fields)
                }
            };
            let job = query(&mut api, project, &job_id, sql).await?;
            finish(&mut api, project, job, &format!("query job {job_id}"), writer.cancel).await?;
        }
        if let Some(most) = pull {
            queried.rows = Some(read(&mut api, staging, &fields, most).await?);
        }
        Ok::<_, TaskError>(())
    }
    .await;
    let _ = api.delete_table(staging).await;
    queried.written.requests = api.requests;
    result.map(|()| queried)
}

/// The bytes BigQuery says `sql` would read, from a dry run in `project` (nothing runs, nothing
/// is billed).
pub(crate) async fn dry_run(cloud: &std::sync::Arc<Cloud>, project: &str, sql: &str) -> Result<u64, TaskError> {
    let mut api = Api::new(cloud);
    let job = serde_json::json!({
        "configuration": {"dryRun": true, "query": {"query": sql, "useLegacySql": false}},
    });
    let job: super::model::Job =
        api.post(&[project, "jobs"], job)
            .await
            .map_err(|source| BigQueryError::StartQuery {
                job: "dry run".to_owned(),
                source,
            })?;
    if let Some(error) = job.error() {
        return Err(BigQueryError::JobFailed {
            job: "the dry run".to_owned(),
            error: Box::new(error.clone()),
            details: Vec::new(),
        }
        .into());
    }
    let statistics = job.statistics.unwrap_or_default();
    let bytes = statistics
        .total_bytes_processed
        .or(statistics.query.and_then(|q| q.total_bytes_processed))
        .ok_or_else(|| TaskError::permanent("BigQuery's dry run gave no estimate"))?;
    bytes
        .parse()
        .map_err(|_| TaskError::permanent(format!("BigQuery's dry run estimated `{bytes}` bytes")))
}

/// One page of `tabledata.list`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    total_rows: Option<String>,
    page_token: Option<String>,
    #[serde(default)]
    rows: Vec<Row>,
}

#[derive(Debug, Default, Deserialize)]
struct Row {
    #[serde(default)]
    f: Vec<CellValue>,
}

#[derive(Debug, Default, Deserialize)]
struct CellValue {
    #[serde(default)]
    v: Value,
}

/// Rows per `tabledata.list` page.
const PAGE_ROWS: &str = "10000";

/// The rows of `table`, of BigQuery type `fields`, as a dpf table; more than `most` is an error.
async fn read(api: &mut Api, table: TableRef<'_>, fields: &[TableFieldSchema], most: u64) -> Result<Table, TaskError> {
    let mut builder = RowsBuilder::new();
    let mut token: Option<String> = None;
    let segments = [table.project, "datasets", table.dataset, "tables", table.table, "data"];
    loop {
        let mut query = vec![("maxResults", PAGE_ROWS), ("formatOptions.useInt64Timestamp", "true")];
        if let Some(token) = &token {
            query.push(("pageToken", token));
        }
        let page: Page = api
            .get_with(&segments, &query)
            .await
            .map_err(|source| BigQueryError::ReadTable {
                table: table.to_string(),
                source,
            })?;
        let total: u64 = page.total_rows.as_deref().and_then(|n| n.parse().ok()).unwrap_or(0);
        if total > most {
            return Err(TaskError::permanent(format!(
                "the query's result has {total} rows, more than the {most} dpf reads back for the tasks after it \
                 (`max_rows`); the destination is written. Aggregate in the query, or raise `max_rows`"
            )));
        }
        for row in &page.rows {
            let cells = fields
                .iter()
                .zip(&row.f)
                .map(|(field, cell)| (field.name.as_str(), cell_of(field, &cell.v)));
            builder
                .push_record(cells)
                .map_err(|conflict| TaskError::permanent(conflict.to_string()))?;
        }
        match page.page_token {
            Some(next) if !page.rows.is_empty() => token = Some(next),
            _ => break,
        }
    }
    if builder.is_empty() {
        for field in fields {
            builder
                .fill(&field.name, 0, &Cell::Null)
                .expect("an empty column takes a null");
        }
    }
    Ok(Table::from_batch(builder.finish()))
}

/// A value of `tabledata.list` as a row's value: timestamps (microseconds) as RFC 3339 text, which
/// the table types as a timestamp, as it does dates and date-times.
fn cell_of(field: &TableFieldSchema, value: &Value) -> Cell<'static> {
    let Value::String(text) = value else {
        return match value {
            Value::Null => Cell::Null,
            nested => Cell::Json(nested.to_string()),
        };
    };
    match field.field_type {
        FieldType::Integer => text.parse().map_or_else(|_| Cell::Str(text.clone().into()), Cell::Int),
        FieldType::Float | FieldType::Numeric | FieldType::Bignumeric => text
            .parse()
            .map_or_else(|_| Cell::Str(text.clone().into()), Cell::Float),
        FieldType::Boolean => Cell::Bool(text == "true"),
        FieldType::Timestamp => {
            let micros = text
                .parse::<i64>()
                .ok()
                .or_else(|| text.parse::<f64>().ok().map(|seconds| (seconds * 1e6) as i64));
            match micros.and_then(chrono::DateTime::from_timestamp_micros) {
                Some(time) => Cell::Str(time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true).into()),
                None => Cell::Str(text.clone().into()),
            }
        }
        _ => Cell::Str(text.clone().into()),
    }
}
