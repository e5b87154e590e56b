//! The test kit: what the end-to-end tests (`tests/`) and the benchmark
//! (`bench/`) share to run the real `cblogsd`, `cblogs-shipper` and
//! `cblogs` and to check what comes out. Test-only: it may panic with a
//! message on anything that goes wrong, and nothing but tests and the
//! benchmark links it (`cblogsd` links only the fake agent).
//!
//! Every wait is a poll with a deadline ([`wait_until`]), never a bare
//! sleep standing in for an event.
//!
//! | module | what it owns |
//! | --- | --- |
//! | [`binaries`] | building the binaries once, and where they are (and the previous version's) |
//! | [`daemon`] | a child process started, SIGKILLed, stopped, restarted (both daemons use it) |
//! | [`server`] | `cblogsd` on a free port: start, stop, restart |
//! | [`server_api`] | what tests ask a running `cblogsd` over HTTP (ingest, flush, storage, metrics) |
//! | [`shipper`] | `cblogs-shipper` on a fake agent, and the configs tests run it with |
//! | [`cluster_chaos`] | nodes and the shipper killed at random over a cluster, every line once from every node |
//! | [`cli`](mod@cli) | running `cblogs` and reading what it printed |
//! | [`follower`] | a running `cblogs tail -f` whose lines arrive over channels |
//! | [`wire`] | sources and batches shaped like a shipper's, posted straight to ingest |
//! | [`sandbox`] | the fake agent (from `cblogs-fake-agent`) remembering what each file was written |
//! | [`model`] | what was written to one stream, as the lines a reader must see |
//! | [`exactly_once`] | every line once, in order, with its source: the check and the waits |
//! | [`stack`] | a temporary folder with a `cblogsd`, a fake agent and a shipper's state |
//! | [`samples`] | log lines for tests, from the fake agent's built-in template sets; an event of several lines |
//! | [`seaweed`] | a real SeaweedFS (S3 gateway) on loopback ports, and cblogsd's `[object_store]` for it |
//! | [`spread`] | a fake agent of 16 streams a shipper spreads over a cluster's nodes, and every line once from any node |
//! | [`slow_proxy`] | a TCP proxy that delays what it forwards: a slow store |
//! | [`push_clients`] | the real Python push clients (OTLP, Loki), and a proxy that loses an answer so a client retries |
//! | [`privilege`] | running a test that needs a mount as root, or in a user namespace |
//! | [`tls`] | a private CA and a server certificate for 127.0.0.1, as PEM files |
//! | [`tools`] | failing with the tool's name when a test needs one that is missing |
//! | [`rng`] | a small seeded random sequence for schedules and fixtures |
//! | [`text`] | how a terminal shows a line, and the end of a log |
//! | [`wait`] | the deadline and the poll |
//! | [`serial`](mod@serial) | one test of a file at a time, where they measure or crowd the cores |

pub mod binaries;
pub mod cli;
pub mod cluster_chaos;
pub mod daemon;
pub mod exactly_once;
pub mod follower;
mod line_reader;
pub use line_reader::lines_to_channel;
pub mod model;
pub mod privilege;
pub mod push_clients;
pub mod rng;
pub mod samples;
pub mod sandbox;
pub mod seaweed;
pub mod serial;
pub mod server;
pub mod server_api;
pub mod shipper;
pub mod slow_proxy;
pub mod spread;
pub mod stack;
pub mod text;
pub mod tls;
pub mod tools;
pub mod wait;
pub mod wire;
pub mod zookeeper;

pub use binaries::{bin, bin_dir, previous_bin, PREVIOUS_VERSION};
pub use cblogs_fake_agent::ids::{fake_uuid, AGENT_ID, FRAMEWORK_ID};
pub use cblogs_fake_agent::lines::LogKind;
pub use cblogs_fake_agent::NOT_A_LOG;
pub use cli::{cli, cli_with, CliOutput};
pub use exactly_once::{
    assert_job_exactly_once, await_stored, brief, follow_shows_numbered_once, problems,
    reads_are_acknowledged_prefixes, shown_line, stored_per_job, wait_all_stored, written_per_job,
    Offsets, Shown, WriteProgress,
};
pub use follower::Follower;
pub use model::{StreamKey, StreamModel, Written, MAX_LINE_BYTES};
pub use privilege::{as_root, AsRoot};
pub use push_clients::{push_python, run_python, AnswerDropper};
pub use rng::{chaos_seed, Rng};
pub use samples::{numbered_lines, sample, sample_from, LOG4J_EVENT, SAMPLE_LINES};
pub use sandbox::{Agent, ProcessRun, Task};
pub use seaweed::Seaweed;
pub use serial::serial;
pub use server::{free_port, Server, CBLOGSD_ENV, SMALL_BLOCKS};
pub use server_api::http_client;
pub use shipper::{Shipper, SHIPPER_CLUSTER, SHIPPER_FAST, SHIPPER_HOST};
pub use slow_proxy::SlowProxy;
pub use spread::{
    node_config, serverset, shipper_node, shipper_status, shown_exactly_once, SpreadAgent,
};
pub use stack::{JobName, Stack};
pub use text::{log_tail, shown};
pub use tls::make_certificates;
pub use tools::require_tool;
pub use wait::{wait_until, SetOnDrop, DEADLINE};
pub use wire::{next_time, request, source, SourceFile};
pub use zookeeper::ZooKeeper;
