//! The task functions as a run drives them. A function's params are inert data; built against
//! what that function needs of the run (a narrow context taken from [`Services`]), they become a
//! [`Runtime`], which the run drives through one small interface: [`Runtime::run`] on its input,
//! and [`Runtime::attempts`] for how its attempts are retried and stopped.
//!
//! Which component a call becomes on which target is decided here and in the target modules
//! ([`crate::target::local`], [`crate::target::gcp`]); the run knows none of them.

use tokio_util::sync::CancellationToken;

use crate::component::{Attempts, Done, Input, Services, Slot};
use crate::error::TaskError;
use crate::extract::FanOutRun;
use crate::extract::throttle::Pace;
use crate::plan::Step;
use crate::spec::Call;
use crate::target::Target;

/// A task's function, built for this run.
pub(crate) enum Runtime<'a> {
    Extract(Box<crate::extract::Extract<'a>>),
    Transform(crate::transform::Transform<'a>),
    Query(Box<crate::transform::warehouse::Query<'a>>),
    LocalStore(crate::target::local::Store<'a>),
    GcpStore(crate::target::gcp::Store<'a>),
    Alert(crate::alert::Alert<'a>),
}

/// What an extract takes from its step besides its params: its fan-out (with the run's shard) and
/// its pace.
fn extract_setup(step: &Step) -> (Option<FanOutRun<'_>>, Option<Pace>) {
    let fan_out = step.fan_out.as_ref().map(|f| FanOutRun {
        fan_out: &f.fan_out,
        shard: f.shard,
    });
    (fan_out, step.requests)
}

impl<'a> Runtime<'a> {
    /// `call` (its params rendered) as task `slot` of the run that `services` serve.
    pub(crate) fn build(
        call: Call,
        step: &'a Step,
        slot: Slot<'a>,
        services: &'a Services,
    ) -> Result<Runtime<'a>, TaskError> {
        Ok(match call {
            Call::ExtractHttp(params) => Runtime::Extract(Box::new(crate::extract::Extract::new(
                params,
                extract_setup(step),
                slot,
                services,
            ))),
            Call::ExtractWeather(weather) => Runtime::Extract(Box::new(crate::extract::Extract::new(
                weather.to_http(),
                extract_setup(step),
                slot,
                services,
            ))),
            Call::TransformSql(params) if params.engine == crate::transform::sql::Engine::Bigquery => {
                use crate::transform::warehouse::{Query, RunsOn};
                let destination = params
                    .destination
                    .ok_or_else(|| TaskError::permanent("`engine: bigquery` needs a `destination`"))?;
                let store = Call::StoreToBigquery(destination);
                let runs_on = match services.target {
                    Target::Local => RunsOn::Local(crate::target::local::Store::new(store, slot, services)?),
                    Target::Gcp => RunsOn::Gcp(crate::target::gcp::Store::new(store, slot, services)?),
                };
                let pulls = step.warehouse.as_ref().is_some_and(|w| w.pulls_rows);
                Runtime::Query(Box::new(Query {
                    sql: params.query,
                    pull: pulls.then_some(params.max_rows),
                    locator: slot.locator(services),
                    runs_on,
                }))
            }
            Call::TransformSql(params) => Runtime::Transform(crate::transform::Transform {
                query: params.query,
                session: services.catalog.session(),
                locator: slot.locator(services),
                spill_dir: &services.spill_dir,
                chunk_bytes: services.chunk_bytes(),
                task: slot.id,
                log: &services.log,
            }),
            Call::SendAlerts(params) => Runtime::Alert(crate::alert::Alert::new(params, slot, services)),
            store @ (Call::StoreToBigquery(_) | Call::StoreToFirestore(_)) => match services.target {
                Target::Local => Runtime::LocalStore(crate::target::local::Store::new(store, slot, services)?),
                Target::Gcp => Runtime::GcpStore(crate::target::gcp::Store::new(store, slot, services)?),
            },
        })
    }

    pub(crate) fn attempts(&self) -> Attempts {
        match self {
            Runtime::Extract(_) => Attempts::Own,
            Runtime::LocalStore(_) | Runtime::GcpStore(_) | Runtime::Query(_) => Attempts::Whole,
            Runtime::Transform(_) | Runtime::Alert(_) => Attempts::Drop,
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
            Runtime::Extract(extract) => extract.run(input, stop, attempts).await,
            Runtime::Transform(transform) => transform.run().await,
            Runtime::Query(query) => query.run(stop).await,
            Runtime::LocalStore(store) => store.write(input.rows()?, input.rejected(), stop).await,
            Runtime::GcpStore(store) => store.write(input.rows()?, input.rejected(), stop).await,
            Runtime::Alert(alert) => alert.run(input).await,
        }
    }
}
