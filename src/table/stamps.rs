//! A text column whose values are ISO 8601 date-times of one layout, kept as the instants they name:
//! no text is held for them, and the column needs no second pass to become a timestamp column. A
//! value of any other form turns the column back into text, each earlier value written out again
//! exactly as it arrived (the layout leaves one way to write each instant).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayBuilder, ArrayRef, StringBuilder, TimestampMicrosecondBuilder};

use super::iso8601;

/// Instants of one layout: `YYYY-MM-DD`, `T` or a space, `HH:MM`, optionally `:SS`, optionally `Z`.
#[derive(Default)]
pub(crate) struct Stamps {
    micros: TimestampMicrosecondBuilder,
    /// The first value: the others have its length and its separators.
    layout: Vec<u8>,
    zoned: bool,
    /// The date of the last value, as text and as days from 1970-01-01.
    last_date: Option<([u8; 10], i32)>,
}

impl Stamps {
    /// An empty column for values laid out as `first`, when `first` is a date-time of a layout kept
    /// this way; `capacity` values are reserved.
    pub(crate) fn of(first: &[u8], capacity: usize) -> Option<Stamps> {
        let zoned = match first.len() {
            16 | 19 => false,
            17 | 20 => true,
            _ => return None,
        };
        if first.len() >= 19 && first[16] != b':' {
            return None;
        }
        let mut stamps = Stamps {
            micros: TimestampMicrosecondBuilder::with_capacity(capacity),
            layout: first.to_vec(),
            zoned,
            last_date: None,
        };
        stamps.instant(first).is_some().then_some(stamps)
    }

    /// Appends `text` when it is a date-time of the column's layout; `false` (and nothing appended)
    /// when it is not. Every byte of an appended value was read: it is digits and the layout's
    /// separators.
    #[inline(always)]
    pub(crate) fn push(&mut self, text: &[u8]) -> bool {
        match self.instant(text) {
            Some(micros) => {
                self.micros.append_value(micros);
                true
            }
            None => false,
        }
    }

    /// The length of the column's values.
    pub(crate) fn width(&self) -> usize {
        self.layout.len()
    }

    /// The instant `text` names, when it is written in the column's layout.
    #[inline(always)]
    fn instant(&mut self, text: &[u8]) -> Option<i64> {
        let layout = &self.layout;
        if text.len() != layout.len() || text[10] != layout[10] || (text.len() >= 19 && text[16] != b':') {
            return None;
        }
        // A leap second reads as the next minute's first instant, which is written another way.
        if text.len() >= 19 && &text[17..19] == b"60" {
            return None;
        }
        let date: [u8; 10] = text[..10].try_into().ok()?;
        let days = match self.last_date {
            Some((last, days)) if last == date => days,
            _ => {
                let days = iso8601::date(&date)?;
                self.last_date = Some((date, days));
                days
            }
        };
        iso8601::datetime_on(text, days).and_then(|(micros, zoned)| (zoned == self.zoned).then_some(micros))
    }

    pub(crate) fn append_nulls(&mut self, count: usize) {
        self.micros.append_nulls(count);
    }

    pub(crate) fn len(&self) -> usize {
        self.micros.len()
    }

    /// The values as the text they arrived as.
    pub(super) fn into_text(mut self) -> StringBuilder {
        let micros = self.micros.finish();
        let mut text = StringBuilder::with_capacity(micros.len() + 1, micros.len() * self.layout.len());
        let separator = char::from(self.layout[10]);
        let seconds = if self.layout.len() >= 19 { ":%S" } else { "" };
        let zone = if self.zoned { "Z" } else { "" };
        let format = format!("%Y-%m-%d{separator}%H:%M{seconds}{zone}");
        for value in micros.iter() {
            match value.and_then(chrono::DateTime::from_timestamp_micros) {
                Some(at) => text.append_value(at.naive_utc().format(&format).to_string()),
                None => text.append_null(),
            }
        }
        text
    }

    pub(super) fn finish(&mut self) -> ArrayRef {
        let micros = self.micros.finish();
        Arc::new(if self.zoned {
            micros.with_timezone("UTC")
        } else {
            micros
        })
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Array;

    use super::*;

    #[test]
    fn values_of_the_layout_are_instants_and_turn_back_into_their_text() {
        for layout in [
            ["2025-01-01T00:00", "1969-12-31T23:59", "0001-02-28T05:06"],
            ["2025-01-01 00:00Z", "2024-02-29 12:30Z", "9999-12-31 23:59Z"],
            ["2025-01-01T00:00:07", "2025-06-30T08:15:59", "1900-03-01T00:00:00"],
            ["2025-01-01T00:00:07Z", "2016-12-31T23:59:59Z", "2000-02-29T10:20:30Z"],
        ] {
            let mut stamps = Stamps::of(layout[0].as_bytes(), 4).unwrap();
            assert_eq!(stamps.len(), 0);
            assert!(stamps.push(layout[0].as_bytes()));
            assert!(stamps.push(layout[1].as_bytes()));
            stamps.append_nulls(1);
            assert!(stamps.push(layout[2].as_bytes()));
            assert_eq!(stamps.len(), 4);
            let text = stamps.into_text().finish();
            let back: Vec<_> = text.iter().collect();
            assert_eq!(back, [Some(layout[0]), Some(layout[1]), None, Some(layout[2])]);
        }
        let mut stamps = Stamps::of(b"2025-01-01T00:00:07Z", 2).unwrap();
        assert!(stamps.push(b"2025-01-01T00:00:07Z"));
        for other in [
            "2025-01-01T00:00:07",
            "2025-01-01 00:00:07Z",
            "2025-01-01T00:00:7Z",
            "2016-12-31T23:59:60Z",
            "2025-01-01T00:00:07.5Z",
            "2025-01-01T00:00-07",
            "2025-02-30T00:00:07Z",
            "2025-01-01X00:00:07Z",
        ] {
            assert!(!stamps.push(other.as_bytes()), "{other}");
        }
        assert_eq!(stamps.len(), 1);
        let finished = stamps.finish();
        assert_eq!(
            finished.data_type(),
            &datafusion::arrow::datatypes::DataType::Timestamp(
                datafusion::arrow::datatypes::TimeUnit::Microsecond,
                Some("UTC".into())
            )
        );
        for other in ["2025-01-01", "2025-01-01T00:00+02:00", "2025-01-01T00:00:00.5", "x"] {
            assert!(Stamps::of(other.as_bytes(), 1).is_none(), "{other}");
        }
    }
}
