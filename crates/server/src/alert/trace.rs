//! Recognising Python tracebacks and Java stack traces, so that a
//! notification carries the whole trace and not only the line that matched.

/// What kind of trace a header line starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    Python,
    Java,
}

/// Whether `line` starts a trace: `Traceback (most recent call last):`, or a
/// Java exception line (`Exception in thread "main" java.lang.X: …`,
/// `java.lang.IllegalStateException: …`).
pub fn header(line: &str) -> Option<TraceKind> {
    let line = line.trim_end();
    if line.starts_with("Traceback (most recent call last)") {
        return Some(TraceKind::Python);
    }
    let rest = match line.strip_prefix("Exception in thread \"") {
        Some(r) => r.split_once("\" ").map(|(_, r)| r)?,
        None => line,
    };
    let class = rest.split(':').next().unwrap_or_default();
    let java_class = class.contains('.')
        && !class.contains(' ')
        && (class.ends_with("Exception")
            || class.ends_with("Error")
            || class.ends_with("Throwable"));
    java_class.then_some(TraceKind::Java)
}

/// Whether `line` goes on a trace of `kind` (a frame, its code, a cause).
pub fn continues(kind: TraceKind, line: &str) -> bool {
    match kind {
        TraceKind::Python => {
            line.starts_with(' ')
                || line.starts_with('\t')
                || line.starts_with("During handling of the above exception")
                || line.starts_with("The above exception was the direct cause")
                || line.starts_with("Traceback (most recent call last)")
                || line.trim().is_empty()
        }
        TraceKind::Java => {
            let t = line.trim_start();
            (t.len() < line.len() && (t.starts_with("at ") || t.starts_with("... ")))
                || line.starts_with("Caused by: ")
                || line.starts_with("Suppressed: ")
        }
    }
}

/// Whether a Python traceback ends with `line`: its exception line
/// (`ValueError: bad`), the first line after the frames that is not indented.
pub fn ends_python(line: &str) -> bool {
    !continues(TraceKind::Python, line)
}

/// The trace that `matched` belongs to, as far as `before` (the source's
/// lines just before it, oldest first) shows: the lines from its header up
/// to `matched`, and the kind of trace when it may go on after `matched`.
/// Empty when `matched` is in no trace.
pub fn look_back(before: &[String], matched: &str) -> (Vec<String>, Option<TraceKind>) {
    if let Some(kind) = header(matched) {
        return (vec![matched.to_owned()], Some(kind));
    }
    let mut start = None;
    for (i, l) in before.iter().enumerate().rev() {
        if let Some(kind) = header(l) {
            start = Some((i, kind));
            break;
        }
        let in_some = continues(TraceKind::Python, l) || continues(TraceKind::Java, l);
        if !in_some {
            break;
        }
    }
    match start {
        Some((i, kind)) if continues(kind, matched) || kind == TraceKind::Python => {
            let mut lines: Vec<String> = before[i..].to_vec();
            lines.push(matched.to_owned());
            // A Python exception line ends its traceback: nothing to wait for.
            let open = kind == TraceKind::Java || continues(kind, matched);
            (lines, open.then_some(kind))
        }
        _ => (Vec::new(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_frames() {
        assert_eq!(
            header("Traceback (most recent call last):"),
            Some(TraceKind::Python)
        );
        assert_eq!(
            header("Exception in thread \"main\" java.lang.IllegalStateException: boom"),
            Some(TraceKind::Java)
        );
        assert_eq!(
            header("java.lang.OutOfMemoryError: Java heap space"),
            Some(TraceKind::Java)
        );
        assert_eq!(header("ERROR something failed"), None);
        assert!(continues(
            TraceKind::Java,
            "\tat com.example.Foo.bar(Foo.java:42)"
        ));
        assert!(continues(
            TraceKind::Java,
            "Caused by: java.io.IOException: x"
        ));
        assert!(!continues(TraceKind::Java, "INFO next request"));
        assert!(continues(
            TraceKind::Python,
            "  File \"/app/x.py\", line 3, in f"
        ));
        assert!(ends_python("ValueError: bad"));
    }

    #[test]
    fn a_match_inside_a_trace_finds_its_header() {
        let before: Vec<String> = [
            "INFO ok",
            "Traceback (most recent call last):",
            "  File \"a.py\", line 1, in <module>",
            "    f()",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (lines, kind) = look_back(&before, "ValueError: bad");
        assert_eq!(kind, None, "the exception line ends the traceback");
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], "Traceback (most recent call last):");
        assert_eq!(
            look_back(&before[..1], "ERROR plain").0,
            Vec::<String>::new()
        );
    }
}
