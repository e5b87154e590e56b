//! Where Thermos writes process logs on a Mesos agent (see
//! `thermos-layout.md`), as names: no I/O here, the shipper walks the tree.
//!
//! ```text
//! <work dir>/slaves/<agent>/frameworks/<framework>/executors/thermos-<task id>/
//!     runs/<container id>/sandbox/.logs/<process>/<run>/{stdout,stderr}
//!     runs/latest -> <container id>          (a link: never followed)
//! <checkpoint root>/logs/<task id>/<process>/<run>/{stdout,stderr}   (legacy)
//! ```
//!
//! Thermos' `rotate` log mode renames `stdout` to `stdout.1` (and
//! `stdout.N` to `stdout.N+1`) and starts a new `stdout`; the rotated files
//! continue the same stream.

use crate::Stream;

/// Aurora names each executor `thermos-<task id>`.
pub const EXECUTOR_PREFIX: &str = "thermos-";
/// The task sandbox inside a container run folder.
pub const SANDBOX_DIR: &str = "sandbox";
/// The Thermos log dir inside a sandbox.
pub const LOG_DIR: &str = ".logs";
/// The link to the newest container run; following it would count a run twice.
pub const LATEST_LINK: &str = "latest";
/// Under the legacy checkpoint root, the folder holding `<task id>/…` logs.
pub const LEGACY_LOG_DIR: &str = "logs";

/// The task id of an executor folder name, if it is a Thermos executor.
pub fn executor_task_id(dir_name: &str) -> Option<&str> {
    dir_name
        .strip_prefix(EXECUTOR_PREFIX)
        .filter(|id| !id.is_empty())
}

/// A process run folder's number: `0`, `1`, … (digits only, as Thermos
/// writes them: no leading zero, so `7` and `07` are not both run 7).
pub fn run_number(dir_name: &str) -> Option<u32> {
    if dir_name.is_empty()
        || !dir_name.bytes().all(|b| b.is_ascii_digit())
        || (dir_name.len() > 1 && dir_name.starts_with('0'))
    {
        return None;
    }
    dir_name.parse().ok()
}

/// A log file's name: the stream, and the rotation number for `stdout.N`
/// (`None` for the live file).
pub fn log_file(name: &str) -> Option<(Stream, Option<u32>)> {
    let (stream, rest) = if let Some(rest) = name.strip_prefix("stdout") {
        (Stream::Stdout, rest)
    } else if let Some(rest) = name.strip_prefix("stderr") {
        (Stream::Stderr, rest)
    } else {
        return None;
    };
    if rest.is_empty() {
        return Some((stream, None));
    }
    let n = run_number(rest.strip_prefix('.')?)?;
    (n > 0).then_some((stream, Some(n)))
}

/// The name of rotation `n` of a stream's file (`0` is the live file).
pub fn rotated_name(stream: Stream, n: u32) -> String {
    if n == 0 {
        stream.as_str().to_owned()
    } else {
        format!("{}.{n}", stream.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            executor_task_id("thermos-www-data-prod-hello-0-x"),
            Some("www-data-prod-hello-0-x")
        );
        assert_eq!(executor_task_id("thermos-"), None);
        assert_eq!(executor_task_id("mesos-executor"), None);
        assert_eq!(run_number("12"), Some(12));
        assert_eq!(run_number("1a"), None);
        assert_eq!(run_number(""), None);
        assert_eq!(log_file("stdout"), Some((Stream::Stdout, None)));
        assert_eq!(log_file("stderr.3"), Some((Stream::Stderr, Some(3))));
        assert_eq!(log_file("stderr.0"), None);
        assert_eq!(log_file("stdout.x"), None);
        assert_eq!(log_file("stdoutx"), None);
        assert_eq!(rotated_name(Stream::Stdout, 2), "stdout.2");
        assert_eq!(rotated_name(Stream::Stderr, 0), "stderr");
    }

    /// Found by the `task_id` fuzz target: `07` was read as run 7 and
    /// `stdout.01` as rotation 1, so two folders (or files) could feed the
    /// same source, whose key holds the run number.
    #[test]
    fn one_name_per_number() {
        assert_eq!(run_number("0"), Some(0));
        assert_eq!(run_number("10"), Some(10));
        assert_eq!(run_number("07"), None);
        assert_eq!(run_number("00"), None);
        assert_eq!(run_number("0212"), None);
        assert_eq!(log_file("stdout.01"), None);
        assert_eq!(log_file("stderr.10"), Some((Stream::Stderr, Some(10))));
        assert_eq!(run_number("4294967296"), None);
    }
}
