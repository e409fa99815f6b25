//! `transform_sql` with `engine: bigquery`: the query runs where the tables are (BigQuery on the
//! gcp target, the local warehouse on the local target) and its result is written to
//! `destination` as a BigQuery store writes; its rows come back for the tasks that read them.

use tokio_util::sync::CancellationToken;

use super::sql::Locator;
use crate::component::Done;
use crate::error::TaskError;

/// A query over the warehouse, built for its run.
pub(crate) struct Query<'a> {
    pub(crate) sql: String,
    /// The most result rows read back from BigQuery, when a later task or a check needs them.
    pub(crate) pull: Option<u64>,
    pub(crate) locator: Locator<'a>,
    pub(crate) runs_on: RunsOn<'a>,
}

/// Where the query runs: the target's store of its `destination`.
pub(crate) enum RunsOn<'a> {
    Local(crate::target::local::Store<'a>),
    Gcp(crate::target::gcp::Store<'a>),
}

impl Query<'_> {
    /// Runs the query and commits its result; `stop` is checked before the commit.
    pub(crate) async fn run(&self, stop: &CancellationToken) -> Result<Done, TaskError> {
        match &self.runs_on {
            RunsOn::Local(store) => {
                let rows = store
                    .query_rows(&self.sql)
                    .await
                    .map_err(|error| self.locator.error("params/query", &self.sql, &error))?;
                let mut done = store.write(&rows, None, stop).await?;
                done.table = Some(rows);
                Ok(done)
            }
            RunsOn::Gcp(store) => store.query(&self.sql, self.pull, stop).await,
        }
    }
}
