//! The set-up most end-to-end tests start from: one temporary folder
//! holding a `cblogsd` (`data/`), a fake agent (`agent/`) and, once a
//! shipper is started, its state (`shipper-state/`). Dropped in field
//! order: cblogsd stops before its folder goes.

use std::path::PathBuf;

use tempfile::TempDir;

use crate::sandbox::{Agent, Task};
use crate::server::Server;
use crate::shipper::{Shipper, SHIPPER_FAST};

/// A job as `(role, env, name)`.
pub type JobName<'a> = (&'a str, &'a str, &'a str);

/// A cblogsd and a fake agent in one temporary folder.
pub struct Stack {
    pub server: Server,
    pub agent: Agent,
    pub dir: TempDir,
}

impl Stack {
    /// A new temporary folder with cblogsd (and `server_config`, if any)
    /// and an empty agent.
    pub fn new(server_config: Option<&str>) -> Stack {
        Stack::in_dir(tempfile::tempdir().expect("temp dir"), server_config)
    }

    /// The same in a folder the test prepared (e.g. with a file the
    /// config names).
    pub fn in_dir(dir: TempDir, server_config: Option<&str>) -> Stack {
        let server = Server::start(&dir.path().join("data"), server_config);
        let agent = Agent::new(&dir.path().join("agent"));
        Stack { server, agent, dir }
    }

    /// A task of `job` on the agent.
    pub fn task(&self, (role, env, name): JobName, instance: u32) -> Task {
        self.agent.task(role, env, name, instance)
    }

    /// Where the shipper keeps its checkpoints.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("shipper-state")
    }

    /// The shipper on the agent, with [`SHIPPER_FAST`].
    pub fn shipper(&self) -> Shipper {
        self.shipper_with_config(SHIPPER_FAST)
    }

    /// The shipper on the agent, with `config`.
    pub fn shipper_with_config(&self, config: &str) -> Shipper {
        Shipper::start(&self.agent, &self.state_dir(), &self.server.url, config)
    }

    /// The shipper with [`SHIPPER_FAST`] and its status endpoint on a free port.
    pub fn shipper_with_status_endpoint(&self) -> Shipper {
        Shipper::start_with_status_endpoint(
            &self.agent,
            &self.state_dir(),
            &self.server.url,
            SHIPPER_FAST,
        )
    }
}
