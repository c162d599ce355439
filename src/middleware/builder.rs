//! The builder: every setting, its default and the reason for it, and the checks that
//! refuse at start-up a setting that could never work.

use std::rc::Rc;
use std::time::Duration;

use actix_web::cookie::SameSite;
use actix_web::http::StatusCode;

use super::service::MemcacheSession;
use crate::config::{Backend, Config, OverLimit, MAX_IDLE_TIMEOUT, MAX_SESSIONS_PER_USER};
use crate::cookie::{CookieCodec, Key};
use crate::metrics::SessionMetrics;
use crate::store::{ErasedStore, SessionStore};

/// Default idle timeout: 30 minutes, the upper end OWASP suggests for ordinary apps.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Default absolute timeout: 12 hours, a working day; bounds how long a stolen cookie is
/// worth anything, however busy the session is kept.
const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
/// Default refresh point: a quarter of the idle timeout. Reads then cost a `touch` at most
/// once per quarter, and a session always survives at least 3/4 of the idle timeout (less
/// how far the instances' clocks are apart).
const REFRESH_FRACTION: f64 = 0.25;
/// Default size limit: memcached's default item size.
const MAX_SIZE: usize = 1024 * 1024;
/// Default time a commit that lost a compare-and-swap race keeps re-reading, merging and
/// retrying: well under what a user notices, long enough that 8 concurrent writers of
/// different keys of one session all land (measured; see docs/benchmarks.md).
const RETRY_BUDGET: Duration = Duration::from_millis(250);
/// Default cap on a session's own timeouts (`Session::set_timeouts`): 30 days, a common
/// "keep me signed in" period.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest retry budget: past it a request waits on a race longer than on a timeout.
const MAX_RETRY_BUDGET: Duration = Duration::from_secs(60);

impl MemcacheSession {
    /// The middleware over `store`, signing cookies with `key`, with every default.
    pub fn new<S: SessionStore>(store: S, key: Key) -> Self {
        Self::builder(store, key).build()
    }

    /// A builder to change the defaults.
    pub fn builder<S: SessionStore>(store: S, key: Key) -> MemcacheSessionBuilder {
        MemcacheSessionBuilder::new(store, key)
    }
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
    max_lifetime: Duration,
    refresh_fraction: f64,
    commit_on: Box<dyn Fn(StatusCode) -> bool>,
    max_size: usize,
    retry_budget: Duration,
    renew_on_bind: bool,
    session_limit: Option<(usize, OverLimit)>,
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
            max_lifetime: MAX_LIFETIME,
            refresh_fraction: REFRESH_FRACTION,
            commit_on: Box::new(|status: StatusCode| status.as_u16() < 400),
            max_size: MAX_SIZE,
            retry_budget: RETRY_BUDGET,
            renew_on_bind: true,
            session_limit: None,
        }
    }

    /// The cookie's name. Default: `"id"`, as actix-session and tower-sessions use.
    ///
    /// A name starting with `__Host-` makes browsers refuse the cookie unless it is
    /// `Secure`, has `Path=/` and no `Domain`, so a subdomain cannot set or shadow it
    /// (cookie tossing); [`build`](Self::build) checks those rules. `__Secure-` requires
    /// `Secure`. Browsers match both prefixes whatever their case (`__HOST-` too), and so
    /// does the check.
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
    /// site keep the user logged in. [`SameSite::None`] needs a `Secure` cookie: browsers
    /// drop it otherwise, and [`build`](Self::build) refuses it.
    pub fn cookie_same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// The cookie's `Path`. Default: `"/"`, the whole site. Must start with `/`: browsers
    /// replace any other path with one taken from each response's URL, so a logout's
    /// removal cookie could land on another path than the login's cookie and remove
    /// nothing. Written as a request's path carries it: `/caf%C3%A9`, not `/café`.
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
    /// signed timestamp. Default: 30 minutes. Must be from 1 second to 400 days (browsers
    /// keep no cookie longer).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// A session ends this long after it was created, however active; [`renew`] (at
    /// login) starts it afresh. Default: 12 hours; `None` turns it off.
    ///
    /// [`renew`]: crate::Session::renew
    pub fn absolute_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.absolute_timeout = timeout.into();
        self
    }

    /// The longest idle or absolute timeout a handler can give one session with
    /// [`Session::set_timeouts`](crate::Session::set_timeouts) ("keep me signed in"); longer
    /// ones are cut to it. Default: 30 days. Must be from 1 second to 400 days.
    pub fn max_session_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = max;
        self
    }

    /// Whether [`Session::bind_user`](crate::Session::bind_user) in a request also
    /// [`renew`](crate::Session::renew)s the session, so that an id planted before login
    /// (session fixation) is useless after it even when the app forgets `renew()`, as
    /// Spring and Django do. Default: `true`. Binding through the container
    /// ([`Sessions::open`](crate::Sessions::open)) never renews: no cookie names the new id.
    pub fn renew_on_bind(mut self, renew: bool) -> Self {
        self.renew_on_bind = renew;
        self
    }

    /// The most sessions one user may be signed in with at once, and what a login beyond
    /// that does: sign out the user's least recently seen session, or refuse the login
    /// with [`SessionError::TooManySessions`](crate::SessionError::TooManySessions).
    /// Default: no limit of the app's own; a user keeps at most 64 sessions, and a login
    /// beyond that signs out the least recently seen one.
    ///
    /// With [`OverLimit::RefuseLogin`], concurrent logins of one user never exceed the
    /// limit: each login's entry is added to the user's roster with compare-and-swap, after
    /// reading which listed sessions are live. With
    /// [`OverLimit::EndLeastRecentlySeen`], a login signs others out only once it is
    /// written itself (a failed login signs nobody out), so while logins are in flight the
    /// user may have one session more per login, for about a round trip. A listed session
    /// whose server does not answer counts as live. `limit` is clamped to `1..=64`.
    ///
    /// ```
    /// use actix_memcache_session::{Key, MemcacheSession, MemoryStore, OverLimit};
    ///
    /// let sessions = MemcacheSession::builder(MemoryStore::new(), Key::generate())
    ///     .max_sessions_per_user(3, OverLimit::RefuseLogin)
    ///     .build();
    /// ```
    pub fn max_sessions_per_user(mut self, limit: usize, over: OverLimit) -> Self {
        self.session_limit = Some((limit.clamp(1, MAX_SESSIONS_PER_USER), over));
        self
    }

    /// When a cookie is older than this fraction of the idle timeout, a request that uses
    /// the session re-issues it, and a read-only one `touch`es the store. Default: `0.25`.
    /// Below `0.0` it is `0.0`, which refreshes on every request; close to `1.0` a cookie
    /// has only the last seconds of the idle timeout to be re-issued in. NaN, and `1.0`
    /// or more, are refused at build: a cookie is refused once older than the idle timeout, so it
    /// would be re-issued only in the second it expires, and a user in the middle of using
    /// the site would be signed out one idle timeout after the cookie was issued. The window
    /// left, (1 − `fraction`) × the idle timeout, must be well over how far the clocks of
    /// the app's instances are apart: one whose clock is behind takes a cookie another
    /// issued to be younger than it is, and may refresh it only after its stored copy
    /// expired (with the defaults, 22.5 minutes).
    pub fn refresh_fraction(mut self, fraction: f64) -> Self {
        // Not `max`, which would turn a NaN into 0.0 instead of leaving it for `build`.
        self.refresh_fraction = if fraction < 0.0 { 0.0 } else { fraction };
        self
    }

    /// Old keys that still verify cookies (which are then re-signed with the current key),
    /// for rotating keys without logging everyone out. Default: none. A key listed twice,
    /// or the current key listed here too, counts once.
    ///
    /// A session bound to a user ([`Session::bind_user`](crate::Session::bind_user)) stays
    /// bound through the key it was bound under; once that key is dropped from this list,
    /// such a session is signed out at its next request, re-signed cookie or not, because a
    /// sign-out could no longer reach it.
    ///
    /// On several instances, rotate in two deploys: first the new key as a fallback
    /// everywhere, then the new key current and the old one a fallback (`docs/users.md`
    /// says what the second deploy's two current keys cost).
    pub fn fallback_keys(mut self, keys: Vec<Key>) -> Self {
        self.fallback_keys = keys;
        self
    }

    /// Which response statuses commit the session's changes; others abort. Default:
    /// 1xx-3xx, so an error response never leaves half a change behind.
    ///
    /// The status is the response's as it passes this middleware: wrap the session
    /// middleware inside (before, in `.wrap` order) anything that rebuilds responses (an
    /// actix-web `ErrorHandlers` handler that builds a new response drops the handler's
    /// error, which then no longer aborts). What a middleware outside it answers instead
    /// does not undo a stored change.
    pub fn commit_on(mut self, rule: impl Fn(StatusCode) -> bool + 'static) -> Self {
        self.commit_on = Box::new(rule);
        self
    }

    /// Largest encoded session, in bytes; a bigger one gets 413 and nothing is written.
    /// Default: 1 MiB, memcached's default item size. Must be above zero.
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// How long a commit that lost a compare-and-swap race to a concurrent request keeps
    /// trying: it waits a jittered, growing pause, re-reads, merges its own changed keys
    /// onto the winner's data, and writes again, until it lands or this budget is spent
    /// (then 409). Changes to the same key never retry: first committer wins. Default:
    /// 250 ms. At most 60 s; zero means one attempt.
    pub fn retry_budget(mut self, budget: Duration) -> Self {
        self.retry_budget = budget;
        self
    }

    /// The middleware.
    ///
    /// # Panics
    /// At start-up rather than on every request, on a setting that could never work: a
    /// cookie name that is not an HTTP token; a path or domain holding `;` or a control
    /// character, or a path that does not start with `/`, a path holding what a request's
    /// path carries percent-encoded or not at all, or a domain that is not a host name (the
    /// cookie would never come back); a `__Host-` cookie that is not
    /// `Secure`, has another path than `/` or a domain, a `__Secure-` cookie (either prefix
    /// in any case) or a `SameSite=None` one that is not `Secure` (browsers would drop it);
    /// an idle timeout or a `max_session_lifetime` under 1 second or over 400 days, an
    /// absolute timeout of zero, a `max_size` of zero, a retry budget over 60 s, or a
    /// refresh fraction that is NaN or 1.0 or more.
    pub fn build(self) -> MemcacheSession {
        MemcacheSession::from_backend(Rc::new(self.backend()))
    }

    /// What [`build`](Self::build) shares between the middleware's requests.
    pub(crate) fn backend(self) -> Backend {
        self.check();
        // Each key once: a user's sessions are looked up under each key's item, and one
        // listed twice would count them twice against the limit.
        let mut fallback_keys: Vec<Key> = Vec::new();
        for key in self.fallback_keys {
            if key != self.key && !fallback_keys.contains(&key) {
                fallback_keys.push(key);
            }
        }
        let config = Config {
            codec: CookieCodec::new(self.cookie_name, self.key, fallback_keys),
            secure: self.secure,
            http_only: self.http_only,
            same_site: self.same_site,
            path: self.path,
            domain: self.domain,
            persistent: self.persistent,
            idle_timeout: self.idle_timeout,
            absolute_timeout: self.absolute_timeout,
            max_lifetime: self.max_lifetime,
            refresh_fraction: self.refresh_fraction,
            commit_on: self.commit_on,
            max_size: self.max_size,
            retry_budget: self.retry_budget,
            renew_on_bind: self.renew_on_bind,
            session_limit: self.session_limit,
            metrics: SessionMetrics::new(),
        };
        Backend {
            store: self.store,
            config,
        }
    }
}

impl MemcacheSessionBuilder {
    fn check(&self) {
        let name = &self.cookie_name;
        assert!(is_token(name), "cookie name {name:?} is not an HTTP token");
        for (what, value) in [("path", Some(&self.path)), ("domain", self.domain.as_ref())] {
            assert!(
                value.is_none_or(|v| is_attribute_value(v)),
                "cookie {what} {value:?} contains ';' or a control character"
            );
        }
        let path = &self.path;
        assert!(
            path.bytes().all(is_path_byte),
            "cookie path {path:?} holds a character browsers send percent-encoded in a \
             request's path (write it so, as \"/caf%C3%A9\"; `^` some send as it is: leave \
             it out), or never send in it (`?`, `#`): the cookie would never come back"
        );
        if let Some(domain) = &self.domain {
            assert!(
                is_host_name(domain),
                "cookie domain {domain:?} is not a host name (labels of letters, digits, '-' \
                 and '_' between dots, none empty nor starting or ending with '-'; no scheme, \
                 port or path): browsers would drop the cookie"
            );
        }
        // Browsers match the prefixes whatever their case.
        let prefixed = |prefix: &str| {
            name.get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        };
        if prefixed("__Host-") {
            assert!(
                self.secure && self.path == "/" && self.domain.is_none(),
                "a {name:?} cookie must be Secure, with path \"/\" and no domain, or browsers \
                 drop it"
            );
        }
        if prefixed("__Secure-") {
            assert!(
                self.secure,
                "a {name:?} cookie must be Secure, or browsers drop it"
            );
        }
        assert!(
            self.secure || self.same_site != SameSite::None,
            "a SameSite=None cookie must be Secure, or browsers drop it"
        );
        assert!(
            self.path.starts_with('/'),
            "cookie path {:?} does not start with '/'",
            self.path
        );
        let idle = self.idle_timeout;
        // Whole seconds: the cookie's stamp and age are.
        assert!(
            idle >= Duration::from_secs(1) && idle <= MAX_IDLE_TIMEOUT,
            "idle_timeout {idle:?} must be from 1 second to 400 days"
        );
        assert!(
            self.absolute_timeout.is_none_or(|t| !t.is_zero()),
            "absolute_timeout must be above zero (None turns it off)"
        );
        let max = self.max_lifetime;
        assert!(
            max >= Duration::from_secs(1) && max <= MAX_IDLE_TIMEOUT,
            "max_session_lifetime {max:?} must be from 1 second to 400 days"
        );
        assert!(self.max_size > 0, "max_size must be above zero");
        assert!(
            self.retry_budget <= MAX_RETRY_BUDGET,
            "retry_budget {:?} is over 60 s",
            self.retry_budget
        );
        let fraction = self.refresh_fraction;
        assert!(!fraction.is_nan(), "refresh_fraction is NaN");
        assert!(
            fraction < 1.0,
            "refresh_fraction {fraction} must be below 1.0: a cookie is re-issued only while \
             it is younger than the idle timeout"
        );
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

/// A byte a request's path carries as it is, so that a cookie path holding it can match:
/// printable ASCII but what the URL standard percent-encodes in a path (`^` since 2025:
/// browsers differ on it, so a cookie path holding it matches in some only), `?` and `#`,
/// which end it, and `\`, which browsers send as `/`.
fn is_path_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b"\"<>`{}^?#\\".contains(&b)
}

/// A host name as a cookie's `Domain` takes it (one leading `.` allowed, which browsers
/// ignore): labels of letters, digits, `-` and `_` (Unicode names go in their ASCII form,
/// `xn--`), none empty, none starting or ending with `-`.
fn is_host_name(domain: &str) -> bool {
    let name = domain.strip_prefix('.').unwrap_or(domain);
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        })
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

    fn builder() -> MemcacheSessionBuilder {
        MemcacheSessionBuilder::new(crate::MemoryStore::new(), Key::generate())
    }

    /// The panic message `build` gives for `builder`, if it panics.
    fn refusal(builder: MemcacheSessionBuilder) -> Option<String> {
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.build()));
        let payload = panic.err()?;
        Some(match payload.downcast::<String>() {
            Ok(message) => *message,
            Err(payload) => payload.downcast_ref::<&str>().unwrap().to_string(),
        })
    }

    #[test]
    fn build_refuses_settings_that_cannot_work() {
        let day = Duration::from_secs(24 * 3600);
        for (builder, expected) in [
            (builder().cookie_name("bad name"), "is not an HTTP token"),
            (builder().cookie_path("/; Secure"), "contains ';'"),
            (builder().cookie_path("/café"), "percent-encoded"),
            (builder().cookie_path("/my app"), "percent-encoded"),
            (builder().cookie_path("/app?x"), "percent-encoded"),
            (builder().cookie_path("/app\\x"), "percent-encoded"),
            (
                builder().cookie_domain("https://example.com"),
                "not a host name",
            ),
            (
                builder().cookie_domain("example.com:443"),
                "not a host name",
            ),
            (builder().cookie_domain("example.com "), "not a host name"),
            (builder().cookie_domain(""), "not a host name"),
            (builder().cookie_domain("."), "not a host name"),
            (builder().cookie_domain("a..b"), "not a host name"),
            (builder().cookie_domain("example.com."), "not a host name"),
            (builder().cookie_domain("-example.com"), "not a host name"),
            (builder().cookie_path("/a^b"), "percent-encoded"),
            (
                builder().cookie_name("__Host-id").cookie_secure(false),
                "must be Secure",
            ),
            (
                builder().cookie_name("__Host-id").cookie_path("/app"),
                "no domain",
            ),
            (
                builder()
                    .cookie_name("__Host-id")
                    .cookie_domain("example.com"),
                "no domain",
            ),
            (
                builder().cookie_name("__Secure-id").cookie_secure(false),
                "must be Secure",
            ),
            (
                builder().cookie_name("__HOST-id").cookie_path("/app"),
                "no domain",
            ),
            (
                builder().cookie_name("__secure-id").cookie_secure(false),
                "must be Secure",
            ),
            (
                builder()
                    .cookie_same_site(SameSite::None)
                    .cookie_secure(false),
                "SameSite=None",
            ),
            (builder().idle_timeout(Duration::ZERO), "idle_timeout"),
            (
                builder().idle_timeout(Duration::from_millis(999)),
                "idle_timeout",
            ),
            (builder().cookie_path("app"), "does not start with '/'"),
            (builder().cookie_path(""), "does not start with '/'"),
            (builder().idle_timeout(401 * day), "idle_timeout"),
            (builder().idle_timeout(Duration::MAX), "idle_timeout"),
            (
                builder().absolute_timeout(Duration::ZERO),
                "absolute_timeout",
            ),
            (builder().max_size(0), "max_size"),
            (
                builder().retry_budget(Duration::from_secs(61)),
                "retry_budget",
            ),
            (builder().refresh_fraction(f64::NAN), "NaN"),
            (builder().refresh_fraction(1.0), "below 1.0"),
            (builder().refresh_fraction(f64::INFINITY), "below 1.0"),
        ] {
            let message = refusal(builder).expect("build panics");
            assert!(message.contains(expected), "{message}");
        }
        assert_eq!(refusal(builder().cookie_name("__Host-id")), None);
        assert_eq!(refusal(builder().cookie_name("__Hostess")), None);
        assert_eq!(
            refusal(builder().cookie_same_site(SameSite::None)),
            None,
            "Secure by default"
        );
        assert_eq!(
            refusal(builder().idle_timeout(400 * day).absolute_timeout(None)),
            None
        );
        assert_eq!(refusal(builder().retry_budget(Duration::ZERO)), None);
        assert_eq!(
            refusal(builder().idle_timeout(Duration::from_secs(1))),
            None
        );
        assert_eq!(refusal(builder().cookie_path("/app")), None);
        assert_eq!(refusal(builder().cookie_path("/caf%C3%A9/~a-b_c")), None);
        assert_eq!(refusal(builder().cookie_domain(".example.com")), None);
        assert_eq!(
            refusal(builder().cookie_domain("xn--caf-dma.example")),
            None
        );
        assert_eq!(refusal(builder().refresh_fraction(0.99)), None);
        assert_eq!(refusal(builder().refresh_fraction(-1.0)), None);
    }
}
