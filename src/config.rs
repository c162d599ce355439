//! Configuration: the builder, its defaults and the reasons for them, and the cookie policy
//! that follows from it.

use std::rc::Rc;
use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::HttpRequest;

use crate::cookie::{find_cookie, CookieCodec, Key, Verified};
use crate::middleware::MemcacheSession;
use crate::store::{ErasedStore, SessionStore};
use crate::unit_of_work::{now_unix, Backend};

/// Default idle timeout: 30 minutes, the upper end OWASP suggests for ordinary apps.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Default absolute timeout: 12 hours, a working day; bounds how long a stolen cookie is
/// worth anything, however busy the session is kept.
const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
/// Default refresh point: a quarter of the idle timeout. Reads then cost a `touch` at most
/// once per quarter, and a session always survives at least 3/4 of the idle timeout.
const REFRESH_FRACTION: f64 = 0.25;
/// Default size limit: memcached's default item size.
const MAX_SIZE: usize = 1024 * 1024;

/// The settings of one middleware; built once per worker.
pub(crate) struct Config {
    pub(crate) codec: CookieCodec,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    path: String,
    domain: Option<String>,
    persistent: bool,
    pub(crate) idle_timeout: Duration,
    pub(crate) absolute_timeout: Option<Duration>,
    /// Whole seconds after which a cookie is re-issued (and a read-only session touched).
    pub(crate) refresh_after: u64,
    commit_on: Box<dyn Fn(StatusCode) -> bool>,
    pub(crate) max_size: usize,
}

impl Config {
    pub(crate) fn commits_on(&self, status: StatusCode) -> bool {
        (self.commit_on)(status)
    }

    /// The valid, unexpired session cookie of a request, if it has one. Refusals are only
    /// logged: a bad cookie means a fresh session, never an error.
    pub(crate) fn incoming(&self, req: &HttpRequest) -> Option<Verified> {
        let value = req
            .headers()
            .get_all(header::COOKIE)
            .filter_map(|h| h.to_str().ok())
            .find_map(|h| find_cookie(h, self.codec.name()))?;
        let verified = match self.codec.decode(value) {
            Ok(v) => v,
            Err(why) => {
                tracing::debug!(?why, "session cookie refused; starting a fresh session");
                return None;
            }
        };
        if now_unix().saturating_sub(verified.issued) > self.idle_timeout.as_secs() {
            tracing::debug!(id = ?verified.id, "session cookie expired; starting a fresh session");
            return None;
        }
        Some(verified)
    }

    /// The `Set-Cookie` for a session: its id signed with the current key, issued now; or,
    /// without an id, a cookie that removes it.
    pub(crate) fn cookie(&self, id: Option<&crate::SessionId>) -> Cookie<'static> {
        let value = id.map_or_else(String::new, |id| self.codec.encode(id, now_unix()));
        let mut cookie = Cookie::build(self.codec.name().to_owned(), value)
            .path(self.path.clone())
            .secure(self.secure)
            .http_only(self.http_only)
            .same_site(self.same_site)
            .finish();
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        if id.is_none() {
            cookie.make_removal();
        } else if self.persistent {
            cookie.set_max_age(seconds(self.idle_timeout));
        }
        cookie
    }
}

fn seconds(d: Duration) -> actix_web::cookie::time::Duration {
    actix_web::cookie::time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Builds a [`MemcacheSession`]; every setter says its default.
///
/// ```
/// use std::time::Duration;
/// use actix_memcache_session::{Key, MemcacheSession, MemoryStore};
/// use actix_web::cookie::SameSite;
///
/// let old_key = Key::generate();
/// let session = MemcacheSession::builder(MemoryStore::new(), Key::generate())
///     .cookie_name("sid")
///     .cookie_same_site(SameSite::Strict)
///     .idle_timeout(Duration::from_secs(15 * 60))
///     .fallback_keys(vec![old_key])
///     .commit_on(|status| status.is_success())
///     .build();
/// # let _ = actix_web::App::new().wrap(session);
/// ```
#[must_use = "call .build() to get the middleware"]
pub struct MemcacheSessionBuilder {
    store: Box<dyn ErasedStore>,
    key: Key,
    fallback_keys: Vec<Key>,
    cookie_name: String,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    path: String,
    domain: Option<String>,
    persistent: bool,
    idle_timeout: Duration,
    absolute_timeout: Option<Duration>,
    refresh_fraction: f64,
    commit_on: Box<dyn Fn(StatusCode) -> bool>,
    max_size: usize,
}

impl MemcacheSessionBuilder {
    pub(crate) fn new<S: SessionStore>(store: S, key: Key) -> Self {
        Self {
            store: Box::new(store),
            key,
            fallback_keys: Vec::new(),
            cookie_name: "id".to_owned(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            persistent: false,
            idle_timeout: IDLE_TIMEOUT,
            absolute_timeout: Some(ABSOLUTE_TIMEOUT),
            refresh_fraction: REFRESH_FRACTION,
            commit_on: Box::new(|status: StatusCode| status.as_u16() < 400),
            max_size: MAX_SIZE,
        }
    }

    /// The cookie's name. Default: `"id"`, as actix-session and tower-sessions use.
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// Send the cookie over HTTPS only. Default: `true`; set `false` for plain-HTTP
    /// development only, or the session id travels in clear text.
    pub fn cookie_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Hide the cookie from JavaScript. Default: `true`, so an XSS bug cannot read the
    /// session id.
    pub fn cookie_http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// The cookie's `SameSite`. Default: [`SameSite::Lax`]: not sent on cross-site
    /// sub-requests (a CSRF defence) but kept on top-level navigation, so links into the
    /// site keep the user logged in.
    pub fn cookie_same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// The cookie's `Path`. Default: `"/"`, the whole site.
    pub fn cookie_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The cookie's `Domain`. Default: none, so only the host that set it receives it.
    pub fn cookie_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Give the cookie a `Max-Age` of the idle timeout, so it outlives the browser.
    /// Default: `false`: the cookie ends with the browser session, the least it needs.
    pub fn cookie_persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// Sliding expiry: a session unused this long ends, in the store and in the cookie's
    /// signed timestamp. Default: 30 minutes.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// A session ends this long after it was created, however active. Default: 12 hours;
    /// `None` turns it off.
    pub fn absolute_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.absolute_timeout = timeout.into();
        self
    }

    /// When a cookie is older than this fraction of the idle timeout, a request that uses
    /// the session re-issues it, and a read-only one `touch`es the store. Default: `0.25`.
    /// Clamped to `0.0..=1.0`; `0.0` refreshes on every request.
    pub fn refresh_fraction(mut self, fraction: f64) -> Self {
        self.refresh_fraction = fraction.clamp(0.0, 1.0);
        self
    }

    /// Old keys that still verify cookies (which are then re-signed with the current key),
    /// for rotating keys without logging everyone out. Default: none.
    pub fn fallback_keys(mut self, keys: Vec<Key>) -> Self {
        self.fallback_keys = keys;
        self
    }

    /// Which response statuses commit the session's changes; others abort. Default:
    /// 1xx-3xx, so an error response never leaves half a change behind.
    pub fn commit_on(mut self, rule: impl Fn(StatusCode) -> bool + 'static) -> Self {
        self.commit_on = Box::new(rule);
        self
    }

    /// Largest encoded session, in bytes; a bigger one gets 413 and nothing is written.
    /// Default: 1 MiB, memcached's default item size.
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// The middleware.
    ///
    /// # Panics
    /// If the cookie name is not an HTTP token, or the path or domain holds a `;` or a
    /// control character: such a cookie could not be sent, so this fails at start-up
    /// rather than on every request.
    pub fn build(self) -> MemcacheSession {
        assert!(
            is_token(&self.cookie_name),
            "cookie name {:?} is not an HTTP token",
            self.cookie_name
        );
        for (what, value) in [("path", Some(&self.path)), ("domain", self.domain.as_ref())] {
            assert!(
                value.is_none_or(|v| is_attribute_value(v)),
                "cookie {what} {value:?} contains ';' or a control character"
            );
        }
        let idle = self.idle_timeout.as_secs_f64();
        let config = Config {
            codec: CookieCodec::new(self.cookie_name, self.key, self.fallback_keys),
            secure: self.secure,
            http_only: self.http_only,
            same_site: self.same_site,
            path: self.path,
            domain: self.domain,
            persistent: self.persistent,
            idle_timeout: self.idle_timeout,
            absolute_timeout: self.absolute_timeout,
            // Truncation is intended: whole seconds, as the cookie stamps are.
            refresh_after: (idle * self.refresh_fraction) as u64,
            commit_on: self.commit_on,
            max_size: self.max_size,
        };
        MemcacheSession::from_backend(Rc::new(Backend {
            store: self.store,
            config,
        }))
    }
}

/// RFC 6265 cookie names are RFC 7230 tokens.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// A `Path` or `Domain` value must not end the attribute early or break the header.
fn is_attribute_value(value: &str) -> bool {
    !value.contains(';') && !value.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_names_must_be_tokens() {
        assert!(is_token("id") && is_token("__Host-sid"));
        for bad in ["", "a b", "a=b", "a;b", "é", "a\"b"] {
            assert!(!is_token(bad), "{bad:?}");
        }
        assert!(is_attribute_value("/app") && !is_attribute_value("/; Secure"));
    }

    #[test]
    #[should_panic(expected = "is not an HTTP token")]
    fn build_refuses_a_bad_cookie_name() {
        let _ = MemcacheSessionBuilder::new(crate::MemoryStore::new(), Key::generate())
            .cookie_name("bad name")
            .build();
    }
}
