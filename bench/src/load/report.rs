//! The load run's report: the figures (write and ingest rates, tail and
//! search latencies, cblogsd's memory) as the other reports show them, the
//! counts that must be 0, and tables per search and per kind of tail.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::histogram::Hist;
use super::searchers::{SearchRecord, SEARCHES};
use super::tail_check::TailResult;
use super::{Outcome, Settings};
use crate::corpus::JOBS;
use crate::procs::MB;

/// Live tails' p99 under search load (issue 17): a live tail is watched
/// line by line, and searches must not starve it.
const TAIL_P99_MS: f64 = 500.0;

/// Searches' p99 may be at most twice what it was before live tails came
/// first: 762 ms (bench/results/load-report.md, 64 tails, 16 searchers,
/// 10 MB/s).
const SEARCH_P99_MS: f64 = 2.0 * 762.0;
use crate::report::{num, percentile, table, write_json_and_markdown, Figure, Goal, Machine};

/// The counts of a load run; `tails_fell_behind_silently` and `errors`
/// must be 0.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub written_lines: u64,
    pub written_bytes: u64,
    pub stored_lines: u64,
    pub tail_lines_received: u64,
    pub tails_fell_behind_silently: usize,
    pub silent_gaps: u64,
    pub lines_missed_silently: u64,
    pub lines_disordered: u64,
    pub lagged_events: u64,
    pub tails_lagged: usize,
    pub lines_skipped_after_lag: u64,
    pub searches: usize,
    pub searches_asked_to_wait: usize,
    pub search_waits: u64,
    pub searches_truncated: usize,
    pub errors: usize,
}

/// Latencies of one search of the loop.
#[derive(Debug, Clone, Serialize)]
pub struct SearchStats {
    pub id: &'static str,
    pub what: &'static str,
    pub count: usize,
    pub asked_to_wait: usize,
    pub truncated: usize,
    pub matched_median: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// With the waits after 503.
    pub with_waits_p50_ms: Option<f64>,
    pub with_waits_p99_ms: Option<f64>,
}

/// Tail latencies of one kind of selector.
#[derive(Debug, Clone, Serialize)]
pub struct TailKindStats {
    pub kind: &'static str,
    pub tails: usize,
    pub lines: u64,
    pub lagged_events: u64,
    pub fell_behind_silently: usize,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

#[derive(Clone, Serialize)]
pub struct LoadReport {
    pub command: String,
    pub machine: Machine,
    pub corpus: String,
    pub settings: Settings,
    pub files: usize,
    pub jobs: usize,
    pub secs: f64,
    pub figures: Vec<Figure>,
    pub counts: Counts,
    pub searches: Vec<SearchStats>,
    pub tail_kinds: Vec<TailKindStats>,
    pub tails: Vec<TailResult>,
    /// The first error messages (all are counted).
    pub errors: Vec<String>,
    /// No tail fell behind silently and nothing unexpected happened.
    pub passed: bool,
}

fn pct(v: &[f64], p: f64) -> Option<f64> {
    if p >= 100.0 {
        v.iter().copied().max_by(f64::total_cmp)
    } else {
        percentile(v, p)
    }
}

impl LoadReport {
    pub fn new(command: String, corpus: String, settings: Settings, o: &Outcome) -> LoadReport {
        let write_mb_s = o.written_bytes as f64 / MB / o.secs;
        let ingest_mb_s = o.ingest_bytes / MB / o.secs;
        let mut all = Hist::new();
        for t in &o.tails {
            all.merge(&t.hist);
        }
        let served: Vec<f64> = o.searches.iter().map(|r| r.served_ms).collect();
        let with_waits: Vec<f64> = o.searches.iter().map(|r| r.total_ms).collect();
        let counts = Counts {
            written_lines: o.written_lines,
            written_bytes: o.written_bytes,
            stored_lines: o.stored_lines,
            tail_lines_received: o.tails.iter().map(|t| t.lines).sum(),
            tails_fell_behind_silently: o.tails.iter().filter(|t| t.fell_behind_silently()).count(),
            silent_gaps: o.tails.iter().map(|t| t.silent_gaps).sum(),
            lines_missed_silently: o
                .tails
                .iter()
                .map(|t| t.silent_lines + t.lines_never_received)
                .sum(),
            lines_disordered: o.tails.iter().map(|t| t.disordered).sum(),
            lagged_events: o.tails.iter().map(|t| t.lagged_events).sum(),
            tails_lagged: o.tails.iter().filter(|t| t.lagged_events > 0).count(),
            lines_skipped_after_lag: o.tails.iter().map(|t| t.lines_skipped_after_lag).sum(),
            searches: o.searches.len(),
            searches_asked_to_wait: o.searches.iter().filter(|r| r.waits > 0).count(),
            search_waits: o.searches.iter().map(|r| r.waits).sum(),
            searches_truncated: o.searches.iter().filter(|r| r.truncated).count(),
            errors: o.error_count,
        };
        let tail_note = format!(
            "{} lines over {} tails; {} lagged events",
            counts.tail_lines_received,
            o.tails.len(),
            counts.lagged_events
        );
        let tail_fig = |p: f64, id: &str, name: &str| {
            Figure::new(
                id,
                &format!("tail latency {name}, write() → SSE `line` event received"),
                "ms",
                all.percentile_ms(p).into_iter().collect(),
            )
            .note(tail_note.clone())
        };
        let search_note = format!(
            "{} searches, {} of them asked to wait (503, retried after Retry-After); with the waits p50 {} ms, p99 {} ms",
            counts.searches,
            counts.searches_asked_to_wait,
            pct(&with_waits, 50.0).map_or_else(|| "—".into(), num),
            pct(&with_waits, 99.0).map_or_else(|| "—".into(), num),
        );
        let search_fig = |p: f64, id: &str, name: &str| {
            Figure::new(
                id,
                &format!("search latency {name}, request → summary (the request served)"),
                "ms",
                pct(&served, p).into_iter().collect(),
            )
            .note(search_note.clone())
        };
        let figures = vec![
            Figure::new(
                "load.write_rate",
                "write rate achieved, lines appended to the sandbox files",
                "MB/s",
                vec![write_mb_s],
            )
            .goal(Goal::AtLeast(settings.rate_mb * 0.95))
            .note(format!(
                "{} lines, {} bytes in {:.1} s",
                o.written_lines, o.written_bytes, o.secs
            )),
            Figure::new(
                "load.ingest_rate",
                "cblogsd ingest rate over the run (/metrics cblogs_ingest_bytes_total)",
                "MB/s",
                vec![ingest_mb_s],
            )
            .baseline("the write rate", vec![write_mb_s])
            .ratio_goal(Goal::AtLeast(0.9))
            .note(format!(
                "every line stored {:.1} s after the writer stopped",
                o.drain_secs
            )),
            tail_fig(50.0, "load.tail_latency_p50", "p50"),
            tail_fig(95.0, "load.tail_latency_p95", "p95"),
            // Live tails come first: searches must not starve them.
            tail_fig(99.0, "load.tail_latency_p99", "p99").goal(Goal::AtMost(TAIL_P99_MS)),
            tail_fig(100.0, "load.tail_latency_max", "max"),
            search_fig(50.0, "load.search_latency_p50", "p50"),
            search_fig(95.0, "load.search_latency_p95", "p95"),
            search_fig(99.0, "load.search_latency_p99", "p99")
                .goal(Goal::AtMost(SEARCH_P99_MS)),
            search_fig(100.0, "load.search_latency_max", "max"),
            Figure::new(
                "load.memory.cblogsd",
                "cblogsd peak RSS (VmHWM)",
                "MiB",
                vec![o.server_peak_rss_mib],
            )
            .note(format!(
                "CPU during the run: cblogsd {:.0} %, shipper {:.0} % (peak RSS {:.1} MiB), this harness {:.0} % of a core",
                o.server_cpu_secs / o.secs * 100.0,
                o.shipper_cpu_secs / o.secs * 100.0,
                o.shipper_peak_rss_mib,
                o.bench_cpu_secs / o.secs * 100.0
            )),
        ];
        let searches = SEARCHES
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let rs: Vec<&SearchRecord> = o.searches.iter().filter(|r| r.case == i).collect();
                let served: Vec<f64> = rs.iter().map(|r| r.served_ms).collect();
                let total: Vec<f64> = rs.iter().map(|r| r.total_ms).collect();
                let matched: Vec<f64> = rs.iter().map(|r| r.matched as f64).collect();
                SearchStats {
                    id: c.id,
                    what: c.what,
                    count: rs.len(),
                    asked_to_wait: rs.iter().filter(|r| r.waits > 0).count(),
                    truncated: rs.iter().filter(|r| r.truncated).count(),
                    matched_median: percentile(&matched, 50.0),
                    p50_ms: pct(&served, 50.0),
                    p95_ms: pct(&served, 95.0),
                    p99_ms: pct(&served, 99.0),
                    max_ms: pct(&served, 100.0),
                    with_waits_p50_ms: pct(&total, 50.0),
                    with_waits_p99_ms: pct(&total, 99.0),
                }
            })
            .collect();
        let tail_kinds = ["job", "instance", "glob", "all"]
            .into_iter()
            .filter_map(|kind| {
                let ts: Vec<&TailResult> = o.tails.iter().filter(|t| t.kind == kind).collect();
                if ts.is_empty() {
                    return None;
                }
                let mut h = Hist::new();
                for t in &ts {
                    h.merge(&t.hist);
                }
                Some(TailKindStats {
                    kind,
                    tails: ts.len(),
                    lines: ts.iter().map(|t| t.lines).sum(),
                    lagged_events: ts.iter().map(|t| t.lagged_events).sum(),
                    fell_behind_silently: ts.iter().filter(|t| t.fell_behind_silently()).count(),
                    p50_ms: h.percentile_ms(50.0),
                    p95_ms: h.percentile_ms(95.0),
                    p99_ms: h.percentile_ms(99.0),
                    max_ms: h.percentile_ms(100.0),
                })
            })
            .collect();
        let passed = counts.tails_fell_behind_silently == 0 && counts.errors == 0;
        LoadReport {
            command,
            machine: Machine::this(),
            corpus,
            files: o.files,
            jobs: JOBS.len(),
            secs: o.secs,
            settings,
            figures,
            counts,
            searches,
            tail_kinds,
            tails: o.tails.clone(),
            errors: o.errors.clone(),
            passed,
        }
    }

    pub fn markdown(&self) -> String {
        let st = &self.settings;
        let c = &self.counts;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "`{}` — {}; {} MB/s of lines from {} into {} files of {} jobs for {:.0} s, through cblogs-shipper; {} live tails, {} searchers; one run.\n",
            self.command,
            self.machine.summary(),
            st.rate_mb,
            self.corpus,
            self.files,
            self.jobs,
            self.secs,
            st.tails,
            st.searches
        );
        s.push_str(&table(&self.figures));
        let verdict = |n: usize| if n == 0 { "yes" } else { "**no**" };
        s.push_str("\n| count | value | must be 0 |\n| --- | --- | --- |\n");
        let rows: [(&str, String, &str); 10] = [
            (
                "tails that fell behind silently (a line missed, repeated or out of order with no `lagged` event before it)",
                format!(
                    "{} ({} gaps, {} lines missed, {} out of order)",
                    c.tails_fell_behind_silently, c.silent_gaps, c.lines_missed_silently, c.lines_disordered
                ),
                verdict(c.tails_fell_behind_silently),
            ),
            ("unexpected errors", c.errors.to_string(), verdict(c.errors)),
            (
                "`lagged` events (tails told they fell behind)",
                format!(
                    "{} to {} tails; {} lines skipped after them",
                    c.lagged_events, c.tails_lagged, c.lines_skipped_after_lag
                ),
                verdict(usize::from(c.lagged_events > 0)),
            ),
            ("lines written", c.written_lines.to_string(), "—"),
            ("lines stored by cblogsd (with the warm-up line of each file)", c.stored_lines.to_string(), "—"),
            ("lines received by the tails", c.tail_lines_received.to_string(), "—"),
            ("searches done", c.searches.to_string(), "—"),
            (
                "searches asked to wait (503 search_limit + Retry-After; not errors)",
                format!("{} ({} waits)", c.searches_asked_to_wait, c.search_waits),
                "—",
            ),
            ("searches truncated (search.max_query_secs)", c.searches_truncated.to_string(), "—"),
            ("bytes written", c.written_bytes.to_string(), "—"),
        ];
        for (what, value, must) in rows {
            let _ = writeln!(s, "| {what} | {value} | {must} |");
        }
        let ms = |v: Option<f64>| v.map_or_else(|| "—".into(), num);
        s.push_str("\n| search | done | asked to wait | truncated | matches (median) | p50 ms | p95 ms | p99 ms | max ms | p50 / p99 ms with waits |\n");
        s.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for q in &self.searches {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
                q.what,
                q.count,
                q.asked_to_wait,
                q.truncated,
                q.matched_median
                    .map_or_else(|| "—".into(), |v| format!("{v:.0}")),
                ms(q.p50_ms),
                ms(q.p95_ms),
                ms(q.p99_ms),
                ms(q.max_ms),
                ms(q.with_waits_p50_ms),
                ms(q.with_waits_p99_ms)
            );
        }
        s.push_str("\n| tails | count | lines received | lagged events | fell behind silently | p50 ms | p95 ms | p99 ms | max ms |\n");
        s.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for k in &self.tail_kinds {
            let what = match k.kind {
                "job" => "single jobs (`role/env/name`)",
                "instance" => "single instances (`role/env/name/N`)",
                "glob" => "globs (`mail/*`, `*/devel/*`, …; together every job)",
                _ => "every job (`*`)",
            };
            let _ = writeln!(
                s,
                "| {what} | {} | {} | {} | {} | {} | {} | {} | {} |",
                k.tails,
                k.lines,
                k.lagged_events,
                k.fell_behind_silently,
                ms(k.p50_ms),
                ms(k.p95_ms),
                ms(k.p99_ms),
                ms(k.max_ms)
            );
        }
        if !self.errors.is_empty() {
            s.push_str("\nErrors (the first ones):\n\n");
            for e in &self.errors {
                let _ = writeln!(s, "- {e}");
            }
        }
        s
    }

    /// Writes `path` (JSON) and the Markdown beside it (`.md`).
    pub fn write(&self, path: &Path) -> Result<()> {
        write_json_and_markdown(path, self, &self.markdown())
    }
}
