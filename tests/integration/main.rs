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
