//! `send_alerts`: e-mail (SendGrid) and Slack messages when a condition over rows holds, after
//! every run, or on failure.

pub(crate) mod channel;
pub(crate) mod deliver;
pub(crate) mod message;
pub(crate) mod outbox;
pub(crate) mod send;
pub(crate) mod sendgrid;
pub(crate) mod slack;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub(crate) use self::channel::Channel;
use crate::component::{Done, Input, Services, Slot};
use crate::error::TaskError;
use crate::spec::de::one_or_many;
use crate::target::Target;
use crate::transform::sql::Locator;

/// A `send_alerts` task, built for its run.
pub(crate) struct Alert<'a> {
    task: &'a str,
    params: SendAlerts,
    cx: send::Context<'a>,
    locator: Locator<'a>,
}

impl<'a> Alert<'a> {
    pub(crate) fn new(params: SendAlerts, slot: Slot<'a>, services: &'a Services) -> Alert<'a> {
        Alert {
            task: slot.id,
            params,
            cx: send::Context::of(services, &services.cancel),
            locator: slot.locator(services),
        }
    }

    /// Sends the alert about the rows of its input (or the run summary of the tasks so far).
    pub(crate) async fn run(&self, input: &Input<'_>) -> Result<Done, TaskError> {
        let locate = |sql: &str, message: &str, position| self.locator.error_at("params/when", sql, message, position);
        let read = input.reads.first().map(String::as_str);
        let sent = send::send_alert(
            &self.cx,
            self.task,
            &self.params,
            read,
            input.tables,
            input.so_far,
            locate,
        )
        .await?;
        Ok(Done {
            rows: Some(sent.rows),
            destinations: sent.alerts.iter().map(|a| a.destination.clone()).collect(),
            alerts: sent.alerts,
            ..Done::default()
        })
    }
}

/// Parameters of `send_alerts`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SendAlerts {
    #[serde(default, deserialize_with = "one_or_many", skip_serializing_if = "Vec::is_empty")]
    pub recipient: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many", skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Subject template with `{product}`, `{run_id}`, `{count}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// SQL boolean over the input rows; fires when a row matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Older form: column → limit, fires when a value is above its limit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub thresholds: BTreeMap<String, f64>,
    #[serde(default = "default_channels")]
    pub channels: Vec<Channel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slack_webhook: Option<String>,
    /// The SendGrid API key on the gcp target; `${secret:SENDGRID_API_KEY}` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sendgrid_api_key: Option<String>,
    /// Recipients told when the run fails.
    #[serde(default, deserialize_with = "one_or_many", skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<String>,
    #[serde(default = "default_max_rows")]
    pub max_rows: u32,
}

/// The `when` that fires an alert on the run's failed checks instead of a SQL condition.
pub(crate) const CHECKS_FAILED: &str = "checks_failed";

impl SendAlerts {
    /// Whether the alert fires on the checks of the run that failed without failing it.
    pub fn on_failed_checks(&self) -> bool {
        self.when.as_deref().map(str::trim) == Some(CHECKS_FAILED)
    }

    /// The condition as one SQL expression (`when`, else the thresholds), or none for a run summary
    /// or an alert on failed checks.
    pub fn condition(&self) -> Option<String> {
        if self.on_failed_checks() {
            return None;
        }
        if let Some(when) = &self.when {
            return Some(when.clone());
        }
        if self.thresholds.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .thresholds
            .iter()
            .map(|(column, limit)| format!("\"{}\" > {limit}", column.replace('"', "\"\"")))
            .collect();
        Some(parts.join(" OR "))
    }
}

impl SendAlerts {
    /// The SendGrid API key's reference or text.
    pub fn sendgrid_key(&self) -> &str {
        self.sendgrid_api_key.as_deref().unwrap_or(DEFAULT_SENDGRID_KEY)
    }

    /// Whether this task sends e-mail: on its e-mail channel, or to its `on_failure` recipients.
    pub fn sends_email(&self) -> bool {
        self.channels.contains(&Channel::Email) || !self.on_failure.is_empty()
    }

    /// The reference this task reads on `target` that its params do not hold: the default SendGrid
    /// API key, when it sends e-mail on the gcp target.
    pub fn implicit_reference(&self, target: Target) -> Option<&str> {
        (target == Target::Gcp && self.sends_email() && self.sendgrid_api_key.is_none()).then(|| self.sendgrid_key())
    }
}

/// Where the SendGrid API key comes from unless `sendgrid_api_key` says otherwise.
pub(crate) const DEFAULT_SENDGRID_KEY: &str = "${secret:SENDGRID_API_KEY}";

fn default_channels() -> Vec<Channel> {
    vec![Channel::Email]
}

fn default_max_rows() -> u32 {
    20
}
