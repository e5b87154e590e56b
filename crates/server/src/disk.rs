//! The file system under the data dir: how much room is left (as the
//! loops that must not fill it ask), and the ids kept in it.

/// Bytes free for an unprivileged writer on the file system holding `dir`.
pub fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `st` is written by the
    // call before it is read, only when the call succeeds.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The id kept in the file `name` of `data_dir`, made (random, after
/// `prefix`) and written there, synced, when there is none yet: the node's
/// incarnation (new with a new data dir) and its node id.
pub fn kept_id(data_dir: &std::path::Path, name: &str, prefix: &str) -> std::io::Result<String> {
    use std::hash::BuildHasher;
    use std::io::Write;
    let path = data_dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let random = std::collections::hash_map::RandomState::new();
    let id = format!(
        "{prefix}{:016x}{:016x}",
        random.hash_one(cblogs_core::time::now_ns()),
        random.hash_one(std::process::id())
    );
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(id.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(id)
}
