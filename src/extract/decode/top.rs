//! The top-level object of a JSON body whose records sit at a dot path: the records are decoded as the
//! walk reaches them, the fields `include` looks in are kept raw, and the rest is skipped.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::DecodeError;
use super::find;
use super::seeds::{KeySeed, RecordsSeed, Slot};
use crate::table::RowsBuilder;

/// Where a body's records were.
pub(super) enum Records<'de> {
    Missing,
    /// Decoded while the body was read.
    Decoded,
    /// Kept as raw JSON, to decode after the walk: the records path has several steps, or `include`
    /// looks inside the same field.
    Kept(&'de RawValue),
}

/// The top-level object, as [`TopSeed`] leaves it.
pub(super) struct Top<'de> {
    pub(super) records: Records<'de>,
    /// The top-level fields that `include` looks in, unparsed.
    pub(super) kept: Vec<(Cow<'de, str>, &'de RawValue)>,
}

/// Walks the top-level object of a body whose records sit at the dot path `path`.
pub(super) struct TopSeed<'b, 'p> {
    pub(super) builder: &'b mut RowsBuilder,
    pub(super) slot: &'b mut Slot<'p>,
    pub(super) path: &'p str,
    /// The first steps of the paths that `include` looks up.
    pub(super) heads: &'b [&'p str],
    /// The records were taken out of the body and decoded already.
    pub(super) records_elsewhere: bool,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_, '_> {
    type Value = Top<'de>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl TopSeed<'_, '_> {
    /// The records are not in the body, whose top-level fields are `fields`.
    fn missing<E: de::Error>(self, fields: &[Cow<'_, str>]) -> E {
        let fields = fields.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
        self.slot.fail(DecodeError::RecordsMissing {
            path: self.path.to_owned(),
            fields: if fields.is_empty() { "none".to_owned() } else { fields },
        })
    }
}

impl<'de> Visitor<'de> for TopSeed<'_, '_> {
    type Value = Top<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (head, nested) = self.path.split_once('.').map_or((self.path, false), |(h, _)| (h, true));
        let mut top = Top {
            records: Records::Missing,
            kept: Vec::new(),
        };
        let mut fields = Vec::new();
        while let Some(name) = map.next_key_seed(KeySeed)? {
            let records_here = name == head && matches!(top.records, Records::Missing) && !self.records_elsewhere;
            let wanted = self.heads.contains(&name.as_ref());
            if records_here && !nested && !wanted {
                let seed = RecordsSeed {
                    builder: &mut *self.builder,
                    slot: &mut *self.slot,
                };
                map.next_value_seed(seed)?;
                top.records = Records::Decoded;
            } else if records_here || wanted {
                let raw: &'de RawValue = map.next_value()?;
                if records_here {
                    top.records = Records::Kept(raw);
                }
                top.kept.push((name.clone(), raw));
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
            fields.push(name);
        }
        if nested && matches!(top.records, Records::Kept(_)) {
            top.records = match find(&top.kept, self.path) {
                Ok(Some(records)) => Records::Kept(records),
                _ => Records::Missing,
            };
        }
        match top.records {
            Records::Missing if !self.records_elsewhere => Err(self.missing(&fields)),
            _ => Ok(top),
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.missing(&[]))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(self.missing(&[]))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.missing(&[]))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.missing(&[]))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.missing(&[]))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.missing(&[]))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(self.missing(&[]))
    }
}
