//! Finding a block's candidate lines in one pass over its text.
//!
//! Calling the regex on every line of a block costs more than the search
//! inside it when few lines match. When every match must start with one
//! of a few literals (regex-syntax's prefix extraction: `-F OutOfMemory`,
//! `Exception in thread "worker-\d+"`), one `memmem`/Aho-Corasick pass
//! over the block's text finds the lines that hold one; only those are
//! given to the regex.

use aho_corasick::AhoCorasick;
use cblogs_core::pattern::Pattern;
use regex_syntax::hir::literal::{ExtractKind, Extractor};

use crate::block::LineBlock;

/// Literals shorter than this find too much to be worth a pass.
const MIN_LITERAL: usize = 3;
/// More literals than this (`-i` on a long word) and the regex's own
/// search is as good.
const MAX_LITERALS: usize = 64;

pub struct Prefilter {
    finder: AhoCorasick,
}

impl Prefilter {
    /// A prefilter for `pattern`, when it has usable prefix literals.
    pub fn new(pattern: &Pattern) -> Option<Prefilter> {
        let hir = pattern.options().hir().ok()?;
        let mut seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
        seq.optimize_for_prefix_by_preference();
        let literals = seq.literals()?;
        if literals.is_empty()
            || literals.len() > MAX_LITERALS
            || seq.min_literal_len().is_none_or(|l| l < MIN_LITERAL)
        {
            return None;
        }
        let finder = AhoCorasick::new(literals.iter().map(|l| l.as_bytes())).ok()?;
        Some(Prefilter { finder })
    }

    /// The lines of `block` that hold one of the literals, in order. A
    /// block's text has its lines back to back, so after a hit the search
    /// goes on from the next line's start: a hit that runs across a line
    /// end cannot hide one inside the next line.
    pub fn candidate_lines(&self, block: &LineBlock) -> Vec<usize> {
        let text = block.text();
        let mut out = Vec::new();
        let mut at = 0;
        while at < text.len() {
            let Some(hit) = self.finder.find(&text[at..]) else {
                break;
            };
            let line = block.line_at(at + hit.start());
            out.push(line);
            at = block.line_end(line);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cblogs_core::pattern::PatternOptions;
    use cblogs_core::LineFlags;

    fn prefilter(p: &str, ignore_case: bool) -> Option<Prefilter> {
        let o = PatternOptions {
            pattern: p.into(),
            ignore_case,
            ..Default::default()
        };
        Prefilter::new(&Pattern::new(o, 1 << 20).unwrap())
    }

    #[test]
    fn finds_the_lines_holding_a_prefix_literal() {
        let mut b = LineBlock::new();
        for (i, l) in [
            "a OutOfMem",
            "oryError",
            "x OutOfMemoryError y",
            "",
            "OutOfMemoryErrorOutOfMemoryError",
        ]
        .iter()
        .enumerate()
        {
            b.push(i as u64 * 100, 1, LineFlags::default(), l.as_bytes());
        }
        let p = prefilter("OutOfMemoryError", false).unwrap();
        // Line 0 and 1 together hold the literal across their boundary.
        let lines = p.candidate_lines(&b);
        assert!(lines.contains(&2) && lines.contains(&4), "{lines:?}");
        assert!(prefilter(r"\w+Error", false).is_none());
        assert!(prefilter("ab", false).is_none());
        assert!(prefilter("error", true).is_some(), "32 case variants");
    }
}
