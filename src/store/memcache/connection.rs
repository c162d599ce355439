//! One pipelined TCP connection to memcached, shared by every request of a worker.
//!
//! Requests append to an outbox and wait on a channel; a writer task sends everything
//! queued in one write, and a reader task hands replies back in order (memcached answers a
//! connection's commands in the order it got them). Under load one syscall on each side
//! carries many commands, which is where a round trip per connection loses.
//!
//! One watchdog task per connection keeps the I/O timeout: replies come in order, so only
//! the oldest waiting request can be the first to run late, and when it does the
//! connection ends and every waiting request fails with `TimedOut`. One timer per
//! connection rather than a timer-wheel entry per command: with debug spans left out when
//! nobody listens, that saved about 2% of a request's instructions.
//!
//! Nothing from the wire is trusted: each reply must echo its request's opaque token (but
//! a tokenless `SERVER_ERROR`, the oldest request's failure, as in the text protocol, where
//! it can be one), an error line otherwise or a reply nobody asked for ends the connection (every waiting
//! request fails; nobody can know how many lines are still coming), and lines and values
//! are bounded before anything is allocated for them.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

use super::handshake::{
    after_probe, after_read_probe, after_version, AfterRead, Next, Probe, READ_PROBE,
};
use super::mailbox::{self, Mailbox, Receiver, Sender};
use super::meta::{Line, STORING};
use super::protocol::{short, Op, Protocol, Request, Spoken, Status, MAX_ITEM_CEILING};
use crate::metrics::ServerMetrics;

/// Longest reply line accepted: keys are at most 250 bytes, so a real reply line is far
/// shorter; a line without an end is not buffered without bound.
const MAX_LINE: usize = 4096;

/// How long a connection is idle before TCP keepalive probes it (see `connect`).
const KEEPALIVE_AFTER: Duration = Duration::from_secs(60);

/// A reply: its status and, for `VA`, the data.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: Status,
    pub(crate) data: Vec<u8>,
}

/// A request written or queued, waiting for its reply.
struct Waiter {
    opaque: u32,
    /// A set, the only command `SERVER_ERROR object too large` can answer.
    set: bool,
    /// What was asked, and (text protocol reads only) of which key: a text reply is
    /// checked against them.
    op: Op,
    key: Option<Rc<str>>,
    /// Its place among the requests this connection has queued.
    seq: u64,
    /// When it fails with `TimedOut` if its reply has not come: `io_timeout` after it was
    /// queued, moved to `io_timeout` after the writer took its bytes (at most one more).
    deadline: Instant,
    reply: Sender<io::Result<Reply>>,
}

/// State the request side shares with the two tasks.
struct Shared {
    /// Bytes not yet written.
    outbox: RefCell<Vec<u8>>,
    /// In order: who gets the next reply.
    waiters: RefCell<VecDeque<Waiter>>,
    /// Where the replies wait for their requests.
    mailbox: Rc<Mailbox<io::Result<Reply>>>,
    wake_writer: Notify,
    /// Told when a request is queued, so the watchdog watches it.
    wake_watchdog: Notify,
    /// How long a request waits for its reply.
    io_timeout: Duration,
    next_opaque: Cell<u32>,
    /// Requests queued, and of those, how many the writer has taken.
    queued: Cell<u64>,
    taken: Cell<u64>,
    /// Why the connection died, once it has; it then takes no more requests.
    failed: RefCell<Option<(io::ErrorKind, Rc<str>)>>,
    /// The writer, reader and watchdog, stopped when the connection dies.
    tasks: RefCell<Vec<AbortHandle>>,
    /// Largest value kept from a reply; a larger one is read past (see `read_value`).
    max_value: usize,
    spoken: Spoken,
}

impl Shared {
    /// Ends the connection: marks it dead, fails every request still waiting, and stops
    /// its tasks (which closes the socket).
    fn fail(&self, kind: io::ErrorKind, why: &str) {
        self.end(kind, why, |why| why.into());
    }

    /// [`fail`](Self::fail), each waiting request's error made by `error` from `why`.
    fn end(
        &self,
        kind: io::ErrorKind,
        why: &str,
        error: impl Fn(String) -> Box<dyn std::error::Error + Send + Sync>,
    ) {
        let (kind, why) = self
            .failed
            .borrow_mut()
            .get_or_insert_with(|| (kind, why.into()))
            .clone();
        for waiter in self.waiters.borrow_mut().drain(..) {
            waiter
                .reply
                .send(Err(io::Error::new(kind, error(why.to_string()))));
        }
        for task in self.tasks.borrow().iter() {
            task.abort();
        }
    }
}

pub(crate) struct Connection {
    shared: Rc<Shared>,
}

impl Connection {
    /// Connects, settles which protocol to speak (`protocol`, or for `Auto` what the
    /// server proves: see `handshake`), and starts the writer, reader and watchdog tasks on
    /// this thread's `LocalSet` (every actix worker runs one). Each request then gets its
    /// reply, or an error, within `io_timeout` of the writer taking it (at most twice
    /// `io_timeout` of its queuing: see `write_loop`). The connection counts in `metrics`
    /// while its reader runs. Also returns why it speaks what it speaks, for the log.
    /// `connect_by` bounds each connect's tries of the host's addresses (see `connect`);
    /// the caller bounds the whole.
    ///
    /// # Errors
    /// I/O errors; `Unsupported` for a server this client cannot use as configured (too
    /// old for a forced meta protocol, or not memcached), or outside a `LocalSet`.
    pub(crate) async fn open(
        host: &str,
        port: u16,
        waits: (Duration, Duration, Instant),
        max_value: usize,
        protocol: Protocol,
        metrics: &ServerMetrics,
    ) -> io::Result<(Self, String)> {
        let (stream, spoken, why) = settle(host, port, protocol, waits).await?;
        let io_timeout = waits.0;
        let (read, write) = stream.into_split();
        let shared = Rc::new(Shared {
            outbox: RefCell::new(Vec::with_capacity(4096)),
            waiters: RefCell::new(VecDeque::new()),
            mailbox: Rc::default(),
            wake_writer: Notify::new(),
            wake_watchdog: Notify::new(),
            io_timeout,
            next_opaque: Cell::new(0),
            queued: Cell::new(0),
            taken: Cell::new(0),
            failed: RefCell::new(None),
            tasks: RefCell::new(Vec::new()),
            max_value,
            spoken,
        });
        let open = metrics.connection();
        let reader = Rc::clone(&shared);
        let tasks = spawn_local_tasks(
            write_loop(Rc::clone(&shared), write),
            async move {
                let _open = open;
                read_loop(reader, read).await;
            },
            watchdog(Rc::clone(&shared)),
        )?;
        *shared.tasks.borrow_mut() = tasks.iter().map(JoinHandle::abort_handle).collect();
        Ok((Self { shared }, why))
    }

    /// The protocol it speaks.
    pub(crate) fn spoken(&self) -> Spoken {
        self.shared.spoken
    }

    /// Whether it still takes requests: not failed, and its tasks still run (they end
    /// with the runtime that spawned them).
    pub(crate) fn is_alive(&self) -> bool {
        self.shared.failed.borrow().is_none()
            && !self
                .shared
                .tasks
                .borrow()
                .iter()
                .any(AbortHandle::is_finished)
    }

    /// Queues `request` with the next opaque token, its reply due `io_timeout` from now (or
    /// later, once the writer takes it: see `write_loop`). Returns the moment it was queued,
    /// and the receiver of its reply or of the error that ended the connection.
    pub(crate) fn send(&self, request: &Request<'_>) -> (Instant, Receiver<io::Result<Reply>>) {
        let (tx, rx) = mailbox::channel(&self.shared.mailbox);
        let queued = Instant::now();
        if let Some((kind, why)) = &*self.shared.failed.borrow() {
            tx.send(Err(io::Error::new(*kind, why.to_string())));
            return (queued, rx);
        }
        let opaque = self.shared.next_opaque.get();
        self.shared.next_opaque.set(opaque.wrapping_add(1));
        let spoken = self.shared.spoken;
        let outbox = &mut self.shared.outbox.borrow_mut();
        match spoken {
            Spoken::Meta => super::meta::write(request, outbox, opaque),
            Spoken::Text => super::text::write(request, outbox),
        }
        let reads = matches!(request.op, Op::Get | Op::Exists);
        let seq = self.shared.queued.get();
        self.shared.queued.set(seq + 1);
        self.shared.waiters.borrow_mut().push_back(Waiter {
            opaque,
            set: request.is_set(),
            op: request.op,
            key: (spoken == Spoken::Text && reads).then(|| request.key.into()),
            seq,
            deadline: queued + self.shared.io_timeout,
            reply: tx,
        });
        self.shared.wake_writer.notify_one();
        self.shared.wake_watchdog.notify_one();
        (queued, rx)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.fail(
            io::ErrorKind::ConnectionAborted,
            "memcached connection closed",
        );
    }
}

/// Opens a stream and settles its protocol: asks `version`, and where that names a meta
/// protocol that is complete, the meta no-op `mn`. A server that fails that proof (a proxy
/// closes the connection) gets the text protocol on a second stream: whatever it answered
/// may have left the first out of step. Where the meta protocol is configured, it is
/// refused instead; a connection closed at the probe is tried once more first, since a
/// memcached restarting between the two commands closes it too. One closed at `version`
/// twice is asked a read on a new stream instead: a proxy without `version` answers it
/// (see `after_read_probe`).
async fn settle(
    host: &str,
    port: u16,
    protocol: Protocol,
    (io_timeout, probe_wait, connect_by): (Duration, Duration, Instant),
) -> io::Result<(TcpStream, Spoken, String)> {
    let mut line = Vec::with_capacity(64);
    let mut probes = 0;
    let mut closed_at_version = false;
    let fallback = loop {
        let mut stream = connect(host, port, connect_by).await?;
        match ask(&mut stream, b"version\r\n", &mut line, io_timeout).await {
            Ok(()) => {}
            Err(e) if closed(&e) && !closed_at_version => {
                closed_at_version = true;
                continue;
            }
            Err(e) if closed(&e) => break Fallback::ReadProbe,
            Err(e) => return Err(e),
        }
        let why = match after_version(protocol, &line) {
            Next::Speak(Protocol::Meta, why) => return Ok((stream, Spoken::Meta, why)),
            Next::Speak(_, why) => return Ok((stream, Spoken::Text, why)),
            Next::Refuse(why) => return Err(refused(why)),
            Next::Busy(why) => return Err(busy(why)),
            Next::ProbeMeta(why) => why,
        };
        probes += 1;
        let probe = match ask(&mut stream, b"mn\r\n", &mut line, probe_wait).await {
            Ok(()) => Probe::Answered(&line[..]),
            Err(e) if closed(&e) => Probe::Closed,
            // A line past the limit or without its `\r` is no meta answer either: say what
            // it was.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Probe::Answered(&line[..]),
            // Answered `version` but not this: a proxy that ignores the command, or a
            // server slow for a moment; text works with either. A forced meta protocol
            // waits for an answer (503 meanwhile): a slow server may give it.
            Err(e) if e.kind() == io::ErrorKind::TimedOut && protocol == Protocol::Auto => {
                Probe::Silent
            }
            Err(e) => return Err(e),
        };
        let hung_up = matches!(probe, Probe::Closed);
        match after_probe(protocol, probe) {
            Ok(()) => return Ok((stream, Spoken::Meta, why)),
            Err(Next::Refuse(_)) if hung_up && probes == 1 => {}
            Err(Next::Refuse(why)) => return Err(refused(why)),
            // Only the text protocol is left: on a new stream.
            Err(Next::Speak(_, why) | Next::ProbeMeta(why) | Next::Busy(why)) => {
                break Fallback::Text(why)
            }
        }
    };
    let mut stream = connect(host, port, connect_by).await?;
    match fallback {
        Fallback::Text(why) => {
            ask(&mut stream, b"version\r\n", &mut line, io_timeout).await?;
            match after_version(Protocol::Text, &line) {
                Next::Refuse(why) => Err(refused(why)),
                Next::Busy(why) => Err(busy(why)),
                Next::Speak(..) | Next::ProbeMeta(_) => Ok((stream, Spoken::Text, why)),
            }
        }
        Fallback::ReadProbe => {
            ask(&mut stream, READ_PROBE, &mut line, io_timeout).await?;
            match after_read_probe(protocol, &line) {
                // A value (of a key nobody else uses, set all the same) leaves this stream
                // out of step: the next, on the path proven.
                AfterRead::Text {
                    why,
                    out_of_step: true,
                } => Ok((connect(host, port, connect_by).await?, Spoken::Text, why)),
                AfterRead::Text { why, .. } => Ok((stream, Spoken::Text, why)),
                AfterRead::Refuse(why) => Err(refused(why)),
                AfterRead::Busy(why) => Err(busy(why)),
            }
        }
    }
}

/// What `settle` asks on a new stream when the first did not settle a protocol.
enum Fallback {
    /// `version` again, then the text protocol (why, for the log).
    Text(String),
    /// A read: the first closed at `version` twice (see `after_read_probe`).
    ReadProbe,
}

/// Connects to the first of `host`'s addresses to accept (see `first_to_accept`).
async fn connect(host: &str, port: u16, by: Instant) -> io::Result<TcpStream> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let stream = first_to_accept(&addresses, by).await?;
    // Writes are already batched; waiting to coalesce more would only add latency.
    stream.set_nodelay(true)?;
    // Probes after a minute idle: a firewall or NAT that forgets quiet flows (many do
    // after five to fifteen minutes) keeps this one. (The probes' spacing and count stay
    // the system's: setting them is not portable.)
    let keepalive = socket2::TcpKeepalive::new().with_time(KEEPALIVE_AFTER);
    socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
    // Closed with a reset, its unsent bytes discarded: a connection closes when it failed
    // (a timeout answered its requests 503) or is dropped, and a write the kernel still
    // held must not reach memcached later, when the network heals (minutes, retransmitted).
    stream.set_zero_linger()?;
    Ok(stream)
}

/// Tries `addresses` in turn, each within an equal share of the time left until `by`
/// (the last one all of it), and returns the first connection made, or the last error.
/// An address that drops packets (a stale address listed first, one a firewall drops
/// silently) costs its share rather than the whole connect timeout, and the next is
/// tried; one that refuses costs nothing.
async fn first_to_accept(addresses: &[SocketAddr], by: Instant) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    for (tried, address) in addresses.iter().enumerate() {
        let left = u32::try_from(addresses.len() - tried).unwrap_or(u32::MAX);
        let share = by.saturating_duration_since(Instant::now()) / left;
        last = match tokio::time::timeout(share, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => e,
            Err(_) => timed_out(&format!("connecting to {address}")),
        };
    }
    Err(last)
}

/// Sends `command` and reads its one-line answer into `line`, within `io_timeout`.
async fn ask(
    stream: &mut TcpStream,
    command: &[u8],
    line: &mut Vec<u8>,
    io_timeout: Duration,
) -> io::Result<()> {
    let exchange = async {
        stream.write_all(command).await?;
        read_line(&mut BufReader::new(&mut *stream), line).await
    };
    match tokio::time::timeout(io_timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(timed_out("waiting for memcached's handshake")),
    }
}

/// Whether `e` says the peer closed the connection.
fn closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

fn refused(why: String) -> io::Error {
    tracing::error!(%why, "memcached refused");
    io::Error::new(io::ErrorKind::Unsupported, why)
}

/// A server that turned the connection away for now: unavailable, like one that is down.
fn busy(why: String) -> io::Error {
    tracing::warn!(%why, "memcached busy");
    io::Error::new(io::ErrorKind::ConnectionRefused, why)
}

/// Spawns the tasks on this thread's `LocalSet`. tokio has no fallible `spawn_local`, so
/// its panic outside a `LocalSet` is caught and becomes an error.
fn spawn_local_tasks(
    a: impl std::future::Future<Output = ()> + 'static,
    b: impl std::future::Future<Output = ()> + 'static,
    c: impl std::future::Future<Output = ()> + 'static,
) -> io::Result<[JoinHandle<()>; 3]> {
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        [
            tokio::task::spawn_local(a),
            tokio::task::spawn_local(b),
            tokio::task::spawn_local(c),
        ]
    }))
    .map_err(|_| io::Error::new(io::ErrorKind::Unsupported, NO_LOCAL_SET))
}

/// Sleeps until the oldest waiting request's deadline; if that request is still waiting
/// then, memcached stopped answering: the connection ends. (A later request's deadline is
/// later: one timer serves them all.)
async fn watchdog(shared: Rc<Shared>) {
    while shared.failed.borrow().is_none() {
        let oldest = shared
            .waiters
            .borrow()
            .front()
            .map(|w| (w.opaque, w.deadline));
        let Some((opaque, deadline)) = oldest else {
            shared.wake_watchdog.notified().await;
            continue;
        };
        tokio::time::sleep_until(deadline).await;
        let late = shared
            .waiters
            .borrow()
            .front()
            .is_some_and(|w| w.opaque == opaque && w.deadline == deadline);
        if late {
            let e = timed_out("waiting for memcached's reply");
            tracing::warn!(error = %e, "memcached connection ended");
            shared.fail(e.kind(), &e.to_string());
        }
    }
}

pub(crate) const NO_LOCAL_SET: &str =
    "MemcacheStore must run on actix's runtime or inside a tokio LocalSet";

/// Writes what is queued, in batches. The time limit of each request it takes starts
/// afresh: a worker thread stalled between queuing and writing (an overloaded machine)
/// has not been waiting for memcached. A request still in the outbox behind a write that
/// does not end keeps its limit from when it was queued, so memcached not reading (it may
/// answer a large set before reading it) ends the connection in time. Deadlines stay in
/// queue order (a request queued after a take is due after those taken), so the watchdog
/// need only watch the oldest.
async fn write_loop(shared: Rc<Shared>, mut socket: OwnedWriteHalf) {
    let mut sending = Vec::with_capacity(4096);
    while shared.failed.borrow().is_none() {
        if shared.outbox.borrow().is_empty() {
            shared.wake_writer.notified().await;
            continue;
        }
        std::mem::swap(&mut *shared.outbox.borrow_mut(), &mut sending);
        // The requests queued since the last take are those whose bytes these are.
        let from = shared.taken.replace(shared.queued.get());
        let restart = Instant::now() + shared.io_timeout;
        for waiter in shared.waiters.borrow_mut().iter_mut().rev() {
            if waiter.seq < from {
                break;
            }
            let longest = waiter.deadline + shared.io_timeout;
            waiter.deadline = waiter.deadline.max(restart.min(longest));
        }
        if let Err(e) = socket.write_all(&sending).await {
            shared.fail(e.kind(), &format!("writing to memcached: {e}"));
            return;
        }
        sending.clear();
    }
}

async fn read_loop(shared: Rc<Shared>, socket: OwnedReadHalf) {
    let mut socket = BufReader::with_capacity(16 * 1024, socket);
    let mut line = Vec::with_capacity(64);
    loop {
        let read = match shared.spoken {
            Spoken::Meta => read_reply(&mut socket, &mut line, shared.max_value).await,
            Spoken::Text => read_text_reply(&mut socket, &mut line, &shared).await,
        };
        let (opaque, reply) = match read {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                tracing::error!(error = %e, "memcached connection ended");
                let oldest = shared.waiters.borrow_mut().pop_front();
                return unreadable(&shared, oldest, &e.to_string());
            }
            Err(e) => {
                tracing::warn!(error = %e, "memcached connection ended");
                shared.fail(e.kind(), &e.to_string());
                return;
            }
        };
        let Some(waiter) = shared.waiters.borrow_mut().pop_front() else {
            return out_of_step(&shared, None, "a reply nobody asked for");
        };
        let in_step = match (&reply.status, shared.spoken) {
            (Status::TooLarge, _) => waiter.set,
            // A `SERVER_ERROR` line carries no token: the oldest request's, in order, but
            // one about storing an item answers a write only.
            (Status::ServerError(why), Spoken::Meta) => waiter.set || !why.contains(STORING),
            // Checked against this waiter's request as it was read.
            (_, Spoken::Text) => true,
            (_, Spoken::Meta) => opaque == Some(waiter.opaque),
        };
        if !in_step {
            return out_of_step(&shared, Some(waiter), "a reply for another request");
        }
        // A receiver that timed out is gone; its reply is consumed all the same, so the
        // next reply still goes to the right request.
        waiter.reply.send(Ok(reply));
    }
}

/// The stream no longer matches the requests: end the connection, failing `waiter` too.
fn out_of_step(shared: &Shared, waiter: Option<Waiter>, what: &str) {
    let why = format!("memcached sent {what}; connection out of step, closed");
    tracing::error!(%why);
    unreadable(shared, waiter, &why);
}

/// Ends the connection on a reply this client cannot read: `culprit`, the request whose
/// reply it was (in order), fails with `InvalidData`, and counts against the server; the
/// requests behind it, whose replies go with the connection, fail with `InvalidData` too,
/// carrying [`Behind`], which counts neither way (see `Fleet::attempt`): one bad line is
/// one failure, however many requests were in flight.
fn unreadable(shared: &Shared, culprit: Option<Waiter>, why: &str) {
    if let Some(waiter) = culprit {
        waiter
            .reply
            .send(Err(io::Error::new(io::ErrorKind::InvalidData, why)));
    }
    shared.end(io::ErrorKind::InvalidData, why, |why| Box::new(Behind(why)));
}

/// A request that lost its reply with a connection another request's unreadable reply
/// ended: nothing it asked was in question.
#[derive(Debug, thiserror::Error)]
#[error("{0} (with another request's reply)")]
pub(crate) struct Behind(pub(super) String);

/// Reads one line into `line` (without `\r\n`), at most [`MAX_LINE`] bytes.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    socket: &mut R,
    line: &mut Vec<u8>,
) -> io::Result<()> {
    line.clear();
    let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX);
    socket.take(limit).read_until(b'\n', line).await?;
    if line.strip_suffix(b"\r\n").is_none() {
        return Err(if line.ends_with(b"\n") {
            invalid("memcached reply line ends in a bare newline, not \\r\\n".to_owned())
        } else if line.len() >= MAX_LINE {
            invalid(format!("memcached reply line longer than {MAX_LINE} bytes"))
        } else {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "memcached closed the connection",
            )
        });
    }
    line.truncate(line.len() - 2);
    Ok(())
}

async fn read_reply(
    socket: &mut BufReader<OwnedReadHalf>,
    line: &mut Vec<u8>,
    max_value: usize,
) -> io::Result<(Option<u32>, Reply)> {
    read_line(socket, line).await?;
    let Line { status, opaque } = Line::parse(line).map_err(|fatal| invalid(fatal.0))?;
    let (status, data) = read_value(socket, status, max_value).await?;
    Ok((opaque, Reply { status, data }))
}

/// A text-protocol reply, parsed for the request it should answer (the oldest waiting):
/// a `VALUE` must name its key and end with `END`.
async fn read_text_reply(
    socket: &mut BufReader<OwnedReadHalf>,
    line: &mut Vec<u8>,
    shared: &Shared,
) -> io::Result<(Option<u32>, Reply)> {
    read_line(socket, line).await?;
    let Some((op, key)) = shared
        .waiters
        .borrow()
        .front()
        .map(|w| (w.op, w.key.clone()))
    else {
        return Err(invalid(format!(
            "memcached sent a reply nobody asked for: {:?}",
            short(&String::from_utf8_lossy(line))
        )));
    };
    let status = super::text::parse(line, op, key.as_deref().unwrap_or_default())
        .map_err(|fatal| invalid(fatal.0))?;
    let (status, data) = read_value(socket, status, shared.max_value).await?;
    if matches!(status, Status::Value { .. } | Status::Oversized { .. }) {
        read_line(socket, line).await?;
        if line != b"END" {
            return Err(invalid(format!(
                "memcached sent {:?} where END should follow a value",
                short(&String::from_utf8_lossy(line))
            )));
        }
    }
    Ok((None, Reply { status, data }))
}

/// The data block a `Value` status announces, bounded by `max_value` before anything is
/// allocated; empty for any other status. A value over `max_value` is read past, not kept,
/// and its status becomes `Oversized`: the stream stays in step, so the requests queued
/// behind it are not failed with it.
async fn read_value(
    socket: &mut BufReader<OwnedReadHalf>,
    status: Status,
    max_value: usize,
) -> io::Result<(Status, Vec<u8>)> {
    let mut data = Vec::new();
    if let Status::Value { len, .. } = status {
        if len > max_value {
            skip_value(socket, len).await?;
            return Ok((Status::Oversized { len }, data));
        }
        // Read into spare capacity: zeroing it first cost as much as the copy.
        let want = len + 2;
        data.reserve_exact(want);
        let mut block = (&mut *socket).take(want as u64);
        while data.len() < want {
            if block.read_buf(&mut data).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        if !data.ends_with(b"\r\n") {
            return Err(invalid("memcached value not followed by \\r\\n".into()));
        }
        data.truncate(len);
    }
    Ok((status, data))
}

/// Reads past a value of `len` bytes and the `\r\n` after it, keeping nothing. Past what
/// any memcached stores, the length is not believed: the connection ends.
async fn skip_value(socket: &mut BufReader<OwnedReadHalf>, len: usize) -> io::Result<()> {
    if len > MAX_ITEM_CEILING {
        return Err(invalid(format!(
            "memcached announced a {len}-byte value, over any memcached's item limit"
        )));
    }
    // Straight out of the reader's own buffer: no second buffer to copy through.
    let mut block = (&mut *socket).take(len as u64);
    if tokio::io::copy_buf(&mut block, &mut tokio::io::sink()).await? < len as u64 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut end = [0u8; 2];
    socket.read_exact(&mut end).await?;
    if end != *b"\r\n" {
        return Err(invalid("memcached value not followed by \\r\\n".into()));
    }
    Ok(())
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

pub(crate) fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("timed out {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads every line of `bytes` through a reader of `capacity` bytes, as `read_line`
    /// hands them out, up to the first error.
    async fn lines(bytes: &[u8], capacity: usize) -> (Vec<Vec<u8>>, Option<io::Error>) {
        let mut socket = BufReader::with_capacity(capacity, bytes);
        let (mut read, mut line) = (Vec::new(), Vec::new());
        loop {
            match read_line(&mut socket, &mut line).await {
                Ok(()) => read.push(line.clone()),
                Err(e) => return (read, Some(e)),
            }
        }
    }

    /// Dropped, a connection resets rather than drains: memcached never receives what
    /// its kernel still held.
    #[actix_web::test]
    async fn a_closed_connection_is_reset_not_drained() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let by = Instant::now() + Duration::from_secs(5);
        let stream = connect("127.0.0.1", port, by).await.unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        accepted
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        drop(stream);
        let read = std::io::Read::read(&mut accepted, &mut [0u8; 1]);
        assert_eq!(
            read.map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionReset)
        );
    }

    /// A loopback address that drops connection attempts, as a stale address does: a
    /// listener whose queue of connections not yet accepted is full (Linux then drops a
    /// new SYN). Returns it, with what must live while it is used.
    async fn dropping_packets() -> (SocketAddr, tokio::net::TcpListener, Vec<TcpStream>) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let address = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        for _ in 0..16 {
            let wait = Duration::from_millis(200);
            match tokio::time::timeout(wait, TcpStream::connect(address)).await {
                Ok(stream) => queued.push(stream.unwrap()),
                Err(_) => return (address, listener, queued),
            }
        }
        panic!("the listener's queue never filled: no address dropping packets to test with");
    }

    /// A name's first address that drops packets costs its share of the connect timeout,
    /// and the next address is tried within the rest. (The first took all of it.)
    #[actix_web::test]
    async fn an_address_dropping_packets_leaves_time_for_the_next() {
        let (dropping, _listener, _queued) = dropping_packets().await;
        let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let live_address = live.local_addr().unwrap();
        let started = Instant::now();
        let by = started + Duration::from_secs(2);
        let stream = first_to_accept(&[dropping, live_address], by)
            .await
            .expect("the second address accepts");
        assert_eq!(stream.peer_addr().unwrap(), live_address);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900),
            "the first had its share: {took:?}"
        );
        assert!(
            took < Duration::from_millis(1800),
            "not all of it: {took:?}"
        );
        let soon = Instant::now() + Duration::from_millis(300);
        let e = first_to_accept(&[dropping], soon)
            .await
            .expect_err("it drops packets");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        let none = first_to_accept(&[], by).await.expect_err("no address");
        assert_eq!(none.kind(), io::ErrorKind::NotFound, "{none}");
    }

    #[actix_web::test]
    async fn a_line_reads_the_same_whole_or_in_pieces() {
        let bytes = b"VA 2 c1 O0\r\nHD O1\r\n\r\nEN O2\r\n";
        for capacity in [1, 2, 3, 7, 12, 13, 64, 8192] {
            let (read, end) = lines(bytes, capacity).await;
            assert_eq!(
                read,
                [&b"VA 2 c1 O0"[..], b"HD O1", b"", b"EN O2"],
                "capacity {capacity}"
            );
            let end = end.unwrap();
            assert_eq!(end.kind(), io::ErrorKind::UnexpectedEof, "{end}");
        }
    }

    #[actix_web::test]
    async fn a_line_past_the_limit_is_refused_whole_or_in_pieces() {
        // After a short line, so that the long one is already buffered when its read begins
        // (or, with the smaller buffers, only its start).
        let line =
            |len: usize| [b"HD O1\r\n".to_vec(), vec![b'a'; len - 2], b"\r\n".to_vec()].concat();
        for capacity in [100, MAX_LINE, 3 * MAX_LINE] {
            let (read, _) = lines(&line(MAX_LINE), capacity).await;
            assert_eq!(read.len(), 2, "capacity {capacity}");
            let (read, end) = lines(&line(MAX_LINE + 1), capacity).await;
            assert_eq!(read, [b"HD O1"], "capacity {capacity}");
            let end = end.unwrap();
            assert_eq!(end.kind(), io::ErrorKind::InvalidData, "{end}");
            assert!(end.to_string().contains("longer than"), "{end}");
        }
    }

    #[actix_web::test]
    async fn a_line_cut_short_or_without_its_carriage_return_is_refused() {
        for (bytes, kind) in [
            (&b"HD O1"[..], io::ErrorKind::UnexpectedEof),
            (b"HD O1\r", io::ErrorKind::UnexpectedEof),
            // The server sent a whole line, wrongly ended: a broken reply, not a hang-up.
            (b"HD O1\n", io::ErrorKind::InvalidData),
            (b"HD O1\n\r\n", io::ErrorKind::InvalidData),
        ] {
            let (read, end) = lines(bytes, 8192).await;
            assert!(read.is_empty(), "{bytes:?}");
            assert_eq!(end.unwrap().kind(), kind, "{bytes:?}");
        }
        // At the limit, a line wrongly ended is still told apart from one too long.
        let mut longest = vec![b'x'; MAX_LINE - 1];
        longest.push(b'\n');
        let (_, end) = lines(&longest, 8192).await;
        assert!(end.unwrap().to_string().contains("bare newline"));
    }
}
