//! The running WAL: one writer thread that takes every record waiting,
//! writes them at once and syncs once (group commit), hands them on, and
//! only then releases their senders. After a write fails (a full disk) it
//! drops what was queued until told to resume.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::watch;

use super::error::WalError;
use super::record::WalRecord;
use super::segments::WalFiles;

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
    /// The files' bytes, as of their last change: read on every ingest
    /// request (the unpublished budget), which must not wait for the lock
    /// the writer holds across its fsync.
    bytes: Arc<AtomicU64>,
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
        let bytes = Arc::new(AtomicU64::new(files.bytes()));
        let files = Arc::new(Mutex::new(files));
        let writer_files = files.clone();
        let writer_bytes = bytes.clone();
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
                        let mut files = lock(&writer_files);
                        let appended = files.append(&group, &mut buf).map_err(Some);
                        writer_bytes.store(files.bytes(), Ordering::Relaxed);
                        appended
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
            bytes,
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

    /// Bytes of WAL on disk (as of the last append or trim; no lock).
    pub fn bytes_on_disk(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn dir(&self) -> PathBuf {
        lock(&self.files).dir().to_owned()
    }

    /// Deletes the segments whose records are all below `seq`: the caller
    /// has committed them to the index. Safe against concurrent appends: a
    /// record appended meanwhile has a seq at or above `seq` and keeps its
    /// segment alive.
    pub fn trim_below(&self, seq: u64) -> Result<(), WalError> {
        let mut files = lock(&self.files);
        let trimmed = files.trim_below(seq);
        self.bytes.store(files.bytes(), Ordering::Relaxed);
        trimmed
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
