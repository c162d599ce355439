//! The unit of work: one per request. It loads the session lazily, records which
//! (package, key) entries the handler changed, and at the end either commits them with
//! compare-and-swap, merging with concurrent commits, or is dropped having written nothing.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use actix_web::ResponseError;
use futures_util::future::join;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::backoff::Backoff;
use crate::clock::now_unix;
use crate::config::{Backend, Config};
use crate::cookie::{Issue, Verified};
use crate::error::SessionError;
use crate::hooks::{Hooks, Outcome};
use crate::id::SessionId;
use crate::lifetime::Timeouts;
use crate::metrics::{Commit, Load, Touch};
use crate::record::Record;
use crate::store::{StoreError, Stored, Update, Version, WhenDown};
use crate::to_completion;
use crate::transaction::Transaction;
use crate::user;

/// New ids the store reports taken before concluding it is broken (a 128-bit collision
/// never happens).
const CREATE_ATTEMPTS: usize = 3;
/// Ids drawn for a new session, counting those skipped because their server is down:
/// with one server of three down, all 64 fall on it with probability 3^-64.
const MAX_DRAWS: usize = 64;

/// A session that exists in the store, as this request found it.
#[derive(Debug, Clone)]
struct Existing {
    id: SessionId,
    version: Version,
    /// When the request's cookie was issued, and whether an old key signed it.
    issued: u64,
    by_fallback: bool,
    /// The idle timeout the request's cookie carried (format 2), in seconds.
    cookie_idle: Option<u64>,
    /// The user generation item the request's cookie named (format 3).
    cookie_user: Option<SessionId>,
}

/// The session's in-memory copy and the change set: what [`Session`](crate::Session)
/// reads and writes, and what a savepoint copies.
#[derive(Debug, Clone)]
pub(crate) struct SessionData {
    existing: Option<Existing>,
    data: Record,
    /// Each changed (package, key) entry: the merge's conflict test.
    changes: BTreeMap<(String, String), Change>,
    /// A purged (or renewed) session's id, deleted on commit.
    retired: Option<SessionId>,
    /// The session the cookie named, when its server could not be reached and the store
    /// said to start fresh: a purge or renew must still remove it.
    unreachable: Option<SessionId>,
    /// The session the cookie named, found signed out (its user's generation ended), at
    /// the version read: removed on commit unless written since.
    signed_out: Option<(SessionId, Version)>,
    /// The user whose generation ends on commit, signing out all their sessions.
    signing_out: Option<SignOut>,
    renewed: bool,
    purged: bool,
}

/// A sign-out of a user's sessions, ended on commit.
#[derive(Debug, Clone)]
struct SignOut {
    user: String,
    /// The item the session was bound with (`None` if bound in this request: the current
    /// key's).
    item: Option<SessionId>,
    /// The generation this session held when the sign-out was asked (`None` if bound in
    /// this request): the end is conditional on it being still the current one.
    held: Option<String>,
    /// This session stays signed in, under a new generation.
    keep_this: bool,
}

/// One changed entry.
#[derive(Debug, Clone)]
struct Change {
    /// The value as loaded.
    original: Option<Value>,
    /// The change does not depend on what was read (removing a flash message once shown):
    /// a concurrent commit that already made the same change is not a conflict.
    blind: bool,
}

/// What a session did in this request, as [`Session::status`](crate::Session::status)
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionStatus {
    /// Nothing changed; nothing will be written.
    Unchanged,
    /// Entries changed; they are written if the response commits.
    Changed,
    /// [`renew`](crate::Session::renew) was called: the data moves to a new id.
    Renewed,
    /// [`purge`](crate::Session::purge) was called: the session is deleted.
    Purged,
    /// [`abort`](crate::Session::abort) was called: nothing of this request is written.
    Aborted,
}

impl SessionData {
    pub(crate) fn fresh() -> Self {
        Self::with(Record::new(now_unix()))
    }

    /// `data` as loaded, with nothing changed yet.
    pub(crate) fn with(data: Record) -> Self {
        Self {
            existing: None,
            data,
            changes: BTreeMap::new(),
            retired: None,
            unreachable: None,
            signed_out: None,
            signing_out: None,
            renewed: false,
            purged: false,
        }
    }

    pub(crate) fn get(&self, package: &str, key: &str) -> Option<&Value> {
        self.data.get(package, key)
    }

    /// The id the session is stored under, if it is.
    pub(crate) fn id(&self) -> Option<&SessionId> {
        self.existing.as_ref().map(|e| &e.id)
    }

    pub(crate) fn keys(&self, package: &str) -> Vec<String> {
        self.data.keys(package)
    }

    /// Sets (`Some`) or removes (`None`) an entry, remembering its loaded value the first
    /// time it changes. Writing the value already there is not a change.
    pub(crate) fn put(&mut self, package: &str, key: &str, value: Option<Value>) {
        self.change(package, key, value, false);
    }

    /// Like [`put`](Self::put), for a change that does not depend on what was read; see
    /// [`Change::blind`].
    pub(crate) fn put_blind(&mut self, package: &str, key: &str, value: Option<Value>) {
        self.change(package, key, value, true);
    }

    fn change(&mut self, package: &str, key: &str, value: Option<Value>, blind: bool) {
        let current = self.data.get(package, key);
        if current == value.as_ref() {
            return;
        }
        let original = current.cloned();
        self.changes
            .entry((package.to_owned(), key.to_owned()))
            .or_insert(Change { original, blind });
        self.data.put(package, key, value);
    }

    /// A package's entries as this request loaded them, before its own changes.
    pub(crate) fn loaded_entries(&self, package: &str) -> BTreeMap<String, Value> {
        let mut entries = self.data.package(package).cloned().unwrap_or_default();
        for ((p, key), change) in &self.changes {
            match (p == package, &change.original) {
                (false, _) => {}
                (true, Some(original)) => {
                    entries.insert(key.clone(), original.clone());
                }
                (true, None) => {
                    entries.remove(key);
                }
            }
        }
        entries
    }

    /// A package's entries as they are now.
    pub(crate) fn entries(&self, package: &str) -> Option<&BTreeMap<String, Value>> {
        self.data.package(package)
    }

    /// Re-applies this request's changes onto `latest`, the data another request committed
    /// meanwhile. A key both changed is a conflict (first committer wins), unless this
    /// request's change was blind and already made.
    pub(crate) fn rebase(&mut self, mut latest: Record) -> Result<(), SessionError> {
        for ((package, key), change) in &self.changes {
            let ours = self.data.get(package, key);
            let theirs = latest.get(package, key);
            if theirs != change.original.as_ref() && !(change.blind && theirs == ours) {
                return Err(SessionError::Conflict);
            }
            latest.put(package, key, ours.cloned());
        }
        self.data = latest;
        Ok(())
    }

    pub(crate) fn renew(&mut self) {
        self.renewed = true;
        // A login must end the session the cookie named, even one not reached.
        if let Some(id) = self.unreachable.take() {
            self.retired = Some(id);
        }
    }

    pub(crate) fn purge(&mut self) {
        let retired = self
            .existing
            .take()
            .map(|e| e.id)
            .or(self.retired.take())
            .or(self.unreachable.take());
        *self = Self {
            retired,
            signed_out: self.signed_out.take(),
            signing_out: self.signing_out.take(),
            purged: true,
            ..Self::fresh()
        };
    }

    /// Ends the bound user's generation on commit, signing them out of every session;
    /// this one is purged, or, if `keep_this`, copies the generation that follows.
    pub(crate) fn sign_out(&mut self, keep_this: bool) {
        let earlier = self.signing_out.take();
        let user = user::bound(&self.data).map(str::to_owned);
        // A second sign-out in the request keeps what the session held at the first.
        let held = user::held(&self.data)
            .map(str::to_owned)
            .or_else(|| earlier.as_ref().and_then(|e| e.held.clone()));
        let item =
            user::item_of(&self.data).or_else(|| earlier.as_ref().and_then(|e| e.item.clone()));
        if keep_this {
            if user.is_some() {
                self.put(user::PACKAGE, user::GENERATION, None);
            }
        } else {
            self.purge();
        }
        self.signing_out = match user {
            Some(user) => Some(SignOut {
                user,
                item,
                held,
                keep_this,
            }),
            None => earlier,
        };
    }

    /// How the load that made this went.
    fn loaded(&self) -> Load {
        if self.existing.is_some() {
            Load::Hit
        } else if self.signed_out.is_some() {
            Load::SignedOut
        } else if self.unreachable.is_some() {
            Load::Down
        } else {
            Load::Miss
        }
    }

    pub(crate) fn status(&self) -> SessionStatus {
        if self.purged {
            SessionStatus::Purged
        } else if self.renewed {
            SessionStatus::Renewed
        } else if self.changes.is_empty() {
            SessionStatus::Unchanged
        } else {
            SessionStatus::Changed
        }
    }
}

/// What the response's `Set-Cookie` should say after a commit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CookieAction {
    /// Leave the client's cookie as it is.
    Keep,
    /// Issue a cookie, stamped now.
    Issue(Issue),
    /// Tell the client to drop its cookie.
    Remove,
}

/// One request's session work.
pub(crate) struct UnitOfWork {
    backend: Rc<Backend>,
    session: OnceCell<Rc<RefCell<Transaction>>>,
    /// Committed or aborted: its data and hooks were taken.
    ended: Cell<bool>,
}

impl UnitOfWork {
    pub(crate) fn new(backend: Rc<Backend>) -> Self {
        Self {
            backend,
            session: OnceCell::new(),
            ended: Cell::new(false),
        }
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

    /// Whether this request has loaded its session.
    pub(crate) fn is_loaded(&self) -> bool {
        self.session.initialized()
    }

    /// Loads the session named by the request's verified cookies, once: the first that
    /// names a live session. Unknown, expired or unreadable sessions come back fresh.
    /// Only a failing store is an error.
    pub(crate) async fn load(
        &self,
        cookies: Vec<Verified>,
    ) -> Result<Rc<RefCell<Transaction>>, SessionError> {
        // Two extractors in one request share one load: the second waits for the first.
        let session = self
            .session
            .get_or_try_init(|| async {
                let metrics = &self.backend.config.metrics;
                let named = !cookies.is_empty();
                let data = self
                    .first_live(cookies)
                    .await
                    .inspect_err(|_| metrics.load(Load::Error))?;
                metrics.load(match &data {
                    Some(data) => data.loaded(),
                    None if named => Load::Miss,
                    None => Load::Fresh,
                });
                Ok::<_, SessionError>(Rc::new(RefCell::new(Transaction::new(
                    data.unwrap_or_else(SessionData::fresh),
                ))))
            })
            .await?;
        Ok(Rc::clone(session))
    }

    /// The session of the first cookie that names a live one. Returns as soon as it is read,
    /// so that no session's data is held across a store's await: this future, boxed with
    /// every request's extractor, stays under 1 KB.
    async fn first_live(
        &self,
        cookies: Vec<Verified>,
    ) -> Result<Option<SessionData>, SessionError> {
        for cookie in cookies {
            if let Some(data) = self.read(cookie, WhenDown::StartFresh).await? {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }

    /// Opens the live session `id` outside a request (the container), or `None`. A session
    /// whose server is down is an error here, whatever the store says to do for requests.
    pub(crate) async fn open(
        &self,
        id: &SessionId,
    ) -> Result<Option<Rc<RefCell<Transaction>>>, SessionError> {
        let by_id = Verified {
            id: id.clone(),
            // As if just issued: opening a session is no reason to touch it.
            issued: now_unix(),
            by_fallback: false,
            idle: None,
            user: None,
        };
        let Some(mut data) = self.read(by_id, WhenDown::FailClosed).await? else {
            return Ok(None);
        };
        let Some(existing) = data.existing.as_mut() else {
            // Signed out everywhere: as good as gone.
            return Ok(None);
        };
        // No cookie to re-issue here: as if it carried what the session says, so that an
        // unchanged session is not touched (which would extend its life).
        existing.cookie_idle = self.timeouts(&data.data).cookie_idle().map(|d| d.as_secs());
        existing.cookie_user = self.user_item(&data.data);
        let tx = Rc::new(RefCell::new(Transaction::new(data)));
        Ok(Some(Rc::clone(
            self.session.get_or_init(|| async { tx }).await,
        )))
    }

    /// The live session a cookie names, if there is one. When its server (or its user's
    /// generation item's) is down and both `allowed` and the store say to start fresh, a
    /// fresh one stands in for it. A session whose user was signed out everywhere comes
    /// back fresh, with the old one to remove.
    async fn read(
        &self,
        cookie: Verified,
        allowed: WhenDown,
    ) -> Result<Option<SessionData>, SessionError> {
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
        let stored = match or_fresh(stored, &cookie.id, start_fresh)? {
            Ok(stored) => stored,
            Err(fresh) => return Ok(Some(fresh)),
        };
        let Some(stored) = stored else {
            tracing::debug!(id = ?cookie.id, "no stored session for cookie");
            return Ok(None);
        };
        let data = match Record::decode(&stored.data) {
            Ok(data) => data,
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
                Some((hint, generation)) if *hint == item => generation,
                // Bound since the cookie was issued (or outside a request): a second round
                // trip, once; the commit re-issues the cookie with the hint.
                _ => store.load(&item).await,
            };
            let generation = match or_fresh(generation, &cookie.id, start_fresh)? {
                Ok(generation) => generation,
                Err(fresh) => return Ok(Some(fresh)),
            };
            if !user::signed_in(&data, generation.as_ref()) {
                tracing::debug!(id = ?cookie.id, "session's user was signed out everywhere");
                return Ok(Some(SessionData {
                    signed_out: Some((cookie.id, stored.version)),
                    ..SessionData::fresh()
                }));
            }
        }
        Ok(Some(SessionData {
            existing: Some(Existing {
                id: cookie.id,
                version: stored.version,
                issued: cookie.issued,
                by_fallback: cookie.by_fallback,
                cookie_idle: cookie.idle.map(u64::from),
                cookie_user: cookie.user,
            }),
            // Not `..fresh()`: that would read the clock for a record thrown away.
            ..SessionData::with(data)
        }))
    }

    fn timeouts(&self, data: &Record) -> Timeouts {
        Timeouts::of(data, &self.backend.config)
    }

    /// How long the store should keep this session. Zero means it is over.
    fn ttl(&self, data: &Record) -> Duration {
        self.timeouts(data).ttl(data.created, now_unix())
    }

    /// Takes the session's data and hooks out of a loaded session, so that no borrow is
    /// held across the store's awaits; `None` for the data when the handler aborted.
    fn take(&self) -> Option<(Option<SessionData>, Hooks)> {
        let taken = self.session.get()?.try_borrow_mut().ok()?.finish();
        self.ended.set(true);
        Some(taken)
    }

    /// Ends the request writing nothing, for `why` (an abort outcome), and runs the abort
    /// hooks.
    pub(crate) async fn abort(&self, why: Commit) {
        if let Some((_, hooks)) = self.take() {
            self.backend.config.metrics.commit(why);
            hooks.run(Outcome::Aborted).await;
        }
    }

    /// Commits what the request changed, unless the handler aborted, then runs the hooks
    /// of the branch taken: a failed commit runs the abort hooks.
    pub(crate) async fn finish(&self) -> Result<CookieAction, SessionError> {
        let Some((mut data, hooks)) = self.take() else {
            return Ok(CookieAction::Keep);
        };
        let (ended, result) = match &mut data {
            None => (Commit::AbortedByHandler, Ok(CookieAction::Keep)),
            // Boxed apart: with this future around it, it would pass the 1 KiB from which
            // glibc's malloc takes its slower path (which then consolidates its caches).
            Some(data) => match Box::pin(self.commit(data)).await {
                Ok((action, ended)) => (ended, Ok(action)),
                Err(e) => (Commit::failed(e.status_code()), Err(e)),
            },
        };
        self.backend.config.metrics.commit(ended);
        let branch = match ended {
            Commit::Written | Commit::Unchanged => Outcome::Committed,
            _ => Outcome::Aborted,
        };
        hooks.run(branch).await;
        result
    }

    /// Writes what the request changed, and says whether it wrote anything. Nothing is
    /// written for a session that did not change, except a `touch` when its cookie is due
    /// for refresh.
    ///
    /// It borrows the data rather than taking it, so that its future does not hold a
    /// second copy.
    async fn commit(&self, s: &mut SessionData) -> Result<(CookieAction, Commit), SessionError> {
        // The user's generation first: a commit that fails after it leaves this session
        // signed out with the others, never the others signed in.
        let Some(out) = s.signing_out.take() else {
            return self.write(s).await;
        };
        let store = &*self.backend.store;
        let Some(item) = out.item.or_else(|| self.current_item(&out.user)) else {
            return self.write(s).await;
        };
        let ttl = self.backend.config.generation_ttl();
        let keep = out.keep_this;
        match user::end(store, &item, out.held.as_deref(), keep, ttl).await? {
            user::Ending::Rotated(next) => s.put(user::PACKAGE, user::GENERATION, Some(next)),
            user::Ending::Ended => {}
            // Signed out since it was read: it ends, and ends nobody else.
            user::Ending::Revoked if keep => s.purge(),
            user::Ending::Revoked => return self.write(s).await,
        }
        // The sign-out happened: a failure from here on must say so, not "nothing saved".
        let written = self.write(s).await;
        written
            .map(|(action, _)| (action, Commit::Written))
            .map_err(|e| SessionError::SignedOut(Box::new(e)))
    }

    /// The rest of the commit, once a sign-out of the user's sessions is settled.
    async fn write(&self, s: &mut SessionData) -> Result<(CookieAction, Commit), SessionError> {
        let store = &*self.backend.store;
        let metrics = &self.backend.config.metrics;
        let mut wrote = s.retired.is_some() || s.signed_out.is_some();
        // The user's item, worked out once (an HMAC for a session bound now): nothing below
        // changes the user until the write, which may rebase onto another request's.
        let user_item = self.user_item(&s.data);
        if let Some(item) = &user_item {
            let ttl = self.backend.config.generation_ttl();
            if user::lacks_generation(&s.data) {
                // Bound (or kept through a sign-out of the others) by this request.
                let generation = user::start(store, item, ttl).await?;
                s.put(user::PACKAGE, user::GENERATION, Some(generation));
                s.put(user::PACKAGE, user::ITEM, Some(item.as_str().into()));
            } else if s.renewed {
                // A renewed session starts its life afresh: the item must outlive it, as
                // at login. Gone meanwhile, the session is signed out at its next read.
                store.touch(item, ttl).await?;
            }
        }
        s.changes
            .retain(|(p, k), change| s.data.get(p, k) != change.original.as_ref());
        let dirty = s.renewed || !s.changes.is_empty();
        // A new session left empty is not stored.
        wrote |= dirty && (s.existing.is_some() || !s.data.is_empty());
        let issue = |id, data: &Record| {
            CookieAction::Issue(Issue {
                id,
                idle: self.timeouts(data).cookie_idle(),
                user: self.user_item(data),
            })
        };
        let action = match s.existing.take() {
            None if dirty && !s.data.is_empty() => issue(self.create(&s.data).await?, &s.data),
            None => CookieAction::Keep,
            Some(existing) if s.renewed => issue(self.renew(&existing, s).await?, &s.data),
            Some(existing) => {
                let timeouts = self.timeouts(&s.data);
                let age = now_unix().saturating_sub(existing.issued);
                let refresh = age >= self.backend.config.refresh_after(timeouts.idle);
                // A cookie signed by a fallback key is re-signed, and one that does not
                // carry the session's own idle timeout or its user's hint (set by this
                // request, or outside a request) is re-issued with them; like a refresh,
                // these only need the store to confirm the session is still there.
                let stale = timeouts.cookie_idle().map(|d| d.as_secs()) != existing.cookie_idle
                    || user_item != existing.cookie_user;
                let reissue = refresh || existing.by_fallback || stale;
                if dirty {
                    self.update(&existing, s).await?;
                } else if !reissue {
                    metrics.touch(Touch::Skipped);
                } else {
                    // Read with the touch (pipelined: one round trip), to re-issue the cookie
                    // only for the session as loaded: one renewed meanwhile by a login may
                    // still stand (its old id not yet removed, or a tombstone), and its
                    // cookie would overwrite the login's.
                    let id = &existing.id;
                    let (touched, now) =
                        join(store.touch(id, self.ttl(&s.data)), store.load(id)).await;
                    match touched.and_then(|touched| Ok((touched, now?))) {
                        Ok((true, Some(now))) if now.version == existing.version => {
                            metrics.touch(Touch::Done);
                        }
                        // Gone or changed since this request loaded it: another request
                        // renewed, purged or wrote it, and the cookie is that request's.
                        Ok(_) => {
                            metrics.touch(Touch::Gone);
                            return Ok((CookieAction::Keep, Commit::Unchanged));
                        }
                        // Nothing was to be written: the read-only answer stands, and the
                        // refresh waits for the next request.
                        Err(e) => {
                            tracing::warn!(error = %e, "session refresh failed; cookie kept");
                            metrics.touch(Touch::Failed);
                            return Ok((CookieAction::Keep, Commit::Unchanged));
                        }
                    }
                }
                if reissue {
                    issue(existing.id, &s.data)
                } else {
                    CookieAction::Keep
                }
            }
        };
        if let Some(old) = &s.retired {
            store.delete(old).await?;
        }
        let mut ended = s.purged;
        if let Some((old, version)) = &s.signed_out {
            // Only the request that deletes it ends it: one written since (a login racing
            // this request) is not this one's to end, and one already deleted was ended by
            // another request, whose cookie the client may hold by now.
            ended |= store.delete_if(old, *version).await? == Update::Updated;
        }
        let outcome = if wrote {
            Commit::Written
        } else {
            Commit::Unchanged
        };
        // Ended with nothing new to issue: the client drops its cookie.
        if ended && action == CookieAction::Keep {
            return Ok((CookieAction::Remove, outcome));
        }
        Ok((action, outcome))
    }

    /// The generation item of the user a session is bound to, if it is.
    fn user_item(&self, data: &Record) -> Option<SessionId> {
        let user = user::bound(data)?;
        user::item_of(data).or_else(|| self.current_item(user))
    }

    /// The id of `user`'s generation item under the current key.
    fn current_item(&self, user: &str) -> Option<SessionId> {
        self.backend.config.codec.user_items(user).next()
    }

    fn encode(&self, data: &Record) -> Result<Vec<u8>, SessionError> {
        let bytes = data.encode();
        self.backend.config.metrics.size(bytes.len());
        let limit = self.backend.config.max_size;
        if bytes.len() > limit {
            return Err(SessionError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        Ok(bytes)
    }

    /// Stores a new session under a new id, one the store accepts: never on a server
    /// known to be down, so nothing has to move when it is back.
    async fn create(&self, data: &Record) -> Result<SessionId, SessionError> {
        let bytes = self.encode(data)?;
        let ttl = self.ttl(data);
        let store = &*self.backend.store;
        let mut taken = 0;
        for _ in 0..MAX_DRAWS {
            let id = SessionId::generate().map_err(SessionError::Entropy)?;
            if !store.accepts(&id) {
                continue;
            }
            match store.create(&id, &bytes, ttl).await {
                Ok(true) => return Ok(id),
                Ok(false) => {}
                // The id's server failed and the store now turns it away: a new session
                // loses nothing by going elsewhere.
                Err(StoreError::Unavailable(e)) if !store.accepts(&id) => {
                    tracing::debug!(error = %e, "new session's server is down: another id");
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            taken += 1;
            if taken == CREATE_ATTEMPTS {
                let why = "the store reports every new session id as taken";
                return Err(StoreError::Protocol(why.into()).into());
            }
        }
        let why = "every id drawn for a new session belongs to a server that is down";
        Err(StoreError::Unavailable(why.into()).into())
    }

    /// After losing a compare-and-swap race: waits (jittered, within the retry budget),
    /// re-reads the session, and re-applies this request's changes onto what the winner
    /// wrote. Returns the version to try next. A key both changed is a conflict (first
    /// committer wins); a session gone meanwhile was ended by another request.
    async fn rebase(
        &self,
        id: &SessionId,
        s: &mut SessionData,
        backoff: &mut Backoff,
    ) -> Result<Version, SessionError> {
        if !backoff.wait().await {
            tracing::debug!(?id, "retry budget spent on concurrent commits");
            return Err(SessionError::Conflict);
        }
        self.backend.config.metrics.merge_retry();
        let Some(Stored { data, version }) = self.backend.store.load(id).await? else {
            return Err(SessionError::Ended);
        };
        let Ok(latest) = Record::decode(&data) else {
            return Err(SessionError::Ended);
        };
        s.rebase(latest)?;
        Ok(version)
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(self.backend.config.retry_budget)
    }

    /// Compare-and-swap, rebasing onto concurrent commits until it lands or the retry
    /// budget is spent.
    async fn update(&self, existing: &Existing, s: &mut SessionData) -> Result<(), SessionError> {
        let store = &*self.backend.store;
        let mut version = existing.version;
        let mut backoff = self.backoff();
        loop {
            let bytes = self.encode(&s.data)?;
            match store
                .update(&existing.id, &bytes, version, self.ttl(&s.data))
                .await?
            {
                Update::Updated => return Ok(()),
                Update::Missing => return Err(SessionError::Ended),
                Update::Conflict => {}
            }
            version = self.rebase(&existing.id, s, &mut backoff).await?;
        }
    }

    /// Moves the session to a new id: creates the new one first (a renew that fails
    /// half-way must not lose the session), then removes the old one only if it is still
    /// the version this request built on. A write committed meanwhile is rebased into the
    /// new id; a session purged meanwhile is not brought back (409, nothing created).
    async fn renew(
        &self,
        existing: &Existing,
        s: &mut SessionData,
    ) -> Result<SessionId, SessionError> {
        let store = &*self.backend.store;
        let mut version = existing.version;
        let mut backoff = self.backoff();
        loop {
            // A login starts the session's life: the absolute timeout counts from here.
            s.data.created = now_unix();
            let new = self.create(&s.data).await?;
            // If this fails the outcome is unknown (it is never resent): keeping `new`
            // costs at most an orphan that expires, removing it could lose the session.
            let outcome = store.delete_if(&existing.id, version).await?;
            if outcome == Update::Updated {
                return Ok(new);
            }
            store.delete(&new).await?;
            if outcome == Update::Missing {
                return Err(SessionError::Ended);
            }
            version = self.rebase(&existing.id, s, &mut backoff).await?;
        }
    }
}

impl Drop for UnitOfWork {
    /// Dropped with its session loaded but neither committed nor aborted: the request's
    /// future was dropped (its client went away) before the response came back. Nothing
    /// was written, so the abort hooks run, once, on this thread's `LocalSet`.
    fn drop(&mut self) {
        if self.ended.get() {
            return;
        }
        if let Some((_, hooks)) = self.take() {
            self.backend.config.metrics.commit(Commit::AbortedByHandler);
            to_completion::finish_elsewhere(hooks.run(Outcome::Aborted));
        }
    }
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
            Ok(Err(SessionData {
                unreachable: Some(id.clone()),
                ..SessionData::fresh()
            }))
        }
        read => Ok(Ok(read?)),
    }
}
