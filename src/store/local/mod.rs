//! The local target's stand-ins: a Parquet warehouse for BigQuery and a SQLite document store for
//! Firestore, both under the data dir.

pub(crate) mod documents;
mod error;
mod staging;
pub(crate) mod tables;
pub(crate) mod warehouse;
mod writeback;

use std::path::{Path, PathBuf};

/// `<data-dir>/warehouse`: the local target's BigQuery.
pub(crate) fn warehouse_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("warehouse")
}

/// `<data-dir>/firestore.db`: the local target's Firestore.
pub(crate) fn documents_path(data_dir: &Path) -> PathBuf {
    data_dir.join("firestore.db")
}
