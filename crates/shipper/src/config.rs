//! The shipper's settings: an embedded default, a TOML file, flags on top.
//!
//! Every setting is documented in `config/shipper.toml`; this file and that
//! one must name the same settings with the same defaults (a test checks).

use std::path::{Path, PathBuf};
use std::time::Duration;

use cblogs_core::serverset::ServersetAddr;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The Mesos agent's work dir (its `--work_dir`).
    pub work_dir: PathBuf,
    /// Thermos' checkpoint root, for tasks of older Thermos versions that
    /// logged to `<root>/logs/<task id>/…`. Empty: do not look there.
    pub checkpoint_root: PathBuf,
    /// `cblogsd`'s base URL; or several, comma-separated (a TOML list is
    /// joined so); or a serverset, `zk://HOST:PORT/PATH` ([`ServerSpec`]).
    #[serde(deserialize_with = "one_or_many")]
    pub server: String,
    /// A file holding the ingest token; empty: `CBLOGS_TOKEN`, or none.
    pub token_file: PathBuf,
    /// Extra CA certificates (PEM) to trust for an https server.
    pub ca_cert: PathBuf,
    /// Where checkpoints are kept.
    pub state_dir: PathBuf,
    /// The Aurora cluster this agent belongs to.
    pub cluster: String,
    /// This agent's name in every source; empty: the machine's hostname.
    pub host: String,
    /// Address of the status endpoint (`GET /status`); "off" disables it.
    pub status_listen: String,
    /// Where to start a file found on the very first start (no checkpoints
    /// yet): "beginning" ships what is already there, "end" only new lines.
    pub start_at: StartAt,
    pub discovery: DiscoveryConfig,
    pub tail: TailConfig,
    pub ship: ShipConfig,
    pub checkpoint: CheckpointConfig,
    /// Overrides of the task id split, tried in order before the standard one.
    pub job_rules: Vec<JobRule>,
    /// Files outside sandboxes (the agent's and the scheduler's own logs).
    pub files: Vec<FilesEntry>,
}

/// `[[files]]`: the files a glob names, and the job their lines get.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FilesEntry {
    /// An absolute path whose file name may hold a glob
    /// (`/var/log/mesos/mesos-agent.*.log`); each file it matches is a stream.
    pub path: String,
    /// The job its lines are shown under: `role/env/name`, the cluster
    /// being the shipper's.
    pub job: String,
    #[serde(default)]
    pub instance: u32,
    /// The process name; empty: the file's name.
    #[serde(default)]
    pub process: String,
    /// `stdout` or `stderr`.
    #[serde(default = "default_stream")]
    pub stream: cblogs_core::Stream,
}

fn default_stream() -> cblogs_core::Stream {
    cblogs_core::Stream::Stdout
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    Beginning,
    End,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// A full walk of the work dir at this interval while inotify does not
    /// watch every folder (not available, or past its watch limit).
    pub rescan_interval_ms: u64,
    /// With inotify watching every folder, events name what changed and
    /// only that is walked; a full walk still runs at this interval.
    pub full_rescan_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TailConfig {
    /// How often a tailed file inotify does not cover is checked for new
    /// bytes, rotation and truncation.
    pub poll_interval_ms: u64,
    /// A file inotify covers is read when a write is reported, and still
    /// checked once in this time, in a rolling sweep.
    pub sweep_interval_ms: u64,
    /// A last line with no newline yet is sent, marked partial, once it is this old.
    pub partial_line_delay_ms: u64,
    /// Longer lines keep their first this-many bytes and are marked cut.
    pub max_line_bytes: usize,
    /// At most this many bytes are read from one file at a time.
    pub read_chunk_bytes: usize,
    /// Reading pauses while this many bytes of lines wait to be sent.
    pub max_buffered_bytes: usize,
    /// Raise the open-file limit to this (the hard limit caps it): every
    /// tailed file holds a descriptor.
    pub max_open_files: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShipConfig {
    /// A request carries at most this many bytes of lines…
    pub batch_max_bytes: usize,
    /// …and a line waits at most this long before it is sent.
    pub batch_max_delay_ms: u64,
    /// Requests awaiting an answer at once.
    pub max_in_flight: usize,
    /// With none in flight, lines are sent at once, but at most once per
    /// this many milliseconds.
    pub min_request_gap_ms: u64,
    /// zstd level of request bodies; 0 sends them uncompressed.
    pub zstd_level: i32,
    /// One request's time limit; a request that times out is retried.
    pub request_timeout_ms: u64,
    /// First retry delay; it doubles, with jitter, up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// On shutdown, how long to wait for lines in flight to be acknowledged.
    pub shutdown_grace_ms: u64,
    /// How often the server is asked for its incarnation and what it holds
    /// of this agent's sources. A server that lost its disk comes back with
    /// another incarnation; every stream it no longer holds is read and
    /// sent again from what it holds, quiet ones included.
    pub incarnation_check_ms: u64,
    /// With several nodes: one unreachable this long gives up its sources.
    pub failover_after_ms: u64,
    /// A node that joins or comes back takes sources once it has answered
    /// this long…
    pub node_settle_ms: u64,
    /// …each once the node it leaves published it, waiting at most this.
    pub move_wait_ms: u64,
    /// With a serverset: how often it is read.
    pub serverset_poll_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Acknowledged offsets are written at least this often (and on shutdown).
    pub interval_ms: u64,
}

/// A task id pattern whose named groups `role`, `env` and `name` (and
/// optionally `instance`) give the job, for ids the standard split gets wrong.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRule {
    pub task_id: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            work_dir: PathBuf::from("/var/lib/mesos"),
            checkpoint_root: PathBuf::from("/var/run/thermos"),
            server: cblogs_core::DEFAULT_SERVER.to_owned(),
            state_dir: PathBuf::from("/var/lib/cblogs-shipper"),
            cluster: "default".to_owned(),
            host: String::new(),
            status_listen: "127.0.0.1:7451".to_owned(),
            token_file: PathBuf::new(),
            ca_cert: PathBuf::new(),
            start_at: StartAt::Beginning,
            discovery: DiscoveryConfig::default(),
            tail: TailConfig::default(),
            ship: ShipConfig::default(),
            checkpoint: CheckpointConfig::default(),
            job_rules: Vec::new(),
            files: Vec::new(),
        }
    }
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            rescan_interval_ms: 1000,
            full_rescan_interval_ms: 60_000,
        }
    }
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            poll_interval_ms: 250,
            sweep_interval_ms: 10_000,
            partial_line_delay_ms: 1000,
            max_line_bytes: 1 << 20,
            read_chunk_bytes: 64 << 10,
            max_buffered_bytes: 4 << 20,
            max_open_files: 65536,
        }
    }
}

impl Default for ShipConfig {
    fn default() -> Self {
        ShipConfig {
            batch_max_bytes: 1 << 20,
            batch_max_delay_ms: 200,
            max_in_flight: 4,
            min_request_gap_ms: 50,
            zstd_level: 3,
            request_timeout_ms: 10_000,
            retry_initial_ms: 100,
            retry_max_ms: 10_000,
            shutdown_grace_ms: 5_000,
            incarnation_check_ms: 30_000,
            failover_after_ms: 3_000,
            node_settle_ms: 10_000,
            move_wait_ms: 60_000,
            serverset_poll_ms: 2_000,
        }
    }
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { interval_ms: 1000 }
    }
}

impl Config {
    /// Reads a TOML file; settings it leaves out keep their defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        ServerSpec::parse(&self.server).map_err(ConfigError::Invalid)?;
        if self.ship.serverset_poll_ms == 0 {
            return bad("ship.serverset_poll_ms must be above 0");
        }
        if self.cluster.is_empty() || self.cluster.contains('/') {
            return bad("cluster must be a non-empty name without '/'");
        }
        if self.host.contains('/') {
            return bad("host must not contain '/'");
        }
        if self.tail.max_line_bytes == 0 || self.tail.read_chunk_bytes == 0 {
            return bad("tail.max_line_bytes and tail.read_chunk_bytes must be above 0");
        }
        if self.tail.max_buffered_bytes < self.ship.batch_max_bytes {
            return bad("tail.max_buffered_bytes must be at least ship.batch_max_bytes");
        }
        if self.ship.max_in_flight == 0 || self.ship.batch_max_bytes == 0 {
            return bad("ship.max_in_flight and ship.batch_max_bytes must be above 0");
        }
        if self.checkpoint.interval_ms == 0 || self.checkpoint.interval_ms > 1000 {
            return bad("checkpoint.interval_ms must be between 1 and 1000");
        }
        if self.tail.poll_interval_ms == 0 || self.discovery.rescan_interval_ms == 0 {
            return bad("tail.poll_interval_ms and discovery.rescan_interval_ms must be above 0");
        }
        if self.tail.sweep_interval_ms < self.tail.poll_interval_ms
            || self.discovery.full_rescan_interval_ms < self.discovery.rescan_interval_ms
        {
            return bad(
                "tail.sweep_interval_ms must be at least tail.poll_interval_ms, and \
                 discovery.full_rescan_interval_ms at least discovery.rescan_interval_ms",
            );
        }
        for f in &self.files {
            crate::files::FilesWatch::new(f, &self.cluster, "h").map_err(ConfigError::Invalid)?;
        }
        Ok(())
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.tail.poll_interval_ms)
    }
}

/// `server` as a string, or a TOML list of them (joined with commas).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s,
        OneOrMany::Many(v) => v.join(","),
    })
}

/// Where the shipper sends: `server` read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerSpec {
    /// One or more base URLs, as given.
    Urls(Vec<String>),
    /// The live members of a serverset that take ingest.
    Serverset(ServersetAddr),
}

impl ServerSpec {
    /// Reads `server`; the error names what is wrong with it.
    pub fn parse(server: &str) -> Result<ServerSpec, String> {
        if let Some(addr) = ServersetAddr::parse(server.trim()) {
            return addr
                .map(ServerSpec::Serverset)
                .map_err(|e| format!("server {e}"));
        }
        let urls: Vec<String> = server
            .split(',')
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err("server is empty: give cblogsd's URL".into());
        }
        if let Some(bad) = urls
            .iter()
            .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return Err(format!(
                "server '{bad}' is not an http:// or https:// URL (nor a zk://HOST:PORT/PATH serverset)"
            ));
        }
        Ok(ServerSpec::Urls(urls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_one_url_a_list_or_a_serverset() {
        let urls = |v: &[&str]| ServerSpec::Urls(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            ServerSpec::parse("http://a:7450/").unwrap(),
            urls(&["http://a:7450"])
        );
        assert_eq!(
            ServerSpec::parse("http://a:7450, https://b:7450").unwrap(),
            urls(&["http://a:7450", "https://b:7450"])
        );
        let cfg: Config =
            toml::from_str("server = [\"http://a:7450\", \"http://b:7450\"]\n").unwrap();
        assert_eq!(
            ServerSpec::parse(&cfg.server).unwrap(),
            urls(&["http://a:7450", "http://b:7450"])
        );
        assert!(matches!(
            ServerSpec::parse("zk://zk1:2181/aurora/www-data/prod/cblogsd").unwrap(),
            ServerSpec::Serverset(a) if a.path == "/aurora/www-data/prod/cblogsd"
        ));
        for (bad, says) in [
            ("a:7450", "not an http:// or https:// URL"),
            ("http://a:7450,b", "'b' is not"),
            ("zk://zk1:2181", "expected zk://HOST:PORT"),
            (" , ", "server is empty"),
        ] {
            let err = ServerSpec::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    /// `config/shipper.toml` documents exactly the defaults.
    #[test]
    fn example_file_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/shipper.toml");
        let file = Config::load(&path).unwrap();
        file.validate().unwrap();
        assert_eq!(format!("{file:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<Config>("[tail]\npoll_ms = 5\n").unwrap_err();
        assert!(err.to_string().contains("poll_ms"), "{err}");
    }
}
