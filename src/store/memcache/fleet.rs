//! The servers of a store: each key goes to the server its [`Distribution`] names, through
//! that server's own per-worker connections. A server that keeps failing is marked down
//! (see `health`); its keys are never sent anywhere else.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};

use super::connection::{Behind, Reply};
use super::health::Health;
use super::pool::Endpoint;
use super::protocol::{Request, Status};
use super::readiness::ServerPing;
use super::ring::{Distribution, MemcacheServer};
use crate::store::error::StoreError;
use crate::to_completion::finish_elsewhere;

/// Keys a readiness check asks a server after its own, when the server answered that one
/// with `SERVER_ERROR` (a proxy whose backend for it is down): with one backend of three
/// down, all sixteen land on it once in 43 million.
const MORE_PING_KEYS: usize = 16;

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
            .map_err(|down| StoreError::Unavailable(Box::new(down)).not_sent())?;
        if probe {
            // A server being tried again is first asked something harmless: a write sent
            // to a server that is stalled rather than gone would land later, unseen.
            Self::attempt(member, &Request::exists(key))
                .await
                .map_err(StoreError::not_sent)?;
        }
        Self::attempt(member, request).await
    }

    /// Sends `request` to `member`, keeping its record.
    async fn attempt(member: &Member, request: &Request<'_>) -> Result<Reply, StoreError> {
        let result = member.endpoint.execute(request).await;
        // Only the server's failures count against it: a refusal of a configuration or
        // of a runtime says nothing about whether it is up, nor does a request that lost
        // its reply with a connection another request's unreadable reply ended (that
        // one counts, once).
        let answered = match &result {
            Ok(_) => true,
            Err(StoreError::Unavailable(e)) if behind(e.as_ref()) => return result,
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
        let asked = self.members.iter().map(|member| async move {
            ServerPing {
                server: member.server.to_string(),
                result: self.ping(member, key).await,
            }
        });
        futures_util::future::join_all(asked).await
    }

    /// As [`ping_each`](Self::ping_each), but done at the first server that answers: a
    /// server that hangs does not hold up the answer of those that do (the reads still
    /// waiting run on to their end on this thread, and count for their servers' records as
    /// any read would: one may be a marked-down server's retry). The reports of servers
    /// that did not answer, in the URL's order, when none did.
    pub(crate) async fn ping_any(fleet: &Arc<Self>, key: &str) -> Result<(), Vec<ServerPing>> {
        let mut asked: FuturesUnordered<_> = (0..fleet.members.len())
            .map(|at| {
                let (fleet, key) = (Arc::clone(fleet), key.to_owned());
                async move { (at, fleet.ping(&fleet.members[at], &key).await) }
            })
            .collect();
        let mut failed = Vec::new();
        while let Some((at, result)) = asked.next().await {
            match result {
                Ok(()) => {
                    finish_elsewhere(asked.for_each(|_| async {}), "a readiness check's reads");
                    return Ok(());
                }
                Err(e) => failed.push((at, e)),
            }
        }
        failed.sort_by_key(|(at, _)| *at);
        let reports = failed.into_iter().map(|(at, result)| ServerPing {
            server: fleet.members[at].server.to_string(),
            result: Err(result),
        });
        Err(reports.collect())
    }

    /// Whether `member` answers a read of `key`, or of one of [`MORE_PING_KEYS`] others
    /// when it answers `key` with `SERVER_ERROR`: a proxy whose backend for that key is
    /// down, which may serve others (readiness must not follow one backend of many).
    async fn ping(&self, member: &Member, key: &str) -> Result<(), StoreError> {
        // `Some` with a proxy's `SERVER_ERROR` line: no answer for this key.
        let ask = |key: String| async move {
            let reply = self.send(member, &key, &Request::exists(&key)).await?;
            Ok::<_, StoreError>(match reply.status {
                Status::ServerError(why) => Some(why),
                _ => None,
            })
        };
        let Some(why) = ask(key.to_owned()).await? else {
            return Ok(());
        };
        let others = (1..=MORE_PING_KEYS).map(|n| ask(format!("{key}-{n}")));
        let mut others: FuturesUnordered<_> = others.collect();
        while let Some(result) = others.next().await {
            if matches!(result, Ok(None)) {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(why.into()))
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

/// Whether `e` lost its reply with a connection another request's reply ended.
fn behind(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
        .is_some_and(|inner| inner.is::<Behind>())
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    /// Only a request behind another's unreadable reply counts neither way: an abort the
    /// network or the system reports (`ConnectionAborted`) is the server's failure, as is
    /// the unreadable reply itself.
    #[test]
    fn only_a_request_behind_an_unreadable_reply_counts_neither_way() {
        let lost = io::Error::new(io::ErrorKind::InvalidData, Behind("x".into()));
        assert!(behind(&lost));
        for kind in [io::ErrorKind::ConnectionAborted, io::ErrorKind::InvalidData] {
            assert!(!behind(&io::Error::new(kind, "x")), "{kind:?}");
        }
    }
}
