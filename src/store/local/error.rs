//! How writing to or reading from the local warehouse fails.

use std::path::Path;

use datafusion::arrow::datatypes::DataType;

/// What a Parquet file or its rows failed on: Arrow or Parquet.
pub(crate) type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum WarehouseError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a dpf table (it is not a link to a version folder); move it away")]
    NotATable { path: String },
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: Cause,
    },
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: Cause,
    },
    #[error(
        "column `{column}` is {existing} in table {table} but {new} in the new rows; cast it in a transform to keep the table's type"
    )]
    TypeChange {
        table: String,
        column: String,
        existing: DataType,
        new: DataType,
    },
    #[error("merge key `{column}` is not a column of the rows; they have: {columns}")]
    MissingKey { column: String, columns: String },
    #[error("`write: merge` into {table} needs a `key`: the columns that identify a row")]
    NoKey { table: String },
    #[error("stopped before committing to {table}; the table is unchanged")]
    Stopped { table: String },
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WarehouseError + '_ {
    move |source| WarehouseError::Io {
        path: path.display().to_string(),
        source,
    }
}
