//! Server-Sent Events framing, as `GET /api/v1/follow` sends them:
//! `event:` and `data:` fields, a blank line ending each event, `:`
//! comments (keep-alives) ignored. Kept apart from what the tails check,
//! so the check reads whole events.

use std::io::{self, BufRead};

/// One event: its name (empty if none), its data lines joined with `\n`,
/// and when its first data line was read (by the caller's clock).
#[derive(Default)]
pub struct Event {
    pub name: String,
    pub data: String,
    pub data_at: u64,
}

/// Reads `body` to its end, calling `on_event` for each event; `clock`
/// stamps each event's first data line. Returns at the end of the stream
/// (`Ok`) or the first read error.
pub fn for_each_event(
    body: &mut impl BufRead,
    clock: impl Fn() -> u64,
    mut on_event: impl FnMut(&Event),
) -> io::Result<()> {
    let mut line = String::with_capacity(1024);
    let mut ev = Event::default();
    loop {
        line.clear();
        if body.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let l = line.trim_end_matches(['\n', '\r']);
        if l.is_empty() {
            if !ev.data.is_empty() || !ev.name.is_empty() {
                on_event(&ev);
            }
            ev.name.clear();
            ev.data.clear();
        } else if let Some(v) = l.strip_prefix("event:") {
            ev.name.clear();
            ev.name.push_str(v.trim_start());
        } else if let Some(v) = l.strip_prefix("data:") {
            if ev.data.is_empty() {
                ev.data_at = clock();
            } else {
                ev.data.push('\n');
            }
            ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
        // `:` comments (keep-alives) and other fields are ignored.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_framed_by_blank_lines_and_comments_skipped() {
        let text = ": keep-alive\n\nevent: jobs\ndata: []\n\nevent: line\ndata: a\ndata: b\n\n";
        let mut seen = Vec::new();
        for_each_event(
            &mut text.as_bytes(),
            || 7,
            |e| seen.push((e.name.clone(), e.data.clone(), e.data_at)),
        )
        .expect("read");
        assert_eq!(
            seen,
            [
                ("jobs".to_owned(), "[]".to_owned(), 7),
                ("line".to_owned(), "a\nb".to_owned(), 7)
            ]
        );
    }
}
