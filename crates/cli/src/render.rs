//! How lines and jobs look on the terminal: a short coloured prefix per
//! instance and process (like stern), or raw text, or JSON.

use std::io::{self, Write};

use cblogs_core::api::{JobSummary, SearchLine};
use cblogs_core::{LineView, Stream};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// `3 hello/stderr │ text`, coloured on a terminal.
    Pretty,
    /// The text alone.
    Raw,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Colour only on a terminal, and never when NO_COLOR is set.
    pub fn enabled(self, stdout_is_terminal: bool, no_color_env: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => stdout_is_terminal && !no_color_env,
        }
    }
}

/// Colours for prefixes: distinct on dark and light terminals.
const PALETTE: [&str; 6] = ["36", "32", "33", "35", "34", "96"];
const RED: &str = "31";
const DIM: &str = "2";

fn paint(out: &mut String, color: Option<&str>, text: &str) {
    match color {
        Some(c) => {
            out.push_str("\x1b[");
            out.push_str(c);
            out.push('m');
            out.push_str(text);
            out.push_str("\x1b[0m");
        }
        None => out.push_str(text),
    }
}

/// A stable colour per (job, instance, process): the same task looks the same every run.
fn color_for(job: &str, instance: u32, process: &str) -> &'static str {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in job
        .bytes()
        .chain(instance.to_le_bytes())
        .chain(process.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    PALETTE[(h % PALETTE.len() as u64) as usize]
}

/// The text as a terminal should show it: one trailing `\r` (CRLF logs) removed.
fn display_text(text: &str) -> &str {
    text.strip_suffix('\r').unwrap_or(text)
}

/// Formats one line for `pretty` output (without the newline).
pub fn pretty_line(l: &LineView, show_job: bool, color: bool) -> String {
    pretty_with(l, show_job, color, MATCH_SEP, &[])
}

/// Between prefix and text: a match (or a tailed line), a context line.
const MATCH_SEP: &str = " │ ";
const CONTEXT_SEP: &str = " ┆ ";
/// Matches: bold red, as grep and ripgrep show them.
const MATCH: &str = "1;31";

/// `text` with the byte ranges in `spans` painted (when they fall on
/// character boundaries; a range that does not is left plain).
fn highlighted(out: &mut String, text: &str, spans: &[[usize; 2]], color: bool) {
    let mut at = 0;
    if color {
        for &[start, end] in spans {
            let (Some(before), Some(hit)) =
                (text.get(at..start), text.get(start..end.min(text.len())))
            else {
                continue;
            };
            out.push_str(before);
            paint(out, Some(MATCH), hit);
            at = end.min(text.len());
        }
    }
    out.push_str(text.get(at..).unwrap_or_default());
}

/// A search result line for `pretty` output: the tail prefix, ` │ ` for a
/// match or ` ┆ ` for context, matches highlighted.
pub fn pretty_search_line(l: &SearchLine, show_job: bool, color: bool) -> String {
    let sep = if l.context { CONTEXT_SEP } else { MATCH_SEP };
    pretty_with(&l.line, show_job, color, sep, &l.matches)
}

/// A search result line for `raw` output: the text, matches highlighted.
pub fn raw_search_line(text: &str, matches: &[[usize; 2]], color: bool) -> String {
    let mut s = String::with_capacity(text.len());
    highlighted(&mut s, display_text(text), matches, color);
    s
}

fn pretty_with(
    l: &LineView,
    show_job: bool,
    color: bool,
    sep: &str,
    spans: &[[usize; 2]],
) -> String {
    let mut s = String::with_capacity(l.text.len() + 32);
    let c = color.then(|| color_for(&l.job, l.instance, &l.process));
    let who = if show_job {
        let name = l.job.rsplit('/').next().unwrap_or(&l.job);
        format!("{name}/{} {}/", l.instance, l.process)
    } else {
        format!("{} {}/", l.instance, l.process)
    };
    paint(&mut s, c, &who);
    let stream_color = match l.stream {
        Stream::Stderr => color.then_some(RED),
        Stream::Stdout => c,
    };
    paint(&mut s, stream_color, l.stream.as_str());
    s.push_str(sep);
    highlighted(&mut s, display_text(&l.text), spans, color);
    if l.flags.cut {
        s.push(' ');
        paint(&mut s, color.then_some(DIM), "[cut]");
    }
    s
}

pub struct LineWriter<W: Write> {
    out: W,
    output: Output,
    color: bool,
    /// Several jobs in one output: the prefix names the job too.
    pub show_job: bool,
    /// Start pretty and raw lines with the line's time (JSON has it anyway).
    pub timestamps: bool,
}

impl<W: Write> LineWriter<W> {
    pub fn new(out: W, output: Output, color: bool) -> Self {
        LineWriter {
            out,
            output,
            color,
            show_job: false,
            timestamps: false,
        }
    }

    pub fn line(&mut self, l: &LineView) -> io::Result<()> {
        if self.timestamps && self.output != Output::Json {
            write!(self.out, "{} ", l.time)?;
        }
        match self.output {
            Output::Pretty => writeln!(self.out, "{}", pretty_line(l, self.show_job, self.color)),
            Output::Raw => writeln!(self.out, "{}", display_text(&l.text)),
            Output::Json => {
                serde_json::to_writer(&mut self.out, l)?;
                self.out.write_all(b"\n")
            }
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// `0-2,5,7-9`: instance numbers as compact ranges.
pub fn compress_ranges(sorted: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            sorted[i].to_string()
        } else {
            format!("{}-{}", sorted[i], sorted[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// `12s ago`, `3m ago`, `5h ago`, `2d ago`.
pub fn ago(then_ns: i64, now_ns: i64) -> String {
    let s = (now_ns.saturating_sub(then_ns) / 1_000_000_000).max(0);
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

/// The `jobs` table.
pub fn jobs_table(jobs: &[JobSummary], now_ns: i64) -> String {
    let rows: Vec<[String; 4]> = jobs
        .iter()
        .map(|j| {
            let mut inst: Vec<u32> = j.instances.iter().map(|i| i.instance).collect();
            inst.sort_unstable();
            [
                j.key.clone(),
                compress_ranges(&inst),
                j.lines.to_string(),
                ago(j.last_seen_ns, now_ns),
            ]
        })
        .collect();
    let header = ["JOB", "INSTANCES", "LINES", "LAST SEEN"].map(String::from);
    let mut width = [0usize; 4];
    for r in std::iter::once(&header).chain(&rows) {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cblogs_core::LineFlags;

    fn line(stream: Stream, text: &str) -> LineView {
        LineView {
            time: "2026-11-25T00:00:00Z".into(),
            time_ns: 1,
            cluster: "c".into(),
            host: "h".into(),
            job: "www-data/prod/hello".into(),
            instance: 3,
            task_id: "t".into(),
            process: "hello".into(),
            run: 0,
            stream,
            offset: 0,
            text: text.into(),
            flags: LineFlags::default(),
            source: "00".into(),
        }
    }

    #[test]
    fn pretty_prefix_plain() {
        assert_eq!(
            pretty_line(&line(Stream::Stderr, "boom\r"), false, false),
            "3 hello/stderr │ boom"
        );
        assert_eq!(
            pretty_line(&line(Stream::Stdout, "ok"), true, false),
            "hello/3 hello/stdout │ ok"
        );
        let mut cut = line(Stream::Stdout, "aaaa");
        cut.flags.cut = true;
        assert_eq!(
            pretty_line(&cut, false, false),
            "3 hello/stdout │ aaaa [cut]"
        );
    }

    #[test]
    fn pretty_prefix_coloured_and_stable() {
        let a = pretty_line(&line(Stream::Stderr, "x"), false, true);
        assert!(a.contains("\x1b[31mstderr\x1b[0m"), "{a:?}");
        assert!(
            a.ends_with(" │ x"),
            "the text itself stays uncoloured: {a:?}"
        );
        assert_eq!(a, pretty_line(&line(Stream::Stderr, "x"), false, true));
    }

    #[test]
    fn search_lines_show_context_and_matches() {
        let mut hit = SearchLine {
            line: line(Stream::Stdout, "a timeout here\r"),
            context: false,
            matches: vec![[2, 9]],
        };
        assert_eq!(
            pretty_search_line(&hit, false, false),
            "3 hello/stdout │ a timeout here"
        );
        let coloured = pretty_search_line(&hit, false, true);
        assert!(
            coloured.ends_with("a \x1b[1;31mtimeout\x1b[0m here"),
            "{coloured:?}"
        );
        assert_eq!(
            raw_search_line(&hit.line.text, &hit.matches, true),
            "a \x1b[1;31mtimeout\x1b[0m here"
        );
        hit.context = true;
        hit.matches.clear();
        assert_eq!(
            pretty_search_line(&hit, false, false),
            "3 hello/stdout ┆ a timeout here"
        );
        // A range that is not on character boundaries is not painted.
        let odd = SearchLine {
            line: line(Stream::Stdout, "é"),
            context: false,
            matches: vec![[1, 2]],
        };
        assert_eq!(raw_search_line(&odd.line.text, &odd.matches, true), "é");
    }

    #[test]
    fn colour_choice() {
        assert!(ColorChoice::Auto.enabled(true, false));
        assert!(!ColorChoice::Auto.enabled(false, false));
        assert!(!ColorChoice::Auto.enabled(true, true));
        assert!(ColorChoice::Always.enabled(false, true));
        assert!(!ColorChoice::Never.enabled(true, false));
    }

    #[test]
    fn raw_and_json() {
        let mut w = LineWriter::new(Vec::new(), Output::Raw, false);
        w.line(&line(Stream::Stdout, "a\r")).unwrap();
        assert_eq!(w.out, b"a\n");
        let mut w = LineWriter::new(Vec::new(), Output::Json, false);
        w.line(&line(Stream::Stdout, "a")).unwrap();
        let back: LineView = serde_json::from_slice(&w.out).unwrap();
        assert_eq!(back, line(Stream::Stdout, "a"));
    }

    #[test]
    fn timestamps_lead_pretty_and_raw_lines() {
        let mut w = LineWriter::new(Vec::new(), Output::Pretty, false);
        w.timestamps = true;
        w.line(&line(Stream::Stdout, "ok")).unwrap();
        assert_eq!(
            String::from_utf8(w.out).unwrap(),
            "2026-11-25T00:00:00Z 3 hello/stdout │ ok\n"
        );
        let mut w = LineWriter::new(Vec::new(), Output::Raw, false);
        w.timestamps = true;
        w.line(&line(Stream::Stdout, "ok")).unwrap();
        assert_eq!(
            String::from_utf8(w.out).unwrap(),
            "2026-11-25T00:00:00Z ok\n"
        );
    }

    #[test]
    fn ranges_and_ages() {
        assert_eq!(compress_ranges(&[0, 1, 2, 5, 7, 8, 9]), "0-2,5,7-9");
        assert_eq!(compress_ranges(&[4]), "4");
        assert_eq!(compress_ranges(&[]), "");
        let s = 1_000_000_000;
        assert_eq!(ago(0, 5 * s), "5s ago");
        assert_eq!(ago(0, 120 * s), "2m ago");
        assert_eq!(ago(0, 7200 * s), "2h ago");
        assert_eq!(ago(0, 3 * 86400 * s), "3d ago");
    }
}
