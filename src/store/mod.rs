//! Where session data lives between requests.
//!
//! A store keeps opaque bytes under a [`SessionId`](crate::SessionId) with a time to live,
//! and hands out a [`Version`] with each read so that writes can be compare-and-swap. It
//! knows nothing of HTTP, cookies or the JSON inside: the unit of work owns those.
//!
//! - [`MemcacheStore`]: memcached, the store this crate is named for.
//! - [`MemoryStore`]: in-process, for quick starts and tests.
//!
//! With the feature `actix-session`, [`MemcacheStore`] is also an
//! `actix_session::storage::SessionStore`, for `actix_session::SessionMiddleware`.
//!
//! Every store must pass the same acceptance suite: see `testing` (feature `testing`).

#[cfg(feature = "actix-session")]
mod actix_session;
mod erased;
// By file, so that the crate's error (which wraps it) does not depend on every store.
pub(crate) mod error;
mod memcache;
mod memory;
mod new_session;
mod session_store;

pub(crate) use erased::ErasedStore;
pub(crate) use error::NotSent;
pub use error::StoreError;
pub use memcache::{
    Distribution, Ketama, MemcacheServer, MemcacheStore, MemcacheStoreBuilder, Protocol, ServerPing,
};
pub use memory::MemoryStore;
pub(crate) use new_session::{create_new, NotCreated};
pub use session_store::{SessionStore, Stored, Update, Version, WhenDown};
