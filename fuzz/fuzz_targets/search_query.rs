//! Search and histogram query strings, and the search planner.
//!
//! Input: `s` or `h` (search or histogram endpoint; any other first byte
//! is a search), the query string up to the first `\n`, then lines of text
//! to search (split at `\n`). For example:
//!
//! ```text
//! spattern=Error&job=www-data/prod/hello&since_ns=1764032523000000000
//! 12:00:01 ERROR connection reset
//! ```
//!
//! `cblogs_server::testing::check_query` parses the query as the
//! endpoint would and compiles its pattern; it never panics. When it
//! accepts, the pattern's plan (`Need::of(..).terms()`, `search/plan.rs`)
//! and its prefilter (`Prefilter`) are built, and both must be sound on
//! the given lines: a line the regex matches holds the index terms the
//! plan asks for (the tokens `distinct_tokens` makes of it, the index's
//! tokenizer contract), and is one of the prefilter's candidate lines.

#![no_main]

use std::collections::HashSet;

use cblogs_core::pattern::{Pattern, PatternOptions};
use cblogs_core::LineFlags;
use cblogs_server::testing::{
    check_query, distinct_tokens, LineBlock, Need, Prefilter, TermMatch, TermNeed,
};
use libfuzzer_sys::fuzz_target;

/// The regex size limit `check_query` compiles with.
const SIZE_LIMIT: usize = 1 << 20;

fn flag(v: &str) -> bool {
    matches!(v, "" | "true" | "1" | "yes")
}

/// The pattern options the endpoint would build from an accepted query.
fn options(query: &str) -> Option<PatternOptions> {
    let mut pattern = None;
    let (mut fixed, mut ignore_case, mut word) = (false, false, false);
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "pattern" => pattern = Some(v.into_owned()),
            "fixed" => fixed = flag(&v),
            "ignore_case" => ignore_case = flag(&v),
            "word" => word = flag(&v),
            _ => {}
        }
    }
    Some(PatternOptions {
        pattern: pattern?,
        fixed,
        ignore_case,
        word,
    })
}

/// Does a block whose only terms are `terms` satisfy `need`? (As
/// `index/candidates.rs` evaluates it on a segment's term dictionary.)
fn holds(need: &TermNeed, terms: &HashSet<&str>) -> bool {
    match need {
        TermNeed::Any => true,
        TermNeed::Term(ms) => ms.iter().any(|m| {
            terms.iter().any(|t| match m {
                TermMatch::Exact(e) => t == e,
                TermMatch::Prefix(p) => t.starts_with(p.as_str()),
                TermMatch::Suffix(p) => t.ends_with(p.as_str()),
                TermMatch::Contains(p) => t.contains(p.as_str()),
            })
        }),
        TermNeed::All(parts) => parts.iter().all(|p| holds(p, terms)),
        TermNeed::OneOf(parts) => parts.iter().any(|p| holds(p, terms)),
    }
}

fn block(lines: &[&[u8]]) -> LineBlock {
    let mut b = LineBlock::new();
    let mut offset = 0;
    for line in lines {
        b.push(offset, 1, LineFlags::default(), line);
        offset += line.len() as u64 + 1;
    }
    b
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let histogram = kind == b'h';
    let (query, text) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let query = String::from_utf8_lossy(query);
    if let Err(e) = check_query(&query, histogram) {
        assert!(!e.is_empty(), "an error without words for {query:?}");
        return;
    }
    let Some(o) = options(&query) else {
        return;
    };
    let pattern = Pattern::new(o.clone(), SIZE_LIMIT).expect("check_query compiled it");
    let hir = o.hir().expect("a compiled pattern has a syntax tree");
    let need = Need::of(&hir).terms();
    let prefilter = Prefilter::new(&pattern);

    let lines: Vec<&[u8]> = if text.is_empty() {
        Vec::new()
    } else {
        text.split(|&b| b == b'\n').collect()
    };
    let all = block(&lines);
    let candidates = prefilter.as_ref().map(|p| p.candidate_lines(&all));
    for (i, line) in lines.iter().enumerate() {
        if !pattern.is_match(line) {
            continue;
        }
        let tokens = distinct_tokens(&block(&[line]));
        let terms: HashSet<&str> = tokens.split(' ').filter(|t| !t.is_empty()).collect();
        assert!(
            holds(&need, &terms),
            "the plan rules out a matching line\npattern {o:?}\nline {:?}\nterms {terms:?}\nneed {need:?}",
            String::from_utf8_lossy(line)
        );
        if let Some(c) = &candidates {
            assert!(
                c.contains(&i),
                "the prefilter skips matching line {i}\npattern {o:?}\nlines {lines:?}\ncandidates {c:?}"
            );
        }
    }
});
