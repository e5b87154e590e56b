//! The object store: cblogsd publishing to a real S3-compatible store
//! (SeaweedFS on loopback, as the tests run it) against the embedded
//! local store in the same run, on the same requests: ingest, what the
//! bucket holds, requests made, and reads with an empty cache.
//!
//! "Cold" is a restart with the data dir's cache deleted: a read
//! downloads each split index it needs into the disk cache (one GET,
//! counted in its time and GETs), and every block it needs is a ranged
//! GET.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use cblogs_testkit::{Seaweed, Server};

use crate::corpus::{self, Corpus};
use crate::figures::{run_dir, Plan};
use crate::ingest::{self, Bodies};
use crate::procs::MB;
use crate::report::{self, Figure, Goal};
use crate::search;

const PUTS: &str = "cblogs_object_store_requests_total{kind=\"put\"}";
const GETS: &str = "cblogs_object_store_requests_total{kind=\"get\"}";

/// What one pair of runs measured.
#[derive(Default)]
struct Measured {
    local_mb_s: Vec<f64>,
    s3_mb_s: Vec<f64>,
    local_bytes: Vec<f64>,
    bucket_bytes: Vec<f64>,
    puts_per_gb: Vec<f64>,
    local_grep: Vec<f64>,
    warm_grep: Vec<f64>,
    cold_grep: Vec<f64>,
    gets_per_grep: Vec<f64>,
    cold_tail: Vec<f64>,
    cold_start: Vec<f64>,
}

pub fn objstore_figures(
    a: &Plan,
    corpus: &Corpus,
    bodies: &Bodies,
    work: &Path,
) -> Result<Vec<Figure>> {
    let raw = corpus.bytes as f64;
    let needle = &search::CASES[0];
    let job = corpus::JOBS[0];
    let job = format!("{}/{}/{}", job.0, job.1, job.2);
    let mut m = Measured::default();
    for i in 0..a.runs {
        eprintln!("object store run {}: local, then SeaweedFS", i + 1);
        let local = ingest::run(corpus, bodies, &run_dir(work, "objstore-local", i)?)?;
        m.local_mb_s.push(raw / MB / local.secs);
        m.local_bytes
            .push((local.disk_bytes - local.wal_bytes) as f64);
        let (times, _) = search::cblogs(&local.server.url, needle, 3)?;
        m.local_grep.push(report::median(&times).unwrap_or(0.0));
        drop(local);

        let weed = Seaweed::start();
        let prefix = format!("bench-{i}");
        let s3 = ingest::run_with(
            corpus,
            bodies,
            &run_dir(work, "objstore-s3", i)?,
            Some(&weed.config(&prefix)),
        )?;
        m.s3_mb_s.push(raw / MB / s3.secs);
        let bucket: u64 = weed
            .objects(&format!("{prefix}/splits/"))
            .iter()
            .map(|(_, n)| n)
            .sum();
        m.bucket_bytes.push(bucket as f64);
        let puts = s3.server.metric(PUTS).unwrap_or(0.0);
        m.puts_per_gb.push(puts / (raw / 1e9));
        let (times, _) = search::cblogs(&s3.server.url, needle, 3)?;
        m.warm_grep.push(report::median(&times).unwrap_or(0.0));

        // Cold: the cache and the memory are gone, before each of the two
        // (the tail would otherwise leave the newest index for the grep).
        let mut server = s3.server;
        let cache = s3.data_dir.join("cache");
        let cold_restart = |server: &mut cblogs_testkit::Server| -> Result<f64> {
            server.stop();
            std::fs::remove_dir_all(&cache)
                .with_context(|| format!("delete {}", cache.display()))?;
            let started = Instant::now();
            server.restart();
            Ok(started.elapsed().as_secs_f64())
        };
        m.cold_start.push(cold_restart(&mut server)?);
        let tail = ["tail", job.as_str(), "-n", "100", "--output", "raw"];
        m.cold_tail.push(once(&server, &tail)? * 1000.0);
        cold_restart(&mut server)?;
        let gets = server.metric(GETS).unwrap_or(0.0);
        let grep = [
            "grep",
            "--limit=0",
            "--output=raw",
            "--color=never",
            "-F",
            "--",
            needle.pattern,
        ];
        m.cold_grep.push(once(&server, &grep)?);
        let after = server
            .metric(GETS)
            .context("object-store gets are counted")?;
        m.gets_per_grep.push(after - gets);
    }
    Ok(figures(m, bucket_note(a)))
}

/// Seconds of one `cblogs` run, start to exit (its output drained).
fn once(server: &Server, args: &[&str]) -> Result<f64> {
    let started = Instant::now();
    let out = std::process::Command::new(cblogs_testkit::bin("cblogs"))
        .arg("--server")
        .arg(&server.url)
        .args(args)
        .output()
        .context("run cblogs")?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "cblogs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(secs)
}

fn bucket_note(a: &Plan) -> String {
    if a.smoke {
        "smoke sizes: not meaningful".into()
    } else {
        "SeaweedFS on loopback, one `weed server` per run".into()
    }
}

fn figures(m: Measured, note: String) -> Vec<Figure> {
    let med = |v: &[f64]| report::median(v).unwrap_or(0.0);
    vec![
        Figure::new(
            "objstore.ingest",
            "server ingest, published to S3 (until flushed and published)",
            "MB/s",
            m.s3_mb_s,
        )
        .baseline("the same on the local store", m.local_mb_s)
        .ratio_goal(Goal::AtLeast(0.9))
        .note(note),
        Figure::new(
            "objstore.storage",
            "bytes of splits in the bucket",
            "bytes",
            m.bucket_bytes,
        )
        .baseline("the same splits on the local store", m.local_bytes)
        .ratio_goal(Goal::AtMost(1.05)),
        Figure::new(
            "objstore.puts",
            "object-store PUTs per GB ingested (multipart parts and metastore commits included)",
            "PUTs/GB",
            m.puts_per_gb,
        )
        .goal(Goal::AtMost(20.0)),
        Figure::new(
            "objstore.grep_warm",
            &format!("needle grep `{}`, warm, on S3", search::CASES[0].pattern),
            "s",
            m.warm_grep,
        )
        .baseline("the same on the local store", m.local_grep)
        .ratio_goal(Goal::AtMost(1.2)),
        Figure::new(
            "objstore.grep_cold",
            "the same needle grep after a restart with the cache deleted",
            "s",
            m.cold_grep,
        )
        .goal(Goal::AtMost(1.0))
        .note(format!(
            "{:.0} GETs per search (split indexes included); the restart took {:.2} s",
            med(&m.gets_per_grep),
            med(&m.cold_start)
        )),
        Figure::new(
            "objstore.tail_cold",
            "`cblogs tail -n 100` right after that restart",
            "ms",
            m.cold_tail,
        )
        .goal(Goal::AtMost(200.0)),
    ]
}
