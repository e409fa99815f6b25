//! How an HTTP exchange fails, and which failures are worth another attempt.

use std::time::Duration;

use super::body::BodyError;
use super::fixtures::FixtureError;
use crate::error::{ErrorKind, TaskError};

/// Redirects followed within one origin before the request fails.
pub(super) const MAX_REDIRECTS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("cannot send the request to {url}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("no response from {url} within {seconds} s")]
    Timeout { url: String, seconds: f64 },
    #[error("the response from {url} did not finish within {seconds} s ({received} bytes arrived)")]
    SlowBody { url: String, seconds: f64, received: usize },
    #[error("header `{name}` cannot be sent: {problem}")]
    Header { name: String, problem: &'static str },
    #[error(
        "{url} redirects to another origin, {to}; dpf follows redirects within one origin only: set the URL to where it leads"
    )]
    CrossOrigin { url: String, to: String },
    #[error("{url} redirected more than {MAX_REDIRECTS} times (the last to {to}): a redirect loop?")]
    RedirectLoop { url: String, to: String },
    #[error("the response from {url} broke off")]
    Body {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the response from {url} was refused")]
    Refused {
        url: String,
        #[source]
        source: BodyError,
    },
    #[error("{url} answered HTTP {status}{excerpt}")]
    Status {
        url: String,
        status: u16,
        retry_after: Option<Duration>,
        excerpt: String,
    },
    #[error("{0}")]
    Fixture(#[from] FixtureError),
}

/// Whether an HTTP status is worth another attempt: 408, 429 or a server error.
pub(crate) fn transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

impl HttpError {
    /// Worth another attempt: the network, a timeout, 408, 429 or a server error.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            HttpError::Connect { .. }
            | HttpError::Timeout { .. }
            | HttpError::SlowBody { .. }
            | HttpError::Body { .. } => true,
            HttpError::Status { status, .. } => transient_status(*status),
            HttpError::Fixture(_)
            | HttpError::Request { .. }
            | HttpError::Refused { .. }
            | HttpError::Header { .. }
            | HttpError::CrossOrigin { .. }
            | HttpError::RedirectLoop { .. } => false,
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            HttpError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl From<HttpError> for TaskError {
    fn from(error: HttpError) -> Self {
        let kind = if error.is_transient() {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        };
        TaskError {
            kind,
            retry_after: error.retry_after(),
            message: crate::error::chain(&error),
            source: Some(std::sync::Arc::new(error)),
        }
    }
}

/// Why a text is not an HTTP URL.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UrlError {
    #[error("`{text}` is not a valid URL: {source}")]
    Invalid {
        text: String,
        #[source]
        source: url::ParseError,
    },
    #[error("`{text}` is not an HTTP URL: its scheme is `{scheme}`")]
    Scheme { text: String, scheme: String },
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}
