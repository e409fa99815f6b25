//! What every step of a write shares: who writes, the table written to, the id of the job that
//! commits, and what the write did. A leaf, so that the steps (`api`, `load`, `stream`) need
//! nothing from `mod.rs`, which calls them.

use std::fmt;

use tokio_util::sync::CancellationToken;

use crate::store::bigquery::StoreToBigquery;

/// What a write did, for the receipt.
#[derive(Debug, Default)]
pub(crate) struct Written {
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
pub(crate) struct Writer<'a> {
    pub run_id: &'a str,
    pub task: &'a str,
    pub cancel: &'a CancellationToken,
}

/// A table's full name: `project.dataset.table`.
#[derive(Debug, Clone, Copy)]
pub(super) struct TableRef<'a> {
    pub(super) project: &'a str,
    pub(super) dataset: &'a str,
    pub(super) table: &'a str,
}

impl<'a> TableRef<'a> {
    /// The table `store` names, in project `project`.
    pub(super) fn of(project: &'a str, store: &'a StoreToBigquery) -> TableRef<'a> {
        TableRef {
            project,
            dataset: &store.dataset,
            table: &store.table,
        }
    }
}

impl fmt::Display for TableRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.project, self.dataset, self.table)
    }
}

/// The id of the job that commits `task`'s rows of run `run_id`: letters, digits, `_` and `-`.
pub(super) fn job_id(run_id: &str, task: &str) -> String {
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

/// The first 16 hex digits of the SHA-256 of `bytes`: job and insert ids carry it, so that a rerun
/// of a run with the same rows is the same job (BigQuery skips it), and one with other rows (an
/// incremental extract that found more) a new one.
pub(super) fn digest(bytes: &[u8]) -> String {
    short(&ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// The first 16 hex digits of `digest`.
pub(super) fn short(digest: &ring::digest::Digest) -> String {
    digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids() {
        assert_eq!(
            job_id("weather-2025-01-08T00:00:00Z", "to_bq"),
            "dpf_weather-2025-01-08T00_00_00Z_to_bq"
        );
    }

    #[test]
    fn table_names() {
        let table = TableRef {
            project: "p",
            dataset: "d",
            table: "t",
        };
        assert_eq!(table.to_string(), "p.d.t");
    }
}
