//! `dpf run`: executes a product's plan once. Stages run in order; the tasks of a stage run
//! concurrently; a failed task stops the tasks that need it; every store commits atomically.

mod checked;
pub(crate) mod lock;
mod task;
mod whole;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use tokio_util::sync::CancellationToken;

use crate::alert::send;
use crate::component::{Catalog, Services};
use crate::error::ErrorKind;
use crate::http::{Clients, Fixtures, Transport};
use crate::log::{Log, LogFormat};
use crate::plan::Plan;
use crate::plan::logical::Logical;
use crate::receipt::{self, Outcome, Receipt, RunStatus, TaskReceipt, TaskStatus};
use crate::spec::SourceFile;
use crate::spec::{Call, Function};
use crate::table::Table;
use crate::target::{AlertSink, SecretSource, Target};

/// Where HTTP requests go.
#[derive(Debug, Clone)]
pub(crate) enum HttpMode {
    Live,
    /// Live, and each extract's exchanges saved into this folder.
    Record(PathBuf),
    /// Served from the fixtures in this folder; no network.
    Replay(PathBuf),
}

pub(crate) struct Options {
    pub target: Target,
    /// Where `${secret:…}` references are read.
    pub secrets: SecretSource,
    /// Where alerts go.
    pub alerts: AlertSink,
    pub data_dir: PathBuf,
    pub http: HttpMode,
    pub log_format: LogFormat,
    /// The tick this run stands for; its run id makes reruns of the tick idempotent.
    pub logical: Logical,
    /// Bounds the whole run; when it passes, the run stops as if interrupted and exits 75.
    pub timeout: Option<Duration>,
    /// Where incremental extracts start.
    pub cursors: CursorUse,
    /// The shard the run is, if the product runs as several processes.
    pub shard: Option<crate::extract::items::Shard>,
    /// The memory the run's queries keep within, in bytes; beyond it they spill to disk.
    pub memory_limit: u64,
}

/// Where this process keeps rows too many to hold in memory.
pub(crate) fn spill_dir() -> PathBuf {
    std::env::temp_dir().join(format!("dpf-{}", std::process::id()))
}

/// The memory a run's queries keep within unless told otherwise: half of what the machine (or the
/// container) has, and 1 GiB when that is not known.
pub(crate) fn default_memory_limit() -> u64 {
    crate::spec::size::machine_memory().map_or(1 << 30, |total| total / 2)
}

/// Where a run's incremental extracts start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CursorUse {
    /// From the saved cursors; the cursors the run leaves are saved.
    Saved,
    /// From each `initial`, as if nothing were saved (`--full-refresh`); then saved.
    FullRefresh,
    /// From each run's data interval (`dpf backfill`); the saved cursors are left alone.
    Window,
}

/// Runs `plan` once, as planned for `options.logical`. Never panics on bad input: every failure
/// ends up in the receipt.
pub(crate) async fn run(
    plan: &Plan,
    source: SourceFile,
    options: Options,
    cloud: Option<Arc<crate::target::gcp::cloud::Cloud>>,
    cancel: CancellationToken,
) -> Outcome {
    let started = Utc::now();
    let clock = Instant::now();
    let run_id = options.logical.run_id.clone();
    let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The timeout stops the tasks, not the failure alerts that say the run timed out; a signal stops both.
    let signals = cancel;
    let cancel = signals.child_token();
    if let Some(limit) = options.timeout {
        let (cancel, timed_out) = (cancel.clone(), timed_out.clone());
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            timed_out.store(true, std::sync::atomic::Ordering::SeqCst);
            cancel.cancel();
        });
    }
    let secrets = options.secrets.secrets();
    let log = Log::new(options.log_format, &plan.product, &run_id, secrets.clone());
    // One HTTP client serves the run: the gcp target's REST calls, alerts and `https://` extracts
    // (`http://` extracts take one without certificate roots).
    let http = OnceLock::new();
    if let Some(cloud) = &cloud {
        let _ = http.set(cloud.http.clone());
    }
    let clients = || Clients::new(http.get().cloned());
    let (transport, record_dir, replay) = match &options.http {
        HttpMode::Live => (Transport::live(clients()), None, false),
        HttpMode::Record(dir) => (Transport::record(clients()), Some(dir.clone()), false),
        HttpMode::Replay(dir) => (Transport::Replay(Fixtures::new(dir)), None, true),
    };
    // Rows too many to hold go to a folder of this process's own, each set of them removed when
    // dropped, the folder when the run ends.
    let spill_dir = spill_dir();
    let catalog = Catalog::new(
        usize::try_from(options.memory_limit).unwrap_or(usize::MAX),
        spill_dir.clone(),
        log.clone(),
    );
    let env = Services {
        product: plan.product.clone(),
        run_id: run_id.clone(),
        target: options.target,
        alerts_to: options.alerts.target(options.target),
        data_dir: options.data_dir.clone(),
        transport,
        secrets,
        catalog,
        log,
        cancel,
        record_dir,
        replay,
        source,
        cloud,
        http,
        spill_dir,
        memory_limit: options.memory_limit,
    };
    // The stop is logged once: as soon as it comes, or at the latest when the run ends.
    let stop_logged = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let log_stop = {
        let (log, timed_out, logged) = (env.log.clone(), timed_out.clone(), stop_logged.clone());
        move || {
            if logged.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let why = if timed_out.load(std::sync::atomic::Ordering::SeqCst) {
                "the run's --timeout passed"
            } else {
                "SIGINT or SIGTERM received"
            };
            log.warn(None, None, format!("{why}: stopping; nothing half-done is committed"));
        }
    };
    {
        let (cancel, log_stop) = (env.cancel.clone(), log_stop.clone());
        tokio::spawn(async move {
            cancel.cancelled().await;
            log_stop();
        });
    }
    env.log.info(
        None,
        None,
        format!(
            "run {run_id} of {} started on the {} target (secrets from {}{}), data interval [{}, {}){}",
            plan.product,
            options.target.as_str(),
            options.secrets.as_str(),
            match options.alerts {
                AlertSink::Outbox => ", alerts to the outbox",
                AlertSink::Deliver => "",
            },
            options.logical.local(options.logical.interval_start),
            options.logical.local(options.logical.interval_end),
            if replay { ", replaying recorded responses" } else { "" }
        ),
    );

    let mut receipts: Vec<TaskReceipt> = plan
        .steps
        .iter()
        .map(|step| TaskReceipt {
            id: step.id.clone(),
            function: step.function,
            status: TaskStatus::NotRun,
            attempts: 0,
            rows: None,
            bytes: None,
            pages: None,
            duration_ms: 0,
            destinations: Vec::new(),
            error: None,
            error_kind: None,
            checks: Vec::new(),
            items: None,
        })
        .collect();
    let mut tables: HashMap<String, Table> = HashMap::new();
    // Rows that quarantine checks took out of a task's output, by task id.
    let mut rejected: HashMap<String, Table> = HashMap::new();
    let mut alerts = Vec::new();
    // The cursor each incremental extract's rows leave.
    let mut cursors = std::collections::BTreeMap::new();
    let index_of: HashMap<&str, usize> = plan.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();

    // Every reference is read before the first task runs: a missing secret stops the run before
    // anything is written.
    let prefetched = env.secrets.prefetch(&references_of(plan, &env)).await;
    if let Err((task, error)) = &prefetched {
        let i = index_of[task.as_str()];
        let message = env.secrets.redact(&format!("{error}"));
        env.log.error(Some(task), None, message.clone());
        receipts[i].attempts = 1;
        let kind = if error.is_transient() {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        };
        receipts[i].fail(message, kind);
    }

    for stage in &plan.stages {
        if env.cancel.is_cancelled() || prefetched.is_err() {
            break;
        }
        let mut runnable = Vec::new();
        for id in stage {
            let i = index_of[id.as_str()];
            let step = &plan.steps[i];
            let blocked = step
                .reads
                .iter()
                .chain(&step.after)
                .find(|up| receipts[index_of[up.as_str()]].status != TaskStatus::Succeeded);
            match blocked {
                Some(up) => {
                    receipts[i].status = TaskStatus::Skipped;
                    receipts[i].error = Some(format!("not run: `{up}` did not succeed"));
                    env.log
                        .warn(Some(&step.id), None, format!("skipped: `{up}` did not succeed"));
                }
                None => runnable.push(i),
            }
        }
        let summary_so_far = receipts.clone();
        let results = futures::future::join_all(runnable.iter().map(|&i| {
            let tables = &tables;
            let rejected = &rejected;
            let summary = &summary_so_far;
            let env = &env;
            let step = &plan.steps[i];
            async move { (i, task::run_task(env, step, i, (tables, rejected), summary).await) }
        }))
        .await;
        for (i, (result, attempts, elapsed)) in results {
            let receipt = &mut receipts[i];
            receipt.attempts = attempts;
            receipt.duration_ms = elapsed.as_millis() as u64;
            let id = receipt.id.clone();
            match result {
                Ok(done) => {
                    receipt.status = TaskStatus::Succeeded;
                    receipt.rows = done.rows;
                    receipt.bytes = done.bytes;
                    receipt.pages = done.pages;
                    receipt.destinations = done.destinations;
                    receipt.items = done.items;
                    alerts.extend(done.alerts);
                    if let Some(mut table) = done.table {
                        let incremental = plan.steps[i].incremental.as_ref().filter(|inc| inc.saves);
                        if let Some(incremental) = incremental
                            && let Some(from) = &incremental.from
                        {
                            match crate::extract::incremental::after(table, &incremental.cursor, from) {
                                Ok(kept) => {
                                    let read = receipt.rows.unwrap_or_default();
                                    receipt.rows = Some(kept.rows() as u64);
                                    if kept.rows() as u64 != read {
                                        env.log.info(
                                            Some(&id),
                                            None,
                                            format!(
                                                "incremental: kept {} of {read} rows, those after {}",
                                                kept.rows(),
                                                crate::extract::incremental::rendered(Some(from))
                                            ),
                                        );
                                    }
                                    table = kept;
                                }
                                Err(error) => {
                                    receipt.fail(env.secrets.redact(&error.to_string()), ErrorKind::Permanent);
                                    continue;
                                }
                            }
                        }
                        let checks = &plan.steps[i].checks;
                        let time = options.logical.time;
                        let Some(table) = checked::apply(&env, checks, i, time, table, receipt, &mut rejected).await
                        else {
                            continue;
                        };
                        if let Err(error) = env.catalog.publish(&id, &table) {
                            receipt.fail(error.message, ErrorKind::Permanent);
                            continue;
                        }
                        if let Some(incremental) = incremental {
                            match crate::extract::incremental::latest(&table, &incremental.cursor) {
                                Ok(Some(latest)) => {
                                    cursors.insert(id.clone(), latest);
                                }
                                Ok(None) => {}
                                Err(error) => {
                                    receipt.fail(env.secrets.redact(&error.to_string()), ErrorKind::Permanent);
                                    continue;
                                }
                            }
                        }
                        tables.insert(id, table);
                    }
                }
                Err(error) => {
                    let message = env.secrets.redact(&error.message);
                    receipt.status = match error.kind {
                        ErrorKind::Interrupted => TaskStatus::Interrupted,
                        _ => TaskStatus::Failed,
                    };
                    match error.kind {
                        ErrorKind::Interrupted => env.log.warn(Some(&id), None, format!("interrupted: {message}")),
                        _ => env.log.error(Some(&id), Some(attempts), format!("failed: {message}")),
                    }
                    receipt.error = Some(message);
                    receipt.error_kind = Some(error.kind);
                }
            }
        }
    }

    if env.cancel.is_cancelled() {
        log_stop();
    }
    let status = if timed_out.load(std::sync::atomic::Ordering::SeqCst) {
        RunStatus::TimedOut
    } else if env.cancel.is_cancelled() || receipts.iter().any(|r| r.status == TaskStatus::Interrupted) {
        RunStatus::Interrupted
    } else if receipts.iter().any(|r| r.error_kind == Some(ErrorKind::Permanent)) {
        RunStatus::Failed
    } else if receipts.iter().any(|r| r.error_kind == Some(ErrorKind::Data)) {
        RunStatus::CheckFailed
    } else if receipts.iter().any(|r| r.status == TaskStatus::Failed) {
        RunStatus::FailedTransient
    } else {
        RunStatus::Succeeded
    };
    let skipped_items = receipts
        .iter()
        .any(|r| r.items.as_ref().is_some_and(|items| !items.failed.is_empty()));
    if skipped_items
        || matches!(
            status,
            RunStatus::Failed | RunStatus::CheckFailed | RunStatus::FailedTransient | RunStatus::TimedOut
        )
    {
        let mut alert_tasks: Vec<(&str, &crate::alert::SendAlerts)> = Vec::new();
        for step in plan.steps.iter().filter(|s| s.function == Function::SendAlerts) {
            match &step.call {
                Ok(Call::SendAlerts(alert)) => alert_tasks.push((step.id.as_str(), alert)),
                Ok(_) => {}
                Err(unrendered) => env.log.error(
                    Some(&step.id),
                    None,
                    format!("cannot tell its on_failure recipients: {unrendered}"),
                ),
            }
        }
        alerts.extend(send::failure_alerts(&send::Context::of(&env, &signals), &alert_tasks, &receipts).await);
    }
    let receipt = Receipt {
        version: receipt::VERSION,
        run_id,
        product: plan.product.clone(),
        target: options.target,
        data_dir: (options.target == Target::Local).then(|| options.data_dir.display().to_string()),
        replay,
        shard: options.shard,
        logical_time: options.logical.local(options.logical.time),
        data_interval_start: options.logical.local(options.logical.interval_start),
        data_interval_end: options.logical.local(options.logical.interval_end),
        status,
        exit_code: status.exit_code(),
        started_at: started.to_rfc3339_opts(SecondsFormat::Millis, true),
        finished_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        duration_ms: clock.elapsed().as_millis() as u64,
        tasks: receipts,
        alerts,
    };
    let line = format!(
        "run finished: {:?} in {} ms (exit {})",
        status, receipt.duration_ms, receipt.exit_code
    );
    match status {
        RunStatus::Succeeded => env.log.info(None, None, line),
        _ => env.log.error(None, None, line),
    }
    Outcome {
        receipt,
        tables,
        cursors,
    }
}

/// (task id, text) of every string in the params of the tasks that will read references, and the
/// references alert tasks read beyond their params. Extracts keep their references as text when
/// replaying, so theirs are left out then.
fn references_of(plan: &Plan, env: &Services) -> Vec<(String, String)> {
    let mut texts = Vec::new();
    for step in &plan.steps {
        let extract = matches!(step.function, Function::ExtractHttp | Function::ExtractWeather);
        if extract && env.replay {
            continue;
        }
        let _ = crate::spec::map_strings(&step.params, &mut |text: &str| {
            if text.contains("${") {
                texts.push((step.id.clone(), text.to_owned()));
            }
            Ok::<_, std::convert::Infallible>(text.to_owned())
        });
        if let Ok(Call::SendAlerts(alert)) = &step.call
            && let Some(reference) = alert.implicit_reference(env.alerts_to)
        {
            texts.push((step.id.clone(), reference.to_owned()));
        }
    }
    texts
}
