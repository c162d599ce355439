//! The `Session` extractor and its package-scoped handles.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::rc::Rc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;

use super::package::Package;
use super::savepoint::Savepoint;
use crate::error::SessionError;
use crate::id::SessionId;
use crate::in_box::made_in_box;
use crate::unit_of_work::{Outcome, SessionStatus, Transaction, UnitOfWork};

/// The current request's session: session -> package -> key -> JSON value.
///
/// Extracting it loads the session from the store (once per request); everything after
/// that works on an in-memory copy, and the middleware writes the changes when the
/// response is a success. Clones share the same session. A clone kept past the response
/// (in a spawned task, a WebSocket, a streaming body) still reads, but its changes are
/// never written: the unit of work ended with the response.
///
/// ```
/// use actix_memcache_session::Session;
///
/// async fn add_to_cart(session: Session) -> actix_web::Result<String> {
///     let cart = session.package("shop.cart");
///     let n: u32 = cart.get("items")?.unwrap_or(0);
///     cart.insert("items", n + 1)?;
///     Ok(format!("{}", n + 1))
/// }
/// ```
#[derive(Clone)]
pub struct Session {
    pub(crate) tx: Rc<RefCell<Transaction>>,
}

impl Session {
    pub(crate) fn new(tx: Rc<RefCell<Transaction>>) -> Self {
        Self { tx }
    }

    /// The id the session is stored under, to record which sessions a user has (and reach
    /// them later through [`Sessions`](crate::Sessions)). `None` for a session not stored
    /// yet (new in this request, or purged by it): its id is drawn when it is first
    /// written. After [`renew`](Self::renew) it is still the old id until the commit.
    ///
    /// In an [`after_commit`](Self::after_commit) hook it is the id the commit stored the
    /// session under: a new session's, or a renewed one's new id (a login can record it
    /// there), and `None` for a purged session; for a session this request did not write
    /// (a read), the id it was loaded under, which another request may have ended
    /// meanwhile (a commit that writes nothing does not ask the store). In an
    /// [`after_abort`](Self::after_abort) hook it is the id the session was loaded under
    /// (`None` for a new one, or one this request purged): nothing was stored, or, after a
    /// 503 whose write went unanswered, nothing is known to be.
    ///
    /// ```
    /// use actix_memcache_session::Session;
    ///
    /// async fn login(session: Session) -> actix_web::Result<&'static str> {
    ///     session.bind_user("42")?;
    ///     let stored = session.clone();
    ///     session.after_commit(move || async move {
    ///         let id = stored.id(); // the renewed session's new id
    ///         // ... record `id` for the user's "your sessions" page ...
    ///         Ok::<_, std::convert::Infallible>(())
    ///     });
    ///     Ok("welcome")
    /// }
    /// ```
    pub fn id(&self) -> Option<SessionId> {
        let tx = self.tx.borrow();
        tx.stored.clone().or_else(|| tx.data.id().cloned())
    }

    /// The entries of one package: an application's or library's own namespace, so that
    /// code sharing a session cannot clobber each other's keys. Names are checked when
    /// the handle is used; names starting with `actix-memcache-session.` are this crate's
    /// own (the user bound, the lifetime, flash messages) and refused with
    /// [`SessionError::InvalidName`].
    pub fn package(&self, name: impl AsRef<str>) -> Package {
        Package::new(Rc::clone(&self.tx), name.as_ref().into())
    }

    /// One of this crate's own packages, which [`package`](Self::package) refuses.
    pub(crate) fn own_package(&self, name: &str) -> Package {
        Package::own(Rc::clone(&self.tx), name)
    }

    /// Moves the session's data to a new id and retires the old one; call it when the
    /// user's privileges change (at login) so that an id seen before cannot be used after.
    pub fn renew(&self) {
        self.tx.borrow_mut().data.renew();
    }

    /// Deletes the session and removes the cookie (at logout). Data written after this in
    /// the same request goes into a new session.
    pub fn purge(&self) {
        self.tx.borrow_mut().data.purge();
    }

    /// What this request has done to the session so far.
    pub fn status(&self) -> SessionStatus {
        self.tx.borrow().status()
    }

    /// Ends this request's unit of work without writing anything, whatever the response
    /// status: no data, no renew or purge, no touch and no cookie change. The handler can
    /// still answer 200. [`status`](Self::status) then reports
    /// [`SessionStatus::Aborted`], and the [`after_abort`](Self::after_abort) hooks run.
    /// It cannot be undone, not even by a savepoint.
    pub fn abort(&self) {
        self.tx.borrow_mut().abort();
    }

    /// Marks the session as it is now; see [`Savepoint`].
    pub fn savepoint(&self) -> Savepoint {
        Savepoint::new(Rc::clone(&self.tx))
    }

    /// Registers `hook` to run once this request's changes are stored (or, with nothing
    /// to write, once the request ended in a committing status).
    ///
    /// Hooks run in the order registered, after the store answered and before the
    /// response leaves. They cannot change the outcome: a hook that returns an error or
    /// panics is logged at level error, the others still run, and the client gets the
    /// response the handler made, with its cookie, since the change is stored. When the
    /// request aborts instead (error status, handler error or panic, [`abort`](Self::abort),
    /// or a commit that fails, whatever its status) the hook never runs. A hook reads the
    /// session as committed (a clone of the handle taken into it: its data, `user()`,
    /// `id()`); changes it makes to the session are not written. No time limit is put on a hook: one that never
    /// ends holds the response, as a handler would, so give one that waits on the network
    /// its own (`tokio::time::timeout`).
    ///
    /// ```
    /// use actix_memcache_session::Session;
    ///
    /// async fn change_email(session: Session) -> actix_web::Result<&'static str> {
    ///     session.package("account").insert("email", "new@example.com")?;
    ///     session.after_commit(|| async {
    ///         // send_mail("your email changed").await?
    ///         Ok::<_, std::io::Error>(())
    ///     });
    ///     Ok("changed")
    /// }
    /// ```
    pub fn after_commit<F, Fut, E>(&self, hook: F)
    where
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = Result<(), E>> + 'static,
        E: Into<Box<dyn std::error::Error>>,
    {
        let mut tx = self.tx.borrow_mut();
        if !tx.is_ended() {
            tx.hooks.add(Outcome::Committed, hook);
        }
    }

    /// Registers `hook` to run if this request's unit of work aborts: an error status, a
    /// handler error or panic, [`abort`](Self::abort), or a commit that fails (whatever its
    /// status). It runs before the response leaves, like
    /// [`after_commit`](Self::after_commit) hooks, and the same way cannot change it.
    pub fn after_abort<F, Fut, E>(&self, hook: F)
    where
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = Result<(), E>> + 'static,
        E: Into<Box<dyn std::error::Error>>,
    {
        let mut tx = self.tx.borrow_mut();
        if !tx.is_ended() {
            tx.hooks.add(Outcome::Aborted, hook);
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl FromRequest for Session {
    type Error = SessionError;
    type Future = LocalBoxFuture<'static, Result<Self, SessionError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let uow = match unit_of_work(req) {
            Ok(uow) => uow,
            Err(e) => return Box::pin(async { Err(e) }),
        };
        if let Some(tx) = uow.loaded() {
            return Box::pin(async move {
                uow.handed_back().await;
                Ok(Session { tx })
            });
        }
        uow.verify_cookies(req);
        made_in_box(move || async move {
            Ok(Session {
                tx: uow.load().await?,
            })
        })
    }
}

/// The unit of work that serves the scope of the request's handler (the middleware put the
/// request's first in it).
pub(crate) fn unit_of_work(req: &HttpRequest) -> Result<Rc<UnitOfWork>, SessionError> {
    let uow = req
        .extensions()
        .get::<Rc<UnitOfWork>>()
        .map(UnitOfWork::serving);
    uow.ok_or(SessionError::MissingMiddleware)
}
