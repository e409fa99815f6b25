//! Store functions: tasks that write rows to BigQuery and Firestore (or their local stand-ins).

pub(crate) mod bigquery;
pub(crate) mod firestore;
pub(crate) mod local;
pub(crate) mod parquet;

pub(crate) use bigquery::StoreToBigquery;
pub(crate) use firestore::StoreToFirestore;
