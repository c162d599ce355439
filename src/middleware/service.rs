//! The middleware: opens a unit of work per request and decides, from the response,
//! whether it commits or aborts.

use std::cell::Cell;
use std::rc::Rc;

use actix_service::{Service, Transform};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use futures_util::future::{ready, Ready};

use crate::config::Backend;
use crate::session::Sessions;
use crate::unit_of_work::UnitOfWork;

use super::response::SessionResponse;

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
/// response with the error's (409 a conflict, 413 too large, 503 the store down, 403 a
/// login a refusing session limit turned away, 500 no randomness for a new id or a store
/// setting that cannot work: the error table in `docs/semantics.md`), as a response, so
/// middleware wrapped outside (logging, headers, CORS) still sees it; `Set-Cookie` is only
/// sent after the store accepted.
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
            warned_nested: Cell::new(false),
        }))
    }
}

/// The service [`MemcacheSession`] wraps around an app; not used directly.
pub struct MemcacheSessionMiddleware<S> {
    service: S,
    backend: Rc<Backend>,
    /// Whether this worker logged that this instance is nested in another.
    warned_nested: Cell<bool>,
}

impl<S, B> Service<ServiceRequest> for MemcacheSessionMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = SessionResponse<S::Future, B>;

    actix_service::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        // Cheap and store-free: the session loads only if a handler extracts it.
        let uow = Rc::new(UnitOfWork::new(Rc::clone(&self.backend)));
        let mut extensions = req.extensions_mut();
        let Some(outermost) = extensions.get::<Rc<UnitOfWork>>().map(Rc::clone) else {
            extensions.insert(Rc::clone(&uow));
            drop(extensions);
            return SessionResponse::new(self.service.call(req), uow, None);
        };
        drop(extensions);
        let serving = match outermost.named(self.backend.config.codec.name()) {
            // Inside another instance of the same cookie name (a scope wrapped again, here or
            // around one of another name): the outer one owns the request's session. Two
            // would each load and commit their own copy, one losing what the other wrote;
            // this one's stays unloaded, and its scope is served the outer one's.
            Some(same) => {
                if !self.warned_nested.replace(true) {
                    tracing::error!(
                        "MemcacheSession wrapped inside another of the same cookie name: the \
                         outer one serves the session"
                    );
                }
                same
            }
            // One of another cookie name serves a session of its own, for its scope.
            None => {
                uow.set_nested();
                Rc::clone(&uow)
            }
        };
        let level = outermost.enter(serving);
        SessionResponse::new(self.service.call(req), uow, Some(level))
    }
}
