//! `dpf run`: executes a product's plan once. Stages run in order; the tasks of a stage run
//! concurrently; a failed task stops the tasks that need it; every store commits atomically.

pub mod error;
pub mod lock;
pub mod log;
pub mod receipt;
pub mod retry;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::alert::{Channel, SendAlerts, message, outbox};
use crate::extract::ExtractHttp;
use crate::http::{Fixtures, Transport};
use crate::plan::logical::Logical;
use crate::plan::{self, Step, template};
use crate::secrets::{Mode, Secrets};
use crate::spec::SourceFile;
use crate::spec::{Call, Product};
use crate::store::local::{documents, warehouse};
use crate::table::{Cell, RowsBuilder, Table};
use crate::target::{Destination, Target};
pub use error::{ErrorKind, TaskError};
use log::{Log, LogFormat};
use receipt::{AlertReceipt, Receipt, RunStatus, TaskReceipt, TaskStatus, Trigger};
use retry::{OnStop, Policy};

/// Where HTTP requests go.
#[derive(Debug, Clone)]
pub enum HttpMode {
    Live,
    /// Live, and each extract's exchanges saved into this folder.
    Record(PathBuf),
    /// Served from the fixtures in this folder; no network.
    Replay(PathBuf),
}

pub struct Options {
    pub target: Target,
    pub data_dir: PathBuf,
    pub http: HttpMode,
    pub log_format: LogFormat,
    /// The tick this run stands for; its run id makes reruns of the tick idempotent.
    pub logical: Logical,
    /// Bounds the whole run; when it passes, the run stops as if interrupted and exits 75.
    pub timeout: Option<Duration>,
}

/// What the tasks of one run share.
pub struct Env {
    pub product: String,
    pub run_id: String,
    pub target: Target,
    pub data_dir: PathBuf,
    pub transport: Transport,
    pub secrets: Secrets,
    pub session: SessionContext,
    pub log: Log,
    pub cancel: CancellationToken,
    pub record_dir: Option<PathBuf>,
    pub replay: bool,
    pub source: SourceFile,
    /// Google Cloud access on the gcp target.
    pub cloud: Option<Arc<crate::gcp::Cloud>>,
}

/// One task of a run, as its component sees it.
pub struct Task<'a> {
    pub env: &'a Env,
    pub id: &'a str,
    pub index: usize,
    pub policy: Policy,
}

/// How a run ended, with the rows each data-producing task yielded.
pub struct Outcome {
    pub receipt: Receipt,
    pub tables: HashMap<String, Table>,
}

/// What a task did, for its receipt.
#[derive(Default)]
struct Done {
    table: Option<Table>,
    rows: Option<u64>,
    bytes: Option<u64>,
    pages: Option<u64>,
    destinations: Vec<String>,
    alerts: Vec<AlertReceipt>,
}

/// A DataFusion session for transforms and alert conditions: SQL positions kept for error messages,
/// plain `Utf8` text so stored column types stay stable.
pub fn session() -> SessionContext {
    let mut config = SessionConfig::new().with_information_schema(false);
    let options = config.options_mut();
    options.sql_parser.collect_spans = true;
    options.sql_parser.map_string_types_to_utf8view = false;
    options.execution.parquet.schema_force_view_types = false;
    SessionContext::new_with_config(config)
}

/// Registers `table` in `session` under `name`, spread over the session's partitions.
pub fn register(session: &SessionContext, name: &str, table: &Table) -> Result<(), TaskError> {
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

/// `call` with the templates in its params rendered for `logical`.
fn render(call: &Call, logical: &Logical) -> Result<Call, TaskError> {
    let value = serde_json::to_value(call).expect("params serialize");
    let rendered = template::render_json(&value, logical).map_err(|e| TaskError::permanent(e.message))?;
    Call::new(call.function(), rendered).map_err(|e| TaskError::permanent(format!("params: {e}")))
}

/// Runs `product` once. Never panics on bad input: every failure ends up in the receipt.
pub async fn run(
    product: &Product,
    source: SourceFile,
    options: Options,
    cloud: Option<Arc<crate::gcp::Cloud>>,
    cancel: CancellationToken,
) -> Outcome {
    let started = Utc::now();
    let clock = Instant::now();
    let run_id = options.logical.run_id.clone();
    let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(limit) = options.timeout {
        let (cancel, timed_out) = (cancel.clone(), timed_out.clone());
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            timed_out.store(true, std::sync::atomic::Ordering::SeqCst);
            cancel.cancel();
        });
    }
    let secrets = match options.target {
        Target::Gcp => Secrets::from_secret_manager(),
        Target::Local => Secrets::new(),
    };
    let log = Log::new(options.log_format, &product.name, &run_id, secrets.clone());
    let plan = plan::build(
        product,
        &plan::Context {
            file: source.path(),
            target: options.target,
            data_dir: &options.data_dir,
            now: options.logical.time,
        },
    );
    let (transport, record_dir, replay) = match &options.http {
        HttpMode::Live => (Transport::live(), None, false),
        HttpMode::Record(dir) => (Transport::record(), Some(dir.clone()), false),
        HttpMode::Replay(dir) => (Transport::Replay(Fixtures::new(dir)), None, true),
    };
    let env = Env {
        product: product.name.clone(),
        run_id: run_id.clone(),
        target: options.target,
        data_dir: options.data_dir.clone(),
        transport,
        secrets,
        session: session(),
        log,
        cancel,
        record_dir,
        replay,
        source,
        cloud,
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
            "run {run_id} of {} started on the {} target, data interval [{}, {}){}",
            product.name,
            target_name(options.target),
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
        })
        .collect();
    let mut tables: HashMap<String, Table> = HashMap::new();
    let mut alerts = Vec::new();
    let index_of: HashMap<&str, usize> = plan.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();

    // Every reference is read before the first task runs: a missing secret stops the run before
    // anything is written.
    let prefetched = env.secrets.prefetch(&references_of(product, &env)).await;
    if let Err((task, error)) = &prefetched {
        let i = index_of[task.as_str()];
        let message = env.secrets.redact(&format!("{error}"));
        env.log.error(Some(task), None, message.clone());
        receipts[i].status = TaskStatus::Failed;
        receipts[i].attempts = 1;
        receipts[i].error = Some(message);
        receipts[i].error_kind = Some(if error.is_transient() {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        });
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
            let summary = &summary_so_far;
            let env = &env;
            let step = &plan.steps[i];
            let logical = &options.logical;
            async move {
                match render(&product.tasks[i].call, logical) {
                    Ok(call) => (i, run_task(env, &call, step, i, tables, summary).await),
                    Err(error) => (i, (Err(error), 1, Duration::ZERO)),
                }
            }
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
                    alerts.extend(done.alerts);
                    if let Some(table) = done.table {
                        if let Err(error) = register(&env.session, &id, &table) {
                            receipt.status = TaskStatus::Failed;
                            receipt.error = Some(error.message);
                            receipt.error_kind = Some(ErrorKind::Permanent);
                            continue;
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
    } else if receipts.iter().any(|r| r.status == TaskStatus::Failed) {
        RunStatus::FailedTransient
    } else {
        RunStatus::Succeeded
    };
    if matches!(
        status,
        RunStatus::Failed | RunStatus::FailedTransient | RunStatus::TimedOut
    ) {
        alerts.extend(failure_alerts(&env, product, &receipts).await);
    }
    let receipt = Receipt {
        version: receipt::VERSION,
        run_id,
        product: product.name.clone(),
        target: options.target,
        data_dir: (options.target == Target::Local).then(|| options.data_dir.display().to_string()),
        replay,
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
    Outcome { receipt, tables }
}

fn target_name(target: Target) -> &'static str {
    match target {
        Target::Local => "local",
        Target::Gcp => "gcp",
    }
}

/// Runs one task with its retries and timeout; returns its result, attempts and duration.
async fn run_task(
    env: &Env,
    call: &Call,
    step: &Step,
    index: usize,
    tables: &HashMap<String, Table>,
    so_far: &[TaskReceipt],
) -> (Result<Done, TaskError>, u32, Duration) {
    let clock = Instant::now();
    let task = Task {
        env,
        id: &step.id,
        index,
        policy: Policy::new(step.retries, step.retry_delay_minutes),
    };
    let timeout = step
        .timeout_minutes
        .map(|m| Duration::from_secs_f64((m * 60.0).max(0.0)));
    let (result, attempts) = match call {
        // An extract retries each request itself, keeping the pages it already has.
        Call::ExtractHttp(params) => extract(&task, params, timeout).await,
        Call::ExtractWeather(weather) => extract(&task, &weather.to_http(), timeout).await,
        _ => {
            let on_retry = |retrying: retry::Retrying<'_>| {
                env.log.warn(
                    Some(&step.id),
                    Some(retrying.attempt),
                    format!(
                        "attempt {} of {} failed ({}); retrying in {:.1} s",
                        retrying.attempt,
                        retrying.of,
                        retrying.error,
                        retrying.wait.as_secs_f64()
                    ),
                );
            };
            match call {
                Call::StoreToBigquery(_) | Call::StoreToFirestore(_) => {
                    retry::run(task.policy, &env.cancel, OnStop::Await, on_retry, |_| {
                        store_attempt(&task, call, step, tables, timeout)
                    })
                    .await
                }
                _ => {
                    retry::run(task.policy, &env.cancel, OnStop::Drop, on_retry, |_| {
                        with_timeout(timeout, run_other(&task, call, step, tables, so_far, &env.cancel))
                    })
                    .await
                }
            }
        }
    };
    if let Ok(done) = &result {
        let mut line = String::from("done");
        if let Some(rows) = done.rows {
            line.push_str(&format!(": {rows} rows"));
        }
        if let Some(bytes) = done.bytes {
            line.push_str(&format!(", {}", receipt::human_bytes(bytes)));
        }
        line.push_str(&format!(" in {} ms", clock.elapsed().as_millis()));
        for destination in &done.destinations {
            line.push_str(&format!(" → {destination}"));
        }
        env.log.info(Some(&step.id), Some(attempts), line);
    }
    (result, attempts, clock.elapsed())
}

async fn with_timeout<T>(
    timeout: Option<Duration>,
    work: impl Future<Output = Result<T, TaskError>>,
) -> Result<T, TaskError> {
    match timeout {
        None => work.await,
        Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            Err(TaskError::transient(format!(
                "timed out after {} s (timeout_minutes)",
                limit.as_secs_f64()
            )))
        }),
    }
}

async fn extract(task: &Task<'_>, params: &ExtractHttp, timeout: Option<Duration>) -> (Result<Done, TaskError>, u32) {
    let mut attempts = 1;
    let result = fetch(task, params, timeout, &mut attempts).await;
    (result, attempts)
}

async fn fetch(
    task: &Task<'_>,
    params: &ExtractHttp,
    timeout: Option<Duration>,
    attempts: &mut u32,
) -> Result<Done, TaskError> {
    let env = task.env;
    // Replayed requests keep their references as text: that is how recordings hold them.
    let mode = if env.replay { Mode::Literal } else { Mode::Values };
    let value = serde_json::to_value(params).expect("params serialize");
    let resolved = env
        .secrets
        .resolve_json(&value, mode)
        .map_err(|e| TaskError::caused(&e))?;
    let params = ExtractHttp::deserialize(resolved).map_err(|e| TaskError::permanent(format!("params: {e}")))?;
    if let Transport::Replay(fixtures) = &env.transport {
        fixtures.load(task.id).map_err(|e| TaskError::caused(&e))?;
    }
    let extracted = with_timeout(timeout, crate::extract::fetch::fetch(&params, task, attempts)).await?;
    Ok(Done {
        rows: Some(extracted.table.rows() as u64),
        bytes: Some(extracted.bytes as u64),
        pages: Some(extracted.pages as u64),
        table: Some(extracted.table),
        ..Done::default()
    })
}

/// Runs a transform, store or alert; `stop` is the token a store checks before it commits.
async fn run_other(
    task: &Task<'_>,
    call: &Call,
    step: &Step,
    tables: &HashMap<String, Table>,
    so_far: &[TaskReceipt],
    stop: &CancellationToken,
) -> Result<Done, TaskError> {
    let env = task.env;
    let input = || -> Result<(&str, &Table), TaskError> {
        let name = step
            .reads
            .first()
            .ok_or_else(|| TaskError::permanent("the task has no input"))?;
        let table = tables
            .get(name)
            .ok_or_else(|| TaskError::permanent(format!("the output of `{name}` is missing")))?;
        Ok((name, table))
    };
    match (call, env.target) {
        (Call::TransformSql(transform), _) => {
            let table = crate::transform::sql::run(&env.session, &transform.query)
                .await
                .map_err(|error| sql_error(task, "query", &transform.query, &error))?;
            Ok(Done {
                rows: Some(table.rows() as u64),
                table: Some(table),
                ..Done::default()
            })
        }
        (Call::StoreToBigquery(store), Target::Local) => {
            let (_, rows) = input()?;
            let warehouse = crate::store::local::warehouse_dir(&env.data_dir);
            let (store, rows, run_id) = (store.clone(), rows.clone(), env.run_id.clone());
            let written = blocking(stop, move |stop| {
                let target = warehouse::Target {
                    warehouse: &warehouse,
                    dataset: &store.dataset,
                    table: &store.table,
                    run_id: &run_id,
                };
                warehouse::write(&target, store.write, &store.key, &rows, stop)
            })
            .await?;
            Ok(Done {
                rows: Some(written.rows as u64),
                bytes: Some(written.bytes),
                destinations: destinations(call, env, ""),
                ..Done::default()
            })
        }
        (Call::StoreToFirestore(store), Target::Local) => {
            let (_, rows) = input()?;
            let path = crate::store::local::documents_path(&env.data_dir);
            let (store, rows, seed) = (store.clone(), rows.clone(), format!("{}/{}", env.run_id, task.id));
            let written = blocking(stop, move |stop| {
                documents::write(&path, &store.collection, &store.key, store.merge, &seed, &rows, stop)
            })
            .await?;
            repeated_keys(task, written.repeated);
            Ok(Done {
                rows: Some(written.documents as u64),
                destinations: destinations(call, env, ""),
                ..Done::default()
            })
        }
        (Call::StoreToBigquery(store), Target::Gcp) => {
            let (_, rows) = input()?;
            let (cloud, project) = cloud(task)?;
            let writer = crate::store::bigquery::gcp::Writer {
                run_id: &env.run_id,
                task: task.id,
                cancel: stop,
            };
            let written = crate::store::bigquery::gcp::write(cloud, project, store, &writer, rows).await?;
            let destinations = destinations(call, env, project);
            let destination = destinations.join("; ");
            if let Some(job) = &written.already_loaded {
                env.log.info(
                    Some(task.id),
                    None,
                    format!("already loaded into {destination} by job {job}; nothing to do"),
                );
            } else {
                env.log.info(
                    Some(task.id),
                    None,
                    format!(
                        "{} rows ({} bytes) into {destination} with {} load job(s), {} requests",
                        written.rows, written.bytes, written.load_jobs, written.requests
                    ),
                );
            }
            Ok(Done {
                rows: Some(written.rows),
                bytes: Some(written.bytes),
                destinations,
                ..Done::default()
            })
        }
        (Call::StoreToFirestore(store), Target::Gcp) => {
            let (_, rows) = input()?;
            let (_, project) = cloud(task)?;
            let seed = format!("{}/{}", env.run_id, task.id);
            let written = crate::store::firestore::gcp::write(project, store, &seed, rows, stop).await?;
            let destinations = destinations(call, env, project);
            env.log.info(
                Some(task.id),
                None,
                format!(
                    "{} documents into {} with {} BatchWrite requests",
                    written.documents,
                    destinations.join("; "),
                    written.requests
                ),
            );
            repeated_keys(task, written.repeated);
            Ok(Done {
                rows: Some(written.documents),
                destinations,
                ..Done::default()
            })
        }
        // E-mail and Slack go to the outbox on both targets until SendGrid and Slack delivery land.
        (Call::SendAlerts(alert), _) => send_alert(task, alert, step, tables, so_far).await,
        (Call::ExtractHttp(_) | Call::ExtractWeather(_), _) => unreachable!("extracts run through extract()"),
    }
}

/// Where `call` writes, named as the plan names it; `project` is the Google Cloud project the
/// run resolved for it (unused on the local target).
fn destinations(call: &Call, env: &Env, project: &str) -> Vec<String> {
    Destination::of(call, env.target, &env.data_dir, |_| project.to_owned())
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Warns that `repeated` rows shared a document id with an earlier row of the write.
fn repeated_keys(task: &Task<'_>, repeated: usize) {
    if repeated > 0 {
        task.env.log.warn(
            Some(task.id),
            None,
            format!(
                "{repeated} row(s) had the key of an earlier row; each key is one document, holding the last of its rows"
            ),
        );
    }
}

/// The run's Google Cloud access and the project of `task`'s store.
fn cloud<'a>(task: &Task<'a>) -> Result<(&'a Arc<crate::gcp::Cloud>, &'a str), TaskError> {
    let cloud = task
        .env
        .cloud
        .as_ref()
        .ok_or_else(|| TaskError::permanent("the gcp target was not connected"))?;
    let project = cloud
        .project(task.id)
        .ok_or_else(|| TaskError::permanent(format!("no Google Cloud project for `{}`", task.id)))?;
    Ok((cloud, project))
}

/// Runs blocking store work off the async threads. The work gets a token that `stop` cancels (and
/// so does abandoning the returned future); it checks it as it goes and just before it commits,
/// and its answer says whether it committed.
async fn blocking<T: Send + 'static, E: std::error::Error + Send + 'static>(
    stop: &CancellationToken,
    work: impl FnOnce(&CancellationToken) -> Result<T, E> + Send + 'static,
) -> Result<T, TaskError> {
    let stop = stop.child_token();
    let abandoned = stop.clone().drop_guard();
    let result = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || work(&stop)).await
    };
    abandoned.disarm();
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) if stop.is_cancelled() => Err(TaskError::stopped(error::chain(&error))),
        Ok(Err(error)) => Err(TaskError::caused(&error)),
        Err(join) => Err(TaskError::permanent(format!("the store stopped unexpectedly: {join}"))),
    }
}

/// One attempt of a store. A stop or the task's `timeout` cancels the token the store gets, which
/// it checks before it commits; the attempt is awaited, never dropped, so that the receipt says
/// what it committed.
async fn store_attempt(
    task: &Task<'_>,
    call: &Call,
    step: &Step,
    tables: &HashMap<String, Table>,
    timeout: Option<Duration>,
) -> Result<Done, TaskError> {
    let stop = task.env.cancel.child_token();
    let timer = timeout.map(|limit| {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            stop.cancel();
        })
    });
    let result = run_other(task, call, step, tables, &[], &stop).await;
    if let Some(timer) = &timer {
        timer.abort();
    }
    match (result, timeout) {
        (Err(error), Some(limit)) if error.kind == ErrorKind::Interrupted && !task.env.cancel.is_cancelled() => {
            Err(TaskError::transient(format!(
                "timed out after {} s (timeout_minutes): {}",
                limit.as_secs_f64(),
                error.message
            )))
        }
        (result, _) => result,
    }
}

/// A SQL error, placed at its line and column in the product file when DataFusion says where.
fn sql_error(task: &Task<'_>, field: &str, sql: &str, error: &datafusion::error::DataFusionError) -> TaskError {
    let (message, position) = crate::transform::sql::explain(error, sql);
    sql_error_at(task, field, sql, &message, position)
}

/// `message`, placed at `position` (line, column) inside the SQL text of `field` when known.
fn sql_error_at(task: &Task<'_>, field: &str, sql: &str, message: &str, position: Option<(usize, usize)>) -> TaskError {
    let pointer = format!("/tasks/{}/params/{field}", task.index);
    let located = position
        .and_then(|(line, column)| crate::transform::sql::locate(&task.env.source, &pointer, sql, line, column));
    match located {
        Some(at) => TaskError::permanent(format!(
            "{}:{}:{}: {message}",
            task.env.source.path().display(),
            at.line,
            at.column
        )),
        None => TaskError::permanent(format!("`{field}`: {message}")),
    }
}

async fn send_alert(
    task: &Task<'_>,
    alert: &SendAlerts,
    step: &Step,
    tables: &HashMap<String, Table>,
    so_far: &[TaskReceipt],
) -> Result<Done, TaskError> {
    let env = task.env;
    let mut fields = message::Fields {
        product: &env.product,
        task: task.id,
        run_id: &env.run_id,
        target: target_name(env.target),
        count: 0,
    };
    let (message, trigger, rows) = match (alert.condition(), step.reads.first()) {
        (Some(condition), Some(input)) => {
            if !tables.contains_key(input) {
                return Err(TaskError::permanent(format!("the output of `{input}` is missing")));
            }
            let select = format!("SELECT * FROM \"{input}\" WHERE ");
            let query = format!("{select}{condition}");
            let matching = crate::transform::sql::run(&env.session, &query)
                .await
                .map_err(|error| match &alert.when {
                    Some(when) => {
                        let (message, position) = crate::transform::sql::explain(&error, &query);
                        // On its first line, the condition starts after the SELECT in front of it.
                        let position = position.map(|(line, column)| match line {
                            1 => (1, column.saturating_sub(select.len()).max(1)),
                            _ => (line, column),
                        });
                        sql_error_at(task, "when", when, &message, position)
                    }
                    None => TaskError::from(error),
                })?;
            fields.count = matching.rows();
            if fields.count == 0 {
                env.log.info(
                    Some(task.id),
                    None,
                    format!("condition `{condition}` held for no rows; no alert"),
                );
                return Ok(Done {
                    rows: Some(0),
                    ..Done::default()
                });
            }
            let shown = first_rows(&matching, alert.max_rows as usize);
            let template = alert
                .subject
                .as_deref()
                .unwrap_or("{product}: {count} rows match alert {task}");
            let subject = message::subject(template, &fields);
            (
                message::matches(subject, &condition, &fields, &shown, alert.max_rows as usize),
                Trigger::Condition,
                fields.count,
            )
        }
        _ => {
            let template = alert.subject.as_deref().unwrap_or("{product}: run {run_id} succeeded");
            let subject = message::subject(template, &fields);
            let intro = format!(
                "Run {} of {} succeeded on the {} target.",
                env.run_id, env.product, fields.target
            );
            (
                message::summary(subject, &intro, &tasks_table(so_far)),
                Trigger::Summary,
                0,
            )
        }
    };
    let sent = deliver(env, task.id, alert, &alert.recipient, trigger, &message, rows).await?;
    Ok(Done {
        rows: Some(rows as u64),
        destinations: sent.iter().map(|a| a.destination.clone()).collect(),
        alerts: sent,
        ..Done::default()
    })
}

/// The first `count` rows of `table`.
fn first_rows(table: &Table, count: usize) -> Table {
    let mut left = count;
    let mut batches = Vec::new();
    for batch in &table.batches {
        if left == 0 {
            break;
        }
        let take = left.min(batch.num_rows());
        batches.push(batch.slice(0, take));
        left -= take;
    }
    Table::new(table.schema.clone(), batches)
}

/// Sends `message` on each of the alert's channels: SendGrid and the Slack webhook on the gcp target,
/// the outbox on the local target.
async fn deliver(
    env: &Env,
    task: &str,
    alert: &SendAlerts,
    recipients: &[String],
    trigger: Trigger,
    message: &message::Message,
    rows: usize,
) -> Result<Vec<AlertReceipt>, TaskError> {
    let resolve = |text: &str| env.secrets.resolve(text, Mode::Values).map_err(|e| secret_error(&e));
    let resolve_all = |texts: &[String]| texts.iter().map(|t| resolve(t)).collect::<Result<Vec<_>, _>>();
    let to = resolve_all(recipients)?;
    let cc = resolve_all(&alert.cc)?;
    let from = alert.from.as_deref().map(resolve).transpose()?;
    let dir = crate::target::outbox_dir(&env.data_dir);
    let mut sent = Vec::new();
    // On failure, the recipients are told by e-mail only.
    let channels = match trigger {
        Trigger::Failure => vec![Channel::Email],
        _ => alert.channels.clone(),
    };
    for channel in channels {
        let destination = Destination::of_channel(channel, env.target, &env.data_dir);
        let file = match (channel, env.target) {
            (Channel::Email, Target::Local) => {
                let path = outbox::email(&dir, &env.product, task, from.as_deref(), &to, &cc, message)
                    .map_err(|e| TaskError::caused(&e))?;
                Some(path)
            }
            (Channel::Slack, Target::Local) => {
                let path = outbox::slack(&dir, &env.product, task, message).map_err(|e| TaskError::caused(&e))?;
                Some(path)
            }
            (Channel::Email, Target::Gcp) => {
                let key = resolve(alert.sendgrid_key())?;
                let email = crate::alert::sendgrid::Email {
                    from: from.as_deref().unwrap_or(outbox::DEFAULT_FROM),
                    to: &to,
                    cc: &cc,
                    message,
                    product: &env.product,
                    run_id: &env.run_id,
                    task,
                };
                crate::alert::sendgrid::send(&key, &email).await?;
                None
            }
            (Channel::Slack, Target::Gcp) => {
                let webhook = alert
                    .slack_webhook
                    .as_deref()
                    .ok_or_else(|| TaskError::permanent("`channels` has slack but there is no `slack_webhook`"))?;
                crate::alert::slack::send(&resolve(webhook)?, message).await?;
                None
            }
        };
        let shown = match channel {
            Channel::Slack => "Slack".to_owned(),
            Channel::Email => to.join(", "),
        };
        let file = file.map(|path| path.display().to_string());
        let at = file.as_deref().map(|file| format!(" ({file})")).unwrap_or_default();
        env.log.info(
            Some(task),
            None,
            env.secrets.redact(&format!(
                "alert \"{}\" to {shown} sent to {destination}{at}",
                message.subject
            )),
        );
        sent.push(AlertReceipt {
            task: task.to_owned(),
            trigger,
            channel,
            recipients: to.iter().map(|r| env.secrets.redact(r)).collect(),
            subject: message.subject.clone(),
            rows: rows as u64,
            destination: destination.to_string(),
            file,
        });
    }
    Ok(sent)
}

/// A reference that could not be resolved: transient when Secret Manager may answer later.
fn secret_error(error: &crate::secrets::SecretError) -> TaskError {
    let message = crate::run::error::chain(error);
    if error.is_transient() {
        TaskError::transient(message)
    } else {
        TaskError::permanent(message)
    }
}

/// (task id, text) of every string in the params of the tasks that will read references, and the
/// SendGrid key of e-mail alerts on the gcp target. Extracts keep their references as text when
/// replaying, so theirs are left out then.
fn references_of(product: &Product, env: &Env) -> Vec<(String, String)> {
    let mut texts = Vec::new();
    for task in &product.tasks {
        let extract = matches!(task.call, Call::ExtractHttp(_) | Call::ExtractWeather(_));
        if extract && env.replay {
            continue;
        }
        let value = serde_json::to_value(&task.call).unwrap_or_default();
        let _ = crate::spec::map_strings(&value, &mut |text: &str| {
            if text.contains("${") {
                texts.push((task.id.clone(), text.to_owned()));
            }
            Ok::<_, std::convert::Infallible>(text.to_owned())
        });
        if let Call::SendAlerts(alert) = &task.call
            && env.target == Target::Gcp
            && alert.sends_email()
            && alert.sendgrid_api_key.is_none()
        {
            texts.push((task.id.clone(), alert.sendgrid_key().to_owned()));
        }
    }
    texts
}

/// A table of task outcomes, for summaries and failure messages.
fn tasks_table(receipts: &[TaskReceipt]) -> Table {
    let mut builder = RowsBuilder::new();
    for receipt in receipts {
        let status = format!("{:?}", receipt.status).to_lowercase();
        let row = [
            ("task", Cell::Str(receipt.id.as_str().into())),
            ("status", Cell::Str(status.into())),
            ("rows", receipt.rows.map_or(Cell::Null, |r| Cell::Int(r as i64))),
            ("attempts", Cell::Int(i64::from(receipt.attempts))),
            (
                "error",
                receipt.error.as_deref().map_or(Cell::Null, |e| Cell::Str(e.into())),
            ),
        ];
        builder.push_record(row).expect("one type per column");
    }
    Table::from_batch(builder.finish())
}

/// Messages to the `on_failure` recipients of every alert task, after a failed run.
async fn failure_alerts(env: &Env, product: &Product, receipts: &[TaskReceipt]) -> Vec<AlertReceipt> {
    let failed: Vec<&TaskReceipt> = receipts.iter().filter(|r| r.status == TaskStatus::Failed).collect();
    let mut sent = Vec::new();
    for task in &product.tasks {
        let Call::SendAlerts(alert) = &task.call else { continue };
        if alert.on_failure.is_empty() {
            continue;
        }
        let names: Vec<&str> = failed.iter().map(|r| r.id.as_str()).collect();
        let subject = format!("{}: run {} failed ({})", env.product, env.run_id, names.join(", "));
        let intro = format!(
            "Run {} of {} failed on the {} target. Failed: {}.",
            env.run_id,
            env.product,
            target_name(env.target),
            names.join(", ")
        );
        let message = message::summary(subject, &intro, &tasks_table(receipts));
        match deliver(env, &task.id, alert, &alert.on_failure, Trigger::Failure, &message, 0).await {
            Ok(receipts) => sent.extend(receipts),
            Err(error) => env
                .log
                .error(Some(&task.id), None, format!("cannot send the failure alert: {error}")),
        }
    }
    sent
}
