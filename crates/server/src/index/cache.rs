//! What readers of the index keep between reads ([`ReadCaches`]), in
//! size-bounded least-recently-used caches shared between threads
//! ([`SizedLru`]).
//!
//! Two things are kept: decoded blocks (a refined search, or the web
//! page's results and histogram for one query, read the same blocks
//! again) and each index segment's terms in one buffer. Values are handed
//! out as `Arc`s, so evicting one never pulls it from under a reader.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tantivy::index::SegmentId;

use super::columns::BlockRef;
use super::partition::{PartitionError, SplitBlocks};
use super::term_blob::TermBlob;
use crate::block::LineBlock;
use crate::config::SearchConfig;

/// The caches every read of committed blocks goes through. The store owns
/// them and hands them to readers with each snapshot.
pub struct ReadCaches {
    /// Decoded blocks, by (partition uid, position in `blocks.dat`).
    blocks: SizedLru<(u64, u64), LineBlock>,
    /// Each segment's terms, for suffix and infix lookups.
    pub terms: SizedLru<SegmentId, TermBlob>,
}

impl ReadCaches {
    pub fn new(config: &SearchConfig) -> ReadCaches {
        ReadCaches {
            blocks: SizedLru::new(config.block_cache_bytes),
            terms: SizedLru::new(config.term_cache_bytes),
        }
    }

    /// Block `b` of a split, decoded: from the cache, or read and kept.
    pub fn block(
        &self,
        blocks: &SplitBlocks,
        b: &BlockRef,
    ) -> Result<Arc<LineBlock>, PartitionError> {
        self.blocks.get_or_load(&(blocks.uid, b.data_pos), || {
            let lines = blocks.read_block(b)?;
            let size = lines.memory_bytes();
            Ok((lines, size))
        })
    }
}

pub struct SizedLru<K, V> {
    budget: usize,
    inner: Mutex<Entries<K, V>>,
}

struct Entries<K, V> {
    map: HashMap<K, Entry<V>>,
    bytes: usize,
    clock: u64,
}

struct Entry<V> {
    value: Arc<V>,
    size: usize,
    used: u64,
}

impl<K: Hash + Eq + Clone, V> SizedLru<K, V> {
    /// A cache holding at most `budget` bytes (as the sizes given say); 0
    /// turns it off.
    pub fn new(budget: usize) -> Self {
        SizedLru {
            budget,
            inner: Mutex::new(Entries {
                map: HashMap::new(),
                bytes: 0,
                clock: 0,
            }),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries<K, V>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached value for `key`, or `load`'s (value, size), kept if it
    /// fits. `load` runs outside the lock, so two threads may load the same
    /// key at once; the second one's value is kept.
    pub fn get_or_load<E>(
        &self,
        key: &K,
        load: impl FnOnce() -> Result<(V, usize), E>,
    ) -> Result<Arc<V>, E> {
        {
            let mut e = self.entries();
            e.clock += 1;
            let now = e.clock;
            if let Some(entry) = e.map.get_mut(key) {
                entry.used = now;
                return Ok(entry.value.clone());
            }
        }
        let (value, size) = load()?;
        let value = Arc::new(value);
        if size > self.budget {
            return Ok(value);
        }
        let mut e = self.entries();
        e.clock += 1;
        let used = e.clock;
        let entry = Entry {
            value: value.clone(),
            size,
            used,
        };
        if let Some(old) = e.map.insert(key.clone(), entry) {
            e.bytes -= old.size;
        }
        e.bytes += size;
        while e.bytes > self.budget {
            let Some(oldest) = e
                .map
                .iter()
                .min_by_key(|(_, entry)| entry.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(gone) = e.map.remove(&oldest) {
                e.bytes -= gone.size;
            }
        }
        Ok(value)
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.entries().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(v: u32, size: usize) -> impl FnOnce() -> Result<(u32, usize), ()> {
        move || Ok((v, size))
    }

    #[test]
    fn keeps_the_recently_used_within_budget() {
        let c = SizedLru::new(100);
        assert_eq!(*c.get_or_load(&1, load(10, 40)).unwrap(), 10);
        assert_eq!(*c.get_or_load(&2, load(20, 40)).unwrap(), 20);
        // 1 is used again, so 2 is the oldest when 3 needs room.
        assert_eq!(*c.get_or_load(&1, load(99, 40)).unwrap(), 10, "cached");
        c.get_or_load(&3, load(30, 40)).unwrap();
        assert_eq!(c.bytes(), 80);
        assert_eq!(
            *c.get_or_load(&2, load(21, 40)).unwrap(),
            21,
            "evicted, loaded again"
        );
        assert_eq!(*c.get_or_load(&3, load(0, 40)).unwrap(), 30);
        // Too big to keep: handed out, not cached.
        assert_eq!(*c.get_or_load(&4, load(40, 500)).unwrap(), 40);
        assert!(c.bytes() <= 100);
        let off = SizedLru::new(0);
        off.get_or_load(&1, load(1, 1)).unwrap();
        assert_eq!(off.bytes(), 0);
    }
}
