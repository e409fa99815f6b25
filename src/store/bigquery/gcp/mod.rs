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
pub(crate) mod query;
mod schema;
mod stream;
mod writer;

use std::sync::Arc;

use self::api::{Api, ensure_dataset, ensure_table};
use self::error::BigQueryError;
use self::load::{load, load_chunks};
use self::schema::{conform, schema_of};
use self::stream::stream;
use self::writer::TableRef;
pub(crate) use self::writer::{Writer, Written};
use super::{LoadMethod, StoreToBigquery, WriteMode};
use crate::error::TaskError;
use crate::table::Table;
use crate::target::gcp::cloud::Cloud;

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
            return Err(BigQueryError::MissingKey {
                column: column.clone(),
                columns: rows.column_names().into_iter().map(str::to_owned).collect(),
            }
            .into());
        }
    }
    let fields = schema_of(&rows.schema)?;
    let table = TableRef::of(project, store);
    ensure_dataset(&mut api, table).await?;
    let columns = ensure_table(&mut api, table, store, writer, &fields).await?;
    // Rows on disk load a chunk at a time; streaming inserts read them back.
    if let (Some(spill), LoadMethod::Load) = (&rows.spill, store.method) {
        let result = load_chunks(&mut api, table, store, writer, spill, &columns, &mut written).await;
        written.requests = api.requests;
        return result.map(|()| written);
    }
    let rows = conform(&*rows.in_memory().map_err(TaskError::caused)?, &columns)?;
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
