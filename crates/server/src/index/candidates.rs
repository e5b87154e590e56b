//! Which blocks of a partition a search must read
//! ([`Partition::candidate_blocks`]): the selected sources' blocks in the
//! time range, each marked whether the index could rule it out
//! ([`TermNeed`] evaluated on every segment's term dictionary).
//!
//! The formula is evaluated per segment into bitsets of doc ids: an exact
//! term is one dictionary lookup, a prefix a range of it, a suffix or an
//! infix a `memmem` over all the segment's terms (a cached [`TermBlob`]).
//! Segments hold at most tens of thousands of docs (blocks), so the bitsets
//! are small.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use tantivy::index::SegmentId;
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, DocSet, InvertedIndexReader, Searcher, SegmentReader, TERMINATED};

use super::cache::SizedLru;
use super::columns::{BlockRef, BlockRefColumns};
use super::need::{TermMatch, TermNeed};
use super::partition::{Partition, PartitionError};
use super::term_blob::TermBlob;

/// A time range, `since` inclusive, `until` exclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
}

impl TimeRange {
    pub fn contains(&self, t: i64) -> bool {
        self.since_ns.is_none_or(|s| t >= s) && self.until_ns.is_none_or(|u| t < u)
    }

    /// Whether `[t_min, t_max]` overlaps the range.
    pub fn overlaps(&self, t_min: i64, t_max: i64) -> bool {
        self.since_ns.is_none_or(|s| t_max >= s) && self.until_ns.is_none_or(|u| t_min < u)
    }
}

/// A block of a partition, and whether the index could not rule it out.
pub struct StoredBlock {
    pub block: BlockRef,
    pub candidate: bool,
}

impl Partition {
    /// The blocks of `sources` in `range` in this partition, each marked
    /// whether `need` lets the index rule it out. Suffix and infix terms
    /// are looked up in the segment's [`TermBlob`] (the split's `terms.dat`
    /// if it has one, else built), kept in `terms`.
    pub fn candidate_blocks(
        &self,
        searcher: &Searcher,
        need: &TermNeed,
        sources: &HashSet<u64>,
        range: TimeRange,
        terms: &SizedLru<SegmentId, TermBlob>,
    ) -> Result<Vec<StoredBlock>, PartitionError> {
        let mut out = Vec::new();
        for segment in searcher.segment_readers() {
            let columns = BlockRefColumns::open(segment).map_err(|e| self.index_error(e))?;
            let inverted = segment
                .inverted_index(self.fields.tokens)
                .map_err(|e| self.index_error(e))?;
            let max_doc = segment.max_doc();
            let mut dict = DictionaryMatches::default();
            dict.collect(need, &self.dir, segment.segment_id(), &inverted, terms)
                .map_err(|e| self.io_error(e))?;
            let matching =
                evaluate(need, &inverted, &dict, max_doc).map_err(|e| self.io_error(e))?;
            for doc in 0..max_doc {
                if !is_alive(segment, doc) || !sources.contains(&columns.source(doc)) {
                    continue;
                }
                let block = columns.get(doc);
                if !range.overlaps(block.t_min, block.t_max) {
                    continue;
                }
                let candidate = matching.as_ref().is_none_or(|m| m.contains(doc));
                out.push(StoredBlock { block, candidate });
            }
        }
        Ok(out)
    }
}

fn is_alive(segment: &SegmentReader, doc: DocId) -> bool {
    segment.alive_bitset().is_none_or(|a| a.is_alive(doc))
}

/// A set of doc ids of one segment.
#[derive(Clone)]
struct DocBits(Vec<u64>);

impl DocBits {
    fn new(max_doc: DocId) -> Self {
        DocBits(vec![0; (max_doc as usize).div_ceil(64)])
    }
    fn insert(&mut self, doc: DocId) {
        self.0[doc as usize / 64] |= 1 << (doc % 64);
    }
    fn contains(&self, doc: DocId) -> bool {
        self.0[doc as usize / 64] & (1 << (doc % 64)) != 0
    }
    fn and(&mut self, other: &DocBits) {
        self.0.iter_mut().zip(&other.0).for_each(|(a, b)| *a &= b);
    }
    fn or(&mut self, other: &DocBits) {
        self.0.iter_mut().zip(&other.0).for_each(|(a, b)| *a |= b);
    }
}

/// The terms of one segment's dictionary that each term match found,
/// gathered before the formula is evaluated.
#[derive(Default)]
struct DictionaryMatches {
    terms: HashMap<TermMatch, Vec<Vec<u8>>>,
}

impl DictionaryMatches {
    fn collect(
        &mut self,
        need: &TermNeed,
        dir: &Path,
        segment: SegmentId,
        inv: &InvertedIndexReader,
        cache: &SizedLru<SegmentId, TermBlob>,
    ) -> std::io::Result<()> {
        let mut all = Vec::new();
        matches_of(need, &mut all);
        let mut blob = None;
        for m in all {
            if self.terms.contains_key(m) {
                continue;
            }
            let found = match m {
                TermMatch::Exact(t) => vec![t.as_bytes().to_vec()],
                TermMatch::Prefix(p) => {
                    let mut found = Vec::new();
                    let mut stream = inv.terms().range().ge(p.as_bytes()).into_stream()?;
                    while stream.advance() && stream.key().starts_with(p.as_bytes()) {
                        found.push(stream.key().to_vec());
                    }
                    found
                }
                TermMatch::Suffix(p) | TermMatch::Contains(p) => {
                    let blob = match &blob {
                        Some(b) => b,
                        None => blob.insert(cache.get_or_load(&segment, || {
                            TermBlob::stored_or_built(dir, segment, inv).map(|b| {
                                let size = b.memory_bytes();
                                (b, size)
                            })
                        })?),
                    };
                    if matches!(m, TermMatch::Suffix(_)) {
                        blob.ending_with(p.as_bytes())
                    } else {
                        blob.containing(p.as_bytes())
                    }
                }
            };
            self.terms.insert(m.clone(), found);
        }
        Ok(())
    }
}

fn matches_of<'a>(need: &'a TermNeed, out: &mut Vec<&'a TermMatch>) {
    match need {
        TermNeed::Any => {}
        TermNeed::Term(ms) => out.extend(ms),
        TermNeed::All(parts) | TermNeed::OneOf(parts) => {
            parts.iter().for_each(|p| matches_of(p, out));
        }
    }
}

/// The docs that satisfy `need`; `None` for every doc.
fn evaluate(
    need: &TermNeed,
    inv: &InvertedIndexReader,
    dict: &DictionaryMatches,
    max_doc: DocId,
) -> std::io::Result<Option<DocBits>> {
    Ok(match need {
        TermNeed::Any => None,
        TermNeed::Term(ms) => {
            let mut bits = DocBits::new(max_doc);
            for m in ms {
                for term in dict.terms.get(m).into_iter().flatten() {
                    add_term_docs(inv, term, &mut bits)?;
                }
            }
            Some(bits)
        }
        TermNeed::All(parts) => {
            let mut acc: Option<DocBits> = None;
            for p in parts {
                if let Some(b) = evaluate(p, inv, dict, max_doc)? {
                    match &mut acc {
                        Some(a) => a.and(&b),
                        None => acc = Some(b),
                    }
                }
            }
            acc
        }
        TermNeed::OneOf(parts) => {
            let mut acc = DocBits::new(max_doc);
            for p in parts {
                match evaluate(p, inv, dict, max_doc)? {
                    Some(b) => acc.or(&b),
                    None => return Ok(None),
                }
            }
            Some(acc)
        }
    })
}

/// Adds the docs holding `term` to `bits`, straight from its postings (a
/// partial match can find tens of thousands of terms: no bitset of their own).
fn add_term_docs(
    inv: &InvertedIndexReader,
    term: &[u8],
    bits: &mut DocBits,
) -> std::io::Result<()> {
    if let Some(info) = inv.terms().get(term)? {
        let mut postings = inv.read_postings_from_terminfo(&info, IndexRecordOption::Basic)?;
        let mut doc = postings.doc();
        while doc != TERMINATED {
            bits.insert(doc);
            doc = postings.advance();
        }
    }
    Ok(())
}
