//! `method: streaming`: `tabledata.insertAll` in batches under its limits, each row with an
//! `insertId`.

use serde_json::{Value, json};

use super::api::Api;
use super::error::BigQueryError;
use super::writer::{TableRef, Writer, Written, digest, job_id};
use crate::error::TaskError;
use crate::store::bigquery::{StoreToBigquery, WriteMode};
use crate::table::Table;

/// insertAll limits: 10 MB and 50,000 rows per request; dpf stays under both.
const STREAM_BYTES: usize = 9 * 1024 * 1024;
const STREAM_ROWS: usize = 50_000;

/// Appends `rows` to `table` with insertAll requests.
pub(super) async fn stream(
    api: &mut Api,
    table: TableRef<'_>,
    store: &StoreToBigquery,
    writer: &Writer<'_>,
    rows: &Table,
    written: &mut Written,
) -> Result<(), TaskError> {
    if store.write != WriteMode::Append {
        return Err(BigQueryError::StreamingNotAppend.into());
    }
    let job_id = job_id(writer.run_id, writer.task);
    let mut request: Vec<Value> = Vec::new();
    let mut size = 0;
    let mut first = 0;
    let mut index = 0;
    for batch in &rows.batches {
        let json = crate::table::json_lines(batch).map_err(BigQueryError::Json)?;
        for line in json.lines() {
            if request.len() == STREAM_ROWS || (size + line.len() > STREAM_BYTES && !request.is_empty()) {
                if writer.cancel.is_cancelled() {
                    return Err(TaskError::stopped(format!(
                        "stopped after {first} of {} rows were streamed into {table}; a rerun sends them again \
                         with the same insert ids, which BigQuery drops as duplicates for a few minutes",
                        rows.rows()
                    )));
                }
                insert(api, table, std::mem::take(&mut request), first).await?;
                written.bytes += size as u64;
                (size, first) = (0, index);
            }
            let value: Value = serde_json::from_str(line).map_err(BigQueryError::JsonLine)?;
            // The row's position and content: a rerun sends the same rows under the same ids.
            let insert_id = format!("{job_id}_{index}_{}", digest(line.as_bytes()));
            request.push(json!({"insertId": insert_id, "json": value}));
            size += line.len() + 64;
            index += 1;
        }
    }
    if !request.is_empty() {
        insert(api, table, request, first).await?;
        written.bytes += size as u64;
    }
    written.rows = index as u64;
    Ok(())
}

/// One insertAll request; `first` is the index of its first row among all the task's rows.
async fn insert(api: &mut Api, table: TableRef<'_>, request: Vec<Value>, first: usize) -> Result<(), BigQueryError> {
    let response = api
        .insert_all(table, request)
        .await
        .map_err(|source| BigQueryError::Stream {
            table: format!("{}.{}", table.dataset, table.table),
            source,
        })?;
    let errors = response.insert_errors;
    if errors.is_empty() {
        return Ok(());
    }
    // Rows that failed only because another row of the request was invalid say `stopped`.
    let reasons: Vec<String> = errors
        .iter()
        .flat_map(|row| {
            let at = first + row.index;
            row.errors
                .iter()
                .filter(|e| e.reason.as_deref() != Some("stopped"))
                .map(move |e| {
                    let field = e
                        .location
                        .as_deref()
                        .filter(|l| !l.is_empty())
                        .map(|l| format!(" field `{l}`"))
                        .unwrap_or_default();
                    format!(
                        "row {at}{field}: {}",
                        e.message.as_deref().or(e.reason.as_deref()).unwrap_or("rejected")
                    )
                })
        })
        .collect();
    Err(BigQueryError::Rejected {
        rows: errors.len(),
        first,
        reasons,
    })
}
