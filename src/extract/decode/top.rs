//! The top-level object of a JSON body whose records sit at a dot path: the records are decoded as the
//! walk reaches them, the fields `include` looks in are kept raw, and the rest is skipped.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::seeds::{CellSeed, KeySeed, RecordsSeed, Slot};
use super::{DecodeError, Page, Shape, WithIncludes, entries, kind};
use crate::table::{Cell, RowsBuilder};

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

/// The body with the records (at `records`) left out, for [`outside`] to read.
pub(super) fn without(body: &[u8], records: std::ops::Range<usize>) -> Vec<u8> {
    [&body[..records.start], b"null", &body[records.end..]].concat()
}

/// The top-level fields of `rest`, a body whose records were taken out and decoded already, read as
/// the one-pass walk reads them; `None` when it is not a JSON object.
pub(super) fn outside<'a>(rest: &'a [u8], path: &str, heads: &[&str]) -> Option<Top<'a>> {
    let mut slot = Slot { path, problem: None };
    let mut de = serde_json::Deserializer::from_slice(rest);
    TopSeed {
        builder: &mut RowsBuilder::new(),
        slot: &mut slot,
        path,
        heads,
        records_elsewhere: true,
    }
    .deserialize(&mut de)
    .and_then(|top| de.end().map(|()| top))
    .ok()
}

/// The walk over a whole JSON body: its records into `builder`, and (when the records are a field)
/// the top-level fields that `heads` names.
pub(super) fn walk<'de, 'p, R: serde_json::de::Read<'de>>(
    read: R,
    records: Option<&'p str>,
    builder: &mut RowsBuilder,
    slot: &mut Slot<'p>,
    heads: &[&'p str],
) -> Result<Option<Top<'de>>, serde_json::Error> {
    let mut de = serde_json::Deserializer::new(read);
    let walked = match records {
        None => RecordsSeed { builder, slot }.deserialize(&mut de).map(|()| None),
        Some(path) => TopSeed {
            builder,
            slot,
            path,
            heads,
            records_elsewhere: false,
        }
        .deserialize(&mut de)
        .map(Some),
    };
    walked.and_then(|top| de.end().map(|()| top))
}

/// The page of `records` records whose body's top-level fields are `kept`: what `follow` finds
/// there, and the `include` fields with their values.
pub(super) fn page_of(
    records: usize,
    kept: &[(Cow<'_, str>, &RawValue)],
    shape: &Shape,
) -> Result<WithIncludes, DecodeError> {
    let page = Page {
        records,
        follow: followed(kept, shape),
    };
    Ok((page, includes(kept, shape)?))
}

/// The `include` fields found among the top-level fields `kept`, null where missing.
fn includes(kept: &[(Cow<'_, str>, &RawValue)], shape: &Shape) -> Result<Vec<(String, Cell<'static>)>, DecodeError> {
    let mut include = Vec::with_capacity(shape.include.len());
    for field in &shape.include {
        let cell = match find(kept, field)? {
            Some(raw) => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                CellSeed.deserialize(&mut de).map_err(DecodeError::Json)?.into_owned()
            }
            None => Cell::Null,
        };
        include.push((field.clone(), cell));
    }
    Ok(include)
}

/// The value at `shape.follow` below the top-level fields `kept`, when there is one.
fn followed(kept: &[(Cow<'_, str>, &RawValue)], shape: &Shape) -> Option<serde_json::Value> {
    let raw = find(kept, shape.follow.as_deref()?).ok()??;
    serde_json::from_str(raw.get()).ok()
}

/// The value at a dot path (`links.next`) below the top-level fields `top`, when every step is an
/// object that has the key.
fn find<'a>(top: &[(Cow<'a, str>, &'a RawValue)], path: &str) -> Result<Option<&'a RawValue>, DecodeError> {
    let (head, rest) = path.split_once('.').map_or((path, None), |(h, r)| (h, Some(r)));
    let Some(&(_, mut at)) = top.iter().find(|(name, _)| name == head) else {
        return Ok(None);
    };
    for key in rest.into_iter().flat_map(|rest| rest.split('.')) {
        if kind(at) != "an object" {
            return Ok(None);
        }
        let fields = entries(at).map_err(DecodeError::Json)?;
        match fields.into_iter().find(|(name, _)| name == key) {
            Some((_, value)) => at = value,
            None => return Ok(None),
        }
    }
    Ok(Some(at))
}
