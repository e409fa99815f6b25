//! Rows into Arrow columns, typed as they arrive: one builder serves every page of an extract, so the
//! schema is inferred once and stays stable; a value of another type later is a [`TypeConflict`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, NullArray, RecordBatch,
    RecordBatchOptions, StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};

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

    fn kind(&self) -> &'static str {
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

enum Values {
    /// Only nulls so far.
    Null,
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Str(StringBuilder),
    Json(StringBuilder),
}

impl Values {
    fn kind(&self) -> &'static str {
        match self {
            Values::Null => "null",
            Values::Bool(_) => "boolean",
            Values::Int(_) | Values::Float(_) => "number",
            Values::Str(_) => "string",
            Values::Json(_) => "nested object or array",
        }
    }
}

struct Column {
    name: String,
    values: Values,
    /// Values appended so far (nulls included).
    len: usize,
    /// The page where the column got its type.
    typed_on: usize,
    /// Values and text bytes still to come, when known, to size the builder once.
    expected: (usize, usize),
}

impl Column {
    fn pad(&mut self, len: usize) {
        let missing = len.saturating_sub(self.len);
        if missing == 0 {
            return;
        }
        match &mut self.values {
            Values::Null => {}
            Values::Bool(b) => b.append_nulls(missing),
            Values::Int(b) => b.append_nulls(missing),
            Values::Float(b) => b.append_nulls(missing),
            Values::Str(b) | Values::Json(b) => b.append_nulls(missing),
        }
        self.len = len;
    }

    /// A builder of `kind` holding the nulls appended so far.
    fn typed(&mut self, cell: &Cell<'_>, page: usize) {
        let nulls = self.len;
        // Sized up front when the number of values is known: growing by doubling would hold the old
        // and the new buffer at once, up to three times the column.
        let (items, bytes) = (nulls + self.expected.0, self.expected.1);
        self.values = match cell {
            Cell::Bool(_) => Values::Bool(with_nulls(
                BooleanBuilder::with_capacity(items),
                nulls,
                BooleanBuilder::append_nulls,
            )),
            Cell::Int(_) => Values::Int(with_nulls(
                Int64Builder::with_capacity(items),
                nulls,
                Int64Builder::append_nulls,
            )),
            Cell::Float(_) => Values::Float(with_nulls(
                Float64Builder::with_capacity(items),
                nulls,
                Float64Builder::append_nulls,
            )),
            Cell::Str(_) => Values::Str(with_nulls(
                StringBuilder::with_capacity(items, bytes),
                nulls,
                StringBuilder::append_nulls,
            )),
            Cell::Json(_) => Values::Json(with_nulls(
                StringBuilder::with_capacity(items, bytes),
                nulls,
                StringBuilder::append_nulls,
            )),
            Cell::Null => return,
        };
        self.typed_on = page;
    }

    /// Appends `cell`; a number column widens from integers to decimals, any other change is refused.
    fn append(&mut self, cell: Cell<'_>, page: usize) -> Result<(), &'static str> {
        if matches!(self.values, Values::Null) {
            self.typed(&cell, page);
        }
        match (&mut self.values, cell) {
            (Values::Null, Cell::Null) => {}
            (Values::Bool(b), Cell::Null) => b.append_null(),
            (Values::Int(b), Cell::Null) => b.append_null(),
            (Values::Float(b), Cell::Null) => b.append_null(),
            (Values::Str(b) | Values::Json(b), Cell::Null) => b.append_null(),
            (Values::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (Values::Int(b), Cell::Int(v)) => b.append_value(v),
            (Values::Float(b), Cell::Float(v)) => b.append_value(v),
            (Values::Float(b), Cell::Int(v)) => b.append_value(v as f64),
            (Values::Int(b), Cell::Float(v)) => {
                let mut widened = Float64Builder::with_capacity(b.capacity());
                for value in b.finish().iter() {
                    widened.append_option(value.map(|v| v as f64));
                }
                widened.append_value(v);
                self.values = Values::Float(widened);
            }
            (Values::Str(b), Cell::Str(v)) => b.append_value(v),
            (Values::Json(b), Cell::Json(v)) => b.append_value(v),
            (values, _) => return Err(values.kind()),
        }
        self.len += 1;
        Ok(())
    }

    fn finish(&mut self, len: usize) -> (Field, ArrayRef) {
        self.pad(len);
        let array: ArrayRef = match &mut self.values {
            // A column that was null everywhere has no type to infer: text is the least surprising.
            Values::Null => cast(&NullArray::new(len), &DataType::Utf8).expect("null casts to text"),
            Values::Bool(b) => Arc::new(b.finish()),
            Values::Int(b) => Arc::new(b.finish()),
            Values::Float(b) => Arc::new(b.finish()),
            Values::Str(b) => {
                let text = b.finish();
                temporal(&text).unwrap_or_else(|| Arc::new(text))
            }
            Values::Json(b) => Arc::new(b.finish()),
        };
        (Field::new(&self.name, array.data_type().clone(), true), array)
    }
}

/// Text that is all ISO 8601 dates becomes a date column; all date-times, a timestamp column (UTC when
/// every value has an offset or `Z`, zone-less when none has). Anything else stays text.
fn temporal(text: &StringArray) -> Option<ArrayRef> {
    let first = text.iter().flatten().next()?;
    // Built in place (not through a Vec of options, twice the size): this runs with every column alive.
    if first.len() == 10 {
        let mut days = Date32Builder::with_capacity(text.len());
        for value in text.iter() {
            match value {
                None => days.append_null(),
                Some(v) if v.len() == 10 => {
                    let date = NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()?;
                    days.append_value((date - NaiveDate::default()).num_days() as i32);
                }
                Some(_) => return None,
            }
        }
        return Some(Arc::new(days.finish()));
    }
    let zoned = looks_like_datetime(first)?;
    let mut micros = TimestampMicrosecondBuilder::with_capacity(text.len());
    for value in text.iter() {
        match value {
            None => micros.append_null(),
            Some(v) => micros.append_value(parse_datetime(v, zoned)?),
        }
    }
    let micros = micros.finish();
    Some(Arc::new(if zoned { micros.with_timezone("UTC") } else { micros }))
}

/// Whether `text` has the shape of an ISO 8601 date-time, and if so whether it carries a zone.
fn looks_like_datetime(text: &str) -> Option<bool> {
    let bytes = text.as_bytes();
    let shaped = bytes.len() >= 16
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b' ')
        && bytes[13] == b':';
    shaped.then(|| text.ends_with('Z') || text.get(16..).is_some_and(|t| t.contains(['+', '-'])))
}

fn parse_datetime(text: &str, zoned: bool) -> Option<i64> {
    if looks_like_datetime(text)? != zoned {
        return None;
    }
    if zoned {
        let normalized = text.replacen(' ', "T", 1);
        let parsed = DateTime::parse_from_rfc3339(&normalized)
            .or_else(|_| DateTime::parse_from_str(&normalized, "%Y-%m-%dT%H:%M%#z"))
            .ok()?;
        return Some(parsed.timestamp_micros());
    }
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
    .map(|t| t.and_utc().timestamp_micros())
}

fn with_nulls<B>(mut builder: B, nulls: usize, append: fn(&mut B, usize)) -> B {
    append(&mut builder, nulls);
    builder
}

/// Builds one table out of records that arrive page by page, row-wise or column-wise.
#[derive(Default)]
pub(crate) struct RowsBuilder {
    columns: Vec<Column>,
    index: HashMap<String, usize>,
    rows: usize,
    page: usize,
    /// Record number within the page, for messages.
    record: usize,
    conflict: Option<TypeConflict>,
    /// Cancelled when decoding should give up (SIGTERM, `--timeout`).
    stop: Option<tokio_util::sync::CancellationToken>,
}

/// Values decoded between two looks at the stop token: a few milliseconds of work.
pub(crate) const STOP_EVERY: usize = 16 * 1024;

impl RowsBuilder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A builder whose decoders give up once `stop` is cancelled.
    pub(crate) fn stopping_on(stop: tokio_util::sync::CancellationToken) -> Self {
        RowsBuilder {
            stop: Some(stop),
            ..Self::default()
        }
    }

    /// The token decoding watches, for loops that hold the builder borrowed.
    pub(crate) fn stop_token(&self) -> Option<tokio_util::sync::CancellationToken> {
        self.stop.clone()
    }

    /// Whether decoding should give up now.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|stop| stop.is_cancelled())
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Starts a page: later messages name it.
    pub(crate) fn start_page(&mut self, page: usize) {
        self.page = page;
        self.record = 0;
    }

    /// Keeps `conflict` for [`RowsBuilder::take_conflict`]: a parser that can only report text
    /// errors leaves the typed one here.
    pub(crate) fn stash(&mut self, conflict: TypeConflict) {
        self.conflict = Some(conflict);
    }

    /// The conflict stashed by the last failed push, if any.
    pub(crate) fn take_conflict(&mut self) -> Option<TypeConflict> {
        self.conflict.take()
    }

    fn column(&mut self, name: &str, hint: usize) -> usize {
        if let Some(column) = self.columns.get(hint)
            && column.name == name
        {
            return hint;
        }
        if let Some(&found) = self.index.get(name) {
            return found;
        }
        let position = self.columns.len();
        self.columns.push(Column {
            name: name.to_owned(),
            values: Values::Null,
            len: 0,
            typed_on: self.page,
            expected: (0, 0),
        });
        self.index.insert(name.to_owned(), position);
        position
    }

    /// Puts `cell` in column `name` of row `row`. `hint` is where the column is expected (its position
    /// in the record), which saves a lookup when records share their field order.
    fn put(&mut self, name: &str, hint: usize, row: usize, cell: Cell<'_>) -> Result<(), TypeConflict> {
        let position = self.column(name, hint);
        self.put_at(position, row, cell)
    }

    fn put_at(&mut self, position: usize, row: usize, cell: Cell<'_>) -> Result<(), TypeConflict> {
        let page = self.page;
        let column = &mut self.columns[position];
        if column.len > row {
            return Ok(()); // a repeated key in one record: the first value stands
        }
        column.pad(row);
        let found = cell.kind();
        column.append(cell, page).map_err(|was| TypeConflict {
            field: column.name.clone(),
            was,
            found,
            page,
            record: self.record + 1,
            first_page: column.typed_on,
        })
    }

    /// Appends one record, field by field.
    pub(crate) fn push_record<'c>(
        &mut self,
        fields: impl IntoIterator<Item = (&'c str, Cell<'c>)>,
    ) -> Result<(), TypeConflict> {
        let row = self.rows;
        for (position, (name, cell)) in fields.into_iter().enumerate() {
            self.put(name, position, row, cell)?;
        }
        self.end_record();
        Ok(())
    }

    fn end_record(&mut self) {
        self.rows += 1;
        self.record += 1;
    }

    /// A record written field by field through [`RecordWriter`].
    pub(crate) fn record(&mut self) -> RecordWriter<'_> {
        RecordWriter {
            row: self.rows,
            position: 0,
            builder: self,
        }
    }

    /// Appends values to column `name` in rows `first..`, for column-wise records (one array per field).
    /// `expected` is how many values (and text bytes at most) are coming, when known.
    pub(crate) fn column_writer(&mut self, name: &str, first: usize, expected: (usize, usize)) -> ColumnWriter<'_> {
        let position = self.column(name, usize::MAX);
        self.columns[position].expected = expected;
        ColumnWriter {
            position,
            row: first,
            builder: self,
        }
    }

    /// Ends a batch of column-wise records of `rows` rows that started at row `first`.
    pub(crate) fn end_columns(&mut self, first: usize, rows: usize) {
        self.rows = first + rows;
        self.record += rows;
    }

    /// Sets column `name` to `cell` in rows `first..self.rows()` (top-level fields copied into each row).
    pub(crate) fn fill(&mut self, name: &str, first: usize, cell: &Cell<'_>) -> Result<(), TypeConflict> {
        let end = self.rows;
        let saved = self.record;
        for row in first..end {
            self.record = row - first;
            self.put(name, usize::MAX, row, cell.clone())?;
        }
        self.record = saved;
        Ok(())
    }

    /// The rows so far as one record batch; the builder is left empty.
    pub(crate) fn finish(&mut self) -> RecordBatch {
        let rows = self.rows;
        let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) =
            self.columns.iter_mut().map(|column| column.finish(rows)).unzip();
        let schema = Arc::new(Schema::new(fields));
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        *self = RowsBuilder::default();
        RecordBatch::try_new_with_options(schema, arrays, &options).expect("columns have the same length")
    }
}

/// Writes the fields of one record.
pub(crate) struct RecordWriter<'b> {
    builder: &'b mut RowsBuilder,
    row: usize,
    position: usize,
}

impl RecordWriter<'_> {
    pub(crate) fn field(&mut self, name: &str, cell: Cell<'_>) -> Result<(), TypeConflict> {
        let position = self.position;
        self.position += 1;
        self.builder.put(name, position, self.row, cell)
    }

    pub(crate) fn end(self) {
        self.builder.end_record();
    }
}

/// Writes the values of one column, row after row.
pub(crate) struct ColumnWriter<'b> {
    builder: &'b mut RowsBuilder,
    position: usize,
    row: usize,
}

impl ColumnWriter<'_> {
    pub(crate) fn push(&mut self, cell: Cell<'_>) -> Result<(), TypeConflict> {
        self.builder.record = self.row - self.builder.rows;
        let result = self.builder.put_at(self.position, self.row, cell);
        self.row += 1;
        result
    }

    /// Values written so far.
    pub(crate) fn len(&self, first: usize) -> usize {
        self.row - first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Float64Type, Int64Type, TimeUnit};

    fn s(text: &str) -> Cell<'_> {
        Cell::Str(Cow::Borrowed(text))
    }

    #[test]
    fn fields_missing_or_new_become_nulls() {
        let mut builder = RowsBuilder::new();
        builder.start_page(1);
        builder.push_record([("id", Cell::Int(1)), ("name", s("a"))]).unwrap();
        builder.push_record([("id", Cell::Int(2))]).unwrap();
        builder
            .push_record([("name", s("c")), ("id", Cell::Int(3)), ("extra", Cell::Bool(true))])
            .unwrap();
        let batch = builder.finish();
        assert_eq!(batch.num_rows(), 3);
        let names: Vec<_> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["id", "name", "extra"]);
        assert_eq!(batch.column(1).null_count(), 1);
        assert_eq!(batch.column(2).null_count(), 2);
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().values(), &[1, 2, 3]);
    }

    #[test]
    fn integers_widen_to_decimals_but_text_is_a_conflict() {
        let mut builder = RowsBuilder::new();
        builder.start_page(1);
        builder.push_record([("amount", Cell::Int(10))]).unwrap();
        builder.start_page(2);
        builder.push_record([("amount", Cell::Float(10.5))]).unwrap();
        builder.push_record([("amount", Cell::Null)]).unwrap();
        let conflict = builder.push_record([("amount", s("n/a"))]).unwrap_err();
        assert_eq!(
            (conflict.field.as_str(), conflict.page, conflict.record),
            ("amount", 2, 3)
        );
        assert_eq!(
            (conflict.was, conflict.found, conflict.first_page),
            ("number", "string", 1)
        );
        let mut builder = RowsBuilder::new();
        builder.push_record([("amount", Cell::Int(10))]).unwrap();
        builder.push_record([("amount", Cell::Float(0.5))]).unwrap();
        let batch = builder.finish();
        assert_eq!(batch.column(0).as_primitive::<Float64Type>().values(), &[10.0, 0.5]);
    }

    #[test]
    fn columns_and_constants() {
        let mut builder = RowsBuilder::new();
        let mut time = builder.column_writer("time", 0, (2, 32));
        time.push(s("2025-01-01T00:00")).unwrap();
        time.push(s("2025-01-01T01:00")).unwrap();
        let mut temperature = builder.column_writer("temperature_2m", 0, (0, 0));
        temperature.push(Cell::Float(3.1)).unwrap();
        temperature.push(Cell::Null).unwrap();
        builder.end_columns(0, 2);
        builder.fill("latitude", 0, &Cell::Float(49.28)).unwrap();
        let batch = builder.finish();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(2).as_primitive::<Float64Type>().values(), &[49.28, 49.28]);
        assert!(batch.column(1).is_null(1));
    }

    #[test]
    fn dates_and_times_are_typed_when_every_value_is_one() {
        let column = |values: &[Option<&str>]| {
            let mut builder = RowsBuilder::new();
            for value in values {
                builder.push_record([("c", value.map_or(Cell::Null, s))]).unwrap();
            }
            builder.finish().schema().field(0).data_type().clone()
        };
        let micros = |zone: Option<&str>| DataType::Timestamp(TimeUnit::Microsecond, zone.map(Into::into));
        assert_eq!(
            column(&[Some("2025-01-01T00:00"), None, Some("2025-01-01T01:00")]),
            micros(None)
        );
        assert_eq!(
            column(&[Some("2025-01-01T08:15:00Z"), Some("2025-01-01T08:15:00.5+02:00")]),
            micros(Some("UTC"))
        );
        assert_eq!(column(&[Some("2025-01-01"), Some("2025-02-28")]), DataType::Date32);
        assert_eq!(column(&[Some("2025-01-01"), Some("2025-02-30")]), DataType::Utf8);
        assert_eq!(
            column(&[Some("2025-01-01T00:00"), Some("2025-01-01T00:00Z")]),
            DataType::Utf8
        );
        assert_eq!(column(&[Some("2025-01-01T00:00"), Some("soon")]), DataType::Utf8);
    }

    #[test]
    fn text_cells() {
        assert_eq!(Cell::from_text("42"), Cell::Int(42));
        assert_eq!(Cell::from_text("-0.5"), Cell::Float(-0.5));
        assert_eq!(Cell::from_text("02134"), s("02134"));
        assert_eq!(Cell::from_text(""), Cell::Null);
        assert_eq!(Cell::from_text("true"), Cell::Bool(true));
        assert_eq!(Cell::from_text("1e3"), Cell::Float(1000.0));
        assert_eq!(Cell::from_text("NaN"), s("NaN"));
        assert_eq!(Cell::from_text("2025-01-01"), s("2025-01-01"));
    }
}
