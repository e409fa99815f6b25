//! `dpf list`

use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use crate::plan::schedule;
use crate::validate::check_paths;

use super::plan::Format;
use super::{Exit, ProductsArgs, print};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    products: ProductsArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// One row of `dpf list`.
#[derive(Debug, Serialize)]
struct Entry {
    name: String,
    owner: Option<String>,
    schedule: Option<String>,
    /// UTC, RFC 3339.
    next_run: Option<String>,
    file: String,
    valid: bool,
}

pub(super) fn run(args: Args) -> anyhow::Result<Exit> {
    let checked = check_paths(std::slice::from_ref(&args.products.products))?;
    let now = Utc::now();
    let entries: Vec<Entry> = checked
        .iter()
        .map(|c| {
            let product = c.product.as_ref();
            let next_run = product.and_then(|p| {
                let cron = schedule::parse(p.schedule.as_deref()?).ok()?;
                let tz = p.timezone.parse().ok()?;
                schedule::next_runs(&cron, tz, now, 1)
                    .first()
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            });
            Entry {
                name: c.name.as_ref().map_or_else(|| "?".to_owned(), |(n, _)| n.clone()),
                owner: product.and_then(|p| p.owner.clone()),
                schedule: product.and_then(|p| p.schedule.clone()),
                next_run,
                file: c.source.path().display().to_string(),
                valid: product.is_some(),
            }
        })
        .collect();
    let output = match args.format {
        Format::Json => serde_json::to_string_pretty(&entries)? + "\n",
        Format::Text => table(&entries),
    };
    print(&output)?;
    Ok(Exit::Success)
}

fn table(entries: &[Entry]) -> String {
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|e| {
            [
                e.name.clone(),
                e.owner.clone().unwrap_or_else(|| "-".into()),
                e.schedule.clone().unwrap_or_else(|| "-".into()),
                match (&e.next_run, e.valid) {
                    (_, false) => "invalid: see `dpf validate`".into(),
                    (Some(next), true) => next.replace('T', " ").replace('Z', " UTC"),
                    (None, true) => "-".into(),
                },
                e.file.clone(),
            ]
        })
        .collect();
    super::aligned(["NAME", "OWNER", "SCHEDULE", "NEXT RUN", "FILE"], &rows)
}
