//! Connections to one memcached server, pooled per thread.
//!
//! actix-web runs each worker on its own single-threaded runtime, and a tokio socket
//! belongs to the runtime that opened it. So each worker thread keeps its own pool: no
//! lock on the hot path, and no socket ever waits on another worker's event loop.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::connection::{Connection, Reply};
use super::protocol::{Request, Status};
use crate::store::StoreError;

/// Tells stores apart in the per-thread pool table; clones of a store share a number.
static NEXT_ENDPOINT: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static POOLS: RefCell<HashMap<u64, Rc<Pool>>> = RefCell::new(HashMap::new());
}

/// Where and how to reach one memcached server.
#[derive(Debug)]
pub(crate) struct Endpoint {
    id: u64,
    host: String,
    port: u16,
    max_size: usize,
    connect_timeout: Duration,
    io_timeout: Duration,
}

struct Pool {
    idle: RefCell<Vec<Connection>>,
    /// One permit per connection this thread may have open.
    slots: Semaphore,
}

impl Endpoint {
    pub(crate) fn new(
        host: String,
        port: u16,
        max_size: usize,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> Self {
        Self {
            id: NEXT_ENDPOINT.fetch_add(1, Ordering::Relaxed),
            host,
            port,
            max_size: max_size.max(1),
            connect_timeout,
            io_timeout,
        }
    }

    fn pool(&self) -> Rc<Pool> {
        POOLS.with(|pools| {
            Rc::clone(pools.borrow_mut().entry(self.id).or_insert_with(|| {
                Rc::new(Pool {
                    idle: RefCell::new(Vec::new()),
                    slots: Semaphore::new(self.max_size),
                })
            }))
        })
    }

    /// Runs one request on a pooled connection.
    ///
    /// A connection that fails is dropped together with the idle ones, which are likely
    /// dead too (memcached restarted); if it had been reused, the request is tried once on
    /// a new connection, so a restart costs no request an error once memcached is back.
    pub(crate) async fn execute(&self, request: &Request) -> Result<Reply, StoreError> {
        let pool = self.pool();
        let _slot = timeout(self.io_timeout, pool.slots.acquire())
            .await
            .map_err(|_| unavailable(timed_out("waiting for a free connection")))?
            .map_err(|_| StoreError::Protocol("connection pool closed".into()))?;
        let reused = pool.idle.borrow_mut().pop();
        let was_reused = reused.is_some();
        let mut conn = match reused {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let reply = match self.run(&mut conn, request).await {
            Ok(reply) => reply,
            Err(e) => {
                pool.idle.borrow_mut().clear();
                if !was_reused || e.kind() == io::ErrorKind::TimedOut {
                    return Err(unavailable(e));
                }
                conn = self.connect().await?;
                self.run(&mut conn, request).await.map_err(unavailable)?
            }
        };
        // After a reply it does not understand, the connection may be out of step.
        if !matches!(reply.status, Status::Unexpected(_)) {
            pool.idle.borrow_mut().push(conn);
        }
        Ok(reply)
    }

    async fn connect(&self) -> Result<Connection, StoreError> {
        match timeout(
            self.connect_timeout,
            Connection::open(&self.host, self.port),
        )
        .await
        {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable(timed_out("connecting to memcached"))),
        }
    }

    async fn run(&self, conn: &mut Connection, request: &Request) -> io::Result<Reply> {
        timeout(self.io_timeout, conn.execute(request))
            .await
            .unwrap_or_else(|_| Err(timed_out("waiting for memcached's reply")))
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("timed out {what}"))
}

fn unavailable(e: io::Error) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}
