//! A source's labels, and the stream selector that matches them.

use std::borrow::Cow;
use std::fmt;

use cblogs_core::Source;
use regex::Regex;

/// The labels every source has, in the order Loki's API lists them.
pub const LABELS: [&str; 8] = [
    "cluster", "env", "host", "instance", "job", "process", "role", "stream",
];

/// The value of label `name` for `source`; "" for a label it does not have.
pub(super) fn label_value<'a>(source: &'a Source, name: &str) -> Cow<'a, str> {
    match name {
        "cluster" => Cow::Borrowed(&source.cluster),
        "role" => Cow::Borrowed(&source.job.role),
        "env" => Cow::Borrowed(&source.job.env),
        "job" => Cow::Borrowed(&source.job.name),
        "instance" => Cow::Owned(source.instance.to_string()),
        "process" => Cow::Borrowed(&source.process),
        "stream" => Cow::Borrowed(source.stream.as_str()),
        "host" => Cow::Borrowed(&source.host),
        _ => Cow::Borrowed(""),
    }
}

/// `=`, `!=`, `=~` or `!~`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MatchOp {
    Equal,
    NotEqual,
    Matches,
    NotMatches,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Matches => "=~",
            MatchOp::NotMatches => "!~",
        }
    }
}

/// One `name op "value"` of a selector.
#[derive(Debug, Clone)]
pub(super) struct LabelMatcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// `=~`, `!~`: the value anchored at both ends, as Loki does.
    pub regex: Option<Regex>,
}

impl PartialEq for LabelMatcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

impl LabelMatcher {
    fn matches(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Matches, Some(re)) => re.is_match(value),
            (MatchOp::NotMatches, Some(re)) => !re.is_match(value),
            (_, None) => false,
        }
    }
}

/// `{name op "value", …}`: the sources whose labels match every matcher.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamSelector {
    pub(super) matchers: Vec<LabelMatcher>,
}

impl StreamSelector {
    pub fn matches(&self, source: &Source) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches(&label_value(source, &m.name)))
    }

    /// The selector as a label set, if every matcher is `=` (a pushed
    /// stream's labels, in Prometheus' form).
    pub fn as_labels(&self) -> Option<std::collections::BTreeMap<String, String>> {
        self.matchers
            .iter()
            .map(|m| (m.op == MatchOp::Equal).then(|| (m.name.clone(), m.value.clone())))
            .collect()
    }
}

impl fmt::Display for StreamSelector {
    /// The selector as LogQL: what `labels=` takes back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, m) in self.matchers.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            // A JSON string is a LogQL string: the same escapes.
            let quoted = serde_json::to_string(&m.value).map_err(|_| fmt::Error)?;
            write!(f, "{}{}{}", m.name, m.op.as_str(), quoted)?;
        }
        f.write_str("}")
    }
}
