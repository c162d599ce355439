//! An in-process store with memcached's semantics, for quick starts and tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::id::SessionId;
use crate::store::error::StoreError;
use crate::store::session_store::{SessionStore, Stored, Update, Version};

/// Sweep expired entries once per this many writes, so abandoned sessions free memory.
const SWEEP_EVERY: u64 = 1024;
/// The longest TTL kept as given: longer than any process runs, and short enough that an
/// `Instant` can hold the expiry (a `Duration::MAX` TTL would overflow it).
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Sessions kept in this process's memory: lost on restart, not shared between processes.
///
/// Clones share the same data, so one store can serve every actix worker. Expiry,
/// compare-and-swap and create-if-absent behave as memcached's do, so code tested on it
/// behaves the same on memcached, with one difference: it has no item size limit, where
/// memcached refuses an item over its `-I` (1 MiB unless set; the session's `max_size`
/// counts the JSON alone) with 413.
///
/// ```
/// use actix_memcache_session::MemoryStore;
///
/// let store = MemoryStore::new();
/// let shared = store.clone(); // same sessions
/// # drop(shared);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<SessionId, Entry>,
    /// Source of versions; also counts writes for the periodic sweep.
    writes: u64,
}

#[derive(Debug)]
struct Entry {
    data: Vec<u8>,
    version: u64,
    expires: Instant,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the store can serve: always, it is in this process. Here so that code written
    /// against [`MemcacheStore::ping`](crate::MemcacheStore::ping) runs on it too.
    ///
    /// # Errors
    /// Never.
    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The lock; a panic elsewhere while holding it leaves consistent data (every update
    /// is a single insert), so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// The live entry for `id`, dropping it first if it has expired.
    fn live(&mut self, id: &SessionId) -> Option<&mut Entry> {
        let now = Instant::now();
        if self.entries.get(id).is_some_and(|e| e.expires <= now) {
            self.entries.remove(id);
        }
        self.entries.get_mut(id)
    }

    /// What a compare-and-swap at `version` may do: [`Update::Updated`] means go ahead.
    fn compare(&mut self, id: &SessionId, version: Version) -> Update {
        match self.live(id) {
            None => Update::Missing,
            Some(e) if e.version != version.get() => Update::Conflict,
            Some(_) => Update::Updated,
        }
    }

    fn write(&mut self, id: &SessionId, data: &[u8], ttl: Duration) {
        self.writes += 1;
        if self.writes.is_multiple_of(SWEEP_EVERY) {
            let now = Instant::now();
            self.entries.retain(|_, e| e.expires > now);
        }
        let entry = Entry {
            data: data.to_vec(),
            version: self.writes,
            expires: expiry(ttl),
        };
        self.entries.insert(id.clone(), entry);
    }
}

/// When an entry written now with `ttl` expires.
fn expiry(ttl: Duration) -> Instant {
    Instant::now() + ttl.min(MAX_TTL)
}

impl SessionStore for MemoryStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Stored>, StoreError> {
        Ok(self.lock().live(id).map(|e| Stored {
            data: e.data.clone(),
            version: Version::new(e.version),
        }))
    }

    async fn create(&self, id: &SessionId, data: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if inner.live(id).is_some() {
            return Ok(false);
        }
        inner.write(id, data, ttl);
        Ok(true)
    }

    async fn update(
        &self,
        id: &SessionId,
        data: &[u8],
        version: Version,
        ttl: Duration,
    ) -> Result<Update, StoreError> {
        let mut inner = self.lock();
        let outcome = inner.compare(id, version);
        if outcome == Update::Updated {
            inner.write(id, data, ttl);
        }
        Ok(outcome)
    }

    async fn touch(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .live(id)
            .map(|e| e.expires = expiry(ttl))
            .is_some())
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.lock().entries.remove(id);
        Ok(())
    }

    async fn delete_if(&self, id: &SessionId, version: Version) -> Result<Update, StoreError> {
        let mut inner = self.lock();
        let outcome = inner.compare(id, version);
        if outcome == Update::Updated {
            inner.entries.remove(id);
        }
        Ok(outcome)
    }
}
