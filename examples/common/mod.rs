//! What the examples share: picking the store, and serving an app with the middleware.

use actix_memcache_session::{Key, MemcacheSession, MemcacheStore, MemoryStore};
use actix_web::{web, App, HttpResponse, HttpServer};

/// The store the example runs on.
#[derive(Clone)]
pub enum Store {
    Memcache(MemcacheStore),
    Memory(MemoryStore),
}

impl Store {
    /// memcached when `MEMCACHE_URL` is set (`memcache://127.0.0.1:11211`), the
    /// in-process store otherwise; says which.
    pub fn from_env() -> std::io::Result<Self> {
        match std::env::var("MEMCACHE_URL") {
            Ok(url) => {
                let store = MemcacheStore::new(&url).map_err(std::io::Error::other)?;
                println!("session store: memcached at {url}");
                Ok(Store::Memcache(store))
            }
            Err(_) => {
                println!(
                    "session store: in-process MemoryStore (MEMCACHE_URL is not set; \
                     sessions end when this process does)"
                );
                Ok(Store::Memory(MemoryStore::new()))
            }
        }
    }

    /// The middleware for one worker. The cookie is not `Secure` because the example
    /// serves plain HTTP on localhost; keep the default (`true`) behind HTTPS.
    pub fn middleware(&self, key: Key) -> MemcacheSession {
        match self {
            Store::Memcache(store) => MemcacheSession::builder(store.clone(), key),
            Store::Memory(store) => MemcacheSession::builder(store.clone(), key),
        }
        .cookie_secure(false)
        .build()
    }
}

/// Readiness, for a load balancer: 503 while memcached does not answer, so it stops sending
/// requests that would get 503 anyway.
async fn ready(store: web::Data<Store>) -> HttpResponse {
    let answer = match store.get_ref() {
        Store::Memcache(store) => store.ping().await,
        Store::Memory(store) => store.ping().await,
    };
    match answer {
        Ok(()) => HttpResponse::Ok().body("ready\n"),
        Err(e) => {
            eprintln!(
                "not ready: {e}: {}",
                std::error::Error::source(&e).map_or(String::new(), |s| s.to_string())
            );
            HttpResponse::ServiceUnavailable().body("session store unavailable\n")
        }
    }
}

/// Serves `routes` behind the session middleware on `127.0.0.1:$PORT` (8080 by default),
/// with `GET /ready` for readiness.
pub async fn serve(name: &str, routes: fn(&mut web::ServiceConfig)) -> std::io::Result<()> {
    let store = Store::from_env()?;
    // A fresh key per run: sessions end with the process. Load a stored secret with
    // `Key::try_from(&secret[..])` to keep them across restarts, and to share it among the
    // instances behind one load balancer (each refuses cookies the others signed).
    let key = Key::generate();
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    println!("{name} on http://127.0.0.1:{port}/");
    HttpServer::new(move || {
        App::new()
            .wrap(store.middleware(key.clone()))
            .app_data(web::Data::new(store.clone()))
            .route("/ready", web::get().to(ready))
            .configure(routes)
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
