//! Sending: requests made of ready streams, one node each, and what
//! their answers do to the streams.

use super::*;

impl Shipper {
    /// When the oldest line waiting to be sent reaches the batch delay.
    pub(super) fn flush_deadline(&self) -> Option<Instant> {
        let since = self.backlog.oldest(&self.tailers)?;
        Some(Instant::from_std(since) + Duration::from_millis(self.cfg.ship.batch_max_delay_ms))
    }

    /// Sends requests while there is room in flight and a batch is due:
    /// its oldest line waited the batch delay, or a full request is ready.
    pub(super) fn send_ready(&mut self, force: bool) {
        let max_bytes = self.cfg.ship.batch_max_bytes;
        while self.in_flight.len() < self.cfg.ship.max_in_flight {
            let ready: Vec<usize> = self.backlog.ready().collect();
            if ready.is_empty() {
                return;
            }
            // Nothing in flight: send now (at most every
            // min_request_gap_ms, so a busy agent does not send a request
            // per write), and a line goes out in milliseconds. While
            // requests are out, lines gather into fuller batches until one
            // is full or its oldest line has waited batch_max_delay_ms.
            let due = force
                || (self.in_flight.is_empty() && self.gap_passed())
                || self.flush_deadline().is_some_and(|d| d <= Instant::now())
                || ready
                    .iter()
                    .map(|&i| self.tailers[i].buffered_bytes())
                    .sum::<usize>()
                    >= max_bytes;
            if !due {
                return;
            }
            // One request goes to one node: the first ready stream's, with
            // the other ready streams of that node.
            let Some(node) = self.tailers[ready[0]].route.node else {
                return;
            };
            let mut keys = Vec::new();
            let mut batches = Vec::new();
            let mut room = max_bytes;
            for i in ready {
                if room == 0 {
                    break;
                }
                let t = &mut self.tailers[i];
                if t.route.node != Some(node) {
                    continue;
                }
                let before = t.buffered_bytes();
                let batch = t.take_batch(room);
                self.backlog.update(i, t, before);
                if let Some(b) = batch {
                    room = room.saturating_sub(b.lines.iter().map(crate::tailer::wire_len).sum());
                    keys.push(t.path.clone());
                    batches.push(b);
                }
            }
            self.dispatch(node, keys, IngestRequest { batches });
        }
    }

    fn gap_passed(&self) -> bool {
        self.last_sent.elapsed() >= Duration::from_millis(self.cfg.ship.min_request_gap_ms)
    }

    /// When lines waiting now are next due to be sent: at the batch delay,
    /// or, with nothing in flight, once the gap after the last request has
    /// passed. Never while every request slot is taken: an answer wakes the
    /// loop then (waking at a deadline already past would spin).
    pub(super) fn next_send_at(&self) -> Option<Instant> {
        if self.in_flight.len() >= self.cfg.ship.max_in_flight {
            return None;
        }
        let deadline = self.flush_deadline()?;
        if self.in_flight.is_empty() {
            let gap = self.last_sent + Duration::from_millis(self.cfg.ship.min_request_gap_ms);
            return Some(deadline.min(gap));
        }
        Some(deadline)
    }

    fn dispatch(&mut self, node: usize, keys: Vec<PathBuf>, req: IngestRequest) {
        self.last_sent = Instant::now();
        let sender = self.nodes.get(node).sender.clone();
        self.in_flight.spawn(async move {
            let d = sender.deliver(&req).await;
            (node, keys, req, d)
        });
    }

    /// Sends each batch of a refused request on its own, so one bad batch
    /// does not take the others down with it.
    fn resend_singly(&mut self, node: usize, keys: Vec<PathBuf>, req: IngestRequest) {
        for (key, batch) in keys.into_iter().zip(req.batches) {
            self.dispatch(
                node,
                vec![key],
                IngestRequest {
                    batches: vec![batch],
                },
            );
        }
    }

    pub(super) fn on_delivery(&mut self, done: InFlight) {
        let acked = matches!(done.3, Delivery::Acked(_));
        self.settle_delivery(done);
        if !acked {
            // A rewind, a requeue or a drop: rare, counted again whole.
            self.backlog.recount(&self.tailers);
        }
    }

    fn settle_delivery(&mut self, (node, keys, req, delivery): InFlight) {
        if let Delivery::Unreachable { message } = delivery {
            return self.undelivered(node, keys, req, &message);
        }
        if req.batches.len() > 1 && !matches!(delivery, Delivery::Acked(_)) {
            return self.resend_singly(node, keys, req);
        }
        match delivery {
            Delivery::Unreachable { .. } => {}
            Delivery::Acked(resp) => {
                self.lines_acked += resp.accepted + resp.duplicates;
                self.note_incarnation(node, &resp.incarnation);
                let question = self.questions;
                let publishes = self.server_publishes;
                for (key, batch) in keys.iter().zip(&req.batches) {
                    let Some(&i) = self.by_path.get(key) else {
                        continue;
                    };
                    let t = &mut self.tailers[i];
                    let before = t.buffered_bytes();
                    t.ack(batch.end);
                    t.route.after_question = question;
                    if !publishes {
                        t.set_published(batch.end);
                    }
                    self.backlog.update(i, t, before);
                }
                self.checkpoint_dirty = true;
            }
            Delivery::Gap { held_end, message } => {
                let Some((key, mut batch)) = keys.into_iter().zip(req.batches).next() else {
                    return;
                };
                let Some(t) = self.tailer(&key) else { return };
                match t.rewind(held_end) {
                    Some(from) if from == held_end => tracing::warn!(
                        file = %key.display(),
                        "the server holds this stream only up to offset {held_end} ({message}); reading it again from there"
                    ),
                    Some(from) => tracing::warn!(
                        file = %key.display(),
                        "the server holds this stream only up to offset {held_end} ({message}), and bytes {held_end}..{from} are no longer on disk here (lost): reading it again from {from}, with the gap allowed"
                    ),
                    None => {
                        tracing::warn!(
                            file = %key.display(),
                            "the server holds this stream only up to offset {held_end}, and bytes {held_end}..{} are no longer on disk here: sending on, with the gap allowed",
                            batch.start
                        );
                        t.in_flight = true;
                        batch.allow_gap = true;
                        self.dispatch(
                            node,
                            vec![key],
                            IngestRequest {
                                batches: vec![batch],
                            },
                        );
                    }
                }
            }
            Delivery::TooLarge { message } => {
                let Some((key, batch)) = keys.into_iter().zip(req.batches).next() else {
                    return;
                };
                if batch.lines.len() > 1 {
                    if let Some(t) = self.tailer(&key) {
                        t.requeue_smaller(batch);
                    }
                } else {
                    self.drop_batch(&key, batch, &format!("413: {message}"));
                }
            }
            Delivery::Refused { status, message } => {
                if let Some((key, batch)) = keys.into_iter().zip(req.batches).next() {
                    self.drop_batch(&key, batch, &format!("{status}: {message}"));
                }
            }
        }
    }

    /// A request to a node that could not be reached for
    /// `ship.failover_after_ms`: the node is down, and its batches go back
    /// to their streams, which move to other nodes.
    fn undelivered(&mut self, node: usize, keys: Vec<PathBuf>, req: IngestRequest, why: &str) {
        if self.nodes.unreachable(node, true) {
            tracing::warn!(
                node = %self.nodes.get(node).url(),
                "{why}: its streams move to the other nodes"
            );
        }
        for (key, batch) in keys.into_iter().zip(req.batches) {
            if let Some(t) = self.tailer(&key) {
                t.requeue(batch);
            }
        }
        self.reroute();
    }

    /// A batch the server can never take: say exactly what is lost, move on.
    fn drop_batch(&mut self, key: &PathBuf, batch: Batch, why: &str) {
        let n = batch.lines.len() as u64;
        tracing::error!(
            file = %key.display(),
            source = %batch.source.key(),
            "dropped {n} lines (stream offsets {}..{}): the server refused them for good ({why})",
            batch.start,
            batch.end
        );
        self.lines_dropped += n;
        if let Some(t) = self.tailer(key) {
            t.ack(batch.end);
            // Never to be published: what was published before them is
            // all there will be (else a deleted stream is held for ever).
            if t.published >= batch.start {
                t.set_published(batch.end);
            }
        }
        self.checkpoint_dirty = true;
    }

    pub(super) fn tailer(&mut self, key: &PathBuf) -> Option<&mut StreamTailer> {
        let i = *self.by_path.get(key)?;
        self.tailers.get_mut(i)
    }
}
