//! `MemcacheStore`: sessions in memcached, one item per session.

use std::sync::Arc;
use std::time::Duration;

use super::pool::{Endpoint, Limits};
use super::protocol::{Request, Status};
use crate::clock::now_unix;
use crate::id::SessionId;
use crate::store::{SessionStore, StoreError, Stored, Update, Version};

/// memcached's longest key.
const MAX_KEY_BYTES: usize = 250;
/// memcached's default item size limit (`-I`).
const MAX_ITEM_SIZE: usize = 1024 * 1024;
/// memcached's largest `-I`.
const MAX_ITEM_SIZE_LIMIT: usize = 1024 * 1024 * 1024;
/// Longest connect or I/O timeout accepted: past it a timeout is a hang.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Most connections per worker accepted.
const MAX_CONNECTIONS: usize = 1024;
/// What memcached run with `-C` does to every CAS token, and what to do about it.
const CAS_DISABLED: &str = "memcached gives every item the CAS token 0: it runs with \
    compare-and-swap disabled (-C), so no write could be safe; restart it without -C";
/// What an item costs memcached beyond key and value: its header, CAS and line ends,
/// rounded up.
const ITEM_OVERHEAD: usize = 64;
const DEFAULT_PORT: u16 = 11211;

/// Session data in memcached, through non-blocking, pipelined connections that speak
/// memcached's meta protocol (memcached 1.6 or later).
///
/// Each session is one item under `key_prefix + id`, written with compare-and-swap
/// (`ms ... C<cas>`), created with add semantics, refreshed with `mg ... T<ttl>` (touch),
/// and removed with `md`. A request costs one round trip to read and one to write.
///
/// ```no_run
/// use std::time::Duration;
/// use actix_memcache_session::MemcacheStore;
///
/// let store = MemcacheStore::new("memcache://127.0.0.1:11211")?;
/// let tuned = MemcacheStore::builder("memcache://10.0.0.5:11211")
///     .pool_max_size(4)
///     .io_timeout(Duration::from_millis(500))
///     .key_prefix("myapp:session:")
///     .build()?;
/// # Ok::<(), actix_memcache_session::StoreError>(())
/// ```
///
/// Clones share configuration; each worker thread opens its own connections (see
/// [`pool_max_size`](MemcacheStoreBuilder::pool_max_size)) on first use. It must run on
/// actix's runtime (or any tokio `LocalSet`): each connection's reader and writer are
/// local tasks.
#[derive(Debug, Clone)]
pub struct MemcacheStore {
    prefix: Arc<str>,
    max_item_size: usize,
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Native(Arc<Endpoint>),
    #[cfg(feature = "r2d2")]
    R2d2(super::r2d2::R2d2Backend),
}

impl MemcacheStore {
    /// A store for the memcached at `url` (`memcache://host:port`), with every default.
    ///
    /// No connection is made until a session is used.
    ///
    /// # Errors
    /// A URL that is not `memcache://host[:port]`.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).build()
    }

    /// A builder to change the defaults.
    pub fn builder(url: impl Into<String>) -> MemcacheStoreBuilder {
        MemcacheStoreBuilder {
            url: url.into(),
            pool_max_size: 1,
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
            key_prefix: DEFAULT_PREFIX.to_owned(),
            max_item_size: MAX_ITEM_SIZE,
        }
    }

    /// A store over an existing `r2d2-memcache` pool (feature `r2d2`), with the default
    /// key prefix and item size limit. Each operation runs on actix's blocking thread pool (`web::block`),
    /// since the `memcache` client blocks; timeouts are the pool's own. Prefer
    /// [`MemcacheStore::new`] unless the pool is already there: the README compares them.
    #[cfg(feature = "r2d2")]
    pub fn from_r2d2(
        pool: r2d2_memcache::r2d2::Pool<r2d2_memcache::MemcacheConnectionManager>,
    ) -> Self {
        Self {
            prefix: DEFAULT_PREFIX.into(),
            max_item_size: MAX_ITEM_SIZE,
            backend: Backend::R2d2(super::r2d2::R2d2Backend::new(pool)),
        }
    }

    fn key(&self, id: &SessionId) -> String {
        let mut key = String::with_capacity(self.prefix.len() + id.as_str().len());
        key.push_str(&self.prefix);
        key.push_str(id.as_str());
        key
    }

    /// Refuses an item memcached would refuse: a refused `set` also drops the item already
    /// stored under that key, which would lose the session instead of keeping it.
    fn fits(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        if key.len() + data.len() + ITEM_OVERHEAD > self.max_item_size {
            return Err(StoreError::TooLarge { size: data.len() });
        }
        Ok(())
    }
}

const DEFAULT_PREFIX: &str = "session:";

impl SessionStore for MemcacheStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Stored>, StoreError> {
        let key = self.key(id);
        let stored = match &self.backend {
            Backend::Native(endpoint) => native_load(endpoint, &key).await,
            #[cfg(feature = "r2d2")]
            Backend::R2d2(pool) => pool.load(key).await,
        }?;
        // memcached's CAS tokens start at 1; 0 on every item means CAS is off, and then
        // compare-and-swap fails on every write (meta) or silently overwrites (r2d2).
        if stored.as_ref().is_some_and(|s| s.version.get() == 0) {
            tracing::error!(why = CAS_DISABLED, "memcached refused");
            return Err(StoreError::Unsupported(CAS_DISABLED.into()));
        }
        Ok(stored)
    }

    async fn create(&self, id: &SessionId, data: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        let key = self.key(id);
        self.fits(&key, data)?;
        match &self.backend {
            Backend::Native(endpoint) => native_create(endpoint, &key, data, ttl).await,
            #[cfg(feature = "r2d2")]
            Backend::R2d2(pool) => pool.create(key, data, ttl).await,
        }
    }

    async fn update(
        &self,
        id: &SessionId,
        data: &[u8],
        version: Version,
        ttl: Duration,
    ) -> Result<Update, StoreError> {
        let key = self.key(id);
        self.fits(&key, data)?;
        match &self.backend {
            Backend::Native(endpoint) => native_update(endpoint, &key, data, version, ttl).await,
            #[cfg(feature = "r2d2")]
            Backend::R2d2(pool) => pool.update(key, data, version, ttl).await,
        }
    }

    async fn touch(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
        let key = self.key(id);
        match &self.backend {
            Backend::Native(endpoint) => native_touch(endpoint, &key, ttl).await,
            #[cfg(feature = "r2d2")]
            Backend::R2d2(pool) => pool.touch(key, ttl).await,
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        let key = self.key(id);
        match &self.backend {
            Backend::Native(endpoint) => native_delete(endpoint, &key, None).await,
            #[cfg(feature = "r2d2")]
            Backend::R2d2(pool) => pool.delete(key).await,
        }
        .map(drop)
    }

    async fn delete_if(&self, id: &SessionId, version: Version) -> Result<Update, StoreError> {
        let key = self.key(id);
        match &self.backend {
            Backend::Native(endpoint) => native_delete(endpoint, &key, Some(version)).await,
            #[cfg(feature = "r2d2")]
            Backend::R2d2(pool) => pool.delete_if(key, version).await,
        }
    }
}

fn unexpected(status: Status) -> StoreError {
    StoreError::Protocol(format!("unexpected memcached reply {status:?}"))
}

async fn native_load(endpoint: &Arc<Endpoint>, key: &str) -> Result<Option<Stored>, StoreError> {
    let reply = endpoint.execute(&Request::get(key)).await?;
    match reply.status {
        Status::Value { cas: Some(cas), .. } => Ok(Some(Stored {
            data: reply.data,
            version: Version::new(cas),
        })),
        Status::Miss => Ok(None),
        status => Err(unexpected(status)),
    }
}

async fn native_create(
    endpoint: &Arc<Endpoint>,
    key: &str,
    data: &[u8],
    ttl: Duration,
) -> Result<bool, StoreError> {
    let request = Request::add(key, data, ttl, now_unix());
    match endpoint.execute(&request).await?.status {
        Status::Done => Ok(true),
        Status::NotStored => Ok(false),
        Status::TooLarge => Err(StoreError::TooLarge { size: data.len() }),
        status => Err(unexpected(status)),
    }
}

async fn native_update(
    endpoint: &Arc<Endpoint>,
    key: &str,
    data: &[u8],
    version: Version,
    ttl: Duration,
) -> Result<Update, StoreError> {
    let request = Request::cas(key, data, version.get(), ttl, now_unix());
    match endpoint.execute(&request).await?.status {
        Status::Done => Ok(Update::Updated),
        Status::Exists => Ok(Update::Conflict),
        Status::NotFound => Ok(Update::Missing),
        Status::TooLarge => Err(StoreError::TooLarge { size: data.len() }),
        status => Err(unexpected(status)),
    }
}

async fn native_touch(
    endpoint: &Arc<Endpoint>,
    key: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    match endpoint
        .execute(&Request::touch(key, ttl, now_unix()))
        .await?
        .status
    {
        Status::Done => Ok(true),
        Status::Miss => Ok(false),
        status => Err(unexpected(status)),
    }
}

/// Deletes, unconditionally or only at `version`.
async fn native_delete(
    endpoint: &Arc<Endpoint>,
    key: &str,
    version: Option<Version>,
) -> Result<Update, StoreError> {
    let request = match version {
        None => Request::delete(key),
        Some(version) => Request::delete_if(key, version.get()),
    };
    match endpoint.execute(&request).await?.status {
        Status::Done => Ok(Update::Updated),
        Status::Exists => Ok(Update::Conflict),
        Status::NotFound => Ok(Update::Missing),
        status => Err(unexpected(status)),
    }
}

/// Builds a [`MemcacheStore`]; every setter says its default.
#[derive(Debug)]
#[must_use = "call .build() to get the store"]
pub struct MemcacheStoreBuilder {
    url: String,
    pool_max_size: usize,
    connect_timeout: Duration,
    io_timeout: Duration,
    key_prefix: String,
    max_item_size: usize,
}

impl MemcacheStoreBuilder {
    /// Connections each worker thread keeps to memcached. Default: 1. Each is pipelined:
    /// any number of requests share it, and the commands queued while one write is under
    /// way go out together in the next, so more connections mean fewer commands per
    /// syscall, not more concurrency (measured: 1 beat 2 and 4; see the README).
    pub fn pool_max_size(mut self, size: usize) -> Self {
        self.pool_max_size = size;
        self
    }

    /// How long to wait for a connection to open. Default: 1 s: on loopback or a LAN a
    /// connect takes well under a millisecond, so a second means memcached is not there,
    /// and the client should get its 503 now, not in 30 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for a reply. Default: 1 s, for the same reason. A connection that
    /// times out is replaced, so the requests waiting on it get 503 too.
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// Put before each session id to make the memcached key. Default: `"session:"`, so
    /// sessions are easy to tell apart from other items in a shared memcached. At most 228
    /// bytes (memcached keys are at most 250 and an id is 22), no spaces or control
    /// characters.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// memcached's item size limit, its `-I` option. Default: 1 MiB, memcached's default.
    /// A session that would not fit is refused here with [`StoreError::TooLarge`] (413),
    /// because memcached answers a too-large write by dropping the stored session.
    pub fn max_item_size(mut self, bytes: usize) -> Self {
        self.max_item_size = bytes;
        self
    }

    /// The store.
    ///
    /// # Errors
    /// A URL that is not `memcache://host[:port]`, a key prefix memcached would refuse,
    /// a pool size outside 1 to 1024, a timeout that is zero or over an hour, or an item
    /// size limit outside 1 KiB to 1 GiB (memcached's own bounds for `-I`).
    pub fn build(self) -> Result<MemcacheStore, StoreError> {
        let (host, port) = parse_url(&self.url)?;
        check_prefix(&self.key_prefix)?;
        check_range("pool_max_size", self.pool_max_size, 1, MAX_CONNECTIONS)?;
        for (name, timeout) in [
            ("connect_timeout", self.connect_timeout),
            ("io_timeout", self.io_timeout),
        ] {
            if timeout.is_zero() || timeout > MAX_TIMEOUT {
                return Err(StoreError::InvalidConfig(format!(
                    "{name} is {timeout:?}; it must be above zero and at most an hour"
                )));
            }
        }
        check_range(
            "max_item_size",
            self.max_item_size,
            1024,
            MAX_ITEM_SIZE_LIMIT,
        )?;
        let limits = Limits {
            connections: self.pool_max_size,
            connect_timeout: self.connect_timeout,
            io_timeout: self.io_timeout,
            max_value: self.max_item_size,
        };
        let endpoint = Endpoint::new(host, port, limits);
        Ok(MemcacheStore {
            prefix: self.key_prefix.into(),
            max_item_size: self.max_item_size,
            backend: Backend::Native(Arc::new(endpoint)),
        })
    }
}

fn parse_url(url: &str) -> Result<(String, u16), StoreError> {
    let invalid = |why: &str| StoreError::InvalidConfig(format!("memcached URL {url:?}: {why}"));
    let rest = url
        .strip_prefix("memcache://")
        .ok_or_else(|| invalid("expected memcache://host[:port]"))?;
    if rest.contains(['/', '?', '@', ',']) {
        return Err(invalid(
            "only memcache://host[:port] is supported; set options on the builder",
        ));
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => {
            let port = port.parse().map_err(|_| invalid("bad port"))?;
            (host, port)
        }
        _ => (rest, DEFAULT_PORT),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    Ok((host.to_owned(), port))
}

fn check_range(name: &str, value: usize, min: usize, max: usize) -> Result<(), StoreError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(StoreError::InvalidConfig(format!(
        "{name} is {value}; it must be from {min} to {max}"
    )))
}

fn check_prefix(prefix: &str) -> Result<(), StoreError> {
    let id_len = 22;
    if prefix.len() + id_len > MAX_KEY_BYTES {
        return Err(StoreError::InvalidConfig(format!(
            "key prefix is {} bytes; memcached keys stop at {MAX_KEY_BYTES}, ids take {id_len}",
            prefix.len()
        )));
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(StoreError::InvalidConfig(
            "key prefix contains a space or control character".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let ok = |u: &str| parse_url(u).unwrap();
        assert_eq!(
            ok("memcache://127.0.0.1:11311"),
            ("127.0.0.1".into(), 11311)
        );
        assert_eq!(ok("memcache://cache"), ("cache".into(), 11211));
        assert_eq!(ok("memcache://[::1]:5"), ("::1".into(), 5));
        assert_eq!(ok("memcache://[::1]"), ("::1".into(), 11211));
        for bad in [
            "127.0.0.1:11211",
            "memcache://",
            "memcache://h:port",
            "memcache://h:1?timeout=3",
            "memcache://a:1,b:2",
        ] {
            assert!(
                matches!(parse_url(bad), Err(StoreError::InvalidConfig(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn limits_are_checked_at_build() {
        let builder = || MemcacheStore::builder("memcache://h");
        assert!(builder().build().is_ok());
        for bad in [
            builder().pool_max_size(0),
            builder().pool_max_size(MAX_CONNECTIONS + 1),
            builder().connect_timeout(Duration::ZERO),
            builder().io_timeout(Duration::ZERO),
            builder().io_timeout(Duration::MAX),
            builder().max_item_size(0),
            builder().max_item_size(MAX_ITEM_SIZE_LIMIT + 1),
        ] {
            let e = bad.build().unwrap_err();
            assert!(matches!(e, StoreError::InvalidConfig(_)), "{e}");
        }
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(check_prefix("session:").is_ok());
        assert!(check_prefix(&"p".repeat(228)).is_ok());
        assert!(check_prefix(&"p".repeat(229)).is_err());
        assert!(check_prefix("has space").is_err());
        assert!(check_prefix("nl\n").is_err());
    }
}
