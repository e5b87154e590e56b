//! Java stack traces and Python tracebacks: which lines go on the event of
//! the line before them, with no configuration.
//!
//! ```text
//! 2015-10-18 18:01:47,978 ERROR [main] org.apache.hadoop.mapred.YarnChild: Error running child   opens
//! java.io.IOException: Broken pipe                                                                continues
//!         at org.apache.hadoop.ipc.Client.call(Client.java:1476)                                  continues
//! Caused by: java.net.SocketException: Connection reset                                          continues
//!         ... 3 more                                                                              continues
//!
//! ERROR:root:payment failed                                                                       opens
//! Traceback (most recent call last):                                                              continues
//!   File "app.py", line 3, in <module>                                                           continues
//! ValueError: bad card                                                                            continues (and ends it)
//! ```
//!
//! Python's exception line is not indented, so whether a line continues
//! depends on what came before: [`Shape`] is that memory.

/// Where a source's lines stand, for the next line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Shape {
    /// No trace open.
    #[default]
    Plain,
    /// In a Python traceback's frames: the first line not indented is its
    /// exception line.
    Python,
    /// Just after a Python exception line: a chained traceback may follow.
    PythonEnded,
    /// In a Java stack trace.
    Java,
}

impl Shape {
    /// Whether `line` continues the event before it; moves to the shape
    /// after it.
    pub fn next(&mut self, line: &[u8]) -> bool {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let blank = line.iter().all(u8::is_ascii_whitespace);
        let indented = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if line.starts_with(b"Traceback (most recent call last)") {
            *self = Shape::Python;
            return true;
        }
        match *self {
            Shape::Python => {
                if blank || indented || python_chain(line) {
                    return true;
                }
                if exception_line(line) {
                    *self = Shape::PythonEnded;
                    return true;
                }
            }
            Shape::PythonEnded => {
                if blank {
                    return true;
                }
                if python_chain(line) {
                    *self = Shape::Python;
                    return true;
                }
            }
            Shape::Java | Shape::Plain => {}
        }
        if java_frame(line) || java_exception(line) {
            *self = Shape::Java;
            return true;
        }
        *self = match java_uncaught(line) {
            true => Shape::Java,
            false => Shape::Plain,
        };
        false
    }
}

/// The lines between chained Python tracebacks.
fn python_chain(line: &[u8]) -> bool {
    line.starts_with(b"During handling of the above exception")
        || line.starts_with(b"The above exception was the direct cause")
}

/// `ValueError: bad`, `requests.exceptions.HTTPError: 500`,
/// `KeyboardInterrupt`: a name (dotted) and, maybe, `: message`.
fn exception_line(line: &[u8]) -> bool {
    let name = match line.iter().position(|&b| b == b':') {
        Some(i) => &line[..i],
        None => line,
    };
    name.first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.')
}

/// A frame of a Java stack trace, or a line between its parts.
fn java_frame(line: &[u8]) -> bool {
    let trimmed = line.trim_ascii_start();
    let indented = trimmed.len() < line.len();
    (indented && (trimmed.starts_with(b"at ") || trimmed.starts_with(b"... ")))
        || trimmed.starts_with(b"Caused by: ")
        || trimmed.starts_with(b"Suppressed: ")
}

/// `java.io.IOException: Broken pipe`: an exception's class (dotted,
/// named …Exception, …Error or …Throwable) opening the line. It goes on
/// the line before it: the log record whose stack trace it starts.
fn java_exception(line: &[u8]) -> bool {
    let class = match line.iter().position(|&b| b == b':') {
        Some(i) => &line[..i],
        None => line,
    };
    java_class(class)
}

/// `Exception in thread "main" java.lang.IllegalStateException: boom`:
/// an uncaught exception, which opens an event of its own.
fn java_uncaught(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"Exception in thread \"") else {
        return false;
    };
    let Some(q) = rest.windows(2).position(|w| w == b"\" ") else {
        return false;
    };
    java_exception(&rest[q + 2..])
}

fn java_class(class: &[u8]) -> bool {
    class.contains(&b'.')
        && !class.iter().any(|b| b.is_ascii_whitespace())
        && (class.ends_with(b"Exception")
            || class.ends_with(b"Error")
            || class.ends_with(b"Throwable"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which of `lines` continue, from a fresh shape.
    fn marks(lines: &[&str]) -> Vec<bool> {
        let mut shape = Shape::default();
        lines.iter().map(|l| shape.next(l.as_bytes())).collect()
    }

    #[test]
    fn a_log4j_error_and_its_stack_trace_are_one_event() {
        let lines = [
            "2015-10-18 18:01:47,978 ERROR [main] org.apache.hadoop.mapred.YarnChild: Error running child",
            "java.io.IOException: Broken pipe",
            "\tat org.apache.hadoop.ipc.Client.call(Client.java:1476)",
            "\tat org.apache.hadoop.mapred.YarnChild.main(YarnChild.java:158)",
            "Caused by: java.net.SocketException: Connection reset",
            "\tat java.net.SocketInputStream.read(SocketInputStream.java:210)",
            "\t... 3 more",
            "2015-10-18 18:01:48,001 INFO [main] org.apache.hadoop.mapred.Task: next",
        ];
        assert_eq!(
            marks(&lines),
            [false, true, true, true, true, true, true, false]
        );
    }

    #[test]
    fn a_python_logging_exception_is_one_event_and_ends_at_its_exception_line() {
        let lines = [
            "ERROR:root:payment failed",
            "Traceback (most recent call last):",
            "  File \"app.py\", line 3, in <module>",
            "    charge(card)",
            "ValueError: bad card",
            "",
            "During handling of the above exception, another exception occurred:",
            "",
            "Traceback (most recent call last):",
            "  File \"app.py\", line 5, in <module>",
            "requests.exceptions.HTTPError: 500",
            "INFO:root:next request",
            "Traceback is a word here",
        ];
        assert_eq!(
            marks(&lines),
            [false, true, true, true, true, true, true, true, true, true, true, false, false]
        );
    }

    #[test]
    fn plain_lines_and_an_uncaught_exception_open_events() {
        assert_eq!(
            marks(&[
                "INFO starting",
                "INFO: listening on 8080",
                "Exception in thread \"main\" java.lang.IllegalStateException: boom",
                "\tat a.B.c(B.java:1)",
                "  indented but no trace",
            ]),
            [false, false, false, true, false]
        );
        // A Python frame line outside a traceback is just a line.
        assert_eq!(marks(&["x", "  File \"a.py\", line 1"]), [false, false]);
        // A traceback cut off by a plain log line: the line opens.
        assert_eq!(
            marks(&[
                "Traceback (most recent call last):",
                "2026-01-01 12:00:00 INFO ok"
            ]),
            [true, false]
        );
    }
}
