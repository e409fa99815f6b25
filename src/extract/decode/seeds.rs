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

/// A JSON array of records.
pub(super) struct RecordsSeed<'b> {
    pub(super) builder: &'b mut RowsBuilder,
}

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records")
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

/// The number of elements of the JSON array `text` (valid JSON), counted without parsing them.
pub(super) fn array_len(text: &str) -> usize {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let (mut commas, mut empty) = (0, true);
    for &byte in text.as_bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                empty = false;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > 1 {
                    empty = false;
                }
            }
            b']' | b'}' => depth -= 1,
            b',' if depth == 1 => commas += 1,
            b' ' | b'\n' | b'\r' | b'\t' => {}
            _ => empty = false,
        }
    }
    if empty { 0 } else { commas + 1 }
}

/// One JSON array as the values of one column; yields how many values it held.
pub(super) struct ColumnSeed<'b> {
    pub(super) builder: &'b mut RowsBuilder,
    pub(super) name: &'b str,
    pub(super) first: usize,
    pub(super) expected: (usize, usize),
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
        let mut column = self.builder.column_writer(self.name, self.first, self.expected);
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
