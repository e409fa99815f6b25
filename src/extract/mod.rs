//! Extract functions: tasks that pull rows from outside.

pub(crate) mod decode;
mod fan_out;
pub(crate) mod fetch;
pub(crate) mod http;
pub(crate) mod incremental;
pub(crate) mod items;
mod paging;
mod request;
pub(crate) mod throttle;
pub(crate) mod weather;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use std::path::Path;

use self::fetch::{Context, Shared};
pub(crate) use self::http::ExtractHttp;
pub(crate) use self::incremental::Incremental;
use self::items::FanOut;
use self::throttle::Pace;
use self::throttle::Throttle;
pub(crate) use self::weather::ExtractWeather;
use crate::component::{Done, Input, Services, Slot};
use crate::error::TaskError;
use crate::http::Transport;
use crate::log::Log;
use crate::retry::Policy;
use crate::secrets::{Mode, Secrets};

/// A fan-out as one run takes it: its items, and the shard whose share of them the run fetches.
#[derive(Clone, Copy)]
pub(crate) struct FanOutRun<'a> {
    pub(crate) fan_out: &'a FanOut,
    pub(crate) shard: Option<items::Shard>,
}

/// An `extract_http` (or `extract_weather`) task, built for its run.
pub(crate) struct Extract<'a> {
    params: ExtractHttp,
    /// The items it runs once for, if it fans out.
    fan_out: Option<FanOutRun<'a>>,
    /// The product file, next to which item files are found.
    product_file: &'a Path,
    task: &'a str,
    policy: Policy,
    transport: &'a Transport,
    secrets: &'a Secrets,
    log: &'a Log,
    record_dir: Option<&'a Path>,
    replay: bool,
    throttle: Option<Throttle>,
    spill_dir: &'a Path,
    chunk_bytes: usize,
    /// Items fetched at once by a fan-out.
    concurrency: usize,
    shared: Shared,
}

impl<'a> Extract<'a> {
    /// `params` as task `slot`, run once per item of `fan_out` if given, its requests paced by `pace`.
    pub(crate) fn new(
        params: ExtractHttp,
        (fan_out, pace): (Option<FanOutRun<'a>>, Option<Pace>),
        slot: Slot<'a>,
        services: &'a Services,
    ) -> Extract<'a> {
        Extract {
            params,
            fan_out,
            product_file: services.source.path(),
            task: slot.id,
            policy: slot.policy,
            transport: &services.transport,
            secrets: &services.secrets,
            log: &services.log,
            record_dir: services.record_dir.as_deref(),
            replay: services.replay,
            // Replayed responses come from files: nothing to pace.
            throttle: pace
                .filter(|_| !services.replay)
                .map(|pace| Throttle::new(pace.concurrency, pace.rate_limit)),
            concurrency: pace.map_or(1, |pace| pace.concurrency as usize),
            spill_dir: &services.spill_dir,
            chunk_bytes: services.chunk_bytes(),
            shared: Shared::new(services.log.progress(slot.id)),
        }
    }

    /// Fetches every page (of every item), each request retried on its own; `attempts` ends as the
    /// attempts of the request that needed the most. `stop` ends it between requests and pages.
    pub(crate) async fn run(
        &self,
        input: &Input<'_>,
        stop: &CancellationToken,
        attempts: &mut u32,
    ) -> Result<Done, TaskError> {
        let cx = Context {
            task: self.task,
            policy: self.policy,
            transport: self.transport,
            secrets: self.secrets,
            log: self.log,
            cancel: stop,
            record_dir: self.record_dir,
            replay: self.replay,
            throttle: self.throttle.as_ref(),
            shared: &self.shared,
            spill_dir: self.spill_dir,
            chunk_bytes: self.chunk_bytes,
        };
        let value = serde_json::to_value(&self.params).expect("params serialize");
        if let Transport::Replay(fixtures) = cx.transport {
            fixtures.load(cx.task).map_err(TaskError::caused)?;
        }
        let (extracted, items) = match self.fan_out {
            None => (one(&value, Vec::new(), &cx, attempts).await?, None),
            Some(fan_out) => {
                let items = fan_out::items(&fan_out.fan_out.for_each, self.product_file, input)?;
                let share = fan_out.shard.map_or(0..items.len(), |shard| shard.range(items.len()));
                let (extracted, receipt) = fan_out::run(
                    fan_out.fan_out,
                    &value,
                    (&items[share.clone()], share.start),
                    self.concurrency,
                    &cx,
                    attempts,
                )
                .await?;
                (extracted, Some(receipt))
            }
        };
        if let Some(spill) = &extracted.table.spill {
            cx.log.info(Some(cx.task), None, spill.describe());
        }
        if let Some(dir) = cx.record_dir {
            let exchanges = cx.transport.take_recorded(cx.task);
            let count = exchanges.len();
            let path = crate::http::fixtures::save(dir, cx.task, exchanges).map_err(TaskError::caused)?;
            cx.log.info(
                Some(cx.task),
                None,
                format!("recorded {count} responses in {}", path.display()),
            );
        }
        Ok(Done {
            rows: Some(extracted.table.rows() as u64),
            bytes: Some(self.shared.bytes() as u64),
            pages: Some(extracted.pages as u64),
            table: Some(extracted.table),
            items,
            ..Done::default()
        })
    }
}

/// Fetches what `params` (as JSON, references unresolved) ask for, with `constants` on every row.
async fn one(
    params: &serde_json::Value,
    constants: Vec<(String, crate::table::Cell<'static>)>,
    cx: &Context<'_>,
    attempts: &mut u32,
) -> Result<fetch::Extracted, TaskError> {
    let mode = if cx.replay { Mode::Literal } else { Mode::Values };
    let resolved = cx.secrets.resolve_json(params, mode).map_err(TaskError::caused)?;
    let params = ExtractHttp::deserialize(resolved).map_err(|e| TaskError::permanent(format!("params: {e}")))?;
    fetch::fetch(&params, constants, cx, attempts).await
}
