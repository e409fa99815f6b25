//! How a task fails: transient (worth retrying), permanent, or interrupted by a signal.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorKind {
    Transient,
    Permanent,
    Interrupted,
}

/// A task's failure: its kind and a message that already holds its causes.
#[derive(Debug, Clone)]
pub(crate) struct TaskError {
    pub kind: ErrorKind,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl TaskError {
    pub(crate) fn permanent(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Permanent, message)
    }

    pub(crate) fn transient(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Transient, message)
    }

    /// Stopped by SIGINT, SIGTERM or `--timeout` before anything of the task was committed.
    pub(crate) fn interrupted() -> Self {
        Self::stopped("stopped before anything of it was committed")
    }

    /// Stopped by SIGINT, SIGTERM or `--timeout`; `message` says what was and was not committed.
    pub(crate) fn stopped(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Interrupted, message)
    }

    fn new(kind: ErrorKind, message: impl fmt::Display) -> Self {
        TaskError {
            kind,
            message: message.to_string(),
            retry_after: None,
        }
    }

    /// A permanent error whose message is `error` with its causes.
    pub(crate) fn caused(error: &(dyn std::error::Error + 'static)) -> Self {
        Self::permanent(chain(error))
    }

    pub(crate) fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    /// The same error, said to have happened while doing `what`.
    pub(crate) fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<crate::http::HttpError> for TaskError {
    fn from(error: crate::http::HttpError) -> Self {
        let kind = if error.is_transient() {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        };
        TaskError {
            kind,
            retry_after: error.retry_after(),
            message: chain(&error),
        }
    }
}

impl From<datafusion::error::DataFusionError> for TaskError {
    fn from(error: datafusion::error::DataFusionError) -> Self {
        TaskError::permanent(error.strip_backtrace())
    }
}

/// `error` and its causes, joined with `: `, each said once.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let text = next.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = next.source();
    }
    message
}
