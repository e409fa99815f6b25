//! `dpf run PRODUCT`

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use anyhow::Context as _;

use crate::extract::items::Shard;
use crate::log::LogFormat;
use crate::plan::logical::Logical;
use crate::receipt::Outcome;
use crate::receipt::RunStatus;
use crate::run::{self, CursorUse, HttpMode, Options};
use crate::spec::Product;
use crate::state::{RunRecord, StateStore};
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
    /// Incremental extracts start from their `initial` instead of the saved cursor.
    #[arg(long)]
    full_refresh: bool,
    /// Run as shard I of N (from 0): the fan-out extracts take only their share of the items.
    /// Default: from CLOUD_RUN_TASK_INDEX/CLOUD_RUN_TASK_COUNT, or JOB_COMPLETION_INDEX with the
    /// product's `shards:`.
    #[arg(long, value_name = "I/N", value_parser = Shard::parse)]
    shard: Option<Shard>,
    /// The memory the run's queries (transforms, checks, alerts) keep within, e.g. 2GiB; sorts,
    /// joins and aggregates that need more spill to disk [default: half the machine's memory].
    #[arg(long, value_name = "SIZE", value_parser = crate::spec::size::parse)]
    memory_limit: Option<u64>,
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
    // The runtime (its threads, the signal handlers) is made while the product is found and checked.
    let runtime = crate::parallel::Alongside::start(|| Runtime::new(true));
    let checked = find(&args.product.product, &args.product.products.products);
    let runtime = runtime.wait()?;
    let checked = checked?;
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
    let shard = shard(args.shard, product)?;
    let Some(_lock) = lock(&data_dir, product, shard)? else {
        return Ok(Exit::Busy);
    };
    let mut logical = logical(product, args.at)?;
    if let Some(shard) = shard {
        logical.run_id = shard.run_id(&logical.run_id);
    }
    let options = Options {
        target: args.product.target.target,
        secrets: args.product.target.secrets(),
        alerts: args.product.target.alerts,
        data_dir,
        http,
        log_format: args.log_format,
        logical,
        timeout: args.timeout,
        cursors: if args.full_refresh {
            CursorUse::FullRefresh
        } else {
            CursorUse::Saved
        },
        shard,
        memory_limit: args.memory_limit.unwrap_or_else(run::default_memory_limit),
    };
    let mut outcome = execute(&runtime, product, &checked, options)?;
    // Rows kept on disk go with the tables that hold them, and their folder after them.
    outcome.tables.clear();
    let _ = std::fs::remove_dir(run::spill_dir());
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

/// The shard this run is: `--shard`, else what the scheduler says (see [`Shard::from_env`]). Only a
/// product with a fan-out extract can be sharded: any other would run whole in every shard.
fn shard(given: Option<Shard>, product: &Product) -> anyhow::Result<Option<Shard>> {
    let shard = match given {
        Some(shard) => Some(shard),
        None => Shard::from_env(|name| std::env::var(name).ok(), product.shards).map_err(anyhow::Error::msg)?,
    };
    if let Some(shard) = shard
        && !product.tasks.iter().any(|task| task.fan_out.is_some())
    {
        anyhow::bail!(
            "{} has no `for_each` extract to share between shards, so shard {shard} would run all of it again; \
             run it as one process",
            product.name
        );
    }
    Ok(shard)
}

/// The run lock of `product` (of its `shard`); `None` (said on stderr) when another run holds it.
pub(super) fn lock(
    data_dir: &Path,
    product: &Product,
    shard: Option<Shard>,
) -> anyhow::Result<Option<crate::run::lock::RunLock>> {
    let name = match shard {
        Some(shard) => format!("{}.shard-{}-of-{}", product.name, shard.index, shard.count),
        None => product.name.clone(),
    };
    match crate::run::lock::acquire(data_dir, &name) {
        Ok(lock) => Ok(Some(lock)),
        Err(error @ crate::run::lock::LockError::Busy { .. }) => {
            eprintln!("dpf: {error}");
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

/// Runs `product` on `runtime`, stopping cleanly when its stop token is cancelled (SIGINT, SIGTERM).
/// Incremental extracts start from the cursors in the target's state store; the run is recorded
/// there when it ends, with the cursors it leaves once every store has committed.
pub(super) fn execute(
    runtime: &Runtime,
    product: &Product,
    checked: &Checked,
    options: Options,
) -> anyhow::Result<Outcome> {
    let source = checked.source.clone();
    runtime.block_on(async {
        // Projects and credentials are checked before anything is extracted.
        let cloud = match options.target {
            Target::Gcp => Some(std::sync::Arc::new(
                crate::target::gcp::cloud::Cloud::connect(product, crate::http::client()).await?,
            )),
            Target::Local => None,
        };
        let state = state_store(product, options.target, &options.data_dir, cloud.as_ref()).await;
        let incremental = product.tasks.iter().any(|task| task.incremental.is_some());
        let saved = match (&state, options.cursors, incremental) {
            (Ok(state), CursorUse::Saved, true) => {
                state
                    .read(&product.name)
                    .await
                    .with_context(|| format!("cannot read the cursors of {} from {}", product.name, state.location()))?
                    .cursors
            }
            (Err(why), CursorUse::Saved | CursorUse::FullRefresh, true) => {
                anyhow::bail!("{} has incremental extracts but no state store: {why}", product.name)
            }
            _ => Default::default(),
        };
        let cursors = match options.cursors {
            CursorUse::Window => crate::plan::Cursors::Window,
            CursorUse::Saved | CursorUse::FullRefresh => crate::plan::Cursors::Saved(&saved),
        };
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
                cursors,
                shard: options.shard,
            },
        );
        let (target, log_format, window) = (options.target, options.log_format, options.cursors == CursorUse::Window);
        let prepared = state.as_ref().ok().and_then(StateStore::prepare);
        let mut outcome = run::run(&plan, source, options, cloud, runtime.stop.clone()).await;
        if let Some(prepared) = prepared {
            let _ = prepared.await;
        }
        let log = crate::log::Log::new(
            log_format,
            &product.name,
            &outcome.receipt.run_id,
            crate::secrets::Secrets::default(),
        );
        match &state {
            Ok(state) => {
                // The cursors move only when every store committed: a store that failed leaves
                // the old cursor, and the next run reads its rows again.
                let stored = plan
                    .steps
                    .iter()
                    .filter(|step| step.role == crate::spec::Role::Store)
                    .all(|step| {
                        outcome
                            .receipt
                            .tasks
                            .iter()
                            .any(|t| t.id == step.id && t.status == crate::receipt::TaskStatus::Succeeded)
                    });
                if window || !stored {
                    outcome.cursors.clear();
                }
                let record = RunRecord::of(&outcome.receipt);
                if let Err(error) = state.commit(&product.name, &outcome.cursors, record).await {
                    log.warn(
                        None,
                        None,
                        format!(
                            "the run is not recorded in {} and its cursors are not saved (the next run reads \
                             from the old ones): {}",
                            state.location(),
                            crate::error::chain(&error)
                        ),
                    );
                    outcome.cursors.clear();
                }
            }
            Err(why) if target == Target::Gcp => log.warn(None, None, format!("the run is not recorded: {why}")),
            Err(_) => {}
        }
        Ok(outcome)
    })
}

/// The state store of `product` on `target`, connecting to Google Cloud for the gcp target.
pub(super) async fn connected_state(product: &Product, target: Target, data_dir: &Path) -> anyhow::Result<StateStore> {
    let cloud = match target {
        Target::Gcp => Some(std::sync::Arc::new(
            crate::target::gcp::cloud::Cloud::connect(product, crate::http::client()).await?,
        )),
        Target::Local => None,
    };
    state_store(product, target, data_dir, cloud.as_ref())
        .await
        .map_err(anyhow::Error::msg)
}

/// The target's state store: the data dir's `state.db`, or Firestore in the product's project
/// (`GCP_PROJECT`/`GOOGLE_CLOUD_PROJECT`, else its first store's project, else the credentials').
async fn state_store(
    product: &Product,
    target: Target,
    data_dir: &Path,
    cloud: Option<&std::sync::Arc<crate::target::gcp::cloud::Cloud>>,
) -> Result<StateStore, String> {
    let (Target::Gcp, Some(cloud)) = (target, cloud) else {
        return Ok(StateStore::Local(crate::state::local::path(data_dir)));
    };
    let project = match crate::target::gcp::project::configured(None).or_else(|| {
        product
            .tasks
            .iter()
            .find_map(|task| cloud.project(&task.id).map(str::to_owned))
    }) {
        Some(project) => Some(project),
        None => crate::target::gcp::project::detected().await,
    };
    match project {
        Some(project) => Ok(StateStore::Gcp {
            cloud: cloud.clone(),
            project,
        }),
        None => Err("no Google Cloud project for it: set GCP_PROJECT".to_owned()),
    }
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
