//! The middleware: opens a unit of work per request and decides, from the response,
//! whether it commits or aborts.

use std::panic::{resume_unwind, AssertUnwindSafe};
use std::rc::Rc;

use actix_service::{Service, Transform};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use futures_util::future::{ready, LocalBoxFuture, Ready};
use futures_util::FutureExt;

use crate::config::Backend;
use crate::metrics::Commit;
use crate::session::Sessions;
use crate::to_completion::ToCompletion;
use crate::unit_of_work::{CookieAction, UnitOfWork};

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
/// [`commit_on`](crate::MemcacheSessionBuilder::commit_on) (1xx-3xx by default) and writes
/// nothing otherwise, nor when the handler fails (whatever the status of its error),
/// panics or calls [`Session::abort`](crate::Session::abort). A failed commit replaces the
/// response with the error's (409, 413 or 503), as a response, so middleware wrapped
/// outside (logging, headers, CORS) still sees it; `Set-Cookie` is only sent after the
/// store accepted.
#[derive(Clone)]
pub struct MemcacheSession {
    backend: Rc<Backend>,
}

// `new` and `builder` are with the builder, in `builder.rs`.
impl MemcacheSession {
    /// The container over this middleware's store and settings: sessions by id, outside
    /// a request.
    pub fn sessions(&self) -> Sessions {
        Sessions::new(Rc::clone(&self.backend))
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
    type Response = ServiceResponse<EitherBody<B>>;
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
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Error>>;

    actix_service::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        // Cheap and store-free: the session loads only if a handler extracts it.
        let uow = Rc::new(UnitOfWork::new(Rc::clone(&self.backend)));
        req.extensions_mut().insert(Rc::clone(&uow));
        let response = self.service.call(req);
        Box::pin(async move {
            // An inner service's error or a panic aborts, and goes on its way once the
            // abort hooks ran.
            let res = match AssertUnwindSafe(response).catch_unwind().await {
                Ok(Ok(res)) => res,
                Ok(Err(e)) => {
                    abort(&uow, Commit::AbortedByHandler).await;
                    return Err(e);
                }
                Err(panic) => {
                    abort(&uow, Commit::AbortedByHandler).await;
                    resume_unwind(panic);
                }
            };
            if !uow.is_loaded() {
                // Nothing loaded: nothing to commit or abort.
                return Ok(res.map_into_left_body());
            }
            // A handler's `Err` arrives as a response carrying the error, with the error's
            // own status, which may be below 400 (a 303 "log in first"): it aborts all the
            // same.
            if res.response().error().is_some() {
                abort(&uow, Commit::AbortedByHandler).await;
                return Ok(res.map_into_left_body());
            }
            if !uow.config().commits_on(res.status()) {
                abort(&uow, Commit::AbortedByStatus).await;
                return Ok(res.map_into_left_body());
            }
            let finish = match uow.finish_quietly() {
                Some(action) => Ok(action),
                // Boxed apart, like `abort`, and run to its end even if the client goes
                // away meanwhile: a change stored must run its hooks.
                None => {
                    let uow = Rc::clone(&uow);
                    ToCompletion::new(async move { uow.finish().await }).await
                }
            };
            let cookie = match finish {
                Ok(CookieAction::Keep) => return Ok(res.map_into_left_body()),
                Ok(CookieAction::Issue(issue)) => uow.config().cookie(Some(&issue)),
                Ok(CookieAction::Remove) => uow.config().cookie(None),
                Err(e) => return Ok(res.error_response(e).map_into_right_body()),
            };
            let mut res = res.map_into_left_body();
            // Name, path and domain were checked at build time and the value is base64url,
            // so this does not fail; if it ever did, the response still goes out.
            if let Err(e) = res.response_mut().add_cookie(&cookie) {
                tracing::error!(error = %e, "cannot set the session cookie");
            }
            Ok(res)
        })
    }
}

/// Ends `uow` writing nothing, and runs its abort hooks to their end even if the client
/// goes away meanwhile. Boxed, like the commit: this middleware's own future, boxed for
/// every request, stays small (glibc's malloc takes a slower path from 1 KiB), and the
/// larger ones are allocated only by requests that loaded their session.
async fn abort(uow: &Rc<UnitOfWork>, why: Commit) {
    let uow = Rc::clone(uow);
    ToCompletion::new(async move { uow.abort(why).await }).await;
}
