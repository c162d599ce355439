//! `MemcacheStore` against a real memcached: the shared suites for both constructors, and
//! the failures only a real server shows.

use std::time::{Duration, Instant};

use actix_memcache_session::{MemcacheStore, Protocol, SessionId, StoreError};
use futures_util::future::join_all;

use actix_web::cookie::Cookie;

use crate::app::{Configure, TestApp};
use crate::fake::TurnCountingProxy;
use crate::memcached::{listener, store, with_server};
use crate::support::{CountingStore, Reply};

mod native {
    actix_memcache_session::store_acceptance_suite!(crate::memcached::store());
    #[cfg(feature = "actix-session")]
    crate::actix_session::actix_session_suite!(crate::memcached::store());

    mod http {
        crate::http::http_suite!(crate::memcached::store());
        crate::devices::devices_suite!(crate::memcached::store());
        crate::app_testing::app_testing_suite!(crate::memcached::store());
    }
}

mod text {
    actix_memcache_session::store_acceptance_suite!(crate::memcached::text_store());
    #[cfg(feature = "actix-session")]
    crate::actix_session::actix_session_suite!(crate::memcached::text_store());

    mod http {
        crate::http::http_suite!(crate::memcached::text_store());
        crate::devices::devices_suite!(crate::memcached::text_store());
        crate::app_testing::app_testing_suite!(crate::memcached::text_store());
    }
}

#[cfg(feature = "r2d2")]
mod r2d2_binary {
    actix_memcache_session::store_acceptance_suite!(crate::memcached::r2d2_store(""));
    #[cfg(feature = "actix-session")]
    crate::actix_session::actix_session_suite!(crate::memcached::r2d2_store(""));

    mod http {
        crate::http::http_suite!(crate::memcached::r2d2_store(""));
        crate::devices::devices_suite!(crate::memcached::r2d2_store(""));
        crate::app_testing::app_testing_suite!(crate::memcached::r2d2_store(""));
    }
}

/// The pool as `docs/stores.md` recommends it: the text protocol, with a read timeout.
#[cfg(feature = "r2d2")]
mod r2d2_ascii {
    actix_memcache_session::store_acceptance_suite!(crate::memcached::r2d2_store(ASCII));
    #[cfg(feature = "actix-session")]
    crate::actix_session::actix_session_suite!(crate::memcached::r2d2_store(ASCII));

    const ASCII: &str = "?protocol=ascii&timeout=2";

    mod http {
        use super::ASCII;

        crate::http::http_suite!(crate::memcached::r2d2_store(ASCII));
        crate::devices::devices_suite!(crate::memcached::r2d2_store(ASCII));
        crate::app_testing::app_testing_suite!(crate::memcached::r2d2_store(ASCII));
    }
}

fn counters(names: &[&str]) -> Vec<u64> {
    let stats = with_server(|m| m.stats());
    names.iter().map(|n| stats[*n]).collect()
}

const WRITES: [&str; 2] = ["cmd_set", "cmd_touch"];

/// memcached's own counters show no write for an unchanged session, an aborted request,
/// or a request that never used the session, and no read for the last.
#[actix_web::test]
async fn memcached_sees_no_needless_commands() {
    let app = TestApp::new(CountingStore::new(store())).await;
    let cookie = app.get("/set/p/k/1", None).await.cookie();
    let all = ["cmd_get", "cmd_set", "cmd_touch"];
    let before = counters(&all);

    assert_eq!(app.get("/plain", Some(&cookie)).await.status, 200);
    assert_eq!(
        counters(&all),
        before,
        "untouched session: no command at all"
    );

    assert_eq!(app.get("/get/p/k", Some(&cookie)).await.body, "1");
    assert_eq!(app.get("/set/p/k/1", Some(&cookie)).await.status, 200);
    assert_eq!(
        app.get("/set-status/500/p/k/2", Some(&cookie)).await.status,
        500
    );
    assert_eq!(app.get("/set-err/p/k/2", Some(&cookie)).await.status, 400);
    assert_eq!(
        counters(&WRITES),
        before[1..],
        "reads, same values, aborts: no write"
    );
    assert_eq!(
        counters(&["cmd_get"])[0],
        before[0] + 4,
        "one read per request"
    );

    assert_eq!(app.get("/set/p/k/2", Some(&cookie)).await.status, 200);
    assert_eq!(
        counters(&["cmd_set"])[0],
        before[1] + 1,
        "a change: one write"
    );
}

/// A session bound to a user reads its user's item in the same round trip as the session,
/// in both protocols (the default's, meta from 1.6.18, and text), and a change or a refresh
/// costs one more, as for any session; its login costs more, once.
#[actix_web::test]
async fn a_bound_session_is_read_in_one_round_trip() {
    for protocol in [Protocol::Auto, Protocol::Text] {
        let proxy = TurnCountingProxy::start(with_server(|m| m.addr()));
        let store = MemcacheStore::builder(proxy.url())
            .protocol(protocol)
            .build()
            .unwrap();
        let app = TestApp::new(CountingStore::new(store)).await;
        // The connection first (its protocol's handshake is not the login's).
        app.store.inner.ping().await.unwrap();
        proxy.take();
        let cookie = app.get("/login/ada", None).await.cookie();
        assert_eq!(
            proxy.take(),
            5,
            "{protocol:?}: a first login reads the roster, starts it, reads it back, then \
             writes the session and lists it"
        );
        app.store.reset();
        assert_eq!(app.get("/whoami", Some(&cookie)).await.body, "ada");
        assert_eq!(app.store.calls().loads, 2, "{protocol:?}: session and item");
        assert_eq!(proxy.take(), 1, "{protocol:?}: one round trip for both");
        let reply = app.get("/set/p/k/2", Some(&cookie)).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(
            proxy.take(),
            2,
            "{protocol:?}: a change: the read and the write"
        );
        // A login of a user with a session listed: the roster, the listed session, the new
        // session, and the roster's compare-and-swap (a first login also starts it).
        assert_eq!(app.get("/login/ada", None).await.status, 200);
        assert_eq!(proxy.take(), 4, "{protocol:?}: a second login");
    }
    // A bound session's refresh writes when it was last seen instead of a touch: still one
    // round trip after the read.
    let proxy = TurnCountingProxy::start(with_server(|m| m.addr()));
    let store = MemcacheStore::new(&proxy.url()).unwrap();
    let app = TestApp::configured(CountingStore::new(store), |b| b.refresh_fraction(0.0)).await;
    let cookie = app.get("/login/ada", None).await.cookie();
    proxy.take();
    app.store.reset();
    assert_eq!(app.get("/whoami", Some(&cookie)).await.body, "ada");
    let calls = app.store.calls();
    assert_eq!((calls.updates, calls.touches), (1, 0), "{calls:?}");
    assert_eq!(proxy.take(), 2, "the read, then the time stamp");
}

/// `ping`, for a readiness route: fine with memcached there, in every client; an error
/// naming the server, within the timeout, with nothing listening.
#[actix_web::test]
async fn ping_tells_whether_memcached_answers() {
    store().ping().await.unwrap();
    crate::memcached::text_store().ping().await.unwrap();
    #[cfg(feature = "r2d2")]
    crate::memcached::r2d2_store("").ping().await.unwrap();
    // Port 1: never handed out by `bind(:0)`, so no copy of a listener just closed can
    // answer there (see `answers_version`).
    let port = 1;
    let nobody = MemcacheStore::new(&format!("memcache://127.0.0.1:{port}")).unwrap();
    let started = Instant::now();
    let err = nobody.ping().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let why = std::error::Error::source(&err).unwrap().to_string();
    assert!(why.contains(&format!("127.0.0.1:{port}")), "{why}");
}

/// Connections to memcached have TCP keepalive on: idle, the kernel runs a keepalive timer
/// on each (timer 2 in /proc/net/tcp), so a firewall or NAT that forgets quiet flows keeps
/// them. Without it the timer is off (0).
#[actix_web::test]
async fn idle_connections_to_memcached_are_kept_alive() {
    for protocol in [Protocol::Auto, Protocol::Text] {
        let server = crate::memcached::Memcached::start();
        let store = MemcacheStore::builder(server.url())
            .protocol(protocol)
            .build()
            .unwrap();
        let id = SessionId::generate().unwrap();
        let loaded = actix_memcache_session::SessionStore::load(&store, &id).await;
        assert!(loaded.unwrap().is_none());
        let port = format!("{:04X}", server.addr().port());
        let timers = || -> Vec<String> {
            let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let to_server = fields.get(2)?.ends_with(&format!(":{port}"));
                    let established = fields.get(3) == Some(&"01");
                    (to_server && established).then(|| fields.get(5).unwrap_or(&"").to_string())
                })
                .collect()
        };
        // Until the request's own segments are acknowledged, the timer is the
        // retransmission's (1).
        let deadline = Instant::now() + Duration::from_secs(5);
        let timers = loop {
            let timers = timers();
            let settled = timers.iter().all(|t| !t.starts_with("01:"));
            if (settled && !timers.is_empty()) || Instant::now() > deadline {
                break timers;
            }
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            !timers.is_empty(),
            "{protocol:?}: no connection to memcached"
        );
        assert!(
            timers.iter().all(|t| t.starts_with("02:")),
            "{protocol:?}: timers {timers:?}"
        );
    }
}

/// memcached down: the session's routes answer 503 with `Retry-After` within the timeout,
/// other routes are unaffected.
#[actix_web::test]
async fn memcached_down_is_a_quick_503() {
    let app = TestApp::new(CountingStore::new(store())).await;
    let cookie = app.get("/set/p/k/1", None).await.cookie();
    with_server(|m| m.stop());
    for (path, cookie) in [("/get/p/k", Some(&cookie)), ("/set/p/k/2", None)] {
        let started = Instant::now();
        let reply = app.get(path, cookie).await;
        assert_eq!(reply.status, 503, "{path}: {reply:?}");
        assert_eq!(reply.retry_after.as_deref(), Some("1"));
        assert_eq!(reply.body, "session store unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(app.get("/plain", Some(&cookie)).await.status, 200);
}

/// A memcached that accepts connections but never answers: 503 after the I/O timeout.
#[actix_web::test]
async fn silent_memcached_times_out_into_503() {
    let silent = listener();
    let url = format!("memcache://{}", silent.local_addr().unwrap());
    let store = MemcacheStore::builder(url)
        .io_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let app = TestApp::new(CountingStore::new(store)).await;
    let started = Instant::now();
    let reply = app.get("/set/p/k/1", None).await;
    assert_eq!(reply.status, 503, "{reply:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
}

/// Two requests of one worker reaching a memcached that accepts connections but never
/// answers: the second waits for the first's attempt to connect, and both get their 503
/// within `connect_timeout` (the wait counts against it), not the second after twice it.
#[actix_web::test]
async fn a_request_waiting_for_anothers_connect_fails_within_the_connect_timeout() {
    use actix_memcache_session::{SessionId, SessionStore};
    let silent = listener();
    let url = format!("memcache://{}", silent.local_addr().unwrap());
    let connect_timeout = Duration::from_millis(600);
    let store = MemcacheStore::builder(url)
        .connect_timeout(connect_timeout)
        .io_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let (a, b) = (
        SessionId::generate().unwrap(),
        SessionId::generate().unwrap(),
    );
    let started = Instant::now();
    let timed = |id| {
        let store = &store;
        async move {
            let result = store.load(&id).await;
            (result.is_err(), started.elapsed())
        }
    };
    let (first, second) = futures_util::future::join(timed(a), timed(b)).await;
    for (failed, elapsed) in [first, second] {
        assert!(failed);
        assert!(elapsed < connect_timeout * 3 / 2, "{elapsed:?}");
    }
}

/// A worker that stalls longer than `io_timeout` (a blocking handler, an overloaded
/// machine), before its request is written or after memcached answered, gets the reply, not
/// a timeout: the late one is the worker, not memcached. (Stalls of up to `io_timeout`
/// before the write are forgiven; this one is 1.2 times it, which leaves the write and the
/// reply 200 ms on a loaded machine.)
#[actix_web::test]
async fn a_worker_stalled_past_the_timeout_still_gets_the_reply() {
    use actix_memcache_session::{SessionId, SessionStore};
    let timeout = Duration::from_millis(250);
    let store = MemcacheStore::builder(with_server(|m| m.url()))
        .io_timeout(timeout)
        .build()
        .unwrap();
    let id = SessionId::generate().unwrap();
    assert!(store
        .create(&id, b"kept", Duration::from_secs(60))
        .await
        .unwrap());
    for round in 0..10 {
        let stall = async move {
            // Round 0 stalls before the writer runs; later ones after a few turns of the
            // worker's tasks, past the write and usually past the reply.
            for _ in 0..round % 5 {
                actix_web::rt::task::yield_now().await;
            }
            std::thread::sleep(timeout * 6 / 5);
        };
        let (loaded, ()) = futures_util::future::join(store.load(&id), stall).await;
        let loaded = loaded.expect("the reply was there when the worker woke");
        assert_eq!(loaded.expect("stored").data, b"kept");
    }
}

/// After a restart the first request already succeeds (stale pooled connections are
/// replaced), and under load no request ever sees another session's data.
#[actix_web::test]
async fn restart_recovers_and_never_mixes_sessions() {
    const SESSIONS: usize = 100;
    let app = TestApp::new(CountingStore::new(store())).await;
    let mut cookies = Vec::new();
    for i in 0..SESSIONS {
        cookies.push(app.get(&format!("/set/p/owner/{i}"), None).await.cookie());
    }

    with_server(|m| m.restart());
    let back = Instant::now();
    let first = app.get("/get/p/owner", Some(&cookies[0])).await;
    assert_eq!(
        (first.status, first.body.as_str()),
        (200, "none"),
        "data went with the restart"
    );
    assert!(back.elapsed() < Duration::from_secs(1));

    let app = &app;
    let (mut ok, mut errors) = (0, 0);
    for round in 0..6 {
        if round == 3 {
            with_server(|m| m.restart());
        }
        let replies = join_all(cookies.iter().enumerate().map(|(i, cookie)| async move {
            let set = app.get(&format!("/set/p/owner/{i}"), Some(cookie)).await;
            let cookie = set.cookie.clone().unwrap_or_else(|| cookie.clone());
            (i, set, app.get("/get/p/owner", Some(&cookie)).await)
        }))
        .await;
        for (i, set, get) in replies {
            for reply in [&set, &get] {
                match reply.status {
                    200 => ok += 1,
                    503 => errors += 1,
                    other => panic!("unexpected {other}: {reply:?}"),
                }
            }
            if get.status == 200 {
                assert!(
                    get.body == i.to_string() || get.body == "none",
                    "session {i} saw {:?}",
                    get.body
                );
            }
            if let Some(c) = set.cookie {
                cookies[i] = c;
            }
        }
    }
    assert!(ok > 10 * SESSIONS, "ok {ok}, errors {errors}");
}

/// Twice memcached's default item limit (1 MiB).
const PAST_ITEM_LIMIT: usize = 2 << 20;

/// An app whose session size limit is far above memcached's item limit, a session holding
/// `p/k = 1`, and the reply to writing `PAST_ITEM_LIMIT` bytes more into it.
async fn write_past_item_limit(
    store: MemcacheStore,
) -> (TestApp<MemcacheStore>, Cookie<'static>, Reply) {
    let app = TestApp::configured(CountingStore::new(store), |b| b.max_size(8 << 20)).await;
    let cookie = app.get("/set/p/k/1", None).await.cookie();
    let big = format!("/big/p/blob/{PAST_ITEM_LIMIT}");
    let reply = app.get(&big, Some(&cookie)).await;
    (app, cookie, reply)
}

/// A session over memcached's item limit (1 MiB by default) gets 413 and writes nothing.
#[actix_web::test]
async fn session_over_memcached_item_limit_is_413() {
    let (app, cookie, reply) = write_past_item_limit(store()).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(reply.body.contains("item limit"), "{}", reply.body);
    assert!(reply.cookie.is_none());
    assert_eq!(app.get("/get/p/k", Some(&cookie)).await.body, "1");
    assert_eq!(app.get("/get/p/blob", Some(&cookie)).await.body, "none");
    let fresh = app
        .get(&format!("/big/p/blob/{PAST_ITEM_LIMIT}"), None)
        .await;
    assert_eq!(fresh.status, 413);
    assert!(fresh.cookie.is_none());
}

/// A bad URL or key prefix is refused when the store is built.
#[test]
fn bad_configuration_is_refused() {
    for bad in [
        MemcacheStore::new("localhost:11211"),
        MemcacheStore::builder("memcache://h")
            .key_prefix("a b")
            .build(),
    ] {
        assert!(matches!(bad, Err(StoreError::InvalidConfig(_))));
    }
}

/// memcached itself refuses (and, from 1.6.18 on, drops the stored item) when the store's
/// limit is set above its `-I`: the store's own check is what keeps the session.
#[actix_web::test]
async fn item_limit_is_checked_before_memcached_sees_it() {
    let lax = MemcacheStore::builder(with_server(|m| m.url()))
        .max_item_size(8 << 20)
        .build()
        .unwrap();
    let (app, cookie, reply) = write_past_item_limit(lax).await;
    assert_eq!(reply.status, 413, "memcached refuses the item: {reply:?}");
    assert!(reply.body.contains("item limit"), "{}", reply.body);
    let dropped = with_server(|m| m.version()) >= (1, 6, 18);
    assert_eq!(
        app.get("/get/p/k", Some(&cookie)).await.body,
        if dropped { "none" } else { "1" },
        "this is why the store checks first: memcached 1.6.18 and later drop the session"
    );
}

/// A stored item larger than this store's `max_item_size` (written under a larger limit:
/// memcached's `-I` raised, or the store's limit lowered since) is read past and dropped:
/// its load answers `TooLarge`, while a request pipelined behind it on the same connection
/// lands and answers as usual, and the connection stays open. (The announced length
/// ended the connection, failing every request queued on it, and the load was resent
/// and failed again as if the server were down.)
#[actix_web::test]
async fn an_item_over_the_store_limit_is_read_past_on_its_connection() {
    use actix_memcache_session::{SessionId, SessionStore};
    const TTL: Duration = Duration::from_secs(60);
    let server = crate::memcached::Memcached::start();
    let (big, other) = (
        SessionId::generate().unwrap(),
        SessionId::generate().unwrap(),
    );
    let value = vec![b'x'; 100 << 10];
    let lax = MemcacheStore::new(&server.url()).unwrap();
    assert!(lax.create(&big, &value, TTL).await.unwrap());
    // Auto: the meta protocol from 1.6.18 on, the text protocol before.
    for protocol in [Protocol::Auto, Protocol::Text] {
        let strict = MemcacheStore::builder(server.url())
            .max_item_size(64 << 10)
            .pool_max_size(1)
            .protocol(protocol)
            .build()
            .unwrap();
        assert!(strict.load(&other).await.unwrap().is_none(), "connected");
        let connections = server.stats()["total_connections"];
        let (loaded, created) =
            futures_util::future::join(strict.load(&big), strict.create(&other, b"landed", TTL))
                .await;
        assert!(
            matches!(loaded, Err(StoreError::TooLarge { size }) if size == value.len()),
            "{protocol:?}: {loaded:?}"
        );
        assert!(created.unwrap(), "{protocol:?}: the request behind it");
        let stored = strict.load(&other).await.unwrap().expect("stored").data;
        assert_eq!(stored, b"landed", "{protocol:?}");
        assert_eq!(
            server.stats()["total_connections"],
            connections + 1,
            "{protocol:?}: the same connection throughout (one more: the stats' own)"
        );
        strict.delete(&other).await.unwrap();
    }
}

/// A memcached of its own, and two apps with one key on it: one whose store reads items up
/// to 1 MiB (the default), one whose store reads them up to 64 KiB.
async fn lax_and_strict() -> (
    crate::memcached::Memcached,
    TestApp<MemcacheStore>,
    TestApp<MemcacheStore>,
) {
    let server = crate::memcached::Memcached::start();
    let key = || actix_memcache_session::Key::try_from(&[4u8; 32][..]).unwrap();
    let lax = CountingStore::new(MemcacheStore::new(&server.url()).unwrap());
    let strict = MemcacheStore::builder(server.url())
        .max_item_size(64 << 10)
        .build()
        .unwrap();
    let lax = TestApp::with(lax, key(), |b| b).await;
    let strict = TestApp::with(CountingStore::new(strict), key(), |b| b).await;
    (server, lax, strict)
}

/// A session whose stored record is larger than the store reads is as good as unreadable:
/// its owner gets a fresh session (and can write, and log out), never a 503 on every
/// request until it expires; the record itself is left alone.
#[actix_web::test]
async fn a_session_stored_over_the_store_limit_starts_fresh() {
    let (_server, lax, app) = lax_and_strict().await;
    let cookie = lax.get("/big/p/k/100000", None).await.cookie();
    let reply = app.get("/get/p/k", Some(&cookie)).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "none"),
        "{reply:?}"
    );
    let set = app.get("/set/p/k/1", Some(&cookie)).await;
    assert_eq!(set.status, 200, "{set:?}");
    let fresh = set.cookie();
    assert_ne!(fresh.value(), cookie.value(), "a new session");
    assert_eq!(app.get("/get/p/k", Some(&fresh)).await.body, "1");
    assert_eq!(app.get("/purge", Some(&fresh)).await.status, 200);
    assert_eq!(
        lax.get("/get/p/k", Some(&cookie)).await.body.len(),
        100_002,
        "the large record is left as it was"
    );
}

/// A logout from a session this instance cannot read, but an instance reading larger items
/// (or a later release) may serve, still ends it: a purge removes it, and a sign-out
/// everywhere answers 503 writing nothing, as from a session whose server is down. (Read
/// as no session, the purge answered 200 and removed nothing, the sign-out answered 200
/// and ended nobody: the session stayed signed in where it was readable.) A later cookie
/// naming a live session is still served first.
#[actix_web::test]
async fn a_logout_from_a_session_this_instance_cannot_read_still_ends_it() {
    use actix_memcache_session::SessionStore;
    let (_server, lax, app) = lax_and_strict().await;
    let big = lax.get("/big/p/k/100000", None).await.cookie();
    assert_eq!(app.get("/purge", Some(&big)).await.status, 200);
    let left = lax.get("/get/p/k", Some(&big)).await.body;
    assert!(left == "none", "purged, not {} bytes left", left.len());

    let login = lax.get("/login/ada", None).await.cookie();
    let grown = lax.get("/big/p/k/100000", Some(&login)).await;
    let bound = grown.cookie.unwrap_or(login);
    let out = app.get("/sign-out-everywhere", Some(&bound)).await;
    assert_eq!(out.status, 503, "{out:?}");
    assert_eq!(
        lax.get("/whoami", Some(&bound)).await.body,
        "ada",
        "nothing written"
    );

    let later = lax.get("/set/p/k/1", None).await.cookie();
    let id = lax.store.last_created();
    let v2 = br#"{"v":2,"created":1,"packages":{}}"#;
    lax.store.inner.delete(&id).await.unwrap();
    assert!(lax
        .store
        .inner
        .create(&id, v2, Duration::from_secs(60))
        .await
        .unwrap());
    assert_eq!(app.get("/purge", Some(&later)).await.status, 200);
    assert!(lax.store.inner.load(&id).await.unwrap().is_none(), "purged");

    // Named first among the request's cookies, it does not hide a live session named by
    // a later one (it did: the request read as signed out, its sign-outs answered 503).
    let big = lax.get("/big/p/k/100000", None).await.cookie();
    let live = app.get("/set/p/k/7", None).await.cookie();
    let both = format!("id={}; id={}", big.value(), live.value());
    assert_eq!(app.get_with_cookies("/get/p/k", &both).await.body, "7");

    // Behind a session found signed out, it is the one that stands: a logout must reach
    // it. (The signed-out one stood, and the sign-out answered 200, ending nobody.)
    let first = lax.get("/login/bob", None).await.cookie();
    let second = lax.get("/login/bob", None).await.cookie();
    assert_eq!(
        lax.get("/sign-out-everywhere", Some(&second)).await.status,
        200
    );
    let both = format!("id={}; id={}", first.value(), bound.value());
    let out = app.get_with_cookies("/sign-out-everywhere", &both).await;
    assert_eq!(out.status, 503, "{out:?}");

    // A binding from it (renewing on bind) ends it, as one from a stored session does. (It
    // was left.)
    assert_eq!(app.get("/bind/bob", Some(&big)).await.status, 200);
    let left = lax.get("/get/p/k", Some(&big)).await.body;
    assert!(
        left == "none",
        "ended by the login, not {} bytes left",
        left.len()
    );
}

/// A bound session stored over the store's limit is signed out, and its user's listing
/// leaves it out as unreadable (and prunes it), where it failed with 503 until the record
/// expired.
#[actix_web::test]
async fn a_bound_session_stored_over_the_store_limit_is_neither_signed_in_nor_listed() {
    let (_server, lax, app) = lax_and_strict().await;
    let login = lax.get("/login/ada", None).await.cookie();
    let grown = lax.get("/big/p/k/100000", Some(&login)).await;
    assert_eq!(grown.status, 200, "{grown:?}");
    let cookie = grown.cookie.unwrap_or(login);
    assert_eq!(lax.sessions.of_user("ada").await.unwrap().len(), 1);
    assert_eq!(app.get("/whoami", Some(&cookie)).await.body, "none");
    let listed = app.sessions.of_user("ada").await;
    assert!(listed.as_ref().is_ok_and(Vec::is_empty), "{listed:?}");
}

/// Stores 100 KB under ada's user item of `lax_and_strict`'s key, through the lax app (as a
/// store reading larger items may have written it), and returns the item's id.
async fn grow_adas_item(lax: &TestApp<MemcacheStore>) -> SessionId {
    use actix_memcache_session::SessionStore;
    let item = crate::support::generation_item(&[4u8; 32], "ada");
    let grown = vec![b'x'; 100_000];
    let stored = lax
        .store
        .inner
        .create(&item, &grown, Duration::from_secs(60));
    assert!(stored.await.unwrap());
    item
}

/// A user item larger than the store reads (written under a larger limit) is as good as
/// bytes that are not a roster: the user's next login replaces it. (Every login answered
/// 413 until it expired, 30 days later.)
#[actix_web::test]
async fn a_user_item_over_the_store_limit_is_replaced_by_the_next_login() {
    let (_server, lax, app) = lax_and_strict().await;
    grow_adas_item(&lax).await;
    let login = app.get("/login/ada", None).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(app.get("/whoami", Some(&login.cookie())).await.body, "ada");
    assert_eq!(app.sessions.of_user("ada").await.unwrap().len(), 1);
}

/// A user item of an old key (a fallback now) over the store's limit, and longer than any
/// roster, is no roster on any instance: a login at a limit that refuses counts it as none,
/// and a sign-out everywhere goes ahead and leaves it (both answered 413 until it expired).
/// One over the limit but of a roster's size, which an instance reading larger items may
/// sign sessions in by, still fails the sign-out (413): it stays a sign-out to finish; the
/// current key's item so makes a sign-out blind (503).
#[actix_web::test]
async fn an_old_keys_user_item_over_the_store_limit_counts_only_if_it_can_be_a_roster() {
    use actix_memcache_session::{Key, OverLimit, SessionStore};
    let (server, lax, _) = lax_and_strict().await;
    let old_item = grow_adas_item(&lax).await;
    let rotated = |limit: usize| {
        let store = MemcacheStore::builder(server.url())
            .max_item_size(limit)
            .build()
            .unwrap();
        TestApp::with(
            CountingStore::new(store),
            Key::try_from(&[9u8; 32][..]).unwrap(),
            |b| {
                b.fallback_keys(vec![Key::try_from(&[4u8; 32][..]).unwrap()])
                    .max_sessions_per_user(2, OverLimit::RefuseLogin)
            },
        )
    };
    let app = rotated(64 << 10).await;
    let login = app.get("/login/ada", None).await;
    assert_eq!(login.status, 200, "{login:?}");
    let cookie = login.cookie();
    let out = app.get("/sign-out-everywhere", Some(&cookie)).await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(app.get("/whoami", Some(&cookie)).await.body, "none");
    assert!(
        lax.store.inner.load(&old_item).await.unwrap().is_some(),
        "left"
    );

    let tight = rotated(4 << 10).await;
    let cookie = tight.get("/login/ada", None).await.cookie();
    let session = tight.store.last_created();
    lax.store.inner.delete(&old_item).await.unwrap();
    let roster_sized = vec![b'x'; 5_000];
    let ttl = Duration::from_secs(60);
    let stored = lax.store.inner.create(&old_item, &roster_sized, ttl);
    assert!(stored.await.unwrap());
    let out = tight.get("/sign-out-everywhere", Some(&cookie)).await;
    assert_eq!(out.status, 413, "{out:?}");
    assert_eq!(tight.get("/whoami", Some(&cookie)).await.body, "ada");
    // The current key's item so: whether the session is signed in is unknown here, so a
    // sign-out from it is blind (503), and the session stays. (It read as signed out: the
    // sign-out ended this session alone and answered 200.)
    let item = crate::support::generation_item(&[9u8; 32], "ada");
    lax.store.inner.delete(&item).await.unwrap();
    let stored = lax.store.inner.create(&item, &roster_sized, ttl);
    assert!(stored.await.unwrap());
    let out = tight.get("/sign-out-everywhere", Some(&cookie)).await;
    assert_eq!(out.status, 503, "{out:?}");
    assert!(
        lax.store.inner.load(&session).await.unwrap().is_some(),
        "kept"
    );
    // Named first among the request's cookies, it does not hide a live session named by a
    // later one. (It did, until its item went.)
    let live = tight.get("/set/p/k/7", None).await.cookie();
    let both = format!("id={}; id={}", cookie.value(), live.value());
    assert_eq!(tight.get_with_cookies("/get/p/k", &both).await.body, "7");
}

/// Connections belong to the runtime that opened them: a store used again from a new
/// runtime on the same thread opens new ones instead of waiting on dead ones.
#[test]
fn a_new_runtime_on_the_same_thread_opens_new_connections() {
    use actix_memcache_session::{SessionId, SessionStore};
    let store = store();
    let id = SessionId::generate().unwrap();
    actix_web::rt::System::new().block_on(async {
        assert!(store
            .create(&id, b"x", Duration::from_secs(60))
            .await
            .unwrap());
    });
    actix_web::rt::System::new().block_on(async {
        let started = Instant::now();
        assert!(store.load(&id).await.unwrap().is_some());
        assert!(started.elapsed() < Duration::from_millis(500));
    });
}

/// What `writers` concurrent requests loops, each committing `commits` changes to its own
/// key of one session through an app built with `configure`, got: (200s, 409s). Every key
/// must end at its writer's last acknowledged value: no update lost, whatever the contention.
async fn contend(writers: usize, commits: usize, configure: Configure) -> (usize, usize) {
    let app = TestApp::configured(CountingStore::new(store()), configure).await;
    let cookie = app.get("/set/p/start/0", None).await.cookie();
    let (app, cookie) = (&app, &cookie);
    let outcomes = join_all((0..writers).map(|w| async move {
        let (mut ok, mut conflicts, mut last) = (0, 0, None);
        for c in 1..=commits {
            let reply = app.get(&format!("/set/p/w{w}/{c}"), Some(cookie)).await;
            match reply.status {
                200 => (ok, last) = (ok + 1, Some(c)),
                409 => conflicts += 1,
                other => panic!("writer {w}: {other} {reply:?}"),
            }
        }
        (ok, conflicts, last)
    }))
    .await;
    for (w, (_, _, last)) in outcomes.iter().enumerate() {
        let stored = app.get(&format!("/get/p/w{w}"), Some(cookie)).await.body;
        let expected = last.map_or("none".to_owned(), |c| c.to_string());
        assert_eq!(stored, expected, "writer {w}'s last acknowledged write");
    }
    let ok = outcomes.iter().map(|o| o.0).sum();
    let conflicts = outcomes.iter().map(|o| o.1).sum();
    eprintln!("{writers} writers x {commits} commits on different keys: {ok} committed, {conflicts} conflicts (409)");
    (ok, conflicts)
}

/// Different keys of one session never conflict: 8 concurrent writers, 50 commits each, all
/// land, every lost compare-and-swap merged and retried. The retry budget is 10 s here, so a
/// 409 means a wrong merge, not a stalled machine: the budget is wall-clock time, and at the
/// default 250 ms a debug build on a loaded 2-core CI runner once spent it on 2 commits of
/// 400. What the default absorbs is measured by `scripts/bench.sh` (docs/benchmarks.md).
#[actix_web::test]
async fn eight_concurrent_writers_of_different_keys_all_land() {
    let patient: Configure = |b| b.retry_budget(Duration::from_secs(10));
    assert_eq!(contend(8, 50, patient).await, (400, 0));
}

/// At 64 concurrent writers of one session many commits may spend their budget (409, the
/// client retries), but none is lost: `contend` checks each key against its writer's last
/// 200, and refuses any other status. The rate is reported in docs/benchmarks.md.
#[actix_web::test]
async fn sixty_four_concurrent_writers_lose_no_update() {
    let (ok, _conflicts) = contend(64, 50, |b| b).await;
    assert!(ok > 0, "no commit of 64 writers landed");
}

/// Readiness through `from_r2d2` with memcached down returns within the pool's
/// `connection_timeout` (it hung for over a minute: r2d2-memcache's inner pool waits 30 s
/// per check), a second check made while the first is still blocked within the same
/// bound. Run on a thread of its own, not joined: the blocked
/// call outlives the test, and a runtime's shutdown waits for its blocking calls.
#[cfg(feature = "r2d2")]
#[test]
fn r2d2_readiness_is_bounded_while_memcached_is_down() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let mut server = crate::memcached::Memcached::start();
            let manager = r2d2_memcache::MemcacheConnectionManager::new(server.url().as_str());
            let pool = r2d2_memcache::r2d2::Pool::builder()
                .max_size(1)
                .connection_timeout(Duration::from_millis(500))
                .build(manager)
                .expect("r2d2 pool");
            let store = MemcacheStore::from_r2d2(pool);
            let up = store.ping().await;
            server.stop();
            let started = Instant::now();
            let first = store.ping().await;
            let first_took = started.elapsed();
            let second = store.ping().await;
            let _ = tx.send((up, first, first_took, second, started.elapsed()));
            std::future::pending::<()>().await;
        });
    });
    let (up, first, first_took, second, both_took) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("readiness answered within 20 s");
    up.expect("ready while memcached runs");
    assert!(
        matches!(first, Err(StoreError::Unavailable(_))),
        "{first:?}"
    );
    assert!(first_took < Duration::from_secs(3), "{first_took:?}");
    assert!(
        matches!(second, Err(StoreError::Unavailable(_))),
        "{second:?}"
    );
    assert!(both_took < Duration::from_secs(6), "{both_took:?}");
}

/// With a read `timeout`, the `memcache` client's binary protocol reads a reply that came
/// after it as the next command's (it matches replies by position, and the connection goes
/// back to the pool): a refused compare-and-swap taken for a stored one, another session's
/// value. Such a pool is refused by name; the ASCII protocol, whose `version` check on
/// checkout drops a connection with a reply left over, is not.
#[cfg(feature = "r2d2")]
#[actix_web::test]
async fn an_r2d2_pool_that_can_misread_replies_is_refused_by_name() {
    use actix_memcache_session::{SessionId, SessionStore};
    let url = crate::memcached::with_server(|m| m.url());
    let wait = Duration::from_secs(5);
    let id = SessionId::generate().unwrap();
    for query in ["?timeout=1", "?connect_timeout=1&timeout=0.5"] {
        let store = crate::memcached::r2d2_store_at(&format!("{url}{query}"), wait);
        let refused = store.load(&id).await;
        assert!(
            matches!(&refused, Err(StoreError::Unsupported(why)) if why.contains("protocol=ascii")),
            "{query}: {refused:?}"
        );
        assert!(matches!(
            store.ping().await,
            Err(StoreError::Unsupported(_))
        ));
    }
    for query in ["", "?protocol=ascii&timeout=1", "?timeout=1&protocol=ascii"] {
        let store = crate::memcached::r2d2_store_at(&format!("{url}{query}"), wait);
        assert!(store.load(&id).await.unwrap().is_none(), "{query}");
        store.ping().await.expect(query);
    }
}

/// Without a read `timeout` the blocking `memcache` client waits for a stalled memcached
/// for as long as it stalls; the store answers within the pool's `connection_timeout`, and
/// serves again once memcached does (the stalled call, answered late, leaves its connection
/// as it should be).
#[cfg(feature = "r2d2")]
#[actix_web::test]
async fn an_r2d2_operation_answers_within_the_pools_timeout_while_memcached_stalls() {
    use actix_memcache_session::{SessionId, SessionStore};
    let server = crate::memcached::Memcached::start();
    let store = crate::memcached::r2d2_store_at(
        &format!("{}?protocol=ascii", server.url()),
        Duration::from_secs(1),
    );
    let id = SessionId::generate().unwrap();
    assert!(store.load(&id).await.unwrap().is_none());
    server.pause();
    let started = Instant::now();
    let stalled = tokio::time::timeout(Duration::from_secs(10), store.load(&id)).await;
    let took = started.elapsed();
    server.resume();
    let stalled = stalled.expect("an answer within 10 s");
    assert!(
        matches!(stalled, Err(StoreError::Unavailable(_))),
        "{stalled:?}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.load(&id).await {
            Ok(found) => break assert!(found.is_none()),
            Err(e) => assert!(Instant::now() < deadline, "still failing: {e}"),
        }
    }
}
