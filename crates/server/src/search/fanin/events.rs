//! With `events=true`: each event's lines go out together, at its place
//! (the time of its first matching line, which is where each node's search
//! sorts it and what a page's cursor names), whichever stream they come
//! from. (An event cut by a publish comes as two, one from each side: a
//! known limit, in ARCHITECTURE.md.)

use std::collections::HashMap;

use cblogs_core::api::SearchLine;

/// Where each of one stream's lines goes: (its event's first offset, the
/// time the event sorts at). A stream sends each event whole, so a line
/// that `continues` after a line of its source is in that line's event.
pub fn places(lines: &[SearchLine]) -> Vec<(u64, i64)> {
    // Per event: its first offset, its first match's time, its first
    // line's time (for an event with no match in this stream).
    let mut events: Vec<(u64, Option<i64>, i64)> = Vec::new();
    let mut current: HashMap<&str, usize> = HashMap::new();
    let mut of_line = Vec::with_capacity(lines.len());
    for l in lines {
        let source = l.line.source.as_str();
        let e = match current.get(source) {
            Some(&e) if l.line.flags.continues => e,
            _ => {
                events.push((l.line.offset, None, l.line.time_ns));
                current.insert(source, events.len() - 1);
                events.len() - 1
            }
        };
        if !l.context && events[e].1.is_none() {
            events[e].1 = Some(l.line.time_ns);
        }
        of_line.push(e);
    }
    of_line
        .into_iter()
        .map(|e| {
            let (start, place, first) = events[e];
            (start, place.unwrap_or(first))
        })
        .collect()
}

/// The local search's event being received: its lines are held until its
/// first match gives its place, then sent; its later lines go at once.
pub struct LocalEvent {
    pub source: String,
    pub start: u64,
    /// The time it sorts at, once known.
    pub place: Option<i64>,
    /// Its lines not sent yet, each with its serialized event.
    pub held: Vec<(SearchLine, Vec<u8>)>,
}

impl LocalEvent {
    pub fn opened_by(line: &SearchLine) -> LocalEvent {
        LocalEvent {
            source: line.line.source.clone(),
            start: line.line.offset,
            place: None,
            held: Vec::new(),
        }
    }

    /// Whether `line` goes on this event.
    pub fn takes(&self, line: &SearchLine) -> bool {
        line.line.flags.continues && line.line.source == self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cblogs_core::{LineFlags, LineView, Source, Stream};

    fn line(
        instance: u32,
        offset: u64,
        time_ns: i64,
        context: bool,
        continues: bool,
    ) -> SearchLine {
        let source = Source::example("www-data/prod/hello", instance, "hello", Stream::Stdout);
        let flags = LineFlags {
            continues,
            ..LineFlags::default()
        };
        SearchLine {
            line: LineView::new(&source, offset, time_ns, flags, b"a line"),
            context,
            matches: Vec::new(),
        }
    }

    #[test]
    fn an_event_is_placed_at_its_first_match() {
        let lines = [
            line(0, 0, 10, true, false),
            line(0, 7, 30, false, true),
            line(1, 0, 20, false, false),
            line(0, 14, 40, false, false),
        ];
        assert_eq!(places(&lines), [(0, 30), (0, 30), (0, 20), (14, 40)]);
    }
}
