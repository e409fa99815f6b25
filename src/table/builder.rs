//! Rows into Arrow columns, typed as they arrive: one builder serves every page of an extract, so the
//! schema is inferred once and stays stable; a value of another type later is a [`TypeConflict`].

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{Field, Schema};

use super::cell::{Cell, TypeConflict};
use super::column::{Column, Decoded, Values};

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

    /// The page being decoded.
    pub(crate) fn page(&self) -> usize {
        self.page
    }

    /// Whether nothing has been decoded yet, not even a column's name.
    pub(crate) fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Takes over the columns of `other`, a builder of the same rows, after its own; a column whose
    /// name is taken keeps its values (as a repeated key does).
    pub(crate) fn adopt(&mut self, other: RowsBuilder) {
        for column in other.columns {
            if !self.index.contains_key(&column.name) {
                self.index.insert(column.name.clone(), self.columns.len());
                self.columns.push(column);
            }
        }
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

    /// Takes `values`, a whole column decoded by a fast path, as column `name` of a builder that holds
    /// no values of it yet; [`RowsBuilder::end_columns`] then sets the number of rows.
    pub(crate) fn decoded_column(&mut self, name: &str, values: Decoded) {
        let position = self.column(name, usize::MAX);
        self.columns[position].take(values, self.page);
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
        let position = self.column(name, usize::MAX);
        // The first value types the column (or is refused); the others copy it in one go.
        let mut rows = first..end;
        if let Some(row) = rows.next() {
            self.record = 0;
            self.put_at(position, row, cell.clone())?;
        }
        if self.columns[position].repeat(cell, rows.len(), rows.start) {
            rows = end..end;
        }
        for row in rows {
            self.record = row - first;
            self.put_at(position, row, cell.clone())?;
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
    use std::borrow::Cow;

    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};

    use super::*;

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
