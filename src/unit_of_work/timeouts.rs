//! Which timeouts a session lives by: its own ("keep me signed in", set by a handler and
//! kept in the session's data, so they merge, roll back and end with it like any change,
//! carried in a format-2 cookie), capped by the middleware's `max_session_lifetime`, or the
//! middleware's.

use std::time::Duration;

use super::record::Record;
use crate::clock::CLOCK_SKEW;
use crate::config::Config;

/// The package a session's own timeouts are kept in, in whole seconds.
pub(crate) const PACKAGE: &str = "actix-memcache-session.lifetime";
pub(crate) const IDLE: &str = "idle";
pub(crate) const ABSOLUTE: &str = "absolute";

/// The timeouts one session lives by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub(crate) idle: Duration,
    pub(crate) absolute: Option<Duration>,
    /// Set by a handler for this session, not the middleware's defaults.
    pub(crate) own: bool,
}

impl Timeouts {
    /// The session's own timeouts, each capped at the middleware's maximum; else the
    /// middleware's.
    pub(crate) fn of(data: &Record, config: &Config) -> Self {
        // Looked up once: most sessions have no package of their own timeouts.
        let own = data.package(PACKAGE);
        let seconds = |key| {
            let secs = own?.get(key)?.value()?.as_u64()?;
            Some(Duration::from_secs(secs).clamp(Duration::from_secs(1), config.max_lifetime))
        };
        match (seconds(IDLE), seconds(ABSOLUTE)) {
            (Some(idle), Some(absolute)) => Self {
                idle,
                absolute: Some(absolute),
                own: true,
            },
            _ => Self {
                idle: config.idle_timeout,
                absolute: config.absolute_timeout,
                own: false,
            },
        }
    }

    /// How long the store should keep a session created at `created`: the idle timeout,
    /// cut short by the absolute one. Zero means it is over.
    pub(crate) fn ttl(&self, created: u64, now: u64) -> Duration {
        match self.absolute {
            None => self.idle,
            Some(_) if self.created_ahead(created, now) => Duration::ZERO,
            Some(absolute) => {
                let age = Duration::from_secs(now.saturating_sub(created));
                self.idle.min(absolute.saturating_sub(age))
            }
        }
    }

    /// Whether a session created at `created` was created further ahead of `now` than a
    /// clock may drift (stamped while a clock ran ahead), where an absolute timeout makes
    /// it over: its age is unknown, and taken as zero it would stretch the absolute
    /// timeout by the jump. It is over, as a cookie stamped so far ahead is refused.
    pub(crate) fn created_ahead(&self, created: u64, now: u64) -> bool {
        self.absolute.is_some() && created > now.saturating_add(CLOCK_SKEW)
    }

    /// The idle timeout a format-2 cookie carries: only a session's own.
    pub(crate) fn cookie_idle(&self) -> Option<Duration> {
        self.own.then_some(self.idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session created while a clock ran ahead does not live past its absolute timeout
    /// by the jump: beyond the drift allowed, it is over.
    #[test]
    fn a_session_created_in_the_future_is_over() {
        let hour = Duration::from_secs(3600);
        let timeouts = Timeouts {
            idle: hour,
            absolute: Some(24 * hour),
            own: false,
        };
        let now = 1_800_000_000;
        assert_eq!(timeouts.ttl(now + 30 * 24 * 3600, now), Duration::ZERO);
        assert_eq!(timeouts.ttl(now + CLOCK_SKEW + 1, now), Duration::ZERO);
        assert_eq!(
            timeouts.ttl(now + CLOCK_SKEW, now),
            hour,
            "a clock a little ahead"
        );
        assert_eq!(timeouts.ttl(now - 23 * 3600 - 1800, now), hour / 2);
        let endless = Timeouts {
            absolute: None,
            ..timeouts
        };
        assert_eq!(
            endless.ttl(now + 30 * 24 * 3600, now),
            hour,
            "no absolute timeout"
        );
    }
}
