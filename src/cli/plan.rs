//! `dpf plan PRODUCT`

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use crate::diagnostic::render::{self, Summary};
use crate::diagnostic::{FileDiagnostics, Severity, closest};
use crate::extract::items::Shard;
use crate::log::LogFormat;
use crate::plan::{self, Context};
use crate::validate::{Checked, check_paths};

use super::{Exit, ProductArgs, print};

/// Output format of `plan` and `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Format {
    Text,
    Json,
}

/// Output format of `plan`: its text and JSON, or its task graph as a picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum PlanFormat {
    Text,
    Json,
    /// A Mermaid flowchart (GitHub renders it in Markdown).
    Mermaid,
    /// Graphviz DOT (`dot -Tsvg`).
    Dot,
}

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    product: ProductArgs,
    /// Output format; the JSON form is stable (see the README).
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
    /// Plan the run of the latest tick at or before this time (RFC 3339) instead of now; the next
    /// runs count from it too.
    #[arg(long, alias = "now", value_name = "TIMESTAMP")]
    at: Option<DateTime<Utc>>,
    /// Plan shard I of N (from 0) of a product that runs as several processes, as `dpf run --shard`.
    #[arg(long, value_name = "I/N", value_parser = Shard::parse)]
    shard: Option<Shard>,
}

pub(super) fn run(args: Args) -> anyhow::Result<Exit> {
    let checked = find(&args.product.product, &args.product.products.products)?;
    let Some(product) = &checked.product else {
        return Ok(invalid(&checked));
    };
    let data_dir = crate::target::data_dir(args.product.target.data_dir.as_deref());
    let context = Context {
        cursors: crate::plan::Cursors::Unknown,
        file: checked.source.path(),
        target: args.product.target.target,
        data_dir: &data_dir,
        now: args.at.unwrap_or_else(Utc::now),
        logical: None,
        secrets: args.product.target.secrets(),
        alerts: args.product.target.alerts,
        shard: args.shard,
    };
    let mut plan = plan::build(product, &context);
    if context.target == crate::target::Target::Gcp {
        estimate(&mut plan, product)?;
    }
    let output = match args.format {
        PlanFormat::Text => plan::render_text(&plan),
        PlanFormat::Json => serde_json::to_string_pretty(&plan)? + "\n",
        PlanFormat::Mermaid => plan::diagram::mermaid(&plan),
        PlanFormat::Dot => plan::diagram::dot(&plan),
    };
    print(&output)?;
    Ok(Exit::Success)
}

/// Asks BigQuery, in a dry run, what each query that runs there would read: the cost of the run.
/// Without credentials (or a project) each such step says why it has no estimate.
fn estimate(plan: &mut plan::Plan, product: &crate::spec::Product) -> anyhow::Result<()> {
    if plan.steps.iter().all(|step| step.warehouse.is_none()) {
        return Ok(());
    }
    let runtime = super::runtime::Runtime::new(false)?;
    runtime.block_on(async {
        let cloud = crate::target::gcp::cloud::Cloud::connect(product, crate::http::client())
            .await
            .map(std::sync::Arc::new)
            .map_err(|error| crate::error::chain(&error));
        for step in &mut plan.steps {
            let (Some(warehouse), Ok(crate::spec::Call::TransformSql(transform))) = (&mut step.warehouse, &step.call)
            else {
                continue;
            };
            let estimate = match &cloud {
                Err(why) => Err(why.clone()),
                Ok(cloud) => match cloud.project(&step.id) {
                    None => Err("no Google Cloud project".to_owned()),
                    Some(project) => crate::store::bigquery::gcp::query::dry_run(cloud, project, &transform.query)
                        .await
                        .map_err(|error| error.message),
                },
            };
            match estimate {
                Ok(bytes) => warehouse.bytes_processed = Some(bytes),
                Err(why) => warehouse.estimate_error = Some(why),
            }
        }
    });
    Ok(())
}

/// A product that does not validate, for a command that logs in `format`: in JSON logs one entry
/// per diagnostic, with its file, line, column and code as fields; otherwise as [`invalid`] shows it.
pub(super) fn invalid_logged(checked: &Checked, format: LogFormat) -> Exit {
    if format.resolved() != LogFormat::Json {
        return invalid(checked);
    }
    let product = checked.name.as_ref().map_or("", |(name, _)| name.as_str());
    let file = checked.source.path().display().to_string();
    let entries: Vec<_> = checked
        .diagnostics
        .iter()
        .map(|d| {
            let severity = match d.severity {
                Severity::Error => crate::log::Severity::Error,
                Severity::Warning => crate::log::Severity::Warning,
            };
            let at = checked.source.line_column(d.span.start);
            let mut entry = crate::log::entry(severity, &d.message, &[("product", product)]);
            entry["file"] = file.as_str().into();
            entry["line"] = at.line.into();
            entry["column"] = at.column.into();
            entry["code"] = d.code.code().into();
            entry
        })
        .collect();
    crate::log::write_entries(&entries);
    Exit::Usage
}

/// A product that does not validate: its diagnostics go to stderr, and the exit says "invalid
/// configuration".
pub(super) fn invalid(checked: &Checked) -> Exit {
    let summary = Summary {
        files: 1,
        invalid: 1,
        errors: checked.count(Severity::Error),
        warnings: checked.count(Severity::Warning),
    };
    let files = [FileDiagnostics {
        source: &checked.source,
        diagnostics: &checked.diagnostics,
    }];
    let color = super::Color::Auto.enabled_on_stderr();
    eprint!("{}", render::human(&files, summary, color));
    Exit::Usage
}

/// Finds a product by file path or by name in `products`.
pub(super) fn find(product: &str, products: &Path) -> anyhow::Result<Checked> {
    let as_path = Path::new(product);
    let looks_like_path = product.ends_with(".yaml") || product.ends_with(".yml") || product.contains('/');
    if looks_like_path || as_path.is_file() {
        let mut checked = check_paths(&[as_path.to_path_buf()])?;
        return checked
            .pop()
            .with_context(|| format!("`{product}` is not a product file"));
    }
    // The usual layout, `products/NAME.yaml`, avoids reading every file.
    for extension in ["yaml", "yml"] {
        let candidate: PathBuf = products.join(format!("{product}.{extension}"));
        if candidate.is_file() {
            let mut checked = check_paths(&[candidate])?;
            if let Some(found) = checked
                .pop()
                .filter(|c| c.name.as_ref().is_some_and(|(n, _)| n == product))
            {
                return Ok(found);
            }
        }
    }
    let all = check_paths(&[products.to_path_buf()]).with_context(|| format!("cannot look up product `{product}`"))?;
    let names: Vec<String> = all
        .iter()
        .filter_map(|c| c.name.as_ref().map(|(n, _)| n.clone()))
        .collect();
    if let Some(found) = all
        .into_iter()
        .find(|c| c.name.as_ref().is_some_and(|(n, _)| n == product))
    {
        return Ok(found);
    }
    let mut message = format!("no product named `{product}` in {}", products.display());
    if let Some(best) = closest(product, names.iter().map(String::as_str)) {
        message.push_str(&format!("; did you mean `{best}`?"));
    }
    anyhow::bail!(message)
}
