//! Transform functions: tasks that reshape upstream tables.

pub mod sql;

pub use sql::TransformSql;
