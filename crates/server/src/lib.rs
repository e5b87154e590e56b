//! `cblogsd`, the central cblogs service, as a library.
//!
//! ```text
//! POST /api/v1/ingest ─▶ Ingestor (dedup by offset) ─▶ Wal (group commit, fsync)
//!                                                        │ durable
//!                                                        ▼
//!               follow streams ◀── Store::apply: open blocks in memory
//!                                                        │ seal on size/age
//!                                                        ▼
//!                        Committer: zstd block ─▶ Partition (blocks.dat + tantivy doc)
//!                                   commit ─▶ Store::committed ─▶ Wal::trim_below
//! GET /api/v1/{jobs,tail,follow} ─▶ query over Store::snapshot (memory + committed)
//! ```
//!
//! One file, one idea: [`wal`] makes batches durable, [`store`] holds what is
//! readable and keeps readers consistent, [`block`] is the storage unit,
//! [`partition`] a time slice of the index, [`committer`] moves blocks from
//! memory to the index, [`ingest`] de-duplicates, [`query`] reads, [`http`]
//! speaks HTTP, [`service`] starts and stops the parts in order, [`demo`]
//! makes believable traffic.

pub mod alert;
pub mod auth;
pub mod block;
pub mod cache;
pub mod committer;
pub mod config;
pub mod decode;
pub mod demo;
pub mod http;
pub mod http_search;
pub mod ingest;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod partition;
pub mod query;
pub mod search;
pub mod service;
pub mod store;
pub mod wal;
pub mod web;

pub use config::Config;
pub use service::{Service, StartError};
