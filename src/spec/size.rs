//! Byte sizes as flags write them: `512MB`, `2GiB`, `1.5G`, `800M`, or a number of bytes.

/// Text that is not a size.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a size: write e.g. 512MB, 2GiB or 1.5G")]
pub(crate) struct SizeError(String);

/// A size in bytes: a number with an optional unit, K/M/G/T (powers of 1024, with or without
/// `B` or `iB`), as memory is counted.
pub(crate) fn parse(text: &str) -> Result<u64, SizeError> {
    let invalid = || SizeError(text.to_owned());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(&unit);
    let power = match unit {
        "" => 0,
        "K" => 1,
        "M" => 2,
        "G" => 3,
        "T" => 4,
        _ => return Err(invalid()),
    };
    let bytes = number * 1024f64.powi(power);
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(invalid());
    }
    Ok(bytes as u64)
}

/// The memory this process may use: its cgroup's limit (a container's) or the machine's.
pub(crate) fn machine_memory() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    match (cgroup, total) {
        (Some(cgroup), Some(total)) => Some(cgroup.min(total)),
        (limit, total) => limit.or(total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse("512MB").unwrap(), 512 << 20);
        assert_eq!(parse("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse("800m").unwrap(), 800 << 20);
        assert_eq!(parse("4096").unwrap(), 4096);
        assert!(parse("lots").is_err());
        assert!(parse("2XB").is_err());
        assert!(parse("0").is_err());
    }
}
