//! One column being built: typed by its first value, widened from integers to decimals, and ISO
//! 8601 text recognised as dates and timestamps: as it arrives when every value is a date-time of
//! one layout (see `stamps`), otherwise when the column is finished.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, NullArray, StringArray,
    StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};

use super::cell::Cell;
use super::iso8601;
use super::stamps::Stamps;

pub(super) enum Values {
    /// Only nulls so far.
    Null,
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Str(StringBuilder),
    /// Text so far, every value a date-time of one layout.
    Stamps(Stamps),
    Json(StringBuilder),
}

/// A whole column decoded by a fast path, for a builder to take over.
pub(crate) enum Decoded {
    Int(Int64Builder),
    Float(Float64Builder),
    Stamps(Stamps),
}

impl Decoded {
    pub(crate) fn len(&self) -> usize {
        match self {
            Decoded::Int(b) => b.len(),
            Decoded::Float(b) => b.len(),
            Decoded::Stamps(s) => s.len(),
        }
    }
}

impl Values {
    fn kind(&self) -> &'static str {
        match self {
            Values::Null => "null",
            Values::Bool(_) => "boolean",
            Values::Int(_) | Values::Float(_) => "number",
            Values::Str(_) | Values::Stamps(_) => "string",
            Values::Json(_) => "nested object or array",
        }
    }
}

pub(super) struct Column {
    pub(super) name: String,
    pub(super) values: Values,
    /// Values appended so far (nulls included).
    pub(super) len: usize,
    /// The page where the column got its type.
    pub(super) typed_on: usize,
    /// Values and text bytes still to come, when known, to size the builder once.
    pub(super) expected: (usize, usize),
}

impl Column {
    pub(super) fn pad(&mut self, len: usize) {
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
            Values::Stamps(s) => s.append_nulls(missing),
        }
        self.len = len;
    }

    /// Takes over `decoded` as the column's values (the column held none).
    pub(super) fn take(&mut self, decoded: Decoded, page: usize) {
        self.len = decoded.len();
        self.values = match decoded {
            Decoded::Int(b) => Values::Int(b),
            Decoded::Float(b) => Values::Float(b),
            Decoded::Stamps(s) => Values::Stamps(s),
        };
        self.typed_on = page;
    }

    /// A builder of `kind` holding the nulls appended so far.
    pub(super) fn typed(&mut self, cell: &Cell<'_>, page: usize) {
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
            Cell::Str(v) => match Stamps::of(v.as_bytes(), items) {
                Some(stamps) => Values::Stamps(with_nulls(stamps, nulls, Stamps::append_nulls)),
                None => Values::Str(with_nulls(
                    StringBuilder::with_capacity(items, bytes),
                    nulls,
                    StringBuilder::append_nulls,
                )),
            },
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
    pub(super) fn append(&mut self, cell: Cell<'_>, page: usize) -> Result<(), &'static str> {
        if matches!(self.values, Values::Null) {
            self.typed(&cell, page);
        }
        match (&mut self.values, cell) {
            (Values::Null, Cell::Null) => {}
            (Values::Bool(b), Cell::Null) => b.append_null(),
            (Values::Int(b), Cell::Null) => b.append_null(),
            (Values::Float(b), Cell::Null) => b.append_null(),
            (Values::Str(b) | Values::Json(b), Cell::Null) => b.append_null(),
            (Values::Stamps(s), Cell::Null) => s.append_nulls(1),
            (Values::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (Values::Int(b), Cell::Int(v)) => b.append_value(v),
            (Values::Float(b), Cell::Float(v)) => b.append_value(v),
            (Values::Float(b), Cell::Int(v)) => b.append_value(v as f64),
            (Values::Int(b), Cell::Float(v)) => {
                let mut widened = widened(b);
                widened.append_value(v);
                self.values = Values::Float(widened);
            }
            (Values::Str(b), Cell::Str(v)) => b.append_value(v),
            (Values::Stamps(s), Cell::Str(v)) => {
                if !s.push(v.as_bytes()) {
                    let mut text = std::mem::take(s).into_text();
                    text.append_value(v);
                    self.values = Values::Str(text);
                }
            }
            (Values::Json(b), Cell::Json(v)) => b.append_value(v),
            (values, _) => return Err(values.kind()),
        }
        self.len += 1;
        Ok(())
    }

    /// Appends `count` copies of `cell` as rows `first..`, when the column holds exactly the rows
    /// before `first` and `cell` is of its type; otherwise leaves it to value-by-value appends.
    pub(super) fn repeat(&mut self, cell: &Cell<'_>, count: usize, first: usize) -> bool {
        if self.len != first {
            return false;
        }
        if matches!(cell, Cell::Null) {
            self.pad(first + count);
            return true;
        }
        match (&mut self.values, cell) {
            (Values::Float(b), Cell::Float(v)) => b.append_value_n(*v, count),
            (Values::Int(b), Cell::Int(v)) => b.append_value_n(*v, count),
            (Values::Str(b), Cell::Str(v)) => (0..count).for_each(|_| b.append_value(v)),
            (Values::Bool(b), Cell::Bool(v)) => b.append_n(count, *v),
            _ => return false,
        }
        self.len += count;
        true
    }

    pub(super) fn finish(&mut self, len: usize) -> (Field, ArrayRef) {
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
            Values::Stamps(s) => s.finish(),
            Values::Json(b) => Arc::new(b.finish()),
        };
        (Field::new(&self.name, array.data_type().clone(), true), array)
    }
}

/// The integers of `ints` as decimals, for a column of integers that meets a decimal; `ints` is left
/// empty.
pub(crate) fn widened(ints: &mut Int64Builder) -> Float64Builder {
    let mut decimals = Float64Builder::with_capacity(ints.capacity());
    for value in ints.finish().iter() {
        decimals.append_option(value.map(|v| v as f64));
    }
    decimals
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
                Some(v) => days.append_value(iso8601::date(v.as_bytes())?),
            }
        }
        return Some(Arc::new(days.finish()));
    }
    let (_, zoned) = iso8601::datetime(first.as_bytes())?;
    let mut micros = TimestampMicrosecondBuilder::with_capacity(text.len());
    for value in text.iter() {
        match value {
            None => micros.append_null(),
            Some(v) => match iso8601::datetime(v.as_bytes())? {
                (at, same) if same == zoned => micros.append_value(at),
                _ => return None,
            },
        }
    }
    let micros = micros.finish();
    Some(Arc::new(if zoned { micros.with_timezone("UTC") } else { micros }))
}

fn with_nulls<B>(mut builder: B, nulls: usize, append: fn(&mut B, usize)) -> B {
    append(&mut builder, nulls);
    builder
}
