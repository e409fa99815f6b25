//! Product files: loading YAML with spans, and the typed product model.

pub(crate) mod de;
pub(crate) mod duration;
pub mod product;
pub mod reference;
pub(crate) mod size;
mod source;
pub mod yaml;

pub use product::{Call, Function, Product, Role, Task};
pub use source::{LineColumn, SourceFile, Span};

/// `value` with every string inside it (not keys) replaced by `map` of it.
pub fn map_strings<E>(
    value: &serde_json::Value,
    map: &mut impl FnMut(&str) -> Result<String, E>,
) -> Result<serde_json::Value, E> {
    use serde_json::Value;
    Ok(match value {
        Value::String(text) => Value::String(map(text)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| map_strings(item, map))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), map_strings(v, map)?)))
                .collect::<Result<_, E>>()?,
        ),
        other => other.clone(),
    })
}
