//! How a task fails: transient (worth retrying), permanent, or interrupted by a signal.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorKind {
    Transient,
    Permanent,
    /// The task's output failed an `error` check: retrying would read the same data.
    Data,
    Interrupted,
}

/// The error a task's failure comes from, kept with its own causes.
pub(crate) type Source = Arc<dyn std::error::Error + Send + Sync>;

/// A task's failure: its kind, a message that already holds its causes (what receipts and logs
/// show), the error it comes from (`source`), and how long the service asked to wait.
#[derive(Debug, Clone)]
pub(crate) struct TaskError {
    pub kind: ErrorKind,
    pub message: String,
    pub retry_after: Option<Duration>,
    pub source: Option<Source>,
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
            source: None,
        }
    }

    /// An error of `kind` whose message is `error` with its causes, and whose source it is: how a
    /// component's own error, which knows its kind, becomes a task's.
    pub(crate) fn of(kind: ErrorKind, error: impl std::error::Error + Send + Sync + 'static) -> Self {
        let mut task = Self::new(kind, chain(&error));
        task.source = Some(Arc::new(error));
        task
    }

    /// A permanent error whose message is `error` with its causes, and whose source it is.
    pub(crate) fn caused(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::of(ErrorKind::Permanent, error)
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

impl std::error::Error for TaskError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

impl From<datafusion::error::DataFusionError> for TaskError {
    fn from(error: datafusion::error::DataFusionError) -> Self {
        let mut task = TaskError::permanent(error.strip_backtrace());
        task.source = Some(Arc::new(error));
        task
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
