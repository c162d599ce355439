//! The servers of a store: each key goes to the server its [`Distribution`] names, through
//! that server's own per-worker connections. A server that keeps failing is marked down
//! (see `health`); its keys are never sent anywhere else.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use super::connection::Reply;
use super::health::Health;
use super::pool::Endpoint;
use super::protocol::{Request, Status};
use super::readiness::ServerPing;
use super::ring::{Distribution, MemcacheServer};
use crate::store::error::StoreError;

/// One server: its name, its connections, its record.
struct Member {
    server: MemcacheServer,
    endpoint: Arc<Endpoint>,
    health: Health,
}

/// Every server of a store, and how keys are spread over them.
pub(crate) struct Fleet {
    members: Box<[Member]>,
    /// `None` for a single server: no hashing and no health record, every request goes to
    /// it as it comes.
    distribution: Option<Box<dyn Distribution>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let servers: Vec<String> = self.members.iter().map(|m| m.server.to_string()).collect();
        f.debug_struct("Fleet").field("servers", &servers).finish()
    }
}

impl Fleet {
    /// A fleet of `servers`, each reached through its endpoint, spread by `distribution`
    /// (`None` for a single server).
    pub(crate) fn new(
        servers: Vec<(MemcacheServer, Endpoint)>,
        distribution: Option<Box<dyn Distribution>>,
        health: impl Fn() -> Health,
    ) -> Self {
        Self {
            members: servers
                .into_iter()
                .map(|(server, endpoint)| Member {
                    server,
                    endpoint: Arc::new(endpoint),
                    health: health(),
                })
                .collect(),
            distribution,
        }
    }

    /// The server that holds `key`.
    fn member(&self, key: &str) -> Result<&Member, StoreError> {
        let at = match &self.distribution {
            Some(distribution) => distribution.server_for(key.as_bytes()),
            None => 0,
        };
        self.members.get(at).ok_or_else(|| {
            StoreError::InvalidConfig(format!(
                "the distribution placed a key on server {at} of a fleet of {}",
                self.members.len()
            ))
        })
    }

    /// Sends `request`, about `key`, to the server that holds `key`; at once 503 if that
    /// server is marked down.
    pub(crate) async fn execute(
        &self,
        key: &str,
        request: &Request<'_>,
    ) -> Result<Reply, StoreError> {
        self.send(self.member(key)?, key, request).await
    }

    /// Sends `request`, about `key`, to `member`, unless it is marked down.
    async fn send(
        &self,
        member: &Member,
        key: &str,
        request: &Request<'_>,
    ) -> Result<Reply, StoreError> {
        if self.distribution.is_none() {
            return member.endpoint.execute(request).await;
        }
        let probe = member
            .health
            .admit(&member.server, Instant::now())
            .map_err(|down| StoreError::Unavailable(Box::new(down)))?;
        if probe {
            // A server being tried again is first asked something harmless: a write sent
            // to a server that is stalled rather than gone would land later, unseen.
            Self::attempt(member, &Request::exists(key)).await?;
        }
        Self::attempt(member, request).await
    }

    /// Sends `request` to `member`, keeping its record.
    async fn attempt(member: &Member, request: &Request<'_>) -> Result<Reply, StoreError> {
        let result = member.endpoint.execute(request).await;
        // Only the server's silence counts against it: a refusal of a configuration or
        // of a runtime says nothing about whether it is up.
        let answered = match &result {
            Ok(_) => true,
            Err(StoreError::Unavailable(_)) => false,
            Err(_) => return result,
        };
        if member.health.record(answered, Instant::now()) {
            member.endpoint.metrics.health(answered);
            if answered {
                tracing::info!(server = %member.server, "memcached server back in service");
            } else {
                tracing::warn!(server = %member.server, "memcached server marked down");
            }
        }
        result
    }

    /// Asks every server a harmless read (of `key`) at once, with the store's timeouts,
    /// and reports each, in the URL's order. A server marked down is not asked before its
    /// retry interval is over: its report is at once that it is down. Marks servers down
    /// and back as any request does.
    pub(crate) async fn ping_each(&self, key: &str) -> Vec<ServerPing> {
        let request = &Request::exists(key);
        let asked = self.members.iter().map(|member| async move {
            ServerPing {
                server: member.server.to_string(),
                result: self.send(member, key, request).await.and_then(|reply| {
                    match reply.status {
                        // A proxy whose backend for this key is down: not an answer.
                        Status::ServerError(why) => Err(StoreError::Unavailable(why.into())),
                        _ => Ok(()),
                    }
                }),
            }
        });
        futures_util::future::join_all(asked).await
    }

    /// Whether a new session may be stored under `key`: its server is not marked down.
    /// (A key the distribution misplaces is accepted, so that its write reports why.) The
    /// key is only made for a fleet: a single server costs nothing here.
    pub(crate) fn accepts<K: Deref<Target = str>>(&self, key: impl FnOnce() -> K) -> bool {
        self.distribution.is_none()
            || self
                .member(&key())
                .map_or(true, |member| member.health.is_up(Instant::now()))
    }
}
