//! The store: what the server holds, in memory and on disk, and the one lock
//! that keeps readers consistent with it.
//!
//! A line's life: the WAL writer [`Store::apply`]s it into its source's open
//! block (readable at once, also published to live tailers); the block seals
//! on size or age and waits in `sealed` (still readable from memory); the
//! committer compresses and indexes it into the split being built for its
//! window of line time, commits, and [`Store::committed`] swaps in the new
//! searcher and drops the block from memory in the same critical section.
//! When the split is published, [`Store::published`] swaps the local copy
//! for the object store's, again in one critical section. A reader's [`Store::snapshot`] takes
//! the searchers and the memory blocks under that lock, so every line is seen
//! exactly once: either in memory or in the index, never both or neither.
//!
//! ```text
//! store.rs       Store: sources, open and sealed blocks, splits shown to readers
//! split_totals.rs SplitTotals: per source, what one split holds (compact once published)
//! sources.rs     per source: totals, held end, open block; sealed blocks
//! snapshot.rs    ReadSnapshot: what one reader sees
//! pinned.rs      OwnPublishes: a fan-out search's two parts, split at one metastore version
//! live.rs        TailHub: every applied batch, to live tails and alerts
//! room.rs        Room: bytes waiting for the index (max_unindexed_bytes)
//! committer.rs   Committer: seal, compress, index, commit, publish, trim the WAL
//! publishing.rs  Publishing: the upload lag and the last failure, for the API
//! published.rs   a published split: its entry, its index bundle, its blocks by ranged
//!                GET; convert.rs: the layout before splits, converted once
//! disk_cache.rs  DiskCache: a remote store's split indexes and blocks in cache/, within
//!                cache.max_bytes, least recently used out first; SplitHandle, IndexPin
//! splits/        SplitSet: the one owner of splits' lives (committer's thread): build,
//!                seal, stage, upload, publish, merge, retire, delete
//! merge/         background merges: the policy, one merge's job, the Merger running them
//! retention.rs   Retention: partitions past their age or the disk budget
//! usage.rs       what the partitions take on disk
//! ```

mod committer;
mod convert;
mod disk_cache;
mod live;
mod merge;
mod pinned;
mod published;
mod publishing;
mod retention;
mod room;
mod snapshot;
mod sources;
mod split_totals;
mod splits;
// The type the folder is named for lives in a file of its own, so that
// this file only declares and re-exports.
#[allow(clippy::module_inception)]
mod store;
mod usage;

pub use committer::{Committer, CommitterCommand};
pub use disk_cache::DiskCache;
pub use live::{LiveBatch, TailHub};
pub use pinned::FollowFirst;
pub use published::PublishError;
pub use publishing::Publishing;
pub use retention::{Retention, RetentionLog};
pub use room::Room;
pub use snapshot::{open_together, ReadSnapshot, SnapshotSplit};
pub use sources::{SourceSummary, Totals};
pub use splits::SplitSet;
pub use store::Store;
pub use usage::{disk_usage, DiskUsage};
