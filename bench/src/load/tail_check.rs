//! What a live tail checks, line by line, against the writer's stamps:
//! every line of its selection in order, exactly once, only from its
//! selection — or, after a gap, told first by a `lagged` event that it
//! fell behind. A gap with no `lagged` event before it is a tail that
//! **fell behind silently**. Tail latency is from the stamp to reading the
//! event's `data:` line. A `partial` piece waits for the rest of its line.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::histogram::Hist;
use super::shared::Shared;
use super::sse::Event;
use super::tail_specs::TailSpec;
use super::writer::parse_stamp;

/// A tail idle this long, with every missing line excused by a `lagged`
/// event, is done.
const TAIL_IDLE: Duration = Duration::from_secs(3);

/// A tail's bookkeeping, shared between its reader thread and the run.
pub struct TailState {
    /// Per file: the next sequence number due (1 is the first after the warm-up).
    next: Vec<u64>,
    /// Per file: `lagged` events received before its last line arrived.
    lag_at_last: Vec<u64>,
    lagged_events: u64,
    missed_batches: u64,
    received: u64,
    /// Lines skipped after a `lagged` event (excused).
    skipped_after_lag: u64,
    /// Gaps with no `lagged` event before them, and their lines.
    silent_gaps: u64,
    silent_lines: u64,
    /// Lines that came again, or before one already received.
    disordered: u64,
    pub hist: Hist,
    pub ready: bool,
    pub last_event: Instant,
    /// `partial` line pieces by source, joined with what follows.
    pending: HashMap<String, String>,
}

impl TailState {
    pub fn new(files: usize) -> TailState {
        TailState {
            next: vec![1; files],
            lag_at_last: vec![0; files],
            lagged_events: 0,
            missed_batches: 0,
            received: 0,
            skipped_after_lag: 0,
            silent_gaps: 0,
            silent_lines: 0,
            disordered: 0,
            hist: Hist::new(),
            ready: false,
            last_event: Instant::now(),
            pending: HashMap::new(),
        }
    }
}

/// One tail's results.
#[derive(Clone, Serialize)]
pub struct TailResult {
    pub selector: String,
    pub kind: &'static str,
    pub files: usize,
    pub lines: u64,
    pub lagged_events: u64,
    pub lagged_batches: u64,
    pub lines_skipped_after_lag: u64,
    /// Gaps (and lines never received) with no `lagged` event to explain them.
    pub silent_gaps: u64,
    pub silent_lines: u64,
    pub lines_never_received: u64,
    pub disordered: u64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    #[serde(skip)]
    pub hist: Hist,
}

impl TailResult {
    /// Did it miss, repeat or reorder lines without being told it lagged?
    pub fn fell_behind_silently(&self) -> bool {
        self.silent_gaps > 0 || self.lines_never_received > 0 || self.disordered > 0
    }
}

/// The part of a follow `line` event the check reads.
#[derive(Deserialize)]
struct LineEvent<'a> {
    #[serde(borrow)]
    text: Cow<'a, str>,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(borrow)]
    job: Cow<'a, str>,
    instance: u32,
    #[serde(default)]
    partial: bool,
}

#[derive(Deserialize)]
struct LaggedEvent {
    missed: u64,
}

impl TailState {
    /// Takes in one event of the stream.
    pub fn on_event(&mut self, shared: &Shared, spec: &TailSpec, ev: &Event) {
        match ev.name.as_str() {
            "jobs" => self.ready = true,
            "lagged" => {
                self.lagged_events += 1;
                self.missed_batches +=
                    serde_json::from_str::<LaggedEvent>(&ev.data).map_or(0, |l| l.missed);
            }
            "line" => self.on_line(shared, spec, &ev.data, ev.data_at),
            _ => {}
        }
    }

    /// Checks one `line` event (`data`, read at `at_ns`) against the stamps.
    fn on_line(&mut self, shared: &Shared, spec: &TailSpec, data: &str, at_ns: u64) {
        let ev: LineEvent = match serde_json::from_str(data) {
            Ok(ev) => ev,
            Err(e) => {
                shared.error(format!(
                    "tail {}: a line event that does not parse ({e}): {data}",
                    spec.selector
                ));
                return;
            }
        };
        if ev.partial {
            self.pending
                .entry(ev.source.into_owned())
                .or_default()
                .push_str(&ev.text);
            return;
        }
        let joined;
        let text: &str = match self.pending.remove(ev.source.as_ref()) {
            Some(mut p) => {
                p.push_str(&ev.text);
                joined = p;
                &joined
            }
            None => &ev.text,
        };
        let Some((f, seq, written_ns)) = parse_stamp(text) else {
            shared.error(format!(
                "tail {}: a line without a stamp: {text}",
                spec.selector
            ));
            return;
        };
        let matches_file = shared
            .specs
            .get(f)
            .is_some_and(|s| s.job == ev.job && s.instance == ev.instance);
        if !matches_file || !spec.wanted[f] {
            shared.error(format!(
                "tail {}: a line of {}/{} (file {f}), outside its selection or not its file",
                spec.selector, ev.job, ev.instance
            ));
            return;
        }
        if seq == 0 {
            // A warm-up line: written before the tail started.
            return;
        }
        self.received += 1;
        self.hist.add(at_ns.saturating_sub(written_ns) / 1000);
        let due = self.next[f];
        if seq < due {
            self.disordered += 1;
            return;
        }
        if seq > due {
            if self.lagged_events > self.lag_at_last[f] {
                self.skipped_after_lag += seq - due;
            } else {
                self.silent_gaps += 1;
                self.silent_lines += seq - due;
            }
        }
        self.next[f] = seq + 1;
        self.lag_at_last[f] = self.lagged_events;
    }

    /// This tail's results, given the last sequence number written to each file.
    pub fn result(&self, spec: &TailSpec, last: &[u64]) -> TailResult {
        let (mut never, mut skipped_end) = (0, 0);
        for f in (0..last.len()).filter(|&f| spec.wanted[f]) {
            if self.next[f] <= last[f] {
                let n = last[f] + 1 - self.next[f];
                if self.lagged_events > self.lag_at_last[f] {
                    skipped_end += n;
                } else {
                    never += n;
                }
            }
        }
        TailResult {
            selector: spec.selector.clone(),
            kind: spec.kind,
            files: spec.wanted.iter().filter(|w| **w).count(),
            lines: self.received,
            lagged_events: self.lagged_events,
            lagged_batches: self.missed_batches,
            lines_skipped_after_lag: self.skipped_after_lag + skipped_end,
            silent_gaps: self.silent_gaps,
            silent_lines: self.silent_lines,
            lines_never_received: never,
            disordered: self.disordered,
            latency_p50_ms: self.hist.percentile_ms(50.0),
            latency_p99_ms: self.hist.percentile_ms(99.0),
            latency_max_ms: self.hist.percentile_ms(100.0),
            hist: self.hist.clone(),
        }
    }

    /// Whether every line written has come, or each one missing was
    /// excused by a `lagged` event and the stream has gone quiet.
    pub fn done(&self, spec: &TailSpec, last: &[u64]) -> bool {
        let mut all_in = true;
        let mut excused = true;
        for f in (0..last.len()).filter(|&f| spec.wanted[f]) {
            if self.next[f] <= last[f] {
                all_in = false;
                excused &= self.lagged_events > self.lag_at_last[f];
            }
        }
        all_in || (excused && self.last_event.elapsed() > TAIL_IDLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::lay_out;
    use crate::load::tail_specs::tail_specs;
    use crate::load::writer::STAMP;

    #[test]
    fn gaps_are_silent_unless_a_lagged_event_came_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_, specs) = lay_out(dir.path()).expect("the layout");
        let tails = tail_specs(1, &specs).expect("tail specs");
        let spec = &tails[0]; // www-data/prod/hello
        let f = spec.wanted.iter().position(|w| *w).expect("a file in it");
        let g = spec.wanted.iter().rposition(|w| *w).expect("a file in it");
        let other = spec
            .wanted
            .iter()
            .position(|w| !*w)
            .expect("a file outside it");
        let shared = Shared::new("", Instant::now(), &specs);
        let line = |file: usize, seq: u64, partial: bool, text: &str| {
            serde_json::json!({
                "text": format!("{text}{STAMP}{file}:{seq}:5"),
                "source": format!("s{file}"),
                "job": specs[file].job,
                "instance": specs[file].instance,
                "partial": partial,
            })
            .to_string()
        };
        let mut st = TailState::new(specs.len());
        let feed = |st: &mut TailState, event: &str, data: &str| {
            let ev = Event {
                name: event.into(),
                data: data.into(),
                data_at: 1_000_005,
            };
            st.on_event(&shared, spec, &ev)
        };
        feed(&mut st, "line", &line(f, 1, false, "a"));
        feed(&mut st, "line", &line(f, 2, false, "b"));
        assert_eq!((st.received, st.silent_gaps, st.disordered), (2, 0, 0));
        // 3 and 4 never came, nobody said so.
        feed(&mut st, "line", &line(f, 5, false, "c"));
        assert_eq!((st.silent_gaps, st.silent_lines), (1, 2));
        // A repeat.
        feed(&mut st, "line", &line(f, 5, false, "c"));
        assert_eq!(st.disordered, 1);
        // Told first: excused, for every file.
        feed(&mut st, "lagged", r#"{"missed":7}"#);
        feed(&mut st, "line", &line(f, 9, false, "d"));
        feed(&mut st, "line", &line(g, 4, false, "e"));
        assert_eq!((st.silent_gaps, st.skipped_after_lag), (1, 3 + 3));
        assert_eq!((st.lagged_events, st.missed_batches), (1, 7));
        // ...but only for the gap right after it.
        feed(&mut st, "line", &line(f, 11, false, "f"));
        assert_eq!(st.silent_gaps, 2);
        // A partial piece joins what follows; the stamp is on the whole line.
        let piece = serde_json::json!({
            "text": "first half ", "source": format!("s{g}"),
            "job": specs[g].job, "instance": specs[g].instance, "partial": true,
        })
        .to_string();
        feed(&mut st, "line", &piece);
        feed(&mut st, "line", &line(g, 5, false, "second half"));
        assert_eq!(st.next[g], 6);
        assert_eq!(st.silent_gaps, 2);
        // 1 ms from write to receipt.
        assert_eq!(st.hist.max_us(), 1000);
        // A line of a file outside the selection is an error.
        feed(&mut st, "line", &line(other, 1, false, "x"));
        assert_eq!(shared.errors.lock().expect("errors lock").0, 1);
    }
}
