//! Semantic checks beyond the schema. They read the loaded JSON leniently, so they still run (and
//! report) when other parts of the file break the schema: one pass finds every problem.

use std::str::FromStr;

use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic};
use crate::plan::graph::{Field, Graph, Node, Problem};
use crate::spec::reference::references;
use crate::spec::yaml::{Document, content_offset, pointer_push};
use crate::spec::{Function, SourceFile, Span};
use crate::transform::sql;

/// Runs every semantic check over one loaded document.
pub(super) fn check(document: &Document, source: &SourceFile) -> Vec<Diagnostic> {
    let mut checker = Checker {
        document,
        source,
        out: Vec::new(),
        known_items: std::collections::HashMap::new(),
    };
    checker.product();
    checker.tasks();
    checker.strings(&document.value, String::new());
    checker.out
}

pub(super) struct Checker<'a> {
    pub(super) document: &'a Document,
    pub(super) source: &'a SourceFile,
    pub(super) out: Vec<Diagnostic>,
    /// The items of fan-out extracts known before the run, by task index.
    pub(super) known_items: std::collections::HashMap<usize, Vec<Value>>,
}

impl<'a> Checker<'a> {
    pub(super) fn str_at(&self, pointer: &str) -> Option<&'a str> {
        self.document.value.pointer(pointer).and_then(Value::as_str)
    }

    pub(super) fn value_span(&self, pointer: &str) -> Span {
        self.document.spans.value(pointer)
    }

    /// The span of the characters `range` (byte range) of the string at `pointer`.
    pub(super) fn inner_span(&self, pointer: &str, text: &str, range: std::ops::Range<usize>) -> Span {
        let Some(node) = self.document.spans.exact(pointer) else {
            return self.value_span(pointer);
        };
        let position = |byte: usize| {
            let before = &text[..byte.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            content_offset(self.source, node, text, line, column)
        };
        let start = position(range.start);
        let end = position(range.end).max(start);
        start..end
    }

    pub(super) fn sql_span(&self, pointer: &str, text: &str, line: usize, column: usize) -> Span {
        let Some(node) = self.document.spans.exact(pointer) else {
            return self.value_span(pointer);
        };
        let start = content_offset(self.source, node, text, line, column);
        let end = self.source.text()[start..]
            .char_indices()
            .find(|(_, c)| c.is_whitespace() || matches!(c, ',' | ')' | '('))
            .map_or(self.source.text().len(), |(i, _)| start + i.max(1));
        start..end.min(node.value.end).max(start)
    }

    fn product(&mut self) {
        if let Some(schedule) = self.str_at("/schedule")
            && let Err(problem) = crate::plan::schedule::check(schedule)
        {
            self.out.push(
                    Diagnostic::new(Code::InvalidSchedule, self.value_span("/schedule"), format!("invalid schedule `{schedule}`"))
                        .label(problem.to_string())
                        .help("5 fields: minute (0-59) hour (0-23) day-of-month (1-31) month (1-12) day-of-week (0-7), e.g. \"0 */6 * * *\"; or @hourly, @daily, @weekly, @monthly"),
                );
        }
        if let Some(timezone) = self.str_at("/timezone")
            && chrono_tz::Tz::from_str(timezone).is_err()
        {
            let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
            self.out.push(
                Diagnostic::new(
                    Code::InvalidTimezone,
                    self.value_span("/timezone"),
                    format!("unknown time zone `{timezone}`"),
                )
                .label("not an IANA time zone name")
                .did_you_mean(timezone, names),
            );
        }
        if let Some(date) = self.str_at("/start_date")
            && crate::plan::schedule::parse_start_date(date).is_none()
            && date.len() >= 10
            && date.as_bytes()[4] == b'-'
        {
            self.out.push(
                Diagnostic::new(
                    Code::InvalidDate,
                    self.value_span("/start_date"),
                    format!("`{date}` is not a real date"),
                )
                .label("no such day or time"),
            );
        }
    }

    fn tasks(&mut self) {
        let Some(tasks) = self.document.value.get("tasks").and_then(Value::as_array) else {
            return;
        };
        let mut nodes = Vec::with_capacity(tasks.len());
        let mut read_tables = Vec::new();
        let mut warehouse_tables = Vec::new();
        for (i, task) in tasks.iter().enumerate() {
            let pointer = format!("/tasks/{i}");
            let function = task
                .get("function")
                .and_then(Value::as_str)
                .and_then(Function::from_name);
            let mut node = Node {
                id: task
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("tasks[{i}]"), str::to_owned),
                function,
                input: names(task.get("input")),
                depends_on: names(task.get("depends_on")),
                for_each: task
                    .pointer("/for_each/task")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                ..Node::default()
            };
            let params = format!("{pointer}/params");
            let in_bigquery = self.str_at(&format!("{params}/engine")) == Some("bigquery");
            match function {
                Some(Function::TransformSql) if in_bigquery => {
                    let tables = self.transform_query(&params, sql::Dialect::BigQuery);
                    node.warehouse_reads = Some(tables.iter().map(|t| t.name.clone()).collect());
                    node.warehouse_writes = self.warehouse_table(&format!("{params}/destination"));
                    warehouse_tables.push((i, tables));
                }
                Some(Function::TransformSql) => {
                    let tables = self.transform_query(&params, sql::Dialect::Generic);
                    node.sql_tables = tables.iter().map(|t| t.name.clone()).collect();
                    read_tables.push((i, tables));
                }
                Some(Function::StoreToBigquery) => node.warehouse_writes = self.warehouse_table(&params),
                Some(Function::SendAlerts) => self.alert_condition(&params),
                _ => {}
            }
            if let Some(function) = function {
                self.params(function.name(), &params);
            }
            nodes.push(node);
        }
        let (graph, problems) = Graph::build(&nodes);
        for i in 0..nodes.len() {
            self.data_checks(i, &nodes, &graph);
            self.incremental(i, &nodes, &graph);
            self.fan_out(i, &nodes);
        }
        self.shards(&nodes);
        let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
        for problem in problems {
            self.graph_problem(problem, &nodes, &ids);
        }
        self.unknown_tables(read_tables, &ids);
        self.warehouse_queries(warehouse_tables, &ids);
        self.tests(&nodes);
    }

    /// Task ids named by `tests:` must exist and be of the right kind; their conditions must parse.
    fn tests(&mut self, nodes: &[Node]) {
        let Some(tests) = self.document.value.get("tests").and_then(Value::as_array) else {
            return;
        };
        let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
        for (t, case) in tests.iter().enumerate() {
            if let Some(after) = case.get("after").and_then(Value::as_str) {
                let earlier: Vec<&str> = tests[..t]
                    .iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str))
                    .collect();
                if !earlier.contains(&after) {
                    self.out.push(
                        Diagnostic::new(
                            Code::InvalidValue,
                            self.value_span(&format!("/tests/{t}/after")),
                            format!("`after: {after}` names no earlier test case"),
                        )
                        .label("not the name of a test case above this one")
                        .did_you_mean(after, earlier.iter().copied()),
                    );
                }
            }
            let expect = format!("/tests/{t}/expect");
            for key in ["rows", "alerts"] {
                let Some(map) = case.pointer(&format!("/expect/{key}")).and_then(Value::as_object) else {
                    continue;
                };
                for name in map.keys() {
                    let pointer = pointer_push(&format!("{expect}/{key}"), name);
                    let span = self.document.spans.key(&pointer);
                    match nodes.iter().find(|n| n.id == *name) {
                        None => self.out.push(
                            Diagnostic::new(
                                Code::UnknownTask,
                                span,
                                format!("`{name}` is not a task of this product"),
                            )
                            .label("no task with this id")
                            .did_you_mean(name, ids.iter().copied()),
                        ),
                        Some(node) if key == "alerts" && node.function.is_some_and(|f| f != Function::SendAlerts) => {
                            self.out.push(
                                Diagnostic::new(
                                    Code::InvalidValue,
                                    span,
                                    format!("`{name}` is not a send_alerts task"),
                                )
                                .label("only alert tasks send alerts"),
                            )
                        }
                        Some(_) => {}
                    }
                }
            }
            let Some(values) = case.pointer("/expect/values").and_then(Value::as_array) else {
                continue;
            };
            for (v, check) in values.iter().enumerate() {
                let pointer = format!("{expect}/values/{v}");
                if let Some(task) = check.get("task").and_then(Value::as_str) {
                    let span = self.value_span(&format!("{pointer}/task"));
                    match nodes.iter().find(|n| n.id == task) {
                        None => self.out.push(
                            Diagnostic::new(
                                Code::UnknownTask,
                                span,
                                format!("`{task}` is not a task of this product"),
                            )
                            .label("no task with this id")
                            .did_you_mean(task, ids.iter().copied()),
                        ),
                        Some(node) if node.function.is_some_and(|f| !f.produces_data()) => self.out.push(
                            Diagnostic::new(Code::InvalidValue, span, format!("`{task}` yields no rows to check"))
                                .label("values are checked in the output of an extract or transform task"),
                        ),
                        Some(_) => {}
                    }
                }
                let where_pointer = format!("{pointer}/where");
                if let Some(condition) = self.str_at(&where_pointer)
                    && let Err(error) = sql::parse_condition(condition)
                {
                    let span = self.sql_span(&where_pointer, condition, error.line, error.column);
                    self.out.push(
                        Diagnostic::new(Code::InvalidSql, span, "test condition does not parse").label(error.message),
                    );
                }
            }
        }
    }

    /// `dataset.table` of the store params at `params`, if they name one.
    fn warehouse_table(&self, params: &str) -> Option<String> {
        let dataset = self.str_at(&format!("{params}/dataset"))?;
        let table = self.str_at(&format!("{params}/table"))?;
        Some(format!("{dataset}.{table}"))
    }

    /// Checks a transform's query in `dialect` and returns the tables it reads.
    fn transform_query(&mut self, params: &str, dialect: sql::Dialect) -> Vec<sql::TableRef> {
        let pointer = format!("{params}/query");
        let Some(query) = self.str_at(&pointer) else {
            return Vec::new();
        };
        match sql::parse_query_in(query, dialect) {
            Ok(statements) => sql::tables(&statements),
            Err(error) => {
                let span = self.sql_span(&pointer, query, error.line, error.column);
                self.out
                    .push(Diagnostic::new(Code::InvalidSql, span, "SQL does not parse").label(error.message));
                Vec::new()
            }
        }
    }

    /// Tables read by a transform must be tasks (its own CTEs aside).
    fn unknown_tables(&mut self, read_tables: Vec<(usize, Vec<sql::TableRef>)>, ids: &[&str]) {
        for (task, tables) in read_tables {
            let pointer = format!("/tasks/{task}/params/query");
            let Some(query) = self.str_at(&pointer) else { continue };
            for table in tables {
                if ids.iter().any(|id| id.eq_ignore_ascii_case(&table.name)) {
                    continue;
                }
                let span = self.sql_span(&pointer, query, table.line, table.column);
                self.out.push(
                    Diagnostic::new(
                        Code::UnknownTable,
                        span,
                        format!("table `{}` is not a task of this product", table.name),
                    )
                    .label("no task with this id")
                    .did_you_mean(&table.name, ids.iter().copied())
                    .note("a transform reads the outputs of other tasks, each a table named by its task id"),
                );
            }
        }
    }

    fn alert_condition(&mut self, params: &str) {
        let pointer = format!("{params}/when");
        let Some(condition) = self.str_at(&pointer) else { return };
        if condition.trim() == crate::alert::CHECKS_FAILED {
            return;
        }
        if let Err(error) = sql::parse_condition(condition) {
            let span = self.sql_span(&pointer, condition, error.line, error.column);
            self.out.push(
                Diagnostic::new(Code::InvalidSql, span, "alert condition does not parse")
                    .label(error.message)
                    .help("`when` is a SQL boolean expression over the input rows, e.g. \"temperature_2m > 30\""),
            );
        }
    }

    fn reference_span(&self, task: usize, field: Field, index: usize) -> Span {
        let pointer = match field {
            Field::ForEach => format!("/tasks/{task}/for_each/task"),
            _ => format!("/tasks/{task}/{}", field.key()),
        };
        if self.document.value.pointer(&pointer).is_some_and(Value::is_array) {
            self.value_span(&format!("{pointer}/{index}"))
        } else {
            self.value_span(&pointer)
        }
    }

    fn graph_problem(&mut self, problem: Problem, nodes: &[Node], ids: &[&str]) {
        let id_span = |task: usize| self.value_span(&format!("/tasks/{task}/id"));
        let diagnostic = match problem {
            Problem::DuplicateId { first, again } => Diagnostic::new(
                Code::DuplicateTask,
                id_span(again),
                format!("duplicate task id `{}`", nodes[again].id),
            )
            .label("used again here")
            .related(id_span(first), "first used here")
            .help("task ids are unique within a product: they name each task's output table"),
            Problem::UnknownTask {
                task,
                field,
                index,
                name,
            } => {
                let key = field.key();
                Diagnostic::new(
                    Code::UnknownTask,
                    self.reference_span(task, field, index),
                    format!(
                        "`{key}` of task `{}` names `{name}`, which is not a task of this product",
                        nodes[task].id
                    ),
                )
                .label("no task with this id")
                .did_you_mean(&name, ids.iter().copied().filter(|id| *id != nodes[task].id))
            }
            Problem::NotData {
                task,
                field,
                index,
                upstream,
            } => Diagnostic::new(
                Code::NoInputData,
                self.reference_span(task, field, index),
                format!(
                    "task `{}` reads `{}`, which produces no data ({})",
                    nodes[task].id,
                    nodes[upstream].id,
                    nodes[upstream].function.map_or("unknown function", Function::name),
                ),
            )
            .label("not an extract or transform")
            .help("use `depends_on` to wait for a task without reading its output"),
            Problem::NoInput { task } => Diagnostic::new(
                Code::NoInputData,
                id_span(task),
                format!("task `{}` has no upstream data to read", nodes[task].id),
            )
            .label("no extract or transform above it")
            .help("put an extract_* or transform_sql task above it, or name one with `input:`"),
            Problem::Cycle { tasks } => {
                let mut path: Vec<&str> = tasks.iter().map(|&t| nodes[t].id.as_str()).collect();
                path.push(path[0]);
                Diagnostic::new(
                    Code::DependencyCycle,
                    id_span(tasks[0]),
                    format!("tasks depend on each other in a cycle: {}", path.join(" → ")),
                )
                .label("this task waits for itself")
                .help("break the cycle: remove one `input`/`depends_on` reference or a table from a query")
            }
        };
        self.out.push(diagnostic);
    }

    /// References and credential-looking literals, in every string of the file.
    fn strings(&mut self, value: &Value, pointer: String) {
        match value {
            Value::String(text) => self.string(text, &pointer),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.strings(item, pointer_push(&pointer, &i.to_string()));
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    self.strings(item, pointer_push(&pointer, key));
                }
            }
            _ => {}
        }
    }

    fn string(&mut self, text: &str, pointer: &str) {
        self.cursor_template(text, pointer);
        self.item_template(text, pointer);
        if pointer.starts_with("/tasks/")
            && pointer.contains("/params/")
            && let Err(error) = crate::plan::template::check(text)
        {
            self.out.push(
                Diagnostic::new(
                    Code::InvalidTemplate,
                    self.inner_span(pointer, text, error.range),
                    format!("invalid template: {}", error.message),
                )
                .label("cannot be rendered")
                .help("templates are `{{ variable }}` or `{{ variable | filter(...) }}`; see the README"),
            );
        }
        match references(text) {
            Err(error) => {
                let mut diagnostic = Diagnostic::new(
                    Code::InvalidReference,
                    self.inner_span(pointer, text, error.range.clone()),
                    format!("malformed reference: {}", error.message),
                )
                .label("malformed reference");
                if let Some(help) = error.help {
                    diagnostic = diagnostic.help(help);
                }
                self.out.push(diagnostic);
            }
            Ok(found) if found.is_empty() => {
                let key = pointer.rsplit('/').next().unwrap_or_default();
                if let Some(why) = super::credentials::looks_like_credential(key, text) {
                    self.out.push(
                        Diagnostic::new(
                            Code::PossibleCredential,
                            self.value_span(pointer),
                            format!(
                                "`{}` looks like a credential written in the file",
                                crate::validate::schema::display_path(pointer)
                            ),
                        )
                        .label(why)
                        .help("keep it in Secret Manager (or an env var / .env locally) and write `${secret:NAME}`"),
                    );
                }
            }
            Ok(_) => {}
        }
    }
}

/// A string or list of strings as a list (anything else: empty, the schema reports it).
fn names(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(name)) => vec![name.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}
