//! The local document store: Firestore collections as one SQLite table, `<data-dir>/firestore.db`.
//! Each write is one transaction: all of a task's documents land, or none.

use std::path::Path;

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::writer::{LineDelimited, WriterBuilder};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio_util::sync::CancellationToken;

use crate::store::firestore::{Documents, IdError};
use crate::table::Table;

#[derive(Debug, thiserror::Error)]
pub(crate) enum DocumentError {
    #[error("document store {path}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot turn the rows into documents: {0}")]
    Encode(String),
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("stopped before committing; the document store is unchanged")]
    Stopped,
}

/// Opens (creating when needed) the document store at `path`.
pub(crate) fn open(path: &Path) -> Result<Connection, DocumentError> {
    crate::sqlite::open(
        path,
        "CREATE TABLE IF NOT EXISTS documents (
             collection TEXT NOT NULL,
             id TEXT NOT NULL,
             fields TEXT NOT NULL,
             updated_at TEXT NOT NULL,
             PRIMARY KEY (collection, id)
         ) WITHOUT ROWID;",
    )
    .map_err(|source| DocumentError::Sqlite {
        path: path.display().to_string(),
        source,
    })
}

/// Upserts one document per row into `collection`; with `merge`, only the written fields change (a
/// null is written as null, as Firestore does). Rows without key columns get ids from `seed` and
/// their position (see `store::firestore::id::generated_id`); rows that share a
/// key are one document, the last of them. One transaction: if `stop` is cancelled before the
/// commit, nothing is written.
pub(crate) fn write(
    path: &Path,
    collection: &str,
    key: &[String],
    merge: bool,
    seed: &str,
    rows: &Table,
    stop: &CancellationToken,
) -> Result<Written, DocumentError> {
    let named = Documents::of(key, seed, rows, stop)?;
    let written = Written {
        documents: named.rows.len(),
        repeated: named.repeated,
    };
    if named.rows.is_empty() {
        return Ok(written);
    }
    let documents = documents(&named, rows, stop)?;
    let sqlite = |source| DocumentError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    let mut connection = open(path)?;
    // The write lock from the start: a merge reads before it writes, and a read transaction that
    // another process wrote after cannot become a write one.
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    {
        let mut upsert = transaction
            .prepare(
                "INSERT INTO documents (collection, id, fields, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (collection, id) DO UPDATE
                 SET fields = excluded.fields, updated_at = excluded.updated_at",
            )
            .map_err(sqlite)?;
        let mut current = transaction
            .prepare("SELECT fields FROM documents WHERE collection = ?1 AND id = ?2")
            .map_err(sqlite)?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        for (n, (id, fields)) in documents.iter().enumerate() {
            // Dropping the transaction rolls back what it wrote.
            if n % 1024 == 0 && stop.is_cancelled() {
                return Err(DocumentError::Stopped);
            }
            let fields = if merge {
                let old: Option<String> = current
                    .query_row(params![collection, id], |row| row.get(0))
                    .optional()
                    .map_err(sqlite)?;
                match old {
                    Some(old) => merged(&old, fields)?,
                    None => fields.clone(),
                }
            } else {
                fields.clone()
            };
            upsert.execute(params![collection, id, fields, now]).map_err(sqlite)?;
        }
    }
    if stop.is_cancelled() {
        return Err(DocumentError::Stopped);
    }
    transaction.commit().map_err(sqlite)?;
    Ok(written)
}

/// What a write did.
#[derive(Debug)]
pub(crate) struct Written {
    pub documents: usize,
    /// Rows whose key an earlier row of the write already had.
    pub repeated: usize,
}

/// `old` with the fields of `new` set over it.
fn merged(old: &str, new: &str) -> Result<String, DocumentError> {
    let parse = |text: &str| {
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
            .map_err(|e| DocumentError::Encode(e.to_string()))
    };
    let mut fields = parse(old)?;
    fields.extend(parse(new)?);
    Ok(serde_json::Value::Object(fields).to_string())
}

/// (document id, fields as JSON) per document.
fn documents(
    named: &Documents,
    rows: &Table,
    stop: &CancellationToken,
) -> Result<Vec<(String, String)>, DocumentError> {
    let mut json = rows
        .batches
        .iter()
        .map(|batch| {
            if stop.is_cancelled() {
                return Err(DocumentError::Stopped);
            }
            let lines = json_fields(batch).map_err(|e| DocumentError::Encode(e.to_string()))?;
            Ok(lines.lines().map(str::to_owned).collect::<Vec<_>>())
        })
        .collect::<Result<Vec<_>, DocumentError>>()?;
    Ok(named
        .rows
        .iter()
        .map(|(b, row, id)| (id.clone(), std::mem::take(&mut json[*b][*row])))
        .collect())
}

/// Each row of `batch` as one line of JSON, the values as the gcp target's Firestore holds them:
/// timestamps (naive ones taken as UTC) and dates (midnight) as RFC 3339 instants in UTC with `Z`.
fn json_fields(batch: &RecordBatch) -> Result<String, ArrowError> {
    let utc: Arc<str> = Arc::from("UTC");
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let column = match field.data_type() {
            DataType::Timestamp(unit, Some(zone)) if zone.as_ref() != "UTC" => {
                cast(column, &DataType::Timestamp(*unit, Some(utc.clone())))?
            }
            _ => column.clone(),
        };
        fields.push(field.as_ref().clone().with_data_type(column.data_type().clone()));
        columns.push(column);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    let instant = "%Y-%m-%dT%H:%M:%S%.fZ".to_owned();
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .with_timestamp_format(instant.clone())
        .with_timestamp_tz_format(instant.clone())
        .with_datetime_format(instant)
        .with_date_format("%Y-%m-%dT00:00:00Z".to_owned())
        .build::<_, LineDelimited>(Vec::new());
    writer.write(&batch)?;
    writer.finish()?;
    String::from_utf8(writer.into_inner()).map_err(|e| ArrowError::JsonError(e.to_string()))
}
