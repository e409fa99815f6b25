//! What a plan says of a step beyond its params: where an incremental extract starts, the items of
//! a fan-out, a query that runs in BigQuery.

use serde::Serialize;
use serde_json::Value;

use crate::extract::items::Shard;

/// An incremental extract in a plan.
#[derive(Debug, Clone, Serialize)]
pub struct IncrementalStep {
    /// The field of the records whose maximum is the cursor.
    pub cursor: String,
    /// Where the run starts (what `{{ cursor }}` renders); absent when not known yet or when there
    /// is no cursor (no saved one, no `initial`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    /// Whether the run drops the rows at or before `from` and saves the cursor its rows leave
    /// (not in a backfill, which reads its logical window).
    pub saves: bool,
}

/// A fan-out extract in a plan.
#[derive(Debug, Clone, Serialize)]
pub struct FanOutStep {
    #[serde(flatten)]
    pub fan_out: crate::extract::items::FanOut,
    /// How many items there are, when the product file or a readable file next to it holds them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<usize>,
    /// The run's shard: it takes only its share of the items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

/// A query that runs in BigQuery, in a plan.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WarehouseStep {
    /// Whether its result's rows come back into dpf (at most `max_rows`): a later task reads them,
    /// or the task has checks.
    pub pulls_rows: bool,
    /// What BigQuery's dry run says the query reads, in bytes (the bytes billed on demand), when
    /// the plan was made for the gcp target with credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_processed: Option<u64>,
    /// Why there is no estimate, when one was asked for and BigQuery gave none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate_error: Option<String>,
}
