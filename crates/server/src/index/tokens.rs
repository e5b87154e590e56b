//! The tokenizer contract: what the index holds for a block, and so what
//! the query planner (`search/plan.rs`) may look up. The writer
//! ([`distinct_tokens`]) and the planner both use these rules and nothing
//! else, so a search can only rule out a block that really holds no match.
//!
//! Tokens are cut much as tantivy's default tokenizer would (runs of token
//! characters, lowercased char by char) but by hand, with an
//! allocation-free ASCII path; tantivy then only splits the field on
//! spaces. Two differences, both for search: a token character is never an
//! "other number" (see [`is_token_char`]), and tokens are kept up to
//! [`MAX_TOKEN_BYTES`] where tantivy drops them at 40.

use std::collections::HashSet;
use std::hash::BuildHasher;

use rustc_hash::FxBuildHasher;

use crate::block::LineBlock;

/// The block's distinct tokens, lowercased and joined by spaces: what the
/// index holds for it. Tokens are cut much as tantivy's default
/// tokenizer cuts them (runs of token characters, see [`is_token_char`],
/// lowercased char by char), but kept up to [`MAX_TOKEN_BYTES`] where
/// tantivy drops them at 40; longer ones only mark the block.
///
/// This runs over every sealed byte, so ASCII lines (nearly all of them)
/// take a path that lowercases into one reused buffer and allocates only
/// for a token not seen before in the block.
pub fn distinct_tokens(block: &LineBlock) -> String {
    let mut tokens = DistinctTokens::default();
    let mut lower = Vec::with_capacity(64);
    for line in block.lines() {
        if line.bytes.is_ascii() {
            tokens.keep_ascii_line(line.bytes, &mut lower);
        } else {
            let text = String::from_utf8_lossy(line.bytes);
            for token in text.split(|c: char| !is_token_char(c)) {
                if token.is_empty() {
                    continue;
                }
                if token.len() >= MAX_TOKEN_BYTES {
                    tokens.keep_long_marker();
                    continue;
                }
                // Char by char, as tantivy's LowerCaser does (no
                // final-sigma rule: `ΟΔΟΣ` → `οδοσ`, not `οδος`).
                let folded: String = token.chars().flat_map(char::to_lowercase).collect();
                tokens.keep(folded.as_bytes());
            }
        }
    }
    tokens.out
}

/// The distinct tokens of a block, space-separated, in first-seen order.
/// This runs for every token of every line ingested, so a token of up to 8
/// bytes (most of them: words, short numbers, long numbers' prefix terms)
/// is looked up as one u64 (tokens hold no zero byte, so zero padding is
/// unambiguous), and a longer one by where it already is in `out`, without
/// a copy of its own.
#[derive(Default)]
struct DistinctTokens {
    out: String,
    short: HashSet<u64, FxBuildHasher>,
    long: hashbrown::HashTable<(u32, u32)>,
    long_marker: bool,
}

impl DistinctTokens {
    fn push(&mut self, token: &[u8]) {
        // Tokens are whole UTF-8 strings: ASCII, or a lowercased &str.
        if let Ok(text) = std::str::from_utf8(token) {
            self.out.push_str(text);
            self.out.push(' ');
        }
    }

    /// Every token of an ASCII line, in one pass over its bytes: a short
    /// token is lowercased straight into its u64 key, a long number into
    /// its prefix term's key.
    fn keep_ascii_line(&mut self, bytes: &[u8], lower: &mut Vec<u8>) {
        const _: () = assert!(
            NUMBER_PREFIX_DIGITS == 4,
            "the prefix key below takes 4 bytes"
        );
        let n = bytes.len();
        let mut i = 0;
        while i < n {
            if !bytes[i].is_ascii_alphanumeric() {
                i += 1;
                continue;
            }
            let start = i;
            let mut key = 0u64;
            let mut digits = true;
            while i < n && bytes[i].is_ascii_alphanumeric() {
                let b = bytes[i];
                digits &= b.is_ascii_digit();
                let k = i - start;
                if k < 8 {
                    key |= u64::from(b.to_ascii_lowercase()) << (8 * k);
                }
                i += 1;
            }
            let len = i - start;
            if len >= MAX_TOKEN_BYTES {
                self.keep_long_marker();
                continue;
            }
            if digits && len >= LONG_NUMBER_DIGITS {
                self.keep_short((key & 0xffff_ffff) | (u64::from(b'_') << 32), 5);
            } else if len <= 8 {
                self.keep_short(key, len);
            } else {
                lower.clear();
                lower.extend(bytes[start..i].iter().map(u8::to_ascii_lowercase));
                self.keep_long(lower);
            }
        }
    }

    /// Notes that the block holds a token too long to index.
    fn keep_long_marker(&mut self) {
        if !self.long_marker {
            self.long_marker = true;
            self.push(LONG_TOKEN_MARKER.as_bytes());
        }
    }

    /// A lowercased token (of a line that is not ASCII).
    fn keep(&mut self, token: &[u8]) {
        let term = index_term(token);
        if term.len() <= 8 {
            let mut key = [0u8; 8];
            key[..term.len()].copy_from_slice(term);
            self.keep_short(u64::from_le_bytes(key), term.len());
        } else {
            self.keep_long(term);
        }
    }

    /// A term of up to 8 bytes, packed little-endian into `key`.
    fn keep_short(&mut self, key: u64, len: usize) {
        if self.short.insert(key) {
            self.push(&key.to_le_bytes()[..len]);
        }
    }

    fn keep_long(&mut self, term: &[u8]) {
        let hash = FxBuildHasher.hash_one(term);
        let out = &self.out;
        let at =
            |&(start, len): &(u32, u32)| &out.as_bytes()[start as usize..(start + len) as usize];
        if self.long.find(hash, |e| at(e) == term).is_some() {
            return;
        }
        let start = self.out.len() as u32;
        self.push(term);
        let out = &self.out;
        self.long
            .insert_unique(hash, (start, term.len() as u32), |&(s, l)| {
                FxBuildHasher.hash_one(&out.as_bytes()[s as usize..(s + l) as usize])
            });
    }
}

/// Numbers of at least this many digits (ids, timestamps, sizes) are not
/// indexed whole but by their first [`NUMBER_PREFIX_DIGITS`] digits and a
/// `_`. Measured on the benchmark corpus they were most of the index (0.07
/// of the raw bytes of 0.08) and of its build time; by prefix they cost
/// almost nothing, and a search for such a number still narrows to the
/// blocks holding a number that starts the same way, then verifies every
/// line. `_` never occurs in a natural token, so a prefix term cannot be
/// mistaken for a short number.
pub const LONG_NUMBER_DIGITS: usize = 5;
pub const NUMBER_PREFIX_DIGITS: usize = 4;

/// The term the index holds for a (lowercased) token: the token itself, or
/// for a long number its prefix term (see [`LONG_NUMBER_DIGITS`]).
pub fn index_term(token: &[u8]) -> &[u8] {
    if token.len() >= LONG_NUMBER_DIGITS && token.iter().all(u8::is_ascii_digit) {
        // The token sits in a buffer we may not extend: the prefix term is
        // one of a fixed set, so it is looked up, not built.
        prefix_term(&token[..NUMBER_PREFIX_DIGITS])
    } else {
        token
    }
}

/// `dddd_` for four ASCII digits, from a table made once.
fn prefix_term(digits: &[u8]) -> &'static [u8] {
    static TERMS: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let terms = TERMS.get_or_init(|| {
        let mut t = Vec::with_capacity(10_000 * 5);
        for n in 0..10_000u32 {
            t.extend_from_slice(format!("{n:04}_").as_bytes());
        }
        t
    });
    let n = digits
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    &terms[n * 5..n * 5 + 5]
}

/// Whether `c` belongs to a token: alphanumeric, as for tantivy's default
/// tokenizer, except "other numbers" (`²`, `½`, `①`: Unicode category No).
/// Those are the only alphanumeric characters that are not word characters
/// (`\w`), and leaving them out makes every token character a word
/// character: then a regex's `\b` next to a token character is a token
/// boundary, which lets `-w` and `\b` searches look up whole terms.
pub fn is_token_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric();
    }
    c.is_alphanumeric() && !is_other_number(c)
}

fn is_other_number(c: char) -> bool {
    static OTHER_NUMBERS: std::sync::OnceLock<Vec<(char, char)>> = std::sync::OnceLock::new();
    let ranges = OTHER_NUMBERS.get_or_init(|| {
        let hir = regex_syntax::parse(r"\p{No}").ok();
        match hir.as_ref().map(regex_syntax::hir::Hir::kind) {
            Some(regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(c))) => {
                c.ranges().iter().map(|r| (r.start(), r.end())).collect()
            }
            _ => Vec::new(),
        }
    });
    ranges
        .binary_search_by(|&(start, end)| {
            if end < c {
                std::cmp::Ordering::Less
            } else if start > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Tokens of this many bytes or more are not indexed. tantivy's default
/// tokenizer drops them at 40, but then a search for part of one (a hash,
/// `NSConstraintBasedLayoutVisualizeMutuallyExclusiveConstraints`) could
/// not rule out any block that holds one; up to here they are indexed like
/// any token, past it (base64 blobs) they only mark the block.
pub const MAX_TOKEN_BYTES: usize = 256;

/// The term of a block that holds a token of [`MAX_TOKEN_BYTES`] or more:
/// such tokens are not indexed, but a search for a piece of one must still
/// find the block. No token holds `_`, so it cannot be mistaken for one.
pub const LONG_TOKEN_MARKER: &str = "_long_";

#[cfg(test)]
mod tests {
    use cblogs_core::LineFlags;

    use super::*;

    #[test]
    fn tokens_match_tantivys_tokenizer_with_a_longer_limit() {
        let mut b = LineBlock::new();
        let long = "x".repeat(MAX_TOKEN_BYTES);
        let text = format!("ERROR Connexion refusée: Straße=ÄÖ ΟΔΟΣ id=42 {long} y{long} Ok, ok req=1182736 t=20261125 sha1=A94A8FE5CCB19BA61C4C0873D391E987982FBBD3");
        b.push(0, 1, LineFlags::default(), text.as_bytes());
        b.push(
            100,
            2,
            LineFlags::default(),
            b"GET /api/v1/Items?id=42 HTTP/1.1\r",
        );
        b.push(
            200,
            3,
            LineFlags::default(),
            b"ConnectionResetError at 0123456789, 12345678 and 1234 in TimeoutException/ConnectionResetError",
        );
        let all = distinct_tokens(&b);
        assert!(all.split_whitespace().any(|t| t == LONG_TOKEN_MARKER));
        let ours: std::collections::BTreeSet<String> = all
            .split_whitespace()
            .filter(|t| *t != LONG_TOKEN_MARKER)
            .map(str::to_owned)
            .collect();
        use tantivy::tokenizer::{LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};
        let mut analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
            .filter(LowerCaser)
            .build();
        let mut theirs = std::collections::BTreeSet::new();
        for l in b.lines() {
            let mut stream = analyzer.token_stream(std::str::from_utf8(l.bytes).unwrap());
            while let Some(t) = stream.next() {
                let term = index_term(t.text.as_bytes());
                theirs.insert(String::from_utf8(term.to_vec()).unwrap());
            }
        }
        assert_eq!(ours, theirs);
        assert!(ours.contains("refusée") && ours.contains("straße") && ours.contains("items"));
        // Short numbers whole, long ones by prefix.
        assert!(ours.contains("42") && ours.contains("1182_") && ours.contains("2026_"));
        assert!(!ours.contains("1182736"));
        // Past tantivy's 40 bytes, below ours.
        assert!(ours.contains("a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"));
        assert!(
            ours.contains("connectionreseterror")
                && ours.contains("0123_")
                && ours.contains("1234")
        );
    }

    #[test]
    fn other_numbers_split_tokens() {
        assert!(is_token_char('a') && is_token_char('é') && is_token_char('Ⅳ'));
        assert!(!is_token_char('²') && !is_token_char('½') && !is_token_char('_'));
        let mut b = LineBlock::new();
        b.push(0, 1, LineFlags::default(), "x² café".as_bytes());
        let t = distinct_tokens(&b);
        assert_eq!(t.split_whitespace().collect::<Vec<_>>(), ["x", "café"]);
    }

    #[test]
    fn tokens_are_distinct_and_lowercased() {
        let mut b = LineBlock::new();
        b.push(0, 1, LineFlags::default(), b"GET /index.html 200\r");
        b.push(21, 2, LineFlags::default(), b"bad \xff utf8 Timeout get");
        let t = distinct_tokens(&b);
        let tokens: Vec<&str> = t.split_whitespace().collect();
        assert!(tokens.contains(&"get") && tokens.contains(&"timeout") && tokens.contains(&"utf8"));
        let mut sorted = tokens.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), tokens.len());
    }
}
