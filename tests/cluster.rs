//! A cluster of cblogsd nodes (issue 18). Nodes find each other through
//! a real ZooKeeper (Debian's package, started by the test kit on a
//! loopback port), each a member of a serverset in Aurora's format; a
//! node that dies leaves it, and the oldest member keeps house; with
//! ZooKeeper down a node keeps the last membership it saw and says so.
//! Nodes ask each other what they hold with the cluster's token, over
//! TLS; a node limited to one role refuses the other's requests. On a
//! shared SeaweedFS: a node fenced out of a source publishes none of what
//! it held (rule 2), a node shows what another published, and the CLI
//! asks the next node when one cannot be reached.
//!
//! One ZooKeeper and one SeaweedFS serve every test of this binary
//! (`ZooKeeper::shared`, `Seaweed::shared`), each test under a serverset
//! path and a prefix of its own; the test that stops ZooKeeper starts
//! its own.

use std::path::Path;

use cblogs_core::Stream;
use cblogs_testkit::wire::{request, SourceFile};
use cblogs_testkit::*;
use serde_json::Value;

/// `[cluster]` for a node of the serverset `path` with a 2 s session.
fn cluster_config(zk: &ZooKeeper, path: &str) -> String {
    format!(
        "[cluster]\nzookeeper = \"{}\"\nserverset_path = \"/cblogs/test/{path}\"\nsession_timeout_ms = 2000\n",
        zk.connect()
    )
}

/// `[object_store]` on the binary's SeaweedFS and `[cluster]` on its
/// ZooKeeper, both under `name`.
fn on_the_shared_store(name: &str) -> String {
    node_config(ZooKeeper::shared(), Seaweed::shared(), name)
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

/// The id of `server` as `view` lists it.
fn node_id(view: &Value, server: &Server) -> String {
    node(view, &server.url)["node_id"]
        .as_str()
        .expect("node_id")
        .to_owned()
}

/// Asserts that `out` says its answer is partial and names node `id`.
fn says_partial(out: &CliOutput, id: &str) {
    assert!(
        out.stderr.contains("partial answer") && out.stderr.contains(id),
        "node {id} named as not answering: {}",
        out.stderr
    );
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
    let zk = ZooKeeper::shared();
    let config = cluster_config(zk, "find");
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
    let b_id = node(&v, &b.url)["node_id"].clone();
    assert_ne!(a_id, b_id, "{v}");
    // The oldest member runs merges, retention and the sweep: a, the
    // first to join; the other node knows it, and does not.
    assert_eq!(v["housekeeper"], a_id, "{v}");
    assert_eq!(node(&v, &a.url)["report"]["housekeeping"], true, "{v}");
    assert_eq!(node(&v, &b.url)["report"]["housekeeping"], false, "{v}");
    assert_eq!(view(&b)["housekeeper"], a_id);

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
    // a's new member is younger than b's: b took the housekeeping over.
    assert_eq!(v["housekeeper"], b_id, "{v}");
    wait_until("a to know b keeps house", DEADLINE, || {
        let v = view(&a);
        (v["housekeeper"] == b_id && node(&v, &a.url)["report"]["housekeeping"] == false)
            .then_some(())
    });

    // A node that dies leaves the others' view once its session expires,
    // and the housekeeping with it.
    b.kill9();
    let v = sees(&a, &[&a], "a to see b leave");
    assert_eq!(v["housekeeper"], a_id, "{v}");
    assert_eq!(node(&v, &a.url)["report"]["housekeeping"], true, "{v}");
}

/// ZooKeeper stopped for 30 s (issue 18's test), lines written
/// throughout: the nodes keep the last membership they saw and say so,
/// the shipper keeps sending to the nodes the serverset last listed, a
/// tail asked of one node still shows what both hold, and once ZooKeeper
/// is back every line is there exactly once.
#[test]
fn with_zookeeper_down_a_node_keeps_the_last_membership_and_says_so() {
    let mut zk = ZooKeeper::start();
    let config = format!(
        "[storage]\nsplit_max_age_secs = 3600\n{}{}",
        Seaweed::shared().config("down"),
        cluster_config(&zk, "down")
    );
    let (_da, a) = Server::in_temp_dir(Some(&config));
    let (_db, b) = Server::in_temp_dir(Some(&config));
    sees(&a, &[&a, &b], "a to see both nodes");
    let job = "www-data/prod/down";
    let mut agent = SpreadAgent::new("down");
    let shipper = agent.shipper(&format!("zk://{}/cblogs/test/down", zk.connect()));
    agent.write("before", true);
    agent.wait_acked(&shipper, "the first lines acknowledged");

    zk.stop();
    let outage = std::time::Instant::now();
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
    // Lines go on being written, and taken, for as long as it is down.
    agent.keep_writing(
        &shipper,
        "outage",
        outage,
        std::time::Duration::from_secs(30),
    );
    assert!(
        shipper.log_text().contains("cannot read the serverset"),
        "{}",
        log_tail(&shipper.log_text(), 20)
    );
    let status = shipper_status(&shipper);
    assert_eq!(
        shipper_node(&status, &a.url, "streams") + shipper_node(&status, &b.url, "streams"),
        16,
        "both nodes still take the streams: {status}"
    );
    shown_exactly_once(&a, &agent.runs(), job, "during the outage, from a");

    zk.restart();
    sees(&a, &[&a, &b], "a to be current again");
    sees(&b, &[&a, &b], "b to be current again");
    agent.write("after", true);
    agent.wait_acked(&shipper, "the lines after the outage acknowledged");
    shown_exactly_once(&b, &agent.runs(), job, "after the outage, from b");
}

/// What a test's client presents: a token, and the CA of `https` nodes.
struct Client {
    http: reqwest::blocking::Client,
    token: &'static str,
}

impl Client {
    fn new(ca: &Path, token: &'static str) -> Client {
        let pem = std::fs::read(ca).expect("ca.pem");
        let http = reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA PEM"))
            .build()
            .expect("client");
        Client { http, token }
    }

    fn get(&self, server: &Server, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", server.url))
            .bearer_auth(self.token)
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.json().expect("JSON"))
    }

    fn post(&self, server: &Server, body: &cblogs_core::wire::IngestRequest) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/api/v1/ingest", server.url))
            .bearer_auth(self.token)
            .json(body)
            .send()
            .expect("POST /api/v1/ingest");
        let status = resp.status().as_u16();
        (status, resp.json().expect("JSON"))
    }
}

#[test]
fn nodes_ask_each_other_with_the_cluster_token_over_tls() {
    let zk = ZooKeeper::shared();
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = make_certificates(dir.path());
    let shared = dir.path().join("cluster.token");
    std::fs::write(&shared, "# every node's\ncluster-token-0123456789\n").expect("token file");
    let other = dir.path().join("other.token");
    std::fs::write(&other, "another-cluster-token-42\n").expect("token file");
    // Every role has a token, so nothing is open even on loopback: what
    // one node learns of another it learns with the cluster's token.
    let config = |token_file: &Path| {
        format!(
            "[auth]\ningest_tokens = [\"ingest-token-0123456789\"]\nread_tokens = [\"reader-token-0123456789\"]\n\
             admin_tokens = [\"admin-token-0123456789\"]\n\
             [tls]\ncert_file = {cert:?}\nkey_file = {key:?}\n{}token_file = {token_file:?}\nca_cert = {ca:?}\n",
            cluster_config(zk, "tls")
        )
    };
    let (_da, a) = Server::in_temp_dir(Some(&config(&shared)));
    let (_db, b) = Server::in_temp_dir(Some(&config(&shared)));
    let (_dc, c) = Server::in_temp_dir(Some(&config(&other)));
    assert!(a.url.starts_with("https://"), "{}", a.url);
    let reader = Client::new(&ca, "reader-token-0123456789");
    let writer = Client::new(&ca, "ingest-token-0123456789");

    let mut file = SourceFile::of("www-data/prod/held", 0, "web", Stream::Stdout);
    let (status, body) = writer.post(&b, &request(vec![file.batch(&["not published yet"])]));
    assert_eq!(status, 200, "{body}");
    let key = file.source.key();

    let v = wait_until("a to hear from b what b holds", DEADLINE, || {
        let (status, v) = reader.get(&a, "/api/v1/cluster");
        assert_eq!(status, 200, "{v}");
        let n = v["nodes"].as_array()?.iter().find(|n| n["url"] == b.url)?;
        (n["report"]["sources_held"] == 1 && urls(&v).len() == 3).then_some(v)
    });
    let nb = node(&v, &b.url);
    assert_eq!(nb["report"]["sources"], serde_json::json!([key]), "{nb}");
    assert_eq!(nb["report"]["node_id"], nb["node_id"], "{nb}");
    assert!(nb["report"]["upload_lag_secs"].as_f64().is_some(), "{nb}");
    assert_eq!(nb["instance"]["cblogs"]["scheme"], "https", "{nb}");
    assert!(
        nb["instance"]["additionalEndpoints"]["https"]["port"].is_u64(),
        "{nb}"
    );
    let na = node(&v, &a.url);
    assert_eq!(na["report"]["sources_held"], 0, "a holds nothing: {na}");
    // c's token is not the cluster's: a and c cannot read each other.
    let nc = node(&v, &c.url);
    assert!(nc.get("report").is_none(), "{nc}");
    let why = nc["error"].as_str().unwrap_or_default();
    assert!(why.contains("401") && why.contains(&c.url), "{nc}");
    let (_, from_c) = reader.get(&c, "/api/v1/cluster");
    let why = node(&from_c, &a.url)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(why.contains("401"), "{from_c}");
    // The cluster token reads, and does nothing else.
    let node_client = Client::new(&ca, "cluster-token-0123456789");
    assert_eq!(node_client.get(&b, "/api/v1/cluster/node").0, 200);
    assert_eq!(node_client.get(&b, "/api/v1/jobs").0, 200);
    let (status, body) = node_client.post(&b, &request(vec![file.batch(&["no"])]));
    assert_eq!(status, 403, "{body}");
}

#[test]
fn a_node_limited_to_one_role_refuses_the_other_and_announces_it() {
    let zk = ZooKeeper::shared();
    let config = cluster_config(zk, "roles");
    let dir = tempfile::tempdir().expect("temp dir");
    let ingest = Server::start_with(
        &dir.path().join("ingest"),
        Some(&format!("{config}role = \"ingest\"\n")),
        "127.0.0.1:0",
        &[],
    );
    // The flag overrides the file.
    let query = Server::start_program(
        &flagged_cblogsd(dir.path(), "query"),
        &dir.path().join("query"),
        Some(&format!("{config}role = \"all\"\n")),
        "127.0.0.1:0",
        &[],
    );
    let v = sees(&ingest, &[&ingest, &query], "both nodes, with their roles");
    assert_eq!(node(&v, &ingest.url)["role"], "ingest", "{v}");
    assert_eq!(node(&v, &query.url)["role"], "query", "{v}");
    assert_eq!(node(&v, &query.url)["report"]["role"], "query", "{v}");

    let mut file = SourceFile::of("www-data/prod/roles", 0, "web", Stream::Stdout);
    let taken = request(vec![file.batch(&["taken"])]);
    let (status, body) = query.post(&taken, false);
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("role 'query'")),
        "{body}"
    );
    ingest.post_ok(&taken);
    for path in [
        "/api/v1/tail?job=www-data/prod/roles",
        "/api/v1/search?q=taken",
        "/api/v1/jobs",
    ] {
        let resp = http_client(None)
            .get(format!("{}{path}", ingest.url))
            .send()
            .expect("GET");
        assert_eq!(resp.status().as_u16(), 403, "{path}");
        let body: Value = resp.json().expect("JSON");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("role 'ingest'")),
            "{body}"
        );
    }
    // What the others ask of a node it still answers: the query node
    // lists the job the ingest node holds, unpublished.
    assert_eq!(ingest.get_json("/api/v1/cluster/node")["sources_held"], 1);
    let jobs = query.get_json("/api/v1/jobs");
    assert_eq!(jobs["jobs"][0]["name"], "roles", "{jobs}");
    assert_eq!(jobs["jobs"][0]["lines"], 1, "{jobs}");
}

/// A script that runs this build's cblogsd with `--role ROLE` added.
fn flagged_cblogsd(dir: &Path, role: &str) -> std::path::PathBuf {
    let path = dir.join(format!("cblogsd-{role}"));
    let script = format!(
        "#!/bin/sh\nexec {:?} --role {role} \"$@\"\n",
        bin("cblogsd")
    );
    std::fs::write(&path, script).expect("script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn a_member_aurora_announced_is_read_and_keyed_by_its_shard() {
    let zk = ZooKeeper::shared();
    let (_da, a) = Server::in_temp_dir(Some(&cluster_config(zk, "aurora")));
    sees(&a, &[&a], "a alone");
    // Aurora's announcer writes the member of a job it runs: its JSON has
    // no cblogs part, and the node id is the shard (the instance).
    let port = free_port();
    let member = serde_json::json!({
        "serviceEndpoint": {"host": "127.0.0.1", "port": port},
        "additionalEndpoints": {"http": {"host": "127.0.0.1", "port": port}},
        "status": "ALIVE",
        "shard": 3
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let created = runtime.block_on(async {
        let client = zookeeper_client::Client::connect(&zk.connect())
            .await
            .expect("connect to ZooKeeper");
        let options = zookeeper_client::CreateMode::PersistentSequential
            .with_acls(zookeeper_client::Acls::anyone_all());
        let (_, sequence) = client
            .create(
                "/cblogs/test/aurora/member_",
                member.to_string().as_bytes(),
                &options,
            )
            .await
            .expect("create the member");
        format!("/cblogs/test/aurora/member_{sequence}")
    });
    let url = format!("http://127.0.0.1:{port}");
    let v = wait_until("a to read Aurora's member", DEADLINE, || {
        let v = view(&a);
        v["nodes"]
            .as_array()?
            .iter()
            .any(|n| n["url"] == url)
            .then_some(v)
    });
    let n = node(&v, &url);
    assert_eq!(n["node_id"], "shard-3", "{n}");
    assert_eq!(n["role"], "all", "{n}");
    assert!(n["instance"].get("cblogs").is_none(), "{n}");
    // Nobody listens at its port: it is listed, and named as not answering.
    assert!(n["error"].as_str().is_some_and(|e| e.contains(&url)), "{n}");
    runtime.block_on(async {
        let client = zookeeper_client::Client::connect(&zk.connect())
            .await
            .expect("connect to ZooKeeper");
        client
            .delete(&created, None)
            .await
            .expect("delete the member");
    });
    sees(&a, &[&a], "Aurora's member to leave");
}

#[test]
fn a_cluster_off_loopback_without_the_token_refuses_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("cblogsd.toml");
    // Refused before ZooKeeper is asked anything: none needs to run.
    std::fs::write(
        &config,
        "[cluster]\nzookeeper = \"127.0.0.1:1\"\nserverset_path = \"/cblogs/test/open\"\n\
         advertise = \"logs1.example:7450\"\n",
    )
    .expect("config");
    let out = std::process::Command::new(bin("cblogsd"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .output()
        .expect("run cblogsd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cluster.token_file") && stderr.contains("logs1.example:7450"),
        "{stderr}"
    );
}

/// The offsets of `job`'s lines as a node that reads only what is
/// published sees them (one started after the fact on the same store).
fn published_offsets(config: &str, job: &str) -> Vec<u64> {
    let (_dir, reader) = Server::in_temp_dir(Some(config));
    own_offsets(&reader, job)
}

/// The offsets of `job`'s lines in `server`'s own tail, which neither
/// asks the other nodes nor drops copies: a line published twice shows
/// twice.
fn own_offsets(server: &Server, job: &str) -> Vec<u64> {
    let own = server.get_json(&format!("/api/v1/cluster/tail?job={job}&n=100000"));
    own["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l["offset"].as_u64().expect("offset"))
        .collect()
}

/// Rule 2 of issue 18 (fencing): node a holds lines of a source it has
/// not published when node b takes the source over (as a shipper does
/// when a stops answering) and publishes it. a must then publish none of
/// what it held, or the first lines would be published twice; and when
/// the source comes back to a, a starts it where b's published lines end.
#[test]
fn a_node_whose_source_was_taken_over_publishes_none_of_what_it_held() {
    let config = on_the_shared_store("fence");
    let (_da, a) = Server::in_temp_dir(Some(&config));
    let (_db, b) = Server::in_temp_dir(Some(&config));
    let mut taken = SourceFile::of("www-data/prod/taken", 0, "web", Stream::Stdout);
    let mut kept = SourceFile::of("www-data/prod/kept", 0, "web", Stream::Stdout);
    let first = taken.batch(&lines_of("taken", 0..5));
    a.post_ok(&request(vec![
        first.clone(),
        kept.batch(&lines_of("kept", 0..5)),
    ]));
    assert_eq!(a.get_json("/api/v1/cluster/node")["sources_held"], 2);

    // b takes the source from its published end (nothing yet): the five
    // lines again, and five more.
    let second = taken.batch(&lines_of("taken", 5..10));
    let body = b.post_ok(&request(vec![first, second]));
    assert_eq!(body["accepted"], 10, "{body}");
    b.flush();

    // a reads the metastore every round: it drops what it held of the
    // source, and keeps the other.
    wait_until("a to drop the source b took", DEADLINE, || {
        let node = a.get_json("/api/v1/cluster/node");
        (node["sources_held"] == 1).then_some(())
    });
    let node = a.get_json("/api/v1/cluster/node");
    assert_eq!(
        node["sources"][0].as_str(),
        Some(kept.source.key().as_str()),
        "{node}"
    );
    a.flush();
    let ten: Vec<u64> = (0..10).map(offset_of).collect();
    assert_eq!(
        published_offsets(&config, "www-data/prod/taken"),
        ten,
        "each line once"
    );
    assert_eq!(published_offsets(&config, "www-data/prod/kept").len(), 5);

    // The source comes back to a: it takes it again, from b's published
    // end, which it did not hold (its own end was five lines).
    let third = taken.batch(&lines_of("taken", 10..15));
    let body = a.post_ok(&request(vec![third]));
    assert_eq!(body["accepted"], 5, "{body}");
    a.flush();
    let fifteen: Vec<u64> = (0..15).map(offset_of).collect();
    assert_eq!(published_offsets(&config, "www-data/prod/taken"), fifteen);
}

/// Lines `range` of a stream: `<tag> line 0007`, each as long as the others.
fn lines_of(tag: &str, range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|i| format!("{tag} line {i:04}")).collect()
}

/// The offset of line `i` of [`lines_of`]`("taken", ..)`.
fn offset_of(i: u64) -> u64 {
    i * ("taken line 0000".len() as u64 + 1)
}

/// The same when the node was killed: what it replays from its WAL of a
/// source taken over meanwhile is dropped at the start, not published,
/// even past what the new owner has published so far (a start replays
/// nothing below a source's published end anyway).
#[test]
fn a_node_restarted_after_its_source_was_taken_over_drops_what_it_replays() {
    let config = on_the_shared_store("replay");
    let (_da, mut a) = Server::in_temp_dir(Some(&config));
    let (_db, b) = Server::in_temp_dir(Some(&config));
    let mut taken = SourceFile::of("www-data/prod/taken", 0, "web", Stream::Stdout);
    let first = taken.batch(&lines_of("taken", 0..10));
    let rest = taken.batch(&lines_of("taken", 10..15));
    a.post_ok(&request(vec![first.clone(), rest.clone()]));
    a.kill9();
    // b takes the source and has published ten lines when a comes back
    // with fifteen in its WAL.
    b.post_ok(&request(vec![first]));
    b.flush();
    a.restart();
    assert_eq!(a.get_json("/api/v1/cluster/node")["sources_held"], 0);
    a.flush();
    // The shipper goes on sending to b.
    b.post_ok(&request(vec![rest]));
    b.flush();
    let fifteen: Vec<u64> = (0..15).map(offset_of).collect();
    assert_eq!(
        published_offsets(&config, "www-data/prod/taken"),
        fifteen,
        "each line once"
    );
}

/// The published half of a fan-out read: a node shows what another node
/// published within a round or two of the metastore, without a restart,
/// each line once (its tail asks the other node too, and drops the
/// copies).
#[test]
fn a_node_shows_what_another_node_published() {
    let config = on_the_shared_store("follow");
    let (_da, a) = Server::in_temp_dir(Some(&config));
    let (_db, b) = Server::in_temp_dir(Some(&config));
    let job = "www-data/prod/followed";
    let mut file = SourceFile::of(job, 0, "web", Stream::Stdout);
    for (round, lines) in [(1, 0..10), (2, 10..15)] {
        a.post_ok(&request(
            vec![file.batch(&lines_of("taken", lines.clone()))],
        ));
        a.flush();
        let want: Vec<u64> = (0..lines.end).map(offset_of).collect();
        // b itself (its own tail, not asking a), with no copy dropped.
        let shown = wait_until(&format!("b to show a's split {round}"), DEADLINE, || {
            Some(own_offsets(&b, job)).filter(|o| o.len() >= want.len())
        });
        assert_eq!(shown, want, "each line once, in order");
    }
    let jobs = b.get_json("/api/v1/jobs");
    let listed = jobs["jobs"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|j| j["key"].as_str().is_some_and(|k| k.ends_with(job)))
        })
        .unwrap_or_else(|| panic!("{job} in {jobs}"));
    assert_eq!(listed["lines"], 15, "b counts a's lines: {listed}");
}

/// The CLI takes several servers (`--server a,b,c`, a cluster's nodes)
/// and asks the next one when one cannot be reached: any node answers
/// for every published line.
#[test]
fn the_cli_asks_the_next_node_when_one_cannot_be_reached() {
    let config = on_the_shared_store("cli");
    let (_da, mut a) = Server::in_temp_dir(Some(&config));
    let (_db, mut b) = Server::in_temp_dir(Some(&config));
    let job = "www-data/prod/asked";
    let mut file = SourceFile::of(job, 0, "web", Stream::Stdout);
    a.post_ok(&request(vec![file.batch(&lines_of("taken", 0..10))]));
    a.flush();
    let ten: Vec<u64> = (0..10).map(offset_of).collect();
    // b shows them itself (not only by asking a), so it can answer for
    // them once a is gone.
    wait_until("b to show a's lines itself", DEADLINE, || {
        (own_offsets(&b, job) == ten).then_some(())
    });
    let tail = ["tail", job, "-n", "100", "--output", "json"];
    let offsets = |out: &CliOutput| -> Vec<u64> {
        out.stdout
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).expect("a line as JSON")["offset"]
                    .as_u64()
                    .expect("offset")
            })
            .collect()
    };
    let dead = format!("http://127.0.0.1:{}", free_port());
    let out = cli(&format!("{dead},{},{}", a.url, b.url), &tail);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(offsets(&out), ten);
    // Or the cluster's serverset, as the nodes announce themselves.
    let zk = ZooKeeper::shared();
    let serverset = format!("zk://{}/cblogs/test/cli", zk.connect());
    let out = cli(&serverset, &tail);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(offsets(&out), ten);
    let out = cli(&format!("zk://{}/cblogs/test/nobody", zk.connect()), &tail);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("/cblogs/test/nobody"), "{}", out.stderr);

    a.kill9();
    let out = cli(&format!("{},{}", a.url, b.url), &tail);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(offsets(&out), ten, "b answered for a's published lines");

    b.kill9();
    let out = cli(&format!("{dead},{},{}", a.url, b.url), &tail);
    assert_ne!(out.code, 0);
    for server in [&dead, &a.url, &b.url] {
        assert!(
            out.stderr
                .contains(&format!("{server}: connection refused")),
            "{}",
            out.stderr
        );
    }
}

/// The shipper's routing (issue 18, part 2): given the cluster's
/// serverset, it spreads the agent's sources over the nodes by
/// rendezvous hashing. When a node is killed (its disk kept, but what it
/// had not published is out of reach), its sources move to the other
/// node: what it had published stays readable there, what it had only
/// acknowledged is sent again, and new lines follow, each line once. When
/// it comes back and has answered a while, its sources move back, each
/// once the other node has published it: nothing is sent twice then.
#[test]
fn the_shipper_spreads_sources_over_the_nodes_and_moves_a_dead_nodes_share() {
    let job = "www-data/prod/spread";
    // Splits are published on a flush only: what a node acknowledged
    // since is on its disk alone.
    let config = format!(
        "[storage]\ncommit_interval_ms = 100\nsplit_max_age_secs = 3600\n{}",
        on_the_shared_store("spread")
    );
    let (_da, mut a) = Server::in_temp_dir(Some(&config));
    let (_db, b) = Server::in_temp_dir(Some(&config));
    sees(&a, &[&a, &b], "a to see both nodes");
    let mut agent = SpreadAgent::new("spread");
    agent.write("published", true);
    let serverset = format!("zk://{}/cblogs/test/spread", ZooKeeper::shared().connect());
    let mut shipper = agent.shipper(&serverset);
    agent.wait_acked(&shipper, "every line acknowledged");
    let streams = |status: &Value, url: &str| shipper_node(status, url, "streams");
    let (on_a, _) = shared_by(&shipper, &a, &b);

    // Acknowledged by a, not published; then a dies.
    agent.write("unpublished", true);
    agent.wait_acked(&shipper, "the second lines acknowledged");
    assert_eq!(
        a.get_json("/api/v1/cluster/node")["sources_held"].as_u64(),
        Some(on_a),
        "a holds the streams the shipper sends it, unpublished"
    );
    a.kill9();
    // stderr is quiet now: no new line brings its node's 409, its lines
    // a had not published are sent again when it moves.
    agent.write("after-kill", false);
    assert_job_exactly_once(&b, &mut shipper, &agent.runs(), job, "b, after a died");
    let log = shipper.log_text();
    assert!(
        log.contains(&format!("moving from {}", a.url)) && log.contains("sending the rest again"),
        "{}",
        log_tail(&log, 30)
    );
    let resent = log.matches("only up to offset").count();

    // a comes back. Once it has answered a while, its share is to move
    // back, each stream once b has published what it acknowledged: until
    // then they wait (their new lines too), and none moves.
    a.restart();
    agent.write("during-restart", true);
    let waiting = |status: &Value, url: &str| shipper_node(status, url, "streams_waiting");
    wait_until("a's share to wait for b's publish", DEADLINE, || {
        let status = shipper_status(&shipper);
        (waiting(&status, &b.url) == on_a).then_some(status)
    });
    let status = shipper_status(&shipper);
    assert_eq!(
        streams(&status, &a.url),
        0,
        "none moved before b published: {status}"
    );
    b.flush();
    wait_until("a to take its share back", DEADLINE, || {
        let status = shipper_status(&shipper);
        (streams(&status, &a.url) == on_a).then_some(())
    });
    agent.write("back", true);
    agent.wait_acked(&shipper, "the last lines acknowledged");
    a.flush();
    b.flush();
    assert_job_exactly_once(
        &a,
        &mut shipper,
        &agent.runs(),
        job,
        "a, after it came back",
    );
    let log = shipper.log_text();
    assert_eq!(
        log.matches("only up to offset").count(),
        resent,
        "a planned move sends nothing again: {}",
        log_tail(&log, 30)
    );
    assert!(log.contains(&format!("moving from {} to {}", b.url, a.url)));
}

/// Waits until `shipper` sends to both nodes, each its share of the 16
/// streams, and returns the shares. At a start both nodes usually answer
/// at once and take their shares at once; on a loaded machine the first
/// to answer may take every stream, and the other's share then moves
/// once the first has published it (each poll flushes both).
fn shared_by(shipper: &Shipper, a: &Server, b: &Server) -> (u64, u64) {
    wait_until(
        "both nodes to take a share of the 16 streams",
        DEADLINE,
        || {
            let status = shipper_status(shipper);
            let share = |s: &Server| shipper_node(&status, &s.url, "streams");
            let waiting = |s: &Server| shipper_node(&status, &s.url, "streams_waiting");
            let shared = share(a) > 0 && share(b) > 0 && share(a) + share(b) == 16;
            if shared && waiting(a) + waiting(b) == 0 {
                return Some((share(a), share(b)));
            }
            a.flush();
            b.flush();
            None
        },
    )
}

/// Two nodes of a serverset that publish on a flush only (a dead one stays
/// a member for 10 s, its session: long enough to be asked and named),
/// and lines of `www-data/prod/<name>`, instance 0 on a and 1 on b,
/// interleaved in time: 4 rounds of 5, a's, b's, a's, b's, line `i`
/// written by `line(node's tag, i)`. Returns the lines in time order.
fn two_nodes_interleaved(
    name: &str,
    line: impl Fn(&str, u64) -> String,
) -> (
    tempfile::TempDir,
    Server,
    tempfile::TempDir,
    Server,
    Vec<String>,
) {
    let config = format!(
        "[storage]\nsplit_max_age_secs = 3600\n{}",
        on_the_shared_store(name)
            .replace("session_timeout_ms = 2000", "session_timeout_ms = 10000")
    );
    let (da, a) = Server::in_temp_dir(Some(&config));
    let (db, b) = Server::in_temp_dir(Some(&config));
    sees(&a, &[&a, &b], "a to see both nodes");
    sees(&b, &[&a, &b], "b to see both nodes");
    let job = format!("www-data/prod/{name}");
    let mut on_a = SourceFile::of(&job, 0, "web", Stream::Stdout);
    let mut on_b = SourceFile::of(&job, 1, "web", Stream::Stdout);
    let mut written = Vec::new();
    for round in 0..4u64 {
        let (node, file, tag) = match round % 2 {
            0 => (&a, &mut on_a, "a"),
            _ => (&b, &mut on_b, "b"),
        };
        let lines: Vec<String> = (round * 5..round * 5 + 5).map(|i| line(tag, i)).collect();
        node.post_ok(&request(vec![file.batch(&lines)]));
        written.extend(lines);
    }
    (da, a, db, b, written)
}

/// `GET /loki/api/v1/<path>?query=…&more…` of `node`.
fn loki(node: &Server, path: &str, query: &str, more: &[(&str, &str)]) -> Value {
    let mut params = vec![("query", query)];
    params.extend_from_slice(more);
    let url = reqwest::Url::parse_with_params("http://x/", &params).expect("URL");
    node.get_json(&format!(
        "/loki/api/v1/{path}?{}",
        url.query().unwrap_or("")
    ))
}

/// The unpublished half of a fan-out read (issue 18): a tail asked of any
/// node shows the lines every node holds, published or not, each once in
/// time order (a line published by one node and shown by both is one
/// line). A node that does not answer is named: the answer is partial,
/// not silently short.
#[test]
fn a_tail_asked_of_any_node_shows_what_every_node_holds() {
    let job = "www-data/prod/fanout";
    let (_da, a, _db, mut b, want) =
        two_nodes_interleaved("fanout", |tag, i| format!("{tag} line {i:04}"));
    let texts = |out: &CliOutput| -> Vec<String> {
        out.stdout
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).expect("a line as JSON")["text"]
                    .as_str()
                    .expect("text")
                    .to_owned()
            })
            .collect()
    };
    let tail = ["tail", job, "-n", "100", "--output", "json"];
    for node in [&a, &b] {
        let out = node.cli(&tail);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(
            texts(&out),
            want,
            "{} shows both nodes' lines in time order",
            node.url
        );
    }
    // The newest n across the nodes.
    let out = a.cli(&["tail", job, "-n", "7", "--output", "json"]);
    assert_eq!(texts(&out), want[13..].to_vec());

    // a publishes: b shows a's lines itself now, and a still holds them.
    a.flush();
    wait_until("b to show a's published lines itself", DEADLINE, || {
        let own: Value = b.get_json(&format!("/api/v1/cluster/tail?job={job}&n=100"));
        (own["lines"].as_array()?.len() == 20).then_some(())
    });
    let out = b.cli(&tail);
    assert_eq!(texts(&out), want, "each line once");

    b.kill9();
    let out = a.cli(&tail);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let b_id = node_id(&sees(&a, &[&a, &b], "a to list b still"), &b);
    says_partial(&out, &b_id);
    let published: Vec<String> = want
        .iter()
        .filter(|t| t.starts_with('a'))
        .cloned()
        .collect();
    assert_eq!(
        texts(&out),
        published,
        "what a holds, b's unpublished lines missing"
    );
}

/// The unpublished half of a fan-out search (issue 18): `cblogs grep`
/// asked of any node finds the matching lines every node holds,
/// published or not, each once, in time order; counts and listings add
/// up across the nodes, a page's limit is the merged lines', a job only
/// another node holds yet is found, and a node that does not answer is
/// named: the answer is partial, not silently short.
#[test]
fn a_search_asked_of_any_node_finds_what_every_node_holds() {
    let job = "www-data/prod/fangrep";
    let (_da, a, _db, mut b, written) = two_nodes_interleaved("fangrep", |tag, i| match i % 2 {
        0 => format!("{tag} ERROR {i:04}"),
        _ => format!("{tag} fine {i:04}"),
    });
    let want: Vec<String> = written
        .into_iter()
        .filter(|l| l.contains("ERROR"))
        .collect();
    let only_b = "www-data/prod/fangrep-b";
    let mut b_alone = SourceFile::of(only_b, 0, "web", Stream::Stdout);
    b.post_ok(&request(vec![b_alone.batch(&["b alone ERROR".to_owned()])]));
    let rows = |out: &CliOutput, field: &str| -> Vec<Value> {
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("a JSON row")[field].clone())
            .collect()
    };
    let grep_json = ["grep", "ERROR", job, "--output", "json"];
    let check = |node: &Server, when: &str| {
        let texts = rows(&node.cli(&grep_json), "text");
        assert_eq!(
            texts, want,
            "{} {when}: every match once, in time order",
            node.url
        );
        let out = node.cli(&["grep", "-c", "ERROR", job, "--output", "json"]);
        let counts: Vec<Value> = rows(&out, "count");
        assert_eq!(
            (rows(&out, "instance"), counts),
            (vec![0.into(), 1.into()], vec![6.into(), 4.into()]),
            "{} {when}: counted once on each node",
            node.url
        );
        let out = node.cli(&["grep", "-l", "ERROR", job, "--output", "json"]);
        assert_eq!(rows(&out, "instance"), [Value::from(0), Value::from(1)]);
        let out = node.cli(&["jobs", job, "--output", "json"]);
        let instances = rows(&out, "instances");
        let lines: Vec<(u64, u64)> = instances[0]
            .as_array()
            .expect("instances")
            .iter()
            .map(|i| {
                (
                    i["instance"].as_u64().unwrap_or(9),
                    i["lines"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            lines,
            [(0, 10), (1, 10)],
            "{} {when}: each line counted once",
            node.url
        );
        let histogram = node.get_json(&format!("/api/v1/histogram?job={job}&pattern=ERROR"));
        assert_eq!(histogram["total"], 10, "{} {when}: {histogram}", node.url);
        // Grafana's Loki API (issue 19) on the same fan-out: the newest 4,
        // and the matches per instance.
        let logs = loki(
            node,
            "query_range",
            r#"{job="fangrep"} |= "ERROR""#,
            &[("limit", "4")],
        );
        let mut lines: Vec<(String, String)> = Vec::new();
        for s in logs["data"]["result"].as_array().expect("streams") {
            for v in s["values"].as_array().expect("values") {
                lines.push((
                    v[0].as_str().unwrap_or("").to_owned(),
                    v[1].as_str().unwrap_or("").to_owned(),
                ));
            }
        }
        lines.sort();
        let texts: Vec<String> = lines.into_iter().map(|(_, t)| t).collect();
        assert_eq!(texts, want[6..].to_vec(), "{} {when}: {logs}", node.url);
        let counts = loki(
            node,
            "query",
            r#"sum by (instance) (count_over_time({job="fangrep"} |= "ERROR" [1h]))"#,
            &[],
        );
        let per_instance: Vec<(Value, Value)> = counts["data"]["result"]
            .as_array()
            .expect("a vector")
            .iter()
            .map(|r| (r["metric"].clone(), r["value"][1].clone()))
            .collect();
        assert_eq!(
            per_instance,
            [
                (serde_json::json!({"instance": "0"}), Value::from("6")),
                (serde_json::json!({"instance": "1"}), Value::from("4")),
            ],
            "{} {when}: {counts}",
            node.url
        );
        let out = node.cli(&["grep", "ERROR", job, "--output", "json", "--limit", "3"]);
        assert_eq!(
            rows(&out, "text"),
            want[..3].to_vec(),
            "{when}: the first 3"
        );
        assert!(out.stderr.contains("--limit 3"), "{}", out.stderr);
    };
    for node in [&a, &b] {
        check(node, "before any publish");
    }
    // The lines around one of b's, asked of a: only b holds them yet.
    let found = a.cli(&grep_json);
    let hit: Value = found
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .find(|l| l["text"] == "b ERROR 0006")
        .expect("b's line found from a");
    let around: Value = a.get_json(&format!(
        "/api/v1/context?source={}&offset={}&before=1&after=1",
        hit["source"].as_str().expect("source"),
        hit["offset"]
    ));
    let texts: Vec<&str> = around["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert_eq!(texts, ["b fine 0005", "b ERROR 0006", "b fine 0007"]);
    let out = a.cli(&["grep", "ERROR", only_b, "--output", "json"]);
    assert_eq!(rows(&out, "text"), [Value::from("b alone ERROR")]);

    // a publishes: b reads those lines itself now, and a answers for them
    // no more; still each once.
    a.flush();
    wait_until("b to show a's published lines itself", DEADLINE, || {
        let own: Value = b.get_json(&format!("/api/v1/cluster/tail?job={job}&n=100"));
        (own["lines"].as_array()?.len() == 20).then_some(())
    });
    for node in [&a, &b] {
        check(node, "after a published");
    }

    b.kill9();
    let out = a.cli(&grep_json);
    let b_id = node_id(&sees(&a, &[&a, &b], "a to list b still"), &b);
    says_partial(&out, &b_id);
    let published: Vec<String> = want
        .iter()
        .filter(|t| t.starts_with('a'))
        .cloned()
        .collect();
    assert_eq!(
        rows(&out, "text"),
        published,
        "what a holds, b's unpublished lines missing"
    );
}

/// A follow asked of any node of a cluster (issue 18's fan-out reads):
/// it shows, live, the lines every node takes, and follows a source when
/// it moves. A node is killed while lines are followed: its streams move
/// to the other node, which is sent again what the dead one had not
/// published; the follow shows every line of every stream once, in
/// order, and names the dead node.
#[test]
fn a_follow_asked_of_any_node_shows_every_nodes_lines_and_follows_a_source_that_moves() {
    let job = "www-data/prod/fanfollow";
    let config = format!(
        "[storage]\ncommit_interval_ms = 100\nsplit_max_age_secs = 3600\n{}",
        on_the_shared_store("fanfollow")
    );
    let (_da, a) = Server::in_temp_dir(Some(&config));
    let (_db, mut b) = Server::in_temp_dir(Some(&config));
    let view = sees(&a, &[&a, &b], "a to see both nodes");
    sees(&b, &[&a, &b], "b to see both nodes");
    let b_id = node_id(&view, &b);
    let mut agent = SpreadAgent::new("fanfollow");
    agent.write("first", true);
    let serverset = format!(
        "zk://{}/cblogs/test/fanfollow",
        ZooKeeper::shared().connect()
    );
    let shipper = agent.shipper(&serverset);
    agent.wait_acked(&shipper, "the first lines acknowledged");
    shared_by(&shipper, &a, &b);

    // What the server sends (the CLI drops repeats itself), and the CLI.
    let follow = raw_follow(&a, &format!("job={job}&n=1000"));
    let mut cli = Follower::start(&a.url, &["tail", job, "-f", "-n", "0"]);
    let mut seen: Vec<Value> = Vec::new();
    let mut partial = Vec::new();
    let mut until = |n: usize, seen: &mut Vec<Value>| {
        while seen.len() < n {
            let (event, data) = follow
                .recv_timeout(DEADLINE)
                .unwrap_or_else(|e| panic!("{} of {n} lines followed: {e}", seen.len()));
            match event.as_str() {
                "line" => seen.push(data),
                _ => partial.push(data),
            }
        }
    };
    agent.write("second", true);
    agent.wait_acked(&shipper, "the second lines acknowledged");
    // Both nodes' lines, live.
    let round = agent.runs.len() * 25;
    until(2 * round, &mut seen);
    // b dies holding the second lines unpublished: its streams move to a,
    // which is sent them again.
    b.kill9();
    agent.write("third", true);
    agent.wait_acked(&shipper, "the third lines acknowledged, by a");
    until(3 * round, &mut seen);
    let mut shown: std::collections::BTreeMap<(u64, String), Vec<String>> = Default::default();
    for v in &seen {
        let key = (
            v["instance"].as_u64().expect("instance"),
            v["stream"].as_str().expect("stream").to_owned(),
        );
        shown
            .entry(key)
            .or_default()
            .push(v["text"].as_str().expect("text").to_owned());
    }
    for (i, run) in agent.runs.iter().enumerate() {
        for (stream, name) in [(Stream::Stdout, "stdout"), (Stream::Stderr, "stderr")] {
            let written: Vec<String> = std::fs::read_to_string(run.path(stream))
                .expect("a sandbox file")
                .lines()
                .map(str::to_owned)
                .collect();
            assert_eq!(
                shown.get(&(i as u64, name.to_owned())),
                Some(&written),
                "instance {i} {name}: each line once, in order"
            );
        }
    }
    assert!(
        partial.iter().any(|p| p["node_id"] == b_id.as_str()),
        "b named: {partial:?}"
    );
    let said = cli.expect_stderr("partial", DEADLINE);
    assert!(said.contains(&b_id), "{said}");
}

/// The events of `GET /api/v1/follow?<query>` on `server`, as they come
/// (name, data): what the server sends, before `cblogs tail -f` drops a
/// line it printed already.
fn raw_follow(server: &Server, query: &str) -> std::sync::mpsc::Receiver<(String, Value)> {
    let url = format!("{}/api/v1/follow?{query}", server.url);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut resp = http_client(None).get(&url).send().expect("GET follow");
        assert_eq!(resp.status().as_u16(), 200, "GET {url}");
        let mut parser = cblogs_core::sse::SseParser::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match std::io::Read::read(&mut resp, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            for ev in parser.feed(&buf[..n]) {
                let Ok(data) = serde_json::from_str(&ev.data) else {
                    continue;
                };
                if tx.send((ev.event, data)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Rule 5 of issue 18: a node gone from the serverset (killed, its
/// session expired) still counts toward `partial` while the metastore
/// names it the owner of a source: what it took and did not publish is
/// nowhere else. Once the source moves to another node, it no longer
/// does.
#[test]
fn a_node_gone_from_the_serverset_is_named_while_it_owns_a_source() {
    let config = format!(
        "[storage]\nsplit_max_age_secs = 3600\n{}",
        on_the_shared_store("departed")
    );
    let (_da, a) = Server::in_temp_dir(Some(&config));
    let (_db, mut b) = Server::in_temp_dir(Some(&config));
    let view = sees(&a, &[&a, &b], "a to see both nodes");
    let b_id = node_id(&view, &b);
    let job = "www-data/prod/departed";
    let lines = lines_of("held", 0..5);
    b.post_ok(&request(vec![SourceFile::of(
        job,
        0,
        "web",
        Stream::Stdout,
    )
    .batch(&lines)]));
    b.kill9();
    sees(&a, &[&a], "b to leave the serverset");
    let out = a.cli(&["tail", job]);
    // b, gone but owning the source, is named.
    says_partial(&out, &b_id);
    // The source moves to a (its lines sent again): b owns nothing now.
    a.post_ok(&request(vec![SourceFile::of(
        job,
        0,
        "web",
        Stream::Stdout,
    )
    .batch(&lines)]));
    let out = a.cli(&["tail", job, "--output", "raw"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("partial"), "{}", out.stderr);
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), lines);
}

/// A node frozen (SIGSTOP) for less than its ZooKeeper session and its
/// shipper's request timeout (issue 18 asks for both sides of the
/// session): it stays a member, no stream moves, and when it wakes the
/// lines written meanwhile flow on; every line exactly once, from either
/// node.
#[test]
fn a_node_frozen_shorter_than_its_session_keeps_its_streams() {
    let job = "www-data/prod/paused";
    let config = format!(
        "[storage]\ncommit_interval_ms = 100\nsplit_max_age_secs = 3600\n{}",
        on_the_shared_store("paused")
            .replace("session_timeout_ms = 2000", "session_timeout_ms = 6000")
    );
    let (_da, a) = Server::in_temp_dir(Some(&config));
    let (_db, mut b) = Server::in_temp_dir(Some(&config));
    sees(&a, &[&a, &b], "a to see both nodes");
    let mut agent = SpreadAgent::new("paused");
    let serverset = format!("zk://{}/cblogs/test/paused", ZooKeeper::shared().connect());
    // Requests time out after 5 s: a request sent at the freeze must be
    // answered within 4 s of the wake, even on a loaded machine.
    let shipper = agent.shipper_timing_out_after(&serverset, 5000);
    agent.write("before", true);
    agent.wait_acked(&shipper, "the first lines acknowledged");
    let (on_a, on_b) = shared_by(&shipper, &a, &b);
    let member = node(&view(&a), &b.url)["member"].clone();
    let moved = shipper_status(&shipper)["streams_moved"].as_u64();

    // Frozen for 1 s, under both its 6 s session and the shipper's 5 s
    // request timeout (the freeze is what is tested, not a wait for it),
    // lines written meanwhile.
    b.sigstop();
    agent.write("paused", true);
    std::thread::sleep(std::time::Duration::from_secs(1));
    b.sigcont();
    agent.wait_acked(&shipper, "the lines written during the pause acknowledged");
    let status = shipper_status(&shipper);
    assert_eq!(
        (
            shipper_node(&status, &a.url, "streams"),
            shipper_node(&status, &b.url, "streams"),
            status["streams_moved"].as_u64()
        ),
        (on_a, on_b, moved),
        "no stream moved: {status}"
    );
    assert_eq!(
        node(&view(&a), &b.url)["member"],
        member,
        "b kept its session and its member"
    );
    agent.write("after", true);
    agent.wait_acked(&shipper, "the last lines acknowledged");
    for node in [&a, &b] {
        shown_exactly_once(node, &agent.runs(), job, &format!("from {}", node.url));
    }
}

/// A node frozen for 20 s (SIGSTOP: its connections accepted, never
/// answered), longer than its ZooKeeper session, lines written
/// throughout (issue 18's test). While it is still a member, a tail
/// asked of the other node names it as not answering. The shipper's
/// requests to it time out and its streams move to the other node, which
/// takes every line. When it wakes (SIGCONT), it finds its sources taken
/// (it publishes none of what it held), comes back, and takes its share
/// again: every line exactly once, from either node.
#[test]
fn a_node_frozen_longer_than_its_session_loses_its_streams_and_nothing_else() {
    let job = "www-data/prod/frozen";
    // [cluster] comes last: a node not answering is given up on in 1 s.
    let config = format!(
        "[storage]\ncommit_interval_ms = 100\nsplit_max_age_secs = 3600\n{}peer_timeout_ms = 1000\n",
        on_the_shared_store("frozen")
    );
    let (_da, a) = Server::in_temp_dir(Some(&config));
    let (_db, mut b) = Server::in_temp_dir(Some(&config));
    sees(&a, &[&a, &b], "a to see both nodes");
    let mut agent = SpreadAgent::new("frozen");
    let serverset = format!("zk://{}/cblogs/test/frozen", ZooKeeper::shared().connect());
    let shipper = agent.shipper(&serverset);
    agent.write("before", true);
    agent.wait_acked(&shipper, "the first lines acknowledged");
    let (_, on_b) = shared_by(&shipper, &a, &b);
    agent.write("unpublished", true);
    agent.wait_acked(&shipper, "the second lines acknowledged");
    let b_id = node_id(&view(&a), &b);

    b.sigstop();
    let frozen = std::time::Instant::now();
    // Still a member (its session lasts 2 s): named as not answering.
    let out = a.cli(&["tail", job, "-n", "10"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    says_partial(&out, &b_id);
    agent.keep_writing(
        &shipper,
        "frozen",
        frozen,
        std::time::Duration::from_secs(20),
    );
    let status = shipper_status(&shipper);
    assert_eq!(
        shipper_node(&status, &a.url, "streams"),
        16,
        "a takes every stream: {status}"
    );
    shown_exactly_once(&a, &agent.runs(), job, "a, while b is frozen");

    b.sigcont();
    sees(&a, &[&a, &b], "b to come back");
    wait_until("b to take its share again", DEADLINE, || {
        // Each of its streams moves back once a has published it.
        a.flush();
        let status = shipper_status(&shipper);
        (shipper_node(&status, &b.url, "streams") == on_b).then_some(())
    });
    agent.write("after", true);
    agent.wait_acked(&shipper, "the last lines acknowledged");
    for node in [&a, &b] {
        shown_exactly_once(node, &agent.runs(), job, &format!("from {}", node.url));
    }
}

/// The alert rules of the failover test: `burst` fires at 11 lines with
/// `BURST` in 10 minutes, each notification appended to `notified` as a
/// line of JSON by a command notifier.
fn burst_rules(notified: &Path) -> String {
    format!(
        r#"
[[notifier]]
name = "log"
kind = "command"
command = ["sh", "-c", "cat >> '{0}' && echo >> '{0}'"]
[[rule]]
name = "burst"
jobs = ["www-data/prod/burst"]
pattern = 'BURST'
threshold = 11
window = "10m"
repeat = "1h"
notify = ["log"]
"#,
        notified.display()
    )
}

/// The notifications of status `status` the command wrote so far.
fn notifications(notified: &Path, status: &str) -> Vec<Value> {
    std::fs::read_to_string(notified)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).expect("a notification's JSON"))
        .filter(|n| n["status"] == status)
        .collect()
}

/// The group of rule `burst` in `server`'s `GET /api/v1/alerts` (every
/// node's groups), if listed.
fn burst_group(server: &Server) -> Option<Value> {
    let alerts = server.get_json("/api/v1/alerts");
    alerts["rules"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == "burst")?["groups"]
        .as_array()?
        .first()
        .cloned()
}

/// Rule 7: an alert group's window is on one node, fed by every node. A
/// burst whose source fails over in the middle fires exactly once, each
/// of its lines counted once: the matches the dead node made reached the
/// group's node before it died, and the lines it had not published are
/// sent again to the other node and matched again there, uncounted. The
/// group's state and the silences are in the object store: a node that
/// takes the group over from a dead one goes on firing without a second
/// notification, and a silence made on one node holds on the other.
#[test]
fn an_alert_fires_once_for_a_burst_whose_source_fails_over() {
    let job = "www-data/prod/burst";
    let files = tempfile::tempdir().expect("tempdir");
    let notified = files.path().join("notified.jsonl");
    let rules = files.path().join("rules.toml");
    std::fs::write(&rules, burst_rules(&notified)).expect("write the rules");
    let config = format!(
        "[alerts]\nrules_file = \"{}\"\n[storage]\ncommit_interval_ms = 100\nsplit_max_age_secs = 3600\n{}",
        rules.display(),
        on_the_shared_store("burst")
    );
    let (_da, mut a) = Server::in_temp_dir(Some(&config));
    let (_db, mut b) = Server::in_temp_dir(Some(&config));
    let v = sees(&a, &[&a, &b], "a to see both nodes");
    let ids = [node_id(&v, &a), node_id(&v, &b)];
    let mut agent = SpreadAgent::new("burst");
    agent.write("start", true);
    let serverset = format!("zk://{}/cblogs/test/burst", ZooKeeper::shared().connect());
    let mut shipper = agent.shipper(&serverset);
    agent.wait_acked(&shipper, "the first lines acknowledged");
    shared_by(&shipper, &a, &b);

    // A first match tells which node the group's window is on.
    agent.runs[0].append_lines(Stream::Stderr, &["BURST probe"]);
    let group = wait_until("the probe counted on the group's node", DEADLINE, || {
        burst_group(&a).filter(|g| g["count"] == 1)
    });
    let owner_id = group["node"].as_str().expect("the group's node").to_owned();
    assert!(ids.contains(&owner_id), "{group}");
    let (owner, holder) = if owner_id == ids[0] {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    // The burst goes to a stream of the other node.
    let held = holder.get_json("/api/v1/cluster/node")["sources"].clone();
    let run = agent
        .runs
        .iter()
        .position(|r| {
            held.as_array().is_some_and(|keys| {
                keys.iter().any(|k| {
                    k.as_str()
                        .is_some_and(|k| k.contains(&r.task_id) && k.ends_with("/stderr"))
                })
            })
        })
        .unwrap_or_else(|| panic!("a stderr held by {}: {held}", holder.url));
    let burst = |from: usize, to: usize| -> Vec<String> {
        (from..=to).map(|i| format!("ERROR BURST {i:02}")).collect()
    };
    // 4 lines published by the holder, 4 acknowledged and not published;
    // their matches reach the group's node; then the holder dies.
    agent.runs[run].append_lines(Stream::Stderr, &burst(1, 4));
    agent.wait_acked(&shipper, "the burst's first lines acknowledged");
    holder.flush();
    agent.runs[run].append_lines(Stream::Stderr, &burst(5, 8));
    agent.wait_acked(&shipper, "the burst's next lines acknowledged");
    wait_until(
        "the holder's matches counted on the group's node",
        DEADLINE,
        || burst_group(owner).filter(|g| g["count"] == 9),
    );
    holder.kill9();
    // The stream moves to the group's node, lines 5 to 8 sent again.
    agent.runs[run].append_lines(Stream::Stderr, &burst(9, 10));
    wait_until("the burst to fire", DEADLINE, || {
        (!notifications(&notified, "firing").is_empty()).then_some(())
    });
    shown_exactly_once(
        owner,
        &agent.runs(),
        job,
        "the group's node, after the failover",
    );
    let group = burst_group(owner).expect("the group");
    assert_eq!(
        (group["state"].as_str(), group["count"].as_u64()),
        (Some("firing"), Some(11)),
        "the probe and the 10 lines of the burst, each once: {group}"
    );
    let firing = notifications(&notified, "firing");
    assert_eq!(firing.len(), 1, "{firing:?}");
    assert_eq!(firing[0]["count"], 11, "{}", firing[0]);
    assert!(shipper.log_text().contains("sending the rest again"));

    // The holder comes back; a silence made on it holds on the other.
    holder.restart();
    sees(owner, &[&*owner, &*holder], "both nodes again");
    let silenced = http_client(None)
        .post(format!("{}/api/v1/alerts/silences", holder.url))
        .json(&serde_json::json!({"rule": "burst", "group": "other/job", "for_secs": 600}))
        .send()
        .expect("POST a silence");
    assert_eq!(silenced.status().as_u16(), 200);
    wait_until("the silence seen by the group's node", DEADLINE, || {
        let own = owner.get_json("/api/v1/cluster/alerts");
        (own["silences"][0]["group"] == "other/job").then_some(())
    });
    // The group's node dies: the other takes the group over, firing, and
    // notifies nothing again.
    owner.kill9();
    let holder_id = if owner_id == ids[0] { &ids[1] } else { &ids[0] };
    wait_until("the group taken over, still firing", DEADLINE, || {
        burst_group(holder).filter(|g| g["state"] == "firing" && g["node"] == holder_id.as_str())
    });
    assert_eq!(notifications(&notified, "firing").len(), 1);
    assert!(notifications(&notified, "resolved").is_empty());
    shipper.kill9();
}

/// Alerts with a static list of nodes (no ZooKeeper): each node learns
/// the others' ids by asking them, and finds itself among them, so a
/// group's window is on one node; matches made on both count there once,
/// and the group is listed once from either node.
#[test]
fn with_a_static_list_an_alert_group_is_counted_on_one_node() {
    let files = tempfile::tempdir().expect("tempdir");
    let notified = files.path().join("notified.jsonl");
    let rules = files.path().join("rules.toml");
    let text = burst_rules(&notified)
        .replace("threshold = 11", "threshold = 4")
        .replace("www-data/prod/burst", "www-data/prod/listed");
    std::fs::write(&rules, text).expect("write the rules");
    let ports = [free_port(), free_port()];
    let config = format!(
        "[alerts]\nrules_file = \"{}\"\n{}[cluster]\nnodes = [\"http://127.0.0.1:{}\", \"http://127.0.0.1:{}\"]\n",
        rules.display(),
        Seaweed::shared().config("listed"),
        ports[0],
        ports[1]
    );
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let start = |i: usize| {
        Server::start_with(
            &dirs[i].path().join("data"),
            Some(&config),
            &format!("127.0.0.1:{}", ports[i]),
            &[],
        )
    };
    let (a, b) = (start(0), start(1));
    let mut files = [
        SourceFile::of("www-data/prod/listed", 0, "web", Stream::Stderr),
        SourceFile::of("www-data/prod/listed", 1, "web", Stream::Stderr),
    ];
    for (node, file) in [&a, &b].into_iter().zip(&mut files) {
        node.post_ok(&request(vec![file.batch(&[
            "ERROR BURST one",
            "INFO x",
            "ERROR BURST two",
        ])]));
    }
    wait_until("the burst to fire", DEADLINE, || {
        (!notifications(&notified, "firing").is_empty()).then_some(())
    });
    for node in [&a, &b] {
        let alerts = node.get_json("/api/v1/alerts");
        let groups = alerts["rules"][0]["groups"].clone();
        assert_eq!(
            groups.as_array().map(Vec::len),
            Some(1),
            "listed once: {alerts}"
        );
        assert_eq!(groups[0]["count"], 4, "{alerts}");
    }
    assert_eq!(notifications(&notified, "firing").len(), 1);
}

/// Rule 3: a query pins one metastore version. A search asked of a pins
/// the version it has followed and asks b for its part after it; b
/// publishes what it held in between (its request held in a proxy in
/// front of b meanwhile), so its answer is what it published after the
/// version, not its memory. Every line once: none falls between the
/// published splits a read and what b answered.
#[test]
fn a_split_published_during_a_search_falls_between_nothing() {
    let job = "www-data/prod/pinned";
    let config = format!(
        "[storage]\ncommit_interval_ms = 100\nsplit_max_age_secs = 3600\n{}",
        on_the_shared_store("pinned")
    );
    // b is reached through the proxy by the other nodes: its member says so.
    let b_port = free_port();
    let proxy = SlowProxy::start(&format!("127.0.0.1:{b_port}"), std::time::Duration::ZERO);
    let proxied = proxy.endpoint.trim_start_matches("http://").to_owned();
    let b_config = config.replace(
        "[cluster]\n",
        &format!("[cluster]\nadvertise = \"{proxied}\"\n"),
    );
    let (_da, a) = Server::in_temp_dir(Some(&config));
    let db = tempfile::tempdir().expect("tempdir");
    let b = Server::start_with(
        &db.path().join("data"),
        Some(&b_config),
        &format!("127.0.0.1:{b_port}"),
        &[],
    );
    let mut both = vec![a.url.clone(), proxy.endpoint.clone()];
    both.sort();
    wait_until("a to see b behind the proxy", DEADLINE, || {
        let v = view(&a);
        (v["zookeeper"]["state"] == "connected" && urls(&v) == both).then_some(())
    });
    let mut file = SourceFile::of(job, 0, "web", Stream::Stdout);
    let lines = lines_of("pinned", 0..10);
    b.post_ok(&request(vec![file.batch(&lines)]));
    assert_eq!(b.get_json("/api/v1/cluster/node")["sources_held"], 1);

    // a pins its version and asks b; b's request waits in the proxy.
    proxy.pause();
    let a_url = a.url.clone();
    let search =
        std::thread::spawn(move || cli(&a_url, &["grep", "-F", "pinned", job, "--output", "json"]));
    wait_until("a's question to b held in the proxy", DEADLINE, || {
        (proxy.held() > 0).then_some(())
    });
    b.flush();
    wait_until("b to publish what it held", DEADLINE, || {
        (b.get_json("/api/v1/cluster/node")["sources_held"] == 0).then_some(())
    });
    proxy.resume();
    let out = search.join().expect("the search");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let shown: Vec<String> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON row"))
        .filter_map(|v| v["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(shown, lines, "each line once, in order: {}", out.stderr);
}

/// A Loki JSON push to `node`: its status and its answer's text.
fn loki_push(node: &Server, body: &Value) -> (u16, String) {
    let resp = http_client(None)
        .post(format!("{}/loki/api/v1/push", node.url))
        .json(body)
        .send()
        .expect("push");
    let status = resp.status().as_u16();
    (status, resp.text().unwrap_or_default())
}

/// Two nodes on the shared store under `name` that publish on a flush
/// only, each seeing both: their data dirs (kept while they run), their
/// config and the nodes.
fn two_nodes_publishing_on_flush(name: &str) -> (Vec<tempfile::TempDir>, String, Server, Server) {
    let config = format!(
        "[storage]\nsplit_max_age_secs = 3600\n{}",
        on_the_shared_store(name)
    );
    let (da, a) = Server::in_temp_dir(Some(&config));
    let (db, b) = Server::in_temp_dir(Some(&config));
    sees(&a, &[&a, &b], "a to see both nodes");
    sees(&b, &[&a, &b], "b to see both nodes");
    (vec![da, db], config, a, b)
}

/// A stream pushed (Loki's push) to a node other than the one that owns
/// its source is forwarded there (issue 19): its lines stay on one node,
/// every entry once and in order, and a retry through either node is
/// dropped. Without it, the second node would take the source and the
/// first would drop what it held of it unpublished: lines nobody could
/// send again.
#[test]
fn a_stream_pushed_to_another_node_goes_to_the_node_that_owns_it() {
    let (_dirs, config, a, b) = two_nodes_publishing_on_flush("push");
    let base = (cblogs_core::time::now_ns() / 1_000_000_000 - 60) * 1_000_000_000;
    let line = |i: i64| format!("pushed line {i:02}");
    let push = |node: &Server, entries: std::ops::Range<i64>| {
        let values: Vec<Value> = entries
            .map(|i| serde_json::json!([(base + i).to_string(), line(i)]))
            .collect();
        let body = serde_json::json!({"streams": [
            {"stream": {"job": "pushed", "host": "h1"}, "values": values}
        ]});
        let (status, answer) = loki_push(node, &body);
        assert_eq!(status, 204, "{answer}");
    };
    push(&a, 0..10);
    push(&b, 10..20);
    push(&b, 10..20); // a retry, through the same node
    push(&a, 15..25); // half a retry, through the owner
    let job = "app/default/pushed";
    let own_texts = |node: &Server| -> Vec<String> {
        let own = node.get_json(&format!("/api/v1/cluster/tail?job={job}&n=1000"));
        own["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .map(|l| l["text"].as_str().expect("text").to_owned())
            .collect()
    };
    let want: Vec<String> = (0..25).map(line).collect();
    assert_eq!(own_texts(&a), want, "a holds every line once, in order");
    assert_eq!(
        b.get_json("/api/v1/cluster/node")["sources_held"],
        0,
        "b took nothing"
    );
    a.flush();
    assert_eq!(
        published_offsets(&config, job).len(),
        want.len(),
        "each line published once"
    );
}

/// Two nodes each sent a new stream's first push at the same moment (a
/// load balancer in front of them, two senders with the same labels).
/// One node takes each stream; the other's claim gives way, it answers
/// 503, and the push sent again is forwarded to the first. Once both
/// have published, every entry is there once. Were the later claim to
/// take the source over, the first node would drop entries it had
/// already acknowledged.
#[test]
fn a_new_stream_pushed_to_two_nodes_at_once_loses_nothing() {
    const STREAMS: usize = 12;
    let (_dirs, _, a, b) = two_nodes_publishing_on_flush("push-race");
    let at = (cblogs_core::time::now_ns() / 1_000_000_000 - 60) * 1_000_000_000;
    let text = |stream: usize, via: &str| format!("raced {stream:02} via {via}");
    // Sent again on a 503 (the claim that gave way), as Loki's clients do.
    let push = |node: &Server, stream: usize, via: &str| {
        let body = serde_json::json!({"streams": [{
            "stream": {"job": "raced", "host": format!("h{stream:02}")},
            "values": [[at.to_string(), text(stream, via)]],
        }]});
        let deadline = std::time::Instant::now() + DEADLINE;
        let mut refused = 0;
        loop {
            let (status, answer) = loki_push(node, &body);
            match status {
                204 => return refused,
                503 if std::time::Instant::now() < deadline => {
                    refused += 1;
                    // The answer's Retry-After is 1 s; a tenth of it will do here.
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                _ => panic!("push of stream {stream} via {via}: {status} {answer}"),
            }
        }
    };
    let mut refused = 0;
    for stream in 0..STREAMS {
        let start = std::sync::Barrier::new(2);
        refused += std::thread::scope(|scope| {
            let via_a = scope.spawn(|| {
                start.wait();
                push(&a, stream, "a")
            });
            let via_b = scope.spawn(|| {
                start.wait();
                push(&b, stream, "b")
            });
            via_a.join().expect("push via a") + via_b.join().expect("push via b")
        });
    }
    eprintln!("{refused} pushes answered 503 and sent again");
    a.flush();
    b.flush();
    let mut want: Vec<String> = (0..STREAMS)
        .flat_map(|s| [text(s, "a"), text(s, "b")])
        .collect();
    want.sort();
    for node in [&a, &b] {
        let out = node.cli(&["grep", "^raced ", "--output", "raw", "--limit", "0"]);
        let mut got = out.lines();
        got.sort();
        assert_eq!(
            got, want,
            "from {}: every entry once ({refused} pushes answered 503 and sent again); {}",
            node.url, out.stderr
        );
    }
}
