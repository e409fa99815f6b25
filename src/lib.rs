//! dpf runs declarative data products: one YAML file per product, one chain of
//! extract → transform → store → alert per invocation.

pub mod alert;
pub mod cli;
pub mod diagnostic;
pub mod extract;
pub mod plan;
pub mod spec;
pub mod store;
pub mod target;
pub mod transform;
pub mod validate;
