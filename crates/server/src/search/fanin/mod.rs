//! Fan-out search, the gathering side: a node of a cluster answers a
//! search for the whole cluster (issue 18's fan-out queries).
//!
//! It searches the published splits it shows, pinned to one metastore
//! version `V` (`store/pinned.rs`), and asks every node (itself too) for
//! what that node holds that is not published as of `V`: a
//! [`NodeAnswer`], the same search over that part, collected whole (a
//! node's unpublished part is its last minutes of lines, and an answer
//! holds at most `limit` lines). Between the two parts each line is read
//! once.
//!
//! Copies across nodes: after a failover, the node a source left may
//! still hold lines of it unpublished (it drops them when it next reads
//! the metastore, within a commit round), and the new owner holds the
//! same bytes, sent again. Each answer says, per source, the ownership
//! epoch its node holds it at; of a source answered under several, only
//! the newest (and no older than the metastore records) is kept
//! ([`keep_newest_owners`]), so counts are not doubled either. A line of
//! the answers that lies inside one already sent is still dropped by
//! byte range ([`FanIn`]), as a last guard.
//!
//! ```text
//! answer.rs  NodeAnswer: one node's part; Collector: the sink that makes it
//! sink.rs    FanIn: the local search's events merged with the answers', then sent on
//! events.rs  events=true: each event's lines together, at its first match's time
//! ```

mod answer;
mod events;
mod sink;

use std::collections::{HashMap, HashSet};

pub use answer::{event_source, Collector, NodeAnswer};
pub use sink::FanIn;

use crate::cluster::stale_sources;

/// Drops from `answers` the events of sources answered under an older
/// ownership epoch than another answer's, or than `recorded` (the
/// metastore's, as this node last read it) says
/// ([`crate::cluster::stale_sources`]).
pub fn keep_newest_owners(answers: &mut [NodeAnswer], recorded: impl Fn(&str) -> Option<u64>) {
    let stale: Vec<HashSet<String>> = {
        let epochs: Vec<&HashMap<String, u64>> = answers.iter().map(|a| &a.epochs).collect();
        stale_sources(&epochs, recorded)
            .into_iter()
            .map(|s| s.into_iter().map(str::to_owned).collect())
            .collect()
    };
    for (a, stale) in answers.iter_mut().zip(stale) {
        if !stale.is_empty() {
            a.events
                .retain(|e| event_source(e).is_none_or(|s| !stale.contains(s)));
            a.epochs.retain(|s, _| !stale.contains(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cblogs_core::api::{MatchSource, SearchEvent, SourceCount};

    fn count(source: &str, n: u64) -> SearchEvent {
        SearchEvent::Count(SourceCount {
            source: MatchSource {
                source_id: source.into(),
                cluster: "c".into(),
                job: "www-data/prod/hello".into(),
                instance: 0,
                process: "hello".into(),
                stream: cblogs_core::Stream::Stdout,
                host: "h".into(),
            },
            count: n,
        })
    }

    fn answer(counts: &[(&str, u64, u64)]) -> NodeAnswer {
        NodeAnswer {
            events: counts.iter().map(|(s, n, _)| count(s, *n)).collect(),
            epochs: counts.iter().map(|(s, _, e)| (s.to_string(), *e)).collect(),
            ..NodeAnswer::default()
        }
    }

    #[test]
    fn a_source_answered_by_two_owners_keeps_the_newest_ones_answer() {
        // "a" moved from the first node (epoch 1) to the second (2); "b"
        // is the first's alone; "c" the metastore says a third took (5).
        let mut answers = [
            answer(&[("a", 10, 1), ("b", 3, 1), ("c", 4, 4)]),
            answer(&[("a", 12, 2)]),
        ];
        keep_newest_owners(&mut answers, |s| (s == "c").then_some(5));
        let kept = |a: &NodeAnswer| -> Vec<String> {
            a.events
                .iter()
                .filter_map(|e| event_source(e).map(str::to_owned))
                .collect()
        };
        assert_eq!(kept(&answers[0]), ["b"]);
        assert_eq!(kept(&answers[1]), ["a"]);
    }
}
