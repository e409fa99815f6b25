//! From a product to an execution plan: pure, printable, no side effects.

mod details;
pub mod diagram;
pub mod graph;
pub mod logical;
pub mod schedule;
pub mod template;
mod text;

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::extract::items::{self, ForEach, ItemSource, Shard};
use crate::extract::throttle::{DEFAULT_CONCURRENCY, Pace};
use crate::spec::reference::{Reference, references};
use crate::spec::{Call, Function, Product, Role};
use crate::target::{self, AlertSink, Destination, SecretSource, Target};
use crate::transform::sql::Engine;
use graph::{Edge, Graph, Node};

pub use details::{FanOutStep, IncrementalStep, WarehouseStep};
pub use text::render as render_text;

/// What `dpf run` would do, in order. The JSON form of this struct is stable (`version` 1).
#[derive(Debug, Serialize)]
pub struct Plan {
    pub version: u32,
    pub product: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub file: String,
    pub target: Target,
    /// The local target's data dir; absent for gcp.
    pub data_dir: Option<String>,
    /// Where `${secret:…}` references are read: `env` or `secret-manager`.
    pub secrets: SecretSource,
    /// Where alerts go: `deliver` (the target's channels) or `outbox`.
    pub alerts: AlertSink,
    pub schedule: Option<Schedule>,
    pub start_date: Option<String>,
    /// The run this plan describes: the latest tick at or before now (or `--at`).
    pub logical: Option<LogicalTime>,
    /// The shard of the product's processes this plan is for, if it runs as several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// Task ids by stage: a stage starts when the one before it is done; its tasks run concurrently.
    pub stages: Vec<Vec<String>>,
    pub steps: Vec<Step>,
}

/// The schedule, in words and as its next run times.
/// A run's logical time, for people and JSON: UTC and the product's time zone, RFC 3339.
#[derive(Debug, Serialize)]
pub struct LogicalTime {
    pub run_id: String,
    pub time: String,
    pub local_time: String,
    pub data_interval_start: String,
    pub data_interval_end: String,
}

impl From<&logical::Logical> for LogicalTime {
    fn from(logical: &logical::Logical) -> Self {
        let utc = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        LogicalTime {
            run_id: logical.run_id.clone(),
            time: utc(logical.time),
            local_time: logical.local(logical.time),
            data_interval_start: logical.local(logical.interval_start),
            data_interval_end: logical.local(logical.interval_end),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Schedule {
    pub cron: String,
    pub timezone: String,
    pub description: String,
    /// The next 5 run times, UTC, RFC 3339.
    pub next_runs: Vec<String>,
}

/// One task as it will run.
#[derive(Debug, Serialize)]
pub struct Step {
    pub id: String,
    pub function: Function,
    pub role: Role,
    /// 1-based stage number.
    pub stage: usize,
    pub description: Option<String>,
    /// Tasks whose output this task reads.
    pub reads: Vec<String>,
    /// Tasks this task waits for without reading them (`depends_on`, alerts after stores).
    pub after: Vec<String>,
    /// Where an extract reads from (references shown as written).
    pub source: Option<String>,
    /// Where a store or alert writes, fully qualified for the target.
    pub destination: Option<String>,
    /// An alert's condition as one SQL expression (from `when` or `thresholds`); null for other
    /// tasks and for alerts that send a run summary.
    pub condition: Option<String>,
    pub retries: u32,
    pub retry_delay_minutes: f64,
    pub timeout_minutes: Option<f64>,
    /// The data checks on the task's output, as written, each with its name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::check::Check>,
    /// The params with defaults filled in and templates rendered for the plan's logical time (as
    /// written where they cannot be); `${...}` references are shown, never resolved.
    pub params: Value,
    /// The params as the run uses them, templates rendered for the plan's logical time; or why
    /// they cannot be rendered, which fails the task when it runs.
    #[serde(skip)]
    pub call: Result<Call, Unrendered>,
    /// The references this step resolves at run time, e.g. `secret:SALES_API_TOKEN`.
    pub references: Vec<String>,
    /// Where an incremental extract starts and whether it saves a cursor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incremental: Option<IncrementalStep>,
    /// The items a fan-out extract runs once for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fan_out: Option<FanOutStep>,
    /// How an extract paces its requests: at most `concurrency` in flight, `rate_limit` a second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<Pace>,
    /// A transform whose query runs in BigQuery (`engine: bigquery`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warehouse: Option<WarehouseStep>,
}

/// Where a run's incremental extracts start.
#[derive(Debug, Clone, Copy)]
pub enum Cursors<'a> {
    /// Not known (`dpf plan`): `{{ cursor }}` is shown as written.
    Unknown,
    /// A run: from the saved cursors (none on a first run or with `--full-refresh`).
    Saved(&'a std::collections::BTreeMap<String, Value>),
    /// A backfill run: from the start of its data interval; nothing dropped, nothing saved.
    Window,
}

/// Why a step's params cannot be rendered for its run.
#[derive(Debug, thiserror::Error)]
pub enum Unrendered {
    #[error("{}", .0.message)]
    Template(template::TemplateError),
    #[error("params: {0}")]
    Params(serde_json::Error),
    #[error("{0}")]
    Cursor(String),
}

/// The facts `build` needs besides the product.
pub struct Context<'a> {
    pub file: &'a Path,
    pub target: Target,
    pub data_dir: &'a Path,
    pub now: DateTime<Utc>,
    /// The run the plan is for; by default the latest tick at or before `now`.
    pub logical: Option<&'a logical::Logical>,
    /// Where the run reads `${secret:…}`.
    pub secrets: SecretSource,
    /// Where the run's alerts go.
    pub alerts: AlertSink,
    /// Where incremental extracts start.
    pub cursors: Cursors<'a>,
    /// The shard the run is, if the product runs as several.
    pub shard: Option<Shard>,
}

/// Where the incremental extract `task` starts under `cursors`.
fn incremental_step(
    incremental: &crate::extract::Incremental,
    task: &str,
    cursors: Cursors<'_>,
    logical: Option<&logical::Logical>,
) -> Result<IncrementalStep, crate::extract::incremental::CursorError> {
    let (from, saves) = match cursors {
        Cursors::Unknown => (None, true),
        Cursors::Saved(saved) => (incremental.start(saved.get(task))?, true),
        Cursors::Window => (
            logical.map(|l| Value::String(l.interval_start.to_rfc3339_opts(SecondsFormat::Secs, true))),
            false,
        ),
    };
    Ok(IncrementalStep {
        cursor: incremental.cursor.clone(),
        from,
        saves,
    })
}

/// The graph's view of `task`.
fn node(task: &crate::spec::Task) -> Node {
    let mut node = Node {
        id: task.id.clone(),
        function: Some(task.call.function()),
        input: task.input.clone(),
        depends_on: task.depends_on.clone(),
        for_each: task.items_task().map(str::to_owned),
        ..Node::default()
    };
    match &task.call {
        Call::TransformSql(transform) => {
            let tables = crate::transform::sql::parse_query_in(&transform.query, transform.dialect())
                .map(|statements| {
                    crate::transform::sql::tables(&statements)
                        .into_iter()
                        .map(|t| t.name)
                        .collect()
                })
                .unwrap_or_default();
            match &transform.destination {
                Some(destination) if transform.engine == Engine::Bigquery => {
                    node.warehouse_reads = Some(tables);
                    node.warehouse_writes = Some(format!("{}.{}", destination.dataset, destination.table));
                }
                _ => node.sql_tables = tables,
            }
        }
        Call::StoreToBigquery(store) => node.warehouse_writes = Some(format!("{}.{}", store.dataset, store.table)),
        _ => {}
    }
    node
}

/// Builds the plan of a valid product.
pub fn build(product: &Product, context: &Context<'_>) -> Plan {
    let logical = match context.logical {
        Some(logical) => Some(logical.clone()),
        None => logical::at(
            &product.name,
            product.schedule.as_deref(),
            &product.timezone,
            context.now,
        )
        .ok(),
    };
    let nodes: Vec<Node> = product.tasks.iter().map(node).collect();
    let (graph, _) = Graph::build(&nodes);
    let stages = graph.stages().unwrap_or_else(|| vec![(0..nodes.len()).collect()]);
    let stage_of = |task: usize| {
        stages
            .iter()
            .position(|stage| stage.contains(&task))
            .map_or(1, |s| s + 1)
    };

    let steps: Vec<Step> = product
        .tasks
        .iter()
        .enumerate()
        .map(|(i, task)| {
            let ids = |edge: fn(Edge) -> bool| -> Vec<String> {
                graph.upstream[i]
                    .iter()
                    .filter(|(_, e)| edge(*e))
                    .map(|&(up, _)| nodes[up].id.clone())
                    .collect()
            };
            let written = serde_json::to_value(&task.call).unwrap_or(Value::Null);
            let incremental = task
                .incremental
                .as_ref()
                .map(|incremental| incremental_step(incremental, &task.id, context.cursors, logical.as_ref()));
            let from = match &incremental {
                Some(Ok(step)) => Ok(step.from.as_ref()),
                Some(Err(error)) => Err(error),
                None => Ok(None),
            };
            // Templates as the run renders them; a template that cannot render is shown as written.
            let rendered = match (&logical, from) {
                (_, Err(error)) => Err(Unrendered::Cursor(error.to_string())),
                (Some(logical), Ok(from)) => {
                    let cursor = match context.cursors {
                        Cursors::Unknown => None,
                        _ => Some(crate::extract::incremental::rendered(from)),
                    };
                    template::render_json(&written, logical, cursor.as_deref())
                        .map_err(Unrendered::Template)
                        .and_then(|value| {
                            let call = Call::new(task.call.function(), value.clone()).map_err(Unrendered::Params)?;
                            Ok((call, value))
                        })
                }
                (None, Ok(_)) => Ok((task.call.clone(), written.clone())),
            };
            let (call, params) = match rendered {
                Ok((call, params)) => (Ok(call), params),
                Err(message) => (Err(message), written),
            };
            let mut found = Vec::new();
            collect_references(&params, &mut found);
            Step {
                id: task.id.clone(),
                function: task.call.function(),
                role: task.call.function().role(),
                stage: stage_of(i),
                description: task.description.clone(),
                reads: ids(|e| e == Edge::Input),
                after: ids(|e| e != Edge::Input),
                source: source(&task.call),
                destination: destination(&task.call, context),
                condition: match &task.call {
                    Call::SendAlerts(alert) if alert.on_failed_checks() => Some(crate::alert::CHECKS_FAILED.to_owned()),
                    Call::SendAlerts(alert) => alert.condition(),
                    _ => None,
                },
                checks: task.checks.clone(),
                retries: task.retries.unwrap_or(product.retries),
                retry_delay_minutes: task.retry_delay_minutes.unwrap_or(product.retry_delay_minutes),
                timeout_minutes: task.timeout_minutes,
                params,
                call,
                references: found,
                incremental: incremental.and_then(Result::ok),
                fan_out: task.fan_out.as_ref().map(|fan_out| FanOutStep {
                    items: match &fan_out.for_each {
                        ForEach::Items(items) => Some(items.len()),
                        ForEach::Source(ItemSource::File(file)) => {
                            items::from_file(&items::file_path(context.file, file))
                                .ok()
                                .map(|i| i.len())
                        }
                        ForEach::Source(ItemSource::Task(_)) => None,
                    },
                    fan_out: fan_out.clone(),
                    shard: context.shard,
                }),
                warehouse: match &task.call {
                    Call::TransformSql(transform) if transform.engine == Engine::Bigquery => {
                        Some(WarehouseStep::default())
                    }
                    _ => None,
                },
                requests: (task.fan_out.is_some() || task.concurrency.is_some() || task.rate_limit.is_some()).then(
                    || Pace {
                        concurrency: task.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
                        rate_limit: task.rate_limit,
                    },
                ),
            }
        })
        .collect();

    // A query in BigQuery brings its rows back only for the tasks that read them and its checks.
    let mut steps = steps;
    let read: Vec<bool> = steps
        .iter()
        .map(|step| !step.checks.is_empty() || steps.iter().any(|other| other.reads.contains(&step.id)))
        .collect();
    for (step, read) in steps.iter_mut().zip(read) {
        if let Some(warehouse) = &mut step.warehouse {
            warehouse.pulls_rows = read;
        }
    }

    Plan {
        version: 1,
        product: product.name.clone(),
        description: product.description.clone(),
        owner: product.owner.clone(),
        file: context.file.display().to_string(),
        target: context.target,
        data_dir: (context.target == Target::Local).then(|| context.data_dir.display().to_string()),
        secrets: context.secrets,
        alerts: context.alerts,
        schedule: product
            .schedule
            .as_deref()
            .and_then(|cron| plan_schedule(cron, &product.timezone, context.now)),
        start_date: product.start_date.clone(),
        logical: logical.as_ref().map(LogicalTime::from),
        shard: context.shard,
        stages: stages
            .iter()
            .map(|stage| stage.iter().map(|&t| nodes[t].id.clone()).collect())
            .collect(),
        steps,
    }
}

fn plan_schedule(cron: &str, timezone: &str, now: DateTime<Utc>) -> Option<Schedule> {
    let parsed = schedule::parse(cron).ok()?;
    let tz: chrono_tz::Tz = timezone.parse().ok()?;
    Some(Schedule {
        cron: cron.to_owned(),
        timezone: timezone.to_owned(),
        description: schedule::describe(&parsed),
        next_runs: schedule::next_runs(&parsed, tz, now, 5)
            .iter()
            .map(|time| time.to_rfc3339_opts(SecondsFormat::Secs, true))
            .collect(),
    })
}

fn source(call: &Call) -> Option<String> {
    match call {
        Call::ExtractHttp(http) => {
            let mut pairs = Vec::new();
            for (key, value) in &http.query {
                let values = match value {
                    Value::Array(items) => items.clone(),
                    other => vec![other.clone()],
                };
                for value in values {
                    let shown = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
                    pairs.push(format!("{key}={shown}"));
                }
            }
            let separator = if http.url.contains('?') { '&' } else { '?' };
            let query = if pairs.is_empty() {
                String::new()
            } else {
                format!("{separator}{}", pairs.join("&"))
            };
            Some(format!("{} {}{query}", http.method.as_str(), http.url))
        }
        Call::ExtractWeather(weather) => Some(format!(
            "GET {}?latitude={}&longitude={}&hourly={}",
            weather.api_url,
            weather.latitude,
            weather.longitude,
            weather.metrics.join(",")
        )),
        _ => None,
    }
}

fn destination(call: &Call, context: &Context<'_>) -> Option<String> {
    let project = |explicit: Option<&str>| {
        target::gcp::project::configured(explicit).unwrap_or_else(|| "<project from credentials>".to_owned())
    };
    let target = match call {
        Call::SendAlerts(_) => context.alerts.target(context.target),
        _ => context.target,
    };
    let destinations = Destination::names(call, target, context.data_dir, project);
    (!destinations.is_empty()).then(|| destinations.join("; "))
}

fn collect_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => {
            for (_, reference) in references(text).unwrap_or_default() {
                let shown = match reference {
                    Reference::Env(name) => format!("env:{name}"),
                    Reference::Secret(name) => format!("secret:{name}"),
                    Reference::File(path) => format!("file:{path}"),
                };
                if !out.contains(&shown) {
                    out.push(shown);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_references(item, out)),
        Value::Object(map) => map.values().for_each(|item| collect_references(item, out)),
        _ => {}
    }
}
