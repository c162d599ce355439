//! A store over three real memcached servers: every key where the ring says, a server that
//! stalls or dies costs only its own sessions, the start-fresh mode, and the shared suites.

use std::time::{Duration, Instant};

use actix_memcache_session::{
    Distribution, Ketama, MemcacheServer, MemcacheStore, MemcacheStoreBuilder, SessionError,
    SessionId, SessionStore, StoreError, WhenDown,
};
use actix_web::cookie::Cookie;
use futures_util::future::join_all;

use crate::app::TestApp;
use crate::memcached::{fleet_url, Memcached};
use crate::support::{CountingStore, Reply};

mod suites {
    actix_memcache_session::store_acceptance_suite!(crate::memcached::fleet_store());
    #[cfg(feature = "actix-session")]
    crate::actix_session::actix_session_suite!(crate::memcached::fleet_store());

    mod http {
        crate::http::http_suite!(crate::memcached::fleet_store());
        crate::devices::devices_suite!(crate::memcached::fleet_store());
        crate::app_testing::app_testing_suite!(crate::memcached::fleet_store());
    }
}

/// Three memcached servers of this test's own, and the ring a client should build over them.
struct Trio {
    servers: Vec<Memcached>,
    weights: Vec<u32>,
    ring: Ketama,
}

impl Trio {
    fn start(weights: &[u32]) -> Self {
        let servers: Vec<Memcached> = weights.iter().map(|_| Memcached::start()).collect();
        let specs: Vec<MemcacheServer> = servers
            .iter()
            .zip(weights)
            .map(|(m, &w)| MemcacheServer::new("127.0.0.1", m.addr().port(), w))
            .collect();
        Self {
            ring: Ketama::new(&specs),
            servers,
            weights: weights.to_vec(),
        }
    }

    fn builder(&self) -> MemcacheStoreBuilder {
        let mut builder = MemcacheStore::builder(fleet_url(&self.servers));
        for (server, &weight) in self.servers.iter().zip(&self.weights) {
            builder = builder.weight(server.addr().to_string(), weight);
        }
        builder
    }

    /// A store over the trio that gives up on a stalled server within a second, doing
    /// `when` then.
    fn quick_to_fail(&self, when: WhenDown) -> MemcacheStore {
        self.builder()
            .when_server_down(when)
            .io_timeout(Duration::from_secs(1))
            .connect_timeout(Duration::from_secs(1))
            .build()
            .unwrap()
    }

    /// The server the ring names for a session.
    fn owner(&self, id: &SessionId) -> usize {
        self.ring.server_for(key(id).as_bytes())
    }
}

fn key(id: &SessionId) -> String {
    format!("session:{id}")
}

/// Each of a few hundred sessions sits on the server the ring names and on no other, with
/// equal weights and with 3:1:2.
#[actix_web::test]
async fn items_sit_on_the_server_the_ring_names() {
    for weights in [[1, 1, 1], [3, 1, 2]] {
        let trio = Trio::start(&weights);
        let store = trio.builder().build().unwrap();
        let ids: Vec<SessionId> = (0..300).map(|_| SessionId::generate().unwrap()).collect();
        for id in &ids {
            assert!(store
                .create(id, b"{}", Duration::from_secs(60))
                .await
                .unwrap());
        }
        let keys: Vec<String> = ids.iter().map(key).collect();
        let mut held = [0; 3];
        for (at, server) in trio.servers.iter().enumerate() {
            for (id, holds) in ids.iter().zip(server.holds(&keys)) {
                assert_eq!(
                    holds,
                    trio.owner(id) == at,
                    "{weights:?}: {id} on server {at}"
                );
                held[at] += usize::from(holds);
            }
        }
        assert_eq!(held.iter().sum::<usize>(), 300, "{weights:?}: {held:?}");
        assert!(held.iter().all(|&n| n > 0), "{weights:?}: {held:?}");
    }
}

/// A session made through the app: its cookie, its server, and the number it holds.
struct Made {
    cookie: Cookie<'static>,
    owner: usize,
    n: usize,
}

async fn make_sessions(app: &TestApp<MemcacheStore>, trio: &Trio, count: usize) -> Vec<Made> {
    let mut made = Vec::new();
    for n in 0..count {
        let reply = app.get(&format!("/set/p/k/{n}"), None).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let owner = trio.owner(&app.store.last_created());
        made.push(Made {
            cookie: reply.cookie(),
            owner,
            n,
        });
    }
    for at in 0..trio.servers.len() {
        assert!(
            made.iter().any(|m| m.owner == at),
            "no session on server {at}"
        );
    }
    made
}

/// Reads every session at once; each reply with the time it took.
async fn read_all<'a>(
    app: &TestApp<MemcacheStore>,
    sessions: impl Iterator<Item = &'a Made>,
) -> Vec<(Reply, Duration)> {
    join_all(sessions.map(|m| async {
        let start = Instant::now();
        let reply = app.get("/get/p/k", Some(&m.cookie)).await;
        (reply, start.elapsed())
    }))
    .await
}

/// Every reply is the session's own number, or (where `fresh` allows) a fresh session.
fn assert_own_data(made: &Made, reply: &Reply, fresh: bool) {
    assert_eq!(reply.status, 200, "session {}: {reply:?}", made.n);
    let own = reply.body == made.n.to_string();
    assert!(
        own || (fresh && reply.body == "none"),
        "session {}: {reply:?}",
        made.n
    );
}

const VICTIM: usize = 1;

/// One of three servers stalls under load, then dies and comes back empty. Its sessions get
/// 503, at once after the first failures; the others answer 200 with their own data
/// throughout. Back, it serves its sessions fresh; nothing else moved.
#[actix_web::test]
async fn a_dead_server_costs_only_its_own_sessions() {
    let mut trio = Trio::start(&[1, 1, 1]);
    let io_timeout = Duration::from_secs(1);
    let retry_interval = Duration::from_millis(500);
    let store = trio
        .builder()
        .io_timeout(io_timeout)
        .connect_timeout(io_timeout)
        .retry_interval(retry_interval)
        .build()
        .unwrap();
    let app = TestApp::new(CountingStore::new(store)).await;
    let made = make_sessions(&app, &trio, 90).await;

    trio.servers[VICTIM].pause();
    // All at once: the victim's sessions wait out the timeout together, and mark it down.
    for (m, (reply, _)) in made.iter().zip(read_all(&app, made.iter()).await) {
        if m.owner == VICTIM {
            assert_eq!(reply.status, 503, "session {}: {reply:?}", m.n);
        } else {
            assert_own_data(m, &reply, false);
        }
    }
    // Marked down: 503 at once, well inside the timeout.
    for (m, (reply, took)) in made.iter().zip(read_all(&app, made.iter()).await) {
        if m.owner == VICTIM {
            assert_eq!(reply.status, 503, "session {}: {reply:?}", m.n);
            assert!(took < io_timeout / 4, "session {}: 503 after {took:?}", m.n);
        } else {
            assert_own_data(m, &reply, false);
        }
    }

    trio.servers[VICTIM].restart();
    tokio::time::sleep(retry_interval + Duration::from_millis(100)).await;
    // One request tries it again and puts it back in service...
    let first = made.iter().find(|m| m.owner == VICTIM).unwrap();
    let reply = app.get("/get/p/k", Some(&first.cookie)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "none"));
    // ...then its sessions start fresh, and every other session is as it was.
    for (m, (reply, _)) in made.iter().zip(read_all(&app, made.iter()).await) {
        assert_own_data(m, &reply, m.owner == VICTIM);
        if m.owner == VICTIM {
            assert_eq!(reply.body, "none", "session {}", m.n);
        }
    }
}

/// Opted in to start fresh: with a server stalled, its sessions and new ones work on the
/// live servers, nothing is written to it, a logout of its sessions still fails closed,
/// and when it answers again no live session has moved.
#[actix_web::test]
async fn start_fresh_writes_nothing_to_a_dead_server_and_moves_nothing_back() {
    let trio = Trio::start(&[1, 1, 1]);
    let retry_interval = Duration::from_millis(500);
    let store = trio
        .builder()
        .when_server_down(WhenDown::StartFresh)
        // A live server's reply late by less than this on a loaded machine still counts.
        .io_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(1))
        .retry_interval(retry_interval)
        .build()
        .unwrap();
    let app = TestApp::new(CountingStore::new(store)).await;
    let made = make_sessions(&app, &trio, 60).await;
    let (victims, others): (Vec<&Made>, Vec<&Made>) = made.iter().partition(|m| m.owner == VICTIM);
    assert!(
        victims.len() >= 4,
        "{} sessions on the victim",
        victims.len()
    );
    const WRITES: [&str; 4] = ["cmd_set", "cmd_touch", "delete_hits", "delete_misses"];
    let writes = |m: &Memcached| WRITES.map(|w| m.stats()[w]);
    let before = writes(&trio.servers[VICTIM]);
    let stayer = victims.last().unwrap();
    let stayer_id: SessionId = app
        .get("/id", Some(&stayer.cookie))
        .await
        .body
        .parse()
        .unwrap();

    trio.servers[VICTIM].pause();
    // Its sessions read as fresh ones.
    for m in &victims {
        let reply = app.get("/get/p/k", Some(&m.cookie)).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "none"),
            "{}",
            m.n
        );
        assert!(reply.cookie.is_none(), "nothing written, no new cookie");
    }
    // Half of them store something: it goes under a new id on a live server.
    let (movers, stayers) = victims.split_at(victims.len() / 2);
    let mut moved = Vec::new();
    for m in movers {
        let reply = app
            .get(&format!("/set/p/k/{}", m.n + 1000), Some(&m.cookie))
            .await;
        assert_eq!(reply.status, 200, "{}: {reply:?}", m.n);
        assert_ne!(trio.owner(&app.store.last_created()), VICTIM);
        moved.push(Made {
            cookie: reply.cookie(),
            owner: trio.owner(&app.store.last_created()),
            n: m.n + 1000,
        });
    }
    // New sessions never go to it.
    let mut new = Vec::new();
    for n in 2000..2030 {
        let reply = app.get(&format!("/set/p/k/{n}"), None).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let owner = trio.owner(&app.store.last_created());
        assert_ne!(owner, VICTIM, "new session {n} placed on the dead server");
        new.push(Made {
            cookie: reply.cookie(),
            owner,
            n,
        });
    }
    // A logout or login of a session that cannot be reached is not a silent success.
    for path in ["/purge", "/renew"] {
        let reply = app.get(path, Some(&stayers[0].cookie)).await;
        assert_eq!(reply.status, 503, "{path}: {reply:?}");
        assert!(reply.cookie.is_none(), "{path}: the cookie stays");
    }
    // Nor does the container stand a fresh session in for one it cannot reach.
    let opened = app.sessions.open(&stayer_id).await;
    assert!(
        matches!(opened, Err(SessionError::Store(StoreError::Unavailable(_)))),
        "{opened:?}"
    );
    assert!(app.sessions.purge(&stayer_id).await.is_err());
    for m in others.iter().copied().chain(&moved).chain(&new) {
        let reply = app.get("/get/p/k", Some(&m.cookie)).await;
        assert_own_data(m, &reply, false);
    }

    // It answers again (it had stalled, not died): nothing was written to it meanwhile.
    trio.servers[VICTIM].resume();
    assert_eq!(writes(&trio.servers[VICTIM]), before, "{WRITES:?}");
    tokio::time::sleep(retry_interval + Duration::from_millis(100)).await;
    // Every live session reads back where it was: those that stayed find their data again,
    // those that moved and the new ones keep theirs.
    for m in stayers
        .iter()
        .chain(&others)
        .copied()
        .chain(&moved)
        .chain(&new)
    {
        let reply = app.get("/get/p/k", Some(&m.cookie)).await;
        assert_own_data(m, &reply, false);
    }
}

/// A new session whose server fails goes under another id at once: not one 503, even
/// before the server is marked down, and only ids of live servers are handed out.
#[actix_web::test]
async fn new_sessions_go_around_a_dead_server_from_its_first_failure() {
    let mut trio = Trio::start(&[1, 1, 1]);
    let store = trio.builder().failure_limit(1).build().unwrap();
    let app = TestApp::new(CountingStore::new(store)).await;
    trio.servers[VICTIM].stop();
    for n in 0..30 {
        let reply = app.get(&format!("/set/p/k/{n}"), None).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_ne!(trio.owner(&app.store.last_created()), VICTIM);
    }
    assert!(
        app.store.calls().creates > 30,
        "some id fell on the dead server and was drawn again"
    );
}

/// With every server stalled, and each due a retry whenever a new session's write comes
/// (their retry interval shorter than a connect timeout), a new session answers 503 after
/// three attempts, not one per id drawn (up to 64, a connect timeout each).
#[actix_web::test]
async fn with_every_server_stalled_a_new_session_fails_after_three_attempts() {
    let trio = Trio::start(&[1, 1, 1]);
    let store = trio
        .builder()
        .failure_limit(1)
        // Each attempt outlasts the interval, so every server is due at the next write;
        // the interval is long enough that a server just marked down still reads as down
        // when the next id is checked, on a loaded machine.
        .connect_timeout(Duration::from_millis(300))
        .io_timeout(Duration::from_millis(300))
        .retry_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let app = TestApp::new(CountingStore::new(store)).await;
    for server in &trio.servers {
        server.pause();
    }
    let reply = app.get("/set/p/k/1", None).await;
    for server in &trio.servers {
        server.resume();
    }
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(app.store.calls().creates, 3);
}

/// Through actix-session's middleware too, a new session is drawn an id off a server that
/// failed: not one 500 (its `save` went to whatever server the id fell on).
#[cfg(feature = "actix-session")]
#[actix_web::test]
async fn new_sessions_through_actix_session_go_around_a_dead_server() {
    let mut trio = Trio::start(&[1, 1, 1]);
    let store = trio.builder().failure_limit(1).build().unwrap();
    let app = crate::actix_session::app(store, 60, false).await;
    trio.servers[VICTIM].stop();
    for n in 0..30 {
        let (_, cookie) = crate::actix_session::call(&app, &format!("/set/{n}"), None).await;
        assert!(cookie.is_some(), "a session cookie for /set/{n}");
    }
}

/// The first request to a server marked down, once its retry interval is over, is a read:
/// a write sent to a server that has stalled would land when it wakes, unseen.
#[actix_web::test]
async fn a_server_tried_again_is_asked_a_read_before_any_write() {
    let trio = Trio::start(&[1, 1, 1]);
    let retry_interval = Duration::from_secs(1);
    // Two connections, both open before it stalls: the write would find one still live.
    let store = trio
        .builder()
        .pool_max_size(2)
        .failure_limit(1)
        .io_timeout(Duration::from_secs(1))
        .retry_interval(retry_interval)
        .build()
        .unwrap();
    let on_victim = || loop {
        let id = SessionId::generate().unwrap();
        if trio.owner(&id) == VICTIM {
            return id;
        }
    };
    let sets = || trio.servers[VICTIM].stats()["cmd_set"];
    for _ in 0..2 {
        assert_eq!(store.load(&on_victim()).await.unwrap(), None);
    }
    let before = sets();
    trio.servers[VICTIM].pause();
    assert!(store.load(&on_victim()).await.is_err(), "marks it down");
    let id = on_victim();
    assert!(!store.accepts(&id), "marked down: no new session there");
    tokio::time::sleep(retry_interval + Duration::from_millis(50)).await;
    assert!(store.accepts(&id), "due to be tried again");
    let e = store.create(&id, b"{}", Duration::from_secs(60)).await;
    assert!(e.is_err(), "{e:?}");
    trio.servers[VICTIM].resume();
    // Time to work through whatever reached its socket while it stalled.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sets(), before, "no write reached it");
    assert_eq!(trio.servers[VICTIM].holds(&[key(&id)]), [false]);
}

/// A bound session whose user's generation item sits on a stalled server (its own server
/// answering): 503 by default, a fresh session with start-fresh; never signed in unchecked,
/// and never signed out for it: when the server answers again the session is as it was.
#[actix_web::test]
async fn a_users_item_on_a_stalled_server_fails_closed() {
    for when in [WhenDown::FailClosed, WhenDown::StartFresh] {
        let trio = Trio::start(&[1, 1, 1]);
        let app = TestApp::new(CountingStore::new(trio.quick_to_fail(when))).await;
        let item_owner = trio.owner(&app.generation_item("ada"));
        let cookie = loop {
            let cookie = app.get("/login/ada", None).await.cookie();
            if trio.owner(&app.store.last_created()) != item_owner {
                break cookie;
            }
        };
        trio.servers[item_owner].pause();
        let reply = app.get("/whoami", Some(&cookie)).await;
        match when {
            WhenDown::FailClosed => assert_eq!(reply.status, 503, "{reply:?}"),
            _ => assert_eq!((reply.status, reply.body.as_str()), (200, "none")),
        }
        assert!(reply.cookie.is_none(), "{when:?}: the cookie stays");
        trio.servers[item_owner].resume();
        assert_eq!(
            app.get("/whoami", Some(&cookie)).await.body,
            "ada",
            "{when:?}"
        );
    }
}

/// With `StartFresh`, a session whose user's item is on a stalled server starts fresh; a
/// sign-out asked then (everywhere, of the others, or of one session) cannot reach the
/// item, so it answers 503 and does nothing, rather than 200 with only this session
/// purged and the others still signed in once the server answers.
#[actix_web::test]
async fn a_sign_out_while_the_users_item_is_unreachable_is_a_503() {
    let trio = Trio::start(&[1, 1, 1]);
    let store = trio.quick_to_fail(WhenDown::StartFresh);
    let app = TestApp::new(CountingStore::new(store)).await;
    let item_owner = trio.owner(&app.generation_item("ada"));
    let mut devices = Vec::new();
    while devices.len() < 2 {
        let cookie = app.get("/login/ada", None).await.cookie();
        if trio.owner(&app.store.last_created()) != item_owner {
            devices.push(cookie);
        }
    }
    let listed = app.sessions.of_user("ada").await.unwrap();
    let handles: Vec<String> = listed.iter().map(|s| s.handle.to_string()).collect();
    for route in [
        "/sign-out-everywhere".to_owned(),
        "/sign-out-others".to_owned(),
        format!("/sign-out-session/{}", handles[0]),
        // A purge first takes the id of the session started fresh for: not its flag.
        "/purge-then-sign-out-everywhere".to_owned(),
        format!("/purge-then-sign-out-session/{}", handles[0]),
    ] {
        trio.servers[item_owner].pause();
        let reply = app.get(&route, Some(&devices[0])).await;
        trio.servers[item_owner].resume();
        assert_eq!(reply.status, 503, "{route}: {reply:?}");
        assert!(reply.cookie.is_none(), "{route}: {reply:?}");
        for device in &devices {
            assert_eq!(
                app.get("/whoami", Some(device)).await.body,
                "ada",
                "{route}"
            );
        }
    }
}

/// Readiness holds while any server answers: one stalled server costs only its own
/// sessions, so `ping` stays `Ok` (every app instance would otherwise leave the load
/// balancer at once: a full outage), and `ping_servers` names the stalled one. A server
/// marked down is reported at once, not waited on; with every server silent, `ping` fails,
/// naming each.
/// A server that hangs while still in service (not yet marked down) does not hold up
/// readiness: `ping` answers as soon as another server does, not after the I/O timeout.
#[actix_web::test]
async fn readiness_does_not_wait_out_a_server_that_hangs() {
    let trio = Trio::start(&[1, 1, 1]);
    let io_timeout = Duration::from_secs(2);
    let store = trio.builder().io_timeout(io_timeout).build().unwrap();
    store.ping().await.unwrap();
    trio.servers[1].pause();
    for _ in 0..3 {
        let started = Instant::now();
        store.ping().await.expect("two of three answer");
        assert!(
            started.elapsed() < io_timeout / 2,
            "waited {:?} on the server that hangs",
            started.elapsed()
        );
    }
    trio.servers[1].resume();
}

#[actix_web::test]
async fn readiness_holds_while_any_server_answers() {
    let trio = Trio::start(&[1, 1, 1]);
    // The servers that answer must, within it, on a loaded machine (one late reply marks
    // its server down).
    let io_timeout = Duration::from_secs(1);
    let store = trio
        .builder()
        .io_timeout(io_timeout)
        .failure_limit(1)
        .retry_interval(Duration::from_millis(500))
        .build()
        .unwrap();
    store.ping().await.unwrap();
    trio.servers[1].pause();
    store.ping().await.expect("two of three answer");
    // Waits for each server: the stalled one times out, and is marked down.
    store.ping_servers().await;
    let started = Instant::now();
    let report = store.ping_servers().await;
    // Waited on, it would take the whole timeout.
    assert!(
        started.elapsed() < io_timeout * 9 / 10,
        "the stalled server, marked down, is not waited on: {:?}",
        started.elapsed()
    );
    for (at, server) in report.iter().enumerate() {
        assert_eq!(server.server, trio.servers[at].addr().to_string());
        assert_eq!(server.result.is_ok(), at != 1, "{at}: {:?}", server.result);
    }
    let down = report[1].result.as_ref().unwrap_err();
    let why = std::error::Error::source(down).unwrap().to_string();
    assert!(why.contains("marked down"), "{why}");
    trio.servers[0].pause();
    trio.servers[2].pause();
    let err = store.ping().await.unwrap_err();
    let why = std::error::Error::source(&err).unwrap().to_string();
    for server in &trio.servers {
        assert!(why.contains(&server.addr().to_string()), "{why}");
    }
    for server in &trio.servers {
        server.resume();
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Each server due for a retry, taken by this report, which waits for every one (a
    // `ping` answers at the first, the others' retries still in flight).
    let report = store.ping_servers().await;
    assert!(report.iter().all(|s| s.result.is_ok()), "{report:?}");
    store.ping().await.unwrap();
}

/// A login that keeps its session's id (`renew_on_bind(false)`) lists itself in the user's
/// item, then writes its session; when that write is never sent (the session's server
/// refuses the connection, or, stalled, marked down and due a retry, leaves the read asked
/// first unanswered), its entry goes again and the answer is 503. At a limit of 1, the
/// user's next login, on another device, goes through. (The write was taken as one that
/// may have landed: the entry stayed, and while the server was down it counted as a live
/// session: 403.)
#[actix_web::test]
async fn a_login_whose_write_was_never_sent_leaves_no_entry() {
    for tried_again in [false, true] {
        let mut trio = Trio::start(&[1, 1, 1]);
        let retry_interval = Duration::from_millis(100);
        // Two connections to each server: the read asked of a stalled server tried again
        // goes out on the one still open (a timeout closed the other).
        let store = trio
            .builder()
            .failure_limit(1)
            .retry_interval(retry_interval)
            .pool_max_size(2)
            // The healthy servers must answer within it, on a loaded machine.
            .io_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let app = TestApp::configured(CountingStore::new(store), |b| {
            b.renew_on_bind(false)
                .max_sessions_per_user(1, actix_memcache_session::OverLimit::RefuseLogin)
        })
        .await;
        // A user whose item is not on the victim. (Found by its key, not by which server's
        // item count a login raises: a text protocol's sign-out leaves an expired item
        // counted until memcached reclaims it, as the next item of its size may.)
        let user = (0..)
            .map(|n| format!("user{n}"))
            .find(|name| trio.owner(&app.generation_item(name)) != VICTIM)
            .unwrap();
        let phone = session_on(&app, &trio, true).await;
        let another = session_on(&app, &trio, true).await;
        let (reply, ()) = app
            .interleave_with(&format!("/gated/login-from/{user}/phone"), &phone, async {
                if tried_again {
                    // Marked down, then due a retry, whose first read goes unanswered.
                    trio.servers[VICTIM].pause();
                    assert_eq!(app.get("/get/p/k", Some(&another)).await.status, 503);
                    tokio::time::sleep(retry_interval + Duration::from_millis(50)).await;
                } else {
                    trio.servers[VICTIM].stop();
                }
            })
            .await;
        assert_eq!(reply.status, 503, "tried again: {tried_again}; {reply:?}");
        let laptop = session_on(&app, &trio, false).await;
        let reply = app
            .get(&format!("/login-from/{user}/laptop"), Some(&laptop))
            .await;
        assert_eq!(reply.status, 200, "tried again: {tried_again}; {reply:?}");
        if tried_again {
            trio.servers[VICTIM].resume();
        }
    }
}

/// A new session's cookie, on the victim or not as `wanted`.
async fn session_on(app: &TestApp<MemcacheStore>, trio: &Trio, wanted: bool) -> Cookie<'static> {
    loop {
        let cookie = app.get("/set/p/k/1", None).await.cookie();
        if (trio.owner(&app.store.last_created()) == VICTIM) == wanted {
            return cookie;
        }
    }
}
