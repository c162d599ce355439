//! What a readiness check reports for each server of a store.

use crate::store::error::StoreError;

/// One server's answer to [`MemcacheStore::ping_servers`](crate::MemcacheStore::ping_servers),
/// for a dashboard: which servers answer, and why the others do not.
#[derive(Debug)]
#[non_exhaustive]
pub struct ServerPing {
    /// The server as the ring names it (`host` on port 11211, else `host:port`), or
    /// `"r2d2 pool"` through
    /// [`from_r2d2`](crate::MemcacheStore::from_r2d2).
    pub server: String,
    /// `Ok` if it answered a harmless read in time; otherwise why not:
    /// [`StoreError::Unavailable`] for no answer or a server marked down (not asked again
    /// before its retry interval is over), [`StoreError::Unsupported`] for a server this
    /// client cannot use as configured.
    pub result: Result<(), StoreError>,
}
