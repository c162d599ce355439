//! The memcached store: a small client of our own (why: see docs/stores.md, "Choosing the
//! client") that speaks the meta or the text protocol, whichever each server proves on
//! connect, with pipelined connections per worker thread, and optionally an `r2d2-memcache`
//! pool users already run.

mod builder;
mod connection;
mod fleet;
mod handshake;
mod health;
mod key;
mod mailbox;
mod meta;
mod pool;
mod protocol;
#[cfg(feature = "r2d2")]
mod r2d2;
mod readiness;
mod ring;
mod store;
mod text;

pub use builder::MemcacheStoreBuilder;
pub use protocol::Protocol;
pub use readiness::ServerPing;
pub use ring::{Distribution, Ketama, MemcacheServer};
pub use store::MemcacheStore;
