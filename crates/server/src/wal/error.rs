//! How the WAL fails: an I/O error naming the file, a write that was
//! undone (a full disk: ingest resumes by itself), or a failure that needs
//! a restart (a failed fsync).

use std::io;
use std::path::{Path, PathBuf};

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

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_owned(),
        source,
    }
}
