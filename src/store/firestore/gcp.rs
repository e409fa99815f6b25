//! `store_to_firestore` on the gcp target: one document per row through `BatchWrite`.
//!
//! Writes go in batches of at most 500, several batches in flight. `BatchWrite` is not atomic: each
//! write has its own status, and the writes that failed with a retryable code are sent again, up to
//! [`WRITE_ATTEMPTS`] times; what still fails is reported with its document id. Document ids come
//! from the key columns (or from the run and the row's position), so a rerun overwrites.

use std::time::Duration;

use futures::StreamExt;
use gcloud_sdk::google::firestore::v1::firestore_client::FirestoreClient;
use gcloud_sdk::google::firestore::v1::{BatchWriteRequest, Document, DocumentMask, Write, write::Operation};
use gcloud_sdk::tonic::{Code, Status};
use gcloud_sdk::{GoogleApi, GoogleAuthMiddleware, GoogleAuthMiddlewareLayer};
use tokio_util::sync::CancellationToken;

use super::value::{field_path, fields};
use super::{Documents, IdError, StoreToFirestore};
use crate::error::TaskError;
use crate::retry::Policy;
use crate::table::Table;
use crate::target::gcp::cloud::Cloud;

/// Firestore's limit of writes per `BatchWrite`.
pub(crate) const BATCH_WRITES: usize = 500;
/// `BatchWrite` requests in flight at once.
const IN_FLIGHT: usize = 8;
/// How long one `BatchWrite` may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often one document's write is tried before it is reported as failed.
const WRITE_ATTEMPTS: usize = 4;
/// The back-off between the tries of the writes that failed: the run's retry policy, from one
/// second.
const RESEND: Policy = Policy {
    retries: WRITE_ATTEMPTS as u32 - 1,
    first_delay: Duration::from_secs(1),
};

/// What a write did, for the receipt.
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub documents: u64,
    /// Rows whose key an earlier row of the write already had.
    pub repeated: usize,
    /// `BatchWrite` requests sent, retries included.
    pub requests: u64,
}

/// Writes one document per row of `rows` into `store.collection` of `project`. `seed` (the run and
/// the task) makes the ids of rows without key columns.
pub(crate) async fn write(
    cloud: &Cloud,
    project: &str,
    store: &StoreToFirestore,
    seed: &str,
    rows: &Table,
    cancel: &CancellationToken,
) -> Result<Written, TaskError> {
    let named = Documents::of(&store.key, seed, rows, cancel).map_err(|e| match e {
        IdError::Stopped => TaskError::interrupted(),
        e => TaskError::permanent(e.to_string()),
    })?;
    if named.rows.is_empty() {
        return Ok(Written::default());
    }
    let database = format!("projects/{project}/databases/(default)");
    let db = connect(cloud, &database).await?;
    let parent = format!("{database}/documents/{}", store.collection);
    // One write per document (Firestore refuses two writes to one document in a request): rows that
    // share a key are one document, the last of them, as on the local target. The writes are built a
    // request at a time, as the requests go out.
    let Documents { rows: order, repeated } = named;
    let documents = order.len() as u64;
    let build = |slice: &[(usize, usize, String)]| -> Result<Vec<Write>, TaskError> {
        slice
            .iter()
            .map(|(b, row, id)| {
                let document = Document {
                    name: format!("{parent}/{id}"),
                    fields: fields(&rows.batches[*b], *row)?,
                    ..Document::default()
                };
                let update_mask = store.merge.then(|| DocumentMask {
                    field_paths: document.fields.keys().map(|name| field_path(name)).collect(),
                });
                Ok(Write {
                    update_mask,
                    operation: Some(Operation::Update(document)),
                    ..Write::default()
                })
            })
            .collect()
    };
    // Each request's answer comes with its number of writes, so a stop can say what was written.
    let send = |size: usize, writes: Result<Vec<Write>, TaskError>| {
        let (db, database) = (&db, &database);
        async move {
            let answer = match writes {
                Ok(writes) => batch_write(db, database, writes).await,
                Err(error) => Err(error),
            };
            (size, answer)
        }
    };
    let mut requests = order.len().div_ceil(BATCH_WRITES) as u64;
    // A stop sends no further requests; those in flight finish, and the error says how far it got.
    let mut sent = 0;
    let mut results: Vec<(usize, Result<Vec<Failed>, TaskError>)> = futures::stream::iter(order.chunks(BATCH_WRITES))
        .take_while(|_| std::future::ready(!cancel.is_cancelled()))
        .map(|slice| {
            sent += slice.len();
            send(slice.len(), build(slice))
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let stopped = |unwritten: usize| {
        TaskError::stopped(format!(
            "stopped after {} of {documents} documents were written to {} (BatchWrite is not atomic); a rerun \
             writes them all again under the same ids",
            sent.saturating_sub(unwritten),
            store.collection
        ))
    };
    if sent < order.len() {
        let unwritten = results
            .iter()
            .map(|(size, result)| result.as_ref().map_or(*size, Vec::len))
            .sum();
        return Err(stopped(unwritten));
    }
    let mut failures: Vec<(String, i32, String)> = Vec::new();
    for attempt in 2..=WRITE_ATTEMPTS + 1 {
        let mut pending = Vec::new();
        failures.clear();
        for (_, result) in results {
            for (write, code, message) in result? {
                let name = match &write.operation {
                    Some(Operation::Update(document)) => {
                        document.name.rsplit('/').next().unwrap_or_default().to_owned()
                    }
                    _ => String::new(),
                };
                if retryable(code) {
                    pending.push(write);
                }
                failures.push((name, code, message));
            }
        }
        let permanent = failures.iter().any(|(_, code, _)| !retryable(*code));
        if pending.is_empty() || permanent || attempt > WRITE_ATTEMPTS {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(RESEND.delay(attempt as u32 - 1)) => {}
            () = cancel.cancelled() => return Err(stopped(failures.len())),
        }
        let chunks = chunk(pending, BATCH_WRITES);
        requests += chunks.len() as u64;
        results = futures::stream::iter(chunks)
            .map(|writes| send(writes.len(), Ok(writes)))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
    }
    if !failures.is_empty() {
        let shown: Vec<String> = failures
            .iter()
            .take(5)
            .map(|(id, code, message)| format!("`{id}`: {} {message}", code_name(*code)))
            .collect();
        let text = format!(
            "{} of {documents} document(s) were not written to {}: {}{}",
            failures.len(),
            store.collection,
            shown.join("; "),
            if failures.len() > shown.len() { "; …" } else { "" }
        );
        return Err(if failures.iter().all(|(_, code, _)| retryable(*code)) {
            TaskError::transient(text)
        } else {
            TaskError::permanent(text)
        });
    }
    Ok(Written {
        documents,
        repeated,
        requests,
    })
}

/// A write that failed, with its gRPC status code and message.
type Failed = (Write, i32, String);

/// `writes` in chunks of at most `size`, each allocated to its own length.
fn chunk(writes: Vec<Write>, size: usize) -> Vec<Vec<Write>> {
    let mut chunks = Vec::with_capacity(writes.len().div_ceil(size));
    let mut writes = writes.into_iter();
    loop {
        let chunk: Vec<Write> = writes.by_ref().take(size).collect();
        if chunk.is_empty() {
            return chunks;
        }
        chunks.push(chunk);
    }
}

/// A Firestore client of the run's emulator or of the service, for `database`.
async fn connect(cloud: &Cloud, database: &str) -> Result<Firestore, TaskError> {
    let emulator = cloud.firestore_emulator.as_deref();
    let url = match emulator {
        Some(host) => format!("http://{host}"),
        None => "https://firestore.googleapis.com".to_owned(),
    };
    let credentials = cloud.grpc_credentials(emulator);
    let connect = async {
        let layer = GoogleAuthMiddlewareLayer::new(credentials, Some(database.to_owned()))?;
        GoogleApi::from_function_with_middleware(FirestoreClient::new, &url, layer).await
    };
    connect.await.map_err(|e| {
        TaskError::transient(format!(
            "cannot connect to Firestore at {url}: {}",
            crate::error::chain(&e)
        ))
    })
}

/// The Firestore API, authenticated.
type Firestore = GoogleApi<FirestoreClient<GoogleAuthMiddleware>>;

/// Sends one `BatchWrite`; the writes that failed, with their status code and message.
async fn batch_write(db: &Firestore, database: &str, writes: Vec<Write>) -> Result<Vec<Failed>, TaskError> {
    let request = BatchWriteRequest {
        database: database.to_owned(),
        writes: writes.clone(),
        ..BatchWriteRequest::default()
    };
    let answer = tokio::time::timeout(REQUEST_TIMEOUT, db.get().batch_write(request))
        .await
        .map_err(|_| {
            TaskError::transient(format!(
                "Firestore did not answer a BatchWrite within {} s",
                REQUEST_TIMEOUT.as_secs()
            ))
        })?;
    let response = answer.map_err(|status| rpc_error(&status))?.into_inner();
    Ok(writes
        .into_iter()
        .zip(response.status.into_iter().map(Some).chain(std::iter::repeat(None)))
        .filter_map(|(write, status)| match status {
            Some(status) if status.code == 0 => None,
            Some(status) => Some((write, status.code, status.message)),
            None => Some((write, 2, "Firestore gave no status for this write".to_owned())),
        })
        .collect())
}

/// Whether a write's status code is worth another attempt.
fn retryable(code: i32) -> bool {
    crate::target::gcp::cloud::retryable(Code::from_i32(code))
}

fn code_name(code: i32) -> String {
    format!("{:?}", Code::from_i32(code))
}

fn rpc_error(status: &Status) -> TaskError {
    let text = format!("Firestore BatchWrite failed: {:?}: {}", status.code(), status.message());
    if crate::target::gcp::cloud::retryable(status.code()) {
        TaskError::transient(text)
    } else {
        TaskError::permanent(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_and_chunks() {
        assert_eq!(field_path("temperature_2m"), "temperature_2m");
        assert_eq!(field_path("2m temp"), "`2m temp`");
        assert_eq!(field_path("a`b"), "`a\\`b`");
        let writes = vec![Write::default(); 1001];
        let sizes: Vec<usize> = chunk(writes, BATCH_WRITES).iter().map(Vec::len).collect();
        assert_eq!(sizes, [500, 500, 1]);
    }
}
