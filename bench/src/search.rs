//! Search: `cblogs grep` against ripgrep over the raw sandbox files of the
//! same selection, warm cache, both printing every match into a pipe that
//! this process drains (rg stops at the first match when its output is
//! /dev/null, so that would flatter it).
//! Both must print the same number of lines, or the run fails: a fast
//! wrong answer is no figure.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// `None`: both streams.
    pub stream: Option<&'static str>,
    pub pattern: &'static str,
    pub fixed: bool,
    /// The most cblogs may take, as a multiple of rg's time.
    pub max_ratio: f64,
    /// The most cblogs may take as a multiple of decompressing the blocks
    /// it read ([`decompression_floor`]), where that is measured.
    pub max_floor_ratio: Option<f64>,
}

pub const CASES: [Case; 4] = [
    Case {
        id: "search.rare_literal",
        what: "search, rare literal across all jobs",
        job: None,
        stream: None,
        pattern: "OutOfMemoryError",
        fixed: true,
        max_ratio: 0.5,
        max_floor_ratio: None,
    },
    Case {
        id: "search.regex_literal",
        what: "search, regex with a literal, one job",
        job: Some("payments/prod/ledger"),
        stream: None,
        pattern: r#"Exception in thread "worker-\d+" java\.lang\.\w+"#,
        fixed: false,
        max_ratio: 1.0,
        max_floor_ratio: None,
    },
    Case {
        id: "search.regex_no_literal",
        what: "search, regex with no usable literal, one job",
        job: Some("payments/prod/ledger"),
        stream: None,
        pattern: r"\b[A-Z][a-z]+[A-Z]\w+\b",
        fixed: false,
        max_ratio: 3.0,
        max_floor_ratio: None,
    },
    Case {
        id: "search.dense_regex",
        what: "search, regex whose literal is in nearly every block, one job's stderr",
        job: Some("payments/prod/ledger"),
        // Its Java stack traces: `Exception` in nearly every block.
        stream: Some("stderr"),
        pattern: r"Exception.*\d+",
        fixed: false,
        // Reading nearly every block is bound by decompression: rg reads
        // the raw files. The target is against that floor.
        max_ratio: 5.0,
        max_floor_ratio: Some(1.3),
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
        .filter(|f| case.stream.is_none_or(|s| f.spec.stream.to_string() == s))
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
    timed("rg".as_ref(), &args, runs, Expect::Matches)
}

/// Seconds of `cblogs grep` for the case against the server at `url`,
/// every match printed (`--limit 0`), after one warm-up run; and how many
/// lines it printed.
pub fn cblogs(url: &str, case: &Case, runs: usize) -> Result<(Vec<f64>, u64)> {
    let args = grep_args(url, case, case.pattern, case.fixed);
    timed(&bin("cblogs"), &args, runs, Expect::Matches)
}

/// A string no generated line holds, nor any index term.
const ABSENT: &str = "cblogs-bench-absent-7f3a";

/// Seconds of a `cblogs grep` over the case's selection that reads no
/// block (its literal is in no index term): what every search costs
/// whatever it finds, the process start, the request, planning.
pub fn cblogs_fixed_cost(url: &str, case: &Case, runs: usize) -> Result<Vec<f64>> {
    let args = grep_args(url, case, ABSENT, true);
    let (times, lines) = timed(&bin("cblogs"), &args, runs, Expect::NoMatch)?;
    if lines != 0 {
        bail!("`cblogs grep -F {ABSENT}` printed {lines} lines");
    }
    Ok(times)
}

fn grep_args(url: &str, case: &Case, pattern: &str, fixed: bool) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--server".into(),
        url.into(),
        "grep".into(),
        "--limit=0".into(),
        "--output=raw".into(),
        "--color=never".into(),
    ];
    if fixed {
        args.push("-F".into());
    }
    if let Some(stream) = case.stream {
        args.push(format!("--stream={stream}"));
    }
    args.push("--".into());
    args.push(pattern.into());
    args.extend(case.job.map(str::to_owned));
    args
}

/// The server's own account of the case's search: its summary (time
/// taken inside cblogsd, blocks of the selection, blocks read; with
/// `explain`, where each is).
pub fn server_summary(url: &str, case: &Case, explain: bool) -> Result<SearchSummary> {
    let mut query: Vec<(&str, &str)> = vec![("pattern", case.pattern), ("limit", "0")];
    if explain {
        query.push(("explain", "blocks"));
    }
    if case.fixed {
        query.push(("fixed", "true"));
    }
    if let Some(job) = case.job {
        query.push(("job", job));
    }
    if let Some(stream) = case.stream {
        query.push(("stream", stream));
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

/// The floor of a search that reads compressed blocks: zstd decompressing
/// exactly the stored blocks `summary` lists (`explain=blocks`), on every
/// core as the search does, from memory (they are read from the splits'
/// `blocks.dat` under `data_dir` first). Seconds of `runs` runs after a
/// warm-up, and the bytes decompressed.
pub fn decompression_floor(
    data_dir: &Path,
    summary: &SearchSummary,
    runs: usize,
) -> Result<(Vec<f64>, u64)> {
    if summary.read_blocks.is_empty() {
        bail!("the search read no stored block: no floor to measure");
    }
    let mut files: HashMap<&str, File> = HashMap::new();
    let mut blocks = Vec::with_capacity(summary.read_blocks.len());
    for b in &summary.read_blocks {
        let file = match files.entry(&b.split) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let path = split_blocks(data_dir, &b.split)?;
                e.insert(File::open(&path).with_context(|| format!("open {}", path.display()))?)
            }
        };
        let mut data = vec![0u8; b.len as usize];
        file.read_exact_at(&mut data, b.pos)
            .with_context(|| format!("read a block of split {}", b.split))?;
        blocks.push(data);
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut times = Vec::with_capacity(runs);
    let mut out_bytes = 0;
    for i in 0..=runs {
        let next = AtomicUsize::new(0);
        let started = Instant::now();
        let decoded: Vec<Result<u64>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| scope.spawn(|| decompress_some(&blocks, &next)))
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| bail!("a decompressing thread panicked"))
                })
                .collect()
        });
        let secs = started.elapsed().as_secs_f64();
        out_bytes = decoded.into_iter().sum::<Result<u64>>()?;
        if i > 0 {
            times.push(secs);
        }
    }
    Ok((times, out_bytes))
}

/// Decompresses blocks taken from `next` on until none is left; the
/// bytes they held.
fn decompress_some(blocks: &[Vec<u8>], next: &AtomicUsize) -> Result<u64> {
    let mut zstd = zstd::bulk::Decompressor::new().context("a zstd context")?;
    let mut out = Vec::new();
    let mut bytes = 0;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(block) = blocks.get(i) else {
            return Ok(bytes);
        };
        let size = zstd::zstd_safe::get_frame_content_size(block)
            .ok()
            .flatten()
            .context("a block's zstd frame gives its size")?;
        out.clear();
        out.reserve(size as usize);
        bytes += zstd
            .decompress_to_buffer(block.as_slice(), &mut out)
            .context("decompress a block")? as u64;
    }
}

/// Split `id`'s `blocks.dat` in a data dir with the embedded store:
/// published, or still being built.
fn split_blocks(data_dir: &Path, id: &str) -> Result<PathBuf> {
    [
        data_dir.join("bucket").join("splits").join(id),
        data_dir.join("building").join(id),
    ]
    .into_iter()
    .map(|d| d.join("blocks.dat"))
    .find(|p| p.exists())
    .with_context(|| format!("split {id} is not in {}", data_dir.display()))
}

/// What a timed command should say by its exit status.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Success: it found lines.
    Matches,
    /// 1, grep's "no match".
    NoMatch,
}

/// Runs `program` `runs + 1` times draining its output through a pipe;
/// the seconds of all but the first (warm-up) run and the lines printed.
fn timed(
    program: &std::path::Path,
    args: &[String],
    runs: usize,
    expect: Expect,
) -> Result<(Vec<f64>, u64)> {
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
        // The cases are chosen to match; the fixed-cost search, not to.
        let expected = match expect {
            Expect::Matches => status.success(),
            Expect::NoMatch => status.code() == Some(1),
        };
        if !expected {
            bail!("{} {args:?} exited with {status}", program.display());
        }
        if i > 0 {
            times.push(started.elapsed().as_secs_f64());
        }
        count = lines;
    }
    Ok((times, count))
}

/// Wall times (ms) of `cblogs grep -F needle` over every job, `times` runs
/// with no warm-up (the first one after a start is the cold one); each
/// must print the needle's line once.
pub fn needle_grep(url: &str, needle: &str, times: usize) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(times);
    for _ in 0..times {
        let started = Instant::now();
        let o = std::process::Command::new(bin("cblogs"))
            .args(["--server", url, "grep", "-F", "--limit", "0"])
            .args(["--output", "raw", "--color", "never", "--", needle])
            .output()
            .context("run cblogs grep")?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let found = o
            .stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        if !o.status.success() || found != 1 {
            bail!(
                "cblogs grep printed the needle {found} times: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        out.push(ms);
    }
    Ok(out)
}
