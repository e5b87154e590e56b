//! Copies of a line, dropped by byte range (rule 1 of issue 18).
//!
//! After a failover the same bytes of a source can be held by two nodes,
//! or published twice, and a copy need not look the same: a re-sent line
//! has its own read time, and a re-read can cut it differently (a
//! partial line sent after `partial_line_delay_ms`, against the complete
//! line). So a copy is found by where it lies, not by its offset alone:
//! a line that starts inside a kept line's `[offset, end)` of the same
//! source is dropped. A complete line is kept before a partial one, a
//! longer one before a shorter, and between equals the earliest time.

use std::cmp::Reverse;

use cblogs_core::LineView;

/// Where `line` ends in its stream at least: after its newline, unless
/// partial. At least, because its text is not quite its bytes: invalid
/// UTF-8 shows as U+FFFD (three bytes in the text, one to three in the
/// line), and a cut line keeps only its first bytes. Short of the true
/// end, a copy may be missed, but the next line is never taken for one.
pub fn line_end(line: &LineView) -> u64 {
    let replaced = line.text.matches('\u{fffd}').count() as u64;
    let len = (line.text.len() as u64).saturating_sub(2 * replaced);
    line.offset + len + u64::from(!line.flags.partial)
}

/// `lines` without copies, in time order (ties by source and offset).
pub fn drop_copies(mut lines: Vec<LineView>) -> Vec<LineView> {
    lines.sort_by(|a, b| {
        (
            &a.source,
            a.offset,
            a.flags.partial,
            Reverse(a.text.len()),
            a.time_ns,
        )
            .cmp(&(
                &b.source,
                b.offset,
                b.flags.partial,
                Reverse(b.text.len()),
                b.time_ns,
            ))
    });
    let mut kept: Vec<LineView> = Vec::with_capacity(lines.len());
    for line in lines {
        if let Some(last) = kept.last() {
            if last.source == line.source && line.offset < line_end(last) {
                continue;
            }
        }
        kept.push(line);
    }
    kept.sort_by(|a, b| (a.time_ns, &a.source, a.offset).cmp(&(b.time_ns, &b.source, b.offset)));
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use cblogs_core::{LineFlags, Source, Stream};

    fn line(offset: u64, text: &str, time_ns: i64, partial: bool) -> LineView {
        let source = Source {
            cluster: "c".into(),
            host: "h".into(),
            task_id: "www-data-prod-hello-0-abc".into(),
            job: "www-data/prod/hello".parse().expect("a job"),
            instance: 0,
            process: "web".into(),
            run: 0,
            stream: Stream::Stdout,
        };
        LineView::new(
            &source,
            offset,
            time_ns,
            LineFlags {
                cut: false,
                partial,
                continues: false,
            },
            text.as_bytes(),
        )
    }

    /// The same line twice (two nodes hold it), a re-sent copy with a
    /// later time, and a partial piece inside a complete line: one each.
    #[test]
    fn copies_are_found_by_where_they_lie() {
        let lines = vec![
            line(0, "first", 10, false),
            line(6, "second", 20, false),
            // Held by another node too: the same.
            line(6, "second", 20, false),
            // Re-sent after a failover, read again later: a copy.
            line(0, "first", 99, false),
            // Sent partial by one node, whole by another.
            line(13, "thi", 30, true),
            line(16, "rd", 31, false),
            line(13, "third", 35, false),
            line(19, "fourth", 40, false),
        ];
        let kept: Vec<(u64, String, i64)> = drop_copies(lines)
            .into_iter()
            .map(|l| (l.offset, l.text, l.time_ns))
            .collect();
        assert_eq!(
            kept,
            vec![
                (0, "first".into(), 10),
                (6, "second".into(), 20),
                (13, "third".into(), 35),
                (19, "fourth".into(), 40),
            ]
        );
    }

    /// A line with invalid UTF-8 is longer as text than in its stream:
    /// the line after it is not a copy.
    #[test]
    fn the_line_after_invalid_bytes_is_kept() {
        // "bad \xff\xfe bytes" is 12 bytes, 16 as text.
        let kept = drop_copies(vec![
            line(0, "bad \u{fffd}\u{fffd} bytes", 10, false),
            line(13, "next", 11, false),
        ]);
        assert_eq!(kept.len(), 2);
    }

    /// Lines of other sources at the same offsets are not copies.
    #[test]
    fn other_sources_are_not_copies() {
        let mut other = line(0, "first", 10, false);
        other.source = "ffff".into();
        let kept = drop_copies(vec![line(0, "first", 10, false), other]);
        assert_eq!(kept.len(), 2);
    }
}
