//! A process whose one subscriber takes info level and less verbose ones (its own test
//! binary: tracing's most verbose level is process-wide, over every live subscriber). The
//! session's outcome still reaches the request's span, at info level, though the store
//! operations' debug spans are left unmade.

#[path = "common/capture.rs"]
mod capture;
#[path = "common/traced_app.rs"]
mod traced_app;

use std::sync::Arc;

use actix_memcache_session::MemoryStore;
use actix_web::test;
use tracing::level_filters::LevelFilter;

use capture::Capture;
use traced_app::traced_app;

#[actix_web::test]
async fn the_outcome_reaches_a_subscriber_at_info_level() {
    let mut capture = Capture::default();
    capture.max_level = Some(LevelFilter::INFO);
    let outcomes = Arc::clone(&capture.outcomes);
    let store_ops = Arc::clone(&capture.store_ops);
    // Global, once a process: the one test of this binary.
    tracing::subscriber::set_global_default(capture).unwrap();
    let app = traced_app(MemoryStore::new()).await;
    let res = test::call_service(&app, test::TestRequest::get().uri("/set").to_request()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(*outcomes.lock().unwrap(), ["written"]);
    assert!(
        store_ops.lock().unwrap().is_empty(),
        "no debug span reaches it"
    );
}
