//! The shared vocabulary of cblogs.
//!
//! Everything that the shipper, the server and the CLI must agree on lives
//! here, and nothing here does I/O:
//!
//! - [`JobKey`]: an Aurora job key, `[cluster/]role/env/name`.
//! - [`TaskId`]: a Thermos/Aurora task id split into its job key, instance and
//!   uuid, in both the current and the older millisecond-prefixed form.
//! - [`Source`] and [`Stream`]: one file stream of one process run of one task.
//! - [`wire`]: the ingest request and acknowledgement bodies.
//! - [`LineView`] and [`api`]: how the read API shows lines and jobs;
//!   [`line_event`]: a search's `line` events written and read without
//!   serde's generic paths.
//! - [`sandbox`]: the names Thermos gives executor, run and log files.
//! - [`serverset`]: a member of an Aurora serverset (ZooKeeper), as
//!   Aurora's announcer and cblogsd write it.
//! - [`sse`]: a Server-Sent Events parser (a follow's stream, read by the
//!   CLI and by a node that follows the others).
//! - [`rendezvous`]: highest-random-weight hashing (a stream's node, an
//!   alert group's node).
//! - [`pattern`]: search patterns with ripgrep's semantics (`-F`, `-i`, `-w`).
//! - [`Selector`]: the job selector users type (`cluster/role/env/name[/instance]`,
//!   a bare `name`, `*` globs in any part).

pub mod api;
mod job;
mod line;
pub mod line_event;
pub mod pattern;
pub mod rendezvous;
pub mod sandbox;
mod selector;
pub mod serverset;
pub mod sse;
mod task_id;
pub mod time;
pub mod wire;

/// The ZooKeeper client the serverset is read with (for its errors).
#[cfg(feature = "zookeeper")]
pub use zookeeper_client;

pub use job::{JobKey, JobKeyError, ENVIRONMENTS};
pub use line::{fnv1a, LineFlags, LineView, Source, SourceError, Stream};
pub use selector::{InstanceSet, Selector, SelectorError};
pub use task_id::{TaskId, TaskIdError};

/// The port `cblogsd` listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7450;
/// The server URL the CLI uses unless told otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7450";
