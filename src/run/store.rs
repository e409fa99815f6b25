//! The stores of a run: each attempt commits whole or not at all, and says what it committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Done, Env, ErrorKind, Task, TaskError, error};
use crate::plan::Step;
use crate::spec::Call;
use crate::store::local::{documents, warehouse};
use crate::table::Table;
use crate::target::{Destination, Target};

/// How long a store may take to answer once stopped: well inside Cloud Run's 10 s grace period.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// One attempt of a store. A stop or the task's `timeout` cancels the token the store gets, which
/// it checks before it commits; the attempt is awaited, so that the receipt says what it
/// committed, for at most [`STOP_GRACE`] after the stop (a store waiting on a slow service).
pub(super) async fn attempt(
    task: &Task<'_>,
    call: &Call,
    step: &Step,
    tables: &HashMap<String, Table>,
    timeout: Option<Duration>,
) -> Result<Done, TaskError> {
    let stop = task.env.cancel.child_token();
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
    let result = tokio::select! {
        result = write(task, call, step, tables, &stop) => result,
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
        (Err(error), Some(limit)) if error.kind == ErrorKind::Interrupted && !task.env.cancel.is_cancelled() => {
            Err(TaskError::transient(format!(
                "timed out after {} s (timeout_minutes): {}",
                limit.as_secs_f64(),
                error.message
            )))
        }
        (result, _) => result,
    }
}

/// Writes the input of store `task` where `call` says; `stop` is the token it checks before it commits.
async fn write(
    task: &Task<'_>,
    call: &Call,
    step: &Step,
    tables: &HashMap<String, Table>,
    stop: &CancellationToken,
) -> Result<Done, TaskError> {
    let env = task.env;
    let input = || -> Result<(&str, &Table), TaskError> {
        let name = step
            .reads
            .first()
            .ok_or_else(|| TaskError::permanent("the task has no input"))?;
        let table = tables
            .get(name)
            .ok_or_else(|| TaskError::permanent(format!("the output of `{name}` is missing")))?;
        Ok((name, table))
    };
    match (call, env.target) {
        (Call::StoreToBigquery(store), Target::Local) => {
            let (_, rows) = input()?;
            let warehouse = crate::store::local::warehouse_dir(&env.data_dir);
            let (store, rows, run_id) = (store.clone(), rows.clone(), env.run_id.clone());
            let written = blocking(stop, move |stop| {
                let target = warehouse::Target {
                    warehouse: &warehouse,
                    dataset: &store.dataset,
                    table: &store.table,
                    run_id: &run_id,
                };
                warehouse::write(&target, store.write, &store.key, &rows, stop)
            })
            .await?;
            Ok(Done {
                rows: Some(written.rows as u64),
                bytes: Some(written.bytes),
                destinations: destinations(call, env, ""),
                ..Done::default()
            })
        }
        (Call::StoreToFirestore(store), Target::Local) => {
            let (_, rows) = input()?;
            let path = crate::store::local::documents_path(&env.data_dir);
            let (store, rows, seed) = (store.clone(), rows.clone(), format!("{}/{}", env.run_id, task.id));
            let written = blocking(stop, move |stop| {
                documents::write(&path, &store.collection, &store.key, store.merge, &seed, &rows, stop)
            })
            .await?;
            repeated_keys(task, written.repeated);
            Ok(Done {
                rows: Some(written.documents as u64),
                destinations: destinations(call, env, ""),
                ..Done::default()
            })
        }
        (Call::StoreToBigquery(store), Target::Gcp) => {
            let (_, rows) = input()?;
            let (cloud, project) = cloud(task)?;
            let writer = crate::store::bigquery::gcp::Writer {
                run_id: &env.run_id,
                task: task.id,
                cancel: stop,
            };
            let written = crate::store::bigquery::gcp::write(cloud, project, store, &writer, rows).await?;
            let destinations = destinations(call, env, project);
            let destination = destinations.join("; ");
            if let Some(job) = &written.already_loaded {
                env.log.info(
                    Some(task.id),
                    None,
                    format!("already loaded into {destination} by job {job}; nothing to do"),
                );
            } else {
                env.log.info(
                    Some(task.id),
                    None,
                    format!(
                        "{} rows ({} bytes) into {destination} with {} load job(s), {} requests",
                        written.rows, written.bytes, written.load_jobs, written.requests
                    ),
                );
            }
            Ok(Done {
                rows: Some(written.rows),
                bytes: Some(written.bytes),
                destinations,
                ..Done::default()
            })
        }
        (Call::StoreToFirestore(store), Target::Gcp) => {
            let (_, rows) = input()?;
            let (cloud, project) = cloud(task)?;
            let seed = format!("{}/{}", env.run_id, task.id);
            let written = crate::store::firestore::gcp::write(cloud, project, store, &seed, rows, stop).await?;
            let destinations = destinations(call, env, project);
            env.log.info(
                Some(task.id),
                None,
                format!(
                    "{} documents into {} with {} BatchWrite requests",
                    written.documents,
                    destinations.join("; "),
                    written.requests
                ),
            );
            repeated_keys(task, written.repeated);
            Ok(Done {
                rows: Some(written.documents),
                destinations,
                ..Done::default()
            })
        }
        _ => unreachable!("only stores are written"),
    }
}

/// Where `call` writes, named as the plan names it; `project` is the Google Cloud project the
/// run resolved for it (unused on the local target).
fn destinations(call: &Call, env: &Env, project: &str) -> Vec<String> {
    Destination::of(call, env.target, &env.data_dir, |_| project.to_owned())
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Warns that `repeated` rows shared a document id with an earlier row of the write.
fn repeated_keys(task: &Task<'_>, repeated: usize) {
    if repeated > 0 {
        task.env.log.warn(
            Some(task.id),
            None,
            format!(
                "{repeated} row(s) had the key of an earlier row; each key is one document, holding the last of its rows"
            ),
        );
    }
}

/// The run's Google Cloud access and the project of `task`'s store.
fn cloud<'a>(task: &Task<'a>) -> Result<(&'a Arc<crate::gcp::Cloud>, &'a str), TaskError> {
    let cloud = task
        .env
        .cloud
        .as_ref()
        .ok_or_else(|| TaskError::permanent("the gcp target was not connected"))?;
    let project = cloud
        .project(task.id)
        .ok_or_else(|| TaskError::permanent(format!("no Google Cloud project for `{}`", task.id)))?;
    Ok((cloud, project))
}

/// Runs blocking store work off the async threads. The work gets a token that `stop` cancels (and
/// so does abandoning the returned future); it checks it as it goes and just before it commits,
/// and its answer says whether it committed.
async fn blocking<T: Send + 'static, E: std::error::Error + Send + 'static>(
    stop: &CancellationToken,
    work: impl FnOnce(&CancellationToken) -> Result<T, E> + Send + 'static,
) -> Result<T, TaskError> {
    let stop = stop.child_token();
    let abandoned = stop.clone().drop_guard();
    let result = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || work(&stop)).await
    };
    abandoned.disarm();
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) if stop.is_cancelled() => Err(TaskError::stopped(error::chain(&error))),
        Ok(Err(error)) => Err(TaskError::caused(&error)),
        Err(join) => Err(TaskError::permanent(format!("the store stopped unexpectedly: {join}"))),
    }
}
