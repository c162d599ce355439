//! Helpers for testing an application's handlers (feature `testing`): a session without a
//! request, a stored session made ready with a signed cookie to send, and the stored
//! session behind a cookie or a response, to look at afterwards.

use std::cell::RefCell;
use std::rc::Rc;

use actix_web::cookie::Cookie;
use actix_web::dev::ServiceResponse;

use super::container::{OpenSession, Sessions};
use super::extractor::Session;
use crate::error::SessionError;
use crate::unit_of_work::{CookieAction, SessionData, Transaction, UnitOfWork};

impl Session {
    /// A new, empty session outside any request or store, for unit tests of handler logic
    /// that takes a `Session`: call the logic with it, then read what it did through the
    /// same API (its packages, [`status`](Self::status), [`user`](Self::user)). Nothing
    /// is ever written; hooks never run.
    ///
    /// ```
    /// use actix_memcache_session::{Session, SessionStatus};
    ///
    /// fn add_to_cart(session: &Session) -> Result<u32, actix_memcache_session::SessionError> {
    ///     let cart = session.package("shop.cart");
    ///     let n = cart.get::<u32>("items")?.unwrap_or(0) + 1;
    ///     cart.insert("items", n)?;
    ///     Ok(n)
    /// }
    ///
    /// let session = Session::standalone();
    /// assert_eq!(add_to_cart(&session).unwrap(), 1);
    /// assert_eq!(session.package("shop.cart").get::<u32>("items").unwrap(), Some(1));
    /// assert_eq!(session.status(), SessionStatus::Changed);
    /// ```
    pub fn standalone() -> Self {
        Self::new(Rc::new(RefCell::new(
            Transaction::new(SessionData::fresh()),
        )))
    }
}

impl Sessions {
    /// Stores a new session, filled by `fill` as a handler would fill it (packages,
    /// [`bind_user`](Session::bind_user), [`set_timeouts`](Session::set_timeouts)), and
    /// returns the signed cookie that names it, for this middleware's settings and key: add
    /// it to an `actix_web::test::TestRequest` to call a handler as that session's client.
    /// It is committed as a request's would be (a bound session is listed among its user's
    /// sessions). `None` when `fill` left the session empty: nothing is stored then.
    ///
    /// ```
    /// # #[actix_web::main] async fn main() {
    /// use actix_memcache_session::{Key, MemcacheSession, MemoryStore, Session};
    /// use actix_web::{test, web, App};
    ///
    /// async fn cart(session: Session) -> actix_web::Result<String> {
    ///     let items: u32 = session.package("shop.cart").get("items")?.unwrap_or(0);
    ///     session.package("shop.cart").insert("items", items + 1)?;
    ///     Ok(format!("{} for {:?}", items, session.user()?))
    /// }
    ///
    /// let middleware = MemcacheSession::builder(MemoryStore::new(), Key::generate()).build();
    /// let sessions = middleware.sessions();
    /// let cookie = sessions
    ///     .seed(|s| {
    ///         s.package("shop.cart").insert("items", 2)?;
    ///         s.bind_user("ada")
    ///     })
    ///     .await
    ///     .unwrap()
    ///     .expect("not empty");
    /// let app = test::init_service(App::new().wrap(middleware).route("/", web::get().to(cart))).await;
    /// let req = test::TestRequest::get().uri("/").cookie(cookie.clone()).to_request();
    /// let body = test::call_and_read_body(&app, req).await;
    /// assert_eq!(body, "2 for Some(\"ada\")");
    /// // What the request stored:
    /// let stored = sessions.open_cookie(&cookie).await.unwrap().expect("live");
    /// assert_eq!(stored.package("shop.cart").get::<u32>("items").unwrap(), Some(3));
    /// # }
    /// ```
    ///
    /// # Errors
    /// What `fill` returns, or what a commit would (the store failing, a value too large).
    pub async fn seed(
        &self,
        fill: impl FnOnce(&Session) -> Result<(), SessionError>,
    ) -> Result<Option<Cookie<'static>>, SessionError> {
        let uow = UnitOfWork::new(Rc::clone(&self.backend));
        fill(&Session::new(uow.fresh().await))?;
        Ok(match uow.finish().await? {
            CookieAction::Issue(issue) => Some(self.backend.config.cookie(Some(&issue))),
            CookieAction::Keep | CookieAction::Remove => None,
        })
    }

    /// Opens the live session a cookie of this middleware names (as a request with only
    /// that cookie would see it: verified, unexpired, its user still signed in), to look
    /// at what a test's requests stored. `None` for a cookie that is not valid, or names
    /// no live session.
    ///
    /// # Errors
    /// The store failing.
    pub async fn open_cookie(
        &self,
        cookie: &Cookie<'_>,
    ) -> Result<Option<OpenSession>, SessionError> {
        let config = &self.backend.config;
        if cookie.name() != config.codec.name() {
            return Ok(None);
        }
        match config.verified(cookie.value()) {
            Some(verified) => self.open(&verified.id).await,
            None => Ok(None),
        }
    }

    /// Opens the session a response's `Set-Cookie` names, as
    /// [`open_cookie`](Self::open_cookie) does. `None` when the response set no cookie of
    /// this middleware (a request that left its cookie as it was: open the cookie it sent)
    /// or one that removes it.
    ///
    /// # Errors
    /// The store failing.
    pub async fn open_response<B>(
        &self,
        response: &ServiceResponse<B>,
    ) -> Result<Option<OpenSession>, SessionError> {
        let name = self.backend.config.codec.name();
        let set = response.response().cookies().find(|c| c.name() == name);
        match set {
            Some(cookie) => self.open_cookie(&cookie).await,
            None => Ok(None),
        }
    }
}
