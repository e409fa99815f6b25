//! BigQuery's errors as task errors: transient or permanent, with BigQuery's reason and message.

use super::model::{ErrorBody, ErrorProto};
use crate::error::{ErrorKind, TaskError};
use crate::target::gcp::cloud::TokenError;

/// Why a BigQuery API call failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ApiError {
    /// BigQuery answered with an error status.
    #[error("BigQuery answered {code}{}: {message}", reason.as_deref().map(|r| format!(" {r}")).unwrap_or_default())]
    Status {
        code: u16,
        reason: Option<String>,
        message: String,
    },
    #[error("cannot reach BigQuery: {}", crate::error::chain(.0))]
    Unreachable(#[source] reqwest::Error),
    #[error("BigQuery answered with something unexpected: {0}")]
    Unexpected(#[source] serde_json::Error),
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl ApiError {
    /// The error of an answer with status `code` and body `body`.
    pub(super) fn of_answer(code: u16, body: &str) -> ApiError {
        let parsed: ErrorBody = serde_json::from_str(body).unwrap_or_default();
        let error = parsed.error;
        let reason = error
            .errors
            .into_iter()
            .find_map(|e| e.reason)
            .or(error.status)
            .filter(|r| !r.is_empty());
        let message = error.message.unwrap_or_else(|| {
            let text = body.trim();
            // An HTML or other long page says little; its start is enough.
            text.char_indices()
                .nth(300)
                .map_or(text, |(at, _)| &text[..at])
                .to_owned()
        });
        ApiError::Status { code, reason, message }
    }

    /// The HTTP status BigQuery answered with, if it answered.
    pub(super) fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The error as a task's: transient for 408, 429, 5xx, the retryable reasons and an
    /// unreachable service; permanent otherwise. `what` says what dpf was doing.
    pub(super) fn task(self, what: &str) -> TaskError {
        let transient = match &self {
            ApiError::Status { code, reason, .. } => {
                crate::http::transient_status(*code) || reason.as_deref().is_some_and(transient_reason)
            }
            ApiError::Unreachable(_) | ApiError::Unexpected(_) => true,
            ApiError::Token(TokenError::Refused(_)) => true,
            ApiError::Token(TokenError::NoHeader) => false,
        };
        let kind = if transient {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        };
        TaskError::from_source(kind, what, self)
    }
}

/// BigQuery error reasons worth another attempt.
pub(super) fn transient_reason(reason: &str) -> bool {
    matches!(
        reason,
        "backendError" | "internalError" | "rateLimitExceeded" | "jobBackendError" | "jobInternalError" | "timeout"
    )
}

/// BigQuery's reason, message and location of an error, as one line.
pub(super) fn proto_text(error: &ErrorProto) -> String {
    let mut text = match (&error.reason, &error.message) {
        (Some(reason), Some(message)) => format!("{reason}: {message}"),
        (Some(text), None) | (None, Some(text)) => text.clone(),
        (None, None) => "no reason given".to_owned(),
    };
    if let Some(location) = error.location.as_deref().filter(|l| !l.is_empty()) {
        text.push_str(&format!(" at {location}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_task_errors() {
        let body = r#"{"error": {"code": 403, "message": "Access Denied", "status": "PERMISSION_DENIED",
            "errors": [{"reason": "accessDenied", "message": "Access Denied"}]}}"#;
        let error = ApiError::of_answer(403, body).task("cannot read table p.d.t");
        assert_eq!(
            error.message,
            "cannot read table p.d.t: BigQuery answered 403 accessDenied: Access Denied"
        );
        assert!(!error.is_transient());
        let source = std::error::Error::source(&error).expect("the API error is kept as the source");
        assert!(source.to_string().starts_with("BigQuery answered 403"));
        let busy = ApiError::of_answer(400, r#"{"error": {"errors": [{"reason": "rateLimitExceeded"}]}}"#);
        assert!(busy.task("x").is_transient());
        let page = ApiError::of_answer(502, "<html>Bad Gateway</html>");
        assert_eq!(page.to_string(), "BigQuery answered 502: <html>Bad Gateway</html>");
        assert!(page.task("x").is_transient());
    }
}
