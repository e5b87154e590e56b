//! One run of one Thermos process: `<log dir>/<process>/<run>/{stdout,stderr}`,
//! and the three things that happen to those files on a real agent — the
//! process appends, Thermos' `rotate` log mode renames, and someone's
//! `> stdout` truncates.

use std::io::{self, Write};
use std::path::PathBuf;

use cblogs_core::sandbox::rotated_name;
use cblogs_core::Stream;

use crate::fs::with_path;

/// The folder of one run of one Thermos process, and who it belongs to.
#[derive(Debug, Clone)]
pub struct ProcessRunDir {
    pub task_id: String,
    /// `role/env/name`.
    pub job: String,
    pub instance: u32,
    pub process: String,
    pub run: u32,
    pub dir: PathBuf,
}

impl ProcessRunDir {
    /// The live file of a stream.
    pub fn path(&self, stream: Stream) -> PathBuf {
        self.dir.join(stream.as_str())
    }

    /// Creates both live files if they are missing (never empties one).
    pub(crate) fn create_files(&self) -> io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let path = self.path(stream);
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| with_path(e, "create", &path))?;
        }
        Ok(())
    }

    /// Appends `bytes` as the process does: the file opened for append
    /// (created if missing), one write, closed.
    pub fn append(&self, stream: Stream, bytes: &[u8]) -> io::Result<()> {
        let path = self.path(stream);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(|e| with_path(e, "append to", &path))
    }

    /// Thermos' `rotate` log mode: `stdout.(N-1)` → `stdout.N` … `stdout` →
    /// `stdout.1`, then a new empty `stdout`. Nothing is deleted.
    pub fn rotate(&self, stream: Stream) -> io::Result<()> {
        let name = |n: u32| self.dir.join(rotated_name(stream, n));
        let mut top = 0;
        while name(top + 1).exists() {
            top += 1;
        }
        for n in (0..=top).rev() {
            std::fs::rename(name(n), name(n + 1)).map_err(|e| with_path(e, "rotate", &name(n)))?;
        }
        std::fs::File::create(name(0)).map_err(|e| with_path(e, "create", &name(0)))?;
        Ok(())
    }

    /// Truncates the live file to nothing (as `> stdout` would).
    pub fn truncate(&self, stream: Stream) -> io::Result<()> {
        let path = self.path(stream);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(0))
            .map_err(|e| with_path(e, "truncate", &path))
    }
}

/// `lines`, each followed by a newline, as one buffer (one write).
pub fn joined_lines<T: AsRef<[u8]>>(lines: &[T]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(lines.iter().map(|l| l.as_ref().len() + 1).sum());
    for l in lines {
        buf.extend_from_slice(l.as_ref());
        buf.push(b'\n');
    }
    buf
}
