//! Google Cloud for the gcp target: the project each store writes to, Application Default
//! Credentials, and the emulators that `BIGQUERY_EMULATOR_HOST` and `FIRESTORE_EMULATOR_HOST` name.
//!
//! [`Cloud::connect`] runs before any task: a store without a project, or a run without
//! credentials for a service that is not emulated, is an error before anything is extracted.

use std::collections::HashMap;
use std::sync::Arc;

use firestore::gcloud_sdk::{GoogleAuthHeaders, GoogleEnvironment};

use crate::spec::{Call, Product};

/// What the gcp target's stores share for one run.
pub struct Cloud {
    /// Tokens from the Application Default Credentials; `None` when every service in use is emulated.
    credentials: Option<Arc<GoogleAuthHeaders>>,
    /// `host:port` of the BigQuery emulator, from `BIGQUERY_EMULATOR_HOST`.
    pub bigquery_emulator: Option<String>,
    /// The project of each store task, by task id.
    projects: HashMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error(
        "task `{task}`: no Google Cloud project: set `project:` in its params, or GCP_PROJECT or \
         GOOGLE_CLOUD_PROJECT, or use credentials that name a project"
    )]
    NoProject { task: String },
    #[error(
        "no Google Cloud credentials for {services}: {message}\n  \
         set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, run `gcloud auth \
         application-default login`, or run on Cloud Run or GKE; for emulators set {emulators}"
    )]
    NoCredentials {
        services: String,
        emulators: String,
        message: String,
    },
}

/// The emulator named by the environment variable `name`, if set.
fn emulator(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
}

impl Cloud {
    /// Resolves every store's project and, unless all services in use are emulated, checks that
    /// the Application Default Credentials give a token.
    pub async fn connect(product: &Product) -> Result<Cloud, CloudError> {
        crate::http::install_crypto();
        let bigquery_emulator = emulator("BIGQUERY_EMULATOR_HOST");
        let firestore_emulator = emulator("FIRESTORE_EMULATOR_HOST");
        let mut projects = HashMap::new();
        let mut detected: Option<Option<String>> = None;
        let mut live = Vec::new();
        for task in &product.tasks {
            let (explicit, service, emulated) = match &task.call {
                Call::StoreToBigquery(store) => (&store.project, "BigQuery", bigquery_emulator.is_some()),
                Call::StoreToFirestore(store) => (&store.project, "Firestore", firestore_emulator.is_some()),
                _ => continue,
            };
            if !emulated && !live.contains(&service) {
                live.push(service);
            }
            let project = match crate::target::gcp_project(explicit.as_deref()) {
                Some(project) => Some(project),
                None => {
                    if detected.is_none() {
                        detected = Some(GoogleEnvironment::detect_google_project_id().await);
                    }
                    detected.clone().flatten()
                }
            };
            let project = project.ok_or_else(|| CloudError::NoProject { task: task.id.clone() })?;
            projects.insert(task.id.clone(), project);
        }
        let credentials = if live.is_empty() {
            None
        } else {
            let no_credentials = |message: String| CloudError::NoCredentials {
                services: live.join(" and "),
                emulators: live
                    .iter()
                    .map(|service| format!("{}_EMULATOR_HOST", service.to_uppercase()))
                    .collect::<Vec<_>>()
                    .join(" and "),
                message,
            };
            let credentials = GoogleAuthHeaders::from_adc()
                .await
                .map_err(|e| no_credentials(e.to_string()))?;
            credentials.headers().await.map_err(|e| no_credentials(e.to_string()))?;
            Some(Arc::new(credentials))
        };
        // The firestore crate reads FIRESTORE_EMULATOR_HOST itself.
        Ok(Cloud {
            credentials,
            bigquery_emulator,
            projects,
        })
    }

    /// The project of store task `task`.
    pub fn project(&self, task: &str) -> Option<&str> {
        self.projects.get(task).map(String::as_str)
    }

    /// A bearer token for the Google APIs: "owner" for emulators, which accept any token.
    pub async fn token(&self) -> Result<String, String> {
        let Some(credentials) = &self.credentials else {
            return Ok("owner".to_owned());
        };
        let headers = credentials.headers().await.map_err(|e| e.to_string())?;
        let value = headers
            .get(reqwest::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .ok_or("the credentials gave no authorization header")?;
        Ok(value.strip_prefix("Bearer ").unwrap_or(value).to_owned())
    }
}

/// gRPC codes worth another attempt: the service was unreachable, overloaded, or failed inside.
pub fn retryable(code: firestore::gcloud_sdk::tonic::Code) -> bool {
    use firestore::gcloud_sdk::tonic::Code;
    matches!(
        code,
        Code::Cancelled
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Internal
            | Code::Unavailable
    )
}

/// The BigQuery client's view of [`Cloud::token`].
#[derive(Clone)]
pub struct Tokens(pub Arc<Cloud>);

#[async_trait::async_trait]
impl gcp_bigquery_client::auth::Authenticator for Tokens {
    async fn access_token(&self) -> Result<String, gcp_bigquery_client::error::BQError> {
        self.0.token().await.map_err(|message| {
            gcp_bigquery_client::error::BQError::InvalidApplicationDefaultCredentialsAuthenticator(
                std::io::Error::other(message),
            )
        })
    }
}
