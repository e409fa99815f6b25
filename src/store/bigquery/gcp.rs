//! `store_to_bigquery` on the gcp target.
//!
//! - `method: load`: the rows become one Parquet file, sent through BigQuery's upload endpoint.
//!   `replace` loads it straight into the table with `WRITE_TRUNCATE`; `append` and `merge` load it
//!   into a staging table, then one query job (`INSERT … SELECT` or `MERGE … ON key`) commits it, and
//!   the staging table is dropped, also when the commit fails.
//! - `method: streaming`: `tabledata.insertAll` in batches under 10 MB and 50,000 rows, each row
//!   with an `insertId`.
//!
//! The job that commits has an id made from the run id (product and logical time) and the task, so
//! a re-invoked run finds it done and loads nothing twice. The dataset and table are created when
//! missing; new columns are added to an existing table as NULLABLE; any other change of schema is
//! an error that names the column.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use gcp_bigquery_client::Client;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::clustering::Clustering;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::error_proto::ErrorProto;
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::job::Job;
use gcp_bigquery_client::model::job_configuration::JobConfiguration;
use gcp_bigquery_client::model::job_configuration_query::JobConfigurationQuery;
use gcp_bigquery_client::model::job_reference::JobReference;
use gcp_bigquery_client::model::table::Table as BqTable;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use gcp_bigquery_client::model::table_data_insert_all_request_rows::TableDataInsertAllRequestRows;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::model::time_partitioning::TimePartitioning;
use tokio_util::sync::CancellationToken;

use super::{LoadMethod, StoreToBigquery, WriteMode};
use crate::gcp::{Cloud, Tokens};
use crate::run::error::TaskError;
use crate::table::Table;

const API: &str = "https://bigquery.googleapis.com";
/// insertAll limits: 10 MB and 50,000 rows per request; dpf stays under both.
const STREAM_BYTES: usize = 9 * 1024 * 1024;
const STREAM_ROWS: usize = 50_000;

/// What a write did, for the receipt.
#[derive(Debug, Default)]
pub struct Written {
    pub rows: u64,
    pub bytes: u64,
    /// HTTP requests made to BigQuery.
    pub requests: u64,
    /// Load jobs started.
    pub load_jobs: u64,
    /// The id of the job that had already committed these rows, when this run found one.
    pub already_loaded: Option<String>,
}

/// Who is writing: the run and the task, for job ids.
pub struct Writer<'a> {
    pub run_id: &'a str,
    pub task: &'a str,
    pub cancel: &'a CancellationToken,
}

/// The BigQuery API of `cloud`: the emulator's when `BIGQUERY_EMULATOR_HOST` is set.
struct Api {
    client: Client,
    http: reqwest::Client,
    cloud: Arc<Cloud>,
    /// `https://bigquery.googleapis.com` or `http://<emulator>`.
    base: String,
    requests: u64,
}

impl Api {
    async fn new(cloud: &Arc<Cloud>) -> Result<Api, TaskError> {
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

/// Writes `rows` to the table `store` names, in project `project`.
pub async fn write(
    cloud: &Arc<Cloud>,
    project: &str,
    store: &StoreToBigquery,
    writer: &Writer<'_>,
    rows: &Table,
) -> Result<Written, TaskError> {
    let mut written = Written::default();
    if rows.schema.fields().is_empty() {
        // An empty response has no columns: there is nothing to add, replace or merge.
        return Ok(written);
    }
    let mut api = Api::new(cloud).await?;
    for column in &store.key {
        if rows.schema.field_with_name(column).is_err() {
            return Err(TaskError::permanent(format!(
                "key column `{column}` is not a column of the rows; they have: {}",
                rows.column_names().join(", ")
            )));
        }
    }
    let fields = schema_of(&rows.schema)?;
    ensure_dataset(&mut api, project, &store.dataset).await?;
    let table = ensure_table(&mut api, project, store, writer, &fields).await?;
    let rows = conform(rows, &table)?;
    // The rows' types after conforming: what the staging table and the load job declare.
    let fields = schema_of(&rows.schema)?;
    if rows.rows() == 0 && store.write != WriteMode::Replace {
        written.requests = api.requests;
        return Ok(written);
    }
    let job_id = job_id(writer.run_id, writer.task);
    let result = match store.method {
        LoadMethod::Load => load(&mut api, project, store, writer, &job_id, &rows, &fields, &mut written).await,
        LoadMethod::Streaming => stream(&mut api, project, store, &job_id, &rows, &mut written).await,
    };
    written.requests = api.requests;
    result.map(|()| written)
}

/// The id of the job that commits `task`'s rows of run `run_id`: letters, digits, `_` and `-`.
pub fn job_id(run_id: &str, task: &str) -> String {
    let id: String = format!("dpf_{run_id}_{task}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    id.chars().take(1000).collect()
}

// ---------------------------------------------------------------------------------------------
// Schema

/// BigQuery fields for an Arrow schema.
fn schema_of(schema: &Schema) -> Result<Vec<TableFieldSchema>, TaskError> {
    schema.fields().iter().map(|field| field_of(field)).collect()
}

fn field_of(field: &Field) -> Result<TableFieldSchema, TaskError> {
    let name = field.name();
    let mut out = match field.data_type() {
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            if matches!(
                item.data_type(),
                DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
            ) {
                return Err(TaskError::permanent(format!(
                    "column `{name}` is a list of lists, which BigQuery cannot store; unnest it in SQL first"
                )));
            }
            let mut inner = field_of(&Field::new(name, item.data_type().clone(), true))?;
            inner.mode = Some("REPEATED".to_owned());
            return Ok(inner);
        }
        DataType::Struct(children) => TableFieldSchema::record(
            name,
            children.iter().map(|child| field_of(child)).collect::<Result<_, _>>()?,
        ),
        other => TableFieldSchema::new(name, type_of(name, other)?),
    };
    out.mode = Some("NULLABLE".to_owned());
    Ok(out)
}

fn type_of(name: &str, data_type: &DataType) -> Result<FieldType, TaskError> {
    Ok(match data_type {
        DataType::Boolean => FieldType::Boolean,
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => FieldType::Integer,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => FieldType::Float,
        DataType::Decimal128(precision, scale) if *scale >= 0 && *scale <= 9 && precision - (*scale as u8) <= 29 => {
            FieldType::Numeric
        }
        DataType::Decimal128(..) | DataType::Decimal256(..) => FieldType::Bignumeric,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => FieldType::String,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            FieldType::Bytes
        }
        DataType::Date32 | DataType::Date64 => FieldType::Date,
        DataType::Timestamp(_, Some(_)) => FieldType::Timestamp,
        DataType::Timestamp(_, None) => FieldType::Datetime,
        DataType::Time32(_) | DataType::Time64(_) => FieldType::Time,
        other => {
            return Err(TaskError::permanent(format!(
                "column `{name}` has type {other}, which BigQuery cannot store; CAST it in SQL first"
            )));
        }
    })
}

/// The canonical name of a BigQuery type (the API answers with either spelling).
fn canonical(field_type: &FieldType) -> &'static str {
    match field_type {
        FieldType::String => "STRING",
        FieldType::Bytes => "BYTES",
        FieldType::Integer | FieldType::Int64 => "INTEGER",
        FieldType::Float | FieldType::Float64 => "FLOAT",
        FieldType::Numeric => "NUMERIC",
        FieldType::Bignumeric => "BIGNUMERIC",
        FieldType::Boolean | FieldType::Bool => "BOOLEAN",
        FieldType::Timestamp => "TIMESTAMP",
        FieldType::Date => "DATE",
        FieldType::Time => "TIME",
        FieldType::Datetime => "DATETIME",
        FieldType::Record | FieldType::Struct => "RECORD",
        FieldType::Geography => "GEOGRAPHY",
        FieldType::Json => "JSON",
        FieldType::Interval => "INTERVAL",
    }
}

fn mode(field: &TableFieldSchema) -> &str {
    field.mode.as_deref().unwrap_or("NULLABLE")
}

/// Whether rows of type `ours` load into a column of type `theirs` without losing anything:
/// the same type, or an integer into FLOAT, NUMERIC or BIGNUMERIC, or NUMERIC into BIGNUMERIC.
fn loads_into(ours: &str, theirs: &str) -> bool {
    ours == theirs
        || (ours == "INTEGER" && matches!(theirs, "FLOAT" | "NUMERIC" | "BIGNUMERIC"))
        || (ours == "NUMERIC" && theirs == "BIGNUMERIC")
}

/// The table's schema with the columns of `ours` it lacks added, or the first column whose type or
/// mode the table cannot take. Nested records are compared field by field.
fn evolve(
    table: &str,
    theirs: &[TableFieldSchema],
    ours: &[TableFieldSchema],
    path: &str,
) -> Result<Option<Vec<TableFieldSchema>>, TaskError> {
    let mut evolved = theirs.to_vec();
    let mut changed = false;
    for field in ours {
        let column = format!("{path}{}", field.name);
        let existing = theirs.iter().position(|t| t.name.eq_ignore_ascii_case(&field.name));
        let Some(at) = existing else {
            evolved.push(field.clone());
            changed = true;
            continue;
        };
        let existing = &theirs[at];
        let (ours_type, theirs_type) = (canonical(&field.r#type), canonical(&existing.r#type));
        if !loads_into(ours_type, theirs_type) {
            return Err(TaskError::permanent(format!(
                "column `{column}` is {theirs_type} in {table} but the rows have {ours_type}; CAST it in SQL, \
                 or write to a new table"
            )));
        }
        if (mode(field) == "REPEATED") != (mode(existing) == "REPEATED") {
            return Err(TaskError::permanent(format!(
                "column `{column}` is {} in {table} but the rows have it {}",
                mode(existing),
                mode(field)
            )));
        }
        if ours_type == "RECORD" {
            let nested = evolve(
                table,
                existing.fields.as_deref().unwrap_or_default(),
                field.fields.as_deref().unwrap_or_default(),
                &format!("{column}."),
            )?;
            if let Some(nested) = nested {
                evolved[at].fields = Some(nested);
                changed = true;
            }
        }
    }
    for existing in theirs {
        if mode(existing) == "REQUIRED" && !ours.iter().any(|f| f.name.eq_ignore_ascii_case(&existing.name)) {
            return Err(TaskError::permanent(format!(
                "column `{path}{}` is REQUIRED in {table} but the rows do not have it",
                existing.name
            )));
        }
    }
    Ok(changed.then_some(evolved))
}

/// `rows` with integer columns cast to the FLOAT or NUMERIC type the table has, and timestamps in
/// microseconds, the precision BigQuery keeps.
fn conform(rows: &Table, table: &[TableFieldSchema]) -> Result<Table, TaskError> {
    let target = |field: &Field| -> DataType {
        let existing = table.iter().find(|t| t.name.eq_ignore_ascii_case(field.name()));
        match (field.data_type(), existing.map(|t| canonical(&t.r#type))) {
            (DataType::Timestamp(_, tz), _) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
            (t, Some("FLOAT")) if t.is_integer() => DataType::Float64,
            (t, Some("NUMERIC")) if t.is_integer() => DataType::Decimal128(38, 9),
            (t, Some("BIGNUMERIC")) if t.is_integer() || matches!(t, DataType::Decimal128(..)) => {
                DataType::Decimal256(76, 38)
            }
            (t, _) => t.clone(),
        }
    };
    let fields: Vec<Field> = rows
        .schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(target(f)))
        .collect();
    if fields
        .iter()
        .zip(rows.schema.fields())
        .all(|(a, b)| a.data_type() == b.data_type())
    {
        return Ok(rows.clone());
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let batches = rows
        .batches
        .iter()
        .map(|batch| {
            let columns = batch
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(column, field)| cast(column, field.data_type()))
                .collect::<Result<Vec<ArrayRef>, _>>()?;
            RecordBatch::try_new(schema.clone(), columns)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TaskError::permanent(format!("cannot convert the rows for BigQuery: {e}")))?;
    Ok(Table::new(schema, batches))
}

// ---------------------------------------------------------------------------------------------
// Datasets and tables

async fn ensure_dataset(api: &mut Api, project: &str, dataset: &str) -> Result<(), TaskError> {
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
async fn ensure_table(
    api: &mut Api,
    project: &str,
    store: &StoreToBigquery,
    writer: &Writer<'_>,
    fields: &[TableFieldSchema],
) -> Result<Vec<TableFieldSchema>, TaskError> {
    let name = format!("{project}.{}.{}", store.dataset, store.table);
    api.requests += 1;
    match api
        .client
        .table()
        .get(project, &store.dataset, &store.table, None)
        .await
    {
        Ok(table) => {
            let theirs = table.schema.fields.clone().unwrap_or_default();
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
                    ..BqTable::new(project, &store.dataset, &store.table, TableSchema::new(Vec::new()))
                };
                api.requests += 1;
                api.client
                    .table()
                    .patch(project, &store.dataset, &store.table, patch)
                    .await
                    .map_err(|e| api_error(&format!("cannot add fields to the records of {name}"), e))?;
            }
            Ok(evolved)
        }
        Err(error) if status(&error) == Some(404) => {
            let mut table = BqTable::new(project, &store.dataset, &store.table, TableSchema::new(fields.to_vec()));
            if let Some(column) = &store.partition_by {
                let field = fields.iter().find(|f| &f.name == column);
                match field.map(|f| canonical(&f.r#type)) {
                    Some("DATE" | "TIMESTAMP" | "DATETIME") => {
                        table = table.time_partitioning(TimePartitioning::per_day().field(column));
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
                table = table.clustering(Clustering {
                    fields: Some(store.cluster_by.clone()),
                });
            }
            api.requests += 1;
            match api.client.table().create(table).await {
                Ok(_) => Ok(fields.to_vec()),
                // Created by another run in the meantime: take its schema into account.
                Err(error) if status(&error) == Some(409) => {
                    Box::pin(ensure_table(api, project, store, writer, fields)).await
                }
                Err(error) => Err(api_error(&format!("cannot create table {name}"), error)),
            }
        }
        Err(error) => Err(api_error(&format!("cannot read table {name}"), error)),
    }
}

// ---------------------------------------------------------------------------------------------
// Load jobs

#[allow(clippy::too_many_arguments)]
async fn load(
    api: &mut Api,
    project: &str,
    store: &StoreToBigquery,
    writer: &Writer<'_>,
    job_id: &str,
    rows: &Table,
    fields: &[TableFieldSchema],
    written: &mut Written,
) -> Result<(), TaskError> {
    let job_id = match previous(api, project, job_id, writer.cancel).await? {
        Previous::Done(id) => {
            written.already_loaded = Some(id);
            return Ok(());
        }
        Previous::Free(id) => id,
    };
    let parquet = crate::store::local::warehouse::write_parquet(Vec::new(), &rows.schema, &rows.batches)
        .map_err(|e| TaskError::permanent(format!("cannot write the rows as Parquet: {e}")))?;
    written.bytes = parquet.len() as u64;
    written.rows = rows.rows() as u64;
    let destination = (store.dataset.as_str(), store.table.as_str());
    if store.write == WriteMode::Replace {
        let job = upload(
            api,
            project,
            Some(&job_id),
            destination,
            "WRITE_TRUNCATE",
            fields,
            parquet,
        )
        .await?;
        written.load_jobs += 1;
        return finish(api, project, job, &format!("load job {job_id}"), writer.cancel)
            .await
            .map(|_| ());
    }
    let staging = format!("_dpf_staging_{}", job_id.replace('-', "_"));
    // The staging table expires after a day, so one left behind by a killed run goes by itself.
    let expires = chrono::Utc::now() + chrono::Duration::days(1);
    let table = BqTable {
        expiration_time: Some(expires.timestamp_millis().to_string()),
        ..BqTable::new(project, &store.dataset, &staging, TableSchema::new(fields.to_vec()))
    };
    api.requests += 1;
    match api.client.table().create(table).await {
        Err(error) if status(&error) != Some(409) => {
            return Err(api_error(&format!("cannot create the staging table {staging}"), error));
        }
        _ => {}
    }
    let loaded = async {
        let job = upload(
            api,
            project,
            None,
            (&store.dataset, &staging),
            "WRITE_TRUNCATE",
            fields,
            parquet,
        )
        .await?;
        written.load_jobs += 1;
        finish(api, project, job, "the load job into the staging table", writer.cancel).await?;
        if writer.cancel.is_cancelled() {
            return Err(TaskError::interrupted());
        }
        let sql = commit_sql(project, store, &staging, fields);
        let job = query(api, project, &job_id, sql).await?;
        finish(api, project, job, &format!("query job {job_id}"), writer.cancel).await
    }
    .await;
    // The staging table goes also when the commit failed.
    api.requests += 1;
    let _ = api.client.table().delete(project, &store.dataset, &staging).await;
    loaded.map(|_| ())
}

/// A name quoted for BigQuery's standard SQL.
fn quote(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// The type of `field` in BigQuery's DDL.
fn ddl_type(field: &TableFieldSchema) -> String {
    let base = match canonical(&field.r#type) {
        "INTEGER" => "INT64".to_owned(),
        "FLOAT" => "FLOAT64".to_owned(),
        "BOOLEAN" => "BOOL".to_owned(),
        "RECORD" => {
            let children: Vec<String> = field
                .fields
                .iter()
                .flatten()
                .map(|child| format!("{} {}", quote(&child.name), ddl_type(child)))
                .collect();
            format!("STRUCT<{}>", children.join(", "))
        }
        other => other.to_owned(),
    };
    if mode(field) == "REPEATED" {
        format!("ARRAY<{base}>")
    } else {
        base
    }
}

/// The SQL that commits the staging table into the destination.
fn commit_sql(project: &str, store: &StoreToBigquery, staging: &str, fields: &[TableFieldSchema]) -> String {
    let target = quote(&format!("{project}.{}.{}", store.dataset, store.table));
    let source = quote(&format!("{project}.{}.{staging}", store.dataset));
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

enum Previous {
    /// A job with this id already committed the rows.
    Done(String),
    /// This id is free to use.
    Free(String),
}

/// Looks for an earlier job of this run and task. A job id can be used only once, also by a job
/// that failed, so after a failure the next attempt is `<id>_2`, `<id>_3`, …
async fn previous(api: &mut Api, project: &str, base: &str, cancel: &CancellationToken) -> Result<Previous, TaskError> {
    for attempt in 1..=100 {
        let id = match attempt {
            1 => base.to_owned(),
            n => format!("{base}_{n}"),
        };
        api.requests += 1;
        let job = match api.client.job().get_job(project, &id, None).await {
            Ok(job) => job,
            Err(error) if status(&error) == Some(404) => return Ok(Previous::Free(id)),
            Err(error) => return Err(api_error(&format!("cannot look up job {id}"), error)),
        };
        let job = wait(api, project, job, cancel).await?;
        if job.status.as_ref().is_some_and(|s| s.error_result.is_none()) {
            return Ok(Previous::Done(id));
        }
    }
    Err(TaskError::permanent(format!(
        "100 earlier jobs of this run failed ({base} …); look at them in BigQuery"
    )))
}

/// Starts a load job of `parquet` into `table` through the upload endpoint.
async fn upload(
    api: &mut Api,
    project: &str,
    job_id: Option<&str>,
    (dataset, table): (&str, &str),
    disposition: &str,
    fields: &[TableFieldSchema],
    parquet: Vec<u8>,
) -> Result<Job, TaskError> {
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
    let url = format!(
        "{}/upload/bigquery/v2/projects/{project}/jobs?uploadType=multipart",
        api.base
    );
    let token = api
        .cloud
        .token()
        .await
        .map_err(|e| TaskError::permanent(format!("credentials: {e}")))?;
    api.requests += 1;
    let response = api
        .http
        .post(&url)
        .bearer_auth(token)
        .header(
            reqwest::header::CONTENT_TYPE,
            format!("multipart/related; boundary={boundary}"),
        )
        .timeout(Duration::from_secs(30 * 60))
        .body(body)
        .send()
        .await
        .map_err(|e| unreachable_error(&format!("cannot upload to BigQuery at {}", api.base), &e))?;
    let code = response.status().as_u16();
    let text = response
        .text()
        .await
        .map_err(|e| unreachable_error("cannot read BigQuery's answer to the upload", &e))?;
    if code == 409 {
        // Already exists: the job ran before; `finish` reads how it ended.
        if let Some(id) = job_id {
            api.requests += 1;
            return api
                .client
                .job()
                .get_job(project, id, None)
                .await
                .map_err(|e| api_error(&format!("cannot look up job {id}"), e));
        }
    }
    if !(200..300).contains(&code) {
        let error: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let error = &error["error"];
        let reason = error["errors"][0]["reason"].as_str().or(error["status"].as_str());
        let message = error["message"].as_str().unwrap_or(text.trim());
        return Err(classify(
            &format!("the load job into {dataset}.{table}"),
            i64::from(code),
            reason,
            message,
        ));
    }
    serde_json::from_str(&text)
        .map_err(|e| TaskError::transient(format!("BigQuery answered the upload with something unexpected: {e}")))
}

/// Starts a standard-SQL query job with id `job_id`.
async fn query(api: &mut Api, project: &str, job_id: &str, sql: String) -> Result<Job, TaskError> {
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
async fn wait(api: &mut Api, project: &str, mut job: Job, cancel: &CancellationToken) -> Result<Job, TaskError> {
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
            _ = cancel.cancelled() => return Err(TaskError::interrupted()),
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
async fn finish(
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

fn proto_text(error: &ErrorProto) -> String {
    let mut text = match (&error.reason, &error.message) {
        (Some(reason), Some(message)) => format!("{reason}: {message}"),
        (Some(text), None) | (None, Some(text)) => text.clone(),
        (None, None) => "no reason given".to_owned(),
    };
    if let Some(location) = error.location.as_deref().filter(|l| !l.is_empty()) {
        text.push_str(&format!(" at {location}"));
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Streaming inserts

async fn stream(
    api: &mut Api,
    project: &str,
    store: &StoreToBigquery,
    job_id: &str,
    rows: &Table,
    written: &mut Written,
) -> Result<(), TaskError> {
    if store.write != WriteMode::Append {
        return Err(TaskError::permanent(
            "`method: streaming` appends rows; use `method: load` for `write: replace` or `write: merge`",
        ));
    }
    let mut request = TableDataInsertAllRequest::new();
    let mut size = 0;
    let mut first = 0;
    let mut index = 0;
    for batch in &rows.batches {
        let json = crate::table::json_lines(batch)
            .map_err(|e| TaskError::permanent(format!("cannot turn the rows into JSON: {e}")))?;
        for line in json.lines() {
            if request.len() == STREAM_ROWS || (size + line.len() > STREAM_BYTES && !request.is_empty()) {
                insert(api, project, store, std::mem::take(&mut request), first).await?;
                written.bytes += size as u64;
                (size, first) = (0, index);
            }
            let value: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| TaskError::permanent(format!("cannot turn the rows into JSON: {e}")))?;
            request
                .add_rows(vec![TableDataInsertAllRequestRows {
                    insert_id: Some(format!("{job_id}_{index}")),
                    json: value,
                }])
                .map_err(|e| TaskError::permanent(e.to_string()))?;
            size += line.len() + 64;
            index += 1;
        }
    }
    if !request.is_empty() {
        insert(api, project, store, request, first).await?;
        written.bytes += size as u64;
    }
    written.rows = index as u64;
    Ok(())
}

/// One insertAll request; `first` is the index of its first row among all the task's rows.
async fn insert(
    api: &mut Api,
    project: &str,
    store: &StoreToBigquery,
    request: TableDataInsertAllRequest,
    first: usize,
) -> Result<(), TaskError> {
    api.requests += 1;
    let response = api
        .client
        .tabledata()
        .insert_all(project, &store.dataset, &store.table, request)
        .await
        .map_err(|e| api_error(&format!("cannot stream rows into {}.{}", store.dataset, store.table), e))?;
    let errors = response.insert_errors.unwrap_or_default();
    if errors.is_empty() {
        return Ok(());
    }
    // Rows that failed only because another row of the request was invalid say `stopped`.
    let invalid: Vec<String> = errors
        .iter()
        .flat_map(|row| {
            let at = first + row.index.unwrap_or(0).max(0) as usize;
            row.errors
                .iter()
                .flatten()
                .filter(|e| e.reason.as_deref() != Some("stopped"))
                .map(move |e| {
                    let field = e
                        .location
                        .as_deref()
                        .filter(|l| !l.is_empty())
                        .map(|l| format!(" field `{l}`"))
                        .unwrap_or_default();
                    format!(
                        "row {at}{field}: {}",
                        e.message.as_deref().or(e.reason.as_deref()).unwrap_or("rejected")
                    )
                })
        })
        .collect();
    let shown: Vec<&String> = invalid.iter().take(5).collect();
    Err(TaskError::permanent(format!(
        "BigQuery rejected {} row(s) of the request starting at row {first}: {}{}",
        errors.len(),
        shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; "),
        if invalid.len() > shown.len() { "; …" } else { "" }
    )))
}

// ---------------------------------------------------------------------------------------------
// Errors

/// The HTTP status of an API error, when BigQuery answered with one.
fn status(error: &BQError) -> Option<i64> {
    match error {
        BQError::ResponseError { error } => Some(error.error.code),
        BQError::RequestError(e) => e.status().map(|s| i64::from(s.as_u16())),
        _ => None,
    }
}

/// BigQuery error reasons worth another attempt.
fn transient_reason(reason: &str) -> bool {
    matches!(
        reason,
        "backendError" | "internalError" | "rateLimitExceeded" | "jobBackendError" | "jobInternalError" | "timeout"
    )
}

/// Transient for 408, 429, 5xx and the retryable reasons; permanent otherwise.
fn classify(what: &str, code: i64, reason: Option<&str>, message: &str) -> TaskError {
    let reason_text = reason.map(|r| format!(" {r}")).unwrap_or_default();
    let text = format!("{what}: BigQuery answered {code}{reason_text}: {message}");
    let status = u16::try_from(code).is_ok_and(crate::http::transient_status);
    if status || reason.is_some_and(transient_reason) {
        TaskError::transient(text)
    } else {
        TaskError::permanent(text)
    }
}

fn api_error(what: &str, error: BQError) -> TaskError {
    match error {
        BQError::ResponseError { error } => {
            let reason = error
                .error
                .errors
                .first()
                .and_then(|e| e.get("reason"))
                .map(String::as_str);
            classify(what, error.error.code, reason, &error.error.message)
        }
        BQError::RequestError(e) => match e.status() {
            Some(code) => classify(what, i64::from(code.as_u16()), None, &e.to_string()),
            None => TaskError::transient(format!(
                "{what}: cannot reach BigQuery: {}",
                crate::run::error::chain(&e)
            )),
        },
        other => TaskError::permanent(format!("{what}: {other}")),
    }
}

fn unreachable_error(what: &str, error: &reqwest::Error) -> TaskError {
    TaskError::transient(format!("{what}: {}", crate::run::error::chain(error)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, t: FieldType) -> TableFieldSchema {
        let mut f = TableFieldSchema::new(name, t);
        f.mode = Some("NULLABLE".into());
        f
    }

    #[test]
    fn schemas_from_arrow() {
        let schema = Schema::new(vec![
            Field::new("at", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new(
                "utc",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("price", DataType::Decimal128(12, 2), true),
            Field::new("big", DataType::Decimal128(38, 20), true),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ]);
        let fields = schema_of(&schema).unwrap();
        let types: Vec<(&str, &str)> = fields.iter().map(|f| (canonical(&f.r#type), mode(f))).collect();
        assert_eq!(
            types,
            [
                ("DATETIME", "NULLABLE"),
                ("TIMESTAMP", "NULLABLE"),
                ("NUMERIC", "NULLABLE"),
                ("BIGNUMERIC", "NULLABLE"),
                ("STRING", "REPEATED")
            ]
        );
        let nested = Schema::new(vec![Field::new(
            "m",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
                true,
            ))),
            true,
        )]);
        assert!(schema_of(&nested).unwrap_err().message.contains("list of lists"));
    }

    #[test]
    fn schema_evolution() {
        let theirs = vec![field("a", FieldType::Int64), field("b", FieldType::Float)];
        let same = vec![field("A", FieldType::Integer), field("b", FieldType::Integer)];
        assert!(evolve("t", &theirs, &same, "").unwrap().is_none());
        let more = vec![field("a", FieldType::Integer), field("c", FieldType::String)];
        let evolved = evolve("t", &theirs, &more, "").unwrap().unwrap();
        assert_eq!(
            evolved.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let wrong = vec![field("b", FieldType::String)];
        let error = evolve("p.d.t", &theirs, &wrong, "").unwrap_err();
        assert_eq!(
            error.message,
            "column `b` is FLOAT in p.d.t but the rows have STRING; CAST it in SQL, or write to a new table"
        );
        let mut required = field("r", FieldType::String);
        required.mode = Some("REQUIRED".into());
        assert!(
            evolve("t", &[required], &more, "")
                .unwrap_err()
                .message
                .contains("REQUIRED")
        );
    }

    #[test]
    fn job_ids_and_sql() {
        assert_eq!(
            job_id("weather-2025-01-08T00:00:00Z", "to_bq"),
            "dpf_weather-2025-01-08T00_00_00Z_to_bq"
        );
        let store: StoreToBigquery =
            serde_json::from_value(serde_json::json!({"dataset": "d", "table": "t", "write": "merge", "key": ["k"]}))
                .unwrap();
        let fields = vec![field("k", FieldType::Integer), field("v", FieldType::Float)];
        assert_eq!(
            commit_sql("p", &store, "s", &fields),
            "MERGE `p.d.t` T USING `p.d.s` S ON T.`k` IS NOT DISTINCT FROM S.`k` WHEN MATCHED THEN UPDATE SET `v` = \
             S.`v` WHEN NOT MATCHED THEN INSERT (`k`, `v`) VALUES (S.`k`, S.`v`)"
        );
    }
}
