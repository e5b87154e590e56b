//! [`EventMarker`]: per source, where its current event stands; marks each
//! new line as opening an event or continuing the one before it.

use std::collections::HashMap;
use std::sync::Arc;

use cblogs_core::Source;

use super::shapes::Shape;
use super::{MultilineRules, AUTO_MAX_LINES};
use crate::block::LineBlock;

/// Where one source's lines stand.
#[derive(Debug)]
struct SourceEvent {
    /// Its `[[multiline]]` rule, if one names its job.
    rule: Option<usize>,
    shape: Shape,
    /// Lines of its current event so far; 0 before its first line.
    lines: usize,
    /// Its last line had no newline: the next one is its rest.
    partial: bool,
}

/// Marks lines, source by source, in the order they are stored. Lives
/// under the ingest lock, so a source's lines are marked in their order
/// once each. Where a source stands is kept in memory only: after a
/// restart (or a source's move to another node) its shape starts afresh,
/// so a stack frame still continues the event before it, but a Python
/// exception line cut from its traceback by the restart opens one.
pub struct EventMarker {
    rules: Arc<MultilineRules>,
    sources: HashMap<u64, SourceEvent>,
}

impl EventMarker {
    pub fn new(rules: Arc<MultilineRules>) -> Self {
        EventMarker {
            rules,
            sources: HashMap::new(),
        }
    }

    /// After the WAL failed and what was queued is dropped: every source
    /// starts afresh (its lines are sent again).
    pub fn forget(&mut self) {
        self.sources.clear();
    }

    /// Marks the lines of `block` (the next lines of `source`) that
    /// continue an event; `earlier`: the source holds lines before them
    /// (its first line here may continue their last event); `pushed`:
    /// each entry is an event (its lines after the first come marked).
    pub fn mark(&mut self, source: &Source, block: &mut LineBlock, earlier: bool, pushed: bool) {
        let rules = &self.rules;
        let at = self
            .sources
            .entry(source.id())
            .or_insert_with(|| SourceEvent {
                rule: rules.rule_for(source),
                shape: Shape::default(),
                lines: usize::from(earlier),
                partial: false,
            });
        for i in 0..block.len() {
            let line = block.line(i);
            let (bytes, flags) = (line.bytes, line.flags);
            let rule = at.rule.map(|r| &rules.rules[r]);
            let max = rule.map_or(AUTO_MAX_LINES, |r| r.max_lines);
            // The shape follows every line, a forced one too.
            let shaped = match rule {
                _ if pushed => false,
                Some(r) => !r.firstline.is_match(bytes),
                None => at.shape.next(bytes),
            };
            let forced = flags.continues || at.partial;
            at.partial = flags.partial;
            let continues = at.lines > 0 && at.lines < max && (forced || shaped);
            if continues {
                at.lines += 1;
                block.set_continues(i, true);
            } else {
                // Past max_lines a line marked by its sender opens one too.
                at.lines = 1;
                block.set_continues(i, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MultilineConfig;
    use cblogs_core::{LineFlags, Stream};

    fn block(lines: &[&str], flags: LineFlags) -> LineBlock {
        let mut b = LineBlock::new();
        let mut offset = 0;
        for l in lines {
            b.push(offset, 1, flags, l.as_bytes());
            offset += l.len() as u64 + 1;
        }
        b
    }

    fn continues(b: &LineBlock) -> Vec<bool> {
        b.lines().map(|l| l.flags.continues).collect()
    }

    #[test]
    fn a_rule_names_its_jobs_first_lines_and_the_rest_follow_java_and_python() {
        let config = [MultilineConfig {
            jobs: vec!["www-data/prod/legacy".into()],
            firstline: r"^\[\d{2}:\d{2}\]".into(),
            max_lines: 3,
        }];
        let rules = Arc::new(MultilineRules::new(&config, 1 << 20).unwrap());
        let mut m = EventMarker::new(rules);
        let legacy = Source::example("www-data/prod/legacy", 0, "app", Stream::Stdout);
        let mut b = block(
            &[
                "[10:00] start",
                "  detail",
                "more",
                "and more",
                "[10:01] next",
            ],
            LineFlags::default(),
        );
        m.mark(&legacy, &mut b, false, false);
        assert_eq!(
            continues(&b),
            [false, true, true, false, false],
            "an event holds max_lines at most"
        );
        // Across batches, and a job with no rule gets Java and Python.
        let mut b = block(&["tail of the last"], LineFlags::default());
        m.mark(&legacy, &mut b, true, false);
        assert_eq!(continues(&b), [true]);
        let hello = Source::example("www-data/prod/hello", 0, "app", Stream::Stderr);
        let mut b = block(
            &["ERROR boom", "java.io.IOException: x", "\tat a.B(B.java:1)"],
            LineFlags::default(),
        );
        m.mark(&hello, &mut b, false, false);
        assert_eq!(continues(&b), [false, true, true]);
    }

    #[test]
    fn a_sources_first_line_opens_and_a_partial_lines_rest_continues() {
        let mut m = EventMarker::new(Arc::new(MultilineRules::default()));
        let s = Source::example("www-data/prod/hello", 0, "app", Stream::Stderr);
        let mut b = block(&["\tat a.B(B.java:1)"], LineFlags::default());
        m.mark(&s, &mut b, false, false);
        assert_eq!(continues(&b), [false], "nothing before it to continue");
        // After a restart, a frame still continues what the source held.
        let mut fresh = EventMarker::new(Arc::new(MultilineRules::default()));
        let mut b = block(&["\tat a.C(C.java:2)"], LineFlags::default());
        fresh.mark(&s, &mut b, true, false);
        assert_eq!(continues(&b), [true]);
        let partial = LineFlags {
            partial: true,
            ..LineFlags::default()
        };
        let mut b = block(&["INFO half a li"], partial);
        m.mark(&s, &mut b, true, false);
        let mut b = block(&["ne", "INFO next"], LineFlags::default());
        m.mark(&s, &mut b, true, false);
        assert_eq!(continues(&b), [true, false]);
    }

    #[test]
    fn a_pushed_entry_is_one_event_whatever_its_lines() {
        let mut m = EventMarker::new(Arc::new(MultilineRules::default()));
        let s = Source::example("app/default/pushed", 0, "app", Stream::Stdout);
        let mut b = block(
            &["ERROR boom", "Traceback (most recent call last):"],
            LineFlags::default(),
        );
        m.mark(&s, &mut b, false, true);
        assert_eq!(continues(&b), [false, false], "two entries: two events");
        let cont = LineFlags {
            continues: true,
            ..LineFlags::default()
        };
        let mut b = block(&["next entry's second line"], cont);
        m.mark(&s, &mut b, true, true);
        assert_eq!(continues(&b), [true]);
        // An entry longer than an event may be: the line past it opens one.
        let long = vec!["x"; AUTO_MAX_LINES + 1];
        let mut b = block(&long, cont);
        let fresh = Source::example("app/default/long", 0, "app", Stream::Stdout);
        m.mark(&fresh, &mut b, false, true);
        let marks = continues(&b);
        assert!(!marks[0] && marks[1..AUTO_MAX_LINES].iter().all(|c| *c));
        assert!(!marks[AUTO_MAX_LINES], "the line past max_lines opens");
    }

    #[test]
    fn bad_rules_are_named() {
        let bad = |jobs: &[&str], firstline: &str, max_lines| {
            MultilineRules::new(
                &[MultilineConfig {
                    jobs: jobs.iter().map(|s| s.to_string()).collect(),
                    firstline: firstline.into(),
                    max_lines,
                }],
                1 << 20,
            )
            .unwrap_err()
        };
        assert!(bad(&["a/b/c"], "(", 5).contains("'firstline' is not a valid regex"));
        assert!(bad(&[], "x", 5).contains("names no job"));
        assert!(bad(&["a/b/c"], "x", 0).contains("max_lines"));
        assert!(bad(&["a/b/c"], "x", 10_001).contains("between 1 and 10000"));
    }
}
