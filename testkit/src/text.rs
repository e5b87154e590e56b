//! How text reaches a person: a line as a terminal shows it, and the end
//! of a process's log (without its colour codes) for failure messages.

/// The text a terminal shows for a line: lossy UTF-8, one trailing `\r` dropped.
pub fn shown(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes).into_owned();
    s.strip_suffix('\r').map(str::to_owned).unwrap_or(s)
}

/// The last `n` lines of a log, without terminal colour codes.
pub fn log_tail(text: &str, n: usize) -> String {
    let mut log = String::new();
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (false, c) => log.push(c),
            (true, 'm') => in_escape = false,
            (true, _) => {}
        }
    }
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
