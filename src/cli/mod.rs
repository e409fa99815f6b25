//! The command line: parse arguments, call the library, map results to exit codes.

mod backfill;
mod init;
mod list;
mod plan;
mod query;
mod run;
mod runtime;
mod schedule;
mod state;
mod status;
mod test;
mod validate;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::target::{AlertSink, SecretSource, Target};

/// Exit codes, stable and documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success (alerts firing is not a failure).
    Success = 0,
    /// A task failed permanently, or `validate` found an invalid product.
    Failure = 1,
    /// Invalid configuration or usage.
    Usage = 2,
    /// `dpf run` did not start: another run of the same product holds its lock.
    Busy = 3,
    /// The data failed an `error` check; nothing downstream of it was written. Never worth retrying.
    DataError = 65,
    /// A transient failure persisted after all retries: the scheduler may try again later.
    Transient = 75,
    /// Stopped by SIGINT or SIGTERM; nothing half-done was committed.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "dpf",
    version,
    about = "Run declarative data products: extract → transform → store → alert"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check product files: schema and semantic checks, every problem with file:line:column.
    Validate(validate::Args),
    /// Show what `dpf run` would do: task graph, destinations, params, next run times.
    Plan(plan::Args),
    /// List the products with owner, schedule and next run.
    List(list::Args),
    /// Run a product's chain once.
    Run(run::Args),
    /// Run every tick of a product's schedule in a time range, oldest first.
    Backfill(backfill::Args),
    /// Export the products' schedules for crontab, Kubernetes or Cloud Run.
    #[command(subcommand)]
    Schedule(schedule::Command),
    /// Per product: the last run, the last success, the cursors, and whether it is late.
    Status(status::Args),
    /// Show or reset a product's saved state: its incremental cursors and run history.
    #[command(subcommand)]
    State(state::Command),
    /// Run products offline against their recorded fixtures and check their `tests:`.
    Test(test::Args),
    /// SQL over the local warehouse; tables are named `dataset.table`.
    Query(query::Args),
    /// Print the JSON Schema of product files.
    Schema,
    /// Start a products repository: an example product with its fixtures and tests, the schema,
    /// editor settings and a CI workflow.
    Init(init::Args),
    /// Print a completion script for a shell, e.g. `dpf completions bash > /etc/bash_completion.d/dpf`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `dpf man > /usr/local/share/man/man1/dpf.1`.
    Man,
}

/// When to colour human output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Color {
    /// On a terminal, unless NO_COLOR is set.
    #[default]
    Auto,
    Always,
    Never,
}

impl Color {
    /// Whether output written to stdout is coloured.
    fn enabled(self) -> bool {
        self.enabled_for(std::io::stdout().is_terminal())
    }

    /// Whether output written to stderr is coloured.
    fn enabled_on_stderr(self) -> bool {
        self.enabled_for(std::io::stderr().is_terminal())
    }

    fn enabled_for(self, terminal: bool) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }
}

/// Where products are looked up by name, and on which target they would run.
#[derive(Debug, clap::Args)]
struct ProductsArgs {
    /// Folder of product files.
    #[arg(long, value_name = "DIR", default_value = "products")]
    products: PathBuf,
}

/// The product a command acts on, where products are looked up, and where it would run.
#[derive(Debug, clap::Args)]
struct ProductArgs {
    /// A product name (looked up in --products) or a product file.
    product: String,
    #[command(flatten)]
    products: ProductsArgs,
    #[command(flatten)]
    target: TargetArgs,
}

#[derive(Debug, clap::Args)]
struct TargetArgs {
    /// Where stores and alerts write.
    #[arg(long, env = "DPF_TARGET", value_enum, default_value_t = Target::Local)]
    target: Target,
    /// Data dir of the local target [env: DPF_DATA_DIR] [default: .dpf]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where `${secret:NAME}` is read [default: secret-manager on gcp, env (and .env) on local]
    #[arg(long, env = "DPF_SECRETS", value_enum)]
    secrets: Option<SecretSource>,
    /// `outbox`: alerts go to the data dir's outbox on any target instead of SendGrid and Slack.
    #[arg(long, env = "DPF_ALERTS", value_enum, default_value_t = AlertSink::Deliver)]
    alerts: AlertSink,
}

impl TargetArgs {
    /// Where `${secret:NAME}` is read: as given, else the target's own source.
    fn secrets(&self) -> SecretSource {
        self.secrets.unwrap_or(SecretSource::of(self.target))
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    crate::secrets::redact_panics();
    // Most commands check product files: the schema compiles while the command line is read.
    crate::validate::schema::compile_early();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                Exit::Usage.into()
            } else {
                Exit::Success.into()
            };
        }
    };
    let result = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Plan(args) => plan::run(args),
        Command::List(args) => list::run(args),
        Command::Run(args) => run::run(args),
        Command::Backfill(args) => backfill::run(args),
        Command::Schedule(command) => schedule::run(command),
        Command::Status(args) => status::run(args),
        Command::State(command) => state::run(command),
        Command::Test(args) => test::run(args),
        Command::Query(args) => query::run(args),
        Command::Schema => print(crate::validate::schema::SCHEMA).map(|()| Exit::Success),
        Command::Init(args) => init::run(args),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "dpf", &mut script);
            print(&String::from_utf8_lossy(&script)).map(|()| Exit::Success)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut page)
                .map_err(anyhow::Error::from)
                .and_then(|()| print(&String::from_utf8_lossy(&page)))
                .map(|()| Exit::Success)
        }
    };
    match result {
        Ok(exit) => exit.into(),
        Err(error) => {
            report_error(&error);
            Exit::Usage.into()
        }
    }
}

/// What went wrong before a run started, as its logs say it: in JSON logs (`--log-format json`, or
/// `auto` off a terminal) one ERROR entry, so that a job's logs hold JSON lines only; otherwise the
/// usual `error:` lines. Exits 2 either way.
fn logged(format: crate::log::LogFormat, product: &str, result: anyhow::Result<Exit>) -> anyhow::Result<Exit> {
    match result {
        Err(error) if format.resolved() == crate::log::LogFormat::Json => {
            let message = error.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ");
            let entry = crate::log::entry(crate::log::Severity::Error, &message, &[("product", product)]);
            crate::log::write_entries(&[entry]);
            Ok(Exit::Usage)
        }
        other => other,
    }
}

/// Prints an error once with its chain of causes.
fn report_error(error: &anyhow::Error) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {error}");
    for cause in error.chain().skip(1) {
        let _ = writeln!(stderr, "  caused by: {cause}");
    }
}

/// `rows` under `header` in columns as wide as their widest cell, two spaces apart.
fn aligned<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let header = header.map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Writes command output to stdout; a closed pipe (`dpf list | head`) is not an error.
fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}
