//! The serde seeds that walk a JSON body without building a tree of values: each record's values go
//! straight into the rows builder, each column's values into its column.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::table::builder::STOP_EVERY;
use crate::table::{Cell, RowsBuilder};

pub(super) struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        struct Key;
        impl<'de> Visitor<'de> for Key {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        de.deserialize_str(Key)
    }
}

/// One JSON value as a [`Cell`]; nested values keep their JSON text.
pub(super) struct CellSeed;

impl<'de> DeserializeSeed<'de> for CellSeed {
    type Value = Cell<'de>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(CellVisitor)
    }
}

struct CellVisitor;

impl<'de> Visitor<'de> for CellVisitor {
    type Value = Cell<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Cell::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Cell::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Cell::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Cell::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Cell::Float(v as f64), Cell::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Cell::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cell::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cell::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cell::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let value = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Cell::Json(value.to_string()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let value = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Cell::Json(value.to_string()))
    }
}

use serde::Deserialize as _;

/// Where records are found, for what a walk could not take.
pub(super) struct Slot<'b> {
    /// The dot path of the records, or "the body", for messages.
    pub(super) path: &'b str,
    /// A problem with the records' shape, which serde's errors cannot carry.
    pub(super) problem: Option<super::DecodeError>,
}

impl Slot<'_> {
    pub(super) fn fail<E: de::Error>(&mut self, problem: super::DecodeError) -> E {
        let message = problem.to_string();
        self.problem = Some(problem);
        E::custom(message)
    }
}

/// The records: an array of objects (one record each), or an object whose arrays are columns and whose
/// other fields are copied onto every row (one record when it has no arrays).
pub(super) struct RecordsSeed<'b, 'p> {
    pub(super) builder: &'b mut RowsBuilder,
    pub(super) slot: &'b mut Slot<'p>,
}

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl RecordsSeed<'_, '_> {
    fn not_records<E: de::Error>(self, found: &'static str) -> Result<(), E> {
        let path = self.slot.path.to_owned();
        Err(self.slot.fail(super::DecodeError::NotRecords { path, found }))
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records or an object of columns")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for n in 1.. {
            let seed = RecordSeed {
                builder: &mut *self.builder,
            };
            if seq.next_element_seed(seed)?.is_none() {
                break;
            }
            if n % STOP_EVERY == 0 && self.builder.stopped() {
                return Err(de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let first = self.builder.rows();
        let mut others: Vec<(Cow<'de, str>, Cell<'de>)> = Vec::new();
        let mut length: Option<(Cow<'de, str>, usize)> = None;
        while let Some(name) = map.next_key_seed(KeySeed)? {
            let seed = ColumnOrCell {
                builder: &mut *self.builder,
                name: &name,
                first,
                // Later columns are as long as the first.
                expected: length.as_ref().map_or(0, |(_, len)| *len),
            };
            match map.next_value_seed(seed)? {
                Field::Cell(cell) => others.push((name, cell)),
                Field::Column(written) => match &length {
                    None => length = Some((name, written)),
                    Some((first_name, first_len)) if *first_len != written => {
                        let problem = super::DecodeError::Ragged {
                            path: self.slot.path.to_owned(),
                            first: first_name.to_string(),
                            first_len: *first_len,
                            other: name.to_string(),
                            other_len: written,
                        };
                        return Err(self.slot.fail(problem));
                    }
                    Some(_) => {}
                },
            }
        }
        let Some((_, rows)) = length else {
            let mut record = self.builder.record();
            for (name, cell) in others {
                if let Err(conflict) = record.field(&name, cell) {
                    self.builder.stash(conflict);
                    return Err(de::Error::custom("type conflict"));
                }
            }
            record.end();
            return Ok(());
        };
        self.builder.end_columns(first, rows);
        for (name, cell) in others {
            if let Err(conflict) = self.builder.fill(&name, first, &cell) {
                self.builder.stash(conflict);
                return Err(de::Error::custom("type conflict"));
            }
        }
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.not_records("null")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.not_records("a boolean")
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.not_records("a number")
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.not_records("a number")
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.not_records("a number")
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.not_records("a string")
    }
}

/// A field of an object of columns: an array is a column, written as it is read; anything else is a
/// value for every row.
enum Field<'de> {
    Column(usize),
    Cell(Cell<'de>),
}

struct ColumnOrCell<'b> {
    builder: &'b mut RowsBuilder,
    name: &'b str,
    first: usize,
    expected: usize,
}

impl<'de> DeserializeSeed<'de> for ColumnOrCell<'_> {
    type Value = Field<'de>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ColumnOrCell<'_> {
    type Value = Field<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a column or a value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let column = ColumnSeed {
            builder: self.builder,
            name: self.name,
            first: self.first,
            expected: self.expected,
        };
        column.visit_seq(seq).map(Field::Column)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        CellVisitor.visit_map(map).map(Field::Cell)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Cell(Cell::Null))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Field::Cell(Cell::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        CellVisitor.visit_i64(v).map(Field::Cell)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        CellVisitor.visit_u64(v).map(Field::Cell)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        CellVisitor.visit_f64(v).map(Field::Cell)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        CellVisitor.visit_borrowed_str(v).map(Field::Cell)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        CellVisitor.visit_str(v).map(Field::Cell)
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        CellVisitor.visit_string(v).map(Field::Cell)
    }
}

/// One JSON object as one record.
pub(super) struct RecordSeed<'b> {
    pub(super) builder: &'b mut RowsBuilder,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object (one record)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut record = self.builder.record();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let cell = map.next_value_seed(CellSeed)?;
            if let Err(conflict) = record.field(&key, cell) {
                self.builder.stash(conflict);
                return Err(de::Error::custom("type conflict"));
            }
        }
        record.end();
        Ok(())
    }
}

/// One JSON array as the values of column `name` from row `first`; yields how many values it held.
pub(super) struct ColumnSeed<'b> {
    pub(super) builder: &'b mut RowsBuilder,
    pub(super) name: &'b str,
    pub(super) first: usize,
    /// How many values are expected, when known (0 when not).
    pub(super) expected: usize,
}

impl<'de> DeserializeSeed<'de> for ColumnSeed<'_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<usize, D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ColumnSeed<'_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of values")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let stop = self.builder.stop_token();
        let mut column = self.builder.column_writer(self.name, self.first, (self.expected, 0));
        let mut n = 0usize;
        while let Some(cell) = seq.next_element_seed(CellSeed)? {
            if let Err(conflict) = column.push(cell) {
                self.builder.stash(conflict);
                return Err(de::Error::custom("type conflict"));
            }
            n += 1;
            if n.is_multiple_of(STOP_EVERY) && stop.as_ref().is_some_and(|s| s.is_cancelled()) {
                return Err(de::Error::custom("stopped"));
            }
        }
        Ok(column.len(self.first))
    }
}
