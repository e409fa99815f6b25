//! `dpf run PRODUCT`

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::run::log::LogFormat;
use crate::run::receipt::RunStatus;
use crate::run::{self, HttpMode, Options, Outcome};
use crate::spec::Product;
use crate::target::Target;
use crate::validate::Checked;

use super::plan::{Format, find, invalid};
use super::{Exit, ProductsArgs, TargetArgs, print};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A product name (looked up in --products) or a product file.
    product: String,
    #[command(flatten)]
    products: ProductsArgs,
    #[command(flatten)]
    target: TargetArgs,
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
}

/// The fixtures of `product` by default: `fixtures/<name>/` beside its file.
pub fn default_fixtures(file: &Path, product: &Product) -> PathBuf {
    file.parent()
        .unwrap_or(Path::new("."))
        .join("fixtures")
        .join(&product.name)
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let checked = find(&args.product, &args.products.products)?;
    let Some(product) = &checked.product else {
        return Ok(invalid(&checked));
    };
    if args.target.target == Target::Gcp {
        anyhow::bail!(
            "the gcp target is not available in this version of dpf; run on the local target (the default, \
             or --target local)"
        );
    }
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
    let options = Options {
        target: args.target.target,
        data_dir: crate::target::data_dir(args.target.data_dir.as_deref()),
        http,
        log_format: args.log_format,
    };
    let outcome = execute(product, &checked, options)?;
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
    Ok(match receipt.exit_code {
        0 => Exit::Success,
        1 => Exit::Failure,
        75 => Exit::Transient,
        _ => Exit::Interrupted,
    })
}

/// Runs `product` on a runtime of its own, stopping cleanly on SIGINT or SIGTERM.
pub fn execute(product: &Product, checked: &Checked, options: Options) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let cancel = CancellationToken::new();
    let source = checked.source.clone();
    runtime.block_on(async {
        tokio::spawn(stop_on_signal(cancel.clone()));
        Ok(run::run(product, source, options, cancel).await)
    })
}

async fn stop_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return;
    };
    let name = tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    };
    eprintln!("dpf: {name} received: stopping; nothing half-done is committed");
    cancel.cancel();
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
