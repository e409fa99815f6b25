//! State kept between runs, where the data lives: each incremental extract's cursor and the run
//! history. The local target keeps it in `<data-dir>/state.db` (SQLite); the gcp target in the
//! Firestore documents `_dpf/<product>` and `_dpf/<product>/runs/<run>` of the product's project.
//! History is capped at [`HISTORY`] runs per product; a cursor never moves backwards.

pub(crate) mod gcp;
pub(crate) mod local;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::receipt::{Receipt, RunStatus, TaskStatus};

/// Runs kept per product; older ones are dropped as new ones are recorded.
pub(crate) const HISTORY: usize = 100;

/// One run as the history keeps it: the receipt's summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunRecord {
    pub run_id: String,
    /// The shard of the product's processes the run was, if it runs as several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::extract::items::Shard>,
    /// The tick the run stood for, RFC 3339 in the product's time zone.
    pub logical_time: String,
    pub status: RunStatus,
    pub exit_code: u8,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub dpf_version: String,
    pub tasks: Vec<TaskRecord>,
    /// The cursors this run saved, when it saved any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cursors: BTreeMap<String, Value>,
}

/// One task of a recorded run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TaskRecord {
    pub id: String,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    pub attempts: u32,
}

impl RunRecord {
    pub(crate) fn of(receipt: &Receipt) -> Self {
        RunRecord {
            run_id: receipt.run_id.clone(),
            shard: receipt.shard,
            logical_time: receipt.logical_time.clone(),
            status: receipt.status,
            exit_code: receipt.exit_code,
            started_at: receipt.started_at.clone(),
            finished_at: receipt.finished_at.clone(),
            duration_ms: receipt.duration_ms,
            dpf_version: env!("CARGO_PKG_VERSION").to_owned(),
            tasks: receipt
                .tasks
                .iter()
                .map(|task| TaskRecord {
                    id: task.id.clone(),
                    status: task.status,
                    rows: task.rows,
                    attempts: task.attempts,
                })
                .collect(),
            cursors: BTreeMap::new(),
        }
    }

    /// The run's tick as an instant.
    pub(crate) fn logical(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::parse_from_rfc3339(&self.logical_time)
            .ok()
            .map(|t| t.to_utc())
    }
}

/// What the state store holds for one product.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ProductState {
    /// The saved cursor of each incremental extract.
    pub cursors: BTreeMap<String, Value>,
    /// The most recently started run.
    pub last_run: Option<RunRecord>,
    /// The successful run of the latest tick.
    pub last_success: Option<RunRecord>,
}

/// Why the state store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    #[error("state store {path}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state store: Firestore {what}")]
    Firestore {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("state store: a stored record does not read back: {0}")]
    Record(serde_json::Error),
}

/// Where a target keeps its state.
pub(crate) enum StateStore {
    /// `<data-dir>/state.db`.
    Local(PathBuf),
    /// Firestore in the project `project`.
    Gcp {
        cloud: Arc<crate::target::gcp::cloud::Cloud>,
        project: String,
    },
}

impl StateStore {
    /// Where it is, for people: the SQLite file, or the Firestore collection.
    pub(crate) fn location(&self) -> String {
        match self {
            StateStore::Local(path) => path.display().to_string(),
            StateStore::Gcp { project, .. } => {
                format!("firestore:projects/{project}/databases/(default)/documents/_dpf")
            }
        }
    }

    /// Gets the store ready for a commit while the run goes on: a new local state file is created
    /// with its tables (several syncs) on a blocking thread. What fails here fails again, and is
    /// reported, at the commit.
    pub(crate) fn prepare(&self) -> Option<tokio::task::JoinHandle<()>> {
        match self {
            StateStore::Local(path) => {
                let path = path.clone();
                Some(tokio::task::spawn_blocking(move || local::prepare(&path)))
            }
            StateStore::Gcp { .. } => None,
        }
    }

    pub(crate) async fn read(&self, product: &str) -> Result<ProductState, StateError> {
        match self {
            StateStore::Local(path) => local::read(path, product),
            StateStore::Gcp { cloud, project } => gcp::read(cloud, project, product).await,
        }
    }

    /// Records `run` and, when `cursors` is not empty, saves each of them unless the stored one is
    /// later: one transaction. Returns the run as recorded, with the cursors it saved.
    pub(crate) async fn commit(
        &self,
        product: &str,
        cursors: &BTreeMap<String, Value>,
        run: RunRecord,
    ) -> Result<RunRecord, StateError> {
        match self {
            StateStore::Local(path) => local::commit(path, product, cursors, run),
            StateStore::Gcp { cloud, project } => gcp::commit(cloud, project, product, cursors, run).await,
        }
    }

    /// Forgets the cursor of `task`, or of every task: the next run starts from `initial`.
    /// Returns the cursors forgotten.
    pub(crate) async fn reset(&self, product: &str, task: Option<&str>) -> Result<Vec<String>, StateError> {
        match self {
            StateStore::Local(path) => local::reset(path, product, task),
            StateStore::Gcp { cloud, project } => gcp::reset(cloud, project, product, task).await,
        }
    }

    /// The product's recorded runs, the latest first.
    pub(crate) async fn history(&self, product: &str) -> Result<Vec<RunRecord>, StateError> {
        match self {
            StateStore::Local(path) => local::history(path, product),
            StateStore::Gcp { cloud, project } => gcp::history(cloud, project, product).await,
        }
    }
}

/// The cursors `run` leaves when merged over `stored`: each the later of the two.
fn merged(stored: &BTreeMap<String, Value>, new: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    let mut out = stored.clone();
    for (task, value) in new {
        let later = crate::extract::incremental::later(out.remove(task), Some(value.clone()));
        if let Some(later) = later {
            out.insert(task.clone(), later);
        }
    }
    out
}

/// The successful run of the latest tick among `runs`.
fn latest_success<'a>(runs: impl IntoIterator<Item = &'a RunRecord>) -> Option<&'a RunRecord> {
    runs.into_iter()
        .filter(|run| run.status == RunStatus::Succeeded)
        .max_by_key(|run| (run.logical(), run.started_at.clone()))
}

/// A value as the JSON text the stores keep (a SQLite column, a Firestore string field).
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
