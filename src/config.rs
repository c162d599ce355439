//! The settings a builder made, and what one middleware's requests share (`Backend`):
//! the store and the cookie policy that follows from the settings.

use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::HttpRequest;
use smallvec::SmallVec;

use crate::clock::{now_unix, CLOCK_SKEW};
use crate::cookie::{cookies_named, CookieCodec, Issue, Verified};
use crate::id::SessionId;
use crate::metrics::{Refused, SessionMetrics};
use crate::store::ErasedStore;

/// Longest idle timeout: browsers cap a cookie's lifetime at 400 days anyway.
pub(crate) const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(400 * 24 * 3600);
/// The most sessions a user keeps (the roster itself has room for twice as many lines,
/// for logins in flight: see `unit_of_work/roster.rs`), and so the highest limit an app
/// can set.
pub(crate) const MAX_SESSIONS_PER_USER: usize = 64;
/// Cookies with the session cookie's name verified per request, at most: a browser sends
/// several after cookie tossing from a subdomain or from an old path.
const MAX_CANDIDATES: usize = 4;

/// A request's session cookies, as verified.
#[derive(Debug, Default)]
pub(crate) struct Candidates {
    /// The valid, unexpired ones, in the order sent: nearly always one, kept inline.
    pub(crate) live: SmallVec<[Verified; 1]>,
    /// The session named by the first one signed with a known key but stamped ahead of
    /// this clock (by an instance whose clock is ahead): not served, but what a logout
    /// must still end.
    pub(crate) ahead: Option<SessionId>,
}

/// Why a session cookie is not served.
enum Refusal {
    /// Signed, but stamped ahead of this clock: the session it names.
    Ahead(SessionId),
    /// Anything else: unsigned, tampered, expired.
    Other,
}

/// What a login does when its user already has as many sessions as
/// [`max_sessions_per_user`](crate::MemcacheSessionBuilder::max_sessions_per_user) allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverLimit {
    /// The login goes ahead, and the user's least recently seen session is signed out.
    EndLeastRecentlySeen,
    /// The login fails with [`SessionError::TooManySessions`](crate::SessionError)
    /// (403), leaving no session of its own (one withdrawn after it listed itself, with
    /// two current keys in a key's rotation, removes what it wrote); the sessions the user
    /// has stay signed in.
    RefuseLogin,
}

/// What one middleware instance shares with its requests' units of work.
pub(crate) struct Backend {
    pub(crate) store: Box<dyn ErasedStore>,
    pub(crate) config: Config,
}

/// The settings of one middleware; built once per worker.
pub(crate) struct Config {
    pub(crate) codec: CookieCodec,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) persistent: bool,
    pub(crate) idle_timeout: Duration,
    pub(crate) absolute_timeout: Option<Duration>,
    /// The cap on a session's own timeouts.
    pub(crate) max_lifetime: Duration,
    pub(crate) refresh_fraction: f64,
    pub(crate) commit_on: Box<dyn Fn(StatusCode) -> bool>,
    pub(crate) max_size: usize,
    pub(crate) retry_budget: Duration,
    /// `Session::bind_user` in a request renews the session too.
    pub(crate) renew_on_bind: bool,
    /// The most sessions a user may have, and what a login beyond it does.
    pub(crate) session_limit: Option<(usize, OverLimit)>,
    pub(crate) metrics: SessionMetrics,
}

impl Config {
    pub(crate) fn commits_on(&self, status: StatusCode) -> bool {
        (self.commit_on)(status)
    }

    /// How long a user's generation item is kept from a bind: as long as any session bound
    /// then can live (it would otherwise sign them out early), and an hour more for the
    /// time the commit takes.
    pub(crate) fn generation_ttl(&self) -> Duration {
        let longest = self
            .absolute_timeout
            .unwrap_or(MAX_IDLE_TIMEOUT)
            .max(self.max_lifetime);
        // Saturating: an absolute timeout may be set as long as `Duration::MAX`.
        longest.saturating_add(Duration::from_secs(3600))
    }

    /// Whole seconds after which a cookie for a session with this idle timeout is
    /// re-issued (and a read-only session touched).
    pub(crate) fn refresh_after(&self, idle: Duration) -> u64 {
        // Truncation is intended: whole seconds, as the cookie stamps are.
        (idle.as_secs_f64() * self.refresh_fraction) as u64
    }

    /// The request's valid, unexpired session cookies, in the order sent (browsers send
    /// the most specific path first). Refusals are only logged: a bad cookie means a fresh
    /// session, never an error.
    pub(crate) fn incoming(&self, req: &HttpRequest) -> Candidates {
        let now = now_unix();
        let mut candidates = Candidates::default();
        let values = req
            .headers()
            .get_all(header::COOKIE)
            .flat_map(|h| cookies_named(h.as_bytes(), self.codec.name()))
            .take(MAX_CANDIDATES);
        for value in values {
            match self.verify(value, now) {
                Ok(verified) => candidates.live.push(verified),
                Err(Refusal::Ahead(id)) => {
                    candidates.ahead.get_or_insert(id);
                }
                Err(Refusal::Other) => {}
            }
        }
        candidates
    }

    /// A session cookie's value, verified now, as a request's would be.
    #[cfg(feature = "testing")]
    pub(crate) fn verified(&self, value: &str) -> Option<Verified> {
        self.verify(value.as_bytes(), now_unix()).ok()
    }

    fn verify(&self, value: &[u8], now: u64) -> Result<Verified, Refusal> {
        let verified = match self.codec.decode(value) {
            Ok(v) => v,
            Err(why) => {
                tracing::debug!(?why, "session cookie refused");
                self.metrics.refused(Refused::Invalid);
                return Err(Refusal::Other);
            }
        };
        if verified.issued > now.saturating_add(CLOCK_SKEW) {
            // Signed while a clock was wrong: it would otherwise never expire.
            tracing::debug!(id = ?verified.id, "session cookie stamped in the future; refused");
            self.metrics.refused(Refused::Future);
            return Err(Refusal::Ahead(verified.id));
        }
        // A format-2 cookie carries its session's own idle timeout, under the signature.
        let idle = verified.idle.map_or(self.idle_timeout, |secs| {
            Duration::from_secs(secs.into()).min(self.max_lifetime)
        });
        if now.saturating_sub(verified.issued) > idle.as_secs() {
            tracing::debug!(id = ?verified.id, "session cookie expired");
            self.metrics.refused(Refused::Expired);
            return Err(Refusal::Other);
        }
        Ok(verified)
    }

    /// The `Set-Cookie` for a session: its id signed with the current key, issued now, with
    /// its own idle timeout and its user's hint if it has them; or, without one, a cookie
    /// that removes it.
    pub(crate) fn cookie(&self, issue: Option<&Issue>) -> Cookie<'static> {
        let own_idle = issue.and_then(|issue| issue.idle);
        // At most 400 days (the cap is checked at build), so it fits.
        let idle_secs = own_idle.map(|idle| u32::try_from(idle.as_secs()).unwrap_or(u32::MAX));
        let value = issue.map_or_else(String::new, |issue| {
            self.codec
                .encode(&issue.id, now_unix(), idle_secs, issue.user.as_ref())
        });
        let mut cookie = Cookie::build(self.codec.name().to_owned(), value)
            .path(self.path.clone())
            .secure(self.secure)
            .http_only(self.http_only)
            .same_site(self.same_site)
            .finish();
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        if issue.is_none() {
            cookie.make_removal();
        } else if let Some(idle) = own_idle {
            cookie.set_max_age(seconds(idle));
        } else if self.persistent {
            cookie.set_max_age(seconds(self.idle_timeout));
        }
        cookie
    }
}

fn seconds(d: Duration) -> actix_web::cookie::time::Duration {
    actix_web::cookie::time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Key, MemcacheSession, MemoryStore};

    fn config() -> Config {
        MemcacheSession::builder(MemoryStore::new(), Key::generate())
            .backend()
            .config
    }

    #[test]
    fn cookies_stamped_in_the_future_or_expired_are_refused() {
        let config = config();
        let id = crate::SessionId::generate().unwrap();
        let now = now_unix();
        let idle = config.idle_timeout.as_secs();
        let verified = |issued: u64| {
            let value = config.codec.encode(&id, issued, None, None);
            let req = actix_web::test::TestRequest::default()
                .insert_header((header::COOKIE, format!("id={value}")))
                .to_http_request();
            config.incoming(&req)
        };
        let accepted = |issued: u64| !verified(issued).live.is_empty();
        assert!(accepted(now));
        assert!(accepted(now + CLOCK_SKEW), "a clock a little ahead");
        assert!(
            !accepted(now + CLOCK_SKEW + 5),
            "a timestamp from the future"
        );
        assert!(!accepted(u64::MAX), "one that would never expire");
        assert!(accepted(now - idle + 5));
        assert!(!accepted(now - idle - 5), "expired");
        // A logout must still end the session a cookie from the future names.
        assert_eq!(verified(now + CLOCK_SKEW + 5).ahead.as_ref(), Some(&id));
        assert_eq!(verified(now - idle - 5).ahead, None, "expired is not ahead");
    }

    #[test]
    fn a_cookie_next_to_one_outside_ascii_is_found() {
        let config = config();
        let id = crate::SessionId::generate().unwrap();
        let value = config.codec.encode(&id, now_unix(), None, None);
        let mut header = b"lang=fran\xe7ais; id=".to_vec();
        header.extend_from_slice(value.as_bytes());
        let req = actix_web::test::TestRequest::default()
            .insert_header((
                header::COOKIE,
                header::HeaderValue::from_bytes(&header).unwrap(),
            ))
            .to_http_request();
        let found = config.incoming(&req);
        assert_eq!(found.live.len(), 1);
        assert_eq!(found.live[0].id, id);
    }
}
