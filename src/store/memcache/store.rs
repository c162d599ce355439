//! `MemcacheStore`: sessions in memcached, one item per session.

use std::sync::Arc;
use std::time::Duration;

use super::fleet::Fleet;
use super::key::Key;
use super::protocol::{refused_as_too_large, Request, Status};
use super::readiness::ServerPing;
use crate::clock::now_unix;
use crate::id::SessionId;
use crate::store::error::{ServerAnswered, StoreError};
use crate::store::session_store::{SessionStore, Stored, Update, Version, WhenDown};

/// memcached's default item size limit (`-I`).
pub(super) const MAX_ITEM_SIZE: usize = 1024 * 1024;
/// What memcached run with `-C` does to every CAS token, and what to do about it.
const CAS_DISABLED: &str = "memcached gives every item the CAS token 0: it runs with \
    compare-and-swap disabled (-C), so no write could be safe; restart it without -C";
/// What an item costs memcached beyond key and value: its header, CAS and line ends,
/// rounded up.
const ITEM_OVERHEAD: usize = 64;

/// Session data in memcached, through non-blocking, pipelined connections that speak
/// memcached's meta protocol where the server's is complete (1.6.18 or later) and the text
/// protocol elsewhere (any older memcached, proxies): see [`Protocol`](crate::Protocol).
///
/// Each session is one item under `key_prefix + id`, written with compare-and-swap
/// (`ms ... C<cas>`), created with add semantics, refreshed with `mg ... T<ttl>` (touch),
/// and removed with `md`. A request costs one round trip to read and one to write.
///
/// Several servers (`memcache://a:11211,b:11211`) share the sessions by libmemcached's
/// weighted ketama ring ([`Ketama`](crate::Ketama)), so PHP, Python, C and twemproxy
/// clients place every key on the same server. A server that does not answer costs only
/// the sessions it holds (its own, and the signed-in sessions whose user's item it
/// holds): they get 503 (or, opted in, a fresh session: [`WhenDown`]) and are never read
/// or written anywhere else.
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
/// let fleet = MemcacheStore::builder("memcache://10.0.0.1:11211,10.0.0.2:11211")
///     .weight("10.0.0.2:11211", 2)
///     .build()?;
/// # Ok::<(), actix_memcache_session::StoreError>(())
/// ```
///
/// Clones share configuration; each worker thread opens its own connections (see
/// [`pool_max_size`](crate::MemcacheStoreBuilder::pool_max_size)) on first use. It must run on
/// actix's runtime (or any tokio `LocalSet`): each connection's reader and writer are
/// local tasks.
#[derive(Debug, Clone)]
pub struct MemcacheStore {
    pub(super) prefix: Arc<str>,
    pub(super) max_item_size: usize,
    pub(super) when_down: WhenDown,
    pub(super) backend: Backend,
}

#[derive(Debug, Clone)]
pub(super) enum Backend {
    Native(Arc<Fleet>),
    #[cfg(feature = "r2d2")]
    R2d2(super::r2d2::R2d2Backend),
}

impl MemcacheStore {
    /// A store over an existing `r2d2-memcache` pool (feature `r2d2`), with the default
    /// key prefix and item size limit. Each operation runs on actix's blocking thread pool
    /// (`web::block`), since the `memcache` client blocks, and answers
    /// [`StoreError::Unavailable`] after the pool's `connection_timeout` (30 s unless set).
    /// Prefer [`MemcacheStore::new`] unless the pool is already there: docs/stores.md compares
    /// them.
    ///
    /// A pool over several servers, or whose URL sets a read `timeout` without
    /// `protocol=ascii`, is refused: every
    /// operation answers [`StoreError::Unsupported`], saying why (logged at level error
    /// here). In the `memcache` client's binary protocol a reply that comes after that
    /// timeout is read as the next command's, which could take a refused compare-and-swap
    /// for a stored one or return another session's data.
    #[cfg(feature = "r2d2")]
    pub fn from_r2d2(
        pool: r2d2_memcache::r2d2::Pool<r2d2_memcache::MemcacheConnectionManager>,
    ) -> Self {
        Self {
            prefix: DEFAULT_PREFIX.into(),
            max_item_size: MAX_ITEM_SIZE,
            when_down: WhenDown::FailClosed,
            backend: Backend::R2d2(super::r2d2::R2d2Backend::new(pool)),
        }
    }

    /// Whether the store can serve now, for a readiness route: a harmless read (of
    /// `key_prefix + "ping"`) to every server at once, within the store's timeouts. `Ok`
    /// while **at least one server answers**: with several servers, one down costs only
    /// the sessions it holds, and the signed-in sessions whose user's item it holds (503
    /// for them, or fresh ones with [`WhenDown::StartFresh`]), and
    /// every instance of the app shares the same servers, so taking instances out of the
    /// load balancer would turn that share into a full outage. It answers `Ok` as soon as
    /// one server does, whatever the others are doing (one that hangs is not waited out),
    /// and a server already marked down is not waited on. Through a proxy, a
    /// `SERVER_ERROR` for the key (its backend down) is no answer, and sixteen other keys
    /// are asked before the proxy counts as not answering, so that readiness does not
    /// follow the one backend that holds the key. [`ping_servers`](Self::ping_servers)
    /// reports each server, for dashboards and alerts.
    ///
    /// Through [`from_r2d2`](Self::from_r2d2), one read through the pool, bounded by the
    /// pool's `connection_timeout` (the blocking client may hang longer: while four checks
    /// are still blocked, the next fails at once instead of taking another thread).
    ///
    /// ```no_run
    /// use actix_memcache_session::MemcacheStore;
    /// use actix_web::{web, HttpResponse};
    ///
    /// async fn ready(store: web::Data<MemcacheStore>) -> HttpResponse {
    ///     match store.ping().await {
    ///         Ok(()) => HttpResponse::Ok().body("ready"),
    ///         Err(_) => HttpResponse::ServiceUnavailable().body("session store down"),
    ///     }
    /// }
    /// ```
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when no server answered, naming each and why (or a
    /// single server's configuration refusal, as [`StoreError::Unsupported`]).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let failed = match &self.backend {
            Backend::Native(fleet) => match Fleet::ping_any(fleet, &self.ping_key()).await {
                Ok(()) => return Ok(()),
                Err(failed) => failed,
            },
            #[cfg(feature = "r2d2")]
            Backend::R2d2(_) => self.ping_servers().await,
        };
        let failed: Vec<(String, StoreError)> = failed
            .into_iter()
            .filter_map(|ping| Some((ping.server, ping.result.err()?)))
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        if failed.len() == 1 {
            if let Some((_, StoreError::Unsupported(why))) = failed.first() {
                return Err(StoreError::Unsupported(why.clone()));
            }
        }
        let named: Vec<String> = failed
            .iter()
            .map(|(server, e)| {
                let cause = std::error::Error::source(e).map_or(e.to_string(), |s| s.to_string());
                format!("memcached at {server} did not answer: {cause}")
            })
            .collect();
        Err(StoreError::Unavailable(named.join("; ").into()))
    }

    /// The key a readiness check reads.
    fn ping_key(&self) -> String {
        [&*self.prefix, "ping"].concat()
    }

    /// Each server's answer to the read [`ping`](Self::ping) sends, in the URL's order,
    /// for a dashboard: which servers answer, and why the others do not. A server marked
    /// down is reported so at once, without waiting on it.
    ///
    /// ```no_run
    /// use actix_memcache_session::MemcacheStore;
    ///
    /// # async fn report(store: MemcacheStore) {
    /// for server in store.ping_servers().await {
    ///     match server.result {
    ///         Ok(()) => println!("{}: up", server.server),
    ///         Err(e) => println!("{}: {e}", server.server),
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn ping_servers(&self) -> Vec<ServerPing> {
        let key = self.ping_key();
        match &self.backend {
            Backend::Native(fleet) => fleet.ping_each(&key).await,
            #[cfg(feature = "r2d2")]
            Backend::R2d2(pool) => vec![ServerPing {
                server: "r2d2 pool".to_owned(),
                result: pool.ping(key).await,
            }],
        }
    }

    fn key(&self, id: &SessionId) -> Key {
        Key::new(&self.prefix, id.as_str())
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

/// Put before each session id unless the builder says otherwise.
pub(super) const DEFAULT_PREFIX: &str = "session:";

impl SessionStore for MemcacheStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Stored>, StoreError> {
        let key = self.key(id);
        let stored = match &self.backend {
            Backend::Native(fleet) => native_load(fleet, &key).await,
            #[cfg(feature = "r2d2")]
            Backend::R2d2(pool) => pool.load(key.to_owned()).await,
        }?;
        // memcached's CAS tokens start at 1; 0 on every item means CAS is off, and then
        // compare-and-swap fails on every write (meta) or silently overwrites (r2d2).
        if stored.as_ref().is_some_and(|s| s.version.get() == 0) {
            return Err(cas_disabled());
        }
        Ok(stored)
    }

    async fn create(&self, id: &SessionId, data: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        let key = self.key(id);
        self.fits(&key, data)?;
        match &self.backend {
            Backend::Native(fleet) => native_create(fleet, &key, data, ttl).await,
            #[cfg(feature = "r2d2")]
            Backend::R2d2(pool) => pool.create(key.to_owned(), data, ttl).await,
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
            Backend::Native(fleet) => native_update(fleet, &key, data, version, ttl).await,
            #[cfg(feature = "r2d2")]
            Backend::R2d2(pool) => pool.update(key.to_owned(), data, version, ttl).await,
        }
    }

    async fn touch(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
        let key = self.key(id);
        match &self.backend {
            Backend::Native(fleet) => native_touch(fleet, &key, ttl).await,
            #[cfg(feature = "r2d2")]
            Backend::R2d2(pool) => pool.touch(key.to_owned(), ttl).await,
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        let key = self.key(id);
        match &self.backend {
            Backend::Native(fleet) => native_delete(fleet, &key, None).await,
            #[cfg(feature = "r2d2")]
            Backend::R2d2(pool) => pool.delete(key.to_owned()).await,
        }
        .map(drop)
    }

    async fn delete_if(&self, id: &SessionId, version: Version) -> Result<Update, StoreError> {
        let key = self.key(id);
        match &self.backend {
            Backend::Native(fleet) => native_delete(fleet, &key, Some(version)).await,
            #[cfg(feature = "r2d2")]
            Backend::R2d2(pool) => pool.delete_if(key.to_owned(), version).await,
        }
    }

    fn accepts(&self, id: &SessionId) -> bool {
        match &self.backend {
            Backend::Native(fleet) => fleet.accepts(|| self.key(id)),
            #[cfg(feature = "r2d2")]
            Backend::R2d2(_) => true,
        }
    }

    fn when_down(&self) -> WhenDown {
        self.when_down
    }
}

/// A reply the operation cannot get: a server error for this request alone (503, the
/// server answered), or one out of protocol.
fn unexpected(status: Status) -> StoreError {
    match status {
        Status::ServerError(why) => StoreError::Unavailable(Box::new(ServerAnswered(why))),
        status => StoreError::Protocol(format!("unexpected memcached reply {status:?}")),
    }
}

async fn native_load(fleet: &Fleet, key: &str) -> Result<Option<Stored>, StoreError> {
    let reply = fleet.execute(key, &Request::get(key)).await?;
    match reply.status {
        // Never a session: this crate stores none empty. (Its text protocol's conditional
        // delete once left an empty tombstone for a second.)
        Status::Value { .. } if reply.data.is_empty() => Ok(None),
        Status::Value { cas: Some(cas), .. } => Ok(Some(Stored {
            data: reply.data,
            version: Version::new(cas),
        })),
        Status::Miss => Ok(None),
        Status::Oversized { len } => Err(StoreError::TooLarge { size: len }),
        status => Err(unexpected(status)),
    }
}

/// memcached runs with `-C`: logged, and refused.
fn cas_disabled() -> StoreError {
    tracing::error!(why = CAS_DISABLED, "memcached refused");
    StoreError::Unsupported(CAS_DISABLED.into())
}

async fn native_create(
    fleet: &Fleet,
    key: &str,
    data: &[u8],
    ttl: Duration,
) -> Result<bool, StoreError> {
    let request = Request::add(key, data, ttl, now_unix)?;
    match fleet.execute(key, &request).await?.status {
        Status::Done => Ok(true),
        // Stored, under an id nobody holds yet: refused before anyone does.
        Status::DoneWithoutCas => Err(cas_disabled()),
        Status::NotStored => Ok(false),
        Status::TooLarge => Err(refused_as_too_large(data.len())),
        status => Err(unexpected(status)),
    }
}

async fn native_update(
    fleet: &Fleet,
    key: &str,
    data: &[u8],
    version: Version,
    ttl: Duration,
) -> Result<Update, StoreError> {
    let request = Request::cas(key, data, version.get(), ttl, now_unix)?;
    match fleet.execute(key, &request).await?.status {
        Status::Done => Ok(Update::Updated),
        Status::Exists => Ok(Update::Conflict),
        Status::NotFound => Ok(Update::Missing),
        Status::TooLarge => Err(refused_as_too_large(data.len())),
        status => Err(unexpected(status)),
    }
}

async fn native_touch(fleet: &Fleet, key: &str, ttl: Duration) -> Result<bool, StoreError> {
    let request = Request::touch(key, ttl, now_unix)?;
    match fleet.execute(key, &request).await?.status {
        Status::Done => Ok(true),
        Status::Miss => Ok(false),
        status => Err(unexpected(status)),
    }
}

/// Deletes, unconditionally or only at `version`.
async fn native_delete(
    fleet: &Fleet,
    key: &str,
    version: Option<Version>,
) -> Result<Update, StoreError> {
    let request = match version {
        None => Request::delete(key),
        Some(version) => Request::delete_if(key, version.get()),
    };
    match fleet.execute(key, &request).await?.status {
        Status::Done => Ok(Update::Updated),
        // Only a conditional delete can lose a race: to another, `EX` is a reply out of
        // step, not a delete done (which would tell a purge it happened).
        Status::Exists if version.is_some() => Ok(Update::Conflict),
        Status::NotFound => Ok(Update::Missing),
        status => Err(unexpected(status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Distribution;

    /// A distribution that names a server past the list is an error, not a panic.
    #[actix_web::test]
    async fn a_distribution_out_of_range_is_an_error() {
        struct Past;
        impl Distribution for Past {
            fn server_for(&self, _: &[u8]) -> usize {
                7
            }
        }
        let store = MemcacheStore::builder("memcache://127.0.0.1:1,127.0.0.1:2")
            .distribution(|_| Past)
            .build()
            .unwrap();
        let id = SessionId::generate().unwrap();
        let e = store.load(&id).await.unwrap_err();
        assert!(e.to_string().contains("server 7 of a fleet of 2"), "{e}");
        assert!(store.accepts(&id), "accepted, so that the write says why");
        let e = store
            .create(&id, b"{}", Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::InvalidConfig(_)), "{e}");
    }
}
