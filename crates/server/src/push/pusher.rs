//! Each pushed entry once. Pushes carry no byte offsets, so a sender's
//! retry (its answer lost, or cblogsd restarted before answering) cannot
//! be told by offset as a shipper's can. Instead, as Loki does, an entry
//! with the same time and text as one of the last `ingest.push_dedup_entries`
//! entries of its stream is a copy, and dropped.
//!
//! What a stream's recent entries were is kept in memory and, the first
//! time a stream is pushed to after a start, read back from the store (its
//! last lines; the lines of one entry share its time). So a retry across a
//! restart is dropped too. Entries are then placed at the end of their
//! source (`Ingestor::append`), and remembered once durable: a push that
//! failed leaves nothing to drop its retry.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use cblogs_core::wire::{Batch, IngestRequest, WireLine};
use cblogs_core::Source;
use rustc_hash::FxHasher;

use super::{source_of, PushedEntry, PushedStream};
use crate::ingest::{IngestError, Ingestor};
use crate::read;
use crate::store::Store;

/// How many streams' recent entries are kept; past it, the streams pushed
/// to least recently are forgotten (and read back if pushed to again).
const MAX_STREAMS: usize = 10_000;

/// What a push did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushOutcome {
    /// Entries stored.
    pub accepted: u64,
    /// Entries dropped as copies of ones already stored (a retry).
    pub duplicates: u64,
    /// Lines stored (an entry may span several).
    pub lines: u64,
    pub bytes: u64,
}

/// One stream's recent entries, by a hash of (time, text).
#[derive(Default)]
struct Recent {
    loaded: bool,
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    /// When it was last pushed to (a counter), to forget the oldest.
    used: u64,
}

impl Recent {
    fn remember(&mut self, key: u64, keep: usize) {
        if self.seen.insert(key) {
            self.order.push_back(key);
        }
        while self.order.len() > keep {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }
}

/// An entry's key: its time and its text as stored (a newline that ends
/// it ends no line, so it is not part of it).
fn key_of(time_ns: i64, text: &str) -> u64 {
    let mut h = FxHasher::default();
    (time_ns, text.strip_suffix('\n').unwrap_or(text)).hash(&mut h);
    h.finish()
}

pub struct Pusher {
    ingestor: Arc<Ingestor>,
    store: Arc<Store>,
    streams: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<Recent>>>>,
    clock: std::sync::atomic::AtomicU64,
    keep: usize,
}

impl Pusher {
    pub fn new(ingestor: Arc<Ingestor>, store: Arc<Store>, keep: usize) -> Pusher {
        Pusher {
            ingestor,
            store,
            streams: Mutex::new(HashMap::new()),
            clock: std::sync::atomic::AtomicU64::new(0),
            keep: keep.max(1),
        }
    }

    /// Stores what is new in `streams`, once durable.
    pub async fn push(&self, streams: Vec<PushedStream>) -> Result<PushOutcome, IngestError> {
        let mut by_source: BTreeMap<u64, (Source, Vec<PushedEntry>)> = BTreeMap::new();
        for s in streams {
            let source = source_of(&s.labels);
            by_source
                .entry(source.id())
                .or_insert_with(|| (source, Vec::new()))
                .1
                .extend(s.entries);
        }
        // One push to a stream at a time, taken in id order.
        let mut guards = Vec::with_capacity(by_source.len());
        for id in by_source.keys() {
            guards.push(self.recent(*id).lock_owned().await);
        }
        let mut outcome = PushOutcome::default();
        let mut batches = Vec::new();
        let mut keys: Vec<Vec<u64>> = Vec::new();
        for ((id, (source, entries)), recent) in by_source.into_iter().zip(guards.iter_mut()) {
            if !recent.loaded {
                self.load(id, recent).await;
            }
            let mut batch = Batch {
                source,
                start: 0,
                end: 0,
                lines: Vec::new(),
                allow_gap: false,
            };
            let mut new_keys = Vec::new();
            let mut in_this_push = HashSet::new();
            for e in entries {
                let key = key_of(e.time_ns, &e.text);
                if recent.seen.contains(&key) || !in_this_push.insert(key) {
                    outcome.duplicates += 1;
                    continue;
                }
                new_keys.push(key);
                outcome.accepted += 1;
                for line in entry_lines(&e.text) {
                    batch
                        .lines
                        .push(WireLine::from_bytes(batch.end, e.time_ns, line.as_bytes()));
                    batch.end += line.len() as u64 + 1;
                }
            }
            // One list per source, as the guards are.
            keys.push(new_keys);
            if !batch.lines.is_empty() {
                batches.push(batch);
            }
        }
        if batches.is_empty() {
            return Ok(outcome);
        }
        let resp = self.ingestor.append(IngestRequest { batches }).await?;
        outcome.lines = resp.accepted;
        outcome.bytes = resp.accepted_bytes;
        // Durable: a retry of these is a copy now.
        let keep = self.keep;
        for (recent, keys) in guards.iter_mut().zip(keys) {
            for k in keys {
                recent.remember(k, keep);
            }
        }
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

    /// Reads the stream's last entries back from the store: its last
    /// lines, those of one time joined as one entry's.
    async fn load(&self, id: u64, recent: &mut Recent) {
        let store = self.store.clone();
        let keep = self.keep;
        let lines = tokio::task::spawn_blocking(move || {
            let snap = store.snapshot(&|s| s.id() == id, false);
            read::last_lines(&snap, keep, None).map(|l| l.lines)
        })
        .await;
        let lines = match lines {
            Ok(Ok(lines)) => lines,
            Ok(Err(e)) => {
                tracing::warn!(source = format!("{id:016x}"), error = %e, "push: cannot read a stream's last lines; its retries are not recognised until it is pushed to again");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "push: reading a stream's last lines failed");
                return;
            }
        };
        let mut entry: Option<(i64, String)> = None;
        for l in lines {
            let text = String::from_utf8_lossy(&l.bytes);
            match &mut entry {
                Some((t, joined)) if *t == l.time_ns => {
                    joined.push('\n');
                    joined.push_str(&text);
                }
                _ => {
                    if let Some((t, joined)) = entry.take() {
                        recent.remember(key_of(t, &joined), keep);
                    }
                    entry = Some((l.time_ns, text.into_owned()));
                }
            }
        }
        if let Some((t, joined)) = entry {
            recent.remember(key_of(t, &joined), keep);
        }
        recent.loaded = true;
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
    fn a_key_is_the_entry_as_stored() {
        assert_eq!(key_of(5, "a\nb\n"), key_of(5, "a\nb"));
        assert_ne!(key_of(5, "a\nb"), key_of(6, "a\nb"));
    }

    #[test]
    fn an_entry_is_its_lines() {
        let lines: Vec<&str> = entry_lines("boom\nTraceback:\n  at x\n").collect();
        assert_eq!(lines, ["boom", "Traceback:", "  at x"]);
        assert_eq!(entry_lines("one").collect::<Vec<_>>(), ["one"]);
        assert_eq!(entry_lines("").collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn recent_entries_are_bounded() {
        let mut r = Recent::default();
        for k in 0..10 {
            r.remember(k, 4);
        }
        assert_eq!(r.order.len(), 4);
        assert!(r.seen.contains(&9) && !r.seen.contains(&5));
    }
}
