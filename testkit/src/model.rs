//! What was written to one stream, as the lines a reader must see: each
//! line's offset in the stream (counted across rotations and truncations),
//! its bytes, and whether it goes out without its newline. Tests compare
//! what the CLI shows with this.

/// The line length limit of both cblogsd (its default) and the test
/// shipper config: longer lines are shown cut.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// A line the test expects to see: where it starts in its stream, its bytes
/// (all of them, even past the length limit), and whether it is sent
/// without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub offset: u64,
    pub bytes: Vec<u8>,
    pub partial: bool,
}

impl Written {
    /// What the CLI shows for it: (offset, text, cut, partial).
    pub fn view(&self) -> (u64, String, bool, bool) {
        let kept = &self.bytes[..self.bytes.len().min(MAX_LINE_BYTES)];
        (
            self.offset,
            String::from_utf8_lossy(kept).into_owned(),
            self.bytes.len() > MAX_LINE_BYTES,
            self.partial,
        )
    }
}

/// What was written to one stream so far, as lines.
#[derive(Debug, Default, Clone)]
pub struct StreamModel {
    /// Bytes written to the stream, across rotations and truncations.
    pub written: u64,
    /// Complete lines (and flushed partial ones).
    pub lines: Vec<Written>,
    /// The last line while it has no newline: its offset and bytes.
    pending: Option<(u64, Vec<u8>)>,
}

impl StreamModel {
    /// Takes in bytes appended to the stream.
    pub fn record(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let written = self.written;
            let (_, line) = self.pending.get_or_insert_with(|| (written, Vec::new()));
            match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&bytes[..i]);
                    self.written += i as u64 + 1;
                    bytes = &bytes[i + 1..];
                    let (offset, line) = self.pending.take().expect("pending line");
                    self.lines.push(Written {
                        offset,
                        bytes: line,
                        partial: false,
                    });
                }
                None => {
                    line.extend_from_slice(bytes);
                    self.written += bytes.len() as u64;
                    bytes = &[];
                }
            }
        }
    }

    /// The last line has no newline and will be sent as it is, marked partial.
    pub fn expect_partial(&mut self) {
        let (offset, bytes) = self.pending.take().expect("a line without its newline");
        self.lines.push(Written {
            offset,
            bytes,
            partial: true,
        });
    }

    /// Whether the last line written has no newline yet.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }
}

/// The identity of a stream as the CLI shows it: (task id, process, run, stream).
pub type StreamKey = (String, String, u32, cblogs_core::Stream);
