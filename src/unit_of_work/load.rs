//! Loading: a unit of work per request, which reads the session its cookies name once, when
//! a handler first asks (the session, its user's generation item with it, and whether it is
//! still signed in and within its timeouts).

use std::cell::{self, Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use actix_web::HttpRequest;
use futures_util::future::join;
use tokio::sync::{Notify, OnceCell};

use super::data::{Existing, SessionData};
use super::generation;
use super::record::{DecodeError, Record, FORMAT};
use super::timeouts::Timeouts;
use super::transaction::Transaction;
use crate::clock::now_unix;
use crate::config::{Backend, Candidates, Config};
use crate::cookie::Verified;
use crate::error::SessionError;
use crate::id::SessionId;
use crate::metrics::Load;
use crate::store::{StoreError, Stored, WhenDown};

/// The issue time of a session the container opened, which no cookie carries: never due
/// for a refresh (a touch, or a bound session's "last seen" stamp).
pub(super) const OPENED: u64 = u64::MAX;

/// One request's session work.
pub(crate) struct UnitOfWork {
    pub(super) backend: Rc<Backend>,
    pub(super) session: OnceCell<Rc<RefCell<Transaction>>>,
    /// Committed or aborted: its data and hooks were taken.
    pub(super) ended: Cell<bool>,
    /// The data taken for the commit, an empty stand-in in its place: a session extracted
    /// meanwhile (by a task that holds the request) waits for it to come back.
    pub(super) committing: Cell<bool>,
    /// Its instance is nested inside another's (of another cookie name): the cookie it sets
    /// is kept for an outer one whose commit fails (see the middleware's `with_cookie`).
    nested: Cell<bool>,
    /// Told when it is back.
    pub(super) handed_back: Notify,
    /// The request's verified session cookies, for the load (and for a second extractor's,
    /// if the first fails): here rather than in the load's future, which every request's
    /// extractor boxes. Verified once: a second extractor, started while the first load
    /// awaits the store, finds the list that load is going through.
    cookies: cell::OnceCell<Candidates>,
    /// Kept in the request's first (the outermost instance's): what serves each scope of
    /// an instance nested inside, innermost last (`None`: this one serves it).
    levels: RefCell<Vec<Option<Rc<UnitOfWork>>>>,
}

/// A scope of an instance nested inside another, entered: left when dropped (its inner
/// service answered, failed, panicked or was dropped), the scope around it served again.
pub(crate) struct Level {
    outermost: Rc<UnitOfWork>,
    depth: usize,
}

impl Drop for Level {
    fn drop(&mut self) {
        self.outermost.levels.borrow_mut().truncate(self.depth);
    }
}

impl UnitOfWork {
    #[inline]
    pub(crate) fn new(backend: Rc<Backend>) -> Self {
        Self {
            backend,
            session: OnceCell::new(),
            ended: Cell::new(false),
            committing: Cell::new(false),
            nested: Cell::new(false),
            handed_back: Notify::const_new(),
            cookies: cell::OnceCell::new(),
            levels: RefCell::new(Vec::new()),
        }
    }

    /// Of the request's first unit of work: the one serving the scope the request is in.
    pub(crate) fn serving(self: &Rc<Self>) -> Rc<Self> {
        match self.levels.borrow().last() {
            Some(Some(inner)) => Rc::clone(inner),
            _ => Rc::clone(self),
        }
    }

    /// Of the request's first unit of work: the innermost serving a scope the request is
    /// in whose cookie is named `name`.
    pub(crate) fn named(self: &Rc<Self>, name: &str) -> Option<Rc<Self>> {
        let levels = self.levels.borrow();
        levels
            .iter()
            .rev()
            .map(|level| level.as_ref().unwrap_or(self))
            .chain(std::iter::once(self))
            .find(|uow| uow.config().codec.name() == name)
            .cloned()
    }

    /// Of the request's first unit of work: enters the scope of an instance nested inside,
    /// which `uow` serves, until the level returned is dropped.
    pub(crate) fn enter(self: &Rc<Self>, uow: Rc<Self>) -> Level {
        let mut levels = self.levels.borrow_mut();
        let depth = levels.len();
        // Itself as `None`: no unit of work holds itself.
        levels.push((!Rc::ptr_eq(&uow, self)).then_some(uow));
        Level {
            outermost: Rc::clone(self),
            depth,
        }
    }

    /// Marks it as its instance's, nested inside another's.
    pub(crate) fn set_nested(&self) {
        self.nested.set(true);
    }

    /// Whether its instance is nested inside another's.
    pub(crate) fn is_nested(&self) -> bool {
        self.nested.get()
    }

    pub(crate) fn config(&self) -> &Config {
        &self.backend.config
    }

    pub(crate) fn backend(&self) -> Rc<Backend> {
        Rc::clone(&self.backend)
    }

    /// The session, if this request has loaded it.
    pub(crate) fn loaded(&self) -> Option<Rc<RefCell<Transaction>>> {
        self.session.get().cloned()
    }

    /// Ends the request if it has not loaded its session, and says whether it did: a
    /// session loaded after that (by a middleware outside, or a task the handler spawned)
    /// reads as the request left it, and writes nothing, nor runs a hook.
    pub(crate) fn end_unloaded(&self) -> bool {
        let unloaded = !self.session.initialized();
        if unloaded {
            self.ended.set(true);
        }
        unloaded
    }

    /// Verifies the request's session cookies, for `load`, unless done already.
    pub(crate) fn verify_cookies(&self, req: &HttpRequest) {
        self.cookies.get_or_init(|| self.config().incoming(req));
    }

    /// The verified session cookies, in the order the request sent them.
    fn cookies(&self) -> &[Verified] {
        self.cookies.get().map_or(&[], |cookies| &cookies.live)
    }

    /// Loads the session named by the request's verified cookies, once: the first that
    /// names a live session. Unknown, expired or unreadable sessions come back fresh.
    /// Only a failing store is an error.
    pub(crate) async fn load(&self) -> Result<Rc<RefCell<Transaction>>, SessionError> {
        // Two extractors in one request share one load: the second waits for the first.
        let session = self
            .session
            .get_or_try_init(|| async {
                let metrics = &self.backend.config.metrics;
                let named = !self.cookies().is_empty();
                let tx = self
                    .first_live()
                    .await
                    .inspect_err(|_| metrics.load(Load::Error))?;
                metrics.load(match &tx {
                    Some(tx) => tx.borrow().data.loaded(),
                    None if named => Load::Miss,
                    None => Load::Fresh,
                });
                let tx = tx.unwrap_or_else(|| {
                    // A cookie stamped ahead of this clock names a session a logout must end.
                    let ahead = self.cookies.get().and_then(|c| c.ahead.clone());
                    begin(ahead.map_or_else(SessionData::fresh, SessionData::ahead_of))
                });
                tx.borrow_mut().renew_on_bind = self.backend.config.renew_on_bind;
                if self.ended.get() {
                    tx.borrow_mut().end_quietly();
                }
                Ok::<_, SessionError>(tx)
            })
            .await?;
        Ok(Rc::clone(session))
    }

    /// The session of the first cookie that names a live one. Returns as soon as it is read.
    /// A session found signed out stands only if no later cookie names a live one: its
    /// removal cookie would remove the live one's (they share name, path and domain); so
    /// does one stored but unreadable here. (One whose server is down stands as the fresh
    /// session that replaces it, as before: no removal cookie, and no older session of
    /// another cookie served in its place.)
    async fn first_live(&self) -> Result<Option<Rc<RefCell<Transaction>>>, SessionError> {
        let (mut unreadable, mut signed_out) = (None, None);
        // Read in place, not taken: when this load fails or is dropped, a second extractor of
        // the request (waiting on the same load) loads again from the same cookies.
        for cookie in self.cookies() {
            match self.read(cookie, WhenDown::StartFresh).await? {
                // One this instance cannot read stands only as a signed-out one does, and
                // before it: it may be signed in where it is read, so a logout must reach it.
                Some(tx) if tx.borrow().data.unreadable => {
                    unreadable.get_or_insert(tx);
                }
                Some(tx) if tx.borrow().data.signed_out.is_some() => {
                    signed_out.get_or_insert(tx);
                }
                Some(tx) => return Ok(Some(tx)),
                None => {}
            }
        }
        Ok(unreadable.or(signed_out))
    }

    /// Starts a new, empty session outside a request (the test helpers' seeding): no
    /// cookie, nothing read.
    #[cfg(feature = "testing")]
    pub(crate) async fn fresh(&self) -> Rc<RefCell<Transaction>> {
        let tx = begin(SessionData::fresh());
        Rc::clone(self.session.get_or_init(|| async { tx }).await)
    }

    /// Opens the live session `id` outside a request (the container), or `None`. A session
    /// whose server is down is an error here, whatever the store says to do for requests.
    pub(crate) async fn open(
        &self,
        id: &SessionId,
    ) -> Result<Option<Rc<RefCell<Transaction>>>, SessionError> {
        let by_id = Verified {
            id: id.clone(),
            // No cookie: opening a session is no reason to touch it, however long it is
            // held open, whatever the refresh fraction.
            issued: OPENED,
            by_fallback: false,
            idle: None,
            user: None,
        };
        let Some(tx) = self.read(&by_id, WhenDown::FailClosed).await? else {
            return Ok(None);
        };
        {
            let SessionData { existing, data, .. } = &mut tx.borrow_mut().data;
            let Some(existing) = existing.as_mut() else {
                // Signed out everywhere: as good as gone.
                return Ok(None);
            };
            // No cookie to re-issue here: as if it carried what the session says, so that an
            // unchanged session is not touched (which would extend its life).
            existing.cookie_idle = self.timeouts(data).cookie_idle().map(|d| d.as_secs());
            existing.cookie_user = self.user_item(data);
        }
        Ok(Some(Rc::clone(
            self.session.get_or_init(|| async { tx }).await,
        )))
    }

    /// The live session a cookie names, if there is one. When its server (or its user's
    /// generation item's) is down and both `allowed` and the store say to start fresh, a
    /// fresh one stands in for it; so it does for one stored but unreadable here (over the
    /// store's item limit, or of a later release's format), whatever the store says. A
    /// session whose user was signed out everywhere comes back fresh, with the old one to
    /// remove. Returned as its transaction, so that the
    /// session's copy is built once, not moved up through each caller's future.
    async fn read(
        &self,
        cookie: &Verified,
        allowed: WhenDown,
    ) -> Result<Option<Rc<RefCell<Transaction>>>, SessionError> {
        let store = &*self.backend.store;
        let start_fresh = allowed == WhenDown::StartFresh && store.when_down() == allowed;
        // A bound session's cookie names its user's generation item: one round trip for both.
        let (stored, hinted) = match &cookie.user {
            None => (store.load(&cookie.id).await, None),
            Some(hint) => {
                let (stored, item) = join(store.load(&cookie.id), store.load(hint)).await;
                (stored, Some((hint, item)))
            }
        };
        let stored = match stored {
            // Over this store's limit, written by an instance reading larger items, where
            // it may be signed in: a fresh one stands in, so that a logout from it still
            // ends it (a purge removes it, a sign-out is blind: 503).
            Err(StoreError::TooLarge { size }) => {
                tracing::warn!(id = ?cookie.id, size, "stored session over the store's item limit");
                return Ok(Some(begin(SessionData::unreadable(cookie.id.clone()))));
            }
            stored => stored,
        };
        let stored = match or_fresh(stored, &cookie.id, start_fresh)? {
            Ok(stored) => stored,
            Err(fresh) => return Ok(Some(begin(fresh))),
        };
        let Some(stored) = stored else {
            tracing::debug!(id = ?cookie.id, "no stored session for cookie");
            return Ok(None);
        };
        let data = match Record::decode(stored.data) {
            Ok(data) => data,
            // A later release's format (during a rollback): that release may serve it,
            // signed in. It stands in, as one over the item limit does.
            Err(e @ DecodeError::Version(v)) if v > FORMAT => {
                tracing::warn!(id = ?cookie.id, error = %e, "stored session unreadable");
                return Ok(Some(begin(SessionData::unreadable(cookie.id.clone()))));
            }
            Err(e) => {
                tracing::warn!(id = ?cookie.id, error = %e, "stored session unreadable");
                return Ok(None);
            }
        };
        if self.ttl(&data).is_zero() {
            tracing::debug!(id = ?cookie.id, "session past its absolute timeout");
            return Ok(None);
        }
        if let Some(item) = self.user_item(&data) {
            let generation = match hinted {
                // Bound under a key dropped from `fallback_keys` since: no sign-out reaches
                // that item any more, so the session is signed out (fail closed).
                _ if !self.reachable(&data, &item) => Ok(None),
                Some((hint, generation)) if *hint == item => generation,
                // Bound since the cookie was issued (or outside a request): a second round
                // trip, once; the commit re-issues the cookie with the hint.
                _ => store.load(&item).await,
            };
            let generation = match generation::user_item_read(generation) {
                // Over this store's limit, but a roster an instance reading larger items may
                // sign sessions in by: whether this one is signed in is unknown. It stands
                // in, fresh, as for a server down: a sign-out from it is blind.
                Err(StoreError::TooLarge { size }) => {
                    tracing::warn!(id = ?cookie.id, size, "user item over the store's item limit");
                    return Ok(Some(begin(SessionData::unreadable(cookie.id.clone()))));
                }
                read => read,
            };
            let generation = match or_fresh(generation, &cookie.id, start_fresh)? {
                Ok(generation) => generation,
                Err(fresh) => return Ok(Some(begin(fresh))),
            };
            if !generation::signed_in(&data, generation.as_ref()) {
                tracing::debug!(id = ?cookie.id, "session's user was signed out everywhere");
                return Ok(Some(begin(SessionData {
                    signed_out: Some((cookie.id.clone(), stored.version)),
                    ..SessionData::fresh()
                })));
            }
        }
        Ok(Some(begin(SessionData {
            existing: Some(Existing {
                id: cookie.id.clone(),
                version: stored.version,
                issued: cookie.issued,
                by_fallback: cookie.by_fallback,
                cookie_idle: cookie.idle.map(u64::from),
                cookie_user: cookie.user.clone(),
            }),
            // Not `..fresh()`: that would read the clock for a record thrown away.
            ..SessionData::with(data)
        })))
    }

    pub(super) fn timeouts(&self, data: &Record) -> Timeouts {
        Timeouts::of(data, &self.backend.config)
    }

    /// How long the store should keep this session. Zero means it is over.
    pub(super) fn ttl(&self, data: &Record) -> Duration {
        self.timeouts(data).ttl(data.created, now_unix())
    }

    /// The generation item of the user a session is bound to, if it is.
    pub(super) fn user_item(&self, data: &Record) -> Option<SessionId> {
        let user = generation::bound(data)?;
        Some(generation::item_of(data).unwrap_or_else(|| self.current_item(user)))
    }

    /// Whether a sign-out still reaches `item`, the user item of a session bound as `data`
    /// says: it is its user's item under the current key or a fallback key.
    fn reachable(&self, data: &Record, item: &SessionId) -> bool {
        generation::bound(data).is_some_and(|user| {
            self.backend
                .config
                .codec
                .user_items(user)
                .any(|reached| reached == *item)
        })
    }

    /// The id of `user`'s generation item under the current key.
    pub(super) fn current_item(&self, user: &str) -> SessionId {
        self.backend.config.codec.user_item(user)
    }
}

/// A transaction over `data`.
fn begin(data: SessionData) -> Rc<RefCell<Transaction>> {
    Rc::new(RefCell::new(Transaction::new(data)))
}

/// A store read (`Ok`), or, when its server is down and the request may start fresh, the
/// fresh session that stands in for the one the cookie names (`Err`).
fn or_fresh(
    read: Result<Option<Stored>, StoreError>,
    id: &SessionId,
    start_fresh: bool,
) -> Result<Result<Option<Stored>, SessionData>, SessionError> {
    match read {
        Err(StoreError::Unavailable(e)) if start_fresh => {
            // Per request, so not a warning: the store logs the server going down.
            tracing::debug!(?id, error = %e, "server down: starting fresh");
            Ok(Err(SessionData::standing_in(id.clone())))
        }
        read => Ok(Ok(read?)),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header;
    use actix_web::test::TestRequest;

    use super::*;
    use crate::store::MemoryStore;
    use crate::{Key, MemcacheSession};

    /// A second extractor started while the first load awaits the store does not change
    /// the cookies that load goes through.
    #[test]
    fn the_cookies_are_verified_once() {
        let backend = MemcacheSession::builder(MemoryStore::new(), Key::generate()).backend();
        let uow = UnitOfWork::new(Rc::new(backend));
        let codec = &uow.config().codec;
        let request = |id: &SessionId| {
            let value = codec.encode(id, now_unix(), None, None);
            let cookie = format!("{}={value}", codec.name());
            TestRequest::default()
                .insert_header((header::COOKIE, cookie))
                .to_http_request()
        };
        let (first, second) = (
            SessionId::generate().unwrap(),
            SessionId::generate().unwrap(),
        );
        uow.verify_cookies(&request(&first));
        uow.verify_cookies(&request(&second));
        let ids: Vec<_> = uow.cookies().iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids, [first]);
    }
}
