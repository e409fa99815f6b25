//! Product files: loading YAML with spans, and the typed product model.

pub mod product;
pub mod reference;
mod source;
pub mod yaml;

pub use product::{Call, Function, Product, Role, Task};
pub use source::{LineColumn, SourceFile, Span};
