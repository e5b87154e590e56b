//! A fake agent whose 16 streams a shipper spreads over the nodes of a
//! cluster (issue 18), and the checks the cluster tests and the cluster
//! chaos share: what the shipper acknowledged, where it sends, every
//! line once from any node.

use std::time::{Duration, Instant};

use cblogs_core::Stream;
use serde_json::Value;

use crate::exactly_once::{problems, Offsets};
use crate::samples::numbered_lines;
use crate::sandbox::{Agent, ProcessRun};
use crate::seaweed::Seaweed;
use crate::server::Server;
use crate::shipper::{Shipper, SHIPPER_FAST};
use crate::text::log_tail;
use crate::wait::DEADLINE;
use crate::zookeeper::ZooKeeper;

/// A fake agent running 8 instances of `www-data/prod/<name>`: 16
/// streams (stdout and stderr) for a shipper to spread over the nodes.
pub struct SpreadAgent {
    dir: tempfile::TempDir,
    pub agent: Agent,
    pub runs: Vec<ProcessRun>,
}

impl SpreadAgent {
    pub fn new(name: &str) -> SpreadAgent {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent = Agent::new(&dir.path().join("agent"));
        let runs = (0..8)
            .map(|i| agent.task("www-data", "prod", name, i).process("web", 0))
            .collect();
        SpreadAgent { dir, agent, runs }
    }

    /// 20 lines to every stdout, and 5 to every stderr unless it is to
    /// stay quiet, each tagged.
    pub fn write(&mut self, tag: &str, stderr: bool) {
        self.write_n(tag, 20, if stderr { 5 } else { 0 });
    }

    /// `stdout` lines to every stdout and `stderr` to every stderr.
    pub fn write_n(&mut self, tag: &str, stdout: usize, stderr: usize) {
        for run in &mut self.runs {
            run.append_lines(Stream::Stdout, &numbered_lines(tag, stdout));
            if stderr > 0 {
                run.append_lines(
                    Stream::Stderr,
                    &numbered_lines(&format!("{tag}-err"), stderr),
                );
            }
        }
    }

    /// Rounds of a few lines (stderr quiet every other round), each
    /// acknowledged before the next, until `lasting` has passed since
    /// `since`: lines written throughout an outage.
    pub fn keep_writing(
        &mut self,
        shipper: &Shipper,
        tag: &str,
        since: Instant,
        lasting: Duration,
    ) {
        let mut round = 0;
        while since.elapsed() < lasting {
            self.write_n(&format!("{tag}-{round}"), 2, round % 2);
            self.wait_acked(shipper, &format!("{tag} round {round} acknowledged"));
            round += 1;
        }
    }

    pub fn runs(&self) -> Vec<&ProcessRun> {
        self.runs.iter().collect()
    }

    /// A shipper sending to `server` (a serverset), quick to fail over,
    /// to settle and to read the serverset; its requests time out after 2 s.
    pub fn shipper(&self, server: &str) -> Shipper {
        self.shipper_timing_out_after(server, 2000)
    }

    /// [`SpreadAgent::shipper`] with its requests timing out after
    /// `request_timeout_ms`.
    pub fn shipper_timing_out_after(&self, server: &str, request_timeout_ms: u64) -> Shipper {
        let config = SHIPPER_FAST.replace(
            "[ship]\n",
            &format!(
                "[ship]\nincarnation_check_ms = 1000\nfailover_after_ms = 1000\nnode_settle_ms = 1000\n\
                 move_wait_ms = 30000\nserverset_poll_ms = 200\nrequest_timeout_ms = {request_timeout_ms}\n"
            ),
        );
        Shipper::start_with_status_endpoint(
            &self.agent,
            &self.dir.path().join("shipper-state"),
            server,
            &config,
        )
    }

    /// Waits until `shipper` has every byte written acknowledged.
    pub fn wait_acked(&self, shipper: &Shipper, what: &str) {
        let end = Instant::now() + DEADLINE;
        loop {
            let files = shipper.files();
            let behind: Vec<String> = self
                .runs
                .iter()
                .flat_map(|run| [Stream::Stdout, Stream::Stderr].map(|s| (run, s)))
                .filter_map(|(run, s)| {
                    let path = run.path(s).display().to_string();
                    let size = std::fs::metadata(run.path(s)).map_or(0, |m| m.len());
                    let file = files.iter().find(|f| f["path"] == path.as_str());
                    let acked = file.and_then(|f| f["acked"].as_u64());
                    (acked != Some(size)).then(|| {
                        let node = file.map_or(Value::Null, |f| f["node"].clone());
                        format!("{} {s}: {acked:?} of {size} (node {node})", run.task_id)
                    })
                })
                .collect();
            if behind.is_empty() {
                return;
            }
            assert!(
                Instant::now() < end,
                "timed out after {DEADLINE:?} waiting for {what}: {}\nshipper log:\n{}",
                behind.join("; "),
                log_tail(&shipper.log_text(), 25)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Waits until a tail of `job` asked of `server` (which asks the other
/// nodes) shows every line written to `runs` once, in order, at its
/// offset; else panics saying what is wrong. A tail, not the jobs counts:
/// a node counts only the lines it holds or sees published.
pub fn shown_exactly_once(server: &Server, runs: &[&ProcessRun], job: &str, ctx: &str) {
    let end = Instant::now() + DEADLINE;
    loop {
        let got = server.try_all_lines(job).unwrap_or_default();
        let problems = problems(&got, runs, Offsets::Exact);
        if problems.is_empty() {
            return;
        }
        assert!(
            Instant::now() < end,
            "{ctx}:\n  {}\ncblogsd log (end):\n{}",
            problems.join("\n  "),
            log_tail(&server.log_text(), 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The shipper's `GET /status`.
pub fn shipper_status(shipper: &Shipper) -> Value {
    serde_json::from_str(&shipper.status_get("/status")).expect("the shipper's status")
}

/// `field` of the node at `url` in a shipper's status (0 if not listed).
pub fn shipper_node(status: &Value, url: &str, field: &str) -> u64 {
    status["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["url"] == url))
        .and_then(|n| n[field].as_u64())
        .unwrap_or(0)
}

/// `[object_store]` on `weed` and `[cluster]` on `zk`, both under `name`
/// (the serverset `/cblogs/test/<name>`), with a 2 s session: a node of
/// one test's cluster.
pub fn node_config(zk: &ZooKeeper, weed: &Seaweed, name: &str) -> String {
    format!(
        "{}[cluster]\nzookeeper = \"{}\"\nserverset_path = \"/cblogs/test/{name}\"\nsession_timeout_ms = 2000\n",
        weed.config(name),
        zk.connect()
    )
}

/// The serverset of [`node_config`]'s nodes, as a shipper or the CLI takes it.
pub fn serverset(zk: &ZooKeeper, name: &str) -> String {
    format!("zk://{}/cblogs/test/{name}", zk.connect())
}
