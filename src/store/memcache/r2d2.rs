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
//! such a reply and drops the connection. So a pool with both is refused, and so is one
//! over several servers (see `why_refused`).

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::error::BlockingError;
use r2d2_memcache::memcache::{Client, CommandError, MemcacheError, ServerError, Url};
use r2d2_memcache::r2d2::Pool;
use r2d2_memcache::MemcacheConnectionManager;

use super::protocol::{exptime, refused_as_too_large, short, without_login, EXPIRED};
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
    /// Why every operation is refused: a pool over several servers, or one that can read
    /// one request's reply as another's.
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

fn expiration(ttl: Duration) -> Result<u32, StoreError> {
    Ok(u32::try_from(exptime(ttl, now_unix)?).unwrap_or(u32::MAX))
}

/// Whether the client reported a missing key (binary protocol) rather than `false`.
fn not_found(e: &MemcacheError) -> bool {
    matches!(e, MemcacheError::CommandError(CommandError::KeyNotFound))
}

fn store_error(e: MemcacheError, size: usize) -> StoreError {
    match e {
        MemcacheError::IOError(e) => StoreError::Unavailable(Box::new(e)),
        MemcacheError::PoolError(e) => StoreError::Unavailable(Box::new(e)),
        MemcacheError::CommandError(CommandError::ValueTooLarge) => refused_as_too_large(size),
        MemcacheError::ServerError(ServerError::Error(s)) if s.contains("too large") => {
            refused_as_too_large(size)
        }
        // The client quotes the line it could not read, which may be a stored value read
        // out of step (a session's data, a token): no more of it than the native client
        // logs.
        MemcacheError::ServerError(ServerError::BadResponse(line)) => {
            StoreError::Protocol(format!("unexpected memcached reply {:?}", short(&line)))
        }
        other => StoreError::Protocol(other.to_string()),
    }
}

/// The URLs of r2d2-memcache's manager as the pool's `Debug` shows them
/// (`MemcacheConnectionManager { urls: ["...", ...] }`, each a quoted `Debug` string), or
/// `None` when it does not show them that way.
fn manager_urls(pool_debug: &str) -> Option<Vec<String>> {
    let mut rest = pool_debug
        .split_once("MemcacheConnectionManager { urls: [")?
        .1
        .chars();
    let mut urls = Vec::new();
    loop {
        match rest.next()? {
            ']' => return Some(urls),
            ',' | ' ' => {}
            '"' => {
                let mut url = String::new();
                loop {
                    match rest.next()? {
                        '"' => break,
                        '\\' => url.push(rest.next()?),
                        c => url.push(c),
                    }
                }
                urls.push(url);
            }
            _ => return None,
        }
    }
}

/// Whether the `memcache` client speaks to `url` in the binary protocol with a read
/// `timeout` (it reads `protocol=ascii` exactly, and anything else as binary).
fn timed_binary(url: &str) -> bool {
    Url::parse(url).is_ok_and(|url| {
        let mut query = url.query_pairs();
        let timed = query.clone().any(|(k, _)| k == "timeout");
        timed && !query.any(|(k, v)| k == "protocol" && v == "ascii")
    })
}

/// Why a pool is refused, from its `Debug` output: more than one server, or a server
/// spoken to in the binary protocol with a read `timeout`. A pool whose URLs cannot be read
/// there is let through, with a warning.
fn why_refused(pool_debug: &str) -> Option<String> {
    let Some(urls) = manager_urls(pool_debug) else {
        tracing::warn!(
            "cannot read the r2d2 pool's URLs to check them: it must list one server, and a \
             read timeout in its URL needs protocol=ascii"
        );
        return None;
    };
    if urls.len() > 1 {
        // The `memcache` client places keys by std's `DefaultHasher`, which may change
        // between Rust releases (two builds would look for a session on different servers),
        // and checks every server on each checkout (one down fails every key).
        return Some(format!(
            "the r2d2 pool lists {} servers: the memcache client places keys by a hash Rust \
             may change between releases and fails every key while one server is down; use \
             MemcacheStore::new with the servers' URL (a ketama fleet), or one server a pool",
            urls.len()
        ));
    }
    let unsafe_url = without_login(&urls.into_iter().find(|url| timed_binary(url))?);
    Some(format!(
        "the r2d2 pool's URL {unsafe_url:?} has a read timeout in the binary protocol, where \
         a reply that comes after it is read as the next command's: add protocol=ascii to \
         the URL, or remove the timeout"
    ))
}

/// The error of a call the request stopped waiting for.
fn timed_out() -> StoreError {
    StoreError::Unavailable(Box::new(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no answer through the r2d2 pool within its connection_timeout",
    )))
}

impl R2d2Backend {
    pub(crate) fn new(pool: Pool<MemcacheConnectionManager>) -> Self {
        let refused = why_refused(&format!("{pool:?}"));
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
            Err(_) => Err(timed_out()),
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
        // Set once the request stopped waiting: a command not sent by then is not sent at
        // all (a write that landed after its 503 would be a write on an error). One already
        // sent is in doubt, as a write whose reply never came.
        let gave_up = Arc::new(AtomicBool::new(false));
        let waiting = Arc::clone(&gave_up);
        let result = self
            .bounded(actix_web::web::block(move || {
                // Queued behind hung calls until after its 503: not even a connection
                // (whose checks would hang on a stalled server too, a thread each).
                if waiting.load(Ordering::Acquire) {
                    return Err(timed_out());
                }
                let client = pool
                    .get()
                    .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
                if waiting.load(Ordering::Acquire) {
                    return Err(timed_out());
                }
                op(&client).map_err(|e| store_error(e, size))
            }))
            .await;
        if result.is_err() {
            gave_up.store(true, Ordering::Release);
        }
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
        let expiration = expiration(ttl)?;
        self.run(Operation::Add, data.len(), move |c| {
            match c.add(&key, data.as_slice(), expiration) {
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
        let expiration = expiration(ttl)?;
        self.run(Operation::Set, data.len(), move |c| {
            compare_and_swap(c, &key, &data, version, expiration)
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
        let expiration = expiration(ttl)?;
        self.run(Operation::Touch, 0, move |c| {
            match c.touch(&key, expiration) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_out_of_step_is_not_quoted_in_the_error() {
        let line = r#"{"v":1,"packages":{"auth":{"token":"s3cret"}}}"#;
        let e = store_error(ServerError::BadResponse(line.into()).into(), 0);
        let StoreError::Protocol(why) = &e else {
            panic!("{e:?}")
        };
        assert!(!why.contains("s3cret"), "{why}");
        assert!(why.contains(&format!("({} bytes)", line.len())), "{why}");
    }

    /// The `Debug` output of a pool over `urls`, as `R2d2Backend::new` reads it (no server:
    /// the pool is not filled before use).
    fn debug_of(urls: Vec<&str>) -> String {
        let manager = MemcacheConnectionManager::new(urls);
        let pool = Pool::builder().min_idle(Some(0)).build_unchecked(manager);
        format!("{pool:?}")
    }

    #[test]
    fn the_pools_urls_are_read_from_its_debug_output() {
        let urls = vec![
            "memcache://[::1]:11211?timeout=1",
            "memcache://a:1?protocol=ascii&timeout=1",
            "memcache://b:2",
        ];
        let read = manager_urls(&debug_of(urls.clone())).expect("the URLs");
        assert_eq!(read, urls);
    }

    #[test]
    fn a_read_timeout_in_the_binary_protocol_is_refused() {
        for urls in [
            vec!["memcache://h:1?timeout=1"],
            vec!["memcache://[::1]:11211?timeout=1"],
            vec!["memcache://b:1?other=x&timeout=0.5"],
            vec!["memcache://h:1?protocol=ASCII&timeout=1"],
        ] {
            let why = why_refused(&debug_of(urls.clone()));
            assert!(
                why.is_some_and(|w| w.contains("protocol=ascii")),
                "{urls:?}"
            );
        }
        for urls in [
            vec!["memcache://h:1"],
            vec!["memcache://h:1?protocol=ascii&timeout=1"],
            vec!["memcache://[::1]:11211?connect_timeout=1"],
        ] {
            assert_eq!(why_refused(&debug_of(urls.clone())), None, "{urls:?}");
        }
    }

    #[test]
    fn a_pool_over_several_servers_is_refused() {
        for urls in [
            vec!["memcache://a:1", "memcache://b:1"],
            vec![
                "memcache://a:1?protocol=ascii",
                "memcache://b:1?timeout=0.5",
            ],
        ] {
            let why = why_refused(&debug_of(urls.clone()));
            assert!(why.is_some_and(|w| w.contains("2 servers")), "{urls:?}");
        }
        assert_eq!(why_refused(&debug_of(vec!["memcache://a:1"])), None);
    }

    #[test]
    fn a_refused_urls_login_is_not_shown() {
        let why = why_refused(&debug_of(vec!["memcache://ada:hunter2@h:11211?timeout=1"]));
        let why = why.expect("refused");
        assert!(!why.contains("hunter2") && !why.contains("ada"), "{why}");
        assert!(why.contains("@h:11211?timeout=1"), "{why}");
        assert_eq!(
            without_login("memcache://h:1?timeout=1"),
            "memcache://h:1?timeout=1"
        );
    }

    #[test]
    fn output_it_cannot_read_is_let_through() {
        for debug in [
            "",
            "Pool { manager: Other }",
            "MemcacheConnectionManager { urls: [x",
        ] {
            assert_eq!(manager_urls(debug), None, "{debug}");
            assert_eq!(why_refused(debug), None, "{debug}");
        }
    }
}
