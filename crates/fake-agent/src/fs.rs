//! File operations of the layout, each error naming what was done to
//! which path (an agent has hundreds of look-alike paths).

use std::io;
use std::path::Path;

/// `mkdir -p`, with the path in the error.
pub fn mkdirs(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| with_path(e, "create", dir))
}

/// `std::fs::write`, with the path in the error.
pub fn write(path: &Path, text: String) -> io::Result<()> {
    std::fs::write(path, text).map_err(|e| with_path(e, "write", path))
}

/// The error, saying what was done to which path.
pub fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}
