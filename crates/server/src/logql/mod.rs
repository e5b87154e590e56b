//! The part of LogQL (Loki's query language) that cblogsd answers, for
//! Grafana's Loki data source (`api/loki/`).
//!
//! ```text
//! {job="hello", env=~"prod|devel", stream!="stderr"}       a stream selector
//!     |= "text"  != "text"  |~ "regex"  !~ "regex"          line filters, all must hold
//! count_over_time(<logs> [5m])   rate(<logs> [1m])          matching lines per window
//! sum by (job) (<metric>)        sum(<metric>) by (job)     series added together
//! vector(1) + vector(1)                                     constants (the health check)
//! ```
//!
//! The labels are a source's: `cluster`, `role`, `env`, `job` (the job's
//! name), `instance`, `process`, `stream` and `host` ([`labels`]). A label
//! a source does not have has the value "" (Loki's rule), so `{foo="x"}`
//! selects nothing and `{foo!="x"}` everything.
//!
//! Anything else LogQL has (parser stages such as `| json`, `line_format`,
//! other aggregations, binary operators between queries, `offset`) is
//! refused with an error that names it ([`ParseError::Unsupported`]), never
//! skipped. The one pipeline stage taken is `| drop __error__`, which
//! Grafana adds to its volume query: with no parser stage no line has an
//! `__error__` label, so it changes nothing.
//!
//! Regexes are the `regex` crate's, not Go's RE2: the same syntax for all
//! but a few corners (see the README's Grafana section). Label matchers
//! `=~` and `!~` match the whole value, as in Loki; line filters `|~` and
//! `!~` match anywhere in the line.

mod labels;
mod parse;

pub use labels::{StreamSelector, LABELS};
pub use parse::{parse, parse_duration, parse_selector, ParseError};

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// Lines.
    Logs(LogQuery),
    /// Matching lines per window, as series.
    Metric(MetricQuery),
    /// A constant (`vector(1)+vector(1)`): one sample with no labels.
    Constant(f64),
}

/// A stream selector and the line filters after it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogQuery {
    pub selector: StreamSelector,
    pub filters: Vec<LineFilterExpr>,
}

/// `|=`, `!=`, `|~` or `!~` and its operand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFilterExpr {
    /// `!=` or `!~`: lines that do *not* match.
    pub negated: bool,
    /// `|~` or `!~`: the operand is a regex; otherwise a literal string.
    pub regex: bool,
    pub value: String,
}

impl LineFilterExpr {
    /// The filter as a regex in the `regex` crate's syntax.
    pub fn expression(&self) -> String {
        if self.regex {
            self.value.clone()
        } else {
            regex::escape(&self.value)
        }
    }
}

/// What a range function makes of the lines in each window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeFunction {
    /// Lines in the window.
    CountOverTime,
    /// Lines in the window per second of it.
    Rate,
}

/// `[sum by (labels)] (function(logs [range]))`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    pub function: RangeFunction,
    pub logs: LogQuery,
    /// The window each sample counts: `(t - range, t]`.
    pub range_ns: i64,
    /// `sum`: the series added together, grouped by these labels (none:
    /// one series). `None`: one series per stream.
    pub sum_by: Option<Vec<String>>,
}
