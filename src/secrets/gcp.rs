//! Secret Manager: the values behind `${secret:projects/P/secrets/S/versions/V}`, and behind
//! `${secret:NAME}` on the gcp target (the latest version of NAME in the product's project).
//!
//! It speaks gRPC (`AccessSecretVersion`) with Application Default Credentials. `DPF_SECRET_MANAGER_URL`
//! points it elsewhere; a plain `http://` URL there is taken for a local stand-in and gets no
//! credentials, as the emulator variables do for BigQuery and Firestore.

use gcloud_sdk::google::cloud::secretmanager::v1::AccessSecretVersionRequest;
use gcloud_sdk::google::cloud::secretmanager::v1::secret_manager_service_client::SecretManagerServiceClient;
use gcloud_sdk::tonic::Code;
use gcloud_sdk::{GoogleApi, GoogleAuthMiddleware};

/// The environment variable that overrides Secret Manager's endpoint.
pub(crate) const URL_VAR: &str = "DPF_SECRET_MANAGER_URL";
const API: &str = "https://secretmanager.googleapis.com";

/// Why a secret could not be read; `transient` when trying again later may help.
#[derive(Debug)]
pub(crate) struct AccessError {
    pub message: String,
    pub transient: bool,
}

pub(crate) struct SecretManager {
    api: GoogleApi<SecretManagerServiceClient<GoogleAuthMiddleware>>,
}

impl SecretManager {
    pub(crate) async fn connect() -> Result<SecretManager, AccessError> {
        crate::http::install_crypto();
        let url = std::env::var(URL_VAR)
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| API.to_owned());
        let api = if url.starts_with("http://") {
            let anonymous = gcloud_sdk::google_cloud_auth::credentials::anonymous::Builder::new().build();
            GoogleApi::from_function_with_credentials(SecretManagerServiceClient::new, &url, None, anonymous).await
        } else {
            GoogleApi::from_function(SecretManagerServiceClient::new, &url, None).await
        };
        let api = api.map_err(|e| AccessError {
            message: format!("cannot reach Secret Manager at {url}: {e}"),
            transient: true,
        })?;
        Ok(SecretManager { api })
    }

    /// The payload of secret version `name` (`projects/P/secrets/S/versions/V`) as text, without a
    /// trailing line break.
    pub(crate) async fn access(&self, name: &str) -> Result<String, AccessError> {
        let request = AccessSecretVersionRequest { name: name.to_owned() };
        let response = self
            .api
            .get()
            .access_secret_version(request)
            .await
            .map_err(|status| {
                let (what, transient) = match status.code() {
                    Code::NotFound => ("not found (no such secret, or no such version)".to_owned(), false),
                    Code::PermissionDenied => (
                        "permission denied: the credentials need roles/secretmanager.secretAccessor on it".to_owned(),
                        false,
                    ),
                    Code::Unauthenticated => ("the credentials were refused".to_owned(), false),
                    Code::FailedPrecondition => (format!("not readable: {}", status.message()), false),
                    code => (
                        format!("{code:?}: {}", status.message()),
                        crate::target::gcp::cloud::retryable(code),
                    ),
                };
                AccessError {
                    message: format!("Secret Manager: {what}"),
                    transient,
                }
            })?
            .into_inner();
        let payload = response.payload.ok_or_else(|| AccessError {
            message: "Secret Manager returned no payload".to_owned(),
            transient: false,
        })?;
        let text = String::from_utf8(payload.data.ref_sensitive_value().clone()).map_err(|_| AccessError {
            message: "the secret is not UTF-8 text".to_owned(),
            transient: false,
        })?;
        Ok(text.trim_end_matches(['\n', '\r']).to_owned())
    }
}
