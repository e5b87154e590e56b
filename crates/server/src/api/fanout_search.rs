//! A search asked of a node of a cluster (`GET /api/v1/search` on a node
//! with others), and a node's part of one (`GET /api/v1/cluster/search`):
//! what `search/fanin/` merges.
//!
//! The asking node pins its published part to the metastore version it
//! has followed (`Store::pinned_parts`) and asks every other node for its
//! part after that version, at once. A node that cannot answer after it
//! (it published a split since that has been merged away, or started
//! after it) names the version to follow first: the asker waits until it
//! has (a commit round or two), pins again and asks again. Its own
//! unpublished part is answered in-process, like the others'. Then the
//! published part is searched and streamed out, the answers merged in.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use bytes::Bytes;
use cblogs_core::api::CLUSTER_SEARCH_PATH;
use tokio::sync::{mpsc, oneshot};

use super::error::ApiError;
use super::fanout::{ask_pinned, pinned_path, take_after_version, PinnedAnswer};
use super::params::query_pairs;
use super::search::{
    job_keys, ndjson_body, parse, request_here, search_slot, spawn_search, NdjsonSink,
    SUMMARY_MARGIN,
};
use crate::app::App;
use crate::metrics::{emit, QueryAnswered};
use crate::search::fanin::{event_source, keep_newest_owners, Collector, FanIn, NodeAnswer};
use crate::search::{self, SearchRequest};
use crate::store::{FollowFirst, ReadSnapshot, Store};

/// `GET /api/v1/search` on a node of a cluster.
pub(super) async fn search(app: Arc<App>, raw: Option<String>) -> Result<Response, ApiError> {
    let started = Instant::now();
    let (req, _, unknown) = request_here(&app, parse(raw.clone(), false)?, false, true)?;
    let slot = search_slot(&app)?;
    let here = unknown.is_none();
    let wanted = |s: &cblogs_core::Source| here && req.filter.wants(s);
    // Each node may take as long as the search may.
    let timeout = req.time_limit + SUMMARY_MARGIN;
    // The other nodes' parts are not watched (and a node of an older
    // version would refuse the parameter).
    let raw: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            query_pairs(raw)
                .into_iter()
                .filter(|(k, _)| k != "progress"),
        )
        .finish();
    let (parts, _, kept, mut partial) = ask_pinned::<_, NodeAnswer>(
        &app,
        || {
            let parts = app.store.pinned_parts(&wanted);
            let version = parts.version;
            (parts, version)
        },
        |version| pinned_path(CLUSTER_SEARCH_PATH, &raw, version),
        Some(timeout),
    )
    .await;
    if let Some(unknown) = unknown {
        if partial.is_empty() && kept.iter().all(|a| a.answer.jobs.is_empty()) {
            return Err(unknown);
        }
    }
    let jobs = if here {
        job_keys(&app, &req)
    } else {
        Vec::new()
    };
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let store = app.store.clone();
    spawn_search(&app, move || {
        let mut answers: Vec<NodeAnswer> = kept.into_iter().map(|a| a.answer).collect();
        // This node's own unpublished part, answered as the others'.
        answers.push(node_answer(&store, &parts.unpublished, &req, jobs.clone()));
        keep_newest_owners(&mut answers, |s| {
            u64::from_str_radix(s, 16)
                .ok()
                .and_then(|id| store.epochs(id).1)
        });
        let mut sink = NdjsonSink::new(tx, req.deadline + SUMMARY_MARGIN);
        let mut fan = FanIn::new(&mut sink, &req, answers, std::mem::take(&mut partial));
        search::run(&parts.published, &req, jobs, &mut fan);
        emit(QueryAnswered {
            kind: "search",
            seconds: started.elapsed().as_secs_f64(),
        });
        // Given back before the answer ends, as in a one-node search.
        drop(slot);
    })?;
    Ok(ndjson_body(rx))
}

/// `req` run over `snap` (a node's unpublished part), kept whole, with
/// the ownership epoch of each source it answers for.
fn node_answer(
    store: &Store,
    snap: &ReadSnapshot,
    req: &SearchRequest,
    jobs: Vec<String>,
) -> NodeAnswer {
    let mut collector = Collector::default();
    search::run(snap, req, jobs, &mut collector);
    let mut answer = collector.answer;
    for e in &answer.events {
        if let Some(source) = event_source(e) {
            if !answer.epochs.contains_key(source) {
                let epoch = u64::from_str_radix(source, 16)
                    .ok()
                    .and_then(|id| store.epochs(id).0);
                answer.epochs.insert(source.to_owned(), epoch.unwrap_or(0));
            }
        }
    }
    answer
}

/// `GET /api/v1/cluster/search`: this node's part of a fan-out search,
/// after the asker's pinned version (`after_version`). A job it does not
/// know is one it holds nothing of, not an error.
pub(super) async fn node_search(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<NodeAnswer>, ApiError> {
    let (raw, after) = take_after_version(raw)?;
    let (req, _, unknown) = request_here(&app, parse(raw, false)?, false, true)?;
    if unknown.is_some() {
        return Ok(Json(NodeAnswer::default()));
    }
    let snap = match app.store.unpublished_after(&|s| req.filter.wants(s), after) {
        Ok(snap) => snap,
        Err(FollowFirst(version)) => {
            return Ok(Json(NodeAnswer {
                follow_first: Some(version),
                ..NodeAnswer::default()
            }))
        }
    };
    let jobs = job_keys(&app, &req);
    let slot = search_slot(&app)?;
    let (tx, rx) = oneshot::channel();
    let store = app.store.clone();
    spawn_search(&app, move || {
        let answer = node_answer(&store, &snap, &req, jobs);
        // Given back before the answer is sent (see the one-node search).
        drop(slot);
        let _ = tx.send(answer);
    })?;
    rx.await.map(Json).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "this node's part of the search ended without an answer",
        )
    })
}

impl PinnedAnswer for NodeAnswer {
    fn follow_first(&self) -> Option<u64> {
        self.follow_first
    }
}
