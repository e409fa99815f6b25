//! The local target's stand-ins: a Parquet warehouse for BigQuery and a SQLite document store for
//! Firestore, both under the data dir.

pub(crate) mod documents;
mod versions;
pub(crate) mod warehouse;

pub(crate) use crate::target::{documents_path, warehouse_dir};
