//! `incremental:` and `{{ cursor }}`: only on extracts, on a field the rows have, with a lookback
//! only on a time; and stores under an incremental extract that would keep re-read rows twice.

use serde_json::Value;

use super::checks::Checker;
use crate::diagnostic::{Code, Diagnostic};
use crate::plan::graph::{Edge, Graph, Node};
use crate::spec::Function;

impl Checker<'_> {
    /// Checks task `i`'s `incremental:`, and warns when it is a store that an incremental extract
    /// feeds without a key.
    pub(super) fn incremental(&mut self, i: usize, nodes: &[Node], graph: &Graph) {
        let at = format!("/tasks/{i}/incremental");
        let function = nodes[i].function;
        if let Some(incremental) = self.document.value.pointer(&at) {
            if function.is_some_and(|f| !matches!(f, Function::ExtractHttp | Function::ExtractWeather)) {
                self.out.push(
                    Diagnostic::new(
                        Code::InvalidIncremental,
                        self.document.spans.key(&at),
                        format!("`incremental` on `{}`, which does not extract", nodes[i].id),
                    )
                    .label("only extract_http and extract_weather tasks fetch incrementally"),
                );
            }
            self.lookback(incremental, &at);
            if function == Some(Function::ExtractWeather) {
                self.weather_cursor(i, incremental, &at);
            }
        }
        if let Some(store) = self.keyless_store(i, function)
            && let Some(extract) = incremental_upstream(i, nodes, graph, self)
        {
            self.out.push(
                Diagnostic::new(
                    Code::IncrementalAppend,
                    self.document.spans.key(&format!("/tasks/{i}/params")),
                    format!(
                        "`{}` {store}, under the incremental extract `{extract}`: rows read again (a lookback, a run \
                         retried after its cursor was not saved) are stored twice",
                        nodes[i].id
                    ),
                )
                .label("no key to tell a row read again")
                .help("give the store a `key` (BigQuery: with `write: merge`) so re-read rows replace themselves"),
            );
        }
    }

    fn lookback(&mut self, incremental: &Value, at: &str) {
        if incremental.get("lookback").is_none() {
            return;
        }
        let time = match incremental.get("initial") {
            None => true,
            Some(Value::String(text)) => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            Some(_) => false,
        };
        if !time {
            self.out.push(
                Diagnostic::new(
                    Code::InvalidIncremental,
                    self.value_span(&format!("{at}/initial")),
                    "`lookback` needs a time cursor, and `initial` is not an RFC 3339 time",
                )
                .label("not a time such as 2025-01-01T00:00:00Z")
                .help("drop `lookback` for a number or text cursor"),
            );
        }
    }

    /// An Open-Meteo extract yields `time`, the location and its metrics: the cursor is one of them.
    fn weather_cursor(&mut self, i: usize, incremental: &Value, at: &str) {
        let Some(cursor) = incremental.get("cursor").and_then(Value::as_str) else {
            return;
        };
        let metrics: Vec<String> = match self.document.value.pointer(&format!("/tasks/{i}/params/metrics")) {
            Some(Value::String(text)) => text.split(',').map(|m| m.trim().to_owned()).collect(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => return,
        };
        let columns: Vec<String> = ["time", "latitude", "longitude"]
            .map(str::to_owned)
            .into_iter()
            .chain(metrics)
            .collect();
        if !columns.iter().any(|c| c == cursor) {
            self.out.push(
                Diagnostic::new(
                    Code::InvalidIncremental,
                    self.value_span(&format!("{at}/cursor")),
                    format!("the rows of `extract_weather` have no field `{cursor}`"),
                )
                .label(format!("they have {}", columns.join(", ")))
                .did_you_mean(cursor, columns.iter().map(String::as_str)),
            );
        }
    }

    /// How task `i` stores rows without a key, if it is such a store.
    fn keyless_store(&self, i: usize, function: Option<Function>) -> Option<&'static str> {
        let params = self.document.value.pointer(&format!("/tasks/{i}/params"))?;
        let keyed = params.get("key").is_some_and(|key| match key {
            Value::Array(items) => !items.is_empty(),
            Value::String(text) => !text.is_empty(),
            _ => false,
        });
        match function? {
            Function::StoreToBigquery
                if !keyed && params.get("write").and_then(Value::as_str).unwrap_or("append") == "append" =>
            {
                Some("appends without a key")
            }
            Function::StoreToFirestore if !keyed => Some("names its documents at random (no key)"),
            _ => None,
        }
    }

    /// Warns where `{{ cursor }}` stands in a task without `incremental:`.
    pub(super) fn cursor_template(&mut self, text: &str, pointer: &str) {
        let Some(task) = pointer
            .strip_prefix("/tasks/")
            .and_then(|rest| rest.split_once("/params/"))
            .map(|(task, _)| task)
        else {
            return;
        };
        let Some(range) = crate::plan::template::uses(text, "cursor") else {
            return;
        };
        if self
            .document
            .value
            .pointer(&format!("/tasks/{task}/incremental"))
            .is_none()
        {
            self.out.push(
                Diagnostic::new(
                    Code::InvalidIncremental,
                    self.inner_span(pointer, text, range),
                    "`{{ cursor }}` in a task without `incremental:`",
                )
                .label("no cursor to render")
                .help("add `incremental: { cursor: <field> }` to the extract, or use the data interval ({{ data_interval_start }})"),
            );
        }
    }
}

/// The incremental extract whose rows reach task `i` through inputs, if any.
fn incremental_upstream(i: usize, nodes: &[Node], graph: &Graph, checker: &Checker<'_>) -> Option<String> {
    let mut seen = vec![false; nodes.len()];
    let mut todo: Vec<usize> = vec![i];
    while let Some(at) = todo.pop() {
        for &(up, edge) in &graph.upstream[at] {
            if edge != Edge::Input || std::mem::replace(&mut seen[up], true) {
                continue;
            }
            if checker
                .document
                .value
                .pointer(&format!("/tasks/{up}/incremental"))
                .is_some()
            {
                return Some(nodes[up].id.clone());
            }
            todo.push(up);
        }
    }
    None
}
