//! Who may do what, end to end: bearer tokens per role on every endpoint of
//! the real `cblogsd`, the loopback-only rule for roles without tokens, TLS
//! with a private CA for the real shipper and CLI, token rotation by SIGHUP
//! (and by the shipper re-reading its token file after a 401), and no token
//! in any log.

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use cblogs_core::Stream;
use cblogs_testkit::*;

/// One token per role, and tokens no role knows.
const INGEST: &str = "ingest-tok-3f9a1c7e5b2d";
const READ: &str = "read-tok-8e2d6b1f0c4a97";
const ADMIN: &str = "admin-tok-5a9c3e7d1b2f60";
const BOGUS: &str = "bogus-tok-0000111122223333";

const INGEST_ROLE: &str = "ingest";
const READ_ROLE: &str = "read";
const ADMIN_ROLE: &str = "admin";

/// `[auth]` with the given tokens, inline.
fn auth_section(ingest: &[&str], read: &[&str], admin: &[&str]) -> String {
    let list = |t: &[&str]| {
        t.iter()
            .map(|t| format!("{t:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[auth]\ningest_tokens = [{}]\nread_tokens = [{}]\nadmin_tokens = [{}]\n",
        list(ingest),
        list(read),
        list(admin)
    )
}

// ---------------------------------------------------------------------------
// Plain HTTP requests with a chosen credential.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Cred<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str),
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("non-JSON answer ({}): {}", self.status, self.body))
    }

    /// The `error` of a JSON error body.
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"error\" in {}", self.body))
            .to_owned()
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("?").to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn http_client(ca_pem: Option<&[u8]>) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10));
    if let Some(pem) = ca_pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem).expect("CA PEM"));
    }
    b.build().expect("HTTP client")
}

/// `POST /api/v1/ingest` of `body` with the bearer token `token`.
fn post_ingest(client: &reqwest::blocking::Client, base: &str, token: &str, body: &[u8]) -> Answer {
    request(
        client,
        "POST",
        &format!("{base}/api/v1/ingest"),
        Cred::Bearer(token),
        Some(body),
    )
}

/// [`request`] without a body.
fn call(client: &reqwest::blocking::Client, method: &str, url: &str, cred: Cred) -> Answer {
    request(client, method, url, cred, None)
}

fn request(
    client: &reqwest::blocking::Client,
    method: &str,
    url: &str,
    cred: Cred,
    body: Option<&[u8]>,
) -> Answer {
    let method: reqwest::Method = method.parse().expect("method");
    let mut req = client.request(method.clone(), url);
    match cred {
        Cred::None => {}
        Cred::Bearer(t) => req = req.header("Authorization", format!("Bearer {t}")),
        Cred::Cookie(t) => req = req.header("Cookie", format!("theme=dark; cblogs_token={t}")),
    }
    if let Some(b) = body {
        req = req
            .header("Content-Type", "application/json")
            .body(b.to_vec());
    }
    let resp = req.send().unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let streaming = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    // An event stream never ends: its headers are the answer.
    let body = if streaming {
        String::new()
    } else {
        resp.text().expect("response body")
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// An ingest request body with `lines` of one source of `job`.
fn ingest_body(job: &str, lines: &[&str]) -> (Vec<u8>, cblogs_core::Source) {
    let src = source(job, 0, "hello_world", Stream::Stdout);
    let mut f = SourceFile::new(src.clone());
    let req = request_of(vec![f.batch(lines)]);
    (serde_json::to_vec(&req).expect("encode"), src)
}

fn request_of(batches: Vec<cblogs_core::wire::Batch>) -> cblogs_core::wire::IngestRequest {
    cblogs_testkit::request(batches)
}

/// The texts of `job`'s newest lines, via the API, or `None` while the
/// job is unknown.
fn api_lines(
    client: &reqwest::blocking::Client,
    base: &str,
    token: &str,
    job: &str,
) -> Option<Vec<String>> {
    let a = call(
        client,
        "GET",
        &format!("{base}/api/v1/tail?job={job}&n=10000"),
        Cred::Bearer(token),
    );
    if a.status == 404 {
        return None;
    }
    assert_eq!(a.status, 200, "tail {job}: {}", a.body);
    Some(
        a.json()["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .map(|l| l["text"].as_str().expect("text").to_owned())
            .collect(),
    )
}

/// Sends SIGHUP to cblogsd: read the token files again.
fn sighup(server: &Server) {
    let pid = server.pid().expect("cblogsd runs");
    // SAFETY: kill(2) with a pid we own and a valid signal number.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
    assert_eq!(rc, 0, "send SIGHUP");
}

/// Replaces `path` at once (write a sibling, rename): a reader never sees
/// it half written.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write token file");
    std::fs::rename(&tmp, path).expect("rename token file");
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// `flags` then `extra`, as arguments.
fn args<'a>(flags: &[&'a OsStr], extra: &[&'a str]) -> Vec<&'a OsStr> {
    let mut all = flags.to_vec();
    all.extend(extra.iter().map(|s| OsStr::new(*s)));
    all
}

// ---------------------------------------------------------------------------
// 1. Every endpoint needs its role's token.
// ---------------------------------------------------------------------------

struct Endpoint {
    method: &'static str,
    path: String,
    role: &'static str,
    body: Option<Vec<u8>>,
    /// The handler's own answer once the auth layer lets the request in.
    ok: u16,
}

#[test]
fn every_endpoint_needs_its_token() {
    bin_dir(); // builds the binaries: not part of the time printed
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "{SMALL_BLOCKS}{}",
        auth_section(&[INGEST], &[READ], &[ADMIN])
    );
    let server = Server::start(&dir.path().join("data"), Some(&config));
    let client = http_client(None);
    let base = &server.url;
    let job = "www-data/prod/hello";

    let (ingest, src) = ingest_body(job, &["hello from the auth test", "second line"]);
    let a = post_ingest(&client, base, INGEST, &ingest);
    assert_eq!(a.status, 200, "ingest with the ingest token: {}", a.body);

    let silence = br#"{"rule": "no-such-rule", "for_secs": 60}"#.to_vec();
    let ep = |method, path: &str, role, body: Option<Vec<u8>>, ok| Endpoint {
        method,
        path: path.to_owned(),
        role,
        body,
        ok,
    };
    let endpoints = [
        ep(
            "POST",
            "/api/v1/ingest",
            INGEST_ROLE,
            Some(ingest.clone()),
            200,
        ),
        ep("GET", "/api/v1/jobs", READ_ROLE, None, 200),
        ep(
            "GET",
            &format!("/api/v1/tail?job={job}"),
            READ_ROLE,
            None,
            200,
        ),
        ep(
            "GET",
            &format!("/api/v1/follow?job={job}"),
            READ_ROLE,
            None,
            200,
        ),
        ep("GET", "/api/v1/search?pattern=x", READ_ROLE, None, 200),
        ep("GET", "/api/v1/histogram", READ_ROLE, None, 200),
        ep(
            "GET",
            &format!("/api/v1/context?source={:016x}&offset=0", src.id()),
            READ_ROLE,
            None,
            200,
        ),
        ep("GET", "/api/v1/alerts", READ_ROLE, None, 200),
        ep("GET", "/api/v1/storage", READ_ROLE, None, 200),
        ep("GET", "/metrics", READ_ROLE, None, 200),
        ep("POST", "/api/v1/session", READ_ROLE, None, 200),
        ep("DELETE", "/api/v1/session", READ_ROLE, None, 200),
        ep("POST", "/api/v1/admin/flush", ADMIN_ROLE, None, 200),
        // No rules file: the handler's own 400.
        ep("POST", "/api/v1/admin/alerts/reload", ADMIN_ROLE, None, 400),
        // No such rule: the handler's own 404.
        ep(
            "POST",
            "/api/v1/alerts/silences",
            ADMIN_ROLE,
            Some(silence),
            404,
        ),
    ];
    let tokens = [
        (INGEST_ROLE, INGEST),
        (READ_ROLE, READ),
        (ADMIN_ROLE, ADMIN),
    ];
    for e in &endpoints {
        let url = format!("{base}{}", e.path);
        let what = format!("{} {} ({} role)", e.method, e.path, e.role);
        let call = |cred| request(&client, e.method, &url, cred, e.body.as_deref());

        let a = call(Cred::None);
        assert_eq!(a.status, 401, "{what} without a token: {}", a.body);
        let msg = a.error();
        assert!(
            msg.contains(&format!("needs a {} token", e.role)),
            "{what} without a token: the message names the role: {msg}"
        );
        assert!(
            a.header("www-authenticate").starts_with("Bearer"),
            "{what} without a token: WWW-Authenticate is {:?}",
            a.header("www-authenticate")
        );

        let a = call(Cred::Bearer(BOGUS));
        assert_eq!(a.status, 401, "{what} with an unknown token: {}", a.body);
        assert!(
            a.error().contains(&format!("not a valid {} token", e.role)),
            "{what}: {}",
            a.body
        );
        assert!(a.header("www-authenticate").starts_with("Bearer"), "{what}");

        for (role, token) in tokens {
            let allowed = role == e.role || (e.role == READ_ROLE && role == ADMIN_ROLE);
            let a = call(Cred::Bearer(token));
            if allowed {
                assert_eq!(
                    a.status, e.ok,
                    "{what} with the {role} token: the handler's answer: {}",
                    a.body
                );
            } else {
                assert_eq!(a.status, 403, "{what} with the {role} token: {}", a.body);
                assert!(
                    a.error().contains(&format!("may not {}", e.role)),
                    "{what} with the {role} token: {}",
                    a.body
                );
                assert!(
                    a.header("www-authenticate").is_empty(),
                    "{what}: a 403 asks for no other credentials"
                );
            }
        }
    }

    // The web page's cookie stands for a read token.
    let jobs = format!("{base}/api/v1/jobs");
    let a = call(&client, "GET", &jobs, Cred::Cookie(READ));
    assert_eq!(a.status, 200, "jobs with the read cookie: {}", a.body);
    assert!(a.body.contains(job), "{}", a.body);
    let a = call(&client, "GET", &jobs, Cred::Cookie(BOGUS));
    assert_eq!(a.status, 401, "jobs with a bogus cookie: {}", a.body);
    let a = call(&client, "GET", &jobs, Cred::Cookie(INGEST));
    assert_eq!(a.status, 403, "jobs with an ingest cookie: {}", a.body);
    let flush = format!("{base}/api/v1/admin/flush");
    let a = call(&client, "POST", &flush, Cred::Cookie(READ));
    assert_eq!(a.status, 403, "flush with the read cookie: {}", a.body);

    // Sign-in: the token becomes an HttpOnly, SameSite=Strict cookie.
    let session = format!("{base}/api/v1/session");
    let a = call(&client, "POST", &session, Cred::Bearer(READ));
    assert_eq!(a.status, 200, "{}", a.body);
    let cookie = a.header("set-cookie");
    assert!(
        cookie.starts_with(&format!("cblogs_token={READ};")),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    // A cookie alone does not start a session: the token must be sent.
    let a = call(&client, "POST", &session, Cred::Cookie(READ));
    assert_eq!(a.status, 400, "{}", a.body);
    let a = call(&client, "DELETE", &session, Cred::Cookie(READ));
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.header("set-cookie").contains("Max-Age=0"), "sign-out");

    // The page and the health check stay open.
    for path in ["/", "/static/app.js", "/healthz"] {
        let a = call(&client, "GET", &format!("{base}{path}"), Cred::None);
        assert_eq!(a.status, 200, "GET {path} without a token: {}", a.body);
    }
    // An unknown path is 404 whatever the credentials.
    let a = call(&client, "GET", &format!("{base}/api/v1/nope"), Cred::None);
    assert_eq!(a.status, 404, "{}", a.body);
    eprintln!("every_endpoint_needs_its_token: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// 2. A role without tokens is open to loopback clients only.
// ---------------------------------------------------------------------------

/// This machine's first non-loopback IPv4 address.
fn non_loopback_ipv4() -> Ipv4Addr {
    let usable = |ip: IpAddr| match ip {
        IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_unspecified() => Some(v4),
        _ => None,
    };
    // A connected UDP socket sends nothing; its local address is the one
    // the route to the target would use.
    for target in ["192.0.2.1:9", "10.255.255.255:9", "203.0.113.1:9"] {
        let found = std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.connect(target).and_then(|()| s.local_addr()))
            .ok()
            .and_then(|a| usable(a.ip()));
        if let Some(ip) = found {
            return ip;
        }
    }
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.split_whitespace()
        .filter_map(|w| w.parse::<IpAddr>().ok())
        .find_map(usable)
        .unwrap_or_else(|| {
            panic!(
                "this test needs a non-loopback IPv4 address on this machine, and found none \
                 (no route to 192.0.2.1 or 10.255.255.255; `hostname -I` said {out:?})"
            )
        })
}

#[test]
fn roles_without_tokens_are_open_only_on_loopback() {
    bin_dir(); // builds the binaries: not part of the time printed
    let started = Instant::now();
    let outside = non_loopback_ipv4();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_with(&dir.path().join("data"), None, "0.0.0.0:0", &[]);
    let port = server.port;
    let local = format!("http://127.0.0.1:{port}");
    let remote = format!("http://{outside}:{port}");
    let client = http_client(None);
    let (ingest, _) = ingest_body("www-data/prod/open", &["a line from loopback"]);

    let calls: [(&str, &str, &str, Option<&[u8]>); 3] = [
        ("POST", "/api/v1/ingest", INGEST_ROLE, Some(&ingest)),
        ("GET", "/api/v1/jobs", READ_ROLE, None),
        ("POST", "/api/v1/admin/flush", ADMIN_ROLE, None),
    ];
    for (method, path, role, body) in calls {
        let a = request(&client, method, &format!("{local}{path}"), Cred::None, body);
        assert_eq!(a.status, 200, "{method} {path} via 127.0.0.1: {}", a.body);
        // A stale token does not lock a local user out of an open role.
        let a = request(
            &client,
            method,
            &format!("{local}{path}"),
            Cred::Bearer(BOGUS),
            body,
        );
        assert_eq!(
            a.status, 200,
            "{method} {path} via 127.0.0.1 with an unknown token: {}",
            a.body
        );
        for cred in [Cred::None, Cred::Bearer(BOGUS)] {
            let a = request(&client, method, &format!("{remote}{path}"), cred, body);
            assert_eq!(
                a.status, 403,
                "{method} {path} via {outside} ({cred:?}) must be refused: {}",
                a.body
            );
            let msg = a.error();
            assert!(
                msg.contains(&format!("auth.{role}_tokens")),
                "{method} {path} via {outside}: the message names auth.{role}_tokens: {msg}"
            );
        }
    }
    let a = call(&client, "GET", &format!("{remote}/healthz"), Cred::None);
    assert_eq!(a.status, 200, "/healthz stays open to everyone");

    // Dual-stack: an IPv4 client of a `[::]` listener arrives as
    // ::ffff:127.0.0.1, which is loopback too.
    if std::net::TcpListener::bind("[::]:0").is_ok() {
        let dual = Server::start_with(&dir.path().join("data6"), None, "[::]:0", &[]);
        let jobs = |host: String| {
            let url = format!("http://{host}:{}/api/v1/jobs", dual.port);
            call(&client, "GET", &url, Cred::None)
        };
        let a = jobs("127.0.0.1".into());
        assert_eq!(a.status, 200, "via 127.0.0.1 to [::]: {}", a.body);
        let a = jobs(outside.to_string());
        assert_eq!(a.status, 403, "via {outside} to [::]: {}", a.body);
    }

    let log = server.log_text();
    for role in [INGEST_ROLE, READ_ROLE, ADMIN_ROLE] {
        let want = format!(
            "{role}: no token configured (auth.{role}_tokens); open to loopback clients only"
        );
        assert!(log.contains(&want), "start-up log lacks {want:?}:\n{log}");
    }
    eprintln!(
        "roles_without_tokens_are_open_only_on_loopback ({outside}): {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 3. The shipper and the CLI with tokens, over TLS with a private CA.
// ---------------------------------------------------------------------------

#[test]
fn shipper_and_cli_with_tokens_over_tls() {
    bin_dir(); // builds the binaries: not part of the time printed
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = make_certificates(dir.path());
    let config = format!(
        "{SMALL_BLOCKS}{}[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        auth_section(&[INGEST], &[READ], &[ADMIN]),
        cert.display().to_string(),
        key.display().to_string()
    );
    let server = Server::start(&dir.path().join("data"), Some(&config));
    let url = server.url.clone();
    assert!(
        url.starts_with("https://127.0.0.1:"),
        "cblogsd says where it listens, with https: {url}"
    );
    let ca_pem = std::fs::read(&ca).expect("read ca.pem");
    let client = http_client(Some(&ca_pem));

    // The real shipper: its ingest token from a file, the private CA.
    let ingest_token = dir.path().join("ingest.token");
    std::fs::write(&ingest_token, format!("# cblogs ingest token\n{INGEST}\n")).expect("write");
    let agent = Agent::new(&dir.path().join("agent"));
    let task = agent.task("www-data", "prod", "secure", 0);
    let mut run = task.process("hello_world", 0);
    let written: Vec<String> = (0..20)
        .map(|i| format!("secure line {i:02} over tls"))
        .collect();
    run.append_lines(Stream::Stdout, &written[..10]);
    let mut shipper = Shipper::start_with(
        &agent,
        &dir.path().join("shipper-state"),
        &url,
        SHIPPER_FAST,
        &[
            os("--ca-cert"),
            ca.as_os_str(),
            os("--token-file"),
            ingest_token.as_os_str(),
        ],
        &[],
    );
    run.append_lines(Stream::Stdout, &written[10..]);
    let job = &task.job;
    wait_until("the shipped lines on cblogsd", DEADLINE, || {
        shipper.assert_running();
        api_lines(&client, &url, READ, job).filter(|l| l.len() >= written.len())
    });
    let shipper_log = shipper.log_text();
    assert!(
        !shipper_log.contains("retrying"),
        "the shipper had nothing to retry:\n{shipper_log}"
    );

    // The real CLI: server and CA by flags, token from CBLOGS_TOKEN.
    let flags = [os("--server"), os(&url), os("--ca-cert"), ca.as_os_str()];
    let read_env = [("CBLOGS_TOKEN", READ)];
    let out = cli_with(
        &args(&flags, &["tail", job, "-n", "100", "--output", "raw"]),
        &read_env,
    );
    assert_eq!(out.code, 0, "cblogs tail over https: {}", out.stderr);
    assert_eq!(
        out.lines(),
        written,
        "cblogs tail prints exactly those lines"
    );

    let out = cli_with(
        &args(&flags, &["grep", "line 1[0-4]", job, "--output", "raw"]),
        &read_env,
    );
    assert_eq!(out.code, 0, "cblogs grep over https: {}", out.stderr);
    assert_eq!(out.lines(), &written[10..15], "cblogs grep: {}", out.stdout);

    // The same from a config file: server, token_file, ca_cert.
    let read_token = dir.path().join("read.token");
    std::fs::write(&read_token, format!("{READ}\n")).expect("write");
    let cli_config = dir.path().join("cblogs.toml");
    std::fs::write(
        &cli_config,
        format!(
            "server = {url:?}\ntoken_file = {:?}\nca_cert = {:?}\n",
            read_token.display().to_string(),
            ca.display().to_string()
        ),
    )
    .expect("write CLI config");
    let out = cli_with(
        &[
            os("--config"),
            cli_config.as_os_str(),
            os("tail"),
            os(job),
            os("-n"),
            os("100"),
            os("--output"),
            os("raw"),
        ],
        &[],
    );
    assert_eq!(out.code, 0, "cblogs --config: {}", out.stderr);
    assert_eq!(out.lines(), written, "cblogs --config tail");

    // Without the CA: the certificate is not trusted.
    let out = cli_with(&[os("--server"), os(&url), os("tail"), os(job)], &read_env);
    assert_ne!(out.code, 0, "an untrusted certificate must fail");
    let err = out.stderr.to_lowercase();
    assert!(
        err.contains("certificate") || err.contains("unknownissuer") || err.contains("issuer"),
        "the CLI says the certificate is not trusted: {}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    eprintln!("without --ca-cert: {}", out.stderr.trim());

    // Without a token: which one is missing and how to give it.
    let out = cli_with(&args(&flags, &["tail", job]), &[]);
    assert_ne!(out.code, 0, "no token must fail");
    assert!(
        out.stderr.contains("read token") && out.stderr.contains("CBLOGS_TOKEN"),
        "the CLI names the missing read token and CBLOGS_TOKEN: {}",
        out.stderr
    );
    eprintln!("without a token: {}", out.stderr.trim());
    // The ingest token is not a read token.
    let out = cli_with(&args(&flags, &["tail", job]), &[("CBLOGS_TOKEN", INGEST)]);
    assert_ne!(out.code, 0, "an ingest token may not read");
    assert!(out.stderr.contains("may not read"), "{}", out.stderr);

    // Plain http to the TLS port gets no answer.
    let plain = url.replacen("https://", "http://", 1);
    let out = cli_with(
        &[os("--server"), os(&plain), os("tail"), os(job)],
        &read_env,
    );
    assert_ne!(out.code, 0, "plain http to the TLS port: {}", out.stdout);
    eprintln!("plain http to the TLS port: {}", out.stderr.trim());
    let r = http_client(None).get(format!("{plain}/healthz")).send();
    assert!(
        r.is_err(),
        "plain http to the TLS port must fail, got {:?}",
        r.map(|r| r.status())
    );
    // And https still works after that.
    let a = call(&client, "GET", &format!("{url}/healthz"), Cred::None);
    assert_eq!(a.status, 200);
    // Over TLS the session cookie is Secure too.
    let a = call(
        &client,
        "POST",
        &format!("{url}/api/v1/session"),
        Cred::Bearer(READ),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let cookie = a.header("set-cookie");
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    shipper.stop();
    eprintln!(
        "shipper_and_cli_with_tokens_over_tls: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 4. No token ever appears in a log.
// ---------------------------------------------------------------------------

/// Every token this test uses, valid or not.
const NEW_READ: &str = "read-tok-rotated-77c1e0d94b";
const SHIPPER_BOGUS: &str = "shipper-bogus-tok-5e5e5e5e5e";
const ALL_TOKENS: [&str; 6] = [INGEST, READ, ADMIN, BOGUS, NEW_READ, SHIPPER_BOGUS];

fn assert_no_token(what: &str, text: &str) {
    for t in ALL_TOKENS {
        // Also a token's long tail, in case something cuts a prefix off.
        let tail = &t[t.len() - 12..];
        assert!(
            !text.contains(t) && !text.contains(tail),
            "{what} holds the token {t:?}:\n{text}"
        );
    }
}

/// Requests with valid, unknown and wrong-role tokens, cookies and
/// sessions against `base`; every CLI output is kept in `outputs`.
fn exercise(
    base: &str,
    read: &str,
    job: &str,
    client: &reqwest::blocking::Client,
    outputs: &mut Vec<(String, String)>,
) {
    let calls: [(&str, &str, Cred); 12] = [
        ("GET", "/api/v1/jobs", Cred::Bearer(read)),
        ("GET", "/api/v1/jobs", Cred::Bearer(ADMIN)),
        ("GET", "/api/v1/jobs", Cred::Bearer(BOGUS)),
        ("GET", "/api/v1/jobs", Cred::Bearer(INGEST)),
        ("GET", "/api/v1/jobs", Cred::None),
        ("GET", "/api/v1/jobs", Cred::Cookie(read)),
        ("GET", "/api/v1/jobs", Cred::Cookie(BOGUS)),
        ("POST", "/api/v1/session", Cred::Bearer(read)),
        ("POST", "/api/v1/session", Cred::Bearer(BOGUS)),
        ("POST", "/api/v1/admin/flush", Cred::Bearer(read)),
        ("POST", "/api/v1/admin/flush", Cred::Bearer(ADMIN)),
        ("POST", "/api/v1/ingest", Cred::Bearer(BOGUS)),
    ];
    for (method, path, cred) in calls {
        let a = call(client, method, &format!("{base}{path}"), cred);
        // What the server answers must not echo a token either, save the
        // session's own Set-Cookie.
        if path != "/api/v1/session" || a.status != 200 {
            assert_no_token(&format!("{method} {path} ({cred:?}) answer"), &a.body);
        }
    }
    let mut cli = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec![os("--server"), os(base)];
        all.extend(args.iter().map(|a| os(a)));
        let mut env = env.to_vec();
        env.push(("RUST_LOG", "debug"));
        let out = cli_with(&all, &env);
        outputs.push((format!("cblogs {args:?} stdout"), out.stdout));
        outputs.push((format!("cblogs {args:?} stderr"), out.stderr));
        out.code
    };
    assert_eq!(cli(&["tail", job], &[("CBLOGS_TOKEN", read)]), 0);
    assert_ne!(cli(&["tail", job], &[("CBLOGS_TOKEN", BOGUS)]), 0);
    assert_ne!(cli(&["tail", job], &[("CBLOGS_TOKEN", INGEST)]), 0);
    assert_ne!(cli(&["jobs"], &[]), 0);
    assert_ne!(
        cli(&["grep", "x", job], &[("CBLOGS_TOKEN", "short token")]),
        0
    );
}

#[test]
fn tokens_never_appear_in_logs() {
    bin_dir(); // builds the binaries: not part of the time printed
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let read_file = dir.path().join("read.tokens");
    std::fs::write(&read_file, format!("{READ}\n")).expect("write");
    let config = |read_file: &Path| {
        format!(
            "{SMALL_BLOCKS}[auth]\ningest_tokens = [{INGEST:?}]\nadmin_tokens = [{ADMIN:?}]\n\
             read_token_files = [{:?}]\n",
            read_file.display().to_string()
        )
    };
    let debug = [("RUST_LOG", "debug")];
    let mut server = Server::start_with(
        &dir.path().join("data"),
        Some(&config(&read_file)),
        "127.0.0.1:0",
        &debug,
    );
    let base = server.url.clone();
    let client = http_client(None);
    let mut outputs = Vec::new();

    // A shipper that starts with a token nobody knows, then is given the
    // right one: 401s, a re-read, deliveries.
    let ship_token = dir.path().join("ship.token");
    write_atomically(&ship_token, &format!("{SHIPPER_BOGUS}\n"));
    let agent = Agent::new(&dir.path().join("agent"));
    let task = agent.task("www-data", "prod", "quiet", 0);
    let mut run = task.process("hello_world", 0);
    run.append_lines(Stream::Stdout, &["first line", "second line"]);
    let mut shipper = Shipper::start_with(
        &agent,
        &dir.path().join("shipper-state"),
        &base,
        SHIPPER_FAST,
        &[os("--token-file"), ship_token.as_os_str()],
        &debug,
    );
    wait_until("the shipper's 401", DEADLINE, || {
        shipper.assert_running();
        shipper
            .log_text()
            .contains("401 Unauthorized")
            .then_some(())
    });
    write_atomically(&ship_token, &format!("{INGEST}\n"));
    let job = task.job.clone();
    wait_until("the shipped lines", DEADLINE, || {
        api_lines(&client, &base, READ, &job).filter(|l| l.len() == 2)
    });

    exercise(&base, READ, &job, &client, &mut outputs);

    // Rotation: the read token file now holds a new token.
    write_atomically(&read_file, &format!("# rotated\n{NEW_READ}\n"));
    sighup(&server);
    wait_until("the rotated read token", DEADLINE, || {
        let old = call(
            &client,
            "GET",
            &format!("{base}/api/v1/jobs"),
            Cred::Bearer(READ),
        );
        let new = call(
            &client,
            "GET",
            &format!("{base}/api/v1/jobs"),
            Cred::Bearer(NEW_READ),
        );
        (old.status == 401 && new.status == 200).then_some(())
    });
    exercise(&base, NEW_READ, &job, &client, &mut outputs);
    // A bad token file on SIGHUP: refused without echoing what it holds.
    write_atomically(&read_file, "short\n");
    sighup(&server);
    wait_until("the refused reload in the log", DEADLINE, || {
        server
            .log_text()
            .contains("tokens not reloaded")
            .then_some(())
    });
    let a = call(
        &client,
        "GET",
        &format!("{base}/api/v1/jobs"),
        Cred::Bearer(NEW_READ),
    );
    assert_eq!(a.status, 200, "the tokens in force stay: {}", a.body);

    shipper.stop();
    server.stop();
    let server_log = server.log_text();
    let shipper_log = shipper.log_text();
    assert!(
        server_log.contains("request refused") && server_log.contains("DEBUG"),
        "cblogsd logged at debug, refusals included:\n{server_log}"
    );
    assert!(
        shipper_log.contains("DEBUG") && shipper_log.contains("401 Unauthorized"),
        "the shipper logged at debug, its 401 included:\n{shipper_log}"
    );
    assert_no_token("cblogsd's log (debug)", &server_log);
    assert_no_token("the shipper's log (debug)", &shipper_log);
    assert!(
        outputs
            .iter()
            .any(|(_, text)| text.contains("not a valid read token")),
        "the CLI's refusals were captured"
    );
    for (what, text) in &outputs {
        assert_no_token(what, text);
    }
    let debug_run = started.elapsed();

    // Once more with everything cblogsd can log.
    let trace_started = Instant::now();
    let trace_read_file = dir.path().join("read-trace.tokens");
    std::fs::write(&trace_read_file, format!("{READ}\n")).expect("write");
    let mut server = Server::start_with(
        &dir.path().join("data-trace"),
        Some(&config(&trace_read_file)),
        "127.0.0.1:0",
        &[("RUST_LOG", "trace")],
    );
    let base = server.url.clone();
    let (body, _) = ingest_body(&job, &["a traced line"]);
    let a = post_ingest(&client, &base, INGEST, &body);
    assert_eq!(a.status, 200, "{}", a.body);
    let mut outputs = Vec::new();
    exercise(&base, READ, &job, &client, &mut outputs);
    server.stop();
    let trace_log = server.log_text();
    assert!(
        trace_log.contains("TRACE") && trace_log.contains("request refused"),
        "cblogsd logged at trace"
    );
    assert_no_token("cblogsd's log (trace)", &trace_log);
    for (what, text) in &outputs {
        assert_no_token(what, text);
    }
    eprintln!(
        "tokens_never_appear_in_logs: debug run {debug_run:?}, trace run {:?} ({} bytes of trace log)",
        trace_started.elapsed(),
        trace_log.len()
    );
}

// ---------------------------------------------------------------------------
// 5. Rotation: SIGHUP on cblogsd, a token file re-read by the shipper.
// ---------------------------------------------------------------------------

#[test]
fn token_rotation_by_sighup() {
    bin_dir(); // builds the binaries: not part of the time printed
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let (read1, read2) = ("read-before-rotation-001", "read-after-rotation-002");
    let (ingest1, ingest2) = ("ingest-before-rotation-01", "ingest-after-rotation-02");
    let read_file = dir.path().join("read.tokens");
    let ingest_file = dir.path().join("ingest.tokens");
    std::fs::write(&read_file, format!("{read1}\n")).expect("write");
    std::fs::write(&ingest_file, format!("{ingest1}\n")).expect("write");
    let config = format!(
        "{SMALL_BLOCKS}[auth]\nadmin_tokens = [{ADMIN:?}]\nread_token_files = [{:?}]\n\
         ingest_token_files = [{:?}]\n",
        read_file.display().to_string(),
        ingest_file.display().to_string()
    );
    let server = Server::start(&dir.path().join("data"), Some(&config));
    let base = server.url.clone();
    let client = http_client(None);
    let jobs = format!("{base}/api/v1/jobs");
    let status = |token| call(&client, "GET", &jobs, Cred::Bearer(token)).status;

    // Read tokens.
    assert_eq!(status(read1), 200, "the read token in the file");
    assert_eq!(status(read2), 401, "not yet");
    write_atomically(&read_file, &format!("{read2}\n"));
    sighup(&server);
    wait_until(
        "the old read token refused, the new one taken",
        DEADLINE,
        || (status(read1) == 401 && status(read2) == 200).then_some(()),
    );
    let log = server.log_text();
    assert!(log.contains("tokens reloaded"), "{log}");

    // Ingest tokens, and a shipper that is moved over.
    let ship_token = dir.path().join("ship.token");
    write_atomically(&ship_token, &format!("{ingest1}\n"));
    let agent = Agent::new(&dir.path().join("agent"));
    let task = agent.task("www-data", "prod", "rotating", 0);
    let mut run = task.process("hello_world", 0);
    let before: Vec<String> = (0..5).map(|i| format!("before rotation {i}")).collect();
    let after: Vec<String> = (0..5).map(|i| format!("after rotation {i}")).collect();
    run.append_lines(Stream::Stdout, &before);
    let mut shipper = Shipper::start_with(
        &agent,
        &dir.path().join("shipper-state"),
        &base,
        SHIPPER_FAST,
        &[os("--token-file"), ship_token.as_os_str()],
        &[],
    );
    let job = task.job.clone();
    wait_until("the lines shipped with the first token", DEADLINE, || {
        shipper.assert_running();
        api_lines(&client, &base, read2, &job).filter(|l| *l == before)
    });

    write_atomically(&ingest_file, &format!("{ingest2}\n"));
    sighup(&server);
    let (probe, _) = ingest_body("www-data/prod/probe", &["probe"]);
    let ingest_status = |token| post_ingest(&client, &base, token, &probe).status;
    wait_until(
        "the old ingest token refused, the new one taken",
        DEADLINE,
        || (ingest_status(ingest1) == 401 && ingest_status(ingest2) == 200).then_some(()),
    );

    // Lines written now are refused (401) until the shipper's file holds
    // the new token; it reads the file again after a 401.
    run.append_lines(Stream::Stdout, &after);
    wait_until("the shipper's 401 with the old token", DEADLINE, || {
        shipper.assert_running();
        shipper
            .log_text()
            .contains("401 Unauthorized")
            .then_some(())
    });
    assert_eq!(
        api_lines(&client, &base, read2, &job).as_deref(),
        Some(&before[..]),
        "nothing gets in with the old token"
    );
    write_atomically(&ship_token, &format!("# rotated\n{ingest2}\n"));
    let want: Vec<String> = before.iter().chain(&after).cloned().collect();
    wait_until(
        "the lines written meanwhile, with the new token",
        DEADLINE,
        || {
            shipper.assert_running();
            api_lines(&client, &base, read2, &job).filter(|l| *l == want)
        },
    );
    shipper.stop();
    let shipper_log = shipper.log_text();
    for t in [ingest1, ingest2, read1, read2] {
        assert!(
            !shipper_log.contains(t),
            "the shipper logged a token:\n{shipper_log}"
        );
        assert!(!server.log_text().contains(t), "cblogsd logged a token");
    }
    eprintln!("token_rotation_by_sighup: {:?}", started.elapsed());
}

/// A reload right after start (SIGHUP as soon as cblogsd says it listens)
/// must reload, not kill it: SIGHUP's default action ends a process that
/// has no handler for it yet.
#[test]
fn sighup_right_after_start_keeps_cblogsd_running() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = http_client(None);
    for i in 0..10 {
        let data = dir.path().join(format!("data{i}"));
        let server = Server::start(&data, None);
        sighup(&server);
        wait_until("cblogsd to reload its tokens", DEADLINE, || {
            if server.log_text().contains("tokens reloaded") {
                return Some(());
            }
            let alive = client.get(format!("{}/healthz", server.url)).send().is_ok();
            assert!(
                alive,
                "cblogsd died from a SIGHUP sent right after it said it listens (try {i}); log:\n{}",
                server.log_text()
            );
            None
        });
    }
}
