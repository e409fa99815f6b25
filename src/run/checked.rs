//! A data-producing task's checks, between its success and the tasks that read it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::check::{self, Check, Status};
use crate::component::Services;
use crate::error::ErrorKind;
use crate::log::Severity;
use crate::receipt::TaskReceipt;
use crate::table::Table;

/// Checks `table`, the output of task `index`; records the results in its `receipt`. Returns the
/// rows that go on, or none when a check failed the task. Quarantined rows go to `rejected`.
pub(super) async fn apply(
    services: &Services,
    checks: &[Check],
    index: usize,
    logical_time: DateTime<Utc>,
    table: Table,
    receipt: &mut TaskReceipt,
    rejected: &mut HashMap<String, Table>,
) -> Option<Table> {
    if checks.is_empty() {
        return Some(table);
    }
    let id = receipt.id.clone();
    let subject = check::Subject {
        task: &id,
        run_id: &services.run_id,
        logical_time,
        session: services.catalog.session(),
        locator: services.locator(index),
    };
    let mut checked = match check::evaluate(&subject, checks, table).await {
        Ok(checked) => checked,
        Err(error) => {
            let message = services.secrets.redact(&error.message);
            services.log.error(Some(&id), None, format!("checks: {message}"));
            receipt.fail(message, error.kind);
            return None;
        }
    };
    // Samples go to receipts, logs and alerts: no secret in them, and no text longer than a line,
    // at any depth of a value.
    for sample in checked.results.iter_mut().flat_map(|r| r.samples.iter_mut()) {
        for value in sample.values_mut() {
            *value = services.secrets.redact_value(value, |text| shorten(&text));
        }
    }
    let log = &services.log;
    let passed = checked.results.iter().filter(|r| r.status == Status::Passed).count();
    if passed == checked.results.len() {
        let line = format!("{passed} of {} checks passed", checked.results.len());
        let results = serde_json::to_value(&checked.results).unwrap_or_default();
        log.with_field(Severity::Info, &id, &line, "checks", &results);
    }
    for result in checked.results.iter().filter(|r| r.status == Status::Failed) {
        let samples: Vec<String> = result
            .samples
            .iter()
            .map(|s| serde_json::Value::Object(s.clone()).to_string())
            .collect();
        let mut text = result.to_string();
        if !samples.is_empty() {
            text.push_str(&format!("; e.g. {}", samples.join(", ")));
        }
        let severity = if result.fails_task() {
            Severity::Error
        } else {
            Severity::Warning
        };
        let value = serde_json::to_value(result).unwrap_or_default();
        log.with_field(severity, &id, &text, "check", &value);
    }
    let failures: Vec<String> = checked
        .results
        .iter()
        .filter(|r| r.fails_task())
        .map(ToString::to_string)
        .collect();
    receipt.checks = checked.results;
    if !failures.is_empty() {
        receipt.fail(services.secrets.redact(&failures.join("; ")), ErrorKind::Data);
        return None;
    }
    if let Some(rows) = checked.rejected {
        receipt.rows = Some(checked.table.rows() as u64);
        rejected.insert(id, rows);
    }
    Some(checked.table)
}

/// Characters of a text value a check's sample shows.
const SAMPLE_CHARS: usize = 200;

/// `text` cut to [`SAMPLE_CHARS`] characters, marked with `…` when cut.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(SAMPLE_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}
