//! Transform functions: tasks that reshape upstream tables.

pub(crate) mod sql;
pub(crate) mod warehouse;

use datafusion::prelude::SessionContext;

pub(crate) use self::sql::TransformSql;
use crate::component::Done;
use crate::error::TaskError;

/// A `transform_sql` task, built for its run: its query over the run's session.
pub(crate) struct Transform<'a> {
    pub(crate) query: String,
    pub(crate) session: &'a SessionContext,
    pub(crate) locator: sql::Locator<'a>,
}

impl Transform<'_> {
    pub(crate) async fn run(&self) -> Result<Done, TaskError> {
        let table = sql::run(self.session, &self.query)
            .await
            .map_err(|error| self.locator.error("params/query", &self.query, &error))?;
        Ok(Done {
            rows: Some(table.rows() as u64),
            table: Some(table),
            ..Done::default()
        })
    }
}
