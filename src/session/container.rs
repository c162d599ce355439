//! The container: sessions by id, outside a request, for admin pages, background jobs and
//! tests. The same store, settings, compare-and-swap and per-key merge as a request; no
//! cookie is involved.

use std::fmt;
use std::ops::Deref;
use std::rc::Rc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::{ready, Ready};

use super::extractor::{unit_of_work, Session};
use crate::config::Backend;
use crate::error::SessionError;
use crate::id::SessionId;
use crate::to_completion::ToCompletion;
use crate::unit_of_work::UnitOfWork;

/// Every session of one middleware's store, by id.
///
/// Get it from the middleware ([`MemcacheSession::sessions`](crate::MemcacheSession::sessions))
/// or extract it in a handler. The ids come from [`Session::id`], recorded by the app
/// (which sessions a user has); this handle never reads an id from a request.
///
/// ```
/// use actix_memcache_session::{SessionId, Sessions};
///
/// /// An admin action: leave a note in another user's session.
/// async fn note(sessions: Sessions, id: SessionId) -> actix_web::Result<&'static str> {
///     let Some(session) = sessions.open(&id).await? else {
///         return Ok("that session has ended");
///     };
///     session.package("admin").insert("note", "please re-read the terms")?;
///     session.commit().await?; // merged with the user's own concurrent changes
///     Ok("noted")
/// }
/// ```
#[derive(Clone)]
pub struct Sessions {
    pub(crate) backend: Rc<Backend>,
}

impl Sessions {
    pub(crate) fn new(backend: Rc<Backend>) -> Self {
        Self { backend }
    }

    /// Opens the live session `id`, or `None` if it does not exist, has expired or cannot
    /// be read. Change it through the returned handle as in a request, then
    /// [`commit`](OpenSession::commit).
    ///
    /// # Errors
    /// The store failing (also with [`WhenDown::StartFresh`](crate::WhenDown): a session
    /// is never replaced by a fresh one here).
    pub async fn open(&self, id: &SessionId) -> Result<Option<OpenSession>, SessionError> {
        let uow = UnitOfWork::new(Rc::clone(&self.backend));
        let Some(tx) = uow.open(id).await? else {
            return Ok(None);
        };
        Ok(Some(OpenSession {
            session: Session::new(tx),
            uow,
        }))
    }

    /// Deletes session `id`: its client's next request gets a fresh session. Deleting a
    /// session that does not exist is not an error; so a session its client renewed
    /// meanwhile (a login moves it to a new id) is not ended by a purge of the old id: to
    /// end a user's session for sure, use [`Sessions::sign_out_session`], whose handle
    /// follows renewals.
    ///
    /// # Errors
    /// The store failing.
    pub async fn purge(&self, id: &SessionId) -> Result<(), SessionError> {
        self.backend.store.delete(id).await?;
        Ok(())
    }
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl FromRequest for Sessions {
    type Error = SessionError;
    type Future = Ready<Result<Self, SessionError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(unit_of_work(req).map(|uow| Self::new(uow.backend())))
    }
}

/// A session opened by id with [`Sessions::open`]: a [`Session`] (it dereferences to one)
/// whose changes are written by [`commit`](Self::commit).
///
/// Dropping it without committing writes nothing and runs its abort hooks, if it has any
/// (on the thread's tokio `LocalSet`; outside one they are skipped, with an error logged). `renew()` moves the
/// session to an id no cookie names, so its client's next request starts fresh; a session
/// bound to a user keeps its line in the user's list under that id, though no device holds
/// it, and it counts against `max_sessions_per_user` until its idle timeout: to end a
/// user's session, use [`Sessions::sign_out_session`] or `purge()` instead.
pub struct OpenSession {
    session: Session,
    uow: UnitOfWork,
}

impl OpenSession {
    /// Writes the changes with compare-and-swap, merging with concurrent commits to other
    /// keys, then runs the session's hooks; a session that did not change writes nothing
    /// (neither a touch nor a bound session's "last seen" stamp: opening one is no use of
    /// it, however long it is held open). `abort()` first: nothing written, the abort hooks
    /// run, and `Ok`.
    ///
    /// # Errors
    /// As a request's commit: [`SessionError::Conflict`] when a concurrent commit changed
    /// the same key, [`SessionError::Ended`] when the session was purged meanwhile, or
    /// signed out meanwhile and asked to sign out its user's other sessions, one of them,
    /// or everywhere (unless its user's item, and every other key's, is gone already, with
    /// no login begun since: see
    /// [`Session::sign_out_everywhere`]), or renewed while bound. Anything else asked of a
    /// session signed out meanwhile is written, and goes with it at its next read: a
    /// change, a binding to its user again (it stays signed out); a binding to another user is a
    /// login of its own, [`SessionError::TooLarge`], [`SessionError::TooManySessions`] for a login
    /// over the limit, [`SessionError::Entropy`], or the store failing; nothing is written
    /// then. [`SessionError::SignedOut`] says that a sign-out it asked for happened and the
    /// rest failed.
    ///
    /// Dropped before it completes (a caller's timeout or `select!`), the commit and its
    /// hooks run on to their end on the thread's tokio `LocalSet`, as a request's do when
    /// its client goes away: a change stored still runs its after-commit hooks, once.
    pub async fn commit(self) -> Result<(), SessionError> {
        let Self { session, uow } = self;
        // The handle goes now: the commit takes what it changed from the unit of work.
        drop(session);
        ToCompletion::new(move || async move { uow.finish().await })
            .await
            .map(drop)
    }
}

impl Deref for OpenSession {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

impl fmt::Debug for OpenSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenSession")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    thread_local! {
        /// Panics on this thread, caught or not.
        static PANICS: Cell<usize> = const { Cell::new(0) };
    }

    /// A session opened and dropped without an abort hook (a commit hook only), on a
    /// runtime without a `LocalSet` (a plain tokio test, as the README's testing section
    /// has), hands nothing to one: no panic, caught or not. (Its drop spawned the empty
    /// abort hooks, and tokio panicked.)
    #[cfg(feature = "testing")]
    #[test]
    fn a_session_dropped_without_abort_hooks_outside_a_local_set_spawns_nothing() {
        use std::sync::Arc;

        use crate::{Key, MemcacheSession, MemoryStore};

        let previous: Arc<dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync> =
            Arc::from(std::panic::take_hook());
        let chained = Arc::clone(&previous);
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|p| p.set(p.get() + 1));
            chained(info);
        }));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let sessions = MemcacheSession::new(MemoryStore::new(), Key::generate()).sessions();
            let seeded = sessions.seed(|s| s.package("p").insert("k", 1)).await;
            let cookie = seeded.unwrap().expect("a cookie");
            let opened = sessions
                .open_cookie(&cookie)
                .await
                .unwrap()
                .expect("stored");
            assert_eq!(opened.package("p").get::<u32>("k").unwrap(), Some(1));
            opened.after_commit(|| async { Ok::<_, std::io::Error>(()) });
            drop(opened);
        });
        std::panic::set_hook(Box::new(move |info| previous(info)));
        assert_eq!(PANICS.with(Cell::get), 0);
    }
}
