//! Log lines for fake processes: template sets, and a generator that turns
//! a set into an endless, seeded stream of believable lines.
//!
//! A set is one program's output: the built-in ones ([`LogKind`], written
//! for this project) or every `*.log` file of a directory (one set each).
//! Each repetition of a template line moves its numbers the way ids, sizes
//! and timestamps move in a real log: every number of every template gets
//! its own step, and each repetition adds that step plus a little noise,
//! keeping the number's width. So the result compresses like a log (not
//! like random digits, not like plain repeats), and it is deterministic:
//! the same set and seed give the same bytes.

mod kinds;
mod template;
mod traces;

use std::io;
use std::path::{Path, PathBuf};

pub use kinds::LogKind;
pub use traces::TraceKind;

use crate::fs::with_path;
use template::{mix, push_number, push_padded, Seg, Template};

/// Template lines, in sets: one set per program.
pub struct Templates {
    sets: Vec<TemplateSet>,
    /// Where the sets came from, for reports.
    pub from: String,
}

/// One program's template lines.
pub struct TemplateSet {
    lines: Vec<Template>,
}

impl TemplateSet {
    fn of_kind(kind: LogKind) -> TemplateSet {
        let end = kind.line_end().as_bytes();
        TemplateSet {
            lines: kind
                .templates()
                .iter()
                .map(|l| Template::parse(&[l.as_bytes(), end].concat()))
                .collect(),
        }
    }
}

impl Templates {
    /// Every `*.log` file of `dir`, one set each (sorted by name); a
    /// line's `\r` is kept.
    pub fn from_dir(dir: &Path) -> io::Result<Templates> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| with_path(e, "read corpus dir", dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        paths.sort();
        let mut sets = Vec::new();
        for p in &paths {
            let data = std::fs::read(p).map_err(|e| with_path(e, "read", p))?;
            let lines: Vec<Template> = data
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty() && *l != b"\r")
                .map(Template::parse)
                .collect();
            if !lines.is_empty() {
                sets.push(TemplateSet { lines });
            }
        }
        if sets.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} holds no non-empty *.log file", dir.display()),
            ));
        }
        Ok(Templates {
            sets,
            from: dir.display().to_string(),
        })
    }

    /// The benchmark's built-in templates: a web server, a Python service
    /// and a Java service.
    pub fn builtin() -> Templates {
        let mut t = Templates::of(&[
            LogKind::WebAccess,
            LogKind::PythonService,
            LogKind::JavaService,
        ]);
        t.from = "built-in templates".into();
        t
    }

    /// One built-in set per kind, in the order given.
    pub fn of(kinds: &[LogKind]) -> Templates {
        let names: Vec<String> = kinds.iter().map(|k| format!("{k:?}")).collect();
        Templates {
            sets: kinds.iter().map(|k| TemplateSet::of_kind(*k)).collect(),
            from: format!("built-in templates ({})", names.join(", ")),
        }
    }

    /// Set `index`, counted round the sets (any index names a set).
    pub fn set(&self, index: usize) -> &TemplateSet {
        &self.sets[index % self.sets.len()]
    }
}

/// The lines of one file, in order: the set's templates in turn, their
/// numbers moved on each round, and now and then a whole trace if asked.
pub struct LineGen<'a> {
    set: &'a TemplateSet,
    seed: u64,
    next: usize,
    rep: u64,
    rng: fastrand::Rng,
    traces: Option<TraceKind>,
    /// Lines of a trace still to write, last first.
    pending: Vec<Vec<u8>>,
}

impl<'a> LineGen<'a> {
    /// The lines of a file seeded by `file_seed`: files of the same set
    /// (instances of one program) get the same templates, their own
    /// numbers and their own place in the program's output. With `traces`,
    /// about one line in 40 starts a trace of that kind.
    pub fn new(set: &'a TemplateSet, file_seed: u64, traces: Option<TraceKind>) -> LineGen<'a> {
        let seed = mix(file_seed ^ 0x00c0_ffee);
        LineGen {
            set,
            seed,
            next: (seed % set.lines.len() as u64) as usize,
            rep: 0,
            rng: fastrand::Rng::with_seed(seed),
            traces,
            pending: Vec::new(),
        }
    }

    /// Appends the next line (without its newline) to `out`.
    pub fn next_line(&mut self, out: &mut Vec<u8>) {
        if let Some(line) = self.pending.pop() {
            out.extend_from_slice(&line);
            return;
        }
        if let Some(kind) = self.traces {
            if self.rng.u32(0..40) == 0 {
                let mut trace = kind.trace(&mut self.rng);
                trace.reverse();
                self.pending = trace;
                if let Some(line) = self.pending.pop() {
                    out.extend_from_slice(&line);
                }
                return;
            }
        }
        let template = &self.set.lines[self.next];
        for seg in &template.segs {
            match seg {
                Seg::Text(t) => out.extend_from_slice(t),
                Seg::Num {
                    value,
                    width,
                    padded,
                } => {
                    let modulus = 10u64.saturating_pow(*width);
                    let magnitude = 10u64.saturating_pow(width.div_ceil(2));
                    // One step per field width and file: a repetition
                    // moves every timestamp (or counter) of the file by the
                    // same amount, so neighbouring lines keep sharing their
                    // leading digits, as in a real log.
                    let step = 1 + mix(self.seed ^ u64::from(*width)) % magnitude;
                    // Mostly the step alone; now and then a little more.
                    let noise = if self.rng.u8(0..4) == 0 {
                        self.rng.u64(0..=step / 4)
                    } else {
                        0
                    };
                    let v = value
                        .wrapping_add(self.rep.wrapping_mul(step))
                        .wrapping_add(noise)
                        % modulus;
                    if *padded {
                        push_padded(out, v, *width);
                    } else {
                        push_number(out, v);
                    }
                }
            }
        }
        self.next += 1;
        if self.next == self.set.lines.len() {
            self.next = 0;
            self.rep += 1;
        }
    }

    /// The next `n` lines, each without its newline.
    pub fn take_lines(&mut self, n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| {
                let mut l = Vec::new();
                self.next_line(&mut l);
                l
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_move_but_keep_their_width_and_the_text_stays() {
        let t = Templates::builtin();
        let mut g = LineGen::new(t.set(1), 7, None);
        let lines: Vec<String> = g
            .take_lines(40)
            .into_iter()
            .map(|l| String::from_utf8(l).expect("utf-8"))
            .collect();
        // Four templates, ten repetitions: the same text, other numbers.
        let shape = |s: &str| {
            let mut out = String::new();
            for c in s.chars() {
                let d = c.is_ascii_digit();
                if !d || !out.ends_with('#') {
                    out.push(if d { '#' } else { c });
                }
            }
            out
        };
        for i in 0..36 {
            assert_eq!(shape(&lines[i]), shape(&lines[i + 4]));
        }
        assert!((0..36).all(|i| lines[i] != lines[i + 4]));
        assert!(
            lines
                .iter()
                .any(|l| l.contains("INFO  app.handlers request_id=")),
            "{lines:?}"
        );
        // Deterministic.
        let mut again = LineGen::new(t.set(1), 7, None);
        let mut first = Vec::new();
        again.next_line(&mut first);
        assert_eq!(first, lines[0].as_bytes());
    }

    #[test]
    fn crlf_kinds_keep_their_carriage_return_and_the_others_have_none() {
        for kind in LogKind::ALL {
            let t = Templates::of(&[kind]);
            let lines = LineGen::new(t.set(0), 1, None).take_lines(50);
            let crlf = lines.iter().filter(|l| l.ends_with(b"\r")).count();
            let want = if kind.line_end().is_empty() { 0 } else { 50 };
            assert_eq!(crlf, want, "{kind:?}");
            assert!(lines.iter().all(|l| !l.contains(&b'\n')), "{kind:?}");
        }
    }

    #[test]
    fn traces_come_whole_and_in_order() {
        let t = Templates::builtin();
        let mut g = LineGen::new(t.set(0), 3, Some(TraceKind::Java));
        let lines = g.take_lines(4000);
        let starts = lines
            .iter()
            .filter(|l| l.starts_with(b"Exception in thread \"worker-"))
            .count();
        assert!(starts > 20, "{starts} traces in 4000 lines");
        let at = lines
            .iter()
            .position(|l| l.starts_with(b"Exception in thread"))
            .expect("a trace");
        assert!(lines[at + 1].starts_with(b"\tat "));
    }
}
