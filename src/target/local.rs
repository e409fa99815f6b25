//! The local target's stores: the Parquet warehouse and the SQLite document store in the data dir.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::{Destination, Target};
use crate::component::{Done, Services, Slot};
use crate::error::{self, TaskError};
use crate::log::Log;
use crate::spec::Call;
use crate::store::local::{documents, warehouse};
use crate::store::{StoreToBigquery, StoreToFirestore};
use crate::table::Table;

/// A store task on the local target, built for its run.
pub(crate) struct Store<'a> {
    kind: Kind,
    task: &'a str,
    run_id: &'a str,
    data_dir: &'a Path,
    log: &'a Log,
    destinations: Vec<String>,
}

enum Kind {
    Warehouse(StoreToBigquery),
    Documents(StoreToFirestore),
}

impl<'a> Store<'a> {
    /// `call`, a store, as task `slot` of the run `services` serve.
    pub(crate) fn new(call: Call, slot: Slot<'a>, services: &'a Services) -> Result<Store<'a>, TaskError> {
        let destinations = Destination::names(&call, Target::Local, &services.data_dir, |_| String::new());
        let kind = match call {
            Call::StoreToBigquery(store) => Kind::Warehouse(store),
            Call::StoreToFirestore(store) => Kind::Documents(store),
            _ => return Err(TaskError::permanent("only stores write to the local target's stores")),
        };
        Ok(Store {
            kind,
            task: slot.id,
            run_id: &services.run_id,
            data_dir: &services.data_dir,
            log: &services.log,
            destinations,
        })
    }

    /// Writes `rows` whole or not at all; `stop` is checked before the commit. A warehouse
    /// store first writes the `rejected` rows of its input beside its table.
    pub(crate) async fn write(
        &self,
        rows: &Table,
        rejected: Option<&Table>,
        stop: &CancellationToken,
    ) -> Result<Done, TaskError> {
        match &self.kind {
            Kind::Warehouse(store) => {
                let mut destinations = Vec::new();
                if let Some(rejected) = rejected.filter(|r| r.rows() > 0) {
                    let side = store.rejected();
                    self.warehouse(&side, rejected, stop).await?;
                    let call = Call::StoreToBigquery(side);
                    destinations.extend(Destination::names(&call, Target::Local, self.data_dir, |_| {
                        String::new()
                    }));
                }
                let written = self.warehouse(store, rows, stop).await?;
                Ok(Done {
                    rows: Some(written.rows as u64),
                    bytes: Some(written.bytes),
                    destinations: [self.destinations.clone(), destinations].concat(),
                    ..Done::default()
                })
            }
            Kind::Documents(store) => {
                let rows = rows.in_memory().map_err(TaskError::caused)?.into_owned();
                let path = crate::store::local::documents_path(self.data_dir);
                let (store, seed) = (store.clone(), format!("{}/{}", self.run_id, self.task));
                let written = blocking(stop, move |stop| {
                    documents::write(&path, &store.collection, &store.key, store.merge, &seed, &rows, stop)
                })
                .await?;
                repeated_keys(self.log, self.task, written.repeated);
                Ok(Done {
                    rows: Some(written.documents as u64),
                    destinations: self.destinations.clone(),
                    ..Done::default()
                })
            }
        }
    }
}

impl Store<'_> {
    /// The rows of `sql` over the local warehouse, each table named `dataset.table`.
    pub(crate) async fn query_rows(&self, sql: &str) -> Result<Table, datafusion::error::DataFusionError> {
        let session = crate::transform::sql::session();
        crate::store::local::tables::register(&session, &crate::store::local::warehouse_dir(self.data_dir)).await?;
        crate::transform::sql::run(&session, sql).await
    }

    async fn warehouse(
        &self,
        store: &StoreToBigquery,
        rows: &Table,
        stop: &CancellationToken,
    ) -> Result<warehouse::Written, TaskError> {
        let rows = rows.clone();
        let (store, run_id, data_dir) = (store.clone(), self.run_id.to_owned(), self.data_dir.to_owned());
        blocking(stop, move |stop| {
            let target = warehouse::Target {
                data_dir: &data_dir,
                dataset: &store.dataset,
                table: &store.table,
                run_id: &run_id,
                partition_by: store.partition_by.as_deref(),
            };
            warehouse::write(&target, store.write, &store.key, &rows, stop)
        })
        .await
    }
}

/// Warns that `repeated` rows of task `task` shared a document id with an earlier row of the write.
pub(super) fn repeated_keys(log: &Log, task: &str, repeated: usize) {
    if repeated > 0 {
        log.warn(
            Some(task),
            None,
            format!(
                "{repeated} row(s) had the key of an earlier row; each key is one document, holding the last of its rows"
            ),
        );
    }
}

/// Runs blocking store work off the async threads. The work gets a token that `stop` cancels (and
/// so does abandoning the returned future); it checks it as it goes and just before it commits,
/// and its answer says whether it committed.
async fn blocking<T: Send + 'static, E: std::error::Error + Send + Sync + 'static>(
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
        Ok(Err(error)) => Err(TaskError::caused(error)),
        Err(join) => Err(TaskError::permanent(format!("the store stopped unexpectedly: {join}"))),
    }
}
