//! The layout before splits: `partitions/p-<start secs>/`, converted once
//! at start.

use std::path::Path;

use crate::index::PartitionError;

/// Moves each partition of the layout before splits
/// (`partitions/p-<start secs>/`) to `building/` under a split id, to be
/// published like any split found there. Done once: the folder is gone
/// after.
pub(super) fn convert_partitions(
    old_root: &Path,
    building_root: &Path,
) -> Result<(), PartitionError> {
    let io = |dir: &Path, source| PartitionError::Io {
        dir: dir.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(old_root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(old_root, e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(start) = name
            .to_str()
            .and_then(|n| n.strip_prefix("p-"))
            .and_then(|n| n.parse::<i64>().ok())
            .and_then(|secs| secs.checked_mul(1_000_000_000))
        else {
            continue;
        };
        let id = crate::index::new_split_id(start);
        let to = building_root.join(&id);
        std::fs::rename(entry.path(), &to).map_err(|e| io(&entry.path(), e))?;
        tracing::info!(from = %entry.path().display(), split = %id, "a partition of the older layout becomes a split, to be published");
    }
    std::fs::File::open(building_root)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(building_root, e))?;
    if let Err(e) = std::fs::remove_dir(old_root) {
        tracing::warn!(dir = %old_root.display(), error = %e, "the older layout's folder is not empty; left alone");
    }
    Ok(())
}
