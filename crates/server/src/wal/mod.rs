//! The write-ahead log: where an accepted batch becomes durable before it is
//! acknowledged.
//!
//! Records are appended to numbered segment files (`wal/<first seq>.wal`) by
//! one writer thread that takes every record waiting, writes them at once and
//! syncs once (group commit): many concurrent ingest requests share one
//! fsync. Only after the sync are the records handed on (to the in-memory
//! blocks, live tailers and the indexer) and their senders released.
//!
//! A segment is deleted once every record in it is committed to the index
//! ([`Wal::trim_below`], called by the committer); on start-up the
//! remaining segments are replayed. A torn last record (a crash in
//! mid-write) fails its length or checksum, is cut off with a warning, and
//! everything before it is kept.
//!
//! ```text
//! error.rs     WalError: what a failure means for ingest
//! record.rs    WalRecord and its framing (length, checksum) on disk; RecordEncoder
//!              (the block zstd-compressed, `storage.wal_zstd_level`)
//! segments.rs  WalFiles: the segment files: append + fsync, replay, roll, trim
//! writer.rs    Wal: the writer thread (group commit), waiting for durability,
//!              failure and resume after a full disk
//! ```

mod error;
mod record;
mod segments;
mod writer;

pub use error::WalError;
pub use record::WalRecord;
pub use segments::WalFiles;
pub use writer::Wal;
