//! Tools a test needs from the machine (ripgrep, chromedriver, unshare):
//! a test that lacks one fails with a message naming it and how to get it,
//! and never passes quietly. The tests install nothing themselves.

use std::path::{Path, PathBuf};

/// The path of `program` on `PATH` (or `program` itself if it is a path
/// to an executable); panics naming it, who needs it and how to install it
/// when it is not there.
pub fn require_tool(program: &str, needed_by: &str, install: &str) -> PathBuf {
    find_program(program).unwrap_or_else(|| {
        panic!(
            "{needed_by} needs `{program}`, which is not installed (or not on PATH); \
             install it ({install}) and run the tests again"
        )
    })
}

/// Where `program` is: itself when it holds a `/`, else the first match on `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return is_executable(Path::new(program)).then(|| PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
