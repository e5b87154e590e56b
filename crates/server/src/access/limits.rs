//! The limits that keep one client from taking the service from the others:
//! searches at once, live tails per client, ingest bytes per second per
//! token. (Sizes — body, lines per request, line length, tail lines,
//! results per search — are checked where the request is read.)
//!
//! Each refusal names its setting, so an operator reading a client's error
//! knows what to raise.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Config;

/// Who is asking, as far as limits go: the token's digest if there was one,
/// else the client's address. Set by the auth layer on every request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    Token([u8; 32]),
    Addr(IpAddr),
    Unknown,
}

pub struct Limits {
    searches: Arc<Semaphore>,
    max_searches: usize,
    follows: Mutex<HashMap<IpAddr, usize>>,
    max_follows: usize,
    ingest: Mutex<HashMap<Caller, Bucket>>,
    bytes_per_sec: u64,
}

/// A token bucket that may go into debt: a request is let in while the
/// bucket is not in debt, and charged in full, so a batch larger than one
/// second's allowance is not refused for ever; the next ones wait.
struct Bucket {
    level: f64,
    at: Instant,
}

impl Limits {
    pub fn new(config: &Config) -> Arc<Limits> {
        Arc::new(Limits {
            searches: Arc::new(Semaphore::new(config.search.max_concurrent)),
            max_searches: config.search.max_concurrent,
            follows: Mutex::new(HashMap::new()),
            max_follows: config.read.max_follows_per_client,
            ingest: Mutex::new(HashMap::new()),
            bytes_per_sec: config.ingest.max_bytes_per_sec_per_token,
        })
    }

    /// A slot for one search or histogram, held until it ends; `None` when
    /// `search.max_concurrent` are running.
    pub fn search_slot(&self) -> Result<OwnedSemaphorePermit, String> {
        self.searches.clone().try_acquire_owned().map_err(|_| {
            format!(
                "busy: {} searches are running, the most search.max_concurrent allows; retry shortly",
                self.max_searches
            )
        })
    }

    pub fn searches_running(&self) -> usize {
        self.max_searches - self.searches.available_permits()
    }

    /// Counts one more live tail for `ip`; the guard counts it off.
    pub fn follow_slot(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<FollowSlot, String> {
        let Some(ip) = ip else {
            return Ok(FollowSlot {
                limits: None,
                ip: None,
            });
        };
        let mut f = self.follows.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.entry(ip).or_insert(0);
        if *n >= self.max_follows {
            return Err(format!(
                "too many live tails from {ip}: {} are open, the most read.max_follows_per_client allows",
                self.max_follows
            ));
        }
        *n += 1;
        Ok(FollowSlot {
            limits: Some(self.clone()),
            ip: Some(ip),
        })
    }

    pub fn follows_open(&self) -> usize {
        self.follows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }

    /// May `caller` send now? `Err` holds how long to wait.
    pub fn ingest_allowed(&self, caller: &Caller) -> Result<(), Duration> {
        if self.bytes_per_sec == 0 {
            return Ok(());
        }
        let mut buckets = self.ingest.lock().unwrap_or_else(|p| p.into_inner());
        let rate = self.bytes_per_sec as f64;
        let now = Instant::now();
        let b = buckets.entry(caller.clone()).or_insert(Bucket {
            level: rate,
            at: now,
        });
        b.level = (b.level + rate * now.duration_since(b.at).as_secs_f64()).min(rate);
        b.at = now;
        if b.level >= 0.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64(-b.level / rate))
        }
    }

    /// Charges `bytes` of accepted lines to `caller`.
    pub fn charge_ingest(&self, caller: &Caller, bytes: u64) {
        if self.bytes_per_sec == 0 {
            return;
        }
        let mut buckets = self.ingest.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = buckets.get_mut(caller) {
            b.level -= bytes as f64;
        }
        // Forget callers that have been quiet long enough to be full again.
        if buckets.len() > 1024 {
            let now = Instant::now();
            buckets.retain(|_, b| now.duration_since(b.at) < Duration::from_secs(60));
        }
    }

    pub fn ingest_rate_message(&self, wait: Duration) -> String {
        format!(
            "ingest rate over ingest.max_bytes_per_sec_per_token ({} bytes/s) for this token; retry in {} ms",
            self.bytes_per_sec,
            wait.as_millis().max(1)
        )
    }
}

/// One open live tail; counted off when dropped.
pub struct FollowSlot {
    limits: Option<Arc<Limits>>,
    ip: Option<IpAddr>,
}

impl Drop for FollowSlot {
    fn drop(&mut self) {
        if let (Some(limits), Some(ip)) = (&self.limits, self.ip) {
            let mut f = limits.follows.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = f.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    f.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(f: impl FnOnce(&mut Config)) -> Arc<Limits> {
        let mut c = Config::default();
        f(&mut c);
        Limits::new(&c)
    }

    #[test]
    fn follows_are_counted_per_address_and_given_back() {
        let l = limits(|c| c.read.max_follows_per_client = 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = l.follow_slot(Some(a)).unwrap();
        let _s2 = l.follow_slot(Some(a)).unwrap();
        let err = l.follow_slot(Some(a)).err().unwrap();
        assert!(err.contains("read.max_follows_per_client"), "{err}");
        let _s3 = l.follow_slot(Some(b)).unwrap();
        assert_eq!(l.follows_open(), 3);
        drop(s1);
        let _s4 = l.follow_slot(Some(a)).unwrap();
    }

    #[test]
    fn search_slots() {
        let l = limits(|c| c.search.max_concurrent = 1);
        let p = l.search_slot().unwrap();
        assert!(l
            .search_slot()
            .unwrap_err()
            .contains("search.max_concurrent"));
        assert_eq!(l.searches_running(), 1);
        drop(p);
        assert!(l.search_slot().is_ok());
    }

    #[test]
    fn ingest_bucket_goes_into_debt_then_waits() {
        let l = limits(|c| c.ingest.max_bytes_per_sec_per_token = 1000);
        let who = Caller::Token([1; 32]);
        assert!(l.ingest_allowed(&who).is_ok());
        l.charge_ingest(&who, 3000);
        let wait = l.ingest_allowed(&who).unwrap_err();
        assert!(
            wait > Duration::from_millis(1500) && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
        assert!(
            l.ingest_allowed(&Caller::Token([2; 32])).is_ok(),
            "per token"
        );
    }
}
