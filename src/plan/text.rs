//! The human-readable form of a plan.

use std::fmt::Write;

use serde_json::Value;

use super::{Plan, Step};
use crate::target::{AlertSink, Target};

/// Renders a plan for people: header, schedule, then the steps stage by stage.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = write!(out, "{}", plan.product);
    if let Some(description) = &plan.description {
        let _ = write!(out, " — {description}");
    }
    out.push('\n');
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(out, "  {name:<10} {value}");
    };
    field("file", &plan.file);
    if let Some(owner) = &plan.owner {
        field("owner", owner);
    }
    let target = match &plan.data_dir {
        Some(dir) => format!("local (data dir {dir})"),
        None => Target::Gcp.to_string(),
    };
    field("target", &target);
    field("secrets", plan.secrets.as_str());
    if plan.alerts == AlertSink::Outbox {
        field("alerts", "to the outbox, not through the target's channels");
    }
    match &plan.schedule {
        Some(schedule) => {
            field(
                "schedule",
                &format!("{} ({}): {}", schedule.cron, schedule.timezone, schedule.description),
            );
            let runs: Vec<String> = schedule
                .next_runs
                .iter()
                .map(|t| t.replace('T', " ").replace('Z', " UTC"))
                .collect();
            for (i, run) in runs.iter().enumerate() {
                field(if i == 0 { "next runs" } else { "" }, run);
            }
        }
        None => field("schedule", "none (runs only when invoked)"),
    }
    if let Some(start) = &plan.start_date {
        field("start", start);
    }
    if let Some(logical) = &plan.logical {
        field(
            "this run",
            &format!("{} (logical time {})", logical.run_id, logical.local_time),
        );
        field(
            "interval",
            &format!("[{}, {})", logical.data_interval_start, logical.data_interval_end),
        );
    }

    for (number, stage) in plan.stages.iter().enumerate() {
        let together = if stage.len() > 1 {
            format!(" — {} tasks run concurrently", stage.len())
        } else {
            String::new()
        };
        let _ = writeln!(out, "\nstage {}{together}", number + 1);
        for id in stage {
            if let Some(step) = plan.steps.iter().find(|s| &s.id == id) {
                step_text(&mut out, step);
            }
        }
    }
    out
}

fn step_text(out: &mut String, step: &Step) {
    let function = serde_json::to_value(step.function).ok();
    let function = function.as_ref().and_then(Value::as_str).unwrap_or_default();
    let _ = writeln!(out, "  {} ({function})", step.id);
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(out, "      {name:<12} {value}");
    };
    if let Some(description) = &step.description {
        field("does", description);
    }
    if !step.reads.is_empty() {
        field("reads", &step.reads.join(", "));
    }
    if !step.after.is_empty() {
        field("after", &step.after.join(", "));
    }
    if let Some(source) = &step.source {
        field("from", source);
    }
    if let Some(incremental) = &step.incremental {
        let from = match &incremental.from {
            Some(from) => crate::extract::incremental::rendered(Some(from)),
            None => "the saved cursor, read when the run starts".to_owned(),
        };
        let saves = if incremental.saves {
            ""
        } else {
            "; the saved cursor is left alone"
        };
        field(
            "incremental",
            &format!("after `{}` from {from}{saves}", incremental.cursor),
        );
    }
    if let Some(fan_out) = &step.fan_out {
        use crate::extract::items::{ForEach, ItemSource, OnItemError};
        let mut items = match (&fan_out.fan_out.for_each, fan_out.items) {
            (ForEach::Items(_), Some(count)) => format!("{count} items written in the product"),
            (ForEach::Source(ItemSource::File(file)), Some(count)) => format!("{count} items in {file}"),
            (ForEach::Source(ItemSource::File(file)), None) => format!("the items in {file} (not readable now)"),
            (ForEach::Source(ItemSource::Task(task)), _) => format!("each row of `{task}`"),
            (ForEach::Items(_), None) => "its items".to_owned(),
        };
        match (fan_out.shard, fan_out.items) {
            (Some(shard), Some(count)) => {
                let range = shard.range(count);
                items = format!("items {}–{} of {items} (shard {shard})", range.start + 1, range.end);
            }
            (Some(shard), None) => items = format!("shard {shard}'s share of {items}"),
            (None, _) => {}
        }
        let on_error = match fan_out.fan_out.on_item_error {
            OnItemError::Fail => "a failed item fails the task",
            OnItemError::Skip => "a failed item is skipped",
        };
        field("for each", &format!("{items}; {on_error}"));
        if !fan_out.fan_out.include_item.is_empty() {
            field("adds", &fan_out.fan_out.include_item.join(", "));
        }
    }
    if let Some(pace) = &step.requests {
        let mut shown = format!("at most {} at once", pace.concurrency);
        if let Some(rate) = pace.rate_limit {
            shown.push_str(&format!(", {rate} a second"));
        }
        field("requests", &shown);
    }
    if let Some(warehouse) = &step.warehouse {
        let mut runs = "in BigQuery (locally: over the local warehouse)".to_owned();
        match (warehouse.bytes_processed, &warehouse.estimate_error) {
            (Some(bytes), _) => runs.push_str(&format!(
                "; reads {} by BigQuery's dry run",
                crate::log::human_bytes(bytes)
            )),
            (None, Some(why)) => runs.push_str(&format!("; no estimate: {why}")),
            (None, None) => {}
        }
        field("runs", &runs);
        if warehouse.pulls_rows {
            field(
                "rows back",
                "the result comes back into dpf for the tasks that read it (at most max_rows)",
            );
        }
    }
    if let Some(destination) = &step.destination {
        field("writes", destination);
    }
    if let Some(condition) = &step.condition {
        field("fires when", condition);
    }
    for (i, check) in step.checks.iter().enumerate() {
        let mut shown = format!("{} ({}", check.name, check.severity.as_str());
        if check.on_fail == crate::check::OnFail::Quarantine {
            shown.push_str(", quarantine");
        }
        shown.push(')');
        field(if i == 0 { "checks" } else { "" }, &shown);
    }
    let retries = match step.retries {
        0 => "none".to_owned(),
        n => format!("{n}, back-off from {} min, exponential", step.retry_delay_minutes),
    };
    field("retries", &retries);
    if let Some(timeout) = step.timeout_minutes {
        field("timeout", &format!("{timeout} min"));
    }
    if !step.references.is_empty() {
        field("resolves", &step.references.join(", "));
    }
    if let Value::Object(params) = &step.params {
        for (i, (key, value)) in params.iter().enumerate() {
            let shown = match value {
                Value::String(text) if text.contains('\n') => {
                    let indent = format!("\n{:<21}", "");
                    format!("{key}: |{indent}{}", text.trim_end().replace('\n', &indent))
                }
                Value::String(text) => format!("{key}: {text}"),
                other => format!("{key}: {other}"),
            };
            field(if i == 0 { "params" } else { "" }, &shown);
        }
    }
}
