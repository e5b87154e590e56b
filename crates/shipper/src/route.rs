//! `Route`: which cblogsd node takes a stream's batches, kept on each
//! stream. [`crate::nodes`] chooses it; the loop only sends a stream that
//! has a node and is not held.

use std::time::Instant;

#[derive(Debug, Default, Clone)]
pub struct Route {
    /// The node that takes its batches (an index into `Nodes`, which
    /// never removes one); `None` until one is chosen.
    pub node: Option<usize>,
    /// Not sent now: no node can take it, it waits for the answer to a
    /// batch sent to a node it leaves, or it waits to move.
    pub held: bool,
    /// Since when it waits to move to another node (one that joined or
    /// came back) for its node to publish what it acknowledged.
    pub moving_since: Option<Instant>,
    /// The number of the last question about published ends asked
    /// before its last acknowledgement or move: the answer to that
    /// question or an older one knows of neither.
    pub after_question: u64,
}
