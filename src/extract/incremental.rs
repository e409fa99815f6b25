//! `incremental:` on an extract: where a run starts, which rows it keeps, and the cursor it leaves
//! for the next run. The cursor itself lives in the target's state store (see [`crate::state`]).

use std::cmp::Ordering;

use chrono::{DateTime, SecondsFormat, Utc};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Scalar, StringArray};
use datafusion::arrow::compute::kernels::cmp::gt;
use datafusion::arrow::compute::{cast, filter_record_batch, is_null, max, max_string, or_kleene};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::table::Table;

/// `incremental:` of an extract task: fetch only what is new since the last run.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Incremental {
    /// Field of the records whose maximum over the stored rows is the cursor.
    pub cursor: String,
    /// The cursor of the first run, and of `--full-refresh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<Value>,
    /// A window re-read behind a time cursor, for records updated late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback: Option<String>,
}

/// Why a cursor cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CursorError {
    #[error("incremental: `lookback` needs a time cursor (RFC 3339); the cursor is {0}")]
    LookbackOnValue(Value),
    #[error("incremental: {0}")]
    Lookback(#[from] crate::spec::duration::DurationError),
    #[error("incremental: cursor `{column}` is not a field of the records; they have: {columns}")]
    NoColumn { column: String, columns: String },
    #[error("incremental: cursor `{column}` is {kind}; a cursor is a timestamp, a date, a number or text")]
    Type { column: String, kind: String },
    #[error("incremental: cursor {value} cannot be compared with `{column}` ({kind})")]
    Compare {
        column: String,
        kind: String,
        value: Box<Value>,
        #[source]
        source: Box<datafusion::arrow::error::ArrowError>,
    },
    #[error("incremental: {0}")]
    Spill(#[from] crate::table::spill::SpillError),
}

impl Incremental {
    /// Where a run starts: the `saved` cursor less `lookback` (for a time), else `initial`; none
    /// when there is neither.
    pub(crate) fn start(&self, saved: Option<&Value>) -> Result<Option<Value>, CursorError> {
        let Some(value) = saved else {
            return Ok(self.initial.clone());
        };
        let Some(lookback) = &self.lookback else {
            return Ok(Some(value.clone()));
        };
        let window = crate::spec::duration::parse(lookback)?;
        let time = instant(value).ok_or_else(|| CursorError::LookbackOnValue(value.clone()))?;
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let start = time.checked_sub_signed(window).unwrap_or(DateTime::<Utc>::MIN_UTC);
        Ok(Some(Value::String(rfc3339(start))))
    }
}

/// A cursor as a template renders it: text as it is, a number in JSON form, nothing as "".
pub(crate) fn rendered(cursor: Option<&Value>) -> String {
    match cursor {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// The rows of `table` whose `column` is after `start`, and those without a value there.
pub(crate) fn after(table: Table, column: &str, start: &Value) -> Result<Table, CursorError> {
    if table.schema.fields().is_empty() {
        return Ok(table);
    }
    let table = table.in_memory()?.into_owned();
    let kind = column_type(&table, column)?;
    let compare = |source| CursorError::Compare {
        column: column.to_owned(),
        kind: kind.to_string(),
        value: Box::new(start.clone()),
        source: Box::new(source),
    };
    let literal: ArrayRef = std::sync::Arc::new(StringArray::from(vec![rendered(Some(start))]));
    let literal = cast(&literal, &kind).map_err(compare)?;
    if literal.is_null(0) {
        return Err(compare(datafusion::arrow::error::ArrowError::CastError(
            "not a value of the column's type".to_owned(),
        )));
    }
    let batches = table
        .batches
        .iter()
        .map(|batch| {
            let values = batch.column_by_name(column).ok_or_else(|| {
                datafusion::arrow::error::ArrowError::SchemaError(format!("a batch has no column `{column}`"))
            })?;
            let later: BooleanArray = gt(values, &Scalar::new(&literal))?;
            let keep = or_kleene(&later, &is_null(values)?)?;
            filter_record_batch(batch, &keep)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(compare)?;
    Ok(Table::new(table.schema.clone(), batches))
}

/// The largest value of `column` over `table`'s rows, as the state store keeps it: an RFC 3339
/// instant in UTC for a timestamp (naive ones taken as UTC), `YYYY-MM-DD` for a date, a number,
/// or text. None when no row has a value.
pub(crate) fn latest(table: &Table, column: &str) -> Result<Option<Value>, CursorError> {
    if table.schema.fields().is_empty() {
        return Ok(None);
    }
    let table = &*table.in_memory()?;
    let kind = column_type(table, column)?;
    let mut found: Option<Value> = None;
    for batch in &table.batches {
        let values = batch.column_by_name(column).ok_or_else(|| {
            datafusion::arrow::error::ArrowError::SchemaError(format!("a batch has no column `{column}`"))
        });
        let value = values
            .and_then(|values| batch_max(values, &kind))
            .map_err(|source| CursorError::Compare {
                column: column.to_owned(),
                kind: kind.to_string(),
                value: Box::new(Value::Null),
                source: Box::new(source),
            })?;
        found = later(found, value);
    }
    Ok(found)
}

fn column_type(table: &Table, column: &str) -> Result<DataType, CursorError> {
    let field = table
        .schema
        .field_with_name(column)
        .map_err(|_| CursorError::NoColumn {
            column: column.to_owned(),
            columns: table.column_names().join(", "),
        })?;
    let kind = field.data_type().clone();
    let usable = kind.is_numeric()
        || matches!(
            kind,
            DataType::Timestamp(..)
                | DataType::Date32
                | DataType::Date64
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
        );
    if !usable {
        return Err(CursorError::Type {
            column: column.to_owned(),
            kind: kind.to_string(),
        });
    }
    Ok(kind)
}

fn batch_max(values: &ArrayRef, kind: &DataType) -> Result<Option<Value>, datafusion::arrow::error::ArrowError> {
    let per_second = |unit: &TimeUnit| match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    Ok(match kind {
        DataType::Timestamp(unit, _) => {
            let ticks = cast(values, &DataType::Int64)?;
            max(ticks.as_primitive::<Int64Type>()).and_then(|t| {
                let scale = per_second(unit);
                let nanos = (t.rem_euclid(scale) * (1_000_000_000 / scale)) as u32;
                DateTime::from_timestamp(t.div_euclid(scale), nanos).map(|time| Value::String(rfc3339(time)))
            })
        }
        DataType::Date32 | DataType::Date64 => {
            let text = cast(values, &DataType::Utf8)?;
            max_string(text.as_string::<i32>()).map(|d| Value::String(d.to_owned()))
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = cast(values, &DataType::Utf8)?;
            max_string(text.as_string::<i32>()).map(|t| Value::String(t.to_owned()))
        }
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => {
            let numbers = cast(values, &DataType::Float64)?;
            max(numbers.as_primitive::<Float64Type>()).and_then(|n| serde_json::Number::from_f64(n).map(Value::Number))
        }
        _ => {
            let numbers = cast(values, &DataType::Int64)?;
            max(numbers.as_primitive::<Int64Type>()).map(Value::from)
        }
    })
}

/// The later of two cursors: times by instant, numbers by value, text by its characters.
pub(crate) fn later(a: Option<Value>, b: Option<Value>) -> Option<Value> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if compare(&b, &a) == Ordering::Greater { b } else { a }),
        (a, b) => a.or(b),
    }
}

fn compare(a: &Value, b: &Value) -> Ordering {
    if let (Some(a), Some(b)) = (instant(a), instant(b)) {
        return a.cmp(&b);
    }
    if let (Some(a), Some(b)) = (a.as_f64(), b.as_f64()) {
        return a.total_cmp(&b);
    }
    rendered(Some(a)).cmp(&rendered(Some(b)))
}

/// A cursor that is an RFC 3339 time.
fn instant(value: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.as_str()?).ok().map(|t| t.to_utc())
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn later_compares_times_numbers_and_text() {
        let at = |t: &str| Some(json!(t));
        assert_eq!(
            later(at("2025-01-01T10:00:00+02:00"), at("2025-01-01T09:00:00Z")),
            at("2025-01-01T09:00:00Z")
        );
        assert_eq!(later(Some(json!(9)), Some(json!(10))), Some(json!(10)));
        assert_eq!(later(None, at("b")), at("b"));
        assert_eq!(later(at("b"), at("a")), at("b"));
    }

    #[test]
    fn start_takes_the_lookback_off_a_time() {
        let incremental = Incremental {
            cursor: "updated_at".into(),
            initial: Some(json!("2025-01-01T00:00:00Z")),
            lookback: Some("1h30m".into()),
        };
        assert_eq!(incremental.start(None).unwrap(), Some(json!("2025-01-01T00:00:00Z")));
        let saved = json!("2025-02-01T12:00:00.5+01:00");
        assert_eq!(
            incremental.start(Some(&saved)).unwrap(),
            Some(json!("2025-02-01T09:30:00.500Z"))
        );
        assert!(incremental.start(Some(&json!(7))).is_err());
    }
}
