//! The local target's stand-ins: a Parquet warehouse for BigQuery and a SQLite document store for
//! Firestore, both under the data dir.

pub mod documents;
mod versions;
pub mod warehouse;

pub use crate::target::{documents_path, warehouse_dir};
