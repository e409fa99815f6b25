//! `dpf schedule export`: the products' schedules for crontab, Kubernetes or Cloud Run.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::export::{self, Settings};
use crate::target::Target;
use crate::validate::check_paths;

use super::{Exit, print};

#[derive(Debug, clap::Subcommand)]
pub(super) enum Command {
    /// Print every product's schedule as crontab lines, Kubernetes CronJobs or Cloud Run Jobs.
    Export(ExportArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Format {
    Crontab,
    Kubernetes,
    CloudRun,
}

#[derive(Debug, clap::Args)]
pub(super) struct ExportArgs {
    #[arg(long, value_enum)]
    format: Format,
    /// Product files or folders [default: products].
    paths: Vec<PathBuf>,
    /// The container image that runs dpf (Kubernetes, Cloud Run).
    #[arg(long, default_value = "ghcr.io/your-org/dpf:latest")]
    image: String,
    /// The target the scheduled runs use.
    #[arg(long, value_enum, default_value_t = Target::Gcp)]
    target: Target,
    /// The folder crontab runs dpf in [default: the current folder].
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Where crontab runs append their logs, one file per product.
    #[arg(long, value_name = "DIR", default_value = "/var/log/dpf")]
    log_dir: String,
    /// The dpf binary crontab runs.
    #[arg(long, value_name = "PATH", default_value = "dpf")]
    binary: String,
    /// Cloud Run and Cloud Scheduler region.
    #[arg(long, default_value = "europe-west1")]
    region: String,
}

pub(super) fn run(command: Command) -> anyhow::Result<Exit> {
    let Command::Export(args) = command;
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("products")]
    } else {
        args.paths.clone()
    };
    let checked = check_paths(&paths)?;
    let invalid: Vec<String> = checked
        .iter()
        .filter(|c| c.product.is_none())
        .map(|c| c.source.path().display().to_string())
        .collect();
    if !invalid.is_empty() {
        eprintln!("error: invalid products, not exported: {}", invalid.join(", "));
        eprintln!("  run `dpf validate` for the problems");
        return Ok(Exit::Usage);
    }
    let products: Vec<_> = checked.iter().filter_map(|c| c.product.as_ref()).collect();
    let workdir = match args.workdir {
        Some(dir) => dir,
        None => std::env::current_dir().context("cannot read the current folder")?,
    };
    let settings = Settings {
        image: args.image,
        target: args.target.as_str(),
        workdir: workdir.display().to_string(),
        log_dir: args.log_dir,
        binary: args.binary,
        region: args.region,
    };
    let text = match args.format {
        Format::Crontab => {
            let located: Vec<_> = checked
                .iter()
                .filter_map(|c| Some((c.product.as_ref()?, c.source.path().parent()?)))
                .collect();
            export::crontab(&located, &settings)
        }
        Format::Kubernetes => export::kubernetes(&products, &settings),
        Format::CloudRun => export::cloud_run(&products, &settings),
    };
    print(&text)?;
    Ok(Exit::Success)
}
