//! The smallest use: a per-visitor counter.
//!
//! `cargo run --example counter`, then `curl -c jar -b jar http://127.0.0.1:8080/` a few
//! times.

mod common;

use actix_memcache_session::{Key, Session};
use actix_web::{web, App, HttpServer};

async fn count(session: Session) -> actix_web::Result<String> {
    let counter = session.package("counter");
    let n = counter.get::<u64>("visits")?.unwrap_or(0) + 1;
    counter.insert("visits", n)?;
    Ok(format!("visits: {n}\n"))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let store = common::Store::from_env()?;
    let key = Key::generate();
    let (host, port) = common::address();
    println!("counter on http://{host}:{port}/ (try: curl -c jar -b jar http://{host}:{port}/)");
    HttpServer::new(move || {
        App::new()
            .wrap(store.middleware(key.clone()))
            .route("/", web::get().to(count))
    })
    .bind((host, port))?
    .run()
    .await
}
