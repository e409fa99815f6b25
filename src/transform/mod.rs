//! Transform functions: tasks that reshape upstream tables.

pub(crate) mod sql;
pub(crate) mod warehouse;

use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;

pub(crate) use self::sql::TransformSql;
use crate::component::Done;
use crate::error::TaskError;

/// A `transform_sql` task, built for its run: its query over the run's session.
pub(crate) struct Transform<'a> {
    pub(crate) query: String,
    pub(crate) session: &'a SessionContext,
    pub(crate) locator: sql::Locator<'a>,
    /// Where a result too large to hold goes, in chunks of about `chunk_bytes`.
    pub(crate) spill_dir: &'a std::path::Path,
    pub(crate) chunk_bytes: usize,
    /// The task's id, naming its spilled rows.
    pub(crate) task: &'a str,
    pub(crate) log: &'a crate::log::Log,
}

impl Transform<'_> {
    pub(crate) async fn run(&self) -> Result<Done, TaskError> {
        let table = sql::run_spilling(self.session, &self.query, (self.spill_dir, self.chunk_bytes), self.task)
            .await
            .map_err(|error| {
                match error
                    .source
                    .as_deref()
                    .and_then(|s| s.downcast_ref::<DataFusionError>())
                {
                    Some(error) => self.locator.error("params/query", &self.query, error),
                    None => error,
                }
            })?;
        if let Some(spill) = &table.spill {
            self.log.info(Some(self.task), None, spill.describe());
        }
        Ok(Done {
            rows: Some(table.rows() as u64),
            table: Some(table),
            ..Done::default()
        })
    }
}
