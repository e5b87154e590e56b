//! Chaos over a cluster (issue 18): three nodes of one serverset on a
//! shared bucket, and a shipper on a fake agent of 16 streams. At random
//! moments (a seeded schedule) a node or the shipper is killed
//! (`kill -9`) while lines are written, lines go on being written while
//! it is down, and it is brought back. In the end every line is shown
//! exactly once, in order, by every node. `tests/cluster_chaos.rs` runs
//! 5 kills; `cblogs-bench cluster-soak` runs 20 or more.

use std::time::{Duration, Instant};

use crate::rng::Rng;
use crate::seaweed::Seaweed;
use crate::server::Server;
use crate::spread::{node_config, serverset, shown_exactly_once, SpreadAgent};
use crate::text::log_tail;
use crate::zookeeper::ZooKeeper;

/// What a run did.
pub struct ChaosRun {
    pub seed: u64,
    /// What was killed, in order (`node 1`, `shipper`, …).
    pub kills: Vec<String>,
    /// From the first kill until every node showed every line once.
    pub took: Duration,
}

/// Blocks seal after 200 ms and splits publish 2 s after they start, so
/// that a stream moving back to a node that came back waits little for
/// its old node's publish (with the defaults, a minute: the shipper then
/// moves it after `move_wait_ms` anyway).
const NODE: &str =
    "[storage]\ncommit_interval_ms = 100\nblock_max_age_ms = 200\nsplit_max_age_secs = 2\n";

/// Runs `kills` kills with the schedule of `seed`, on the serverset
/// `name`; panics, saying what is wrong, unless every line written is
/// shown once by every node in the end.
pub fn cluster_chaos(
    zk: &ZooKeeper,
    weed: &Seaweed,
    name: &str,
    kills: usize,
    seed: u64,
) -> ChaosRun {
    let config = format!("{NODE}{}", node_config(zk, weed, name));
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut nodes: Vec<Server> = dirs
        .iter()
        .map(|d| Server::start(&d.path().join("data"), Some(&config)))
        .collect();
    let mut agent = SpreadAgent::new(name);
    agent.write("start", true);
    let mut shipper = agent.shipper(&serverset(zk, name));
    agent.wait_acked(&shipper, "the first lines acknowledged");
    let mut rng = Rng(seed);
    let mut done = Vec::new();
    let started = Instant::now();
    for k in 0..kills {
        let victim = rng.below(4) as usize;
        agent.write_n(&format!("before-{k}"), 3, k % 2);
        // The moment of the kill is the point: anywhere in the shipping
        // of what was just written.
        std::thread::sleep(rng.millis(0, 400));
        let down = match nodes.get_mut(victim) {
            Some(node) => {
                node.kill9();
                format!("node {victim}")
            }
            None => {
                shipper.kill9();
                "shipper".to_owned()
            }
        };
        eprintln!(
            "cluster chaos (seed {seed}): kill {} of {kills}: {down}",
            k + 1
        );
        let until = Instant::now() + rng.millis(500, 2500);
        let mut round = 0;
        while Instant::now() < until {
            agent.write_n(&format!("down-{k}-{round}"), 2, round % 2);
            std::thread::sleep(Duration::from_millis(100));
            round += 1;
        }
        match nodes.get_mut(victim) {
            Some(node) => node.restart(),
            None => shipper.restart(),
        }
        agent.write_n(&format!("after-{k}"), 3, 1);
        let back = Instant::now();
        let what = format!("every line acknowledged after kill {}", k + 1);
        let acked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            agent.wait_acked(&shipper, &what)
        }));
        if let Err(e) = acked {
            for (i, node) in nodes.iter().enumerate() {
                let end = log_tail(&node.log_text(), 15);
                eprintln!("node {i} ({}), its log's end:\n{end}", node.url);
                let said = crate::server_api::http_client(Some(Duration::from_secs(3)))
                    .get(format!("{}/api/v1/cluster/node", node.url))
                    .send()
                    .and_then(|r| r.text());
                eprintln!("node {i} says: {said:?}");
            }
            let status = crate::spread::shipper_status(&shipper);
            eprintln!("shipper nodes: {}", status["nodes"]);
            std::panic::resume_unwind(e);
        }
        eprintln!(
            "cluster chaos: every line acknowledged {:.1} s after {down} came back",
            back.elapsed().as_secs_f64()
        );
        done.push(down);
    }
    agent.write("end", true);
    agent.wait_acked(&shipper, "the last lines acknowledged");
    for node in &nodes {
        node.flush();
    }
    let runs = agent.runs();
    for (i, node) in nodes.iter().enumerate() {
        let job = format!("www-data/prod/{name}");
        shown_exactly_once(
            node,
            &runs,
            &job,
            &format!("node {i}, after the chaos (seed {seed}, kills {done:?})"),
        );
    }
    ChaosRun {
        seed,
        kills: done,
        took: started.elapsed(),
    }
}
