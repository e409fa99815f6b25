//! Schema and semantic checks of product files, reporting every problem of every file in one pass.

mod checks;
mod credentials;
mod data_checks;
mod fan_out;
mod incremental;
mod params;
pub mod schema;
mod warehouse;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Code, Diagnostic, Severity};
use crate::spec::{Product, SourceFile, Span, yaml};

/// One product file after all checks.
#[derive(Debug)]
pub struct Checked {
    pub source: SourceFile,
    /// The typed product, when the file has no errors.
    pub product: Option<Product>,
    pub diagnostics: Vec<Diagnostic>,
    /// The declared name and its span, when there is one.
    pub name: Option<(String, Span)>,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == severity).count()
    }
}

/// A path given on the command line that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("`{}` does not exist", .0.display())]
    Missing(PathBuf),
    #[error("cannot read `{}`", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The product files under `paths`: files as given, folders searched recursively for
/// `*.yaml` and `*.yml`, sorted so output is stable.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, DiscoveryError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_file() {
            files.push(path.clone());
        } else if path.is_dir() {
            walk(path, &mut files)?;
        } else {
            return Err(DiscoveryError::Missing(path.clone()));
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), DiscoveryError> {
    let io = |source| DiscoveryError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    Ok(())
}

/// Reads and checks every product file under `paths`, including checks across files. Files are checked
/// on every core, and reported in the order they were found.
pub fn check_paths(paths: &[PathBuf]) -> Result<Vec<Checked>, DiscoveryError> {
    let files = discover(paths)?;
    let mut checked = crate::parallel::map(&files, |path| check_file(path))
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    duplicate_names(&mut checked);
    Ok(checked)
}

fn check_file(path: &Path) -> Result<Checked, DiscoveryError> {
    let bytes = std::fs::read(path).map_err(|source| DiscoveryError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(match String::from_utf8(bytes) {
        Ok(text) => check_source(SourceFile::new(path.to_owned(), text)),
        Err(error) => not_utf8(path.to_owned(), &error),
    })
}

fn not_utf8(path: PathBuf, error: &std::string::FromUtf8Error) -> Checked {
    let at = error.utf8_error().valid_up_to();
    let text = String::from_utf8_lossy(error.as_bytes()).into_owned();
    let source = SourceFile::new(path, text);
    let diagnostic =
        Diagnostic::new(Code::YamlSyntax, at..at, "the file is not valid UTF-8").label("invalid byte here");
    Checked {
        source,
        product: None,
        diagnostics: vec![diagnostic],
        name: None,
    }
}

/// Checks one product file on its own.
pub fn check_source(source: SourceFile) -> Checked {
    let (document, mut diagnostics) = yaml::load(&source);
    let mut name = None;
    let mut product = None;
    if let Some(document) = document {
        diagnostics.extend(schema::check(&document));
        diagnostics.extend(checks::check(&document, &source));
        name = document
            .value
            .get("name")
            .and_then(|n| n.as_str())
            .map(|n| (n.to_owned(), document.spans.value("/name")));
        if !diagnostics.iter().any(Diagnostic::is_error) {
            let mut value = document.value;
            whole_numbers(&mut value);
            match serde_json::from_value::<Product>(value) {
                Ok(typed) => product = Some(typed),
                // The schema and the typed model disagree: a bug, but still a clear diagnostic.
                Err(error) => diagnostics.push(Diagnostic::new(
                    Code::InvalidValue,
                    0..0,
                    format!("the product passed the schema but cannot be read: {error}"),
                )),
            }
        }
    }
    diagnostics.sort_by_key(|d| (d.span.start, d.code.code()));
    Checked {
        source,
        product,
        diagnostics,
        name,
    }
}

fn duplicate_names(checked: &mut [Checked]) {
    let mut first: HashMap<String, usize> = HashMap::new();
    for i in 0..checked.len() {
        let Some((name, span)) = checked[i].name.clone() else {
            continue;
        };
        match first.get(&name) {
            None => {
                first.insert(name, i);
            }
            Some(&earlier) => {
                let other = &checked[earlier];
                let at = other
                    .source
                    .line_column(other.name.as_ref().map_or(0, |(_, s)| s.start));
                let diagnostic = Diagnostic::new(
                    Code::DuplicateProduct,
                    span,
                    format!("product name `{name}` is already used"),
                )
                .label("declared again here")
                .note(format!(
                    "first declared in {}:{}:{}",
                    other.source.path().display(),
                    at.line,
                    at.column
                ))
                .help("product names are unique: `dpf run NAME` must find exactly one file");
                let this = &mut checked[i];
                this.diagnostics.push(diagnostic);
                this.product = None;
            }
        }
    }
}
/// Whole-number floats (`retries: 2.0`) made integers, as JSON Schema counts them: the typed product
/// then reads them where it takes an integer, and a float field takes an integer as it is.
fn whole_numbers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(number) if !number.is_i64() && !number.is_u64() => {
            if let Some(float) = number.as_f64()
                && float.fract() == 0.0
                && float.abs() < 9.0e15
            {
                *number = serde_json::Number::from(float as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers),
        _ => {}
    }
}
