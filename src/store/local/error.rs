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
    #[error(
        "partition_by: column `{column}` is {kind}; tables are partitioned by a DATE, TIMESTAMP or DATETIME column"
    )]
    PartitionType { column: String, kind: DataType },
    #[error("partition_by: `{column}` is not a column of the rows")]
    NoPartitionColumn { column: String },
    #[error(
        "partition_by: the rows have a column `{column}`, the name of the partition folders; rename it in a transform"
    )]
    PartitionShadows { column: String },
    #[error("stopped before committing to {table}; the table is unchanged")]
    Stopped { table: String },
    #[error(transparent)]
    Spill(#[from] crate::table::spill::SpillError),
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WarehouseError + '_ {
    move |source| WarehouseError::Io {
        path: path.display().to_string(),
        source,
    }
}
