//! The load-test server: four routes over one session implementation per process.
//!
//! `bench-server <bare|memcache|memcache-r2d2|actix-redis|actix-cookie> <port> [store-url]`
//!
//! - `GET /login` starts a session: `counter = 0` and a 200-byte string; sets the cookie.
//! - `GET /incr` reads `counter`, adds 1, stores it: a write on every request.
//! - `GET /read` reads `counter`: no write.
//! - `GET /plain` never touches the session.
//!
//! `MEMCACHE_CONNECTIONS` sets `pool_max_size` for `memcache` (default: the store's).
//!
//! `/read` and `/incr` answer 401 without a live session, so a lost session shows up as an
//! error in wrk's count of non-2xx responses. `bare` has no session at all: its routes
//! answer the same bodies without one, as the floor the others are measured against.

use std::io;

use actix_web::{web, App, HttpResponse, HttpServer};

/// The ~200-byte string each session carries besides its counter.
const BLOB: &str = "The quick brown fox jumps over the lazy dog, and a session carries a little \
                    more than a counter: a user name, a locale, a cart summary. This string \
                    stands in for all of that, 200 bytes.";

/// Two workers, one per core, for every server alike.
const WORKERS: usize = 2;

fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized().body("no session")
}

/// This crate's middleware.
mod ours {
    use actix_memcache_session::Session;
    use actix_web::{HttpResponse, Result};

    pub async fn login(s: Session) -> Result<HttpResponse> {
        let p = s.package("bench");
        p.insert("counter", 0u64)?;
        p.insert("blob", super::BLOB)?;
        Ok(HttpResponse::Ok().body("0"))
    }

    pub async fn incr(s: Session) -> Result<HttpResponse> {
        let p = s.package("bench");
        let Some(n) = p.get::<u64>("counter")? else {
            return Ok(super::unauthorized());
        };
        p.insert("counter", n + 1)?;
        Ok(HttpResponse::Ok().body((n + 1).to_string()))
    }

    pub async fn read(s: Session) -> Result<HttpResponse> {
        match s.package("bench").get::<u64>("counter")? {
            Some(n) => Ok(HttpResponse::Ok().body(n.to_string())),
            None => Ok(super::unauthorized()),
        }
    }
}

/// actix-session, the baseline.
mod theirs {
    use actix_session::Session;
    use actix_web::{HttpResponse, Result};

    pub async fn login(s: Session) -> Result<HttpResponse> {
        s.insert("counter", 0u64)?;
        s.insert("blob", super::BLOB)?;
        Ok(HttpResponse::Ok().body("0"))
    }

    pub async fn incr(s: Session) -> Result<HttpResponse> {
        let Some(n) = s.get::<u64>("counter")? else {
            return Ok(super::unauthorized());
        };
        s.insert("counter", n + 1)?;
        Ok(HttpResponse::Ok().body((n + 1).to_string()))
    }

    pub async fn read(s: Session) -> Result<HttpResponse> {
        match s.get::<u64>("counter")? {
            Some(n) => Ok(HttpResponse::Ok().body(n.to_string())),
            None => Ok(super::unauthorized()),
        }
    }
}

/// Session-free handlers with the same answers.
mod bare {
    use actix_web::HttpResponse;

    pub async fn counter() -> HttpResponse {
        HttpResponse::Ok().body("0")
    }
}

async fn plain() -> &'static str {
    "plain"
}

macro_rules! routes {
    ($m:ident) => {
        |app: &mut web::ServiceConfig| {
            app.route("/login", web::get().to($m::login))
                .route("/incr", web::get().to($m::incr))
                .route("/read", web::get().to($m::read))
                .route("/plain", web::get().to(plain));
        }
    };
}

fn bare_routes(app: &mut web::ServiceConfig) {
    app.route("/login", web::get().to(bare::counter))
        .route("/incr", web::get().to(bare::counter))
        .route("/read", web::get().to(bare::counter))
        .route("/plain", web::get().to(plain));
}

fn usage() -> io::Error {
    io::Error::other(
        "usage: bench-server <bare|memcache|memcache-r2d2|actix-redis|actix-cookie> <port> [url]",
    )
}

#[actix_web::main]
async fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(kind), Some(port)) = (args.get(1), args.get(2).and_then(|p| p.parse::<u16>().ok()))
    else {
        return Err(usage());
    };
    let url = args.get(3).cloned().unwrap_or_default();
    let addr = ("127.0.0.1", port);
    match kind.as_str() {
        "bare" => {
            HttpServer::new(|| App::new().configure(bare_routes))
                .workers(WORKERS)
                .bind(addr)?
                .run()
                .await
        }
        "memcache" | "memcache-r2d2" => {
            use actix_memcache_session::{Key, MemcacheSession, MemcacheStore};
            let store = if kind == "memcache" {
                let mut builder = MemcacheStore::builder(url);
                if let Some(n) = std::env::var("MEMCACHE_CONNECTIONS")
                    .ok()
                    .and_then(|n| n.parse().ok())
                {
                    builder = builder.pool_max_size(n);
                }
                builder.build().map_err(io::Error::other)?
            } else {
                let manager = r2d2_memcache::MemcacheConnectionManager::new(url.as_str());
                let pool = r2d2_memcache::r2d2::Pool::builder()
                    .max_size(16)
                    .build(manager)
                    .map_err(io::Error::other)?;
                MemcacheStore::from_r2d2(pool)
            };
            let key = Key::generate();
            HttpServer::new(move || {
                let session = MemcacheSession::builder(store.clone(), key.clone())
                    .cookie_secure(false)
                    .build();
                App::new().wrap(session).configure(routes!(ours))
            })
            .workers(WORKERS)
            .bind(addr)?
            .run()
            .await
        }
        "actix-redis" | "actix-cookie" => {
            use actix_session::storage::{CookieSessionStore, RedisSessionStore};
            use actix_session::SessionMiddleware;
            use actix_web::cookie::Key;
            let key = Key::generate();
            if kind == "actix-redis" {
                let store = RedisSessionStore::new(url)
                    .await
                    .map_err(io::Error::other)?;
                HttpServer::new(move || {
                    let session = SessionMiddleware::builder(store.clone(), key.clone())
                        .cookie_secure(false)
                        .build();
                    App::new().wrap(session).configure(routes!(theirs))
                })
                .workers(WORKERS)
                .bind(addr)?
                .run()
                .await
            } else {
                HttpServer::new(move || {
                    let session =
                        SessionMiddleware::builder(CookieSessionStore::default(), key.clone())
                            .cookie_secure(false)
                            .build();
                    App::new().wrap(session).configure(routes!(theirs))
                })
                .workers(WORKERS)
                .bind(addr)?
                .run()
                .await
            }
        }
        _ => Err(usage()),
    }
}
