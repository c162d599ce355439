//! The load-test server: four routes over one session implementation per process.
//!
//! `bench-server <bare|do-nothing|floor|memcache|memcache-bound|memcache-metrics|memcache-metrics-atomic|memcache-3|memcache-text|memcache-proxy|memcache-r2d2|memcache-exp|actix-redis|actix-cookie> <port>
//! [store-url]`; `memcache-exp` is this crate's middleware over the `memcache` crate's
//! async client (`exp_store`), to compare the two clients; `memcache-bound` is `memcache`
//! with each session bound to one of 100 users at login, so every read also checks the
//! user's generation (sign out everywhere). `memcache-metrics` (feature `metrics`) is
//! `memcache` with the crate's metrics and a Prometheus recorder, rendered every 5 s as a
//! scrape would; `memcache-metrics-atomic` the same with the least a recorder can do
//! (`atomic_recorder`). `floor` (module `floor`) is the least a memcached session can cost: one
//! round trip per read, two per write, no signing, no JSON; `do-nothing` is `bare` inside a
//! middleware that does nothing but what every session middleware does (`do_nothing`).
//!
//! - `GET /login` starts a session: `counter = 0` and a 200-byte string (`SESSION_BYTES`
//!   bytes if set); sets the cookie.
//! - `GET /incr` reads `counter`, adds 1, stores it: a write on every request.
//! - `GET /read` reads `counter`: no write.
//! - `GET /plain` never touches the session.
//! - `GET /write?w=<n>` (this crate only) adds 1 to the session's key `w<n>`: concurrent
//!   writers of one session, each on its own key.
//!
//! `MEMCACHE_CONNECTIONS` sets `pool_max_size` for `memcache` (default: the store's).
//! `STAGES=<file>` has `floor` and `memcache*` time each request's stages into it when the
//! server stops (`stages`).
//!
//! `/read` and `/incr` answer 401 without a live session, so a lost session shows up as an
//! error in wrk's count of non-2xx responses. `bare` has no session at all: its routes
//! answer the same bodies without one, as the floor the others are measured against.

#[cfg(feature = "metrics")]
mod atomic_recorder;
mod do_nothing;
mod exp_store;
mod floor;
#[cfg(feature = "metrics")]
#[path = "../../examples/common/prometheus.rs"]
mod prometheus;
mod stages;

use std::io;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{web, App, HttpResponse, HttpServer};

/// The ~200-byte string each session carries besides its counter.
const BLOB: &str = "The quick brown fox jumps over the lazy dog, and a session carries a little \
                    more than a counter: a user name, a locale, a cart summary. This string \
                    stands in for all of that, 200 bytes.";

/// The string each session carries besides its counter: `SESSION_BYTES` bytes of [`BLOB`]
/// repeated (default: [`BLOB`] once).
fn blob() -> &'static str {
    static BLOB_OF_SIZE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BLOB_OF_SIZE.get_or_init(|| {
        let size = std::env::var("SESSION_BYTES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(BLOB.len());
        BLOB.chars().cycle().take(size).collect()
    })
}

/// Two workers, one per core, for every server alike, unless `SERVER_WORKERS` says
/// otherwise (one worker shares nothing between cores).
fn workers() -> usize {
    std::env::var("SERVER_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2)
}

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
        p.insert("blob", super::blob())?;
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

    pub async fn write(s: Session, request: actix_web::HttpRequest) -> Result<HttpResponse> {
        let p = s.package("bench");
        if !p.contains_key("counter")? {
            return Ok(super::unauthorized());
        }
        let key = request.query_string().replace('=', "");
        let n = p.get::<u64>(&key)?.unwrap_or(0) + 1;
        p.insert(&key, n)?;
        Ok(HttpResponse::Ok().body(n.to_string()))
    }
}

/// This crate's middleware, each session bound to a user at login: ten sessions a user.
mod bound {
    use std::sync::atomic::{AtomicU64, Ordering};

    use actix_memcache_session::Session;
    use actix_web::{HttpResponse, Result};

    pub use super::ours::{incr, read};

    const USERS: u64 = 100;
    static LOGINS: AtomicU64 = AtomicU64::new(0);

    pub async fn login(s: Session) -> Result<HttpResponse> {
        let user = LOGINS.fetch_add(1, Ordering::Relaxed) % USERS;
        s.bind_user(&format!("user-{user}"))?;
        super::ours::login(s).await
    }
}

/// actix-session, the baseline.
mod theirs {
    use actix_session::Session;
    use actix_web::{HttpResponse, Result};

    pub async fn login(s: Session) -> Result<HttpResponse> {
        s.insert("counter", 0u64)?;
        s.insert("blob", super::blob())?;
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
        "usage: bench-server <bare|do-nothing|floor|memcache|memcache-bound|memcache-metrics|memcache-metrics-atomic|memcache-3|memcache-text|memcache-proxy|memcache-r2d2|memcache-exp|actix-redis|actix-cookie> \
         <port> [url]",
    )
}

/// Serves `app` on loopback with the same worker count for every server.
async fn serve<F, T, B>(port: u16, app: F) -> io::Result<()>
where
    F: Fn() -> App<T> + Send + Clone + 'static,
    T: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
{
    HttpServer::new(app)
        .workers(workers())
        .bind(("127.0.0.1", port))?
        .run()
        .await
}

/// This crate's middleware over `store`, with `routes` and `/write` (concurrent writers of
/// one session; actix-session has no compare-and-swap, so it would only overwrite).
/// With `STAGES` set, each stage of a request is timed (`stages`).
async fn serve_ours<S>(port: u16, store: S, routes: fn(&mut web::ServiceConfig)) -> io::Result<()>
where
    S: actix_memcache_session::SessionStore + Clone + Send,
{
    let key = actix_memcache_session::Key::generate();
    if stages::enabled() {
        let store = stages::Timed(store);
        serve(port, move || {
            ours_app(store.clone(), key.clone(), routes).wrap_fn(stages::timed)
        })
        .await?;
        return stages::write();
    }
    serve(port, move || ours_app(store.clone(), key.clone(), routes)).await
}

fn ours_app<S>(
    store: S,
    key: actix_memcache_session::Key,
    routes: fn(&mut web::ServiceConfig),
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
>
where
    S: actix_memcache_session::SessionStore + 'static,
{
    let session = actix_memcache_session::MemcacheSession::builder(store, key)
        .cookie_secure(false)
        .build();
    App::new()
        .wrap(session)
        .configure(routes)
        .route("/write", web::get().to(ours::write))
}

/// actix-session's middleware over the store `store` makes (its cookie store is not
/// `Clone`).
async fn serve_actix_session<S, F>(port: u16, store: F) -> io::Result<()>
where
    S: actix_session::storage::SessionStore + 'static,
    F: Fn() -> S + Send + Clone + 'static,
{
    use actix_session::SessionMiddleware;
    let key = actix_web::cookie::Key::generate();
    serve(port, move || {
        let session = SessionMiddleware::builder(store(), key.clone())
            .cookie_secure(false)
            .build();
        App::new().wrap(session).configure(routes!(theirs))
    })
    .await
}

/// `MemcacheStore::new`, with `MEMCACHE_CONNECTIONS` as its `pool_max_size` if set.
fn native_store(url: String) -> io::Result<actix_memcache_session::MemcacheStore> {
    let mut builder = actix_memcache_session::MemcacheStore::builder(url);
    if let Some(n) = std::env::var("MEMCACHE_CONNECTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        builder = builder.pool_max_size(n);
    }
    builder.build().map_err(io::Error::other)
}

/// `MemcacheStore` speaking the text protocol (to memcached, or to a proxy).
fn text_store(url: String) -> io::Result<actix_memcache_session::MemcacheStore> {
    actix_memcache_session::MemcacheStore::builder(url)
        .protocol(actix_memcache_session::Protocol::Text)
        .build()
        .map_err(io::Error::other)
}

/// `MemcacheStore::from_r2d2` over a pool as a user would configure it.
fn r2d2_store(url: String) -> io::Result<actix_memcache_session::MemcacheStore> {
    let manager = r2d2_memcache::MemcacheConnectionManager::new(url.as_str());
    let pool = r2d2_memcache::r2d2::Pool::builder()
        .max_size(16)
        .build(manager)
        .map_err(io::Error::other)?;
    Ok(actix_memcache_session::MemcacheStore::from_r2d2(pool))
}

/// Installs the Prometheus recorder of `examples/metrics.rs` (before the store and
/// middleware take their handles), rendered every 5 s as a scrape would.
#[cfg(feature = "metrics")]
fn install_prometheus() -> io::Result<()> {
    let handle = prometheus::install().map_err(io::Error::other)?;
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(5));
        handle.run_upkeep();
        std::hint::black_box(handle.render());
    });
    Ok(())
}

#[actix_web::main]
async fn main() -> io::Result<()> {
    use actix_session::storage::{CookieSessionStore, RedisSessionStore};
    let args: Vec<String> = std::env::args().collect();
    let (Some(kind), Some(port)) = (args.get(1), args.get(2).and_then(|p| p.parse::<u16>().ok()))
    else {
        return Err(usage());
    };
    let url = args.get(3).cloned().unwrap_or_default();
    match kind.as_str() {
        "bare" => serve(port, || App::new().configure(bare_routes)).await,
        "do-nothing" => {
            serve(port, || {
                App::new()
                    .wrap(do_nothing::DoNothing)
                    .configure(bare_routes)
            })
            .await
        }
        "floor" => {
            let addr = floor::Addr(url.trim_start_matches("memcache://").to_owned());
            let app = move || {
                App::new()
                    .app_data(web::Data::new(addr.clone()))
                    .configure(floor::routes)
            };
            if stages::enabled() {
                serve(port, move || app().wrap_fn(stages::timed)).await?;
                return stages::write();
            }
            serve(port, app).await
        }
        "memcache" | "memcache-3" => serve_ours(port, native_store(url)?, routes!(ours)).await,
        "memcache-bound" => serve_ours(port, native_store(url)?, routes!(bound)).await,
        #[cfg(feature = "metrics")]
        "memcache-metrics" => {
            install_prometheus()?;
            serve_ours(port, native_store(url)?, routes!(ours)).await
        }
        #[cfg(feature = "metrics")]
        "memcache-metrics-atomic" => {
            atomic_recorder::install()?;
            serve_ours(port, native_store(url)?, routes!(ours)).await
        }
        "memcache-text" | "memcache-proxy" => {
            serve_ours(port, text_store(url)?, routes!(ours)).await
        }
        "memcache-r2d2" => serve_ours(port, r2d2_store(url)?, routes!(ours)).await,
        "memcache-exp" => {
            let addr = url.trim_start_matches("memcache://");
            serve_ours(port, exp_store::connect(addr).await?, routes!(ours)).await
        }
        "actix-redis" => {
            let store = RedisSessionStore::new(url)
                .await
                .map_err(io::Error::other)?;
            serve_actix_session(port, move || store.clone()).await
        }
        "actix-cookie" => serve_actix_session(port, CookieSessionStore::default).await,
        _ => Err(usage()),
    }
}
