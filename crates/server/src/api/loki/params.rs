//! The Loki API's query parameters, read as Loki reads them: times as
//! nanoseconds, seconds (10 digits or fewer, or with a fraction) or
//! RFC 3339; steps as seconds or durations; `limit` and `direction`.

use cblogs_core::time::now_ns;

use super::error::LokiError;
use crate::api::params::query_pairs;
use crate::logql::parse_duration;

/// Loki's default `limit`.
const DEFAULT_LIMIT: usize = 100;
/// Loki's default range: the last hour.
const DEFAULT_SINCE_NS: i64 = 3_600_000_000_000;

/// Which end of the range a log query's `limit` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    /// The newest lines, newest first (Loki's default).
    Backward,
    /// The oldest lines, oldest first.
    Forward,
}

/// Every parameter the query endpoints take, parsed; each endpoint uses
/// the ones it needs.
#[derive(Debug, Clone)]
pub(super) struct LokiParams {
    pub query: Option<String>,
    /// `match[]` (series), repeated.
    pub matches: Vec<String>,
    pub start_ns: i64,
    pub end_ns: i64,
    /// `time` of an instant query.
    pub time_ns: i64,
    pub limit: usize,
    pub direction: Direction,
    /// `step` of a range query, if given.
    pub step_ns: Option<i64>,
    /// `delay_for` of a tail (seconds), kept to refuse it past Loki's 5.
    pub delay_for_secs: u64,
}

/// The latest time taken (2^62 ns: the year 2116), so that ranges and
/// windows added to times cannot overflow.
const LATEST_NS: i64 = 1 << 62;

/// A time as Loki takes it, between the epoch and [`LATEST_NS`].
pub(super) fn parse_time(name: &str, value: &str) -> Result<i64, LokiError> {
    let bad = || {
        LokiError::bad(format!(
            "invalid {name} '{value}': expected nanoseconds, seconds or an RFC 3339 time, between 1970 and 2116"
        ))
    };
    let in_range = |ns: i64| (0..=LATEST_NS).contains(&ns).then_some(ns);
    if value.contains('.') {
        if let Ok(secs) = value.parse::<f64>() {
            let ns = secs * 1e9;
            return (ns.is_finite() && ns >= 0.0 && ns <= LATEST_NS as f64)
                .then(|| ns.round() as i64)
                .ok_or_else(bad);
        }
    }
    let ns = match value.parse::<i64>() {
        Ok(n) if value.trim_start_matches('-').len() <= 10 => n.checked_mul(1_000_000_000),
        Ok(n) => Some(n),
        Err(_) => value
            .parse::<jiff::Timestamp>()
            .ok()
            .and_then(|t| i64::try_from(t.as_nanosecond()).ok()),
    };
    ns.and_then(in_range).ok_or_else(bad)
}

/// A step or range: float seconds, or a duration (`15s`, `1m`).
pub(super) fn parse_seconds_or_duration(name: &str, value: &str) -> Result<i64, LokiError> {
    if let Ok(secs) = value.parse::<f64>() {
        // At least 1 ns once rounded: a step divides the range.
        if secs.is_finite() && secs * 1e9 >= 1.0 && secs * 1e9 <= LATEST_NS as f64 {
            return Ok((secs * 1e9).round() as i64);
        }
    }
    match parse_duration(value) {
        Ok(ns) if ns > 0 && ns <= LATEST_NS => Ok(ns),
        _ => Err(LokiError::bad(format!(
            "invalid {name} '{value}': expected a positive duration (15s, 1m) or seconds"
        ))),
    }
}

impl LokiParams {
    pub(super) fn parse(raw: Option<String>) -> Result<LokiParams, LokiError> {
        let now = now_ns();
        let mut p = LokiParams {
            query: None,
            matches: Vec::new(),
            start_ns: now - DEFAULT_SINCE_NS,
            end_ns: now,
            time_ns: now,
            limit: DEFAULT_LIMIT,
            direction: Direction::Backward,
            step_ns: None,
            delay_for_secs: 0,
        };
        let (mut start, mut end, mut since) = (None, None, None);
        for (k, v) in query_pairs(raw) {
            match k.as_str() {
                "query" => p.query = Some(v),
                "match[]" | "match" => p.matches.push(v),
                "start" => start = Some(parse_time(&k, &v)?),
                "end" => end = Some(parse_time(&k, &v)?),
                "time" => p.time_ns = parse_time(&k, &v)?,
                "since" => since = Some(parse_seconds_or_duration(&k, &v)?),
                "step" => p.step_ns = Some(parse_seconds_or_duration(&k, &v)?),
                "limit" => {
                    p.limit = v.parse::<usize>().map_err(|_| {
                        LokiError::bad(format!("invalid limit '{v}': expected a whole number"))
                    })?
                }
                "direction" => {
                    p.direction = match v.to_ascii_lowercase().as_str() {
                        "backward" => Direction::Backward,
                        "forward" => Direction::Forward,
                        _ => {
                            return Err(LokiError::bad(format!(
                                "invalid direction '{v}': expected forward or backward"
                            )))
                        }
                    }
                }
                "delay_for" => {
                    p.delay_for_secs = v.parse().map_err(|_| {
                        LokiError::bad(format!("invalid delay_for '{v}': expected seconds"))
                    })?
                }
                // Sent by Grafana, meaningful to Loki's cache and
                // sharding only: nothing to do here.
                "interval" | "shards" | "supportingQueryType" => {}
                other => {
                    return Err(LokiError::bad(format!(
                        "unknown parameter '{other}' (expected query, start, end, since, time, step, limit, direction, match[], delay_for)"
                    )))
                }
            }
        }
        p.end_ns = end.unwrap_or(now);
        p.start_ns = match (start, since) {
            (Some(s), _) => s,
            (None, Some(since)) => (p.end_ns - since).max(0),
            (None, None) => (p.end_ns - DEFAULT_SINCE_NS).max(0),
        };
        if p.end_ns < p.start_ns {
            return Err(LokiError::bad(
                "the end timestamp must not be before the start time",
            ));
        }
        Ok(p)
    }

    /// The query, which the endpoint needs.
    pub(super) fn query(&self) -> Result<&str, LokiError> {
        self.query
            .as_deref()
            .ok_or_else(|| LokiError::bad("missing parameter 'query'"))
    }

    /// A range query's step: as given, or Loki's default (the range over
    /// 250, at least a second).
    pub(super) fn step(&self) -> i64 {
        self.step_ns.unwrap_or_else(|| {
            let secs = ((self.end_ns - self.start_ns) / 250 / 1_000_000_000).max(1);
            secs * 1_000_000_000
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_as_loki_reads_them() {
        let t = |v: &str| parse_time("start", v).unwrap();
        assert_eq!(t("1700000000"), 1_700_000_000_000_000_000);
        assert_eq!(t("1700000000.5"), 1_700_000_000_500_000_000);
        assert_eq!(t("1700000000123456789"), 1_700_000_000_123_456_789);
        assert_eq!(t("2023-11-14T22:13:20Z"), 1_700_000_000_000_000_000);
        assert_eq!(t("2023-11-14T22:13:20.25+00:00"), 1_700_000_000_250_000_000);
        let e = parse_time("end", "yesterday").unwrap_err();
        assert!(e.message().contains("invalid end 'yesterday'"), "{e:?}");
        // Past 2116, or before 1970: refused, not overflowed.
        assert!(parse_time("end", "9999999999.5").is_err());
        assert!(parse_time("end", "-9223372036854775808").is_err());
        assert!(parse_time("end", "99999999999999999999").is_err());
        assert_eq!(t("4000000000"), 4_000_000_000_000_000_000);
    }

    #[test]
    fn steps_are_seconds_or_durations() {
        assert_eq!(
            parse_seconds_or_duration("step", "15").unwrap(),
            15_000_000_000
        );
        assert_eq!(
            parse_seconds_or_duration("step", "0.5").unwrap(),
            500_000_000
        );
        assert_eq!(
            parse_seconds_or_duration("step", "1m").unwrap(),
            60_000_000_000
        );
        assert!(parse_seconds_or_duration("step", "0").is_err());
        assert!(parse_seconds_or_duration("step", "0.0000000001").is_err());
        assert!(parse_seconds_or_duration("step", "soon").is_err());
    }

    #[test]
    fn defaults_and_checks() {
        let p = LokiParams::parse(Some("query=x".into())).unwrap();
        assert_eq!((p.limit, p.direction), (100, Direction::Backward));
        assert_eq!(p.end_ns - p.start_ns, DEFAULT_SINCE_NS);
        let p = LokiParams::parse(Some("start=100&end=400&direction=FORWARD".into())).unwrap();
        assert_eq!((p.start_ns, p.end_ns), (100_000_000_000, 400_000_000_000));
        assert_eq!(p.direction, Direction::Forward);
        // Loki's default step: the range over 250, at least 1 s.
        assert_eq!(p.step(), 1_000_000_000);
        let p = LokiParams::parse(Some("end=10000&since=1h".into())).unwrap();
        assert_eq!(p.start_ns, 10_000_000_000_000 - DEFAULT_SINCE_NS);
        assert_eq!(p.step(), 14_000_000_000);
        assert!(LokiParams::parse(Some("start=500&end=400".into())).is_err());
        let e = LokiParams::parse(Some("bogus=1".into())).unwrap_err();
        assert!(e.message().contains("unknown parameter 'bogus'"));
    }
}
