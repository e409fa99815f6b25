//! One task of a run: its attempts, retries and timeout, whatever its function.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use super::whole;
use crate::component::{Attempts, Done, Input, Services, Slot};
use crate::error::TaskError;
use crate::plan::Step;
use crate::receipt::TaskReceipt;
use crate::retry::{self, OnStop, Policy};
use crate::runtime::Runtime;
use crate::table::Table;

/// Runs one task with its retries and timeout; returns its result, attempts and duration. A step
/// whose params could not be rendered fails at once.
pub(super) async fn run_task(
    services: &Services,
    step: &Step,
    index: usize,
    (tables, rejected): (&HashMap<String, Table>, &HashMap<String, Table>),
    so_far: &[TaskReceipt],
) -> (Result<Done, TaskError>, u32, Duration) {
    let clock = Instant::now();
    let slot = Slot {
        id: &step.id,
        index,
        policy: Policy::new(step.retries, step.retry_delay_minutes),
    };
    let call = match &step.call {
        Ok(call) => call.clone(),
        Err(unrendered) => return (Err(TaskError::permanent(unrendered)), 1, clock.elapsed()),
    };
    let component = match Runtime::build(call, step, slot, services) {
        Ok(component) => component,
        Err(error) => return (Err(error), 1, clock.elapsed()),
    };
    let input = Input {
        tables,
        rejected,
        reads: &step.reads,
        so_far,
    };
    let timeout = step
        .timeout_minutes
        .map(|m| Duration::from_secs_f64((m * 60.0).max(0.0)));
    let on_retry = |retrying: retry::Retrying<'_>| {
        services.log.warn(
            Some(&step.id),
            Some(retrying.attempt),
            format!(
                "attempt {} of {} failed ({}); retrying in {:.1} s",
                retrying.attempt,
                retrying.of,
                retrying.error,
                retrying.wait.as_secs_f64()
            ),
        );
    };
    let (component, input, cancel) = (&component, &input, &services.cancel);
    let (result, attempts) = match component.attempts() {
        Attempts::Own => {
            let mut attempts = 1;
            let result = with_timeout(timeout, component.run(input, cancel, &mut attempts)).await;
            (result, attempts)
        }
        Attempts::Whole => {
            retry::run(slot.policy, cancel, OnStop::Await, on_retry, |_| {
                whole::attempt(services, component, input, timeout)
            })
            .await
        }
        Attempts::Drop => {
            retry::run(slot.policy, cancel, OnStop::Drop, on_retry, |_| async move {
                with_timeout(timeout, component.run(input, cancel, &mut 1)).await
            })
            .await
        }
    };
    if let Ok(done) = &result {
        let mut line = String::from("done");
        if let Some(rows) = done.rows {
            line.push_str(&format!(": {rows} rows"));
        }
        if let Some(bytes) = done.bytes {
            line.push_str(&format!(", {}", crate::log::human_bytes(bytes)));
        }
        line.push_str(&format!(" in {} ms", clock.elapsed().as_millis()));
        for destination in &done.destinations {
            line.push_str(&format!(" → {destination}"));
        }
        services.log.info(Some(&step.id), Some(attempts), line);
    }
    (result, attempts, clock.elapsed())
}

async fn with_timeout<T>(
    timeout: Option<Duration>,
    work: impl Future<Output = Result<T, TaskError>>,
) -> Result<T, TaskError> {
    match timeout {
        None => work.await,
        Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            Err(TaskError::transient(format!(
                "timed out after {} s (timeout_minutes)",
                limit.as_secs_f64()
            )))
        }),
    }
}
