//! `dpf status [PRODUCT...]`: per product the last run, the last success, the cursors, and whether
//! it is late: a freshness watchdog for cron, Cloud Scheduler or a CI job (`--check`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::receipt::RunStatus;
use crate::spec::Product;
use crate::state::{ProductState, RunRecord};
use crate::validate::check_paths;

use super::plan::Format;
use super::runtime::Runtime;
use super::{Exit, ProductsArgs, TargetArgs, print};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Products to report (names); all of those in --products by default.
    names: Vec<String>,
    #[command(flatten)]
    products: ProductsArgs,
    #[command(flatten)]
    target: TargetArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Exit 1 when any product is late or its last run failed, 0 when all are on time.
    #[arg(long)]
    check: bool,
    /// E-mail the `on_failure` recipients of each late or failed product (its alert tasks').
    #[arg(long)]
    alert: bool,
    /// Judge lateness at this time (RFC 3339) instead of now.
    #[arg(long, value_name = "TIMESTAMP")]
    at: Option<DateTime<Utc>>,
}

/// Where a product stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Standing {
    /// The tick that is due has a successful run, and the last run succeeded.
    OnTime,
    /// No successful run for the latest tick past its freshness grace.
    Late,
    /// The last run failed (the product may still be on time).
    Failed,
    /// No schedule, or its first tick is not due yet: nothing can be late.
    NotDue,
}

impl Standing {
    fn text(self) -> &'static str {
        match self {
            Standing::OnTime => "on time",
            Standing::Late => "LATE",
            Standing::Failed => "FAILED",
            Standing::NotDue => "not due",
        }
    }
}

/// One product in `dpf status`.
#[derive(Debug, Serialize)]
struct Entry {
    product: String,
    status: Standing,
    /// The latest tick whose grace has passed: it must have a successful run (UTC, RFC 3339).
    due: Option<String>,
    /// How long after its tick a run may still be missing, in seconds.
    grace_seconds: Option<i64>,
    last_run: Option<RunRecord>,
    last_success: Option<RunRecord>,
    cursors: std::collections::BTreeMap<String, Value>,
    /// Why the state could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub(super) fn run(args: Args) -> anyhow::Result<Exit> {
    let runtime = Runtime::new(false)?;
    let now = args.at.unwrap_or_else(Utc::now);
    let checked = check_paths(std::slice::from_ref(&args.products.products))?;
    let mut products: Vec<&Product> = checked.iter().filter_map(|c| c.product.as_ref()).collect();
    for name in &args.names {
        if !products.iter().any(|p| &p.name == name) {
            anyhow::bail!(
                "no valid product `{name}` in {} (see `dpf validate`)",
                args.products.products.display()
            );
        }
    }
    if !args.names.is_empty() {
        products.retain(|p| args.names.contains(&p.name));
    }
    let data_dir = crate::target::data_dir(args.target.data_dir.as_deref());
    let entries: Vec<Entry> = runtime.block_on(async {
        let mut entries = Vec::with_capacity(products.len());
        for product in products {
            let state = match super::run::connected_state(product, args.target.target, &data_dir).await {
                Ok(store) => store.read(&product.name).await.map_err(|e| crate::error::chain(&e)),
                Err(error) => Err(format!("{error:#}")),
            };
            let entry = entry(product, state, now);
            if args.alert && entry.error.is_none() && matches!(entry.status, Standing::Late | Standing::Failed) {
                alert(product, &entry, &args.target, &data_dir, now).await;
            }
            entries.push(entry);
        }
        entries
    });
    let output = match args.format {
        Format::Json => serde_json::to_string_pretty(&entries)? + "\n",
        Format::Text => table(&entries),
    };
    print(&output)?;
    let unwell = entries
        .iter()
        .any(|e| e.error.is_some() || matches!(e.status, Standing::Late | Standing::Failed));
    Ok(if args.check && unwell {
        Exit::Failure
    } else {
        Exit::Success
    })
}

/// Tells the `on_failure` recipients of `product`'s alert tasks that it is late or that its last
/// run failed, through the target's channels (or the outbox with `--alerts outbox`).
async fn alert(product: &Product, entry: &Entry, target: &TargetArgs, data_dir: &std::path::Path, now: DateTime<Utc>) {
    let alerts: Vec<(&str, &crate::alert::SendAlerts)> = product
        .tasks
        .iter()
        .filter_map(|task| match &task.call {
            crate::spec::Call::SendAlerts(alert) => Some((task.id.as_str(), alert)),
            _ => None,
        })
        .collect();
    let alerts_to = target.alerts.target(target.target);
    let secrets = target.secrets().secrets();
    let run_id = format!("{}-status-{}", product.name, now.format("%Y%m%dT%H%M%SZ"));
    let log = crate::log::Log::new(crate::log::LogFormat::Auto, &product.name, &run_id, secrets.clone());
    if alerts.iter().all(|(_, alert)| alert.on_failure.is_empty()) {
        log.warn(
            None,
            None,
            "no alert task has `on_failure` recipients to tell".to_owned(),
        );
        return;
    }
    let mut texts = Vec::new();
    for (task, alert) in &alerts {
        let written = alert.on_failure.iter().chain(&alert.cc).chain(alert.from.iter());
        let implicit = alert.implicit_reference(alerts_to).map(str::to_owned);
        for text in written.cloned().chain(implicit) {
            texts.push((task.to_string(), text));
        }
    }
    if let Err((task, error)) = secrets.prefetch(&texts).await {
        let error = secrets.redact(&error.to_string());
        log.error(Some(&task), None, format!("cannot send the status alert: {error}"));
        return;
    }
    let (session, cancel, http) = (
        crate::transform::sql::session(),
        tokio_util::sync::CancellationToken::new(),
        std::sync::OnceLock::new(),
    );
    let cx = crate::alert::send::Context {
        product: &product.name,
        run_id: &run_id,
        target: target.target,
        alerts_to,
        data_dir,
        secrets: &secrets,
        session: &session,
        log: &log,
        cancel: &cancel,
        http: &http,
    };
    let last_success = entry
        .last_success
        .as_ref()
        .map_or("never".to_owned(), |r| r.logical_time.clone());
    let (subject, intro) = match entry.status {
        Standing::Late => (
            format!(
                "{}: late, no successful run for its {} tick",
                product.name,
                entry.due.as_deref().unwrap_or("-")
            ),
            format!(
                "{} has no successful run for its tick {} (grace {} s); its last success was for {last_success}.",
                product.name,
                entry.due.as_deref().unwrap_or("-"),
                entry.grace_seconds.unwrap_or_default()
            ),
        ),
        _ => (
            format!("{}: its last run failed", product.name),
            format!(
                "The last run of {} ({}) ended {}; its last success was for {last_success}.",
                product.name,
                entry.last_run.as_ref().map_or("-", |r| r.run_id.as_str()),
                entry
                    .last_run
                    .as_ref()
                    .map_or_else(String::new, |r| r.status.as_str().to_owned()),
            ),
        ),
    };
    let message = crate::alert::message::summary(subject, &intro, &[]);
    crate::alert::send::tell_on_failure(&cx, &alerts, &message).await;
}

fn entry(product: &Product, state: Result<ProductState, String>, now: DateTime<Utc>) -> Entry {
    let (state, error) = match state {
        Ok(state) => (state, None),
        Err(error) => (ProductState::default(), Some(error)),
    };
    let due = due_tick(product, now);
    let grace = due.map(|(_, grace)| grace.num_seconds());
    let due = due.map(|(tick, _)| tick);
    let succeeded_since = |tick: DateTime<Utc>| {
        state
            .last_success
            .as_ref()
            .and_then(RunRecord::logical)
            .is_some_and(|logical| logical >= tick)
    };
    let failed = state
        .last_run
        .as_ref()
        .is_some_and(|run| run.status != RunStatus::Succeeded);
    let status = match due {
        Some(tick) if !succeeded_since(tick) => Standing::Late,
        _ if failed => Standing::Failed,
        Some(_) => Standing::OnTime,
        None => Standing::NotDue,
    };
    Entry {
        product: product.name.clone(),
        status,
        due: due.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
        grace_seconds: grace,
        last_run: state.last_run,
        last_success: state.last_success,
        cursors: state.cursors,
        error,
    }
}

/// The latest tick of `product` whose freshness grace has passed at `now`, with the grace: `None`
/// without a schedule, or before the first tick on or after `start_date` is due.
fn due_tick(product: &Product, now: DateTime<Utc>) -> Option<(DateTime<Utc>, chrono::Duration)> {
    let schedule = product.schedule.as_deref()?;
    let latest = crate::plan::logical::at(&product.name, Some(schedule), &product.timezone, now).ok()?;
    let grace = match &product.freshness {
        Some(text) => chrono::Duration::from_std(crate::spec::duration::parse(text).ok()?).ok()?,
        None => latest.interval_end - latest.interval_start,
    };
    let tick = crate::plan::logical::at(&product.name, Some(schedule), &product.timezone, now - grace)
        .ok()?
        .time;
    let start = product
        .start_date
        .as_deref()
        .and_then(crate::plan::schedule::parse_start_date);
    if start.is_some_and(|start| tick < start) {
        return None;
    }
    Some((tick, grace))
}

fn table(entries: &[Entry]) -> String {
    let when = |run: &Option<RunRecord>| match run {
        Some(run) => format!("{} {}", run.logical_time, run.status.as_str()),
        None => "-".to_owned(),
    };
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|e| {
            let cursors: Vec<String> = e
                .cursors
                .iter()
                .map(|(task, value)| format!("{task}={}", crate::extract::incremental::rendered(Some(value))))
                .collect();
            [
                e.product.clone(),
                match &e.error {
                    Some(error) => format!("UNKNOWN: {error}"),
                    None => e.status.text().to_owned(),
                },
                when(&e.last_run),
                e.last_success
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |r| r.logical_time.clone()),
                if cursors.is_empty() {
                    "-".to_owned()
                } else {
                    cursors.join(" ")
                },
            ]
        })
        .collect();
    let mut out = super::aligned(["PRODUCT", "STATUS", "LAST RUN", "LAST SUCCESS", "CURSORS"], &rows);
    if entries.is_empty() {
        out.push_str("no valid products\n");
    }
    out
}
