//! `MemcacheStore::from_r2d2`: the same store semantics over an `r2d2-memcache` pool.
//!
//! The `memcache` client blocks, so every operation goes to actix's blocking thread pool.
//! It also differs by protocol: in ASCII mode `add` on an existing key reports success
//! without storing, so creation reads the key back to learn whether it won.
//!
//! The `memcache` client has no compare-and-swap delete, so [`R2d2Backend::delete_if`]
//! swaps the item for an empty one that has expired already (atomic on the version): one
//! command, so nothing removes an item added since.
//!
//! Its binary protocol does not match a reply to its request, and a pooled connection goes
//! back to the pool after an error: with a read `timeout` in the URL, a reply that comes
//! after it is read as the next command's (a refused compare-and-swap taken for a stored
//! one, another session's value). The ASCII protocol's `version` check on checkout reads
//! such a reply and drops the connection. So a pool with both is refused.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::error::BlockingError;
use r2d2_memcache::memcache::{Client, CommandError, MemcacheError, ServerError, Url};
use r2d2_memcache::r2d2::Pool;
use r2d2_memcache::MemcacheConnectionManager;

use super::protocol::{exptime, EXPIRED};
use crate::clock::now_unix;
use crate::metrics::{Operation, ServerMetrics};
use crate::store::error::StoreError;
use crate::store::session_store::{Stored, Update, Version};

#[derive(Clone)]
pub(crate) struct R2d2Backend {
    pool: Pool<MemcacheConnectionManager>,
    metrics: Arc<ServerMetrics>,
    /// Readiness checks in the pool now.
    pinging: Arc<AtomicUsize>,
    /// Why every operation is refused: a pool that can read one request's reply as
    /// another's.
    refused: Option<Arc<str>>,
}

impl fmt::Debug for R2d2Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("R2d2Backend")
            .field("state", &self.pool.state())
            .finish()
    }
}

/// Readiness checks that may be in the pool at once: a blocked check holds a blocking
/// thread until the client gives up (a minute with memcached down), so a probe every
/// second must not take a thread each; a few overlapping healthy checks are fine.
const MAX_PINGS: usize = 4;

/// Counts the readiness check out when dropped: when the blocking call returns, panics,
/// or never runs.
struct Done(Arc<AtomicUsize>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn expiration(ttl: Duration) -> u32 {
    u32::try_from(exptime(ttl, now_unix)).unwrap_or(u32::MAX)
}

/// Whether the client reported a missing key (binary protocol) rather than `false`.
fn not_found(e: &MemcacheError) -> bool {
    matches!(e, MemcacheError::CommandError(CommandError::KeyNotFound))
}

fn store_error(e: MemcacheError, size: usize) -> StoreError {
    match e {
        MemcacheError::IOError(e) => StoreError::Unavailable(Box::new(e)),
        MemcacheError::PoolError(e) => StoreError::Unavailable(Box::new(e)),
        MemcacheError::CommandError(CommandError::ValueTooLarge) => StoreError::TooLarge { size },
        MemcacheError::ServerError(ServerError::Error(s)) if s.contains("too large") => {
            StoreError::TooLarge { size }
        }
        other => StoreError::Protocol(other.to_string()),
    }
}

/// Why a pool over `urls` (as its `Debug` shows them) is refused: a server spoken to in
/// the binary protocol with a read `timeout`.
fn misreads(pool_debug: &str) -> Option<String> {
    let urls = pool_debug.split_once("urls: [")?.1.split_once(']')?.0;
    let unsafe_url = urls.split(", ").map(|u| u.trim_matches('"')).find(|u| {
        Url::parse(u).is_ok_and(|url| {
            let mut query = url.query_pairs();
            let timed = query.clone().any(|(k, _)| k == "timeout");
            timed && !query.any(|(k, v)| k == "protocol" && v == "ascii")
        })
    })?;
    Some(format!(
        "the r2d2 pool's URL {unsafe_url:?} has a read timeout in the binary protocol, where \
         a reply that comes after it is read as the next command's: add protocol=ascii to \
         the URL, or remove the timeout"
    ))
}

impl R2d2Backend {
    pub(crate) fn new(pool: Pool<MemcacheConnectionManager>) -> Self {
        let refused = misreads(&format!("{pool:?}"));
        if let Some(why) = &refused {
            tracing::error!("every session operation will fail: {why}");
        }
        Self {
            pool,
            metrics: Arc::new(ServerMetrics::pool()),
            pinging: Arc::new(AtomicUsize::new(0)),
            refused: refused.map(Arc::from),
        }
    }

    fn refusal(&self) -> Result<(), StoreError> {
        match &self.refused {
            Some(why) => Err(StoreError::Unsupported(why.to_string())),
            None => Ok(()),
        }
    }

    /// Awaits a blocking call for at most the pool's `connection_timeout`. The call itself
    /// cannot be stopped (a memcached that stops answering without closing holds it, with no
    /// read `timeout` in the URL, until it answers), but the request gets its answer.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<Result<T, StoreError>, BlockingError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.pool.connection_timeout(), call).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(StoreError::Unavailable(Box::new(e))),
            Err(_) => Err(StoreError::Unavailable(
                "no answer through the r2d2 pool within its connection_timeout".into(),
            )),
        }
    }

    /// Runs `op` (named `name`, timed) with a pooled client on actix's blocking thread
    /// pool.
    async fn run<T: Send + 'static>(
        &self,
        name: Operation,
        size: usize,
        op: impl FnOnce(&Client) -> Result<T, MemcacheError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.refusal()?;
        let pool = self.pool.clone();
        let started = self.metrics.start();
        let result = self
            .bounded(actix_web::web::block(move || {
                let client = pool
                    .get()
                    .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
                op(&client).map_err(|e| store_error(e, size))
            }))
            .await;
        let failed = result.as_ref().err().map(StoreError::error_type);
        self.metrics.operation(name, started, failed);
        self.metrics.pool_state(|| {
            let state = self.pool.state();
            (state.connections, state.idle_connections)
        });
        result
    }

    /// A read for readiness, bounded by the pool's `connection_timeout`: the blocking
    /// client can hang far longer (r2d2-memcache's inner pool waits 30 s per check), and
    /// its thread cannot be stopped, so while [`MAX_PINGS`] checks are still in the pool
    /// the next fails at once instead of taking another thread.
    pub(crate) async fn ping(&self, key: String) -> Result<(), StoreError> {
        self.refusal()?;
        if self.pinging.fetch_add(1, Ordering::AcqRel) >= MAX_PINGS {
            self.pinging.fetch_sub(1, Ordering::AcqRel);
            let why = "earlier readiness checks through the r2d2 pool have not returned";
            return Err(StoreError::Unavailable(why.into()));
        }
        let done = Done(Arc::clone(&self.pinging));
        let pool = self.pool.clone();
        let check = actix_web::web::block(move || {
            let _done = done;
            pool.get()
                .map_err(|e| StoreError::Unavailable(Box::new(e)))
                .and_then(|client| {
                    client
                        .get::<Vec<u8>>(&key)
                        .map(drop)
                        .map_err(|e| store_error(e, 0))
                })
        });
        self.bounded(check).await
    }

    pub(crate) async fn load(&self, key: String) -> Result<Option<Stored>, StoreError> {
        let found = self
            .run(Operation::Get, 0, move |c| {
                c.get::<(Vec<u8>, u32, Option<u64>)>(&key)
            })
            .await?;
        match found {
            None => Ok(None),
            Some((data, _, _)) if data.is_empty() => Ok(None),
            Some((data, _, Some(cas))) => Ok(Some(Stored {
                data,
                version: Version::new(cas),
            })),
            Some((_, _, None)) => Err(StoreError::Protocol("memcached gave no CAS token".into())),
        }
    }

    pub(crate) async fn create(
        &self,
        key: String,
        data: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let data = data.to_vec();
        self.run(Operation::Add, data.len(), move |c| {
            match c.add(&key, data.as_slice(), expiration(ttl)) {
                Ok(()) => Ok(c.get::<Vec<u8>>(&key)?.as_deref() == Some(data.as_slice())),
                Err(MemcacheError::CommandError(CommandError::KeyExists)) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    pub(crate) async fn update(
        &self,
        key: String,
        data: &[u8],
        version: Version,
        ttl: Duration,
    ) -> Result<Update, StoreError> {
        let data = data.to_vec();
        self.run(Operation::Set, data.len(), move |c| {
            compare_and_swap(c, &key, &data, version, expiration(ttl))
        })
        .await
    }

    /// Removes the session if it is still at `version`.
    pub(crate) async fn delete_if(
        &self,
        key: String,
        version: Version,
    ) -> Result<Update, StoreError> {
        self.run(Operation::Delete, 0, move |c| {
            compare_and_swap(c, &key, b"", version, EXPIRED)
        })
        .await
    }

    pub(crate) async fn touch(&self, key: String, ttl: Duration) -> Result<bool, StoreError> {
        self.run(Operation::Touch, 0, move |c| {
            match c.touch(&key, expiration(ttl)) {
                Err(e) if not_found(&e) => Ok(false),
                other => other,
            }
        })
        .await
    }

    pub(crate) async fn delete(&self, key: String) -> Result<Update, StoreError> {
        self.run(Operation::Delete, 0, move |c| {
            delete(c, &key).map(|()| Update::Updated)
        })
        .await
    }
}

fn delete(c: &Client, key: &str) -> Result<(), MemcacheError> {
    match c.delete(key) {
        Err(e) if not_found(&e) => Ok(()),
        other => other.map(drop),
    }
}

/// Writes `data`, to expire at `expiration`, if the item is still at `version`; an empty
/// item counts as missing.
fn compare_and_swap(
    c: &Client,
    key: &str,
    data: &[u8],
    version: Version,
    expiration: u32,
) -> Result<Update, MemcacheError> {
    match c.cas(key, data, expiration, version.get()) {
        Ok(true) => Ok(Update::Updated),
        // `false` means stale or missing; a read tells which.
        Ok(false) | Err(MemcacheError::CommandError(CommandError::KeyExists)) => {
            Ok(match c.get::<Vec<u8>>(key)? {
                Some(found) if !found.is_empty() => Update::Conflict,
                _ => Update::Missing,
            })
        }
        Err(e) if not_found(&e) => Ok(Update::Missing),
        Err(e) => Err(e),
    }
}
