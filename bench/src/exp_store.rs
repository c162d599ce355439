//! A `SessionStore` over the `memcache` crate's experimental async meta-protocol client
//! (`memcache::exp::AsyncMetaClient`), so the benchmark can compare that client with this
//! crate's own behind the same middleware. Benchmark-only: the crate does not ship it.

use std::io;
use std::time::Duration;

use actix_memcache_session::{SessionId, SessionStore, StoreError, Stored, Update, Version};
use memcache::exp::{AsyncMetaClient, Meta, MutationStatus};

/// Sessions in memcached through `AsyncMetaClient`, with this crate's key layout.
#[derive(Clone)]
pub struct ExpStore {
    client: AsyncMetaClient,
}

/// The same limits this crate's store uses: 16 connections, 1 s timeouts.
pub async fn connect(addr: &str) -> io::Result<ExpStore> {
    let client = AsyncMetaClient::builder()
        .max_connections(Some(16))
        .connect_timeout(Some(Duration::from_secs(1)))
        .io_timeout(Some(Duration::from_secs(1)))
        .connect_async(addr)
        .await
        .map_err(io::Error::other)?;
    Ok(ExpStore { client })
}

fn key(id: &SessionId) -> String {
    format!("session:{id}")
}

fn unavailable(e: memcache::exp::Error) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

impl SessionStore for ExpStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Stored>, StoreError> {
        let reply = self
            .client
            .get(key(id))
            .meta(Meta::NONE.cas())
            .send()
            .await
            .map_err(unavailable)?;
        if !reply.hit() {
            return Ok(None);
        }
        let cas = reply
            .item
            .cas
            .ok_or_else(|| StoreError::Protocol("no CAS token".into()))?;
        Ok(Some(Stored {
            data: reply.value.unwrap_or_default(),
            version: Version::new(cas),
        }))
    }

    async fn create(&self, id: &SessionId, data: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        let reply = self
            .client
            .set(key(id), data)
            .ttl(ttl)
            .add()
            .send()
            .await
            .map_err(unavailable)?;
        Ok(reply.applied())
    }

    async fn update(
        &self,
        id: &SessionId,
        data: &[u8],
        version: Version,
        ttl: Duration,
    ) -> Result<Update, StoreError> {
        let reply = self
            .client
            .set(key(id), data)
            .ttl(ttl)
            .compare_cas(version.get())
            .send()
            .await
            .map_err(unavailable)?;
        Ok(outcome(reply.status))
    }

    async fn touch(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
        let reply = self
            .client
            .get(key(id))
            .without_value()
            .touch(ttl)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(reply.hit())
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.client
            .delete(key(id))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn delete_if(&self, id: &SessionId, version: Version) -> Result<Update, StoreError> {
        let reply = self
            .client
            .delete(key(id))
            .compare_cas(version.get())
            .send()
            .await
            .map_err(unavailable)?;
        Ok(outcome(reply.status))
    }
}

/// What a compare-and-swap write or delete did.
fn outcome(status: MutationStatus) -> Update {
    match status {
        MutationStatus::Applied => Update::Updated,
        MutationStatus::NotFound => Update::Missing,
        _ => Update::Conflict,
    }
}
