//! A cluster of three nodes through losses (issue 18's tests): a node
//! killed with its disk, a fresh node in its place and a fourth node
//! added while lines are written, and random kills of nodes and the
//! shipper. Every written line is served exactly once, in order, by
//! every node. Real processes: ZooKeeper, SeaweedFS, cblogsd nodes of one
//! serverset, cblogs-shipper on a fake agent of 16 streams.
//!
//! One ZooKeeper and one SeaweedFS serve both tests, each under a
//! serverset path and a prefix of its own.

use std::time::{Duration, Instant};

use cblogs_testkit::cluster_chaos::cluster_chaos;
use cblogs_testkit::*;
use serde_json::Value;

/// Waits until `shipper` sends each of `nodes` a share of the 16
/// streams, writing a round of lines (tagged `tag`) to the agent at every
/// poll: the shares move under load. Each poll flushes every node (a
/// planned move waits for the node a stream leaves to publish).
fn shares_under_load(
    agent: &mut SpreadAgent,
    shipper: &Shipper,
    nodes: &[&Server],
    tag: &str,
    what: &str,
) -> Value {
    let end = Instant::now() + DEADLINE;
    for round in 0.. {
        agent.write_n(&format!("{tag}-{round}"), 2, round % 2);
        let status = shipper_status(shipper);
        let share = |n: &Server, field: &str| shipper_node(&status, &n.url, field);
        let shares: Vec<u64> = nodes.iter().map(|n| share(n, "streams")).collect();
        let waiting: u64 = nodes.iter().map(|n| share(n, "streams_waiting")).sum();
        if shares.iter().all(|&s| s > 0) && shares.iter().sum::<u64>() == 16 && waiting == 0 {
            return status;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}: shares {shares:?}, {waiting} waiting\n{status}\n{}",
            log_tail(&shipper.log_text(), 20)
        );
        for n in nodes {
            n.flush();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    unreachable!("the rounds do not end")
}

/// Three nodes that publish on a flush only. One is killed mid-ingest
/// and its disk deleted: what it acknowledged and had not published is
/// nowhere but in the shipper's files, which send it again to the
/// stream's next node. Then a fresh node (an empty disk, a new id) comes
/// up at its address, and a fourth node is added, each while lines are
/// written: streams spread to them, and every line is shown once, in
/// order, by every node after each step.
#[test]
fn a_node_lost_with_its_disk_a_fresh_one_and_a_fourth_lose_and_double_nothing() {
    let name = "lost";
    let job = "www-data/prod/lost";
    let config = format!(
        "[storage]\ncommit_interval_ms = 100\nsplit_max_age_secs = 3600\n{}",
        node_config(ZooKeeper::shared(), Seaweed::shared(), name)
    );
    // Ids of their own, not made at random: with 16 streams, a node may
    // hash to none of them (one chance in a hundred for a fourth node);
    // these ids give each a share.
    let config_of =
        |id: &str| config.replace("[cluster]\n", &format!("[cluster]\nnode_id = \"{id}\"\n"));
    let (_da, a) = Server::in_temp_dir(Some(&config_of("lost-a")));
    let (_db, b) = Server::in_temp_dir(Some(&config_of("lost-b")));
    let (dc, mut c) = Server::in_temp_dir(Some(&config_of("lost-c")));
    let mut agent = SpreadAgent::new(name);
    agent.write("start", true);
    let mut shipper = agent.shipper(&serverset(ZooKeeper::shared(), name));
    shares_under_load(
        &mut agent,
        &shipper,
        &[&a, &b, &c],
        "first",
        "the three nodes to take a share",
    );
    // c must hold lines unpublished for its loss to cost anything. On a
    // loaded machine a request to c can time out and its share move to
    // a and b meanwhile (c then drops what it held of it), so lines are
    // written until c holds some.
    let mut round = 0;
    wait_until("c to hold lines unpublished", DEADLINE, || {
        agent.write(&format!("unpublished-{round}"), true);
        round += 1;
        agent.wait_acked(&shipper, "every line acknowledged");
        let held = c.get_json("/api/v1/cluster/node")["sources_held"].as_u64();
        if held.is_some_and(|n| n > 0) {
            return Some(());
        }
        let status = shipper_status(&shipper);
        eprintln!(
            "c holds nothing unpublished after round {round}; the shipper sends it {} streams",
            shipper_node(&status, &c.url, "streams")
        );
        None
    });

    // Mid-ingest: lines written, not waited for, and c dies with its disk.
    agent.write_n("mid-ingest", 20, 3);
    c.kill9();
    std::fs::remove_dir_all(dc.path().join("data")).expect("delete c's disk");
    shares_under_load(
        &mut agent,
        &shipper,
        &[&a, &b],
        "after-loss",
        "a and b to take every stream",
    );
    agent.wait_acked(&shipper, "every line acknowledged by a and b");
    for (node, who) in [(&a, "a"), (&b, "b")] {
        shown_exactly_once(
            node,
            &agent.runs(),
            job,
            &format!("{who}, after c was lost"),
        );
    }
    let log = shipper.log_text();
    assert!(
        log.contains(&format!("moving from {}", c.url)),
        "{}",
        log_tail(&log, 30)
    );

    // A fresh node in c's place: its address, an empty disk.
    let (_dd, d) = {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = Server::start_with(
            &dir.path().join("data"),
            Some(&config_of("lost-d")),
            &format!("127.0.0.1:{}", c.port),
            &[],
        );
        (dir, d)
    };
    assert_eq!(d.get_json("/api/v1/cluster")["node_id"], "lost-d");
    shares_under_load(
        &mut agent,
        &shipper,
        &[&a, &b, &d],
        "fresh",
        "the fresh node to take a share",
    );
    agent.keep_writing(
        &shipper,
        "after-fresh",
        Instant::now(),
        Duration::from_secs(1),
    );
    for (node, who) in [(&a, "a"), (&b, "b"), (&d, "the fresh node")] {
        shown_exactly_once(
            node,
            &agent.runs(),
            job,
            &format!("{who}, with the fresh node"),
        );
    }

    // A fourth node, under load.
    let (_de, e) = Server::in_temp_dir(Some(&config_of("lost-e")));
    shares_under_load(
        &mut agent,
        &shipper,
        &[&a, &b, &d, &e],
        "fourth",
        "the fourth node to take a share",
    );
    agent.keep_writing(
        &shipper,
        "after-fourth",
        Instant::now(),
        Duration::from_secs(1),
    );
    for (node, who) in [
        (&a, "a"),
        (&b, "b"),
        (&d, "the fresh node"),
        (&e, "the fourth"),
    ] {
        shown_exactly_once(node, &agent.runs(), job, &format!("{who}, with four nodes"));
    }
    shipper.kill9();
}

/// Random kills of the nodes and the shipper (5 here; `cblogs-bench
/// cluster-soak` runs 20): every line once, in order, from every node.
#[test]
fn random_kills_of_nodes_and_the_shipper_lose_and_double_nothing() {
    let seed = chaos_seed("random_kills_of_nodes_and_the_shipper_lose_and_double_nothing");
    let run = cluster_chaos(ZooKeeper::shared(), Seaweed::shared(), "chaos", 5, seed);
    assert_eq!(run.kills.len(), 5);
    println!("kills: {:?}, {:.1} s", run.kills, run.took.as_secs_f64());
}
