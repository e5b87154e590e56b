//! From a pattern to the index terms a matching line's block must hold.
//!
//! The index knows, per block, its distinct tokens (runs of token characters,
//! lowercased; long numbers by prefix; see `index/tokens.rs`). A regex only tells
//! us substrings a matching line must contain, so planning is two steps:
//!
//! 1. [`Need`]: walk the regex's syntax tree (regex-syntax's HIR) for the
//!    literal strings any match must contain, as an AND/OR formula
//!    (`Exception in thread "worker-\d+"` needs `exception in thread
//!    "worker-`). Small classes (`[Ee]`, what `-i` makes of letters) expand
//!    to the few strings they allow; anything else (`\w+`, `.*`, `x?`)
//!    ends a literal. Strings are lowercased char by char, as the index's
//!    tokens are, which keeps every implication sound.
//! 2. [`TermNeed`]: map each literal to terms. Its pieces of token
//!    characters that sit between two non-token characters are whole
//!    tokens (an exact term); a piece that touches the literal's edge may
//!    be part of a longer token, so it becomes a prefix, suffix or infix
//!    match on the term dictionary. `^`, `$` and Unicode `\b` bound a
//!    piece too (see `index::tokens::is_token_char` for why `\b` may).
//!
//! Every step only widens: a block the plan rules out holds no matching
//! line. Lines of the blocks it keeps are verified with the real regex.

use std::collections::BTreeSet;

use regex_syntax::hir::{Class, Hir, HirKind, Look};

use crate::index::tokens::{
    index_term, is_token_char, LONG_NUMBER_DIGITS, LONG_TOKEN_MARKER, MAX_TOKEN_BYTES,
};
use crate::index::{TermMatch, TermNeed};

/// The most strings a node's exact set may hold before it is given up.
const MAX_EXACT: usize = 64;
/// The most characters a class may hold to be expanded into strings.
const MAX_CLASS_CHARS: u32 = 16;
/// A piece that is not a whole token must be at least this long to be
/// looked up: shorter ones match too much of the dictionary to narrow.
const MIN_PARTIAL_PIECE: usize = 3;
/// Stands for every character that is not part of a token (and for the
/// line's edges and word boundaries) in a literal: the pieces between them
/// are where tokens start and end.
const EDGE: char = '\u{0}';

/// Literal strings a matching line must contain (lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Nothing usable: every line may match.
    Any,
    Contains(String),
    All(Vec<Need>),
    OneOf(Vec<Need>),
}

impl Need {
    fn all(parts: Vec<Need>) -> Need {
        let mut parts: Vec<Need> = parts.into_iter().filter(|n| *n != Need::Any).collect();
        match parts.len() {
            0 => Need::Any,
            1 => parts.remove(0),
            _ => Need::All(parts),
        }
    }

    fn one_of(parts: Vec<Need>) -> Need {
        if parts.is_empty() || parts.contains(&Need::Any) {
            return Need::Any;
        }
        let mut parts = parts;
        if parts.len() == 1 {
            return parts.remove(0);
        }
        Need::OneOf(parts)
    }

    fn any_string(set: &BTreeSet<String>) -> Need {
        // A node that may match the empty string requires nothing.
        if set.iter().any(String::is_empty) {
            return Need::Any;
        }
        Need::one_of(set.iter().map(|s| Need::Contains(s.clone())).collect())
    }

    /// What the regex with this syntax tree needs of a line.
    pub fn of(hir: &Hir) -> Need {
        Info::of(hir).need
    }

    /// The index terms this need maps to.
    pub fn terms(&self) -> TermNeed {
        match self {
            Need::Any => TermNeed::Any,
            Need::Contains(s) => literal_terms(s),
            Need::All(parts) => TermNeed::all(parts.iter().map(Need::terms).collect()),
            Need::OneOf(parts) => TermNeed::one_of(parts.iter().map(Need::terms).collect()),
        }
    }
}

/// What one node of the syntax tree tells us.
struct Info {
    /// The node matches exactly one of these strings, when known and few.
    exact: Option<BTreeSet<String>>,
    /// What every match of the node contains.
    need: Need,
}

impl Info {
    fn exact(set: BTreeSet<String>) -> Info {
        Info {
            need: Need::any_string(&set),
            exact: Some(set),
        }
    }

    fn empty() -> Info {
        Info::exact(BTreeSet::from([String::new()]))
    }

    fn unknown() -> Info {
        Info {
            exact: None,
            need: Need::Any,
        }
    }

    fn of(hir: &Hir) -> Info {
        match hir.kind() {
            HirKind::Empty => Info::empty(),
            HirKind::Literal(lit) => match std::str::from_utf8(&lit.0) {
                Ok(s) => Info::exact(BTreeSet::from([lowercase(s)])),
                // Bytes that are not UTF-8 (`(?-u:\xff)`): the valid runs
                // around them are still needed, but nothing joins across.
                Err(_) => Info {
                    exact: None,
                    need: Need::all(
                        lit.0
                            .utf8_chunks()
                            .map(|c| Need::Contains(lowercase(c.valid())))
                            .collect(),
                    ),
                },
            },
            HirKind::Class(class) => class_strings(class).map_or_else(Info::unknown, Info::exact),
            HirKind::Look(look) => match look {
                // The line's edges, and Unicode word boundaries: every
                // token character is a word character (`is_token_char`),
                // so next to one, `\b` is where its token ends.
                Look::Start
                | Look::End
                | Look::StartLF
                | Look::EndLF
                | Look::StartCRLF
                | Look::EndCRLF
                | Look::WordUnicode
                | Look::WordStartUnicode
                | Look::WordEndUnicode
                | Look::WordStartHalfUnicode
                | Look::WordEndHalfUnicode => Info::exact(BTreeSet::from([EDGE.to_string()])),
                // An ASCII boundary may sit inside a token (`é` is no ASCII
                // word character), and `\B` bounds nothing.
                _ => Info::empty(),
            },
            HirKind::Capture(c) => Info::of(&c.sub),
            HirKind::Repetition(r) => {
                if r.min == 0 {
                    return Info::unknown();
                }
                let sub = Info::of(&r.sub);
                // `x{3}` is `xxx`; `x+` and `x{2,}` at least contain `x`.
                if r.max == Some(r.min) && r.min <= 4 {
                    if let Some(set) = &sub.exact {
                        let mut product = Some(BTreeSet::from([String::new()]));
                        for _ in 0..r.min {
                            product = product.and_then(|p| cross(&p, set));
                        }
                        if let Some(p) = product {
                            return Info::exact(p);
                        }
                    }
                }
                Info {
                    exact: None,
                    need: sub.need,
                }
            }
            HirKind::Concat(subs) => concat(subs.iter().map(Info::of)),
            HirKind::Alternation(subs) => {
                let infos: Vec<Info> = subs.iter().map(Info::of).collect();
                let union: Option<BTreeSet<String>> = infos
                    .iter()
                    .try_fold(BTreeSet::new(), |mut acc, i| {
                        acc.extend(i.exact.as_ref()?.iter().cloned());
                        Some(acc)
                    })
                    .filter(|u| u.len() <= MAX_EXACT);
                match union {
                    Some(u) => Info::exact(u),
                    None => Info {
                        exact: None,
                        need: Need::one_of(infos.into_iter().map(|i| i.need).collect()),
                    },
                }
            }
        }
    }
}

/// Joins a concatenation's parts: neighbours with exact sets grow into
/// longer strings (a literal split by a small class stays one literal);
/// where that is not possible, each run is needed on its own.
fn concat(parts: impl Iterator<Item = Info>) -> Info {
    let mut needs = Vec::new();
    let mut run: Option<BTreeSet<String>> = Some(BTreeSet::from([String::new()]));
    let mut whole = true;
    for part in parts {
        let joined = match (&run, &part.exact) {
            (Some(r), Some(e)) => cross(r, e),
            _ => None,
        };
        match joined {
            Some(j) => run = Some(j),
            None => {
                whole = false;
                if let Some(r) = run.take() {
                    needs.push(Need::any_string(&r));
                }
                // An exact part starts the next run (and is needed with it).
                match part.exact {
                    Some(e) => run = Some(e),
                    None => needs.push(part.need),
                }
            }
        }
    }
    if whole {
        if let Some(r) = run {
            return Info::exact(r);
        }
    }
    if let Some(r) = run {
        needs.push(Need::any_string(&r));
    }
    Info {
        exact: None,
        need: Need::all(needs),
    }
}

/// Every `a + b`, unless there would be too many.
fn cross(a: &BTreeSet<String>, b: &BTreeSet<String>) -> Option<BTreeSet<String>> {
    if a.len().saturating_mul(b.len()) > MAX_EXACT {
        return None;
    }
    Some(
        a.iter()
            .flat_map(|x| b.iter().map(move |y| format!("{x}{y}")))
            .collect(),
    )
}

/// The strings a small class matches, lowercased (so `[Ee]` is just `e`).
fn class_strings(class: &Class) -> Option<BTreeSet<String>> {
    match class {
        Class::Unicode(c) => {
            let count: u32 = c
                .ranges()
                .iter()
                .map(|r| u32::from(r.end()) - u32::from(r.start()) + 1)
                .sum();
            if count > MAX_CLASS_CHARS {
                return None;
            }
            Some(
                c.ranges()
                    .iter()
                    .flat_map(|r| r.start()..=r.end())
                    .map(|ch| lowercase(ch.encode_utf8(&mut [0; 4])))
                    .collect(),
            )
        }
        // Byte classes: only ASCII bytes are whole characters.
        Class::Bytes(c) => {
            let count: u32 = c
                .ranges()
                .iter()
                .map(|r| u32::from(r.end()) - u32::from(r.start()) + 1)
                .sum();
            if count > MAX_CLASS_CHARS || c.ranges().iter().any(|r| !r.end().is_ascii()) {
                return None;
            }
            Some(
                c.ranges()
                    .iter()
                    .flat_map(|r| r.start()..=r.end())
                    .map(|b| lowercase(char::from(b).encode_utf8(&mut [0; 4])))
                    .collect(),
            )
        }
    }
}

/// Char by char, as the index's tokens are lowercased; characters that
/// are not part of a token become [`EDGE`]. (Cutting before lowercasing
/// matters: `İ` lowercases to `i` and a combining dot, which is no token
/// character, yet `İstanbul` is one token.)
fn lowercase(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_token_char(c) {
            out.extend(c.to_lowercase());
        } else {
            out.push(EDGE);
        }
    }
    out
}

/// The terms a line containing `literal` (lowercased) must have produced.
fn literal_terms(literal: &str) -> TermNeed {
    let mut pieces = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in literal.char_indices().chain([(literal.len(), ' ')]) {
        match (c != EDGE && i < literal.len(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                pieces.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    TermNeed::all(
        pieces
            .into_iter()
            .map(|(s, e)| piece_terms(&literal[s..e], s > 0, e < literal.len()))
            .collect(),
    )
}

/// The terms for one piece (of token characters) of a literal. `left`/`right`: a
/// separator bounds the piece on that side, so the token starts/ends there.
fn piece_terms(piece: &str, left: bool, right: bool) -> TermNeed {
    let digits = piece.bytes().all(|b| b.is_ascii_digit());
    // A token of MAX_TOKEN_BYTES or more is not indexed, only marked; lowercasing
    // can shrink a character to a third of its bytes, so a non-ASCII piece
    // may come from a token longer than it looks.
    // (The index measures a token before lowercasing, which can shrink a
    // character to a third of its bytes or grow one by half: `-i` turns a
    // Kelvin sign into `k`, `İ` becomes `i̇`.)
    let maybe_long = piece.len() * 3 >= MAX_TOKEN_BYTES;
    let long = TermMatch::Exact(LONG_TOKEN_MARKER.to_owned());
    let mut terms = Vec::new();
    match (left, right) {
        (true, true) => {
            if piece.len() < MAX_TOKEN_BYTES || !piece.is_ascii() {
                let term = index_term(piece.as_bytes());
                terms.push(TermMatch::Exact(String::from_utf8_lossy(term).into_owned()));
            }
            if maybe_long {
                terms.push(long);
            }
        }
        _ if piece.len() < MIN_PARTIAL_PIECE => return TermNeed::Any,
        (true, false) => {
            // The token starts with the piece. A long number is indexed by
            // its first digits, which a short digit prefix already finds.
            if digits && piece.len() >= LONG_NUMBER_DIGITS {
                let term = index_term(&piece.as_bytes()[..LONG_NUMBER_DIGITS]);
                terms.push(TermMatch::Exact(String::from_utf8_lossy(term).into_owned()));
            }
            terms.push(TermMatch::Prefix(piece.to_owned()));
            terms.push(long);
        }
        // A token that ends with (or holds) digits may be a long number,
        // indexed only by its first digits: nothing to look for.
        _ if digits => return TermNeed::Any,
        (false, true) => {
            terms.push(TermMatch::Suffix(piece.to_owned()));
            terms.push(long);
        }
        (false, false) => {
            terms.push(TermMatch::Contains(piece.to_owned()));
            terms.push(long);
        }
    }
    TermNeed::Term(terms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cblogs_core::pattern::PatternOptions;

    fn need(pattern: &str, ignore_case: bool) -> Need {
        let o = PatternOptions {
            pattern: pattern.into(),
            ignore_case,
            ..Default::default()
        };
        Need::of(&o.hir().unwrap())
    }

    fn contains(s: &str) -> Need {
        Need::Contains(s.into())
    }

    #[test]
    fn literals_are_required_and_lowercased() {
        assert_eq!(
            need("OutOfMemoryError", false),
            contains("outofmemoryerror")
        );
        assert_eq!(need("(?i)timeout", false), contains("timeout"));
        assert_eq!(need("Timeout", true), contains("timeout"));
        assert_eq!(
            need(r#"Exception in thread "worker-\d+" java\.lang\.\w+"#, false),
            Need::All(vec![
                contains("exception\0in\0thread\0\0worker\0"),
                contains("\0\0java\0lang\0"),
            ])
        );
    }

    #[test]
    fn alternations_and_optional_parts() {
        assert_eq!(
            need("ERROR|WARN", false),
            Need::OneOf(vec![contains("error"), contains("warn")])
        );
        assert_eq!(need("ERROR|.*", false), Need::Any);
        assert_eq!(
            need("colou?r", false),
            Need::All(vec![contains("colo"), contains("r")])
        );
        assert_eq!(need(r"\w+", false), Need::Any);
        assert_eq!(need(r"[A-Z][a-z]+", false), Need::Any);
        assert_eq!(
            need("gr[ae]y", false),
            Need::OneOf(vec![contains("gray"), contains("grey")])
        );
    }

    #[test]
    fn anchors_bound_the_literal() {
        assert_eq!(need("^GET", false), contains("\0get"));
        assert_eq!(need(r"\bGET\b", false), contains("\0get\0"));
        assert_eq!(need(r"(?-u:\b)GET", false), contains("get"));
    }

    fn terms(pattern: &str) -> TermNeed {
        need(pattern, false).terms()
    }

    fn t(m: &[TermMatch]) -> TermNeed {
        TermNeed::Term(m.to_vec())
    }

    fn long() -> TermMatch {
        TermMatch::Exact(LONG_TOKEN_MARKER.into())
    }

    #[test]
    fn pieces_map_to_exact_prefix_suffix_and_infix_terms() {
        use TermMatch::*;
        assert_eq!(
            terms("OutOfMemory"),
            t(&[Contains("outofmemory".into()), long()])
        );
        assert_eq!(
            terms("user_id=42 "),
            TermNeed::All(vec![
                t(&[Suffix("user".into()), long()]),
                t(&[Exact("id".into())]),
                t(&[Exact("42".into())]),
            ])
        );
        assert_eq!(terms("^Conn"), t(&[Prefix("conn".into()), long()]));
        assert_eq!(terms("refused$"), t(&[Suffix("refused".into()), long()]));
        // Long numbers: whole by their prefix term, a leading part by prefix too.
        assert_eq!(terms(" 1182736 "), t(&[Exact("1182_".into())]));
        assert_eq!(
            terms(" 118273"),
            t(&[Exact("1182_".into()), Prefix("118273".into()), long()])
        );
        // The end or the middle of a number may belong to any long number.
        assert_eq!(terms("2736 "), TermNeed::Any);
        assert_eq!(terms("8273"), TermNeed::Any);
        // Too short to look up in part.
        assert_eq!(terms("ab"), TermNeed::Any);
        let hash = "a".repeat(45);
        assert_eq!(terms(&format!(" {hash} ")), t(&[Exact(hash)]));
        let blob = "a".repeat(MAX_TOKEN_BYTES);
        assert_eq!(terms(&format!(" {blob} ")), t(&[long()]));
    }
}
