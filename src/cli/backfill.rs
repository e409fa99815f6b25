//! `dpf backfill PRODUCT --from T1 --to T2`: every tick of the schedule in the range, oldest first.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::log::LogFormat;
use crate::plan::logical;
use crate::receipt::RunStatus;
use crate::run::{HttpMode, Options};

use super::plan::{find, invalid_logged};
use super::run::{default_fixtures, execute, exit, lock};
use super::{Exit, ProductArgs, print};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    product: ProductArgs,
    /// The first tick to run (RFC 3339); never earlier than the product's `start_date`.
    #[arg(long, value_name = "TIMESTAMP")]
    from: DateTime<Utc>,
    /// The last tick to run (RFC 3339), included.
    #[arg(long, value_name = "TIMESTAMP")]
    to: DateTime<Utc>,
    /// List the ticks and their run ids without running anything.
    #[arg(long)]
    dry_run: bool,
    /// Serve HTTP requests from the product's recorded fixtures.
    #[arg(long)]
    replay: bool,
    /// The fixtures folder [default: fixtures/<product> beside the product file].
    #[arg(long, value_name = "DIR")]
    fixtures: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
}

/// This invocation again, from `tick` on: every other argument as it was given.
fn resume_command(tick: DateTime<Utc>) -> String {
    let mut words: Vec<String> = std::env::args().collect();
    words[0] = "dpf".to_owned();
    let from = tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut i = 0;
    while i < words.len() {
        if words[i] == "--from" && i + 1 < words.len() {
            words[i + 1] = from.clone();
        } else if words[i].starts_with("--from=") {
            words[i] = format!("--from={from}");
        }
        i += 1;
    }
    words
        .iter()
        .map(|w| crate::export::quote_shell(w))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn run(args: Args) -> anyhow::Result<Exit> {
    let (format, product) = (args.log_format, args.product.product.clone());
    super::logged(format, &product, run_logged(args))
}

fn run_logged(args: Args) -> anyhow::Result<Exit> {
    let runtime = super::runtime::Runtime::new(true)?;
    let checked = find(&args.product.product, &args.product.products.products)?;
    let Some(product) = &checked.product else {
        return Ok(invalid_logged(&checked, args.log_format));
    };
    let Some(cron) = product.schedule.as_deref() else {
        anyhow::bail!(
            "`{}` has no schedule, so it has no ticks to backfill; run it with `dpf run --at`",
            product.name
        );
    };
    let timezone: chrono_tz::Tz = product.timezone.parse().unwrap_or(chrono_tz::UTC);
    let start = product
        .start_date
        .as_deref()
        .and_then(|date| crate::plan::schedule::start_in(date, timezone));
    let from = match start {
        Some(start) if start > args.from => {
            eprintln!("dpf: starting at the product's start_date {start}, not before");
            start
        }
        _ => args.from,
    };
    let ticks = logical::ticks(cron, &product.timezone, from, args.to).map_err(|m| anyhow::anyhow!(m))?;
    let mut out = format!(
        "{} ticks of `{cron}` ({}) from {} to {}\n",
        ticks.len(),
        product.timezone,
        from.to_rfc3339(),
        args.to.to_rfc3339()
    );
    let logical_of =
        |tick| logical::at(&product.name, Some(cron), &product.timezone, tick).map_err(|m| anyhow::anyhow!(m));
    if args.dry_run {
        for &tick in &ticks {
            let logical = logical_of(tick)?;
            out.push_str(&format!(
                "  {}  [{}, {})\n",
                logical.run_id,
                logical.local(logical.interval_start),
                logical.local(logical.interval_end)
            ));
        }
        print(&out)?;
        return Ok(Exit::Success);
    }
    let data_dir = crate::target::data_dir(args.product.target.data_dir.as_deref());
    let Some(_lock) = lock(&data_dir, product, None)? else {
        return Ok(Exit::Busy);
    };
    let fixtures = args
        .fixtures
        .clone()
        .unwrap_or_else(|| default_fixtures(checked.source.path(), product));
    print(&out)?;
    for &tick in &ticks {
        let logical = logical_of(tick)?;
        let options = Options {
            target: args.product.target.target,
            secrets: args.product.target.secrets(),
            alerts: args.product.target.alerts,
            data_dir: data_dir.clone(),
            http: if args.replay {
                HttpMode::Replay(fixtures.clone())
            } else {
                HttpMode::Live
            },
            log_format: args.log_format,
            logical: logical.clone(),
            timeout: None,
            cursors: crate::run::CursorUse::Window,
            shard: None,
            memory_limit: crate::run::default_memory_limit(),
        };
        let outcome = execute(&runtime, product, &checked, options)?;
        let receipt = &outcome.receipt;
        if receipt.status != RunStatus::Succeeded {
            let error = receipt
                .tasks
                .iter()
                .find_map(|t| t.error.as_deref().map(|e| format!("`{}`: {e}", t.id)))
                .unwrap_or_default();
            print(&format!(
                "  FAILED {} (exit {}) {error}\nbackfill stopped; resume with:\n  {}\n",
                logical.run_id,
                receipt.exit_code,
                resume_command(tick)
            ))?;
            return Ok(exit(receipt.status));
        }
        print(&format!(
            "  ok     {}  [{}, {})  {} ms\n",
            logical.run_id,
            logical.local(logical.interval_start),
            logical.local(logical.interval_end),
            receipt.duration_ms
        ))?;
    }
    Ok(Exit::Success)
}
