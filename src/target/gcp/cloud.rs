//! Google Cloud for the gcp target: the project each store writes to, Application Default
//! Credentials, and the emulators that `BIGQUERY_EMULATOR_HOST` and `FIRESTORE_EMULATOR_HOST` name.
//!
//! [`Cloud::connect`] runs before any task: a store without a project, or a run without
//! credentials for a service that is not emulated, is an error before anything is extracted.

use std::collections::HashMap;
use std::sync::Arc;

use gcloud_sdk::google::firestore::v1::firestore_client::FirestoreClient;
use gcloud_sdk::google_cloud_auth::credentials::{CacheableResource, Credentials, CredentialsProvider, EntityTag};
use gcloud_sdk::google_cloud_auth::errors::CredentialsError;
use gcloud_sdk::{GoogleApi, GoogleAuthHeaders, GoogleAuthMiddleware, GoogleAuthMiddlewareLayer};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use crate::spec::{Call, Product};

/// What the gcp target's stores share for one run.
pub(crate) struct Cloud {
    /// Tokens from the Application Default Credentials; `None` when every service in use is emulated.
    credentials: Option<Arc<GoogleAuthHeaders>>,
    /// `host:port` of the BigQuery emulator, from `BIGQUERY_EMULATOR_HOST`.
    pub(crate) bigquery_emulator: Option<String>,
    /// `host:port` of the Firestore emulator, from `FIRESTORE_EMULATOR_HOST`.
    pub(crate) firestore_emulator: Option<String>,
    /// The run's HTTP client, for the REST APIs.
    pub(crate) http: reqwest::Client,
    /// The project of each store task, by task id.
    projects: HashMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CloudError {
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
    pub(crate) async fn connect(product: &Product, http: reqwest::Client) -> Result<Cloud, CloudError> {
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
                Call::TransformSql(crate::transform::sql::TransformSql {
                    destination: Some(store),
                    engine: crate::transform::sql::Engine::Bigquery,
                    ..
                }) => (&store.project, "BigQuery", bigquery_emulator.is_some()),
                _ => continue,
            };
            if !emulated && !live.contains(&service) {
                live.push(service);
            }
            let project = match super::project::configured(explicit.as_deref()) {
                Some(project) => Some(project),
                None => {
                    if detected.is_none() {
                        detected = Some(super::project::detected().await);
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
        Ok(Cloud {
            credentials,
            bigquery_emulator,
            firestore_emulator,
            http,
            projects,
        })
    }

    /// The project of store task `task`.
    pub(crate) fn project(&self, task: &str) -> Option<&str> {
        self.projects.get(task).map(String::as_str)
    }

    /// The `authorization` header for the Google APIs: the emulators' conventional
    /// `Bearer owner` when every service in use is emulated.
    pub(crate) async fn authorization(&self) -> Result<HeaderValue, TokenError> {
        let Some(credentials) = &self.credentials else {
            return Ok(HeaderValue::from_static(EMULATOR_AUTHORIZATION));
        };
        let headers = credentials.headers().await.map_err(TokenError::Refused)?;
        headers.get(AUTHORIZATION).cloned().ok_or(TokenError::NoHeader)
    }

    /// The credentials for a gRPC client of a service at `emulator` (or the real one, when
    /// `None`): the emulators are sent `Bearer owner`, which gives full access and looks up no
    /// Google credentials.
    pub(crate) fn grpc_credentials(&self, emulator: Option<&str>) -> Arc<GoogleAuthHeaders> {
        match (&self.credentials, emulator) {
            (Some(credentials), None) => credentials.clone(),
            _ => Arc::new(GoogleAuthHeaders::from(Credentials::from(EmulatorCredentials {
                tag: EntityTag::new(),
            }))),
        }
    }
}

/// The Firestore API, authenticated.
pub(crate) type Firestore = GoogleApi<FirestoreClient<GoogleAuthMiddleware>>;

impl Cloud {
    /// A Firestore client of the run's emulator or of the service, for `database`
    /// (`projects/P/databases/D`); or the URL it could not reach and why.
    pub(crate) async fn firestore(&self, database: &str) -> Result<Firestore, (String, gcloud_sdk::error::Error)> {
        let emulator = self.firestore_emulator.as_deref();
        let url = match emulator {
            Some(host) => format!("http://{host}"),
            None => "https://firestore.googleapis.com".to_owned(),
        };
        let credentials = self.grpc_credentials(emulator);
        let connect = async {
            let layer = GoogleAuthMiddlewareLayer::new(credentials, Some(database.to_owned()))?;
            GoogleApi::from_function_with_middleware(FirestoreClient::new, &url, layer).await
        };
        connect.await.map_err(|source| (url, source))
    }
}

/// Why the credentials gave no token for a request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("the Google credentials gave no token: {0}")]
    Refused(#[source] gcloud_sdk::error::Error),
    #[error("the Google credentials gave no authorization header")]
    NoHeader,
}

/// The token the emulators take for "the owner of the project".
const EMULATOR_AUTHORIZATION: &str = "Bearer owner";

/// Credentials that always serve [`EMULATOR_AUTHORIZATION`].
#[derive(Debug)]
struct EmulatorCredentials {
    tag: EntityTag,
}

impl CredentialsProvider for EmulatorCredentials {
    async fn headers(&self, extensions: http::Extensions) -> Result<CacheableResource<HeaderMap>, CredentialsError> {
        if extensions.get::<EntityTag>() == Some(&self.tag) {
            return Ok(CacheableResource::NotModified);
        }
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static(EMULATOR_AUTHORIZATION));
        Ok(CacheableResource::New {
            entity_tag: self.tag.clone(),
            data: headers,
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

/// gRPC codes worth another attempt: the service was unreachable, overloaded, or failed inside.
pub(crate) fn retryable(code: gcloud_sdk::tonic::Code) -> bool {
    use gcloud_sdk::tonic::Code;
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
