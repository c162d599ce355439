//! The middleware: opens a unit of work per request and decides, from the response,
//! whether it commits or aborts.

use std::rc::Rc;

use actix_service::{Service, Transform};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use futures_util::future::{ready, LocalBoxFuture, Ready};

use crate::config::MemcacheSessionBuilder;
use crate::cookie::Key;
use crate::error::{causes, SessionError};
use crate::store::SessionStore;
use crate::unit_of_work::{Backend, CookieAction, UnitOfWork};

/// Session middleware: wrap an `App` (or scope) with it and extract
/// [`Session`](crate::Session) in handlers.
///
/// ```
/// use actix_memcache_session::{Key, MemcacheSession, MemoryStore, Session};
/// use actix_web::{web, App};
///
/// let store = MemoryStore::new();
/// let key = Key::generate();
/// let app = App::new()
///     .wrap(MemcacheSession::new(store.clone(), key.clone()))
///     .route("/", web::get().to(|s: Session| async move {
///         s.package("demo").insert("visited", true)?;
///         Ok::<_, actix_web::Error>("hi")
///     }));
/// ```
///
/// For each request it commits the session's changes when the response status passes
/// [`commit_on`](MemcacheSessionBuilder::commit_on) (1xx-3xx by default) and writes nothing
/// otherwise, nor when the handler fails or panics. A failed commit replaces the response
/// with the error's (409, 413 or 503); `Set-Cookie` is only sent after the store accepted.
#[derive(Clone)]
pub struct MemcacheSession {
    backend: Rc<Backend>,
}

impl MemcacheSession {
    /// The middleware over `store`, signing cookies with `key`, with every default.
    pub fn new<S: SessionStore>(store: S, key: Key) -> Self {
        Self::builder(store, key).build()
    }

    /// A builder to change the defaults.
    pub fn builder<S: SessionStore>(store: S, key: Key) -> MemcacheSessionBuilder {
        MemcacheSessionBuilder::new(store, key)
    }

    pub(crate) fn from_backend(backend: Rc<Backend>) -> Self {
        Self { backend }
    }
}

impl<S, B> Transform<S, ServiceRequest> for MemcacheSession
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = MemcacheSessionMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(MemcacheSessionMiddleware {
            service,
            backend: Rc::clone(&self.backend),
        }))
    }
}

/// The service [`MemcacheSession`] wraps around an app; not used directly.
pub struct MemcacheSessionMiddleware<S> {
    service: S,
    backend: Rc<Backend>,
}

impl<S, B> Service<ServiceRequest> for MemcacheSessionMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<ServiceResponse<B>, Error>>;

    actix_service::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        // Cheap and store-free: the session loads only if a handler extracts it.
        let uow = Rc::new(UnitOfWork::new(Rc::clone(&self.backend)));
        req.extensions_mut().insert(Rc::clone(&uow));
        let response = self.service.call(req);
        Box::pin(async move {
            // An inner service's error or a panic leaves here early, a handler's `Err`
            // arrives as an error response that `commit_on` refuses: nothing is written.
            let mut res = response.await?;
            if uow.loaded().is_none() || !uow.config().commits_on(res.status()) {
                return Ok(res);
            }
            let cookie = match uow.commit().await {
                Ok(CookieAction::Keep) => return Ok(res),
                Ok(CookieAction::Issue(id)) => uow.config().cookie(Some(&id)),
                Ok(CookieAction::Remove) => uow.config().cookie(None),
                Err(e) => return Err(logged(e).into()),
            };
            // Name, path and domain were checked at build time and the value is base64url,
            // so this does not fail; if it ever did, the response still goes out.
            if let Err(e) = res.response_mut().add_cookie(&cookie) {
                tracing::error!(error = %e, "cannot set the session cookie");
            }
            Ok(res)
        })
    }
}

/// Logs a failed commit at a level that matches who must act on it.
fn logged(e: SessionError) -> SessionError {
    match &e {
        SessionError::Conflict | SessionError::Ended => {
            tracing::info!(error = %e, "session commit refused");
        }
        _ => tracing::error!(error = %e, cause = %causes(&e), "session commit failed"),
    }
    e
}
