//! Random histories: batches of concurrent requests of a few sessions, some of them hung
//! up on by their client, through a network that cuts connections, loses replies and
//! delivers late ([`ChaosProxy`]), to a real memcached. Every answer is checked against
//! what it promised, and at the end, once the network is calm, every session against all
//! the answers it gave:
//!
//! - never another session's data;
//! - a write answered 200 is there (no lost update), one answered with an error is not
//!   (nothing written on an error), one answered 503 or hung up on may be either;
//! - a value written concurrently to one key by several requests ends as one that was not
//!   overwritten by a later 200;
//! - a cookie a renew retired or a purge ended names nothing, ever after (a logout stays
//!   a logout);
//! - a live session is never found empty.
//!
//! And for users, devices logging in as one of three users and signing out everywhere or
//! the others: a device never reads as another user than it logged in as; once a sign-out
//! that reaches it was answered 200 it stays signed out (a logout stays a logout); and a
//! signed-in device loses its user only to a sign-out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_memcache_session::{Key, MemcacheStore, OverLimit, Protocol, SessionHandle};
use actix_web::cookie::Cookie;
use futures_util::future::join_all;
use serde_json::Value;

use crate::app::{Configure, TestApp};
use crate::fake::ChaosProxy;
use crate::memcached::Memcached;
use crate::nutcracker::Nutcracker;
use crate::support::{session_named, CountingStore, Reply, Rng};

const SESSIONS: usize = 6;
/// Requests sent at once in each batch.
const BATCH: usize = 8;
/// Batches in a run; `HISTORY_BATCHES` sets another number, for a longer hunt.
const BATCHES: usize = 150;
/// Of the proxy's draws, about one in this many is each of its faults.
const ODDS: usize = 40;
const IO_TIMEOUT: Duration = Duration::from_millis(150);
/// Longer than the I/O timeout: a command that arrives after its client gave up.
const LATE: Duration = Duration::from_millis(200);

/// What an answer says of its write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Landed,
    NotLanded,
    Maybe,
}

/// A write of the key every request of a session shares.
#[derive(Debug)]
struct SharedWrite {
    value: u64,
    outcome: Outcome,
    sent: Instant,
    answered: Instant,
}

struct Tracked {
    owner: usize,
    cookie: Cookie<'static>,
    /// Cookies a renew retired or a purge ended.
    dead: Vec<Cookie<'static>>,
    /// A purge answered 200.
    ended: bool,
    /// A renew or purge whose outcome is unknown: the cookie may name nothing now.
    doubt: bool,
    /// Each key's value, the outcome of its write and when that was answered.
    keys: BTreeMap<String, (u64, Outcome, Instant)>,
    shared: Vec<SharedWrite>,
}

impl Tracked {
    fn owner_text(&self) -> String {
        self.owner.to_string()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Note(String, u64),
    Shared(u64),
    Dump,
    Renew,
    Purge,
    DeadDump(Cookie<'static>),
}

impl Op {
    /// A renew or a purge: it moves or ends the session.
    fn is_lifecycle(&self) -> bool {
        matches!(self, Op::Renew | Op::Purge)
    }
}

/// The outcome of a write answered `status` with `owner` read before it, by session
/// `tracked` (panics on another session's owner or an answer no write may get).
fn outcome(tracked: &Tracked, answer: Option<(u16, &str)>, excused: bool, what: &str) -> Outcome {
    match answer {
        None | Some((503, _)) => Outcome::Maybe,
        Some((409, _)) => Outcome::NotLanded,
        Some((200, owner)) if owner == tracked.owner_text() => Outcome::Landed,
        Some((200, "none")) => {
            assert!(
                excused,
                "{what}: a live session, not renewed nor purged, read as a new one"
            );
            Outcome::NotLanded
        }
        Some((status, body)) => panic!("{what}: answered {status} {body:?}"),
    }
}

/// Checks a dump of session `tracked` (a JSON object) sent at `sent` (at the end, when
/// `None`): its owner, every write refused, and every write answered 200 before it was
/// sent; at the end, the shared key.
fn check_dump(tracked: &Tracked, body: &str, excused: bool, sent: Option<Instant>, what: &str) {
    let dump: BTreeMap<String, Value> = serde_json::from_str(body).unwrap();
    match dump.get("owner") {
        Some(owner) if owner.as_u64() == Some(tracked.owner as u64) => {}
        Some(other) => panic!("{what}: session {} read owner {other}", tracked.owner),
        None => {
            assert!(excused, "{what}: a live session read as a new one: {body}");
            assert!(dump.is_empty(), "{what}: a new session with data: {body}");
            return;
        }
    }
    for (key, (value, outcome, answered)) in &tracked.keys {
        match (outcome, dump.get(key)) {
            (Outcome::Landed, Some(found)) => assert_eq!(*found, Value::from(*value), "{what}"),
            (Outcome::Landed, None) if sent.is_none_or(|sent| *answered < sent) => {
                panic!("{what}: {key} was answered 200 and is lost: {body}")
            }
            (Outcome::NotLanded, Some(found)) => {
                panic!("{what}: {key} = {found} was answered with an error and written")
            }
            _ => {}
        }
    }
    if sent.is_none() {
        check_shared(tracked, dump.get("shared"), what);
    }
}

/// The key every request shares ends as a write not overwritten by a later 200: one
/// answered 200 or in doubt, and no 200 sent after it was answered.
fn check_shared(tracked: &Tracked, found: Option<&Value>, what: &str) {
    let writes = &tracked.shared;
    let overwritten = |w: &SharedWrite| {
        writes
            .iter()
            .any(|later| later.outcome == Outcome::Landed && later.sent > w.answered)
    };
    match found {
        None => assert!(
            writes.iter().all(|w| w.outcome != Outcome::Landed),
            "{what}: the shared key is gone: {writes:?}"
        ),
        Some(found) => {
            let write = writes
                .iter()
                .find(|w| found.as_u64() == Some(w.value))
                .unwrap_or_else(|| panic!("{what}: shared = {found}, never written"));
            assert_ne!(write.outcome, Outcome::NotLanded, "{what}: {write:?}");
            assert!(
                !overwritten(write),
                "{what}: shared = {found}, overwritten since by a 200: {writes:?}"
            );
        }
    }
}

fn path(op: &Op) -> String {
    match op {
        Op::Note(key, value) => format!("/note/{key}/{value}"),
        Op::Shared(value) => format!("/note/shared/{value}"),
        Op::Dump | Op::DeadDump(_) => "/dump/p".to_owned(),
        Op::Renew => "/renew".to_owned(),
        Op::Purge => "/purge".to_owned(),
    }
}

/// How many answers of each kind the run met, to show it met them.
#[derive(Debug, Default)]
struct Seen {
    landed: usize,
    refused: usize,
    in_doubt: usize,
    hung_up: usize,
    renewed: usize,
    purged: usize,
    dead_read: usize,
}

/// Picks a batch: each op for a session still in use, at most one renew or purge per
/// session.
fn pick(rng: &mut Rng, sessions: &[Tracked], next_value: &mut u64) -> Vec<(usize, Op)> {
    let mut ops: Vec<(usize, Op)> = Vec::new();
    let live: Vec<usize> = (0..sessions.len())
        .filter(|&i| !sessions[i].ended)
        .collect();
    while ops.len() < BATCH {
        let i = live[rng.below(live.len())];
        let lifecycle = ops.iter().any(|(j, op)| *j == i && op.is_lifecycle());
        *next_value += 1;
        let op = match rng.below(100) {
            0..=39 => Op::Note(format!("k{next_value}"), *next_value),
            40..=59 => Op::Shared(*next_value),
            60..=79 => Op::Dump,
            80..=89 if !sessions[i].dead.is_empty() => {
                let dead = &sessions[i].dead;
                Op::DeadDump(dead[rng.below(dead.len())].clone())
            }
            80..=96 if !lifecycle => Op::Renew,
            97.. if !lifecycle => Op::Purge,
            _ => continue,
        };
        ops.push((i, op));
    }
    ops
}

/// What the app's store reaches, each server (or proxy) behind its own [`ChaosProxy`].
#[derive(Debug, Clone, Copy)]
enum Backend {
    /// memcached servers (a ketama ring when several), in this protocol.
    Servers(Protocol, usize),
    /// A real twemproxy over two memcached, which speaks the text protocol.
    Nutcracker,
    /// An `r2d2-memcache` pool in the ASCII protocol with a read timeout, the one it
    /// accepts with a timeout (`MemcacheStore::from_r2d2`).
    #[cfg(feature = "r2d2")]
    R2d2,
}

/// The backend's processes, each behind its own [`ChaosProxy`], and the test app on them:
/// one instance, or two in the middle of a key rotation.
struct Rig {
    /// Kept running until the rig is dropped.
    _running: (Vec<Memcached>, Option<Nutcracker>),
    proxies: Vec<ChaosProxy>,
    apps: Vec<TestApp<MemcacheStore>>,
    /// Counted logins and sign-outs (`/counted/...`) whose handler ran and whose commit
    /// has not ended.
    under_way: std::cell::Cell<isize>,
}

impl Rig {
    /// `rotating`: two instances of the app, each request to either, in the middle of a
    /// rolling deploy that rotates the key: one signs with the old key and keeps the new
    /// one as a fallback, the other the other way round.
    async fn new(backend: Backend, rng: &mut Rng, configure: Configure, rotating: bool) -> Self {
        let (running, upstreams) = match backend {
            Backend::Servers(_, n) => {
                let servers: Vec<Memcached> = (0..n).map(|_| Memcached::start()).collect();
                let addrs = servers.iter().map(Memcached::addr).collect();
                ((servers, None), addrs)
            }
            #[cfg(feature = "r2d2")]
            Backend::R2d2 => {
                let server = Memcached::start();
                let addr = server.addr();
                ((vec![server], None), vec![addr])
            }
            Backend::Nutcracker => {
                let proxy = Nutcracker::start(&[1, 1]);
                let addr = proxy.addr();
                ((Vec::new(), Some(proxy)), vec![addr])
            }
        };
        let proxies: Vec<ChaosProxy> = upstreams
            .into_iter()
            .map(|addr| ChaosProxy::start(addr, rng.next(), ODDS, LATE))
            .collect();
        let addrs: Vec<String> = proxies.iter().map(|p| p.addr().to_string()).collect();
        let url = format!("memcache://{}", addrs.join(","));
        let store = match backend {
            #[cfg(feature = "r2d2")]
            Backend::R2d2 => {
                let timeout = IO_TIMEOUT.as_secs_f64();
                let url = format!("{url}?protocol=ascii&timeout={timeout}");
                crate::memcached::r2d2_store_at(&url, Duration::from_secs(2))
            }
            Backend::Servers(..) | Backend::Nutcracker => {
                // nutcracker speaks text only, which `Auto` finds on connect.
                let protocol = match backend {
                    Backend::Servers(protocol, _) => protocol,
                    _ => Protocol::Auto,
                };
                MemcacheStore::builder(url)
                    .io_timeout(IO_TIMEOUT)
                    // A server marked down by the faults is tried again soon: its sessions
                    // are not all 503 for the rest of the run.
                    .retry_interval(Duration::from_millis(50))
                    .protocol(protocol)
                    .build()
                    .unwrap()
            }
        };
        let apps = if rotating {
            let key = |byte: u8| Key::try_from(&[byte; 64][..]).unwrap();
            let instance = |current: u8, old: u8| {
                let store = CountingStore::new(store.clone());
                TestApp::with(store, key(current), move |b| {
                    configure(b).fallback_keys(vec![key(old)])
                })
            };
            vec![instance(1, 2).await, instance(2, 1).await]
        } else {
            vec![TestApp::configured(CountingStore::new(store), configure).await]
        };
        Self {
            _running: running,
            proxies,
            apps,
            under_way: std::cell::Cell::new(0),
        }
    }

    /// The first instance: the one the checks ask once the network is calm.
    fn app(&self) -> &TestApp<MemcacheStore> {
        &self.apps[0]
    }

    /// Sends every request of a batch at once, each to any instance, a tenth of them hung
    /// up on within 3 ms: when each was sent, its reply (`None` when hung up on), and when
    /// that came.
    async fn send(
        &self,
        rng: &mut Rng,
        requests: Vec<(String, Option<Cookie<'static>>)>,
    ) -> Vec<(Instant, Option<Reply>, Instant)> {
        let hang_ups: Vec<Option<Duration>> = requests
            .iter()
            .map(|_| (rng.below(10) == 0).then(|| Duration::from_micros(rng.below(3_000) as u64)))
            .collect();
        let instances: Vec<&TestApp<MemcacheStore>> = requests
            .iter()
            .map(|_| match self.apps.len() {
                1 => &self.apps[0],
                n => &self.apps[rng.below(n)],
            })
            .collect();
        join_all(requests.into_iter().zip(hang_ups).zip(instances).map(
            |(((path, cookie), hang_up), app)| async move {
                let sent = Instant::now();
                let request = app.get(&path, cookie.as_ref());
                let reply = match hang_up {
                    Some(after) => tokio::time::timeout(after, request).await.ok(),
                    None => Some(request.await),
                };
                (sent, reply, Instant::now())
            },
        ))
        .await
    }

    /// Waits until no counted request is under way (hung up on, its commit goes on) and no
    /// proxy holds a command (one to pass on late), three times 10 ms apart, and says when:
    /// nothing any of them sent lands after that, but for a command still in the kernel's
    /// buffer then, behind one held back, whose thread was kept from reading it for 20 ms.
    /// A device's sign-out writes the user's item with compare-and-swap, which a login after
    /// it makes fail; an admin's sign-out everywhere is a plain delete, which would sign out
    /// a later login, hence the 20 ms, not 10. It never comes, within 30 s, only if a
    /// commit hangs.
    async fn settle(&self) -> Instant {
        let started = Instant::now();
        let mut quiet_for = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let log: Vec<String> = self.apps.iter().flat_map(|a| a.hooks.take()).collect();
            let count = |what: &str| log.iter().filter(|e| e.as_str() == what).count();
            let (sent, settled) = (count("begun") as isize, count("settled") as isize);
            let under_way = self.under_way.get() + sent - settled;
            self.under_way.set(under_way);
            let quiet = under_way == 0 && !self.proxies.iter().any(ChaosProxy::holds_any);
            quiet_for = if quiet { quiet_for + 1 } else { 0 };
            if quiet_for == 3 {
                return Instant::now();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "a counted request's commit never ended"
            );
        }
    }

    /// GET `path` once the network is calm: a server marked down by the faults answers
    /// 503 until it is tried again (`retry_interval`), then serves.
    async fn get_calm(&self, path: &str, cookie: Option<&Cookie<'_>>) -> Reply {
        let started = Instant::now();
        loop {
            let reply = self.app().get(path, cookie).await;
            if reply.status != 503 || started.elapsed() > Duration::from_secs(30) {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The handles `Sessions::of_user` lists for user `u` once the network is calm (a
    /// server marked down fails it until it is tried again).
    async fn listed(&self, u: usize) -> Vec<String> {
        let started = Instant::now();
        loop {
            match self.app().sessions.of_user(USERS[u]).await {
                Ok(listed) => return listed.iter().map(|s| s.handle.to_string()).collect(),
                Err(e) if started.elapsed() > Duration::from_secs(30) => {
                    panic!("listing {}: {e}", USERS[u])
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Faults so far, of every proxy.
    fn faults(&self) -> usize {
        let faults = |p: &ChaosProxy| p.faults.load(std::sync::atomic::Ordering::SeqCst);
        self.proxies.iter().map(faults).sum()
    }

    /// Stops the faults, and waits for the counted requests and the commands held back
    /// to land ([`settle`](Self::settle)).
    async fn calm(&self) {
        self.proxies.iter().for_each(ChaosProxy::calm);
        self.settle().await;
    }
}

/// Batches in a run: `default`, or `HISTORY_BATCHES`.
fn batches(default: usize) -> usize {
    std::env::var("HISTORY_BATCHES").map_or(default, |n| n.parse().unwrap())
}

/// Whether batch `batch` of a run planned at `planned` batches runs: all planned ones, and
/// up to as many again while `short` names a kind of answer the run has not met enough of
/// (the draws are random, and a rare kind may fall short; the run must meet every kind).
fn runs_on(batch: usize, planned: usize, short: Option<&str>) -> bool {
    batch < planned || (batch < 2 * planned && short.is_some())
}

async fn history(backend: Backend) {
    let mut rng = Rng::seeded("history");
    let rig = Rig::new(backend, &mut rng, |b| b, false).await;
    let app = rig.app();
    let mut sessions = Vec::new();
    rig.proxies.iter().for_each(ChaosProxy::storm);
    let mut seen = Seen::default();
    let mut next_value = 0_u64;
    let planned = batches(BATCHES);
    for batch in 0.. {
        if !runs_on(batch, planned, seen.short()) {
            break;
        }
        // Sessions a purge ended are replaced.
        let replacing = Instant::now();
        while sessions.iter().filter(|s: &&Tracked| !s.ended).count() < SESSIONS {
            assert!(
                replacing.elapsed() < Duration::from_secs(30),
                "no session could be created in 30 s"
            );
            let owner = sessions.len();
            let reply = app.get(&format!("/set/p/owner/{owner}"), None).await;
            if reply.status != 200 {
                assert_eq!(reply.status, 503, "{reply:?}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            sessions.push(Tracked {
                owner,
                cookie: reply.cookie(),
                dead: Vec::new(),
                ended: false,
                doubt: false,
                keys: BTreeMap::new(),
                shared: Vec::new(),
            });
        }
        let ops = pick(&mut rng, &sessions, &mut next_value);
        let requests = ops
            .iter()
            .map(|(i, op)| {
                let cookie = match op {
                    Op::DeadDump(dead) => dead.clone(),
                    _ => sessions[*i].cookie.clone(),
                };
                (path(op), Some(cookie))
            })
            .collect();
        let answers = rig.send(&mut rng, requests).await;
        // A renew or purge in the batch that may have happened (not a 409, which wrote
        // nothing) excuses its session's other requests for finding no session: they may
        // have come after it.
        let excused = |i: usize| {
            sessions[i].doubt
                || ops.iter().zip(&answers).any(|((j, op), (_, reply, _))| {
                    *j == i && op.is_lifecycle() && !answered(reply, 409)
                })
        };
        let excuses: Vec<bool> = (0..sessions.len()).map(excused).collect();
        for ((i, op), (sent, reply, answered)) in ops.into_iter().zip(answers) {
            let what = format!("batch {batch}, session {i}, {op:?}: {reply:?}");
            if reply.is_none() {
                seen.hung_up += 1;
            }
            no_cookie_on_error(reply.as_ref(), &what);
            let tracked = &mut sessions[i];
            let answer = reply.as_ref().map(|r| (r.status, r.body.as_str()));
            match op {
                Op::Note(key, value) => {
                    let outcome = outcome(tracked, answer, excuses[i], &what);
                    count(&mut seen, outcome);
                    tracked.keys.insert(key, (value, outcome, answered));
                }
                Op::Shared(value) => {
                    let outcome = outcome(tracked, answer, excuses[i], &what);
                    count(&mut seen, outcome);
                    tracked.shared.push(SharedWrite {
                        value,
                        outcome,
                        sent,
                        answered,
                    });
                }
                Op::Dump => {
                    if let Some((200, body)) = answer {
                        check_dump(tracked, body, excuses[i], Some(sent), &what);
                    }
                }
                Op::DeadDump(_) => {
                    if let Some((200, body)) = answer {
                        seen.dead_read += 1;
                        assert_eq!(body, "{}", "{what}: a retired or ended cookie read data");
                    }
                }
                Op::Renew => match reply {
                    // A renew of a session that is gone: nothing to renew, and nothing to
                    // set a cookie for.
                    Some(reply) if reply.status == 200 && reply.cookie.is_none() => {
                        assert!(tracked.doubt, "{what}: a live session not renewed");
                        tracked.ended = true;
                        let old = tracked.cookie.clone();
                        tracked.dead.push(old);
                    }
                    Some(reply) if reply.status == 200 => {
                        seen.renewed += 1;
                        let old = std::mem::replace(&mut tracked.cookie, reply.cookie());
                        tracked.dead.push(old);
                    }
                    Some(reply) if reply.status == 409 => {}
                    Some(reply) if reply.status != 503 => panic!("{what}"),
                    _ => tracked.doubt = true,
                },
                Op::Purge => match reply {
                    Some(reply) if reply.status == 200 => {
                        seen.purged += 1;
                        tracked.ended = true;
                        let old = tracked.cookie.clone();
                        tracked.dead.push(old);
                    }
                    Some(reply) if reply.status == 409 => {}
                    Some(reply) if reply.status != 503 => panic!("{what}"),
                    _ => tracked.doubt = true,
                },
            }
        }
    }
    rig.calm().await;
    for tracked in &sessions {
        let what = format!("at the end, session {}", tracked.owner);
        for dead in &tracked.dead {
            let reply = rig.get_calm("/dump/p", Some(dead)).await;
            assert_eq!(
                (reply.status, reply.body.as_str()),
                (200, "{}"),
                "{what}: a retired or ended cookie"
            );
        }
        if tracked.ended {
            continue;
        }
        let reply = rig.get_calm("/dump/p", Some(&tracked.cookie)).await;
        assert_eq!(reply.status, 200, "{what}: {reply:?}");
        check_dump(tracked, &reply.body, tracked.doubt, None, &what);
    }
    eprintln!("{backend:?}: {seen:?}, {} faults", rig.faults());
    if let Some(short) = seen.short() {
        panic!("the run met too few {short}: {seen:?}");
    }
}

impl Seen {
    /// The first kind of answer the run has not met enough of, if any.
    fn short(&self) -> Option<&'static str> {
        [
            (self.landed > 100, "landed writes"),
            (self.refused > 0, "refused writes"),
            (self.in_doubt > 10, "writes in doubt"),
            (self.hung_up > 10, "requests hung up on"),
            (self.renewed > 5, "renews"),
            (self.purged > 0, "purges"),
            (self.dead_read > 5, "reads of dead cookies"),
        ]
        .into_iter()
        .find_map(|(met, kind)| (!met).then_some(kind))
    }
}

fn count(seen: &mut Seen, outcome: Outcome) {
    match outcome {
        Outcome::Landed => seen.landed += 1,
        Outcome::NotLanded => seen.refused += 1,
        Outcome::Maybe => seen.in_doubt += 1,
    }
}

/// Users whose devices log in and sign out in the users' history.
const USERS: [&str; 3] = ["ada", "bob", "cy"];
const DEVICES: usize = 6;
/// Batches in a users' run: more than in a sessions' run, for sign-outs not raced by
/// another (those only may sign out).
const USER_BATCHES: usize = 200;
/// The session limit of a users' run that has one.
const LIMIT: usize = 2;

/// A users' run's session limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    None,
    /// `OverLimit::EndLeastRecentlySeen`: a login may sign out any other session of its
    /// user.
    End,
    /// `OverLimit::RefuseLogin`: a login over the limit answers 403 and changes nothing.
    Refuse,
}

impl Limit {
    fn configure(self) -> Configure {
        match self {
            Limit::None => |b| b,
            Limit::End => |b| b.max_sessions_per_user(LIMIT, OverLimit::EndLeastRecentlySeen),
            Limit::Refuse => |b| b.max_sessions_per_user(LIMIT, OverLimit::RefuseLogin),
        }
    }
}

/// A login answered 200.
#[derive(Debug, Clone)]
struct Login {
    user: usize,
    sent: Instant,
    answered: Instant,
    /// Its handle in the user's list of sessions, once a "who" of the device said it.
    handle: Option<String>,
}

/// A browser: its cookie, and who it is signed in as.
struct Device {
    cookie: Option<Cookie<'static>>,
    /// The login it is signed in by.
    user: Option<Login>,
    /// A login or sign-out whose outcome is unknown: the users it may be signed in as
    /// besides none, until its next login answered 200.
    doubt: Option<Vec<usize>>,
    /// Cookies a login retired or a sign-out signed out: they name no user, ever after.
    dead: Vec<Cookie<'static>>,
    /// What happened to it, for a failure's message.
    log: Vec<String>,
}

impl Device {
    /// Known to be signed in: by a login answered 200, and no sign-out that may have
    /// reached it since.
    fn signed_in(&self) -> Option<&Login> {
        self.user.as_ref().filter(|_| self.doubt.is_none())
    }
}

#[derive(Debug, Clone)]
enum UserOp {
    Login(usize),
    Whoami,
    DeadWhoami(Cookie<'static>),
    SignOutEverywhere,
    SignOutOthers,
    /// Signs out the session of this login, for the device's own user: another device's,
    /// its own, or at times another user's (that ends nothing).
    SignOutSession(Named),
    /// An admin signs out the session of this login (naming at times another user: that
    /// ends nothing). Sent without a cookie.
    AdminSignOut(Named),
    /// An admin signs this user out everywhere (`Sessions::sign_out_everywhere`).
    AdminSignOutEverywhere(usize),
}

/// A login named by its handle: the user named with it, and the device it was learned
/// from (the only one whose sessions carry it, across renewals).
#[derive(Debug, Clone)]
struct Named {
    user: usize,
    handle: String,
    device: usize,
}

impl UserOp {
    /// A sign-out by an admin, sent without the device's cookie.
    fn by_admin(&self) -> bool {
        matches!(
            self,
            UserOp::AdminSignOut(_) | UserOp::AdminSignOutEverywhere(_)
        )
    }

    /// A login or a sign-out of the device's: it changes who the device is signed in as.
    fn is_lifecycle(&self) -> bool {
        matches!(
            self,
            UserOp::Login(_)
                | UserOp::SignOutEverywhere
                | UserOp::SignOutOthers
                | UserOp::SignOutSession(_)
        )
    }
}

/// Whom a sign-out reaches, of its user's sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reach {
    Everywhere,
    Others,
    /// The login of this handle, learned from this device.
    Handle(String, usize),
    /// A login at the session limit (`OverLimit::EndLeastRecentlySeen`): any other session
    /// of its user, which one the test cannot tell.
    Evict,
}

/// A sign-out that was sent: of whom, by which device, whom it reaches, and what its
/// answer says.
#[derive(Debug)]
struct SignOut {
    user: usize,
    /// The device that sent it (`None`: an admin).
    by: Option<usize>,
    reach: Reach,
    sent: Instant,
    answered: Instant,
    outcome: Outcome,
    /// When it could no longer land: its answer if that was 200, else once no sign-out
    /// was under way and no command held back.
    settled: Instant,
}

impl SignOut {
    /// Whether it reaches `login` of `device`; `may`: whether a login of the device the
    /// handle was learned from, whose own handle the test has not learned, may be the one
    /// it names (logging in again as the same user keeps the handle).
    fn reaches(&self, login: &Login, device: usize, may: bool) -> bool {
        self.user == login.user
            && match &self.reach {
                Reach::Everywhere => true,
                Reach::Others | Reach::Evict => self.by != Some(device),
                Reach::Handle(named, from) => match &login.handle {
                    Some(handle) => handle == named,
                    None => may && device == *from,
                },
            }
    }

    /// Whether it may have signed out `login` (of `device`): it may reach it, did not
    /// fail, and was under way while the login was, or after.
    fn may_end(&self, login: &Login, device: usize) -> bool {
        self.outcome != Outcome::NotLanded
            && self.reaches(login, device, true)
            && login.sent < self.settled
    }

    /// Whether it must have signed out `login`: it landed, reaches it, and began after the
    /// login was answered. (A sign-out from a session signed out since it was read ends
    /// nobody and answers 409, `docs/users.md`: one answered 200 ended every session it
    /// reaches.)
    fn ends(&self, login: &Login, device: usize) -> bool {
        self.reach != Reach::Evict
            && self.outcome == Outcome::Landed
            && self.reaches(login, device, false)
            && self.sent > login.answered
    }
}

/// What a sign-out's answer (or a login's, at a limit that signs others out) says it did,
/// `rotating` the key on two instances.
fn sign_out_outcome(op: &UserOp, reply: Option<&Reply>, rotating: bool, what: &str) -> Outcome {
    let Some(reply) = reply else {
        return Outcome::Maybe;
    };
    let admin = op.by_admin();
    match (reply.status, reply.body.as_str()) {
        // The sign-out went first, the rest of the commit failed.
        (_, body) if body.starts_with("the sign-out happened") => Outcome::Landed,
        (200, "true") if admin => Outcome::Landed,
        (200, "false") if admin => Outcome::NotLanded,
        (200, body) if admin => panic!("{what}: an admin's sign-out answered {body:?}"),
        (200, _) => Outcome::Landed,
        // The admin's tries all lost a race; one whose reply was lost may have landed.
        (409, _) if admin => Outcome::Maybe,
        // With two current keys, one may have ended the other key's item before finding its
        // own session signed out (by its twin on the other instance: docs/users.md).
        (409, _) if rotating && matches!(op, UserOp::SignOutOthers | UserOp::SignOutEverywhere) => {
            Outcome::Maybe
        }
        // 401: a device's session signed out before its request read it (the route asks).
        (409 | 403 | 401, _) => Outcome::NotLanded,
        (503, _) => Outcome::Maybe,
        (status, body) => panic!("{what}: answered {status} {body:?}"),
    }
}

/// Checks what `device` answered to "who is signed in" (`said`, `None` for nobody),
/// asked at `sent` and answered at `answered`, against its logins and every sign-out.
fn check_whoami(
    device: &Device,
    d: usize,
    said: Option<usize>,
    (sent, answered): (Instant, Instant),
    sign_outs: &[SignOut],
    excused: bool,
    what: &str,
) {
    // A cookie a login retired or a sign-out ended names nobody, in doubt or not.
    if device
        .cookie
        .as_ref()
        .is_some_and(|c| device.dead.contains(c))
    {
        assert_eq!(
            said,
            None,
            "{what}: a retired or signed-out cookie; its last events {:#?}",
            &device.log[device.log.len().saturating_sub(8)..]
        );
        return;
    }
    let doubt = device.doubt.as_deref().unwrap_or_default();
    match (said, &device.user) {
        (Some(u), _) if doubt.contains(&u) => {}
        (Some(u), Some(login)) if u == login.user => {
            // A logout stays a logout: once a sign-out that ends the login was answered.
            if let Some(s) = sign_outs
                .iter()
                .find(|s| s.ends(login, d) && s.answered < sent)
            {
                panic!("{what}: still signed in after {s:?}; {:#?}", device.log);
            }
        }
        (Some(u), user) => panic!(
            "{what}: signed in as {}, where it is {}; its last events {:#?}",
            USERS[u],
            user.as_ref()
                .map_or("signed out", |login| USERS[login.user]),
            &device.log[device.log.len().saturating_sub(8)..]
        ),
        (None, Some(login)) if !excused && device.doubt.is_none() => {
            // Only a sign-out begun before this was answered signs it out.
            assert!(
                sign_outs
                    .iter()
                    .any(|s| s.may_end(login, d) && s.sent < answered),
                "{what}: a signed-in device lost its user; its last events {:#?}",
                &device.log[device.log.len().saturating_sub(8)..]
            );
        }
        (None, _) => {}
    }
}

/// The user a "who" answer names (`None` for "none", and never a name not in `USERS`),
/// and the handle of its session's login.
fn user_named(body: &str, what: &str) -> (Option<usize>, Option<String>) {
    if body == "none" {
        return (None, None);
    }
    let (name, handle) = body.split_once(' ').unwrap_or((body, "-"));
    let user = USERS.iter().position(|u| *u == name);
    assert!(user.is_some(), "{what}: an answer naming nobody known");
    assert!(
        handle.parse::<SessionHandle>().is_ok(),
        "{what}: a signed-in session without a handle"
    );
    (user, Some(handle.to_owned()))
}

/// Whether `reply` came, with `status`.
fn answered(reply: &Option<Reply>, status: u16) -> bool {
    reply.as_ref().is_some_and(|r| r.status == status)
}

/// A request answered with an error wrote nothing: it sets no cookie but a removal.
fn no_cookie_on_error(reply: Option<&Reply>, what: &str) {
    if let Some(reply) = reply.filter(|r| r.status >= 400) {
        let set = reply.cookie.as_ref().is_some_and(|c| !c.value().is_empty());
        assert!(!set, "{what}: an error answer sets a session cookie");
    }
}

fn user_path(op: &UserOp) -> String {
    match op {
        UserOp::Login(u) => format!("/counted/login/{}", USERS[*u]),
        UserOp::Whoami | UserOp::DeadWhoami(_) => "/who".to_owned(),
        UserOp::SignOutEverywhere => "/counted/sign-out/everywhere".to_owned(),
        UserOp::SignOutOthers => "/counted/sign-out/others".to_owned(),
        UserOp::SignOutSession(named) => format!("/counted/sign-out/{}", named.handle),
        UserOp::AdminSignOut(named) => {
            format!(
                "/counted/admin-sign-out/{}/{}",
                USERS[named.user], named.handle
            )
        }
        UserOp::AdminSignOutEverywhere(u) => {
            format!("/counted/admin-sign-out/{}/everywhere", USERS[*u])
        }
    }
}

/// Picks a batch: at most one login or sign-out per device.
fn pick_user_ops(rng: &mut Rng, devices: &[Device]) -> Vec<(usize, UserOp)> {
    let mut ops: Vec<(usize, UserOp)> = Vec::new();
    // The logins whose handle the test knows, with their devices.
    let handled: Vec<Named> = (0..devices.len())
        .filter_map(|device| {
            let login = devices[device].user.as_ref()?;
            Some(Named {
                user: login.user,
                handle: login.handle.clone()?,
                device,
            })
        })
        .collect();
    // At times the handle with another user's name: it must end nothing.
    let misnamed = |rng: &mut Rng, mut named: Named| {
        if rng.below(4) == 0 {
            named.user = (named.user + 1) % USERS.len();
        }
        named
    };
    while ops.len() < BATCH {
        let d = rng.below(devices.len());
        let busy = ops.iter().any(|(e, op)| *e == d && op.is_lifecycle());
        // Known to be signed in: a sign-out is of that user.
        let signed_in = (!busy).then(|| devices[d].signed_in()).flatten();
        let op = match (rng.below(100), signed_in) {
            (0..=44, _) => UserOp::Whoami,
            (45..=59, _) if !devices[d].dead.is_empty() => {
                let dead = &devices[d].dead;
                UserOp::DeadWhoami(dead[rng.below(dead.len())].clone())
            }
            (60..=81, _) if !busy => UserOp::Login(rng.below(USERS.len())),
            (82..=86, Some(_)) => UserOp::SignOutEverywhere,
            (87..=90, Some(_)) => UserOp::SignOutOthers,
            (91..=96, Some(own)) => {
                // Mostly one of its user's, at times another user's (for that user).
                let mine: Vec<&Named> = handled.iter().filter(|n| n.user == own.user).collect();
                let named = match rng.below(4) {
                    0 if !handled.is_empty() => handled[rng.below(handled.len())].clone(),
                    _ if !mine.is_empty() => mine[rng.below(mine.len())].clone(),
                    _ => continue,
                };
                UserOp::SignOutSession(Named {
                    user: own.user,
                    ..named
                })
            }
            (97..=98, _) if !handled.is_empty() => {
                let named = handled[rng.below(handled.len())].clone();
                UserOp::AdminSignOut(misnamed(rng, named))
            }
            (99, _) => UserOp::AdminSignOutEverywhere(rng.below(USERS.len())),
            _ => continue,
        };
        ops.push((d, op));
    }
    ops
}

/// How many answers of each kind the users' run met, to show it met them.
#[derive(Debug, Default)]
struct SeenUsers {
    logins: usize,
    refused: usize,
    signed_out: usize,
    by_handle: usize,
    by_admin: usize,
    admin_everywhere: usize,
    handles: usize,
    whoami_user: usize,
    whoami_none: usize,
    dead_read: usize,
    in_doubt: usize,
}

async fn users_history(backend: Backend, limit: Limit) {
    users_history_on(backend, limit, false).await;
}

/// A users' history on one instance, or two rotating the key (see [`Rig::new`]).
async fn users_history_on(backend: Backend, limit: Limit, rotating: bool) {
    let mut rng = Rng::seeded("users' history");
    let rig = Rig::new(backend, &mut rng, limit.configure(), rotating).await;
    let mut devices: Vec<Device> = (0..DEVICES)
        .map(|_| Device {
            cookie: None,
            user: None,
            doubt: None,
            dead: Vec::new(),
            log: Vec::new(),
        })
        .collect();
    let mut sign_outs: Vec<SignOut> = Vec::new();
    // The logins the test knows were signed out: their user and handle.
    let mut ended: Vec<(usize, String)> = Vec::new();
    let mut seen = SeenUsers::default();
    rig.proxies.iter().for_each(ChaosProxy::storm);
    let planned = batches(USER_BATCHES);
    for batch in 0.. {
        if !runs_on(batch, planned, seen.short(limit)) {
            break;
        }
        let ops = pick_user_ops(&mut rng, &devices);
        let requests = ops
            .iter()
            .map(|(d, op)| {
                let cookie = match op {
                    UserOp::DeadWhoami(dead) => Some(dead.clone()),
                    UserOp::AdminSignOut(_) | UserOp::AdminSignOutEverywhere(_) => None,
                    _ => devices[*d].cookie.clone(),
                };
                (user_path(op), cookie)
            })
            .collect();
        let first = sign_outs.len();
        let answers = rig.send(&mut rng, requests).await;
        // The sign-outs first: a whoami of this batch is checked against them all.
        for ((d, op), (sent, reply, answered)) in ops.iter().zip(&answers) {
            let what = format!("batch {batch}, device {d}, {op:?}: {reply:?}");
            let own = devices[*d].user.clone();
            let (user, reach) = match (op, &own) {
                (UserOp::SignOutEverywhere, Some(own)) => (own.user, Reach::Everywhere),
                (UserOp::SignOutOthers, Some(own)) => (own.user, Reach::Others),
                (UserOp::SignOutSession(named), Some(own)) => {
                    (own.user, Reach::Handle(named.handle.clone(), named.device))
                }
                (UserOp::AdminSignOut(named), _) => (
                    named.user,
                    Reach::Handle(named.handle.clone(), named.device),
                ),
                (UserOp::AdminSignOutEverywhere(user), _) => (*user, Reach::Everywhere),
                (UserOp::Login(user), _) if limit == Limit::End => (*user, Reach::Evict),
                _ => continue,
            };
            let outcome = sign_out_outcome(op, reply.as_ref(), rotating, &what);
            match op {
                UserOp::SignOutSession(_) if outcome == Outcome::Landed => seen.by_handle += 1,
                UserOp::AdminSignOut(named) if outcome == Outcome::Landed => {
                    // A handle is looked up in the named user's list only.
                    let owner = devices[named.device].user.as_ref().map(|l| l.user);
                    assert_eq!(owner, Some(named.user), "{what}: another user's session");
                    seen.by_admin += 1;
                }
                UserOp::AdminSignOutEverywhere(_) => seen.admin_everywhere += 1,
                _ => {}
            }
            let admin = op.by_admin();
            sign_outs.push(SignOut {
                user,
                by: (!admin).then_some(*d),
                reach,
                sent: *sent,
                answered: *answered,
                outcome,
                settled: *answered,
            });
        }
        // One in doubt may still land: the batch is over once none can, and no login in
        // doubt goes on into the next (two logins of one session left to race).
        let login_in_doubt = ops.iter().zip(&answers).any(|((_, op), (_, reply, _))| {
            let status = reply.as_ref().map(|r| r.status);
            matches!(op, UserOp::Login(_)) && matches!(status, None | Some(503))
        });
        if login_in_doubt
            || sign_outs[first..]
                .iter()
                .any(|s| s.outcome == Outcome::Maybe)
        {
            let settled = rig.settle().await;
            for s in &mut sign_outs[first..] {
                if s.outcome == Outcome::Maybe {
                    s.settled = settled;
                }
            }
        }
        // A login or sign-out of the device in the batch that may have happened (not a
        // 409, which wrote nothing) excuses its other requests for finding nobody.
        let busy = |d: usize| {
            ops.iter().zip(&answers).any(|((e, op), (_, reply, _))| {
                *e == d && op.is_lifecycle() && !answered(reply, 409)
            })
        };
        let excuses: Vec<bool> = (0..DEVICES).map(busy).collect();
        for ((d, op), (sent, reply, answered)) in ops.iter().zip(&answers) {
            let what = format!("batch {batch}, device {d}, {op:?}: {reply:?}");
            no_cookie_on_error(reply.as_ref(), &what);
            if let (UserOp::SignOutEverywhere, Some(reply)) = (op, reply) {
                if reply.status == 200 {
                    let removed = reply.cookie.as_ref().is_some_and(|c| c.value().is_empty());
                    assert!(removed, "{what}: a sign-out everywhere keeps its cookie");
                }
            }
            let (said, handle) = match (op, reply.as_ref().map(|r| (r.status, r.body.as_str()))) {
                (UserOp::Whoami | UserOp::DeadWhoami(_), Some((200, body))) => {
                    user_named(body, &what)
                }
                _ => continue,
            };
            match op {
                UserOp::Whoami => {
                    match said {
                        Some(_) => seen.whoami_user += 1,
                        None => seen.whoami_none += 1,
                    }
                    let device = &mut devices[*d];
                    let when = (*sent, *answered);
                    check_whoami(device, *d, said, when, &sign_outs, excuses[*d], &what);
                    if !excuses[*d] {
                        learn_handle(device, said, handle, &mut seen, &what);
                    }
                }
                UserOp::DeadWhoami(_) => {
                    seen.dead_read += 1;
                    assert_eq!(said, None, "{what}: a retired or signed-out cookie");
                }
                _ => {}
            }
        }
        // An admin's sign-out that found no such session: checked once the batch's other
        // sign-outs are applied.
        let unlisted: Vec<(Named, String)> = ops
            .iter()
            .zip(&answers)
            .filter_map(|((d, op), (_, reply, _))| match (op, reply) {
                (UserOp::AdminSignOut(named), Some(r))
                    if (r.status, r.body.as_str()) == (200, "false") =>
                {
                    Some((named.clone(), format!("batch {batch}, device {d}, {op:?}")))
                }
                _ => None,
            })
            .collect();
        // Then what the logins and sign-outs changed.
        for ((d, op), (sent, reply, answered)) in ops.into_iter().zip(answers) {
            let status = reply.as_ref().map(|r| r.status);
            let device = &mut devices[d];
            if op.is_lifecycle() {
                let log =
                    format!("batch {batch}: {op:?} sent {sent:?}, {status:?} at {answered:?}");
                device.log.push(log);
            }
            match op {
                UserOp::Login(u) => match status {
                    Some(200) => {
                        seen.logins += 1;
                        let reply = reply.unwrap();
                        let old = device.cookie.replace(reply.cookie());
                        device.dead.extend(old);
                        device.user = Some(Login {
                            user: u,
                            sent,
                            answered,
                            handle: None,
                        });
                        device.doubt = None;
                    }
                    Some(409) => {}
                    Some(403) if limit == Limit::Refuse => seen.refused += 1,
                    None | Some(503) => {
                        seen.in_doubt += 1;
                        let mut maybe = device.doubt.take().unwrap_or_default();
                        maybe.extend(device.user.as_ref().map(|login| login.user));
                        maybe.push(u);
                        device.doubt = Some(maybe);
                    }
                    Some(_) => panic!("batch {batch}, device {d}, login: {reply:?}"),
                },
                UserOp::SignOutEverywhere | UserOp::SignOutOthers | UserOp::SignOutSession(_) => {
                    if let Some(cookie) = reply.as_ref().and_then(|r| r.cookie.clone()) {
                        // A removal cookie, or a new session's; or, with two current keys,
                        // the same session's signed again, which leaves the old one live.
                        let same = device.cookie.as_ref().map(session_named)
                            == Some(session_named(&cookie));
                        let old = std::mem::replace(
                            &mut device.cookie,
                            (!cookie.value().is_empty()).then_some(cookie),
                        );
                        if !same {
                            device.dead.extend(old);
                        }
                    }
                }
                UserOp::Whoami
                | UserOp::DeadWhoami(_)
                | UserOp::AdminSignOut(_)
                | UserOp::AdminSignOutEverywhere(_) => {}
            }
        }
        apply_sign_outs(&mut devices, &sign_outs, first, &mut seen, &mut ended);
        for (named, what) in unlisted {
            // Still known signed in by that login, untouched by this batch: it was listed.
            let device = &devices[named.device];
            let listed = !excuses[named.device]
                && device.signed_in().is_some_and(|login| {
                    login.user == named.user && login.handle.as_ref() == Some(&named.handle)
                });
            assert!(!listed, "{what}: a listed session answered not listed");
        }
        if limit == Limit::Refuse {
            never_over_the_limit(&devices, batch);
        }
    }
    rig.calm().await;
    for (u, name) in USERS.iter().enumerate() {
        let listed = rig.listed(u).await;
        for (_, handle) in ended.iter().filter(|(user, _)| *user == u) {
            assert!(
                !listed.contains(handle),
                "at the end, {name}'s list names a session signed out: {handle}"
            );
        }
    }
    // Each user's handles the devices hold at the end.
    let mut held: Vec<(usize, String)> = Vec::new();
    for (d, device) in devices.iter_mut().enumerate() {
        let what = format!("at the end, device {d}");
        let sent = Instant::now();
        let reply = rig.get_calm("/who", device.cookie.as_ref()).await;
        assert_eq!(reply.status, 200, "{what}: {reply:?}");
        let (said, handle) = user_named(&reply.body, &what);
        let when = (sent, Instant::now());
        check_whoami(device, d, said, when, &sign_outs, false, &what);
        learn_handle(device, said, handle.clone(), &mut seen, &what);
        if let (Some(u), Some(handle)) = (said, handle) {
            held.push((u, handle.clone()));
            let listed = rig.listed(u).await;
            assert!(
                listed.contains(&handle),
                "{what}: signed in as {}, and not in the list {listed:?}",
                USERS[u]
            );
        }
        for dead in &device.dead {
            let reply = rig.get_calm("/who", Some(dead)).await;
            assert_eq!(
                (reply.status, reply.body.as_str()),
                (200, "none"),
                "{what}: a retired or signed-out cookie"
            );
        }
    }
    if limit != Limit::None {
        within_the_limit(&rig, limit, &held).await;
    }
    eprintln!(
        "{backend:?}, {limit:?}, rotating {rotating}: {seen:?}, {} faults",
        rig.faults()
    );
    if let Some(short) = seen.short(limit) {
        panic!("the run met too few {short}: {seen:?}");
    }
}

impl SeenUsers {
    /// The first kind of answer the run has not met enough of, if any. Sign-outs by handle
    /// that landed count by a device and by an admin: at a limit fewer devices are signed
    /// in to sign out or be signed out, so a device's may not come at all there.
    fn short(&self, limit: Limit) -> Option<&'static str> {
        [
            (self.logins > 50, "logins"),
            (self.signed_out >= 20, "sign-outs"),
            (self.in_doubt > 5, "answers in doubt"),
            (self.whoami_user > 50, "reads signed in"),
            (self.whoami_none > 20, "reads signed out"),
            (self.dead_read > 20, "reads of dead cookies"),
            (self.handles > 20, "handles learned"),
            (
                limit != Limit::None || self.by_handle > 0,
                "sign-outs by a device",
            ),
            (self.by_admin > 0, "sign-outs by an admin"),
            (self.by_handle + self.by_admin > 3, "sign-outs by handle"),
            (
                self.admin_everywhere > 3,
                "sign-outs everywhere by an admin",
            ),
            (limit != Limit::Refuse || self.refused > 5, "refused logins"),
        ]
        .into_iter()
        .find_map(|(met, kind)| (!met).then_some(kind))
    }
}

/// Learns the handle of `device`'s login from a "who" that said `user` and `handle`
/// (a request of its own in the batch, no login or sign-out beside it): a login keeps one
/// handle.
fn learn_handle(
    device: &mut Device,
    said: Option<usize>,
    handle: Option<String>,
    seen: &mut SeenUsers,
    what: &str,
) {
    let Some(login) = device.user.as_mut().filter(|_| device.doubt.is_none()) else {
        return;
    };
    let (Some(user), Some(handle)) = (said, handle) else {
        return;
    };
    if user != login.user {
        return;
    }
    match &login.handle {
        Some(known) => assert_eq!(*known, handle, "{what}: a login's handle"),
        None => {
            seen.handles += 1;
            login.handle = Some(handle);
        }
    }
}

/// `OverLimit::RefuseLogin` is never over the limit: no more devices of a user are known
/// to be signed in than it allows.
fn never_over_the_limit(devices: &[Device], batch: usize) {
    for (u, name) in USERS.iter().enumerate() {
        let signed_in: Vec<usize> = (0..devices.len())
            .filter(|&d| devices[d].signed_in().is_some_and(|l| l.user == u))
            .collect();
        assert!(
            signed_in.len() <= LIMIT,
            "batch {batch}: {name} signed in on devices {signed_in:?}"
        );
    }
}

/// Once the network is calm, logins of each user until the list is full, and one more:
/// `RefuseLogin` refuses one only when the user's list is full, and adds it otherwise; `EndLeastRecentlySeen` lets it in, and signs
/// out no more sessions than the limit asks, never the new one. First an admin signs out
/// the sessions no device holds (`held`: each user's handles the devices read at the end),
/// logins whose answer was lost: two of them renewing one session away count as one
/// session against the limit, and are listed as two.
async fn within_the_limit(rig: &Rig, limit: Limit, held: &[(usize, String)]) {
    for (u, name) in USERS.iter().enumerate() {
        for orphan in rig.listed(u).await {
            if !held.contains(&(u, orphan.clone())) {
                let path = format!("/counted/admin-sign-out/{name}/{orphan}");
                let reply = rig.get_calm(&path, None).await;
                assert_eq!(reply.status, 200, "{reply:?}");
            }
        }
        // Enough logins to fill the list, and one more.
        for _ in 0..=LIMIT {
            let before = rig.listed(u).await;
            let reply = rig.get_calm(&format!("/counted/login/{name}"), None).await;
            let after = rig.listed(u).await;
            let what = format!("at the end, a login of {name} with {before:?} listed: {reply:?}");
            match (limit, reply.status) {
                (Limit::Refuse, 403) => {
                    assert!(before.len() >= LIMIT, "{what}: refused under the limit");
                    assert_eq!(after, before, "{what}");
                    continue;
                }
                (_, 200) => {}
                _ => panic!("{what}"),
            }
            let who = rig.get_calm("/who", Some(&reply.cookie())).await;
            let (_, handle) = user_named(&who.body, &what);
            let handle = handle.unwrap_or_else(|| panic!("{what}: signed in as {}", who.body));
            assert!(after.contains(&handle), "{what}: not listed in {after:?}");
            let expected = (before.len() + 1).min(LIMIT);
            assert_eq!(after.len(), expected, "{what}: now {after:?}");
        }
    }
    rig.settle().await;
}

/// What the batch's sign-outs (`sign_outs[first..]`) did to the devices: one that ends a
/// device's login signs it out (its cookie names nobody from then on, and its handle, if
/// known, goes to `ended`); one that only may have leaves it in doubt. (An earlier batch's, settled before this one began, can do
/// neither to a login of this batch.)
fn apply_sign_outs(
    devices: &mut [Device],
    sign_outs: &[SignOut],
    first: usize,
    seen: &mut SeenUsers,
    ended: &mut Vec<(usize, String)>,
) {
    for s in &sign_outs[first..] {
        for (d, device) in devices.iter_mut().enumerate() {
            let Some(login) = &device.user else {
                continue;
            };
            if s.ends(login, d) {
                device.log.push(format!("signed out by {s:?}"));
                seen.signed_out += 1;
                ended.extend(login.handle.clone().map(|h| (login.user, h)));
                device.user = None;
                device.dead.extend(device.cookie.clone());
            } else if s.may_end(login, d) {
                let user = login.user;
                let doubt = device.doubt.get_or_insert_with(Vec::new);
                if !doubt.contains(&user) {
                    device.log.push(format!("in doubt by {s:?}"));
                    doubt.push(user);
                }
            }
        }
    }
}

/// In the protocol the server completes: the meta protocol from memcached 1.6.18, the text
/// protocol before (the versions matrix runs them all).
#[actix_web::test]
async fn random_histories_through_a_flaky_network_keep_every_promise() {
    history(Backend::Servers(Protocol::Auto, 1)).await;
}

#[actix_web::test]
async fn random_users_histories_through_a_flaky_network_keep_every_promise() {
    users_history(Backend::Servers(Protocol::Auto, 1), Limit::None).await;
}

#[actix_web::test]
async fn random_histories_through_a_flaky_network_keep_every_promise_text() {
    history(Backend::Servers(Protocol::Text, 1)).await;
}

#[actix_web::test]
async fn random_users_histories_through_a_flaky_network_keep_every_promise_text() {
    users_history(Backend::Servers(Protocol::Text, 1), Limit::None).await;
}

/// Over three servers (a ketama ring), each with its own flaky network: a session's
/// server and its user's item's may differ.
#[actix_web::test]
async fn random_histories_through_a_flaky_network_keep_every_promise_fleet() {
    history(Backend::Servers(Protocol::Auto, 3)).await;
}

#[actix_web::test]
async fn random_users_histories_through_a_flaky_network_keep_every_promise_fleet() {
    users_history(Backend::Servers(Protocol::Auto, 3), Limit::None).await;
}

#[actix_web::test]
async fn random_histories_through_a_flaky_network_keep_every_promise_text_fleet() {
    history(Backend::Servers(Protocol::Text, 3)).await;
}

#[actix_web::test]
async fn random_users_histories_through_a_flaky_network_keep_every_promise_text_fleet() {
    users_history(Backend::Servers(Protocol::Text, 3), Limit::None).await;
}

/// Through a real twemproxy, the network to it flaky.
#[actix_web::test]
async fn random_histories_through_a_flaky_network_keep_every_promise_nutcracker() {
    history(Backend::Nutcracker).await;
}

#[actix_web::test]
async fn random_users_histories_through_a_flaky_network_keep_every_promise_nutcracker() {
    users_history(Backend::Nutcracker, Limit::None).await;
}

#[cfg(feature = "r2d2")]
#[actix_web::test]
async fn random_histories_through_a_flaky_network_keep_every_promise_r2d2() {
    history(Backend::R2d2).await;
}

#[cfg(feature = "r2d2")]
#[actix_web::test]
async fn random_users_histories_through_a_flaky_network_keep_every_promise_r2d2() {
    users_history(Backend::R2d2, Limit::None).await;
}

/// At a limit that signs out the least recently seen: a login may sign out any other
/// session of its user, and once calm no user is over the limit.
#[actix_web::test]
async fn random_users_histories_at_a_limit_that_ends_the_least_recently_seen() {
    users_history(Backend::Servers(Protocol::Auto, 3), Limit::End).await;
}

/// At a limit that refuses logins: never over the limit.
#[actix_web::test]
async fn random_users_histories_at_a_limit_that_refuses_logins() {
    users_history(Backend::Servers(Protocol::Auto, 3), Limit::Refuse).await;
}

/// Two instances in the middle of a key rotation (each signs with its own key and verifies
/// the other's), every request to either: a user's sessions are listed under two keys'
/// items, and every sign-out reaches both.
#[actix_web::test]
async fn random_users_histories_while_two_instances_rotate_the_key() {
    users_history_on(Backend::Servers(Protocol::Auto, 1), Limit::None, true).await;
}

#[actix_web::test]
async fn random_users_histories_at_a_limit_that_refuses_logins_while_two_instances_rotate_the_key()
{
    users_history_on(Backend::Servers(Protocol::Auto, 1), Limit::Refuse, true).await;
}

#[actix_web::test]
async fn random_users_histories_at_a_limit_that_ends_the_least_recently_seen_while_two_instances_rotate_the_key(
) {
    users_history_on(Backend::Servers(Protocol::Auto, 1), Limit::End, true).await;
}
