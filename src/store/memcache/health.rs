//! Which servers of a fleet are down. A server that fails `failure_limit` requests in a row
//! is marked down for `retry_interval`: its sessions get 503 at once instead of each
//! waiting out a timeout. When the interval is over, one request goes through as a probe
//! (the others keep failing fast); its success puts the server back in service, its
//! failure marks it down for another interval.
//!
//! Shared by every worker thread: one worker's failures spare the others their timeouts.
//! Time is monotonic, so a wall clock that jumps changes nothing.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One server's recent record.
#[derive(Debug)]
pub(crate) struct Health {
    /// Failures since the last success.
    failures: AtomicU32,
    /// While marked down: when the next probe may go, in ms since `epoch` (never 0).
    /// 0: in service.
    retry_at: AtomicU64,
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

impl Health {
    pub(crate) fn new(limit: u32, interval: Duration) -> Self {
        Self {
            failures: AtomicU32::new(0),
            retry_at: AtomicU64::new(0),
            epoch: Instant::now(),
            limit,
            interval,
        }
    }

    /// `now` in ms since `epoch`, never 0.
    fn ms(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch).as_millis();
        u64::try_from(since).unwrap_or(u64::MAX - 1) + 1
    }

    fn interval_ms(&self) -> u64 {
        u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX / 2)
    }

    /// May a request go to the server now? Not while it is marked down, except one probe
    /// per retry interval: `Ok(true)` for that one. `server` names it in the error.
    pub(crate) fn admit(&self, server: &dyn std::fmt::Display, now: Instant) -> Result<bool, Down> {
        let retry_at = self.retry_at.load(Ordering::Acquire);
        if retry_at == 0 {
            return Ok(false);
        }
        let now = self.ms(now);
        // Past the interval, the request that moves the next retry forward is the probe.
        if now >= retry_at
            && self
                .retry_at
                .compare_exchange(
                    retry_at,
                    now.saturating_add(self.interval_ms()),
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
        let retry_at = self.retry_at.load(Ordering::Acquire);
        retry_at == 0 || self.ms(now) >= retry_at
    }

    /// Counts a request's outcome: an answer puts the server back in service; the
    /// `limit`-th failure in a row marks it down. `true` when this outcome did either
    /// (worth a log line; the outcomes between are not).
    pub(crate) fn record(&self, answered: bool, now: Instant) -> bool {
        if answered {
            // A load first: in service, the hot path writes nothing shared.
            if self.failures.load(Ordering::Acquire) == 0 {
                return false;
            }
            let was_down = self.failures.swap(0, Ordering::AcqRel) >= self.limit;
            self.retry_at.store(0, Ordering::Release);
            return was_down;
        }
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if failures >= self.limit {
            let retry_at = self.ms(now).saturating_add(self.interval_ms());
            self.retry_at.store(retry_at, Ordering::Release);
        }
        failures == self.limit
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
}
