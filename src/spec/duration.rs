//! Durations as pod.yaml writes them: `500ms`, `10s`, `2m`, `1h`, `0`.
//!
//! Every duration is at most [`MAX_DURATION`] (30 days). Nothing in a pod needs longer, and the
//! bound keeps every `Instant + Duration` and `Duration * n` the program does far from overflow:
//! an unbounded `grace: 9999999999999999h` used to pass `check` and then panic on the first stop
//! (an abort in release builds, PID 1 gone and the process orphaned).

use std::time::Duration;

/// The longest duration a pod.yaml (or an environment variable read with [`parse_duration`]) may
/// give: 30 days.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why a duration does not parse; its message is fit for a diagnostic (`field: message`). A bad
/// pod.yaml or variable is fatal at start; nothing retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("expected a duration like 500ms, 10s or 2m, found {text:?}")]
    Malformed { text: String },
    #[error(
        "{text:?} is longer than the maximum of {} (30 days)",
        format_duration(MAX_DURATION)
    )]
    TooLong { text: String },
}

/// Parses `500ms`, `10s`, `2m`, `1h` (and a bare `0`), at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let expected = || DurationError::Malformed {
        text: text.to_string(),
    };
    let too_long = || DurationError::TooLong {
        text: text.to_string(),
    };
    let scale: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(expected()),
    };
    if digits.is_empty() {
        return Err(expected());
    }
    // Only digits are left: a parse failure means more than u64 can hold.
    let n: u64 = digits.parse().map_err(|_| too_long())?;
    let d = n
        .checked_mul(scale)
        .map(Duration::from_millis)
        .filter(|d| *d <= MAX_DURATION)
        .ok_or_else(too_long)?;
    Ok(d)
}

/// The inverse of [`parse_duration`], for messages and `/info`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".into()
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_pod_yaml_uses() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3h"), Ok(Duration::from_secs(3 * 3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1.5s").is_err());
    }

    #[test]
    fn refuses_anything_longer_than_30_days() {
        assert_eq!(parse_duration("720h"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("43200m"), Ok(MAX_DURATION));
        for text in [
            "721h",
            "2592000001ms",
            "9999999999999999h",
            "99999999999999999999999s",
            "18446744073709551615ms",
        ] {
            let e = parse_duration(text).expect_err("too long");
            assert!(
                e.to_string().contains("longer than the maximum of 720h"),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn formats_back_to_what_parses() {
        for d in [
            Duration::from_millis(1500),
            Duration::from_secs(10),
            Duration::from_secs(120),
            Duration::from_secs(7200),
            MAX_DURATION,
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
