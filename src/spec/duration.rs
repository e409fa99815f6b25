//! Durations as products and flags write them: `90`, `90s`, `30m`, `2h`, `1h30m`, `1d`.

use std::time::Duration;

/// Text that is not a duration.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a duration: write e.g. 90s, 30m, 2h or 1h30m")]
pub(crate) struct DurationError(String);

/// `90`, `90s`, `30m`, `2h`, `1h30m`.
pub(crate) fn parse(text: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError(text.to_owned());
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|_| invalid());
    }
    let mut total = 0.0;
    let mut number = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' | '.' => number.push(c),
            's' | 'm' | 'h' | 'd' if !number.is_empty() => {
                let value: f64 = number.parse().map_err(|_| invalid())?;
                total += value
                    * match c {
                        's' => 1.0,
                        'm' => 60.0,
                        'h' => 3600.0,
                        _ => 86400.0,
                    };
                number.clear();
            }
            _ => return Err(invalid()),
        }
    }
    if !number.is_empty() || text.is_empty() {
        return Err(invalid());
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(super::parse("90").unwrap(), Duration::from_secs(90));
        assert_eq!(super::parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(super::parse("0.5s").unwrap(), Duration::from_millis(500));
        assert!(super::parse("soon").is_err());
        assert!(super::parse("10x").is_err());
        assert!(super::parse("").is_err());
    }
}
