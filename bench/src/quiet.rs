//! The shape of a real cluster (issue 17): thousands of quiet sources,
//! each writing a line every few seconds, over a whole day of line time.
//!
//! A day even at 12× would take two hours, so the day is posted straight
//! to cblogsd as fast as it takes it: for each minute of line time, the
//! lines every source wrote in it (a line every `--quiet-interval-secs`,
//! each source at its own phase), in requests of [`SOURCES_PER_REQUEST`]
//! sources, by [`POSTERS`] posters that each own a share of the sources,
//! at most [`PACE_MINUTES_PER_SEC`] minutes of line time a second.
//! Sealing follows line time (a block spans at most
//! `storage.block_max_age_ms` of it, a split `storage.split_max_age_secs`),
//! and so does merging (a window settles once the newest line is
//! `merge.settle_secs` past it), so the day's blocks, splits and merges are
//! those a real day makes. The day measured is followed by
//! [`SETTLE_MINUTES`] of the next one, so that it settles, and the figures
//! are taken once every merge has ended.
//!
//! Baseline, in the same run: each source's day alone, compressed by
//! libzstd at level 3 (what `zstd -3` does to each file).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cblogs_core::wire::{Batch, IngestRequest, WireLine, INGEST_PATH};
use cblogs_core::{JobKey, Source, Stream};
use cblogs_fake_agent::lines::{LineGen, Templates};
use cblogs_testkit::SHIPPER_CLUSTER;

use crate::figures::run_dir;
use crate::ingest::{flush, tail_n100};
use crate::procs::{cpu_secs, peak_rss_mib, rss_mib, MB};
use crate::report::{Figure, Goal};

const MINUTE_NS: i64 = 60_000_000_000;
const DAY_MINUTES: i64 = 24 * 60;
/// Minutes of the next day posted after the measured one: past
/// `merge.settle_secs` (an hour), so the measured day settles.
const SETTLE_MINUTES: i64 = 70;
const POSTERS: usize = 2;
/// Sources per request: at a line every second, 60,000 lines, within
/// `ingest.max_lines_per_request` and `ingest.max_body_bytes`.
const SOURCES_PER_REQUEST: usize = 1000;
/// The one line the needle search must find, written once.
const NEEDLE: &str = "quiet-needle-5e1f0c";
/// The minute of the day source 0 writes the needle in.
const NEEDLE_MINUTE: i64 = 10;
/// Minutes of line time posted per second of the clock, at most: the
/// committer seals a split per round (a second) at the earliest, so this
/// keeps a split to about `storage.split_max_age_secs` (5 minutes) of line
/// time, as a real day's are, and a day takes six minutes.
const PACE_MINUTES_PER_SEC: f64 = 4.0;
/// Sources per job (its instances).
const INSTANCES: usize = 10;

/// What the quiet run is asked for.
pub struct QuietPlan {
    pub sources: Vec<usize>,
    pub interval_secs: u64,
    /// Minutes of line time measured: a day unless a smoke run.
    pub minutes: i64,
}

/// One source: who it is and where its lines come from.
struct Quiet<'a> {
    source: Source,
    gen: LineGen<'a>,
    phase_ns: i64,
    offset: u64,
}

fn source(i: usize) -> Result<Source> {
    let job: JobKey = format!("quiet/prod/svc{:04}", i / INSTANCES)
        .parse()
        .context("job key")?;
    Ok(Source {
        cluster: SHIPPER_CLUSTER.into(),
        host: format!("agent{:04}", i / 16),
        task_id: format!(
            "quiet-prod-svc{:04}-{}-{:08x}",
            i / INSTANCES,
            i % INSTANCES,
            i * 2_654_435_761 % (1 << 32)
        ),
        job,
        instance: (i % INSTANCES) as u32,
        process: "svc".into(),
        run: 0,
        stream: Stream::Stdout,
    })
}

fn quiet<'a>(templates: &'a Templates, i: usize, interval_ns: i64) -> Result<Quiet<'a>> {
    Ok(Quiet {
        source: source(i)?,
        gen: LineGen::new(templates.set(i % 5), i as u64 + 1, None),
        phase_ns: (i as i64 * 7_919_000_000 + 13) % interval_ns,
        offset: 0,
    })
}

/// The lines source `i` writes in minute `minute` of the day starting at
/// `day_ns`, as (time, text); the needle once, in source 0's minute [`NEEDLE_MINUTE`].
fn minute_lines(
    q: &mut Quiet,
    i: usize,
    day_ns: i64,
    minute: i64,
    interval_ns: i64,
) -> Vec<(i64, Vec<u8>)> {
    let from = day_ns + minute * MINUTE_NS;
    let mut t = from + q.phase_ns;
    let mut lines = Vec::new();
    while t < from + MINUTE_NS {
        let mut text = Vec::with_capacity(128);
        q.gen.next_line(&mut text);
        if i == 0 && minute == NEEDLE_MINUTE && lines.is_empty() {
            text.extend_from_slice(format!(" {NEEDLE}").as_bytes());
        }
        lines.push((t, text));
        t += interval_ns;
    }
    lines
}

/// What one run at one number of sources measured.
struct Measured {
    raw: f64,
    zstd3: f64,
    blocks_bytes: f64,
    index_bytes: f64,
    docs: f64,
    ingest_mb_s: f64,
    peak_rss: f64,
    cpu_secs: f64,
    merge_secs: f64,
    merges: f64,
    splits: usize,
    grep_ms: Vec<f64>,
    tail_ms: Vec<f64>,
}

pub fn quiet_figures(plan: &QuietPlan, templates: &Templates, work: &Path) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for (k, &n) in plan.sources.iter().enumerate() {
        eprintln!(
            "quiet cluster: {n} sources, a line every {} s, {} minutes",
            plan.interval_secs, plan.minutes
        );
        let m = run(plan, n, templates, &run_dir(work, "quiet", k)?)?;
        let id = |what: &str| format!("quiet.{n}.{what}");
        let stored = m.blocks_bytes + m.index_bytes;
        figures.push(
            Figure::new(
                &id("storage"),
                &format!("{n} quiet sources: the day's splits after merges, bytes"),
                "bytes",
                vec![stored],
            )
            .baseline(
                "each source's day alone, zstd -3 (libzstd level 3)",
                vec![m.zstd3],
            )
            .ratio_goal(Goal::AtMost(1.3))
            .note(format!(
                "{:.3} of raw; index {:.0} % of it; {} merges",
                stored / m.raw,
                100.0 * m.index_bytes / stored.max(1.0),
                m.merges
            )),
        );
        figures.push(Figure::new(
            &id("splits"),
            &format!("{n} quiet sources: the day's splits after merges"),
            "splits",
            vec![m.splits as f64],
        ));
        figures.push(
            Figure::new(
                &id("docs"),
                &format!("{n} quiet sources: tantivy documents (blocks) per source per day"),
                "docs",
                vec![m.docs],
            )
            .goal(Goal::AtMost(48.0)),
        );
        figures.push(Figure::new(
            &id("ingest"),
            &format!("{n} quiet sources: server ingest, posting the day"),
            "MB/s",
            vec![m.ingest_mb_s],
        ));
        figures.push(Figure::new(
            &id("rss"),
            &format!("{n} quiet sources: cblogsd peak RSS"),
            "MiB",
            vec![m.peak_rss],
        ));
        figures.push(
            Figure::new(
                &id("merge_cpu"),
                &format!("{n} quiet sources: merge seconds per GB of raw lines"),
                "s/GB",
                vec![m.merge_secs / (m.raw / 1e9)],
            )
            .note(format!(
                "cblogsd CPU over the run: {:.0} s for {:.2} GB",
                m.cpu_secs,
                m.raw / 1e9
            )),
        );
        figures.push(Figure::new(
            &id("grep"),
            &format!("{n} quiet sources: needle grep, process start to exit"),
            "ms",
            m.grep_ms,
        ));
        figures.push(Figure::new(
            &id("tail"),
            &format!("{n} quiet sources: tail -n 100 of one job"),
            "ms",
            m.tail_ms,
        ));
    }
    Ok(figures)
}

fn run(plan: &QuietPlan, n: usize, templates: &Templates, dir: &Path) -> Result<Measured> {
    let interval_ns = i64::try_from(plan.interval_secs.max(1)).unwrap_or(5) * 1_000_000_000;
    let now = cblogs_core::time::now_ns();
    // A whole UTC day, two days back: the day and its settling hour are past.
    let day_ns =
        (now - 2 * 24 * 60 * MINUTE_NS).div_euclid(24 * 60 * MINUTE_NS) * 24 * 60 * MINUTE_NS;
    let data_dir = dir.join("data");
    let server = crate::cblogsd::start(&data_dir);
    let url = server.url.clone();
    let pid = server.pid().context("cblogsd is not running")?;
    let started = Instant::now();
    let done = std::sync::atomic::AtomicBool::new(false);
    let raw = std::thread::scope(|s| {
        s.spawn(|| sample_memory(&url, pid, &dir.join("rss.tsv"), &done));
        let handles: Vec<_> = (0..POSTERS)
            .map(|p| {
                let url = url.clone();
                s.spawn(move || {
                    post_share(
                        &url,
                        templates,
                        n,
                        p,
                        day_ns,
                        plan.minutes + SETTLE_MINUTES.min(plan.minutes),
                        interval_ns,
                    )
                })
            })
            .collect();
        let raw = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| bail!("a poster panicked")))
            .sum::<Result<u64>>();
        let raw = raw.and_then(|raw| {
            flush(&url)?;
            eprintln!(
                "  posted {:.2} GB in {:.0} s; waiting for merges",
                raw as f64 / 1e9,
                started.elapsed().as_secs_f64()
            );
            Ok(raw)
        });
        let ingest_secs = started.elapsed().as_secs_f64();
        let merges = raw.and_then(|raw| Ok((raw, ingest_secs, wait_for_merges(&url)?)));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        merges
    })?;
    let (raw, ingest_secs, merges) = raw;
    let peak_rss = peak_rss_mib(pid);
    let cpu = cpu_secs(pid);
    // The measured day: its window's published splits (a merge's inputs
    // stay in the bucket a while after it, until no search can read them).
    let prefix = format!("w{}_", day_ns.div_euclid(1_000_000_000));
    let day: Vec<(String, u64)> = published_splits(&url)?
        .into_iter()
        .filter(|(id, _)| id.starts_with(&prefix))
        .collect();
    let docs: u64 = day.iter().map(|(_, blocks)| blocks).sum();
    let ids: Vec<&str> = day.iter().map(|(id, _)| id.as_str()).collect();
    let (blocks_bytes, index_bytes) = splits_bytes(&data_dir.join("bucket/splits"), &ids);
    let (day_raw, zstd3) = baseline(templates, n, day_ns, plan.minutes, interval_ns);
    let grep_ms = needle_grep(&url, 5)?;
    let tail_ms = tail_n100(&url, "quiet/prod/svc0000", 5)?;
    Ok(Measured {
        raw: day_raw as f64,
        zstd3: zstd3 as f64,
        blocks_bytes: blocks_bytes as f64,
        index_bytes: index_bytes as f64,
        docs: docs as f64 / n as f64 * (DAY_MINUTES as f64 / plan.minutes as f64),
        ingest_mb_s: raw as f64 / MB / ingest_secs,
        peak_rss,
        cpu_secs: cpu,
        merge_secs: merges["seconds"].as_f64().unwrap_or(0.0),
        merges: merges["done"].as_f64().unwrap_or(0.0),
        splits: ids.len(),
        grep_ms,
        tail_ms,
    })
}

/// Posts poster `p`'s share of the `n` sources, minute by minute; returns
/// the bytes of line text posted.
fn post_share(
    url: &str,
    templates: &Templates,
    n: usize,
    p: usize,
    day_ns: i64,
    minutes: i64,
    interval_ns: i64,
) -> Result<u64> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let mine: Vec<usize> = (p..n).step_by(POSTERS).collect();
    let mut sources = mine
        .iter()
        .map(|&i| quiet(templates, i, interval_ns))
        .collect::<Result<Vec<_>>>()?;
    let mut posted = 0u64;
    let started = Instant::now();
    for minute in 0..minutes {
        let due = Duration::from_secs_f64(minute as f64 / PACE_MINUTES_PER_SEC);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        for chunk in (0..sources.len())
            .collect::<Vec<_>>()
            .chunks(SOURCES_PER_REQUEST)
        {
            let mut batches = Vec::with_capacity(chunk.len());
            for &k in chunk {
                let q = &mut sources[k];
                let start = q.offset;
                let lines = minute_lines(q, mine[k], day_ns, minute, interval_ns)
                    .into_iter()
                    .map(|(t, text)| {
                        let line = WireLine::from_bytes(q.offset, t, &text);
                        q.offset += text.len() as u64 + 1;
                        posted += text.len() as u64 + 1;
                        line
                    })
                    .collect();
                batches.push(Batch {
                    source: q.source.clone(),
                    start,
                    end: q.offset,
                    lines,
                    allow_gap: false,
                });
            }
            let json = serde_json::to_vec(&IngestRequest { batches })?;
            let body = zstd::bulk::compress(&json, 1).context("zstd")?;
            post_until_taken(&client, url, body)?;
        }
    }
    Ok(posted)
}

/// Posts one request, and again while cblogsd answers 503 or 429 (busy:
/// lines waiting for the index, or a rate), after its `Retry-After` (1 s
/// without one), as a shipper does; any other refusal ends the run.
fn post_until_taken(client: &reqwest::blocking::Client, url: &str, body: Vec<u8>) -> Result<()> {
    let started = Instant::now();
    loop {
        let resp = client
            .post(format!("{url}{INGEST_PATH}"))
            .header("content-type", "application/json")
            .header("content-encoding", "zstd")
            .body(body.clone())
            .send()
            .context("post a minute of lines")?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let busy = status == reqwest::StatusCode::SERVICE_UNAVAILABLE
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        if !busy || started.elapsed() > Duration::from_secs(600) {
            bail!(
                "cblogsd answered {status}: {}",
                resp.text().unwrap_or_default()
            );
        }
        let wait = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(1);
        std::thread::sleep(Duration::from_secs(wait.clamp(1, 30)));
    }
}

/// Each source's day of lines alone, and libzstd level 3 of it: (raw, compressed).
fn baseline(
    templates: &Templates,
    n: usize,
    day_ns: i64,
    minutes: i64,
    interval_ns: i64,
) -> (u64, u64) {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let (mut raw, mut packed) = (0u64, 0u64);
                    for i in (t..n).step_by(threads) {
                        let Ok(mut q) = quiet(templates, i, interval_ns) else {
                            continue;
                        };
                        let mut file = Vec::new();
                        for minute in 0..minutes {
                            for (_, text) in minute_lines(&mut q, i, day_ns, minute, interval_ns) {
                                file.extend_from_slice(&text);
                                file.push(b'\n');
                            }
                        }
                        raw += file.len() as u64;
                        packed += zstd::bulk::compress(&file, 3).map_or(0, |c| c.len() as u64);
                    }
                    (raw, packed)
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().ok())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    })
}

/// Every 10 s until `done`: cblogsd's resident memory, and the splits and
/// merges it holds, as a line of `out` (the peak's line is said at the
/// end): what the memory grows with.
fn sample_memory(url: &str, pid: u32, out: &Path, done: &std::sync::atomic::AtomicBool) {
    let started = Instant::now();
    let mut table = String::from("secs\trss_mib\tsplits\tmerges_pending\tmerges_done\n");
    let mut peak = (0.0, String::new());
    let mut next = Instant::now();
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        if Instant::now() >= next {
            next += Duration::from_secs(10);
            let rss = rss_mib(pid);
            let storage: Option<serde_json::Value> =
                reqwest::blocking::get(format!("{url}/api/v1/storage"))
                    .and_then(|r| r.json())
                    .ok();
            let field = |f: &dyn Fn(&serde_json::Value) -> Option<u64>| {
                storage
                    .as_ref()
                    .and_then(f)
                    .map_or("-".to_owned(), |n| n.to_string())
            };
            let line = format!(
                "{:.0}\t{rss:.0}\t{}\t{}\t{}\n",
                started.elapsed().as_secs_f64(),
                field(&|s| s["splits"].as_array().map(|a| a.len() as u64)),
                field(&|s| s["merges"]["pending"].as_u64()),
                field(&|s| s["merges"]["done"].as_u64()),
            );
            if rss > peak.0 {
                peak = (rss, line.clone());
            }
            table.push_str(&line);
            let _ = std::fs::write(out, &table);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "  highest RSS sampled (secs, MiB, splits, merges pending, done): {}  every sample: {}",
        peak.1.trim_end(),
        out.display()
    );
}

/// Waits until no merge runs or is due, seen twice two seconds apart (the
/// committer plans merges between its rounds: one look just after the
/// flush may come before the plan); returns the merges section.
pub fn wait_for_merges(url: &str) -> Result<serde_json::Value> {
    let started = Instant::now();
    let mut idle_since: Option<Instant> = None;
    loop {
        let storage: serde_json::Value =
            reqwest::blocking::get(format!("{url}/api/v1/storage"))?.json()?;
        let m = storage["merges"].clone();
        if m["pending"] == 0 && m["running"] == false {
            match idle_since {
                Some(t) if t.elapsed() >= Duration::from_secs(2) => return Ok(m),
                Some(_) => {}
                None => idle_since = Some(Instant::now()),
            }
        } else {
            idle_since = None;
        }
        if started.elapsed() > Duration::from_secs(4 * 3600) {
            bail!("merges did not end in 4 hours: {m}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The published splits `/api/v1/storage` lists, each with its blocks
/// (a merge's inputs stay in the bucket a while after it: they are not
/// published any more).
pub fn published_splits(url: &str) -> Result<Vec<(String, u64)>> {
    let storage: serde_json::Value =
        reqwest::blocking::get(format!("{url}/api/v1/storage"))?.json()?;
    Ok(storage["splits"]
        .as_array()
        .context("splits")?
        .iter()
        .filter(|s| s["state"] == "published")
        .filter_map(|s| Some((s["id"].as_str()?.to_owned(), s["blocks"].as_u64()?)))
        .collect())
}

/// Bytes of `blocks.dat` and of everything else, over the splits `ids`
/// in the embedded store's `splits/`.
pub fn splits_bytes(splits: &Path, ids: &[&str]) -> (u64, u64) {
    let (mut blocks, mut rest) = (0, 0);
    for id in ids {
        let dir = splits.join(id);
        let all = crate::procs::dir_bytes(&dir);
        let b = std::fs::metadata(dir.join("blocks.dat")).map_or(0, |m| m.len());
        blocks += b;
        rest += all.saturating_sub(b);
    }
    (blocks, rest)
}

/// Wall times (ms) of `cblogs grep -F NEEDLE`, after one warm-up; the
/// needle must be found exactly once.
fn needle_grep(url: &str, times: usize) -> Result<Vec<f64>> {
    let mut out = crate::search::needle_grep(url, NEEDLE, times + 1)?;
    out.remove(0);
    Ok(out)
}
