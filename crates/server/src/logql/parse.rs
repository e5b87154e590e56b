//! A recursive-descent parser for the LogQL subset (`mod.rs` lists it).
//! Errors say where, as Loki's do (`parse error at line 1, col 12: …`),
//! and a LogQL feature cblogs does not serve is named as such.

use regex::Regex;

use super::labels::{LabelMatcher, MatchOp, StreamSelector};
use super::{LineFilterExpr, LogQuery, MetricQuery, Query, RangeFunction};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("parse error at line {line}, col {col}: {message}")]
    Syntax {
        line: usize,
        col: usize,
        message: String,
    },
    /// Valid LogQL that cblogs does not answer.
    #[error(
        "unsupported LogQL feature: {0}. cblogs answers stream selectors, the line filters \
         |=, !=, |~ and !~, count_over_time, rate, sum by (…) and vector() constants"
    )]
    Unsupported(String),
}

/// Parses a whole query.
pub fn parse(query: &str) -> Result<Query, ParseError> {
    let mut p = Parser { src: query, pos: 0 };
    let q = p.query()?;
    p.end()?;
    Ok(q)
}

/// Parses a stream selector alone (`match[]`, `labels=`), or a log query
/// whose line filters are then refused.
pub fn parse_selector(selector: &str) -> Result<StreamSelector, ParseError> {
    let mut p = Parser {
        src: selector,
        pos: 0,
    };
    let s = p.selector()?;
    p.end()?;
    Ok(s)
}

/// Aggregations and functions LogQL has that cblogs does not: named in
/// the error rather than reported as a syntax error.
const UNSUPPORTED_CALLS: &[&str] = &[
    "avg",
    "min",
    "max",
    "stddev",
    "stdvar",
    "count",
    "topk",
    "bottomk",
    "sort",
    "sort_desc",
    "bytes_over_time",
    "bytes_rate",
    "sum_over_time",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
    "first_over_time",
    "last_over_time",
    "stdvar_over_time",
    "stddev_over_time",
    "quantile_over_time",
    "absent_over_time",
    "rate_counter",
    "label_replace",
    "approx_topk",
];

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn skip_space(&mut self) {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.pos += rest.len() - trimmed.len();
            // LogQL comments run to the end of the line.
            if trimmed.starts_with('#') {
                self.pos += trimmed.find('\n').unwrap_or(trimmed.len());
            } else {
                return;
            }
        }
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        let before = &self.src[..self.pos];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ParseError::Syntax {
            line,
            col,
            message: message.into(),
        }
    }

    /// What is at the cursor, for an error.
    fn found(&self) -> String {
        let rest = self.rest();
        match rest.chars().next() {
            None => "the end of the query".into(),
            Some(_) => {
                let word: String = rest.chars().take(12).collect();
                format!("'{word}'")
            }
        }
    }

    /// Takes `token` if it is next.
    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), ParseError> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(format!("expected '{token}', found {}", self.found())))
        }
    }

    fn end(&mut self) -> Result<(), ParseError> {
        self.skip_space();
        if self.rest().is_empty() {
            return Ok(());
        }
        for op in [
            "+", "-", "*", "/", "%", "^", "==", ">", "<", "and ", "or ", "unless ",
        ] {
            if self.rest().starts_with(op) {
                return Err(ParseError::Unsupported(format!(
                    "the binary operator '{}' between queries",
                    op.trim()
                )));
            }
        }
        if self.rest().starts_with("offset") {
            return Err(ParseError::Unsupported("offset".into()));
        }
        Err(self.error(format!("unexpected {} after the query", self.found())))
    }

    /// An identifier (label or function name), if one is next.
    fn ident(&mut self) -> Option<&'a str> {
        self.skip_space();
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
            .map_or(rest.len(), |(i, _)| i);
        if len == 0 {
            return None;
        }
        self.pos += len;
        Some(&rest[..len])
    }

    fn peek_ident(&mut self) -> Option<&'a str> {
        let at = self.pos;
        let id = self.ident();
        self.pos = at;
        id
    }

    fn query(&mut self) -> Result<Query, ParseError> {
        self.skip_space();
        if self.rest().starts_with('{') {
            return self.log_query().map(Query::Logs);
        }
        if self.rest().starts_with('(') {
            return Err(ParseError::Unsupported("a parenthesised query".into()));
        }
        match self.peek_ident() {
            Some("vector") | None if !self.rest().starts_with('{') => self.constant(),
            Some(_) => self.metric().map(Query::Metric),
            None => Err(self.error(format!("expected a query, found {}", self.found()))),
        }
    }

    /// `vector(N)` or a number, joined by `+ - * /` (`*` and `/` first).
    fn constant(&mut self) -> Result<Query, ParseError> {
        let mut value = self.constant_product()?;
        loop {
            self.skip_space();
            let op = match self.rest().chars().next() {
                Some(c @ ('+' | '-')) => c,
                _ => return Ok(Query::Constant(value)),
            };
            self.pos += 1;
            let rhs = self.constant_product()?;
            value = if op == '+' { value + rhs } else { value - rhs };
        }
    }

    fn constant_product(&mut self) -> Result<f64, ParseError> {
        let mut value = self.constant_term()?;
        loop {
            self.skip_space();
            let op = match self.rest().chars().next() {
                Some(c @ ('*' | '/')) => c,
                _ => return Ok(value),
            };
            self.pos += 1;
            let rhs = self.constant_term()?;
            value = if op == '*' { value * rhs } else { value / rhs };
        }
    }

    fn constant_term(&mut self) -> Result<f64, ParseError> {
        if self.peek_ident() == Some("vector") {
            self.ident();
            self.expect("(")?;
            let n = self.number()?;
            self.expect(")")?;
            return Ok(n);
        }
        self.number()
    }

    fn number(&mut self) -> Result<f64, ParseError> {
        self.skip_space();
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|&(i, c)| {
                !(c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E' || (i == 0 && c == '-'))
            })
            .map_or(rest.len(), |(i, _)| i);
        match rest[..len].parse::<f64>() {
            Ok(n) if len > 0 => {
                self.pos += len;
                Ok(n)
            }
            _ => Err(self.error(format!("expected a number, found {}", self.found()))),
        }
    }

    fn metric(&mut self) -> Result<MetricQuery, ParseError> {
        let at = self.pos;
        let name = self.ident().unwrap_or_default();
        match name {
            "sum" => {
                let mut by = self.grouping()?;
                self.expect("(")?;
                let mut inner = self.range_aggregation()?;
                self.expect(")")?;
                if by.is_none() {
                    by = self.grouping()?;
                }
                inner.sum_by = Some(by.unwrap_or_default());
                Ok(inner)
            }
            "count_over_time" | "rate" => {
                self.pos = at;
                self.range_aggregation()
            }
            n if UNSUPPORTED_CALLS.contains(&n) => {
                Err(ParseError::Unsupported(format!("the function '{n}'")))
            }
            n => {
                self.pos = at;
                Err(self.error(format!("unknown function '{n}'")))
            }
        }
    }

    /// `by (a, b)`; `without` is refused.
    fn grouping(&mut self) -> Result<Option<Vec<String>>, ParseError> {
        match self.peek_ident() {
            Some("by") => {
                self.ident();
            }
            Some("without") => return Err(ParseError::Unsupported("grouping 'without'".into())),
            _ => return Ok(None),
        }
        self.expect("(")?;
        let mut labels = Vec::new();
        if self.eat(")") {
            return Ok(Some(labels));
        }
        loop {
            let label = self.ident().ok_or_else(|| {
                self.error(format!("expected a label name, found {}", self.found()))
            })?;
            labels.push(label.to_owned());
            if self.eat(")") {
                return Ok(Some(labels));
            }
            self.expect(",")?;
        }
    }

    /// `count_over_time(logs [range])` or `rate(…)`.
    fn range_aggregation(&mut self) -> Result<MetricQuery, ParseError> {
        let at = self.pos;
        let function = match self.ident() {
            Some("count_over_time") => RangeFunction::CountOverTime,
            Some("rate") => RangeFunction::Rate,
            Some("sum") => return Err(ParseError::Unsupported("a sum of a sum".into())),
            Some(n) if UNSUPPORTED_CALLS.contains(&n) => {
                return Err(ParseError::Unsupported(format!("the function '{n}'")))
            }
            _ => {
                self.pos = at;
                return Err(self.error(format!(
                    "expected count_over_time or rate, found {}",
                    self.found()
                )));
            }
        };
        self.expect("(")?;
        let logs = self.log_query()?;
        self.expect("[")?;
        self.skip_space();
        let close = self
            .rest()
            .find(']')
            .ok_or_else(|| self.error("expected ']' after the range"))?;
        let text = self.rest()[..close].trim();
        if text.contains(':') {
            return Err(ParseError::Unsupported("subqueries ([range:step])".into()));
        }
        let range_ns = parse_duration(text).map_err(|e| self.error(e))?;
        if range_ns <= 0 {
            return Err(self.error("the range must be positive"));
        }
        self.pos += close + 1;
        if self.peek_ident() == Some("offset") {
            return Err(ParseError::Unsupported("offset".into()));
        }
        self.expect(")")?;
        Ok(MetricQuery {
            function,
            logs,
            range_ns,
            sum_by: None,
        })
    }

    fn log_query(&mut self) -> Result<LogQuery, ParseError> {
        let selector = self.selector()?;
        let mut filters = Vec::new();
        loop {
            self.skip_space();
            let rest = self.rest();
            let (negated, regex) = if rest.starts_with("|=") {
                (false, false)
            } else if rest.starts_with("!=") {
                (true, false)
            } else if rest.starts_with("|~") {
                (false, true)
            } else if rest.starts_with("!~") {
                (true, true)
            } else if rest.starts_with('|') {
                self.pos += 1;
                self.pipeline_stage()?;
                continue;
            } else {
                return Ok(LogQuery { selector, filters });
            };
            self.pos += 2;
            self.skip_space();
            if self.peek_ident().is_some() {
                // `|= ip("…")` and the like.
                return Err(ParseError::Unsupported(format!(
                    "the line filter function '{}'",
                    self.peek_ident().unwrap_or_default()
                )));
            }
            let value = self.string()?;
            if regex {
                Regex::new(&value).map_err(|e| self.error(format!("invalid regex: {e}")))?;
            }
            if self.peek_ident() == Some("or") {
                return Err(ParseError::Unsupported("'or' in a line filter".into()));
            }
            filters.push(LineFilterExpr {
                negated,
                regex,
                value,
            });
        }
    }

    /// After a `|`: `drop __error__` is taken (it changes nothing here);
    /// every other stage is refused by name.
    fn pipeline_stage(&mut self) -> Result<(), ParseError> {
        let at = self.pos;
        match self.ident() {
            Some("drop") => {
                let labels = self.ident();
                self.skip_space();
                let more = self.rest().starts_with(',') || self.rest().starts_with('=');
                if labels == Some("__error__") && !more {
                    return Ok(());
                }
                Err(ParseError::Unsupported(
                    "'drop' of labels other than __error__".into(),
                ))
            }
            Some(stage) => Err(ParseError::Unsupported(format!(
                "the pipeline stage '| {stage}'"
            ))),
            None => {
                self.pos = at;
                Err(ParseError::Unsupported(format!(
                    "the pipeline stage '| {}'",
                    self.rest().chars().take(12).collect::<String>().trim()
                )))
            }
        }
    }

    fn selector(&mut self) -> Result<StreamSelector, ParseError> {
        self.expect("{")?;
        let mut matchers = Vec::new();
        if self.eat("}") {
            return Err(self.error("a stream selector needs at least one label matcher"));
        }
        loop {
            let name = self
                .ident()
                .ok_or_else(|| {
                    self.error(format!("expected a label name, found {}", self.found()))
                })?
                .to_owned();
            self.skip_space();
            let op = if self.eat("=~") {
                MatchOp::Matches
            } else if self.eat("!~") {
                MatchOp::NotMatches
            } else if self.eat("!=") {
                MatchOp::NotEqual
            } else if self.eat("=") {
                MatchOp::Equal
            } else {
                return Err(self.error(format!(
                    "expected =, !=, =~ or !~ after '{name}', found {}",
                    self.found()
                )));
            };
            let value = self.string()?;
            let regex = match op {
                MatchOp::Matches | MatchOp::NotMatches => Some(
                    Regex::new(&format!("^(?:{value})$"))
                        .map_err(|e| self.error(format!("invalid regex for '{name}': {e}")))?,
                ),
                _ => None,
            };
            matchers.push(LabelMatcher {
                name,
                op,
                value,
                regex,
            });
            if self.eat("}") {
                return Ok(StreamSelector { matchers });
            }
            self.expect(",")?;
        }
    }

    /// A Go string literal: `"…"` with escapes, or `` `…` `` raw.
    fn string(&mut self) -> Result<String, ParseError> {
        self.skip_space();
        let rest = self.rest();
        if let Some(raw) = rest.strip_prefix('`') {
            let end = raw
                .find('`')
                .ok_or_else(|| self.error("unterminated raw string"))?;
            self.pos += end + 2;
            return Ok(raw[..end].to_owned());
        }
        let Some(body) = rest.strip_prefix('"') else {
            return Err(self.error(format!("expected a string, found {}", self.found())));
        };
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 2;
                    return Ok(out);
                }
                '\\' => {
                    let (_, e) = chars
                        .next()
                        .ok_or_else(|| self.error("unterminated string"))?;
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'a' => out.push('\x07'),
                        'b' => out.push('\x08'),
                        'f' => out.push('\x0c'),
                        'v' => out.push('\x0b'),
                        '\\' | '"' | '\'' => out.push(e),
                        'u' | 'U' | 'x' => {
                            let n = match e {
                                'u' => 4,
                                'U' => 8,
                                _ => 2,
                            };
                            let hex: String = chars.by_ref().take(n).map(|(_, c)| c).collect();
                            let ch = u32::from_str_radix(&hex, 16)
                                .ok()
                                .filter(|_| hex.len() == n)
                                .and_then(char::from_u32)
                                .ok_or_else(|| self.error(format!("bad escape '\\{e}{hex}'")))?;
                            out.push(ch);
                        }
                        other => {
                            return Err(self.error(format!(
                                "unknown escape '\\{other}' in a string (a regex's backslash is written \\\\ in \"…\", or use `…`)"
                            )))
                        }
                    }
                }
                c => out.push(c),
            }
        }
        Err(self.error("unterminated string"))
    }
}

/// A Prometheus duration (`1h30m`, `5m`, `500ms`, `2d`, `1w`) or Go's
/// (`1.5h`, `100us`), in nanoseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("bad duration '{text}' (expected e.g. 5m, 1h30m, 500ms)");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86_400e9,
            "w" => 7.0 * 86_400e9,
            "y" => 365.0 * 86_400e9,
            _ => return Err(bad()),
        };
        total += n * unit;
        rest = &rest[unit_len..];
    }
    // Past 2^62 ns (146 years), a range added to a time could overflow.
    if total > (1u64 << 62) as f64 {
        return Err(bad());
    }
    Ok(total.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cblogs_core::{JobKey, Source, Stream};

    fn source(job: &str, process: &str, stream: Stream) -> Source {
        Source {
            cluster: "devcluster".into(),
            host: "agent-1".into(),
            task_id: "t".into(),
            job: job.parse::<JobKey>().unwrap(),
            instance: 3,
            process: process.into(),
            run: 0,
            stream,
        }
    }

    fn logs(q: &str) -> LogQuery {
        match parse(q).unwrap() {
            Query::Logs(l) => l,
            other => panic!("{q}: {other:?}"),
        }
    }

    #[test]
    fn selectors_match_a_sources_labels() {
        let hello = source("www-data/prod/hello", "hello", Stream::Stdout);
        let err = source("www-data/prod/hello", "hello", Stream::Stderr);
        let sel = |q: &str| logs(q).selector;
        assert!(sel(r#"{job="hello"}"#).matches(&hello));
        assert!(!sel(r#"{job="hell"}"#).matches(&hello));
        assert!(sel(r#"{job=~"hel.*", stream!="stderr"}"#).matches(&hello));
        assert!(!sel(r#"{job=~"hel.*", stream!="stderr"}"#).matches(&err));
        // Anchored at both ends, as Loki's.
        assert!(!sel(r#"{job=~"ell"}"#).matches(&hello));
        assert!(
            sel(r#"{instance="3", cluster="devcluster", role="www-data", env="prod"}"#)
                .matches(&hello)
        );
        assert!(sel(r#"{host!~"agent-[2-9]"}"#).matches(&hello));
        // A label no source has is "".
        assert!(!sel(r#"{foo="x"}"#).matches(&hello));
        assert!(sel(r#"{foo!="x", job="hello"}"#).matches(&hello));
    }

    #[test]
    fn line_filters_chain() {
        let q = logs(r#"{job="hello"} |= "error" != `timeout` |~ "(?i)disk\\d" !~ "x+""#);
        let ops: Vec<(bool, bool, &str)> = q
            .filters
            .iter()
            .map(|f| (f.negated, f.regex, f.value.as_str()))
            .collect();
        assert_eq!(
            ops,
            [
                (false, false, "error"),
                (true, false, "timeout"),
                (false, true, "(?i)disk\\d"),
                (true, true, "x+"),
            ]
        );
        assert_eq!(q.filters[0].expression(), "error");
        assert_eq!(
            LineFilterExpr {
                negated: false,
                regex: false,
                value: "a.b".into()
            }
            .expression(),
            "a\\.b"
        );
        // Grafana's volume query carries this stage; it changes nothing.
        assert_eq!(logs(r#"{job="hello"} | drop __error__"#).filters, []);
    }

    #[test]
    fn metric_queries() {
        let q = parse(
            r#"sum by (level) (count_over_time({job="hello"} |= "x" | drop __error__ [1m]))"#,
        )
        .unwrap();
        let Query::Metric(m) = q else { panic!() };
        assert_eq!(m.function, RangeFunction::CountOverTime);
        assert_eq!(m.range_ns, 60_000_000_000);
        assert_eq!(m.sum_by, Some(vec!["level".to_string()]));
        assert_eq!(m.logs.filters.len(), 1);
        let Query::Metric(m) = parse(r#"sum(rate({job="a"}[30s])) by (job, stream)"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(m.function, RangeFunction::Rate);
        assert_eq!(m.sum_by, Some(vec!["job".into(), "stream".into()]));
        let Query::Metric(m) = parse(r#"count_over_time({job="a"}[1h30m])"#).unwrap() else {
            panic!()
        };
        assert_eq!((m.sum_by, m.range_ns), (None, 5_400_000_000_000));
        let Query::Metric(m) = parse(r#"sum(count_over_time({job="a"}[5s]))"#).unwrap() else {
            panic!()
        };
        assert_eq!(m.sum_by, Some(vec![]));
    }

    #[test]
    fn the_health_check_is_a_constant() {
        assert_eq!(parse("vector(1)+vector(1)").unwrap(), Query::Constant(2.0));
        assert_eq!(parse(" vector(2) * 3 - 1 ").unwrap(), Query::Constant(5.0));
        assert_eq!(
            parse("vector(1)+vector(2)*vector(3)").unwrap(),
            Query::Constant(7.0)
        );
        assert_eq!(parse("8 / 2 / 2 - 1").unwrap(), Query::Constant(1.0));
    }

    #[test]
    fn features_outside_the_subset_are_named() {
        for (q, named) in [
            (r#"{job="a"} | json"#, "'| json'"),
            (r#"{job="a"} | logfmt | level="error""#, "'| logfmt'"),
            (r#"{job="a"} | line_format "{{.x}}""#, "line_format"),
            (r#"{job="a"} |= ip("1.2.3.4")"#, "'ip'"),
            (r#"{job="a"} |= "x" or "y""#, "'or'"),
            (r#"max(count_over_time({job="a"}[1m]))"#, "'max'"),
            (r#"bytes_over_time({job="a"}[1m])"#, "'bytes_over_time'"),
            (r#"sum without (job) (rate({job="a"}[1m]))"#, "without"),
            (
                r#"count_over_time({job="a"}[1m]) / 2"#,
                "binary operator '/'",
            ),
            (r#"count_over_time({job="a"}[1m] offset 5m)"#, "offset"),
            (r#"count_over_time({job="a"}[5m:1m])"#, "subqueries"),
            (r#"{job="a"} | drop level"#, "drop"),
        ] {
            match parse(q) {
                Err(ParseError::Unsupported(what)) => {
                    assert!(what.contains(named), "{q}: {what}")
                }
                other => panic!("{q}: {other:?}"),
            }
        }
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = parse(r#"{job="a""#).unwrap_err().to_string();
        assert!(
            e.starts_with("parse error at line 1, col 9: expected ','"),
            "{e}"
        );
        let e = parse(r#"{job="a"} |~ "(""#).unwrap_err().to_string();
        assert!(e.contains("invalid regex"), "{e}");
        let e = parse("{}").unwrap_err().to_string();
        assert!(e.contains("at least one label matcher"), "{e}");
        let e = parse(r#"count_over_time({job="a"}[5x])"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad duration '5x'"), "{e}");
        let e = parse(r#"{job="a"} |= "x" junk"#).unwrap_err().to_string();
        assert!(e.contains("unexpected 'junk'"), "{e}");
    }

    #[test]
    fn strings_take_go_escapes() {
        let q = logs(r#"{job="a\"b"} |= "tab\there\u00e9""#);
        assert_eq!(
            q.selector.as_labels().map(|l| l["job"].clone()),
            Some("a\"b".to_string())
        );
        assert_eq!(q.filters[0].value, "tab\there\u{e9}");
        // A selector printed back parses to itself (`labels=`).
        let again = parse_selector(&q.selector.to_string()).unwrap();
        assert_eq!(again, q.selector);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration("2d"), Ok(172_800_000_000_000));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("").is_err());
    }
}
