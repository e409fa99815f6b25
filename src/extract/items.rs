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

/// One of `count` processes running a product at once, each on its share of the fan-out items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// From 0.
    pub index: u32,
    pub count: u32,
}

/// The most shards a product runs as.
pub(crate) const MAX_SHARDS: u32 = 1000;

impl Shard {
    /// `I/N`, as `--shard` takes it: shard `I` (from 0) of `N`.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not I/N, e.g. 0/4 for the first of 4 shards"))?;
        let number = |part: &str| {
            part.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{text}` is not I/N: `{part}` is not a whole number"))
        };
        Shard::new(number(index)?, number(count)?)
    }

    fn new(index: u32, count: u32) -> Result<Shard, String> {
        if count == 0 || count > MAX_SHARDS {
            return Err(format!("a product runs as 1 to {MAX_SHARDS} shards, not {count}"));
        }
        if index >= count {
            return Err(format!(
                "shard {index} of {count} does not exist: shards count from 0 to {}",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }

    /// The shard the scheduler started this process as: Cloud Run Job tasks
    /// (`CLOUD_RUN_TASK_INDEX`, `CLOUD_RUN_TASK_COUNT`), or a Kubernetes Indexed Job
    /// (`JOB_COMPLETION_INDEX`, with the product's `declared` shards as the count). `None` for one
    /// process.
    pub fn from_env(var: impl Fn(&str) -> Option<String>, declared: Option<u32>) -> Result<Option<Shard>, String> {
        let number = |name: &str| -> Result<Option<u32>, String> {
            var(name)
                .map(|value| {
                    value
                        .trim()
                        .parse::<u32>()
                        .map_err(|_| format!("{name}={value} is not a whole number"))
                })
                .transpose()
        };
        let (index, count) = match (number("CLOUD_RUN_TASK_INDEX")?, number("CLOUD_RUN_TASK_COUNT")?) {
            (Some(index), Some(count)) => (index, count),
            _ => match (number("JOB_COMPLETION_INDEX")?, declared) {
                (Some(index), Some(count)) => (index, count),
                _ => return Ok(None),
            },
        };
        if count <= 1 {
            return Ok(None);
        }
        Shard::new(index, count).map(Some)
    }

    /// This shard's share of `len` items: a contiguous range; the shares of all shards cover every
    /// item once and differ in size by one at most.
    pub fn range(self, len: usize) -> std::ops::Range<usize> {
        let (index, count) = (self.index as usize, self.count as usize);
        len * index / count..len * (index + 1) / count
    }

    /// The run id of this shard's run of the tick `run_id`: what its job ids, file names and
    /// document ids derive from, so each shard's writes are its own and a rerun repeats them.
    pub fn run_id(self, run_id: &str) -> String {
        format!("{run_id}-shard-{}-of-{}", self.index, self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
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
    let table = table.in_memory().map_err(|e| failed(crate::error::chain(&e)))?;
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
    fn shards_split_the_items_into_contiguous_shares_that_cover_each_once() {
        for count in 1..=7u32 {
            for len in [0usize, 1, 5, 50, 51] {
                let mut covered = Vec::new();
                for index in 0..count {
                    covered.extend(Shard { index, count }.range(len));
                }
                assert_eq!(covered, (0..len).collect::<Vec<_>>(), "{len} items over {count} shards");
            }
        }
        assert_eq!(Shard::parse("2/8"), Ok(Shard { index: 2, count: 8 }));
        assert!(Shard::parse("8/8").unwrap_err().contains("count from 0 to 7"));
        assert!(Shard::parse("2").unwrap_err().contains("is not I/N"));
        assert!(Shard::parse("a/2").is_err());
        assert_eq!(
            Shard { index: 2, count: 8 }.run_id("p-20250101T000000Z"),
            "p-20250101T000000Z-shard-2-of-8"
        );
    }

    #[test]
    fn the_scheduler_says_which_shard_a_process_is() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
        };
        let cloud_run = env(&[("CLOUD_RUN_TASK_INDEX", "3"), ("CLOUD_RUN_TASK_COUNT", "5")]);
        assert_eq!(
            Shard::from_env(cloud_run, Some(2)),
            Ok(Some(Shard { index: 3, count: 5 }))
        );
        let one_task = env(&[("CLOUD_RUN_TASK_INDEX", "0"), ("CLOUD_RUN_TASK_COUNT", "1")]);
        assert_eq!(Shard::from_env(one_task, None), Ok(None));
        let indexed = env(&[("JOB_COMPLETION_INDEX", "1")]);
        assert_eq!(
            Shard::from_env(indexed, Some(4)),
            Ok(Some(Shard { index: 1, count: 4 }))
        );
        assert_eq!(Shard::from_env(indexed, None), Ok(None));
        assert!(Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "x")]), Some(2)).is_err());
        assert!(Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "4")]), Some(4)).is_err());
        assert_eq!(Shard::from_env(env(&[]), Some(4)), Ok(None));
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
