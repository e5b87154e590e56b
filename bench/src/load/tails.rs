//! The load run's live tails: one `GET /api/v1/follow` stream per
//! selector, each read on a thread of its own into its [`TailState`]
//! (`tail_check.rs` says what is checked), and at the end given time to
//! show every line written before their streams are shut.

use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::shared::Shared;
use super::sse::for_each_event;
use super::tail_check::{TailResult, TailState};
use super::tail_specs::TailSpec;
use crate::rawhttp;

/// How long the tails get, once cblogsd holds every line, to show it.
const TAIL_DRAIN: Duration = Duration::from_secs(30);

/// Reads one follow stream until the run shuts its connection.
fn follow(shared: &Shared, spec: &TailSpec, state: &Mutex<TailState>, resp: rawhttp::Response) {
    let mut body = resp.body;
    // The stream ends (or fails) only when the run shuts it: anything else
    // is an error.
    let _ = for_each_event(
        &mut body,
        || shared.now_ns(),
        |ev| {
            let mut st = state.lock().expect("tail lock");
            st.last_event = Instant::now();
            st.on_event(shared, spec, ev);
        },
    );
    if !shared.stopping.load(Ordering::Relaxed) {
        shared.error(format!(
            "the follow stream of {} ended before the run did",
            spec.selector
        ));
    }
}

/// The running tails: their follow connections, reader threads and state.
pub struct Tails {
    specs: Vec<TailSpec>,
    states: Vec<Arc<Mutex<TailState>>>,
    conns: Vec<TcpStream>,
    readers: Vec<JoinHandle<()>>,
}

impl Tails {
    /// Opens a follow stream (`n=0`) for each spec, each read on its own
    /// thread, and waits (up to 30 s) until every stream has started.
    pub fn open(shared: &Arc<Shared>, specs: Vec<TailSpec>) -> Result<Tails> {
        let mut tails = Tails {
            states: Vec::new(),
            conns: Vec::new(),
            readers: Vec::new(),
            specs: Vec::new(),
        };
        for t in &specs {
            let path = format!(
                "{}?job={}&n=0",
                cblogs_core::api::FOLLOW_PATH,
                rawhttp::encode(&t.selector)
            );
            let resp = rawhttp::get(&shared.url, &path, None)
                .with_context(|| format!("follow {}", t.selector))?;
            if resp.status != 200 {
                let status = resp.status;
                bail!(
                    "follow {} answered {status}: {}",
                    t.selector,
                    resp.text().unwrap_or_default()
                );
            }
            let state = Arc::new(Mutex::new(TailState::new(shared.specs.len())));
            tails
                .conns
                .push(resp.conn.try_clone().context("clone a connection")?);
            let (sh, sp, st) = (shared.clone(), t.clone(), state.clone());
            tails
                .readers
                .push(std::thread::spawn(move || follow(&sh, &sp, &st, resp)));
            tails.states.push(state);
        }
        tails.specs = specs;
        let ready_by = Instant::now() + Duration::from_secs(30);
        while !tails
            .states
            .iter()
            .all(|s| s.lock().expect("tail lock").ready)
        {
            if Instant::now() > ready_by {
                bail!("not every follow stream had started within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(tails)
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Gives the tails up to [`TAIL_DRAIN`] to show every line written
    /// (`last`: the last sequence number of each file), then shuts their
    /// streams; each tail's results.
    pub fn finish(self, last: &[u64]) -> Vec<TailResult> {
        let tails_by = Instant::now() + TAIL_DRAIN;
        loop {
            let done = self
                .states
                .iter()
                .zip(&self.specs)
                .all(|(st, t)| st.lock().expect("tail lock").done(t, last));
            if done || Instant::now() > tails_by {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for c in &self.conns {
            rawhttp::shut(c);
        }
        for h in self.readers {
            let _ = h.join();
        }
        self.states
            .iter()
            .zip(&self.specs)
            .map(|(st, t)| st.lock().expect("tail lock").result(t, last))
            .collect()
    }
}
