//! Timestamps: nanoseconds since the Unix epoch, shown as RFC 3339 in UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `2026-11-25T01:02:03.123456789Z`; out-of-range values show as the raw number.
pub fn format_rfc3339(ns: i64) -> String {
    match jiff::Timestamp::from_nanosecond(i128::from(ns)) {
        Ok(ts) => ts.to_string(),
        Err(_) => ns.to_string(),
    }
}

/// `2026-11-25T01:02:03.120000000Z`: always nine digits of fraction, so
/// that line times sort as text (`sort`, `-t` output) the way they sort as
/// times. [`format_rfc3339`] drops trailing zeros: `…03.12Z` would sort
/// after `…03.120000001Z`.
pub fn format_rfc3339_nanos(ns: i64) -> String {
    Rfc3339Nanos(ns).to_string()
}

/// [`format_rfc3339_nanos`] as a `Display`, to write it in place (a
/// search writes one per line event) without a `String` of its own.
pub struct Rfc3339Nanos(pub i64);

impl std::fmt::Display for Rfc3339Nanos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match jiff::Timestamp::from_nanosecond(i128::from(self.0)) {
            Ok(ts) => write!(f, "{ts:.9}"),
            Err(_) => write!(f, "{}", self.0),
        }
    }
}

/// Parses an RFC 3339 timestamp into nanoseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let ts: jiff::Timestamp = s.parse().ok()?;
    i64::try_from(ts.as_nanosecond()).ok()
}

/// Why a `--since`/`--until` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimeArgError {
    #[error("'{0}' is not a time: use a duration such as 90s, 15m, 2h, 3d, 1w or 1h30m, or an RFC 3339 time such as 2026-11-25T10:00:00Z")]
    Unparsable(String),
    #[error("'{0}' is in the future")]
    Future(String),
}

/// A point in time as users type it: a duration back from `now_ns`
/// (`90s`, `15m`, `2h`, `3d`, `1w`, `1h30m`) or an RFC 3339 time.
pub fn parse_since(s: &str, now_ns: i64) -> Result<i64, TimeArgError> {
    let s = s.trim();
    let at = match parse_rfc3339(s) {
        Some(t) => t,
        None => now_ns.saturating_sub(
            parse_duration_ns(s).ok_or_else(|| TimeArgError::Unparsable(s.to_owned()))?,
        ),
    };
    if at > now_ns {
        return Err(TimeArgError::Future(s.to_owned()));
    }
    Ok(at)
}

/// A duration as users type it (`90s`, `15m`, `2h`, `3d`, `1w`, `1h30m`;
/// units s, m, h, d, w), in nanoseconds.
pub fn parse_duration_ns(s: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: i64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        let n: i64 = digits.parse().ok()?;
        digits.clear();
        total = total.checked_add(n.checked_mul(unit)?.checked_mul(1_000_000_000)?)?;
        any = true;
    }
    (any && digits.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_times_have_a_fixed_width_and_sort_as_text() {
        let t = 1_764_032_523_120_000_000;
        assert_eq!(format_rfc3339_nanos(t), "2025-11-25T01:02:03.120000000Z");
        let mut shown: Vec<String> = [t + 1, t, t + 1_000, 1_764_032_523_000_000_000]
            .iter()
            .map(|&t| format_rfc3339_nanos(t))
            .collect();
        shown.sort();
        let back: Vec<i64> = shown.iter().filter_map(|s| parse_rfc3339(s)).collect();
        assert_eq!(back, [1_764_032_523_000_000_000, t, t + 1, t + 1_000]);
    }

    #[test]
    fn since_takes_durations_and_times() {
        let now = 1_764_032_523_000_000_000;
        let s = 1_000_000_000;
        assert_eq!(parse_since("90s", now), Ok(now - 90 * s));
        assert_eq!(parse_since("15m", now), Ok(now - 900 * s));
        assert_eq!(parse_since("1h30m", now), Ok(now - 5_400 * s));
        assert_eq!(parse_since("3d", now), Ok(now - 3 * 86_400 * s));
        assert_eq!(parse_since("1w", now), Ok(now - 604_800 * s));
        assert_eq!(parse_since("2025-11-25T01:00:00Z", now), Ok(now - 123 * s));
        for bad in ["", "15", "m", "15x", "1.5h", "yesterday"] {
            assert!(
                matches!(parse_since(bad, now), Err(TimeArgError::Unparsable(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_since("2099-01-01T00:00:00Z", now),
            Err(TimeArgError::Future(_))
        ));
    }

    #[test]
    fn round_trips() {
        let ns = 1_764_032_523_123_456_789;
        let s = format_rfc3339(ns);
        assert_eq!(s, "2025-11-25T01:02:03.123456789Z");
        assert_eq!(parse_rfc3339(&s), Some(ns));
        assert!(now_ns() > ns);
    }
}
