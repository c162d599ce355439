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

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_memcache_session::{MemcacheStore, Protocol};
use actix_web::cookie::Cookie;
use futures_util::future::join_all;
use serde_json::Value;

use crate::app::TestApp;
use crate::fake::ChaosProxy;
use crate::memcached::Memcached;
use crate::support::{CountingStore, Rng};

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
        let lifecycle = ops
            .iter()
            .any(|(j, op)| *j == i && matches!(op, Op::Renew | Op::Purge));
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

async fn history(protocol: Protocol) {
    let mut rng = Rng::seeded("history");
    let memcached = Memcached::start();
    let proxy = ChaosProxy::start(memcached.addr(), rng.next(), ODDS, LATE);
    let store = MemcacheStore::builder(proxy.url())
        .io_timeout(IO_TIMEOUT)
        .protocol(protocol)
        .build()
        .unwrap();
    let app = TestApp::new(CountingStore::new(store)).await;
    let mut sessions = Vec::new();
    proxy.storm();
    let mut seen = Seen::default();
    let mut next_value = 0_u64;
    let batches = std::env::var("HISTORY_BATCHES").map_or(BATCHES, |n| n.parse().unwrap());
    for batch in 0..batches {
        // Sessions a purge ended are replaced.
        while sessions.iter().filter(|s: &&Tracked| !s.ended).count() < SESSIONS {
            let owner = sessions.len();
            let reply = app.get(&format!("/set/p/owner/{owner}"), None).await;
            if reply.status != 200 {
                assert_eq!(reply.status, 503, "{reply:?}");
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
        // A lifecycle op in the batch excuses its session's other requests for finding
        // no session: they may have come after it.
        let excused = |i: usize| {
            sessions[i].doubt
                || ops
                    .iter()
                    .any(|(j, op)| *j == i && matches!(op, Op::Renew | Op::Purge))
        };
        let excuses: Vec<bool> = (0..sessions.len()).map(excused).collect();
        let hang_ups: Vec<Option<Duration>> = ops
            .iter()
            .map(|_| (rng.below(10) == 0).then(|| Duration::from_micros(rng.below(3_000) as u64)))
            .collect();
        let answers = join_all(ops.iter().zip(&hang_ups).map(|((i, op), hang_up)| {
            let cookie = match op {
                Op::DeadDump(dead) => dead.clone(),
                _ => sessions[*i].cookie.clone(),
            };
            let path = path(op);
            let app = &app;
            async move {
                let sent = Instant::now();
                let request = app.get(&path, Some(&cookie));
                let reply = match hang_up {
                    Some(after) => tokio::time::timeout(*after, request).await.ok(),
                    None => Some(request.await),
                };
                (sent, reply, Instant::now())
            }
        }))
        .await;
        for ((i, op), (sent, reply, answered)) in ops.into_iter().zip(answers) {
            let what = format!("batch {batch}, session {i}, {op:?}: {reply:?}");
            if reply.is_none() {
                seen.hung_up += 1;
            }
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
    proxy.calm();
    // Commits of requests hung up on, and commands delivered late, land by then.
    tokio::time::sleep(LATE * 3).await;
    for tracked in &sessions {
        let what = format!("at the end, session {}", tracked.owner);
        for dead in &tracked.dead {
            let reply = app.get("/dump/p", Some(dead)).await;
            assert_eq!(
                (reply.status, reply.body.as_str()),
                (200, "{}"),
                "{what}: a retired or ended cookie"
            );
        }
        if tracked.ended {
            continue;
        }
        let reply = app.get("/dump/p", Some(&tracked.cookie)).await;
        assert_eq!(reply.status, 200, "{what}: {reply:?}");
        check_dump(tracked, &reply.body, tracked.doubt, None, &what);
    }
    eprintln!(
        "{protocol:?}: {seen:?}, {} faults",
        proxy.faults.load(std::sync::atomic::Ordering::SeqCst)
    );
    assert!(
        seen.landed > 100 && seen.refused > 0 && seen.in_doubt > 10 && seen.hung_up > 10,
        "the run met every kind of answer: {seen:?}"
    );
    assert!(
        seen.renewed > 5 && seen.purged > 0 && seen.dead_read > 5,
        "{seen:?}"
    );
}

fn count(seen: &mut Seen, outcome: Outcome) {
    match outcome {
        Outcome::Landed => seen.landed += 1,
        Outcome::NotLanded => seen.refused += 1,
        Outcome::Maybe => seen.in_doubt += 1,
    }
}

#[actix_web::test]
async fn random_histories_through_a_flaky_network_keep_every_promise_meta() {
    history(Protocol::Meta).await;
}

#[actix_web::test]
async fn random_histories_through_a_flaky_network_keep_every_promise_text() {
    history(Protocol::Text).await;
}
