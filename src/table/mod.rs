//! The rows a task yields: an Arrow schema and record batches, named by the task's id.

pub(crate) mod builder;
mod cell;
mod column;
mod iso8601;
pub(crate) mod spill;
mod stamps;
mod union;

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;

pub(crate) use builder::RowsBuilder;
pub(crate) use cell::{Cell, TypeConflict};
pub(crate) use column::{Decoded, widened};
pub(crate) use stamps::Stamps;
pub(crate) use union::{conformed, union};

/// Rows small enough to hand to one DataFusion partition at a time.
const CHUNK_ROWS: usize = 64 * 1024;

/// The output of a data-producing task: in memory, or (a large extract's) on disk.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub schema: SchemaRef,
    /// The rows, when they are in memory; empty when they are on disk.
    pub batches: Vec<RecordBatch>,
    /// The rows, when they are on disk.
    pub spill: Option<spill::SharedSpill>,
}

impl Table {
    pub(crate) fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Table {
            schema,
            batches,
            spill: None,
        }
    }

    /// Rows on disk.
    pub(crate) fn spilled(spill: spill::Spill) -> Self {
        Table {
            schema: spill.schema().clone(),
            batches: Vec::new(),
            spill: Some(std::sync::Arc::new(spill)),
        }
    }

    /// The table with its rows in memory: read back from disk if they are there.
    pub(crate) fn in_memory(&self) -> Result<std::borrow::Cow<'_, Table>, spill::SpillError> {
        match &self.spill {
            None => Ok(std::borrow::Cow::Borrowed(self)),
            Some(spill) => Ok(std::borrow::Cow::Owned(Table::new(self.schema.clone(), spill.read()?))),
        }
    }

    /// One batch cut into zero-copy chunks, so a query can spread it over partitions.
    pub(crate) fn from_batch(batch: RecordBatch) -> Self {
        let schema = batch.schema();
        let rows = batch.num_rows();
        let batches = (0..rows.max(1))
            .step_by(CHUNK_ROWS)
            .map(|offset| batch.slice(offset, CHUNK_ROWS.min(rows - offset)))
            .collect();
        Table::new(schema, batches)
    }

    pub(crate) fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum::<usize>() + self.spill.as_ref().map_or(0, |s| s.rows())
    }

    pub(crate) fn column_names(&self) -> Vec<&str> {
        self.schema.fields().iter().map(|f| f.name().as_str()).collect()
    }
}

/// The same schema with every column nullable: stores compare columns by name and type only.
pub(crate) fn nullable(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// `batch` as JSON lines, one object per row, nulls written out.
pub(crate) fn json_lines(batch: &RecordBatch) -> Result<String, ArrowError> {
    use datafusion::arrow::json::writer::{LineDelimited, WriterBuilder};
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, LineDelimited>(Vec::new());
    writer.write(batch)?;
    writer.finish()?;
    String::from_utf8(writer.into_inner()).map_err(|e| ArrowError::JsonError(e.to_string()))
}
