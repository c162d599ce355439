//! One pipelined TCP connection to memcached, shared by every request of a worker.
//!
//! Requests append to an outbox and wait on a channel; a writer task sends everything
//! queued in one write, and a reader task hands replies back in order (memcached answers a
//! connection's commands in the order it got them). Under load one syscall on each side
//! carries many commands, which is where a round trip per connection loses.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use super::protocol::{Request, Status};

/// A reply: its status line and, for `VA`, the data.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: Status,
    pub(crate) data: Vec<u8>,
}

type Waiter = oneshot::Sender<io::Result<Reply>>;

/// State the request side shares with the two tasks.
struct Shared {
    /// Bytes not yet written.
    outbox: RefCell<Vec<u8>>,
    /// One per request written or queued, in order: who gets the next reply.
    waiters: RefCell<VecDeque<Waiter>>,
    wake_writer: Notify,
    /// Why the connection died, once it has; it then takes no more requests.
    failed: Cell<Option<io::ErrorKind>>,
}

impl Shared {
    /// Marks the connection dead and fails every request still waiting.
    fn fail(&self, kind: io::ErrorKind) {
        if self.failed.get().is_none() {
            self.failed.set(Some(kind));
        }
        for waiter in self.waiters.borrow_mut().drain(..) {
            let _ = waiter.send(Err(closed(kind)));
        }
        self.wake_writer.notify_one();
    }
}

fn closed(kind: io::ErrorKind) -> io::Error {
    io::Error::new(kind, "memcached connection closed")
}

pub(crate) struct Connection {
    shared: Rc<Shared>,
    tasks: [JoinHandle<()>; 2],
}

impl Connection {
    /// Connects and starts the writer and reader tasks on this thread's `LocalSet` (every
    /// actix worker runs one).
    pub(crate) async fn open(host: &str, port: u16) -> io::Result<Self> {
        let stream = TcpStream::connect((host, port)).await?;
        // Writes are already batched; waiting to coalesce more would only add latency.
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let shared = Rc::new(Shared {
            outbox: RefCell::new(Vec::with_capacity(4096)),
            waiters: RefCell::new(VecDeque::new()),
            wake_writer: Notify::new(),
            failed: Cell::new(None),
        });
        let writer = tokio::task::spawn_local(write_loop(Rc::clone(&shared), write));
        let reader = tokio::task::spawn_local(read_loop(Rc::clone(&shared), read));
        Ok(Self {
            shared,
            tasks: [writer, reader],
        })
    }

    /// Whether it still takes requests: not failed, and its tasks still run (they end
    /// with the runtime that spawned them).
    pub(crate) fn is_alive(&self) -> bool {
        self.shared.failed.get().is_none() && !self.tasks.iter().any(JoinHandle::is_finished)
    }

    /// Queues `request`; the receiver gets its reply, or the error that ended the
    /// connection.
    pub(crate) fn send(&self, request: &Request) -> oneshot::Receiver<io::Result<Reply>> {
        let (tx, rx) = oneshot::channel();
        if let Some(kind) = self.shared.failed.get() {
            let _ = tx.send(Err(closed(kind)));
            return rx;
        }
        self.shared
            .outbox
            .borrow_mut()
            .extend_from_slice(&request.0);
        self.shared.waiters.borrow_mut().push_back(tx);
        self.shared.wake_writer.notify_one();
        rx
    }

    /// Ends the connection: waiting requests fail with `kind`.
    pub(crate) fn kill(&self, kind: io::ErrorKind) {
        self.shared.fail(kind);
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.kill(io::ErrorKind::ConnectionAborted);
    }
}

async fn write_loop(shared: Rc<Shared>, mut socket: OwnedWriteHalf) {
    let mut sending = Vec::with_capacity(4096);
    while shared.failed.get().is_none() {
        if shared.outbox.borrow().is_empty() {
            shared.wake_writer.notified().await;
            continue;
        }
        std::mem::swap(&mut *shared.outbox.borrow_mut(), &mut sending);
        if let Err(e) = socket.write_all(&sending).await {
            shared.fail(e.kind());
            return;
        }
        sending.clear();
    }
}

async fn read_loop(shared: Rc<Shared>, socket: OwnedReadHalf) {
    let mut socket = BufReader::with_capacity(16 * 1024, socket);
    let mut line = Vec::with_capacity(64);
    loop {
        let reply = read_reply(&mut socket, &mut line).await;
        let failed = reply.as_ref().err().map(io::Error::kind);
        let waiter = shared.waiters.borrow_mut().pop_front();
        match (waiter, failed) {
            (Some(waiter), None) => {
                // A receiver that timed out is gone; its reply is consumed all the same,
                // so the next reply still goes to the right request.
                let _ = waiter.send(reply);
            }
            (waiter, failed) => {
                if let Some(waiter) = waiter {
                    let _ = waiter.send(reply);
                }
                // A reply nobody asked for means the stream is out of step.
                shared.fail(failed.unwrap_or(io::ErrorKind::InvalidData));
                return;
            }
        }
    }
}

async fn read_reply(
    socket: &mut BufReader<OwnedReadHalf>,
    line: &mut Vec<u8>,
) -> io::Result<Reply> {
    line.clear();
    socket.read_until(b'\n', line).await?;
    let Some(head) = line.strip_suffix(b"\r\n") else {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "memcached closed the connection mid-reply",
        ));
    };
    let status = Status::parse(head);
    let mut data = Vec::new();
    if let Status::Value { len, .. } = status {
        data.resize(len + 2, 0);
        socket.read_exact(&mut data).await?;
        if !data.ends_with(b"\r\n") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "memcached value not followed by \\r\\n",
            ));
        }
        data.truncate(len);
    }
    Ok(Reply { status, data })
}
