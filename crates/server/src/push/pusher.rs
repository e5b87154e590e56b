//! Each pushed entry once. Pushes carry no byte offsets, so a sender's
//! retry (its answer lost, or cblogsd restarted before answering) cannot
//! be told by offset as a shipper's can. Instead, as Loki does, by time
//! and text: an entry all of whose lines (each as stored: its time, its
//! bytes cut at `ingest.max_line_bytes`) are among the recent lines of
//! its stream is a copy, and dropped. The recent lines are the last
//! `ingest.push_dedup_entries` of the stream, and at least the whole of
//! its last push.
//!
//! They are kept in memory and, the first time a stream is pushed to after
//! a start, read back from the store (its newest lines), so a retry across
//! a restart is dropped too. Entries are then placed at the end of their
//! source (`Ingestor::append`) and remembered once durable, in a task of
//! their own, so a client that hangs up mid-push cannot leave lines stored
//! and not remembered; a push that fails has its streams read back again
//! before the next one.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use cblogs_core::wire::{Batch, IngestRequest, WireLine};
use cblogs_core::Source;
use rustc_hash::FxHasher;
use tokio::sync::OwnedMutexGuard;

use super::{source_of, PushedEntry, PushedStream};
use crate::cluster::SeenEpochs;
use crate::ingest::{IngestError, Ingestor};
use crate::read;
use crate::store::Store;

/// How many streams' recent lines are kept; past it, the streams pushed
/// to least recently are forgotten (and read back if pushed to again).
/// With `push_dedup_entries` it bounds the memory: 4,096 × 1,024 keys.
const MAX_STREAMS: usize = 4096;

/// What a push did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PushOutcome {
    /// Entries stored.
    pub accepted: u64,
    /// Entries dropped as copies of ones already stored (a retry).
    pub duplicates: u64,
    /// Lines stored (an entry may span several).
    pub lines: u64,
    pub bytes: u64,
}

impl PushOutcome {
    /// The outcome of two parts of one push.
    pub fn add(&mut self, other: PushOutcome) {
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.lines += other.lines;
        self.bytes += other.bytes;
    }
}

/// One stream's recent lines, by a hash of (time, bytes as stored).
#[derive(Default)]
struct Recent {
    loaded: bool,
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    /// When it was last pushed to (a counter), to forget the oldest.
    used: u64,
}

impl Recent {
    /// Remembers `keys` (one push's), keeping at least all of them.
    fn remember(&mut self, keys: &[u64], keep: usize) {
        for k in keys {
            if self.seen.insert(*k) {
                self.order.push_back(*k);
            }
        }
        let keep = keep.max(keys.len());
        while self.order.len() > keep {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }
}

/// A line's key: its time and its bytes as stored.
fn key_of(time_ns: i64, bytes: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    (time_ns, bytes).hash(&mut h);
    h.finish()
}

pub struct Pusher {
    ingestor: Arc<Ingestor>,
    store: Arc<Store>,
    streams: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<Recent>>>>,
    clock: std::sync::atomic::AtomicU64,
    keep: usize,
    max_line_bytes: usize,
}

/// One stream of a push, its lock held.
struct Locked {
    id: u64,
    source: Source,
    entries: Vec<PushedEntry>,
    recent: OwnedMutexGuard<Recent>,
}

impl Pusher {
    pub fn new(
        ingestor: Arc<Ingestor>,
        store: Arc<Store>,
        keep: usize,
        max_line_bytes: usize,
    ) -> Pusher {
        Pusher {
            ingestor,
            store,
            streams: Mutex::new(HashMap::new()),
            clock: std::sync::atomic::AtomicU64::new(0),
            keep: keep.max(1),
            max_line_bytes: max_line_bytes.max(1),
        }
    }

    /// A line's bytes as the ingestor stores them (cut at the limit).
    fn stored<'a>(&self, line: &'a str) -> &'a [u8] {
        &line.as_bytes()[..line.len().min(self.max_line_bytes)]
    }

    /// Stores what is new in `streams`, once durable. In a cluster, each
    /// stream's source is taken only if its owner's epoch is still the one
    /// in `seen` (the push's router chose this node by it).
    pub async fn push(
        &self,
        streams: Vec<PushedStream>,
        seen: SeenEpochs,
    ) -> Result<PushOutcome, IngestError> {
        let mut by_source: BTreeMap<u64, (Source, Vec<PushedEntry>)> = BTreeMap::new();
        for s in streams.into_iter().filter(|s| !s.entries.is_empty()) {
            let source = source_of(&s.labels);
            by_source
                .entry(source.id())
                .or_insert_with(|| (source, Vec::new()))
                .1
                .extend(s.entries);
        }
        // One push to a stream at a time, taken in id order.
        let mut locked = Vec::with_capacity(by_source.len());
        for (id, (source, entries)) in by_source {
            let recent = self.recent(id).lock_owned().await;
            locked.push(Locked {
                id,
                source,
                entries,
                recent,
            });
        }
        self.load(&mut locked).await;
        let mut outcome = PushOutcome::default();
        let mut batches = Vec::new();
        let mut keys: Vec<Vec<u64>> = Vec::with_capacity(locked.len());
        for l in &mut locked {
            let mut batch = Batch {
                source: l.source.clone(),
                start: 0,
                end: 0,
                lines: Vec::new(),
                allow_gap: false,
            };
            let mut new_keys: Vec<u64> = Vec::new();
            let mut in_this_push = HashSet::new();
            for e in std::mem::take(&mut l.entries) {
                let lines: Vec<&str> = entry_lines(&e.text).collect();
                let line_keys: Vec<u64> = lines
                    .iter()
                    .map(|line| key_of(e.time_ns, self.stored(line)))
                    .collect();
                let known = |k: &u64| l.recent.seen.contains(k) || in_this_push.contains(k);
                if line_keys.iter().all(known) {
                    outcome.duplicates += 1;
                    continue;
                }
                outcome.accepted += 1;
                for (j, (line, key)) in lines.iter().zip(&line_keys).enumerate() {
                    in_this_push.insert(*key);
                    new_keys.push(*key);
                    // An entry is one event: its lines after the first go on it.
                    let mut wire = WireLine::from_bytes(batch.end, e.time_ns, line.as_bytes());
                    wire.continues = j > 0;
                    batch.lines.push(wire);
                    batch.end += line.len() as u64 + 1;
                }
            }
            keys.push(new_keys);
            if !batch.lines.is_empty() {
                batches.push(batch);
            }
        }
        if batches.is_empty() {
            return Ok(outcome);
        }
        // To the end whatever the client does: stored and not remembered,
        // a retry would be stored again.
        let ingestor = self.ingestor.clone();
        let keep = self.keep;
        let guards: Vec<OwnedMutexGuard<Recent>> = locked.into_iter().map(|l| l.recent).collect();
        let seen = Arc::new(seen);
        let appended = tokio::spawn(async move {
            let mut guards = guards;
            let answer = ingestor.append(IngestRequest { batches }, seen).await;
            for (recent, keys) in guards.iter_mut().zip(&keys) {
                match &answer {
                    Ok(_) => recent.remember(keys, keep),
                    // Part of it may be durable: read it back before the
                    // stream's next push.
                    Err(_) => recent.loaded = false,
                }
            }
            answer
        })
        .await;
        let resp = match appended {
            Ok(answer) => answer?,
            Err(e) => {
                return Err(IngestError::Claim(format!("the push's task failed: {e}")));
            }
        };
        outcome.lines = resp.accepted;
        outcome.bytes = resp.accepted_bytes;
        Ok(outcome)
    }

    /// The stream's state, made (unloaded) if new; the least recently used
    /// are forgotten past [`MAX_STREAMS`].
    fn recent(&self, id: u64) -> Arc<tokio::sync::Mutex<Recent>> {
        let now = self
            .clock
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if streams.len() >= MAX_STREAMS && !streams.contains_key(&id) {
            let mut idle: Vec<(u64, u64)> = streams
                .iter()
                .filter_map(|(id, r)| r.try_lock().ok().map(|r| (r.used, *id)))
                .collect();
            idle.sort_unstable();
            for (_, old) in idle.iter().take(MAX_STREAMS / 2) {
                streams.remove(old);
            }
        }
        let recent = streams.entry(id).or_default().clone();
        if let Ok(mut r) = recent.try_lock() {
            r.used = now;
        }
        recent
    }

    /// Reads back from the store the newest lines of each stream not
    /// loaded yet, in one blocking task.
    async fn load(&self, locked: &mut [Locked]) {
        let ids: Vec<u64> = locked
            .iter()
            .filter(|l| !l.recent.loaded)
            .map(|l| l.id)
            .collect();
        if ids.is_empty() {
            return;
        }
        let store = self.store.clone();
        let keep = self.keep;
        let wanted = ids.clone();
        let read = tokio::task::spawn_blocking(move || {
            wanted
                .iter()
                .map(|id| {
                    let snap = store.snapshot(&|s| s.id() == *id, false);
                    read::last_lines(&snap, keep, None).map(|l| l.lines)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(per_stream) = read else {
            tracing::warn!("push: reading streams' last lines failed");
            return;
        };
        for (id, lines) in ids.into_iter().zip(per_stream) {
            let Some(l) = locked.iter_mut().find(|l| l.id == id) else {
                continue;
            };
            match lines {
                Ok(lines) => {
                    let keys: Vec<u64> =
                        lines.iter().map(|l| key_of(l.time_ns, &l.bytes)).collect();
                    l.recent.remember(&keys, keep);
                    l.recent.loaded = true;
                }
                Err(e) => {
                    tracing::warn!(source = format!("{id:016x}"), error = %e, "push: cannot read a stream's last lines; its retries are not recognised until it is pushed to again")
                }
            }
        }
    }
}

/// An entry's lines: split at `\n` (one ending the text ends no extra
/// empty line).
fn entry_lines(text: &str) -> impl Iterator<Item = &str> {
    text.strip_suffix('\n').unwrap_or(text).split('\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_its_lines() {
        let lines: Vec<&str> = entry_lines("boom\nTraceback:\n  at x\n").collect();
        assert_eq!(lines, ["boom", "Traceback:", "  at x"]);
        assert_eq!(entry_lines("one").collect::<Vec<_>>(), ["one"]);
        assert_eq!(entry_lines("").collect::<Vec<_>>(), [""]);
        assert_eq!(entry_lines("a\n\n").collect::<Vec<_>>(), ["a", ""]);
    }

    #[test]
    fn recent_lines_are_bounded_but_keep_the_last_push() {
        let mut r = Recent::default();
        r.remember(&(0..10).collect::<Vec<_>>(), 4);
        assert_eq!(r.order.len(), 10, "a push is kept whole");
        r.remember(&[10], 4);
        assert_eq!(r.order.len(), 4);
        assert!(r.seen.contains(&10) && r.seen.contains(&7) && !r.seen.contains(&6));
    }
}
