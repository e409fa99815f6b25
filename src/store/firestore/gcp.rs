//! `store_to_firestore` on the gcp target: one document per row through `BatchWrite`.
//!
//! Writes go in batches of at most 500, several batches in flight. `BatchWrite` is not atomic: each
//! write has its own status, and the writes that failed with a retryable code are sent again, up to
//! [`WRITE_ATTEMPTS`] times; what still fails is reported with its document id. Document ids come
//! from the key columns (or from the run and the row's position), so a rerun overwrites.

use std::time::Duration;

use futures::StreamExt;
use gcloud_sdk::google::firestore::v1::{BatchWriteRequest, Document, DocumentMask, Write, write::Operation};
use gcloud_sdk::tonic::Code;
use tokio_util::sync::CancellationToken;

use super::value::{ColumnError, field_path, fields};
use super::{Documents, IdError, StoreToFirestore};
use crate::error::{ErrorKind, TaskError};
use crate::retry::Policy;
use crate::table::Table;
use crate::target::gcp::cloud::{Cloud, Firestore};

/// Firestore's limit of writes per `BatchWrite`.
pub(crate) const BATCH_WRITES: usize = 500;
/// `BatchWrite` requests in flight at once.
const IN_FLIGHT: usize = 8;
/// How long one `BatchWrite` may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often one document's write is tried before it is reported as failed.
const WRITE_ATTEMPTS: usize = 4;
/// The back-off between the tries of the writes that failed ([`WRITE_ATTEMPTS`] in all): the
/// retry module's exponential, jittered and capped delays, from one second.
const RESEND: Policy = Policy {
    retries: WRITE_ATTEMPTS as u32 - 1,
    first_delay: Duration::from_secs(1),
};

/// Why a write to Firestore failed. A stop is not one of these: it is a [`TaskError::stopped`]
/// that says what was written.
#[derive(Debug, thiserror::Error)]
pub(super) enum FirestoreError {
    /// The rows cannot be named as documents.
    #[error(transparent)]
    Ids(IdError),
    #[error(transparent)]
    Column(#[from] ColumnError),
    #[error("cannot connect to Firestore at {url}")]
    Connect {
        url: String,
        #[source]
        source: gcloud_sdk::error::Error,
    },
    #[error("Firestore did not answer a BatchWrite within {} s", .after.as_secs())]
    Timeout { after: Duration },
    /// The whole `BatchWrite` request failed with `code`.
    #[error("Firestore BatchWrite failed: {code:?}: {message}")]
    Rpc { code: Code, message: String },
    /// Writes still failed after [`WRITE_ATTEMPTS`] tries: (document id, gRPC code, message) each.
    #[error(
        "{} of {documents} document(s) were not written to {collection}: {}",
        .failures.len(),
        not_written(.failures)
    )]
    NotWritten {
        documents: u64,
        collection: String,
        failures: Vec<(String, i32, String)>,
    },
}

impl FirestoreError {
    /// Transient when Firestore was out of reach or busy (every failed write retryable); permanent
    /// otherwise.
    pub(super) fn kind(&self) -> ErrorKind {
        let transient = match self {
            FirestoreError::Ids(_) | FirestoreError::Column(_) => false,
            FirestoreError::Connect { .. } | FirestoreError::Timeout { .. } => true,
            FirestoreError::Rpc { code, .. } => crate::target::gcp::cloud::retryable(*code),
            FirestoreError::NotWritten { failures, .. } => failures.iter().all(|(_, code, _)| retryable(*code)),
        };
        if transient {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        }
    }
}

/// The one place a Firestore error becomes a task's: its kind, its text with its causes, and the
/// error itself as the source.
impl From<FirestoreError> for TaskError {
    fn from(error: FirestoreError) -> Self {
        TaskError::of(error.kind(), error)
    }
}

/// The first five writes that failed, and `…` when there are more.
fn not_written(failures: &[(String, i32, String)]) -> String {
    let shown: Vec<String> = failures
        .iter()
        .take(5)
        .map(|(id, code, message)| format!("`{id}`: {} {message}", code_name(*code)))
        .collect();
    let more = if failures.len() > shown.len() { "; …" } else { "" };
    format!("{}{more}", shown.join("; "))
}

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
        e => FirestoreError::Ids(e).into(),
    })?;
    if named.rows.is_empty() {
        return Ok(Written::default());
    }
    let database = format!("projects/{project}/databases/(default)");
    let db = cloud
        .firestore(&database)
        .await
        .map_err(|(url, source)| FirestoreError::Connect { url, source })?;
    let parent = format!("{database}/documents/{}", store.collection);
    // One write per document (Firestore refuses two writes to one document in a request): rows that
    // share a key are one document, the last of them, as on the local target. The writes are built a
    // request at a time, as the requests go out.
    let Documents { rows: order, repeated } = named;
    let documents = order.len() as u64;
    let build = |slice: &[(usize, usize, String)]| -> Result<Vec<Write>, FirestoreError> {
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
    let send = |size: usize, writes: Result<Vec<Write>, FirestoreError>| {
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
    let mut results: Vec<(usize, Result<Vec<Failed>, FirestoreError>)> =
        futures::stream::iter(order.chunks(BATCH_WRITES))
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
        return Err(FirestoreError::NotWritten {
            documents,
            collection: store.collection.clone(),
            failures,
        }
        .into());
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

/// Sends one `BatchWrite`; the writes that failed, with their status code and message.
async fn batch_write(db: &Firestore, database: &str, writes: Vec<Write>) -> Result<Vec<Failed>, FirestoreError> {
    let request = BatchWriteRequest {
        database: database.to_owned(),
        writes: writes.clone(),
        ..BatchWriteRequest::default()
    };
    let answer = tokio::time::timeout(REQUEST_TIMEOUT, db.get().batch_write(request))
        .await
        .map_err(|_| FirestoreError::Timeout { after: REQUEST_TIMEOUT })?;
    let response = answer
        .map_err(|status| FirestoreError::Rpc {
            code: status.code(),
            message: status.message().to_owned(),
        })?
        .into_inner();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::firestore::value::ValueError;

    #[test]
    fn field_paths_and_chunks() {
        assert_eq!(field_path("temperature_2m"), "temperature_2m");
        assert_eq!(field_path("2m temp"), "`2m temp`");
        assert_eq!(field_path("a`b"), "`a\\`b`");
        let writes = vec![Write::default(); 1001];
        let sizes: Vec<usize> = chunk(writes, BATCH_WRITES).iter().map(Vec::len).collect();
        assert_eq!(sizes, [500, 500, 1]);
    }

    #[test]
    fn errors_become_task_errors() {
        let busy = |id: &str| (id.to_owned(), Code::Unavailable as i32, "try later".to_owned());
        let failures = ["a", "b", "c", "d", "e", "f"].map(busy).to_vec();
        let error = TaskError::from(FirestoreError::NotWritten {
            documents: 9,
            collection: "items".to_owned(),
            failures,
        });
        assert_eq!(
            error.message,
            "6 of 9 document(s) were not written to items: `a`: Unavailable try later; `b`: Unavailable try later; \
             `c`: Unavailable try later; `d`: Unavailable try later; `e`: Unavailable try later; …"
        );
        assert!(error.is_transient());
        let denied = TaskError::from(FirestoreError::Rpc {
            code: Code::PermissionDenied,
            message: "no".to_owned(),
        });
        assert_eq!(denied.message, "Firestore BatchWrite failed: PermissionDenied: no");
        assert!(!denied.is_transient());
        let column = TaskError::from(FirestoreError::Column(ColumnError {
            column: "price".to_owned(),
            source: ValueError::NotANumber("abc".to_owned()),
        }));
        assert_eq!(column.message, "column `price`: cannot read abc as a number");
        assert!(!column.is_transient());
    }
}
