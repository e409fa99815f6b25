//! dpf runs declarative data products: one YAML file per product, one chain of
//! extract → transform → store → alert per invocation.

pub mod alert;
pub mod atomic;
pub mod cli;
pub mod diagnostic;
pub mod expectation;
pub mod export;
pub mod extract;
pub mod gcp;
pub mod http;
pub mod plan;
pub mod run;
pub mod secrets;
pub mod spec;
pub mod store;
pub mod table;
pub mod target;
pub mod transform;
pub mod validate;
