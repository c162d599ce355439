//! The floor: the least a memcached-backed session can cost, as the reference this crate's
//! middleware is measured against (`bench-server floor`).
//!
//! Bare handlers; the cookie `sid=<hex>` names the memcached key `f:<hex>` directly (no
//! signing, no JSON); `/read` is one `mg`, `/incr` one `mg` and one compare-and-swap `ms`
//! (the two round trips a safe write needs); each worker has one pipelined connection. The
//! value is `<counter> <blob>`, about the size of this crate's encoded bench session.
//!
//! The client below is as lean as a pipelined client gets: requests append to one outbox
//! and wait on a oneshot channel, a writer task sends the outbox in one write, a reader task
//! parses replies from one buffer filled by one read each time and answers them in order.
//! It trusts memcached (a bench, not a store): a malformed reply ends the process.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{web, HttpRequest, HttpResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify, OnceCell};

/// A reply: its status line's first two bytes and its data (for `VA`), or the CAS token.
struct Reply {
    code: [u8; 2],
    cas: u64,
    data: Vec<u8>,
}

struct Shared {
    outbox: RefCell<Vec<u8>>,
    waiters: RefCell<VecDeque<oneshot::Sender<Reply>>>,
    wake: Notify,
}

/// One worker's connection.
struct Client(Rc<Shared>);

impl Client {
    async fn open(addr: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let shared = Rc::new(Shared {
            outbox: RefCell::new(Vec::with_capacity(4096)),
            waiters: RefCell::new(VecDeque::with_capacity(256)),
            wake: Notify::new(),
        });
        tokio::task::spawn_local(write_loop(Rc::clone(&shared), write));
        tokio::task::spawn_local(read_loop(Rc::clone(&shared), read));
        Ok(Self(shared))
    }

    /// One round trip, timed as a stage when `STAGES` asks (`stages`).
    async fn call(&self, head: std::fmt::Arguments<'_>, data: Option<&[u8]>) -> Reply {
        super::stages::store(self.round_trip(head, data)).await
    }

    /// Queues one command (`head`, then `data` and `\r\n` if any) and waits for its reply.
    async fn round_trip(&self, head: std::fmt::Arguments<'_>, data: Option<&[u8]>) -> Reply {
        let (tx, rx) = oneshot::channel();
        {
            use std::io::Write as _;
            let mut out = self.0.outbox.borrow_mut();
            out.write_fmt(head).expect("writing to a Vec");
            if let Some(data) = data {
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
        }
        self.0.waiters.borrow_mut().push_back(tx);
        self.0.wake.notify_one();
        rx.await.expect("memcached connection ended")
    }
}

async fn write_loop(shared: Rc<Shared>, mut socket: OwnedWriteHalf) {
    let mut sending = Vec::with_capacity(4096);
    loop {
        if shared.outbox.borrow().is_empty() {
            shared.wake.notified().await;
            continue;
        }
        std::mem::swap(&mut *shared.outbox.borrow_mut(), &mut sending);
        socket
            .write_all(&sending)
            .await
            .expect("writing to memcached");
        sending.clear();
    }
}

async fn read_loop(shared: Rc<Shared>, mut socket: OwnedReadHalf) {
    let mut buf = vec![0; 64 * 1024];
    let (mut start, mut end) = (0, 0);
    loop {
        // Every complete reply in the buffer, then one read for more.
        while let Some((reply, used)) = parse(&buf[start..end]) {
            start += used;
            let waiter = shared.waiters.borrow_mut().pop_front();
            let _ = waiter.expect("a reply nobody asked for").send(reply);
        }
        buf.copy_within(start..end, 0);
        (start, end) = (0, end - start);
        if end == buf.len() {
            buf.resize(2 * end, 0);
        }
        let n = socket.read(&mut buf[end..]).await.expect("reading");
        assert!(n > 0, "memcached closed the connection");
        end += n;
    }
}

/// One complete reply at the start of `buf`, and its length; `None` if incomplete.
fn parse(buf: &[u8]) -> Option<(Reply, usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[..end]).expect("an ASCII reply line");
    let code = [buf[0], buf[1]];
    let mut words = line.split(' ').skip(1);
    let (mut cas, mut len) = (0, 0);
    if &code == b"VA" {
        len = words.next().and_then(|n| n.parse().ok()).expect("VA <len>");
    }
    for flag in words {
        if let Some(token) = flag.strip_prefix('c') {
            cas = token.parse().expect("c<cas>");
        }
    }
    let used = end + 2 + if &code == b"VA" { len + 2 } else { 0 };
    if buf.len() < used {
        return None;
    }
    let data = buf[end + 2..end + 2 + len].to_vec();
    Some((Reply { code, cas, data }, used))
}

thread_local! {
    static CLIENT: Rc<OnceCell<Rc<Client>>> = Rc::new(OnceCell::new());
}

/// This worker's connection to memcached, opened on first use.
async fn client(addr: &str) -> Rc<Client> {
    let cell = CLIENT.with(Rc::clone);
    let client = cell
        .get_or_init(|| async {
            Rc::new(Client::open(addr).await.expect("connecting to memcached"))
        })
        .await;
    Rc::clone(client)
}

/// Where memcached is, as `host:port`.
#[derive(Clone)]
pub struct Addr(pub String);

/// The session id in the request's `sid` cookie, read straight from the header (actix's
/// cookie jar would parse and allocate every cookie).
fn session(request: &HttpRequest) -> Option<&str> {
    let header = request.headers().get("cookie")?.to_str().ok()?;
    header
        .split("; ")
        .find_map(|cookie| cookie.strip_prefix("sid="))
}

async fn login(addr: web::Data<Addr>) -> HttpResponse {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = format!(
        "{:x}{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let value = format!("0 {}", super::blob());
    let reply = client(&addr.0)
        .await
        .call(
            format_args!("ms f:{id} {} T3600\r\n", value.len()),
            Some(value.as_bytes()),
        )
        .await;
    assert_eq!(&reply.code, b"HD");
    HttpResponse::Ok()
        .insert_header(("set-cookie", format!("sid={id}; Path=/")))
        .body("0")
}

/// A live session as read: its counter, its CAS token, and the value, whose counter ends
/// at `space`.
struct Loaded {
    n: u64,
    cas: u64,
    data: Vec<u8>,
    space: usize,
}

/// The session the cookie names; `None` without a live one.
async fn load(client: &Client, id: &str) -> Option<Loaded> {
    let reply = client.call(format_args!("mg f:{id} v c\r\n"), None).await;
    if &reply.code != b"VA" {
        return None;
    }
    let space = reply.data.iter().position(|&b| b == b' ')?;
    let n = std::str::from_utf8(&reply.data[..space])
        .ok()?
        .parse()
        .ok()?;
    Some(Loaded {
        n,
        cas: reply.cas,
        data: reply.data,
        space,
    })
}

async fn read(request: HttpRequest, addr: web::Data<Addr>) -> HttpResponse {
    let Some(id) = session(&request) else {
        return super::unauthorized();
    };
    match load(&*client(&addr.0).await, id).await {
        Some(Loaded { n, .. }) => HttpResponse::Ok().body(n.to_string()),
        None => super::unauthorized(),
    }
}

async fn incr(request: HttpRequest, addr: web::Data<Addr>) -> HttpResponse {
    let Some(id) = session(&request) else {
        return super::unauthorized();
    };
    let client = client(&addr.0).await;
    let Some(Loaded {
        n,
        cas,
        data,
        space,
    }) = load(&client, id).await
    else {
        return super::unauthorized();
    };
    let mut value = (n + 1).to_string().into_bytes();
    value.extend_from_slice(&data[space..]);
    let reply = client
        .call(
            format_args!("ms f:{id} {} C{cas} T3600\r\n", value.len()),
            Some(&value),
        )
        .await;
    if &reply.code != b"HD" {
        return HttpResponse::Conflict().body("conflict");
    }
    HttpResponse::Ok().body((n + 1).to_string())
}

/// The floor's routes.
pub fn routes(app: &mut web::ServiceConfig) {
    app.route("/login", web::get().to(login))
        .route("/incr", web::get().to(incr))
        .route("/read", web::get().to(read))
        .route("/plain", web::get().to(super::plain));
}
