//! [`Ownerships`]: the sources this node of a cluster takes lines of, each
//! under the epoch of its takeover (the metastore's record: see
//! `metastore/state.rs`).
//!
//! The rules, each closing a way to show a line twice or lose one:
//! - A node takes a source (a metastore claim, one more epoch) before it
//!   accepts its first lines, and starts it at the source's published end:
//!   what the owner before it published is never taken again.
//! - It publishes a source's lines only under the epoch it holds; the
//!   metastore refuses the publish otherwise.
//! - Each WAL record carries the epoch its lines were accepted under, and
//!   is applied (and replayed) only while the node still holds that
//!   epoch: a request accepted just before a takeover and applied after
//!   leaves nothing for the node to publish.
//! - When it finds the source taken by another node (the metastore read
//!   every commit round, `storage.commit_interval_ms`, or a refused
//!   publish), it drops
//!   what it holds of it unpublished (`SplitSet::fence`): a node that was
//!   stopped or cut off and comes back cannot publish ranges the new owner
//!   published. Its next lines of the source make it take it again, if
//!   they come from a shipper (which chose this node). Pushed lines have
//!   no copy to send again, so their claim gives way instead: it takes a
//!   source only if its owner's epoch is still the one the push was
//!   routed by ([`SeenEpochs`]).
//!
//! A node alone (no `[cluster]`) has no `Ownerships`: it owns every source
//! it is sent, and writes no claims.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use cblogs_core::Source;

use crate::metastore::{Metastore, MetastoreError, Ownership};

pub struct Ownerships {
    node: String,
    metastore: Arc<Metastore>,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// Per source id: the epoch this node holds it at.
    epochs: HashMap<u64, u64>,
    /// Sources taken from this node whose unpublished lines it dropped,
    /// until it takes them again.
    dropped: HashSet<u64>,
}

/// Per source id, its owner's epoch as a push's router saw it when it
/// chose this node (0: nobody owned it): the claim gives way if it moved.
pub type SeenEpochs = HashMap<u64, u64>;

/// A source just taken: where its lines must start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub id: u64,
    pub published_end: u64,
    /// This node held it before, and dropped what it held unpublished:
    /// it holds nothing of it past `published_end`.
    pub dropped: bool,
}

impl Ownerships {
    /// This node's ownerships as the metastore records them: a restarted
    /// node still holds what nobody took from it meanwhile.
    pub fn open(node: &str, metastore: Arc<Metastore>) -> Ownerships {
        let epochs = metastore
            .sources()
            .into_iter()
            .filter_map(|(id, r)| {
                let o = r.owner?;
                (o.node == node).then_some((id, o.epoch))
            })
            .collect();
        Ownerships {
            node: node.to_owned(),
            metastore,
            held: Mutex::new(Held {
                epochs,
                dropped: HashSet::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Of `sources`, those this node does not hold (each once).
    pub fn missing<'a>(&self, sources: impl Iterator<Item = &'a Source>) -> Vec<Source> {
        let held = self.lock();
        let mut seen = HashSet::new();
        sources
            .filter(|s| !held.epochs.contains_key(&s.id()) && seen.insert(s.id()))
            .cloned()
            .collect()
    }

    /// Takes `sources` (a metastore commit: blocking). Returns where each
    /// one's lines must start. With `seen` (pushed lines), only sources
    /// whose owner's epoch is still the one seen there (0: nobody), or
    /// that this node holds meanwhile, are taken; else nothing is
    /// ([`MetastoreError::TakenMeanwhile`]).
    pub fn take(
        &self,
        sources: &[Source],
        seen: Option<&SeenEpochs>,
    ) -> Result<Vec<Started>, MetastoreError> {
        let taken = match seen {
            None => self.metastore.claim(&self.node, sources)?,
            Some(seen) => {
                let may_take = |id: u64, owner: Option<&Ownership>| match owner {
                    Some(o) if o.node == self.node => true,
                    _ => owner.map_or(0, |o| o.epoch) == seen.get(&id).copied().unwrap_or(0),
                };
                self.metastore.claim_if(&self.node, sources, &may_take)?
            }
        };
        let mut held = self.lock();
        Ok(sources
            .iter()
            .zip(taken)
            .map(|(s, t)| {
                held.epochs.insert(s.id(), t.owner.epoch);
                Started {
                    id: s.id(),
                    published_end: t.published_end,
                    dropped: held.dropped.remove(&s.id()),
                }
            })
            .collect())
    }

    /// The ownership this node publishes source `id` under, if it holds it.
    pub fn of(&self, id: u64) -> Option<Ownership> {
        self.epoch(id).map(|epoch| Ownership {
            node: self.node.clone(),
            epoch,
        })
    }

    /// Whether this node dropped what it held of source `id` when another
    /// took it (and has not taken it back).
    pub fn was_dropped(&self, id: u64) -> bool {
        self.lock().dropped.contains(&id)
    }

    /// The epoch this node holds source `id` at, if it does.
    pub fn epoch(&self, id: u64) -> Option<u64> {
        self.lock().epochs.get(&id).copied()
    }

    /// Whether lines accepted under `epoch` (a WAL record's) are still
    /// this node's: it holds source `id` at that epoch. Lines accepted
    /// outside ownership (`None`: written before this node joined a
    /// cluster) are taken at the start, and kept.
    pub fn holds(&self, id: u64, epoch: Option<u64>) -> bool {
        epoch.is_none_or(|e| self.epoch(id) == Some(e))
    }

    /// Source `id`'s owner and epoch as the metastore (as last read)
    /// records them, whichever node that is.
    pub fn recorded(&self, id: u64) -> Option<Ownership> {
        self.metastore.owner(id).0
    }

    /// Reads the metastore again now (blocking: object store reads), for
    /// a decision that must not wait for the next commit round.
    pub fn refresh(&self) -> Result<(), MetastoreError> {
        self.metastore.refresh()
    }

    /// Whether node `node` owns a source, as the metastore was last read:
    /// then it may hold lines of it that are nowhere else.
    pub fn owned_by(&self, node: &str) -> bool {
        self.metastore.owns_any(node)
    }

    /// The newest metastore version read.
    pub fn metastore_version(&self) -> u64 {
        self.metastore.version()
    }

    /// The sources this node holds that the metastore (as last read) says
    /// another node has taken since.
    pub fn lost(&self) -> Vec<u64> {
        let held: Vec<(u64, u64)> = self.lock().epochs.iter().map(|(id, e)| (*id, *e)).collect();
        held.into_iter()
            .filter(|(id, epoch)| {
                let (owner, _) = self.metastore.owner(*id);
                owner.is_none_or(|o| o.node != self.node || o.epoch != *epoch)
            })
            .map(|(id, _)| id)
            .collect()
    }

    /// This node no longer holds `ids`: it drops what it held of them
    /// unpublished. Called under the store's lock, with that drop
    /// (`Store::drop_unpublished`), so that a record accepted under the
    /// old epoch is either dropped with the rest or, applied after,
    /// found no longer held.
    pub fn dropped(&self, ids: &[u64]) {
        let mut held = self.lock();
        for id in ids {
            held.epochs.remove(id);
            held.dropped.insert(*id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::Bucket;
    use cblogs_core::Stream;

    fn source(instance: u32) -> Source {
        Source::example("www-data/prod/hello", instance, "hello", Stream::Stdout)
    }

    /// A metastore on a local bucket in `dir`; each call opens another
    /// handle, as another node would.
    fn metastore_in(dir: &tempfile::TempDir) -> Arc<Metastore> {
        let bucket = Arc::new(Bucket::local(dir.path()).expect("bucket"));
        Arc::new(Metastore::open(bucket).expect("metastore"))
    }

    #[test]
    fn a_node_holds_what_it_took_until_another_takes_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let open = || metastore_in(&dir);
        let a = Ownerships::open("node-a", open());
        let (s0, s1) = (source(0), source(1));
        let sources = [s0.clone(), s1.clone(), s0.clone()];
        assert_eq!(
            a.missing(sources.iter()),
            [s0.clone(), s1.clone()],
            "each once"
        );
        let started = a.take(&[s0.clone(), s1.clone()], None).expect("take");
        assert!(started.iter().all(|s| s.published_end == 0 && !s.dropped));
        assert!(a.missing(sources.iter()).is_empty());
        assert_eq!(a.of(s0.id()).map(|o| o.epoch), Some(1));
        assert!(a.lost().is_empty());

        // A restarted node holds what nobody took from it meanwhile.
        let again = Ownerships::open("node-a", open());
        assert_eq!(again.of(s1.id()).map(|o| o.epoch), Some(1));

        // b takes s0: a learns it when its metastore is read again.
        let b = Ownerships::open("node-b", open());
        assert_eq!(
            b.take(std::slice::from_ref(&s0), None).expect("b")[0].published_end,
            0
        );
        assert_eq!(b.of(s0.id()).map(|o| o.epoch), Some(2));
        a.metastore.refresh().expect("refresh");
        assert_eq!(a.lost(), [s0.id()]);
        a.dropped(&[s0.id()]);
        assert!(a.of(s0.id()).is_none() && a.lost().is_empty());
        // Taking it back: one more epoch, and said to start where b's
        // published lines end, holding nothing past them.
        let back = a.take(std::slice::from_ref(&s0), None).expect("back");
        assert!(back[0].dropped);
        assert_eq!(a.of(s0.id()).map(|o| o.epoch), Some(3));
        b.metastore.refresh().expect("refresh");
        assert_eq!(b.lost(), [s0.id()]);
    }

    /// Pushed lines: two nodes routed a new stream's first pushes at
    /// once. The later claim gives way to the node that took the source
    /// after it was seen unowned, instead of taking it over (which would
    /// drop the first node's acknowledged lines); a source whose owner
    /// left, seen at that owner's epoch, is still taken.
    #[test]
    fn a_pushed_sources_take_gives_way_to_a_claim_made_since_it_was_seen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (a, b) = (
            Ownerships::open("node-a", metastore_in(&dir)),
            Ownerships::open("node-b", metastore_in(&dir)),
        );
        let s = source(7);
        let seen_unowned: SeenEpochs = [(s.id(), 0)].into();
        a.take(std::slice::from_ref(&s), Some(&seen_unowned))
            .expect("a takes it first");
        // b's view is older than a's claim: its first try conflicts, it
        // reads a's claim, and gives way.
        let err = b
            .take(std::slice::from_ref(&s), Some(&seen_unowned))
            .expect_err("b gives way");
        assert!(
            matches!(&err, MetastoreError::TakenMeanwhile { node, .. } if node == "node-a"),
            "{err}"
        );
        assert!(b.of(s.id()).is_none());
        assert_eq!(
            b.recorded(s.id()).map(|o| (o.node, o.epoch)),
            Some(("node-a".into(), 1))
        );
        // Without `seen` (a shipper's source: the shipper chose b), b
        // would take it over; with a's epoch seen (a left), it does too.
        let seen_a: SeenEpochs = [(s.id(), 1)].into();
        let taken = b
            .take(std::slice::from_ref(&s), Some(&seen_a))
            .expect("a's source taken once a is seen gone");
        assert_eq!(b.of(s.id()).map(|o| o.epoch), Some(2));
        assert!(!taken[0].dropped);
    }
}
