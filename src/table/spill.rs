//! Rows kept on disk: a large extract writes its rows as Parquet chunks while pages still arrive,
//! so it holds one chunk in memory at a time; queries, checks and stores read the chunks back.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use super::union::{Mismatch, conformed, unified, untyped};

/// Rows an extract builds in memory before it writes them out as a chunk, once it has more.
pub(crate) const CHUNK_ROWS: usize = 1024 * 1024;

/// Why rows could not be kept on disk or read back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpillError {
    #[error("cannot keep rows in {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot read back the rows kept in {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("field `{}` is {} in rows from page {}, but {} before", .0.field, .0.found, .0.part, .0.was)]
    Mismatch(Mismatch),
}

/// Writes chunks of rows to a folder of its own.
pub(crate) struct SpillWriter {
    dir: PathBuf,
    /// Each chunk's file, schema, columns without a type, and the page it starts at.
    chunks: Vec<(PathBuf, SchemaRef, Vec<bool>, usize)>,
    rows: usize,
}

/// Rows on disk: Parquet files of one schema. The folder goes when the last handle on it does.
#[derive(Debug)]
pub(crate) struct Spill {
    dir: PathBuf,
    files: Vec<PathBuf>,
    schema: SchemaRef,
    rows: usize,
}

impl SpillWriter {
    /// A writer into a new folder below `root` named after `name`.
    pub(crate) fn new(root: &Path, name: &str) -> Result<SpillWriter, SpillError> {
        let dir = root.join(format!("{name}-{:08x}", fastrand::u32(..)));
        std::fs::create_dir_all(&dir).map_err(|e| SpillError::Write {
            path: dir.clone(),
            source: Box::new(e),
        })?;
        Ok(SpillWriter {
            dir,
            chunks: Vec::new(),
            rows: 0,
        })
    }

    /// Writes `batch`, the rows from page `page` on, as one chunk.
    pub(crate) fn write(&mut self, batch: &RecordBatch, page: usize) -> Result<(), SpillError> {
        let path = self.dir.join(format!("chunk-{:05}.parquet", self.chunks.len()));
        write_file(&path, batch)?;
        let schema = batch.schema();
        let untyped = untyped(&schema, std::slice::from_ref(batch));
        self.chunks.push((path, schema, untyped, page));
        self.rows += batch.num_rows();
        Ok(())
    }

    /// The rows written, in one schema: chunks that typed a column otherwise (a number column that
    /// later holds decimals, a column null all through a chunk) are written again in it.
    pub(crate) fn finish(self) -> Result<Spill, SpillError> {
        let parts: Vec<(SchemaRef, Vec<bool>)> = self
            .chunks
            .iter()
            .map(|(_, schema, untyped, _)| (schema.clone(), untyped.clone()))
            .collect();
        let schema = unified(&parts).map_err(|mut mismatch| {
            mismatch.part = self.chunks[mismatch.part].3;
            SpillError::Mismatch(mismatch)
        })?;
        let mut spill = Spill {
            dir: self.dir,
            files: Vec::with_capacity(self.chunks.len()),
            schema,
            rows: self.rows,
        };
        for (path, chunk_schema, ..) in self.chunks {
            if chunk_schema != spill.schema {
                let batches = read_file(&path)?;
                let written = |e| SpillError::Write {
                    path: path.clone(),
                    source: Box::new(e),
                };
                let batches = (batches.iter())
                    .map(|b| conformed(b, &spill.schema))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(written)?;
                let batch = datafusion::arrow::compute::concat_batches(&spill.schema, &batches).map_err(written)?;
                write_file(&path, &batch)?;
            }
            spill.files.push(path);
        }
        Ok(spill)
    }
}

impl Spill {
    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// What a log line says of it.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} rows kept on disk in {} chunks (--memory-limit)",
            self.rows,
            self.files.len()
        )
    }

    /// The Parquet files, in row order.
    pub(crate) fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The rows of each chunk in turn: one chunk in memory at a time.
    pub(crate) fn chunks(&self) -> impl Iterator<Item = Result<Vec<RecordBatch>, SpillError>> + '_ {
        self.files.iter().map(|file| read_file(file))
    }

    /// Every row, read into memory.
    pub(crate) fn read(&self) -> Result<Vec<RecordBatch>, SpillError> {
        let mut batches = Vec::new();
        for file in &self.files {
            batches.extend(read_file(file)?);
        }
        Ok(batches)
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_file(path: &Path, batch: &RecordBatch) -> Result<(), SpillError> {
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| SpillError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(|e| failed(Box::new(e)))?;
    crate::store::parquet::write(file, &batch.schema(), std::slice::from_ref(batch), &|| true)
        .map_err(|e| failed(Box::new(e)))?;
    Ok(())
}

fn read_file(path: &Path) -> Result<Vec<RecordBatch>, SpillError> {
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| SpillError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(|e| failed(Box::new(e)))?;
    crate::store::parquet::read(file).map_err(|e| failed(Box::new(e)))
}

/// Writes `batch`, the rows from page `page` on, as a chunk of `writer` on a blocking thread; an
/// empty batch writes nothing.
pub(crate) async fn write_apart(
    mut writer: SpillWriter,
    batch: RecordBatch,
    page: usize,
) -> Result<SpillWriter, crate::error::TaskError> {
    use crate::error::TaskError;
    tokio::task::spawn_blocking(move || {
        if batch.num_rows() > 0 {
            writer.write(&batch, page)?;
        }
        Ok::<_, SpillError>(writer)
    })
    .await
    .map_err(TaskError::caused)?
    .map_err(TaskError::caused)
}

/// [`SpillWriter::finish`] on a blocking thread.
pub(crate) async fn finish_apart(writer: SpillWriter) -> Result<Spill, crate::error::TaskError> {
    use crate::error::TaskError;
    tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(TaskError::caused)?
        .map_err(TaskError::caused)
}

/// A handle on rows on disk, shared by the tables that hold them.
pub(crate) type SharedSpill = Arc<Spill>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Cell, RowsBuilder};

    #[test]
    fn chunks_meet_in_one_schema_and_read_back_in_order() {
        let root = tempfile::tempdir().unwrap();
        let mut writer = SpillWriter::new(root.path(), "extract").unwrap();
        let mut builder = RowsBuilder::new();
        builder
            .push_record([("id", Cell::Int(1)), ("note", Cell::Null)])
            .unwrap();
        writer.write(&builder.finish(), 1).unwrap();
        builder
            .push_record([("id", Cell::Float(2.5)), ("note", Cell::Str("x".into()))])
            .unwrap();
        writer.write(&builder.finish(), 7).unwrap();
        let spill = writer.finish().unwrap();
        assert_eq!(spill.rows(), 2);
        let batches = spill.read().unwrap();
        let lines: String = batches.iter().map(|b| crate::table::json_lines(b).unwrap()).collect();
        assert_eq!(lines, "{\"id\":1.0,\"note\":null}\n{\"id\":2.5,\"note\":\"x\"}\n");
        let dir = spill.dir.clone();
        drop(spill);
        assert!(!dir.exists());

        let mut writer = SpillWriter::new(root.path(), "extract").unwrap();
        builder.push_record([("id", Cell::Int(1))]).unwrap();
        writer.write(&builder.finish(), 1).unwrap();
        builder.push_record([("id", Cell::Str("one".into()))]).unwrap();
        writer.write(&builder.finish(), 13).unwrap();
        let error = writer.finish().unwrap_err().to_string();
        assert_eq!(error, "field `id` is text in rows from page 13, but a number before");
    }
}
