//! [`SplitTotals`]: per source, what one split holds, as the store keeps
//! it for readers (`jobs` counts, newest line first) and retention.
//!
//! A quiet cluster has tens of thousands of sources, and a day of
//! unmerged splits holds most of them each: this is kept once per
//! (split, source) pair, so its size is the store's biggest memory cost
//! (`cblogs-bench quiet`). A split being built takes blocks one at a time
//! (a map); a published one never changes again, and keeps only what is
//! still read of it (lines and bytes, for taking it away) in an exact-size
//! list: 24 bytes a pair rather than about 100 in a map. The split's
//! newest line is kept apart, so readers sorting splits newest first do
//! not walk every source of every split.

use std::collections::HashMap;

use crate::index::{BlockRef, SourceTotals};

pub(super) struct SplitTotals {
    /// The newest line's time, `i64::MIN` while it holds none.
    t_max: i64,
    per_source: PerSource,
}

enum PerSource {
    /// Being built: the committer adds each block it makes durable.
    Building(HashMap<u64, SourceTotals>),
    /// Published: sorted by source id.
    Sealed(Box<[SourceLines]>),
}

/// What a published split holds of one source.
#[derive(Clone, Copy)]
pub(super) struct SourceLines {
    pub source: u64,
    pub lines: u64,
    pub bytes: u64,
}

impl SplitTotals {
    /// A split being built, holding nothing yet.
    pub fn building() -> SplitTotals {
        SplitTotals::from_map(HashMap::new(), false)
    }

    /// `totals` (read from a split's index), for a split being built or,
    /// if `sealed`, a published one.
    pub fn from_map(totals: HashMap<u64, SourceTotals>, sealed: bool) -> SplitTotals {
        let t_max = totals.values().map(|t| t.t_max).max().unwrap_or(i64::MIN);
        let per_source = PerSource::Building(totals);
        let totals = SplitTotals { t_max, per_source };
        if sealed {
            totals.sealed()
        } else {
            totals
        }
    }

    /// The same, once the split is published: it takes no more blocks.
    pub fn sealed(self) -> SplitTotals {
        let per_source = match self.per_source {
            PerSource::Building(map) => {
                let mut list: Vec<SourceLines> = map
                    .into_iter()
                    .map(|(source, t)| SourceLines {
                        source,
                        lines: t.lines,
                        bytes: t.bytes,
                    })
                    .collect();
                list.sort_unstable_by_key(|s| s.source);
                PerSource::Sealed(list.into_boxed_slice())
            }
            sealed @ PerSource::Sealed(_) => sealed,
        };
        SplitTotals {
            t_max: self.t_max,
            per_source,
        }
    }

    /// Counts block `b`, made durable in this split. A published split
    /// takes no blocks: one for it is a bug, said and not counted.
    pub fn add_block(&mut self, b: &BlockRef) {
        match &mut self.per_source {
            PerSource::Building(map) => {
                map.entry(b.source).or_default().add_block(b);
                self.t_max = self.t_max.max(b.t_max);
            }
            PerSource::Sealed(_) => {
                tracing::error!(source = b.source, "a block was added to a published split");
            }
        }
    }

    /// Forgets what a split being built holds of `source` (its blocks
    /// were deleted); returns its lines and bytes.
    pub fn drop_source(&mut self, source: u64) -> Option<(u64, u64)> {
        match &mut self.per_source {
            PerSource::Building(map) => map.remove(&source).map(|t| (t.lines, t.bytes)),
            PerSource::Sealed(_) => None,
        }
    }

    /// The newest line's time (`i64::MIN` if none).
    pub fn t_max(&self) -> i64 {
        self.t_max
    }

    pub fn is_empty(&self) -> bool {
        match &self.per_source {
            PerSource::Building(map) => map.is_empty(),
            PerSource::Sealed(list) => list.is_empty(),
        }
    }

    /// The ids of the sources it holds lines of.
    pub fn sources(&self) -> Box<dyn Iterator<Item = u64> + '_> {
        match &self.per_source {
            PerSource::Building(map) => Box::new(map.keys().copied()),
            PerSource::Sealed(list) => Box::new(list.iter().map(|s| s.source)),
        }
    }

    /// Per source, the lines and bytes it holds.
    pub fn lines(&self) -> Box<dyn Iterator<Item = SourceLines> + '_> {
        match &self.per_source {
            PerSource::Building(map) => Box::new(map.iter().map(|(&source, t)| SourceLines {
                source,
                lines: t.lines,
                bytes: t.bytes,
            })),
            PerSource::Sealed(list) => Box::new(list.iter().copied()),
        }
    }

    /// The lowest offset it holds of `source`, while it is being built
    /// (what publishing another split may not move a published end past).
    pub fn building_off_start(&self, source: u64) -> Option<u64> {
        match &self.per_source {
            PerSource::Building(map) => map.get(&source).map(|t| t.off_start),
            PerSource::Sealed(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(source: u64, off: u64, t_max: i64) -> BlockRef {
        BlockRef {
            source,
            off_start: off,
            off_end: off + 10,
            n_lines: 2,
            text_bytes: 8,
            t_min: t_max,
            t_max,
            data_pos: 0,
            data_len: 0,
        }
    }

    #[test]
    fn a_sealed_split_keeps_each_sources_lines_and_its_newest_time() {
        let mut t = SplitTotals::building();
        assert!(t.is_empty());
        assert_eq!(t.t_max(), i64::MIN);
        t.add_block(&block(7, 100, 5));
        t.add_block(&block(3, 0, 9));
        t.add_block(&block(7, 50, 1));
        assert_eq!(t.building_off_start(7), Some(50));
        assert_eq!(t.t_max(), 9);

        let t = t.sealed();
        assert_eq!(t.t_max(), 9);
        assert!(!t.is_empty());
        let lines: Vec<(u64, u64, u64)> = t.lines().map(|s| (s.source, s.lines, s.bytes)).collect();
        assert_eq!(lines, vec![(3, 2, 8), (7, 4, 16)]);
        assert_eq!(t.sources().collect::<Vec<_>>(), vec![3, 7]);
        // A published split is not one another publish waits for.
        assert_eq!(t.building_off_start(7), None);
    }
}
