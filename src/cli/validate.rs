//! `dpf validate [PATH...]`

use std::path::PathBuf;

use crate::diagnostic::render::{self, Format, Summary};
use crate::diagnostic::{FileDiagnostics, Severity};
use crate::validate::check_paths;

use super::{Color, Exit, print};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Product files or folders (searched recursively for *.yaml and *.yml).
    #[arg(value_name = "PATH", default_value = "products")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Treat warnings as errors.
    #[arg(long)]
    deny_warnings: bool,
    /// Colour the human format.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    color: Color,
}

pub(super) fn run(args: Args) -> anyhow::Result<Exit> {
    let checked = check_paths(&args.paths)?;
    if checked.is_empty() {
        anyhow::bail!(
            "no product files (*.yaml, *.yml) found in {}",
            display_paths(&args.paths)
        );
    }
    let invalid = |c: &crate::validate::Checked| c.has_errors() || (args.deny_warnings && !c.diagnostics.is_empty());
    let summary = Summary {
        files: checked.len(),
        invalid: checked.iter().filter(|c| invalid(c)).count(),
        errors: checked.iter().map(|c| c.count(Severity::Error)).sum(),
        warnings: checked.iter().map(|c| c.count(Severity::Warning)).sum(),
    };
    let files: Vec<FileDiagnostics> = checked
        .iter()
        .filter(|c| !c.diagnostics.is_empty())
        .map(|c| FileDiagnostics {
            source: &c.source,
            diagnostics: &c.diagnostics,
        })
        .collect();
    let output = match args.format {
        Format::Human => render::human(&files, summary, args.color.enabled()),
        Format::Json => render::json(&files, summary)?,
        Format::Github => render::github(&files),
    };
    print(&output)?;
    Ok(if summary.invalid > 0 {
        Exit::Failure
    } else {
        Exit::Success
    })
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
