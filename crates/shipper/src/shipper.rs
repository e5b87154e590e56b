//! `Shipper`: the loop that ties discovery, tailing, sending and
//! checkpoints together.
//!
//! One thread does it all (a current-thread tokio runtime): reading local
//! files is fast, and one owner for every `StreamTailer` means no locks.
//! The loop reads only while fewer than `max_buffered_bytes` of lines wait
//! to be sent, so a slow or absent server slows the reading, never grows
//! memory; each stream has at most one batch in flight, so its batches
//! reach the server in order; a checkpoint only ever records what the
//! server acknowledged.
//!
//! Two ends per stream: `acked` (the server holds it, in its write-ahead
//! log) and `published` (the server has put it in its object store, safe
//! from the loss of its disk). The loop asks the server for the second
//! every `incarnation_check_ms`; until a stream's bytes are published, its
//! files stay open (rotated or deleted) and a finished sandbox's streams
//! are not forgotten, so a server that comes back empty gets them again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cblogs_core::time::now_ns;
use cblogs_core::wire::{Batch, IngestRequest, PublishedResponse};
use cblogs_core::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{interval, sleep_until, Instant, MissedTickBehavior};

use crate::backlog::Backlog;
use crate::checkpoint::{
    entry_line, file_text, Checkpoint, CheckpointError, CheckpointStore, EntryCache, Saved,
};
use crate::config::{Config, ConfigError, StartAt};
use crate::discovery::{SandboxScanner, Scan, Visit};
use crate::mapping::JobMapper;
use crate::sender::{Credentials, Delivery, PublishedError, Sender, SenderError};
use crate::status::{FileStatus, Status, StatusRequest};
use crate::tailer::{StreamTailer, TailLimits};
use crate::watcher::{Changes, DirWatcher};

/// How long after a write inotify reported the loop waits before reading,
/// so one read takes what many files (or the rest of a line) were given.
const WRITE_SETTLE: Duration = Duration::from_millis(25);

#[derive(Debug, thiserror::Error)]
pub enum ShipperError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Sender(#[from] SenderError),
}

/// A walk's visitor: each folder is watched before it is listed, and the
/// streams tailed already are skipped.
struct Walk<'a> {
    watcher: &'a mut DirWatcher,
    tailed: &'a HashMap<PathBuf, usize>,
}

impl Visit for Walk<'_> {
    fn folder(&mut self, dir: &Path, writes: bool) {
        self.watcher.watch(dir, writes);
    }

    fn known(&self, path: &Path) -> bool {
        self.tailed.contains_key(path)
    }
}

/// Which streams a read round reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// The poll: streams inotify does not cover, those with more to read,
    /// and the next slice of the sweep.
    Poll,
    /// More to read while there is room: as the poll, without sweeping.
    Flood,
    /// Every stream (events were lost).
    All,
}

/// A request on its way: which streams its batches belong to, and the
/// request itself (kept to split or resend it).
type InFlight = (Vec<PathBuf>, IngestRequest, Delivery);

pub struct Shipper {
    cfg: Config,
    scanner: SandboxScanner,
    watcher: DirWatcher,
    tailers: Vec<StreamTailer>,
    /// Each tailer's checkpoint line as last saved (same index).
    checkpoint_lines: Vec<EntryCache>,
    /// What waits to be sent (kept as tailers change).
    backlog: Backlog,
    by_path: HashMap<PathBuf, usize>,
    store: Arc<CheckpointStore>,
    /// Checkpoints read at start for streams not found (yet).
    carried: BTreeMap<PathBuf, Checkpoint>,
    /// No checkpoint file existed: `start_at` applies to the first scan.
    first_start: bool,
    scanned_once: bool,
    sender: Arc<Sender>,
    in_flight: JoinSet<InFlight>,
    /// When the last request went out (see `ship.min_request_gap_ms`).
    last_sent: Instant,
    scratch: Vec<u8>,
    read_cursor: usize,
    /// Where the sweep of inotify-covered streams goes on from.
    sweep_cursor: usize,
    /// When the work dir was last walked whole.
    last_full_scan: Instant,
    /// A read stopped at its budget with bytes left in the file.
    more_to_read: bool,
    checkpoint_dirty: bool,
    /// The checkpoint file being written (off the loop).
    checkpoint_write: JoinSet<Result<(), CheckpointError>>,
    /// Files that could not be opened, each reported once.
    open_failed: HashSet<PathBuf>,
    lines_acked: u64,
    lines_dropped: u64,
    status_tx: Option<mpsc::Sender<StatusRequest>>,
    status_rx: mpsc::Receiver<StatusRequest>,
    /// This agent's name in its sources: what the server is asked about.
    host: String,
    /// The server's incarnation that acknowledged the checkpoints.
    incarnation: Option<String>,
    /// A question to the server about what it holds, on its way.
    asking: JoinSet<Result<PublishedResponse, PublishedError>>,
    /// The last such question failed (said once, not every time).
    asking_failed: bool,
    /// The server answers what it has published. `false` for a server
    /// older than that question (404): each acknowledged byte then counts
    /// as published, as before, so files are not kept for nothing.
    server_publishes: bool,
}

impl Shipper {
    pub fn new(mut cfg: Config) -> Result<Shipper, ShipperError> {
        cfg.validate()?;
        // Checkpoints are keyed by path: make them independent of the cwd.
        for dir in [
            &mut cfg.work_dir,
            &mut cfg.state_dir,
            &mut cfg.checkpoint_root,
        ] {
            if !dir.as_os_str().is_empty() {
                if let Ok(abs) = std::path::absolute(&*dir) {
                    *dir = abs;
                }
            }
        }
        let mapper = JobMapper::new(&cfg.job_rules)?;
        let host = if cfg.host.is_empty() {
            hostname()
        } else {
            cfg.host.clone()
        };
        let legacy =
            (!cfg.checkpoint_root.as_os_str().is_empty()).then(|| cfg.checkpoint_root.clone());
        let scanner = SandboxScanner::new(
            cfg.work_dir.clone(),
            legacy,
            cfg.cluster.clone(),
            host.clone(),
            mapper,
        );
        let store = CheckpointStore::open(&cfg.state_dir)?;
        let loaded = store.load()?;
        let first_start = loaded.is_none();
        let Saved {
            files: carried,
            incarnation,
        } = loaded.unwrap_or_default();
        let sender = Sender::new(&cfg.server, &cfg.ship, Credentials::from_config(&cfg)?)?;
        let (status_tx, status_rx) = mpsc::channel(8);
        Ok(Shipper {
            scratch: vec![0; cfg.tail.read_chunk_bytes],
            scanner,
            watcher: DirWatcher::new(),
            tailers: Vec::new(),
            checkpoint_lines: Vec::new(),
            backlog: Backlog::default(),
            by_path: HashMap::new(),
            store: Arc::new(store),
            carried,
            first_start,
            scanned_once: false,
            sender: Arc::new(sender),
            in_flight: JoinSet::new(),
            last_sent: Instant::now(),
            read_cursor: 0,
            sweep_cursor: 0,
            last_full_scan: Instant::now(),
            more_to_read: false,
            // Written at once, so that a restart is never taken for a first start.
            checkpoint_dirty: true,
            checkpoint_write: JoinSet::new(),
            open_failed: HashSet::new(),
            lines_acked: 0,
            lines_dropped: 0,
            status_tx: Some(status_tx),
            status_rx,
            host,
            incarnation,
            asking: JoinSet::new(),
            asking_failed: false,
            server_publishes: true,
            cfg,
        })
    }

    /// Where status requests go (for the status endpoint).
    pub fn status_sender(&mut self) -> Option<mpsc::Sender<StatusRequest>> {
        self.status_tx.clone()
    }

    /// Runs until `shutdown` resolves, then sends what it has read (for up
    /// to `shutdown_grace_ms`) and writes the last checkpoint.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ShipperError> {
        // Only the endpoint holds a sender now, so `recv` ends with it.
        self.status_tx = None;
        let mut poll = interval(self.cfg.poll_interval());
        let mut rescan = interval(Duration::from_millis(self.cfg.discovery.rescan_interval_ms));
        let mut checkpoint = interval(Duration::from_millis(self.cfg.checkpoint.interval_ms));
        let mut incarnation = interval(Duration::from_millis(
            self.cfg.ship.incarnation_check_ms.max(100),
        ));
        for t in [&mut poll, &mut rescan, &mut checkpoint, &mut incarnation] {
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        // After a write, wait a moment so one read takes the writes of
        // many files (and of the rest of the line being written).
        let mut read_due: Option<Instant> = None;
        // After an event, wait a moment so a new folder's files exist too.
        let mut rescan_at: Option<Instant> = None;
        let far = || Instant::now() + Duration::from_secs(3600);
        tokio::pin!(shutdown);
        self.rescan();
        tracing::info!(
            files = self.tailers.len(),
            work_dir = %self.cfg.work_dir.display(),
            server = %self.cfg.server,
            "shipping"
        );
        loop {
            let flush_at = self.next_send_at().unwrap_or_else(far);
            let read_now =
                self.more_to_read && self.backlog.bytes() < self.cfg.tail.max_buffered_bytes;
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(done) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    if let Ok(done) = done {
                        self.on_delivery(done);
                    }
                }
                Some(reply) = self.status_rx.recv() => {
                    let _ = reply.send(self.status());
                }
                Some(answer) = self.asking.join_next(), if !self.asking.is_empty() => {
                    if let Ok(answer) = answer {
                        self.on_published(answer);
                    }
                }
                Some(saved) = self.checkpoint_write.join_next(), if !self.checkpoint_write.is_empty() => {
                    self.on_saved(saved);
                }
                _ = incarnation.tick() => self.ask_published(),
                _ = checkpoint.tick() => self.save_checkpoints(),
                // Not while a read of written files is due: the writes
                // meanwhile are taken in just before it (one wake, not one
                // per write).
                () = self.watcher.next(), if read_due.is_none() => {
                    if self.watcher.has_written() {
                        read_due.get_or_insert_with(|| self.read_written_at());
                    }
                    if self.watcher.has_changes() {
                        rescan_at.get_or_insert_with(|| Instant::now() + Duration::from_millis(100));
                    }
                }
                () = sleep_until(rescan_at.unwrap_or_else(far)), if rescan_at.is_some() => {
                    rescan_at = None;
                    let changes = self.watcher.take_changes();
                    self.on_changes(changes);
                }
                () = sleep_until(read_due.unwrap_or_else(far)), if read_due.is_some() => {
                    read_due = None;
                    self.watcher.take_ready();
                    if self.watcher.has_changes() {
                        rescan_at.get_or_insert_with(|| Instant::now() + Duration::from_millis(100));
                    }
                    let written = self.watcher.take_written();
                    self.read_written(written);
                }
                _ = rescan.tick() => {
                    if self.full_scan_due() {
                        self.rescan();
                    }
                }
                _ = poll.tick() => self.read_round(Round::Poll),
                () = sleep_until(flush_at) => {}
                // Last: under a steady flood this is always ready, and the
                // branches above must still get their turn.
                () = std::future::ready(()), if read_now => self.read_round(Round::Flood),
            }
            self.send_ready(false);
        }
        self.drain().await;
        Ok(())
    }

    /// When to read the files just written: after [`WRITE_SETTLE`], and
    /// not before the next request may go (`ship.min_request_gap_ms`):
    /// lines read sooner would only wait for it, and an agent whose
    /// thousands of files each get a line now and then would wake twice
    /// as often.
    fn read_written_at(&self) -> Instant {
        let settled = Instant::now() + WRITE_SETTLE;
        let next_request = self.last_sent + Duration::from_millis(self.cfg.ship.min_request_gap_ms);
        settled.max(next_request)
    }

    /// Sends what was read, waits for the answers up to the grace period,
    /// and writes the last checkpoint.
    async fn drain(&mut self) {
        let grace = Duration::from_millis(self.cfg.ship.shutdown_grace_ms);
        tracing::info!(
            in_flight = self.in_flight.len(),
            "shutting down: waiting up to {grace:?} for lines read to be acknowledged"
        );
        let deadline = Instant::now() + grace;
        loop {
            self.send_ready(true);
            if self.in_flight.is_empty() {
                break;
            }
            tokio::select! {
                Some(done) = self.in_flight.join_next() => {
                    if let Ok(done) = done {
                        self.on_delivery(done);
                    }
                }
                () = sleep_until(deadline) => {
                    tracing::warn!(
                        in_flight = self.in_flight.len(),
                        "shutting down with requests unanswered: they are sent again after the next start"
                    );
                    break;
                }
            }
        }
        self.in_flight.abort_all();
        while let Some(saved) = self.checkpoint_write.join_next().await {
            self.on_saved(saved);
        }
        self.checkpoint_dirty = true;
        self.save_checkpoints();
        while let Some(saved) = self.checkpoint_write.join_next().await {
            self.on_saved(saved);
        }
    }

    fn limits(&self) -> TailLimits {
        TailLimits {
            max_line_bytes: self.cfg.tail.max_line_bytes,
            partial_line_delay: Duration::from_millis(self.cfg.tail.partial_line_delay_ms),
        }
    }

    /// Whether the whole work dir is to be walked now: at every rescan
    /// interval while inotify does not watch every folder, and at the
    /// (slow) full rescan interval when it does, for events lost.
    fn full_scan_due(&self) -> bool {
        !self.watcher.complete()
            || self.last_full_scan.elapsed()
                >= Duration::from_millis(self.cfg.discovery.full_rescan_interval_ms)
    }

    /// Walks the whole work dir, starts tailing what is new, watches
    /// exactly its folders.
    fn rescan(&mut self) {
        self.last_full_scan = Instant::now();
        self.watcher.begin_walk();
        let found = self.scanner.scan(&mut Walk {
            watcher: &mut self.watcher,
            tailed: &self.by_path,
        });
        self.watcher.end_walk();
        if !self.watcher.is_watched(&self.cfg.work_dir) {
            // Nothing would report its creation.
            self.watcher.missed();
        }
        self.start_found(found);
        for t in &mut self.tailers {
            t.watched = self.watcher.is_watched(t.dir());
        }
        if !self.scanned_once {
            // Checkpoints of run folders deleted while we were down.
            self.carried
                .retain(|path, _| path.parent().is_some_and(|d| d.exists()));
            self.scanned_once = true;
        }
    }

    /// inotify named what changed: walks just those subtrees, and looks at
    /// once at the streams whose name or folder changed (a rotation, a
    /// deletion). Lost events mean a full walk and a look at every stream.
    fn on_changes(&mut self, changes: Changes) {
        if changes.lost {
            tracing::debug!("inotify lost events: walking the work dir and reading every file");
            self.rescan();
            self.read_round(Round::All);
            return;
        }
        let mut walk = Vec::new();
        let mut look = Vec::new();
        for p in &changes.paths {
            for dir in std::iter::once(p.as_path()).chain(p.parent()) {
                for stream in [Stream::Stdout, Stream::Stderr] {
                    if let Some(&i) = self.by_path.get(&dir.join(stream.as_str())) {
                        look.push(i);
                    }
                }
            }
            // A new folder: its subtree; a new or renamed file: its folder
            // (a run folder, mostly). A removal shows nothing new: the
            // streams looked at above are enough.
            match std::fs::symlink_metadata(p) {
                Ok(m) if m.is_dir() => walk.push(p.clone()),
                Ok(m) if m.is_file() => walk.extend(p.parent().map(Path::to_path_buf)),
                _ => {}
            }
        }
        let found = self.scanner.scan_under(
            &walk,
            &mut Walk {
                watcher: &mut self.watcher,
                tailed: &self.by_path,
            },
        );
        self.start_found(found);
        look.sort_unstable();
        look.dedup();
        let mut budget = self.room();
        let now = now_ns();
        for i in look {
            self.read_one(i, &mut budget, now, true);
        }
        self.forget_drained();
    }

    /// Starts tailing the streams found (new ones: a walk skips those
    /// tailed already).
    fn start_found(&mut self, found: Scan) {
        let at_end = self.first_start && !self.scanned_once && self.cfg.start_at == StartAt::End;
        if self.tailers.is_empty() {
            // The first walk: ten thousand tailers take no room to spare
            // (later ones grow the vectors as usual, not one by one).
            self.tailers.reserve_exact(found.len());
            self.checkpoint_lines.reserve_exact(found.len());
        }
        for found in &found {
            let path = found.path();
            if self.by_path.contains_key(&path) {
                continue;
            }
            let resume = self.carried.remove(&path);
            match StreamTailer::open(found, resume.as_ref(), at_end, self.limits()) {
                Ok(mut t) => {
                    if !self.server_publishes {
                        t.set_published(t.acked);
                    }
                    t.watched = self.watcher.is_watched(&found.dir);
                    self.open_failed.remove(&path);
                    tracing::info!(
                        file = %path.display(),
                        source = %t.source_key,
                        from = t.acked,
                        "tailing"
                    );
                    self.by_path.insert(path, self.tailers.len());
                    self.tailers.push(t);
                    self.checkpoint_lines.push(EntryCache::default());
                    self.checkpoint_dirty = true;
                }
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::NotFound
                        && self.open_failed.insert(path.clone())
                    {
                        tracing::warn!(file = %path.display(), "cannot open: {e}");
                    }
                    if let Some(cp) = resume {
                        self.carried.insert(path, cp);
                    }
                }
            }
        }
    }

    /// Reads the streams `round` asks for, in turn (starting one further
    /// each round, so none is always last), within the buffer's room; the
    /// others only have a partial line flushed when it waited long enough.
    ///
    /// A stream whose folder inotify watches is read when a write is
    /// reported, so the poll leaves it alone, but for a slice of them each
    /// round: each is still looked at (stat, read) once per
    /// `tail.sweep_interval_ms`, in case an event was lost. On an agent
    /// with ten thousand quiet files, stat'ing each one four times a second
    /// was most of the shipper's CPU.
    fn read_round(&mut self, round: Round) {
        let n = self.tailers.len();
        let mut budget = self.room();
        let now = now_ns();
        self.more_to_read = false;
        let (sweep_from, slice) = if round == Round::Poll && n > 0 {
            let per_round = self.cfg.tail.poll_interval_ms as f64
                / self.cfg.tail.sweep_interval_ms.max(1) as f64;
            let slice = ((n as f64 * per_round).ceil() as usize).clamp(1, n);
            let from = self.sweep_cursor % n;
            self.sweep_cursor = (from + slice) % n;
            (from, slice)
        } else {
            (0, 0)
        };
        for k in 0..n {
            let i = (self.read_cursor + k) % n;
            let t = &self.tailers[i];
            let swept = (i + n - sweep_from) % n < slice;
            if round == Round::All || swept || !t.watched || t.wants_read() {
                self.read_one(i, &mut budget, now, true);
            } else if t.has_partial() {
                let t = &mut self.tailers[i];
                let before = t.buffered_bytes();
                t.flush_partial(now, false);
                self.backlog.update(i, t, before);
            }
        }
        self.read_cursor = self.read_cursor.wrapping_add(1);
        self.forget_drained();
    }

    /// Reads the files inotify says were written, within the buffer's room.
    fn read_written(&mut self, paths: Vec<OsString>) {
        let mut budget = self.room();
        let now = now_ns();
        for path in paths {
            if let Some(&i) = self.by_path.get(Path::new(&path)) {
                self.read_one(i, &mut budget, now, false);
            }
        }
    }

    /// Bytes that may still be read before the buffer is full.
    fn room(&self) -> usize {
        self.cfg
            .tail
            .max_buffered_bytes
            .saturating_sub(self.backlog.bytes())
    }

    /// Reads stream `i` (first looking at its live name when `check_name`)
    /// up to a chunk of what `budget` leaves, and flushes a partial line
    /// that waited long enough.
    fn read_one(&mut self, i: usize, budget: &mut usize, now: i64, check_name: bool) {
        let t = &mut self.tailers[i];
        let before = t.buffered_bytes();
        let chunk = (*budget).min(self.cfg.tail.read_chunk_bytes);
        let read = if check_name {
            t.poll(chunk, &mut self.scratch, now)
        } else {
            match t.read(chunk, &mut self.scratch, now) {
                // A write reported and nothing new: the file was truncated
                // (or rotated); the poll looks at its name.
                Ok(p) if p.bytes == 0 && !t.gone => t.poll(chunk, &mut self.scratch, now),
                read => read,
            }
        };
        match read {
            Ok(p) => {
                *budget -= p.bytes.min(*budget);
                self.more_to_read |= p.more;
            }
            Err(e) => tracing::warn!(file = %t.path.display(), "cannot read: {e}"),
        }
        t.flush_partial(now, false);
        self.backlog.update(i, t, before);
    }

    /// Streams whose run folder is deleted and whose every line is acknowledged.
    fn forget_drained(&mut self) {
        let mut forgot = false;
        let mut i = 0;
        while i < self.tailers.len() {
            let t = &self.tailers[i];
            if !(t.gone && t.is_drained() && t.published >= t.acked) {
                i += 1;
                continue;
            }
            tracing::info!(file = %t.path.display(), acked = t.acked, "drained and forgotten");
            let t = self.tailers.swap_remove(i);
            self.checkpoint_lines.swap_remove(i);
            self.by_path.remove(&t.path);
            if let Some(moved) = self.tailers.get(i) {
                self.by_path.insert(moved.path.clone(), i);
            }
            self.checkpoint_dirty = true;
            forgot = true;
        }
        if forgot {
            // Indices moved.
            self.backlog.recount(&self.tailers);
        }
    }

    /// When the oldest line waiting to be sent reaches the batch delay.
    fn flush_deadline(&self) -> Option<Instant> {
        let since = self.backlog.oldest(&self.tailers)?;
        Some(Instant::from_std(since) + Duration::from_millis(self.cfg.ship.batch_max_delay_ms))
    }

    /// Sends requests while there is room in flight and a batch is due:
    /// its oldest line waited the batch delay, or a full request is ready.
    fn send_ready(&mut self, force: bool) {
        let max_bytes = self.cfg.ship.batch_max_bytes;
        while self.in_flight.len() < self.cfg.ship.max_in_flight {
            let ready: Vec<usize> = self.backlog.ready().collect();
            if ready.is_empty() {
                return;
            }
            // Nothing in flight: send now (at most every
            // min_request_gap_ms, so a busy agent does not send a request
            // per write), and a line goes out in milliseconds. While
            // requests are out, lines gather into fuller batches until one
            // is full or its oldest line has waited batch_max_delay_ms.
            let due = force
                || (self.in_flight.is_empty() && self.gap_passed())
                || self.flush_deadline().is_some_and(|d| d <= Instant::now())
                || ready
                    .iter()
                    .map(|&i| self.tailers[i].buffered_bytes())
                    .sum::<usize>()
                    >= max_bytes;
            if !due {
                return;
            }
            let mut keys = Vec::new();
            let mut batches = Vec::new();
            let mut room = max_bytes;
            for i in ready {
                if room == 0 {
                    break;
                }
                let t = &mut self.tailers[i];
                let before = t.buffered_bytes();
                let batch = t.take_batch(room);
                self.backlog.update(i, t, before);
                if let Some(b) = batch {
                    room = room.saturating_sub(b.lines.iter().map(crate::tailer::wire_len).sum());
                    keys.push(t.path.clone());
                    batches.push(b);
                }
            }
            self.dispatch(keys, IngestRequest { batches });
        }
    }

    fn gap_passed(&self) -> bool {
        self.last_sent.elapsed() >= Duration::from_millis(self.cfg.ship.min_request_gap_ms)
    }

    /// When lines waiting now are next due to be sent: at the batch delay,
    /// or, with nothing in flight, once the gap after the last request has
    /// passed. Never while every request slot is taken: an answer wakes the
    /// loop then (waking at a deadline already past would spin).
    fn next_send_at(&self) -> Option<Instant> {
        if self.in_flight.len() >= self.cfg.ship.max_in_flight {
            return None;
        }
        let deadline = self.flush_deadline()?;
        if self.in_flight.is_empty() {
            let gap = self.last_sent + Duration::from_millis(self.cfg.ship.min_request_gap_ms);
            return Some(deadline.min(gap));
        }
        Some(deadline)
    }

    fn dispatch(&mut self, keys: Vec<PathBuf>, req: IngestRequest) {
        self.last_sent = Instant::now();
        let sender = self.sender.clone();
        self.in_flight.spawn(async move {
            let d = sender.deliver(&req).await;
            (keys, req, d)
        });
    }

    /// An ingest answer came from a server of `incarnation`: the first one
    /// seen is kept; another one means the server may have lost what it
    /// had not published, and it is asked what it holds.
    fn note_incarnation(&mut self, incarnation: &str) {
        if incarnation.is_empty() || self.incarnation.as_deref() == Some(incarnation) {
            return;
        }
        if self.incarnation.is_none() {
            self.incarnation = Some(incarnation.to_owned());
            self.checkpoint_dirty = true;
            return;
        }
        self.ask_published();
    }

    /// Asks the server what it holds of this agent's sources (unless a
    /// question is on its way already).
    fn ask_published(&mut self) {
        if !self.asking.is_empty() {
            return;
        }
        let sender = self.sender.clone();
        let host = self.host.clone();
        self.asking
            .spawn(async move { sender.published(&host).await });
    }

    /// The server's answer: each stream's published end (files wholly
    /// before it are closed); and if its incarnation is not the one that
    /// acknowledged our streams, every stream it holds less of than was
    /// acknowledged is read again from what it holds (one with a batch in
    /// flight is told by that batch's 409).
    fn on_published(&mut self, answer: Result<PublishedResponse, PublishedError>) {
        self.settle_published(answer);
        // Streams may have been rewound: counted again whole (this runs
        // every incarnation_check_ms, not per line).
        self.backlog.recount(&self.tailers);
    }

    fn settle_published(&mut self, answer: Result<PublishedResponse, PublishedError>) {
        let resp = match answer {
            Ok(resp) => {
                self.asking_failed = false;
                self.server_publishes = true;
                resp
            }
            Err(PublishedError::NotServed(e)) => {
                if self.server_publishes {
                    tracing::info!(
                        "the server does not say what it has published ({e}): an older cblogsd; \
                         acknowledged lines count as published"
                    );
                    for t in &mut self.tailers {
                        t.set_published(t.acked);
                    }
                }
                self.server_publishes = false;
                return;
            }
            Err(PublishedError::Failed(e)) => {
                if !self.asking_failed {
                    tracing::info!("cannot ask the server what it holds: {e}");
                }
                self.asking_failed = true;
                return;
            }
        };
        let ends: HashMap<&str, (u64, u64)> = resp
            .sources
            .iter()
            .map(|s| (s.id.as_str(), (s.published_end, s.held_end)))
            .collect();
        let new_incarnation = !resp.incarnation.is_empty()
            && self.incarnation.as_deref() != Some(resp.incarnation.as_str());
        let known = if new_incarnation {
            self.checkpoint_dirty = true;
            self.incarnation.replace(resp.incarnation.clone())
        } else {
            None
        };
        let mut again = 0;
        for t in &mut self.tailers {
            let id = format!("{:016x}", t.source.id());
            let (published_end, held_end) = ends.get(id.as_str()).copied().unwrap_or((0, 0));
            if known.is_none() {
                if published_end > t.published && t.published < t.acked {
                    t.set_published(published_end);
                    self.checkpoint_dirty = true;
                }
                continue;
            }
            if t.in_flight || held_end >= t.acked {
                t.set_published(published_end);
                continue;
            }
            let acked = t.acked;
            match t.rewind(held_end) {
                Some(from) if from == held_end => {
                    again += 1;
                    tracing::warn!(
                        file = %t.path.display(),
                        "the server (a new incarnation) holds this stream only up to offset {held_end} of the {acked} it acknowledged; sending the rest again"
                    );
                }
                Some(from) => {
                    again += 1;
                    tracing::warn!(
                        file = %t.path.display(),
                        "the server (a new incarnation) holds this stream only up to offset {held_end} of the {acked} it acknowledged; bytes {held_end}..{from} are no longer on disk here (lost), sending on from {from}"
                    );
                }
                None => tracing::warn!(
                    file = %t.path.display(),
                    "the server (a new incarnation) holds this stream only up to offset {held_end} of the {acked} it acknowledged, and this stream cannot be read again from there"
                ),
            }
            t.set_published(published_end);
        }
        if known.is_none() {
            return;
        }
        tracing::info!(
            incarnation = %resp.incarnation,
            streams_sent_again = again,
            "the server has a new incarnation"
        );
        self.more_to_read = true;
    }

    /// Sends each batch of a refused request on its own, so one bad batch
    /// does not take the others down with it.
    fn resend_singly(&mut self, keys: Vec<PathBuf>, req: IngestRequest) {
        for (key, batch) in keys.into_iter().zip(req.batches) {
            self.dispatch(
                vec![key],
                IngestRequest {
                    batches: vec![batch],
                },
            );
        }
    }

    fn on_delivery(&mut self, done: InFlight) {
        let acked = matches!(done.2, Delivery::Acked(_));
        self.settle_delivery(done);
        if !acked {
            // A rewind, a requeue or a drop: rare, counted again whole.
            self.backlog.recount(&self.tailers);
        }
    }

    fn settle_delivery(&mut self, (keys, req, delivery): InFlight) {
        if req.batches.len() > 1 && !matches!(delivery, Delivery::Acked(_)) {
            return self.resend_singly(keys, req);
        }
        match delivery {
            Delivery::Acked(resp) => {
                self.lines_acked += resp.accepted + resp.duplicates;
                self.note_incarnation(&resp.incarnation);
                let publishes = self.server_publishes;
                for (key, batch) in keys.iter().zip(&req.batches) {
                    let Some(&i) = self.by_path.get(key) else {
                        continue;
                    };
                    let t = &mut self.tailers[i];
                    let before = t.buffered_bytes();
                    t.ack(batch.end);
                    if !publishes {
                        t.set_published(batch.end);
                    }
                    self.backlog.update(i, t, before);
                }
                self.checkpoint_dirty = true;
            }
            Delivery::Gap { held_end, message } => {
                let Some((key, mut batch)) = keys.into_iter().zip(req.batches).next() else {
                    return;
                };
                let Some(t) = self.tailer(&key) else { return };
                match t.rewind(held_end) {
                    Some(from) if from == held_end => tracing::warn!(
                        file = %key.display(),
                        "the server holds this stream only up to offset {held_end} ({message}); reading it again from there"
                    ),
                    Some(from) => tracing::warn!(
                        file = %key.display(),
                        "the server holds this stream only up to offset {held_end} ({message}), and bytes {held_end}..{from} are no longer on disk here (lost): reading it again from {from}, with the gap allowed"
                    ),
                    None => {
                        tracing::warn!(
                            file = %key.display(),
                            "the server holds this stream only up to offset {held_end}, and bytes {held_end}..{} are no longer on disk here: sending on, with the gap allowed",
                            batch.start
                        );
                        t.in_flight = true;
                        batch.allow_gap = true;
                        self.dispatch(
                            vec![key],
                            IngestRequest {
                                batches: vec![batch],
                            },
                        );
                    }
                }
            }
            Delivery::TooLarge { message } => {
                let Some((key, batch)) = keys.into_iter().zip(req.batches).next() else {
                    return;
                };
                if batch.lines.len() > 1 {
                    if let Some(t) = self.tailer(&key) {
                        t.requeue_smaller(batch);
                    }
                } else {
                    self.drop_batch(&key, batch, &format!("413: {message}"));
                }
            }
            Delivery::Refused { status, message } => {
                if let Some((key, batch)) = keys.into_iter().zip(req.batches).next() {
                    self.drop_batch(&key, batch, &format!("{status}: {message}"));
                }
            }
        }
    }

    /// A batch the server can never take: say exactly what is lost, move on.
    fn drop_batch(&mut self, key: &PathBuf, batch: Batch, why: &str) {
        let n = batch.lines.len() as u64;
        tracing::error!(
            file = %key.display(),
            source = %batch.source.key(),
            "dropped {n} lines (stream offsets {}..{}): the server refused them for good ({why})",
            batch.start,
            batch.end
        );
        self.lines_dropped += n;
        if let Some(t) = self.tailer(key) {
            t.ack(batch.end);
            // Never to be published: what was published before them is
            // all there will be (else a deleted stream is held for ever).
            if t.published >= batch.start {
                t.set_published(batch.end);
            }
        }
        self.checkpoint_dirty = true;
    }

    fn tailer(&mut self, key: &PathBuf) -> Option<&mut StreamTailer> {
        let i = *self.by_path.get(key)?;
        self.tailers.get_mut(i)
    }

    /// Writes the checkpoint file, off the loop, if anything changed and
    /// the last write has ended.
    fn save_checkpoints(&mut self) {
        if !self.checkpoint_dirty || !self.checkpoint_write.is_empty() {
            return;
        }
        self.checkpoint_dirty = false;
        let carried: Vec<String> = self
            .carried
            .iter()
            // Read from the file: they serialize again.
            .filter_map(|(path, cp)| entry_line(path, cp).ok())
            .collect();
        let mut lines: Vec<&str> = carried.iter().map(String::as_str).collect();
        for (t, cache) in self.tailers.iter().zip(&mut self.checkpoint_lines) {
            if let Some(cp) = t.checkpoint() {
                lines.extend(cache.line(&t.path, cp));
            }
        }
        let body = file_text(lines, self.incarnation.as_deref());
        let store = self.store.clone();
        self.checkpoint_write
            .spawn_blocking(move || store.write(&body));
    }

    fn on_saved(&mut self, saved: Result<Result<(), CheckpointError>, tokio::task::JoinError>) {
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!("cannot write checkpoints: {e}");
                self.checkpoint_dirty = true;
            }
            Err(e) => {
                tracing::error!("checkpoint writer failed: {e}");
                self.checkpoint_dirty = true;
            }
        }
    }

    fn status(&self) -> Status {
        let mut files: Vec<FileStatus> = self
            .tailers
            .iter()
            .map(|t| FileStatus {
                path: t.path.display().to_string(),
                source: t.source_key.clone(),
                acked: t.acked,
                published: t.published,
                lag_bytes: t.lag(),
                open_files: t.open_files(),
                deleted: t.gone,
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Status {
            server: self.cfg.server.clone(),
            files,
            lines_acked: self.lines_acked,
            lines_dropped: self.lines_dropped,
            requests_in_flight: self.in_flight.len(),
            watched_dirs: self.watcher.watched(),
            retries: self.sender.retries(),
        }
    }
}

/// This machine's name, as `hostname` prints it.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match (rc, std::str::from_utf8(&buf[..len])) {
        (0, Ok(name)) if !name.is_empty() => name.to_owned(),
        _ => "localhost".to_owned(),
    }
}

/// Raises the soft open-file limit towards `want` (never above the hard limit).
pub fn raise_open_file_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        let target = want.min(lim.rlim_max);
        if lim.rlim_cur < target {
            lim.rlim_cur = target;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("cannot raise the open-file limit to {target}");
            }
        }
    }
}
