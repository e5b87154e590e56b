//! What the nodes hold: the question of their published and held ends,
//! their incarnations, and the routing of streams over them.
//!
//! Each node is asked on its own (`ask`), and answers for the streams it
//! takes. A stream is read again from what its node holds when the node
//! holds less than it acknowledged: after a new incarnation (it lost its
//! disk), or, within one incarnation, once another node took the source
//! over (this node was fenced out of it). An answer to a question asked
//! before the stream's last acknowledgement knows nothing of it, and is
//! not acted on (`Route::after_question`).

use super::*;

impl Shipper {
    /// An ingest answer came from `node`, of `incarnation`: the first one
    /// seen is kept; another one means the node may have lost what it had
    /// not published, and it is asked what it holds.
    pub(super) fn note_incarnation(&mut self, node: usize, incarnation: &str) {
        let n = self.nodes.get_mut(node);
        if incarnation.is_empty() || n.incarnation.as_deref() == Some(incarnation) {
            return;
        }
        if n.incarnation.is_none() {
            n.incarnation = Some(incarnation.to_owned());
            self.checkpoint_dirty = true;
            return;
        }
        self.ask(node);
    }

    /// Asks each node whose question is due what it holds.
    pub(super) fn ask_published(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes.question_due(i) {
                self.ask(i);
            }
        }
    }

    /// Asks `node` what it holds of this agent's sources (unless a
    /// question is on its way already).
    fn ask(&mut self, node: usize) {
        let n = self.nodes.get_mut(node);
        if n.asking || !n.is_listed() {
            return;
        }
        self.questions += 1;
        n.ask(self.questions);
        let sender = n.sender.clone();
        let host = self.host.clone();
        self.asking
            .spawn(async move { (node, sender.published(&host).await) });
    }

    /// `node`'s answer: each of its streams' published end (files wholly
    /// before it are closed), and the streams it holds less of than it
    /// acknowledged are read again from what it holds (one with a batch
    /// in flight is told by that batch's 409). Then, with several nodes,
    /// every stream is routed again: the node may have come or gone.
    pub(super) fn on_published(
        &mut self,
        node: usize,
        answer: Result<PublishedResponse, PublishedError>,
    ) {
        self.nodes.get_mut(node).asking = false;
        self.settle_published(node, answer);
        self.reroute();
        // Streams may have been rewound: counted again whole (this runs
        // once per answer, not per line).
        self.backlog.recount(&self.tailers);
    }

    fn settle_published(&mut self, node: usize, answer: Result<PublishedResponse, PublishedError>) {
        let url = self.nodes.get(node).url().to_owned();
        let resp = match answer {
            Ok(resp) => {
                self.server_publishes = true;
                resp
            }
            Err(PublishedError::NotServed(e)) => {
                self.nodes.answered(node, "");
                if self.server_publishes {
                    tracing::info!(
                        "the server does not say what it has published ({e}): an older cblogsd; \
                         acknowledged lines count as published"
                    );
                    for t in &mut self.tailers {
                        t.set_published(t.acked);
                    }
                }
                self.server_publishes = false;
                return;
            }
            Err(PublishedError::Failed(e)) => {
                // An answer, if not the one asked for: the node is there.
                if !self.nodes.get(node).failure_said {
                    tracing::info!("cannot ask the server what it holds: {e}");
                    self.nodes.get_mut(node).failure_said = true;
                }
                return;
            }
            Err(PublishedError::Unreachable(e)) => {
                if self.nodes.unreachable(node, false) {
                    tracing::warn!(
                        node = %url,
                        "{e}: for {} ms now; its streams move to the other nodes",
                        self.cfg.ship.failover_after_ms
                    );
                    self.nodes.get_mut(node).failure_said = true;
                } else if !self.nodes.get(node).failure_said {
                    tracing::info!("cannot ask the server what it holds: {e}");
                    self.nodes.get_mut(node).failure_said = true;
                }
                return;
            }
        };
        if self.nodes.answered(node, &resp.node) && self.nodes.several() {
            tracing::info!(node = %url, id = %resp.node, "the node answers: it takes streams");
        }
        let ends: HashMap<&str, (u64, u64)> = resp
            .sources
            .iter()
            .map(|s| (s.id.as_str(), (s.published_end, s.held_end)))
            .collect();
        let several = self.nodes.several();
        let n = self.nodes.get_mut(node);
        let question = n.question;
        let new_incarnation = !resp.incarnation.is_empty()
            && n.incarnation.as_deref() != Some(resp.incarnation.as_str());
        let known = if new_incarnation {
            self.checkpoint_dirty = true;
            n.incarnation.replace(resp.incarnation.clone())
        } else {
            None
        };
        let mut again = 0;
        for t in &mut self.tailers {
            if t.route.node != Some(node) {
                continue;
            }
            let id = format!("{:016x}", t.source.id());
            let said = ends.get(id.as_str()).copied();
            let (published_end, held_end) = said.unwrap_or((0, 0));
            if known.is_none() {
                if published_end > t.published && t.published < t.acked {
                    t.set_published(published_end);
                    self.checkpoint_dirty = true;
                }
                // Fenced out: another node took the source over.
                let fenced = several
                    && said.is_some()
                    && !t.in_flight
                    && held_end < t.acked
                    && t.route.after_question < question;
                if fenced
                    && t.resend_from(
                        held_end,
                        &format!("{url} holds this stream (another node took the source over)"),
                    )
                {
                    again += 1;
                    self.more_to_read = true;
                }
                continue;
            }
            if t.in_flight || held_end >= t.acked {
                t.set_published(published_end);
                continue;
            }
            if t.resend_from(held_end, "the server (a new incarnation) holds this stream") {
                again += 1;
            }
            t.set_published(published_end);
        }
        if known.is_none() {
            return;
        }
        tracing::info!(
            node = %url,
            incarnation = %resp.incarnation,
            streams_sent_again = again,
            "the server has a new incarnation"
        );
        self.more_to_read = true;
    }

    /// The serverset's members that take ingest changed.
    pub(super) fn on_members(&mut self, urls: Vec<String>) {
        match self.nodes.set_members(&urls) {
            Ok(true) => {
                self.ask_published();
                self.reroute();
            }
            Ok(false) => {}
            Err(e) => tracing::error!("cannot send to the serverset's nodes {urls:?}: {e}"),
        }
    }

    /// With several nodes: chooses again the node of every stream (a node
    /// came, went or settled; a stream waits to move).
    pub(super) fn reroute(&mut self) {
        if !self.nodes.several() {
            return;
        }
        self.nodes.begin_routing();
        let mut changed = false;
        for t in &mut self.tailers {
            changed |= self.nodes.route(t, self.questions);
        }
        if changed {
            self.backlog.recount(&self.tailers);
            self.more_to_read = true;
        }
    }
}
