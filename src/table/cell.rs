//! One value of a record before it lands in a column, and the type conflicts between values.

use std::borrow::Cow;
use std::fmt;

/// One value of a record, before it lands in a column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// A nested object or array, kept as its JSON text.
    Json(String),
}

impl Cell<'_> {
    /// A CSV field: empty is null; integers, decimals and booleans are typed when the text is their
    /// canonical form (so `02134` stays text); anything else is text.
    pub(crate) fn from_text(text: &str) -> Cell<'_> {
        if text.is_empty() {
            return Cell::Null;
        }
        let digits = text.strip_prefix('-').unwrap_or(text);
        let canonical_number = !digits.starts_with('0') || digits == "0" || digits.starts_with("0.");
        if canonical_number && digits.starts_with(|c: char| c.is_ascii_digit()) {
            if let Ok(int) = text.parse::<i64>() {
                return Cell::Int(int);
            }
            if let Ok(float) = text.parse::<f64>()
                && float.is_finite()
            {
                return Cell::Float(float);
            }
        }
        match text {
            "true" | "TRUE" | "True" => Cell::Bool(true),
            "false" | "FALSE" | "False" => Cell::Bool(false),
            _ => Cell::Str(Cow::Borrowed(text)),
        }
    }

    /// The same value, owning its text.
    pub(crate) fn into_owned(self) -> Cell<'static> {
        match self {
            Cell::Null => Cell::Null,
            Cell::Bool(v) => Cell::Bool(v),
            Cell::Int(v) => Cell::Int(v),
            Cell::Float(v) => Cell::Float(v),
            Cell::Str(v) => Cell::Str(Cow::Owned(v.into_owned())),
            Cell::Json(v) => Cell::Json(v),
        }
    }

    pub(super) fn kind(&self) -> &'static str {
        match self {
            Cell::Null => "null",
            Cell::Bool(_) => "boolean",
            Cell::Int(_) | Cell::Float(_) => "number",
            Cell::Str(_) => "string",
            Cell::Json(_) => "nested object or array",
        }
    }
}

/// A field that changed type between records or pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypeConflict {
    pub field: String,
    pub was: &'static str,
    pub found: &'static str,
    pub page: usize,
    pub record: usize,
    pub first_page: usize,
}

impl fmt::Display for TypeConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let TypeConflict {
            field,
            was,
            found,
            page,
            record,
            first_page,
        } = self;
        let since = if first_page == page {
            "earlier on this page".to_owned()
        } else {
            format!("since page {first_page}")
        };
        write!(
            f,
            "field `{field}` is a {found} in record {record} of page {page}, but a {was} {since}; \
             dpf does not convert between types silently: cast it in a transform_sql task, or fix the source"
        )
    }
}
