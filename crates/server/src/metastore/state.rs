//! What the metastore records, and how a version's changes apply to it.
//!
//! Per source: `published_end`, the end of its contiguous published
//! prefix. It is a record of its own, not derived from the data that
//! still exists: retention may delete every line of a quiet source, and
//! its end must still hold, or a restarted node would take the whole file
//! again from the shipper. Nothing ever lowers it.

use std::collections::BTreeMap;

use cblogs_core::Source;
use serde::{Deserialize, Serialize};

/// One source's published end, as a change records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceAdvance {
    pub source: Source,
    pub published_end: u64,
}

/// What one version changes. A version written by a newer cblogsd with
/// a change this one does not know is refused at open, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// Sources' published ends moved up (a lower one is ignored).
    Published { sources: Vec<SourceAdvance> },
}

/// A source's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub source: Source,
    pub published_end: u64,
}

/// The state after `version`: what a checkpoint holds whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetastoreState {
    pub version: u64,
    /// By source id.
    pub sources: BTreeMap<u64, SourceRecord>,
}

impl MetastoreState {
    /// Applies version `version`'s changes.
    pub(super) fn apply(&mut self, version: u64, changes: &[Change]) {
        for change in changes {
            match change {
                Change::Published { sources } => {
                    for a in sources {
                        let r = self
                            .sources
                            .entry(a.source.id())
                            .or_insert_with(|| SourceRecord {
                                source: a.source.clone(),
                                published_end: 0,
                            });
                        r.published_end = r.published_end.max(a.published_end);
                    }
                }
            }
        }
        self.version = version;
    }

    /// Every source's published end, by id.
    pub fn published_ends(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.sources.iter().map(|(id, r)| (*id, r.published_end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_end_only_moves_up() {
        let s = Source::example(
            "www-data/prod/hello",
            0,
            "hello",
            cblogs_core::Stream::Stdout,
        );
        let at = |end| Change::Published {
            sources: vec![SourceAdvance {
                source: s.clone(),
                published_end: end,
            }],
        };
        let mut state = MetastoreState::default();
        state.apply(1, &[at(100)]);
        state.apply(2, &[at(40)]);
        assert_eq!(state.version, 2);
        assert_eq!(state.published_ends().collect::<Vec<_>>(), [(s.id(), 100)]);
        let json = serde_json::to_string(&at(5)).expect("serialize");
        assert!(json.contains("\"op\":\"published\""), "{json}");
    }
}
