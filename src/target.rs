//! Where a product's stores and alerts write.

use std::path::{Path, PathBuf};

/// The closed set of targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Embedded: a Parquet warehouse, a SQLite document store and an outbox folder in the data dir.
    #[default]
    Local,
    /// Google Cloud: BigQuery, Firestore, Secret Manager and SendGrid.
    Gcp,
}

/// The data dir of the local target when neither `--data-dir` nor `DPF_DATA_DIR` is given.
pub const DEFAULT_DATA_DIR: &str = ".dpf";

/// The project for Google Cloud destinations: the task's own, else the environment's.
pub fn gcp_project(explicit: Option<&str>) -> Option<String> {
    explicit
        .map(str::to_owned)
        .or_else(|| std::env::var("GCP_PROJECT").ok().filter(|p| !p.is_empty()))
        .or_else(|| std::env::var("GOOGLE_CLOUD_PROJECT").ok().filter(|p| !p.is_empty()))
}

/// `--data-dir`, else `DPF_DATA_DIR`, else [`DEFAULT_DATA_DIR`].
pub fn data_dir(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| {
            std::env::var_os("DPF_DATA_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}
