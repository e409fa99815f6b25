//! Extract functions: tasks that pull rows from outside.

pub(crate) mod decode;
pub(crate) mod fetch;
pub(crate) mod http;
pub(crate) mod incremental;
mod paging;
pub(crate) mod weather;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use self::fetch::Context;
pub(crate) use self::http::ExtractHttp;
pub(crate) use self::incremental::Incremental;
pub(crate) use self::weather::ExtractWeather;
use crate::component::{Done, Services, Slot};
use crate::error::TaskError;
use crate::http::Transport;
use crate::secrets::Mode;

/// An `extract_http` (or `extract_weather`) task, built for its run.
pub(crate) struct Extract<'a> {
    params: ExtractHttp,
    cx: Context<'a>,
}

impl<'a> Extract<'a> {
    pub(crate) fn new(params: ExtractHttp, slot: Slot<'a>, services: &'a Services) -> Extract<'a> {
        Extract {
            params,
            cx: Context {
                task: slot.id,
                policy: slot.policy,
                transport: &services.transport,
                secrets: &services.secrets,
                log: &services.log,
                cancel: &services.cancel,
                record_dir: services.record_dir.as_deref(),
                replay: services.replay,
            },
        }
    }

    /// Fetches every page, each request retried on its own; `attempts` ends as the attempts of the
    /// request that needed the most. `stop` ends it between requests and pages.
    pub(crate) async fn run(&self, stop: &CancellationToken, attempts: &mut u32) -> Result<Done, TaskError> {
        let cx = Context {
            cancel: stop,
            ..self.cx
        };
        let mode = if cx.replay { Mode::Literal } else { Mode::Values };
        let value = serde_json::to_value(&self.params).expect("params serialize");
        let resolved = cx.secrets.resolve_json(&value, mode).map_err(TaskError::caused)?;
        let params = ExtractHttp::deserialize(resolved).map_err(|e| TaskError::permanent(format!("params: {e}")))?;
        if let Transport::Replay(fixtures) = cx.transport {
            fixtures.load(cx.task).map_err(TaskError::caused)?;
        }
        let extracted = fetch::fetch(&params, &cx, attempts).await?;
        Ok(Done {
            rows: Some(extracted.table.rows() as u64),
            bytes: Some(extracted.bytes as u64),
            pages: Some(extracted.pages as u64),
            table: Some(extracted.table),
            ..Done::default()
        })
    }
}
