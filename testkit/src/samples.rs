//! Log lines for tests: samples of the fake agent's built-in template sets
//! ([`LogKind`]: web server errors, HDFS, syslog, sshd, logcat, Windows
//! CBS with CRLF lines, …), generated here so that no test reads a file
//! outside the repository. A sample is deterministic: the same kind gives
//! the same lines on every run.

use cblogs_fake_agent::lines::{LineGen, LogKind, Templates};

/// How many lines [`sample`] gives (as many as the 2k-line logs the tests
/// were first written with).
pub const SAMPLE_LINES: usize = 2000;

/// [`SAMPLE_LINES`] lines of `kind`, each without its `\n` (a `\r` before
/// it is kept, as written).
pub fn sample(kind: LogKind) -> Vec<Vec<u8>> {
    let templates = Templates::of(&[kind]);
    let seed = LogKind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as u64;
    LineGen::new(templates.set(0), seed, None).take_lines(SAMPLE_LINES)
}

/// `n` lines of `kind`'s sample from line `from` (wrapping around).
pub fn sample_from(kind: LogKind, from: usize, n: usize) -> Vec<Vec<u8>> {
    let lines = sample(kind);
    (from..from + n)
        .map(|i| lines[i % lines.len()].clone())
        .collect()
}

/// `n` access-log lines, each distinct and found by its prefix
/// `"<tag> <i:04> "` (a grep for one line, a check of order by the number).
pub fn numbered_lines(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "{tag} {i:04} GET /api/items/{} 200 {}us",
                i * 31 % 997,
                i * 7
            )
        })
        .collect()
}

/// One event of several lines, as log4j writes it (issue 19's example):
/// the ERROR line that says what failed, then the exception, its frames
/// and its cause.
pub const LOG4J_EVENT: [&str; 7] = [
    "2015-10-18 18:01:47,978 ERROR [main] org.apache.hadoop.mapred.YarnChild: Error running child",
    "java.io.IOException: Broken pipe",
    "\tat org.apache.hadoop.ipc.Client.call(Client.java:1476)",
    "\tat org.apache.hadoop.mapred.YarnChild.main(YarnChild.java:158)",
    "Caused by: java.net.SocketException: Connection reset",
    "\tat java.net.SocketInputStream.read(SocketInputStream.java:210)",
    "\t... 3 more",
];
