//! Attempts that commit whole or not at all (the stores'), and say what they committed.

use std::time::Duration;

use crate::component::{Done, Input, Services};
use crate::error::{ErrorKind, TaskError};
use crate::runtime::Runtime;

/// How long a store may take to answer once stopped: well inside Cloud Run's 10 s grace period.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// One attempt of `component`. A stop or the task's `timeout` cancels the token it gets, which it
/// checks before it commits; the attempt is awaited, so that the receipt says what it committed,
/// for at most [`STOP_GRACE`] after the stop (a store waiting on a slow service).
pub(super) async fn attempt(
    services: &Services,
    component: &Runtime<'_>,
    input: &Input<'_>,
    timeout: Option<Duration>,
) -> Result<Done, TaskError> {
    let stop = services.cancel.child_token();
    let timer = timeout.map(|limit| {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            stop.cancel();
        })
    });
    let stopped_long_ago = async {
        stop.cancelled().await;
        tokio::time::sleep(STOP_GRACE).await;
    };
    let mut attempts = 1;
    let result = tokio::select! {
        result = component.run(input, &stop, &mut attempts) => result,
        () = stopped_long_ago => Err(TaskError::stopped(format!(
            "stopped, and the store did not answer within {} s: it may have written part of its rows (a rerun \
             writes them again, under the same ids and job ids)",
            STOP_GRACE.as_secs()
        ))),
    };
    if let Some(timer) = &timer {
        timer.abort();
    }
    match (result, timeout) {
        (Err(error), Some(limit)) if error.kind == ErrorKind::Interrupted && !services.cancel.is_cancelled() => {
            Err(TaskError::transient(format!(
                "timed out after {} s (timeout_minutes): {}",
                limit.as_secs_f64(),
                error.message
            )))
        }
        (result, _) => result,
    }
}
