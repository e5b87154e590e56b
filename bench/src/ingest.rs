//! Server ingest: the corpus posted over HTTP to a real `cblogsd` until it
//! is all in the index, then what that left on disk and how fast
//! `cblogs tail -n 100` answers from it.
//!
//! The requests are built before the clock starts, the way shippers build
//! them: each holds batches of up to 64 KiB from several sources, up to
//! 1 MiB of lines, as zstd-compressed JSON. Four posters (as four agents'
//! shippers) send them, each owning a quarter of the sources, so each
//! source's batches arrive in order. The clock stops when the admin flush
//! (seal every block, commit) answers: everything is searchable from the
//! index then, nothing only in memory.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cblogs_core::wire::{Batch, IngestRequest, WireLine, INGEST_PATH};
use cblogs_core::{JobKey, Source};
use cblogs_testkit::{bin, Server, SHIPPER_CLUSTER, SHIPPER_HOST};

use crate::corpus::{Corpus, FileSpec};
use crate::procs::{dir_bytes, peak_rss_mib};

const POSTERS: usize = 4;
const BATCH_BYTES: usize = 64 << 10;
const REQUEST_BYTES: usize = 1 << 20;

/// The request bodies of each poster, zstd-compressed.
pub struct Bodies {
    posters: Vec<Vec<Vec<u8>>>,
    pub compressed_bytes: u64,
}

impl Bodies {
    pub fn count(&self) -> usize {
        self.posters.iter().map(Vec::len).sum()
    }
}

/// The source a shipper would name for this file.
pub fn source_of(spec: &FileSpec) -> Result<Source> {
    let job: JobKey = spec
        .job
        .parse()
        .with_context(|| format!("job key {}", spec.job))?;
    Ok(Source {
        cluster: SHIPPER_CLUSTER.into(),
        host: SHIPPER_HOST.into(),
        task_id: spec.task_id.clone(),
        job,
        instance: spec.instance,
        process: spec.process.clone(),
        run: 0,
        stream: spec.stream,
    })
}

/// Builds every request. Lines get times spread evenly over the last hour,
/// in file order.
pub fn build_bodies(corpus: &Corpus) -> Result<Bodies> {
    build_bodies_ending(corpus, cblogs_core::time::now_ns())
}

/// [`build_bodies`], the hour of line times ending at `end_ns`.
pub fn build_bodies_ending(corpus: &Corpus, end_ns: i64) -> Result<Bodies> {
    let start_ns = end_ns - 3_600_000_000_000;
    let groups: Vec<Vec<usize>> = (0..POSTERS)
        .map(|p| (p..corpus.files.len()).step_by(POSTERS).collect())
        .collect();
    let posters = std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .iter()
            .map(|files| s.spawn(move || build_group(corpus, files, start_ns, end_ns)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("a body builder panicked"))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let compressed_bytes = posters.iter().flatten().map(|b| b.len() as u64).sum();
    Ok(Bodies {
        posters,
        compressed_bytes,
    })
}

/// A file being cut into batches. It is read a little at a time: a 32 GiB
/// corpus does not fit in memory, only its compressed requests do.
struct Cursor {
    source: Source,
    file: std::fs::File,
    /// Bytes read from the file and not cut into lines yet.
    pending: Vec<u8>,
    /// The file offset of `pending[0]`.
    pos: u64,
    eof: bool,
    line: u64,
    lines: u64,
}

impl Cursor {
    fn done(&self) -> bool {
        self.eof && self.pending.is_empty()
    }

    /// Reads up to 256 KiB more of the file.
    fn read_more(&mut self) -> Result<()> {
        let old = self.pending.len();
        self.pending.resize(old + (256 << 10), 0);
        let n = self.file.read(&mut self.pending[old..]).context("read")?;
        self.pending.truncate(old + n);
        self.eof = n == 0;
        Ok(())
    }

    /// The next batch: whole lines from here until it holds
    /// [`BATCH_BYTES`], with times spread over `start_ns..end_ns` by line
    /// number.
    fn batch(&mut self, start_ns: i64, end_ns: i64) -> Result<Batch> {
        while !self.eof && self.pending.len() < 2 * BATCH_BYTES {
            self.read_more()?;
        }
        let mut lines = Vec::new();
        let mut used = 0;
        while used < BATCH_BYTES {
            let rest = &self.pending[used..];
            let len = match rest.iter().position(|&b| b == b'\n') {
                Some(len) => len,
                // A line longer than what is read yet.
                None if !self.eof => {
                    self.read_more()?;
                    continue;
                }
                None if rest.is_empty() => break,
                None => rest.len(),
            };
            let time = start_ns
                + ((end_ns - start_ns) as f64 * self.line as f64 / self.lines as f64) as i64;
            lines.push(WireLine::from_bytes(
                self.pos + used as u64,
                time,
                &rest[..len],
            ));
            used += (len + 1).min(rest.len());
            self.line += 1;
        }
        let start = self.pos;
        self.pending.drain(..used);
        self.pos += used as u64;
        Ok(Batch {
            source: self.source.clone(),
            start,
            end: self.pos,
            lines,
            allow_gap: false,
        })
    }
}

fn build_group(
    corpus: &Corpus,
    files: &[usize],
    start_ns: i64,
    end_ns: i64,
) -> Result<Vec<Vec<u8>>> {
    let mut cursors = Vec::new();
    for &i in files {
        let f = &corpus.files[i];
        let file = std::fs::File::open(&f.spec.path)
            .with_context(|| format!("open {}", f.spec.path.display()))?;
        cursors.push(Cursor {
            source: source_of(&f.spec)?,
            file,
            pending: Vec::new(),
            pos: 0,
            eof: false,
            line: 0,
            lines: f.lines.max(1),
        });
    }
    let mut bodies = Vec::new();
    let mut batches = Vec::new();
    let mut request_bytes = 0;
    while cursors.iter().any(|c| !c.done()) {
        for c in cursors.iter_mut().filter(|c| !c.done()) {
            let batch = c.batch(start_ns, end_ns)?;
            request_bytes += (batch.end - batch.start) as usize;
            if !batch.lines.is_empty() {
                batches.push(batch);
            }
            if request_bytes >= REQUEST_BYTES {
                bodies.push(body(std::mem::take(&mut batches))?);
                request_bytes = 0;
            }
        }
    }
    if !batches.is_empty() {
        bodies.push(body(batches)?);
    }
    Ok(bodies)
}

fn body(batches: Vec<Batch>) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(&IngestRequest { batches })?;
    zstd::bulk::compress(&json, 3).context("zstd")
}

/// One ingest run's results; the server keeps running for the reads.
pub struct Run {
    pub server: Server,
    pub data_dir: std::path::PathBuf,
    /// Until the last request was acknowledged (durable in the WAL).
    pub acked_secs: f64,
    /// Until the flush answered (all in the index).
    pub secs: f64,
    pub peak_rss_mib: f64,
    pub disk_bytes: u64,
    /// Of which: compressed blocks (`blocks.dat` of every partition)…
    pub block_bytes: u64,
    /// …and the tantivy indexes (`index/` of every partition).
    pub index_bytes: u64,
    pub wal_bytes: u64,
}

pub fn run(corpus: &Corpus, bodies: &Bodies, dir: &Path) -> Result<Run> {
    run_with(corpus, bodies, dir, None)
}

/// [`run`], with `extra` appended to the run's cblogsd config.
pub fn run_with(corpus: &Corpus, bodies: &Bodies, dir: &Path, extra: Option<&str>) -> Result<Run> {
    let data_dir = dir.join("data");
    let (server, timed) = post_and_flush(corpus, bodies, &data_dir, extra)?;
    let pid = server.pid().context("cblogsd is not running")?;
    // Settle: tantivy merges segments in the background after the last
    // commit. Disk use is taken, and reads are timed, once cblogsd is idle.
    settle(pid);
    // Splits: published (the embedded object store) and any being built.
    let splits = [data_dir.join("bucket/splits"), data_dir.join("building")];
    let sum = |f: &dyn Fn(&Path) -> u64| splits.iter().map(|d| f(d)).sum::<u64>();
    Ok(Run {
        disk_bytes: sum(&|d| dir_bytes(d)) + dir_bytes(&data_dir.join("wal")),
        block_bytes: sum(&|d| files_named(d, "blocks.dat")),
        index_bytes: sum(&index_dirs_bytes),
        wal_bytes: dir_bytes(&data_dir.join("wal")),
        server,
        data_dir,
        acked_secs: timed.acked_secs,
        secs: timed.secs,
        peak_rss_mib: timed.peak_rss_mib,
    })
}

/// How long an ingest took, and cblogsd's memory at its end.
pub struct Timed {
    /// Until the last request was acknowledged (durable in the WAL).
    pub acked_secs: f64,
    /// Until the flush answered (all in the index).
    pub secs: f64,
    pub peak_rss_mib: f64,
}

/// Starts a cblogsd on `data_dir`, posts every body and flushes: the timed
/// part of an ingest run. Fails unless cblogsd then holds every line.
pub fn post_and_flush(
    corpus: &Corpus,
    bodies: &Bodies,
    data_dir: &Path,
    extra: Option<&str>,
) -> Result<(Server, Timed)> {
    let server = crate::cblogsd::start_with(data_dir, extra);
    let url = server.url.clone();
    let started = Instant::now();
    post_spread(bodies, std::slice::from_ref(&url))?;
    let acked_secs = started.elapsed().as_secs_f64();
    flush(&url)?;
    let secs = started.elapsed().as_secs_f64();
    let pid = server.pid().context("cblogsd is not running")?;
    let peak_rss_mib = peak_rss_mib(pid);
    let stored = stored_lines(&url)?;
    if stored != corpus.lines {
        bail!(
            "cblogsd holds {stored} lines after the ingest, the corpus has {}",
            corpus.lines
        );
    }
    Ok((
        server,
        Timed {
            acked_secs,
            secs,
            peak_rss_mib,
        },
    ))
}

/// Every poster's bodies, posters at once, poster `p` to `urls[p mod n]`
/// (a cluster's nodes: each poster owns its sources).
pub fn post_spread(bodies: &Bodies, urls: &[String]) -> Result<()> {
    std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .posters
            .iter()
            .enumerate()
            .map(|(p, list)| {
                let url = &urls[p % urls.len()];
                s.spawn(move || post_all(url, list))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| bail!("a poster panicked")))
            .collect::<Result<Vec<()>>>()
    })?;
    Ok(())
}

fn post_all(url: &str, bodies: &[Vec<u8>]) -> Result<()> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    for b in bodies {
        let resp = client
            .post(format!("{url}{INGEST_PATH}"))
            .header("content-type", "application/json")
            .header("content-encoding", "zstd")
            .body(b.clone())
            .send()
            .context("post a batch")?;
        let status = resp.status();
        if !status.is_success() {
            bail!(
                "cblogsd answered {status}: {}",
                resp.text().unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Seals and commits everything acknowledged (the admin flush endpoint).
pub fn flush(url: &str) -> Result<()> {
    let resp = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?
        .post(format!("{url}{}", cblogs_core::api::FLUSH_PATH))
        .send()
        .context("flush")?;
    if !resp.status().is_success() {
        bail!(
            "flush answered {}: {}",
            resp.status(),
            resp.text().unwrap_or_default()
        );
    }
    let done: cblogs_core::api::FlushResponse = resp.json().context("the flush answer")?;
    if done.unindexed_bytes > 0 {
        bail!(
            "after the flush, {} bytes of lines are still not in the index (see cblogsd's log)",
            done.unindexed_bytes
        );
    }
    Ok(())
}

/// The lines cblogsd holds, over every job.
/// Waits (up to 2 minutes) until cblogsd holds `written` lines: every line
/// a measured shipper was given has arrived.
pub fn await_stored_lines(url: &str, written: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while stored_lines(url)? < written {
        if Instant::now() > deadline {
            bail!("not every line written reached cblogsd within 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub fn stored_lines(url: &str) -> Result<u64> {
    let jobs: cblogs_core::api::JobsResponse =
        reqwest::blocking::get(format!("{url}{}", cblogs_core::api::JOBS_PATH))
            .context("list jobs")?
            .json()
            .context("the jobs answer")?;
    Ok(jobs.jobs.iter().map(|j| j.lines).sum())
}

/// Wall times (ms) of `cblogs tail JOB -n 100`, process start to exit, after
/// one warm-up.
pub fn tail_n100(url: &str, job: &str, times: usize) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(times);
    for i in 0..=times {
        let started = Instant::now();
        let o = Command::new(bin("cblogs"))
            .args(["--server", url, "tail", job, "-n", "100", "--output", "raw"])
            .output()
            .context("run cblogs tail")?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if !o.status.success() {
            bail!("cblogs tail failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        let lines = o
            .stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        if lines != 100 {
            bail!("cblogs tail -n 100 printed {lines} lines");
        }
        if i > 0 {
            out.push(ms);
        }
    }
    Ok(out)
}

/// Bytes of the files called `name` anywhere under `dir`.
fn files_named(dir: &Path, name: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => files_named(&e.path(), name),
            Ok(t) if t.is_file() && e.file_name() == name => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Bytes under `<split>/index/` of every split in `splits`.
fn index_dirs_bytes(splits: &Path) -> u64 {
    std::fs::read_dir(splits)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| dir_bytes(&e.path().join("index")))
                .sum()
        })
        .unwrap_or(0)
}

/// Waits (up to two minutes) until `pid` uses under 2 % of a core over half
/// a second.
fn settle(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = crate::procs::cpu_secs(pid);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let now = crate::procs::cpu_secs(pid);
        if now - last < 0.01 {
            return;
        }
        last = now;
    }
}
