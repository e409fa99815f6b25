//! The gcp target: its connection to Google Cloud ([`cloud`]: credentials, emulators, the
//! project of each store) and its stores, BigQuery and Firestore.

pub(crate) mod cloud;
pub(crate) mod project;

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Destination, Target};
use crate::component::{Done, Services, Slot};
use crate::error::TaskError;
use crate::log::Log;
use crate::spec::Call;
use crate::store::{StoreToBigquery, StoreToFirestore, bigquery, firestore};
use crate::table::Table;
use cloud::Cloud;

/// A store task on the gcp target, built for its run.
pub(crate) struct Store<'a> {
    kind: Kind,
    cloud: &'a Arc<Cloud>,
    project: String,
    task: &'a str,
    run_id: &'a str,
    log: &'a Log,
    destinations: Vec<String>,
}

enum Kind {
    BigQuery(StoreToBigquery),
    Firestore(StoreToFirestore),
}

impl<'a> Store<'a> {
    /// `call`, a store, as task `slot` of the run `services` serve, in the project the run
    /// resolved for it.
    pub(crate) fn new(call: Call, slot: Slot<'a>, services: &'a Services) -> Result<Store<'a>, TaskError> {
        let cloud = services
            .cloud
            .as_ref()
            .ok_or_else(|| TaskError::permanent("the gcp target was not connected"))?;
        let project = cloud
            .project(slot.id)
            .ok_or_else(|| TaskError::permanent(format!("no Google Cloud project for `{}`", slot.id)))?
            .to_owned();
        let destinations = Destination::names(&call, Target::Gcp, &services.data_dir, |_| project.clone());
        let kind = match call {
            Call::StoreToBigquery(store) => Kind::BigQuery(store),
            Call::StoreToFirestore(store) => Kind::Firestore(store),
            _ => return Err(TaskError::permanent("only stores write to the gcp target's stores")),
        };
        Ok(Store {
            kind,
            cloud,
            project,
            task: slot.id,
            run_id: &services.run_id,
            log: &services.log,
            destinations,
        })
    }

    /// Writes `rows`; `stop` is checked before anything commits. A BigQuery store first loads
    /// the `rejected` rows of its input beside its table.
    pub(crate) async fn write(
        &self,
        rows: &Table,
        rejected: Option<&Table>,
        stop: &CancellationToken,
    ) -> Result<Done, TaskError> {
        let destination = self.destinations.join("; ");
        match &self.kind {
            Kind::BigQuery(store) => {
                let mut destinations = self.destinations.clone();
                if let Some(rejected) = rejected.filter(|r| r.rows() > 0) {
                    let side = store.rejected();
                    let task = format!("{}__rejected", self.task);
                    let written = self.bigquery(&side, &task, rejected, stop).await?;
                    let call = Call::StoreToBigquery(side);
                    let named = Destination::names(&call, Target::Gcp, Path::new(""), |_| self.project.clone());
                    self.log.info(
                        Some(self.task),
                        None,
                        format!("{} quarantined rows into {}", written.rows, named.join("; ")),
                    );
                    destinations.extend(named);
                }
                let written = self.bigquery(store, self.task, rows, stop).await?;
                let line = match &written.already_loaded {
                    Some(job) => format!("already loaded into {destination} by job {job}; nothing to do"),
                    None => format!(
                        "{} rows ({} bytes) into {destination} with {} load job(s), {} requests",
                        written.rows, written.bytes, written.load_jobs, written.requests
                    ),
                };
                self.log.info(Some(self.task), None, line);
                Ok(Done {
                    rows: Some(written.rows),
                    bytes: Some(written.bytes),
                    destinations,
                    ..Done::default()
                })
            }
            Kind::Firestore(store) => {
                let seed = format!("{}/{}", self.run_id, self.task);
                let rows = rows.in_memory().map_err(TaskError::caused)?;
                let written = firestore::gcp::write(self.cloud, &self.project, store, &seed, &rows, stop).await?;
                self.log.info(
                    Some(self.task),
                    None,
                    format!(
                        "{} documents into {destination} with {} BatchWrite requests",
                        written.documents, written.requests
                    ),
                );
                super::local::repeated_keys(self.log, self.task, written.repeated);
                Ok(Done {
                    rows: Some(written.documents),
                    destinations: self.destinations.clone(),
                    ..Done::default()
                })
            }
        }
    }
}

impl Store<'_> {
    /// Runs `sql` in BigQuery into this store's table; with `pull`, the result's rows (at most that
    /// many) come back for the tasks after it.
    pub(crate) async fn query(
        &self,
        sql: &str,
        pull: Option<u64>,
        stop: &CancellationToken,
    ) -> Result<Done, TaskError> {
        let Kind::BigQuery(store) = &self.kind else {
            return Err(TaskError::permanent("a query writes a BigQuery table"));
        };
        let writer = bigquery::gcp::Writer {
            run_id: self.run_id,
            task: self.task,
            cancel: stop,
        };
        let queried = bigquery::gcp::query::run(self.cloud, &self.project, store, &writer, sql, pull).await?;
        let destination = self.destinations.join("; ");
        let written = &queried.written;
        let line = match &written.already_loaded {
            Some(job) => format!("already committed into {destination} by job {job}"),
            None => format!(
                "{} rows into {destination}, {} requests",
                written.rows, written.requests
            ),
        };
        self.log.info(Some(self.task), None, line);
        Ok(Done {
            rows: Some(written.rows),
            table: queried.rows,
            destinations: self.destinations.clone(),
            ..Done::default()
        })
    }

    async fn bigquery(
        &self,
        store: &StoreToBigquery,
        task: &str,
        rows: &Table,
        stop: &CancellationToken,
    ) -> Result<bigquery::gcp::Written, TaskError> {
        let writer = bigquery::gcp::Writer {
            run_id: self.run_id,
            task,
            cancel: stop,
        };
        bigquery::gcp::write(self.cloud, &self.project, store, &writer, rows).await
    }
}
