//! Search: `cblogs grep` against ripgrep over the raw sandbox files of the
//! same selection, warm cache, both printing every match into a pipe that
//! this process drains (rg stops at the first match when its output is
//! /dev/null, so that would flatter it).
//! Both must print the same number of lines, or the run fails: a fast
//! wrong answer is no figure.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cblogs_core::api::{SearchEvent, SearchSummary, SEARCH_PATH};
use cblogs_testkit::bin;

use crate::corpus::Corpus;

/// One search of the benchmark.
pub struct Case {
    pub id: &'static str,
    pub what: &'static str,
    /// `None`: every job.
    pub job: Option<&'static str>,
    pub pattern: &'static str,
    pub fixed: bool,
    /// The most cblogs may take, as a multiple of rg's time.
    pub max_ratio: f64,
}

pub const CASES: [Case; 3] = [
    Case {
        id: "search.rare_literal",
        what: "search, rare literal across all jobs",
        job: None,
        pattern: "OutOfMemoryError",
        fixed: true,
        max_ratio: 0.5,
    },
    Case {
        id: "search.regex_literal",
        what: "search, regex with a literal, one job",
        job: Some("payments/prod/ledger"),
        pattern: r#"Exception in thread "worker-\d+" java\.lang\.\w+"#,
        fixed: false,
        max_ratio: 1.0,
    },
    Case {
        id: "search.regex_no_literal",
        what: "search, regex with no usable literal, one job",
        job: Some("payments/prod/ledger"),
        pattern: r"\b[A-Z][a-z]+[A-Z]\w+\b",
        fixed: false,
        max_ratio: 3.0,
    },
];

/// Is `rg` installed?
pub fn have_rg() -> bool {
    Command::new("rg")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The files a case searches.
pub fn files(corpus: &Corpus, case: &Case) -> Vec<PathBuf> {
    corpus
        .files
        .iter()
        .filter(|f| case.job.is_none_or(|j| f.spec.job == j))
        .map(|f| f.spec.path.clone())
        .collect()
}

/// Seconds of `rg` over the case's files, after one warm-up run; and how
/// many lines it printed.
pub fn rg(corpus: &Corpus, case: &Case, runs: usize) -> Result<(Vec<f64>, u64)> {
    let mut args: Vec<String> = vec![
        "--no-config".into(),
        "--no-heading".into(),
        "--no-line-number".into(),
        "--color=never".into(),
    ];
    if case.fixed {
        args.push("-F".into());
    }
    args.push("-e".into());
    args.push(case.pattern.into());
    args.extend(files(corpus, case).iter().map(|f| f.display().to_string()));
    timed("rg".as_ref(), &args, runs)
}

/// Seconds of `cblogs grep` for the case against the server at `url`,
/// every match printed (`--limit 0`), after one warm-up run; and how many
/// lines it printed.
pub fn cblogs(url: &str, case: &Case, runs: usize) -> Result<(Vec<f64>, u64)> {
    let mut args: Vec<String> = vec![
        "--server".into(),
        url.into(),
        "grep".into(),
        "--limit=0".into(),
        "--output=raw".into(),
        "--color=never".into(),
    ];
    if case.fixed {
        args.push("-F".into());
    }
    args.push("--".into());
    args.push(case.pattern.into());
    args.extend(case.job.map(str::to_owned));
    timed(&bin("cblogs"), &args, runs)
}

/// The server's own account of the case's search: its summary (time
/// taken inside cblogsd, blocks of the selection, blocks read).
pub fn server_summary(url: &str, case: &Case) -> Result<SearchSummary> {
    let mut query: Vec<(&str, &str)> = vec![("pattern", case.pattern), ("limit", "0")];
    if case.fixed {
        query.push(("fixed", "true"));
    }
    if let Some(job) = case.job {
        query.push(("job", job));
    }
    let text = reqwest::blocking::Client::new()
        .get(format!("{url}{SEARCH_PATH}"))
        .query(&query)
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.text())
        .context("search API")?;
    for line in text.lines().rev() {
        if let Ok(SearchEvent::Summary(s)) = serde_json::from_str(line) {
            return Ok(s);
        }
    }
    bail!("the search API's answer has no summary")
}

/// Runs `program` `runs + 1` times draining its output through a pipe;
/// the seconds of all but the first (warm-up) run and the lines printed.
fn timed(program: &std::path::Path, args: &[String], runs: usize) -> Result<(Vec<f64>, u64)> {
    let mut times = Vec::new();
    let mut count = 0;
    for i in 0..=runs {
        let started = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("run {}", program.display()))?;
        let mut out = child.stdout.take().context("stdout")?;
        let mut buf = vec![0u8; 1 << 16];
        let mut lines = 0u64;
        loop {
            let n = out.read(&mut buf).context("read the output")?;
            if n == 0 {
                break;
            }
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
        let status = child.wait().context("wait")?;
        // 1 is "no match": a valid answer, but the cases are chosen to match.
        if !status.success() {
            bail!("{} {args:?} exited with {status}", program.display());
        }
        if i > 0 {
            times.push(started.elapsed().as_secs_f64());
        }
        count = lines;
    }
    Ok((times, count))
}
