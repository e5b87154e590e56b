//! What the fan-out reads pinned to one metastore version share (rule 3
//! of issue 18; `store/pinned.rs`): the asking node pins its published
//! part to the version it has followed and asks every other node for its
//! part after it (`after_version=`). A node that cannot answer after that
//! version names the one to follow first; the asker waits until it has
//! (a commit round or two), pins again and asks again, a few times, then
//! names the node as not answering.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use cblogs_core::api::Unanswered;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::params::bad_param;
use crate::app::App;
use crate::cluster::{stale_sources, Answered};

/// The parameter a node's part is asked with: the asker's pinned version.
const AFTER_VERSION: &str = "after_version";
/// How many times a read pins again when a node must be followed further
/// first.
const PIN_TRIES: usize = 3;

/// A node's part of a pinned read.
pub(super) trait PinnedAnswer {
    /// The node cannot answer after the version asked: the version the
    /// asker must have followed first.
    fn follow_first(&self) -> Option<u64>;
}

/// Pins this node's part (`pin`: the part and its version) and asks every
/// other node for theirs after that version (`path` of the version),
/// pinning again while a node must be followed further first. Returns the
/// part, its version, the answers, and the nodes that gave none (or none
/// after the version).
pub(super) async fn ask_pinned<P, A: PinnedAnswer + DeserializeOwned>(
    app: &App,
    mut pin: impl FnMut() -> (P, u64),
    path: impl Fn(u64) -> String,
    timeout: Option<Duration>,
) -> (P, u64, Vec<Answered<A>>, Vec<Unanswered>) {
    let mut tries = 0;
    loop {
        let (part, version) = pin();
        let round = Round::<A>::ask(app, &path(version), timeout).await;
        if round.again(app, &mut tries).await {
            continue;
        }
        let (answers, partial) = round.finish(version);
        return (part, version, answers, partial);
    }
}

/// The other nodes' answers to one question pinned to a version.
pub(super) struct Round<A> {
    answers: Vec<Answered<A>>,
    partial: Vec<Unanswered>,
}

impl<A: PinnedAnswer + DeserializeOwned> Round<A> {
    /// Asks every other node `path`, waiting at most `timeout` for each.
    pub(super) async fn ask(app: &App, path: &str, timeout: Option<Duration>) -> Round<A> {
        let (answers, partial) = app.cluster.ask_others_within::<A>(path, timeout).await;
        Round { answers, partial }
    }

    /// Whether to pin again and ask again (the `tries`-th time): a node
    /// must be followed further first, and now is (or a while was
    /// waited).
    pub(super) async fn again(&self, app: &App, tries: &mut usize) -> bool {
        let behind = self
            .answers
            .iter()
            .filter_map(|a| a.answer.follow_first())
            .max();
        match behind {
            Some(needed) if *tries < PIN_TRIES => {
                *tries += 1;
                wait_followed(app, needed).await;
                true
            }
            _ => false,
        }
    }

    /// The answers, and the nodes that gave none (those that could not
    /// answer after `version` among them).
    pub(super) fn finish(self, version: u64) -> (Vec<Answered<A>>, Vec<Unanswered>) {
        let Round {
            answers,
            mut partial,
        } = self;
        let mut kept = Vec::with_capacity(answers.len());
        for a in answers {
            match a.answer.follow_first() {
                Some(needed) => partial.push(a.unused(format!(
                    "it cannot answer after metastore version {version}: this node has not followed the metastore up to version {needed}"
                ))),
                None => kept.push(a),
            }
        }
        (kept, partial)
    }
}

/// Per answer (each with the epoch its node holds each of its sources
/// at), the sources whose part is an older owner's than another's or the
/// metastore's: to be left out (`cluster::stale_sources`).
pub(super) fn stale_parts(app: &App, epochs: &[&HashMap<String, u64>]) -> Vec<HashSet<String>> {
    stale_sources(epochs, |s| {
        u64::from_str_radix(s, 16)
            .ok()
            .and_then(|id| app.store.epochs(id).1)
    })
    .into_iter()
    .map(|s| s.into_iter().map(str::to_owned).collect())
    .collect()
}

/// `path` with the query `raw` a node's part is asked, after `version`.
pub(super) fn pinned_path(path: &str, raw: &str, version: u64) -> String {
    let sep = if raw.is_empty() { "" } else { "&" };
    format!("{path}?{raw}{sep}{AFTER_VERSION}={version}")
}

/// Waits (a few commit rounds at most) until this node has followed the
/// metastore up to `version`.
async fn wait_followed(app: &App, version: u64) {
    let deadline =
        Instant::now() + 3 * app.config.storage.commit_interval() + Duration::from_secs(1);
    while app.store.followed_version() < version && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Takes `after_version` out of a node's part's query: the rest is the
/// read as its asker was asked it.
pub(super) fn take_after_version(raw: Option<String>) -> Result<(Option<String>, u64), ApiError> {
    let mut after = None;
    let mut rest = Vec::new();
    for pair in raw.as_deref().unwrap_or_default().split('&') {
        match pair
            .strip_prefix(AFTER_VERSION)
            .and_then(|v| v.strip_prefix('='))
        {
            Some(v) => {
                after = Some(
                    v.parse::<u64>()
                        .map_err(|_| bad_param(AFTER_VERSION, v, "expected a metastore version"))?,
                )
            }
            None if !pair.is_empty() => rest.push(pair),
            None => {}
        }
    }
    let after = after.ok_or_else(|| {
        ApiError::bad(format!(
            "missing parameter '{AFTER_VERSION}' (the asker's pinned metastore version)"
        ))
    })?;
    Ok((Some(rest.join("&")), after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nodes_part_is_asked_after_a_version_and_the_rest_is_the_read() {
        let path = pinned_path("/p", "pattern=x&job=a%2Fb%2Fc", 42);
        assert_eq!(path, "/p?pattern=x&job=a%2Fb%2Fc&after_version=42");
        assert_eq!(pinned_path("/p", "", 7), "/p?after_version=7");
        let query = path.split_once('?').map(|(_, q)| q.to_owned());
        let (rest, after) = take_after_version(query).unwrap();
        assert_eq!(
            (rest.as_deref(), after),
            (Some("pattern=x&job=a%2Fb%2Fc"), 42)
        );
        assert!(take_after_version(Some("pattern=x".into())).is_err());
        assert!(take_after_version(Some("after_version=x".into())).is_err());
    }
}
