//! `transform_sql`: SQL over upstream outputs, each a table named by its task id.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};

use serde::{Deserialize, Serialize};

use sqlparser::ast::{Expr, Ident, Query, SelectItem, SetExpr, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::{BigQueryDialect, GenericDialect};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

use crate::error::TaskError;
use crate::spec::yaml::content_offset;
use crate::spec::{LineColumn, SourceFile};
use crate::table::Table;

/// Parameters of `transform_sql`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransformSql {
    /// The SQL query: over the outputs of upstream tasks (DataFusion), or over warehouse tables
    /// (`engine: bigquery`).
    pub query: String,
    /// Where the query runs.
    #[serde(default, skip_serializing_if = "Engine::is_local")]
    pub engine: Engine,
    /// With `engine: bigquery`: the table the result is written to, as a `store_to_bigquery` writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<crate::store::StoreToBigquery>,
    /// With `engine: bigquery`: the most result rows brought into dpf for the tasks that read them.
    #[serde(default = "default_max_rows", skip_serializing_if = "is_default_max_rows")]
    pub max_rows: u64,
}

/// Where a transform's query runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// In dpf, over the outputs of upstream tasks.
    #[default]
    Local,
    /// In BigQuery over its tables (on the local target: in dpf over the local warehouse), the
    /// result written to `destination`.
    Bigquery,
}

impl Engine {
    fn is_local(&self) -> bool {
        *self == Engine::Local
    }
}

fn default_max_rows() -> u64 {
    100_000
}

fn is_default_max_rows(rows: &u64) -> bool {
    *rows == default_max_rows()
}

impl TransformSql {
    /// The query's SQL dialect: BigQuery's for `engine: bigquery`.
    pub(crate) fn dialect(&self) -> Dialect {
        match self.engine {
            Engine::Local => Dialect::Generic,
            Engine::Bigquery => Dialect::BigQuery,
        }
    }
}

/// The SQL dialects transforms are parsed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Generic,
    BigQuery,
}

/// A SQL syntax error with its 1-based line and column inside the SQL text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SqlError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

/// A table a query reads, with its 1-based position inside the SQL text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableRef {
    pub name: String,
    pub line: usize,
    pub column: usize,
}

/// Parses a transform query; it must be exactly one statement, a query.
pub(crate) fn parse_query(sql: &str) -> Result<Vec<Statement>, SqlError> {
    parse_query_in(sql, Dialect::Generic)
}

/// Parses a transform query in `dialect`; it must be exactly one statement, a query.
pub(crate) fn parse_query_in(sql: &str, dialect: Dialect) -> Result<Vec<Statement>, SqlError> {
    let parsed = match dialect {
        Dialect::Generic => Parser::parse_sql(&GenericDialect {}, sql),
        Dialect::BigQuery => Parser::parse_sql(&BigQueryDialect {}, sql),
    };
    let statements = parsed.map_err(|error| sql_error(error, sql))?;
    match statements.as_slice() {
        [Statement::Query(_)] => Ok(statements),
        [] => Err(SqlError {
            message: "the query is empty".to_owned(),
            line: 1,
            column: 1,
        }),
        [_] => Err(SqlError {
            message: "a transform must be a query (SELECT, WITH, VALUES), not a statement that changes data".to_owned(),
            line: 1,
            column: 1,
        }),
        [..] => Err(SqlError {
            message: "a transform holds exactly one query".to_owned(),
            line: 1,
            column: 1,
        }),
    }
}

/// Parses a boolean condition (an alert's `when`).
pub(crate) fn parse_condition(sql: &str) -> Result<(), SqlError> {
    let mut parser = Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .map_err(|error| sql_error(error, sql))?;
    parser.parse_expr().map_err(|error| sql_error(error, sql))?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(SqlError {
            message: format!("unexpected `{}` after the condition", next.token),
            line: next.span.start.line.max(1) as usize,
            column: next.span.start.column.max(1) as usize,
        });
    }
    Ok(())
}

/// The tables a query reads, leaving out its own CTEs and table functions.
pub(crate) fn tables(statements: &[Statement]) -> Vec<TableRef> {
    #[derive(Default)]
    struct Tables {
        ctes: Vec<String>,
        found: Vec<TableRef>,
    }
    impl Visitor for Tables {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if let Some(with) = &query.with {
                self.ctes
                    .extend(with.cte_tables.iter().map(|cte| cte.alias.name.value.to_lowercase()));
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, args: None, .. } = factor {
                let first = name.0.first().and_then(|part| part.as_ident());
                let (line, column) = first.map_or((1, 1), |ident| {
                    (
                        ident.span.start.line.max(1) as usize,
                        ident.span.start.column.max(1) as usize,
                    )
                });
                let name = name
                    .0
                    .iter()
                    .map(|part| {
                        part.as_ident()
                            .map_or_else(|| part.to_string(), |ident| ident.value.clone())
                    })
                    .collect::<Vec<_>>()
                    .join(".");
                self.found.push(TableRef { name, line, column });
            }
            ControlFlow::Continue(())
        }
    }
    let mut visitor = Tables::default();
    for statement in statements {
        let _ = statement.visit(&mut visitor);
    }
    let Tables { ctes, found } = visitor;
    found
        .into_iter()
        .filter(|table| !ctes.contains(&table.name.to_lowercase()))
        .collect()
}

/// The names of a query's output columns, when its SELECT list names each one (no `*`, every
/// expression a column or aliased); unquoted names fold to lower case, as DataFusion folds them.
pub(crate) fn output_columns(statements: &[Statement]) -> Option<Vec<String>> {
    let [Statement::Query(query)] = statements else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let name = |ident: &Ident| match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    };
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(name(alias)),
            SelectItem::UnnamedExpr(Expr::Identifier(ident)) => Some(name(ident)),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts.last().map(name),
            _ => None,
        })
        .collect()
}

/// Runs `query` over the tables registered in `session` (one per upstream task, named by its id).
pub(crate) async fn run(session: &SessionContext, query: &str) -> Result<Table, DataFusionError> {
    let frame = session.sql(query).await?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    Ok(Table::new(schema, batches))
}

/// Runs `query` as [`run`] does, keeping its result on disk below `spill_dir` once it holds more
/// than [`CHUNK_ROWS`](crate::table::spill::CHUNK_ROWS) rows or `chunk_bytes`: one chunk in memory
/// at a time.
pub(crate) async fn run_spilling(
    session: &SessionContext,
    query: &str,
    (spill_dir, chunk_bytes): (&std::path::Path, usize),
    name: &str,
) -> Result<Table, TaskError> {
    use crate::table::spill::{CHUNK_ROWS, SpillWriter, finish_apart, write_apart};
    use futures::StreamExt as _;
    let frame = session.sql(query).await?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let mut stream = frame.execute_stream().await?;
    let (mut held, mut rows, mut bytes) = (Vec::new(), 0, 0);
    let mut spill: Option<SpillWriter> = None;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows();
        // What the batch's rows take, not the buffers its slices share with other batches.
        bytes += batch
            .columns()
            .iter()
            .map(|column| column.to_data().get_slice_memory_size().unwrap_or(0))
            .sum::<usize>();
        held.push(batch);
        if rows >= CHUNK_ROWS || bytes >= chunk_bytes {
            let chunk = datafusion::arrow::compute::concat_batches(&schema, &std::mem::take(&mut held))
                .map_err(TaskError::caused)?;
            (rows, bytes) = (0, 0);
            let writer = match spill.take() {
                Some(writer) => writer,
                None => SpillWriter::new(spill_dir, name).map_err(TaskError::caused)?,
            };
            spill = Some(write_apart(writer, chunk, 0).await?);
        }
    }
    let Some(writer) = spill else {
        return Ok(Table::new(schema, held));
    };
    let chunk = datafusion::arrow::compute::concat_batches(&schema, &held).map_err(TaskError::caused)?;
    let writer = write_apart(writer, chunk, 0).await?;
    let spill = finish_apart(writer).await?;
    Ok(Table::spilled(spill))
}

/// The message of a DataFusion error, and the line and column inside the SQL text it points at.
pub(crate) fn explain(error: &DataFusionError, sql: &str) -> (String, Option<(usize, usize)>) {
    if let Some(diagnostic) = error.diagnostic()
        && let Some(span) = diagnostic.span
        && span.start.line > 0
    {
        let position = (span.start.line as usize, span.start.column.max(1) as usize);
        let mut message = diagnostic.message.clone();
        for note in diagnostic
            .notes
            .iter()
            .map(|n| &n.message)
            .chain(diagnostic.helps.iter().map(|h| &h.message))
        {
            message.push_str("; ");
            message.push_str(note);
        }
        return (message, Some(position));
    }
    if let DataFusionError::SQL(parser, _) = error.find_root() {
        let found = sql_error(parser.as_ref().clone(), sql);
        return (found.message, Some((found.line, found.column)));
    }
    let message = error.strip_backtrace();
    let message = message
        .strip_prefix("Error during planning: ")
        .or_else(|| message.strip_prefix("Schema error: "))
        .unwrap_or(&message)
        .to_owned();
    (message, None)
}

/// A DataFusion session for transforms and alert conditions: SQL positions kept for error messages,
/// plain `Utf8` text so stored column types stay stable.
pub(crate) fn session() -> SessionContext {
    SessionContext::new_with_config(config())
}

/// A [`session`] whose queries keep within `memory_limit` bytes: sorts, joins and aggregates that
/// need more spill to files in `spill_dir` (and fail only when even that is not enough).
pub(crate) fn session_within(
    memory_limit: usize,
    spill_dir: &std::path::Path,
) -> Result<SessionContext, DataFusionError> {
    use datafusion::execution::memory_pool::FairSpillPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(memory_limit)))
        .with_temp_file_path(spill_dir)
        .build_arc()?;
    let mut config = config();
    // A sort keeps this much back for merging what it spilled: a sixteenth of the limit at most.
    let reservation = &mut config.options_mut().execution.sort_spill_reservation_bytes;
    *reservation = (*reservation).min(memory_limit / 16);
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

fn config() -> SessionConfig {
    let mut config = SessionConfig::new().with_information_schema(false);
    let options = config.options_mut();
    options.sql_parser.collect_spans = true;
    options.sql_parser.map_string_types_to_utf8view = false;
    options.execution.parquet.schema_force_view_types = false;
    config
}

/// Registers `table` in `session` under `name`, spread over the session's partitions; rows on disk
/// are read from their files as a query goes, never all at once.
pub(crate) fn register(session: &SessionContext, name: &str, table: &Table) -> Result<(), DataFusionError> {
    if let Some(spill) = &table.spill {
        use datafusion::datasource::file_format::parquet::ParquetFormat;
        use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
        let urls = spill
            .files()
            .iter()
            .map(|file| ListingTableUrl::parse(file.to_string_lossy()))
            .collect::<Result<Vec<_>, _>>()?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(table.schema.clone());
        session.deregister_table(name)?;
        session.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
        return Ok(());
    }
    let partitions = session.copied_config().target_partitions().max(1);
    let mut split: Vec<Vec<_>> = vec![Vec::new(); partitions.min(table.batches.len()).max(1)];
    for (i, batch) in table.batches.iter().enumerate() {
        let slot = i % split.len();
        split[slot].push(batch.clone());
    }
    let memory = MemTable::try_new(table.schema.clone(), split)?;
    session.deregister_table(name)?;
    session.register_table(name, Arc::new(memory))?;
    Ok(())
}

/// Places errors in one task's SQL text (its params, its `expect` checks) at their line and column in
/// the product file, and other errors at the node they concern.
#[derive(Clone, Copy)]
pub(crate) struct Locator<'a> {
    pub(crate) source: &'a SourceFile,
    /// The task's index in `tasks:`.
    pub(crate) index: usize,
}

impl Locator<'_> {
    /// A DataFusion error in the SQL text `sql` at `field` (a path under the task, such as
    /// `params/query`), placed where DataFusion says.
    pub(crate) fn error(&self, field: &str, sql: &str, error: &DataFusionError) -> TaskError {
        let (message, position) = explain(error, sql);
        self.error_at(field, sql, &message, position)
    }

    /// `message`, placed at `position` (line, column) inside the SQL text `sql` at `field` (a
    /// path under the task) when known.
    pub(crate) fn error_at(
        &self,
        field: &str,
        sql: &str,
        message: &str,
        position: Option<(usize, usize)>,
    ) -> TaskError {
        let pointer = format!("/tasks/{}/{field}", self.index);
        let located = position.and_then(|(line, column)| locate(self.source, &pointer, sql, line, column));
        match located {
            Some(at) => TaskError::permanent(format!(
                "{}:{}:{}: {message}",
                self.source.path().display(),
                at.line,
                at.column
            )),
            None => TaskError::permanent(format!("`{}`: {message}", field.rsplit('/').next().unwrap_or(field))),
        }
    }

    /// `message`, placed at the start of the node at `field` (a path under the task, such as
    /// `checks/2`).
    pub(crate) fn error_at_node(&self, field: &str, message: &str) -> TaskError {
        let pointer = format!("/tasks/{}/{field}", self.index);
        let (document, _) = crate::spec::yaml::load(self.source);
        match document.and_then(|d| d.spans.node(&pointer).map(|node| node.value.start)) {
            Some(offset) => {
                let at = self.source.line_column(offset);
                let file = self.source.path().display();
                TaskError::permanent(format!("{file}:{}:{}: {message}", at.line, at.column))
            }
            None => TaskError::permanent(message.to_owned()),
        }
    }
}

/// The position in the product file of `line`:`column` inside the SQL string at `pointer`.
pub(crate) fn locate(source: &SourceFile, pointer: &str, sql: &str, line: usize, column: usize) -> Option<LineColumn> {
    let (document, _) = crate::spec::yaml::load(source);
    let node = document?.spans.exact(pointer)?.clone();
    Some(source.line_column(content_offset(source, &node, sql, line, column)))
}

/// Splits sqlparser's "… at Line: L, Column: C" into a message and a position.
fn sql_error(error: ParserError, sql: &str) -> SqlError {
    let text = match error {
        ParserError::TokenizerError(text) | ParserError::ParserError(text) => text,
        ParserError::RecursionLimitExceeded => "the query is nested too deeply".to_owned(),
    };
    if let Some((message, at)) = text.rsplit_once(" at Line: ")
        && let Some((line, column)) = at.split_once(", Column: ")
        && let (Ok(line), Ok(column)) = (line.trim().parse(), column.trim().parse())
    {
        return SqlError {
            message: message.to_owned(),
            line,
            column,
        };
    }
    // Errors at the end of input carry no position: point after the last character.
    let line = sql.trim_end().lines().count().max(1);
    let column = sql.trim_end().lines().last().map_or(0, |l| l.chars().count()) + 1;
    SqlError {
        message: text,
        line,
        column,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_upstream_tables_but_not_ctes() {
        let sql =
            "WITH daily AS (SELECT * FROM orders)\nSELECT * FROM daily JOIN regions r ON true, generate_series(1, 3)";
        let names: Vec<_> = tables(&parse_query(sql).unwrap()).into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["orders", "regions"]);
    }

    #[test]
    fn output_columns_when_the_select_list_names_them() {
        let columns = |sql: &str| output_columns(&parse_query(sql).unwrap());
        assert_eq!(
            columns("SELECT CAST(time AS TIMESTAMP) AS observed_at, t.Temp, \"Rain\" FROM t").unwrap(),
            ["observed_at", "temp", "Rain"]
        );
        assert_eq!(columns("SELECT * FROM t"), None);
        assert_eq!(columns("SELECT a + 1 FROM t"), None);
        assert_eq!(columns("SELECT a FROM t UNION SELECT b FROM u"), None);
    }

    #[test]
    fn errors_carry_positions() {
        let error = parse_query("SELECT a\nFROM t\nWHERE a = = b").unwrap_err();
        assert_eq!((error.line, error.column), (3, 11));
        assert!(error.message.contains("found: ="), "{}", error.message);
        assert!(parse_query("DELETE FROM t").is_err());
        assert!(parse_query("SELECT 1; SELECT 2").is_err());
        let error = parse_condition("a > 1 b").unwrap_err();
        assert_eq!((error.line, error.column), (1, 7));
        assert!(parse_condition("temperature_2m > 30 OR precipitation > 10").is_ok());
    }
}
