//! Problems found in a user's product files: data with a code, a span and a message, rendered by
//! one of the renderers in [`render`].

pub(crate) mod render;

use crate::spec::{SourceFile, Span};

/// How serious a diagnostic is: errors make a product invalid, warnings do not (unless denied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

macro_rules! codes {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $code:literal, $name:literal; )*) => {
        /// The stable identity of a kind of problem. Codes never change meaning once released.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $( $(#[doc = $doc])+ $variant, )*
        }

        impl Code {
            /// Every code, in documentation order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The short code, e.g. `E104`.
            pub fn code(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// The readable name, e.g. `unknown-key`.
            pub fn name(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }

            /// One line saying what the code means.
            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => concat!($($doc),+).trim_ascii(),)* }
            }
        }
    };
}

codes! {
    /// The file is not valid YAML.
    YamlSyntax = "E001", "yaml-syntax";
    /// A mapping repeats a key.
    DuplicateKey = "E002", "duplicate-key";
    /// The YAML uses something a product cannot hold (several documents, a non-scalar key, deep nesting).
    UnsupportedYaml = "E003", "unsupported-yaml";
    /// A value has the wrong type.
    InvalidType = "E100", "invalid-type";
    /// A required key is missing.
    MissingKey = "E101", "missing-key";
    /// A number is outside its allowed range.
    OutOfRange = "E102", "out-of-range";
    /// A value is not one of the allowed values or does not have the required form.
    InvalidValue = "E103", "invalid-value";
    /// A key is not part of the product format.
    UnknownKey = "E104", "unknown-key";
    /// A task names a function dpf does not have.
    UnknownFunction = "E105", "unknown-function";
    /// Two product files declare the same product name.
    DuplicateProduct = "E200", "duplicate-product";
    /// Two tasks of a product have the same id.
    DuplicateTask = "E201", "duplicate-task";
    /// `input` or `depends_on` names a task the product does not have.
    UnknownTask = "E202", "unknown-task";
    /// Tasks depend on each other in a cycle.
    DependencyCycle = "E203", "dependency-cycle";
    /// A store, alert or input reference has no upstream task that produces data.
    NoInputData = "E204", "no-input-data";
    /// The schedule is not a valid 5-field cron expression.
    InvalidSchedule = "E205", "invalid-schedule";
    /// SQL (a transform's query or an alert's condition) does not parse.
    InvalidSql = "E206", "invalid-sql";
    /// A transform's SQL reads a table that is not an upstream task, or a query in BigQuery reads a task's output.
    UnknownTable = "E207", "unknown-table";
    /// A BigQuery dataset or table name breaks BigQuery's naming rules.
    InvalidBigqueryName = "E208", "invalid-bigquery-name";
    /// A Firestore collection path breaks Firestore's naming rules.
    InvalidFirestoreName = "E209", "invalid-firestore-name";
    /// A `${...}` reference is malformed.
    InvalidReference = "E210", "invalid-reference";
    /// The timezone is not an IANA time zone name.
    InvalidTimezone = "E211", "invalid-timezone";
    /// `start_date` is not a real date.
    InvalidDate = "E212", "invalid-date";
    /// A `{{ ... }}` template names an unknown variable or filter, or is not closed.
    InvalidTemplate = "E213", "invalid-template";
    /// A data check is malformed: no kind or several, bounds the wrong way round, a quarantine with nowhere to go.
    InvalidCheck = "E214", "invalid-check";
    /// A data check names a column the task's output does not have.
    UnknownColumn = "E215", "unknown-column";
    /// `incremental:` or `{{ cursor }}` where they cannot work: off an extract, a cursor the rows do not have, a lookback on a value that is not a time.
    InvalidIncremental = "E216", "invalid-incremental";
    /// `for_each:` and its companions where they cannot work: off an extract, without items, items that cannot be read or lack a field the task uses; `shards:` without a `for_each` extract.
    InvalidFanOut = "E217", "invalid-fan-out";
    /// A literal value looks like a credential; use `${secret:NAME}` instead.
    PossibleCredential = "W300", "possible-credential";
    /// An incremental extract feeds a store that would keep a re-read row twice (append without key).
    IncrementalAppend = "W301", "incremental-append";
}

impl Code {
    /// Codes starting with `W` are warnings, all others errors.
    pub fn severity(self) -> Severity {
        if self.code().starts_with('W') {
            Severity::Warning
        } else {
            Severity::Error
        }
    }
}

/// A secondary location with a label, in the same file as the diagnostic.
#[derive(Debug, Clone)]
pub struct Related {
    pub span: Span,
    pub label: String,
}

/// One problem in one product file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    /// The offending YAML node (an empty span at offset 0 means the whole file).
    pub span: Span,
    pub label: Option<String>,
    pub related: Vec<Related>,
    pub notes: Vec<String>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(code: Code, span: Span, message: impl Into<String>) -> Self {
        Self {
            code,
            severity: code.severity(),
            message: message.into(),
            span,
            label: None,
            related: Vec::new(),
            notes: Vec::new(),
            help: None,
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn related(mut self, span: Span, label: impl Into<String>) -> Self {
        self.related.push(Related {
            span,
            label: label.into(),
        });
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds "did you mean" help when a close candidate exists.
    pub fn did_you_mean<'a>(self, given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        match closest(given, candidates) {
            Some(best) => self.help(format!("did you mean `{best}`?")),
            None => self,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// The candidate closest to `given`, if it is close enough to be a likely typo.
pub(crate) fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let given_lower = given.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|candidate| {
            let score = strsim::jaro_winkler(&given_lower, &candidate.to_ascii_lowercase());
            (candidate, score)
        })
        .filter(|(_, score)| *score >= 0.8)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(candidate, _)| candidate)
}

/// The diagnostics of one file, with the source they point into.
#[derive(Debug)]
pub(crate) struct FileDiagnostics<'a> {
    pub source: &'a SourceFile,
    pub diagnostics: &'a [Diagnostic],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.code()), "{} repeated", code.code());
            assert!(seen.insert(code.name()), "{} repeated", code.name());
            assert!(!code.summary().is_empty());
        }
        assert_eq!(Code::PossibleCredential.severity(), Severity::Warning);
        assert_eq!(Code::UnknownKey.severity(), Severity::Error);
    }

    #[test]
    fn did_you_mean_finds_typos_only() {
        let keys = ["retries", "retry_delay_minutes", "schedule"];
        assert_eq!(closest("retires", keys), Some("retries"));
        assert_eq!(closest("shedule", keys), Some("schedule"));
        assert_eq!(closest("colour", keys), None);
    }
}
