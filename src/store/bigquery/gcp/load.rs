//! `method: load`: the rows as one Parquet file through BigQuery's upload endpoint, straight into
//! the table or into a staging table that one query job commits.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::api::{Api, finish, query, wait};
use super::error::BigQueryError;
use super::model::{FieldType, Job, TableFieldSchema};
use super::schema::quote;
use super::schema::{conform, schema_of};
use super::writer::{TableRef, Writer, Written, digest, job_id, short};
use crate::error::TaskError;
use crate::store::bigquery::{StoreToBigquery, WriteMode};
use crate::table::Table;
use crate::table::spill::Spill;

/// Loads `rows`, of BigQuery type `fields`, into `table`: straight for `replace`, through a staging
/// table and one query job for `append` and `merge`.
pub(super) async fn load(
    api: &mut Api,
    table: TableRef<'_>,
    store: &StoreToBigquery,
    writer: &Writer<'_>,
    rows: &Table,
    fields: &[TableFieldSchema],
    written: &mut Written,
) -> Result<(), TaskError> {
    let project = table.project;
    let go_on = || !writer.cancel.is_cancelled();
    let parquet = crate::store::parquet::write(Vec::new(), &rows.schema, &rows.batches, &go_on).map_err(|e| {
        match writer.cancel.is_cancelled() {
            true => TaskError::interrupted(),
            false => BigQueryError::Parquet(e).into(),
        }
    })?;
    // Rows a job of an earlier invocation already committed count as written: they are in place.
    written.bytes = parquet.len() as u64;
    written.rows = rows.rows() as u64;
    let base = format!("{}_{}", job_id(writer.run_id, writer.task), digest(&parquet));
    let job_id = match previous(api, project, &base, writer.cancel).await? {
        Previous::Done(id) => {
            written.already_loaded = Some(id);
            return Ok(());
        }
        Previous::Free(id) => id,
    };
    if store.write == WriteMode::Replace {
        let job = until_stopped(
            writer,
            upload(api, table, Some(&job_id), "WRITE_TRUNCATE", fields, parquet),
        )
        .await?;
        written.load_jobs += 1;
        return finish(api, project, job, &format!("load job {job_id}"), writer.cancel)
            .await
            .map(|_| ());
    }
    let staging_name = format!("_dpf_staging_{}", job_id.replace('-', "_"));
    let staging = TableRef {
        table: &staging_name,
        ..table
    };
    create_staging(api, staging, fields).await?;
    let loaded = async {
        let job = until_stopped(writer, upload(api, staging, None, "WRITE_TRUNCATE", fields, parquet)).await?;
        written.load_jobs += 1;
        finish(api, project, job, "the load job into the staging table", writer.cancel).await?;
        if writer.cancel.is_cancelled() {
            return Err(TaskError::interrupted());
        }
        let sql = commit_sql(table, staging, store, fields);
        let job = query(api, project, &job_id, sql).await?;
        finish(api, project, job, &format!("query job {job_id}"), writer.cancel).await
    }
    .await;
    // The staging table goes also when the commit failed.
    let _ = api.delete_table(staging).await;
    loaded.map(|_| ())
}

/// Loads rows kept on disk (a large extract's) a chunk at a time, each chunk one Parquet file and
/// one load job into a staging table, then commits them with one query job as `store.write` says:
/// at most one chunk is in memory. `columns` are the destination's, which the chunks conform to.
pub(super) async fn load_chunks(
    api: &mut Api,
    table: TableRef<'_>,
    store: &StoreToBigquery,
    writer: &Writer<'_>,
    spill: &Spill,
    columns: &[TableFieldSchema],
    written: &mut Written,
) -> Result<(), TaskError> {
    let project = table.project;
    written.rows = spill.rows() as u64;
    let base = format!(
        "{}_{}",
        job_id(writer.run_id, writer.task),
        digest_files(spill.files())?
    );
    let job_id = match previous(api, project, &base, writer.cancel).await? {
        Previous::Done(id) => {
            written.already_loaded = Some(id);
            return Ok(());
        }
        Previous::Free(id) => id,
    };
    let staging_name = format!("_dpf_staging_{}", job_id.replace('-', "_"));
    let staging = TableRef {
        table: &staging_name,
        ..table
    };
    let go_on = || !writer.cancel.is_cancelled();
    let mut fields = Vec::new();
    let loaded = async {
        for (k, chunk) in spill.chunks().enumerate() {
            let chunk = conform(
                &Table::new(spill.schema().clone(), chunk.map_err(TaskError::caused)?),
                columns,
            )?;
            if k == 0 {
                fields = schema_of(&chunk.schema)?;
                create_staging(api, staging, &fields).await?;
            }
            let parquet =
                crate::store::parquet::write(Vec::new(), &chunk.schema, &chunk.batches, &go_on).map_err(|e| {
                    match writer.cancel.is_cancelled() {
                        true => TaskError::interrupted(),
                        false => BigQueryError::Parquet(e).into(),
                    }
                })?;
            written.bytes += parquet.len() as u64;
            let disposition = if k == 0 { "WRITE_TRUNCATE" } else { "WRITE_APPEND" };
            let job = until_stopped(writer, upload(api, staging, None, disposition, &fields, parquet)).await?;
            written.load_jobs += 1;
            finish(
                api,
                project,
                job,
                &format!("the load job of chunk {} into the staging table", k + 1),
                writer.cancel,
            )
            .await?;
        }
        if writer.cancel.is_cancelled() {
            return Err(TaskError::interrupted());
        }
        let sql = match store.write {
            WriteMode::Replace => replace_sql(table, staging, store, &fields),
            WriteMode::Append | WriteMode::Merge => commit_sql(table, staging, store, &fields),
        };
        let job = query(api, project, &job_id, sql).await?;
        finish(api, project, job, &format!("query job {job_id}"), writer.cancel).await
    }
    .await;
    let _ = api.delete_table(staging).await;
    loaded.map(|_| ())
}

/// Creates the staging table `staging` with `fields`. It expires after a day, so one left behind
/// by a killed run goes by itself.
async fn create_staging(
    api: &mut Api,
    staging: TableRef<'_>,
    fields: &[TableFieldSchema],
) -> Result<(), BigQueryError> {
    let expires = chrono::Utc::now() + chrono::Duration::days(1);
    let settings = serde_json::json!({ "expirationTime": expires.timestamp_millis().to_string() });
    api.create_table(staging, fields, settings)
        .await
        .map(drop)
        .map_err(|source| BigQueryError::CreateStaging {
            table: staging.table.to_owned(),
            source,
        })
}

/// [`digest`] of the files' contents, read a megabyte at a time.
fn digest_files(files: &[std::path::PathBuf]) -> Result<String, TaskError> {
    use std::io::Read;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0; 1 << 20];
    for path in files {
        let mut file = std::fs::File::open(path).map_err(TaskError::caused)?;
        loop {
            let n = file.read(&mut buffer).map_err(TaskError::caused)?;
            if n == 0 {
                break;
            }
            context.update(&buffer[..n]);
        }
    }
    Ok(short(&context.finish()))
}

/// The SQL that replaces the destination with the staging table, partitioned and clustered as
/// `store` says.
pub(super) fn replace_sql(
    destination: TableRef<'_>,
    staging: TableRef<'_>,
    store: &StoreToBigquery,
    fields: &[TableFieldSchema],
) -> String {
    let mut sql = format!("CREATE OR REPLACE TABLE {}", quote(&destination.to_string()));
    if let Some(column) = &store.partition_by {
        let day = match fields.iter().find(|f| &f.name == column).map(|f| &f.field_type) {
            Some(FieldType::Date) => quote(column),
            _ => format!("DATE({})", quote(column)),
        };
        sql.push_str(&format!(" PARTITION BY {day}"));
    }
    if !store.cluster_by.is_empty() {
        let columns: Vec<String> = store.cluster_by.iter().map(|c| quote(c)).collect();
        sql.push_str(&format!(" CLUSTER BY {}", columns.join(", ")));
    }
    sql.push_str(&format!(" AS SELECT * FROM {}", quote(&staging.to_string())));
    sql
}

/// The SQL that commits the staging table into the destination, as `store.write` says.
pub(super) fn commit_sql(
    destination: TableRef<'_>,
    staging: TableRef<'_>,
    store: &StoreToBigquery,
    fields: &[TableFieldSchema],
) -> String {
    let target = quote(&destination.to_string());
    let source = quote(&staging.to_string());
    let columns: Vec<String> = fields.iter().map(|f| quote(&f.name)).collect();
    let list = columns.join(", ");
    match store.write {
        WriteMode::Merge => {
            // Null keys match null keys, as the local target's merge does.
            let on = store
                .key
                .iter()
                .map(|k| format!("T.{0} IS NOT DISTINCT FROM S.{0}", quote(k)))
                .collect::<Vec<_>>()
                .join(" AND ");
            let set = columns
                .iter()
                .filter(|c| !store.key.iter().any(|k| &&quote(k) == c))
                .map(|c| format!("{c} = S.{c}"))
                .collect::<Vec<_>>();
            let update = if set.is_empty() {
                String::new()
            } else {
                format!(" WHEN MATCHED THEN UPDATE SET {}", set.join(", "))
            };
            let values = columns.iter().map(|c| format!("S.{c}")).collect::<Vec<_>>().join(", ");
            format!(
                "MERGE {target} T USING {source} S ON {on}{update} WHEN NOT MATCHED THEN INSERT ({list}) VALUES ({values})"
            )
        }
        WriteMode::Append | WriteMode::Replace => format!("INSERT INTO {target} ({list}) SELECT {list} FROM {source}"),
    }
}

pub(super) enum Previous {
    /// A job with this id already committed the rows.
    Done(String),
    /// This id is free to use.
    Free(String),
}

/// Looks for an earlier job of this run and task. A job id can be used only once, also by a job
/// that failed, so after a failure the next attempt is `<id>_2`, `<id>_3`, …
pub(super) async fn previous(
    api: &mut Api,
    project: &str,
    base: &str,
    cancel: &CancellationToken,
) -> Result<Previous, TaskError> {
    for attempt in 1..=100 {
        let id = match attempt {
            1 => base.to_owned(),
            n => format!("{base}_{n}"),
        };
        let job = match api.job(project, &id, None).await {
            Ok(job) => job,
            Err(error) if error.status() == Some(404) => return Ok(Previous::Free(id)),
            Err(source) => return Err(BigQueryError::LookUpJob { job: id, source }.into()),
        };
        let job = wait(api, project, job, cancel).await?;
        if job.status.is_some() && job.error().is_none() {
            return Ok(Previous::Done(id));
        }
    }
    Err(BigQueryError::EarlierJobsFailed { base: base.to_owned() }.into())
}

/// Starts a load job of `parquet` into `table` through the upload endpoint.
/// `upload`, given up when the run is stopped.
async fn until_stopped<T>(
    writer: &Writer<'_>,
    upload: impl std::future::Future<Output = Result<T, BigQueryError>>,
) -> Result<T, TaskError> {
    tokio::select! {
        result = upload => result.map_err(TaskError::from),
        () = writer.cancel.cancelled() => Err(TaskError::stopped(
            "stopped during the upload to BigQuery: nothing was committed, unless BigQuery already had the whole \
             upload; then its load job may still finish, and the next run of this tick finds it by its id",
        )),
    }
}

async fn upload(
    api: &mut Api,
    table: TableRef<'_>,
    job_id: Option<&str>,
    disposition: &str,
    fields: &[TableFieldSchema],
    parquet: Vec<u8>,
) -> Result<Job, BigQueryError> {
    let TableRef {
        project,
        dataset,
        table,
    } = table;
    let mut job = serde_json::json!({
        "configuration": {
            "load": {
                "destinationTable": {"projectId": project, "datasetId": dataset, "tableId": table},
                "sourceFormat": "PARQUET",
                "parquetOptions": {"enableListInference": true},
                "writeDisposition": disposition,
                "createDisposition": "CREATE_IF_NEEDED",
                "schema": {"fields": fields},
            }
        }
    });
    if let Some(id) = job_id {
        job["jobReference"] = serde_json::json!({"projectId": project, "jobId": id});
    }
    let boundary = format!("dpf-{:016x}", fastrand::u64(..));
    let mut body = Vec::with_capacity(parquet.len() + 1024);
    body.extend_from_slice(format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n").as_bytes());
    body.extend_from_slice(job.to_string().as_bytes());
    body.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
    body.extend_from_slice(&parquet);
    drop(parquet);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let request = api
        .cloud
        .http
        .post(api.url(true, &[project, "jobs"]))
        .query(&[("uploadType", "multipart")])
        .header(
            reqwest::header::CONTENT_TYPE,
            format!("multipart/related; boundary={boundary}"),
        )
        .timeout(Duration::from_secs(30 * 60))
        .body(body);
    match (api.send(request).await, job_id) {
        (Ok(job), _) => Ok(job),
        // Already exists: the job ran before; `finish` reads how it ended.
        (Err(error), Some(id)) if error.status() == Some(409) => {
            api.job(project, id, None)
                .await
                .map_err(|source| BigQueryError::LookUpJob {
                    job: id.to_owned(),
                    source,
                })
        }
        (Err(source), _) => Err(BigQueryError::StartLoad {
            table: format!("{dataset}.{table}"),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::FieldType;
    use super::super::schema::tests::field;
    use super::*;

    #[test]
    fn merge_sql() {
        let store: StoreToBigquery =
            serde_json::from_value(serde_json::json!({"dataset": "d", "table": "t", "write": "merge", "key": ["k"]}))
                .unwrap();
        let fields = vec![field("k", FieldType::Integer), field("v", FieldType::Float)];
        let destination = TableRef::of("p", &store);
        let staging = TableRef {
            table: "s",
            ..destination
        };
        assert_eq!(
            commit_sql(destination, staging, &store, &fields),
            "MERGE `p.d.t` T USING `p.d.s` S ON T.`k` IS NOT DISTINCT FROM S.`k` WHEN MATCHED THEN UPDATE SET `v` = \
             S.`v` WHEN NOT MATCHED THEN INSERT (`k`, `v`) VALUES (S.`k`, S.`v`)"
        );
    }
}
