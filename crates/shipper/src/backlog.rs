//! `Backlog`: what waits to be sent, kept up to date as the loop goes.
//!
//! The loop asks three things many times a second: how many bytes of lines
//! are buffered (back-pressure), which streams have lines ready to send,
//! and when the oldest of those is due. Walking every stream for each
//! answer cost more than the reading itself on an agent with ten thousand
//! quiet files, so the answers are kept here instead: each change to a
//! stream reports the bytes it held before ([`Backlog::update`]).

use std::collections::BTreeSet;
use std::time::Instant;

use crate::tailer::StreamTailer;

#[derive(Debug, Default)]
pub struct Backlog {
    /// Bytes of lines read and not yet sent, over every stream.
    bytes: usize,
    /// Streams (by index) with lines pending, no batch in flight and a
    /// node to send to ([`StreamTailer::sendable`]), in index order.
    ready: BTreeSet<usize>,
}

impl Backlog {
    /// Stream `i` changed; it held `before` bytes.
    pub fn update(&mut self, i: usize, t: &StreamTailer, before: usize) {
        self.bytes = (self.bytes + t.buffered_bytes()).saturating_sub(before);
        if t.sendable() {
            self.ready.insert(i);
        } else {
            self.ready.remove(&i);
        }
    }

    /// Counts everything again: after changes too rare to track one by
    /// one (a rewind of every stream, streams forgotten and renumbered).
    pub fn recount(&mut self, tailers: &[StreamTailer]) {
        self.bytes = tailers.iter().map(StreamTailer::buffered_bytes).sum();
        self.ready = (0..tailers.len())
            .filter(|&i| tailers[i].sendable())
            .collect();
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The streams ready to send, in index order.
    pub fn ready(&self) -> impl Iterator<Item = usize> + '_ {
        self.ready.iter().copied()
    }

    /// When the oldest line ready to send was read.
    pub fn oldest(&self, tailers: &[StreamTailer]) -> Option<Instant> {
        self.ready
            .iter()
            .filter_map(|&i| tailers.get(i)?.pending_since())
            .min()
    }
}
