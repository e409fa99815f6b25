//! The `checks:` of data-producing tasks: one kind each, bounds the right way round, names unique
//! within the task, `expect` SQL that parses, columns the task's output has where that is
//! knowable, and a quarantine with somewhere to put the rows.

use serde_json::Value;

use super::checks::Checker;
use crate::check::{Check, KINDS, Kind, OnFail};
use crate::diagnostic::{Code, Diagnostic};
use crate::plan::graph::{Edge, Graph, Node};
use crate::spec::Function;
use crate::transform::sql;

impl Checker<'_> {
    /// Checks the `checks:` of task `i`, given the product's graph.
    pub(super) fn data_checks(&mut self, i: usize, nodes: &[Node], graph: &Graph) {
        let pointer = format!("/tasks/{i}/checks");
        let Some(checks) = self.document.value.pointer(&pointer).and_then(Value::as_array) else {
            return;
        };
        if checks.is_empty() {
            return;
        }
        if let Some(function) = nodes[i].function
            && !function.produces_data()
        {
            self.out.push(
                Diagnostic::new(
                    Code::InvalidCheck,
                    self.document.spans.key(&pointer),
                    format!("`{}` yields no rows to check", nodes[i].id),
                )
                .label(format!("{} tasks take no checks", function.name()))
                .help("put the checks on the extract or transform whose output this task reads"),
            );
            return;
        }
        let columns = self.output_columns(i, nodes[i].function);
        let mut names: Vec<String> = Vec::new();
        for (j, raw) in checks.iter().enumerate() {
            let at = format!("{pointer}/{j}");
            let Some(object) = raw.as_object() else { continue };
            let kinds: Vec<&str> = KINDS.iter().copied().filter(|k| object.contains_key(*k)).collect();
            match kinds.as_slice() {
                [] => {
                    // A misspelt kind is reported once, by the schema, as an unknown key.
                    let options = ["name", "severity", "on_fail"];
                    if object.keys().all(|key| options.contains(&key.as_str())) {
                        let first = object.keys().next().map_or(at.clone(), |key| format!("{at}/{key}"));
                        self.out.push(
                            Diagnostic::new(
                                Code::InvalidCheck,
                                self.document.spans.key(&first),
                                "a check without a kind",
                            )
                            .label("no check key")
                            .help(format!("give one of {}", KINDS.join(", "))),
                        );
                    }
                    continue;
                }
                [_] => {}
                [first, second, ..] => {
                    self.out.push(
                        Diagnostic::new(
                            Code::InvalidCheck,
                            self.document.spans.key(&format!("{at}/{second}")),
                            format!("a check has one kind; this one has `{first}` and `{second}`"),
                        )
                        .label("a second kind")
                        .help("write each as its own item of `checks:`"),
                    );
                    continue;
                }
            }
            let Ok(check) = serde_json::from_value::<Check>(raw.clone()) else {
                continue; // The schema reports what is wrong with its shape.
            };
            let kind_at = format!("{at}/{}", check.kind.key());
            if names.contains(&check.name) {
                self.out.push(
                    Diagnostic::new(
                        Code::InvalidCheck,
                        self.value_span(&at),
                        format!("two checks of `{}` are named `{}`", nodes[i].id, check.name),
                    )
                    .label("a second check with this name")
                    .help("give one of them a `name:`"),
                );
            }
            names.push(check.name.clone());
            self.bounds(&check, &kind_at);
            if let Kind::Expect(condition) = &check.kind
                && let Err(error) = sql::parse_condition(condition)
            {
                let span = self.sql_span(&kind_at, condition, error.line, error.column);
                self.out.push(
                    Diagnostic::new(Code::InvalidSql, span, "check condition does not parse")
                        .label(error.message)
                        .help("`expect` is a SQL boolean over the task's columns, e.g. \"precipitation >= 0\""),
                );
            }
            if let Kind::Freshness { max_age, .. } = &check.kind
                && let Err(error) = crate::spec::duration::parse(max_age)
            {
                self.out.push(
                    Diagnostic::new(
                        Code::InvalidCheck,
                        self.value_span(&format!("{kind_at}/max_age")),
                        "invalid `max_age`",
                    )
                    .label(error.to_string()),
                );
            }
            if let Some(columns) = &columns {
                self.known_columns(&check, &kind_at, &nodes[i].id, columns);
            }
            if check.on_fail == OnFail::Quarantine {
                self.quarantine(&check, &format!("{at}/on_fail"), i, nodes, graph);
            }
        }
    }

    /// The columns task `i` yields, when they can be told without running it.
    fn output_columns(&self, i: usize, function: Option<Function>) -> Option<Vec<String>> {
        if function != Some(Function::TransformSql) {
            return None;
        }
        let query = self.str_at(&format!("/tasks/{i}/params/query"))?;
        sql::output_columns(&sql::parse_query(query).ok()?)
    }

    fn bounds(&mut self, check: &Check, at: &str) {
        let wrong_way = match &check.kind {
            Kind::Range {
                min: Some(min),
                max: Some(max),
                ..
            } => match (min, max) {
                (Value::Number(a), Value::Number(b)) => a.as_f64() > b.as_f64(),
                (Value::String(a), Value::String(b)) => a > b,
                _ => false,
            },
            Kind::RowCount {
                min: Some(min),
                max: Some(max),
            } => min > max,
            _ => false,
        };
        if wrong_way {
            self.out.push(
                Diagnostic::new(
                    Code::InvalidCheck,
                    self.value_span(&format!("{at}/min")),
                    "`min` is greater than `max`",
                )
                .label("no value can pass")
                .help("swap `min` and `max`"),
            );
        }
    }

    fn known_columns(&mut self, check: &Check, at: &str, task: &str, columns: &[String]) {
        let named: Vec<(String, &str)> = match &check.kind {
            Kind::NotNull(names) | Kind::Unique(names) => {
                let list = self.document.value.pointer(at).is_some_and(Value::is_array);
                names
                    .iter()
                    .enumerate()
                    .map(|(k, n)| (if list { format!("{at}/{k}") } else { at.to_owned() }, n.as_str()))
                    .collect()
            }
            Kind::AcceptedValues { column, .. } | Kind::Range { column, .. } | Kind::Freshness { column, .. } => {
                vec![(format!("{at}/column"), column.as_str())]
            }
            Kind::RowCount { .. } | Kind::Expect(_) => return,
        };
        for (pointer, name) in named {
            if columns.iter().any(|c| c == name) {
                continue;
            }
            self.out.push(
                Diagnostic::new(
                    Code::UnknownColumn,
                    self.value_span(&pointer),
                    format!("`{task}` yields no column `{name}`"),
                )
                .label("not a column of the task's output")
                .did_you_mean(name, columns.iter().map(String::as_str))
                .note(format!("its query yields {}", columns.join(", "))),
            );
        }
    }

    /// A quarantine needs a per-row check and a BigQuery store reading the task, where its rows go.
    fn quarantine(&mut self, check: &Check, at: &str, i: usize, nodes: &[Node], graph: &Graph) {
        if !check.kind.per_row() {
            self.out.push(
                Diagnostic::new(
                    Code::InvalidCheck,
                    self.value_span(at),
                    format!(
                        "`{}` judges the whole table: it has no rows to quarantine",
                        check.kind.key()
                    ),
                )
                .label("quarantine takes per-row checks only")
                .help("leave out `on_fail`, or use a per-row check"),
            );
            return;
        }
        let stored = graph.upstream.iter().enumerate().any(|(s, edges)| {
            nodes[s].function == Some(Function::StoreToBigquery)
                && edges
                    .iter()
                    .find(|(_, edge)| *edge == Edge::Input)
                    .is_some_and(|&(t, _)| t == i)
        });
        if !stored {
            self.out.push(
                Diagnostic::new(
                    Code::InvalidCheck,
                    self.value_span(at),
                    format!("no store_to_bigquery task reads `{}`", nodes[i].id),
                )
                .label("the quarantined rows have nowhere to go")
                .help("quarantined rows go to `<table>__rejected` beside each store_to_bigquery that reads the task"),
            );
        }
    }
}
