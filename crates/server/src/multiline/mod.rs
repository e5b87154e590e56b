//! Whole events: a log record that spans lines (a message and its stack
//! trace) is one event, the line that opens it and its continuation lines.
//!
//! Each line is marked as it is ingested, under the ingest lock, in its
//! source's order: [`LineFlags::continues`](cblogs_core::LineFlags) says
//! it goes on the event of its source's previous line. The mark is stored
//! with the line (the WAL, the blocks), so every reader finds an event's
//! bounds from the flags alone: `grep --events` and the page walk back to
//! the opening line and on to the next one, alerts wait for the next
//! opening line to send an event whole. Marking once, where lines arrive in
//! order, is what Promtail's multiline stage does too; a rule changed
//! applies to lines ingested after it.
//!
//! Which lines continue:
//! - a job with a `[[multiline]]` rule (cblogsd.toml): every line that its
//!   `firstline` regex does not match;
//! - any other job: Python tracebacks and Java stack traces, with no
//!   configuration ([`shapes`]);
//! - in every job: the rest of a line sent in pieces (`partial`);
//! - lines pushed by other senders (`push/`): the lines after the first
//!   of an entry, and only those (each entry is one event).
//!
//! An event holds at most its rule's `max_lines` (2000 for Java and
//! Python; pushed entries too): the line past it opens another.
//!
//! ```text
//! shapes.rs   Java and Python: which lines go on the event before them
//! marker.rs   EventMarker: per source where its event stands; marks a block's lines
//! ```

mod marker;
mod shapes;

pub use marker::EventMarker;

use cblogs_core::Selector;
use cblogs_core::Source;
use regex::bytes::Regex;

use crate::config::MultilineConfig;

/// Lines an event of Java or Python holds at most: above the JVM's 1,024
/// frames of a StackOverflowError, with its message and causes.
pub const AUTO_MAX_LINES: usize = 2000;

/// The most a `[[multiline]]` rule's `max_lines` may be.
pub const MAX_RULE_LINES: usize = 10_000;

/// One `[[multiline]]` rule, checked and compiled.
#[derive(Debug)]
pub struct MultilineRule {
    jobs: Vec<Selector>,
    firstline: Regex,
    max_lines: usize,
}

/// Every `[[multiline]]` rule of the config, in order: a source takes the
/// first one whose jobs name it.
#[derive(Debug, Default)]
pub struct MultilineRules {
    rules: Vec<MultilineRule>,
}

impl MultilineRules {
    /// The rules of `config`, or what is wrong with one (named by its
    /// place and field).
    pub fn new(config: &[MultilineConfig], regex_size_limit: usize) -> Result<Self, String> {
        let mut rules = Vec::with_capacity(config.len());
        for (i, c) in config.iter().enumerate() {
            let at = format!("[[multiline]] number {}", i + 1);
            if c.jobs.is_empty() {
                return Err(format!("{at}: 'jobs' names no job"));
            }
            let jobs = c
                .jobs
                .iter()
                .map(|j| Selector::parse(j).map_err(|e| format!("{at}: job '{j}': {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            let firstline = regex::bytes::RegexBuilder::new(&c.firstline)
                .size_limit(regex_size_limit)
                .build()
                .map_err(|e| format!("{at}: 'firstline' is not a valid regex: {e}"))?;
            if !(1..=MAX_RULE_LINES).contains(&c.max_lines) {
                return Err(format!(
                    "{at}: 'max_lines' must be between 1 and {MAX_RULE_LINES}"
                ));
            }
            rules.push(MultilineRule {
                jobs,
                firstline,
                max_lines: c.max_lines,
            });
        }
        Ok(MultilineRules { rules })
    }

    /// The rule for `source`'s lines; `None`: Java and Python.
    fn rule_for(&self, source: &Source) -> Option<usize> {
        let key = source.job_key();
        self.rules.iter().position(|r| {
            r.jobs
                .iter()
                .any(|j| j.matches_job(&key) && j.instances().contains(source.instance))
        })
    }
}
