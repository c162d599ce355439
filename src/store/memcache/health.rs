//! Which servers of a fleet are down. A server that fails `failure_limit` requests in a row
//! is marked down for `retry_interval`: its sessions get 503 at once instead of each
//! waiting out a timeout. When the interval is over, one request goes through as a probe
//! (the others keep failing fast); its success puts the server back in service, its
//! failure marks it down for another interval.
//!
//! Shared by every worker thread: one worker's failures spare the others their timeouts.
//! Time is monotonic, so a wall clock that jumps changes nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bits of the state that count failures (the rest: when the next probe may go).
const COUNT_BITS: u32 = 16;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// One server's recent record.
#[derive(Debug)]
pub(crate) struct Health {
    /// One value, so that a success and a failure racing on two workers cannot leave half
    /// of each (the failure count cleared, the retry time set, and no success after to
    /// clear it): failures since the last success in the low [`COUNT_BITS`] bits
    /// (saturating), and above them, while marked down, when the next probe may go, in ms
    /// since `epoch` (never 0); 0 there: in service.
    state: AtomicU64,
    epoch: Instant,
    limit: u32,
    interval: Duration,
}

/// Why a request was not sent: the server is marked down.
#[derive(Debug, thiserror::Error)]
#[error(
    "memcached {server} is marked down after {limit} failures in a row; next try in {retry_in:?}"
)]
pub(crate) struct Down {
    server: String,
    limit: u32,
    retry_in: Duration,
}

/// The state's parts: (failures, retry at).
fn split(state: u64) -> (u64, u64) {
    (state & COUNT_MASK, state >> COUNT_BITS)
}

fn join(failures: u64, retry_at: u64) -> u64 {
    (retry_at << COUNT_BITS) | failures.min(COUNT_MASK)
}

impl Health {
    pub(crate) fn new(limit: u32, interval: Duration) -> Self {
        Self {
            state: AtomicU64::new(0),
            epoch: Instant::now(),
            limit,
            interval,
        }
    }

    /// `now` in ms since `epoch`, never 0, and small enough to fit above the count (about
    /// 8,900 years).
    fn ms(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch).as_millis();
        let max = u64::MAX >> COUNT_BITS;
        u64::try_from(since).unwrap_or(max).min(max - 1) + 1
    }

    fn retry_after(&self, now: u64) -> u64 {
        let interval = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        now.saturating_add(interval).min(u64::MAX >> COUNT_BITS)
    }

    /// May a request go to the server now? Not while it is marked down, except one probe
    /// per retry interval: `Ok(true)` for that one. `server` names it in the error.
    pub(crate) fn admit(&self, server: &dyn std::fmt::Display, now: Instant) -> Result<bool, Down> {
        let state = self.state.load(Ordering::Acquire);
        let (failures, retry_at) = split(state);
        if retry_at == 0 {
            return Ok(false);
        }
        let now = self.ms(now);
        // Past the interval, the request that moves the next retry forward is the probe.
        if now >= retry_at
            && self
                .state
                .compare_exchange(
                    state,
                    join(failures, self.retry_after(now)),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            return Ok(true);
        }
        Err(Down {
            server: server.to_string(),
            limit: self.limit,
            retry_in: Duration::from_millis(retry_at.saturating_sub(now)),
        })
    }

    /// Whether a new session may be placed on the server: it is in service, or due for a
    /// probe (a new session is how a server nobody else asks for gets back in service).
    pub(crate) fn is_up(&self, now: Instant) -> bool {
        let (_, retry_at) = split(self.state.load(Ordering::Acquire));
        retry_at == 0 || self.ms(now) >= retry_at
    }

    /// Counts a request's outcome: an answer puts the server back in service; the
    /// `limit`-th failure in a row marks it down. `true` when this outcome did either
    /// (worth a log line; the outcomes between are not).
    pub(crate) fn record(&self, answered: bool, now: Instant) -> bool {
        if answered {
            // A load first: in service, the hot path writes nothing shared.
            if self.state.load(Ordering::Acquire) == 0 {
                return false;
            }
            let (_, retry_at) = split(self.state.swap(0, Ordering::AcqRel));
            return retry_at != 0;
        }
        let limit = u64::from(self.limit);
        let now = self.ms(now);
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let (failures, retry_at) = split(state);
            let failures = (failures + 1).min(COUNT_MASK);
            let retry_at = if failures >= limit {
                self.retry_after(now)
            } else {
                retry_at
            };
            match self.state.compare_exchange_weak(
                state,
                join(failures, retry_at),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return failures == limit,
                Err(actual) => state = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "10.0.0.1";
    const INTERVAL: Duration = Duration::from_secs(2);

    #[test]
    fn marked_down_after_the_limit_and_back_by_a_success() {
        let health = Health::new(3, INTERVAL);
        let now = Instant::now();
        for _ in 0..2 {
            assert!(!health.record(false, now));
            assert!(health.admit(&NAME, now).is_ok(), "below the limit");
        }
        assert!(health.record(false, now), "the limit: marked down");
        let down = health.admit(&NAME, now).unwrap_err();
        assert!(down.to_string().contains("10.0.0.1"), "{down}");
        assert!(!health.is_up(now));
        assert!(!health.record(false, now), "already down");
        assert!(health.record(true, now), "back in service");
        assert!(!health.record(true, now), "still in service");
        assert!(health.admit(&NAME, now).is_ok());
        assert!(health.is_up(now));
    }

    #[test]
    fn a_success_resets_the_count() {
        let health = Health::new(2, INTERVAL);
        let now = Instant::now();
        health.record(false, now);
        health.record(true, now);
        health.record(false, now);
        assert!(health.admit(&NAME, now).is_ok(), "not two in a row");
    }

    #[test]
    fn one_probe_per_interval() {
        let health = Health::new(1, INTERVAL);
        let start = Instant::now();
        health.record(false, start);
        let almost = start + INTERVAL - Duration::from_millis(10);
        assert!(health.admit(&NAME, almost).is_err());
        assert!(!health.is_up(almost));
        let due = start + INTERVAL;
        assert!(health.is_up(due), "due for a probe");
        assert!(health.admit(&NAME, due).unwrap(), "the probe");
        assert!(health.admit(&NAME, due).is_err(), "the rest wait for it");
        health.record(false, due);
        let next = due + INTERVAL;
        assert!(
            health
                .admit(&NAME, next - Duration::from_millis(10))
                .is_err(),
            "a failed probe: down again"
        );
        assert!(health.admit(&NAME, next).unwrap(), "the next probe");
        health.record(true, next);
        assert!(!health.admit(&NAME, next).unwrap(), "in service: no probe");
    }

    #[test]
    fn an_instant_before_the_epoch_is_not_a_panic() {
        let before = Instant::now();
        let health = Health::new(1, INTERVAL);
        health.record(false, before);
        assert!(health.admit(&NAME, before).is_err());
    }
    /// A success racing a failure on other threads (workers share the record) must never
    /// leave the server marked down with no failure counted, which no success then clears:
    /// after the race, a successful probe puts it back in service.
    #[test]
    fn a_success_racing_a_failure_never_leaves_it_down_for_good() {
        use std::sync::{Arc, Barrier, Mutex};
        const ROUNDS: usize = 20_000;
        let health = Mutex::new(Arc::new(Health::new(1, INTERVAL)));
        let barrier = Barrier::new(3);
        let mut stuck = 0;
        std::thread::scope(|scope| {
            for answered in [false, true] {
                let (health, barrier) = (&health, &barrier);
                scope.spawn(move || {
                    for _ in 0..ROUNDS {
                        barrier.wait();
                        let health = Arc::clone(&health.lock().unwrap());
                        health.record(answered, Instant::now());
                        barrier.wait();
                    }
                });
            }
            for _ in 0..ROUNDS {
                *health.lock().unwrap() = Arc::new(Health::new(1, INTERVAL));
                barrier.wait();
                barrier.wait();
                let health = Arc::clone(&health.lock().unwrap());
                let now = Instant::now();
                // The probe that follows, once due, succeeds.
                health.record(true, now);
                stuck += usize::from(!health.is_up(now));
            }
        });
        assert_eq!(stuck, 0, "rounds left down after a successful probe");
    }
}
