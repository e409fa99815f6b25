//! dpf runs declarative data products: one YAML file per product, one chain of
//! extract → transform → store → alert per invocation.
//!
//! The binary is [`cli::main`]. The product format ([`spec`]), its checks ([`validate`]), the
//! plan ([`plan`]) and the targets ([`target`]) are public for the integration tests; everything
//! else is the crate's own.

mod alert;
mod atomic;
mod check;
pub mod cli;
mod component;
mod diagnostic;
mod error;
mod expectation;
mod export;
mod extract;
mod http;
mod log;
mod parallel;
pub mod plan;
mod receipt;
mod retry;
mod run;
mod runtime;
mod secrets;
pub mod spec;
mod sqlite;
mod state;
mod store;
mod table;
pub mod target;
mod transform;
pub mod validate;
