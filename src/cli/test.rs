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
    /// What goes to stdout: lines for people, a JSON report, or JUnit XML for CI test reporters.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Format {
    Text,
    Json,
    Junit,
}

/// How one `tests:` case came out.
#[derive(serde::Serialize)]
struct Case {
    product: String,
    file: String,
    name: String,
    passed: bool,
    duration_ms: u128,
    /// What did not hold, one line each.
    failures: Vec<String>,
}

/// Everything `dpf test` found.
#[derive(Default, serde::Serialize)]
struct Report {
    cases: Vec<Case>,
    /// Product files that do not validate.
    invalid: Vec<String>,
    /// Products without `tests:`.
    untested: Vec<String>,
}

pub(super) fn run(args: Args) -> anyhow::Result<Exit> {
    let runtime = super::runtime::Runtime::new(false)?;
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("products")]
    } else {
        args.paths
    };
    let checked = check_paths(&paths)?;
    let mut report = Report::default();
    for product_file in &checked {
        let path = product_file.source.path().display().to_string();
        let Some(product) = &product_file.product else {
            report.invalid.push(path);
            continue;
        };
        if product.tests.is_empty() {
            report.untested.push(product.name.clone());
            continue;
        }
        // The data dir each case left, for the cases that run `after` it.
        let mut left: Vec<(&str, tempfile::TempDir)> = Vec::new();
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
            let data_dir = match &case.after {
                Some(earlier) => match left.iter().position(|(name, _)| name == earlier) {
                    Some(at) => left.remove(at).1,
                    None => anyhow::bail!(
                        "test `{}` of {}: `after: {earlier}` names no earlier test case",
                        case.name,
                        product.name
                    ),
                },
                None => tempfile::Builder::new()
                    .prefix("dpf-test-")
                    .tempdir()
                    .context("cannot make a temporary data dir")?,
            };
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
                    cursors: crate::run::CursorUse::Saved,
                    shard: None,
                    memory_limit: crate::run::default_memory_limit(),
                };
                let outcome = execute(&runtime, product, product_file, options)?;
                runtime.block_on(crate::expectation::check(&outcome, &case.expect))
            } else {
                vec![format!("no fixtures: {} does not exist", fixtures.display())]
            };
            left.push((&case.name, data_dir));
            report.cases.push(Case {
                product: product.name.clone(),
                file: path.clone(),
                name: case.name.clone(),
                passed: failures.is_empty(),
                duration_ms: clock.elapsed().as_millis(),
                failures,
            });
        }
    }
    print(&match args.format {
        Format::Text => text(&report),
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
        Format::Junit => junit(&report),
    })?;
    Ok(if !report.invalid.is_empty() {
        Exit::Usage
    } else if report.cases.iter().any(|c| !c.passed) {
        Exit::Failure
    } else {
        Exit::Success
    })
}

fn text(report: &Report) -> String {
    let mut out = String::new();
    for path in &report.invalid {
        out.push_str(&format!("INVALID {path}: run `dpf validate {path}` for the problems\n"));
    }
    for name in &report.untested {
        out.push_str(&format!("-       {name} (no tests)\n"));
    }
    for case in &report.cases {
        let status = if case.passed { "PASS" } else { "FAIL" };
        let (product, name, ms) = (&case.product, &case.name, case.duration_ms);
        out.push_str(&format!("{status:<7} {product} › {name} ({ms} ms)\n"));
        for failure in &case.failures {
            out.push_str(&format!("        {failure}\n"));
        }
    }
    let passed = report.cases.iter().filter(|c| c.passed).count();
    out.push_str(&format!(
        "\n{passed} passed, {} failed, {} invalid, {} without tests\n",
        report.cases.len() - passed,
        report.invalid.len(),
        report.untested.len()
    ));
    out
}

/// JUnit XML: a test suite per product, a test case per `tests:` case; an invalid product file is
/// a suite with one case in error.
fn junit(report: &Report) -> String {
    let xml = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let seconds = |ms: u128| format!("{:.3}", ms as f64 / 1000.0);
    let failed = report.cases.iter().filter(|c| !c.passed).count();
    let total: u128 = report.cases.iter().map(|c| c.duration_ms).sum();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"dpf test\" tests=\"{}\" failures=\"{failed}\" \
         errors=\"{}\" time=\"{}\">\n",
        report.cases.len() + report.invalid.len(),
        report.invalid.len(),
        seconds(total)
    );
    let mut products: Vec<&str> = report.cases.iter().map(|c| c.product.as_str()).collect();
    products.dedup();
    for product in products {
        let cases: Vec<&Case> = report.cases.iter().filter(|c| c.product == product).collect();
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" time=\"{}\">\n",
            xml(product),
            cases.len(),
            cases.iter().filter(|c| !c.passed).count(),
            seconds(cases.iter().map(|c| c.duration_ms).sum())
        ));
        for case in cases {
            let open = format!(
                "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\" time=\"{}\"",
                xml(product),
                xml(&case.name),
                xml(&case.file),
                seconds(case.duration_ms)
            );
            match case.failures.first() {
                None => out.push_str(&format!("{open}/>\n")),
                Some(first) => out.push_str(&format!(
                    "{open}>\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    xml(first),
                    xml(&case.failures.join("\n"))
                )),
            }
        }
        out.push_str("  </testsuite>\n");
    }
    for path in &report.invalid {
        out.push_str(&format!(
            "  <testsuite name=\"{0}\" tests=\"1\" failures=\"0\" errors=\"1\">\n    <testcase classname=\"{0}\" \
             name=\"validate\" file=\"{0}\">\n      <error message=\"the product file does not validate: run dpf \
             validate {0}\"/>\n    </testcase>\n  </testsuite>\n",
            xml(path)
        ));
    }
    out.push_str("</testsuites>\n");
    out
}
