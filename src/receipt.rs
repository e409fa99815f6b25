//! The receipt of a run: what ran, what it read and wrote, what it sent, and how it ended.

use std::collections::HashMap;

use serde::Serialize;

use crate::alert::channel::Channel;
use crate::check::{CheckResult, Status};

use crate::error::ErrorKind;
use crate::table::Table;
use crate::target::Target;

/// How a run ended, with the rows each data-producing task yielded.
pub(crate) struct Outcome {
    pub(crate) receipt: Receipt,
    pub(crate) tables: HashMap<String, Table>,
    /// The cursor each incremental extract leaves: the largest value of its cursor field among
    /// its rows; saved once every store of the run has committed.
    pub(crate) cursors: std::collections::BTreeMap<String, serde_json::Value>,
}

/// The version of the receipt's JSON form; fields are only added within a version.
pub(crate) const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Receipt {
    pub version: u32,
    pub run_id: String,
    pub product: String,
    pub target: Target,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<String>,
    pub replay: bool,
    /// The shard of the product's processes this run was, if it runs as several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::extract::items::Shard>,
    /// The tick this run stands for and its data interval, in the product's time zone.
    pub logical_time: String,
    pub data_interval_start: String,
    pub data_interval_end: String,
    pub status: RunStatus,
    pub exit_code: u8,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub tasks: Vec<TaskReceipt>,
    pub alerts: Vec<AlertReceipt>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RunStatus {
    Succeeded,
    /// A task failed permanently.
    Failed,
    /// A task still failed transiently after its retries.
    FailedTransient,
    /// A task's output failed an `error` check; nothing downstream of it was written.
    CheckFailed,
    Interrupted,
    /// The run's `--timeout` passed: stopped like an interrupted run, worth trying again later.
    TimedOut,
}

impl RunStatus {
    /// The status as its JSON form writes it: `succeeded`, `check_failed`, …
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::FailedTransient => "failed_transient",
            RunStatus::CheckFailed => "check_failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::TimedOut => "timed_out",
        }
    }

    /// The exit code the scheduler sees.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            RunStatus::Succeeded => 0,
            RunStatus::Failed => 1,
            RunStatus::CheckFailed => 65,
            RunStatus::FailedTransient | RunStatus::TimedOut => 75,
            RunStatus::Interrupted => 130,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TaskStatus {
    Succeeded,
    Failed,
    /// Not run because a task it needs failed.
    Skipped,
    Interrupted,
    /// Not reached: the run stopped before it.
    NotRun,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TaskReceipt {
    pub id: String,
    pub function: crate::spec::Function,
    pub status: TaskStatus,
    pub attempts: u32,
    /// Rows yielded (extract, transform), written (store) or matching (alert).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Bytes received (extract) or held in memory (transform) or written (store).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages: Option<u64>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
    /// The outcome of each of the task's checks, when it has any and its output was checked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
    /// What became of a fan-out extract's items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<ItemsReceipt>,
}

/// The items of a fan-out extract: how many, and those left out (`on_item_error: skip`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ItemsReceipt {
    pub total: u64,
    pub succeeded: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedItem>,
}

/// An item whose requests failed after their retries.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FailedItem {
    /// Its number, from 1, in the order of `for_each`.
    pub item: usize,
    /// How messages name it: its number and its `include_item` (or first) fields.
    pub label: String,
    pub error: String,
    pub error_kind: ErrorKind,
}

impl TaskReceipt {
    /// The task failed: `message` (already redacted) says why, `kind` whether a retry could help.
    pub(crate) fn fail(&mut self, message: String, kind: ErrorKind) {
        self.status = TaskStatus::Failed;
        self.error = Some(message);
        self.error_kind = Some(kind);
    }
}

/// Why an alert was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Trigger {
    /// Its `when` held for some rows.
    Condition,
    /// No `when`: a summary after a successful run.
    Summary,
    /// The run failed and the alert has `on_failure` recipients.
    Failure,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct AlertReceipt {
    pub task: String,
    pub trigger: Trigger,
    pub channel: Channel,
    pub recipients: Vec<String>,
    pub subject: String,
    pub rows: u64,
    /// Where the message went, named as the plan names it.
    pub destination: String,
    /// The message's file in the outbox, on the local target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl Receipt {
    /// A few lines for a person: the outcome, each task, each alert.
    pub(crate) fn render_text(&self) -> String {
        let mut out = format!(
            "run {} of {} {} in {} ms (exit {})\n",
            self.run_id,
            self.product,
            match self.status {
                RunStatus::Succeeded => "succeeded",
                RunStatus::Failed => "failed",
                RunStatus::CheckFailed => "failed a data check",
                RunStatus::FailedTransient => "failed (transient)",
                RunStatus::Interrupted => "was interrupted",
                RunStatus::TimedOut => "timed out",
            },
            self.duration_ms,
            self.exit_code
        );
        let width = self.tasks.iter().map(|t| t.id.len()).max().unwrap_or(0);
        for task in &self.tasks {
            let status = match task.status {
                TaskStatus::Succeeded => "ok",
                TaskStatus::Failed => "FAILED",
                TaskStatus::Skipped => "skipped",
                TaskStatus::Interrupted => "interrupted",
                TaskStatus::NotRun => "not run",
            };
            let mut line = format!("  {:<width$}  {status:<11}", task.id);
            if let Some(rows) = task.rows {
                line.push_str(&format!(" {rows:>9} rows"));
            }
            if task.status != TaskStatus::NotRun && task.status != TaskStatus::Skipped {
                line.push_str(&format!(" {:>6} ms", task.duration_ms));
            }
            if task.attempts > 1 {
                line.push_str(&format!("  {} attempts", task.attempts));
            }
            for destination in &task.destinations {
                line.push_str(&format!("  → {destination}"));
            }
            let passed = task.checks.iter().filter(|c| c.status == Status::Passed).count();
            if passed > 0 {
                line.push_str(&format!("  {passed}/{} checks passed", task.checks.len()));
            }
            for check in task.checks.iter().filter(|c| c.status == Status::Failed) {
                line.push_str(&format!("\n  {:<width$}  {check}", ""));
                for sample in &check.samples {
                    line.push_str(&format!(
                        "\n  {:<width$}    e.g. {}",
                        "",
                        serde_json::Value::Object(sample.clone())
                    ));
                }
            }
            if let Some(error) = &task.error
                && task.error_kind != Some(ErrorKind::Data)
            {
                line.push_str(&format!("\n  {:<width$}  error: {error}", ""));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        for alert in &self.alerts {
            out.push_str(&format!(
                "  alert {} ({}) to {}: {}\n",
                alert.task,
                match alert.trigger {
                    Trigger::Condition => "condition held",
                    Trigger::Summary => "run summary",
                    Trigger::Failure => "run failed",
                },
                alert.recipients.join(", "),
                alert.file.as_ref().unwrap_or(&alert.destination)
            ));
        }
        out
    }
}
