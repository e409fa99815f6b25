//! The local warehouse: BigQuery tables as folders of Parquet files, `<warehouse>/<dataset>/<table>/`.
//!
//! Each write makes a new version folder under `<dataset>/.versions/<table>/` (unchanged parts are
//! hard links) and then swaps the symbolic link `<dataset>/<table>` to it with one rename. A reader —
//! dpf, DuckDB, pandas, Spark — sees the old version or the new one, never a mix; a run killed midway
//! leaves the old version in place and an unreferenced folder that the next write removes.

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, new_null_array};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;

use tokio_util::sync::CancellationToken;

pub(crate) use super::error::WarehouseError;
use super::error::{Cause, io};
use super::versions::{Unfinished, current_version, next_version, remove_versions, swap, sync_dir, version_number};
use crate::store::bigquery::WriteMode;
use crate::table::{Table, nullable};

/// Rows per Parquet row group: large enough for fast scans, small enough to write in bounded memory.
const ROW_GROUP_ROWS: usize = 256 * 1024;

/// What a write did.
#[derive(Debug)]
pub(crate) struct Written {
    pub rows: usize,
    pub bytes: u64,
}

/// Where the table `dataset.table` lives under `warehouse`.
pub(crate) fn table_path(warehouse: &Path, dataset: &str, table: &str) -> PathBuf {
    warehouse.join(dataset).join(table)
}

/// A table of the local warehouse.
pub(crate) struct Target<'a> {
    pub warehouse: &'a Path,
    pub dataset: &'a str,
    pub table: &'a str,
    /// The writing run: an append names its file after it, so the same run appending again
    /// replaces its own rows instead of adding them twice.
    pub run_id: &'a str,
}

/// Writes `rows` into the table with `mode` (merge on `key`), atomically. If `stop` is cancelled
/// before the commit, nothing is committed.
pub(crate) fn write(
    target: &Target<'_>,
    mode: WriteMode,
    key: &[String],
    rows: &Table,
    stop: &CancellationToken,
) -> Result<Written, WarehouseError> {
    let link = table_path(target.warehouse, target.dataset, target.table);
    let name = format!("{}.{}", target.dataset, target.table);
    if rows.schema.fields().is_empty() {
        // An empty response has no columns: there is nothing to add, replace or merge.
        return Ok(Written { rows: 0, bytes: 0 });
    }
    if mode == WriteMode::Merge && key.is_empty() {
        return Err(WarehouseError::NoKey { table: name });
    }
    for column in key {
        if rows.schema.field_with_name(column).is_err() {
            return Err(WarehouseError::MissingKey {
                column: column.clone(),
                columns: rows.column_names().join(", "),
            });
        }
    }
    let versions = target
        .warehouse
        .join(target.dataset)
        .join(".versions")
        .join(target.table);
    fs::create_dir_all(&versions).map_err(io(&versions))?;
    // One writer per table at a time, across processes.
    let lock_path = versions.join("lock");
    let lock = File::create(&lock_path).map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;

    let current = current_version(&link)?;
    // Versions past the current one are what a killed write left: nobody reads them. A link to a
    // folder of another name is left alone, with every version.
    let current_number = match current.as_deref() {
        None => Some(0),
        Some(dir) => version_number(dir),
    };
    if let Some(current_number) = current_number {
        remove_versions(&versions, |n| n > current_number);
    }
    let existing_parts = match &current {
        Some(dir) => parts(dir)?,
        None => Vec::new(),
    };
    // A replace starts the table afresh; the other modes keep its columns and their types.
    let schema = if mode == WriteMode::Replace {
        nullable(&rows.schema)
    } else {
        let mut existing: Option<SchemaRef> = None;
        for part in &existing_parts {
            let part_schema = part_schema(part)?;
            existing = Some(unify(&name, existing.as_deref(), &part_schema)?);
        }
        unify(&name, existing.as_deref(), &rows.schema)?
    };
    let new_rows = align(&schema, &rows.batches).map_err(|error| write_error(&link, error))?;

    let number = next_version(&versions)?;
    let version = versions.join(format!("v{number:06}"));
    fs::create_dir(&version).map_err(io(&version))?;
    // However the write fails (a full disk, a stop), the half-written version goes with it.
    let mut unfinished = Unfinished(Some(&version));
    let part = version.join(format!("part-{}.parquet", target.run_id));
    let kept = match mode {
        WriteMode::Append => {
            let existing_parts: Vec<&PathBuf> = existing_parts
                .iter()
                .filter(|p| p.file_name() != part.file_name())
                .collect();
            for old in &existing_parts {
                let target = version.join(old.file_name().expect("parts have names"));
                fs::hard_link(old, &target)
                    .or_else(|_| fs::copy(old, &target).map(drop))
                    .map_err(io(&target))?;
            }
            new_rows
        }
        WriteMode::Replace => new_rows,
        WriteMode::Merge => {
            let old = existing_parts
                .iter()
                .map(|p| read_part(p))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect::<Vec<_>>();
            let old = align(&schema, &old).map_err(|error| write_error(&link, error))?;
            merge(&schema, key, old, new_rows).map_err(|error| write_error(&link, error))?
        }
    };
    let bytes = write_part(&part, &name, &schema, &kept, stop)?;
    sync_dir(&version);
    if stop.is_cancelled() {
        return Err(WarehouseError::Stopped { table: name });
    }
    swap(&link, &version)?;
    unfinished.0 = None;
    remove_versions(&versions, |n| n + 1 < number);
    drop(lock);
    Ok(Written {
        rows: rows.rows(),
        bytes,
    })
}

fn write_error(path: &Path, source: impl Into<Cause>) -> WarehouseError {
    WarehouseError::Write {
        path: path.display().to_string(),
        source: source.into(),
    }
}

fn read_error(path: &Path, source: impl Into<Cause>) -> WarehouseError {
    WarehouseError::Read {
        path: path.display().to_string(),
        source: source.into(),
    }
}

/// The Parquet files of a version (or of a table's link), in name order.
pub(crate) fn parts(dir: &Path) -> Result<Vec<PathBuf>, WarehouseError> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "parquet"))
        .collect();
    found.sort();
    Ok(found)
}

fn part_schema(part: &Path) -> Result<SchemaRef, WarehouseError> {
    let file = File::open(part).map_err(io(part))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| read_error(part, e))?;
    Ok(builder.schema().clone())
}

fn read_part(part: &Path) -> Result<Vec<RecordBatch>, WarehouseError> {
    let file = File::open(part).map_err(io(part))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(64 * 1024).build())
        .map_err(|e| read_error(part, e))?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| read_error(part, e))
}

fn is_text(kind: &DataType) -> bool {
    matches!(kind, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
}

/// The table's columns followed by the new rows' new columns. Text types count as one; any other
/// change of type is refused.
fn unify(table: &str, existing: Option<&Schema>, new: &Schema) -> Result<SchemaRef, WarehouseError> {
    let Some(existing) = existing else {
        return Ok(nullable(new));
    };
    let mut fields: Vec<Field> = existing
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), f.data_type().clone(), true))
        .collect();
    for field in new.fields() {
        match existing.field_with_name(field.name()) {
            Ok(old) if old.data_type() == field.data_type() => {}
            Ok(old) if is_text(old.data_type()) && is_text(field.data_type()) => {}
            Ok(old) => {
                return Err(WarehouseError::TypeChange {
                    table: table.to_owned(),
                    column: field.name().clone(),
                    existing: old.data_type().clone(),
                    new: field.data_type().clone(),
                });
            }
            Err(_) => fields.push(Field::new(field.name(), field.data_type().clone(), true)),
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// `batches` with the columns of `schema`: missing ones null, text cast to the table's text type.
fn align(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>, ArrowError> {
    batches
        .iter()
        .map(|batch| {
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .map(|field| match batch.column_by_name(field.name()) {
                    Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
                    Some(column) => cast(column, field.data_type()),
                    None => Ok(new_null_array(field.data_type(), batch.num_rows())),
                })
                .collect::<Result<_, _>>()?;
            RecordBatch::try_new(schema.clone(), columns)
        })
        .collect()
}

/// Old rows whose key is not among the new rows, then the new rows (the last of each key wins).
fn merge(
    schema: &SchemaRef,
    key: &[String],
    old: Vec<RecordBatch>,
    new: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>, ArrowError> {
    let indices: Vec<usize> = key.iter().map(|k| schema.index_of(k)).collect::<Result<_, _>>()?;
    let converter = RowConverter::new(
        indices
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect(),
    )?;
    let keys_of = |batch: &RecordBatch| {
        let columns: Vec<ArrayRef> = indices.iter().map(|&i| batch.column(i).clone()).collect();
        converter.convert_columns(&columns)
    };
    let new = concat_batches(schema, &new)?;
    let new_keys = keys_of(&new)?;
    let mut seen: HashSet<&[u8]> = HashSet::with_capacity(new.num_rows());
    let mut keep = vec![false; new.num_rows()];
    for row in (0..new.num_rows()).rev() {
        keep[row] = seen.insert(new_keys.row(row).data());
    }
    let new = filter_record_batch(&new, &BooleanArray::from(keep))?;
    let mut out = Vec::with_capacity(old.len() + 1);
    for batch in old {
        let keys = keys_of(&batch)?;
        let mask: BooleanArray = (0..batch.num_rows())
            .map(|row| Some(!seen.contains(keys.row(row).data())))
            .collect();
        out.push(filter_record_batch(&batch, &mask)?);
    }
    out.push(new);
    Ok(out)
}

/// Writes one part file; stops between batches once `stop` is cancelled.
fn write_part(
    path: &Path,
    table: &str,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    stop: &CancellationToken,
) -> Result<u64, WarehouseError> {
    let file = File::create(path).map_err(io(path))?;
    let file =
        write_parquet(file, schema, batches, &|| !stop.is_cancelled()).map_err(|e| match stop.is_cancelled() {
            true => WarehouseError::Stopped {
                table: table.to_owned(),
            },
            false => write_error(path, e),
        })?;
    file.sync_all().map_err(io(path))?;
    Ok(file.metadata().map_err(io(path))?.len())
}

/// Writes `batches` as one Parquet file to `sink`: Snappy, [`ROW_GROUP_ROWS`]-row groups. Gives up
/// between batches when `go_on` says no.
pub(crate) fn write_parquet<W: std::io::Write + Send>(
    sink: W,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    go_on: &dyn Fn() -> bool,
) -> Result<W, datafusion::parquet::errors::ParquetError> {
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut writer = ArrowWriter::try_new(sink, schema.clone(), Some(properties))?;
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        if !go_on() {
            return Err(datafusion::parquet::errors::ParquetError::General("stopped".into()));
        }
        writer.write(batch)?;
    }
    writer.into_inner()
}

/// The tables of the warehouse as (dataset, table, path).
pub(crate) fn tables(warehouse: &Path) -> Vec<(String, String, PathBuf)> {
    let mut found = Vec::new();
    let Ok(datasets) = fs::read_dir(warehouse) else {
        return found;
    };
    for dataset in datasets.filter_map(Result::ok) {
        let dataset_name = dataset.file_name().to_string_lossy().into_owned();
        if dataset_name.starts_with('.') {
            continue;
        }
        let Ok(entries) = fs::read_dir(dataset.path()) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.path().is_dir() {
                found.push((dataset_name.clone(), name, entry.path()));
            }
        }
    }
    found.sort();
    found
}
