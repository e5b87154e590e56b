//! `cblogsd`'s settings: an embedded default, a TOML file, and flags on top.
//!
//! Every setting is documented in `config/cblogsd.toml`; this file and that
//! one must name the same settings with the same defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Address and port of the HTTP API and web page.
    pub listen: SocketAddr,
    /// Where the WAL, block store and indexes live.
    pub data_dir: PathBuf,
    pub ingest: IngestConfig,
    pub storage: StorageConfig,
    pub read: ReadConfig,
    pub search: SearchConfig,
    pub alerts: AlertsConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub object_store: ObjectStoreConfig,
    pub cache: CacheConfig,
    pub merge: MergeConfig,
    pub cluster: ClusterConfig,
    /// `[[multiline]]`: how the events of jobs that do not log Java or
    /// Python traces are cut (`multiline/`).
    pub multiline: Vec<MultilineConfig>,
}

/// One `[[multiline]]` rule: the jobs it names and the regex an event's
/// first line matches; every other line continues the event before it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// Job selectors, as `cblogs tail` takes them (`www-data/prod/hello`,
    /// `www-data/*/hello/0-3`).
    pub jobs: Vec<String>,
    /// A line that matches it opens an event.
    pub firstline: String,
    /// Lines an event holds at most: the line past it opens another.
    #[serde(default = "default_multiline_max_lines")]
    pub max_lines: usize,
}

fn default_multiline_max_lines() -> usize {
    500
}

/// `[cluster]`: this node among others (`cluster/`): its id, and where the
/// others are found.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's id, stable across restarts and ports (sources are
    /// hashed over it). Empty: made once into `<data_dir>/node_id`.
    pub node_id: String,
    /// ZooKeeper's connect string (`host:port,host:port`); empty: none.
    pub zookeeper: String,
    /// The serverset the nodes are members of (Aurora announces a job
    /// under `/aurora/<role>/<env>/<job>`).
    pub serverset_path: String,
    /// This node writes its own member; false when Aurora's announcer
    /// writes it (one writer per entry).
    pub announce: bool,
    /// The ZooKeeper session's timeout: past it, a node cut off leaves the
    /// serverset.
    pub session_timeout_ms: u64,
    /// `host:port` the other nodes and clients reach this node at. Empty:
    /// the address it listens on (which must then not be 0.0.0.0).
    pub advertise: String,
    /// Without ZooKeeper: every node's URL (`http://host:7450`).
    pub nodes: Vec<String>,
    /// What this node does (`--role`): `all`, or only `ingest` (it answers
    /// no queries of users) or only `query` (it takes no lines).
    pub role: NodeRole,
    /// A file whose first line is the token every node of the cluster
    /// shares: presented to the other nodes, accepted from them (it may
    /// read). Needed when the cluster is not all on loopback.
    pub token_file: PathBuf,
    /// PEM file of the CA (or the certificate itself) that the other
    /// nodes' https certificates are checked against, besides the
    /// system's roots.
    pub ca_cert: PathBuf,
    /// How long a request to another node may take (connecting included)
    /// before that node counts as not answering.
    pub peer_timeout_ms: u64,
    /// How long a node that left the serverset is still asked by fan-out
    /// reads (and named as not answering), while it owns a source.
    pub departed_grace_secs: u64,
}

/// What a node does: `[cluster] role`, `cblogsd --role`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Takes lines and answers queries.
    #[default]
    All,
    /// Takes lines; answers the other nodes, not users' queries.
    Ingest,
    /// Answers queries; takes no lines.
    Query,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::All => "all",
            NodeRole::Ingest => "ingest",
            NodeRole::Query => "query",
        }
    }
    pub fn ingests(self) -> bool {
        self != NodeRole::Query
    }
    pub fn queries(self) -> bool {
        self != NodeRole::Ingest
    }
}

impl ClusterConfig {
    /// Other nodes are configured: through ZooKeeper, or listed.
    pub fn is_cluster(&self) -> bool {
        !self.zookeeper.is_empty() || !self.nodes.is_empty()
    }

    /// `token_file`, if set.
    pub fn token_file(&self) -> Option<&Path> {
        (!self.token_file.as_os_str().is_empty()).then_some(self.token_file.as_path())
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: String::new(),
            zookeeper: String::new(),
            serverset_path: String::new(),
            announce: true,
            session_timeout_ms: 10_000,
            advertise: String::new(),
            nodes: Vec::new(),
            role: NodeRole::All,
            token_file: PathBuf::new(),
            ca_cert: PathBuf::new(),
            peer_timeout_ms: 3_000,
            departed_grace_secs: 300,
        }
    }
}

/// `[merge]`: background merges of published splits (`store/merge/`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MergeConfig {
    /// Merges run at all.
    pub enabled: bool,
    /// This many splits of one window and one level, next to each other
    /// in time, are merged into one of the next level.
    pub merge_factor: usize,
    /// A window whose newest line is older than this (line time) is
    /// settled: its splits are merged whatever their number and level.
    pub settle_secs: u64,
    /// A split this big is not merged again, and no merge makes a bigger one.
    pub max_split_bytes: u64,
    /// A merge combines one source's small blocks, next to each other in
    /// the stream, into blocks of up to this many bytes of text.
    pub block_bytes: usize,
    /// zstd level of merged blocks.
    pub zstd_level: i32,
    /// Scheduling priority (`nice`, 0-19) of the merge thread: ingest,
    /// live tails and searches come first.
    pub nice: i32,
}

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig {
            enabled: true,
            merge_factor: 10,
            settle_secs: 3_600,
            max_split_bytes: 2 << 30,
            block_bytes: 256 << 10,
            zstd_level: 9,
            nice: 10,
        }
    }
}

impl MergeConfig {
    pub fn settle_ns(&self) -> i64 {
        i64::try_from(self.settle_secs.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX)
    }
}

/// `[cache]`: this disk's cache of what a remote object store holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Bytes of published splits' indexes kept in `<data_dir>/cache/`
    /// (remote store only); the least recently used go first. A bound on
    /// disk: the memory caches are `search.block_cache_bytes` and
    /// `search.term_cache_bytes`, which it does not replace.
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: 10 << 30,
        }
    }
}

/// `[object_store]`: where published splits and the metastore live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectStoreConfig {
    /// Empty: the embedded default, `bucket/` in the data dir.
    /// `s3://bucket/prefix`: an S3-compatible store.
    pub url: String,
    /// The store's address, for stores other than AWS S3.
    pub endpoint: String,
    pub region: String,
    /// Plain http to `endpoint` (a store on the same host or network).
    pub allow_http: bool,
    /// A TOML file with `access_key_id` and `secret_access_key` (and
    /// optionally `session_token`); empty: the environment's
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    pub credentials_file: PathBuf,
}

impl ObjectStoreConfig {
    /// Where the store is, for messages: its URL (and endpoint), or the
    /// embedded default's folder under `data_dir`.
    pub fn describe(&self, data_dir: &Path) -> String {
        match (self.url.is_empty(), self.endpoint.is_empty()) {
            (true, _) => data_dir.join("bucket").display().to_string(),
            (false, true) => self.url.clone(),
            (false, false) => format!("{} at {}", self.url, self.endpoint),
        }
    }
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        ObjectStoreConfig {
            url: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            allow_http: false,
            credentials_file: PathBuf::new(),
        }
    }
}

/// `[auth]` in cblogsd.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub ingest_tokens: Vec<String>,
    pub ingest_token_files: Vec<PathBuf>,
    pub read_tokens: Vec<String>,
    pub read_token_files: Vec<PathBuf>,
    pub admin_tokens: Vec<String>,
    pub admin_token_files: Vec<PathBuf>,
}

/// `[tls]`: with both files set, everything is served over https only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's own certificate first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty() || !self.key_file.as_os_str().is_empty()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// The alert rules file; empty: no alerting.
    pub rules_file: PathBuf,
    /// Where the web page is, for the links in notifications.
    pub base_url: String,
    /// How often windows are checked (expiry, resolve, repeat).
    pub eval_interval_ms: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            rules_file: PathBuf::new(),
            base_url: format!("http://127.0.0.1:{}", cblogs_core::DEFAULT_PORT),
            eval_interval_ms: 250,
        }
    }
}

impl AlertsConfig {
    pub fn rules_path(&self) -> Option<PathBuf> {
        (!self.rules_file.as_os_str().is_empty()).then(|| self.rules_file.clone())
    }
    pub fn eval_interval(&self) -> Duration {
        Duration::from_millis(self.eval_interval_ms.max(10))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest request body, after zstd decompression.
    pub max_body_bytes: usize,
    /// Lines longer than this are cut here and marked `cut`.
    pub max_line_bytes: usize,
    /// Most lines in one ingest request, over all its batches (413 past it).
    pub max_lines_per_request: usize,
    /// Bytes of lines per second one token (or, without one, one client
    /// address) may send, with one second's worth of burst; 429 past it.
    /// 0: no limit.
    pub max_bytes_per_sec_per_token: u64,
    /// Pushed lines (Loki push, OTLP) remembered per stream (at least its
    /// last push's) to drop a sender's retry: an entry whose lines all are
    /// among them is a copy.
    pub push_dedup_entries: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// A source's in-memory block is sealed (compressed and indexed) at this many bytes of text…
    pub block_bytes: usize,
    /// …or at this many lines…
    pub block_max_lines: usize,
    /// …or when its oldest line is this old.
    pub block_max_age_ms: u64,
    /// How often sealed blocks are committed to the index (and the WAL trimmed).
    pub commit_interval_ms: u64,
    /// Width of one window of line time: a split never holds blocks of
    /// two windows (so retention by age deletes old lines that arrive
    /// late apart from new ones).
    pub partition_secs: u64,
    /// A split being built is sealed and published at this age…
    pub split_max_age_secs: u64,
    /// …or at this many bytes of compressed blocks.
    pub split_max_bytes: u64,
    /// A split staged this long ago, and neither published nor being
    /// uploaded here, was abandoned: its objects are deleted.
    pub abandoned_split_secs: u64,
    /// Partitions whose newest line is older than this are deleted. 0 keeps everything.
    pub retention_days: u64,
    /// Past this many bytes of splits on this disk, the oldest published
    /// ones are deleted until the rest fit (the local store only). 0: no budget.
    pub max_disk_bytes: u64,
    /// Past this many bytes of published splits in the object store, the
    /// oldest are deleted until the rest fit. 0: no budget.
    pub max_bucket_bytes: u64,
    /// How often retention (age and disk budget) is checked.
    pub retention_check_secs: u64,
    /// zstd level for sealed blocks.
    pub zstd_level: i32,
    /// A WAL segment is closed and a new one started past this size.
    pub wal_segment_bytes: u64,
    /// zstd level of WAL records' blocks; 0 writes them as is.
    pub wal_zstd_level: i32,
    /// Past this much WAL on disk, open blocks are sealed early so that the
    /// oldest segments can be trimmed.
    pub wal_max_bytes: u64,
    /// Memory budget of each partition's tantivy writer.
    pub index_writer_bytes: usize,
    /// Past this many bytes of lines held in memory and not yet in the
    /// index, ingest waits for the committer (up to 5 s, then 503).
    pub max_unindexed_bytes: u64,
    /// Past this much WAL (everything not yet published to the object
    /// store), ingest answers 503: the store has been failing for a while.
    pub max_unpublished_bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadConfig {
    /// Lines a follow stream may fall behind before it is told it lagged.
    pub follow_buffer_batches: usize,
    /// Seconds between keep-alive comments on an idle follow stream.
    pub keepalive_secs: u64,
    /// Live tails (follow streams) one client address may hold open; 429 past it.
    pub max_follows_per_client: usize,
    /// The most lines one `tail` request may ask for (`n`); 413 past it.
    pub max_tail_lines: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// A search (or histogram) stops after this long and answers with what
    /// it found, marked truncated.
    pub max_query_secs: u64,
    /// Largest compiled form of a pattern, in bytes; a larger one is refused.
    pub regex_size_limit: usize,
    /// The most context lines (-A/-B/-C) a search may ask for on each side.
    pub max_context_lines: usize,
    /// Searches and histograms running at once; past it 503 (retry shortly).
    pub max_concurrent: usize,
    /// Blocks verified at once across every search (0: one per core).
    pub workers: usize,
    /// Scheduling priority (`nice`, 0-19) of every search thread: ingest
    /// and live tails come first.
    pub nice: i32,
    /// The most matching lines one search request sends; a search with
    /// more ends its page there with `more` and a cursor to go on from.
    pub max_results: usize,
    /// Memory for decoded blocks kept between searches.
    pub block_cache_bytes: usize,
    /// Memory for the index segments' terms kept in one buffer each
    /// (partial-token lookups scan them).
    pub term_cache_bytes: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            max_query_secs: 30,
            regex_size_limit: 10 << 20,
            max_context_lines: 1000,
            max_concurrent: 8,
            workers: 0,
            nice: 10,
            max_results: 100_000,
            block_cache_bytes: 64 << 20,
            term_cache_bytes: 512 << 20,
        }
    }
}

impl SearchConfig {
    pub fn max_query_time(&self) -> Duration {
        Duration::from_secs(self.max_query_secs)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], cblogs_core::DEFAULT_PORT)),
            data_dir: PathBuf::from("./cblogs-data"),
            ingest: IngestConfig::default(),
            storage: StorageConfig::default(),
            read: ReadConfig::default(),
            search: SearchConfig::default(),
            alerts: AlertsConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            object_store: ObjectStoreConfig::default(),
            cache: CacheConfig::default(),
            merge: MergeConfig::default(),
            cluster: ClusterConfig::default(),
            multiline: Vec::new(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 32 << 20,
            max_line_bytes: 1 << 20,
            max_lines_per_request: 100_000,
            max_bytes_per_sec_per_token: 256 << 20,
            push_dedup_entries: 1024,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            block_bytes: 128 << 10,
            block_max_lines: 2048,
            block_max_age_ms: 60_000,
            commit_interval_ms: 1_000,
            partition_secs: 86_400,
            split_max_age_secs: 300,
            split_max_bytes: 256 << 20,
            abandoned_split_secs: 600,
            retention_days: 14,
            max_disk_bytes: 0,
            max_bucket_bytes: 0,
            retention_check_secs: 60,
            zstd_level: 3,
            wal_segment_bytes: 64 << 20,
            wal_zstd_level: 1,
            wal_max_bytes: 1 << 30,
            max_unindexed_bytes: 64 << 20,
            max_unpublished_bytes: 4 << 30,
            index_writer_bytes: 32 << 20,
        }
    }
}

impl Default for ReadConfig {
    fn default() -> Self {
        ReadConfig {
            follow_buffer_batches: 4096,
            keepalive_secs: 15,
            max_follows_per_client: 64,
            max_tail_lines: 100_000,
        }
    }
}

impl Config {
    /// Reads a TOML file; settings it leaves out keep their defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.storage;
        let positive = [
            ("ingest.max_body_bytes", self.ingest.max_body_bytes as u64),
            ("ingest.max_line_bytes", self.ingest.max_line_bytes as u64),
            (
                "ingest.max_lines_per_request",
                self.ingest.max_lines_per_request as u64,
            ),
            ("storage.block_bytes", s.block_bytes as u64),
            ("storage.block_max_lines", s.block_max_lines as u64),
            ("storage.commit_interval_ms", s.commit_interval_ms),
            ("storage.partition_secs", s.partition_secs),
            ("storage.split_max_age_secs", s.split_max_age_secs),
            ("storage.split_max_bytes", s.split_max_bytes),
            ("storage.abandoned_split_secs", s.abandoned_split_secs),
            ("storage.wal_segment_bytes", s.wal_segment_bytes),
            ("storage.wal_max_bytes", s.wal_max_bytes),
            ("storage.max_unindexed_bytes", s.max_unindexed_bytes),
            ("storage.max_unpublished_bytes", s.max_unpublished_bytes),
            ("cache.max_bytes", self.cache.max_bytes),
            ("merge.max_split_bytes", self.merge.max_split_bytes),
            (
                "read.follow_buffer_batches",
                self.read.follow_buffer_batches as u64,
            ),
            ("read.keepalive_secs", self.read.keepalive_secs),
            (
                "read.max_follows_per_client",
                self.read.max_follows_per_client as u64,
            ),
            ("read.max_tail_lines", self.read.max_tail_lines as u64),
            ("search.max_concurrent", self.search.max_concurrent as u64),
            ("search.max_results", self.search.max_results as u64),
            ("storage.retention_check_secs", s.retention_check_secs),
            ("search.max_query_secs", self.search.max_query_secs),
            (
                "search.regex_size_limit",
                self.search.regex_size_limit as u64,
            ),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid(format!(
                "{name} must be greater than 0"
            )));
        }
        if self.tls.enabled()
            && (self.tls.cert_file.as_os_str().is_empty()
                || self.tls.key_file.as_os_str().is_empty())
        {
            return Err(ConfigError::Invalid(
                "tls.cert_file and tls.key_file must be set together".into(),
            ));
        }
        let c = &self.cluster;
        if !c.zookeeper.is_empty() {
            if !c.serverset_path.starts_with('/') || c.serverset_path.len() < 2 {
                return Err(ConfigError::Invalid(format!(
                    "cluster.serverset_path '{}': a ZooKeeper path such as /aurora/www-data/prod/cblogsd is needed with cluster.zookeeper",
                    c.serverset_path
                )));
            }
            if c.session_timeout_ms == 0 {
                return Err(ConfigError::Invalid(
                    "cluster.session_timeout_ms must be greater than 0".into(),
                ));
            }
            if !c.advertise.is_empty()
                && !c.advertise.rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                })
            {
                return Err(ConfigError::Invalid(format!(
                    "cluster.advertise '{}': expected host:port",
                    c.advertise
                )));
            }
            if c.announce && c.advertise.is_empty() && self.listen.ip().is_unspecified() {
                return Err(ConfigError::Invalid(format!(
                    "cluster.advertise: this node listens on {}, which the others cannot reach it at; set the host:port they can",
                    self.listen
                )));
            }
        }
        if c.is_cluster() {
            if c.peer_timeout_ms == 0 {
                return Err(ConfigError::Invalid(
                    "cluster.peer_timeout_ms must be greater than 0".into(),
                ));
            }
            if c.token_file().is_none() {
                if let Some(reached) = off_loopback(self.listen, c) {
                    return Err(ConfigError::Invalid(format!(
                        "cluster.token_file: this cluster is not all on loopback ({reached}), so its nodes must authenticate to each other: put one token (16 or more characters) in a file every node has, and name that file here"
                    )));
                }
            }
        }
        let url = &self.object_store.url;
        if !url.is_empty() && !url.starts_with("s3://") {
            return Err(ConfigError::Invalid(format!(
                "object_store.url '{url}': expected s3://bucket/prefix (or empty: bucket/ in the data dir)"
            )));
        }
        if s.index_writer_bytes < 15_000_000 {
            return Err(ConfigError::Invalid(
                "storage.index_writer_bytes must be at least 15000000 (tantivy's minimum)".into(),
            ));
        }
        for (name, level) in [
            ("storage.zstd_level", s.zstd_level),
            ("merge.zstd_level", self.merge.zstd_level),
        ] {
            if !(1..=22).contains(&level) {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be between 1 and 22"
                )));
            }
        }
        let wal = s.wal_zstd_level;
        if wal != 0 && !zstd::compression_level_range().contains(&wal) {
            let range = zstd::compression_level_range();
            return Err(ConfigError::Invalid(format!(
                "storage.wal_zstd_level must be 0 (records as is) or between {} and {}",
                range.start(),
                range.end()
            )));
        }
        if !(0..=19).contains(&self.search.nice) {
            return Err(ConfigError::Invalid(
                "search.nice must be between 0 and 19".into(),
            ));
        }
        let m = &self.merge;
        if m.merge_factor < 2 {
            return Err(ConfigError::Invalid(
                "merge.merge_factor must be at least 2".into(),
            ));
        }
        if !(0..=19).contains(&m.nice) {
            return Err(ConfigError::Invalid(
                "merge.nice must be between 0 and 19".into(),
            ));
        }
        if m.block_bytes == 0 || m.block_bytes > 64 << 20 {
            return Err(ConfigError::Invalid(
                "merge.block_bytes must be between 1 and 67108864 (64 MiB)".into(),
            ));
        }
        Ok(())
    }
}

impl StorageConfig {
    pub fn retention_check(&self) -> Duration {
        Duration::from_secs(self.retention_check_secs)
    }
    pub fn block_max_age(&self) -> Duration {
        Duration::from_millis(self.block_max_age_ms)
    }
    /// [`StorageConfig::block_max_age`] in nanoseconds, as line times count.
    pub fn block_max_age_ns(&self) -> i64 {
        i64::try_from(self.block_max_age_ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
    }
    /// `split_max_age_secs` in nanoseconds, as line times count.
    pub fn split_max_age_ns(&self) -> i64 {
        i64::try_from(self.split_max_age_secs.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX)
    }
    pub fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms)
    }
    pub fn partition_ns(&self) -> i64 {
        i64::try_from(self.partition_secs.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX)
    }
}

/// Where a cluster's node is reached off the loopback interface, if it
/// is: its listening address, its advertised one, or a listed node's.
fn off_loopback(listen: SocketAddr, c: &ClusterConfig) -> Option<String> {
    if !listen.ip().is_loopback() {
        return Some(format!("this node listens on {listen}"));
    }
    if let Some((host, _)) = c.advertise.rsplit_once(':') {
        if !host_is_loopback(host) {
            return Some(format!("cluster.advertise is {}", c.advertise));
        }
    }
    c.nodes.iter().find_map(|url| {
        let host = reqwest::Url::parse(url).ok()?.host_str()?.to_owned();
        (!host_is_loopback(&host)).then(|| format!("cluster.nodes lists {url}"))
    })
}

fn host_is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/cblogsd.toml");
        let loaded = Config::load(&path).expect("config/cblogsd.toml loads");
        let default = Config::default();
        assert_eq!(format!("{loaded:?}"), format!("{default:?}"));
    }

    #[test]
    fn bad_settings_are_named() {
        let err = toml::from_str::<Config>("[storage]\nblock_bytez = 3").unwrap_err();
        assert!(err.to_string().contains("block_bytez"), "{err}");
        let c: Config = toml::from_str("[storage]\nzstd_level = 99").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("zstd_level"));
        let c: Config = toml::from_str("[storage]\nwal_zstd_level = 23").unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("wal_zstd_level"));
        for ok in ["0", "-5", "1", "19"] {
            let c: Config = toml::from_str(&format!("[storage]\nwal_zstd_level = {ok}")).unwrap();
            assert!(c.validate().is_ok(), "wal_zstd_level = {ok}");
        }
        let refused = |text: &str| {
            let c: Config = toml::from_str(text).unwrap();
            c.validate().unwrap_err().to_string()
        };
        let zk = "[cluster]\nzookeeper = \"zk1:2181\"\n";
        assert!(refused(zk).contains("cluster.serverset_path"));
        let everywhere =
            format!("listen = \"0.0.0.0:7450\"\n{zk}serverset_path = \"/aurora/r/e/j\"\n");
        assert!(refused(&everywhere).contains("cluster.advertise"));
        for bad in ["logs1", "logs1:", ":7450", "logs1:http", "logs1:0"] {
            let text = format!("{everywhere}advertise = \"{bad}\"");
            assert!(refused(&text).contains("expected host:port"), "{bad}");
        }
        // Off loopback, the nodes must authenticate to each other.
        let advertised = format!("{everywhere}advertise = \"logs1:7450\"\n");
        assert!(refused(&advertised).contains("cluster.token_file"));
        let c: Config = toml::from_str(&format!(
            "{advertised}token_file = \"/etc/cblogs/cluster.token\""
        ))
        .unwrap();
        assert!(c.validate().is_ok());
        let local =
            format!("listen = \"127.0.0.1:7450\"\n{zk}serverset_path = \"/aurora/r/e/j\"\n");
        let c: Config = toml::from_str(&local).unwrap();
        assert!(c.validate().is_ok(), "all on loopback: no token needed");
        for (extra, named) in [
            (
                "advertise = \"logs1:7450\"",
                "cluster.advertise is logs1:7450",
            ),
            (
                "nodes = [\"http://127.0.0.1:7451\", \"http://10.0.0.2:7450\"]",
                "http://10.0.0.2:7450",
            ),
        ] {
            let err = refused(&format!("{local}{extra}"));
            assert!(
                err.contains("cluster.token_file") && err.contains(named),
                "{err}"
            );
        }
        let c: Config = toml::from_str(
            "listen = \"127.0.0.1:7450\"\n[cluster]\nnodes = [\"http://localhost:7451\", \"https://[::1]:7452/\"]\nrole = \"query\"",
        )
        .unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(c.cluster.role, NodeRole::Query);
        let err = toml::from_str::<Config>("[cluster]\nrole = \"reader\"").unwrap_err();
        assert!(err.to_string().contains("reader"), "{err}");
    }
}
