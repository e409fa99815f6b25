//! Which Google Cloud project a destination or a secret belongs to.

/// The project given for a destination (`project:` in its params), else the environment's
/// (`GCP_PROJECT`, then `GOOGLE_CLOUD_PROJECT`).
pub(crate) fn configured(explicit: Option<&str>) -> Option<String> {
    explicit
        .map(str::to_owned)
        .or_else(|| std::env::var("GCP_PROJECT").ok().filter(|p| !p.is_empty()))
        .or_else(|| std::env::var("GOOGLE_CLOUD_PROJECT").ok().filter(|p| !p.is_empty()))
}

/// The project the Application Default Credentials or the metadata server name, if any.
pub(crate) async fn detected() -> Option<String> {
    gcloud_sdk::GoogleEnvironment::detect_google_project_id().await
}
