//! A session's own timeouts ("keep me signed in"): the methods a handler calls. Which
//! timeouts apply is the unit of work's rule (`unit_of_work/timeouts.rs`).

use std::time::Duration;

use super::extractor::Session;
use crate::error::SessionError;
use crate::unit_of_work::timeouts::{ABSOLUTE, IDLE, PACKAGE};

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
    ///     session.bind_user("ada")?; // renews the session id, unless bound to ada already
    ///     if remember_me {
    ///         session.set_timeouts(14 * DAY, 30 * DAY)?;
    ///     } else {
    ///         // Copies of a remembered login's persistent cookie stop working too.
    ///         session.clear_timeouts()?;
    ///         session.renew();
    ///     }
    ///     Ok("welcome")
    /// }
    /// ```
    ///
    /// # Errors
    /// Never in practice: the package name is valid.
    pub fn set_timeouts(&self, idle: Duration, absolute: Duration) -> Result<(), SessionError> {
        let package = self.own_package(PACKAGE);
        package.insert(IDLE, idle.as_secs().max(1))?;
        package.insert(ABSOLUTE, absolute.as_secs().max(1))
    }

    /// Drops this session's own timeouts: it lives by the middleware's again, and its
    /// cookie, re-issued, is a browser-session cookie again ("keep me signed in" turned
    /// off). Written only if the request commits, like any change.
    ///
    /// A copy of the cookie issued under the longer timeouts (another device's, or a stolen
    /// one) stays valid, while the session lives, for the idle timeout it carries: the
    /// cookie's age is not the session's idleness, so it cannot be judged by the shorter
    /// one without signing out an active device. To revoke such copies, also
    /// [`renew`](Self::renew) the session: its id changes.
    ///
    /// # Errors
    /// Never in practice: the package name is valid.
    pub fn clear_timeouts(&self) -> Result<(), SessionError> {
        let package = self.own_package(PACKAGE);
        package.remove(IDLE)?;
        package.remove(ABSOLUTE).map(drop)
    }
}
