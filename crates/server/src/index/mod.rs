//! The block index: time partitions of sealed blocks, each a tantivy index
//! with one document per block plus the blocks' compressed bytes.
//!
//! ```text
//! tokens.rs      the tokenizer contract: what a block's terms are (writer and planner)
//! schema.rs      one document per block: fast fields and distinct tokens
//! columns.rs     BlockRef: where a block is and what it covers, from fast fields
//! partition.rs   Partition: open, search, read a block (read side); SplitBlocks: its
//!                blocks.dat, read apart from its index
//! writer.rs      PreparedBlock, PartitionWriter: compress, append, commit (write side)
//! merge.rs       merge_into: several splits' blocks into one split, adjacent small
//!                blocks of a source combined, compressed again
//! need.rs        TermNeed: the terms a block must hold (the index's query language)
//! candidates.rs  Partition::candidate_blocks: TermNeed evaluated per segment
//! term_blob.rs   a segment's terms in one buffer: suffix and infix lookups by memmem;
//!                a finished split keeps it in terms.dat
//! cache.rs       ReadCaches: decoded blocks and segments' terms kept between reads
//! ```
//!
//! The index only ever rules blocks out: every line of a block it keeps is
//! verified by the reader. Nothing here knows about memory blocks, the WAL
//! or HTTP; the store decides when blocks are committed and which
//! partitions live (`store/partitions.rs`).

mod cache;
mod candidates;
mod columns;
mod merge;
mod need;
mod partition;
mod schema;
mod split_id;
mod term_blob;
pub mod tokens;
mod writer;

pub use cache::{ReadCaches, SizedLru};
pub use candidates::TimeRange;
pub use columns::{BlockRef, SourceTotals};
pub use merge::{merge_into, MergeCounts, MergeError, MergeInput, MergeOptions};
pub use need::{TermMatch, TermNeed};
pub use partition::{new_uid, Access, Partition, PartitionError, RangeRead, SplitBlocks};
pub use split_id::{new_split_id, split_window};
pub use term_blob::TERMS_FILE;
pub use writer::{PartitionWriter, PreparedBlock};
