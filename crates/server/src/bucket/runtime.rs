//! The runtime object-store requests run on, and the one way to wait for
//! one from any thread.

use std::future::Future;

use tokio::runtime::{Builder, Runtime};

/// A small multi-thread runtime owned by the bucket. Dropped without
/// waiting (`shutdown_background`): dropping a runtime the ordinary way
/// panics inside another runtime's task, and a request still running at
/// shutdown has nobody left to answer.
pub(super) struct IoRuntime(Option<Runtime>);

impl IoRuntime {
    pub(super) fn new() -> std::io::Result<IoRuntime> {
        let rt = Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("object-store")
            .enable_all()
            .build()?;
        Ok(IoRuntime(Some(rt)))
    }

    /// Runs `fut` to its end and returns its output. From inside another
    /// runtime (a request handler, a test's), the wait happens on a scoped
    /// thread of its own: blocking a runtime's thread on another runtime
    /// is refused by tokio.
    pub(super) fn wait<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let rt = self.0.as_ref().expect("the runtime lives until drop");
        if tokio::runtime::Handle::try_current().is_err() {
            return rt.block_on(fut);
        }
        std::thread::scope(|s| {
            s.spawn(|| rt.block_on(fut))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}
