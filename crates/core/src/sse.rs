//! A Server-Sent Events parser: bytes in (as they arrive, split anywhere),
//! whole events out. Follows the WHATWG rules cblogsd relies on: `event:`
//! names the event, `data:` lines join with `\n`, `:` starts a comment, a
//! blank line ends the event, and lines end in `\n`, `\r\n` or `\r`.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `message` when the server named none.
    pub event: String,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line not yet ended.
    pending: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` starting this one belongs to it.
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let mut bytes = chunk;
        if self.after_cr && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        self.after_cr = false;
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'\n' || b == b'\r' {
                self.pending.extend_from_slice(&bytes[start..i]);
                let line = std::mem::take(&mut self.pending);
                self.line(&line, &mut out);
                if b == b'\r' {
                    if i + 1 == bytes.len() {
                        self.after_cr = true;
                    } else if bytes[i + 1] == b'\n' {
                        i += 1;
                    }
                }
                start = i + 1;
            }
            i += 1;
        }
        self.pending
            .extend_from_slice(&bytes[start.min(bytes.len())..]);
        out
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                let event = self.event.take().unwrap_or_else(|| "message".to_owned());
                out.push(SseEvent { event, data });
            }
            self.event = None;
            return;
        }
        if line[0] == b':' {
            return; // a comment: keep-alive
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (&*line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {} // id, retry: not used by cblogsd
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn whole_events() {
        let mut p = SseParser::new();
        let got =
            p.feed(b"event: jobs\ndata: [\"a\"]\n\n: keep-alive\n\nevent: line\ndata: {}\n\n");
        assert_eq!(got, vec![ev("jobs", "[\"a\"]"), ev("line", "{}")]);
    }

    #[test]
    fn split_anywhere_and_crlf() {
        let input = b"event: line\r\ndata: {\"x\":1}\r\n\r\ndata: a\r\ndata: b\r\n\r\n";
        for cut in 0..input.len() {
            let mut p = SseParser::new();
            let mut got = p.feed(&input[..cut]);
            got.extend(p.feed(&input[cut..]));
            assert_eq!(
                got,
                vec![ev("line", "{\"x\":1}"), ev("message", "a\nb")],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn bare_cr_line_endings_and_no_space() {
        let mut p = SseParser::new();
        assert_eq!(
            p.feed(b"event:lagged\rdata:{\"missed\":3}\r\r"),
            vec![ev("lagged", "{\"missed\":3}")]
        );
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        let mut p = SseParser::new();
        assert!(p.feed(b"event: line\n\n").is_empty());
        assert_eq!(p.feed(b"data: x\n\n"), vec![ev("message", "x")]);
    }
}
