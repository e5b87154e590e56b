//! [`NodeAnswer`]: one node's part of a fan-out search, and the sink
//! ([`Collector`]) that makes it from the node's search.

use std::collections::HashMap;

use cblogs_core::api::{SearchEvent, SearchSummary};
use cblogs_core::line_event::decode_search_event;
use serde::{Deserialize, Serialize};

use crate::search::SearchSink;

/// What one node answers of a fan-out search
/// (`GET /api/v1/cluster/search`): its search over what it holds that is
/// not published as of the version asked.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct NodeAnswer {
    /// The node cannot answer after the version asked: the asker must
    /// follow the metastore up to this version, then ask again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_first: Option<u64>,
    /// The jobs its selectors resolved to here.
    #[serde(default)]
    pub jobs: Vec<String>,
    /// Its lines (and breaks), counts or sources, in the search's order.
    #[serde(default)]
    pub events: Vec<SearchEvent>,
    #[serde(default)]
    pub summary: Option<SearchSummary>,
    /// Per source (hex id) of its events: the ownership epoch the node
    /// holds it at (0: none).
    #[serde(default)]
    pub epochs: HashMap<String, u64>,
}

/// The source (hex id) an event is of, if any.
pub fn event_source(event: &SearchEvent) -> Option<&str> {
    match event {
        SearchEvent::Line(l) => Some(&l.line.source),
        SearchEvent::Count(c) => Some(&c.source.source_id),
        SearchEvent::Source(m) => Some(&m.source_id),
        _ => None,
    }
}

/// A search's events, kept: a node's answer.
#[derive(Default)]
pub struct Collector {
    pub answer: NodeAnswer,
}

impl SearchSink for Collector {
    fn send(&mut self, event: SearchEvent) -> bool {
        match event {
            SearchEvent::Start { jobs } => self.answer.jobs = jobs,
            SearchEvent::Summary(s) => self.answer.summary = Some(s),
            e => self.answer.events.push(e),
        }
        true
    }

    fn send_serialized(&mut self, json: &[u8]) -> bool {
        match decode_search_event(json) {
            Ok(e) => self.send(e),
            Err(e) => {
                tracing::error!(error = %e, "a search event this node wrote cannot be read back");
                false
            }
        }
    }

    fn flush(&mut self) -> bool {
        true
    }
}
