//! `cblogsd`, the central cblogs service, as a library.
//!
//! ```text
//! POST /api/v1/ingest ─▶ api ─▶ ingest (admission, dedup by offset) ─▶ wal (group commit, fsync)
//!                                                                        │ durable
//!                                                                        ▼
//!              live tails, alerts ◀── store::TailHub ◀── store::Store::apply: open blocks
//!                                                                        │ seal on size/age
//!                                                                        ▼
//!                          store::Committer: index::PreparedBlock ─▶ index::PartitionWriter
//!                                 commit ─▶ Store::committed ─▶ Wal::trim_below
//! GET /api/v1/{jobs,tail,follow,search,…} ─▶ api ─▶ read / search over a store snapshot
//! ```
//!
//! The folders, bottom up (each imports only from those before it):
//! [`config`]; `disk` (free space, kept ids); `cluster` (this node among
//! others: ZooKeeper's serverset or a static list); `priority` (threads' nice values); `metrics` (events the loops emit); `block` (the unit of
//! storage); `access` (tokens, limits); `index` (partitions: tantivy plus
//! block files); `wal`; `store` (memory blocks, snapshots, the committer,
//! partitions' lives, retention); `ingest`; `logql` (the query language of
//! the Loki API); `read`; `push` (lines from other senders: Loki push, OTLP); `search`; `alert`;
//! `app` (what handlers share); `api` (HTTP); [`Service`] (start and
//! stop). `ARCHITECTURE.md` at the repository's root maps them.
//!
//! Everything is private but what the binary needs; tests and fuzz
//! targets reach the internals through [`testing`].

mod access;
mod alert;
mod api;
mod app;
mod block;
mod bucket;
mod cluster;
pub mod config;
pub mod demo;
mod disk;
mod index;
mod ingest;
mod logql;
mod metastore;
mod metrics;
mod multiline;
mod priority;
mod push;
mod read;
mod search;
mod service;
mod store;
mod wal;

pub use api::{tls_acceptor, PeerAddr, Starting, TlsListener};
pub use config::{Config, NodeRole};
pub use service::{Service, StartError};

/// The internals that tests and fuzz targets drive directly. Not an API:
/// it changes with the code.
#[doc(hidden)]
pub mod testing {
    pub use crate::api::check_query;
    pub use crate::block::LineBlock;
    pub use crate::index::{
        tokens::distinct_tokens, Partition, PreparedBlock, SizedLru, TermMatch, TermNeed, TimeRange,
    };
    pub use crate::ingest::decode::{decode_ingest, DecodeError, DecodeLimits};
    pub use crate::ingest::IngestError;
    pub use crate::read::{last_lines, LineFilter, OwnedLine};
    pub use crate::search::plan::Need;
    pub use crate::search::{
        run as search, Mode, Prefilter, SearchRequest, SearchSink, SearchWorkers,
    };
}
