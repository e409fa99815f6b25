//! A JSON array of numbers, or of date-times of one layout, read straight into one typed column: one
//! loop over its bytes, with no call through the parser per value and no text kept for instants.
//! Anything else (text, booleans, nested values, integers too long to read exactly here, a broken
//! array) is left to the parser, which decodes it the same way or says what is wrong.

use datafusion::arrow::array::{Float64Builder, Int64Builder};
use tokio_util::sync::CancellationToken;

use crate::table::builder::STOP_EVERY;
use crate::table::{Decoded, Stamps, widened};

/// The values of the array `text` (nothing else around it but whitespace) as one column, when every
/// value is a number or null, or every value is a date-time string of the first one's layout or null,
/// and at least one is not null. `None` also when `stop` is cancelled part way.
pub(super) fn column(text: &[u8], stop: Option<&CancellationToken>) -> Option<Decoded> {
    let mut i = skip_space(text, 0);
    if text.get(i) != Some(&b'[') {
        return None;
    }
    // Commas stand only between values in an array of numbers or date-times.
    let capacity = memchr::memchr_iter(b',', text).count() + 1;
    let mut column = Column::Nulls(0);
    let mut n = 0usize;
    i = skip_space(text, i + 1);
    if text.get(i) == Some(&b']') {
        return None;
    }
    loop {
        i = skip_space(text, i);
        i = match *text.get(i)? {
            b'n' if text[i..].starts_with(b"null") => {
                column.null();
                i + 4
            }
            b'"' => {
                // A value of the column's layout ends where the layout does: pushing it reads every
                // byte, so it holds no quote, and the string closes right after it.
                if let Column::Stamps(stamps) = &mut column
                    && let Some(value) = text.get(i + 1..i + 1 + stamps.width())
                    && text.get(i + 1 + value.len()) == Some(&b'"')
                    && stamps.push(value)
                {
                    i + 2 + value.len()
                } else {
                    let end = string_end(text, i + 1)?;
                    column.stamp(&text[i + 1..end], capacity)?;
                    end + 1
                }
            }
            b'-' | b'0'..=b'9' => {
                let (number, end) = number(text, i)?;
                column.number(number, capacity)?;
                end
            }
            _ => return None,
        };
        n += 1;
        if n.is_multiple_of(STOP_EVERY) && stop.is_some_and(CancellationToken::is_cancelled) {
            return None;
        }
        i = skip_space(text, i);
        match text.get(i)? {
            b',' => i += 1,
            b']' => break,
            _ => return None,
        }
    }
    if skip_space(text, i + 1) != text.len() {
        return None;
    }
    match column {
        Column::Nulls(_) => None,
        Column::Ints(b) => Some(Decoded::Int(b)),
        Column::Floats(b) => Some(Decoded::Float(b)),
        Column::Stamps(s) => Some(Decoded::Stamps(s)),
    }
}

/// The column so far: typed by its first value that is not null, as a builder types it.
enum Column {
    Nulls(usize),
    Ints(Int64Builder),
    Floats(Float64Builder),
    Stamps(Stamps),
}

pub(super) enum Number {
    Int(i64),
    Float(f64),
}

impl Column {
    fn null(&mut self) {
        match self {
            Column::Nulls(n) => *n += 1,
            Column::Ints(b) => b.append_null(),
            Column::Floats(b) => b.append_null(),
            Column::Stamps(s) => s.append_nulls(1),
        }
    }

    #[inline(always)]
    fn number(&mut self, number: Number, capacity: usize) -> Option<()> {
        match (&mut *self, number) {
            (Column::Nulls(nulls), Number::Int(v)) => {
                let mut b = Int64Builder::with_capacity(capacity);
                b.append_nulls(*nulls);
                b.append_value(v);
                *self = Column::Ints(b);
            }
            (Column::Nulls(nulls), Number::Float(v)) => {
                let mut b = Float64Builder::with_capacity(capacity);
                b.append_nulls(*nulls);
                b.append_value(v);
                *self = Column::Floats(b);
            }
            (Column::Ints(b), Number::Int(v)) => b.append_value(v),
            (Column::Floats(b), Number::Float(v)) => b.append_value(v),
            (Column::Floats(b), Number::Int(v)) => b.append_value(v as f64),
            // Integers meet a decimal: the column becomes decimals, as a builder widens it.
            (Column::Ints(b), Number::Float(v)) => {
                let mut decimals = widened(b);
                decimals.append_value(v);
                *self = Column::Floats(decimals);
            }
            (Column::Stamps(_), _) => return None,
        }
        Some(())
    }

    fn stamp(&mut self, text: &[u8], capacity: usize) -> Option<()> {
        match self {
            Column::Nulls(nulls) => {
                let mut stamps = Stamps::of(text, capacity)?;
                stamps.append_nulls(*nulls);
                stamps.push(text);
                *self = Column::Stamps(stamps);
                Some(())
            }
            Column::Stamps(stamps) => stamps.push(text).then_some(()),
            Column::Ints(_) | Column::Floats(_) => None,
        }
    }
}

/// 10^0 to 10^15, each exactly a double.
const POWERS_OF_TEN: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The JSON number at `start` and where it ends. Integers of up to 18 digits are read here (they fit
/// an `i64`); decimals and exponents are read correctly rounded, as the parser reads them.
#[inline(always)]
pub(super) fn number(text: &[u8], start: usize) -> Option<(Number, usize)> {
    // The digits are summed up as they are passed (wrapping: past 18 of them the sum goes unused).
    let mut mantissa = 0u64;
    let mut digits = |mut i: usize| {
        while let Some(&digit) = text.get(i)
            && digit.is_ascii_digit()
        {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(digit - b'0'));
            i += 1;
        }
        i
    };
    let negative = text[start] == b'-';
    let first = start + usize::from(negative);
    let mut i = match text.get(first)? {
        b'0' => first + 1,
        b'1'..=b'9' => digits(first),
        _ => return None,
    };
    let integer_digits = i - first;
    let mut fraction_digits = 0;
    if text.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        fraction_digits = end - (i + 1);
        if fraction_digits == 0 {
            return None;
        }
        i = end;
    }
    let mut exponent = false;
    if matches!(text.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(text.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = text[i..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .map_or(text.len(), |n| i + n);
        if end == i {
            return None;
        }
        (i, exponent) = (end, true);
    }
    if fraction_digits > 0 || exponent {
        let value = if !exponent && integer_digits + fraction_digits <= 15 {
            // Up to 15 digits make an integer that a double holds exactly, as it holds 10^1..10^15:
            // their quotient is the correctly rounded decimal, as a full parse gives it.
            let value = mantissa as f64 / POWERS_OF_TEN[fraction_digits];
            if negative { -value } else { value }
        } else {
            // The bytes are ASCII digits and signs, checked above.
            std::str::from_utf8(&text[start..i]).ok()?.parse().ok()?
        };
        return value.is_finite().then_some((Number::Float(value), i));
    }
    if integer_digits > 18 {
        return None;
    }
    let magnitude = mantissa as i64;
    // `-0` is the decimal negative zero to the parser, which no integer holds.
    Some(match (negative, magnitude) {
        (true, 0) => (Number::Float(-0.0), i),
        (true, _) => (Number::Int(-magnitude), i),
        (false, _) => (Number::Int(magnitude), i),
    })
}

/// Where the string whose text starts at `start` closes, when it has no escapes or control bytes.
#[inline(always)]
pub(super) fn string_end(text: &[u8], start: usize) -> Option<usize> {
    let length = text
        .get(start..)?
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    (text[start + length] == b'"').then_some(start + length)
}

#[inline(always)]
pub(super) fn skip_space(text: &[u8], mut i: usize) -> usize {
    while text.get(i).is_some_and(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, ArrayRef};
    use serde::de::DeserializeSeed;

    use super::*;
    use crate::extract::decode::seeds::ColumnSeed;
    use crate::table::RowsBuilder;

    /// The column the parser makes of `text`, and the one this fast path makes (when it takes it).
    fn both(text: &str) -> (Result<ArrayRef, String>, Option<ArrayRef>) {
        let mut parsed = RowsBuilder::new();
        let seed = ColumnSeed {
            builder: &mut parsed,
            name: "c",
            first: 0,
            expected: 0,
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let by_parser = seed
            .deserialize(&mut de)
            .and_then(|n| de.end().map(|()| n))
            .map(|n| {
                parsed.end_columns(0, n);
                parsed.finish().column(0).clone()
            })
            .map_err(|e| e.to_string());
        let fast = column(text.as_bytes(), None).map(|decoded| {
            let mut builder = RowsBuilder::new();
            let n = decoded.len();
            builder.decoded_column("c", decoded);
            builder.end_columns(0, n);
            builder.finish().column(0).clone()
        });
        (by_parser, fast)
    }

    #[test]
    fn numbers_and_date_times_read_as_the_parser_reads_them() {
        for text in [
            "[1, 2, -3, null, 0]",
            "[1, 2, -0, 3]",
            " [ null , 1.5 , 2 , -0.0 , 1e3 , 2E-2, 1.7976931348623157e308, 5e-324 ] ",
            "[null, null, 7, 123456789012345678, -123456789012345678]",
            "[3, 0.1, 0.30000000000000004, 12345678901234567890.5, 2.2250738585072011e-308]",
            "[\"2020-01-01T00:00\", null, \"2020-01-01T01:00\", \"2024-02-29T23:59\"]",
            "[null, \"2025-01-01T00:00:07Z\",\"2025-01-01T00:00:14Z\"]",
            "[\"2025-01-01 00:00:07\"]",
        ] {
            let (parsed, fast) = both(text);
            let fast = fast.unwrap_or_else(|| panic!("not taken: {text}"));
            assert_eq!(parsed.unwrap().to_data(), fast.to_data(), "{text}");
        }
    }

    #[test]
    fn decimals_of_every_length_read_as_the_parser_reads_them() {
        // Pseudo-random digits, 1 to 20 of them, the point anywhere: the short ones take the exact
        // quotient, the long ones a full parse; both must give the parser's double.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut values = Vec::new();
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let digits = format!("{seed:020}");
            let length = 1 + (seed % 20) as usize;
            let point = (seed >> 8) as usize % length;
            let sign = if seed & 1 == 0 { "-" } else { "" };
            let (whole, fraction) = digits[..length].split_at(point + 1);
            let whole = whole.trim_start_matches('0');
            let whole = if whole.is_empty() { "0" } else { whole };
            values.push(if fraction.is_empty() {
                format!("{sign}{whole}.0")
            } else {
                format!("{sign}{whole}.{fraction}")
            });
        }
        let text = format!("[{}]", values.join(","));
        let (parsed, fast) = both(&text);
        assert_eq!(parsed.unwrap().to_data(), fast.unwrap().to_data());
    }

    #[test]
    fn anything_else_is_left_to_the_parser() {
        for text in [
            "[]",
            "[null, null]",
            "[1, \"a\"]",
            "[\"2020-01-01T00:00\", 1]",
            "[\"2020-01-01T00:00\", \"2020-01-01T00:00:00\"]",
            "[\"2020-01-01\"]",
            "[\"text\"]",
            "[\"2020-01-01T00:00\\u0030\"]",
            "[\"2020-01-01T00:00\", \"2020-01-01T00:00\\u0030\"]",
            "[\"2020-01-01T00:00\", \"2020-01-01T00:00x\"]",
            "[\"2020-01-01T00:00\", \"2020-01-01T0:00\", \"2020-01-01T00:00\"]",
            "[\"2020-01-01T00:00\", \"2020-01-01T00:00",
            "[true]",
            "[[1]]",
            "[{\"a\": 1}]",
            "[1234567890123456789]",
            "[1e400]",
            "[01]",
            "[1.]",
            "[.5]",
            "[+1]",
            "[1e]",
            "[1,]",
            "[1 2]",
            "[1] x",
            "[1",
            "[nul]",
            "{\"a\": 1}",
        ] {
            let (_, fast) = both(text);
            assert!(fast.is_none(), "taken: {text}");
        }
    }
}
