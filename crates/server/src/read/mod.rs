//! Reads that are not searches: which sources a request means
//! (`selection.rs`), the last N lines (`tail.rs`), the jobs listing
//! (`jobs.rs`), copies of a line dropped when several nodes answer
//! (`copies.rs`). Every read works on a store snapshot, so each line is seen
//! exactly once, in memory or in the index. Searches (`search/`) use the
//! same selection.

mod copies;
mod jobs;
mod selection;
mod tail;

pub use copies::{drop_copies, line_end};
pub use jobs::{jobs, jobs_of, picks};
pub use selection::{resolve, LineFilter, QueryError};
pub use tail::{last_lines, LastLines, OwnedLine};
