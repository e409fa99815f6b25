//! `dpf run PRODUCT`

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use anyhow::Context as _;

use crate::log::LogFormat;
use crate::plan::logical::Logical;
use crate::receipt::Outcome;
use crate::receipt::RunStatus;
use crate::run::{self, HttpMode, Options};
use crate::spec::Product;
use crate::target::Target;
use crate::validate::Checked;

use super::plan::{Format, find, invalid_logged};
use super::runtime::Runtime;
use super::{Exit, ProductArgs, print};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    product: ProductArgs,
    /// Serve HTTP requests from the product's recorded fixtures instead of the network.
    #[arg(long, conflicts_with = "record")]
    replay: bool,
    /// Run live and save every HTTP exchange as the product's fixtures (credentials scrubbed).
    #[arg(long)]
    record: bool,
    /// The fixtures folder [default: fixtures/<product> beside the product file].
    #[arg(long, value_name = "DIR")]
    fixtures: Option<PathBuf>,
    /// Also write the run's receipt (JSON) to FILE.
    #[arg(long, value_name = "FILE")]
    receipt: Option<PathBuf>,
    /// Log lines on stderr: human, JSON lines for Cloud Logging, or auto (human on a terminal).
    #[arg(long, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    /// What goes to stdout at the end: a text summary or the receipt as JSON.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Run the tick at or before this time (RFC 3339) instead of the latest one.
    #[arg(long, value_name = "TIMESTAMP")]
    at: Option<DateTime<Utc>>,
    /// Stop the whole run after this long (e.g. 90s, 30m, 2h): nothing half-done is committed, exit 75.
    #[arg(long, value_name = "DURATION", value_parser = crate::spec::duration::parse)]
    timeout: Option<Duration>,
}

/// The logical time of a run of `product` at `at` (default: now).
pub(super) fn logical(product: &Product, at: Option<DateTime<Utc>>) -> anyhow::Result<Logical> {
    crate::plan::logical::at(
        &product.name,
        product.schedule.as_deref(),
        &product.timezone,
        at.unwrap_or_else(Utc::now),
    )
    .map_err(|message| anyhow::anyhow!(message))
}

/// The fixtures of `product` by default: `fixtures/<name>/` beside its file.
pub(super) fn default_fixtures(file: &Path, product: &Product) -> PathBuf {
    file.parent()
        .unwrap_or(Path::new("."))
        .join("fixtures")
        .join(&product.name)
}

pub(super) fn run(args: Args) -> anyhow::Result<Exit> {
    let (format, product) = (args.log_format, args.product.product.clone());
    super::logged(format, &product, run_logged(args))
}

fn run_logged(args: Args) -> anyhow::Result<Exit> {
    let runtime = Runtime::new(true)?;
    let checked = find(&args.product.product, &args.product.products.products)?;
    let Some(product) = &checked.product else {
        return Ok(invalid_logged(&checked, args.log_format));
    };
    let fixtures = args
        .fixtures
        .clone()
        .unwrap_or_else(|| default_fixtures(checked.source.path(), product));
    let http = if args.replay {
        if !fixtures.is_dir() {
            anyhow::bail!(
                "no fixtures to replay: {} does not exist; record them with `dpf run {} --record`",
                fixtures.display(),
                product.name
            );
        }
        HttpMode::Replay(fixtures)
    } else if args.record {
        HttpMode::Record(fixtures)
    } else {
        HttpMode::Live
    };
    let data_dir = crate::target::data_dir(args.product.target.data_dir.as_deref());
    let Some(_lock) = lock(&data_dir, product)? else {
        return Ok(Exit::Busy);
    };
    let options = Options {
        target: args.product.target.target,
        secrets: args.product.target.secrets(),
        alerts: args.product.target.alerts,
        data_dir,
        http,
        log_format: args.log_format,
        logical: logical(product, args.at)?,
        timeout: args.timeout,
    };
    let outcome = execute(&runtime, product, &checked, options)?;
    let receipt = &outcome.receipt;
    let json = serde_json::to_string_pretty(receipt)? + "\n";
    if let Some(path) = &args.receipt {
        crate::atomic::write(path, json.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    }
    match args.format {
        Format::Json => print(&json)?,
        Format::Text => {
            let mut text = receipt.render_text();
            if receipt.status == RunStatus::Succeeded && receipt.target == Target::Local {
                text.push_str(&next_steps(product, receipt.data_dir.as_deref().unwrap_or(".dpf")));
            }
            print(&text)?;
        }
    }
    Ok(exit(receipt.status))
}

/// The exit code of a run that ended with `status`.
pub(super) fn exit(status: RunStatus) -> Exit {
    match status {
        RunStatus::Succeeded => Exit::Success,
        RunStatus::Failed => Exit::Failure,
        RunStatus::CheckFailed => Exit::DataError,
        RunStatus::FailedTransient | RunStatus::TimedOut => Exit::Transient,
        RunStatus::Interrupted => Exit::Interrupted,
    }
}

/// The run lock of `product`; `None` (said on stderr) when another run holds it.
pub(super) fn lock(data_dir: &Path, product: &Product) -> anyhow::Result<Option<crate::run::lock::RunLock>> {
    match crate::run::lock::acquire(data_dir, &product.name) {
        Ok(lock) => Ok(Some(lock)),
        Err(error @ crate::run::lock::LockError::Busy { .. }) => {
            eprintln!("dpf: {error}");
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

/// Runs `product` on `runtime`, stopping cleanly when its stop token is cancelled (SIGINT, SIGTERM).
pub(super) fn execute(
    runtime: &Runtime,
    product: &Product,
    checked: &Checked,
    options: Options,
) -> anyhow::Result<Outcome> {
    let source = checked.source.clone();
    let plan = crate::plan::build(
        product,
        &crate::plan::Context {
            file: source.path(),
            target: options.target,
            data_dir: &options.data_dir,
            now: options.logical.time,
            logical: Some(&options.logical),
            secrets: options.secrets,
            alerts: options.alerts,
        },
    );
    runtime.block_on(async {
        // Projects and credentials are checked before anything is extracted.
        let cloud = match options.target {
            Target::Gcp => Some(std::sync::Arc::new(
                crate::target::gcp::cloud::Cloud::connect(product, crate::http::client()).await?,
            )),
            Target::Local => None,
        };
        Ok(run::run(&plan, source, options, cloud, runtime.stop.clone()).await)
    })
}

fn next_steps(product: &Product, data_dir: &str) -> String {
    let mut text = String::new();
    let tables: Vec<String> = product
        .tasks
        .iter()
        .filter_map(|task| match &task.call {
            crate::spec::Call::StoreToBigquery(store) => Some(format!("{}.{}", store.dataset, store.table)),
            _ => None,
        })
        .collect();
    if let Some(first) = tables.first() {
        text.push_str(&format!(
            "\nquery the results:  dpf query \"SELECT * FROM {first} LIMIT 10\"{}\n",
            if data_dir == crate::target::DEFAULT_DATA_DIR {
                String::new()
            } else {
                format!(" --data-dir {data_dir}")
            }
        ));
    }
    text
}
