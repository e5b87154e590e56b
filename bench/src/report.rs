//! Figures, their targets, and the report: a Markdown table for people and a
//! JSON file for scripts.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// A target on a figure's value or on its ratio to the baseline.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    fn met(self, v: f64) -> bool {
        match self {
            Goal::AtLeast(t) => v >= t,
            Goal::AtMost(t) => v <= t,
        }
    }
    fn text(self) -> String {
        match self {
            Goal::AtLeast(t) => format!("≥ {}", num(t)),
            Goal::AtMost(t) => format!("≤ {}", num(t)),
        }
    }
}

/// One row of the report. `value` and `baseline` are medians of `runs` and
/// `baseline_runs`; `ratio` is value / baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub id: String,
    pub what: String,
    pub unit: String,
    pub value: Option<f64>,
    pub runs: Vec<f64>,
    pub baseline_what: Option<String>,
    pub baseline: Option<f64>,
    pub baseline_runs: Vec<f64>,
    pub ratio: Option<f64>,
    pub goal: Option<Goal>,
    pub ratio_goal: Option<Goal>,
    /// Whether every goal is met; `None` when the figure is pending.
    pub met: Option<bool>,
    pub note: String,
}

impl Figure {
    pub fn new(id: &str, what: &str, unit: &str, runs: Vec<f64>) -> Figure {
        Figure {
            id: id.into(),
            what: what.into(),
            unit: unit.into(),
            value: median(&runs),
            runs,
            baseline_what: None,
            baseline: None,
            baseline_runs: Vec::new(),
            ratio: None,
            goal: None,
            ratio_goal: None,
            met: None,
            note: String::new(),
        }
    }

    pub fn baseline(mut self, what: &str, runs: Vec<f64>) -> Figure {
        self.baseline_what = Some(what.into());
        self.baseline = median(&runs);
        self.baseline_runs = runs;
        self.ratio = match (self.value, self.baseline) {
            (Some(v), Some(b)) if b != 0.0 => Some(v / b),
            _ => None,
        };
        self.check()
    }

    pub fn goal(mut self, goal: Goal) -> Figure {
        self.goal = Some(goal);
        self.check()
    }

    pub fn ratio_goal(mut self, goal: Goal) -> Figure {
        self.ratio_goal = Some(goal);
        self.check()
    }

    pub fn note(mut self, note: impl Into<String>) -> Figure {
        self.note = note.into();
        self
    }

    fn check(mut self) -> Figure {
        let on_value = self.goal.map(|g| self.value.map(|v| g.met(v)));
        let on_ratio = self.ratio_goal.map(|g| self.ratio.map(|r| g.met(r)));
        self.met = match (on_value, on_ratio) {
            (None, None) => None,
            (Some(None), _) | (_, Some(None)) => None,
            (a, b) => Some(a.flatten().unwrap_or(true) && b.flatten().unwrap_or(true)),
        };
        self
    }
}

/// Where and how the report was made.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn this() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".into(), |(_, m)| m.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_gib: memory_kib / 1024.0 / 1024.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }
}

impl Machine {
    /// `2 cores (model), 8 GiB, Linux 6.1.0`: how a report's first line names it.
    pub fn summary(&self) -> String {
        format!(
            "{} cores ({}), {:.0} GiB, Linux {}",
            self.cpus, self.cpu_model, self.memory_gib, self.kernel
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub command: String,
    pub machine: Machine,
    pub corpus: String,
    pub raw_bytes: u64,
    pub lines: u64,
    pub runs: usize,
    pub figures: Vec<Figure>,
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "`{}` — {}; corpus: {} bytes, {} lines from {}; medians of {} run(s).\n",
            self.command,
            self.machine.summary(),
            self.raw_bytes,
            self.lines,
            self.corpus,
            self.runs
        );
        s.push_str(&table(&self.figures));
        s
    }

    /// Writes `path` (JSON) and the Markdown table beside it (`.md`).
    pub fn write(&self, path: &Path) -> Result<()> {
        write_json_and_markdown(path, self, &self.markdown())
    }
}

/// Writes `value` as JSON to `path`, and `markdown` beside it (`.md`);
/// creates the folder if need be.
pub fn write_json_and_markdown(path: &Path, value: &impl Serialize, markdown: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(value)?;
    std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
    let md = path.with_extension("md");
    std::fs::write(&md, markdown).with_context(|| format!("write {}", md.display()))?;
    Ok(())
}

/// The figures as a Markdown table: value, baseline, ratio, target, met.
pub fn table(figures: &[Figure]) -> String {
    let mut s = String::new();
    s.push_str("| figure | cblogs | baseline | ratio | target | met |\n");
    s.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for f in figures {
        let value = f
            .value
            .map_or_else(|| "—".into(), |v| format!("{} {}", num(v), f.unit));
        let baseline = match (&f.baseline_what, f.baseline) {
            (Some(w), Some(b)) => format!("{} {} ({w})", num(b), f.unit),
            (Some(w), None) => format!("— ({w})"),
            _ => "—".into(),
        };
        let ratio = f.ratio.map_or_else(|| "—".into(), |r| format!("{r:.2}"));
        let mut target = Vec::new();
        if let Some(g) = f.goal {
            target.push(format!("{} {}", g.text(), f.unit));
        }
        if let Some(g) = f.ratio_goal {
            target.push(format!("ratio {}", g.text()));
        }
        let met = match f.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None if target.is_empty() => "—",
            None => "pending",
        };
        let what = if f.note.is_empty() {
            f.what.clone()
        } else {
            format!("{} — {}", f.what, f.note)
        };
        let _ = writeln!(
            s,
            "| {what} | {value} | {baseline} | {ratio} | {} | {met} |",
            if target.is_empty() {
                "—".into()
            } else {
                target.join("; ")
            }
        );
    }
    s
}

/// The median (the upper middle one of an even count).
pub fn median(v: &[f64]) -> Option<f64> {
    percentile(v, 50.0)
}

/// The nearest-rank percentile `p` (0–100) of `v`.
pub fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    Some(s[rank.clamp(1, s.len()) - 1])
}

/// A number shown with the precision it deserves.
pub fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn goals_on_value_and_ratio() {
        let f = Figure::new("x", "x", "MB/s", vec![90.0, 120.0, 110.0])
            .goal(Goal::AtLeast(100.0))
            .baseline("b", vec![50.0])
            .ratio_goal(Goal::AtLeast(2.5));
        assert_eq!(f.value, Some(110.0));
        assert_eq!(f.ratio, Some(2.2));
        assert_eq!(f.met, Some(false));
        let p = Figure::new("y", "y", "ms", Vec::new()).goal(Goal::AtMost(1.0));
        assert_eq!(p.met, None, "no value, no verdict");
    }
}
