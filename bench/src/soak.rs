//! The soak test (`scripts/soak.sh`): minutes of mixed session traffic against a real
//! memcached that is killed and restarted at random times, checking on every response
//! that the crate keeps its promises:
//!
//! - no response carries another session's data (each session's owner is checked);
//! - no status but 200, 409 and 503 (and 401 for a session lost with a restart);
//! - committed increments equal the counter: every counter read after a 200 is exactly
//!   the last one known plus the increments acknowledged since, plus at most the increments
//!   answered 503 (their outcome unknown: they may have landed);
//! - a session is lost only across a memcached restart.
//!
//! The app runs in-process (requests go through the middleware and handlers, not a
//! socket); memcached is a real process on a free loopback port, stopped by its pid.
//! Environment: `DURATION` seconds (default 120), `SESSIONS` (default 200).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_memcache_session::{Key, MemcacheSession, MemcacheStore, Session};
use actix_web::cookie::Cookie;
use actix_web::{test, web, App, HttpResponse};

const COUNTER: &str = "counter";
const OWNER: &str = "owner";

fn main() {
    let seconds = env_number("DURATION", 120);
    let sessions = env_number("SESSIONS", 200);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let memcached = Rc::new(RefCell::new(Memcached::start(port)));
    let report = actix_web::rt::System::new().block_on(soak(
        Rc::clone(&memcached),
        Duration::from_secs(seconds),
        sessions,
    ));
    memcached.borrow_mut().stop();
    println!("{report}");
    if report.violations > 0 {
        std::process::exit(1);
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A memcached child process on a fixed port, restartable.
struct Memcached {
    port: u16,
    child: Option<Child>,
}

impl Memcached {
    fn start(port: u16) -> Self {
        let mut m = Self { port, child: None };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("memcached");
        cmd.args([
            "-l",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "0",
            "-m",
            "64",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if std::fs::read_to_string("/proc/self/status")
            .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
        {
            cmd.args(["-u", "root"]);
        }
        self.child = Some(cmd.spawn().expect("memcached (apt-get install memcached)"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "memcached did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the run saw.
#[derive(Default)]
struct Report {
    seconds: f64,
    requests: u64,
    statuses: BTreeMap<(&'static str, u16), u64>,
    restarts: u64,
    lost_with_restart: u64,
    unknown_landed: u64,
    unknown_not_landed: u64,
    violations: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "soak: {:.0} s, {} requests ({:.0}/s), memcached killed and restarted {} times",
            self.seconds,
            self.requests,
            self.requests as f64 / self.seconds,
            self.restarts
        )?;
        for ((route, status), n) in &self.statuses {
            writeln!(f, "  {route:<7} {status}: {n}")?;
        }
        writeln!(
            f,
            "  sessions lost with a restart (then started again): {}",
            self.lost_with_restart
        )?;
        writeln!(
            f,
            "  increments answered 503 that had landed: {}, that had not: {}",
            self.unknown_landed, self.unknown_not_landed
        )?;
        write!(f, "  invariant violations: {}", self.violations)
    }
}

/// One client's view of its session.
struct Client {
    index: usize,
    cookie: Option<Cookie<'static>>,
    /// The counter as last read in a 200, and the increments answered 503 since.
    known: u64,
    unknown: u64,
    /// Restarts seen when the session was last confirmed alive.
    alive_at: u64,
    life: u64,
}

impl Client {
    fn owner(&self) -> String {
        format!("{}-{}", self.index, self.life)
    }
}

async fn soak(memcached: Rc<RefCell<Memcached>>, duration: Duration, sessions: u64) -> Report {
    let port = memcached.borrow().port;
    let store = MemcacheStore::builder(format!("memcache://127.0.0.1:{port}"))
        .io_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .expect("store");
    let app = Rc::new(
        test::init_service(
            App::new()
                .wrap(MemcacheSession::new(store, Key::generate()))
                .route("/login/{owner}", web::get().to(login))
                .route("/read", web::get().to(read))
                .route("/incr", web::get().to(incr))
                .route("/renew", web::get().to(renew)),
        )
        .await,
    );
    let report = Rc::new(RefCell::new(Report::default()));
    let restarts = Rc::new(Cell::new(0u64));
    let started = Instant::now();
    let deadline = started + duration;
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64 | 1);

    let killer = {
        let (restarts, memcached) = (Rc::clone(&restarts), Rc::clone(&memcached));
        actix_web::rt::spawn(async move {
            let mut rng = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
            loop {
                let up = Duration::from_millis(1_000 + rng.below(5_000));
                actix_web::rt::time::sleep(up).await;
                if Instant::now() + Duration::from_secs(1) > deadline {
                    return;
                }
                memcached.borrow_mut().stop();
                restarts.set(restarts.get() + 1);
                actix_web::rt::time::sleep(Duration::from_millis(rng.below(1_000))).await;
                memcached.borrow_mut().spawn();
            }
        })
    };

    let clients = (0..sessions).map(|i| {
        let (app, report, restarts) = (Rc::clone(&app), Rc::clone(&report), Rc::clone(&restarts));
        actix_web::rt::spawn(async move {
            let mut rng = Rng(seed.wrapping_add(i * 7919) | 1);
            let mut client = Client {
                index: i as usize,
                cookie: None,
                known: 0,
                unknown: 0,
                alive_at: 0,
                life: 0,
            };
            while Instant::now() < deadline {
                let route = match (client.cookie.is_some(), rng.below(100)) {
                    (false, _) => "login",
                    (true, 0..=1) => "renew",
                    (true, 2..=31) => "incr",
                    _ => "read",
                };
                let path = match route {
                    "login" => format!("/login/{}", client.owner()),
                    other => format!("/{other}"),
                };
                // A 200 shows the session alive when the request was sent, not when its
                // response is read: a restart may come in between.
                let sent_at = restarts.get();
                let mut req = test::TestRequest::get().uri(&path);
                if let Some(cookie) = &client.cookie {
                    req = req.cookie(cookie.clone());
                }
                let res = test::call_service(&*app, req.to_request()).await;
                let status = res.status().as_u16();
                let cookie = res.response().cookies().next().map(|c| c.into_owned());
                let body = String::from_utf8_lossy(&test::read_body(res).await).into_owned();
                let mut r = report.borrow_mut();
                r.requests += 1;
                *r.statuses.entry((route, status)).or_default() += 1;
                let outcome = Outcome {
                    route,
                    status,
                    body: &body,
                    cookie,
                };
                check(&mut client, &mut r, outcome, sent_at, restarts.get());
            }
        })
    });
    let clients: Vec<_> = clients.collect();
    // A task's panic (a failed `call_service`, memcached not restarting) fails the run: a
    // client that stopped early checks nothing.
    for client in clients {
        client.await.expect("a soak client panicked");
    }
    killer
        .await
        .expect("the task restarting memcached panicked");
    let mut report = Rc::try_unwrap(report)
        .ok()
        .expect("clients done")
        .into_inner();
    // A run in which nothing landed (memcached never back, say) checked no invariant.
    if report.statuses.get(&("incr", 200)).copied().unwrap_or(0) == 0 {
        report.violations += 1;
        eprintln!("VIOLATION: no increment was answered 200");
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.restarts = restarts.get();
    report
}

/// One response.
struct Outcome<'a> {
    route: &'static str,
    status: u16,
    body: &'a str,
    cookie: Option<Cookie<'static>>,
}

/// Checks one response against the invariants and updates the client's view; `sent_at`
/// and `restarts` count memcached's restarts when the request went out and now.
fn check(
    client: &mut Client,
    report: &mut Report,
    outcome: Outcome<'_>,
    sent_at: u64,
    restarts: u64,
) {
    let Outcome {
        route,
        status,
        body,
        cookie,
    } = outcome;
    let mut violation = |why: String| {
        report.violations += 1;
        eprintln!("VIOLATION session {}: {why}", client.index);
    };
    match (route, status) {
        ("login", 200) => {
            client.cookie = cookie;
            (client.known, client.unknown, client.alive_at) = (0, 0, sent_at);
            if client.cookie.is_none() {
                violation("login without a cookie".into());
            }
        }
        (_, 200) => {
            let Some((owner, count)) = body.split_once(':') else {
                return violation(format!("{route}: body {body:?}"));
            };
            if owner != client.owner() {
                return violation(format!("{route}: another session's data {body:?}"));
            }
            let count: u64 = count.parse().unwrap_or(u64::MAX);
            let least = client.known + u64::from(route == "incr");
            if count < least || count > least + client.unknown {
                violation(format!(
                    "{route}: counter {count}, expected {least}..={}",
                    least + client.unknown
                ));
            }
            let resolved = count - least.min(count);
            report.unknown_landed += resolved;
            report.unknown_not_landed += client.unknown.saturating_sub(resolved);
            (client.known, client.unknown, client.alive_at) = (count, 0, sent_at);
            if let Some(cookie) = cookie {
                client.cookie = Some(cookie);
            }
        }
        (_, 401) => {
            if restarts == client.alive_at {
                violation(format!("{route}: session lost without a memcached restart"));
            }
            report.lost_with_restart += 1;
            report.unknown_not_landed += client.unknown;
            client.cookie = None;
            client.life += 1;
        }
        ("incr", 503) => client.unknown += 1,
        (_, 409 | 503) => {}
        (_, other) => violation(format!("{route}: status {other} {body:?}")),
    }
}

async fn login(session: Session, owner: web::Path<String>) -> actix_web::Result<HttpResponse> {
    let p = session.package("soak");
    p.insert(OWNER, owner.into_inner())?;
    p.insert(COUNTER, 0)?;
    Ok(HttpResponse::Ok().finish())
}

/// `owner:counter`, or 401 when the session holds none (a fresh session).
fn state(session: &Session, add: u64) -> actix_web::Result<HttpResponse> {
    let p = session.package("soak");
    let (Some(owner), Some(counter)) = (p.get::<String>(OWNER)?, p.get::<u64>(COUNTER)?) else {
        return Ok(HttpResponse::Unauthorized().finish());
    };
    if add > 0 {
        p.insert(COUNTER, counter + add)?;
    }
    Ok(HttpResponse::Ok().body(format!("{owner}:{}", counter + add)))
}

async fn read(session: Session) -> actix_web::Result<HttpResponse> {
    state(&session, 0)
}

async fn incr(session: Session) -> actix_web::Result<HttpResponse> {
    state(&session, 1)
}

async fn renew(session: Session) -> actix_web::Result<HttpResponse> {
    session.renew();
    state(&session, 0)
}

/// xorshift64*: random intervals and routes, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}
