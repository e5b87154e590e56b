//! What `cblogsd` counts, for `/metrics` (Prometheus text, prometheus-client).
//!
//! The loops that do the work (ingest, queries, the committer, retention,
//! the alert engine) do not hold a handle to the metrics: they [`emit`] an
//! event (`events.rs`) and the event updates the process's one registry,
//! as Vector's internal events do. So no `Arc<Metrics>` is threaded through
//! constructors, and a part that counts something depends only on this
//! module. Sizes (WAL, index, memory), live tails and running searches are
//! read when scraped ([`Gauges`]), so they are never stale and cost
//! nothing between scrapes.
//!
//! The registry is per process: one `cblogsd` runs one service. (A process
//! that opens several services in turn, as some tests do, keeps counting
//! into the same registry.)
//!
//! ```text
//! events.rs    Event, emit: what happened (ingested, refused, answered, committed, …)
//! registry.rs  the registry and its metrics; render with the scrape-time gauges
//! ```

mod events;
mod registry;

pub use events::{
    emit, AlertNotified, CommitDone, Ingested, MergeEnded, ObjectStoreRequest, PartitionDeleted,
    QueryAnswered, RequestRefused, SplitCacheEvicted, SplitCacheUsed, TermListLoaded,
};
pub use registry::{render, Gauges};
