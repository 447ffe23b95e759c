//! Backing off repeated failed logins: after a few failures from one client
//! address for one name (or many from one address for any names), further
//! attempts are refused without checking, for a delay that doubles with each
//! failure up to five minutes. A success clears the name's count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures for one name from one address before the first delay.
const FREE_PER_NAME: u32 = 5;
/// Failures from one address, across names, before the first delay.
const FREE_PER_ADDRESS: u32 = 20;
const MAX_DELAY: Duration = Duration::from_secs(300);
/// A count is forgotten this long after its last failure.
const FORGET_AFTER: Duration = Duration::from_secs(900);
/// Most counts kept; beyond, the stale ones go first.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

#[derive(Debug, Default)]
pub struct Backoff {
    counts: Mutex<HashMap<(IpAddr, Option<String>), Failures>>,
}

fn delay(count: u32, free: u32) -> Duration {
    if count < free {
        return Duration::ZERO;
    }
    let exp = (count - free).min(16);
    Duration::from_secs(1u64 << exp).min(MAX_DELAY)
}

impl Backoff {
    /// `Err(seconds to wait)` while `name` from `addr` is backed off.
    pub fn check(&self, addr: IpAddr, name: &str) -> Result<(), u64> {
        self.check_at(addr, name, Instant::now())
    }

    fn check_at(&self, addr: IpAddr, name: &str, now: Instant) -> Result<(), u64> {
        let Ok(counts) = self.counts.lock() else {
            return Ok(());
        };
        let wait = |key: &(IpAddr, Option<String>), free: u32| {
            counts.get(key).map_or(Duration::ZERO, |f| {
                (f.last + delay(f.count, free)).saturating_duration_since(now)
            })
        };
        let w = wait(&(addr, Some(name.to_string())), FREE_PER_NAME)
            .max(wait(&(addr, None), FREE_PER_ADDRESS));
        if w.is_zero() {
            Ok(())
        } else {
            Err(w.as_secs().max(1))
        }
    }

    pub fn failed(&self, addr: IpAddr, name: &str) {
        self.failed_at(addr, name, Instant::now());
    }

    fn failed_at(&self, addr: IpAddr, name: &str, now: Instant) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        if counts.len() >= MAX_ENTRIES {
            counts.retain(|_, f| now.saturating_duration_since(f.last) < FORGET_AFTER);
            if counts.len() >= MAX_ENTRIES {
                counts.clear();
            }
        }
        for key in [(addr, Some(name.to_string())), (addr, None)] {
            let f = counts.entry(key).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now.saturating_duration_since(f.last) >= FORGET_AFTER {
                f.count = 0;
            }
            f.count = f.count.saturating_add(1);
            f.last = now;
        }
    }

    pub fn succeeded(&self, addr: IpAddr, name: &str) {
        if let Ok(mut counts) = self.counts.lock() {
            counts.remove(&(addr, Some(name.to_string())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_and_a_success_clears_them() {
        let b = Backoff::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..FREE_PER_NAME {
            assert!(b.check_at(a, "alice", t0).is_ok());
            b.failed_at(a, "alice", t0);
        }
        assert_eq!(b.check_at(a, "alice", t0), Err(1));
        // Another address, another name: not held back.
        assert!(b.check_at(other, "alice", t0).is_ok());
        assert!(b.check_at(a, "bob", t0).is_ok());
        // The delay passes, then doubles with the next failure.
        let t1 = t0 + Duration::from_secs(1);
        assert!(b.check_at(a, "alice", t1).is_ok());
        b.failed_at(a, "alice", t1);
        assert_eq!(b.check_at(a, "alice", t1), Err(2));
        for _ in 0..20 {
            b.failed_at(a, "alice", t1);
        }
        assert_eq!(b.check_at(a, "alice", t1), Err(MAX_DELAY.as_secs()));
        b.succeeded(a, "alice");
        // The address as a whole stays backed off: it failed over 20 times.
        assert!(b.check_at(a, "alice", t1).is_err());
        assert!(b.check_at(a, "carol", t1).is_err());
        assert!(b.check_at(a, "carol", t1 + FORGET_AFTER).is_ok());
    }
}
