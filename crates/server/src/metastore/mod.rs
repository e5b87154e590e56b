//! The metastore: what is published in the object store, kept in the
//! object store itself.
//!
//! It is a log of numbered versions plus checkpoints, every object written
//! once with a create-only put (`If-None-Match: *`):
//!
//! ```text
//! metastore/versions/<version, 20 digits>.json     the changes one commit made
//! metastore/checkpoints/<version, 20 digits>.json  the whole state after that version
//! ```
//!
//! A commit writes version N+1 of what its writer read up to N. Of two
//! writers, the store lets exactly one create N+1; the other reads what
//! won, applies it, and tries N+2. So no lock, lease or compare-and-swap
//! is needed: only create-only puts, which S3, GCS, MinIO, SeaweedFS and
//! `object_store`'s local store all do (the local store has no
//! compare-and-swap update). A commit writes bytes in proportion to its
//! changes, never the whole state; every [`CHECKPOINT_EVERY`] versions the
//! state is written whole, so opening reads one checkpoint and the
//! versions after it, and older objects are deleted.
//!
//! Why here rather than in PostgreSQL: it needs no service beyond the
//! store the data is in (the embedded default needs none at all), a
//! cluster's nodes share it by sharing the bucket, and losing the node
//! loses nothing of it. ARCHITECTURE.md says more.
//!
//! ```text
//! state.rs   what is recorded: splits and their states, per source its published end
//!            (and in a cluster its owner and epoch); the changes a version holds
//! keys.rs    object names
//! log.rs     Metastore: open (checkpoint + versions), commit, checkpoints and cleanup
//! ```

mod keys;
mod log;
mod state;
#[cfg(test)]
mod tests;

pub use log::{Metastore, MetastoreError};
pub use state::{
    Change, Ownership, SourceAdvance, SourceRecord, SplitEntry, SplitSource, SplitState, GAPS_KEPT,
};
