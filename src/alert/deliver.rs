//! The one HTTP POST that SendGrid and Slack deliveries share: bounded retries of 408, 429, 5xx
//! and connection errors through the run's retry module (honouring `Retry-After`; a stop cuts any
//! wait short), and a permanent error for any other refusal. Messages never hold the URL: a Slack
//! webhook URL is itself a secret.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::TaskError;
use crate::retry::{self, OnStop, Policy};

/// Three attempts per delivery, about 500 ms and then 1 s apart, before a transient failure is reported.
const POLICY: Policy = Policy {
    retries: 2,
    first_delay: Duration::from_millis(500),
};

/// The longest a delivery waits when a service's `Retry-After` asks for more.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How deliveries go out: the run's client, and the stop that ends them.
pub(crate) struct Via<'a> {
    pub client: &'a reqwest::Client,
    pub cancel: &'a CancellationToken,
}

pub(crate) struct Post<'a> {
    /// Who is called, for messages.
    pub service: &'a str,
    pub url: String,
    pub bearer: Option<&'a str>,
    /// A JSON document.
    pub body: String,
    pub timeout: Duration,
}

/// Sends `request`; `refusal(status, body)` words a permanent refusal.
pub(crate) async fn post(
    via: &Via<'_>,
    request: &Post<'_>,
    refusal: impl Fn(u16, &str) -> String,
) -> Result<(), TaskError> {
    let (result, attempts) = retry::run(
        POLICY,
        via.cancel,
        OnStop::Drop,
        |_| {},
        |_| attempt(via.client, request, &refusal),
    )
    .await;
    match result {
        Err(error) if error.is_transient() => Err(TaskError::transient(format!(
            "{} (after {attempts} attempts)",
            error.message
        ))),
        result => result,
    }
}

async fn attempt(
    client: &reqwest::Client,
    request: &Post<'_>,
    refusal: &impl Fn(u16, &str) -> String,
) -> Result<(), TaskError> {
    let mut builder = client
        .post(&request.url)
        .timeout(request.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(request.body.clone());
    if let Some(token) = request.bearer {
        builder = builder.bearer_auth(token);
    }
    let response = builder.send().await.map_err(|error| {
        // Without the URL: reqwest's errors name it.
        let why = if error.is_timeout() {
            "timed out"
        } else {
            "could not connect"
        };
        TaskError::transient(format!("{}: {why}", request.service))
    })?;
    let status = response.status().as_u16();
    let wait = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::http::retry_after);
    let text = response.text().await.unwrap_or_default();
    if (200..300).contains(&status) {
        return Ok(());
    }
    if crate::http::transient_status(status) {
        let mut error = TaskError::transient(format!("{} answered {status}: {}", request.service, text.trim()));
        error.retry_after = wait.map(|wait| wait.min(MAX_RETRY_AFTER));
        return Err(error);
    }
    Err(TaskError::permanent(refusal(status, &text)))
}
