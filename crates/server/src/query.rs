//! Reads: which sources a request means, the last N lines of them in time
//! order, and the jobs listing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cblogs_core::api::{InstanceSummary, JobSummary};
use cblogs_core::time::format_rfc3339;
use cblogs_core::{InstanceSet, JobKey, LineFlags, LineView, Selector, Source, Stream};

use crate::block::LineBlock;
use crate::partition::PartitionError;
use crate::store::{ReadSnapshot, Store};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    BadParam(String),
    #[error("no job matches '{0}'")]
    UnknownJob(String),
    #[error("job '{selector}' is ambiguous: it matches {} jobs", candidates.len())]
    Ambiguous {
        selector: String,
        candidates: Vec<String>,
    },
    #[error(transparent)]
    Storage(#[from] PartitionError),
}

/// Which sources, and which of their lines, a request wants.
#[derive(Debug, Clone)]
pub struct LineFilter {
    /// The jobs the selectors resolved to, each with the instances its selector named.
    pub jobs: Vec<(JobKey, InstanceSet)>,
    /// The selectors with globs, matched afresh against every source: a
    /// job that appears while a follow runs joins it.
    pub globs: Vec<Selector>,
    pub instances: InstanceSet,
    pub stream: Option<Stream>,
    pub process: Option<String>,
    pub host: Option<String>,
    pub since_ns: Option<i64>,
    /// Exclusive.
    pub until_ns: Option<i64>,
}

impl LineFilter {
    pub fn wants(&self, s: &Source) -> bool {
        self.instances.contains(s.instance)
            && self.stream.is_none_or(|st| st == s.stream)
            && self.process.as_ref().is_none_or(|p| *p == s.process)
            && self.host.as_ref().is_none_or(|h| *h == s.host)
            && self.wants_job(&s.job_key(), s.instance)
    }

    fn wants_job(&self, key: &JobKey, instance: u32) -> bool {
        self.jobs
            .iter()
            .any(|(job, inst)| job == key && inst.contains(instance))
            || self
                .globs
                .iter()
                .any(|g| g.matches_job(key) && g.instances().contains(instance))
    }

    pub fn job_keys(&self) -> Vec<String> {
        self.jobs
            .iter()
            .map(|(k, _)| k.to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

/// Resolves selectors to the jobs the store knows. An exact selector (no
/// glob) that matches several jobs is ambiguous: the user must say which.
pub fn resolve(
    store: &Store,
    selectors: &[Selector],
) -> Result<Vec<(JobKey, InstanceSet)>, QueryError> {
    let known: BTreeSet<JobKey> = store.summaries().into_iter().map(|s| s.job).collect();
    let mut out = Vec::new();
    for sel in selectors {
        let matches: Vec<&JobKey> = known.iter().filter(|k| sel.matches_job(k)).collect();
        if matches.is_empty() {
            return Err(QueryError::UnknownJob(sel.to_string()));
        }
        if sel.is_exact() && matches.len() > 1 {
            return Err(QueryError::Ambiguous {
                selector: sel.to_string(),
                candidates: matches.iter().map(|k| k.to_string()).collect(),
            });
        }
        out.extend(
            matches
                .into_iter()
                .map(|k| (k.clone(), sel.instances().clone())),
        );
    }
    Ok(out)
}

/// One line with its source, owned.
#[derive(Debug, Clone)]
pub struct OwnedLine {
    pub source: Arc<Source>,
    pub offset: u64,
    pub time_ns: i64,
    pub flags: LineFlags,
    pub bytes: Vec<u8>,
}

impl OwnedLine {
    /// Time order; ties broken by source and offset so the order is total and stable.
    fn key(&self) -> (i64, u64, u64) {
        (self.time_ns, self.source.id(), self.offset)
    }

    pub fn view(&self) -> LineView {
        line_view(
            &self.source,
            self.offset,
            self.time_ns,
            self.flags,
            &self.bytes,
        )
    }
}

pub fn line_view(
    s: &Source,
    offset: u64,
    time_ns: i64,
    flags: LineFlags,
    bytes: &[u8],
) -> LineView {
    LineView {
        time: format_rfc3339(time_ns),
        time_ns,
        cluster: s.cluster.clone(),
        host: s.host.clone(),
        job: s.job.role_env_name(),
        instance: s.instance,
        task_id: s.task_id.clone(),
        process: s.process.clone(),
        run: s.run,
        stream: s.stream,
        offset,
        text: String::from_utf8_lossy(bytes).into_owned(),
        flags,
        source: format!("{:016x}", s.id()),
    }
}

/// Keeps the newest `n` lines seen so far, and knows how old a line must
/// be to no longer matter.
struct Newest {
    n: usize,
    since_ns: Option<i64>,
    lines: Vec<OwnedLine>,
    /// Once `n` lines are held: the oldest time among them. Blocks whose
    /// newest line is older cannot contribute.
    threshold: Option<i64>,
    /// Lines that qualified were left out because there were more than `n`.
    left_out: bool,
}

impl Newest {
    fn push_block(&mut self, source: &Arc<Source>, block: &LineBlock) {
        for l in block.lines() {
            if self.since_ns.is_some_and(|s| l.time_ns < s) {
                continue;
            }
            self.lines.push(OwnedLine {
                source: source.clone(),
                offset: l.offset,
                time_ns: l.time_ns,
                flags: l.flags,
                bytes: l.bytes.to_vec(),
            });
        }
        // Pruning is linear, so do it only when the held lines double:
        // memory stays within 2n lines and the work stays linear overall.
        if self.lines.len() >= 2 * self.n
            || (self.threshold.is_none() && self.lines.len() >= self.n)
        {
            self.prune();
        }
    }

    /// Drops all but the newest `n` (in linear time) and updates the threshold.
    fn prune(&mut self) {
        if self.lines.len() > self.n {
            self.left_out = true;
            let cut = self.lines.len() - self.n;
            self.lines.select_nth_unstable_by_key(cut, OwnedLine::key);
            self.lines.drain(..cut);
        }
        if self.lines.len() >= self.n {
            self.threshold = self.lines.iter().map(|l| l.time_ns).min();
        }
    }

    fn finish(mut self) -> LastLines {
        self.prune();
        self.lines.sort_unstable_by_key(OwnedLine::key);
        LastLines {
            lines: self.lines,
            truncated: self.left_out,
        }
    }
}

/// The answer of [`last_lines`].
pub struct LastLines {
    /// Oldest first.
    pub lines: Vec<OwnedLine>,
    /// With `since_ns`: lines at or after it were left out (the oldest ones)
    /// because more than `n` qualified. A follower resuming after an outage
    /// must say so rather than skip them in silence.
    pub truncated: bool,
}

/// The last `n` lines of the snapshot's sources (at or after `since_ns`),
/// oldest first. Memory first, then committed blocks newest first, stopping
/// as soon as no older block can hold one of the newest `n`.
pub fn last_lines(
    snap: &ReadSnapshot,
    n: usize,
    since_ns: Option<i64>,
) -> Result<LastLines, QueryError> {
    if n == 0 {
        return Ok(LastLines {
            lines: Vec::new(),
            truncated: false,
        });
    }
    let mut newest = Newest {
        n,
        since_ns,
        lines: Vec::new(),
        threshold: None,
        left_out: false,
    };
    for (source, block) in &snap.memory {
        newest.push_block(source, block);
    }
    let ids: Vec<u64> = snap.sources.keys().copied().collect();
    for (part, searcher, t_max) in &snap.partitions {
        if since_ns.is_some_and(|s| *t_max < s) {
            continue;
        }
        // Without a lower bound, a partition wholly older than the newest n
        // is skipped unread. With one, it is looked at (fast fields only), so
        // that `truncated` is exact: the first block in it says so and stops.
        if since_ns.is_none() && newest.threshold.is_some_and(|t| *t_max < t) {
            continue;
        }
        let mut blocks = part.blocks(searcher, Some(&ids), since_ns)?;
        blocks.sort_unstable_by_key(|b| std::cmp::Reverse(b.t_max));
        for b in blocks {
            if newest.threshold.is_some_and(|t| b.t_max < t) {
                // This block holds a qualifying line (its newest one) that
                // is older than all n kept.
                newest.left_out = true;
                break;
            }
            let Some(source) = snap.sources.get(&b.source) else {
                continue;
            };
            newest.push_block(source, &part.read_block(&b)?);
        }
    }
    Ok(newest.finish())
}

/// The jobs listing, optionally narrowed by a selector.
pub fn jobs(store: &Store, pattern: Option<&Selector>) -> Vec<JobSummary> {
    #[derive(Default)]
    struct Inst {
        lines: u64,
        bytes: u64,
        last: i64,
        processes: BTreeSet<String>,
        hosts: BTreeSet<String>,
    }
    let mut by_job: BTreeMap<JobKey, BTreeMap<u32, Inst>> = BTreeMap::new();
    for s in store.summaries() {
        if pattern
            .is_some_and(|p| !p.matches_job(&s.job) || !p.instances().contains(s.source.instance))
        {
            continue;
        }
        let i = by_job
            .entry(s.job)
            .or_default()
            .entry(s.source.instance)
            .or_default();
        i.lines += s.totals.lines;
        i.bytes += s.totals.bytes;
        i.last = i.last.max(s.totals.last_seen_ns);
        i.processes.insert(s.source.process.clone());
        i.hosts.insert(s.source.host.clone());
    }
    by_job
        .into_iter()
        .map(|(key, instances)| {
            let instances: Vec<InstanceSummary> = instances
                .into_iter()
                .map(|(instance, i)| InstanceSummary {
                    instance,
                    lines: i.lines,
                    bytes: i.bytes,
                    last_seen: format_rfc3339(i.last),
                    last_seen_ns: i.last,
                    processes: i.processes.into_iter().collect(),
                    hosts: i.hosts.into_iter().collect(),
                })
                .collect();
            let last = instances.iter().map(|i| i.last_seen_ns).max().unwrap_or(0);
            JobSummary {
                key: key.to_string(),
                cluster: key.cluster.clone().unwrap_or_default(),
                role: key.role.clone(),
                env: key.env.clone(),
                name: key.name.clone(),
                lines: instances.iter().map(|i| i.lines).sum(),
                bytes: instances.iter().map(|i| i.bytes).sum(),
                last_seen: format_rfc3339(last),
                last_seen_ns: last,
                instances,
            }
        })
        .collect()
}
