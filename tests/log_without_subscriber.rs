//! A process in which no `tracing` subscriber is ever set (its own test binary: setting
//! one, even scoped, turns tracing's `log` output off for the rest of the process).
//! tracing's `log` feature, which actix-http and actix-codec turn on, then writes spans to
//! a `log` logger:
//! a store operation's span must still reach one at debug level, though the crate leaves
//! the span unmade when nothing can read it.

#[path = "common/traced_app.rs"]
mod traced_app;

use std::sync::Mutex;

use actix_memcache_session::MemoryStore;
use actix_web::test;

use traced_app::traced_app;

/// Every record's target and message.
static RECORDS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let entry = (record.target().to_owned(), record.args().to_string());
        RECORDS.lock().unwrap().push(entry);
    }

    fn flush(&self) {}
}

/// The messages of the store operations' spans logged so far.
fn store_spans() -> Vec<String> {
    let records = RECORDS.lock().unwrap();
    let spans = records
        .iter()
        .filter(|(_, message)| message.starts_with("session.store;"));
    spans.map(|(_, message)| message.clone()).collect()
}

#[actix_web::test]
async fn store_spans_reach_a_logger_at_debug_level_and_not_above_it() {
    log::set_logger(&Logger).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    let app = traced_app(MemoryStore::new()).await;
    let res = test::call_service(&app, test::TestRequest::get().uri("/set").to_request()).await;
    assert_eq!(res.status(), 200);
    let spans = store_spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert!(spans[0].contains("op=\"create\""), "{spans:?}");

    log::set_max_level(log::LevelFilter::Info);
    let res = test::call_service(&app, test::TestRequest::get().uri("/set").to_request()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(store_spans().len(), 1, "none logged above debug level");
}
