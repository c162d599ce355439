//! `MemcacheStore` (and `MemoryStore`, for tests and quick starts) behind actix-session
//! 0.11's `SessionStore` (feature `actix-session`), so that `actix_session::SessionMiddleware`
//! and the crates built on it (actix-identity) keep their sessions in memcached. The semantics are actix-session's: the whole state, read
//! eagerly, written whole; none of this crate's unit of work.
//!
//! Where actix-session's Redis store is unsafe, this one chooses the safe side: a new
//! session never overwrites another (it is added, and a taken key draws another), and an
//! update of a session that is gone (purged, logged out, expired) fails rather than bring
//! it back. A new session's id is drawn as this crate's own commit draws it: never on a
//! server marked down.

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use actix_session::storage::{
    LoadError, SaveError, SessionKey, SessionStore as ActixSessionStore, UpdateError,
};
use actix_web::cookie::time::Duration;

use super::{
    create_new, MemcacheStore, MemoryStore, NotCreated, SessionStore, StoreError, Stored, Update,
};
use crate::backoff::Backoff;
use crate::id::SessionId;

/// How long one update racing other requests of the same session keeps trying, with
/// jittered pauses between its compare-and-swap rounds (whole states: the last writer
/// wins, as with actix-session's own stores). Requests of one worker share a connection
/// and arrive together: without the pauses, each round lets one through, and a page's
/// many requests at once ran out of rounds.
const UPDATE_BUDGET: StdDuration = StdDuration::from_secs(1);

type State = HashMap<String, String>;

/// A TTL from actix-session: at least a second (memcached reads 0 as "never expire").
fn ttl(ttl: &Duration) -> StdDuration {
    StdDuration::try_from(*ttl)
        .unwrap_or_default()
        .max(StdDuration::from_secs(1))
}

/// The id a key names: a key this store made is an id's text form; any other names nothing.
fn id(key: &SessionKey) -> Option<SessionId> {
    key.as_ref().parse().ok()
}

/// Implements actix-session's trait for a store of this crate (a foreign trait cannot be
/// implemented for every `SessionStore` at once).
macro_rules! for_actix_session {
    ($store:ty) => {
        impl ActixSessionStore for $store {
            async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
                load(self, key).await
            }

            async fn save(&self, state: State, ttl: &Duration) -> Result<SessionKey, SaveError> {
                save(self, state, ttl).await
            }

            async fn update(
                &self,
                key: SessionKey,
                state: State,
                ttl: &Duration,
            ) -> Result<SessionKey, UpdateError> {
                update(self, key, state, ttl).await
            }

            async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> anyhow::Result<()> {
                update_ttl(self, key, ttl).await
            }

            async fn delete(&self, key: &SessionKey) -> anyhow::Result<()> {
                delete(self, key).await
            }
        }
    };
}

for_actix_session!(MemcacheStore);
for_actix_session!(MemoryStore);

/// A load, with a session stored over the store's item limit read as no session, as this
/// crate's own middleware reads it: actix-session then starts a fresh one under a new key,
/// instead of failing every request (and every update of the key it kept) until the item
/// expires.
fn readable(loaded: Result<Option<Stored>, StoreError>) -> Result<Option<Stored>, StoreError> {
    match loaded {
        Err(StoreError::TooLarge { size }) => {
            tracing::warn!(
                size,
                "stored session over the store's item limit: a fresh one"
            );
            Ok(None)
        }
        other => other,
    }
}

async fn load<S: SessionStore>(store: &S, key: &SessionKey) -> Result<Option<State>, LoadError> {
    let Some(id) = id(key) else { return Ok(None) };
    let stored = readable(store.load(&id).await).map_err(|e| LoadError::Other(e.into()))?;
    stored
        .map(|s| serde_json::from_slice(&s.data))
        .transpose()
        .map_err(|e| LoadError::Deserialization(e.into()))
}

async fn save<S: SessionStore>(
    store: &S,
    state: State,
    ttl_: &Duration,
) -> Result<SessionKey, SaveError> {
    let bytes = serde_json::to_vec(&state).map_err(|e| SaveError::Serialization(e.into()))?;
    let id = create_new(store, &bytes, ttl(ttl_))
        .await
        .map_err(|e| match e {
            NotCreated::Entropy(e) => SaveError::Other(e.into()),
            NotCreated::Store(e) => SaveError::Other(e.into()),
        })?;
    SessionKey::try_from(id.as_str().to_owned()).map_err(|e| SaveError::Other(e.into()))
}

async fn update<S: SessionStore>(
    store: &S,
    key: SessionKey,
    state: State,
    ttl_: &Duration,
) -> Result<SessionKey, UpdateError> {
    let bytes = serde_json::to_vec(&state).map_err(|e| UpdateError::Serialization(e.into()))?;
    let gone = || UpdateError::Other(anyhow::anyhow!("the session ended meanwhile"));
    let id = id(&key).ok_or_else(gone)?;
    let other = |e: StoreError| UpdateError::Other(e.into());
    let mut backoff = Backoff::new();
    loop {
        let Some(current) = readable(store.load(&id).await).map_err(other)? else {
            return Err(gone());
        };
        let written = store.update(&id, &bytes, current.version, ttl(ttl_));
        match written.await.map_err(other)? {
            Update::Updated => return Ok(key),
            Update::Missing => return Err(gone()),
            Update::Conflict => {}
        }
        let Some(pause) = backoff.next_pause(UPDATE_BUDGET) else {
            break;
        };
        actix_web::rt::time::sleep(pause).await;
    }
    Err(UpdateError::Other(anyhow::anyhow!(
        "concurrent requests kept rewriting the session for {UPDATE_BUDGET:?}"
    )))
}

async fn update_ttl<S: SessionStore>(
    store: &S,
    key: &SessionKey,
    ttl_: &Duration,
) -> anyhow::Result<()> {
    if let Some(id) = id(key) {
        // A session that is gone stays gone: a touch creates nothing.
        store.touch(&id, ttl(ttl_)).await?;
    }
    Ok(())
}

async fn delete<S: SessionStore>(store: &S, key: &SessionKey) -> anyhow::Result<()> {
    if let Some(id) = id(key) {
        store.delete(&id).await?;
    }
    Ok(())
}
