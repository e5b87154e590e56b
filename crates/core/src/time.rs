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

/// Parses an RFC 3339 timestamp into nanoseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let ts: jiff::Timestamp = s.parse().ok()?;
    i64::try_from(ts.as_nanosecond()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let ns = 1_764_032_523_123_456_789;
        let s = format_rfc3339(ns);
        assert_eq!(s, "2025-11-25T01:02:03.123456789Z");
        assert_eq!(parse_rfc3339(&s), Some(ns));
        assert!(now_ns() > ns);
    }
}
