//! The text protocol through a real twemproxy: the acceptance suite, and the proxy placing
//! each session on the memcached this crate's own ring names, so an app can move between
//! direct and proxied access without losing sessions.

use std::time::Duration;

use actix_memcache_session::{
    Distribution, Ketama, Key, MemcacheServer, MemcacheStore, Protocol, SessionId, SessionStore,
    StoreError,
};
use actix_web::cookie::Cookie;
use futures_util::future::join_all;

use crate::app::TestApp;
use crate::memcached::fleet_url;
use crate::nutcracker::Nutcracker;
use crate::support::CountingStore;

mod suites {
    actix_memcache_session::store_acceptance_suite!(crate::nutcracker::proxy_store());
    #[cfg(feature = "actix-session")]
    crate::actix_session::actix_session_suite!(crate::nutcracker::proxy_store());

    mod http {
        crate::http::http_suite!(crate::nutcracker::proxy_store());
        crate::devices::devices_suite!(crate::nutcracker::proxy_store());
        crate::app_testing::app_testing_suite!(crate::nutcracker::proxy_store());
    }
}

#[actix_web::test]
async fn the_proxy_and_the_crate_place_every_session_alike() {
    let proxy = Nutcracker::start(&[3, 1, 2]);
    let through = MemcacheStore::new(&proxy.url()).unwrap();
    let servers: Vec<MemcacheServer> = proxy
        .servers
        .iter()
        .map(|(m, w)| MemcacheServer::new("127.0.0.1", m.addr().port(), *w))
        .collect();
    let ring = Ketama::new(&servers);
    let ids: Vec<SessionId> = (0..200).map(|_| SessionId::generate().unwrap()).collect();
    for id in &ids {
        let data = id.as_str().as_bytes();
        assert!(through
            .create(id, data, Duration::from_secs(60))
            .await
            .unwrap());
    }
    let keys: Vec<String> = ids.iter().map(|id| format!("session:{id}")).collect();
    for (at, (server, _)) in proxy.servers.iter().enumerate() {
        for ((id, key), holds) in ids.iter().zip(&keys).zip(server.holds(&keys)) {
            let named = ring.server_for(key.as_bytes()) == at;
            assert_eq!(holds, named, "{id} on server {at}");
        }
    }
    // The same sessions, read directly from the servers as a fleet with the same weights.
    let mut direct = MemcacheStore::builder(fleet_url(proxy.servers.iter().map(|(m, _)| m)));
    for (m, w) in &proxy.servers {
        direct = direct.weight(m.addr().to_string(), *w);
    }
    let direct = direct.build().unwrap();
    for id in &ids {
        let stored = direct.load(id).await.unwrap().expect("found directly");
        assert_eq!(stored.data, id.as_str().as_bytes());
    }
}

/// The ring nutcracker uses for its servers (`distribution: ketama`, `hash: md5`).
fn ring_of(proxy: &Nutcracker) -> Ketama {
    let servers: Vec<MemcacheServer> = proxy
        .servers
        .iter()
        .map(|(m, w)| MemcacheServer::new("127.0.0.1", m.addr().port(), *w))
        .collect();
    Ketama::new(&servers)
}

/// One backend behind nutcracker stops. nutcracker answers a command for its keys with one
/// `SERVER_ERROR` line, in order within a pipelined batch, and keeps the connection; it
/// answers the key-less `version` from one backend, with `SERVER_ERROR` when that one is
/// down. So only the dead backend's sessions get 503: every other session, read
/// concurrently over the shared pipelined connection, and over new connections whose
/// handshake may meet that error, answers 200 with its own data. Each backend is the dead
/// one in turn, so the one that answers `version` is among them.
#[actix_web::test]
async fn behind_a_proxy_a_dead_backend_costs_only_its_own_sessions() {
    for victim in 0..3 {
        let mut proxy = Nutcracker::start(&[1, 1, 1]);
        let key = Key::generate();
        let url = proxy.url();
        let store = || CountingStore::new(MemcacheStore::new(&url).unwrap());
        let app = TestApp::with(store(), key.clone(), |b| b).await;
        let ring = ring_of(&proxy);
        let on_victim =
            |id: &SessionId| ring.server_for(format!("session:{id}").as_bytes()) == victim;
        let made = sessions_on_every_backend(&app, on_victim).await;
        proxy.servers[victim].0.stop();
        let fresh = TestApp::with(store(), key.clone(), |b| b).await;
        for (which, app) in [("shared connection", &app), ("new connections", &fresh)] {
            let which = format!("{which}, victim {victim}");
            only_the_victims_fail(app, &made, on_victim, &which).await;
        }
    }
}

/// A session cookie, id and value (`p/k`) each: 24 sessions, and more until one is on the
/// victim (24 miss a third of the ring about once in 17,000).
async fn sessions_on_every_backend(
    app: &TestApp<MemcacheStore>,
    on_victim: impl Fn(&SessionId) -> bool,
) -> Vec<(Cookie<'static>, SessionId, String)> {
    let mut made = Vec::new();
    for n in 0..200 {
        if n >= 24 && made.iter().any(|(_, id, _)| on_victim(id)) {
            return made;
        }
        let reply = app.get(&format!("/set/p/k/{n}"), None).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        made.push((reply.cookie(), app.store.last_created(), n.to_string()));
    }
    panic!("no session on the victim in 200");
}

/// Reads every session in `made` at once: the victim's answer 503, the others 200 with
/// their own data.
async fn only_the_victims_fail(
    app: &TestApp<MemcacheStore>,
    made: &[(Cookie<'static>, SessionId, String)],
    on_victim: impl Fn(&SessionId) -> bool,
    which: &str,
) {
    let replies = join_all(made.iter().map(|(c, _, _)| app.get("/get/p/k", Some(c)))).await;
    for ((_, id, value), reply) in made.iter().zip(replies) {
        if on_victim(id) {
            assert_eq!(reply.status, 503, "{which}: {reply:?}");
        } else {
            assert_eq!(reply.status, 200, "{which}: {reply:?}");
            assert_eq!(&reply.body, value, "{which}: its own data");
        }
    }
}

/// One backend frozen (it keeps its connections and answers nothing): the proxy answers in
/// order, so every request queued behind one for that backend waits for it, on the shared
/// connection. With the proxy's `timeout` (1.5 s here) well under `io_timeout` (3 s), the
/// proxy answers that request `SERVER_ERROR` first, and the others go on: only the frozen
/// backend's sessions get 503. (With the proxy's timeout at `io_timeout`, as the docs had
/// it, the watchdog fails the connection first, and every session on it gets 503.)
#[actix_web::test]
async fn behind_a_proxy_a_frozen_backend_costs_only_its_own_sessions() {
    let proxy = Nutcracker::start(&[1, 1, 1]);
    let victim = 2;
    let store = MemcacheStore::builder(proxy.url())
        .io_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let store = CountingStore::new(store);
    let app = TestApp::with(store, Key::generate(), |b| b).await;
    let ring = ring_of(&proxy);
    let on_victim = |id: &SessionId| ring.server_for(format!("session:{id}").as_bytes()) == victim;
    let made = sessions_on_every_backend(&app, on_victim).await;
    proxy.servers[victim].0.pause();
    only_the_victims_fail(&app, &made, on_victim, "frozen").await;
    proxy.servers[victim].0.resume();
}

/// A new session whose id falls on a dead backend is refused by the proxy at once
/// (`SERVER_ERROR`): it draws another id, as it does on a fleet it sees itself, rather
/// than answer 503. (A third of new sessions answered 503.) Each lands on a live backend
/// and reads back.
#[actix_web::test]
async fn behind_a_proxy_new_sessions_go_around_a_dead_backend() {
    let mut proxy = Nutcracker::start(&[1, 1, 1]);
    let victim = 1;
    proxy.servers[victim].0.stop();
    let store = CountingStore::new(MemcacheStore::new(&proxy.url()).unwrap());
    let app = TestApp::with(store, Key::generate(), |b| b).await;
    let ring = ring_of(&proxy);
    for n in 0..40 {
        let reply = app.get(&format!("/set/p/k/{n}"), None).await;
        assert_eq!(reply.status, 200, "{n}: {reply:?}");
        let id = app.store.last_created();
        assert_ne!(ring.server_for(format!("session:{id}").as_bytes()), victim);
        let read = app.get("/get/p/k", Some(&reply.cookie())).await;
        assert_eq!(read.body, n.to_string(), "{read:?}");
    }
}

/// With its only backend frozen, the proxy refuses each new session's write once its own
/// timeout (400 ms) passed: the new session draws ids only for a second, then answers 503,
/// rather than wait out 16 of those timeouts (6.4 s).
#[actix_web::test]
async fn behind_a_proxy_a_new_session_on_a_frozen_backend_gets_its_503_soon() {
    let proxy = Nutcracker::start_timing_out(&[1], 400);
    let store = CountingStore::new(MemcacheStore::new(&proxy.url()).unwrap());
    let app = TestApp::with(store, Key::generate(), |b| b).await;
    assert_eq!(app.get("/set/p/k/1", None).await.status, 200, "up");
    proxy.servers[0].0.pause();
    let started = std::time::Instant::now();
    let reply = app.get("/set/p/k/2", None).await;
    let took = started.elapsed();
    proxy.servers[0].0.resume();
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
}

/// Readiness through a proxy counts a `SERVER_ERROR` (the ping key's backend is down) as
/// no answer: with every backend down, the proxy still answers, and `ping` must fail.
#[actix_web::test]
async fn behind_a_proxy_readiness_fails_when_the_backends_are_down() {
    let mut proxy = Nutcracker::start(&[1]);
    let store = MemcacheStore::new(&proxy.url()).unwrap();
    store.ping().await.expect("ready with its backend up");
    proxy.servers[0].0.stop();
    let e = store.ping().await.unwrap_err();
    let report = store.ping_servers().await;
    assert!(report[0].result.is_err(), "{report:?}");
    let cause = std::error::Error::source(&e).unwrap().to_string();
    assert!(cause.contains("SERVER_ERROR"), "{cause}");
}

/// Through a proxy over three backends, the one that holds the readiness check's key is
/// down: the proxy answers `SERVER_ERROR` for that key, and serves two thirds of the
/// sessions. The check asks other keys, and the store stays ready.
#[actix_web::test]
async fn behind_a_proxy_readiness_does_not_follow_the_backend_of_its_key() {
    let mut proxy = Nutcracker::start(&[1, 1, 1]);
    let servers: Vec<MemcacheServer> = proxy
        .servers
        .iter()
        .map(|(m, w)| MemcacheServer::new("127.0.0.1", m.addr().port(), *w))
        .collect();
    let holder = Ketama::new(&servers).server_for(b"session:ping");
    let store = MemcacheStore::new(&proxy.url()).unwrap();
    store.ping().await.expect("ready with every backend up");
    proxy.servers[holder].0.stop();
    store.ping().await.expect("two backends of three serve");
    let report = store.ping_servers().await;
    assert!(report[0].result.is_ok(), "{report:?}");
}

/// The meta protocol forced (`Protocol::Meta`) through a proxy, which names its backend's
/// version and closes the connection at any meta command: refused by name, as a
/// configuration the proxy cannot serve, instead of a connection closed at every request.
#[actix_web::test]
async fn behind_a_proxy_a_forced_meta_protocol_is_refused_by_name() {
    let proxy = Nutcracker::start(&[1]);
    let store = MemcacheStore::builder(proxy.url())
        .protocol(Protocol::Meta)
        .build()
        .unwrap();
    let id = SessionId::generate().unwrap();
    for _ in 0..2 {
        let e = store.load(&id).await.unwrap_err();
        let StoreError::Unsupported(why) = &e else {
            panic!("{e:?}")
        };
        let backend = proxy.servers[0].0.version();
        let named = if backend >= (1, 6, 18) {
            "meta no-op"
        } else {
            "1.6.18"
        };
        assert!(
            why.contains(named) && why.contains("Protocol::Auto"),
            "{backend:?}: {why}"
        );
    }
    let auto = MemcacheStore::new(&proxy.url()).unwrap();
    assert!(auto
        .create(&id, b"kept", Duration::from_secs(60))
        .await
        .unwrap());
}
