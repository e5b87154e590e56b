//! The write-ahead log: where an accepted batch becomes durable before it is
//! acknowledged.
//!
//! Records are appended to numbered segment files (`wal/<first seq>.wal`) by
//! one writer thread that takes every record waiting, writes them at once and
//! syncs once (group commit): many concurrent ingest requests share one
//! fsync. Only after the sync are the records handed on (to the in-memory
//! blocks, live tailers and the indexer) and their senders released.
//!
//! A segment is deleted once every record in it is committed to the index
//! ([`Wal::trim_below`], called by the committer); on start-up the remaining segments are replayed. A
//! torn last record (a crash in mid-write) fails its length or checksum, is
//! cut off with a warning, and everything before it is kept.
//!
//! Record framing: `u32 len` · `u32 crc32(payload)` · payload, where payload
//! is `u64 seq` · `u32 source-json len` · source JSON · encoded [`LineBlock`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use cblogs_core::Source;
use tokio::sync::watch;

use crate::block::LineBlock;

/// One accepted batch: the lines of one source that the server did not hold yet.
#[derive(Debug, Clone)]
pub struct WalRecord {
    pub seq: u64,
    pub source: Arc<Source>,
    pub lines: LineBlock,
    /// Its lines as Server-Sent Events, encoded by the first live tail that
    /// wants them and shared by every other: with 64 tails on one job, a
    /// line is turned into JSON once, not 64 times.
    pub sse: std::sync::OnceLock<bytes::Bytes>,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log I/O error in {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A write failed and was undone (the file is as before it): the disk
    /// is full, most likely. Ingest resumes by itself once there is room.
    #[error("the write-ahead log cannot write ({0}); ingest resumes by itself when there is room")]
    Full(String),
    #[error("the write-ahead log has failed ({0}); restart cblogsd once the cause is fixed")]
    Failed(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_owned(),
        source,
    }
}

const HEADER: usize = 8;
/// A record larger than this is corrupt, not real (bodies are capped far below).
const MAX_RECORD: usize = 1 << 30;

impl WalRecord {
    pub fn new(seq: u64, source: Arc<Source>, lines: LineBlock) -> WalRecord {
        WalRecord {
            seq,
            source,
            lines,
            sse: std::sync::OnceLock::new(),
        }
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        let source = serde_json::to_vec(&*self.source).unwrap_or_default();
        let lines = self.lines.encode();
        let mut payload = Vec::with_capacity(12 + source.len() + lines.len());
        payload.extend_from_slice(&self.seq.to_le_bytes());
        payload.extend_from_slice(&(source.len() as u32).to_le_bytes());
        payload.extend_from_slice(&source);
        payload.extend_from_slice(&lines);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
    }

    fn decode(payload: &[u8]) -> Option<WalRecord> {
        let seq = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
        let slen = u32::from_le_bytes(payload.get(8..12)?.try_into().ok()?) as usize;
        let source: Source = serde_json::from_slice(payload.get(12..12 + slen)?).ok()?;
        let lines = LineBlock::decode(payload.get(12 + slen..)?).ok()?;
        Some(WalRecord::new(seq, Arc::new(source), lines))
    }
}

struct Segment {
    path: PathBuf,
    first_seq: u64,
    /// The highest seq written to it; `None` while empty.
    last_seq: Option<u64>,
    bytes: u64,
}

/// The files: owned by the writer thread once the service runs.
pub struct WalFiles {
    dir: PathBuf,
    segment_bytes: u64,
    /// Closed segments, oldest first.
    closed: Vec<Segment>,
    active: Segment,
    active_file: File,
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

impl WalFiles {
    /// Opens the WAL in `dir`, replays what it holds, and starts a new
    /// segment for what comes next. Returns the records in seq order.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(WalFiles, Vec<WalRecord>), WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut paths: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let path = entry.map_err(io_err(dir))?.path();
            let first = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".wal"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(first) = first {
                paths.push((first, path));
            }
        }
        paths.sort();
        let mut records = Vec::new();
        let mut closed = Vec::new();
        for (first_seq, path) in paths {
            let before = records.len();
            replay_segment(&path, &mut records)?;
            let last_seq = records[before..].last().map(|r: &WalRecord| r.seq);
            if last_seq.is_none() {
                // Nothing in it (a clean stop leaves an empty active segment).
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            let bytes = fs::metadata(&path).map_err(io_err(&path))?.len();
            closed.push(Segment {
                path,
                first_seq,
                last_seq,
                bytes,
            });
        }
        let next_seq = records.last().map_or(1, |r| r.seq + 1);
        let path = segment_path(dir, next_seq);
        let active_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        sync_dir(dir)?;
        let files = WalFiles {
            dir: dir.to_owned(),
            segment_bytes,
            closed,
            active: Segment {
                path,
                first_seq: next_seq,
                last_seq: None,
                bytes: 0,
            },
            active_file,
        };
        Ok((files, records))
    }

    /// Writes the records and syncs them to disk.
    ///
    /// A write that fails (no space, most likely) is undone: the file is
    /// cut back to its length before, so it holds no half record, and the
    /// error is [`WalError::Full`] — the WAL can go on once there is room. A
    /// failed sync is [`WalError::Failed`]: after one, Linux may have
    /// dropped pages it had reported written, so nothing can be trusted
    /// until a restart replays the file.
    pub fn append(&mut self, records: &[WalRecord], buf: &mut Vec<u8>) -> Result<(), WalError> {
        buf.clear();
        for r in records {
            r.encode_into(buf);
        }
        let path = &self.active.path;
        if let Err(e) = self.active_file.write_all(buf) {
            let undone = self
                .active_file
                .set_len(self.active.bytes)
                .and_then(|_| self.active_file.sync_data());
            return Err(match undone {
                Ok(()) => WalError::Full(format!("{}: {e}", path.display())),
                Err(u) => WalError::Failed(format!(
                    "{}: {e}; and cutting the partial write off failed: {u}",
                    path.display()
                )),
            });
        }
        if let Err(e) = self.active_file.sync_data() {
            return Err(WalError::Failed(format!("{}: fsync: {e}", path.display())));
        }
        self.active.bytes += buf.len() as u64;
        if let Some(last) = records.last() {
            self.active.last_seq = Some(last.seq);
        }
        if self.active.bytes >= self.segment_bytes {
            // The records are durable whatever happens here: a segment
            // that cannot be started now (no room for a new file) is
            // tried again after the next append.
            if let Err(e) = self.roll() {
                tracing::warn!(error = %e, "cannot start a new WAL segment; the current one grows meanwhile");
            }
        }
        Ok(())
    }

    /// Bytes of every segment.
    pub fn bytes(&self) -> u64 {
        self.closed.iter().map(|s| s.bytes).sum::<u64>() + self.active.bytes
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn roll(&mut self) -> Result<(), WalError> {
        let next = self
            .active
            .last_seq
            .map_or(self.active.first_seq, |s| s + 1);
        let path = segment_path(&self.dir, next);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        let old = std::mem::replace(
            &mut self.active,
            Segment {
                path,
                first_seq: next,
                last_seq: None,
                bytes: 0,
            },
        );
        self.active_file = file;
        self.closed.push(old);
        Ok(())
    }

    /// When the WAL holds more than `max_bytes`: the seq below which records
    /// must be committed so that the oldest segment can go. The caller
    /// seals the open blocks that pin it (quiet sources whose blocks would
    /// otherwise wait for `block_max_age`).
    pub fn over_budget(&self, max_bytes: u64) -> Option<u64> {
        if self.bytes() <= max_bytes {
            return None;
        }
        let oldest = self.closed.first().unwrap_or(&self.active);
        oldest.last_seq.map(|last| last + 1)
    }

    /// Deletes every segment whose records all have a seq below `seq` (they
    /// are committed to the index); rolls the active segment first if it is
    /// wholly below.
    pub fn trim_below(&mut self, seq: u64) -> Result<(), WalError> {
        if self.active.last_seq.is_some_and(|last| last < seq) {
            self.roll()?;
        }
        let mut removed = false;
        while let Some(first) = self.closed.first() {
            if first.last_seq.is_some_and(|last| last >= seq) {
                break;
            }
            // Every record in it is below `seq`: committed.
            fs::remove_file(&first.path).map_err(io_err(&first.path))?;
            self.closed.remove(0);
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// Reads every whole record of one segment; cuts a torn tail off the file.
fn replay_segment(path: &Path, out: &mut Vec<WalRecord>) -> Result<(), WalError> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(io_err(path))?;
    let mut pos = 0usize;
    while pos < data.len() {
        let whole = data.get(pos..pos + HEADER).and_then(|h| {
            let len = u32::from_le_bytes(h[..4].try_into().ok()?) as usize;
            let crc = u32::from_le_bytes(h[4..].try_into().ok()?);
            let payload = data
                .get(pos + HEADER..pos + HEADER + len)
                .filter(|_| len <= MAX_RECORD)?;
            (crc32fast::hash(payload) == crc).then_some((len, payload))
        });
        let Some((len, payload)) = whole else {
            tracing::warn!(
                path = %path.display(),
                at = pos,
                dropped_bytes = data.len() - pos,
                "torn or corrupt record at the end of a WAL segment (a crash mid-write); cutting it off, the records before it are kept"
            );
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_err(path))?;
            f.set_len(pos as u64)
                .and_then(|_| f.sync_all())
                .map_err(io_err(path))?;
            break;
        };
        match WalRecord::decode(payload) {
            Some(r) => out.push(r),
            None => {
                tracing::error!(path = %path.display(), at = pos, "WAL record with a good checksum does not decode; skipped")
            }
        }
        pos += HEADER + len;
    }
    Ok(())
}

/// What the writer thread has done: every record up to `seq` is on disk
/// and applied, except those in `dropped`.
#[derive(Debug, Clone, Default)]
struct Durable {
    seq: u64,
    /// Seq ranges (inclusive) of records that were not written: those of
    /// the group whose write failed and those queued after it until
    /// [`Wal::resume`]. Their senders are answered 503 and send again.
    dropped: Vec<(u64, u64)>,
    /// Why the WAL cannot write now.
    failed: Option<String>,
    /// The failure cannot be undone without a restart (a failed fsync).
    fatal: bool,
}

impl Durable {
    fn was_dropped(&self, seq: u64) -> bool {
        self.dropped.iter().any(|&(a, b)| (a..=b).contains(&seq))
    }
    fn drop_records(&mut self, first: u64, last: u64) {
        match self.dropped.last_mut() {
            Some((_, b)) if *b + 1 >= first => *b = (*b).max(last),
            _ => self.dropped.push((first, last)),
        }
        // Only recent ranges can have waiters; keep the list short.
        if self.dropped.len() > 64 {
            self.dropped.remove(0);
        }
    }
}

enum Msg {
    Record(WalRecord),
    /// After a [`WalError::Full`]: everything queued before this message
    /// has been dropped; start writing again. Answers whether it did.
    Resume(mpsc::Sender<bool>),
}

/// The running WAL: a writer thread and the handles the service uses.
pub struct Wal {
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    durable: watch::Receiver<Durable>,
    /// Shared with the writer thread: it appends, the committer trims.
    files: Arc<Mutex<WalFiles>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Wal {
    /// Starts the writer thread. `on_durable` runs on that thread, in seq
    /// order, after each group is synced and before its senders are released.
    pub fn start(
        files: WalFiles,
        last_seq: u64,
        mut on_durable: impl FnMut(Vec<WalRecord>) + Send + 'static,
    ) -> Wal {
        let (tx, rx) = mpsc::channel::<Msg>();
        let (durable_tx, durable) = watch::channel(Durable {
            seq: last_seq,
            ..Durable::default()
        });
        let files = Arc::new(Mutex::new(files));
        let writer_files = files.clone();
        let thread = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || {
                let mut buf = Vec::new();
                let mut next = rx.recv().ok();
                while let Some(msg) = next.take() {
                    let first = match msg {
                        Msg::Resume(reply) => {
                            let resumed = durable_tx.send_if_modified(|d| {
                                let resume = d.failed.is_some() && !d.fatal;
                                if resume {
                                    d.failed = None;
                                }
                                resume
                            });
                            let _ = reply.send(resumed || durable_tx.borrow().failed.is_none());
                            next = rx.recv().ok();
                            continue;
                        }
                        Msg::Record(r) => r,
                    };
                    // Group commit: everything already waiting shares this sync.
                    let mut group = vec![first];
                    let mut bytes = group[0].lines.text_len();
                    while bytes < GROUP_BYTES {
                        match rx.try_recv() {
                            Ok(Msg::Record(r)) => {
                                bytes += r.lines.text_len();
                                group.push(r);
                            }
                            Ok(resume) => {
                                next = Some(resume);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let (first_seq, last) = (group[0].seq, group.last().map_or(0, |r| r.seq));
                    let failed = durable_tx.borrow().failed.is_some();
                    let appended = if failed {
                        Err(None)
                    } else {
                        lock(&writer_files).append(&group, &mut buf).map_err(Some)
                    };
                    match appended {
                        Ok(()) => {
                            on_durable(group);
                            durable_tx.send_modify(|d| d.seq = last);
                        }
                        Err(e) => {
                            match &e {
                                Some(WalError::Full(why)) => tracing::error!(
                                    "write-ahead log cannot write ({why}); ingest answers 503 until there is room"
                                ),
                                Some(e) => tracing::error!(
                                    error = %e,
                                    "write-ahead log failed; ingest answers 503 until cblogsd is restarted"
                                ),
                                None => {}
                            }
                            durable_tx.send_modify(|d| {
                                d.drop_records(first_seq, last);
                                if let Some(e) = e {
                                    d.fatal |= !matches!(e, WalError::Full(_));
                                    d.failed = Some(e.to_string());
                                }
                            });
                        }
                    }
                    if next.is_none() {
                        next = rx.recv().ok();
                    }
                }
            })
            .expect("spawn the WAL writer thread");
        Wal {
            tx: Mutex::new(Some(tx)),
            durable,
            files,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Queues a record. Callers assign seqs in order and call this in that
    /// order (the ingest lock guarantees it).
    pub fn submit(&self, record: WalRecord) -> Result<(), WalError> {
        let sent = lock(&self.tx)
            .as_ref()
            .is_some_and(|tx| tx.send(Msg::Record(record)).is_ok());
        if sent {
            Ok(())
        } else {
            Err(WalError::Failed("the writer has stopped".into()))
        }
    }

    /// Waits until the record `seq` and every one before it is durable and
    /// applied, or was dropped by a failed write.
    pub async fn wait_durable(&self, seq: u64) -> Result<(), WalError> {
        let mut rx = self.durable.clone();
        let d = rx
            .wait_for(|d| d.seq >= seq || d.was_dropped(seq) || d.fatal)
            .await
            .map_err(|_| WalError::Failed("the writer has stopped".into()))?;
        if d.was_dropped(seq) || d.seq < seq {
            let why = d.failed.clone().unwrap_or_else(|| "a write failed".into());
            return Err(if d.fatal {
                WalError::Failed(why)
            } else {
                WalError::Full(why)
            });
        }
        Ok(())
    }

    /// Why the WAL cannot write, while it cannot.
    pub fn failure(&self) -> Option<String> {
        self.durable.borrow().failed.clone()
    }

    /// After a [`WalError::Full`]: drops whatever is still queued and starts
    /// writing again. The caller holds the ingest lock (nothing is queued
    /// meanwhile) and resets what each source holds to what was applied.
    /// Blocks until the writer has done it; false if it could not (the
    /// failure is fatal, or the writer has stopped).
    pub fn resume(&self) -> bool {
        let (reply, answer) = mpsc::channel();
        let sent = lock(&self.tx)
            .as_ref()
            .is_some_and(|tx| tx.send(Msg::Resume(reply)).is_ok());
        sent && answer.recv().unwrap_or(false)
    }

    /// Bytes of WAL on disk.
    pub fn bytes_on_disk(&self) -> u64 {
        lock(&self.files).bytes()
    }

    pub fn dir(&self) -> PathBuf {
        lock(&self.files).dir().to_owned()
    }

    /// Deletes the segments whose records are all below `seq`: the caller
    /// has committed them to the index. Safe against concurrent appends: a
    /// record appended meanwhile has a seq at or above `seq` and keeps its
    /// segment alive.
    pub fn trim_below(&self, seq: u64) -> Result<(), WalError> {
        lock(&self.files).trim_below(seq)
    }

    /// See [`WalFiles::over_budget`].
    pub fn over_budget(&self, max_bytes: u64) -> Option<u64> {
        lock(&self.files).over_budget(max_bytes)
    }

    /// Stops accepting records and waits until the writer has synced and
    /// applied everything queued.
    pub fn close(&self) {
        lock(&self.tx).take();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

/// A poisoned lock only means another thread panicked mid-update of plain
/// data we still want to use (the WAL files stay consistent on disk).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stop adding to a group past this many bytes of text.
const GROUP_BYTES: usize = 8 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use cblogs_core::{LineFlags, Stream};

    fn record(seq: u64, text: &str) -> WalRecord {
        let mut lines = LineBlock::new();
        lines.push(seq * 100, 1, LineFlags::default(), text.as_bytes());
        WalRecord::new(
            seq,
            Arc::new(Source {
                cluster: "c".into(),
                host: "h".into(),
                task_id: "t".into(),
                job: "r/prod/n".parse().unwrap(),
                instance: 0,
                process: "p".into(),
                run: 0,
                stream: Stream::Stdout,
            }),
            lines,
        )
    }

    #[test]
    fn replays_what_was_appended_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, replayed) = WalFiles::open(dir.path(), 1 << 20).unwrap();
        assert!(replayed.is_empty());
        let mut buf = Vec::new();
        files
            .append(&[record(1, "one"), record(2, "two")], &mut buf)
            .unwrap();
        files.append(&[record(3, "three")], &mut buf).unwrap();
        let active = files.active.path.clone();
        drop(files);
        // A crash in mid-write leaves half a record.
        let mut f = OpenOptions::new().append(true).open(&active).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (files, replayed) = WalFiles::open(dir.path(), 1 << 20).unwrap();
        let seqs: Vec<u64> = replayed.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(replayed[2].lines.line(0).bytes, b"three");
        assert_eq!(files.active.first_seq, 4);
        drop(files);
        // The torn bytes are gone: a second replay is clean and identical.
        let (_, again) = WalFiles::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(again.len(), 3);
    }

    #[test]
    fn over_budget_names_the_seq_that_frees_the_oldest_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, _) = WalFiles::open(dir.path(), 10).unwrap(); // roll after every append
        let mut buf = Vec::new();
        assert_eq!(files.over_budget(0), None, "empty");
        for seq in 1..=3 {
            files.append(&[record(seq, "x")], &mut buf).unwrap();
        }
        let total: u64 = files.closed.iter().map(|s| s.bytes).sum();
        assert_eq!(files.closed.len(), 3);
        assert_eq!(files.over_budget(total), None);
        assert_eq!(
            files.over_budget(total - 1),
            Some(2),
            "commit seq 1 to free the oldest"
        );
        files.trim_below(2).unwrap();
        assert_eq!(files.over_budget(0), Some(3));
    }

    #[test]
    fn trims_only_committed_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, _) = WalFiles::open(dir.path(), 10).unwrap(); // roll after every append
        let mut buf = Vec::new();
        for seq in 1..=4 {
            files.append(&[record(seq, "x")], &mut buf).unwrap();
        }
        files.trim_below(3).unwrap();
        drop(files);
        let (_, replayed) = WalFiles::open(dir.path(), 10).unwrap();
        let seqs: Vec<u64> = replayed.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [3, 4]);
    }
}
