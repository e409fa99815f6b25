//! Logical time: the schedule tick a run stands for, its data interval, and its deterministic id.

use super::schedule;
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use chrono_tz::Tz;

/// The tick a run stands for. A retried or duplicated invocation of the same tick is the same run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logical {
    /// The tick (UTC).
    pub time: DateTime<Utc>,
    /// The data interval [start, end): from the previous tick to this one.
    pub interval_start: DateTime<Utc>,
    pub interval_end: DateTime<Utc>,
    pub run_id: String,
    /// The product's time zone, in which dates are rendered.
    pub timezone: Tz,
}

/// The logical time of a run of `product` asked for at `at`: the latest tick of `schedule` at or
/// before it, in `timezone`. Without a schedule, `at` itself (to the second) with an empty interval.
/// Why a run's logical time cannot be found.
#[derive(Debug, thiserror::Error)]
pub enum LogicalError {
    #[error("unknown time zone `{0}`")]
    TimeZone(String),
    #[error(transparent)]
    Cron(#[from] schedule::CronError),
    #[error("no tick of `{expression}` {when}: {message}")]
    NoTick {
        expression: String,
        /// "at or before …", "before …".
        when: String,
        message: String,
    },
}

fn time_zone(name: &str) -> Result<Tz, LogicalError> {
    name.parse().map_err(|_| LogicalError::TimeZone(name.to_owned()))
}

pub fn at(product: &str, cron: Option<&str>, timezone: &str, at: DateTime<Utc>) -> Result<Logical, LogicalError> {
    let tz = time_zone(timezone)?;
    let at = at.trunc_subsecs(0);
    let (time, start) = match cron {
        None => (at, at),
        Some(expression) => {
            let cron = schedule::parse(expression)?;
            let local = at.with_timezone(&tz);
            let no_tick = |when: String| {
                move |e: croner::errors::CronError| LogicalError::NoTick {
                    expression: expression.to_owned(),
                    when,
                    message: e.to_string(),
                }
            };
            let tick = cron
                .find_previous_occurrence(&local, true)
                .map_err(no_tick(format!("at or before {at}")))?;
            let previous = cron
                .find_previous_occurrence(&tick, false)
                .map_err(no_tick(format!("before {tick}")))?;
            (tick.with_timezone(&Utc), previous.with_timezone(&Utc))
        }
    };
    Ok(Logical {
        time,
        interval_start: start,
        interval_end: time,
        run_id: run_id(product, time),
        timezone: tz,
    })
}

/// `<product>-<tick as YYYYMMDDTHHMMSSZ>`: stable for a tick, usable in file names.
pub fn run_id(product: &str, time: DateTime<Utc>) -> String {
    format!("{product}-{}", time.format("%Y%m%dT%H%M%SZ"))
}

/// Every tick of `cron` in [from, to], oldest first, in `timezone`.
pub fn ticks(
    cron: &str,
    timezone: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, LogicalError> {
    let tz = time_zone(timezone)?;
    let cron = schedule::parse(cron)?;
    let mut out = Vec::new();
    let mut at = from.with_timezone(&tz);
    let mut inclusive = true;
    while let Ok(tick) = cron.find_next_occurrence(&at, inclusive) {
        if tick.with_timezone(&Utc) > to {
            break;
        }
        out.push(tick.with_timezone(&Utc));
        at = tick;
        inclusive = false;
    }
    Ok(out)
}

impl Logical {
    /// RFC 3339 in the product's time zone.
    pub fn local(&self, time: DateTime<Utc>) -> String {
        time.with_timezone(&self.timezone)
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn latest_tick_and_interval() {
        let logical = at("p", Some("0 */6 * * *"), "UTC", utc("2025-01-01T07:13:09.5Z")).unwrap();
        assert_eq!(logical.time, utc("2025-01-01T06:00:00Z"));
        assert_eq!(logical.interval_start, utc("2025-01-01T00:00:00Z"));
        assert_eq!(logical.run_id, "p-20250101T060000Z");
        // Exactly on a tick: that tick.
        let again = at("p", Some("0 */6 * * *"), "UTC", utc("2025-01-01T06:00:00Z")).unwrap();
        assert_eq!(again, logical);
        let daily = at("p", Some("@daily"), "UTC", utc("2025-03-01T00:00:00Z")).unwrap();
        assert_eq!(daily.interval_start, utc("2025-02-28T00:00:00Z"));
        let unscheduled = at("p", None, "UTC", utc("2025-01-01T07:13:09.5Z")).unwrap();
        assert_eq!(
            (unscheduled.time, unscheduled.interval_start),
            (utc("2025-01-01T07:13:09Z"), utc("2025-01-01T07:13:09Z"))
        );
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        // 02:30 daily in New York: on 2025-03-09 the clocks skip from 02:00 to 03:00.
        let before = at("p", Some("30 2 * * *"), "America/New_York", utc("2025-03-10T12:00:00Z")).unwrap();
        assert_eq!(before.time, utc("2025-03-10T06:30:00Z")); // 02:30 EDT
        // New York's clocks go back on 2025-11-02: that day is 25 hours long.
        let back = at("p", Some("0 9 * * *"), "America/New_York", utc("2025-11-03T15:00:00Z")).unwrap();
        assert_eq!(back.time, utc("2025-11-03T14:00:00Z")); // 09:00 EST
        assert_eq!(back.interval_start, utc("2025-11-02T14:00:00Z")); // 09:00 EST
        let summer = at("p", Some("0 9 * * *"), "America/New_York", utc("2025-11-02T12:00:00Z")).unwrap();
        assert_eq!(summer.time, utc("2025-11-01T13:00:00Z")); // 09:00 EDT
        assert_eq!(back.interval_start - summer.time, chrono::Duration::hours(25));
        let berlin = at("p", Some("0 0 * * *"), "Europe/Berlin", utc("2025-03-30T23:00:00Z")).unwrap();
        assert_eq!(berlin.time, utc("2025-03-30T22:00:00Z"));
        assert_eq!(berlin.interval_end - berlin.interval_start, chrono::Duration::hours(23));
    }

    #[test]
    fn ticks_in_a_range() {
        let found = ticks(
            "0 */6 * * *",
            "UTC",
            utc("2025-01-01T00:00:00Z"),
            utc("2025-01-01T18:00:00Z"),
        )
        .unwrap();
        assert_eq!(found.len(), 4);
        assert_eq!(found[3], utc("2025-01-01T18:00:00Z"));
        let none = ticks(
            "0 0 1 1 *",
            "UTC",
            utc("2025-01-02T00:00:00Z"),
            utc("2025-06-01T00:00:00Z"),
        )
        .unwrap();
        assert!(none.is_empty());
    }
}
