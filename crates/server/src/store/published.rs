//! A published split, as this node reads it: its metastore entry made
//! from the finished local copy ([`entry_of`]); on a remote store, its
//! index and `sources.json` in one object (`index.bundle`, [`write_bundle`])
//! downloaded into the disk cache ([`download_index`], `disk_cache.rs`),
//! and its blocks read by ranged GET ([`RemoteBlocks`]). On the local
//! store it is opened in place (`splits/`).

use std::path::Path;
use std::sync::Arc;

use crate::bucket::Bucket;
use crate::index::{Partition, PartitionError};
use crate::metastore::{SplitEntry, SplitSource};

/// Why a split could not be published (or, published, opened).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Split(#[from] PartitionError),
    #[error(transparent)]
    Bucket(#[from] crate::bucket::BucketError),
    #[error(transparent)]
    Metastore(#[from] crate::metastore::MetastoreError),
}

/// The object holding every file of a split but its blocks, on a remote
/// store ([`SplitEntry::bundled`]).
pub(super) const BUNDLE: &str = "index.bundle";

/// Writes every file of `files` but `blocks.dat` back to back into
/// `<dir>/index.bundle`, for one upload.
pub(super) fn write_bundle(dir: &Path, files: &[(String, u64)]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join(BUNDLE))?);
    for (name, len) in files.iter().filter(|(n, _)| n != "blocks.dat") {
        // Exactly the length the entry records: a reader cuts the bundle
        // by those lengths, so one byte more or less would shift every
        // file after it.
        let copied = std::io::copy(&mut std::fs::File::open(dir.join(name))?, &mut out)?;
        if copied != *len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{name} changed while it was bundled ({len} bytes, then {copied})"),
            ));
        }
    }
    std::io::Write::flush(&mut out)
}

/// The folder of split `id` in the object store.
pub(super) fn split_key(id: &str) -> String {
    format!("splits/{id}/")
}

/// Uploads the files of a finished split (committed, one segment) and
/// returns its metastore entry. The local store takes each file as it is
/// (a link, no copy); a remote one takes the blocks and one bundle of the
/// rest.
pub(super) fn upload_split(bucket: &Bucket, part: &Partition) -> Result<SplitEntry, PublishError> {
    let files = part.files()?;
    let folder = split_key(&part.id);
    let bundled = bucket.local_path(&folder).is_none();
    let objects: Vec<&str> = if bundled {
        write_bundle(part.dir(), &files).map_err(|e| part.io_error(e))?;
        vec!["blocks.dat", BUNDLE]
    } else {
        files.iter().map(|(name, _)| name.as_str()).collect()
    };
    for name in objects {
        bucket.upload_file(&format!("{folder}{name}"), &part.dir().join(name))?;
    }
    Ok(entry_of(part, files, bundled)?)
}

/// The metastore entry of a finished split.
fn entry_of(
    part: &Partition,
    files: Vec<(String, u64)>,
    bundled: bool,
) -> Result<SplitEntry, PartitionError> {
    let searcher = part.searcher();
    let totals = part.totals(&searcher)?;
    let sources = part.load_sources()?;
    let mut list: Vec<SplitSource> = totals
        .iter()
        .filter_map(|(id, t)| {
            sources.get(id).map(|s| SplitSource {
                source: Arc::new(s.clone()),
                off_start: t.off_start,
                off_end: t.off_end,
                lines: t.lines,
                bytes: t.bytes,
                t_max: t.t_max,
            })
        })
        .collect();
    list.sort_by_key(|s| s.source.id());
    let blocks = part.blocks(&searcher, None, None)?;
    Ok(SplitEntry {
        id: part.id.clone(),
        window_ns: part.start_ns,
        t_min: blocks.iter().map(|b| b.t_min).min().unwrap_or_default(),
        t_max: blocks.iter().map(|b| b.t_max).max().unwrap_or_default(),
        blocks: blocks.len() as u64,
        files,
        bundled,
        sources: list,
        level: 0,
    })
}

/// A relative path with no `..`, `.` or root in it.
fn is_plain_relative(name: &str) -> bool {
    !name.is_empty()
        && Path::new(name)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// Downloads every file of a split but its blocks into `dir`: into a
/// folder beside it first, renamed into place when whole, so that a
/// half-downloaded index is never opened.
pub(super) fn download_index(
    bucket: &Bucket,
    key: &str,
    entry: &SplitEntry,
    dir: &Path,
) -> Result<(), PublishError> {
    let io = |source| PartitionError::Io {
        dir: dir.to_owned(),
        source,
    };
    let partial = dir.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io)?;
    }
    let missing = |object: &str| -> PublishError {
        io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "{object} is listed in the metastore but not in {}",
                bucket.location()
            ),
        ))
        .into()
    };
    let fetch = |object: String| -> Result<bytes::Bytes, PublishError> {
        bucket.get(&object)?.ok_or_else(|| missing(&object))
    };
    let files: Vec<&(String, u64)> = entry
        .files
        .iter()
        .filter(|(n, _)| n != "blocks.dat")
        .collect();
    // Names come from the metastore: each must stay inside `dir`.
    if let Some((name, _)) = files.iter().find(|(n, _)| !is_plain_relative(n)) {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{key}: the metastore lists a file named {name:?}, which is not a path inside a split"),
        ))
        .into());
    }
    let bundle = if entry.bundled {
        let len = files
            .iter()
            .try_fold(0u64, |sum, (_, n)| sum.checked_add(*n))
            .ok_or_else(|| {
                PublishError::from(io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{key}: the metastore lists files longer than any object"),
                )))
            })?;
        let object = format!("{key}{BUNDLE}");
        match bucket.get_in_chunks(&object, len) {
            Ok(b) => Some(b),
            Err(e) if e.is_not_found() => return Err(missing(&object)),
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let mut at = 0usize;
    for (name, len) in files {
        let bytes = match &bundle {
            Some(b) => {
                let end = at + *len as usize;
                let part = b.get(at..end).ok_or_else(|| {
                    io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{key}{BUNDLE} is shorter than its files"),
                    ))
                })?;
                at = end;
                bytes::Bytes::copy_from_slice(part)
            }
            None => fetch(format!("{key}{name}"))?,
        };
        let path = partial.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, &bytes).map_err(io)?;
    }
    std::fs::rename(&partial, dir).map_err(io)?;
    Ok(())
}
