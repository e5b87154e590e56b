//! Alerting (issue 7), end to end: the real `cblogsd` with an `[alerts]`
//! rules file, fed by the real `cblogs-shipper` from a fake agent, notifying
//! a webhook [`Receiver`] that runs inside the test. The contract is
//! `alerts-spec.md`.
//!
//! - `fires_at_threshold_not_below`: two matching lines (and lines that must
//!   not count: other text, the other stream, another job) notify nothing
//!   for 2 s and show as an "ok" group of 2; the third fires within 3 s of
//!   being stored, once, with the rule, severity, labels, group, count,
//!   first and latest lines, an empty trace and a link to the job.
//! - `resolves_when_the_window_passes`: a 3 s window fires, then sends one
//!   "resolved" no sooner than 3 s after the matches were read.
//! - `group_by_instance`: with `job+instance`, instance 0 at the threshold
//!   fires alone while instance 1 below it does not; then instance 1 fires.
//! - `repeat_interval`: while firing, a new match does not re-notify; the
//!   re-notification comes `repeat` (2 s) after the first, with the new count.
//! - `restart_does_not_renotify`: a group firing before a restart is still
//!   firing after it (no line counted twice), is not notified again, and
//!   still resolves, not before its window passed.
//! - `traceback_is_in_the_payload`: `trace` holds the whole event a match
//!   is in, from its opening line: a Python `logging.exception` message and
//!   its traceback, an uncaught Java exception, a log4j ERROR line and its
//!   stack trace; an event with two matching lines counts once.
//! - `failing_webhook_is_retried`: 500, 500, then 200: the same payload three
//!   times, with growing back-off, counted in `deliveries`.
//! - `bad_rules_are_refused`: seven kinds of bad rules files stop `cblogsd`
//!   from starting and are refused by a reload (400, old rules kept), each
//!   error naming the rule and the field; good files reload by
//!   `POST /api/v1/admin/alerts/reload` and by SIGHUP.
//! - `pagerduty_and_slack_payloads`: Events API v2 trigger and resolve (same
//!   dedup key) and a Slack `text`, each on its own path of one receiver.
//!
//! The tests run one at a time ([`serial`]): each runs a cblogsd and a
//! shipper and measures seconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cblogs_core::Stream;
use cblogs_testkit::*;
use serde_json::Value;

// ---------------------------------------------------------------------------
// A webhook receiver.
// ---------------------------------------------------------------------------

/// One request the [`Receiver`] got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    content_type: String,
    /// The body as JSON (a JSON string holding the raw text if it is not JSON).
    body: Value,
    /// What the receiver answered.
    status: u16,
    at: Instant,
    /// Arrival on the wall clock, in ns since the epoch (to compare with `time_ns`).
    at_ns: i64,
}

/// A blocking HTTP/1.1 server on a free local port that records every
/// request with its arrival time, and answers `Connection: close`.
struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    arrived: Condvar,
    /// How many of the next requests are answered 500 (then 200).
    failures_left: AtomicU32,
    stop: AtomicBool,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let shared = Arc::new(Shared::default());
        let thread = std::thread::spawn({
            let shared = shared.clone();
            move || {
                for conn in listener.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Err(e) = conn.and_then(|c| serve_one(&shared, c)) {
                        eprintln!("receiver: {e}");
                    }
                }
            }
        });
        Receiver {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// Answers 500 to the next `n` requests.
    fn fail_next(&self, n: u32) {
        self.shared.failures_left.store(n, Ordering::SeqCst);
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits until `n` requests satisfying `which` have arrived, or until
    /// `deadline`; returns those that have (fewer than `n` at the deadline).
    fn wait_for(
        &self,
        n: usize,
        deadline: Instant,
        which: impl Fn(&Received) -> bool,
    ) -> Vec<Received> {
        let mut received = self.shared.received.lock().expect("receiver lock");
        loop {
            let hits: Vec<Received> = received.iter().filter(|r| which(r)).cloned().collect();
            let now = Instant::now();
            if hits.len() >= n || now >= deadline {
                return hits;
            }
            received = self
                .shared
                .arrived
                .wait_timeout(received, deadline - now)
                .expect("receiver lock")
                .0;
        }
    }

    /// Everything received so far, one request a line (for failure messages).
    fn describe(&self) -> String {
        let received = self.shared.received.lock().expect("receiver lock");
        if received.is_empty() {
            return "(nothing received)".into();
        }
        received
            .iter()
            .map(|r| format!("{} -> {}: {}", r.path, r.status, r.body))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request (request line, headers, a `Content-Length` body),
/// records it, answers.
fn serve_one(shared: &Shared, mut conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(()); // connected and closed: the wake-up from Drop
    }
    let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
    let (mut length, mut content_type) = (None, String::new());
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse::<usize>().ok(),
                "content-type" => value.trim().clone_into(&mut content_type),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length.unwrap_or(0)];
    reader.read_exact(&mut body)?;
    let failing = shared
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let (status, reason) = match (length, failing) {
        (None, _) => (411, "Length Required"),
        (Some(_), true) => (500, "Internal Server Error"),
        (Some(_), false) => (200, "OK"),
    };
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    shared
        .received
        .lock()
        .expect("receiver lock")
        .push(Received {
            path,
            content_type,
            body,
            status,
            at: Instant::now(),
            at_ns: cblogs_core::time::now_ns(),
        });
    shared.arrived.notify_all();
    write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )?;
    conn.flush()
}

/// A generic webhook notification of `rule` with `status` ("firing" or "resolved").
fn notification(status: &'static str, rule: &'static str) -> impl Fn(&Received) -> bool {
    move |r: &Received| r.body["status"] == status && r.body["rule"] == rule
}

fn anything(_: &Received) -> bool {
    true
}

fn on_path(path: &'static str) -> impl Fn(&Received) -> bool {
    move |r: &Received| r.path == path
}

// ---------------------------------------------------------------------------
// cblogsd with alerting, an agent and the shipper between them.
// ---------------------------------------------------------------------------

/// The job every test writes to, as rules select it and as `group.job` names it.
const HELLO: (&str, &str, &str) = ("www-data", "prod", "hello");
const HELLO_JOB: &str = "www-data/prod/hello";
const HELLO_GROUP: &str = "devcluster/www-data/prod/hello";

/// `[alerts] base_url`: links in notifications start with it.
const BASE_URL: &str = "http://cblogs.example.test:7450";

/// How long shipping the few lines of a test may take.
const SHIP_DEADLINE: Duration = Duration::from_secs(60);
/// How soon after its crossing line is stored a firing must arrive (the
/// contract says ~1 s after the line is acknowledged).
const FIRE_BUDGET: Duration = Duration::from_secs(3);
/// How long a negative check watches the receiver.
const QUIET: Duration = Duration::from_secs(2);
/// Wall-clock slack for "no sooner than": arrival vs. a line's `time_ns`.
const SLACK_NS: i64 = 100_000_000;

/// A cblogsd config that turns alerting on with `rules_file`.
fn alerts_config(rules_file: &Path) -> String {
    format!(
        "[alerts]\nrules_file = '{}'\nbase_url = \"{BASE_URL}\"\neval_interval_ms = 100\n",
        rules_file.display()
    )
}

/// A `[[notifier]]` of kind webhook.
fn webhook(name: &str, url: &str) -> String {
    format!("[[notifier]]\nname = \"{name}\"\nkind = \"webhook\"\nurl = \"{url}\"\n")
}

/// Dropped in field order: the shipper and cblogsd stop before the receiver
/// goes.
struct Env {
    shipper: Shipper,
    stack: Stack,
    receiver: Receiver,
    rules_file: PathBuf,
}

impl Env {
    /// cblogsd alerting by `rules` (written to a file in the temp dir), and
    /// the shipper of an empty agent.
    fn start(receiver: Receiver, rules: &str) -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let rules_file = dir.path().join("alerts.toml");
        std::fs::write(&rules_file, rules).expect("write the rules file");
        let stack = Stack::in_dir(dir, Some(&alerts_config(&rules_file)));
        Env {
            shipper: stack.shipper(),
            stack,
            receiver,
            rules_file,
        }
    }

    /// A receiver, and cblogsd with `rules` and one webhook notifier
    /// named `hook` posting to the receiver's `/hook`.
    fn with_hook(rules: &str) -> Env {
        let receiver = Receiver::start();
        let rules = format!("{}{rules}", webhook("hook", &receiver.url("/hook")));
        Env::start(receiver, &rules)
    }

    fn task(&self, job: JobName, instance: u32) -> Task {
        self.stack.task(job, instance)
    }

    /// Waits until cblogsd holds exactly the lines written to `runs`.
    fn wait_stored(&mut self, runs: &[&ProcessRun]) {
        wait_all_stored(&self.stack.server, &mut self.shipper, SHIP_DEADLINE, runs);
    }

    /// Waits (until `deadline`) for the firing of `rule`, or fails saying
    /// what was received and what cblogsd logged.
    fn expect_firing(&self, rule: &'static str, deadline: Instant) -> Received {
        self.expect_notification("firing", rule, deadline)
    }

    fn expect_notification(
        &self,
        status: &'static str,
        rule: &'static str,
        deadline: Instant,
    ) -> Received {
        let got = self
            .receiver
            .wait_for(1, deadline, notification(status, rule));
        got.into_iter().next().unwrap_or_else(|| {
            panic!(
                "no {status:?} notification of {rule:?} in time; received:\n{}\ncblogsd log:\n{}",
                self.receiver.describe(),
                self.stack.server.log_text()
            )
        })
    }

    /// `GET /api/v1/alerts`.
    fn alerts(&self) -> Value {
        get_json(&self.stack.server, "/api/v1/alerts")
    }

    /// The group of `rule` for `job` (and `instance`) in `GET /api/v1/alerts`, if listed.
    fn group(&self, rule: &str, instance: Option<u32>) -> Option<Value> {
        let alerts = self.alerts();
        rule_in(&alerts, rule)["groups"]
            .as_array()
            .unwrap_or_else(|| panic!("rule {rule} has no groups array: {alerts}"))
            .iter()
            .find(|g| {
                g["group"]["job"] == HELLO_GROUP
                    && g["group"]["instance"].as_u64() == instance.map(u64::from)
            })
            .cloned()
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// Status and JSON body of an answer.
fn status_and_json(resp: reqwest::blocking::Response, what: &str) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().expect("response body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({status}, {e}): {text}"));
    (status, body)
}

/// GET a JSON answer that must be 200.
fn get_json(server: &Server, path: &str) -> Value {
    let resp = http()
        .get(format!("{}{path}", server.url))
        .send()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let (status, body) = status_and_json(resp, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// `POST /api/v1/admin/alerts/reload`: status and body.
fn reload(server: &Server) -> (u16, Value) {
    let resp = http()
        .post(format!("{}/api/v1/admin/alerts/reload", server.url))
        .send()
        .expect("POST /api/v1/admin/alerts/reload");
    status_and_json(resp, "reload")
}

/// A rule of `GET /api/v1/alerts` by name.
fn rule_in<'a>(alerts: &'a Value, name: &str) -> &'a Value {
    alerts["rules"]
        .as_array()
        .and_then(|rules| rules.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("rule {name} not in /api/v1/alerts: {alerts}"))
}

/// The rule names `GET /api/v1/alerts` lists, in order.
fn rule_names(alerts: &Value) -> Vec<String> {
    alerts["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("no rules array in /api/v1/alerts: {alerts}"))
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The `time_ns` of the stored lines of the hello job whose text contains `needle`.
fn times_of(server: &Server, needle: &str) -> Vec<i64> {
    server
        .all_lines(HELLO_JOB)
        .iter()
        .filter(|l| l.text.contains(needle))
        .map(|l| l.time_ns)
        .collect()
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string in {v}"))
}

// ---------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------

#[test]
fn fires_at_threshold_not_below() {
    let _serial = serial();
    let mut env = Env::with_hook(
        r#"
[[rule]]
name = "checkout-failures"
jobs = ["www-data/prod/hello"]
stream = "stderr"
pattern = 'checkout failed'
threshold = 3
window = "1m"
severity = "critical"
labels = { team = "web", runbook = "checkout" }
notify = ["hook"]
"#,
    );
    let mut web = env.task(HELLO, 0).process("web", 0);
    let mut other_job = env
        .task(("www-data", "devel", "hello"), 0)
        .process("web", 0);

    web.append_lines(
        Stream::Stderr,
        &[
            "GET /cart 200",
            "checkout failed: card declined (order 1001)",
            "GET /health 200",
            "checkout failed: card declined (order 1002)",
        ],
    );
    web.append_lines(Stream::Stdout, &["checkout failed: on stdout, not counted"]);
    other_job.append_lines(Stream::Stderr, &["checkout failed: another job"]);
    env.wait_stored(&[&web, &other_job]);
    let early = env.receiver.wait_for(1, Instant::now() + QUIET, anything);
    assert!(
        early.is_empty(),
        "notified with 2 matching lines, threshold 3 (a stdout line or another job's must \
         not count):\n{}",
        env.receiver.describe()
    );
    let group = env
        .group("checkout-failures", None)
        .unwrap_or_else(|| panic!("no group for {HELLO_GROUP}: {}", env.alerts()));
    assert_eq!(group["state"], "ok", "{group}");
    assert_eq!(group["count"], 2, "{group}");

    web.append_lines(
        Stream::Stderr,
        &[
            "checkout failed: card declined (order 1003)",
            "GET /health 200",
        ],
    );
    env.wait_stored(&[&web, &other_job]);
    let stored = Instant::now();
    let fired = env.expect_firing("checkout-failures", stored + FIRE_BUDGET);
    let p = &fired.body;
    assert_eq!(fired.path, "/hook");
    assert!(
        fired.content_type.starts_with("application/json"),
        "Content-Type {:?}",
        fired.content_type
    );
    assert_eq!(p["status"], "firing", "{p}");
    assert_eq!(p["severity"], "critical", "{p}");
    assert_eq!(p["labels"]["team"], "web", "{p}");
    assert_eq!(p["labels"]["runbook"], "checkout", "{p}");
    assert_eq!(p["group"]["job"], HELLO_GROUP, "{p}");
    assert!(p["group"]["instance"].is_null(), "grouped by job: {p}");
    assert_eq!(p["count"], 3, "{p}");
    assert_eq!(p["threshold"], 3, "{p}");
    assert_eq!(p["window_secs"], 60, "{p}");
    assert_eq!(
        p["first"]["text"], "checkout failed: card declined (order 1001)",
        "{p}"
    );
    assert_eq!(
        p["latest"]["text"], "checkout failed: card declined (order 1003)",
        "{p}"
    );
    for line in [&p["first"], &p["latest"]] {
        assert_eq!(line["job"], HELLO_JOB, "{p}");
        assert_eq!(line["instance"], 0, "{p}");
        assert_eq!(line["stream"], "stderr", "{p}");
    }
    assert_eq!(p["trace"], serde_json::json!([]), "no traceback here: {p}");
    assert!(
        p["started_at"].is_string() && p["sent_at"].is_string(),
        "{p}"
    );
    let link = str_of(p, "link");
    assert!(link.starts_with(BASE_URL), "link {link} not on {BASE_URL}");
    let link = reqwest::Url::parse(link).unwrap_or_else(|e| panic!("link {link}: {e}"));
    assert!(
        link.query_pairs()
            .any(|(k, v)| k == "job" && v.contains(HELLO_JOB)),
        "link {link} does not select the job"
    );

    let group = env.group("checkout-failures", None).expect("group listed");
    assert_eq!(group["state"], "firing", "{group}");
    assert_eq!(group["count"], 3, "{group}");
    assert!(group["last_notified"].is_string(), "{group}");
    assert!(
        rule_in(&env.alerts(), "checkout-failures")["last_fired"].is_string(),
        "{}",
        env.alerts()
    );
    let sent = wait_until("deliveries.sent to count the firing", FIRE_BUDGET, || {
        let alerts = env.alerts();
        (alerts["deliveries"]["sent"].as_u64() >= Some(1)).then_some(alerts)
    });
    assert_eq!(sent["deliveries"]["failed"], 0, "{sent}");

    let all = env.receiver.wait_for(2, Instant::now() + QUIET, anything);
    assert_eq!(
        all.len(),
        1,
        "one firing, nothing else:\n{}",
        env.receiver.describe()
    );
}

#[test]
fn resolves_when_the_window_passes() {
    let _serial = serial();
    let mut env = Env::with_hook(
        r#"
[[rule]]
name = "disk-full"
jobs = ["www-data/prod/hello"]
pattern = 'No space left on device'
threshold = 2
window = "3s"
notify = ["hook"]
"#,
    );
    let mut web = env.task(HELLO, 0).process("web", 0);
    // One write: both lines are read, and leave the window, together.
    web.append_lines(
        Stream::Stderr,
        &[
            "write /var/log/app.log: No space left on device",
            "GET /health 200",
            "write /tmp/upload-77: No space left on device",
        ],
    );
    env.wait_stored(&[&web]);
    let fired = env.expect_firing("disk-full", Instant::now() + FIRE_BUDGET);
    assert_eq!(fired.body["count"], 2, "{}", fired.body);
    assert_eq!(fired.body["window_secs"], 3, "{}", fired.body);

    let last_match = *times_of(&env.stack.server, "No space left")
        .iter()
        .max()
        .expect("the matching lines are stored");
    let window_ns = 3_000_000_000;
    let resolved =
        env.expect_notification("resolved", "disk-full", fired.at + Duration::from_secs(8));
    let after_ms = (resolved.at_ns - last_match) / 1_000_000;
    assert!(
        resolved.at_ns >= last_match + window_ns - SLACK_NS,
        "resolved {after_ms} ms after the last match, before its 3 s window passed"
    );
    assert!(
        resolved.at_ns <= last_match + window_ns + 2_000_000_000,
        "resolved only {after_ms} ms after the last match (window 3 s, eval every 100 ms)"
    );
    let p = &resolved.body;
    assert_eq!(p["group"]["job"], HELLO_GROUP, "{p}");
    assert!(
        p["count"].as_u64().is_some_and(|c| c < 2),
        "a resolve counts fewer than the threshold: {p}"
    );
    assert!(resolved.at > fired.at);

    let all = env.receiver.wait_for(3, Instant::now() + QUIET, anything);
    assert_eq!(
        all.len(),
        2,
        "one firing and one resolve:\n{}",
        env.receiver.describe()
    );
}

#[test]
fn group_by_instance() {
    let _serial = serial();
    let mut env = Env::with_hook(
        r#"
[[rule]]
name = "oom"
jobs = ["www-data/prod/*"]
pattern = 'OutOfMemory'
threshold = 2
window = "1m"
group_by = "job+instance"
notify = ["hook"]
"#,
    );
    let mut i0 = env.task(HELLO, 0).process("web", 0);
    let mut i1 = env.task(HELLO, 1).process("web", 0);
    // Three in the job, two on instance 0: grouped by job it would fire
    // with instance null.
    i0.append_lines(
        Stream::Stderr,
        &["OutOfMemory #1 on 0", "OutOfMemory #2 on 0"],
    );
    i1.append_lines(Stream::Stderr, &["OutOfMemory #1 on 1", "GET /health 200"]);
    env.wait_stored(&[&i0, &i1]);
    let fired = env.expect_firing("oom", Instant::now() + FIRE_BUDGET);
    let p = &fired.body;
    assert_eq!(p["group"]["job"], HELLO_GROUP, "{p}");
    assert_eq!(p["group"]["instance"], 0, "{p}");
    assert_eq!(p["count"], 2, "{p}");
    assert_eq!(p["latest"]["instance"], 0, "{p}");
    let firings = env
        .receiver
        .wait_for(2, Instant::now() + QUIET, notification("firing", "oom"));
    assert_eq!(
        firings.len(),
        1,
        "instance 1 (1 match) is below the threshold:\n{}",
        env.receiver.describe()
    );
    let ok = env
        .group("oom", Some(1))
        .expect("instance 1's group listed");
    assert_eq!(ok["state"], "ok", "{ok}");
    assert_eq!(ok["count"], 1, "{ok}");

    i1.append_lines(Stream::Stderr, &["OutOfMemory #2 on 1"]);
    env.wait_stored(&[&i0, &i1]);
    let firings = env.receiver.wait_for(
        2,
        Instant::now() + FIRE_BUDGET,
        notification("firing", "oom"),
    );
    assert_eq!(
        firings.len(),
        2,
        "instance 1 reached the threshold:\n{}",
        env.receiver.describe()
    );
    let p = &firings[1].body;
    assert_eq!(p["group"]["instance"], 1, "{p}");
    assert_eq!(p["count"], 2, "{p}");
    assert_eq!(p["first"]["text"], "OutOfMemory #1 on 1", "{p}");
    assert_eq!(p["latest"]["text"], "OutOfMemory #2 on 1", "{p}");
}

#[test]
fn repeat_interval() {
    let _serial = serial();
    let mut env = Env::with_hook(
        r#"
[[rule]]
name = "slow-queries"
jobs = ["www-data/prod/hello"]
pattern = 'slow query'
threshold = 2
window = "10m"
repeat = "5s"
notify = ["hook"]
"#,
    );
    let mut web = env.task(HELLO, 0).process("web", 0);
    web.append_lines(Stream::Stderr, &["slow query 1.2 s", "slow query 3.4 s"]);
    env.wait_stored(&[&web]);
    let first = env.expect_firing("slow-queries", Instant::now() + FIRE_BUDGET);
    assert_eq!(first.body["count"], 2, "{}", first.body);

    // A match while firing is counted, not notified. The repeat is 5 s
    // so that on a loaded machine this match is counted before it: the
    // shipper, the WAL and the matcher's wait for the event's end (0.8 s)
    // come first.
    web.append_lines(Stream::Stderr, &["slow query 5.6 s"]);
    env.wait_stored(&[&web]);
    let firings = env.receiver.wait_for(
        2,
        first.at + Duration::from_secs(12),
        notification("firing", "slow-queries"),
    );
    assert_eq!(
        firings.len(),
        2,
        "no re-notification within 12 s of the first (repeat 5 s):\n{}",
        env.receiver.describe()
    );
    let gap = firings[1].at - first.at;
    assert!(
        gap >= Duration::from_millis(4800),
        "re-notified after {gap:?}, before repeat (5 s) passed"
    );
    assert!(
        gap <= Duration::from_secs(8),
        "re-notified only after {gap:?} (repeat 5 s)"
    );
    assert_eq!(firings[1].body["count"], 3, "{}", firings[1].body);
    assert_eq!(
        firings[1].body["started_at"], first.body["started_at"],
        "the same firing"
    );
}

#[test]
fn restart_does_not_renotify() {
    let _serial = serial();
    let mut env = Env::with_hook(
        r#"
[[rule]]
name = "panics"
jobs = ["www-data/prod/hello"]
pattern = 'panicked at'
threshold = 2
window = "15s"
repeat = "1h"
notify = ["hook"]
"#,
    );
    let mut web = env.task(HELLO, 0).process("web", 0);
    web.append_lines(
        Stream::Stderr,
        &[
            "thread 'main' panicked at src/a.rs:1:1",
            "thread 'w1' panicked at src/b.rs:2:2",
        ],
    );
    env.wait_stored(&[&web]);
    env.expect_firing("panics", Instant::now() + FIRE_BUDGET);
    let last_match = *times_of(&env.stack.server, "panicked at")
        .iter()
        .max()
        .expect("stored");

    env.stack.server.stop();
    env.stack.server.restart();
    let restarted = Instant::now();
    let group = wait_until("the rule's group after the restart", FIRE_BUDGET, || {
        env.group("panics", None)
    });
    assert_eq!(
        group["state"], "firing",
        "still firing after the restart: {group}"
    );
    // The engine may forget the window's lines (it then holds the group
    // firing for one window from the restart), but never counts one twice.
    assert!(
        group["count"].as_u64() <= Some(2),
        "2 matching lines, none counted twice by the WAL replay: {group}"
    );

    let firings = env.receiver.wait_for(
        2,
        restarted + Duration::from_secs(3),
        notification("firing", "panics"),
    );
    assert_eq!(
        firings.len(),
        1,
        "notified again after the restart:\n{}",
        env.receiver.describe()
    );
    let resolved =
        env.expect_notification("resolved", "panics", restarted + Duration::from_secs(20));
    assert!(
        resolved.at_ns >= last_match + 15_000_000_000 - SLACK_NS,
        "resolved before the 15 s window passed"
    );
}

#[test]
fn traceback_is_in_the_payload() {
    let _serial = serial();
    let mut env = Env::with_hook(
        r#"
[[rule]]
name = "python-tracebacks"
jobs = ["www-data/prod/hello"]
pattern = '^Traceback'
threshold = 1
window = "1m"
notify = ["hook"]

[[rule]]
name = "java-exceptions"
jobs = ["www-data/prod/hello"]
process = "worker"
pattern = 'Exception'
threshold = 1
window = "1m"
notify = ["hook"]

[[rule]]
name = "io-errors"
jobs = ["www-data/prod/hello"]
pattern = 'java\.io\.IOException'
threshold = 1
window = "1m"
notify = ["hook"]
"#,
    );
    let task = env.task(HELLO, 0);
    let mut web = task.process("web", 0);
    let mut worker = task.process("worker", 0);
    let mut hadoop = task.process("hadoop", 0);
    // Python's logging.exception: the message line, then its traceback.
    let python = [
        "ERROR:app.cart:checkout failed for order 77",
        "Traceback (most recent call last):",
        "  File \"/srv/app/handlers.py\", line 88, in post",
        "    qty = int(form[\"qty\"])",
        "  File \"/srv/app/forms.py\", line 12, in __getitem__",
        "    return self.parse(key)",
        "ValueError: invalid literal for int() with base 10: 'three'",
    ];
    // Uncaught: the exception line opens the event. Two of its lines
    // match the rule: the event counts once.
    let java = [
        "Exception in thread \"main\" java.lang.IllegalStateException: boom",
        "\tat com.example.cart.Checkout.total(Checkout.java:42)",
        "\tat com.example.cart.Checkout.run(Checkout.java:17)",
        "\tat com.example.Main.main(Main.java:9)",
        "Caused by: java.lang.NumberFormatException: For input string: \"three\"",
        "\tat java.base/java.lang.Integer.parseInt(Integer.java:668)",
        "\t... 3 more",
    ];
    // log4j: the ERROR line that says what failed, then the exception.
    let log4j = LOG4J_EVENT;
    // Each whole event in one write, between ordinary lines.
    let around = |before: &str, event: &[&'static str], after: &'static str| {
        let mut lines = vec![before.to_owned()];
        lines.extend(event.iter().map(|l| l.to_string()));
        lines.push(after.to_owned());
        lines
    };
    web.append_lines(
        Stream::Stderr,
        &around("INFO POST /cart", &python, "INFO POST /cart 500"),
    );
    worker.append_lines(
        Stream::Stderr,
        &around("INFO worker started", &java, "INFO worker exiting"),
    );
    hadoop.append_lines(
        Stream::Stderr,
        &around(
            "2015-10-18 18:01:47,900 INFO [main] org.apache.hadoop.mapred.Task: start",
            &log4j,
            "2015-10-18 18:01:48,001 INFO [main] org.apache.hadoop.mapred.Task: next",
        ),
    );
    env.wait_stored(&[&web, &worker, &hadoop]);
    let deadline = Instant::now() + FIRE_BUDGET;
    for (rule, event, latest) in [
        ("python-tracebacks", &python[..], python[1]),
        ("java-exceptions", &java[..], java[0]),
        ("io-errors", &log4j[..], log4j[1]),
    ] {
        let p = env.expect_firing(rule, deadline).body;
        assert_eq!(p["latest"]["text"], latest, "{p}");
        let got: Vec<&str> = p["trace"]
            .as_array()
            .unwrap_or_else(|| panic!("no trace array: {p}"))
            .iter()
            .map(|l| l.as_str().unwrap_or("<not a string>"))
            .collect();
        assert_eq!(
            got, event,
            "{rule}: the whole event, from its opening line, in order"
        );
        assert_eq!(p["count"], 1, "{rule}: one event, counted once: {p}");
    }
    let group = env
        .group("java-exceptions", None)
        .expect("the java group listed");
    assert_eq!(
        group["count"], 1,
        "two matching lines of one event count once: {group}"
    );
}

#[test]
fn failing_webhook_is_retried() {
    let _serial = serial();
    let receiver = Receiver::start();
    receiver.fail_next(2);
    let rules = format!(
        r#"{}
[[rule]]
name = "5xx"
jobs = ["www-data/prod/hello"]
pattern = '" 50[0-9] '
threshold = 1
window = "1m"
notify = ["hook"]
"#,
        webhook("hook", &receiver.url("/hook"))
    );
    let mut env = Env::start(receiver, &rules);
    let mut web = env.task(HELLO, 0).process("web", 0);
    web.append_lines(Stream::Stdout, &["10.0.0.7 \"GET /cart HTTP/1.1\" 502 0"]);
    env.wait_stored(&[&web]);
    // Back-off 1 s, then 2 s: the third try comes ~3 s after the first.
    let tries = env
        .receiver
        .wait_for(3, Instant::now() + Duration::from_secs(15), anything);
    assert_eq!(
        tries.len(),
        3,
        "a firing answered 500 twice is tried a third time:\n{}",
        env.receiver.describe()
    );
    let statuses: Vec<u16> = tries.iter().map(|t| t.status).collect();
    assert_eq!(statuses, [500, 500, 200]);
    let without_sent_at = |r: &Received| {
        let mut body = r.body.clone();
        if let Some(fields) = body.as_object_mut() {
            fields.remove("sent_at");
        }
        body
    };
    for t in &tries {
        assert_eq!(t.path, "/hook");
        assert_eq!(t.body["status"], "firing", "{}", t.body);
        assert_eq!(
            without_sent_at(t),
            without_sent_at(&tries[0]),
            "every try carries the same payload"
        );
    }
    let (gap1, gap2) = (tries[1].at - tries[0].at, tries[2].at - tries[1].at);
    assert!(
        gap1 >= Duration::from_millis(900) && gap2 >= Duration::from_millis(1800),
        "back-off 1 s then 2 s, got {gap1:?} then {gap2:?}"
    );

    let alerts = wait_until("deliveries.sent to count the delivery", FIRE_BUDGET, || {
        let alerts = env.alerts();
        (alerts["deliveries"]["sent"].as_u64() >= Some(1)).then_some(alerts)
    });
    assert!(
        alerts["deliveries"]["failed"].as_u64() >= Some(2),
        "two failed tries counted: {alerts}"
    );
    let more = env.receiver.wait_for(4, Instant::now() + QUIET, anything);
    assert_eq!(more.len(), 3, "delivered: no more tries");
}

/// A `[[rule]]` table: a valid rule named `name`, with `changes` replacing
/// or adding fields (values as TOML).
fn rule_table(name: &str, changes: &[(&str, &str)]) -> String {
    let mut fields: Vec<(String, String)> = [
        ("name", format!("\"{name}\"")),
        ("jobs", r#"["www-data/prod/hello"]"#.to_owned()),
        ("pattern", "'checkout failed'".to_owned()),
        ("threshold", "3".to_owned()),
        ("window", "\"1m\"".to_owned()),
        ("notify", r#"["hook"]"#.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (key, value) in changes {
        match fields.iter_mut().find(|(k, _)| k == key) {
            Some(field) => field.1 = (*value).to_owned(),
            None => fields.push(((*key).to_owned(), (*value).to_owned())),
        }
    }
    let body: String = fields.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    format!("\n[[rule]]\n{body}")
}

/// A bad rules file: what is wrong, and the rule and field its error must name.
struct BadRules {
    what: &'static str,
    rule: &'static str,
    field: &'static str,
    rules: String,
}

fn bad_rules_files(hook: &str) -> Vec<BadRules> {
    let notifier = webhook("hook", hook);
    let bad = |what, rule, field, tables: String| BadRules {
        what,
        rule,
        field,
        rules: format!("{notifier}{tables}"),
    };
    vec![
        bad(
            "bad regex",
            "bad-regex",
            "pattern",
            rule_table("bad-regex", &[("pattern", "'checkout (failed'")]),
        ),
        bad(
            "unknown notifier",
            "paging",
            "notify",
            rule_table("paging", &[("notify", r#"["hook", "nobody"]"#)]),
        ),
        bad(
            "duplicate rule name",
            "twice",
            "name",
            rule_table("twice", &[]) + &rule_table("twice", &[("pattern", "'other'")]),
        ),
        bad(
            "threshold 0",
            "never",
            "threshold",
            rule_table("never", &[("threshold", "0")]),
        ),
        bad(
            "unknown field",
            "typo",
            "treshold",
            rule_table("typo", &[("treshold", "5")]),
        ),
        bad(
            "bad window",
            "abc-window",
            "window",
            rule_table("abc-window", &[("window", "\"abc\"")]),
        ),
        bad(
            "unknown group_by",
            "by-host",
            "group_by",
            rule_table("by-host", &[("group_by", "\"host\"")]),
        ),
    ]
}

/// Starts `cblogsd` on `rules` and expects it to exit non-zero (within
/// 10 s); returns its stderr.
fn refused_at_start(dir: &Path, case: usize, rules: &str) -> String {
    let rules_file = dir.join(format!("bad-{case}.toml"));
    std::fs::write(&rules_file, rules).expect("write the rules file");
    let config = dir.join(format!("cblogsd-{case}.toml"));
    std::fs::write(&config, alerts_config(&rules_file)).expect("write the config");
    let mut child = Command::new(bin("cblogsd"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join(format!("data-{case}")))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cblogsd");
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cblogsd still runs 10 s after starting on bad rules:\n{rules}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr);
    assert!(
        !status.success(),
        "cblogsd exited {status} on bad rules:\n{rules}"
    );
    stderr
}

#[test]
fn bad_rules_are_refused() {
    let _serial = serial();
    let receiver = Receiver::start();
    let hook = receiver.url("/hook");
    let notifier = webhook("hook", &hook);
    let env = Env::start(receiver, &(notifier.clone() + &rule_table("good-one", &[])));
    let dir = tempfile::tempdir().expect("temp dir");

    for (case, bad) in bad_rules_files(&hook).iter().enumerate() {
        let names_it = |message: &str| message.contains(bad.rule) && message.contains(bad.field);
        let stderr = refused_at_start(dir.path(), case, &bad.rules);
        assert!(
            names_it(&stderr),
            "{}: at start-up the error should name rule {:?} and field {:?}; stderr:\n{stderr}",
            bad.what,
            bad.rule,
            bad.field
        );

        std::fs::write(&env.rules_file, &bad.rules).expect("write the rules file");
        let (status, body) = reload(&env.stack.server);
        assert_eq!(status, 400, "{}: reload answered {body}", bad.what);
        let error = str_of(&body, "error");
        assert!(
            names_it(error),
            "{}: the reload error should name rule {:?} and field {:?}: {error}",
            bad.what,
            bad.rule,
            bad.field
        );
        assert_eq!(
            rule_names(&env.alerts()),
            ["good-one"],
            "{}: the previous rules stay in force",
            bad.what
        );
    }

    let two = notifier.clone() + &rule_table("good-one", &[]) + &rule_table("good-two", &[]);
    std::fs::write(&env.rules_file, two).expect("write the rules file");
    let (status, body) = reload(&env.stack.server);
    assert_eq!(status, 200, "a good file reloads: {body}");
    assert_eq!(body["rules"], 2, "{body}");
    assert_eq!(rule_names(&env.alerts()), ["good-one", "good-two"]);

    let three = notifier
        + &rule_table("good-one", &[])
        + &rule_table("good-two", &[])
        + &rule_table("good-three", &[("severity", "\"info\"")]);
    std::fs::write(&env.rules_file, three).expect("write the rules file");
    let pid = env.stack.server.pid().expect("cblogsd runs");
    // SAFETY: kill(2) with a pid we own and a valid signal number.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
    assert_eq!(rc, 0, "send SIGHUP");
    wait_until(
        "SIGHUP to load the third rule",
        Duration::from_secs(10),
        || (rule_names(&env.alerts()).len() == 3).then_some(()),
    );
    let alerts = env.alerts();
    assert_eq!(
        rule_names(&alerts),
        ["good-one", "good-two", "good-three"],
        "{alerts}"
    );
    assert_eq!(rule_in(&alerts, "good-three")["severity"], "info");
}

#[test]
fn pagerduty_and_slack_payloads() {
    let _serial = serial();
    let receiver = Receiver::start();
    let rules = format!(
        r#"
[[notifier]]
name = "pd"
kind = "pagerduty"
url = "{}"
routing_key = "R0UT1NGKEY0123456789abcdef012345"

[[notifier]]
name = "chat"
kind = "slack"
url = "{}"

[[rule]]
name = "db-down"
jobs = ["www-data/prod/hello"]
pattern = 'connection refused'
threshold = 1
window = "3s"
severity = "error"
notify = ["pd", "chat"]
"#,
        receiver.url("/pd"),
        receiver.url("/slack")
    );
    let mut env = Env::start(receiver, &rules);
    let mut web = env.task(HELLO, 0).process("web", 0);
    web.append_lines(Stream::Stderr, &["db-7:5432: connection refused"]);
    env.wait_stored(&[&web]);
    let deadline = Instant::now() + FIRE_BUDGET;
    let (pd, slack) = (
        env.receiver.wait_for(1, deadline, on_path("/pd")),
        env.receiver.wait_for(1, deadline, on_path("/slack")),
    );
    let (Some(pd), Some(slack)) = (pd.first(), slack.first()) else {
        panic!(
            "PagerDuty and Slack both notified; received:\n{}\ncblogsd log:\n{}",
            env.receiver.describe(),
            env.stack.server.log_text()
        );
    };

    let p = &pd.body;
    assert_eq!(p["routing_key"], "R0UT1NGKEY0123456789abcdef012345", "{p}");
    assert_eq!(p["event_action"], "trigger", "{p}");
    let dedup_key = str_of(p, "dedup_key");
    assert!(
        dedup_key.starts_with("cblogs/db-down/"),
        "dedup_key {dedup_key}"
    );
    assert!(!str_of(&p["payload"], "summary").is_empty(), "{p}");
    assert!(!str_of(&p["payload"], "source").is_empty(), "{p}");
    assert_eq!(p["payload"]["severity"], "error", "{p}");
    assert_eq!(p["payload"]["custom_details"]["rule"], "db-down", "{p}");
    assert_eq!(p["payload"]["custom_details"]["status"], "firing", "{p}");
    let text = str_of(&slack.body, "text");
    assert!(
        text.contains("db-down"),
        "Slack text names the rule: {text}"
    );

    // The window is 3 s: both hear of the resolve.
    let deadline = Instant::now() + Duration::from_secs(8);
    let (pd, slack) = (
        env.receiver.wait_for(2, deadline, on_path("/pd")),
        env.receiver.wait_for(2, deadline, on_path("/slack")),
    );
    assert!(
        pd.len() == 2 && slack.len() == 2,
        "a resolve to PagerDuty and Slack; received:\n{}",
        env.receiver.describe()
    );
    let p = &pd[1].body;
    assert_eq!(p["event_action"], "resolve", "{p}");
    assert_eq!(p["dedup_key"], dedup_key, "{p}");
    assert_eq!(p["routing_key"], "R0UT1NGKEY0123456789abcdef012345", "{p}");
    let text = str_of(&slack[1].body, "text");
    assert!(
        text.contains("db-down") && text.to_lowercase().contains("resolved"),
        "Slack resolve text: {text}"
    );
}

#[test]
fn a_silence_holds_notifications_back() {
    let _serial = serial();
    let mut env = Env::with_hook(
        r#"
[[rule]]
name = "oom"
jobs = ["www-data/prod/hello"]
pattern = 'OutOfMemoryError'
threshold = 1
window = "10m"
group_by = "job+instance"
notify = ["hook"]
"#,
    );
    // Instance 0 is silenced through the real CLI; instance 1 is not.
    let out = env.stack.server.cli(&[
        "alerts",
        "silence",
        "oom",
        "--group",
        &format!("{HELLO_JOB}/0"),
        "--for",
        "1h",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("silenced oom on www-data/prod/hello/0"),
        "{}",
        out.stdout
    );
    let unknown = env
        .stack
        .server
        .cli(&["alerts", "silence", "no-such-rule", "--for", "1h"]);
    assert_ne!(unknown.code, 0);
    assert!(
        unknown.stderr.contains("no-such-rule"),
        "{}",
        unknown.stderr
    );

    let mut i0 = env.task(HELLO, 0).process("web", 0);
    let mut i1 = env.task(HELLO, 1).process("web", 0);
    i0.append_lines(
        Stream::Stderr,
        &["java.lang.OutOfMemoryError: Java heap space"],
    );
    env.wait_stored(&[&i0]);
    // It fires (the state says so) but nothing is sent for instance 0.
    wait_until("instance 0 firing", Duration::from_secs(5), || {
        env.group("oom", Some(0))
            .filter(|g| g["state"] == "firing")
            .map(drop)
    });
    let quiet = env
        .receiver
        .wait_for(1, Instant::now() + QUIET, notification("firing", "oom"));
    assert!(
        quiet.is_empty(),
        "silenced, yet sent:\n{}",
        env.receiver.describe()
    );
    // Instance 1 is not silenced.
    i1.append_lines(Stream::Stderr, &["java.lang.OutOfMemoryError: Metaspace"]);
    env.wait_stored(&[&i0, &i1]);
    let sent = env.expect_firing("oom", Instant::now() + FIRE_BUDGET);
    assert_eq!(sent.body["group"]["instance"], 1, "{}", sent.body);
    // The silence is listed, by the API and by `cblogs alerts`.
    let alerts = env.alerts();
    assert_eq!(alerts["silences"][0]["rule"], "oom", "{alerts}");
    let listed = env.stack.server.cli(&["alerts"]);
    assert!(
        listed.stdout.contains("oom on www-data/prod/hello/0 until"),
        "{}",
        listed.stdout
    );
}
