//! A few pipelined connections to one memcached server, per worker thread.
//!
//! actix-web runs each worker on its own single-threaded runtime, and a tokio socket
//! belongs to the runtime that opened it. So each worker thread keeps its own
//! connections: no lock on the hot path, and no socket waits on another worker's event
//! loop. Requests spread over them round-robin.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use foldhash::fast::FixedState;
use tokio::sync::Mutex;
use tokio::time::{timeout_at, Instant};

use super::connection::{timed_out, Connection, Reply, NO_LOCAL_SET};
use super::protocol::{Op, Protocol, Request, Spoken, Status};
use crate::metrics::{Operation, ServerMetrics};
use crate::store::error::StoreError;

/// Tells stores apart in the per-thread table; clones of a store share a number.
static NEXT_ENDPOINT: AtomicU64 = AtomicU64::new(0);

/// This thread's connections per endpoint, with a handle that tells when the store (every
/// clone of it) is gone. Looked up on every request: hashed with foldhash rather than the
/// standard SipHash (about 150 instructions a lookup); the keys are this process's own
/// counters, nothing a client chooses.
type Pools = HashMap<u64, (Weak<Endpoint>, Rc<Pool>), FixedState>;

thread_local! {
    static POOLS: RefCell<Pools> = RefCell::new(HashMap::with_hasher(FixedState::default()));
}

/// Where and how to reach one memcached server.
#[derive(Debug)]
pub(crate) struct Endpoint {
    id: u64,
    host: String,
    port: u16,
    limits: Limits,
    /// The protocol its last new connection chose (0: none yet, else `1 + Spoken`), so the
    /// choice is logged once per server and again only when it changes.
    spoken: AtomicU8,
    pub(crate) metrics: ServerMetrics,
}

/// How many connections a worker keeps to a server, how long to wait, how much to accept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) connections: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) io_timeout: Duration,
    /// Largest value a reply may announce.
    pub(crate) max_value: usize,
    pub(crate) protocol: Protocol,
}

/// This thread's connections to one endpoint.
struct Pool {
    slots: Vec<Slot>,
    next: Cell<usize>,
}

#[derive(Default)]
struct Slot {
    conn: RefCell<Option<Rc<Connection>>>,
    /// Held while (re)connecting, so a burst of requests opens one connection, not many.
    connecting: Mutex<()>,
}

impl Slot {
    fn live(&self) -> Option<Rc<Connection>> {
        self.conn
            .borrow()
            .as_ref()
            .filter(|c| c.is_alive())
            .cloned()
    }
}

impl Endpoint {
    pub(crate) fn new(host: String, port: u16, limits: Limits) -> Self {
        Self {
            id: NEXT_ENDPOINT.fetch_add(1, Ordering::Relaxed),
            metrics: ServerMetrics::server(&host, port),
            host,
            port,
            limits,
            spoken: AtomicU8::new(0),
        }
    }

    fn pool(self: &Arc<Self>) -> Rc<Pool> {
        POOLS.with(|pools| {
            let mut pools = pools.borrow_mut();
            if let Some((_, pool)) = pools.get(&self.id) {
                return Rc::clone(pool);
            }
            // A new store on this thread: drop the connections of stores that are gone.
            pools.retain(|_, (endpoint, _)| endpoint.strong_count() > 0);
            let pool = Rc::new(Pool {
                slots: (0..self.limits.connections)
                    .map(|_| Slot::default())
                    .collect(),
                next: Cell::new(0),
            });
            pools.insert(self.id, (Arc::downgrade(self), Rc::clone(&pool)));
            pool
        })
    }

    /// Runs one request, timed.
    pub(crate) async fn execute(
        self: &Arc<Self>,
        request: &Request<'_>,
    ) -> Result<Reply, StoreError> {
        let started = self.metrics.start();
        let result = self.run(request).await;
        let failed = match &result {
            Err(e) => Some(e.error_type()),
            // A proxy's line for a key whose backend is down: this request fails (503).
            Ok(reply) if matches!(reply.status, Status::ServerError(_)) => Some("unavailable"),
            Ok(_) => None,
        };
        self.metrics
            .operation(operation(request.op), started, failed);
        result
    }

    /// Runs one request.
    ///
    /// A read or touch that fails on a connection opened before it (memcached restarted
    /// since) is sent once more on a new connection, within what is left of its
    /// `io_timeout`, so the first read after a restart already succeeds. A write is never
    /// resent: it may have landed before the connection dropped, and a second
    /// compare-and-swap or add would then report a conflict for a write that was saved, a
    /// second delete remove what was added since; its caller gets 503 instead. A timeout
    /// is not retried: the client gets its 503 within `io_timeout` of the request's write
    /// (twice at most: see the builder's `io_timeout`).
    async fn run(self: &Arc<Self>, request: &Request<'_>) -> Result<Reply, StoreError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::Unsupported(NO_LOCAL_SET.into()));
        }
        let pool = self.pool();
        let n = pool.next.get();
        pool.next.set(n.wrapping_add(1));
        let slot = &pool.slots[n % pool.slots.len()];
        let (conn, fresh) = self.connection(slot).await.map_err(StoreError::not_sent)?;
        // When it was queued: a connection that is not fresh (the only kind a request is
        // resent from) came at once, so also when the request started.
        let (started, reply) = Self::exchange(&conn, request);
        match reply.await {
            Ok(reply) => Ok(reply),
            Err(e) if request.idempotent && !fresh && e.kind() != io::ErrorKind::TimedOut => {
                // Rare, and its timer makes its future large: boxed, so that every
                // operation's future, which each layer above moves, stays small.
                Box::pin(self.resend(slot, request, started)).await
            }
            Err(e) => Err(store_error(e)),
        }
    }

    /// Sends `request` once more, on a new connection, within what is left of the time
    /// limit of the request `started` then: one limit for the request, resend included.
    async fn resend(
        &self,
        slot: &Slot,
        request: &Request<'_>,
        started: Instant,
    ) -> Result<Reply, StoreError> {
        let resend = async {
            let (conn, _) = self.connection(slot).await?;
            let (_, reply) = Self::exchange(&conn, request);
            reply.await.map_err(store_error)
        };
        match timeout_at(started + self.limits.io_timeout, resend).await {
            Ok(result) => result,
            Err(_) => Err(store_error(timed_out(
                "waiting for memcached's reply (resent on a new connection)",
            ))),
        }
    }

    /// The slot's live connection, opening one if needed; `true` if it was opened for
    /// this request.
    async fn connection(&self, slot: &Slot) -> Result<(Rc<Connection>, bool), StoreError> {
        match slot.live() {
            Some(conn) => Ok((conn, false)),
            // Rare, and its futures are large: boxed, so that every operation's future
            // stays under 1 KB, below which glibc serves it from its per-thread caches.
            None => Box::pin(self.connect(slot)).await,
        }
    }

    /// Opens the slot's connection, unless a concurrent request did it meanwhile; within
    /// `connect_timeout` in all, the wait for a concurrent request's attempt included.
    async fn connect(&self, slot: &Slot) -> Result<(Rc<Connection>, bool), StoreError> {
        let limits = &self.limits;
        let deadline = Instant::now() + limits.connect_timeout;
        let _connecting = timeout_at(deadline, slot.connecting.lock())
            .await
            .map_err(|_| store_error(timed_out("waiting to connect to memcached")))?;
        if let Some(conn) = slot.live() {
            return Ok((conn, true));
        }
        // Half the connect timeout at most for the meta no-op's answer: a server that
        // leaves it unanswered is then spoken to in text, reconnected within the rest.
        let probe_wait = limits.io_timeout.min(limits.connect_timeout / 2);
        let open = Connection::open(
            &self.host,
            self.port,
            (limits.io_timeout, probe_wait, deadline),
            limits.max_value,
            limits.protocol,
            &self.metrics,
        );
        let conn = match timeout_at(deadline, open).await {
            Ok(Ok((conn, why))) => {
                self.chose(conn.spoken(), &why);
                Rc::new(conn)
            }
            Ok(Err(e)) => return Err(store_error(e)),
            Err(_) => return Err(store_error(timed_out("connecting to memcached"))),
        };
        *slot.conn.borrow_mut() = Some(Rc::clone(&conn));
        Ok((conn, true))
    }

    /// Logs a new connection's protocol the first time, and when it is not the last one's
    /// (a server restarted as another version, or a proxy put in front of it).
    fn chose(&self, spoken: Spoken, why: &str) {
        let code = 1 + spoken as u8;
        if self.spoken.swap(code, Ordering::Relaxed) != code {
            let server = format!("{}:{}", self.host, self.port);
            tracing::info!(%server, protocol = %spoken, why, "memcached protocol chosen");
        }
    }

    /// Queues `request` now, and returns the moment it was queued and the wait for its
    /// reply, which the connection's watchdog bounds by `io_timeout`: a late reply ends the
    /// connection (later requests get a new one). The wait holds only the reply's receiver.
    fn exchange(
        conn: &Connection,
        request: &Request<'_>,
    ) -> (Instant, impl Future<Output = io::Result<Reply>>) {
        let (queued, reply) = conn.send(request);
        let reply = async move {
            match reply.await {
                Some(reply) => reply,
                None => Err(io::Error::from(io::ErrorKind::ConnectionAborted)),
            }
        };
        (queued, reply)
    }
}

/// How OpenTelemetry names what a request asks.
fn operation(op: Op) -> Operation {
    match op {
        Op::Get | Op::Exists => Operation::Get,
        Op::Add => Operation::Add,
        Op::Cas(_) => Operation::Set,
        Op::Touch => Operation::Touch,
        Op::Delete | Op::DeleteIf(_) => Operation::Delete,
    }
}

/// A server this client cannot use is a configuration problem, said as such; the rest
/// means memcached is unavailable.
fn store_error(e: io::Error) -> StoreError {
    if e.kind() == io::ErrorKind::Unsupported {
        StoreError::Unsupported(e.to_string())
    } else {
        StoreError::Unavailable(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools_on_this_thread() -> usize {
        POOLS.with(|pools| pools.borrow().len())
    }

    #[test]
    fn connections_of_dropped_stores_are_freed() {
        // Nothing listens on port 1: requests fail fast, but each store gets its table entry.
        let endpoint = || {
            Arc::new(Endpoint::new(
                "127.0.0.1".into(),
                1,
                Limits {
                    connections: 1,
                    connect_timeout: Duration::from_secs(1),
                    io_timeout: Duration::from_secs(1),
                    max_value: 1024,
                    protocol: Protocol::Meta,
                },
            ))
        };
        actix_web::rt::System::new().block_on(async {
            for _ in 0..3 {
                let store = endpoint();
                assert!(store.execute(&Request::delete("k")).await.is_err());
            }
            assert_eq!(
                pools_on_this_thread(),
                1,
                "only the last store's entry is left"
            );
            let kept = endpoint();
            kept.execute(&Request::delete("k")).await.unwrap_err();
            let other = endpoint();
            other.execute(&Request::delete("k")).await.unwrap_err();
            assert_eq!(
                pools_on_this_thread(),
                2,
                "live stores keep their connections"
            );
            drop(kept);
        });
    }
}
