//! Local-disk durability. `object_store`'s local store writes a staging
//! file and renames (or links) it into place, but never fsyncs: after a
//! power loss the object could be empty or missing although the put
//! returned. Everything the service writes to the local disk today is
//! synced before it counts (the WAL, the index commit), and publishing to
//! the local store must not be weaker: the file, then each directory from
//! its own up to the store's root, are synced before a put returns.

use std::fs::File;
use std::path::Path;

/// Syncs the file at `root/key` and the directories that lead to it.
pub(super) fn sync_object(root: &Path, key: &str) -> std::io::Result<()> {
    let path = root.join(key);
    File::open(&path)?.sync_all()?;
    let mut dir = path.parent();
    while let Some(d) = dir {
        File::open(d)?.sync_all()?;
        if d == root {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}
