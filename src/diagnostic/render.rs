//! Renderers for diagnostics: human (source snippets with carets, colour on a terminal),
//! JSON (stable, for tools) and GitHub Actions annotations.

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

use super::{Diagnostic, FileDiagnostics, Severity};

/// How `dpf validate` prints what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Source snippets with carets, for people.
    Human,
    /// One JSON document (see the README for its fields).
    Json,
    /// GitHub Actions `::error` / `::warning` workflow commands.
    Github,
}

/// Counts shown in the summary line and the JSON output.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Summary {
    pub files: usize,
    pub invalid: usize,
    pub errors: usize,
    pub warnings: usize,
}

/// Renders every diagnostic as a source snippet with carets; colours only when asked.
pub(crate) fn human(files: &[FileDiagnostics<'_>], summary: Summary, color: bool) -> String {
    let renderer = if color { Renderer::styled() } else { Renderer::plain() };
    let mut out = String::new();
    for file in files {
        let path = file.source.path().display().to_string();
        let text = file.source.text_with_newlines();
        for diagnostic in file.diagnostics {
            out.push_str(&renderer.render(&report(diagnostic, &text, &path)));
            out.push_str("\n\n");
        }
    }
    out.push_str(&summary_line(summary));
    out.push('\n');
    out
}

fn report<'a>(diagnostic: &'a Diagnostic, text: &'a str, path: &'a str) -> Vec<Group<'a>> {
    let level = match diagnostic.severity {
        Severity::Error => Level::ERROR,
        Severity::Warning => Level::WARNING,
    };
    let mut primary = AnnotationKind::Primary.span(diagnostic.span.clone());
    if let Some(label) = &diagnostic.label {
        primary = primary.label(label.as_str());
    }
    let snippet = Snippet::source(text)
        .path(path)
        .line_start(1)
        .fold(true)
        .annotation(primary)
        .annotations(diagnostic.related.iter().map(|related| {
            AnnotationKind::Context
                .span(related.span.clone())
                .label(related.label.as_str())
        }));
    let mut group = level
        .primary_title(diagnostic.message.as_str())
        .id(diagnostic.code.code())
        .element(snippet);
    for note in &diagnostic.notes {
        group = group.element(Level::NOTE.message(note.as_str()));
    }
    if let Some(help) = &diagnostic.help {
        group = group.element(Level::HELP.message(help.as_str()));
    }
    vec![group]
}

fn summary_line(summary: Summary) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    if summary.errors == 0 && summary.warnings == 0 {
        return format!("{} valid", plural(summary.files, "product file"));
    }
    format!(
        "{} checked: {} invalid, {}, {}",
        plural(summary.files, "product file"),
        summary.invalid,
        plural(summary.errors, "error"),
        plural(summary.warnings, "warning"),
    )
}

/// One diagnostic in the JSON output. Field names are stable.
#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    file: String,
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
    severity: Severity,
    code: &'static str,
    name: &'static str,
    message: &'a str,
    label: Option<&'a str>,
    notes: &'a [String],
    help: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    version: u32,
    summary: Summary,
    diagnostics: Vec<JsonDiagnostic<'a>>,
}

/// Renders all diagnostics as one JSON document.
pub(crate) fn json(files: &[FileDiagnostics<'_>], summary: Summary) -> serde_json::Result<String> {
    let diagnostics = files
        .iter()
        .flat_map(|file| {
            file.diagnostics.iter().map(move |d| {
                let start = file.source.line_column(d.span.start);
                let end = file.source.line_column(d.span.end);
                JsonDiagnostic {
                    file: file.source.path().display().to_string(),
                    line: start.line,
                    column: start.column,
                    end_line: end.line,
                    end_column: end.column,
                    severity: d.severity,
                    code: d.code.code(),
                    name: d.code.name(),
                    message: &d.message,
                    label: d.label.as_deref(),
                    notes: &d.notes,
                    help: d.help.as_deref(),
                }
            })
        })
        .collect();
    let report = JsonReport {
        version: 1,
        summary,
        diagnostics,
    };
    let mut out = serde_json::to_string_pretty(&report)?;
    out.push('\n');
    Ok(out)
}

/// Renders diagnostics as GitHub Actions workflow commands, which annotate the pull request.
pub(crate) fn github(files: &[FileDiagnostics<'_>]) -> String {
    let mut out = String::new();
    for file in files {
        for d in file.diagnostics {
            let start = file.source.line_column(d.span.start);
            let end = file.source.line_column(d.span.end);
            let command = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let mut message = d.message.clone();
            if let Some(label) = &d.label {
                message.push_str(&format!(": {label}"));
            }
            for note in &d.notes {
                message.push_str(&format!("\nnote: {note}"));
            }
            if let Some(help) = &d.help {
                message.push_str(&format!("\nhelp: {help}"));
            }
            out.push_str(&format!(
                "::{command} file={},line={},col={},endLine={},endColumn={},title={}::{}\n",
                escape_property(&file.source.path().display().to_string()),
                start.line,
                start.column,
                end.line,
                end.column,
                escape_property(&format!("{} {}", d.code.code(), d.code.name())),
                escape_data(&message),
            ));
        }
    }
    out
}

/// Escaping of workflow command data, as the GitHub Actions toolkit does it.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_escapes_separators() {
        assert_eq!(escape_data("a%b\nc"), "a%25b%0Ac");
        assert_eq!(escape_property("E104 x,y:z"), "E104 x%2Cy%3Az");
    }
}
