//! Sending alerts: a `send_alerts` task's message when its condition holds (or its run summary),
//! and the failure messages after a failed run. E-mail goes to SendGrid and Slack to its webhook on
//! the gcp target, and both to the outbox on the local target.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use datafusion::prelude::SessionContext;
use tokio_util::sync::CancellationToken;

use super::deliver::Via;
use super::{Channel, SendAlerts, message, outbox};
use crate::component::Services;
use crate::error::TaskError;
use crate::log::Log;
use crate::receipt::{AlertReceipt, TaskReceipt, TaskStatus, Trigger};
use crate::secrets::{Mode, Secrets};
use crate::table::{Cell, RowsBuilder, Table};
use crate::target::{Destination, Target};

/// What sending alerts needs of a run.
pub(crate) struct Context<'a> {
    pub product: &'a str,
    pub run_id: &'a str,
    pub target: Target,
    /// The target whose channels the alerts use (the local outbox with `--alerts outbox`).
    pub alerts_to: Target,
    pub data_dir: &'a Path,
    pub secrets: &'a Secrets,
    /// Where the tables of the run are registered, for alert conditions.
    pub session: &'a SessionContext,
    pub log: &'a Log,
    /// Stops deliveries, their waits between attempts included.
    pub cancel: &'a CancellationToken,
    /// The run's one client for deliveries, made at the first.
    pub http: &'a OnceLock<reqwest::Client>,
}

impl<'a> Context<'a> {
    /// What alerts see of the run that `services` serve; `cancel` stops their deliveries.
    pub(crate) fn of(services: &'a Services, cancel: &'a CancellationToken) -> Context<'a> {
        Context {
            product: &services.product,
            run_id: &services.run_id,
            target: services.target,
            alerts_to: services.alerts_to,
            data_dir: &services.data_dir,
            secrets: &services.secrets,
            session: services.catalog.session(),
            log: &services.log,
            cancel,
            http: &services.http,
        }
    }

    fn via(&self) -> Via<'_> {
        Via {
            client: self.http.get_or_init(crate::http::client),
            cancel: self.cancel,
        }
    }
}

/// What an alert task sent: the rows its message is about, and a receipt per channel.
pub(crate) struct Sent {
    pub rows: u64,
    pub alerts: Vec<AlertReceipt>,
}

/// Runs alert task `task`: with a condition over its `input`, a message about the matching rows
/// (none when no row matches); without one, a summary of the run's tasks `so_far`. `locate(sql,
/// message, position)` words an error in the `when` SQL text at its place in the product file.
pub(crate) async fn send_alert(
    cx: &Context<'_>,
    task: &str,
    alert: &SendAlerts,
    input: Option<&str>,
    tables: &HashMap<String, Table>,
    so_far: &[TaskReceipt],
    locate: impl Fn(&str, &str, Option<(usize, usize)>) -> TaskError,
) -> Result<Sent, TaskError> {
    let mut fields = message::Fields {
        product: cx.product,
        task,
        run_id: cx.run_id,
        target: cx.target.as_str(),
        count: 0,
    };
    let (message, trigger, rows) = match (alert.condition(), input) {
        _ if alert.on_failed_checks() => {
            let failed = failed_checks(so_far);
            fields.count = so_far
                .iter()
                .flat_map(|r| &r.checks)
                .filter(|c| c.status == crate::check::Status::Failed)
                .count();
            if fields.count == 0 {
                cx.log.info(Some(task), None, "no check failed; no alert".to_owned());
                return Ok(Sent {
                    rows: 0,
                    alerts: Vec::new(),
                });
            }
            let template = alert
                .subject
                .as_deref()
                .unwrap_or("{product}: {count} data checks failed in run {run_id}");
            let subject = message::subject(template, &fields);
            let intro = format!(
                "{} data checks failed in run {} of {} without failing it (alert task {task}).",
                fields.count, cx.run_id, cx.product
            );
            let shown = first_rows(&failed, alert.max_rows as usize);
            (
                message::summary(subject, &intro, &[&shown]),
                Trigger::Condition,
                fields.count,
            )
        }
        (Some(condition), Some(input)) => {
            if !tables.contains_key(input) {
                return Err(TaskError::permanent(format!("the output of `{input}` is missing")));
            }
            let select = format!("SELECT * FROM \"{input}\" WHERE ");
            let query = format!("{select}{condition}");
            let matching = crate::transform::sql::run(cx.session, &query)
                .await
                .map_err(|error| match &alert.when {
                    Some(when) => {
                        let (message, position) = crate::transform::sql::explain(&error, &query);
                        // On its first line, the condition starts after the SELECT in front of it.
                        let position = position.map(|(line, column)| match line {
                            1 => (1, column.saturating_sub(select.len()).max(1)),
                            _ => (line, column),
                        });
                        locate(when, &message, position)
                    }
                    None => TaskError::from(error),
                })?;
            fields.count = matching.rows();
            if fields.count == 0 {
                cx.log.info(
                    Some(task),
                    None,
                    format!("condition `{condition}` held for no rows; no alert"),
                );
                return Ok(Sent {
                    rows: 0,
                    alerts: Vec::new(),
                });
            }
            let shown = first_rows(&matching, alert.max_rows as usize);
            let template = alert
                .subject
                .as_deref()
                .unwrap_or("{product}: {count} rows match alert {task}");
            let subject = message::subject(template, &fields);
            (
                message::matches(subject, &condition, &fields, &shown, alert.max_rows as usize),
                Trigger::Condition,
                fields.count,
            )
        }
        _ => {
            let template = alert.subject.as_deref().unwrap_or("{product}: run {run_id} succeeded");
            let subject = message::subject(template, &fields);
            let intro = format!(
                "Run {} of {} succeeded on the {} target.",
                cx.run_id, cx.product, fields.target
            );
            (
                message::summary(subject, &intro, &[&tasks_table(so_far)]),
                Trigger::Summary,
                0,
            )
        }
    };
    let alerts = deliver(cx, task, alert, &alert.recipient, trigger, &message, rows).await?;
    Ok(Sent {
        rows: rows as u64,
        alerts,
    })
}

/// The first `count` rows of `table`.
fn first_rows(table: &Table, count: usize) -> Table {
    let mut left = count;
    let mut batches = Vec::new();
    for batch in &table.batches {
        if left == 0 {
            break;
        }
        let take = left.min(batch.num_rows());
        batches.push(batch.slice(0, take));
        left -= take;
    }
    Table::new(table.schema.clone(), batches)
}

/// Sends `message` on each of the alert's channels: SendGrid and the Slack webhook on the gcp target,
/// the outbox on the local target or with `--alerts outbox`.
async fn deliver(
    cx: &Context<'_>,
    task: &str,
    alert: &SendAlerts,
    recipients: &[String],
    trigger: Trigger,
    message: &message::Message,
    rows: usize,
) -> Result<Vec<AlertReceipt>, TaskError> {
    let resolve = |text: &str| cx.secrets.resolve(text, Mode::Values).map_err(|e| secret_error(&e));
    let resolve_all = |texts: &[String]| texts.iter().map(|t| resolve(t)).collect::<Result<Vec<_>, _>>();
    let to = resolve_all(recipients)?;
    let cc = resolve_all(&alert.cc)?;
    let from = alert.from.as_deref().map(resolve).transpose()?;
    let dir = crate::target::outbox_dir(cx.data_dir);
    let mut sent = Vec::new();
    // On failure, the recipients are told by e-mail only.
    let channels = match trigger {
        Trigger::Failure => vec![Channel::Email],
        _ => alert.channels.clone(),
    };
    for channel in channels {
        let destination = Destination::of_channel(channel, cx.alerts_to, cx.data_dir);
        let file = match (channel, cx.alerts_to) {
            (Channel::Email, Target::Local) => {
                let path = outbox::email(&dir, cx.product, task, from.as_deref(), &to, &cc, message)
                    .map_err(TaskError::caused)?;
                Some(path)
            }
            (Channel::Slack, Target::Local) => {
                let path = outbox::slack(&dir, cx.product, task, message).map_err(TaskError::caused)?;
                Some(path)
            }
            (Channel::Email, Target::Gcp) => {
                let key = resolve(alert.sendgrid_key())?;
                let email = super::sendgrid::Email {
                    from: from.as_deref().unwrap_or(outbox::DEFAULT_FROM),
                    to: &to,
                    cc: &cc,
                    message,
                    product: cx.product,
                    run_id: cx.run_id,
                    task,
                };
                super::sendgrid::send(&cx.via(), &key, &email).await?;
                None
            }
            (Channel::Slack, Target::Gcp) => {
                let webhook = alert
                    .slack_webhook
                    .as_deref()
                    .ok_or_else(|| TaskError::permanent("`channels` has slack but there is no `slack_webhook`"))?;
                super::slack::send(&cx.via(), &resolve(webhook)?, message).await?;
                None
            }
        };
        let shown = match channel {
            Channel::Slack => channel.to_string(),
            Channel::Email => to.join(", "),
        };
        let file = file.map(|path| path.display().to_string());
        let at = file.as_deref().map(|file| format!(" ({file})")).unwrap_or_default();
        cx.log.info(
            Some(task),
            None,
            cx.secrets.redact(&format!(
                "alert \"{}\" to {shown} sent to {destination}{at}",
                message.subject
            )),
        );
        sent.push(AlertReceipt {
            task: task.to_owned(),
            trigger,
            channel,
            recipients: to.iter().map(|r| cx.secrets.redact(r)).collect(),
            subject: message.subject.clone(),
            rows: rows as u64,
            destination: destination.to_string(),
            file,
        });
    }
    Ok(sent)
}

/// A reference that could not be resolved: transient when Secret Manager may answer later.
fn secret_error(error: &crate::secrets::SecretError) -> TaskError {
    let message = crate::error::chain(error);
    if error.is_transient() {
        TaskError::transient(message)
    } else {
        TaskError::permanent(message)
    }
}

/// A table of task outcomes, for summaries and failure messages.
fn tasks_table(receipts: &[TaskReceipt]) -> Table {
    let mut builder = RowsBuilder::new();
    for receipt in receipts {
        let status = format!("{:?}", receipt.status).to_lowercase();
        let row = [
            ("task", Cell::Str(receipt.id.as_str().into())),
            ("status", Cell::Str(status.into())),
            ("rows", receipt.rows.map_or(Cell::Null, |r| Cell::Int(r as i64))),
            ("attempts", Cell::Int(i64::from(receipt.attempts))),
            (
                "error",
                receipt.error.as_deref().map_or(Cell::Null, |e| Cell::Str(e.into())),
            ),
        ];
        builder.push_record(row).expect("one type per column");
    }
    Table::from_batch(builder.finish())
}

/// The checks of the run's tasks `so_far` that failed, one row per sample (or one without): task,
/// check, severity, rows failing, what was found, and the sample row.
fn failed_checks(so_far: &[TaskReceipt]) -> Table {
    let mut builder = RowsBuilder::new();
    for receipt in so_far {
        for check in receipt
            .checks
            .iter()
            .filter(|c| c.status == crate::check::Status::Failed)
        {
            let severity = if check.quarantined {
                "quarantine"
            } else {
                check.severity.as_str()
            };
            let samples: Vec<Cell> = match check.samples.as_slice() {
                [] => vec![Cell::Null],
                samples => samples
                    .iter()
                    .map(|s| Cell::Str(serde_json::Value::Object(s.clone()).to_string().into()))
                    .collect(),
            };
            for sample in samples {
                let row = [
                    ("task", Cell::Str(receipt.id.as_str().into())),
                    ("check", Cell::Str(check.name.as_str().into())),
                    ("severity", Cell::Str(severity.into())),
                    ("failing_rows", Cell::Int(check.failing_rows as i64)),
                    ("found", Cell::Str(check.message.as_str().into())),
                    ("sample", sample),
                ];
                builder.push_record(row).expect("one type per column");
            }
        }
    }
    Table::from_batch(builder.finish())
}

/// Messages to the `on_failure` recipients of every alert task, after a failed run or one that
/// skipped fan-out items (`on_item_error: skip`).
pub(crate) async fn failure_alerts(
    cx: &Context<'_>,
    alerts: &[(&str, &SendAlerts)],
    receipts: &[TaskReceipt],
) -> Vec<AlertReceipt> {
    let failed: Vec<&TaskReceipt> = receipts.iter().filter(|r| r.status == TaskStatus::Failed).collect();
    let names: Vec<&str> = failed.iter().map(|r| r.id.as_str()).collect();
    let skipped = failed_items(receipts);
    let (subject, intro) = if failed.is_empty() {
        let count = match skipped.rows() {
            1 => "1 failed item".to_owned(),
            n => format!("{n} failed items"),
        };
        (
            format!("{}: run {} skipped {count}", cx.product, cx.run_id),
            format!(
                "Run {} of {} on the {} target finished without {count}, whose requests failed after their retries.",
                cx.run_id,
                cx.product,
                cx.target.as_str()
            ),
        )
    } else {
        (
            format!("{}: run {} failed ({})", cx.product, cx.run_id, names.join(", ")),
            format!(
                "Run {} of {} failed on the {} target. Failed: {}.",
                cx.run_id,
                cx.product,
                cx.target.as_str(),
                names.join(", ")
            ),
        )
    };
    let message = message::summary(
        subject,
        &intro,
        &[&tasks_table(receipts), &failed_checks(receipts), &skipped],
    );
    tell_on_failure(cx, alerts, &message).await
}

/// The fan-out items the run's tasks skipped: task, item, error.
pub(crate) fn failed_items(receipts: &[TaskReceipt]) -> Table {
    let mut builder = RowsBuilder::new();
    for receipt in receipts {
        for failed in receipt.items.iter().flat_map(|items| &items.failed) {
            let row = [
                ("task", Cell::Str(receipt.id.as_str().into())),
                ("item", Cell::Str(failed.label.as_str().into())),
                ("error", Cell::Str(failed.error.as_str().into())),
            ];
            builder.push_record(row).expect("one type per column");
        }
    }
    Table::from_batch(builder.finish())
}

/// Sends `message` to the `on_failure` recipients of each of `alerts`, by e-mail; what could not be
/// sent is logged.
pub(crate) async fn tell_on_failure(
    cx: &Context<'_>,
    alerts: &[(&str, &SendAlerts)],
    message: &message::Message,
) -> Vec<AlertReceipt> {
    let mut sent = Vec::new();
    for &(task, alert) in alerts {
        if alert.on_failure.is_empty() {
            continue;
        }
        match deliver(cx, task, alert, &alert.on_failure, Trigger::Failure, message, 0).await {
            Ok(receipts) => sent.extend(receipts),
            Err(error) => cx
                .log
                .error(Some(task), None, format!("cannot send the failure alert: {error}")),
        }
    }
    sent
}
