//! A cluster of cblogsd nodes (issue 18), step one: membership. Nodes
//! find each other through a real ZooKeeper (Debian's package, started
//! by the test kit on a loopback port), each a member of a serverset in
//! Aurora's format; a node that dies leaves it; with ZooKeeper down a node
//! keeps the last membership it saw and says so.

use cblogs_testkit::*;
use serde_json::Value;

/// `[cluster]` for a node of the serverset `path` with a 2 s session.
fn cluster_config(zk: &ZooKeeper, path: &str) -> String {
    format!(
        "[cluster]\nzookeeper = \"{}\"\nserverset_path = \"/cblogs/test/{path}\"\nsession_timeout_ms = 2000\n",
        zk.connect()
    )
}

fn view(server: &Server) -> Value {
    server.get_json("/api/v1/cluster")
}

/// The URLs of the nodes `view` lists, sorted.
fn urls(view: &Value) -> Vec<String> {
    let mut urls: Vec<String> = view["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["url"].as_str().expect("url").to_owned())
        .collect();
    urls.sort();
    urls
}

/// Waits until `server` sees exactly the nodes at `want`, connected.
fn sees(server: &Server, want: &[&Server], what: &str) -> Value {
    let mut want: Vec<String> = want.iter().map(|s| s.url.clone()).collect();
    want.sort();
    wait_until(what, DEADLINE, || {
        let v = view(server);
        (v["zookeeper"]["state"] == "connected" && urls(&v) == want).then_some(v)
    })
}

/// The node `view` lists at `url`.
fn node<'a>(view: &'a Value, url: &str) -> &'a Value {
    view["nodes"]
        .as_array()
        .and_then(|l| l.iter().find(|n| n["url"] == url))
        .unwrap_or_else(|| panic!("{url} in {view}"))
}

#[test]
fn nodes_find_each_other_in_the_serverset_and_a_dead_one_leaves() {
    let zk = ZooKeeper::start();
    let config = cluster_config(&zk, "find");
    let (_da, mut a) = Server::in_temp_dir(Some(&config));
    let (_db, mut b) = Server::in_temp_dir(Some(&config));
    let v = sees(&a, &[&a, &b], "a to see both nodes");
    sees(&b, &[&a, &b], "b to see both nodes");
    assert_eq!(v["membership"], "zookeeper", "{v}");
    assert_eq!(v["zookeeper"]["path"], "/cblogs/test/find", "{v}");
    // Each member is Aurora's serverset JSON, with our node id beside it.
    for server in [&a, &b] {
        let n = node(&v, &server.url);
        let member = n["member"].as_str().expect("member");
        assert!(
            member.len() == 17
                && member.starts_with("member_")
                && member[7..].bytes().all(|c| c.is_ascii_digit()),
            "{member}"
        );
        let port: u16 = server
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        let instance = &n["instance"];
        assert_eq!(instance["serviceEndpoint"]["host"], "127.0.0.1", "{n}");
        assert_eq!(instance["serviceEndpoint"]["port"], port, "{n}");
        assert_eq!(instance["additionalEndpoints"]["http"]["port"], port, "{n}");
        assert_eq!(instance["status"], "ALIVE", "{n}");
        assert_eq!(n["node_id"], instance["cblogs"]["node_id"], "{n}");
        assert_eq!(n["role"], "all", "{n}");
    }
    let a_id = node(&v, &a.url)["node_id"].clone();
    assert_eq!(v["node_id"], a_id, "a names itself: {v}");
    assert_ne!(a_id, node(&v, &b.url)["node_id"], "{v}");

    // A node killed and started again keeps its id (its data dir's), and
    // its old member leaves with its session.
    let old_member = node(&v, &a.url)["member"].clone();
    a.kill9();
    a.restart();
    let v = wait_until("b to see a's new member only", DEADLINE, || {
        let v = view(&b);
        let n = v["nodes"].as_array()?.iter().find(|n| n["url"] == a.url)?;
        (urls(&v).len() == 2 && n["member"] != old_member).then_some(v)
    });
    assert_eq!(node(&v, &a.url)["node_id"], a_id, "{v}");
    assert_eq!(view(&a)["node_id"], a_id);

    // A node that dies leaves the others' view once its session expires.
    b.kill9();
    sees(&a, &[&a], "a to see b leave");
}

#[test]
fn with_zookeeper_down_a_node_keeps_the_last_membership_and_says_so() {
    let mut zk = ZooKeeper::start();
    let config = cluster_config(&zk, "down");
    let (_da, a) = Server::in_temp_dir(Some(&config));
    let (_db, b) = Server::in_temp_dir(Some(&config));
    sees(&a, &[&a, &b], "a to see both nodes");

    zk.stop();
    let v = wait_until("a to say ZooKeeper is not current", DEADLINE, || {
        let v = view(&a);
        (v["zookeeper"]["state"] == "disconnected").then_some(v)
    });
    let mut both = vec![a.url.clone(), b.url.clone()];
    both.sort();
    assert_eq!(urls(&v), both, "the last membership stays: {v}");
    assert!(
        v["zookeeper"]["since_ns"].as_i64().is_some_and(|t| t > 0),
        "{v}"
    );
    assert!(
        v["zookeeper"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{v}"
    );
    // Still serving meanwhile.
    assert_eq!(a.get_json("/api/v1/storage")["ingest_available"], true);

    zk.restart();
    sees(&a, &[&a, &b], "a to be current again");
    sees(&b, &[&a, &b], "b to be current again");
}
