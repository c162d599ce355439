//! The session metrics on a Prometheus `/metrics` route (feature `metrics`).
//!
//! `cargo run --example metrics --features metrics`, then
//! `curl -c jar -b jar http://127.0.0.1:8080/` a few times and
//! `curl http://127.0.0.1:8080/metrics`.

mod common;
#[path = "common/prometheus.rs"]
mod prometheus;

use std::sync::OnceLock;
use std::time::Duration;

use actix_memcache_session::Session;
use actix_web::{web, HttpResponse};
use metrics_exporter_prometheus::PrometheusHandle;

/// The recorder's handle, for the `/metrics` route.
static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

async fn count(session: Session) -> actix_web::Result<String> {
    let counter = session.package("counter");
    let n = counter.get::<u64>("visits")?.unwrap_or(0) + 1;
    counter.insert("visits", n)?;
    Ok(format!("visits: {n}\n"))
}

async fn metrics() -> HttpResponse {
    match PROMETHEUS.get() {
        Some(handle) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(handle.render()),
        None => HttpResponse::ServiceUnavailable().finish(),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    // Before the store and middleware are built: they take their metric handles then.
    let handle = prometheus::install().map_err(std::io::Error::other)?;
    // The exporter drains its histograms on upkeep; a scrape does too, but not every
    // deployment scrapes often.
    let upkeep = handle.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(5));
        upkeep.run_upkeep();
    });
    PROMETHEUS
        .set(handle)
        .map_err(|_| std::io::Error::other("recorder installed twice"))?;
    common::serve("metrics", |app| {
        app.route("/", web::get().to(count))
            .route("/metrics", web::get().to(metrics));
    })
    .await
}
