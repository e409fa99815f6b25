//! The gcp target's state: Firestore documents in the product's project. `_dpf/<product>` holds
//! the cursors, the last run and the last success (JSON text each); `_dpf/<product>/runs/<started
//! at>-<run id>-<random>` one run of the capped history. A commit reads and writes the product's document in
//! one transaction, so two runs at once on two machines never move a cursor backwards.

use std::collections::{BTreeMap, HashMap};

use gcloud_sdk::google::firestore::v1::transaction_options::{Mode, ReadWrite};
use gcloud_sdk::google::firestore::v1::value::ValueType;
use gcloud_sdk::google::firestore::v1::write::Operation;
use gcloud_sdk::google::firestore::v1::{
    BeginTransactionRequest, CommitRequest, Document, GetDocumentRequest, ListDocumentsRequest, TransactionOptions,
    Value as Field, Write, get_document_request::ConsistencySelector,
};
use gcloud_sdk::tonic::Code;
use serde_json::Value;

use super::{HISTORY, ProductState, RunRecord, StateError, json, latest_success, merged};
use crate::target::gcp::cloud::{Cloud, Firestore};

/// The collection of dpf's state documents.
const COLLECTION: &str = "_dpf";
/// How often a transaction that met another one is tried again.
const ATTEMPTS: usize = 5;

struct Names {
    database: String,
    product: String,
    runs: String,
}

fn names(project: &str, product: &str) -> Names {
    let database = format!("projects/{project}/databases/(default)");
    let product = format!("{database}/documents/{COLLECTION}/{product}");
    Names {
        runs: format!("{product}/runs"),
        database,
        product,
    }
}

fn failed(what: &str) -> impl Fn(gcloud_sdk::tonic::Status) -> StateError + '_ {
    move |status| StateError::Firestore {
        what: what.to_owned(),
        source: Box::new(status),
    }
}

async fn client(cloud: &Cloud, database: &str) -> Result<Firestore, StateError> {
    cloud
        .firestore(database)
        .await
        .map_err(|(url, source)| StateError::Firestore {
            what: format!("at {url}"),
            source: Box::new(source),
        })
}

/// The text field `name` of `document`.
fn text<'a>(document: &'a Document, name: &str) -> Option<&'a str> {
    match document.fields.get(name)?.value_type.as_ref()? {
        ValueType::StringValue(text) => Some(text),
        _ => None,
    }
}

fn string(text: String) -> Field {
    Field {
        value_type: Some(ValueType::StringValue(text)),
    }
}

/// The product's document as state: cursors, last run, last success.
fn state_of(document: Option<&Document>) -> Result<ProductState, StateError> {
    let Some(document) = document else {
        return Ok(ProductState::default());
    };
    let record = |name| {
        text(document, name)
            .map(|t| serde_json::from_str::<RunRecord>(t).map_err(StateError::Record))
            .transpose()
    };
    Ok(ProductState {
        cursors: text(document, "cursors")
            .map(|t| serde_json::from_str(t).map_err(StateError::Record))
            .transpose()?
            .unwrap_or_default(),
        last_run: record("last_run")?,
        last_success: record("last_success")?,
    })
}

/// The product's document, read in `transaction` when one is given; `None` when it does not exist.
async fn get(db: &Firestore, name: &str, transaction: Option<Vec<u8>>) -> Result<Option<Document>, StateError> {
    let request = GetDocumentRequest {
        name: name.to_owned(),
        consistency_selector: transaction.map(ConsistencySelector::Transaction),
        ..GetDocumentRequest::default()
    };
    match db.get().get_document(request).await {
        Ok(response) => Ok(Some(response.into_inner())),
        Err(status) if status.code() == Code::NotFound => Ok(None),
        Err(status) => Err(failed("read of the product's state")(status)),
    }
}

pub(super) async fn read(cloud: &Cloud, project: &str, product: &str) -> Result<ProductState, StateError> {
    let names = names(project, product);
    let db = client(cloud, &names.database).await?;
    state_of(get(&db, &names.product, None).await?.as_ref())
}

/// Runs `change` over the product's state in a read-write transaction and writes what it returns
/// (the product's document and more writes); tried again when another transaction got there first.
async fn transact<T>(
    cloud: &Cloud,
    project: &str,
    product: &str,
    mut change: impl FnMut(ProductState) -> Result<(ProductState, Vec<Write>, T), StateError>,
) -> Result<T, StateError> {
    let names = names(project, product);
    let db = client(cloud, &names.database).await?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let begin = BeginTransactionRequest {
            database: names.database.clone(),
            options: Some(TransactionOptions {
                mode: Some(Mode::ReadWrite(ReadWrite::default())),
            }),
            ..BeginTransactionRequest::default()
        };
        let transaction = db
            .get()
            .begin_transaction(begin)
            .await
            .map_err(failed("transaction"))?
            .into_inner()
            .transaction;
        let current = state_of(get(&db, &names.product, Some(transaction.clone())).await?.as_ref())?;
        let (state, mut writes, out) = change(current)?;
        let mut fields = HashMap::from([("cursors".to_owned(), string(json(&state.cursors)))]);
        for (name, record) in [("last_run", &state.last_run), ("last_success", &state.last_success)] {
            if let Some(record) = record {
                fields.insert(name.to_owned(), string(json(record)));
            }
        }
        writes.insert(
            0,
            Write {
                operation: Some(Operation::Update(Document {
                    name: names.product.clone(),
                    fields,
                    ..Document::default()
                })),
                ..Write::default()
            },
        );
        let commit = CommitRequest {
            database: names.database.clone(),
            writes,
            transaction,
            ..CommitRequest::default()
        };
        match db.get().commit(commit).await {
            Ok(_) => return Ok(out),
            Err(status) if status.code() == Code::Aborted && attempt < ATTEMPTS => continue,
            Err(status) => return Err(failed("commit of the product's state")(status)),
        }
    }
}

pub(super) async fn commit(
    cloud: &Cloud,
    project: &str,
    product: &str,
    cursors: &BTreeMap<String, Value>,
    run: RunRecord,
) -> Result<RunRecord, StateError> {
    let names = names(project, product);
    let recorded = transact(cloud, project, product, |mut state| {
        let mut run = run.clone();
        let saved = merged(&state.cursors, cursors);
        run.cursors = cursors
            .keys()
            .filter_map(|task| Some((task.clone(), saved.get(task)?.clone())))
            .collect();
        state.cursors = saved;
        state.last_success = latest_success(state.last_success.iter().chain([&run])).cloned();
        let newer = state
            .last_run
            .as_ref()
            .is_none_or(|last| last.started_at <= run.started_at);
        if newer {
            state.last_run = Some(run.clone());
        }
        let document = Write {
            operation: Some(Operation::Update(Document {
                // Two machines may start the same run in the same millisecond: each keeps its record.
                name: format!(
                    "{}/{}-{}-{:08x}",
                    names.runs,
                    run.started_at,
                    run.run_id,
                    fastrand::u32(..)
                ),
                fields: HashMap::from([
                    ("started_at".to_owned(), string(run.started_at.clone())),
                    ("record".to_owned(), string(json(&run))),
                ]),
                ..Document::default()
            })),
            ..Write::default()
        };
        Ok((state, vec![document], run))
    })
    .await?;
    prune(cloud, &names).await?;
    Ok(recorded)
}

/// The run documents of the product, oldest first (their ids start with the start time).
async fn runs(db: &Firestore, names: &Names) -> Result<Vec<Document>, StateError> {
    let mut documents = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = ListDocumentsRequest {
            parent: names.product.clone(),
            collection_id: "runs".to_owned(),
            page_size: 300,
            page_token: page_token.clone(),
            ..ListDocumentsRequest::default()
        };
        let page = db
            .get()
            .list_documents(request)
            .await
            .map_err(failed("list of runs"))?
            .into_inner();
        documents.extend(page.documents);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    documents.sort_by(|a, b| text(a, "started_at").cmp(&text(b, "started_at")));
    Ok(documents)
}

/// Deletes the runs beyond the latest [`HISTORY`].
async fn prune(cloud: &Cloud, names: &Names) -> Result<(), StateError> {
    let db = client(cloud, &names.database).await?;
    let documents = runs(&db, names).await?;
    let extra = documents.len().saturating_sub(HISTORY);
    if extra == 0 {
        return Ok(());
    }
    let writes = documents[..extra]
        .iter()
        .map(|document| Write {
            operation: Some(Operation::Delete(document.name.clone())),
            ..Write::default()
        })
        .collect();
    let commit = CommitRequest {
        database: names.database.clone(),
        writes,
        ..CommitRequest::default()
    };
    db.get().commit(commit).await.map_err(failed("removal of old runs"))?;
    Ok(())
}

pub(super) async fn reset(
    cloud: &Cloud,
    project: &str,
    product: &str,
    task: Option<&str>,
) -> Result<Vec<String>, StateError> {
    transact(cloud, project, product, |mut state| {
        let forgotten: Vec<String> = match task {
            Some(task) => state
                .cursors
                .remove(task)
                .map(|_| task.to_owned())
                .into_iter()
                .collect(),
            None => std::mem::take(&mut state.cursors).into_keys().collect(),
        };
        Ok((state, Vec::new(), forgotten))
    })
    .await
}

pub(super) async fn history(cloud: &Cloud, project: &str, product: &str) -> Result<Vec<RunRecord>, StateError> {
    let names = names(project, product);
    let db = client(cloud, &names.database).await?;
    let mut records = runs(&db, &names)
        .await?
        .iter()
        .filter_map(|document| text(document, "record"))
        .map(|text| serde_json::from_str(text).map_err(StateError::Record))
        .collect::<Result<Vec<RunRecord>, _>>()?;
    records.reverse();
    Ok(records)
}
