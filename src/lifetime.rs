//! A session's own timeouts ("keep me signed in"): set by a handler, kept in the session's
//! data (so they merge, roll back and end with it like any change), carried in a format-2
//! cookie, and capped by the middleware's `max_session_lifetime`.

use std::time::Duration;

use crate::config::Config;
use crate::error::SessionError;
use crate::record::Record;
use crate::session::Session;

/// The package a session's own timeouts are kept in, in whole seconds.
pub(crate) const PACKAGE: &str = "actix-memcache-session.lifetime";
const IDLE: &str = "idle";
const ABSOLUTE: &str = "absolute";

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
            let secs = own?.get(key)?.as_u64()?;
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
            Some(absolute) => {
                let age = Duration::from_secs(now.saturating_sub(created));
                self.idle.min(absolute.saturating_sub(age))
            }
        }
    }

    /// The idle timeout a format-2 cookie carries: only a session's own.
    pub(crate) fn cookie_idle(&self) -> Option<Duration> {
        self.own.then_some(self.idle)
    }
}

impl Session {
    /// Gives this session its own idle and absolute timeouts instead of the middleware's,
    /// typically at login with "keep me signed in" (call [`renew`](Self::renew) there too).
    /// Once committed, the store keeps the session that long, and its cookie becomes
    /// persistent with a matching `Max-Age`, signed with the idle timeout so that its age is
    /// still checked without a store read. Shorter timeouts than the defaults work too.
    ///
    /// Each is capped at the middleware's
    /// [`max_session_lifetime`](crate::MemcacheSessionBuilder::max_session_lifetime) (30
    /// days by default), so a handler cannot make a session eternal, and counts in whole
    /// seconds, at least one. Like any change it is written only if the request commits,
    /// a savepoint rolls it back, and [`purge`](Self::purge) ends it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use actix_memcache_session::Session;
    ///
    /// const DAY: Duration = Duration::from_secs(24 * 3600);
    ///
    /// async fn login(session: Session, remember_me: bool) -> actix_web::Result<&'static str> {
    ///     session.renew();
    ///     session.package("auth").insert("user", "ada")?;
    ///     if remember_me {
    ///         session.set_timeouts(14 * DAY, 30 * DAY)?;
    ///     }
    ///     Ok("welcome")
    /// }
    /// ```
    ///
    /// # Errors
    /// Never in practice: the package name is valid.
    pub fn set_timeouts(&self, idle: Duration, absolute: Duration) -> Result<(), SessionError> {
        let package = self.package(PACKAGE);
        package.insert(IDLE, idle.as_secs().max(1))?;
        package.insert(ABSOLUTE, absolute.as_secs().max(1))
    }

    /// Drops this session's own timeouts: it lives by the middleware's again, and its
    /// cookie, re-issued, is a browser-session cookie again ("keep me signed in" turned
    /// off). Written only if the request commits, like any change.
    ///
    /// # Errors
    /// Never in practice: the package name is valid.
    pub fn clear_timeouts(&self) -> Result<(), SessionError> {
        let package = self.package(PACKAGE);
        package.remove(IDLE)?;
        package.remove(ABSOLUTE).map(drop)
    }
}
