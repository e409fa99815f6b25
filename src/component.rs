//! The task functions as a run drives them. A function's params are inert data; built against
//! what that function needs of the run (a narrow context taken from [`Services`]), they become a
//! [`Component`], which the run drives through one small interface: [`Component::run`] on its
//! input, and [`Component::attempts`] for how its attempts are retried and stopped.
//!
//! Which component a call becomes on which target is decided here and in the target modules
//! ([`crate::target::local`], [`crate::target::gcp`]); the run knows none of them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use datafusion::prelude::SessionContext;
use tokio_util::sync::CancellationToken;

use crate::error::TaskError;
use crate::gcp::Cloud;
use crate::http::Transport;
use crate::log::Log;
use crate::receipt::{AlertReceipt, TaskReceipt};
use crate::retry::Policy;
use crate::secrets::Secrets;
use crate::spec::{Call, SourceFile};
use crate::table::Table;
use crate::target::Target;
use crate::transform::sql::Locator;

/// What one run offers its tasks. Each component takes the part it needs.
pub(crate) struct Services {
    pub(crate) product: String,
    pub(crate) run_id: String,
    pub(crate) target: Target,
    pub(crate) data_dir: PathBuf,
    pub(crate) transport: Transport,
    pub(crate) secrets: Secrets,
    /// Where the tables of the run are registered, for transforms and alert conditions.
    pub(crate) session: SessionContext,
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
        Locator {
            source: &services.source,
            index: self.index,
        }
    }
}

/// What a component runs on.
pub(crate) struct Input<'a> {
    /// The outputs of the run's tasks so far, by task id.
    pub(crate) tables: &'a HashMap<String, Table>,
    /// The tasks whose output this one reads.
    pub(crate) reads: &'a [String],
    /// The receipts of the run's tasks so far, for run summaries.
    pub(crate) so_far: &'a [TaskReceipt],
}

impl Input<'_> {
    /// The output of the one task this one reads.
    pub(crate) fn rows(&self) -> Result<&Table, TaskError> {
        let name = self
            .reads
            .first()
            .ok_or_else(|| TaskError::permanent("the task has no input"))?;
        self.tables
            .get(name)
            .ok_or_else(|| TaskError::permanent(format!("the output of `{name}` is missing")))
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

/// A task's function, built for this run.
pub(crate) enum Component<'a> {
    Extract(crate::extract::Extract<'a>),
    Transform(crate::transform::Transform<'a>),
    LocalStore(crate::target::local::Store<'a>),
    GcpStore(crate::target::gcp::Store<'a>),
    Alert(crate::alert::Alert<'a>),
}

impl<'a> Component<'a> {
    /// `call` (its params rendered) as task `slot` of the run that `services` serve.
    pub(crate) fn build(call: Call, slot: Slot<'a>, services: &'a Services) -> Result<Component<'a>, TaskError> {
        Ok(match call {
            Call::ExtractHttp(params) => Component::Extract(crate::extract::Extract::new(params, slot, services)),
            Call::ExtractWeather(weather) => {
                Component::Extract(crate::extract::Extract::new(weather.to_http(), slot, services))
            }
            Call::TransformSql(params) => Component::Transform(crate::transform::Transform {
                query: params.query,
                session: &services.session,
                locator: slot.locator(services),
            }),
            Call::SendAlerts(params) => Component::Alert(crate::alert::Alert::new(params, slot, services)),
            store @ (Call::StoreToBigquery(_) | Call::StoreToFirestore(_)) => match services.target {
                Target::Local => Component::LocalStore(crate::target::local::Store::new(store, slot, services)?),
                Target::Gcp => Component::GcpStore(crate::target::gcp::Store::new(store, slot, services)?),
            },
        })
    }

    pub(crate) fn attempts(&self) -> Attempts {
        match self {
            Component::Extract(_) => Attempts::Own,
            Component::LocalStore(_) | Component::GcpStore(_) => Attempts::Whole,
            Component::Transform(_) | Component::Alert(_) => Attempts::Drop,
        }
    }

    /// One attempt on `input`; `stop` is cancelled by a signal, the run's `--timeout` or the
    /// task's own. A component that retries by itself counts its `attempts`.
    pub(crate) async fn run(
        &self,
        input: &Input<'_>,
        stop: &CancellationToken,
        attempts: &mut u32,
    ) -> Result<Done, TaskError> {
        match self {
            Component::Extract(extract) => extract.run(stop, attempts).await,
            Component::Transform(transform) => transform.run().await,
            Component::LocalStore(store) => store.write(input.rows()?, stop).await,
            Component::GcpStore(store) => store.write(input.rows()?, stop).await,
            Component::Alert(alert) => alert.run(input).await,
        }
    }
}
