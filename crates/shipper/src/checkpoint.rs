//! Checkpoints: per stream, the offset `cblogsd` has acknowledged and the
//! file (by device and inode) that holds it, so a restart — of the shipper
//! or of the host — resumes exactly there, even if the file was rotated
//! meanwhile; and the offset the server has published to its object store,
//! with the older files still kept for it: until a byte is published, a
//! server that loses its disk may ask for it again.
//!
//! All checkpoints live in one `checkpoints.json`, replaced atomically:
//! write a temporary file, fsync it, rename it over the old one, fsync the
//! folder. A crash at any point leaves either the old or the new file.
//!
//! The file is JSON with one stream per line, for people to grep. An agent
//! with ten thousand quiet streams changes a few of them a second, so each
//! stream's line is kept as last written ([`EntryCache`]) and made again
//! only when its checkpoint changed.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where one stream stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The source key, for people reading the file.
    pub source: String,
    /// Everything of the stream before this offset is acknowledged.
    pub acked: u64,
    /// The file holding offset `acked`: its device and inode…
    pub dev: u64,
    pub ino: u64,
    /// …and the stream offset of its first byte.
    pub base: u64,
    /// Everything before this offset is published by the server (in its
    /// object store, safe from the loss of its disk). `None` in a file
    /// written before this was kept: taken as `acked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<u64>,
    /// The files before the one holding `acked`, oldest first, kept
    /// because they hold bytes not yet published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<FileMark>,
}

/// A file of a stream: its device and inode, and the stream offset of its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMark {
    pub dev: u64,
    pub ino: u64,
    pub base: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CheckpointFile {
    /// Live file path (`…/.logs/<process>/<run>/stdout`) → checkpoint.
    files: BTreeMap<PathBuf, Checkpoint>,
    /// The server's incarnation when these were acknowledged: a server
    /// that answers with another one lost what it had not published, and
    /// the streams are sent again from what it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    incarnation: Option<String>,
}

/// What a checkpoint file holds.
#[derive(Debug, Default)]
pub struct Saved {
    pub files: BTreeMap<PathBuf, Checkpoint>,
    pub incarnation: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// One stream's line of the file as last made: made again only when the
/// stream's checkpoint changed.
#[derive(Default)]
pub struct EntryCache {
    last: Option<Checkpoint>,
    line: String,
}

impl EntryCache {
    /// The line for `cp`, made again only if `cp` changed. `None` for a
    /// path that JSON cannot hold (not UTF-8): that stream is not saved,
    /// and the log says so once.
    pub fn line(&mut self, path: &Path, cp: Checkpoint) -> Option<&str> {
        if self.last.as_ref() != Some(&cp) {
            self.line = match entry_line(path, &cp) {
                Ok(line) => line,
                Err(e) => {
                    if self.last.is_none() || !self.line.is_empty() {
                        tracing::warn!(file = %path.display(), "cannot save this stream's checkpoint: {e}");
                    }
                    String::new()
                }
            };
            self.last = Some(cp);
        }
        (!self.line.is_empty()).then_some(self.line.as_str())
    }
}

/// `"<path>":{…checkpoint…}`: one entry of the file's `files`.
pub fn entry_line(path: &Path, cp: &Checkpoint) -> Result<String, serde_json::Error> {
    let mut line = serde_json::to_string(path)?;
    line.push(':');
    line.push_str(&serde_json::to_string(cp)?);
    // Kept for every stream: no room to spare.
    line.shrink_to_fit();
    Ok(line)
}

/// The file's text from its entries (see [`entry_line`]): a
/// [`CheckpointFile`], one stream per line.
pub fn file_text<'a>(
    entries: impl IntoIterator<Item = &'a str>,
    incarnation: Option<&str>,
) -> Vec<u8> {
    let mut out = b"{\"files\":{".to_vec();
    for (i, e) in entries.into_iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
        out.extend_from_slice(e.as_bytes());
    }
    out.extend_from_slice(b"\n}");
    if let Some(inc) = incarnation {
        out.extend_from_slice(b",\"incarnation\":");
        // A string always serializes.
        out.extend_from_slice(serde_json::to_string(inc).unwrap_or_default().as_bytes());
    }
    out.extend_from_slice(b"}\n");
    out
}

pub struct CheckpointStore {
    path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
}

impl CheckpointStore {
    /// Creates the state dir if needed.
    pub fn open(state_dir: &Path) -> Result<CheckpointStore, CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: state_dir.to_owned(),
            source,
        };
        fs::create_dir_all(state_dir).map_err(io)?;
        Ok(CheckpointStore {
            path: state_dir.join("checkpoints.json"),
            tmp: state_dir.join("checkpoints.json.tmp"),
            dir: state_dir.to_owned(),
        })
    }

    /// The saved checkpoints, or `None` when there are none yet (a first start).
    pub fn load(&self) -> Result<Option<Saved>, CheckpointError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let file: CheckpointFile =
            serde_json::from_slice(&bytes).map_err(|source| CheckpointError::Parse {
                path: self.path.clone(),
                source,
            })?;
        Ok(Some(Saved {
            files: file.files,
            incarnation: file.incarnation,
        }))
    }

    pub fn save(&self, saved: Saved) -> Result<(), CheckpointError> {
        let mut lines = Vec::with_capacity(saved.files.len());
        for (path, cp) in &saved.files {
            lines.push(entry_line(path, cp).map_err(|e| CheckpointError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?);
        }
        let body = file_text(
            lines.iter().map(String::as_str),
            saved.incarnation.as_deref(),
        );
        self.write(&body)
    }

    /// Replaces the file with `body` (made by [`file_text`]).
    pub fn write(&self, body: &[u8]) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: self.tmp.clone(),
            source,
        };
        let mut f = File::create(&self.tmp).map_err(io)?;
        f.write_all(body).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        fs::rename(&self.tmp, &self.path).map_err(io)?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(&tmp.path().join("state")).unwrap();
        assert!(store.load().unwrap().is_none());
        let mut files = BTreeMap::new();
        files.insert(
            PathBuf::from("/x/.logs/p/0/stdout"),
            Checkpoint {
                source: "k".into(),
                acked: 42,
                dev: 1,
                ino: 2,
                base: 40,
                published: Some(7),
                kept: vec![FileMark {
                    dev: 1,
                    ino: 3,
                    base: 0,
                }],
            },
        );
        let saved = |incarnation: Option<&str>| Saved {
            files: files.clone(),
            incarnation: incarnation.map(str::to_owned),
        };
        store.save(saved(None)).unwrap();
        store.save(saved(Some("abc"))).unwrap();
        let text = fs::read_to_string(&store.path).unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with(r#""/x/.logs/p/0/stdout":{"source":"k","acked":42"#)),
            "one stream per line: {text}"
        );
        let loaded = store.load().unwrap().unwrap();
        assert_eq!(loaded.files, files);
        assert_eq!(loaded.incarnation.as_deref(), Some("abc"));
        // A file written before incarnations and published ends were kept still loads.
        fs::write(
            &store.path,
            br#"{"files":{"/x":{"source":"k","acked":5,"dev":1,"ino":2,"base":0}}}"#,
        )
        .unwrap();
        let old = store.load().unwrap().unwrap();
        assert_eq!(old.incarnation, None);
        let cp = &old.files[Path::new("/x")];
        assert_eq!((cp.published, cp.kept.len()), (None, 0));
        fs::write(&store.path, b"{").unwrap();
        let err = store.load().unwrap_err();
        assert!(err.to_string().contains("checkpoints.json"), "{err}");
    }
}
