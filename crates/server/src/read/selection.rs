//! Which sources a read request means: its selectors resolved against the
//! jobs the store knows ([`resolve`]), and the [`LineFilter`] that every
//! read (tail, follow, search, histogram) applies to sources and lines.

use std::collections::BTreeSet;
use std::sync::Arc;

use cblogs_core::{InstanceSet, JobKey, Selector, Source, Stream};

use crate::index::PartitionError;
use crate::logql::StreamSelector;
use crate::store::Store;

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
    /// A LogQL stream selector over the source's labels (`labels=`, the
    /// Loki API's): every matcher must hold too.
    pub labels: Option<Arc<StreamSelector>>,
    pub since_ns: Option<i64>,
    /// Exclusive.
    pub until_ns: Option<i64>,
}

impl LineFilter {
    /// Every line of every job, including jobs that appear later: what a
    /// request narrows from.
    pub fn everything() -> LineFilter {
        LineFilter {
            jobs: Vec::new(),
            globs: vec![Selector::parse("*").expect("'*' is a selector")],
            instances: InstanceSet::all(),
            stream: None,
            process: None,
            host: None,
            labels: None,
            since_ns: None,
            until_ns: None,
        }
    }

    pub fn wants(&self, s: &Source) -> bool {
        self.instances.contains(s.instance)
            && self.stream.is_none_or(|st| st == s.stream)
            && self.process.as_ref().is_none_or(|p| *p == s.process)
            && self.host.as_ref().is_none_or(|h| *h == s.host)
            && self.labels.as_ref().is_none_or(|l| l.matches(s))
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
