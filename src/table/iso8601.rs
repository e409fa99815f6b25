//! ISO 8601 dates and date-times read at a fixed layout, byte by byte: every text value of a column is
//! tried, so this runs millions of times on a large extract and must not parse a format string per value.
//!
//! Accepted: `YYYY-MM-DD`; `YYYY-MM-DD[T ]HH:MM[:SS[.fraction]]`, optionally followed by `Z` or an offset
//! `±HH[[:]MM]`. Digits are ASCII, fields are zero-padded to their width, and the calendar is checked.

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;

/// Days from 1970-01-01 to `YYYY-MM-DD`.
pub(super) fn date(text: &[u8]) -> Option<i32> {
    match text {
        [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] => {
            let year = digits(&[*y0, *y1, *y2, *y3])?;
            let month = digits(&[*m0, *m1])?;
            let day = digits(&[*d0, *d1])?;
            days_from_civil(year as i32, month, day)
        }
        _ => None,
    }
}

/// Microseconds from 1970-01-01T00:00 (UTC when the text has a zone) and whether it had one.
pub(super) fn datetime(text: &[u8]) -> Option<(i64, bool)> {
    datetime_on(text, date(text.get(..10)?)?)
}

/// [`datetime`] of a text whose first ten bytes are the date `days` days from 1970-01-01, already
/// read (a column of hours repeats each date many times).
pub(super) fn datetime_on(text: &[u8], days: i32) -> Option<(i64, bool)> {
    if text.len() < 16 || !matches!(text[10], b'T' | b' ') || text[13] != b':' {
        return None;
    }
    let hour = digits(&text[11..13])?;
    let minute = digits(&text[14..16])?;
    if hour > 23 || minute > 59 {
        return None;
    }
    let mut micros = i64::from(hour * 60 + minute) * 60_000_000;
    let mut rest = &text[16..];
    if let [b':', s0, s1, tail @ ..] = rest {
        let second = digits(&[*s0, *s1])?;
        // 60 is a leap second, as chrono reads it: the first instant of the next minute.
        if second > 60 {
            return None;
        }
        micros += i64::from(second) * 1_000_000;
        rest = tail;
        if let [b'.', tail @ ..] = rest {
            let count = tail.iter().take_while(|b| b.is_ascii_digit()).count();
            if count == 0 {
                return None;
            }
            // Digits past the microsecond are dropped, as a timestamp in microseconds truncates.
            let kept = &tail[..count.min(6)];
            micros += i64::from(digits(kept)?) * 10_i64.pow(6 - kept.len() as u32);
            rest = &tail[count..];
        }
    }
    let offset = match rest {
        [] => return Some((i64::from(days) * DAY_MICROS + micros, false)),
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), zone @ ..] => {
            let (hours, minutes) = match zone {
                [h0, h1] => (digits(&[*h0, *h1])?, 0),
                [h0, h1, m0, m1] | [h0, h1, b':', m0, m1] => (digits(&[*h0, *h1])?, digits(&[*m0, *m1])?),
                _ => return None,
            };
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = i64::from(hours * 60 + minutes) * 60_000_000;
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    Some((i64::from(days) * DAY_MICROS + micros - offset, true))
}

/// The number written by ASCII digits only.
fn digits(text: &[u8]) -> Option<u32> {
    text.iter()
        .try_fold(0_u32, |n, &b| b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0')))
}

/// Days from 1970-01-01 to a proleptic Gregorian date, when the date exists (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i32, month: u32, day: u32) -> Option<i32> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let last = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > last {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year as i32;
    Some(era * 146_097 + day_of_era - 719_468)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};

    use super::*;

    /// What chrono's format-string parsers make of the same text, for comparison.
    fn chrono_datetime(text: &str) -> Option<(i64, bool)> {
        let normalized = text.replacen(' ', "T", 1);
        if let Ok(t) = DateTime::parse_from_rfc3339(&normalized)
            .or_else(|_| DateTime::parse_from_str(&normalized, "%Y-%m-%dT%H:%M%#z"))
        {
            return Some((t.timestamp_micros(), true));
        }
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(&normalized, format).ok())
            .map(|t| (t.and_utc().timestamp_micros(), false))
    }

    #[test]
    fn dates_match_chrono_over_four_centuries() {
        let mut day = NaiveDate::from_ymd_opt(1800, 1, 1).unwrap();
        while day.year_ce().1 < 2200 {
            let text = day.format("%Y-%m-%d").to_string();
            let expected = (day - NaiveDate::default()).num_days() as i32;
            assert_eq!(date(text.as_bytes()), Some(expected), "{text}");
            day = day.succ_opt().unwrap();
        }
        for text in ["0000-03-01", "9999-12-31", "2024-02-29"] {
            let chrono = NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap();
            assert_eq!(
                date(text.as_bytes()),
                Some((chrono - NaiveDate::default()).num_days() as i32)
            );
            assert!(chrono.year() >= 0);
        }
        for text in [
            "2025-02-29",
            "2025-13-01",
            "2025-00-10",
            "2025-01-00",
            "2025-1-011",
            "2025/01/01",
            "２０２５-01-01",
        ] {
            assert_eq!(date(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn datetimes_match_chrono() {
        for text in [
            "2025-01-01T00:00",
            "2025-01-01 13:45",
            "1969-12-31T23:59:59.999999",
            "2025-06-30T08:15:00",
            "2025-06-30T08:15:00.5",
            "2025-06-30T08:15:00.123456789",
            "2025-06-30T08:15:00Z",
            "2025-06-30 08:15:00.25Z",
            "2025-06-30T08:15:00.5+02:00",
            "2025-06-30T08:15:00-07:30",
            "2025-06-30T08:15Z",
            "2025-06-30T08:15+0530",
            "2025-06-30T08:15-03",
            "2016-12-31T23:59:60Z",
        ] {
            assert_eq!(datetime(text.as_bytes()), chrono_datetime(text), "{text}");
            assert!(datetime(text.as_bytes()).is_some(), "{text}");
        }
        for text in [
            "2025-01-01T24:00",
            "2025-01-01T00:60",
            "2025-01-01T00:00:61",
            "2025-01-01T00:00:00.",
            "2025-01-01T00:00:00.5x",
            "2025-01-01T00:00z",
            "2025-01-01T00:00+2",
            "2025-01-01T00:00+25:00",
            "2025-01-01T00:00 ",
            "2025-02-30T00:00",
            "2025-01-01",
            "2025-01-01t00:00",
        ] {
            assert_eq!(datetime(text.as_bytes()), None, "{text}");
        }
        // Past chrono's layouts, an offset without a colon also follows seconds.
        assert_eq!(
            datetime(b"2025-06-30T08:15:00+0200"),
            chrono_datetime("2025-06-30T08:15:00+02:00")
        );
    }
}
