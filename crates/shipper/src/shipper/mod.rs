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
//!
//! With several cblogsd nodes, [`Nodes`] chooses the node of each stream
//! (`published.rs` routes; `sending.rs` makes one request per node).

mod published;
mod sending;

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
use crate::config::{Config, ConfigError, ServerSpec, StartAt};
use crate::discovery::{SandboxScanner, Scan, Visit};
use crate::files::FilesScanner;
use crate::mapping::JobMapper;
use crate::nodes::{serverset, Nodes};
use crate::sender::{Credentials, Delivery, PublishedError, SenderError};
use crate::status::{FileStatus, NodeStatus, Status, StatusRequest};
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

/// The live file a rotated one belongs to (`x.log.1` → `x.log`); the path
/// itself if it is no rotation.
fn live_of(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rsplit_once('.') {
        Some((base, _)) if crate::tailer::rotation_of(&name, base).is_some() => {
            path.with_file_name(base)
        }
        _ => path.to_owned(),
    }
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

    fn files_folder(&mut self, dir: &Path) {
        self.watcher.watch_files(dir);
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

/// A request on its way: the node it went to, which streams its batches
/// belong to, and the request itself (kept to split or resend it).
type InFlight = (usize, Vec<PathBuf>, IngestRequest, Delivery);

/// A node's answer to the question of what it holds: which node.
type Answer = (usize, Result<PublishedResponse, PublishedError>);

pub struct Shipper {
    cfg: Config,
    scanner: SandboxScanner,
    /// `[[files]]`: files outside sandboxes.
    files: FilesScanner,
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
    /// The nodes to send to, and which takes each stream.
    nodes: Nodes,
    /// The serverset's members that take ingest, as they change.
    members: Option<mpsc::Receiver<Vec<String>>>,
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
    /// Questions to the nodes about what they hold, on their way.
    asking: JoinSet<Answer>,
    /// Questions asked since start (each node's last is numbered).
    questions: u64,
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
        let files =
            FilesScanner::new(&cfg.files, &cfg.cluster, &host).map_err(ConfigError::Invalid)?;
        let store = CheckpointStore::open(&cfg.state_dir)?;
        let loaded = store.load()?;
        let first_start = loaded.is_none();
        let Saved {
            files: carried,
            incarnation,
        } = loaded.unwrap_or_default();
        let spec = ServerSpec::parse(&cfg.server).map_err(ConfigError::Invalid)?;
        let mut nodes = Nodes::new(&spec, &cfg.ship, Credentials::from_config(&cfg)?)?;
        if !nodes.several() && !nodes.is_empty() {
            // One server: the checkpoints were acknowledged by this incarnation.
            nodes.get_mut(0).incarnation = incarnation;
        }

        let (status_tx, status_rx) = mpsc::channel(8);
        Ok(Shipper {
            scratch: vec![0; cfg.tail.read_chunk_bytes],
            scanner,
            files,
            watcher: DirWatcher::new(),
            tailers: Vec::new(),
            checkpoint_lines: Vec::new(),
            backlog: Backlog::default(),
            by_path: HashMap::new(),
            store: Arc::new(store),
            carried,
            first_start,
            scanned_once: false,
            nodes,
            members: None,
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
            asking: JoinSet::new(),
            questions: 0,
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
        if let Ok(ServerSpec::Serverset(addr)) = ServerSpec::parse(&self.cfg.server) {
            let (tx, rx) = mpsc::channel(4);
            let every = Duration::from_millis(self.cfg.ship.serverset_poll_ms);
            tokio::spawn(serverset::watch(addr, every, tx));
            self.members = Some(rx);
        }
        // With several nodes, a second: a node not live, or one that
        // streams wait on, is asked each time (the others still every
        // incarnation_check_ms), and streams are routed again.
        let question_every = match self.nodes.several() {
            true => self.cfg.ship.incarnation_check_ms.clamp(100, 1000),
            false => self.cfg.ship.incarnation_check_ms.max(100),
        };
        let mut incarnation = interval(Duration::from_millis(question_every));
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
                    if let Ok((node, answer)) = answer {
                        self.on_published(node, answer);
                    }
                }
                Some(urls) = recv_members(&mut self.members) => self.on_members(urls),
                Some(saved) = self.checkpoint_write.join_next(), if !self.checkpoint_write.is_empty() => {
                    self.on_saved(saved);
                }
                _ = incarnation.tick() => {
                    self.reroute();
                    self.ask_published();
                }
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
        let mut walk = Walk {
            watcher: &mut self.watcher,
            tailed: &self.by_path,
        };
        let mut found = self.scanner.scan(&mut walk);
        found.extend(self.files.scan(&mut walk));
        self.watcher.end_walk();
        if !self.watcher.is_watched(&self.cfg.work_dir) {
            // Nothing would report its creation.
            self.watcher.missed();
        }
        self.start_found(found);
        for t in &mut self.tailers {
            t.watched = self.watcher.is_watched(t.dir()) && !t.is_link;
        }
        if !self.scanned_once {
            // Checkpoints of run folders deleted while we were down.
            // (A `[[files]]` folder may come later: its checkpoints stay,
            // or its files would start again at 0.)
            let files = &self.files;
            self.carried
                .retain(|path, _| path.parent().is_some_and(|d| d.exists() || files.covers(d)));
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
        let mut files_changed = false;
        for p in &changes.paths {
            for dir in std::iter::once(p.as_path()).chain(p.parent()) {
                for stream in [Stream::Stdout, Stream::Stderr] {
                    if let Some(&i) = self.by_path.get(&dir.join(stream.as_str())) {
                        look.push(i);
                    }
                }
            }
            // A file of `[[files]]`, or a rotation of one (`x.log.1`).
            if p.parent().is_some_and(|d| self.files.covers(d)) {
                files_changed = true;
                if let Some(&i) = self
                    .by_path
                    .get(p)
                    .or_else(|| self.by_path.get(&live_of(p)))
                {
                    look.push(i);
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
        let mut visit = Walk {
            watcher: &mut self.watcher,
            tailed: &self.by_path,
        };
        let mut found = self.scanner.scan_under(&walk, &mut visit);
        if files_changed {
            found.extend(self.files.scan(&mut visit));
        }
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
                    self.nodes.route(&mut t, self.questions);
                    t.watched = self.watcher.is_watched(&found.dir) && !t.is_link;
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
            let path = PathBuf::from(path);
            // A write to a rotated file (logrotate's `x.log.1`, written on
            // through its old descriptor) is its stream's.
            let i = self
                .by_path
                .get(&path)
                .or_else(|| self.by_path.get(&live_of(&path)));
            if let Some(&i) = i {
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
        // With one server, the incarnation that acknowledged them. With
        // several, each stream's node is asked what it holds anyway.
        let incarnation = match self.nodes.several() || self.nodes.is_empty() {
            true => None,
            false => self.nodes.get(0).incarnation.as_deref(),
        };
        let body = file_text(lines, incarnation);
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
                node: t.route.node.map(|n| self.nodes.get(n).url().to_owned()),
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut retries = std::collections::BTreeMap::new();
        for node in self.nodes.iter() {
            for (why, n) in node.sender.retries() {
                *retries.entry(why).or_default() += n;
            }
        }
        let nodes = match self.nodes.several() {
            false => Vec::new(),
            true => (0..self.nodes.len())
                .map(|i| {
                    let n = self.nodes.get(i);
                    NodeStatus {
                        url: n.url().to_owned(),
                        id: n.id.clone(),
                        live: n.is_up() && n.is_listed(),
                        listed: n.is_listed(),
                        streams: self
                            .tailers
                            .iter()
                            .filter(|t| t.route.node == Some(i))
                            .count(),
                        streams_waiting: n.waiting(),
                    }
                })
                .collect(),
        };
        Status {
            server: self.cfg.server.clone(),
            files,
            lines_acked: self.lines_acked,
            lines_dropped: self.lines_dropped,
            requests_in_flight: self.in_flight.len(),
            watched_dirs: self.watcher.watched(),
            retries,
            nodes,
            streams_moved: self.nodes.moves,
        }
    }
}

/// The serverset's next list of members (never, without a serverset).
async fn recv_members(members: &mut Option<mpsc::Receiver<Vec<String>>>) -> Option<Vec<String>> {
    match members {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
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
