//! `dpf query "SQL"`: SQL over the local warehouse, each table named `dataset.table`.

use std::path::PathBuf;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;

use crate::store::local::{tables, warehouse_dir};

use super::{Exit, print};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The query, e.g. "SELECT * FROM weather_data.weather_records LIMIT 10".
    sql: String,
    /// Data dir of the local target [env: DPF_DATA_DIR] [default: .dpf]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub(super) fn run(args: Args) -> anyhow::Result<Exit> {
    let data_dir = crate::target::data_dir(args.data_dir.as_deref());
    let runtime = super::runtime::Runtime::new(false)?;
    let warehouse = warehouse_dir(&data_dir);
    let tables = tables::tables(&warehouse);
    let result = runtime.block_on(async {
        let session = crate::transform::sql::session();
        tables::register(&session, &warehouse).await?;
        collect(&session, &args.sql).await
    });
    let batches = match result {
        Ok(batches) => batches,
        Err(error) => {
            let (message, _) = crate::transform::sql::explain(&error, &args.sql);
            eprintln!("error: {message}");
            if ["DDL not supported", "DML not supported", "Statement not supported"]
                .iter()
                .any(|refused| message.contains(refused))
            {
                eprintln!(
                    "  dpf query only reads the warehouse: SELECT, WITH, EXPLAIN; products write through dpf run"
                );
            }
            if matches!(error.find_root(), DataFusionError::Plan(_) | DataFusionError::SQL(..))
                && message.contains("not found")
            {
                if tables.is_empty() {
                    eprintln!(
                        "  the warehouse {} has no tables yet: run a product first",
                        warehouse.display()
                    );
                } else {
                    let names: Vec<String> = tables.iter().map(|(d, t, _)| format!("{d}.{t}")).collect();
                    eprintln!("  tables in {}: {}", warehouse.display(), names.join(", "));
                }
            }
            return Ok(match error.find_root() {
                DataFusionError::SQL(..) | DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => Exit::Usage,
                _ => Exit::Failure,
            });
        }
    };
    print(&render(&batches, args.format)?)?;
    Ok(Exit::Success)
}

/// Runs `sql` read-only: `dpf query` reads the warehouse and never writes (no `COPY … TO`, no
/// `CREATE`, no `INSERT`, no `SET`).
async fn collect(session: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, DataFusionError> {
    let read_only = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    session.sql_with_options(sql, read_only).await?.collect().await
}

fn render(batches: &[RecordBatch], format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Table => pretty_format_batches(batches)?.to_string() + "\n",
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for batch in batches {
                    writer.write(batch)?;
                }
            }
            String::from_utf8(out)?
        }
        Format::Json => {
            let mut writer = datafusion::arrow::json::ArrayWriter::new(Vec::new());
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs)?;
            writer.finish()?;
            let mut text = String::from_utf8(writer.into_inner())?;
            if text.is_empty() {
                text.push_str("[]");
            }
            text + "\n"
        }
    })
}
