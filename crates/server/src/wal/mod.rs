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
//! remaining segments are replayed. A torn last record (a crash in mid-write) fails its length or checksum, is
//! cut off with a warning, and everything before it is kept.
//!
//! ```text
//! record.rs    WalRecord and its framing (length, checksum) on disk
//! segments.rs  WalFiles: the segment files: append + fsync, replay, roll, trim
//! writer.rs    Wal: the writer thread (group commit), waiting for durability,
//!              failure and resume after a full disk
//! ```

mod record;
mod segments;
mod writer;

use std::io;
use std::path::{Path, PathBuf};

pub use record::WalRecord;
pub use segments::WalFiles;
pub use writer::Wal;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log I/O error in {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A write failed and was undone (the file is as before it): the disk
    /// is full, most likely. Ingest resumes by itself once there is room.
    #[error("the write-ahead log cannot write ({0}); ingest resumes by itself when there is room")]
    Full(String),
    #[error("the write-ahead log has failed ({0}); restart cblogsd once the cause is fixed")]
    Failed(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_owned(),
        source,
    }
}
