//! `for_each:` on an extract: the items it fans out over, from the file, a file next to the product,
//! or the rows of an upstream task.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::incremental::rendered;
use crate::table::{Cell, Table};

/// Where a fan-out extract's items come from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ForEach {
    /// Items written in the product file.
    Items(Vec<Value>),
    /// Items read when the task runs.
    Source(ItemSource),
}

/// Items that are not written in the product file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ItemSource {
    /// A CSV (with a header row), JSON (an array) or NDJSON file, relative to the product file.
    File(String),
    /// The rows of an upstream extract or transform, one item per row.
    Task(String),
}

/// What a fan-out does with an item whose requests fail after their retries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnItemError {
    /// The task fails.
    #[default]
    Fail,
    /// The item is left out and named in the receipt and the failure alert; the task fails only
    /// when every item fails.
    Skip,
}

/// An extract run once per item.
#[derive(Debug, Clone, Serialize)]
pub struct FanOut {
    pub for_each: ForEach,
    /// Item fields copied onto each of the item's rows.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub include_item: Vec<String>,
    pub on_item_error: OnItemError,
}

/// The most items one fan-out takes: each is at least one request.
pub(crate) const MAX_ITEMS: usize = 100_000;

/// Why the items cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ItemsError {
    #[error("cannot read the items in {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("{what} holds {count} items; a fan-out takes at most {MAX_ITEMS}")]
    TooMany { what: String, count: usize },
    #[error("the rows of `{task}` cannot be read as items: {message}")]
    Rows { task: String, message: String },
}

/// Where `file` is: relative to the product file's folder unless absolute.
pub(crate) fn file_path(product_file: &Path, file: &str) -> PathBuf {
    product_file.parent().unwrap_or(Path::new(".")).join(file)
}

/// The items in `path`: CSV by a header row, a JSON array, or NDJSON (`.ndjson`, `.jsonl`), by the
/// file's extension. CSV fields are typed as CSV responses are (`02134` stays text).
pub(crate) fn from_file(path: &Path) -> Result<Vec<Value>, ItemsError> {
    let text = std::fs::read_to_string(path).map_err(|source| ItemsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let format = |message: String| ItemsError::Format {
        path: path.to_path_buf(),
        message,
    };
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
    let items = match extension.to_ascii_lowercase().as_str() {
        "csv" => csv_items(&text).map_err(format)?,
        "json" => match serde_json::from_str(&text) {
            Ok(Value::Array(items)) => items,
            Ok(_) => return Err(format("a JSON file of items holds an array".to_owned())),
            Err(error) => return Err(format(format!("not valid JSON: {error}"))),
        },
        "ndjson" | "jsonl" => text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| serde_json::from_str(line).map_err(|e| format(format!("line {}: {e}", n + 1))))
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(format(
                "items are read from .csv, .json, .ndjson or .jsonl files".to_owned(),
            ));
        }
    };
    capped(items, &path.display().to_string())
}

fn csv_items(text: &str) -> Result<Vec<Value>, String> {
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let mut items = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("row {}: {e}", n + 2))?;
        let item = header
            .iter()
            .zip(record.iter())
            .map(|(name, text)| (name.clone(), cell_value(Cell::from_text(text))))
            .collect();
        items.push(Value::Object(item));
    }
    Ok(items)
}

fn cell_value(cell: Cell<'_>) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Bool(v) => Value::Bool(v),
        Cell::Int(v) => Value::from(v),
        Cell::Float(v) => Value::from(v),
        Cell::Str(v) => Value::String(v.into_owned()),
        Cell::Json(v) => serde_json::from_str(&v).unwrap_or(Value::String(v)),
    }
}

/// The rows of `table`, the output of `task`, one object per row.
pub(crate) fn from_rows(task: &str, table: &Table) -> Result<Vec<Value>, ItemsError> {
    let failed = |message: String| ItemsError::Rows {
        task: task.to_owned(),
        message,
    };
    let mut items = Vec::with_capacity(table.rows());
    for batch in &table.batches {
        let lines = crate::table::json_lines(batch).map_err(|e| failed(e.to_string()))?;
        for line in lines.lines() {
            items.push(serde_json::from_str(line).map_err(|e| failed(e.to_string()))?);
        }
    }
    capped(items, &format!("the output of `{task}`"))
}

fn capped(items: Vec<Value>, what: &str) -> Result<Vec<Value>, ItemsError> {
    if items.len() > MAX_ITEMS {
        return Err(ItemsError::TooMany {
            what: what.to_owned(),
            count: items.len(),
        });
    }
    Ok(items)
}

/// How messages name item `index` (from 0): its number and, for an object, its `include_item`
/// fields (or its first two fields), e.g. `item 3 (city=Paris)`.
pub(crate) fn label(index: usize, item: &Value, include_item: &[String]) -> String {
    let shown = match item {
        Value::Object(fields) if include_item.is_empty() => fields
            .iter()
            .take(2)
            .map(|(name, value)| format!("{name}={}", rendered(Some(value))))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(fields) => include_item
            .iter()
            .filter_map(|name| {
                fields
                    .get(name)
                    .map(|value| format!("{name}={}", rendered(Some(value))))
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => rendered(Some(other)),
    };
    if shown.is_empty() {
        format!("item {}", index + 1)
    } else {
        format!("item {} ({shown})", index + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_every_format_give_the_same_items() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            from_file(&path)
        };
        let expected = serde_json::json!([
            {"city": "Paris", "latitude": 48.85, "zip": "02134"},
            {"city": "Oslo", "latitude": 59.91, "zip": "0150"}
        ]);
        let csv = write("c.csv", "city,latitude,zip\nParis,48.85,02134\nOslo,59.91,0150\n").unwrap();
        assert_eq!(Value::Array(csv), expected);
        let json = write("c.json", &expected.to_string()).unwrap();
        assert_eq!(Value::Array(json), expected);
        let lines: Vec<String> = expected.as_array().unwrap().iter().map(Value::to_string).collect();
        let ndjson = write("c.ndjson", &format!("{}\n\n", lines.join("\n"))).unwrap();
        assert_eq!(Value::Array(ndjson), expected);
        let error = write("c.json", "{\"city\": 1}").unwrap_err().to_string();
        assert!(
            error.ends_with("c.json: a JSON file of items holds an array"),
            "{error}"
        );
        let error = write("c.ndjson", "{}\n{oops\n").unwrap_err().to_string();
        assert!(error.contains("line 2: "), "{error}");
        assert!(write("c.txt", "x").unwrap_err().to_string().contains(".csv, .json"));
        assert!(matches!(
            from_file(&dir.path().join("missing.csv")),
            Err(ItemsError::Read { .. })
        ));
    }

    #[test]
    fn labels_name_the_item_by_its_included_fields() {
        let item = serde_json::json!({"city": "Paris", "latitude": 48.85, "longitude": 2.35});
        assert_eq!(label(2, &item, &[]), "item 3 (city=Paris, latitude=48.85)");
        assert_eq!(label(0, &item, &["city".to_owned()]), "item 1 (city=Paris)");
        assert_eq!(label(0, &serde_json::json!("EUR"), &[]), "item 1 (EUR)");
        assert_eq!(label(0, &serde_json::json!({}), &[]), "item 1");
    }
}
