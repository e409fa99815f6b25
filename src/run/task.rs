//! One task of a run: its attempts and timeout, and what its function does.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::receipt::{self, TaskReceipt};
use super::retry::{self, OnStop, Policy};
use super::{Done, Env, Task, TaskError, alert_context, store};
use crate::alert::send;
use crate::extract::ExtractHttp;
use crate::http::Transport;
use crate::plan::Step;
use crate::secrets::Mode;
use crate::spec::Call;
use crate::table::Table;

/// Runs one task with its retries and timeout; returns its result, attempts and duration.
pub(super) async fn run_task(
    env: &Env,
    call: &Call,
    step: &Step,
    index: usize,
    tables: &HashMap<String, Table>,
    so_far: &[TaskReceipt],
) -> (Result<Done, TaskError>, u32, Duration) {
    let clock = Instant::now();
    let task = Task {
        env,
        id: &step.id,
        index,
        policy: Policy::new(step.retries, step.retry_delay_minutes),
    };
    let timeout = step
        .timeout_minutes
        .map(|m| Duration::from_secs_f64((m * 60.0).max(0.0)));
    let (result, attempts) = match call {
        // An extract retries each request itself, keeping the pages it already has.
        Call::ExtractHttp(params) => extract(&task, params, timeout).await,
        Call::ExtractWeather(weather) => extract(&task, &weather.to_http(), timeout).await,
        _ => {
            let on_retry = |retrying: retry::Retrying<'_>| {
                env.log.warn(
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
            match call {
                Call::StoreToBigquery(_) | Call::StoreToFirestore(_) => {
                    retry::run(task.policy, &env.cancel, OnStop::Await, on_retry, |_| {
                        store::attempt(&task, call, step, tables, timeout)
                    })
                    .await
                }
                _ => {
                    retry::run(task.policy, &env.cancel, OnStop::Drop, on_retry, |_| {
                        with_timeout(timeout, run_other(&task, call, step, tables, so_far))
                    })
                    .await
                }
            }
        }
    };
    if let Ok(done) = &result {
        let mut line = String::from("done");
        if let Some(rows) = done.rows {
            line.push_str(&format!(": {rows} rows"));
        }
        if let Some(bytes) = done.bytes {
            line.push_str(&format!(", {}", receipt::human_bytes(bytes)));
        }
        line.push_str(&format!(" in {} ms", clock.elapsed().as_millis()));
        for destination in &done.destinations {
            line.push_str(&format!(" → {destination}"));
        }
        env.log.info(Some(&step.id), Some(attempts), line);
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

async fn extract(task: &Task<'_>, params: &ExtractHttp, timeout: Option<Duration>) -> (Result<Done, TaskError>, u32) {
    let mut attempts = 1;
    let result = fetch(task, params, timeout, &mut attempts).await;
    (result, attempts)
}

async fn fetch(
    task: &Task<'_>,
    params: &ExtractHttp,
    timeout: Option<Duration>,
    attempts: &mut u32,
) -> Result<Done, TaskError> {
    let env = task.env;
    // Replayed requests keep their references as text: that is how recordings hold them.
    let mode = if env.replay { Mode::Literal } else { Mode::Values };
    let value = serde_json::to_value(params).expect("params serialize");
    let resolved = env
        .secrets
        .resolve_json(&value, mode)
        .map_err(|e| TaskError::caused(&e))?;
    let params = ExtractHttp::deserialize(resolved).map_err(|e| TaskError::permanent(format!("params: {e}")))?;
    if let Transport::Replay(fixtures) = &env.transport {
        fixtures.load(task.id).map_err(|e| TaskError::caused(&e))?;
    }
    let extracted = with_timeout(timeout, crate::extract::fetch::fetch(&params, task, attempts)).await?;
    Ok(Done {
        rows: Some(extracted.table.rows() as u64),
        bytes: Some(extracted.bytes as u64),
        pages: Some(extracted.pages as u64),
        table: Some(extracted.table),
        ..Done::default()
    })
}

/// Runs a transform or an alert.
async fn run_other(
    task: &Task<'_>,
    call: &Call,
    step: &Step,
    tables: &HashMap<String, Table>,
    so_far: &[TaskReceipt],
) -> Result<Done, TaskError> {
    let env = task.env;
    match call {
        Call::TransformSql(transform) => {
            let table = crate::transform::sql::run(&env.session, &transform.query)
                .await
                .map_err(|error| sql_error(task, "query", &transform.query, &error))?;
            Ok(Done {
                rows: Some(table.rows() as u64),
                table: Some(table),
                ..Done::default()
            })
        }
        Call::SendAlerts(alert) => {
            let locate = |sql: &str, message: &str, position| sql_error_at(task, "when", sql, message, position);
            let input = step.reads.first().map(String::as_str);
            let cx = alert_context(env, &env.cancel);
            let sent = send::send_alert(&cx, task.id, alert, input, tables, so_far, locate).await?;
            Ok(Done {
                rows: Some(sent.rows),
                destinations: sent.alerts.iter().map(|a| a.destination.clone()).collect(),
                alerts: sent.alerts,
                ..Done::default()
            })
        }
        Call::StoreToBigquery(_) | Call::StoreToFirestore(_) => unreachable!("stores run through store::attempt()"),
        Call::ExtractHttp(_) | Call::ExtractWeather(_) => unreachable!("extracts run through extract()"),
    }
}

/// A SQL error, placed at its line and column in the product file when DataFusion says where.
fn sql_error(task: &Task<'_>, field: &str, sql: &str, error: &datafusion::error::DataFusionError) -> TaskError {
    let (message, position) = crate::transform::sql::explain(error, sql);
    sql_error_at(task, field, sql, &message, position)
}

/// `message`, placed at `position` (line, column) inside the SQL text of `field` when known.
fn sql_error_at(task: &Task<'_>, field: &str, sql: &str, message: &str, position: Option<(usize, usize)>) -> TaskError {
    let pointer = format!("/tasks/{}/params/{field}", task.index);
    let located = position
        .and_then(|(line, column)| crate::transform::sql::locate(&task.env.source, &pointer, sql, line, column));
    match located {
        Some(at) => TaskError::permanent(format!(
            "{}:{}:{}: {message}",
            task.env.source.path().display(),
            at.line,
            at.column
        )),
        None => TaskError::permanent(format!("`{field}`: {message}")),
    }
}
