//! The BigQuery API: the client, datasets and tables, query jobs and waiting for jobs.

use std::sync::Arc;
use std::time::Duration;

use gcp_bigquery_client::Client;
use gcp_bigquery_client::model::clustering::Clustering;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::job::Job;
use gcp_bigquery_client::model::job_configuration::JobConfiguration;
use gcp_bigquery_client::model::job_configuration_query::JobConfigurationQuery;
use gcp_bigquery_client::model::job_reference::JobReference;
use gcp_bigquery_client::model::table::Table as BqTable;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::model::time_partitioning::TimePartitioning;
use tokio_util::sync::CancellationToken;

use super::error::{api_error, proto_text, status, transient_reason};
use super::schema::{canonical, ddl_type, evolve, quote};
use super::{TableRef, Writer, job_id};
use crate::gcp::{Cloud, Tokens};
use crate::run::error::TaskError;
use crate::store::bigquery::StoreToBigquery;

const API: &str = "https://bigquery.googleapis.com";

/// The BigQuery API of `cloud`: the emulator's when `BIGQUERY_EMULATOR_HOST` is set.
pub(super) struct Api {
    pub(super) client: Client,
    pub(super) http: reqwest::Client,
    pub(super) cloud: Arc<Cloud>,
    /// `https://bigquery.googleapis.com` or `http://<emulator>`.
    pub(super) base: String,
    /// HTTP requests made so far.
    pub(super) requests: u64,
}

impl Api {
    pub(super) async fn new(cloud: &Arc<Cloud>) -> Result<Api, TaskError> {
        let base = match &cloud.bigquery_emulator {
            Some(host) => format!("http://{host}"),
            None => API.to_owned(),
        };
        // The API calls other than the upload are small: a stalled one is given up on.
        let calls = reqwest012::Client::builder()
            .user_agent(concat!("dpf/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| TaskError::permanent(format!("cannot set up the BigQuery client: {e}")))?;
        let mut builder = gcp_bigquery_client::client_builder::ClientBuilder::new();
        builder
            .with_v2_base_url(format!("{base}/bigquery/v2"))
            .with_client(calls);
        let client = builder
            .build_from_authenticator(Arc::new(Tokens(cloud.clone())))
            .await
            .map_err(|e| TaskError::permanent(format!("cannot set up the BigQuery client: {e}")))?;
        Ok(Api {
            client,
            http: crate::http::client(),
            cloud: cloud.clone(),
            base,
            requests: 0,
        })
    }
}

/// Creates the dataset of `table` when it is missing.
pub(super) async fn ensure_dataset(api: &mut Api, table: TableRef<'_>) -> Result<(), TaskError> {
    let TableRef { project, dataset, .. } = table;
    api.requests += 1;
    match api.client.dataset().get(project, dataset).await {
        Ok(_) => return Ok(()),
        Err(error) if status(&error) == Some(404) => {}
        Err(error) => return Err(api_error(&format!("cannot read dataset {project}.{dataset}"), error)),
    }
    api.requests += 1;
    match api.client.dataset().create(Dataset::new(project, dataset)).await {
        // Another run may have created it since.
        Err(error) if status(&error) != Some(409) => {
            Err(api_error(&format!("cannot create dataset {project}.{dataset}"), error))
        }
        _ => Ok(()),
    }
}

/// The table's columns after this write's schema changes: created when missing, new columns added.
pub(super) async fn ensure_table(
    api: &mut Api,
    table: TableRef<'_>,
    store: &StoreToBigquery,
    writer: &Writer<'_>,
    fields: &[TableFieldSchema],
) -> Result<Vec<TableFieldSchema>, TaskError> {
    let TableRef {
        project,
        dataset,
        table: table_id,
    } = table;
    let name = table.to_string();
    api.requests += 1;
    match api.client.table().get(project, dataset, table_id, None).await {
        Ok(existing) => {
            let theirs = existing.schema.fields.clone().unwrap_or_default();
            let Some(evolved) = evolve(&name, &theirs, fields, "")? else {
                return Ok(theirs);
            };
            let added = &evolved[theirs.len()..];
            if !added.is_empty() {
                // BigQuery's DDL for new columns; they are NULLABLE (or REPEATED), as it requires.
                let columns: Vec<String> = added
                    .iter()
                    .map(|f| format!("ADD COLUMN IF NOT EXISTS {} {}", quote(&f.name), ddl_type(f)))
                    .collect();
                let sql = format!("ALTER TABLE {} {}", quote(&name), columns.join(", "));
                let id = format!(
                    "{}_columns_{:08x}",
                    job_id(writer.run_id, writer.task),
                    fastrand::u32(..)
                );
                let names: Vec<&str> = added.iter().map(|f| f.name.as_str()).collect();
                let what = format!("adding column(s) {} to {name}", names.join(", "));
                let job = query(api, project, &id, sql).await.map_err(|e| e.context(&what))?;
                finish(api, project, job, &what, writer.cancel).await?;
            }
            // Fields added inside existing records: only the tables API can add those.
            let json = |f: &[TableFieldSchema]| serde_json::to_value(f).unwrap_or_default();
            if json(&evolved[..theirs.len()]) != json(&theirs) {
                let patch = BqTable {
                    schema: TableSchema::new(evolved.clone()),
                    ..BqTable::new(project, dataset, table_id, TableSchema::new(Vec::new()))
                };
                api.requests += 1;
                api.client
                    .table()
                    .patch(project, dataset, table_id, patch)
                    .await
                    .map_err(|e| api_error(&format!("cannot add fields to the records of {name}"), e))?;
            }
            Ok(evolved)
        }
        Err(error) if status(&error) == Some(404) => {
            let mut created = BqTable::new(project, dataset, table_id, TableSchema::new(fields.to_vec()));
            if let Some(column) = &store.partition_by {
                let field = fields.iter().find(|f| &f.name == column);
                match field.map(|f| canonical(&f.r#type)) {
                    Some("DATE" | "TIMESTAMP" | "DATETIME") => {
                        created = created.time_partitioning(TimePartitioning::per_day().field(column));
                    }
                    Some(other) => {
                        return Err(TaskError::permanent(format!(
                            "partition_by: column `{column}` is {other}; BigQuery partitions by a DATE, TIMESTAMP \
                             or DATETIME column"
                        )));
                    }
                    None => {
                        return Err(TaskError::permanent(format!(
                            "partition_by: `{column}` is not a column of the rows"
                        )));
                    }
                }
            }
            if !store.cluster_by.is_empty() {
                if let Some(missing) = store.cluster_by.iter().find(|c| !fields.iter().any(|f| &&f.name == c)) {
                    return Err(TaskError::permanent(format!(
                        "cluster_by: `{missing}` is not a column of the rows"
                    )));
                }
                created = created.clustering(Clustering {
                    fields: Some(store.cluster_by.clone()),
                });
            }
            api.requests += 1;
            match api.client.table().create(created).await {
                Ok(_) => Ok(fields.to_vec()),
                // Created by another run in the meantime: take its schema into account.
                Err(error) if status(&error) == Some(409) => {
                    Box::pin(ensure_table(api, table, store, writer, fields)).await
                }
                Err(error) => Err(api_error(&format!("cannot create table {name}"), error)),
            }
        }
        Err(error) => Err(api_error(&format!("cannot read table {name}"), error)),
    }
}

/// Starts a standard-SQL query job with id `job_id`.
pub(super) async fn query(api: &mut Api, project: &str, job_id: &str, sql: String) -> Result<Job, TaskError> {
    let job = Job {
        job_reference: Some(JobReference {
            project_id: Some(project.to_owned()),
            job_id: Some(job_id.to_owned()),
            location: None,
        }),
        configuration: Some(JobConfiguration {
            query: Some(JobConfigurationQuery {
                query: sql,
                use_legacy_sql: Some(false),
                ..JobConfigurationQuery::default()
            }),
            ..JobConfiguration::default()
        }),
        ..Job::default()
    };
    api.requests += 1;
    match api.client.job().insert(project, job).await {
        Ok(job) => Ok(job),
        // A job with this id exists: another invocation of this run started it.
        Err(error) if status(&error) == Some(409) => {
            api.requests += 1;
            api.client
                .job()
                .get_job(project, job_id, None)
                .await
                .map_err(|e| api_error(&format!("cannot look up job {job_id}"), e))
        }
        Err(error) => Err(api_error(&format!("cannot start query job {job_id}"), error)),
    }
}

/// Polls `job` until BigQuery says it is done.
pub(super) async fn wait(
    api: &mut Api,
    project: &str,
    mut job: Job,
    cancel: &CancellationToken,
) -> Result<Job, TaskError> {
    let mut delay = Duration::from_millis(200);
    loop {
        let state = job.status.as_ref().and_then(|s| s.state.as_deref()).unwrap_or("DONE");
        if state == "DONE" {
            return Ok(job);
        }
        let Some(reference) = &job.job_reference else {
            return Ok(job);
        };
        let Some(id) = reference.job_id.clone() else {
            return Err(TaskError::transient(
                "BigQuery answered with a running job without an id",
            ));
        };
        let location = reference.location.clone();
        tokio::select! {
            _ = cancel.cancelled() => {
                return Err(TaskError::stopped(format!(
                    "stopped while BigQuery job {id} ran: BigQuery may still finish it. A job that commits rows \
                     has an id fixed by the run and the task, so the next run of this tick finds it and does not \
                     load the rows twice"
                )));
            }
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
        api.requests += 1;
        job = api
            .client
            .job()
            .get_job(project, &id, location.as_deref())
            .await
            .map_err(|e| api_error(&format!("cannot follow job {id}"), e))?;
    }
}

/// Waits for `job`; its error, if it failed, with BigQuery's reason and message.
pub(super) async fn finish(
    api: &mut Api,
    project: &str,
    job: Job,
    what: &str,
    cancel: &CancellationToken,
) -> Result<Job, TaskError> {
    let job = wait(api, project, job, cancel).await?;
    let status = job.status.as_ref();
    let Some(error) = status.and_then(|s| s.error_result.as_ref()) else {
        return Ok(job);
    };
    let mut message = proto_text(error);
    let details: Vec<String> = status
        .and_then(|s| s.errors.as_ref())
        .into_iter()
        .flatten()
        .filter(|e| e.message != error.message)
        .take(5)
        .map(proto_text)
        .collect();
    if !details.is_empty() {
        message.push_str(&format!(" ({})", details.join("; ")));
    }
    let transient = error.reason.as_deref().is_some_and(transient_reason);
    let message = format!("{what} failed: {message}");
    Err(if transient {
        TaskError::transient(message)
    } else {
        TaskError::permanent(message)
    })
}
