//! The local target's stand-ins: a Parquet warehouse for BigQuery and a SQLite document store for
//! Firestore, both under the data dir.

pub mod documents;
pub mod warehouse;

use std::path::{Path, PathBuf};

/// `<data-dir>/warehouse`
pub fn warehouse_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("warehouse")
}

/// `<data-dir>/firestore.db`
pub fn documents_path(data_dir: &Path) -> PathBuf {
    data_dir.join("firestore.db")
}
