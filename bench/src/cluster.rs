//! A cluster of cblogsd nodes (issue 18's benchmarks), on one machine:
//! real nodes sharing a SeaweedFS bucket and a ZooKeeper serverset.
//!
//! - CPU per MB: the same requests posted to one node, then spread over
//!   three (each poster, a quarter of the sources, to one node), until
//!   every node has flushed; the CPU seconds all nodes used meanwhile,
//!   per MB of raw lines. With 2 cores, CPU, not wall-clock scaling.
//! - The needle asked of the node that holds it unpublished, against the
//!   same asked of a node that holds none of it (which asks the other):
//!   `cblogs grep -F`, process start to exit, medians.
//! - Failover: a shipper on 16 streams over two nodes; one is killed
//!   (`kill -9`) or frozen (`SIGSTOP`); from then until a line written
//!   to one of its streams after it is held by the other node. The
//!   shipper runs with its default `failover_after_ms` (3 s) and
//!   `request_timeout_ms` (10 s): a frozen node accepts connections and
//!   never answers, so the request timeout counts in that one.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cblogs_core::Stream;
use cblogs_testkit::wire::{request, SourceFile};
use cblogs_testkit::{Agent, ProcessRun, Seaweed, Server, Shipper, ZooKeeper, SHIPPER_FAST};

use crate::corpus::Corpus;
use crate::figures::{run_dir, Plan};
use crate::ingest::{self, Bodies};
use crate::procs::{cpu_secs, MB};
use crate::report::{self, Figure, Goal};

#[derive(Default)]
struct Measured {
    cpu_one: Vec<f64>,
    cpu_three: Vec<f64>,
    needle_holder: Vec<f64>,
    needle_other: Vec<f64>,
    kill: Vec<f64>,
    freeze: Vec<f64>,
}

pub fn cluster_figures(
    plan: &Plan,
    corpus: &Corpus,
    bodies: &Bodies,
    work: &Path,
) -> Result<Vec<Figure>> {
    let zk = ZooKeeper::start();
    let mb = corpus.bytes as f64 / MB;
    let mut m = Measured::default();
    for i in 0..plan.runs {
        let weed = Seaweed::start();
        eprintln!("cluster run {}: one node, then three", i + 1);
        let one = Nodes::ingest(
            corpus,
            bodies,
            &zk,
            &weed,
            1,
            &run_dir(work, "cluster-one", i)?,
        )?;
        m.cpu_one.push(one.cpu_secs / mb);
        drop(one);
        let three = Nodes::ingest(
            corpus,
            bodies,
            &zk,
            &weed,
            3,
            &run_dir(work, "cluster-three", i)?,
        )?;
        m.cpu_three.push(three.cpu_secs / mb);
        let (holder, other) = three.needle(i, if plan.smoke { 1 } else { 5 })?;
        m.needle_holder.push(holder);
        m.needle_other.push(other);
        drop(three);
        let weed_prefix = format!("failover-{i}");
        m.kill.push(failover(
            &zk,
            &weed,
            &weed_prefix,
            &run_dir(work, "cluster-kill", i)?,
            false,
        )?);
        let weed_prefix = format!("freeze-{i}");
        m.freeze.push(failover(
            &zk,
            &weed,
            &weed_prefix,
            &run_dir(work, "cluster-freeze", i)?,
            true,
        )?);
    }
    Ok(figures(m, plan.smoke))
}

/// `[object_store]` and `[cluster]` for a node of the serverset `name`.
fn node_config(zk: &ZooKeeper, weed: &Seaweed, name: &str) -> String {
    format!(
        "{}[cluster]\nzookeeper = \"{}\"\nserverset_path = \"/cblogs/bench/{name}\"\nsession_timeout_ms = 4000\n",
        weed.config(name),
        zk.connect()
    )
}

/// Starts `n` nodes of one serverset and waits until each sees all.
fn start_nodes(config: &str, n: usize, dir: &Path) -> Result<Vec<Server>> {
    let nodes: Vec<Server> = (0..n)
        .map(|k| crate::cblogsd::start_with(&dir.join(format!("node-{k}")), Some(config)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for node in &nodes {
        loop {
            let view = node.get_json("/api/v1/cluster");
            if view["nodes"].as_array().map_or(0, Vec::len) == n {
                break;
            }
            if Instant::now() > deadline {
                bail!("{} sees {view}, not {n} nodes", node.url);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(nodes)
}

struct Nodes {
    servers: Vec<Server>,
    cpu_secs: f64,
}

impl Nodes {
    /// Posts every body (poster `p` to node `p mod n`) and flushes every
    /// node; the CPU seconds they used meanwhile. Fails unless the
    /// cluster then holds every line, counted once.
    fn ingest(
        corpus: &Corpus,
        bodies: &Bodies,
        zk: &ZooKeeper,
        weed: &Seaweed,
        n: usize,
        dir: &Path,
    ) -> Result<Nodes> {
        let name = dir
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let servers = start_nodes(&node_config(zk, weed, &name), n, dir)?;
        let cpu = |servers: &[Server]| -> f64 {
            servers.iter().filter_map(Server::pid).map(cpu_secs).sum()
        };
        let before = cpu(&servers);
        let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
        ingest::post_spread(bodies, &urls)?;
        for url in &urls {
            ingest::flush(url)?;
        }
        let cpu_secs = cpu(&servers) - before;
        let stored = ingest::stored_lines(&urls[0])?;
        if stored != corpus.lines {
            bail!(
                "{n} nodes hold {stored} lines, the corpus has {}",
                corpus.lines
            );
        }
        Ok(Nodes { servers, cpu_secs })
    }

    /// A needle line posted to the first node and left unpublished, then
    /// found with `cblogs grep -F` asked of it and of the second, `times`
    /// each, alternately: the medians (s).
    fn needle(&self, run: usize, times: usize) -> Result<(f64, f64)> {
        let needle = format!("cblogs-bench-needle-{run}-7f3a");
        let mut file = SourceFile::of("bench/prod/needle", 0, "web", Stream::Stdout);
        self.servers[0].post_ok(&request(vec![file.batch(&[needle.as_str()])]));
        let grep = [
            "grep",
            "--limit=0",
            "--output=raw",
            "--color=never",
            "-F",
            "--",
            needle.as_str(),
        ];
        let (mut holder, mut other) = (Vec::new(), Vec::new());
        for _ in 0..times + 1 {
            holder.push(found_once(&self.servers[0], &grep, &needle)?);
            other.push(found_once(&self.servers[1], &grep, &needle)?);
        }
        // The first of each is a warm-up.
        Ok((
            report::median(&holder[1..]).unwrap_or(0.0),
            report::median(&other[1..]).unwrap_or(0.0),
        ))
    }
}

/// Seconds of one `cblogs` run that must print `needle` once.
fn found_once(server: &Server, args: &[&str], needle: &str) -> Result<f64> {
    let started = Instant::now();
    let out = std::process::Command::new(cblogs_testkit::bin("cblogs"))
        .arg("--server")
        .arg(&server.url)
        .args(args)
        .output()
        .context("run cblogs")?;
    let secs = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || stdout.lines().filter(|l| *l == needle).count() != 1 {
        bail!(
            "cblogs {args:?} on {}: {stdout} / {}",
            server.url,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(secs)
}

/// Two nodes and a shipper of 16 streams; one node killed (or frozen):
/// seconds until a line written to one of its streams after that is held
/// by the other.
fn failover(zk: &ZooKeeper, weed: &Seaweed, name: &str, dir: &Path, freeze: bool) -> Result<f64> {
    let mut nodes = start_nodes(&node_config(zk, weed, name), 2, dir)?;
    let agent = Agent::new(&dir.join("agent"));
    let mut runs: Vec<ProcessRun> = (0..8)
        .map(|i| agent.task("bench", "prod", "failover", i).process("web", 0))
        .collect();
    let serverset = format!("zk://{}/cblogs/bench/{name}", zk.connect());
    let shipper =
        Shipper::start_with_status_endpoint(&agent, &dir.join("shipper"), &serverset, SHIPPER_FAST);
    // Lines on every stream until both nodes take some.
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim_paths = loop {
        for run in &mut runs {
            run.append_lines(Stream::Stdout, &["before the failover"]);
            run.append_lines(Stream::Stderr, &["before the failover"]);
        }
        std::thread::sleep(Duration::from_millis(300));
        let files = shipper.files();
        let on = |url: &str| -> Vec<String> {
            files
                .iter()
                .filter(|f| f["node"] == url)
                .filter_map(|f| f["path"].as_str().map(str::to_owned))
                .collect()
        };
        let (a, b) = (on(&nodes[0].url), on(&nodes[1].url));
        if !a.is_empty() && !b.is_empty() && a.len() + b.len() == 16 {
            break a;
        }
        if Instant::now() > deadline {
            bail!("the shipper did not spread its streams over both nodes");
        }
    };
    let marker = format!("after the failover of {name}");
    let started = Instant::now();
    if freeze {
        nodes[0].sigstop();
    } else {
        nodes[0].kill9();
    }
    for run in &mut runs {
        for s in [Stream::Stdout, Stream::Stderr] {
            if victim_paths.contains(&run.path(s).display().to_string()) {
                run.append_lines(s, &[marker.as_str()]);
            }
        }
    }
    let job = "bench/prod/failover";
    let deadline = Instant::now() + Duration::from_secs(120);
    let secs = loop {
        // The other node's own view: asking it to fan out would wait on
        // the frozen one.
        let own = nodes[1].get_json(&format!("/api/v1/cluster/tail?job={job}&n=1000"));
        let held = own["lines"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l["text"] == marker.as_str()));
        if held {
            break started.elapsed().as_secs_f64();
        }
        if Instant::now() > deadline {
            bail!("no line of the failed node's streams reached the other within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if freeze {
        nodes[0].sigcont();
    }
    drop(shipper);
    Ok(secs)
}

fn figures(m: Measured, smoke: bool) -> Vec<Figure> {
    let note = if smoke {
        "smoke sizes: not meaningful".to_owned()
    } else {
        "three nodes and their ZooKeeper and SeaweedFS share the machine's cores".to_owned()
    };
    vec![
        Figure::new(
            "cluster.cpu_per_mb",
            "CPU of all nodes per MB ingested (until every node flushed), three nodes",
            "CPU-s/MB",
            m.cpu_three,
        )
        .baseline("the same on one node", m.cpu_one)
        .note(note),
        Figure::new(
            "cluster.needle_other_node",
            "needle grep asked of a node that holds none of the unpublished line",
            "s",
            m.needle_other,
        )
        .baseline("the same asked of the node that holds it", m.needle_holder)
        .ratio_goal(Goal::AtMost(1.5)),
        Figure::new(
            "cluster.failover_kill",
            "failover after kill -9: until the other node holds a new line of the dead node's streams",
            "s",
            m.kill,
        )
        .goal(Goal::AtMost(10.0))
        .note("shipper defaults: failover_after_ms 3000"),
        Figure::new(
            "cluster.failover_sigstop",
            "failover after SIGSTOP (the shipper's request times out first)",
            "s",
            m.freeze,
        )
        .goal(Goal::AtMost(10.0))
        .note("shipper defaults: request_timeout_ms 10000, failover_after_ms 3000"),
    ]
}

/// The cluster soak (`cluster-soak`): `kills` random kills of three nodes
/// and the shipper (`cblogs_testkit::cluster_chaos`, which
/// `tests/cluster_chaos.rs` runs with 5); an error unless every node
/// shows every line once in the end (the test kit panics, naming what is
/// wrong).
pub fn soak(kills: usize) -> Result<()> {
    if kills == 0 {
        bail!("cluster-soak needs --kills above 0");
    }
    let zk = ZooKeeper::start();
    let weed = Seaweed::start();
    let seed = cblogs_testkit::chaos_seed("cluster-soak");
    let run = cblogs_testkit::cluster_chaos::cluster_chaos(&zk, &weed, "soak", kills, seed);
    let shippers = run.kills.iter().filter(|k| *k == "shipper").count();
    println!(
        "cluster soak: {} kills ({} of the shipper, {} of nodes), seed {}, {:.1} s: every line once on every node",
        run.kills.len(),
        shippers,
        run.kills.len() - shippers,
        run.seed,
        run.took.as_secs_f64()
    );
    Ok(())
}
