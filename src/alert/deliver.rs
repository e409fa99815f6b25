//! The one HTTP POST that SendGrid and Slack deliveries share: bounded retries of 408, 429, 5xx
//! and connection errors through the run's retry module (honouring `Retry-After`; a stop cuts any
//! wait short), and a permanent error for any other refusal. Messages never hold the URL: a Slack
//! webhook URL is itself a secret.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::{ErrorKind, TaskError};
use crate::retry::{self, OnStop, Policy};

/// Three attempts per delivery, about 500 ms and then 1 s apart, before a transient failure is reported.
const POLICY: Policy = Policy {
    retries: 2,
    first_delay: Duration::from_millis(500),
};

/// The longest a delivery waits when a service's `Retry-After` asks for more.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Why a delivery failed. No text holds the URL, and reqwest's errors, which name it, are not kept.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("{service}: timed out")]
    TimedOut { service: String },
    #[error("{service}: could not connect")]
    Unreachable { service: String },
    /// 408, 429 or 5xx; `retry_after` is the wait the service asked for, at most [`MAX_RETRY_AFTER`].
    #[error("{service} answered {status}: {body}")]
    Busy {
        service: String,
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    /// Any other status, as the caller's `refusal` words it.
    #[error("{message}")]
    Refused { message: String },
    /// The last attempt's transient failure, once every attempt is spent; the text keeps its words
    /// first, so `last` is said in it (and `chain` does not say it twice).
    #[error("{last} (after {attempts} attempts)")]
    GaveUp {
        attempts: u32,
        #[source]
        last: TaskError,
    },
}

impl DeliveryError {
    /// Permanent for a refusal; transient otherwise.
    fn kind(&self) -> ErrorKind {
        match self {
            DeliveryError::Refused { .. } => ErrorKind::Permanent,
            DeliveryError::TimedOut { .. }
            | DeliveryError::Unreachable { .. }
            | DeliveryError::Busy { .. }
            | DeliveryError::GaveUp { .. } => ErrorKind::Transient,
        }
    }
}

/// The one place a delivery's error becomes a task's, with the wait a busy service asked for.
impl From<DeliveryError> for TaskError {
    fn from(error: DeliveryError) -> Self {
        let retry_after = match &error {
            DeliveryError::Busy { retry_after, .. } => *retry_after,
            _ => None,
        };
        let mut task = TaskError::of(error.kind(), error);
        task.retry_after = retry_after;
        task
    }
}

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
        Err(last) if last.is_transient() => Err(DeliveryError::GaveUp { attempts, last }.into()),
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
        let service = request.service.to_owned();
        if error.is_timeout() {
            DeliveryError::TimedOut { service }
        } else {
            DeliveryError::Unreachable { service }
        }
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
        return Err(DeliveryError::Busy {
            service: request.service.to_owned(),
            status,
            body: text.trim().to_owned(),
            retry_after: wait.map(|wait| wait.min(MAX_RETRY_AFTER)),
        }
        .into());
    }
    Err(DeliveryError::Refused {
        message: refusal(status, &text),
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_errors_become_task_errors() {
        let busy = TaskError::from(DeliveryError::Busy {
            service: "Slack".to_owned(),
            status: 503,
            body: "later".to_owned(),
            retry_after: Some(Duration::from_secs(2)),
        });
        assert_eq!(busy.message, "Slack answered 503: later");
        assert!(busy.is_transient());
        assert_eq!(busy.retry_after, Some(Duration::from_secs(2)));
        let gave_up = TaskError::from(DeliveryError::GaveUp {
            attempts: 3,
            last: busy,
        });
        assert_eq!(gave_up.message, "Slack answered 503: later (after 3 attempts)");
        assert!(gave_up.is_transient());
        assert_eq!(gave_up.retry_after, None);
        let refused = TaskError::from(DeliveryError::Refused {
            message: "Slack refused the message (400): no_text".to_owned(),
        });
        assert_eq!(refused.message, "Slack refused the message (400): no_text");
        assert!(!refused.is_transient());
    }
}
