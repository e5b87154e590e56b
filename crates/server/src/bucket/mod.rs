//! The object store: where published data and the metastore live.
//!
//! One [`Bucket`] over `object_store`'s API, so that the embedded default
//! (a directory on the local disk) and an S3-compatible store run the same
//! code. Its calls are blocking, on a small runtime of its own: the
//! committer and the search threads are plain threads, and a call must not
//! depend on which runtime (if any) its caller runs in.
//!
//! ```text
//! client.rs    Bucket: create-only puts, plain puts, uploads, gets (whole or a range), lists, deletes;
//!              every request counted by kind
//! durable.rs   local disk: a put is fsynced, file and directories, before it counts as done
//! s3.rs        an S3-compatible store from [object_store]
//! runtime.rs   the runtime the requests run on
//! ```

mod client;
mod durable;
mod runtime;
mod s3;

pub use client::{Bucket, BucketError};
