//! `GET /api/v1/histogram`: matching lines (all lines without a pattern)
//! per time bucket, one series per stream (and job). It takes the search's
//! parameters (`search.rs`) plus `buckets` and `by`.
//!
//! On a node of a cluster, as a search (`fanout.rs`): the published
//! splits it shows, pinned to the metastore version it has followed,
//! fix the buckets; every node (this one too) counts, per source, what it
//! holds unpublished after that version in the same buckets
//! (`GET /api/v1/cluster/histogram`), and the newest owner's counts of
//! each source are added in.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use cblogs_core::api::{HistogramResponse, SeriesLabels, CLUSTER_HISTOGRAM_PATH};
use cblogs_core::Stream;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::fanout::{pinned_path, stale_parts, take_after_version, PinnedAnswer, Round};
use super::params::query_pairs;
use super::search::{parse, request, request_here, search_slot, spawn_search};
use crate::app::App;
use crate::metrics::{emit, QueryAnswered};
use crate::search::histogram::{self, count_by_source, HistogramRequest, MoreCounts, SourceCounts};
use crate::store::{FollowFirst, Store};

pub(super) async fn histogram(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<HistogramResponse>, ApiError> {
    if app.cluster.has_others() {
        return cluster_histogram(app, raw).await.map(Json);
    }
    let (search, p) = request(&app, parse(raw, true)?, true)?;
    let hreq = HistogramRequest {
        search,
        buckets: p.buckets,
        step_ns: p.step_ns,
        by: p.by,
    };
    let slot = search_slot(&app)?;
    let store = app.store.clone();
    let answer = on_search_thread(&app, move || {
        let _slot = slot;
        let started = Instant::now();
        let snap = store.snapshot(&|s| hreq.search.filter.wants(s), false);
        let answer = histogram::run(&snap, &hreq);
        emit(QueryAnswered {
            kind: "histogram",
            seconds: started.elapsed().as_secs_f64(),
        });
        answer
    })
    .await?;
    Ok(Json(answer))
}

/// A node's part of a histogram.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct NodeHistogram {
    /// The node cannot answer after the version asked: the asker must
    /// follow the metastore up to this version first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    follow_first: Option<u64>,
    /// Each source with a matching line here, unpublished.
    #[serde(default)]
    sources: Vec<SourceSeries>,
    /// Per source (hex id): the ownership epoch the node holds it at.
    #[serde(default)]
    epochs: HashMap<String, u64>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct SourceSeries {
    /// Hex id.
    source: String,
    job: String,
    stream: Stream,
    #[serde(default)]
    labels: SeriesLabels,
    counts: Vec<u64>,
}

impl PinnedAnswer for NodeHistogram {
    fn follow_first(&self) -> Option<u64> {
        self.follow_first
    }
}

impl NodeHistogram {
    fn of(store: &Store, counts: SourceCounts) -> NodeHistogram {
        let mut answer = NodeHistogram {
            truncated: counts.truncated,
            ..NodeHistogram::default()
        };
        for (source, counts) in counts.sources {
            if counts.iter().all(|n| *n == 0) {
                continue;
            }
            let id = source.id();
            let hex = format!("{id:016x}");
            answer
                .epochs
                .insert(hex.clone(), store.epochs(id).0.unwrap_or(0));
            answer.sources.push(SourceSeries {
                source: hex,
                job: source.job_key().to_string(),
                stream: source.stream,
                labels: SeriesLabels::of(&source),
                counts,
            });
        }
        answer
    }
}

/// The histogram of the whole cluster.
async fn cluster_histogram(
    app: Arc<App>,
    raw: Option<String>,
) -> Result<HistogramResponse, ApiError> {
    let started = Instant::now();
    let (search, p, unknown) = request_here(&app, parse(raw.clone(), true)?, true, true)?;
    let slot = search_slot(&app)?;
    let here = unknown.is_none();
    let hreq = Arc::new(HistogramRequest {
        search,
        buckets: p.buckets,
        step_ns: p.step_ns,
        by: p.by,
    });
    let timeout = hreq.search.time_limit + super::search::SUMMARY_MARGIN;
    // The first count of the published part fixes the buckets; every
    // node counts its part in them.
    let pairs: Vec<(String, String)> = query_pairs(raw)
        .into_iter()
        .filter(|(k, _)| k != "since_ns" && k != "until_ns")
        .collect();
    let mut fixed = None;
    let mut tries = 0;
    let ((published, own), answers, partial) = loop {
        let parts = app
            .store
            .pinned_parts(&|s| here && hreq.search.filter.wants(s));
        let version = parts.version;
        let (h, store) = (hreq.clone(), app.store.clone());
        let counted = on_search_thread(&app, move || {
            let published = count_by_source(&parts.published, &h, fixed)?;
            let own = count_by_source(&parts.unpublished, &h, Some(published.range()))?;
            Ok((published, NodeHistogram::of(&store, own)))
        })
        .await?;
        let (since, until) = counted.0.range();
        fixed = Some((since, until));
        let raw = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter())
            .append_pair("since_ns", &since.to_string())
            .append_pair("until_ns", &until.to_string())
            .finish();
        let path = pinned_path(CLUSTER_HISTOGRAM_PATH, &raw, version);
        let round = Round::<NodeHistogram>::ask(&app, &path, Some(timeout)).await;
        if round.again(&app, &mut tries).await {
            continue;
        }
        let (answers, partial) = round.finish(version);
        break (counted, answers, partial);
    };
    drop(slot);
    let mut answers: Vec<NodeHistogram> = answers.into_iter().map(|a| a.answer).collect();
    answers.push(own);
    let epochs: Vec<&HashMap<String, u64>> = answers.iter().map(|a| &a.epochs).collect();
    let stale = stale_parts(&app, &epochs);
    let truncated = answers.iter().any(|a| a.truncated);
    let more: Vec<MoreCounts> = answers
        .into_iter()
        .zip(stale)
        .flat_map(|(a, stale)| {
            a.sources
                .into_iter()
                .filter(move |s| !stale.contains(&s.source))
                .map(|s| MoreCounts {
                    job: s.job,
                    stream: s.stream,
                    labels: s.labels,
                    counts: s.counts,
                })
        })
        .collect();
    emit(QueryAnswered {
        kind: "histogram",
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(HistogramResponse {
        partial,
        ..published.respond(&hreq, more, truncated, started)
    })
}

/// `GET /api/v1/cluster/histogram`: what this node holds unpublished as of
/// the asker's version (`after_version`), counted per source in the
/// asker's buckets. A job it does not know is one it holds nothing of.
pub(super) async fn node_histogram(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<NodeHistogram>, ApiError> {
    let (raw, after) = take_after_version(raw)?;
    let (search, p, unknown) = request_here(&app, parse(raw, true)?, true, true)?;
    if unknown.is_some() {
        return Ok(Json(NodeHistogram::default()));
    }
    let slot = search_slot(&app)?;
    let hreq = HistogramRequest {
        search,
        buckets: p.buckets,
        step_ns: p.step_ns,
        by: p.by,
    };
    let snap = match app
        .store
        .unpublished_after(&|s| hreq.search.filter.wants(s), after)
    {
        Ok(snap) => snap,
        Err(FollowFirst(version)) => {
            return Ok(Json(NodeHistogram {
                follow_first: Some(version),
                ..NodeHistogram::default()
            }))
        }
    };
    let store = app.store.clone();
    let answer = on_search_thread(&app, move || {
        let _slot = slot;
        count_by_source(&snap, &hreq, None).map(|c| NodeHistogram::of(&store, c))
    })
    .await?;
    Ok(Json(answer))
}

/// Runs `work` on a search thread (`search.nice`) and waits for it.
async fn on_search_thread<T: Send + 'static>(
    app: &App,
    work: impl FnOnce() -> Result<T, crate::index::PartitionError> + Send + 'static,
) -> Result<T, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    spawn_search(app, move || {
        // The client may be gone; then nobody wants the answer.
        let _ = tx.send(work());
    })?;
    rx.await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "histogram failed: its thread ended without an answer",
            )
        })?
        .map_err(|e| {
            tracing::error!(error = %e, "histogram: cannot read the store");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the store: {e}"),
            )
        })
}
