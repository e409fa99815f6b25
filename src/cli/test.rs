//! `dpf test [PATH...]`: every product with `tests:` runs offline against its fixtures, on the local
//! target, in a temporary data dir, and its expectations are checked.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;

use crate::log::LogFormat;
use crate::run::{HttpMode, Options};
use crate::target::{AlertSink, SecretSource, Target};
use crate::validate::check_paths;

use super::run::{default_fixtures, execute};
use super::{Exit, print};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Product files or folders [default: products].
    paths: Vec<PathBuf>,
    /// Show each run's log lines on stderr.
    #[arg(long)]
    verbose: bool,
}

pub(super) fn run(args: Args) -> anyhow::Result<Exit> {
    let runtime = super::runtime::Runtime::new(false)?;
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("products")]
    } else {
        args.paths
    };
    let checked = check_paths(&paths)?;
    let (mut passed, mut failed, mut invalid, mut untested) = (0, 0, 0, 0);
    let mut out = String::new();
    for product_file in &checked {
        let path = product_file.source.path().display().to_string();
        let Some(product) = &product_file.product else {
            invalid += 1;
            out.push_str(&format!("INVALID {path}: run `dpf validate {path}` for the problems\n"));
            continue;
        };
        if product.tests.is_empty() {
            untested += 1;
            out.push_str(&format!("-       {} (no tests)\n", product.name));
            continue;
        }
        for case in &product.tests {
            let clock = Instant::now();
            let fixtures = match &case.fixtures {
                Some(dir) => product_file
                    .source
                    .path()
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join(dir),
                None => default_fixtures(product_file.source.path(), product),
            };
            let data_dir = tempfile::Builder::new()
                .prefix("dpf-test-")
                .tempdir()
                .context("cannot make a temporary data dir")?;
            let failures = if fixtures.is_dir() {
                let options = Options {
                    target: Target::Local,
                    secrets: SecretSource::Env,
                    alerts: AlertSink::Deliver,
                    data_dir: data_dir.path().to_path_buf(),
                    http: HttpMode::Replay(fixtures),
                    log_format: if args.verbose { LogFormat::Auto } else { LogFormat::Off },
                    logical: super::run::logical(product, case.at)?,
                    timeout: None,
                };
                let outcome = execute(&runtime, product, product_file, options)?;
                runtime.block_on(crate::expectation::check(&outcome, &case.expect))
            } else {
                vec![format!("no fixtures: {} does not exist", fixtures.display())]
            };
            let elapsed = clock.elapsed().as_millis();
            if failures.is_empty() {
                passed += 1;
                out.push_str(&format!("PASS    {} › {} ({elapsed} ms)\n", product.name, case.name));
            } else {
                failed += 1;
                out.push_str(&format!("FAIL    {} › {} ({elapsed} ms)\n", product.name, case.name));
                for failure in failures {
                    out.push_str(&format!("        {failure}\n"));
                }
            }
        }
    }
    out.push_str(&format!(
        "\n{passed} passed, {failed} failed, {invalid} invalid, {untested} without tests\n"
    ));
    print(&out)?;
    Ok(if invalid > 0 {
        Exit::Usage
    } else if failed > 0 {
        Exit::Failure
    } else {
        Exit::Success
    })
}
