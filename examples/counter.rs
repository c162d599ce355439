//! The smallest use: a per-visitor counter.
//!
//! `cargo run --example counter`, then `curl -c jar -b jar http://127.0.0.1:8080/` a few
//! times.

mod common;

use actix_memcache_session::Session;
use actix_web::web;

async fn count(session: Session) -> actix_web::Result<String> {
    let counter = session.package("counter");
    let n = counter.get::<u64>("visits")?.unwrap_or(0) + 1;
    counter.insert("visits", n)?;
    Ok(format!("visits: {n}\n"))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    common::serve("counter", |app| {
        app.route("/", web::get().to(count));
    })
    .await
}
