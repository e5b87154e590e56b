//! The jobs listing: every job the store holds (or those a selector
//! picks), with its instances, line counts and last-seen times.

use std::collections::{BTreeMap, BTreeSet};

use cblogs_core::api::{InstanceSummary, JobSummary};
use cblogs_core::time::format_rfc3339;
use cblogs_core::{JobKey, Selector};

use crate::store::{SourceSummary, Store};

/// The jobs listing, optionally narrowed by a selector.
pub fn jobs(store: &Store, pattern: Option<&Selector>) -> Vec<JobSummary> {
    jobs_of(store.summaries(), pattern)
}

/// Whether `pattern` (if any) picks source `s`'s job and instance.
pub fn picks(pattern: Option<&Selector>, s: &SourceSummary) -> bool {
    pattern.is_none_or(|p| p.matches_job(&s.job) && p.instances().contains(s.source.instance))
}

/// The jobs listing of `summaries` (sources with their totals).
pub fn jobs_of(
    summaries: impl IntoIterator<Item = SourceSummary>,
    pattern: Option<&Selector>,
) -> Vec<JobSummary> {
    #[derive(Default)]
    struct Inst {
        lines: u64,
        bytes: u64,
        last: i64,
        processes: BTreeSet<String>,
        hosts: BTreeSet<String>,
    }
    let mut by_job: BTreeMap<JobKey, BTreeMap<u32, Inst>> = BTreeMap::new();
    for s in summaries {
        if !picks(pattern, &s) {
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
