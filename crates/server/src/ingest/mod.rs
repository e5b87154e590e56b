//! The ingest path, from a request body to an acknowledgement:
//!
//! ```text
//! decode.rs     the body: bounded zstd, JSON, limits, checks (a pure function, fuzzed)
//! admission.rs  wait for room in memory (storage.max_unindexed_bytes)
//! ingestor.rs   refuse gaps, drop what a source already holds, number the
//!               rest as WAL records, wait until they are durable
//! recovery.rs   after a full disk, resume once there is room
//! ```
//!
//! The WAL (`wal/`) makes a record durable and hands it to the store;
//! only then is the request answered.

pub mod admission;
pub mod decode;
mod ingestor;
mod recovery;

pub use ingestor::{IngestError, Ingestor};
pub use recovery::spawn_ingest_recovery;
