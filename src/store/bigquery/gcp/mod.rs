//! `store_to_bigquery` on the gcp target.
//!
//! - `method: load`: the rows become one Parquet file, sent through BigQuery's upload endpoint.
//!   `replace` loads it straight into the table with `WRITE_TRUNCATE`; `append` and `merge` load it
//!   into a staging table, then one query job (`INSERT … SELECT` or `MERGE … ON key`) commits it, and
//!   the staging table is dropped, also when the commit fails.
//! - `method: streaming`: `tabledata.insertAll` in batches under 10 MB and 50,000 rows, each row
//!   with an `insertId`.
//!
//! The job that commits has an id made from the run id (product and logical time) and the task, so
//! a re-invoked run finds it done and loads nothing twice. The dataset and table are created when
//! missing; new columns are added to an existing table as NULLABLE; any other change of schema is
//! an error that names the column.

mod api;
mod error;
mod load;
mod model;
mod schema;
mod stream;

use std::fmt;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use self::api::{Api, ensure_dataset, ensure_table};
use self::load::load;
use self::schema::{conform, schema_of};
use self::stream::stream;
use super::{LoadMethod, StoreToBigquery, WriteMode};
use crate::error::TaskError;
use crate::gcp::Cloud;
use crate::table::Table;

/// What a write did, for the receipt.
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub rows: u64,
    pub bytes: u64,
    /// HTTP requests made to BigQuery.
    pub requests: u64,
    /// Load jobs started.
    pub load_jobs: u64,
    /// The id of the job that had already committed these rows, when this run found one.
    pub already_loaded: Option<String>,
}

/// Who is writing: the run and the task, for job ids.
pub(crate) struct Writer<'a> {
    pub run_id: &'a str,
    pub task: &'a str,
    pub cancel: &'a CancellationToken,
}

/// A table's full name: `project.dataset.table`.
#[derive(Debug, Clone, Copy)]
struct TableRef<'a> {
    project: &'a str,
    dataset: &'a str,
    table: &'a str,
}

impl<'a> TableRef<'a> {
    /// The table `store` names, in project `project`.
    fn of(project: &'a str, store: &'a StoreToBigquery) -> TableRef<'a> {
        TableRef {
            project,
            dataset: &store.dataset,
            table: &store.table,
        }
    }
}

impl fmt::Display for TableRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.project, self.dataset, self.table)
    }
}

/// Writes `rows` to the table `store` names, in project `project`.
pub(crate) async fn write(
    cloud: &Arc<Cloud>,
    project: &str,
    store: &StoreToBigquery,
    writer: &Writer<'_>,
    rows: &Table,
) -> Result<Written, TaskError> {
    let mut written = Written::default();
    if rows.schema.fields().is_empty() {
        // An empty response has no columns: there is nothing to add, replace or merge.
        return Ok(written);
    }
    let mut api = Api::new(cloud);
    for column in &store.key {
        if rows.schema.field_with_name(column).is_err() {
            return Err(TaskError::permanent(format!(
                "key column `{column}` is not a column of the rows; they have: {}",
                rows.column_names().join(", ")
            )));
        }
    }
    let fields = schema_of(&rows.schema)?;
    let table = TableRef::of(project, store);
    ensure_dataset(&mut api, table).await?;
    let columns = ensure_table(&mut api, table, store, writer, &fields).await?;
    let rows = conform(rows, &columns)?;
    // The rows' types after conforming: what the staging table and the load job declare.
    let fields = schema_of(&rows.schema)?;
    if rows.rows() == 0 && store.write != WriteMode::Replace {
        written.requests = api.requests;
        return Ok(written);
    }
    let result = match store.method {
        LoadMethod::Load => load(&mut api, table, store, writer, &rows, &fields, &mut written).await,
        LoadMethod::Streaming => stream(&mut api, table, store, writer, &rows, &mut written).await,
    };
    written.requests = api.requests;
    result.map(|()| written)
}

/// The id of the job that commits `task`'s rows of run `run_id`: letters, digits, `_` and `-`.
pub(crate) fn job_id(run_id: &str, task: &str) -> String {
    let id: String = format!("dpf_{run_id}_{task}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    id.chars().take(1000).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids() {
        assert_eq!(
            job_id("weather-2025-01-08T00:00:00Z", "to_bq"),
            "dpf_weather-2025-01-08T00_00_00Z_to_bq"
        );
    }

    #[test]
    fn table_names() {
        let table = TableRef {
            project: "p",
            dataset: "d",
            table: "t",
        };
        assert_eq!(table.to_string(), "p.d.t");
    }
}
