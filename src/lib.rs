//! Session middleware for actix-web 4 that keeps each session's data in memcached,
//! namespaced by package, and writes it through a per-request unit of work.
//!
//! ```no_run
//! use actix_memcache_session::{Key, MemcacheSession, MemoryStore, Session};
//! use actix_web::{web, App, HttpServer};
//!
//! async fn add_to_cart(session: Session) -> actix_web::Result<String> {
//!     let cart = session.package("shop.cart");
//!     let n: u32 = cart.get("items")?.unwrap_or(0);
//!     cart.insert("items", n + 1)?;
//!     Ok(format!("{}", n + 1))
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let store = MemoryStore::new();
//!     let key = Key::generate();
//!     HttpServer::new(move || {
//!         App::new()
//!             .wrap(MemcacheSession::new(store.clone(), key.clone()))
//!             .route("/cart", web::post().to(add_to_cart))
//!     })
//!     .bind(("127.0.0.1", 8080))?
//!     .run()
//!     .await
//! }
//! ```
//!
//! How a request goes:
//! 1. [`MemcacheSession`] opens a unit of work; nothing touches the store yet.
//! 2. A handler extracting [`Session`] loads the session once (a signed cookie names it;
//!    a stale, tampered or unknown cookie gives a fresh session).
//! 3. [`Package`] handles read and change an in-memory copy; the unit of work records
//!    which (package, key) entries changed.
//! 4. A response whose status is below 400 (by default: see `commit_on`) commits the
//!    changes with compare-and-swap, merging with concurrent commits to other keys and
//!    answering 409 when another request changed the same key. An error response, handler
//!    error or panic writes nothing.
//!
//! Handlers can take part in the unit of work: [`TypedPackage`]s, [`Savepoint`]s,
//! [`Session::abort`], hooks run after the commit or abort ([`Session::after_commit`]),
//! and flash messages consumed only when the request commits ([`Session::send_flash`]).
//!
//! Stores: [`MemcacheStore`] (memcached 1.5.22 or later, or a proxy, through this crate's
//! pipelined client), [`MemoryStore`] (in-process, for quick starts and tests), or your own
//! [`SessionStore`].
//!
//! Features:
//! - `actix-session`: [`MemcacheStore`] and [`MemoryStore`] as actix-session 0.11's
//!   `SessionStore`, for `actix_session::SessionMiddleware` (and actix-identity).
//! - `r2d2`: `MemcacheStore::from_r2d2` over an existing `r2d2-memcache` pool (pulls in
//!   OpenSSL through the `memcache` crate).
//! - `testing`: helpers for an application's tests (`Session::standalone`,
//!   `Sessions::seed`, `Sessions::open_cookie`, `Sessions::open_response`), and the store
//!   acceptance suite, `testing` and `store_acceptance_suite!`.
//! - `metrics`: metrics through the `metrics` facade (memcached operations by
//!   OpenTelemetry's database conventions, session loads, commits, retries, touches and
//!   sizes); `docs/observability.md` lists them. Without it, the unit of work's
//!   outcome still goes on the request's span (field `session.outcome`).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backoff;
mod clock;
mod config;
mod cookie;
mod error;
#[cfg(test)]
mod fixed_random;
mod id;
mod in_box;
mod metrics;
mod middleware;
mod session;
mod store;
mod to_completion;
mod traced;
mod unit_of_work;

pub use config::OverLimit;
pub use cookie::{Key, KeyError};
pub use error::SessionError;
pub use id::SessionId;
pub use middleware::{
    MemcacheSession, MemcacheSessionBuilder, MemcacheSessionMiddleware, SessionResponse,
};
pub use session::{
    FlashMessage, Level, OpenSession, Package, Savepoint, Session, SessionHandle, Sessions,
    TypedPackage, UserSession, MAX_LABEL_BYTES,
};
pub use store::{
    Distribution, Ketama, MemcacheServer, MemcacheStore, MemcacheStoreBuilder, MemoryStore,
    Protocol, ServerPing, SessionStore, StoreError, Stored, Update, Version, WhenDown,
};
pub use unit_of_work::SessionStatus;

#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "__bench")]
#[doc(hidden)]
pub mod bench;

/// The README's Rust examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The guides' Rust examples (`docs/*.md`), compiled as doc tests so they stay true.
#[cfg(doctest)]
pub mod guides {
    #[doc = include_str!("../docs/unit-of-work.md")]
    pub struct UnitOfWork;
    #[doc = include_str!("../docs/users.md")]
    pub struct Users;
    #[doc = include_str!("../docs/stores.md")]
    pub struct Stores;
    #[doc = include_str!("../docs/servers.md")]
    pub struct Servers;
    #[doc = include_str!("../docs/observability.md")]
    pub struct Observability;
}
