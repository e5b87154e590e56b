//! Query strings: the selection parameters that `tail`, `follow`,
//! `search` and `histogram` share (`job`, `instance`, `stream`, `process`,
//! `host`, `labels`, `since_ns`, `until_ns`), parsed in one place ([`Selection`]) so
//! that they mean and refuse the same everywhere. Each endpoint names which
//! of them it takes and refuses the rest as unknown (`tail` has no `host`
//! or `until_ns`).

use axum::http::StatusCode;
use cblogs_core::{Selector, SelectorError, Stream};

use std::sync::Arc;

use super::error::ApiError;
use crate::logql;
use crate::read::{self, LineFilter};
use crate::store::Store;

/// What `tail` and `follow` select by.
pub(super) const TAIL_SELECTION: &[&str] =
    &["job", "instance", "stream", "process", "labels", "since_ns"];
/// What `search` and `histogram` select by.
pub(super) const SEARCH_SELECTION: &[&str] = &[
    "job", "instance", "stream", "process", "host", "labels", "since_ns", "until_ns",
];

/// `k=v` pairs of a raw query string, decoded.
pub(super) fn query_pairs(raw: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// A boolean parameter: empty (`?fixed`), true/1/yes or false/0/no.
pub(super) fn flag(k: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "" | "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ApiError::bad(format!(
            "bad {k} '{v}': expected true or false"
        ))),
    }
}

/// `bad K 'V': WHAT`, the message of every malformed parameter.
pub(super) fn bad_param(k: &str, v: &str, what: &str) -> ApiError {
    ApiError::bad(format!("bad {k} '{v}': {what}"))
}

/// Which sources and lines a read asks for, before its selectors are
/// resolved against the jobs the store knows.
#[derive(Debug, Clone)]
pub(super) struct Selection {
    pub selectors: Vec<Selector>,
    /// Everything else the parameters say (instances, stream, process,
    /// host, times); its jobs come from the selectors ([`Selection::resolve`]).
    pub filter: LineFilter,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            selectors: Vec::new(),
            filter: LineFilter::everything(),
        }
    }
}

impl Selection {
    /// Takes `k=v` if `k` is one of the selection parameters `keys` (those
    /// the endpoint takes): `Ok(true)`. Any other key is the endpoint's to
    /// handle: `Ok(false)`.
    pub fn take(&mut self, k: &str, v: &str, keys: &[&str]) -> Result<bool, ApiError> {
        if !keys.contains(&k) {
            return Ok(false);
        }
        let time = || {
            v.parse::<i64>()
                .map_err(|_| bad_param(k, v, "expected nanoseconds since the epoch"))
        };
        let f = &mut self.filter;
        match k {
            "job" => self
                .selectors
                .push(Selector::parse(v).map_err(|e| ApiError::bad(e.to_string()))?),
            "instance" => {
                f.instances = v
                    .parse()
                    .map_err(|e: SelectorError| ApiError::bad(e.to_string()))?
            }
            "stream" if v == "all" || v.is_empty() => f.stream = None,
            "stream" => f.stream = Some(v.parse::<Stream>().map_err(ApiError::bad)?),
            "process" if !v.is_empty() => f.process = Some(v.to_owned()),
            "host" if !v.is_empty() => f.host = Some(v.to_owned()),
            "labels" if !v.is_empty() => {
                let selector =
                    logql::parse_selector(v).map_err(|e| bad_param(k, v, &e.to_string()))?;
                f.labels = Some(Arc::new(selector));
            }
            "since_ns" => f.since_ns = Some(time()?),
            "until_ns" => f.until_ns = Some(time()?),
            // An empty process or host selects every one.
            _ => {}
        }
        Ok(true)
    }

    /// [`Selection::resolve`], for a read that goes on (a follow in a
    /// cluster): a job the store does not know yet may come (its lines
    /// on another node, or a source moving here). Its selectors are then
    /// matched afresh against every source. Says whether they resolved.
    pub fn resolve_or_later(self, store: &Store) -> Result<(LineFilter, bool), ApiError> {
        let mut later = self.filter.clone();
        later.jobs = Vec::new();
        later.globs = self.selectors.clone();
        match self.resolve(store) {
            Ok(filter) => Ok((filter, true)),
            Err(e) if e.status() == StatusCode::NOT_FOUND => Ok((later, false)),
            Err(e) => Err(e),
        }
    }

    /// The filter a read applies: the selectors resolved against the jobs
    /// the store knows (an exact selector must name one job), globs kept
    /// to be matched against sources that appear later. No selector at all
    /// means every job, including any that appears during the read.
    pub fn resolve(self, store: &Store) -> Result<LineFilter, ApiError> {
        let mut filter = self.filter;
        if !self.selectors.is_empty() {
            filter.jobs = read::resolve(store, &self.selectors)?;
            filter.globs = self
                .selectors
                .into_iter()
                .filter(|s| !s.is_exact())
                .collect();
        }
        Ok(filter)
    }
}
