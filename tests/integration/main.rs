//! One integration test binary (one link step) holding every store's run of the shared
//! suites, plus tests that need no store.

#[cfg(feature = "actix-session")]
mod actix_session;
mod app;
mod app_testing;
#[path = "../common/capture.rs"]
mod capture;
mod devices;
mod disconnect;
mod fake;
mod faults;
mod fleet;
mod fuzz;
mod history;
mod http;
mod memcache;
mod memcached;
mod memory;
mod nutcracker;
mod observability;
mod proxy;
mod support;
#[path = "../common/traced_app.rs"]
mod traced_app;
mod versions;

use actix_web::{test, web, App};

/// Extracting `Session` or `Sessions` without the middleware is a clear 500, not a panic.
#[actix_web::test]
async fn session_without_middleware_is_a_clear_500() {
    let app = test::init_service(
        App::new()
            .route(
                "/session",
                web::get().to(|s: actix_memcache_session::Session| async move {
                    format!("{:?}", s.status())
                }),
            )
            .route(
                "/sessions",
                web::get()
                    .to(|s: actix_memcache_session::Sessions| async move { format!("{s:?}") }),
            ),
    )
    .await;
    for path in ["/session", "/sessions"] {
        let req = test::TestRequest::get().uri(path).to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.status(), 500, "{path}");
        let body = test::read_body(res).await;
        assert!(
            String::from_utf8_lossy(&body).contains("middleware is not installed"),
            "{path}"
        );
    }
}

/// A store that cannot be reached gives 503 with `Retry-After` where the session is used,
/// and nothing changes for routes that do not use it.
#[actix_web::test]
async fn store_down_is_503_only_where_the_session_is_used() {
    let key = actix_memcache_session::Key::generate();
    let up = support::CountingStore::new(actix_memcache_session::MemoryStore::new());
    let up = app::TestApp::with(up, key.clone(), |b| b).await;
    let cookie = up.get("/set/p/k/1", None).await.cookie();

    let down = support::CountingStore::new(support::DownStore);
    let app = app::TestApp::with(down, key, |b| b).await;
    for (path, cookie) in [
        ("/get/p/k", Some(&cookie)),
        ("/set/p/k/2", None),
        // The first extractor's error swallowed: the second fails too, not a fresh session.
        ("/maybe-get/p/k", Some(&cookie)),
    ] {
        let reply = app.get(path, cookie).await;
        assert_eq!(reply.status, 503, "{path}: {reply:?}");
        assert_eq!(reply.retry_after.as_deref(), Some("1"));
        assert_eq!(reply.body, "session store unavailable");
        assert!(reply.cookie.is_none());
        assert!(reply.outer, "the outer middleware saw the 503");
    }
    assert_eq!(app.get("/plain", Some(&cookie)).await.status, 200);
}

/// An `ErrorHandlers` handler that answers a handler's 401 with a new response (a redirect
/// to the login page) drops the handler's error. Wrapped outside the session middleware
/// (after it, in `.wrap` order: where the docs put it) the session still sees the error
/// and writes nothing; wrapped inside, the session sees a plain 303 and commits, as
/// `commit_on`'s rustdoc warns.
#[actix_web::test]
async fn a_handler_error_rebuilt_by_error_handlers_aborts_with_the_session_inside_them() {
    use actix_memcache_session::{Key, MemcacheSession, MemoryStore, Session};
    use actix_web::dev::ServiceResponse;
    use actix_web::http::{header, StatusCode};
    use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
    use actix_web::HttpResponse;

    fn to_login<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
        let (req, _) = res.into_parts();
        let redirect = HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/login"))
            .finish();
        let res = ServiceResponse::new(req, redirect).map_into_right_body();
        Ok(ErrorHandlerResponse::Response(res))
    }
    async fn handler(s: Session) -> actix_web::Result<HttpResponse> {
        s.package("p").insert("k", 1)?;
        Err(actix_web::error::ErrorUnauthorized("log in first"))
    }
    let request = || test::TestRequest::get().uri("/").to_request();

    let store = MemoryStore::new();
    let session = MemcacheSession::new(store.clone(), Key::generate());
    let inside = test::init_service(
        App::new()
            .wrap(session)
            .wrap(ErrorHandlers::new().handler(StatusCode::UNAUTHORIZED, to_login))
            .route("/", web::get().to(handler)),
    )
    .await;
    let res = test::call_service(&inside, request()).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(res.response().cookies().next().is_none(), "nothing written");

    let session = MemcacheSession::new(store, Key::generate());
    let outside = test::init_service(
        App::new()
            .wrap(ErrorHandlers::new().handler(StatusCode::UNAUTHORIZED, to_login))
            .wrap(session)
            .route("/", web::get().to(handler)),
    )
    .await;
    let res = test::call_service(&outside, request()).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(res.response().cookies().next().is_some(), "committed");
}
