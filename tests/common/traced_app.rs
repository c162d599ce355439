//! The app the tracing tests run, shared by the test binaries: the session middleware
//! inside an info-level request span that declares `session.outcome` (as
//! `tracing-actix-web`'s root span does), `/set` writing a key and `/fail` failing after
//! writing one.

use actix_http::Request;
use actix_memcache_session::{Key, MemcacheSession, Session, SessionStore};
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::{test, web, App, Error};
use tracing::Instrument;

/// The app over `store`, started.
pub async fn traced_app(
    store: impl SessionStore,
) -> impl Service<Request, Response = ServiceResponse<impl MessageBody>, Error = Error> {
    test::init_service(
        App::new()
            .wrap(MemcacheSession::new(store, Key::generate()))
            .wrap_fn(|req, srv| {
                let span = tracing::info_span!("request", session.outcome = tracing::field::Empty);
                srv.call(req).instrument(span)
            })
            .route(
                "/set",
                web::get().to(|s: Session| async move {
                    s.package("p").insert("k", 1)?;
                    Ok::<_, Error>("ok")
                }),
            )
            .route(
                "/fail",
                web::get().to(|s: Session| async move {
                    s.package("p").insert("k", 2)?;
                    Err::<String, _>(actix_web::error::ErrorBadRequest("no"))
                }),
            ),
    )
    .await
}
