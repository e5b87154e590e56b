//! cblogs-shipper: finds every Thermos process log on a Mesos agent, tails
//! it, and ships its lines to `cblogsd` so that each line arrives exactly
//! once and in file order, whatever happens to the files, the network or
//! the shipper itself.
//!
//! Sources → transforms → sinks, as in Vector:
//!
//! - [`discovery`]: `SandboxScanner` walks the work dir's fixed shape and
//!   maps each `stdout`/`stderr` to its `Source` (job from the task id,
//!   through [`mapping`]); [`watcher`]'s `DirWatcher` turns inotify events
//!   on those folders into prompt walks of just what changed, and reads of
//!   just the files written.
//! - [`files`]: `FilesScanner` finds the files of `[[files]]` entries
//!   (logs outside sandboxes: the agent's, the scheduler's), each a stream
//!   of the job its entry names.
//! - [`tailer`]: `StreamTailer` follows one stream across rotations and
//!   truncations by device and inode, and cuts lines (partial lines wait
//!   for their newline, up to a delay).
//! - [`sender`]: `Sender` posts zstd-compressed batches and retries with
//!   backoff and jitter until the server answers for good.
//! - [`nodes`]: with several cblogsd nodes (a list, or a serverset in
//!   ZooKeeper), which one takes each stream ([`route`]: kept on the
//!   stream): rendezvous hashing over the live nodes, failover when one
//!   cannot be reached, planned moves once a node has published.
//! - [`checkpoint`]: the acknowledged offset of every stream, replaced
//!   atomically at least once a second.
//! - [`shipper`]: the one loop that owns them all, with back-pressure;
//!   [`backlog`] keeps what waits to be sent, so no step walks every stream.
//! - [`status`]: what `GET /status` and `cblogs-shipper --status` show;
//!   [`endpoint`] serves it (and [`metrics`], the same in Prometheus text).
//!
//! This crate must not depend on tantivy: it runs next to production jobs.

pub mod backlog;
pub mod checkpoint;
pub mod config;
pub mod discovery;
pub mod endpoint;
pub mod files;
pub mod mapping;
pub mod metrics;
pub mod nodes;
pub mod route;
pub mod sender;
pub mod shipper;
pub mod status;
pub mod tailer;
pub mod watcher;

pub use config::Config;
pub use shipper::{Shipper, ShipperError};

/// Runs a shipper (and its status endpoint, unless `status_listen` is
/// "off") until `shutdown` resolves. For embedding, e.g. `cblogsd --demo`.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    shipper::raise_open_file_limit(config.tail.max_open_files);
    let mut shipper = Shipper::new(config.clone())?;
    if config.status_listen != "off" {
        let listener = tokio::net::TcpListener::bind(&config.status_listen)
            .await
            .map_err(|e| anyhow::anyhow!("status endpoint on {}: {e}", config.status_listen))?;
        tracing::info!(
            "status on http://{}{}",
            listener.local_addr()?,
            status::STATUS_PATH
        );
        if let Some(ask) = shipper.status_sender() {
            tokio::spawn(endpoint::serve(listener, ask));
        }
    }
    shipper.run(shutdown).await?;
    Ok(())
}
