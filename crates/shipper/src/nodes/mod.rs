//! `Nodes`: the cblogsd nodes this shipper sends to, and which one takes
//! each stream ([`Nodes::route`]).
//!
//! One server is the common case, and nothing here changes it: every
//! stream goes to it, and its sender retries it for ever. With several (a
//! list, or a serverset read from ZooKeeper by [`serverset`]), each source
//! goes to one node, by rendezvous hashing of its id over the live nodes'
//! ids (`cblogs_core::rendezvous`), and:
//!
//! - a node is live once it has answered the question of what it holds
//!   (`GET /api/v1/ingest/published`, whose answer names its id), until
//!   it cannot be reached for `ship.failover_after_ms` or leaves the
//!   serverset. An answer, even 429 or 503, never takes it out: a busy
//!   node is not a dead one, and moving its sources would only add load.
//! - A stream whose node is no longer live moves at once to the best live
//!   node. What the old node acknowledged but had not published is read
//!   and sent again from the published end: the new node takes the source
//!   over in the metastore at one more epoch, so the old node can publish
//!   none of it (rule 2 of scale-out.md), and a copy cannot arise.
//! - A node that joins, or comes back, takes its share only once it has
//!   answered for `ship.node_settle_ms`, and each stream only once the
//!   node it leaves has published all it acknowledged (the stream's new
//!   lines wait meanwhile, at most `ship.move_wait_ms`): a planned move
//!   sends nothing twice.

pub mod serverset;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cblogs_core::rendezvous;

use crate::config::{ServerSpec, ShipConfig};
use crate::sender::{Credentials, Sender, SenderError};
use crate::tailer::StreamTailer;

/// At a start, streams wait this long at most for every node to answer
/// (see `Nodes::starting`), and every node that answers within it takes
/// its share at once: none is joining.
const START_GRACE: Duration = Duration::from_secs(2);

/// One node, as this shipper knows it.
pub struct Node {
    pub sender: Arc<Sender>,
    /// Its id, from its answers (its URL for a node too old to say). A
    /// node takes no stream before it has answered.
    pub id: Option<String>,
    /// [`rendezvous::seed`] of the id.
    seed: u64,
    /// Its incarnation, as it last said.
    pub incarnation: Option<String>,
    /// Since when it answers; `None` while it is not live.
    up_since: Option<Instant>,
    /// Since when its questions fail to reach it.
    failing_since: Option<Instant>,
    /// In the list, or in the serverset as last read.
    listed: bool,
    /// A question about what it holds is on its way…
    pub asking: bool,
    /// …numbered so (see [`crate::route::Route::after_question`])…
    pub question: u64,
    /// …asked then.
    asked_at: Option<Instant>,
    /// When it last answered one.
    answered: Option<Instant>,
    /// Its questions fail: said once, not every time.
    pub failure_said: bool,
    /// Streams waiting for it to publish before they move away.
    waiting: usize,
}

impl Node {
    pub fn url(&self) -> &str {
        self.sender.server()
    }

    pub fn is_up(&self) -> bool {
        self.up_since.is_some()
    }

    pub fn is_listed(&self) -> bool {
        self.listed
    }

    /// Streams that wait for it to publish before they move away.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// A question numbered `question` goes out.
    pub fn ask(&mut self, question: u64) {
        self.asking = true;
        self.question = question;
        self.asked_at = Some(Instant::now());
    }
}

pub struct Nodes {
    nodes: Vec<Node>,
    /// More than one node may take streams: streams fail over.
    several: bool,
    ship: ShipConfig,
    credentials: Arc<Credentials>,
    started: Instant,
    /// Streams moved from one node to another since start.
    pub moves: u64,
}

impl Nodes {
    pub fn new(
        spec: &ServerSpec,
        ship: &ShipConfig,
        credentials: Credentials,
    ) -> Result<Nodes, SenderError> {
        let mut nodes = Nodes {
            nodes: Vec::new(),
            several: match spec {
                ServerSpec::Urls(urls) => urls.len() > 1,
                ServerSpec::Serverset(_) => true,
            },
            ship: ship.clone(),
            credentials: Arc::new(credentials),
            started: Instant::now(),
            moves: 0,
        };
        if let ServerSpec::Urls(urls) = spec {
            for url in urls {
                nodes.add(url)?;
            }
        }
        Ok(nodes)
    }

    fn add(&mut self, url: &str) -> Result<(), SenderError> {
        let sender = Sender::new(url, &self.ship, self.credentials.clone(), self.several)?;
        self.nodes.push(Node {
            sender: Arc::new(sender),
            id: None,
            seed: 0,
            incarnation: None,
            up_since: None,
            failing_since: None,
            listed: true,
            asking: false,
            question: 0,
            asked_at: None,
            answered: None,
            failure_said: false,
            waiting: 0,
        });
        Ok(())
    }

    /// More than one node may take streams.
    pub fn several(&self) -> bool {
        self.several
    }

    pub fn get(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    pub fn get_mut(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The serverset now lists `urls`. Returns whether that changed which
    /// nodes are listed.
    pub fn set_members(&mut self, urls: &[String]) -> Result<bool, SenderError> {
        let mut changed = false;
        for n in &mut self.nodes {
            let listed = urls.iter().any(|u| u == n.url());
            if listed != n.listed {
                changed = true;
                n.listed = listed;
                // Back in the serverset: live again once it answers.
                n.up_since = None;
            }
        }
        for url in urls {
            if !self.nodes.iter().any(|n| n.url() == url) {
                self.add(url)?;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Node `i` answered, as node `id` (empty: too old to say). Returns
    /// whether it became live.
    pub fn answered(&mut self, i: usize, id: &str) -> bool {
        let n = &mut self.nodes[i];
        let id = if id.is_empty() { n.url() } else { id }.to_owned();
        if n.id.as_deref() != Some(id.as_str()) {
            n.seed = rendezvous::seed(&id);
            n.id = Some(id);
        }
        let now = Instant::now();
        n.failing_since = None;
        n.answered = Some(now);
        n.failure_said = false;
        let became_live = n.up_since.is_none();
        n.up_since.get_or_insert(now);
        became_live
    }

    /// Node `i` could not be reached: by a delivery whose sender gave up
    /// on it (`given_up`), or by a question (it is down once questions
    /// have failed for `ship.failover_after_ms`). Returns whether it went
    /// down.
    pub fn unreachable(&mut self, i: usize, given_up: bool) -> bool {
        let failover_after = Duration::from_millis(self.ship.failover_after_ms);
        let n = &mut self.nodes[i];
        // From when the failing question went out: a stopped node that
        // accepts connections fails only at the request's timeout.
        let start = n.asked_at.unwrap_or_else(Instant::now);
        let since = *n.failing_since.get_or_insert(start);
        if self.several && n.up_since.is_some() && (given_up || since.elapsed() >= failover_after) {
            n.up_since = None;
            return true;
        }
        false
    }

    fn live(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        n.listed && n.id.is_some() && n.up_since.is_some()
    }

    /// Live for `node_settle_ms`, or since the shipper's first moments
    /// ([`START_GRACE`]).
    fn settled(&self, i: usize) -> bool {
        let settle = Duration::from_millis(self.ship.node_settle_ms);
        let at_start = self.started + START_GRACE.min(settle);
        self.live(i)
            && self.nodes[i]
                .up_since
                .is_some_and(|t| t <= at_start || t.elapsed() >= settle)
    }

    /// The node for `source` (its id), now at `current`: the best-scoring
    /// settled node, `current` included while it is live; else the best
    /// live one; `None` when no node is live.
    pub fn target(&self, source: u64, current: Option<usize>) -> Option<usize> {
        if !self.several {
            return (!self.nodes.is_empty()).then_some(0);
        }
        if self.starting() {
            return None;
        }
        let best = |ok: &dyn Fn(usize) -> bool| {
            (0..self.nodes.len())
                .filter(|&i| ok(i))
                .max_by_key(|&i| rendezvous::score(self.nodes[i].seed, source))
        };
        if let Some(c) = current.filter(|&c| self.live(c)) {
            return best(&|i| i == c || self.settled(i));
        }
        best(&|i| self.settled(i)).or_else(|| best(&|i| self.live(i)))
    }

    /// In the shipper's first moments ([`START_GRACE`]), while a listed
    /// node (or the serverset) has not answered yet: no stream is routed,
    /// or the first node to answer would take every stream, and the
    /// others' shares would then wait to move.
    fn starting(&self) -> bool {
        self.started.elapsed() < START_GRACE
            && (self.nodes.is_empty()
                || self
                    .nodes
                    .iter()
                    .any(|n| n.listed && n.answered.is_none() && n.failing_since.is_none()))
    }

    /// Whether node `i` is to be asked what it holds now (the caller's
    /// tick is `incarnation_check_ms` with one node, a second with
    /// several): a node not live, or one that streams wait on, at every
    /// tick; the others every `incarnation_check_ms`.
    pub fn question_due(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        if !n.listed || n.asking {
            return false;
        }
        let every = Duration::from_millis(self.ship.incarnation_check_ms);
        !self.several
            || !self.live(i)
            || n.waiting > 0
            || n.answered.is_none_or(|t| t.elapsed() >= every)
    }

    /// Chooses where stream `t` goes (see the module's doc); `question`
    /// numbers the last question asked. Returns whether it changed where,
    /// or whether, the stream is sent.
    pub fn route(&mut self, t: &mut StreamTailer, question: u64) -> bool {
        let before = (t.route.node, t.route.held);
        let target = self.target(t.source.id(), t.route.node);
        match (target, t.route.node) {
            (None, _) => t.route.held = true,
            (Some(n), Some(c)) if n == c => {
                t.route.held = false;
                t.route.moving_since = None;
            }
            (Some(n), None) => {
                // The first choice (at a start, or a new stream): the node
                // answers a batch past what it holds with its held end.
                t.route.node = Some(n);
                t.route.held = false;
                t.route.after_question = question;
            }
            (Some(n), Some(c)) => {
                let planned = self.live(c);
                let wait = Duration::from_millis(self.ship.move_wait_ms);
                if t.in_flight {
                    // Its batch's answer first (or its giving up).
                    t.route.held = true;
                } else if planned
                    && t.published < t.acked
                    && t.route
                        .moving_since
                        .get_or_insert_with(Instant::now)
                        .elapsed()
                        < wait
                {
                    t.route.held = true;
                    self.nodes[c].waiting += 1;
                } else {
                    self.move_stream(t, c, n, question);
                }
            }
        }
        (t.route.node, t.route.held) != before
    }

    /// Moves `t` from node `from` to `to`, first reading again what `from`
    /// had not published.
    fn move_stream(&mut self, t: &mut StreamTailer, from: usize, to: usize, question: u64) {
        let (old, new) = (self.nodes[from].url(), self.nodes[to].url());
        if t.published < t.acked {
            let published = t.published;
            t.resend_from(
                published,
                &format!("moving from {old} to {new}: {old} published this stream"),
            );
        } else {
            tracing::info!(file = %t.path.display(), "moving from {old} to {new}");
        }
        t.route.node = Some(to);
        t.route.held = false;
        t.route.moving_since = None;
        t.route.after_question = question;
        self.moves += 1;
    }

    /// Before a round of [`Nodes::route`]: no stream waits yet.
    pub fn begin_routing(&mut self) {
        for n in &mut self.nodes {
            n.waiting = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(urls: &[&str], settle_ms: u64) -> Nodes {
        let ship = ShipConfig {
            node_settle_ms: settle_ms,
            failover_after_ms: 0,
            ..ShipConfig::default()
        };
        let credentials = Credentials::from_config(&crate::Config::default()).unwrap();
        let urls = urls.iter().map(|u| u.to_string()).collect();
        let mut nodes = Nodes::new(&ServerSpec::Urls(urls), &ship, credentials).unwrap();
        // Long started: a node that answers now is joining.
        nodes.started = Instant::now() - Duration::from_secs(3600);
        nodes
    }

    /// Sources spread over the live nodes; one that cannot be reached
    /// gives its sources to the others and no other source moves; back,
    /// it takes them again only once it has answered for the settle time.
    #[test]
    fn a_down_node_gives_up_its_sources_and_takes_them_back_once_settled() {
        let mut n = nodes(&["http://a:1", "http://b:1", "http://c:1"], 0);
        for (i, id) in ["node-a", "node-b", "node-c"].iter().enumerate() {
            assert!(n.answered(i, id), "live once it answers");
            // Answering for an hour.
            n.nodes[i].up_since = Some(Instant::now() - Duration::from_secs(3600));
        }
        let sources: Vec<u64> = (0..3000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let before: Vec<usize> = sources
            .iter()
            .map(|&s| n.target(s, None).unwrap())
            .collect();
        for node in 0..3 {
            let share = before.iter().filter(|&&b| b == node).count();
            assert!((800..1200).contains(&share), "node {node}: {share}");
        }
        // Unreachable: b is down (failover_after_ms = 0).
        assert!(n.unreachable(1, false));
        for (&s, &was) in sources.iter().zip(&before) {
            let now = n.target(s, Some(was)).unwrap();
            if was == 1 {
                assert_ne!(now, 1);
            } else {
                assert_eq!(now, was, "only the down node's sources move");
            }
        }
        // Back, but settling (60 s): sources stay where they are.
        n.ship.node_settle_ms = 60_000;
        assert!(n.answered(1, "node-b"));
        let moved: Vec<usize> = sources
            .iter()
            .zip(&before)
            .map(|(&s, &was)| n.target(s, None).unwrap_or(was))
            .collect();
        assert!(
            moved.iter().all(|&m| m != 1),
            "a settling node takes no new source"
        );
        for ((&s, &was), &now) in sources.iter().zip(&before).zip(&moved) {
            assert_eq!(n.target(s, Some(now)), Some(now), "{was}");
        }
        // Settled: each source goes back where it was.
        n.ship.node_settle_ms = 0;
        for ((&s, &was), &now) in sources.iter().zip(&before).zip(&moved) {
            assert_eq!(n.target(s, Some(now)), Some(was));
        }
    }

    /// An answer (the question failing on a status, not a connection)
    /// never takes a node out; a node's address may change, its id keeps
    /// its sources; a node that left the serverset takes none.
    #[test]
    fn only_unreachable_or_unlisted_nodes_lose_their_sources() {
        let mut n = nodes(&["http://a:1", "http://b:1"], 0);
        n.ship.failover_after_ms = 60_000;
        n.answered(0, "node-a");
        n.answered(1, "node-b");
        let on_b = (0..1000u64)
            .find(|&s| n.target(s, None) == Some(1))
            .unwrap();
        assert!(!n.unreachable(1, false), "not before failover_after_ms");
        assert_eq!(n.target(on_b, Some(1)), Some(1));
        assert!(n.unreachable(1, true), "a delivery gave up on it");
        assert_eq!(n.target(on_b, Some(1)), Some(0));
        // Back at another address under the same id: the same sources.
        n.set_members(&["http://a:1".into(), "http://b:2".into()])
            .unwrap();
        assert!(!n.get(1).is_listed());
        n.answered(2, "node-b");
        assert_eq!(n.target(on_b, Some(0)), Some(2));
        // Gone from the serverset: its sources go.
        n.set_members(&["http://a:1".into()]).unwrap();
        assert_eq!(n.target(on_b, Some(2)), Some(0));
    }

    /// One server: everything goes to it, whatever it answers.
    #[test]
    fn one_server_takes_every_stream() {
        let mut n = nodes(&["http://a:1"], 0);
        assert!(!n.several());
        assert_eq!(n.target(7, None), Some(0));
        assert!(!n.unreachable(0, true), "one server is never down");
        assert_eq!(n.target(7, Some(0)), Some(0));
    }
}
