//! `transform_sql` with `engine: bigquery`: a `destination` to write to, and tables that BigQuery
//! holds (`dataset.table`), not the in-memory outputs of other tasks.

use serde_json::Value;

use super::checks::Checker;
use crate::diagnostic::{Code, Diagnostic};
use crate::transform::sql::TableRef;

impl Checker<'_> {
    /// Checks the `engine` and `destination` of every transform, and the tables that those with
    /// `engine: bigquery` read (`queries`: task index and tables).
    pub(super) fn warehouse_queries(&mut self, queries: Vec<(usize, Vec<TableRef>)>, ids: &[&str]) {
        let transforms: Vec<usize> = self
            .document
            .value
            .get("tasks")
            .and_then(Value::as_array)
            .map(|tasks| {
                tasks
                    .iter()
                    .enumerate()
                    .filter(|(_, task)| task.get("function").and_then(Value::as_str) == Some("transform_sql"))
                    .map(|(i, _)| i)
                    .collect()
            })
            .unwrap_or_default();
        for i in transforms {
            let params = format!("/tasks/{i}/params");
            let in_bigquery = self.str_at(&format!("{params}/engine")) == Some("bigquery");
            let destination = self.document.value.pointer(&format!("{params}/destination")).is_some();
            if in_bigquery && !destination {
                self.out.push(
                    Diagnostic::new(
                        Code::MissingKey,
                        self.document.spans.key(&format!("{params}/engine")),
                        "`engine: bigquery` without a `destination`",
                    )
                    .label("the result has nowhere to go")
                    .help("add `destination: { dataset: …, table: …, write: replace }`"),
                );
            }
            if !in_bigquery && destination {
                self.out.push(
                    Diagnostic::new(
                        Code::InvalidValue,
                        self.document.spans.key(&format!("{params}/destination")),
                        "`destination` on a transform that runs in dpf",
                    )
                    .label("only a query in BigQuery writes a table itself")
                    .help("add `engine: bigquery`, or store the output with a store_to_bigquery task"),
                );
            }
        }
        for (i, tables) in queries {
            let pointer = format!("/tasks/{i}/params/query");
            let Some(query) = self.str_at(&pointer) else { continue };
            for table in tables.iter().filter(|t| !t.name.contains('.')) {
                let span = self.sql_span(&pointer, query, table.line, table.column);
                let task = ids.iter().any(|id| id.eq_ignore_ascii_case(&table.name));
                let message = if task {
                    format!("`{}` is a task's output, which BigQuery does not hold", table.name)
                } else {
                    format!("table `{}` names no dataset", table.name)
                };
                self.out.push(
                    Diagnostic::new(Code::UnknownTable, span, message)
                        .label("BigQuery tables are `dataset.table` or `project.dataset.table`")
                        .help(if task {
                            "store that output with a store_to_bigquery task and read its `dataset.table`, or drop `engine: bigquery`"
                        } else {
                            "write the table as `dataset.table`"
                        }),
                );
            }
        }
    }
}
