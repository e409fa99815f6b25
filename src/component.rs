//! What a task's component is given and gives back: the run's [`Services`], which each component
//! narrows to what it needs when it is built ([`crate::runtime`]), the [`Slot`] it fills, its
//! [`Input`], and [`Done`], what it did.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::prelude::SessionContext;
use tokio_util::sync::CancellationToken;

use crate::error::TaskError;
use crate::http::Transport;
use crate::log::Log;
use crate::parallel::Alongside;
use crate::receipt::{AlertReceipt, TaskReceipt};
use crate::retry::Policy;
use crate::secrets::Secrets;
use crate::spec::SourceFile;
use crate::table::Table;
use crate::target::Target;
use crate::target::gcp::cloud::Cloud;
use crate::transform::sql::Locator;

/// What one run offers its tasks. Each component takes the part it needs.
pub(crate) struct Services {
    pub(crate) product: String,
    pub(crate) run_id: String,
    pub(crate) target: Target,
    /// The target whose channels alerts use: the run's, or the local outbox (`--alerts outbox`).
    pub(crate) alerts_to: Target,
    pub(crate) data_dir: PathBuf,
    pub(crate) transport: Transport,
    pub(crate) secrets: Secrets,
    /// The outputs of the run's tasks as tables, for transforms, checks and alert conditions.
    pub(crate) catalog: Catalog,
    pub(crate) log: Log,
    /// Stops the run's tasks: a signal or the run's `--timeout`.
    pub(crate) cancel: CancellationToken,
    /// Where extracts save their exchanges, when recording.
    pub(crate) record_dir: Option<PathBuf>,
    pub(crate) replay: bool,
    pub(crate) source: SourceFile,
    /// Google Cloud access on the gcp target.
    pub(crate) cloud: Option<Arc<Cloud>>,
    /// The run's one HTTP client, made at its first use.
    pub(crate) http: OnceLock<reqwest::Client>,
    /// Where rows too many to hold in memory go: large extracts' chunks, queries' spills.
    pub(crate) spill_dir: PathBuf,
    /// The memory the run keeps within, in bytes (`--memory-limit`).
    pub(crate) memory_limit: u64,
}

impl Services {
    /// How much a task holds before it writes rows out to disk: a sixty-fourth of the run's memory
    /// limit, so that what a builder or a query result holds stays far within the limit, which the
    /// queries after it share.
    pub(crate) fn chunk_bytes(&self) -> usize {
        usize::try_from(self.memory_limit / 64).unwrap_or(usize::MAX)
    }

    /// Where errors in the SQL text of task `index`'s params and checks are placed in the product
    /// file.
    pub(crate) fn locator(&self, index: usize) -> Locator<'_> {
        Locator {
            source: &self.source,
            index,
        }
    }
}

/// The outputs of a run's tasks as SQL tables, each named by its task id.
pub(crate) struct Catalog {
    session: OnceLock<SessionContext>,
    /// The session being made, until it is first needed.
    making: Mutex<Option<Alongside<SessionContext>>>,
}

impl Catalog {
    /// A catalog whose queries keep within `memory_limit` bytes, spilling into `spill_dir`. Its
    /// session is made on a thread of its own while the run's first tasks go on (DataFusion
    /// registers hundreds of functions in it); the first query waits for it. When the limit cannot
    /// be set up, `log` says so and queries hold what they need in memory.
    pub(crate) fn new(memory_limit: usize, spill_dir: PathBuf, log: Log) -> Self {
        Catalog {
            session: OnceLock::new(),
            making: Mutex::new(Some(Alongside::start(move || session(memory_limit, &spill_dir, &log)))),
        }
    }

    /// Where queries over the outputs run.
    pub(crate) fn session(&self) -> &SessionContext {
        self.session.get_or_init(|| {
            let making = self.making.lock().ok().and_then(|mut making| making.take());
            making.map_or_else(crate::transform::sql::session, Alongside::wait)
        })
    }

    /// Makes `table`, the output of task `id`, a table of that name for the tasks after it.
    pub(crate) fn publish(&self, id: &str, table: &Table) -> Result<(), TaskError> {
        crate::transform::sql::register(self.session(), id, table).map_err(TaskError::from)
    }
}

impl Drop for Catalog {
    /// Waits for a session still being made, so that its spill folder is removed with it.
    fn drop(&mut self) {
        let _ = self.session();
    }
}

/// A session whose queries keep within `memory_limit` bytes, spilling into `spill_dir`; when the
/// limit cannot be set up, `log` says so and the session's queries hold what they need in memory.
fn session(memory_limit: usize, spill_dir: &std::path::Path, log: &Log) -> SessionContext {
    crate::transform::sql::session_within(memory_limit, spill_dir).unwrap_or_else(|error| {
        log.warn(
            None,
            None,
            format!("queries hold what they need in memory: the memory limit cannot be set up ({error})"),
        );
        crate::transform::sql::session()
    })
}

/// Which task of the product a component is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot<'a> {
    pub(crate) id: &'a str,
    /// Its index in the product's `tasks:`.
    pub(crate) index: usize,
    pub(crate) policy: Policy,
}

impl Slot<'_> {
    /// Where errors in the SQL text of this task's params are placed in the product file.
    pub(crate) fn locator<'a>(&self, services: &'a Services) -> Locator<'a> {
        services.locator(self.index)
    }
}

/// What a component runs on.
pub(crate) struct Input<'a> {
    /// The outputs of the run's tasks so far, by task id.
    pub(crate) tables: &'a HashMap<String, Table>,
    /// The rows quarantine checks took out of the run's outputs so far, by task id.
    pub(crate) rejected: &'a HashMap<String, Table>,
    /// The tasks whose output this one reads.
    pub(crate) reads: &'a [String],
    /// The receipts of the run's tasks so far, for run summaries.
    pub(crate) so_far: &'a [TaskReceipt],
}

impl Input<'_> {
    /// The output of the one task this one reads (its rows may be on disk: see [`Table::spill`]).
    pub(crate) fn rows(&self) -> Result<&Table, TaskError> {
        let name = self
            .reads
            .first()
            .ok_or_else(|| TaskError::permanent("the task has no input"))?;
        self.tables
            .get(name)
            .ok_or_else(|| TaskError::permanent(format!("the output of `{name}` is missing")))
    }

    /// The rows quarantine checks took out of the one task this one reads, if any.
    pub(crate) fn rejected(&self) -> Option<&Table> {
        self.reads.first().and_then(|name| self.rejected.get(name))
    }
}

/// What a task did, for its receipt.
#[derive(Default)]
pub(crate) struct Done {
    /// The rows it yields to later tasks.
    pub(crate) table: Option<Table>,
    pub(crate) rows: Option<u64>,
    pub(crate) bytes: Option<u64>,
    pub(crate) pages: Option<u64>,
    /// Where it wrote, as [`crate::target::Destination`] names it.
    pub(crate) destinations: Vec<String>,
    pub(crate) alerts: Vec<AlertReceipt>,
    /// What became of a fan-out extract's items.
    pub(crate) items: Option<crate::receipt::ItemsReceipt>,
}

/// How the run makes and stops a component's attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempts {
    /// The component retries what failed itself (an extract retries each request and keeps the
    /// pages it has); it runs once.
    Own,
    /// Each attempt commits whole or not at all and is awaited when stopped, so that the receipt
    /// says what it committed (stores).
    Whole,
    /// Each attempt is dropped when stopped: it commits nothing of its own.
    Drop,
}
