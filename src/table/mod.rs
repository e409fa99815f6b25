//! The rows a task yields: an Arrow schema and record batches, named by the task's id.

pub(crate) mod builder;
mod cell;
mod column;
mod iso8601;
mod union;

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;

pub(crate) use builder::RowsBuilder;
pub(crate) use cell::{Cell, TypeConflict};
pub(crate) use union::union;

/// Rows small enough to hand to one DataFusion partition at a time.
const CHUNK_ROWS: usize = 64 * 1024;

/// The output of a data-producing task.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Table {
    pub(crate) fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Table { schema, batches }
    }

    /// One batch cut into zero-copy chunks, so a query can spread it over partitions.
    pub(crate) fn from_batch(batch: RecordBatch) -> Self {
        let schema = batch.schema();
        let rows = batch.num_rows();
        let batches = (0..rows.max(1))
            .step_by(CHUNK_ROWS)
            .map(|offset| batch.slice(offset, CHUNK_ROWS.min(rows - offset)))
            .collect();
        Table { schema, batches }
    }

    pub(crate) fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
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
