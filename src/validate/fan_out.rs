//! `for_each:` and its companions on extracts, and `{{ item }}` templates: only on extracts, only
//! with `for_each`, not with `incremental`, and, where the items are known before the run (written
//! in the file or in a file next to it), naming fields every item has.

use serde_json::Value;

use super::checks::Checker;
use crate::diagnostic::{Code, Diagnostic};
use crate::extract::items::{self, ForEach, ItemSource};
use crate::plan::graph::Node;
use crate::spec::Function;

/// The task keys that pace or fan out an extract.
const EXTRACT_KEYS: [&str; 5] = ["for_each", "include_item", "on_item_error", "concurrency", "rate_limit"];

impl Checker<'_> {
    /// Checks task `i`'s fan-out keys, and reads its items when they are known before the run.
    pub(super) fn fan_out(&mut self, i: usize, nodes: &[Node]) {
        let at = format!("/tasks/{i}");
        let Some(task) = self.document.value.pointer(&at) else {
            return;
        };
        let extract = nodes[i]
            .function
            .is_none_or(|f| matches!(f, Function::ExtractHttp | Function::ExtractWeather));
        for key in EXTRACT_KEYS.into_iter().filter(|key| task.get(key).is_some()) {
            let span = self.document.spans.key(&format!("{at}/{key}"));
            if !extract {
                self.out.push(
                    Diagnostic::new(
                        Code::InvalidFanOut,
                        span,
                        format!("`{key}` on `{}`, which does not extract", nodes[i].id),
                    )
                    .label("only extract_http and extract_weather tasks send requests"),
                );
            } else if matches!(key, "include_item" | "on_item_error") && task.get("for_each").is_none() {
                self.out.push(
                    Diagnostic::new(Code::InvalidFanOut, span, format!("`{key}` without `for_each`"))
                        .label("there are no items")
                        .help("add `for_each:` with the items the extract runs for"),
                );
            }
        }
        let Some(for_each) = task.get("for_each").filter(|_| extract) else {
            return;
        };
        if task.get("incremental").is_some() {
            self.out.push(
                Diagnostic::new(
                    Code::InvalidFanOut,
                    self.document.spans.key(&format!("{at}/incremental")),
                    "`incremental` with `for_each`",
                )
                .label("one cursor cannot say where each item stands")
                .help("fetch each item's window with `{{ data_interval_start }}`, or split the items into products"),
            );
        }
        let Ok(for_each) = serde_json::from_value::<ForEach>(for_each.clone()) else {
            return; // the schema says what is wrong with it
        };
        let known = match for_each {
            ForEach::Items(items) => items,
            ForEach::Source(ItemSource::File(file)) => {
                match items::from_file(&items::file_path(self.source.path(), &file)) {
                    Ok(items) => items,
                    Err(error) => {
                        self.out.push(
                            Diagnostic::new(
                                Code::InvalidFanOut,
                                self.value_span(&format!("{at}/for_each/file")),
                                format!("the items cannot be read: {}", crate::error::chain(&error)),
                            )
                            .label("not a readable items file")
                            .help("items files are .csv (with a header row), .json (an array) or .ndjson, next to the product file"),
                        );
                        return;
                    }
                }
            }
            ForEach::Source(ItemSource::Task(_)) => return,
        };
        if let Some(Value::Array(fields)) = task.get("include_item") {
            for (k, field) in fields.iter().enumerate() {
                let Some(field) = field.as_str() else { continue };
                if let Some((index, item)) = lacking(&known, field) {
                    self.out.push(
                        Diagnostic::new(
                            Code::InvalidFanOut,
                            self.value_span(&format!("{at}/include_item/{k}")),
                            format!(
                                "{} has no field `{field}` to copy onto its rows",
                                items::label(index, item, &[])
                            ),
                        )
                        .label("not a field of every item"),
                    );
                }
            }
        }
        self.known_items.insert(i, known);
    }

    /// `shards:` needs a fan-out to share: any other product would run whole in every shard.
    pub(super) fn shards(&mut self, nodes: &[Node]) {
        let Some(shards) = self.document.value.get("shards").and_then(Value::as_u64) else {
            return;
        };
        let fans_out = |i: usize| {
            self.document.value.pointer(&format!("/tasks/{i}/for_each")).is_some()
                && nodes[i]
                    .function
                    .is_some_and(|f| matches!(f, Function::ExtractHttp | Function::ExtractWeather))
        };
        if shards > 1 {
            for (i, node) in nodes.iter().enumerate() {
                let write = format!("/tasks/{i}/params/write");
                if node.function == Some(Function::StoreToBigquery) && self.str_at(&write) == Some("replace") {
                    self.out.push(
                        Diagnostic::new(
                            Code::InvalidFanOut,
                            self.value_span(&write),
                            format!(
                                "`write: replace` in `{}` of a product that runs as {shards} shards",
                                node.id
                            ),
                        )
                        .label("each shard would replace the rows of the others")
                        .help("merge on a key (`write: merge`), or append"),
                    );
                }
            }
        }
        if shards > 1 && !(0..nodes.len()).any(fans_out) {
            self.out.push(
                Diagnostic::new(
                    Code::InvalidFanOut,
                    self.document.spans.key("/shards"),
                    format!("`shards: {shards}` without a `for_each` extract"),
                )
                .label("nothing to share between the shards")
                .help("each shard takes a share of the items of the product's `for_each` extracts; without one, every shard would run all of it"),
            );
        }
    }

    /// Checks the `{{ item }}` templates in the string `text` at `pointer`.
    pub(super) fn item_template(&mut self, text: &str, pointer: &str) {
        let Some(task) = pointer
            .strip_prefix("/tasks/")
            .and_then(|rest| rest.split_once("/params/"))
            .and_then(|(task, _)| task.parse::<usize>().ok())
        else {
            return;
        };
        let templates = crate::plan::template::item_fields(text);
        if templates.is_empty() {
            return;
        }
        if self
            .document
            .value
            .pointer(&format!("/tasks/{task}/for_each"))
            .is_none()
        {
            let (_, range) = templates[0].clone();
            self.out.push(
                Diagnostic::new(
                    Code::InvalidTemplate,
                    self.inner_span(pointer, text, range),
                    "`{{ item }}` in a task without `for_each:`",
                )
                .label("no item to render")
                .help("add `for_each:` with the items the extract runs for"),
            );
            return;
        }
        for (field, range) in templates {
            let Some(field) = field else { continue };
            let Some((index, item)) = self.known_items.get(&task).and_then(|known| lacking(known, &field)) else {
                continue;
            };
            let label = items::label(index, item, &[]);
            let diagnostic = Diagnostic::new(
                Code::InvalidTemplate,
                self.inner_span(pointer, text, range),
                format!("{label} has no field `{field}`"),
            )
            .label("not a field of every item");
            let diagnostic = match item {
                Value::Object(fields) => diagnostic.did_you_mean(&field, fields.keys().map(String::as_str)),
                _ => diagnostic,
            };
            self.out.push(diagnostic);
        }
    }
}

/// The first of `items` without `field`, with its index.
fn lacking<'v>(items: &'v [Value], field: &str) -> Option<(usize, &'v Value)> {
    items
        .iter()
        .enumerate()
        .find(|(_, item)| item.as_object().is_none_or(|fields| !fields.contains_key(field)))
}
