//! Search: grep over the selected sources, narrowed by the index.
//!
//! A search takes a [`ReadSnapshot`] (so each line is seen once, in memory
//! or in the index), lists the selected sources' blocks in the time range
//! and asks the index which of them may hold a match ([`plan`] turns the
//! pattern into the index's `TermNeed`; `Partition::candidate_blocks`
//! evaluates it). The candidate blocks are read and every line verified
//! with the real regex on every core ([`pipeline`]), in the order of their
//! first line's time; the results are merged by time ([`merge`]) and sent as
//! they become final: a line is sent once no block still to be read can
//! hold an earlier one. Memory holds the blocks in flight and the lines
//! waiting for that moment, whatever the size of the answer.
//!
//! ```text
//! request.rs    SearchRequest, Mode, Cursor, SearchSink: one search, checked
//! blocks.rs     gather: the selected sources' blocks in range, candidates marked
//! run.rs        run: to the end, the limit, the deadline or the client leaving
//! plan.rs       pattern → literals every match contains (Need) → index terms (TermNeed)
//! pipeline.rs   candidate blocks read and verified on every core, in first-line-time order
//! workers.rs    SearchWorkers: the cores all searches share (a permit per block worked on)
//! scan.rs       one block: prefilter, regex, context from neighbouring blocks
//! events.rs     events=true: a match's whole event (its first line to its last)
//! prefilter.rs  Aho-Corasick over a block's text for the regex's prefix literals
//! merge.rs      lines mode: a heap by time; what is final is sent; limit and cursor
//! histogram.rs  matching lines per bucket and stream (and job)
//! around.rs     the lines around one line (the page's context view)
//! fanin/        a cluster's search: the other nodes' answers merged into this one's
//! ```
//!
//! Why it is exact: the index only rules blocks out, and every step of the
//! plan only widens (a literal split by an unknown part gives two needs,
//! an unknown class ends a literal, an alternation with an unknown branch
//! needs nothing); every line of a block read is checked with the real
//! regex. `crates/server/tests/index_narrowing.rs` checks on a real
//! partition that no block holding a match is ruled out; `tests/search.rs`
//! compares `cblogs grep` with `rg` over the same files.
mod around;
mod blocks;
mod events;
pub mod fanin;
pub mod histogram;
mod merge;
mod pipeline;
pub mod plan;
mod prefilter;
mod request;
mod run;
mod scan;
mod workers;

pub use around::lines_around;
pub use prefilter::Prefilter;
pub use request::{Cursor, Mode, SearchRequest, SearchSink};
pub use run::run;
pub use workers::SearchWorkers;
