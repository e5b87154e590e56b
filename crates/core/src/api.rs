//! The read API's paths and bodies, shared by `cblogsd`, `cblogs` and the tests.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /api/v1/jobs[?pattern=SELECTOR]` | [`JobsResponse`] |
//! | `GET /api/v1/tail?job=SELECTOR[&n=N][&instance=I][&stream=S][&process=P][&labels=L][&since_ns=T]` | [`TailResponse`]: the last `n` lines (default 100) in time order |
//! | `GET /api/v1/follow?…the same…` | Server-Sent Events: `jobs` (a JSON array of job keys), then one `line` event per line ([`crate::LineView`]): first the backlog, then each new line as it is ingested; `truncated` ([`Truncated`]) before a backlog from `since_ns` that had to leave out its oldest lines; `lagged` ([`Lagged`]) if the client fell behind |
//!
//! | `GET /api/v1/search?pattern=P[&progress=MS][&fixed=true][&ignore_case=true][&word=true][&invert=true][&and=REGEX]…[&not=REGEX]…[&job=SELECTOR]…[&instance=I][&stream=S][&process=P][&host=H][&labels=L][&since_ns=T][&until_ns=T][&limit=N][&before=N][&after=N][&mode=lines\|count\|list][&cursor=C]` | NDJSON [`SearchEvent`]s, streamed as they are found: lines in file order per source, merged by time across sources; `limit` (default 1000, 0 for none) counts matching lines; `until_ns` is exclusive; `cursor` (a summary's `next_cursor`) starts after the matches an earlier page showed |
//! | `GET /api/v1/context?source=HEX&offset=N[&before=10][&after=10]` | [`ContextResponse`]: the lines around one line of one source (a search result's `source` and `offset`) |
//! | `GET /api/v1/alerts` | [`AlertsResponse`]: every alert rule, its groups' state, deliveries |
//! | `POST /api/v1/admin/alerts/reload` | [`ReloadResponse`], or 400 naming the rule and field at fault |
//! | `GET /api/v1/histogram?…the search's selection, pattern optional…[&buckets=N\|&step_ns=N][&by=job\|labels]` | [`HistogramResponse`] |
//!
//! `labels` is a LogQL stream selector over a source's labels
//! (`{job="hello", host=~"agent-[0-9]+"}`; see the README's Grafana
//! section); `job` may then be left out. `and` and `not` are regexes a
//! matching line must also match, or must not (case-sensitive unless
//! `(?i)`). A histogram with `step_ns` (it needs `since_ns` and `until_ns`)
//! has buckets of exactly that width from `since_ns`, at most
//! [`MAX_HISTOGRAM_STEPS`]; `by=labels` gives a series per job, stream,
//! host, instance and process.
//!
//! Errors are a [`crate::wire::ErrorBody`] with a 4xx status: 400 for a bad
//! parameter, 404 for a selector that matches no job, 409 for an exact
//! selector that matches several jobs (the `candidates` list them).

use serde::{Deserialize, Serialize};

use crate::LineView;

pub const JOBS_PATH: &str = "/api/v1/jobs";
pub const TAIL_PATH: &str = "/api/v1/tail";
pub const FOLLOW_PATH: &str = "/api/v1/follow";
pub const HEALTH_PATH: &str = "/healthz";
/// POST: seal and commit everything acknowledged so far; answers
/// [`FlushResponse`] when it is in the index.
pub const FLUSH_PATH: &str = "/api/v1/admin/flush";

/// GET: what is stored, the disk budget and what retention deleted
/// ([`StorageResponse`]).
pub const STORAGE_PATH: &str = "/api/v1/storage";
/// GET: this node's id and the nodes it knows of (ZooKeeper's serverset
/// or the static list), and whether that is current.
pub const CLUSTER_PATH: &str = "/api/v1/cluster";
/// GET (read; the other nodes ask it): what this node holds that it has
/// not published, and its upload lag.
pub const CLUSTER_NODE_PATH: &str = "/api/v1/cluster/node";
/// A node's own `tail` (what it holds, published or not), asked by the
/// node that answers a `tail` in a cluster: the same parameters.
pub const CLUSTER_TAIL_PATH: &str = "/api/v1/cluster/tail";
/// A node's own context of a line (`GET /api/v1/context`'s parameters),
/// for a node that asks every node.
pub const CLUSTER_CONTEXT_PATH: &str = "/api/v1/cluster/context";
/// A node's part of a `jobs` listing: its sources' lines not published as
/// of a metastore version (`after_version=`).
pub const CLUSTER_JOBS_PATH: &str = "/api/v1/cluster/jobs";
/// A node's part of a histogram: per source, its matching lines not
/// published as of a metastore version (`after_version=`), in the
/// buckets the asker gives (`since_ns`, `until_ns`, `buckets`).
pub const CLUSTER_HISTOGRAM_PATH: &str = "/api/v1/cluster/histogram";
/// GET: the alert groups whose window is on this node, for a node that
/// answers `GET /api/v1/alerts` in a cluster ([`AlertsResponse`]).
pub const CLUSTER_ALERTS_PATH: &str = "/api/v1/cluster/alerts";
/// POST (nodes only, `[cluster] token_file`'s token): matches of alert
/// rules for the groups whose window is on this node.
pub const CLUSTER_ALERT_HITS_PATH: &str = "/api/v1/cluster/alerts/hits";
/// POST (nodes only): streams pushed to another node (Loki push, OTLP)
/// whose source this node owns, as that node decoded them; answered once
/// they are durable here.
pub const CLUSTER_PUSH_PATH: &str = "/api/v1/cluster/push";
/// A node's own follow, for a node that follows every node: a `live`
/// event ends its backlog.
pub const CLUSTER_FOLLOW_PATH: &str = "/api/v1/cluster/follow";
/// A node's part of a fan-out search: what it holds that is not published
/// as of a metastore version (`after_version=`).
pub const CLUSTER_SEARCH_PATH: &str = "/api/v1/cluster/search";
/// GET: Prometheus text format.
pub const METRICS_PATH: &str = "/metrics";
/// POST with a read token: the web page's cookie; DELETE: forget it.
pub const SESSION_PATH: &str = "/api/v1/session";

/// The answer of [`STORAGE_PATH`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StorageResponse {
    /// Bytes of all splits (blocks and indexes): being built on the
    /// local disk, and published.
    pub disk_bytes: u64,
    /// `storage.max_disk_bytes` (0: none).
    pub max_disk_bytes: u64,
    /// Bytes of the published splits in the object store.
    #[serde(default)]
    pub bucket_bytes: u64,
    /// `storage.max_bucket_bytes` (0: none).
    #[serde(default)]
    pub max_bucket_bytes: u64,
    /// `storage.retention_days` (0: keep everything).
    pub retention_days: u64,
    pub wal_bytes: u64,
    /// Lines held in memory, not yet in the index.
    pub unindexed_bytes: u64,
    /// False while the disk is full: ingest answers 503 until it is not.
    pub ingest_available: bool,
    /// Why ingest is unavailable, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_error: Option<String>,
    /// Per window of line time (`storage.partition_secs`): its splits
    /// added up.
    pub partitions: Vec<PartitionSummary>,
    /// Every split, oldest window first.
    #[serde(default)]
    pub splits: Vec<SplitSummary>,
    /// Where published splits and the metastore are.
    #[serde(default)]
    pub object_store: String,
    /// Splits being built or waiting for their upload (their lines are in
    /// the WAL: `wal_bytes` is what waits for the object store).
    #[serde(default)]
    pub unpublished_splits: u64,
    /// Seconds since the oldest split not yet published was started.
    #[serde(default)]
    pub upload_lag_secs: f64,
    /// Why the last publish failed, until one succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_error: Option<String>,
    /// Splits published since cblogsd started.
    #[serde(default)]
    pub published_splits: u64,
    /// What retention deleted since the start, newest last (at most 100).
    pub deleted: Vec<DeletedPartition>,
    /// The disk cache of published splits' indexes (`cache.max_bytes`).
    #[serde(default)]
    pub cache: CacheSummary,
    /// Background merges of published splits (`[merge]`).
    #[serde(default)]
    pub merges: MergeSummary,
}

/// Background merges since cblogsd started (`[merge]` in cblogsd.toml).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MergeSummary {
    /// Merges published (their inputs retired in the same commit).
    pub done: u64,
    /// Merges that failed, or lost to retention taking an input.
    pub failed: u64,
    /// A merge is running now.
    pub running: bool,
    /// Merges the merge policy would run now, after the running one.
    pub pending: u64,
    /// Why the last merge failed, until one succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Blocks read and written; compressed bytes of blocks read and written.
    pub blocks_in: u64,
    pub blocks_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Seconds merges took, added up.
    pub seconds: f64,
}

/// The disk cache of published splits' indexes, `<data_dir>/cache/`
/// (`cache.max_bytes`): used with a remote object store only (on the
/// local store splits are read in place, and it stays empty).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheSummary {
    /// Bytes in it now.
    pub bytes: u64,
    /// `cache.max_bytes`: least recently used indexes go past it.
    pub max_bytes: u64,
    /// The most it held since cblogsd started. Over `max_bytes` only while
    /// running searches held more indexes than fit.
    pub peak_bytes: u64,
    /// Split indexes in it now.
    pub splits: u64,
    /// A read needed a split's index and found it here.
    pub hits: u64,
    /// A read needed a split's index and downloaded it (one GET).
    pub misses: u64,
    /// `hits / (hits + misses)`; 0 before the first read.
    pub hit_rate: f64,
    /// Indexes deleted to stay within `max_bytes` (their splits stay
    /// published).
    pub evictions: u64,
    /// Blocks fetched by ranged GET and kept (their bytes are part of
    /// `bytes`), and how often a block read found one here, or fetched it.
    #[serde(default)]
    pub blocks: u64,
    #[serde(default)]
    pub block_bytes: u64,
    #[serde(default)]
    pub block_hits: u64,
    #[serde(default)]
    pub block_misses: u64,
    #[serde(default)]
    pub block_evictions: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitSummary {
    pub id: String,
    /// `published` (in the object store), or `unpublished` (being built
    /// on the local disk, or waiting for its upload).
    pub state: String,
    /// The start of its window, RFC 3339.
    pub window: String,
    pub bytes: u64,
    pub blocks: u64,
    /// The newest line's time, RFC 3339 (empty when it holds none).
    pub newest: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionSummary {
    /// Its start, RFC 3339.
    pub start: String,
    pub start_ns: i64,
    pub bytes: u64,
    pub blocks: u64,
    /// The newest line's time, RFC 3339 (empty when it holds none).
    pub newest: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletedPartition {
    /// The split retired.
    #[serde(default)]
    pub split: String,
    /// The start of its window of line time.
    pub start: String,
    pub bytes: u64,
    /// `age` (retention_days) or `disk` (max_disk_bytes).
    pub reason: String,
    /// When it was deleted, RFC 3339.
    pub at: String,
}

/// The default and the largest `n` of a tail.
pub const DEFAULT_TAIL_LINES: usize = 100;
pub const MAX_TAIL_LINES: usize = 100_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobsResponse {
    pub jobs: Vec<JobSummary>,
    /// In a cluster: the nodes asked that did not answer (the counts may
    /// then lack lines they hold unpublished).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial: Vec<Unanswered>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSummary {
    /// `cluster/role/env/name`.
    pub key: String,
    pub cluster: String,
    pub role: String,
    pub env: String,
    pub name: String,
    pub lines: u64,
    pub bytes: u64,
    /// RFC 3339 time of the newest line.
    pub last_seen: String,
    pub last_seen_ns: i64,
    pub instances: Vec<InstanceSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceSummary {
    pub instance: u32,
    pub lines: u64,
    pub bytes: u64,
    pub last_seen: String,
    pub last_seen_ns: i64,
    pub processes: Vec<String>,
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TailResponse {
    /// The job keys the selector resolved to.
    pub jobs: Vec<String>,
    /// Oldest first.
    pub lines: Vec<LineView>,
    /// In a cluster: the nodes that were asked for the lines they hold
    /// and did not answer. The answer may then lack lines they hold that
    /// are not yet published: it is partial.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial: Vec<Unanswered>,
}

/// A node that did not answer a question of a fan-out read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unanswered {
    pub node_id: String,
    pub url: String,
    /// Why: unreachable, timed out, or what it answered instead.
    pub error: String,
}

/// A `truncated` follow event: more than `limit` lines were at or after
/// `since_ns`, and the oldest of them are not in the backlog that follows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Truncated {
    pub limit: usize,
}

/// A `lagged` follow event: the client read too slowly and the server
/// skipped ahead.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lagged {
    /// How many ingested batches (each one or more lines of one source) were skipped.
    pub missed: u64,
}

/// The answer of [`FLUSH_PATH`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlushResponse {
    /// Blocks sealed and committed by this flush.
    pub committed_blocks: usize,
    pub took_ms: u64,
    /// Bytes of lines still only in memory after the flush: 0 unless a
    /// block could not be committed (the server's log says why) or lines
    /// arrived meanwhile.
    pub unindexed_bytes: u64,
}

/// GET: search lines (see the module docs); answers NDJSON [`SearchEvent`]s.
pub const SEARCH_PATH: &str = "/api/v1/search";
/// GET: matching lines per time bucket; answers [`HistogramResponse`].
pub const HISTOGRAM_PATH: &str = "/api/v1/histogram";
/// GET `?source=HEX&offset=N[&before=10][&after=10]`: the lines around
/// one line of one source; answers [`ContextResponse`].
pub const CONTEXT_PATH: &str = "/api/v1/context";

/// The lines around one line, in order (the line itself included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextResponse {
    pub lines: Vec<LineView>,
    /// In a cluster: the nodes asked that did not answer (the lines may
    /// then lack some they hold unpublished).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial: Vec<Unanswered>,
}

/// How many matching lines a search shows unless told otherwise.
pub const DEFAULT_SEARCH_LIMIT: usize = 1000;
/// How many buckets a histogram has unless told otherwise, and at most.
pub const DEFAULT_HISTOGRAM_BUCKETS: usize = 60;
pub const MAX_HISTOGRAM_BUCKETS: usize = 2000;
/// With `step_ns`, buckets of that width over the range: at most this
/// many (Loki's limit of points per series).
pub const MAX_HISTOGRAM_STEPS: usize = 11_000;

/// What a search reports: one event per NDJSON line, in this order: `start`,
/// then `line`s (and `break`s) or `count`s or `source`s, then `summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SearchEvent {
    Start {
        /// The job keys the selectors resolved to (every job without one).
        jobs: Vec<String>,
    },
    Line(SearchLine),
    /// With context lines: the next line does not directly follow the
    /// previous one in the same source (grep's `--`).
    Break,
    /// `mode=count`: matching lines of one source.
    Count(SourceCount),
    /// `mode=list`: a source with at least one matching line.
    Source(MatchSource),
    /// With `progress=MS`: how far the search has got, at most every MS
    /// milliseconds (for a progress line on a terminal).
    Progress(SearchProgress),
    Summary(SearchSummary),
}

/// How far a search has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchProgress {
    /// Blocks read, of those the index could not rule out.
    pub blocks_read: u64,
    pub blocks_total: u64,
    /// Matching lines so far.
    pub matched: u64,
    /// The time range read so far: every block from `from_ns` up to
    /// `through_ns` is done.
    pub from_ns: i64,
    pub through_ns: i64,
}

/// One line of a search's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchLine {
    #[serde(flatten)]
    pub line: LineView,
    /// Shown for context (`-A/-B/-C`), not a match itself.
    pub context: bool,
    /// Byte ranges of `line.text` that the pattern matched (for highlighting).
    pub matches: Vec<[usize; 2]>,
}

/// Which source a count or a listed match belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MatchSource {
    /// [`crate::Source::id`] in hex (a source is also told by its run,
    /// which the fields below leave out).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_id: String,
    pub cluster: String,
    /// `role/env/name`.
    pub job: String,
    pub instance: u32,
    pub process: String,
    pub stream: crate::Stream,
    pub host: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCount {
    #[serde(flatten)]
    pub source: MatchSource,
    pub count: u64,
}

/// The last event of a search.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchSummary {
    /// Matching lines found (shown, or counted).
    pub matched: u64,
    /// More lines match than `limit` let through.
    pub more: bool,
    /// The search stopped before it looked everywhere (`reason` says why):
    /// what was sent is right, but not all there is.
    pub truncated: bool,
    pub reason: Option<String>,
    /// With `more`: the time of the first matching line left out, where a
    /// next search can start (`since_ns`).
    pub next_time_ns: Option<i64>,
    /// With `more`: where the next page starts, exactly (`cursor=` of the
    /// next request; lines sharing one time are neither repeated nor skipped).
    #[serde(default)]
    pub next_cursor: Option<String>,
    /// Blocks of the selected sources in the time range, and how many of
    /// them the index could not rule out and were read.
    pub blocks_total: u64,
    pub blocks_read: u64,
    /// Compressed bytes of the stored blocks read (blocks still in memory
    /// are not compressed, and not counted).
    #[serde(default)]
    pub read_bytes: u64,
    /// With `explain=blocks`: where each stored block read is, in the
    /// order they were read (what a benchmark decompresses again to
    /// measure the floor of a search).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_blocks: Vec<BlockAt>,
    pub took_ms: u64,
    /// In a cluster: the nodes that were asked for the lines they hold
    /// unpublished and did not answer. The answer may lack those lines:
    /// it is partial.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial: Vec<Unanswered>,
}

/// Where a stored block is: its split, and its bytes in the split's
/// `blocks.dat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockAt {
    pub split: String,
    pub pos: u64,
    pub len: u64,
}

/// Matching lines per time bucket, per stream (and per job with `by=job`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramResponse {
    pub start_ns: i64,
    pub step_ns: i64,
    pub buckets: usize,
    pub series: Vec<HistogramSeries>,
    pub total: u64,
    pub truncated: bool,
    pub reason: Option<String>,
    pub took_ms: u64,
    /// In a cluster: the nodes asked that did not answer (the counts may
    /// then lack lines they hold unpublished).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial: Vec<Unanswered>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramSeries {
    /// With `by=job` or `by=labels`: the job key; otherwise absent.
    pub job: Option<String>,
    pub stream: crate::Stream,
    /// With `by=labels`: the rest of what names the series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<SeriesLabels>,
    pub counts: Vec<u64>,
}

/// With `by=labels`, a series is one job's stream on one host, instance
/// and process: a source without its task id and run (the runs of a
/// process are added together), as the Loki API's labels name it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesLabels {
    pub host: String,
    pub instance: u32,
    pub process: String,
}

impl SeriesLabels {
    pub fn of(source: &crate::Source) -> SeriesLabels {
        SeriesLabels {
            host: source.host.clone(),
            instance: source.instance,
            process: source.process.clone(),
        }
    }
}

/// GET: alert rules with their state; answers [`AlertsResponse`].
pub const ALERTS_PATH: &str = "/api/v1/alerts";
/// POST: read the alert rules file again; answers [`ReloadResponse`], or
/// 400 naming the rule and field at fault (the rules in force stay).
pub const ALERTS_RELOAD_PATH: &str = "/api/v1/admin/alerts/reload";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertsResponse {
    pub rules: Vec<AlertRuleState>,
    pub deliveries: DeliveryCounts,
    /// Silences in force.
    #[serde(default)]
    pub silences: Vec<Silence>,
    /// In a cluster: the nodes asked for their groups that did not answer
    /// (the groups whose window is on them are missing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial: Vec<Unanswered>,
}

/// POST: silence a rule (or one group of it) for a while; body
/// [`SilenceRequest`], answer the [`Silence`].
pub const SILENCES_PATH: &str = "/api/v1/alerts/silences";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceRequest {
    pub rule: String,
    /// A group (`cluster/role/env/name` or `…/INSTANCE`; the cluster may be
    /// left out); every group of the rule when absent.
    pub group: Option<String>,
    pub for_secs: u64,
}

/// No notifications for `rule` (and `group`) until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub rule: String,
    pub group: Option<String>,
    pub until_ns: i64,
    /// RFC 3339.
    pub until: String,
}

impl AlertGroup {
    /// `cluster/role/env/name`, or with `/INSTANCE`.
    pub fn key(&self) -> String {
        match self.instance {
            Some(i) => format!("{}/{i}", self.job),
            None => self.job.clone(),
        }
    }
}

impl Silence {
    /// Whether it silences `rule`'s `group` at `now_ns`.
    pub fn covers(&self, rule: &str, group: &AlertGroup, now_ns: i64) -> bool {
        let key = group.key();
        self.rule == rule
            && now_ns < self.until_ns
            && self.group.as_ref().is_none_or(|g| {
                key == *g
                    || key.ends_with(&format!("/{g}"))
                    || group.job == *g
                    || group.job.ends_with(&format!("/{g}"))
            })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRuleState {
    pub name: String,
    pub severity: String,
    pub threshold: u64,
    pub window_secs: u64,
    pub groups: Vec<AlertGroupState>,
    /// RFC 3339 time of the last firing notification.
    pub last_fired: Option<String>,
}

/// What a rule counts per: a job, or a job's instance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertGroup {
    /// `cluster/role/env/name`.
    pub job: String,
    pub instance: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertGroupState {
    pub group: AlertGroup,
    /// `firing` or `ok`.
    pub state: String,
    /// Matching lines in the window now.
    pub count: u64,
    /// RFC 3339: when it started firing.
    pub since: Option<String>,
    pub last_notified: Option<String>,
    /// In a cluster: the node its window is on (every node's matches of
    /// the group are counted there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Notifications delivered, attempts that failed (each is retried), and
/// notifications still to deliver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryCounts {
    pub sent: u64,
    pub failed: u64,
    pub pending: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadResponse {
    pub rules: usize,
}
