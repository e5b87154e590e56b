//! Search patterns with ripgrep's semantics.
//!
//! A pattern is a regex in the `regex` crate's syntax matched against the
//! bytes of one line (without its `\n`; a CRLF line keeps its `\r`, so `$`
//! does not match before it, as in ripgrep), or a fixed string (`-F`).
//! `-i` folds case (Unicode simple case folding), `-w` requires the match
//! to stand between non-word characters, `-v` is applied by the caller.
//! Invalid UTF-8 in a line is matched byte for byte, as ripgrep does.
//!
//! The CLI checks a pattern's syntax before any request
//! ([`PatternOptions::check_syntax`]); the server compiles it within its
//! configured size limit ([`Pattern::new`]).

use regex::bytes::{Regex, RegexBuilder};

/// What the user typed, and how to read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatternOptions {
    pub pattern: String,
    /// `-F`: the pattern is a literal string.
    pub fixed: bool,
    /// `-i`
    pub ignore_case: bool,
    /// `-w`
    pub word: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The `regex` crate's own message, with the pattern and a caret at the problem.
    #[error("{0}")]
    Syntax(String),
    #[error(
        "the pattern is too large: compiled, it exceeds search.regex_size_limit ({limit} bytes); \
         use a shorter pattern or fewer alternatives"
    )]
    TooBig { limit: usize },
    #[error("invalid pattern: {0}")]
    Other(String),
}

impl PatternOptions {
    /// The user's pattern as a regex: escaped with `-F`.
    fn base(&self) -> String {
        if self.fixed {
            regex::escape(&self.pattern)
        } else {
            self.pattern.clone()
        }
    }

    /// The regex actually run: the base, wrapped for `-w` the way ripgrep 14
    /// does it (a word boundary on each side that looks only outwards, so
    /// `-w 'foo!'` still matches `foo!`).
    pub fn expression(&self) -> String {
        let base = self.base();
        if self.word {
            format!(r"\b{{start-half}}(?:{base})\b{{end-half}}")
        } else {
            base
        }
    }

    /// Parses the pattern as the `regex` crate would, without compiling it:
    /// a syntax error names its position in what the user typed.
    pub fn check_syntax(&self) -> Result<(), PatternError> {
        self.parser()
            .parse(&self.base())
            .map(drop)
            .map_err(|e| PatternError::Syntax(e.to_string()))
    }

    /// The parser configured as `regex::bytes` configures it for this pattern.
    pub fn parser(&self) -> regex_syntax::Parser {
        regex_syntax::ParserBuilder::new()
            .utf8(false)
            .case_insensitive(self.ignore_case)
            .build()
    }

    /// The pattern's syntax tree, as the search planner reads it.
    pub fn hir(&self) -> Result<regex_syntax::hir::Hir, PatternError> {
        self.parser()
            .parse(&self.expression())
            .map_err(|e| PatternError::Syntax(e.to_string()))
    }
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    options: PatternOptions,
    regex: Regex,
}

impl Pattern {
    /// Compiles `options`, refusing a pattern whose compiled form would
    /// exceed `size_limit` bytes.
    pub fn new(options: PatternOptions, size_limit: usize) -> Result<Pattern, PatternError> {
        options.check_syntax()?;
        let regex = RegexBuilder::new(&options.expression())
            .case_insensitive(options.ignore_case)
            .size_limit(size_limit)
            .dfa_size_limit(size_limit)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(limit) => PatternError::TooBig { limit },
                regex::Error::Syntax(s) => PatternError::Syntax(s),
                other => PatternError::Other(other.to_string()),
            })?;
        Ok(Pattern { options, regex })
    }

    pub fn options(&self) -> &PatternOptions {
        &self.options
    }

    pub fn is_match(&self, line: &[u8]) -> bool {
        self.regex.is_match(line)
    }

    /// Where the pattern matches in `text`, as byte ranges (for highlighting).
    /// Empty matches are left out: there is nothing to highlight.
    pub fn spans(&self, text: &[u8]) -> Vec<[usize; 2]> {
        self.regex
            .find_iter(text)
            .filter(|m| !m.is_empty())
            .map(|m| [m.start(), m.end()])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(pattern: &str, f: impl FnOnce(&mut PatternOptions)) -> Pattern {
        let mut o = PatternOptions {
            pattern: pattern.into(),
            ..Default::default()
        };
        f(&mut o);
        Pattern::new(o, 10 << 20).unwrap()
    }

    #[test]
    fn fixed_strings_are_literal() {
        let p = compile("a.b[1]", |o| o.fixed = true);
        assert!(p.is_match(b"x a.b[1] y"));
        assert!(!p.is_match(b"axb1"));
    }

    #[test]
    fn case_and_words() {
        let p = compile("straße", |o| o.ignore_case = true);
        assert!(p.is_match("STRASSE straẞE".as_bytes()));
        let w = compile("foo", |o| o.word = true);
        assert!(w.is_match(b"a foo b") && w.is_match(b"foo") && !w.is_match(b"foobar"));
        let bang = compile("foo!", |o| o.word = true);
        assert!(
            bang.is_match(b"say foo! now") && !bang.is_match(b"say foo!x"),
            "the boundary looks outwards only: a plain \\b would need a word char after the !"
        );
    }

    #[test]
    fn lines_are_bytes_and_crlf_is_kept() {
        let p = compile(r"end$", |_| ());
        assert!(p.is_match(b"the end"));
        assert!(!p.is_match(b"the end\r"), "as ripgrep without --crlf");
        let any = compile(r"bad.utf8", |_| ());
        assert!(
            !any.is_match(b"bad\xffutf8"),
            ". matches a whole character only"
        );
        assert!(compile(r"(?-u:\xff)", |_| ()).is_match(b"bad\xffutf8"));
    }

    #[test]
    fn errors_say_where_and_why() {
        let o = PatternOptions {
            pattern: "foo(bar".into(),
            ..Default::default()
        };
        let e = o.check_syntax().unwrap_err().to_string();
        assert!(e.contains("unclosed group") && e.contains('^'), "{e}");
        let big = PatternOptions {
            pattern: r"\w{1000}".into(),
            ..Default::default()
        };
        let e = Pattern::new(big, 10_000).unwrap_err();
        assert_eq!(e, PatternError::TooBig { limit: 10_000 });
        assert!(e.to_string().contains("search.regex_size_limit"));
    }

    #[test]
    fn spans_for_highlighting() {
        let p = compile("o+", |_| ());
        assert_eq!(p.spans(b"foo boo"), vec![[1, 3], [5, 7]]);
    }
}
