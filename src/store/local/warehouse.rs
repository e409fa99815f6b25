//! The local warehouse: BigQuery tables as folders of Parquet files, `<warehouse>/<dataset>/<table>/`.
//!
//! Each write builds the table's new contents in its staging folder (unchanged parts are hard links)
//! and exchanges them with the table folder in one rename (see [`super::staging`]). A reader — dpf,
//! DuckDB, polars, pandas, Spark — sees the old contents or the new ones, never a mix; a run killed
//! midway leaves the old contents in place and a staged folder that the next write removes.
//!
//! With `partition_by`, each part sits in a Hive-style folder named by the UTC date of the column,
//! `<column>_date=2025-01-01/` (`__HIVE_DEFAULT_PARTITION__` for nulls), which DuckDB, polars and
//! pyarrow read as a column of its own.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::datatypes::{Int64Type, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::arrow::temporal_conversions::date32_to_datetime;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use tokio_util::sync::CancellationToken;

pub(crate) use super::error::WarehouseError;
use super::error::{Cause, io};
use super::staging::{Staging, remove_old_versions};
use super::writeback::Writeback;
use crate::store::bigquery::WriteMode;
use crate::store::parquet;
use crate::table::{Table, conformed, nullable};

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

/// Where writes to `dataset.table` are staged: `<data-dir>/warehouse-staging/<dataset>/<table>`.
fn staging_path(data_dir: &Path, dataset: &str, table: &str) -> PathBuf {
    data_dir.join("warehouse-staging").join(dataset).join(table)
}

/// A table of the local warehouse.
pub(crate) struct Target<'a> {
    pub data_dir: &'a Path,
    pub dataset: &'a str,
    pub table: &'a str,
    /// The writing run: an append names its file after it, so the same run appending again
    /// replaces its own rows instead of adding them twice.
    pub run_id: &'a str,
    /// The DATE or TIMESTAMP column whose UTC date names each part's folder.
    pub partition_by: Option<&'a str>,
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
    let table_dir = table_path(&super::warehouse_dir(target.data_dir), target.dataset, target.table);
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
    let layout = Layout::of(target.partition_by, &rows.schema)?;
    let staging = Staging::open(&table_dir, staging_path(target.data_dir, target.dataset, target.table))?;
    let existing_parts = parts(&table_dir)?;
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
    // The new rows: in memory, or (a large extract's) on disk, written a chunk at a time. A merge
    // compares them with the table's rows, so it reads them all.
    let on_disk = rows.spill.as_ref().filter(|_| mode != WriteMode::Merge);
    let new_rows = match on_disk {
        Some(_) => Vec::new(),
        None => {
            let rows = rows.in_memory()?;
            align(&schema, &rows.batches).map_err(|error| write_error(&table_dir, error))?
        }
    };

    let next = staging.next()?;
    let part = format!("part-{}.parquet", target.run_id);
    // This run's own parts (the new rows, in one part or one per chunk): a rerun replaces them.
    let own = format!("part-{}.", target.run_id);
    let files = match mode {
        WriteMode::Append => {
            // Other runs' parts stay as they are, linked into the new contents, unless
            // `partition_by` changed since they were written: their rows then move to its layout.
            let mut moved = Vec::new();
            let others = existing_parts
                .iter()
                .filter(|p| !p.file_name().is_some_and(|f| f.to_string_lossy().starts_with(&own)));
            for old in others {
                let relative = old.strip_prefix(&table_dir).unwrap_or(old);
                if layout.holds(relative) {
                    let linked = next.join(relative);
                    if let Some(folder) = linked.parent() {
                        fs::create_dir_all(folder).map_err(io(folder))?;
                    }
                    fs::hard_link(old, &linked)
                        .or_else(|_| fs::copy(old, &linked).map(drop))
                        .map_err(io(&linked))?;
                } else {
                    moved.extend(read_part(old)?);
                }
            }
            let mut files = Vec::new();
            if !moved.is_empty() {
                let moved = align(&schema, &moved).map_err(|error| write_error(&table_dir, error))?;
                files.push((format!("part-{}-moved.parquet", target.run_id), moved));
            }
            files.push((part, new_rows));
            files
        }
        WriteMode::Replace => vec![(part, new_rows)],
        WriteMode::Merge => {
            let old = existing_parts
                .iter()
                .map(|p| read_part(p))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect::<Vec<_>>();
            let old = align(&schema, &old).map_err(|error| write_error(&table_dir, error))?;
            let merged = merge(&schema, key, old, new_rows).map_err(|error| write_error(&table_dir, error))?;
            vec![(part, merged)]
        }
    };
    let mut bytes = 0;
    let mut write = |file: &str, batches: &[RecordBatch]| -> Result<(), WarehouseError> {
        for (folder, batches) in layout.split(batches).map_err(|error| write_error(&table_dir, error))? {
            let folder = next.join(folder);
            fs::create_dir_all(&folder).map_err(io(&folder))?;
            bytes += write_part(&folder.join(file), &name, &schema, &batches, stop)?;
        }
        Ok(())
    };
    for (file, batches) in &files {
        if on_disk.is_none() || !batches.is_empty() {
            write(file, batches)?;
        }
    }
    if let Some(spill) = on_disk {
        for (k, chunk) in spill.chunks().enumerate() {
            let chunk = align(&schema, &chunk?).map_err(|error| write_error(&table_dir, error))?;
            write(&format!("part-{}.{k}.parquet", target.run_id), &chunk)?;
        }
    }
    if stop.is_cancelled() {
        return Err(WarehouseError::Stopped { table: name });
    }
    staging.commit()?;
    remove_old_versions(&table_dir);
    Ok(Written {
        rows: rows.rows(),
        bytes,
    })
}

/// Where a table's parts go: all in its folder, or in one folder per day of a column.
enum Layout {
    Flat,
    Daily { column: String, folder: String },
}

impl Layout {
    fn of(partition_by: Option<&str>, rows: &Schema) -> Result<Self, WarehouseError> {
        let Some(column) = partition_by else {
            return Ok(Layout::Flat);
        };
        let field = rows
            .field_with_name(column)
            .map_err(|_| WarehouseError::NoPartitionColumn {
                column: column.to_owned(),
            })?;
        if !matches!(
            field.data_type(),
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
        ) {
            return Err(WarehouseError::PartitionType {
                column: column.to_owned(),
                kind: field.data_type().clone(),
            });
        }
        let folder = format!("{column}_date");
        if rows.field_with_name(&folder).is_ok() {
            return Err(WarehouseError::PartitionShadows { column: folder });
        }
        Ok(Layout::Daily {
            column: column.to_owned(),
            folder,
        })
    }

    /// Whether a part at `relative` (to the table folder) sits where this layout puts it.
    fn holds(&self, relative: &Path) -> bool {
        let mut components = relative.components();
        match self {
            Layout::Flat => relative.parent() == Some(Path::new("")),
            Layout::Daily { folder, .. } => {
                let first = components.next().and_then(|c| c.as_os_str().to_str());
                first.is_some_and(|f| f.starts_with(&format!("{folder}="))) && components.count() == 1
            }
        }
    }

    /// `batches` by the folder (relative to the table folder) their rows go to, in date order.
    /// Rows without a date go to the null partition; so does an empty write, which keeps the
    /// table's columns in an empty part.
    fn split(&self, batches: &[RecordBatch]) -> Result<Vec<(PathBuf, Vec<RecordBatch>)>, ArrowError> {
        let Layout::Daily { column, folder } = self else {
            return Ok(vec![(PathBuf::new(), batches.to_vec())]);
        };
        let mut days: BTreeMap<Option<i32>, Vec<RecordBatch>> = BTreeMap::new();
        for batch in batches.iter().filter(|b| b.num_rows() > 0) {
            let values = batch
                .column_by_name(column)
                .ok_or_else(|| ArrowError::SchemaError(format!("no column `{column}`")))?;
            let mut rows: BTreeMap<Option<i32>, Vec<u32>> = BTreeMap::new();
            for (row, day) in utc_days(values)?.into_iter().enumerate() {
                rows.entry(day).or_default().push(row as u32);
            }
            for (day, indices) in rows {
                let taken = take_record_batch(batch, &UInt32Array::from(indices))?;
                days.entry(day).or_default().push(taken);
            }
        }
        if days.is_empty() {
            days.insert(None, batches.to_vec());
        }
        days.into_iter()
            .map(|(day, batches)| {
                let value = match day {
                    None => "__HIVE_DEFAULT_PARTITION__".to_owned(),
                    Some(day) => date32_to_datetime(day)
                        .ok_or_else(|| ArrowError::ComputeError(format!("`{column}` holds a date out of range")))?
                        .format("%Y-%m-%d")
                        .to_string(),
                };
                Ok((PathBuf::from(format!("{folder}={value}")), batches))
            })
            .collect()
    }
}

/// The UTC day (days since 1970-01-01) of each value of a DATE or TIMESTAMP column; naive
/// timestamps count as UTC, as BigQuery partitions them.
fn utc_days(values: &ArrayRef) -> Result<Vec<Option<i32>>, ArrowError> {
    let per_day: i64 = match values.data_type() {
        DataType::Date32 => 1,
        DataType::Date64 => 86_400_000,
        DataType::Timestamp(TimeUnit::Second, _) => 86_400,
        DataType::Timestamp(TimeUnit::Millisecond, _) => 86_400_000,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 86_400_000_000,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => 86_400_000_000_000,
        other => return Err(ArrowError::CastError(format!("cannot partition by a {other} column"))),
    };
    let values = cast(values, &DataType::Int64)?;
    Ok(values
        .as_primitive::<Int64Type>()
        .iter()
        .map(|value| value.and_then(|v| i32::try_from(v.div_euclid(per_day)).ok()))
        .collect())
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

/// The Parquet files of a table, in its partition folders too, in path order; none when the
/// table does not exist yet.
fn parts(table: &Path) -> Result<Vec<PathBuf>, WarehouseError> {
    let mut found = Vec::new();
    let mut folders = vec![table.to_owned()];
    while let Some(folder) = folders.pop() {
        let entries = match fs::read_dir(&folder) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && folder == table => break,
            entries => entries.map_err(io(&folder))?,
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found.push(path);
            }
        }
    }
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
    parquet::read(file).map_err(|e| read_error(part, e))
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
    batches.iter().map(|batch| conformed(batch, schema)).collect()
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
    let file = Writeback::new(File::create(path).map_err(io(path))?);
    let file =
        parquet::write(file, schema, batches, &|| !stop.is_cancelled()).map_err(|e| match stop.is_cancelled() {
            true => WarehouseError::Stopped {
                table: table.to_owned(),
            },
            false => write_error(path, e),
        })?;
    let file = file.sync().map_err(io(path))?;
    Ok(file.metadata().map_err(io(path))?.len())
}
