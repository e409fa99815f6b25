//! Store functions: tasks that write rows to BigQuery and Firestore (or their local stand-ins).

pub mod bigquery;
pub mod firestore;
pub mod local;

pub use bigquery::StoreToBigquery;
pub use firestore::StoreToFirestore;
