//! Schedules: 5-field cron expressions, in words, and their next run times.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// Why a cron expression is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("`{0}` is not standard cron: cron, Kubernetes and Cloud Scheduler reject L, W, # and ?")]
    NotStandard(char),
    /// The cron parser's own words.
    #[error("{0}")]
    Invalid(String),
    #[error("unknown nickname ({0})")]
    UnknownNickname(Box<CronError>),
    #[error("expected 5 fields, found {0}")]
    FieldCount(usize),
    #[error("the {name} field `{text}` is not valid")]
    Field { name: &'static str, text: String },
    #[error("it never fires: no month it names has that day")]
    NeverFires,
}

/// Parses a 5-field cron expression or an `@daily`-style nickname.
pub fn parse(expression: &str) -> Result<Cron, CronError> {
    if let Some(extension) = extension(expression) {
        return Err(CronError::NotStandard(extension));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|error| CronError::Invalid(error.to_string()))
}

/// The first non-standard character (Quartz-style `L`, `W`, `#`, `?`) outside month and day names.
fn extension(expression: &str) -> Option<char> {
    const NAMES: [&str; 19] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC", "SUN", "MON", "TUE", "WED",
        "THU", "FRI", "SAT",
    ];
    if expression.trim_start().starts_with('@') {
        return None;
    }
    let mut rest = expression.to_ascii_uppercase();
    for name in NAMES {
        rest = rest.replace(name, "");
    }
    rest.chars().find(|c| matches!(c, 'L' | 'W' | '#' | '?'))
}

/// What is wrong with an expression that does not parse, naming the field at fault, or that parses
/// but can never fire (`0 0 31 2 *`). Each distinct expression is checked once per process: a folder of
/// products mostly repeats a few schedules.
pub fn check(expression: &str) -> Result<(), CronError> {
    static CHECKED: LazyLock<Mutex<HashMap<String, Result<(), CronError>>>> = LazyLock::new(Default::default);
    let known = CHECKED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(expression)
        .cloned();
    known.unwrap_or_else(|| {
        let result = check_once(expression);
        CHECKED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(expression.to_owned(), result.clone());
        result
    })
}

fn check_once(expression: &str) -> Result<(), CronError> {
    let message = match parse(expression) {
        Ok(cron) => return fires(&cron),
        Err(message) => message,
    };
    if extension(expression).is_some() {
        return Err(message);
    }
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if expression.trim_start().starts_with('@') {
        return Err(CronError::UnknownNickname(Box::new(message)));
    }
    if fields.len() != 5 {
        return Err(CronError::FieldCount(fields.len()));
    }
    let names = ["minute", "hour", "day-of-month", "month", "day-of-week"];
    for (i, field) in fields.iter().enumerate() {
        let mut alone = ["*"; 5];
        alone[i] = field;
        if parse(&alone.join(" ")).is_err() {
            return Err(CronError::Field {
                name: names[i],
                text: (*field).to_owned(),
            });
        }
    }
    Err(message)
}

/// Whether `cron` fires at all: a day of the month that none of its months has (31 February) never
/// comes. Eight years from a leap year hold every day any month can have.
fn fires(cron: &Cron) -> Result<(), CronError> {
    let Some(from) = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single() else {
        return Ok(());
    };
    match cron.find_next_occurrence(&from, true) {
        Ok(next) if next < from + chrono::Duration::days(8 * 366) => Ok(()),
        _ => Err(CronError::NeverFires),
    }
}

/// The schedule in words, e.g. "At minute 0 past every 6th hour".
pub fn describe(cron: &Cron) -> String {
    cron.describe()
}

/// The next `count` run times after `after`, evaluated in `timezone`, returned in UTC.
pub fn next_runs(cron: &Cron, timezone: Tz, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
    cron.iter_after(after.with_timezone(&timezone))
        .take(count)
        .map(|time| time.with_timezone(&Utc))
        .collect()
}

/// `start_date` as an instant: a date, or a date-time without an offset, is read in `timezone` (the
/// product's first logical date is a date where the product lives).
pub fn start_in(text: &str, timezone: Tz) -> Option<DateTime<Utc>> {
    if DateTime::parse_from_rfc3339(text).is_ok() {
        return parse_start_date(text);
    }
    let naive = parse_start_date(text)?.naive_utc();
    timezone
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// Parses `start_date`: a date or an ISO 8601 date-time (UTC when no offset is given).
pub fn parse_start_date(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?));
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    let normalized = text.replace(' ', "T");
    ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(&normalized, format).ok())
        .map(|time| Utc.from_utc_datetime(&time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_that_never_fires_is_refused() {
        assert_eq!(check("0 0 31 2 *"), Err(CronError::NeverFires));
        assert_eq!(check("0 0 31 2,4,6 *"), Err(CronError::NeverFires));
        assert_eq!(check("0 0 29 2 *"), Ok(()), "29 February comes in leap years");
        assert_eq!(check("0 0 31 2 MON"), Ok(()), "day of month or of week: any Monday");
        assert_eq!(check("@daily"), Ok(()));
    }

    #[test]
    fn parses_five_fields_and_nicknames_only() {
        assert!(parse("0 */6 * * *").is_ok());
        assert!(parse("@daily").is_ok());
        assert!(parse("0 0 */6 * * *").is_err());
        assert!(parse("61 * * * *").is_err());
        assert!(parse("every day").is_err());
        assert_eq!(
            check("61 * * * *").unwrap_err().to_string(),
            "the minute field `61` is not valid"
        );
        assert_eq!(
            check("0 */6 * *").unwrap_err().to_string(),
            "expected 5 fields, found 4"
        );
        assert!(check("@daily").is_ok());
        assert!(parse("0 9 * JUL WED").is_ok());
        for extension in ["0 0 L * *", "0 9 * * MON#1", "0 0 ? * *", "0 0 15W * *"] {
            assert!(
                check(extension).unwrap_err().to_string().contains("not standard cron"),
                "{extension}"
            );
        }
    }

    #[test]
    fn next_runs_honour_the_time_zone() {
        let cron = parse("0 2 * * *").unwrap();
        let after = Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap();
        let utc = next_runs(&cron, Tz::UTC, after, 2);
        assert_eq!(utc[0].to_rfc3339(), "2025-01-02T02:00:00+00:00");
        let berlin = next_runs(&cron, chrono_tz::Europe::Berlin, after, 1);
        assert_eq!(berlin[0].to_rfc3339(), "2025-01-02T01:00:00+00:00");
    }

    #[test]
    fn start_dates() {
        assert!(parse_start_date("2025-01-01").is_some());
        assert!(parse_start_date("2025-01-01T06:00:00Z").is_some());
        assert!(parse_start_date("2025-01-01 06:00").is_some());
        assert!(parse_start_date("2025-02-30").is_none());
    }
}
