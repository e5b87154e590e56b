//! `StreamTailer`: one stdout or stderr stream of one process run, followed
//! across rotations and truncations, cut into lines.
//!
//! A stream is a sequence of files: Thermos' rotate mode renames `stdout`
//! to `stdout.1` and starts a new `stdout`, and the rotated file is never
//! written again. Files are held by open descriptor and known by device and
//! inode, never by name: when the name points at a new inode, the old file
//! is read to its end through its descriptor before the new one is started,
//! and a line split across the rotation is joined. Every rotated file that
//! appears is opened at once, so a file deleted while the shipper lags (or
//! while the server is down) is still read. Offsets count from the start of
//! the stream, so they keep growing across files.
//!
//! A file read to its end is not closed at once: it is kept (open, so its
//! deletion does not matter) until the server has *published* every byte
//! of it. Until then a server that loses its disk may hold less than it
//! acknowledged, and [`StreamTailer::rewind`] reads the stream again from
//! there, across files. Only bytes older than every file kept are truly
//! gone, and only for those is the server told to accept a gap.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cblogs_core::sandbox;
use cblogs_core::wire::{Batch, WireLine};
use cblogs_core::Source;

use crate::checkpoint::{Checkpoint, FileMark};
use crate::discovery::FoundStream;
use crate::route::Route;

/// How long a rotated file of a lingering stream must go unwritten before
/// reading moves on to the newer file.
const LINGER: Duration = Duration::from_secs(5);

/// One open file of the stream.
struct Segment {
    file: File,
    dev: u64,
    ino: u64,
    /// Bytes of this file already read.
    pos: u64,
    /// The stream offset of its first byte: known once reading reaches it.
    base: u64,
}

impl Segment {
    fn mark(&self) -> FileMark {
        FileMark {
            dev: self.dev,
            ino: self.ino,
            base: self.base,
        }
    }

    fn seek_to(&mut self, pos: u64) -> io::Result<()> {
        self.pos = self.file.seek(SeekFrom::Start(pos))?;
        Ok(())
    }
}

/// The last line, while its newline has not arrived.
#[derive(Default)]
struct PartialLine {
    offset: u64,
    bytes: Vec<u8>,
    /// Bytes beyond `max_line_bytes`, skipped.
    skipped: u64,
    since: Option<Instant>,
}

/// Lines read and not yet taken into a batch.
#[derive(Default)]
struct Pending {
    lines: VecDeque<WireLine>,
    /// The stream offset just past the last line.
    end: u64,
    bytes: usize,
    since: Option<Instant>,
}

/// Lines of room an empty queue of pending lines keeps.
const PENDING_KEPT: usize = 64;

/// Limits the tailer works within.
#[derive(Debug, Clone, Copy)]
pub struct TailLimits {
    pub max_line_bytes: usize,
    pub partial_line_delay: Duration,
}

/// What a caller learns from a poll.
#[derive(Debug, Default, Clone, Copy)]
pub struct Polled {
    pub bytes: usize,
    /// The budget ran out before the end of the file.
    pub more: bool,
}

pub struct StreamTailer {
    pub source: Source,
    /// `source.key()`, made once: checkpoints and logs name it often.
    pub source_key: String,
    /// The live file's path (`…/<run>/stdout`): the stream's key. Its
    /// folder (the run folder) is [`StreamTailer::dir`].
    pub path: PathBuf,
    /// Oldest first: files read to their end and kept until published,
    /// then the file being read (`segs[reading]`), then newer ones not
    /// reached yet. Back: the file last seen under the live name.
    segs: VecDeque<Segment>,
    reading: usize,
    /// The stream offset of the next byte to read.
    read_to: u64,
    line: PartialLine,
    pending: Pending,
    /// The end of the last batch taken: the next batch starts here.
    batched_to: u64,
    /// Everything before this is acknowledged by the server.
    pub acked: u64,
    /// Everything before this is published by the server (never past `acked`).
    pub published: u64,
    /// A batch of this stream awaits its answer (at most one, so a
    /// stream's batches reach the server in order).
    pub in_flight: bool,
    /// Which node takes its batches (with several).
    pub route: Route,
    /// The next batch tells the server the bytes before it are lost.
    allow_gap: bool,
    /// After a 413, batches carry at most this many lines.
    max_batch_lines: usize,
    /// The run folder is gone (the agent's garbage collector): drain, then forget.
    pub gone: bool,
    /// inotify watches the run folder: writes to the live file and changes
    /// of its name are reported, so the file need not be polled.
    pub watched: bool,
    /// The last poll read to the end of the live file. A partial line is
    /// only given up on then: while back-pressure holds reading back, its
    /// newline may well be on disk already.
    at_eof: bool,
    /// A rotated file is read on until it has been quiet for [`LINGER`],
    /// and at least that long after the rotation was seen (files outside
    /// sandboxes: see `FoundStream::linger`).
    linger: bool,
    rotated_at: Option<Instant>,
    /// The live name is a symbolic link (glog's `mesos-agent.INFO`):
    /// writes are reported under its target's name, so it is polled.
    pub is_link: bool,
    limits: TailLimits,
}

/// The number of `name` as a rotation of the live file `live`
/// (`stdout.3`, `scheduler.log.1`): `None` if it is not one.
pub fn rotation_of(name: &str, live: &str) -> Option<u32> {
    let n = sandbox::run_number(name.strip_prefix(live)?.strip_prefix('.')?)?;
    (n > 0).then_some(n)
}

/// `<live>.N … <live>.1, <live>` of a stream as they are now, oldest first.
fn stream_files(dir: &Path, live: &str) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let n = rotation_of(&e.file_name().to_string_lossy(), live)?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    files.push(dir.join(live));
    files
}

/// Whether `file` was written within [`LINGER`].
fn recently_written(file: &File) -> bool {
    file.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < LINGER)
}

/// The bytes a line takes in a request body (its text or base64).
pub fn wire_len(l: &WireLine) -> usize {
    l.text.as_ref().map_or(0, String::len) + l.b64.as_ref().map_or(0, String::len)
}

fn open_segment(path: &Path) -> io::Result<Segment> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    Ok(Segment {
        file,
        dev: meta.dev(),
        ino: meta.ino(),
        pos: 0,
        base: 0,
    })
}

impl StreamTailer {
    /// Opens a stream found by discovery: at a checkpoint, at the
    /// beginning of its oldest file, or (`at_end`) after what it holds now.
    pub fn open(
        found: &FoundStream,
        resume: Option<&Checkpoint>,
        at_end: bool,
        limits: TailLimits,
    ) -> io::Result<StreamTailer> {
        let path = found.path();
        let files = stream_files(&found.dir, &found.file);
        let mut opened = Vec::new();
        for f in &files {
            match open_segment(f) {
                Ok(seg) => opened.push(seg),
                // Rotated away between the listing and the open: the next
                // file still follows in order.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let mut t = StreamTailer {
            source: found.source.clone(),
            source_key: found.source.key(),
            path: path.clone(),
            segs: VecDeque::new(),
            reading: 0,
            read_to: 0,
            line: PartialLine::default(),
            pending: Pending::default(),
            batched_to: 0,
            acked: 0,
            published: 0,
            in_flight: false,
            route: Route::default(),
            allow_gap: false,
            max_batch_lines: usize::MAX,
            gone: false,
            watched: false,
            at_eof: false,
            linger: found.linger,
            rotated_at: None,
            is_link: fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()),
            limits,
        };
        if opened.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is gone", path.display()),
            ));
        }
        match resume {
            Some(cp) => t.resume(opened, cp)?,
            None if at_end => {
                // Only the live file, from its end; the server is told that
                // what came before is not coming.
                let mut live = opened.pop().expect("checked non-empty");
                live.pos = live.file.seek(SeekFrom::End(0))?;
                t.read_to = live.pos;
                t.published = live.pos;
                t.allow_gap = true;
                t.start_with(vec![live]);
            }
            None => t.start_with(opened),
        }
        t.batched_to = t.read_to;
        t.acked = t.read_to;
        Ok(t)
    }

    fn resume(&mut self, mut opened: Vec<Segment>, cp: &Checkpoint) -> io::Result<()> {
        self.read_to = cp.acked;
        self.published = cp.published.unwrap_or(cp.acked).min(cp.acked);
        let within = cp.acked.saturating_sub(cp.base);
        // After a reboot the device number may differ; within one run
        // folder the inode decides. A file now shorter than the checkpoint
        // is not the same file (an inode reused after a deletion).
        let found = opened
            .iter()
            .position(|s| s.ino == cp.ino && s.file.metadata().is_ok_and(|m| m.len() >= within));
        match found {
            Some(i) => {
                opened[i].seek_to(within)?;
                opened[i].base = cp.base;
                // The files kept before it, as far as they are still here
                // and in the same order.
                let mut first = i;
                for mark in cp.kept.iter().rev() {
                    match first.checked_sub(1) {
                        Some(j) if opened[j].ino == mark.ino => {
                            let len = opened[j].file.metadata()?.len();
                            opened[j].seek_to(len)?;
                            opened[j].base = mark.base;
                            first = j;
                        }
                        _ => break,
                    }
                }
                opened.drain(..first);
                self.segs = opened.into();
                self.segs.shrink_to_fit();
                self.reading = i - first;
                return Ok(());
            }
            None => tracing::warn!(
                file = %self.path.display(),
                acked = cp.acked,
                "the file holding the checkpoint (inode {}) is gone: it was rotated away or \
                 truncated while the shipper was not running; lines between it and the oldest \
                 file still here are lost",
                cp.ino
            ),
        }
        self.published = self.read_to;
        self.start_with(opened);
        Ok(())
    }

    /// Starts reading the first of `segs` where it stands, at `read_to`.
    fn start_with(&mut self, segs: Vec<Segment>) {
        self.segs = segs.into();
        // Ten thousand tailers: no room kept for files that may never come.
        self.segs.shrink_to_fit();
        self.reading = 0;
        if let Some(front) = self.segs.front_mut() {
            front.base = self.read_to - front.pos;
        }
    }

    /// Bytes read and not yet acknowledged, held here as lines.
    pub fn buffered_bytes(&self) -> usize {
        self.pending.bytes + self.line.bytes.len()
    }

    /// A last line waits for its newline.
    pub fn has_partial(&self) -> bool {
        self.line.since.is_some()
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.lines.is_empty()
    }

    /// Lines wait, none is in flight, and a node may take them.
    pub fn sendable(&self) -> bool {
        self.has_pending() && !self.in_flight && self.route.node.is_some() && !self.route.held
    }

    /// When the oldest pending line was read.
    pub fn pending_since(&self) -> Option<Instant> {
        self.pending.since
    }

    /// The run folder, which holds the live file and the rotated ones.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    /// Whether a poll may find bytes without a write being reported: the
    /// last read stopped short of the end (its budget, a rewind), a rotated
    /// file is still to be read, or the run folder is gone (drain it).
    pub fn wants_read(&self) -> bool {
        self.gone || !self.at_eof || self.reading + 1 < self.segs.len()
    }

    /// Nothing left to read, send or hear back about.
    pub fn is_drained(&self) -> bool {
        self.pending.lines.is_empty()
            && self.line.since.is_none()
            && !self.in_flight
            && self.acked >= self.read_to
            // Read to the end: after a rewind, the bytes on disk are not.
            && self.at_eof
    }

    /// Looks at the live name (rotation, truncation, deletion), then reads
    /// up to `budget` bytes into lines.
    pub fn poll(&mut self, budget: usize, scratch: &mut [u8], now_ns: i64) -> io::Result<Polled> {
        if !self.gone {
            self.check_live_name()?;
        }
        self.read(budget, scratch, now_ns)
    }

    /// Reads up to `budget` bytes into lines from the files already open,
    /// without looking at the live name: for a write inotify reported, where
    /// a stat of the path per write would cost more than the read. Rotation
    /// and truncation are still seen by the next [`StreamTailer::poll`].
    pub fn read(&mut self, budget: usize, scratch: &mut [u8], now_ns: i64) -> io::Result<Polled> {
        let mut polled = Polled::default();
        let now = Instant::now();
        self.at_eof = false;
        loop {
            let want = scratch.len().min(budget - polled.bytes);
            if want == 0 {
                polled.more = true;
                break;
            }
            let Some(seg) = self.segs.get_mut(self.reading) else {
                break;
            };
            let n = match seg.file.read(&mut scratch[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                if self.reading + 1 < self.segs.len() {
                    // A rotated file of a sandbox is never written again;
                    // one outside may be, for a while: it is read until
                    // it has been quiet (the newer file's lines wait).
                    let rotated_lately = self.rotated_at.is_some_and(|t| t.elapsed() < LINGER);
                    if self.linger
                        && (rotated_lately || recently_written(&self.segs[self.reading].file))
                    {
                        self.at_eof = true;
                        break;
                    }
                    // Read, and kept until the server has published it.
                    self.reading += 1;
                    self.segs[self.reading].base = self.read_to;
                    self.drop_published();
                    continue;
                }
                self.at_eof = true;
                break;
            }
            seg.pos += n as u64;
            self.consume(&scratch[..n], now_ns, now);
            polled.bytes += n;
        }
        if self.gone && self.at_eof && polled.bytes == 0 {
            // The folder is deleted and its files read to the end: a last
            // line without a newline will never get one.
            self.flush_partial(now_ns, true);
        }
        Ok(polled)
    }

    fn check_live_name(&mut self) -> io::Result<()> {
        let meta = match fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !self.dir().exists() {
                    tracing::info!(file = %self.path.display(), "deleted: draining what is still open, then forgetting it");
                    self.gone = true;
                }
                // Else mid-rotation: the new file is not created yet.
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let Some(back) = self.segs.back() else {
            return Ok(());
        };
        if (meta.dev(), meta.ino()) != (back.dev, back.ino) {
            self.follow_rotation();
        } else if self.reading + 1 == self.segs.len() && meta.len() < back.pos {
            self.restart_truncated(meta.len());
        }
        Ok(())
    }

    /// The live name points at a new file: open every file newer than the
    /// last one held, oldest first.
    fn follow_rotation(&mut self) {
        let live = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let files = stream_files(self.dir(), &live);
        let mut newer = Vec::new();
        for f in &files {
            let Ok(seg) = open_segment(f) else { continue };
            if self
                .segs
                .iter()
                .any(|s| (s.dev, s.ino) == (seg.dev, seg.ino))
            {
                // Held already; only what comes after it is new.
                newer.clear();
                continue;
            }
            newer.push(seg);
        }
        tracing::debug!(file = %self.path.display(), files = newer.len(), "rotated");
        if !newer.is_empty() {
            self.rotated_at = Some(Instant::now());
        }
        self.segs.extend(newer);
    }

    /// The file being read (the live one) was cut short: its old bytes
    /// are gone, and with them any way back past this point.
    fn restart_truncated(&mut self, len: u64) {
        let read_to = self.read_to;
        let Some(seg) = self.segs.get_mut(self.reading) else {
            return;
        };
        tracing::warn!(
            file = %self.path.display(),
            was = seg.pos,
            now = len,
            "truncated: reading it again from its start (stream offset {read_to})"
        );
        if seg.seek_to(0).is_ok() {
            seg.base = read_to;
            // Whatever was before the cut is the end of that line.
            self.flush_partial(cblogs_core::time::now_ns(), true);
            self.segs.drain(..self.reading);
            self.reading = 0;
        }
    }

    /// Cuts `bytes` (the next bytes of the stream) into lines.
    fn consume(&mut self, bytes: &[u8], now_ns: i64, now: Instant) {
        let max = self.limits.max_line_bytes;
        let mut at = 0;
        while let Some(i) = memchr::memchr(b'\n', &bytes[at..]) {
            let text = &bytes[at..at + i];
            let end = self.read_to + (at + i + 1) as u64;
            if self.line.since.is_none() {
                let cut = text.len() > max;
                let offset = self.read_to + at as u64;
                self.emit(
                    offset,
                    &text[..text.len().min(max)],
                    cut,
                    false,
                    end,
                    now_ns,
                    now,
                );
            } else {
                self.line_push(text);
                let line = std::mem::take(&mut self.line);
                self.emit(
                    line.offset,
                    &line.bytes,
                    line.skipped > 0,
                    false,
                    end,
                    now_ns,
                    now,
                );
            }
            at += i + 1;
        }
        if at < bytes.len() {
            if self.line.since.is_none() {
                self.line.offset = self.read_to + at as u64;
                self.line.since = Some(now);
            }
            self.line_push(&bytes[at..]);
        }
        self.read_to += bytes.len() as u64;
    }

    fn line_push(&mut self, bytes: &[u8]) {
        let room = self
            .limits
            .max_line_bytes
            .saturating_sub(self.line.bytes.len());
        let kept = bytes.len().min(room);
        self.line.bytes.extend_from_slice(&bytes[..kept]);
        self.line.skipped += (bytes.len() - kept) as u64;
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        offset: u64,
        text: &[u8],
        cut: bool,
        partial: bool,
        end: u64,
        now_ns: i64,
        now: Instant,
    ) {
        let mut line = WireLine::from_bytes(offset, now_ns, text);
        line.cut = cut;
        line.partial = partial;
        self.pending.bytes += wire_len(&line);
        self.pending.lines.push_back(line);
        self.pending.end = end;
        self.pending.since.get_or_insert(now);
    }

    /// Sends the last line without its newline, marked partial, once it is
    /// older than the partial-line delay (or `now`, when it can never end).
    pub fn flush_partial(&mut self, now_ns: i64, force: bool) {
        let Some(since) = self.line.since else {
            return;
        };
        if !force && (!self.at_eof || since.elapsed() < self.limits.partial_line_delay) {
            return;
        }
        let line = std::mem::take(&mut self.line);
        let end = line.offset + line.bytes.len() as u64 + line.skipped;
        self.emit(
            line.offset,
            &line.bytes,
            line.skipped > 0,
            true,
            end,
            now_ns,
            Instant::now(),
        );
    }

    /// The next batch, of at most `max_bytes` of lines (at least one line).
    pub fn take_batch(&mut self, max_bytes: usize) -> Option<Batch> {
        if self.in_flight || self.pending.lines.is_empty() {
            return None;
        }
        let mut lines = Vec::new();
        let mut bytes = 0;
        while let Some(l) = self.pending.lines.front() {
            let len = wire_len(l);
            if !lines.is_empty() && (bytes + len > max_bytes || lines.len() >= self.max_batch_lines)
            {
                break;
            }
            bytes += len;
            lines.extend(self.pending.lines.pop_front());
        }
        let end = self
            .pending
            .lines
            .front()
            .map_or(self.pending.end, |l| l.offset);
        self.pending.bytes = self.pending.bytes.saturating_sub(bytes);
        if self.pending.lines.is_empty() {
            self.pending.since = None;
            // A burst grew the queue; hundreds of tailers each keeping the
            // room of their biggest burst was most of the shipper's memory.
            self.pending.lines.shrink_to(PENDING_KEPT);
        }
        let batch = Batch {
            source: self.source.clone(),
            start: self.batched_to,
            end,
            lines,
            allow_gap: std::mem::take(&mut self.allow_gap),
        };
        self.batched_to = end;
        self.in_flight = true;
        Some(batch)
    }

    /// The server holds everything before `end`.
    pub fn ack(&mut self, end: u64) {
        self.in_flight = false;
        self.max_batch_lines = usize::MAX;
        self.acked = self.acked.max(end);
    }

    /// The server has published everything before `end`: the files wholly
    /// before it are closed.
    pub fn set_published(&mut self, end: u64) {
        self.published = self.published.max(end.min(self.acked));
        self.drop_published();
    }

    fn drop_published(&mut self) {
        while self.reading > 0 && self.segs[1].base <= self.published {
            self.segs.pop_front();
            self.reading -= 1;
        }
    }

    /// Puts a refused batch back in front of what is pending, to be sent
    /// again in smaller pieces.
    pub fn requeue_smaller(&mut self, batch: Batch) {
        self.max_batch_lines = (batch.lines.len() / 2).max(1);
        self.requeue(batch);
    }

    /// Puts a batch that was not delivered back in front of the lines
    /// waiting (for another node to take).
    pub fn requeue(&mut self, batch: Batch) {
        self.in_flight = false;
        self.batched_to = batch.start;
        self.allow_gap |= batch.allow_gap;
        for l in batch.lines.into_iter().rev() {
            self.pending.bytes += wire_len(&l);
            self.pending.lines.push_front(l);
        }
        self.pending.since.get_or_insert_with(Instant::now);
    }

    /// The server holds this stream only up to `held_end`, before what we
    /// sent. Reads again from there, across the files kept, or from the
    /// oldest byte still here (the next batch then allows the gap). Returns
    /// where reading starts again, or `None` when it cannot (`held_end` is
    /// past what was read, or a file cannot seek).
    pub fn rewind(&mut self, held_end: u64) -> Option<u64> {
        self.in_flight = false;
        if held_end > self.read_to {
            return None;
        }
        let to = held_end.max(self.segs.front()?.base);
        let i = (0..=self.reading)
            .rev()
            .find(|&i| self.segs[i].base <= to)?;
        let within = to - self.segs[i].base;
        self.segs[i].seek_to(within).ok()?;
        for seg in self.segs.iter_mut().skip(i + 1) {
            seg.seek_to(0).ok()?;
        }
        self.reading = i;
        self.read_to = to;
        self.batched_to = to;
        self.acked = to;
        self.published = self.published.min(to);
        self.line = PartialLine::default();
        self.pending = Pending::default();
        self.at_eof = false;
        self.allow_gap |= to > held_end;
        Some(to)
    }

    /// [`StreamTailer::rewind`] to `held_end`, saying why (`why`: who
    /// holds or published it only up to there), what is sent again and
    /// what is lost. Returns whether it is read again.
    pub fn resend_from(&mut self, held_end: u64, why: &str) -> bool {
        let acked = self.acked;
        let file = self.path.display().to_string();
        let said = format!("{why} only up to offset {held_end} of the {acked} acknowledged");
        match self.rewind(held_end) {
            Some(from) if from == held_end => {
                tracing::warn!(%file, "{said}; sending the rest again");
                true
            }
            Some(from) => {
                tracing::warn!(%file, "{said}; bytes {held_end}..{from} are no longer on disk here (lost), sending on from {from}");
                true
            }
            None => {
                tracing::warn!(%file, "{said}, and this stream cannot be read again from there");
                false
            }
        }
    }

    /// Where the stream stands, to be saved.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        // The file holding `acked`: the newest one reached that starts at
        // or before it. None does while lines from before a truncation are
        // still unanswered: those bytes are only in memory now, and a
        // restart goes on from the cut.
        let at = (0..=self.reading)
            .rev()
            .find(|&i| self.segs.get(i).is_some_and(|s| s.base <= self.acked))
            .unwrap_or(0);
        let mark = self.segs.get(at)?.mark();
        Some(Checkpoint {
            source: self.source_key.clone(),
            acked: self.acked.max(mark.base),
            dev: mark.dev,
            ino: mark.ino,
            base: mark.base,
            published: Some(self.published),
            kept: self.segs.iter().take(at).map(Segment::mark).collect(),
        })
    }

    /// Bytes of this stream on disk that the server does not hold yet.
    pub fn lag(&self) -> u64 {
        let unread: u64 = self
            .segs
            .iter()
            .skip(self.reading)
            .map(|s| {
                s.file
                    .metadata()
                    .map_or(0, |m| m.len().saturating_sub(s.pos))
            })
            .sum();
        (self.read_to + unread).saturating_sub(self.acked)
    }

    /// Files held open: the live one, rotated ones not read to the end,
    /// and those kept until published.
    pub fn open_files(&self) -> usize {
        self.segs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use cblogs_core::Stream;

    fn limits() -> TailLimits {
        TailLimits {
            max_line_bytes: 16,
            partial_line_delay: Duration::from_secs(3600),
        }
    }

    fn found(dir: &Path) -> FoundStream {
        FoundStream {
            dir: dir.to_owned(),
            file: "stdout".into(),
            linger: false,
            source: Source::example("r/prod/n", 0, "p", Stream::Stdout),
        }
    }

    fn append(path: &Path, bytes: &[u8]) {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    /// Reads everything there is and returns the lines taken as (offset, text, flags).
    fn drain(t: &mut StreamTailer) -> Vec<(u64, String, bool, bool)> {
        let mut scratch = vec![0; 7];
        t.poll(usize::MAX, &mut scratch, 1).unwrap();
        let mut out = Vec::new();
        while let Some(b) = t.take_batch(usize::MAX) {
            let end = b.end;
            out.extend(b.lines.into_iter().map(|l| {
                (
                    l.offset,
                    l.text.unwrap_or_else(|| format!("b64:{}", l.b64.unwrap())),
                    l.cut,
                    l.partial,
                )
            }));
            t.ack(end);
        }
        out
    }

    fn texts(lines: &[(u64, String, bool, bool)]) -> Vec<&str> {
        lines.iter().map(|l| l.1.as_str()).collect()
    }

    #[test]
    fn lines_pieces_long_lines_and_binary() {
        let tmp = tempfile::tempdir().unwrap();
        let f = found(tmp.path());
        let path = f.path();
        append(&path, b"one\ntw");
        let mut t = StreamTailer::open(&f, None, false, limits()).unwrap();
        assert_eq!(drain(&mut t), [(0, "one".into(), false, false)]);
        append(&path, b"o pie");
        assert!(drain(&mut t).is_empty());
        append(&path, b"ces\nabcdefghijklmnopqrstuvwxyz\n\xff\xfe\n");
        let got = drain(&mut t);
        assert_eq!(texts(&got), ["two pieces", "abcdefghijklmnop", "b64://4="]);
        assert_eq!(got[0].0, 4);
        assert!(got[1].2, "a line over the limit is cut");
        assert_eq!(got[2].0, 15 + 27);
        assert_eq!(t.acked, 15 + 27 + 3);
    }

    #[test]
    fn rotation_joins_a_split_line_and_keeps_offsets_growing() {
        let tmp = tempfile::tempdir().unwrap();
        let f = found(tmp.path());
        let path = f.path();
        append(&path, b"a\n");
        let mut t = StreamTailer::open(&f, None, false, limits()).unwrap();
        assert_eq!(texts(&drain(&mut t)), ["a"]);
        append(&path, b"b\nhal");
        fs::rename(&path, tmp.path().join("stdout.1")).unwrap();
        append(&path, b"ves\nc\n");
        let got = drain(&mut t);
        assert_eq!(texts(&got), ["b", "halves", "c"]);
        assert_eq!(got.iter().map(|l| l.0).collect::<Vec<_>>(), [2, 4, 11]);
        let cp = t.checkpoint().unwrap();
        assert_eq!((cp.acked, cp.base), (13, 7));

        // Two more rotations while the shipper is not running, then a resume.
        append(&path, b"d\n");
        fs::rename(tmp.path().join("stdout.1"), tmp.path().join("stdout.2")).unwrap();
        fs::rename(&path, tmp.path().join("stdout.1")).unwrap();
        append(&path, b"e\n");
        let mut t = StreamTailer::open(&f, Some(&cp), false, limits()).unwrap();
        let got = drain(&mut t);
        assert_eq!(texts(&got), ["d", "e"]);
        assert_eq!(got[0].0, 13);
    }

    #[test]
    fn truncation_starts_over_with_growing_offsets() {
        let tmp = tempfile::tempdir().unwrap();
        let f = found(tmp.path());
        let path = f.path();
        append(&path, b"first line\n");
        let mut t = StreamTailer::open(&f, None, false, limits()).unwrap();
        assert_eq!(drain(&mut t).len(), 1);
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&path, b"new\n");
        let got = drain(&mut t);
        assert_eq!(got, [(11, "new".into(), false, false)]);
    }

    #[test]
    fn partial_lines_after_their_delay_and_at_deletion() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        fs::create_dir(&dir).unwrap();
        let f = found(&dir);
        append(&f.path(), b"no newline yet");
        let mut t = StreamTailer::open(
            &f,
            None,
            false,
            TailLimits {
                max_line_bytes: 100,
                partial_line_delay: Duration::ZERO,
            },
        )
        .unwrap();
        assert!(drain(&mut t).is_empty());
        // Read only in part (back-pressure): the rest may end the line.
        append(&f.path(), b"!!!!");
        t.poll(2, &mut [0; 64], 1).unwrap();
        t.flush_partial(1, false);
        assert!(t.take_batch(usize::MAX).is_none());
        t.poll(usize::MAX, &mut [0; 64], 1).unwrap();
        t.flush_partial(1, false);
        let b = t.take_batch(usize::MAX).unwrap();
        assert!(b.lines[0].partial);
        assert_eq!(b.end, 18);
        t.ack(b.end);
        append(&f.path(), b" -- the rest\nlast");
        fs::remove_dir_all(&dir).unwrap();
        let got = drain(&mut t);
        assert_eq!(texts(&got), [" -- the rest"]);
        let got = drain(&mut t);
        assert_eq!(got, [(31, "last".into(), false, true)]);
        assert!(t.gone && t.is_drained());
    }

    #[test]
    fn start_at_end_and_rewind() {
        let tmp = tempfile::tempdir().unwrap();
        let f = found(tmp.path());
        append(&f.path(), b"old\n");
        let mut t = StreamTailer::open(&f, None, true, limits()).unwrap();
        append(&f.path(), b"new\n");
        let mut scratch = vec![0; 64];
        t.poll(usize::MAX, &mut scratch, 1).unwrap();
        let b = t.take_batch(usize::MAX).unwrap();
        assert!(b.allow_gap);
        assert_eq!((b.start, b.lines[0].offset), (4, 4));
        // The server lost everything: read it again from 0.
        assert_eq!(t.rewind(0), Some(0));
        assert_eq!(texts(&drain(&mut t)), ["old", "new"]);
    }

    /// A deleted sandbox's stream rewound (its node lost its disk) is not
    /// drained, and so not forgotten, before it is read again.
    #[test]
    fn a_rewound_deleted_stream_is_drained_only_once_read_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        fs::create_dir(&dir).unwrap();
        let f = found(&dir);
        append(&f.path(), b"a\nb\n");
        let mut t = StreamTailer::open(&f, None, false, limits()).unwrap();
        assert_eq!(texts(&drain(&mut t)), ["a", "b"]);
        fs::remove_dir_all(&dir).unwrap();
        assert!(drain(&mut t).is_empty());
        assert!(t.gone && t.is_drained());
        assert_eq!(t.rewind(0), Some(0));
        assert!(!t.is_drained(), "its bytes are still to be read");
        assert_eq!(texts(&drain(&mut t)), ["a", "b"]);
        assert!(t.is_drained());
    }

    /// Issue 16, rule 2: rotated files are kept until the server has
    /// published them, a rewind crosses files (even deleted ones), a
    /// restart finds the kept files again from the checkpoint, and only
    /// bytes older than every kept file are a gap.
    #[test]
    fn rotated_files_are_kept_until_published_and_rewinds_cross_them() {
        let tmp = tempfile::tempdir().unwrap();
        let f = found(tmp.path());
        let path = f.path();
        append(
            &path, b"a1
a2
",
        );
        let mut t = StreamTailer::open(&f, None, false, limits()).unwrap();
        assert_eq!(texts(&drain(&mut t)), ["a1", "a2"]);
        fs::rename(&path, tmp.path().join("stdout.1")).unwrap();
        append(
            &path, b"b1
",
        );
        assert_eq!(texts(&drain(&mut t)), ["b1"]);
        fs::rename(tmp.path().join("stdout.1"), tmp.path().join("stdout.2")).unwrap();
        fs::rename(&path, tmp.path().join("stdout.1")).unwrap();
        append(
            &path, b"c1
c2
",
        );
        assert_eq!(texts(&drain(&mut t)), ["c1", "c2"]);
        assert_eq!(
            (t.acked, t.open_files()),
            (15, 3),
            "nothing published: all kept"
        );
        // The oldest rotated file is deleted by Thermos: still kept, by descriptor.
        fs::remove_file(tmp.path().join("stdout.2")).unwrap();

        // A server that lost its disk holds up to 3 (after "a1"): the
        // stream is read again from there, across both rotations.
        assert_eq!(t.rewind(3), Some(3));
        let got = drain(&mut t);
        assert_eq!(texts(&got), ["a2", "b1", "c1", "c2"]);
        assert_eq!(got.iter().map(|l| l.0).collect::<Vec<_>>(), [3, 6, 9, 12]);

        // Published up to 7 (inside b's file): a's file is closed, b's kept.
        t.set_published(7);
        assert_eq!(t.open_files(), 2);
        let cp = t.checkpoint().unwrap();
        assert_eq!((cp.acked, cp.base, cp.published), (15, 9, Some(7)));
        assert_eq!(cp.kept.iter().map(|m| m.base).collect::<Vec<_>>(), [6]);

        // A restart finds b's file (now stdout.1) from the checkpoint.
        let mut t = StreamTailer::open(&f, Some(&cp), false, limits()).unwrap();
        assert_eq!(t.open_files(), 2);
        assert!(drain(&mut t).is_empty());
        // Held up to 0: a's file is gone, so from 6 on, with the gap allowed.
        assert_eq!(t.rewind(0), Some(6));
        let mut scratch = vec![0; 64];
        t.poll(usize::MAX, &mut scratch, 1).unwrap();
        let b = t.take_batch(usize::MAX).unwrap();
        assert!(b.allow_gap);
        assert_eq!(b.start, 6);
        let texts: Vec<_> = b.lines.iter().filter_map(|l| l.text.as_deref()).collect();
        assert_eq!(texts, ["b1", "c1", "c2"]);
        t.ack(b.end);
        // Everything published: only the live file stays open.
        t.set_published(15);
        assert_eq!(t.open_files(), 1);
        assert!(t.checkpoint().unwrap().kept.is_empty());
    }
}
