//! A fake Mesos agent, laid out exactly as `thermos-layout.md` describes a
//! real one, and the log lines its fake processes write.
//!
//! Three users share it, so the layout is written once: the end-to-end
//! tests (through `cblogs-testkit`, which adds what a test remembers and
//! checks), the benchmark (`cblogs-bench`, which fills 400 sandbox files),
//! and `cblogsd --demo` (a few jobs that keep writing). Because `cblogsd`
//! links it, nothing here panics on I/O: every file operation returns an
//! [`std::io::Result`], and nothing here depends on a test-only crate.
//!
//! - [`Agent`]: the agent's work dir (`slaves/<agent>/frameworks/<framework>/
//!   executors/`) and Thermos' checkpoint root (the legacy log layout).
//! - [`Task`]: one Aurora task's executor folder and sandbox.
//! - [`ProcessRunDir`]: one run of one Thermos process,
//!   `<log dir>/<process>/<run>/{stdout,stderr}`, written as a process
//!   writes (append), rotated as Thermos rotates, truncated as `>` does.
//! - [`NOT_A_LOG`]: the marker in every file of the layout that is not a
//!   process log (the executor's output, checkpoints, a foreign executor).
//! - [`ids`]: the agent and framework ids of the layout page, and the
//!   deterministic uuids task ids and container ids are made of.
//! - [`lines`]: template sets (built in, or read from a directory of logs)
//!   and [`lines::LineGen`], which turns a set into an endless, seeded
//!   stream of lines whose numbers move as a real log's do, with Python
//!   tracebacks and Java stack traces where asked.

mod agent;
mod fs;
pub mod ids;
pub mod lines;
mod process;
mod task;

pub use agent::{Agent, NOT_A_LOG};
/// The random number generator [`lines::TraceKind::trace`] takes.
pub use fastrand;
pub use process::{joined_lines, ProcessRunDir};
pub use task::Task;
