//! The BigQuery API: the client, datasets and tables, query jobs and waiting for jobs.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::error::{ApiError, BigQueryError, adding_columns};
use super::model::{FieldType, Job, Table as BqTable, TableFieldSchema};
use super::schema::{ddl_type, evolve, quote};
use super::writer::{TableRef, Writer, job_id};
use crate::error::TaskError;
use crate::store::bigquery::StoreToBigquery;
use crate::target::gcp::cloud::Cloud;

const API: &str = "https://bigquery.googleapis.com";
/// The API calls other than the upload are small: a stalled one is given up on.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// BigQuery's REST API for one write: the emulator's when `BIGQUERY_EMULATOR_HOST` is set.
pub(super) struct Api {
    pub(super) cloud: Arc<Cloud>,
    /// `https://bigquery.googleapis.com` or `http://<emulator>`.
    base: String,
    /// HTTP requests made so far.
    pub(super) requests: u64,
}

impl Api {
    pub(super) fn new(cloud: &Arc<Cloud>) -> Api {
        let base = match &cloud.bigquery_emulator {
            Some(host) => format!("http://{host}"),
            None => API.to_owned(),
        };
        Api {
            cloud: cloud.clone(),
            base,
            requests: 0,
        }
    }

    /// The URL of `segments` below `/bigquery/v2/projects/` (`/upload/bigquery/v2/projects/` for
    /// an upload), each segment percent-encoded.
    pub(super) fn url(&self, upload: bool, segments: &[&str]) -> String {
        let mut url = url::Url::parse(&self.base).expect("the BigQuery base URL is valid");
        {
            let mut path = url.path_segments_mut().expect("the BigQuery base URL has a path");
            if upload {
                path.push("upload");
            }
            path.extend(["bigquery", "v2", "projects"]).extend(segments);
        }
        url.into()
    }

    /// Sends `request` with the run's credentials; BigQuery's answer, or the error it answered with.
    pub(super) async fn send<T: DeserializeOwned>(&mut self, request: reqwest::RequestBuilder) -> Result<T, ApiError> {
        let authorization = self.cloud.authorization().await?;
        self.requests += 1;
        let response = request
            .header(reqwest::header::AUTHORIZATION, authorization)
            .send()
            .await
            .map_err(ApiError::Unreachable)?;
        let code = response.status().as_u16();
        let text = response.text().await.map_err(ApiError::Unreachable)?;
        if !(200..300).contains(&code) {
            return Err(ApiError::of_answer(code, &text));
        }
        // A deletion answers with nothing.
        let text = if text.trim().is_empty() { "null" } else { &text };
        serde_json::from_str(text).map_err(ApiError::Unexpected)
    }

    /// One API call of `method` on `segments` with the JSON `body`.
    async fn call<T: DeserializeOwned>(
        &mut self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<T, ApiError> {
        let mut request = self
            .cloud
            .http
            .request(method, self.url(false, segments))
            .query(query)
            .timeout(CALL_TIMEOUT);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    pub(super) async fn get<T: DeserializeOwned>(&mut self, segments: &[&str]) -> Result<T, ApiError> {
        self.call(Method::GET, segments, &[], None).await
    }

    /// A GET of `segments` with the query parameters `query`.
    pub(super) async fn get_with<T: DeserializeOwned>(
        &mut self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<T, ApiError> {
        self.call(Method::GET, segments, query, None).await
    }

    pub(super) async fn post<T: DeserializeOwned>(&mut self, segments: &[&str], body: Value) -> Result<T, ApiError> {
        self.call(Method::POST, segments, &[], Some(body)).await
    }

    /// The job `id` of `project`.
    pub(super) async fn job(&mut self, project: &str, id: &str, location: Option<&str>) -> Result<Job, ApiError> {
        let location: Vec<(&str, &str)> = location.map(|l| ("location", l)).into_iter().collect();
        self.call(Method::GET, &[project, "jobs", id], &location, None).await
    }

    /// Creates `table` with `fields` and the table resource's `extra` settings; `Ok(false)` when it exists.
    pub(super) async fn create_table(
        &mut self,
        table: TableRef<'_>,
        fields: &[TableFieldSchema],
        mut extra: Value,
    ) -> Result<bool, ApiError> {
        let TableRef {
            project,
            dataset,
            table,
        } = table;
        extra["tableReference"] = json!({"projectId": project, "datasetId": dataset, "tableId": table});
        extra["schema"] = json!({ "fields": fields });
        match self
            .post::<serde::de::IgnoredAny>(&[project, "datasets", dataset, "tables"], extra)
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if error.status() == Some(409) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Deletes `table`.
    pub(super) async fn delete_table(&mut self, table: TableRef<'_>) -> Result<(), ApiError> {
        let segments = [table.project, "datasets", table.dataset, "tables", table.table];
        self.call::<serde::de::IgnoredAny>(Method::DELETE, &segments, &[], None)
            .await
            .map(|_| ())
    }

    /// Streams `rows` (insertAll's `rows`) into `table`.
    pub(super) async fn insert_all(
        &mut self,
        table: TableRef<'_>,
        rows: Vec<Value>,
    ) -> Result<super::model::InsertAllResponse, ApiError> {
        let segments = [
            table.project,
            "datasets",
            table.dataset,
            "tables",
            table.table,
            "insertAll",
        ];
        self.post(&segments, json!({ "rows": rows })).await
    }
}

/// Creates the dataset of `table` when it is missing.
pub(super) async fn ensure_dataset(api: &mut Api, table: TableRef<'_>) -> Result<(), BigQueryError> {
    let TableRef { project, dataset, .. } = table;
    match api.get::<serde::de::IgnoredAny>(&[project, "datasets", dataset]).await {
        Ok(_) => return Ok(()),
        Err(error) if error.status() == Some(404) => {}
        Err(source) => {
            return Err(BigQueryError::ReadDataset {
                dataset: format!("{project}.{dataset}"),
                source,
            });
        }
    }
    let created = json!({"datasetReference": {"projectId": project, "datasetId": dataset}});
    match api.post::<serde::de::IgnoredAny>(&[project, "datasets"], created).await {
        // Another run may have created it since.
        Err(source) if source.status() != Some(409) => Err(BigQueryError::CreateDataset {
            dataset: format!("{project}.{dataset}"),
            source,
        }),
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
    let segments = [project, "datasets", dataset, "tables", table_id];
    match api.get::<BqTable>(&segments).await {
        Ok(existing) => {
            let theirs = existing.schema.fields;
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
                let names: Vec<String> = added.iter().map(|f| f.name.clone()).collect();
                let what = adding_columns(&names, &name);
                let job = query(api, project, &id, sql)
                    .await
                    .map_err(|source| BigQueryError::AddColumns {
                        columns: names,
                        table: name.clone(),
                        source: Box::new(source),
                    })?;
                finish(api, project, job, &what, writer.cancel).await?;
            }
            // Fields added inside existing records: only the tables API can add those.
            if evolved[..theirs.len()] != theirs[..] {
                let patch = json!({"schema": {"fields": evolved}});
                api.call::<serde::de::IgnoredAny>(Method::PATCH, &segments, &[], Some(patch))
                    .await
                    .map_err(|source| BigQueryError::AddFields {
                        table: name.clone(),
                        source,
                    })?;
            }
            Ok(evolved)
        }
        Err(error) if error.status() == Some(404) => {
            let mut settings = json!({});
            if let Some(column) = &store.partition_by {
                let field = fields.iter().find(|f| &f.name == column);
                match field.map(|f| &f.field_type) {
                    Some(FieldType::Date | FieldType::Timestamp | FieldType::Datetime) => {
                        settings["timePartitioning"] = json!({"type": "DAY", "field": column});
                    }
                    Some(other) => {
                        return Err(BigQueryError::PartitionType {
                            column: column.clone(),
                            field_type: other.clone(),
                        }
                        .into());
                    }
                    None => {
                        return Err(BigQueryError::NoPartitionColumn { column: column.clone() }.into());
                    }
                }
            }
            if !store.cluster_by.is_empty() {
                if let Some(missing) = store.cluster_by.iter().find(|c| !fields.iter().any(|f| &&f.name == c)) {
                    return Err(BigQueryError::NoClusterColumn {
                        column: missing.clone(),
                    }
                    .into());
                }
                settings["clustering"] = json!({ "fields": store.cluster_by });
            }
            match api.create_table(table, fields, settings).await {
                Ok(true) => Ok(fields.to_vec()),
                // Created by another run in the meantime: take its schema into account.
                Ok(false) => Box::pin(ensure_table(api, table, store, writer, fields)).await,
                Err(source) => Err(BigQueryError::CreateTable { table: name, source }.into()),
            }
        }
        Err(source) => Err(BigQueryError::ReadTable { table: name, source }.into()),
    }
}

/// Starts a standard-SQL query job with id `job_id`.
pub(super) async fn query(api: &mut Api, project: &str, job_id: &str, sql: String) -> Result<Job, BigQueryError> {
    let job = json!({
        "jobReference": {"projectId": project, "jobId": job_id},
        "configuration": {"query": {"query": sql, "useLegacySql": false}},
    });
    match api.post(&[project, "jobs"], job).await {
        Ok(job) => Ok(job),
        // A job with this id exists: another invocation of this run started it.
        Err(error) if error.status() == Some(409) => {
            api.job(project, job_id, None)
                .await
                .map_err(|source| BigQueryError::LookUpJob {
                    job: job_id.to_owned(),
                    source,
                })
        }
        Err(source) => Err(BigQueryError::StartQuery {
            job: job_id.to_owned(),
            source,
        }),
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
        if job.done() {
            return Ok(job);
        }
        let Some(reference) = &job.job_reference else {
            return Ok(job);
        };
        let Some(id) = reference.job_id.clone() else {
            return Err(BigQueryError::JobWithoutId.into());
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
        job = api
            .job(project, &id, location.as_deref())
            .await
            .map_err(|source| BigQueryError::FollowJob { job: id, source })?;
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
    let Some(error) = job.error() else {
        return Ok(job);
    };
    let details = job
        .status
        .iter()
        .flat_map(|s| &s.errors)
        .filter(|e| e.message != error.message)
        .take(5)
        .cloned()
        .collect();
    Err(BigQueryError::JobFailed {
        job: what.to_owned(),
        error: Box::new(error.clone()),
        details,
    }
    .into())
}
