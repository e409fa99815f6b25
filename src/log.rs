//! Run logs on stderr: readable lines on a terminal, JSON lines in Cloud Logging's structured format
//! otherwise. Every message passes through the run's redaction first.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use crate::secrets::Secrets;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// `human` on a terminal, `json` otherwise.
    Auto,
    Human,
    Json,
    /// No log lines (the receipt still tells what happened).
    Off,
}

impl LogFormat {
    /// `auto` made `human` on a terminal, `json` otherwise.
    pub(crate) fn resolved(self) -> LogFormat {
        match self {
            LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Human,
            LogFormat::Auto => LogFormat::Json,
            other => other,
        }
    }
}

/// What Cloud Error Reporting takes an ERROR entry without a stack trace for: an error event to
/// group by service and message.
const ERROR_EVENT: &str = "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent";

/// A Cloud Logging entry: severity, message, time and `labels` (also as fields of their own). An
/// ERROR is typed as an error event for Error Reporting, with dpf as its service.
pub(crate) fn entry(severity: Severity, message: &str, labels: &[(&str, &str)]) -> Value {
    let mut entry = json!({
        "severity": severity.name(),
        "message": message,
        "time": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
    });
    let mut fields = serde_json::Map::new();
    for (key, value) in labels {
        entry[*key] = (*value).into();
        fields.insert((*key).to_owned(), (*value).into());
    }
    entry["logging.googleapis.com/labels"] = Value::Object(fields);
    if severity == Severity::Error {
        entry["@type"] = ERROR_EVENT.into();
        entry["serviceContext"] = json!({"service": "dpf", "version": env!("CARGO_PKG_VERSION")});
    }
    entry
}

/// Writes JSON log lines to stderr at once.
pub(crate) fn write_entries(entries: &[Value]) {
    let mut stderr = std::io::stderr().lock();
    for entry in entries {
        let _ = writeln!(stderr, "{entry}");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    fn name(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
        }
    }
}

/// The logger of one run.
#[derive(Clone)]
pub(crate) struct Log {
    inner: Arc<Inner>,
}

struct Inner {
    format: LogFormat,
    product: String,
    run_id: String,
    secrets: Secrets,
    bars: Option<MultiProgress>,
}

impl Log {
    pub(crate) fn new(format: LogFormat, product: &str, run_id: &str, secrets: Secrets) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let format = format.resolved();
        // Progress bars only where someone watches: a terminal with human logs.
        let bars = (terminal && format == LogFormat::Human)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Log {
            inner: Arc::new(Inner {
                format,
                product: product.to_owned(),
                run_id: run_id.to_owned(),
                secrets,
                bars,
            }),
        }
    }

    pub(crate) fn info(&self, task: Option<&str>, attempt: Option<u32>, message: impl fmt::Display) {
        self.write(Severity::Info, task, attempt, &message.to_string(), None);
    }

    pub(crate) fn warn(&self, task: Option<&str>, attempt: Option<u32>, message: impl fmt::Display) {
        self.write(Severity::Warning, task, attempt, &message.to_string(), None);
    }

    pub(crate) fn error(&self, task: Option<&str>, attempt: Option<u32>, message: impl fmt::Display) {
        self.write(Severity::Error, task, attempt, &message.to_string(), None);
    }

    /// A line of task `task` that also carries `value` as its field `key` in JSON logs (human logs
    /// show the message only). Strings inside `value` are redacted like the message.
    pub(crate) fn with_field(&self, severity: Severity, task: &str, message: &str, key: &str, value: &Value) {
        self.write(severity, Some(task), None, message, Some((key, value)));
    }

    fn write(
        &self,
        severity: Severity,
        task: Option<&str>,
        attempt: Option<u32>,
        message: &str,
        field: Option<(&str, &Value)>,
    ) {
        let inner = &self.inner;
        let message = inner.secrets.redact(message);
        let now = Utc::now();
        let line = match inner.format {
            LogFormat::Off => return,
            LogFormat::Json => {
                let mut labels = vec![("product", inner.product.as_str()), ("run_id", inner.run_id.as_str())];
                labels.extend(task.map(|task| ("task", task)));
                let mut entry = entry(severity, &message, &labels);
                if let Some(attempt) = attempt {
                    entry["attempt"] = attempt.into();
                }
                if let Some((key, value)) = field {
                    entry[key] = inner.secrets.redact_value(value, |text| text);
                }
                entry.to_string()
            }
            LogFormat::Human | LogFormat::Auto => {
                let mut line = format!("{} {:<7}", now.format("%H:%M:%S%.3f"), severity.name());
                if let Some(task) = task {
                    line.push_str(&format!(" {task}:"));
                }
                line.push(' ');
                line.push_str(&message);
                if let Some(attempt) = attempt.filter(|&a| a > 1) {
                    line.push_str(&format!(" (attempt {attempt})"));
                }
                line
            }
        };
        let print = || {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "{line}");
        };
        match &inner.bars {
            Some(bars) => bars.suspend(print),
            None => print(),
        }
    }

    /// Progress of a long extract: a bar on a terminal, once it has taken more than a moment.
    pub(crate) fn progress(&self, task: &str) -> Progress {
        Progress {
            bars: self.inner.bars.clone(),
            task: task.to_owned(),
            started: Instant::now(),
            bar: None,
        }
    }
}

/// A progress bar that appears only when an extract is slow enough to watch.
pub(crate) struct Progress {
    bars: Option<MultiProgress>,
    task: String,
    started: Instant,
    bar: Option<ProgressBar>,
}

const SHOW_AFTER: Duration = Duration::from_millis(700);

impl Progress {
    pub(crate) fn update(&mut self, pages: usize, rows: usize, bytes: usize) {
        let Some(bars) = &self.bars else { return };
        if self.bar.is_none() && self.started.elapsed() > SHOW_AFTER {
            let bar = bars.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})").expect("valid template"),
            );
            bar.set_prefix(self.task.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_message(format!("page {pages} · {rows} rows · {}", human_bytes(bytes as u64)));
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// `1.2 MB`-style sizes for people.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::human_bytes(999), "999 B");
        assert_eq!(super::human_bytes(1_234_567), "1.2 MB");
    }
}
