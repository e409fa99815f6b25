//! The typed product model, deserialized from a document that passed the schema.

use serde::{Deserialize, Serialize};

use super::de::one_or_many;
use serde_json::Value;

use crate::alert::SendAlerts;
use crate::extract::items::{FanOut, ForEach, ItemSource, OnItemError};
use crate::extract::{ExtractHttp, ExtractWeather};
use crate::store::{StoreToBigquery, StoreToFirestore};
use crate::transform::TransformSql;

/// One data product: a schedule and a small graph of tasks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub name: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    /// First logical date, `YYYY-MM-DD` or an ISO 8601 date-time.
    pub start_date: Option<String>,
    /// A 5-field cron expression or an `@daily`-style nickname.
    pub schedule: Option<String>,
    /// IANA time zone the schedule is evaluated in.
    #[serde(default = "utc")]
    pub timezone: String,
    /// How long a tick's successful run may be missing before `dpf status` calls the product late
    /// [default: one schedule interval].
    pub freshness: Option<String>,
    /// Default retry count of every task.
    #[serde(default)]
    pub retries: u32,
    /// Default first back-off of every task, in minutes.
    #[serde(default = "default_retry_delay")]
    pub retry_delay_minutes: f64,
    /// How many processes the scheduler starts for each run, each on its share of the fan-out items.
    pub shards: Option<u32>,
    pub tasks: Vec<Task>,
    #[serde(default)]
    pub tests: Vec<crate::expectation::TestCase>,
}

fn utc() -> String {
    "UTC".to_owned()
}

fn default_retry_delay() -> f64 {
    5.0
}

/// One task: a built-in function call plus how it connects and retries.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawTask")]
pub struct Task {
    pub id: String,
    pub description: Option<String>,
    pub call: Call,
    /// Explicit inputs (task ids); empty means the default input.
    pub input: Vec<String>,
    pub depends_on: Vec<String>,
    pub retries: Option<u32>,
    pub retry_delay_minutes: Option<f64>,
    pub timeout_minutes: Option<f64>,
    /// Data checks on the task's output (extracts and transforms).
    pub checks: Vec<crate::check::Check>,
    /// Fetch only what is new since the last run (extracts).
    pub incremental: Option<crate::extract::Incremental>,
    /// Run the extract once per item (`for_each`).
    pub fan_out: Option<FanOut>,
    /// The most requests the extract has in flight at once.
    pub concurrency: Option<u32>,
    /// The most requests per second the extract sends.
    pub rate_limit: Option<f64>,
}

impl Task {
    /// The task whose rows are this task's fan-out items, if any.
    pub fn items_task(&self) -> Option<&str> {
        match &self.fan_out.as_ref()?.for_each {
            ForEach::Source(ItemSource::Task(task)) => Some(task),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    id: String,
    description: Option<String>,
    /// Accepted for compatibility with DAG-factory files and ignored.
    #[allow(dead_code)]
    operator: Option<String>,
    function: Function,
    params: Value,
    #[serde(default, deserialize_with = "one_or_many")]
    input: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    depends_on: Vec<String>,
    retries: Option<u32>,
    retry_delay_minutes: Option<f64>,
    timeout_minutes: Option<f64>,
    #[serde(default)]
    checks: Vec<crate::check::Check>,
    incremental: Option<crate::extract::Incremental>,
    for_each: Option<ForEach>,
    #[serde(default)]
    include_item: Vec<String>,
    #[serde(default)]
    on_item_error: OnItemError,
    concurrency: Option<u32>,
    rate_limit: Option<f64>,
}

/// Params that are not those of the task's function. serde shows only this error's text, so the
/// text holds the cause.
#[derive(Debug, thiserror::Error)]
#[error("params of task `{task}`: {error}")]
pub struct ParamsError {
    task: String,
    error: serde_json::Error,
}

impl TryFrom<RawTask> for Task {
    type Error = ParamsError;

    fn try_from(raw: RawTask) -> Result<Self, ParamsError> {
        let call = Call::new(raw.function, raw.params).map_err(|error| ParamsError {
            task: raw.id.clone(),
            error,
        })?;
        Ok(Task {
            id: raw.id,
            description: raw.description,
            call,
            input: raw.input,
            depends_on: raw.depends_on,
            retries: raw.retries,
            retry_delay_minutes: raw.retry_delay_minutes,
            timeout_minutes: raw.timeout_minutes,
            checks: raw.checks,
            incremental: raw.incremental,
            fan_out: raw.for_each.map(|for_each| FanOut {
                for_each,
                include_item: raw.include_item,
                on_item_error: raw.on_item_error,
            }),
            concurrency: raw.concurrency,
            rate_limit: raw.rate_limit,
        })
    }
}

/// The built-in task functions (a closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Function {
    ExtractHttp,
    ExtractWeather,
    TransformSql,
    StoreToBigquery,
    StoreToFirestore,
    SendAlerts,
}

/// What part of the chain a function plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Extract,
    Transform,
    Store,
    Alert,
}

impl Function {
    pub fn from_name(name: &str) -> Option<Self> {
        Self::deserialize(serde_json::Value::from(name)).ok()
    }

    pub fn name(self) -> &'static str {
        match self {
            Function::ExtractHttp => "extract_http",
            Function::ExtractWeather => "extract_weather",
            Function::TransformSql => "transform_sql",
            Function::StoreToBigquery => "store_to_bigquery",
            Function::StoreToFirestore => "store_to_firestore",
            Function::SendAlerts => "send_alerts",
        }
    }

    pub fn role(self) -> Role {
        match self {
            Function::ExtractHttp | Function::ExtractWeather => Role::Extract,
            Function::TransformSql => Role::Transform,
            Function::StoreToBigquery | Function::StoreToFirestore => Role::Store,
            Function::SendAlerts => Role::Alert,
        }
    }

    /// Extracts and transforms yield a table that later tasks can read.
    pub fn produces_data(self) -> bool {
        matches!(self.role(), Role::Extract | Role::Transform)
    }
}

/// A task's function with its typed parameters.
// A product has a handful of tasks: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Call {
    ExtractHttp(ExtractHttp),
    ExtractWeather(ExtractWeather),
    TransformSql(TransformSql),
    StoreToBigquery(StoreToBigquery),
    StoreToFirestore(StoreToFirestore),
    SendAlerts(SendAlerts),
}

impl Call {
    /// The params of `function` from their JSON form.
    pub fn new(function: Function, params: Value) -> Result<Self, serde_json::Error> {
        Ok(match function {
            Function::ExtractHttp => Call::ExtractHttp(serde_json::from_value(params)?),
            Function::ExtractWeather => Call::ExtractWeather(serde_json::from_value(params)?),
            Function::TransformSql => Call::TransformSql(serde_json::from_value(params)?),
            Function::StoreToBigquery => Call::StoreToBigquery(serde_json::from_value(params)?),
            Function::StoreToFirestore => Call::StoreToFirestore(serde_json::from_value(params)?),
            Function::SendAlerts => Call::SendAlerts(serde_json::from_value(params)?),
        })
    }

    pub fn function(&self) -> Function {
        match self {
            Call::ExtractHttp(_) => Function::ExtractHttp,
            Call::ExtractWeather(_) => Function::ExtractWeather,
            Call::TransformSql(_) => Function::TransformSql,
            Call::StoreToBigquery(_) => Function::StoreToBigquery,
            Call::StoreToFirestore(_) => Function::StoreToFirestore,
            Call::SendAlerts(_) => Function::SendAlerts,
        }
    }
}
