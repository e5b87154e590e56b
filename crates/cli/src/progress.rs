//! `grep`'s progress line: on stderr, only when stderr is a terminal (and
//! stdout is not a pipe, which may lead to a pager on the same terminal),
//! redrawn in place as the server's `progress` events come (blocks read of
//! the total, matches so far, the time range read), wiped before a result
//! is printed to the same terminal and when the search ends (or stops:
//! an error, Ctrl-C).

use std::io::{IsTerminal, Write};

use cblogs_core::api::SearchProgress;
use cblogs_core::time::format_rfc3339;

/// How often the server is asked for a progress event (ms); tests set
/// `CBLOGS_PROGRESS_MS` lower.
const EVERY_MS: u64 = 250;

/// Carriage return, then erase the line.
const WIPE: &str = "\r\x1b[2K";

pub struct ProgressLine {
    /// stderr is a terminal: progress is shown at all.
    enabled: bool,
    /// stdout is the same kind of place: a line shown must go before a
    /// result is printed.
    stdout_terminal: bool,
    shown: bool,
}

impl ProgressLine {
    pub fn new() -> ProgressLine {
        ProgressLine {
            enabled: std::io::stderr().is_terminal() && !stdout_is_a_pipe(),
            stdout_terminal: std::io::stdout().is_terminal(),
            shown: false,
        }
    }

    /// The search parameter that asks for progress events, when shown.
    pub fn param(&self) -> Option<(&'static str, String)> {
        let every = std::env::var("CBLOGS_PROGRESS_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(EVERY_MS);
        self.enabled.then(|| ("progress", every.to_string()))
    }

    pub fn show(&mut self, p: &SearchProgress) {
        if !self.enabled {
            return;
        }
        let from = short_time(p.from_ns);
        let through = if p.through_ns == i64::MAX {
            "the end".to_owned()
        } else {
            let t = short_time(p.through_ns);
            // The day once, when both are on it.
            match (from.split_once(' '), t.split_once(' ')) {
                (Some((d1, _)), Some((d2, time))) if d1 == d2 => time.to_owned(),
                _ => t,
            }
        };
        let mut err = std::io::stderr().lock();
        // A terminal gone is no reason to stop the search.
        let _ = write!(
            err,
            "{WIPE}cblogs: {}/{} blocks, {} {}, {from} → {through}",
            p.blocks_read,
            p.blocks_total,
            p.matched,
            if p.matched == 1 { "match" } else { "matches" },
        );
        let _ = err.flush();
        self.shown = true;
    }

    /// Before a result goes to the terminal.
    pub fn before_output(&mut self) {
        if self.stdout_terminal {
            self.wipe();
        }
    }

    /// When the search ends: nothing of it stays.
    pub fn wipe(&mut self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{WIPE}");
            let _ = err.flush();
            self.shown = false;
        }
    }
}

impl Drop for ProgressLine {
    /// However the search ends, nothing of the line stays.
    fn drop(&mut self) {
        self.wipe();
    }
}

/// Whether stdout is a pipe (`| less`, `| head`): then the line is not
/// drawn, since what reads the pipe may write to the same terminal.
fn stdout_is_a_pipe() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata().ok())
        .is_some_and(|m| m.file_type().is_fifo())
}

/// `12-05 10:04:07` (UTC).
fn short_time(t: i64) -> String {
    let s = format_rfc3339(t);
    s.get(5..19).unwrap_or(&s).replace('T', " ")
}
