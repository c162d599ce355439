//! The session metrics on a Prometheus `/metrics` route (feature `metrics`).
//!
//! `cargo run --example metrics --features metrics`, then
//! `curl -c jar -b jar http://127.0.0.1:8080/` a few times and
//! `curl http://127.0.0.1:8080/metrics`.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use actix_memcache_session::Session;
use actix_web::{web, HttpResponse};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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
    let handle = PrometheusBuilder::new()
        // Histograms as buckets (aggregatable across instances) rather than summaries.
        .set_buckets_for_metric(
            Matcher::Full("db.client.operation.duration".into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ],
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("session.size".into()),
                &[256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0],
            )
        })
        .and_then(|b| b.install_recorder())
        .map_err(std::io::Error::other)?;
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
