//! BigQuery's errors as task errors: transient or permanent, with BigQuery's reason and message.

use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::error_proto::ErrorProto;

use crate::run::error::TaskError;

/// The HTTP status of an API error, when BigQuery answered with one.
pub(super) fn status(error: &BQError) -> Option<i64> {
    match error {
        BQError::ResponseError { error } => Some(error.error.code),
        BQError::RequestError(e) => e.status().map(|s| i64::from(s.as_u16())),
        _ => None,
    }
}

/// BigQuery error reasons worth another attempt.
pub(super) fn transient_reason(reason: &str) -> bool {
    matches!(
        reason,
        "backendError" | "internalError" | "rateLimitExceeded" | "jobBackendError" | "jobInternalError" | "timeout"
    )
}

/// Transient for 408, 429, 5xx and the retryable reasons; permanent otherwise.
pub(super) fn classify(what: &str, code: i64, reason: Option<&str>, message: &str) -> TaskError {
    let reason_text = reason.map(|r| format!(" {r}")).unwrap_or_default();
    let text = format!("{what}: BigQuery answered {code}{reason_text}: {message}");
    let status = u16::try_from(code).is_ok_and(crate::http::transient_status);
    if status || reason.is_some_and(transient_reason) {
        TaskError::transient(text)
    } else {
        TaskError::permanent(text)
    }
}

pub(super) fn api_error(what: &str, error: BQError) -> TaskError {
    match error {
        BQError::ResponseError { error } => {
            let reason = error
                .error
                .errors
                .first()
                .and_then(|e| e.get("reason"))
                .map(String::as_str);
            classify(what, error.error.code, reason, &error.error.message)
        }
        BQError::RequestError(e) => match e.status() {
            Some(code) => classify(what, i64::from(code.as_u16()), None, &e.to_string()),
            None => TaskError::transient(format!(
                "{what}: cannot reach BigQuery: {}",
                crate::run::error::chain(&e)
            )),
        },
        other => TaskError::permanent(format!("{what}: {other}")),
    }
}

pub(super) fn unreachable_error(what: &str, error: &reqwest::Error) -> TaskError {
    TaskError::transient(format!("{what}: {}", crate::run::error::chain(error)))
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
