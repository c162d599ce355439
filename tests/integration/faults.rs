//! What the memcached store does when the wire lies: replies doubled, missing, malformed or
//! enormous, a server too old or misconfigured, a connection that drops after a write, a
//! store used outside its runtime. Each case: a clear error (503), no panic, and never
//! another session's data.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_memcache_session::{
    Key, MemcacheStore, Protocol, SessionId, SessionStore, StoreError, Update, WhenDown,
};
use futures_util::future::{join, join_all};
use futures_util::FutureExt;

use crate::app::TestApp;
use crate::fake::{Answer, Command, DroppingProxy, FakeMemcached};
use crate::memcached::{store, text_store, with_server, Memcached};
use crate::support::CountingStore;

const TTL: Duration = Duration::from_secs(60);

fn run<T>(test: impl std::future::Future<Output = T>) -> T {
    actix_web::rt::System::new().block_on(test)
}

/// A store on `url` with short timeouts, so a missing reply costs little.
fn quick_store(url: String) -> MemcacheStore {
    quick_store_speaking(url, Protocol::Meta)
}

/// A store whose timeout (2 s) a fault answered at once stays well under, on a loaded
/// machine (a resent read opens a new connection first).
fn patient_store_speaking(url: String, protocol: Protocol) -> MemcacheStore {
    MemcacheStore::builder(url)
        .io_timeout(Duration::from_secs(2))
        .protocol(protocol)
        .build()
        .unwrap()
}

fn quick_store_speaking(url: String, protocol: Protocol) -> MemcacheStore {
    MemcacheStore::builder(url)
        .io_timeout(Duration::from_millis(300))
        .protocol(protocol)
        .build()
        .unwrap()
}

/// A fake memcached that answers the first command `when` picks with `reply`, once, and
/// everything else as memcached would; `armed` turns the fault on.
fn fake_once(
    when: &'static str,
    reply: impl Fn(&Command) -> Answer + Send + Sync + 'static,
) -> (FakeMemcached, Arc<AtomicBool>) {
    let armed = Arc::new(AtomicBool::new(false));
    let trigger = Arc::clone(&armed);
    let fake = FakeMemcached::start(move |c| {
        if c.verb == when && trigger.swap(false, Ordering::SeqCst) {
            reply(c)
        } else {
            Answer::Normal
        }
    });
    (fake, armed)
}

/// A fake memcached that answers every read `delay` late, the rest at once.
fn slow_reads(delay: Duration) -> FakeMemcached {
    FakeMemcached::start(move |c| {
        if c.verb == "mg" {
            std::thread::sleep(delay);
        }
        Answer::Normal
    })
}

/// The error a quick store on `fake` answers a read of a new id with (a panic if none).
fn new_sessions_load_error(fake: &FakeMemcached) -> StoreError {
    let store = quick_store(fake.url());
    run(async {
        store
            .load(&SessionId::generate().unwrap())
            .await
            .unwrap_err()
    })
}

/// The opaque token of a command, as memcached would echo it.
fn opaque(c: &Command) -> &str {
    c.line.rsplit_once(" O").map_or("", |(_, o)| o)
}

/// A read after a fault: its own data (the read was resent on a new connection, which
/// reads are) or 503; never a miss, another session's data, or anything else.
fn own_or_unavailable(
    read: Result<Option<actix_memcache_session::Stored>, StoreError>,
    own: &[u8],
) {
    match read {
        Ok(Some(stored)) => assert_eq!(stored.data, own),
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("{other:?}"),
    }
}

fn ids(n: usize) -> Vec<SessionId> {
    (0..n).map(|_| SessionId::generate().unwrap()).collect()
}

/// memcached before 1.6.10 answers a meta write with two error lines. With replies matched
/// by position only, every later reply on the connection shifts onto the wrong request: a
/// read gets another session's data. With opaque tokens the connection ends instead.
#[test]
fn a_doubled_reply_never_hands_a_session_another_sessions_data() {
    let (fake, armed) = fake_once("ms", |_| {
        Answer::Send(b"CLIENT_ERROR invalid flag\r\nERROR\r\n".to_vec())
    });
    let write = run(write_with_reads_behind_it(&quick_store(fake.url()), &armed));
    assert!(
        matches!(write, Err(StoreError::Unavailable(_))),
        "{write:?}"
    );
}

/// Stores six sessions, arms the fault, then sends one write with five reads of the other
/// sessions behind it on the same pipelined connection: no read gets another session's
/// data, and a new connection is in step. The write's outcome is the caller's to judge.
async fn write_with_reads_behind_it(
    store: &MemcacheStore,
    armed: &AtomicBool,
) -> Result<Update, StoreError> {
    let ids = ids(6);
    for id in &ids {
        assert!(store.create(id, id.as_str().as_bytes(), TTL).await.unwrap());
    }
    let version = store.load(&ids[0]).await.unwrap().unwrap().version;
    armed.store(true, Ordering::SeqCst);
    let write = store.update(&ids[0], b"new", version, TTL);
    let reads = join_all(ids[1..].iter().map(|id| store.load(id)));
    let (write, reads) = join(write, reads).await;
    for (id, read) in ids[1..].iter().zip(reads) {
        match read {
            Ok(Some(stored)) => assert_eq!(stored.data, id.as_str().as_bytes()),
            Ok(None) => panic!("session {id:?} read as missing"),
            Err(e) => assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}"),
        }
    }
    for id in &ids[1..] {
        let stored = store.load(id).await.unwrap().unwrap();
        assert_eq!(
            stored.data,
            id.as_str().as_bytes(),
            "a new connection is in step"
        );
    }
    write
}

/// Stores a session, arms the fault, and reads the session through it: its own data (the
/// read resent on a new connection) or 503, at once rather than by the timeout; then a
/// read on a new connection finds it.
async fn read_through_fault(store: &MemcacheStore, armed: &AtomicBool) {
    let id = SessionId::generate().unwrap();
    store.create(&id, b"mine", TTL).await.unwrap();
    armed.store(true, Ordering::SeqCst);
    let started = Instant::now();
    own_or_unavailable(store.load(&id).await, b"mine");
    assert!(!armed.load(Ordering::SeqCst), "the fault was served");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused at once, not by the timeout"
    );
    assert_eq!(store.load(&id).await.unwrap().unwrap().data, b"mine");
}

/// A reply whose opaque token names another request ends the connection.
#[test]
fn a_reply_for_another_request_ends_the_connection() {
    let (fake, armed) = fake_once("mg", |c| {
        Answer::Send(format!("EN O{}9\r\n", opaque(c)).into_bytes())
    });
    let store = patient_store_speaking(fake.url(), Protocol::Meta);
    run(read_through_fault(&store, &armed));
}

/// Lengths and lines from the wire are checked before anything is allocated for them: an
/// absurd `VA` length, a line without end, garbage. Each is a quick 503, never a panic,
/// an abort or gigabytes of memory; the next request gets a new connection.
#[test]
fn absurd_lengths_endless_lines_and_garbage_end_the_connection() {
    let replies: [&[u8]; 6] = [
        b"VA 18446744073709551615 c1 O0\r\n",
        b"VA 4294967296 c1 O0\r\n",
        b"VA -5 c1 O0\r\n",
        b"\xff\xfe\x00garbage\r\n",
        b"SERVER_ERROR temporary failure\r\n",
        b"",
    ];
    for reply in replies {
        let endless = reply.is_empty();
        let reply = if endless {
            vec![b'x'; 1 << 20]
        } else {
            reply.to_vec()
        };
        let (fake, armed) = fake_once("mg", move |_| Answer::Send(reply.clone()));
        let store = patient_store_speaking(fake.url(), Protocol::Meta);
        run(read_through_fault(&store, &armed));
    }
}

/// A value shorter than announced before the connection closes, or not followed by
/// `\r\n`: a quick 503, never the bytes as a session; the next request gets a new connection.
/// The same for a value over the item limit, which is read past rather than kept.
#[test]
fn a_value_cut_short_or_overrunning_its_length_ends_the_connection() {
    const OVER: usize = (1 << 20) + 1;
    let answers: [fn(&str) -> Answer; 4] = [
        |o| Answer::SendThenHangup(format!("VA 8 c1 O{o}\r\nmine").into_bytes()),
        |o| Answer::Send(format!("VA 4 c1 O{o}\r\nmineXY\r\n").into_bytes()),
        |o| Answer::SendThenHangup(format!("VA {OVER} c1 O{o}\r\nmine").into_bytes()),
        |o| {
            let mut reply = format!("VA {OVER} c1 O{o}\r\n").into_bytes();
            reply.extend(std::iter::repeat_n(b'x', OVER));
            reply.extend_from_slice(b"XY\r\n");
            Answer::Send(reply)
        },
    ];
    for answer in answers {
        let (fake, armed) = fake_once("mg", move |c| answer(opaque(c)));
        let store = patient_store_speaking(fake.url(), Protocol::Meta);
        run(read_through_fault(&store, &armed));
    }
}

/// A server that answers late: 503 at the timeout, and the late reply never reaches the
/// next request.
#[test]
fn a_slow_reply_times_out_and_is_not_handed_on() {
    let (fake, armed) = fake_once("mg", |_| {
        std::thread::sleep(Duration::from_millis(500));
        Answer::Normal
    });
    let store = quick_store(fake.url());
    run(async {
        let (a, b) = (
            SessionId::generate().unwrap(),
            SessionId::generate().unwrap(),
        );
        store.create(&a, b"a", TTL).await.unwrap();
        store.create(&b, b"b", TTL).await.unwrap();
        armed.store(true, Ordering::SeqCst);
        let slow = store.load(&a).await;
        assert!(matches!(slow, Err(StoreError::Unavailable(_))), "{slow:?}");
        assert_eq!(store.load(&b).await.unwrap().unwrap().data, b"b");
    });
}

/// A server that never answers at all: 503 after the I/O timeout.
#[test]
fn a_silent_server_times_out_into_an_error() {
    let fake = FakeMemcached::start(|c| {
        if c.verb == "mg" {
            Answer::Silence
        } else {
            Answer::Normal
        }
    });
    let store = quick_store(fake.url());
    run(async {
        let started = Instant::now();
        let read = store.load(&SessionId::generate().unwrap()).await;
        assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
        // Within one timeout: a read is resent only within what is left of its first.
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(550),
            "{elapsed:?}"
        );
    });
}

/// A slow server that still answers each request within the I/O timeout: every request
/// succeeds, however long the connection has been busy (the timeout runs from each
/// request's own send, not from the connection's first or oldest).
#[test]
fn a_slow_server_within_the_timeout_never_times_out() {
    // Half the timeout: a fake server's thread late by as much again still answers in time.
    let fake = slow_reads(Duration::from_millis(150));
    let store = quick_store(fake.url());
    run(async {
        let id = SessionId::generate().unwrap();
        store.create(&id, b"slow", TTL).await.unwrap();
        let started = Instant::now();
        for _ in 0..4 {
            assert_eq!(store.load(&id).await.unwrap().unwrap().data, b"slow");
        }
        assert!(started.elapsed() >= Duration::from_millis(600));
    });
}

/// A connection slow to open (its handshake of `version` and the meta no-op answered
/// late, each within the I/O timeout) does not eat into its first request's: that runs
/// from the request's queuing on the open connection, so a reply within it succeeds.
#[test]
fn a_slow_handshake_does_not_shorten_the_first_requests_timeout() {
    let fake = FakeMemcached::start(|c| {
        let delay = match c.verb.as_str() {
            "version" | "mn" => 800,
            "mg" => 700,
            _ => 0,
        };
        std::thread::sleep(Duration::from_millis(delay));
        Answer::Normal
    });
    // Each answer within the timeout by 700 ms or more; all three together past it.
    let store = MemcacheStore::builder(fake.url())
        .io_timeout(Duration::from_millis(1500))
        .connect_timeout(Duration::from_secs(3))
        .protocol(Protocol::Auto)
        .build()
        .unwrap();
    run(async {
        let id = SessionId::generate().unwrap();
        let started = Instant::now();
        let missing = store.load(&id).await;
        assert!(matches!(missing, Ok(None)), "{missing:?}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(2300),
            "handshake, then read"
        );
    });
}

/// memcached out of memory on a write has dropped the item: 503, and the log says so.
#[test]
fn out_of_memory_on_a_write_is_an_error_that_says_the_item_was_dropped() {
    let (fake, armed) = fake_once("ms", |_| {
        Answer::Send(b"SERVER_ERROR out of memory storing object\r\n".to_vec())
    });
    let store = quick_store(fake.url());
    run(async {
        let id = SessionId::generate().unwrap();
        store.create(&id, b"one", TTL).await.unwrap();
        let version = store.load(&id).await.unwrap().unwrap().version;
        armed.store(true, Ordering::SeqCst);
        let e = store.update(&id, b"two", version, TTL).await.unwrap_err();
        let StoreError::Unavailable(cause) = &e else {
            panic!("{e:?}")
        };
        assert!(cause.to_string().contains("dropped the item"), "{cause}");
    });
}

/// Over the meta protocol, a `SERVER_ERROR` line (memcached's own proxy answers so for a
/// key whose backend is down; memcached out of memory) fails its own request alone: a read
/// pipelined beside it on the connection is answered, and the connection goes on.
#[test]
fn a_server_error_line_fails_only_its_own_request_over_meta() {
    let failing = SessionId::generate().unwrap();
    let key = failing.as_str().to_owned();
    let fake = FakeMemcached::start(move |c| {
        if c.verb == "mg" && c.line.contains(&key) {
            Answer::Send(b"SERVER_ERROR backend failure\r\n".to_vec())
        } else {
            Answer::Normal
        }
    });
    let store = quick_store(fake.url());
    run(async {
        let other = SessionId::generate().unwrap();
        let (failed, answered) = join(store.load(&failing), store.load(&other)).await;
        let Err(StoreError::Unavailable(why)) = failed else {
            panic!("{failed:?}")
        };
        assert!(why.to_string().contains("backend failure"), "{why}");
        assert!(matches!(answered, Ok(None)), "{answered:?}");
        assert!(store.load(&other).await.is_ok(), "the connection goes on");
    });
}

/// A store on a fleet of two scripted servers, `failure_limit` 2, each server answering
/// a compare-and-swap write as `garbled` says (a line out of protocol, or as memcached).
fn fleet_garbling(garbled: fn(&AtomicUsize) -> bool) -> (MemcacheStore, [FakeMemcached; 2]) {
    let fake = || {
        let writes = AtomicUsize::new(0);
        FakeMemcached::start(move |c| {
            if c.verb == "ms" && c.line.contains(" C") && garbled(&writes) {
                Answer::Send(b"BOGUS\r\n".to_vec())
            } else {
                Answer::Normal
            }
        })
    };
    let fakes = [fake(), fake()];
    let urls = fakes.each_ref().map(|f| f.url());
    let fleet = format!("{},{}", urls[0], urls[1].trim_start_matches("memcache://"));
    let store = MemcacheStore::builder(fleet)
        .io_timeout(Duration::from_millis(300))
        .protocol(Protocol::Meta)
        .failure_limit(2)
        .build()
        .unwrap();
    (store, fakes)
}

/// One reply the client cannot read ends its connection, and fails every request waiting
/// on it (503), but counts once against the server: the requests behind it lost their
/// replies through no silence of the server's. (Each counted: one bad line among writes
/// in flight marked a server down that was answering, and all its sessions got 503 for
/// `retry_interval`.)
#[test]
fn one_unreadable_reply_counts_once_against_its_server() {
    let (store, _fakes) = fleet_garbling(|writes| writes.fetch_add(1, Ordering::SeqCst) == 0);
    run(async {
        let mut sessions = Vec::new();
        for _ in 0..12 {
            let id = SessionId::generate().unwrap();
            store.create(&id, b"one", TTL).await.unwrap();
            let version = store.load(&id).await.unwrap().unwrap().version;
            sessions.push((id, version));
        }
        let writes = sessions
            .iter()
            .map(|(id, version)| store.update(id, b"two", *version, TTL));
        let failed = join_all(writes).await.iter().filter(|w| w.is_err()).count();
        assert!(
            failed >= 4,
            "writes in flight behind each bad line: {failed}"
        );
        for (id, _) in &sessions {
            let read = store.load(id).await;
            assert!(matches!(read, Ok(Some(_))), "still in service: {read:?}");
            assert!(store.accepts(id), "new sessions still go there");
        }
    });
}

/// A server that answers every write with a line out of protocol is marked down after
/// `failure_limit` of them, as a silent one is: new sessions go elsewhere. (Counted as
/// answers, it never was: every request paid a connect and a handshake for its 503.)
#[test]
fn a_server_garbling_every_write_is_marked_down() {
    let (store, _fakes) = fleet_garbling(|_| true);
    run(async {
        let id = SessionId::generate().unwrap();
        store.create(&id, b"one", TTL).await.unwrap();
        let version = store.load(&id).await.unwrap().unwrap().version;
        for _ in 0..2 {
            let e = store.update(&id, b"two", version, TTL).await.unwrap_err();
            assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        }
        assert!(!store.accepts(&id), "marked down");
        let e = store.update(&id, b"two", version, TTL).await.unwrap_err();
        assert!(format!("{e:?}").contains("Down"), "503 at once: {e:?}");
    });
}

/// A `SERVER_ERROR` about storing an item answers a write only: come for a read, the
/// connection is out of step, and ends (the read is not failed as if memcached had
/// dropped its item).
#[test]
fn a_storing_error_for_a_read_ends_the_connection() {
    let fake = FakeMemcached::start(|c| {
        if c.verb == "mg" && c.line.contains(" v ") {
            Answer::Send(b"SERVER_ERROR out of memory storing object\r\n".to_vec())
        } else {
            Answer::Normal
        }
    });
    let e = new_sessions_load_error(&fake);
    let shown = format!("{e} {:?}", std::error::Error::source(&e));
    assert!(!shown.contains("dropped the item"), "{shown}");
    assert!(shown.contains("another request"), "{shown}");
}

/// An unconditional delete answered `EX`, which only a conditional one can get, is an
/// error (503), not a delete done: a purge must not be told it happened.
#[test]
fn an_unconditional_delete_answered_exists_is_an_error() {
    let fake = FakeMemcached::start(|c| {
        if c.verb == "md" && !c.line.contains(" C") {
            Answer::Send(format!("EX O{}\r\n", opaque(c)).into_bytes())
        } else {
            Answer::Normal
        }
    });
    let store = quick_store(fake.url());
    run(async {
        let id = SessionId::generate().unwrap();
        let e = store.delete(&id).await.unwrap_err();
        assert!(matches!(e, StoreError::Protocol(_)), "{e:?}");
    });
}

/// A server older than 1.6.18, told to speak meta, is refused by name, with the minimum.
#[test]
fn a_memcached_too_old_for_the_meta_protocol_is_refused_by_version() {
    let fake = FakeMemcached::start(|c| match c.verb.as_str() {
        "version" => Answer::Send(b"VERSION 1.6.9\r\n".to_vec()),
        _ => Answer::Normal,
    });
    let e = new_sessions_load_error(&fake);
    let StoreError::Unsupported(why) = &e else {
        panic!("{e:?}")
    };
    assert!(why.contains("1.6.9") && why.contains("1.6.18"), "{why}");
}

/// The same through the middleware: 503 with Retry-After, and the body names nothing of
/// the server.
#[actix_web::test]
async fn a_refused_server_is_503_for_the_session_routes() {
    let fake = FakeMemcached::start(|c| match c.verb.as_str() {
        "version" => Answer::Send(b"VERSION 1.4.25\r\n".to_vec()),
        _ => Answer::Normal,
    });
    let app = TestApp::new(CountingStore::new(quick_store(fake.url()))).await;
    let reply = app.get("/set/p/k/1", None).await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.retry_after.as_deref(), Some("1"));
    assert_eq!(reply.body, "session store unavailable");
}

/// A compare-and-swap that landed but whose reply was lost is 503 ("may or may not have
/// been saved"), never resent: resent, it would answer 409 "nothing was saved" for a
/// change that was saved.
#[actix_web::test]
async fn a_write_whose_reply_is_lost_is_503_not_409() {
    for protocol in [Protocol::Auto, Protocol::Text] {
        let key = Key::generate();
        let direct = TestApp::with(CountingStore::new(store()), key.clone(), |b| b).await;
        let cookie = direct.get("/set/p/k/1", None).await.cookie();
        let proxy = DroppingProxy::start(with_server(|m| m.addr()));
        let quick = quick_store_speaking(proxy.url(), protocol);
        let through = TestApp::with(CountingStore::new(quick), key, |b| b).await;

        let reply = through.get("/set/p/k/2", Some(&cookie)).await;
        assert!(
            proxy.dropped.load(Ordering::SeqCst),
            "{protocol:?}: the proxy dropped the write's reply"
        );
        assert_eq!(reply.status, 503, "{protocol:?}: {reply:?}");
        assert!(reply.cookie.is_none());
        assert_eq!(
            direct.get("/get/p/k", Some(&cookie)).await.body,
            "2",
            "{protocol:?}: it had landed"
        );
        assert_eq!(
            through.store.calls().updates,
            1,
            "{protocol:?}: and was not sent twice"
        );
    }
}

/// A new session whose add landed but whose reply was lost: 503, and not created a second
/// time under another id.
#[actix_web::test]
async fn a_create_whose_reply_is_lost_is_503_and_not_repeated() {
    for protocol in [Protocol::Auto, Protocol::Text] {
        let proxy = DroppingProxy::start(with_server(|m| m.addr()));
        let quick = quick_store_speaking(proxy.url(), protocol);
        let app = TestApp::new(CountingStore::new(quick)).await;
        // Items stored, ever: an earlier test's expired item that memcached reclaims
        // meanwhile would lower a count of the items it holds.
        let items = || with_server(|m| m.stats())["total_items"];
        let before = items();
        let reply = app.get("/set/p/k/1", None).await;
        assert!(proxy.dropped.load(Ordering::SeqCst));
        assert_eq!(reply.status, 503, "{protocol:?}: {reply:?}");
        assert!(reply.cookie.is_none());
        assert_eq!(
            items(),
            before + 1,
            "{protocol:?}: one add, the one that landed"
        );
        assert_eq!(app.store.calls().creates, 1);
    }
}

/// The text protocol's conditional delete (a user's item ended by a sign-out) whose
/// connection drops after a command went, the `cas` itself or anything after it: whatever
/// the store does about it, a login's item added meanwhile under the same key stays. (It
/// was a compare-and-swap to a tombstone, then an unconditional `delete`, resent on a new
/// connection, which removed the login's item.)
#[actix_web::test]
async fn a_conditional_delete_in_doubt_never_removes_an_item_added_since() {
    const AFTER_THE_DELETE: &[&[u8]] = &[b"delete "];
    const AFTER_THE_SWAP: &[&[u8]] = &[b"cas "];
    for verbs in [AFTER_THE_DELETE, AFTER_THE_SWAP] {
        let proxy = DroppingProxy::on(with_server(|m| m.addr()), verbs);
        let through = quick_store_speaking(proxy.url(), Protocol::Text);
        let direct = text_store();
        let id = SessionId::generate().unwrap();
        assert!(through.create(&id, b"G1", TTL).await.unwrap());
        let version = through.load(&id).await.unwrap().expect("created").version;
        let done = Cell::new(false);
        let deleting = async {
            let outcome = through.delete_if(&id, version).await;
            done.set(true);
            outcome
        };
        let login = async {
            // While the dropped command is in doubt, or once the delete is over.
            while !proxy.dropped.load(Ordering::SeqCst) && !done.get() {
                actix_web::rt::time::sleep(Duration::from_millis(5)).await;
            }
            actix_web::rt::time::sleep(Duration::from_millis(30)).await;
            direct.create(&id, b"G2", TTL).await.unwrap()
        };
        let (deleted, added) = join(deleting, login).await;
        let what = String::from_utf8_lossy(verbs[0]);
        if verbs == AFTER_THE_SWAP {
            // The swap landed, and its reply was lost: in doubt, never resent.
            assert!(proxy.dropped.load(Ordering::SeqCst), "{what}");
            assert!(
                matches!(deleted, Err(StoreError::Unavailable(_))),
                "{what}: {deleted:?}"
            );
        } else {
            assert_eq!(deleted.unwrap(), Update::Updated, "{what}");
        }
        assert!(added, "{what}: the key was free for the login");
        assert_holds_the_logins_item(&direct, &id, &what).await;
    }
}

/// An unconditional delete (a sign-out ending a user's item, whose key is the same for
/// every login of the user) whose connection drops after the command went: in doubt, it is
/// not sent again, so a login's item added meanwhile under the same key stays. (It was
/// resent on a new connection, which removed the login's item: the login had seen the
/// sign-out land, and was undone by it.)
#[actix_web::test]
async fn a_delete_in_doubt_is_not_resent_over_an_item_added_since() {
    const META: &[&[u8]] = &[b"md "];
    const TEXT: &[&[u8]] = &[b"delete "];
    // Auto: the meta protocol from 1.6.18 on, the text protocol before.
    let auto = if with_server(|m| m.version()) >= (1, 6, 18) {
        META
    } else {
        TEXT
    };
    for (protocol, verbs) in [(Protocol::Auto, auto), (Protocol::Text, TEXT)] {
        let proxy = DroppingProxy::on(with_server(|m| m.addr()), verbs);
        let through = quick_store_speaking(proxy.url(), protocol);
        let direct = store();
        let id = SessionId::generate().unwrap();
        assert!(through.create(&id, b"G1", TTL).await.unwrap());
        let login = async {
            // Once the delete went, before its connection drops.
            while !proxy.dropped.load(Ordering::SeqCst) {
                actix_web::rt::time::sleep(Duration::from_millis(5)).await;
            }
            direct.create(&id, b"G2", TTL).await.unwrap()
        };
        let (deleted, added) = join(through.delete(&id), login).await;
        assert!(
            matches!(deleted, Err(StoreError::Unavailable(_))),
            "{protocol:?}: {deleted:?}"
        );
        assert!(added, "{protocol:?}: the delete landed, the key was free");
        assert_holds_the_logins_item(&direct, &id, &format!("{protocol:?}")).await;
    }
}

/// That `id` holds `G2`, the item a login added while a delete was in doubt.
async fn assert_holds_the_logins_item(direct: &MemcacheStore, id: &SessionId, what: &str) {
    let item = direct.load(id).await.unwrap().map(|s| s.data);
    assert_eq!(
        item.as_deref(),
        Some(&b"G2"[..]),
        "{what}: the login's item stays"
    );
}

/// memcached run with `-C` gives every item CAS token 0: compare-and-swap cannot work.
/// Both backends refuse it with an error that says so, instead of 409 on every write
/// (meta) or silent overwrites (r2d2). Over the meta protocol a new session is refused
/// already (its create asks for the token), so no browser is handed a cookie that every
/// later request answers 503 to; over the text protocol and an r2d2 pool, whose creates
/// tell no token, at the first read.
#[test]
fn memcached_with_cas_disabled_is_refused() {
    let server = Memcached::start_with(&["-C"]);
    let meta = server.version() >= (1, 6, 18);
    let speaking = |protocol| {
        MemcacheStore::builder(server.url())
            .protocol(protocol)
            .build()
            .unwrap()
    };
    #[allow(unused_mut)]
    let mut stores = vec![
        // Meta where the server speaks it: under load, `Auto` could take it for a proxy.
        (
            "meta or auto",
            speaking(if meta { Protocol::Meta } else { Protocol::Auto }),
            meta,
        ),
        ("text", speaking(Protocol::Text), false),
    ];
    #[cfg(feature = "r2d2")]
    {
        let manager = r2d2_memcache::MemcacheConnectionManager::new(server.url().as_str());
        let pool = r2d2_memcache::r2d2::Pool::builder()
            .max_size(1)
            .build(manager)
            .unwrap();
        stores.push(("r2d2", MemcacheStore::from_r2d2(pool), false));
    }
    run(async {
        for (name, store, at_create) in stores {
            let id = SessionId::generate().unwrap();
            let created = store.create(&id, b"one", TTL).await;
            let e = if at_create {
                created.unwrap_err()
            } else {
                assert!(created.unwrap(), "{name}");
                store.load(&id).await.unwrap_err()
            };
            let StoreError::Unsupported(why) = &e else {
                panic!("{name}: {e:?}")
            };
            assert!(why.contains("-C"), "{name}: {why}");
        }
    });
}

/// memcached run with `-B binary` answers no text command: it waits for the rest of a
/// 24-byte binary header. The native client's handshake gets no answer, and the request a
/// 503 within the connection timeout, not a hang; an r2d2 pool, which speaks the binary
/// protocol, works with it.
#[test]
fn memcached_in_binary_only_mode_is_a_quick_503_for_the_native_client() {
    let server = Memcached::start_with(&["-B", "binary"]);
    let store = MemcacheStore::builder(server.url())
        .connect_timeout(Duration::from_millis(300))
        .io_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    run(async {
        let started = Instant::now();
        let read = store.load(&SessionId::generate().unwrap()).await;
        assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "{took:?}");
    });
    #[cfg(feature = "r2d2")]
    {
        let store = crate::memcached::r2d2_store_at(&server.url(), Duration::from_secs(5));
        run(async {
            let id = SessionId::generate().unwrap();
            assert!(store.create(&id, b"one", TTL).await.unwrap());
            let read = store.load(&id).await.unwrap().map(|s| s.data);
            assert_eq!(read.as_deref(), Some(&b"one"[..]));
        });
    }
}

/// Opens connections to `server` until one meets its connection limit; returns the ones
/// it holds, and whether memcached said so (`ERROR Too many open connections`, then
/// closed) rather than leaving the connection unanswered. (1.5.22 runs out of file
/// descriptors first, stops accepting and leaves new connections waiting, answered once
/// one closes; 1.6.9 and later answer the line.)
fn hold_every_connection(server: &Memcached) -> (Vec<std::net::TcpStream>, bool) {
    use std::io::{Read as _, Write as _};
    let mut held = Vec::new();
    loop {
        let mut stream = std::net::TcpStream::connect(server.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        stream.write_all(b"version\r\n").unwrap();
        let mut answer = [0u8; 64];
        let n = match stream.read(&mut answer) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                held.push(stream);
                return (held, false);
            }
            Err(e) => panic!("{e}"),
        };
        if answer[..n].starts_with(b"ERROR Too many open connections\r\n") {
            return (held, true);
        }
        assert!(answer[..n].starts_with(b"VERSION "), "{:?}", &answer[..n]);
        held.push(stream);
        assert!(held.len() < 200, "no connection limit met");
    }
}

/// memcached past its connection limit (`-c`) answers a new connection `ERROR Too many
/// open connections` and closes it. That server is busy, not something other than
/// memcached: the store answers `Unavailable`, so a store set to start fresh serves a fresh
/// session instead of a 503, and once a connection is free the store works again.
#[test]
fn memcached_at_its_connection_limit_is_unavailable_then_serves_again() {
    let server = Memcached::start_with(&["-c", "40"]);
    let key = || Key::try_from(&[9u8; 32][..]).unwrap();
    let quick = |protocol, when_down| {
        MemcacheStore::builder(server.url())
            .io_timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_millis(500))
            .retry_interval(Duration::from_millis(100))
            .protocol(protocol)
            .when_server_down(when_down)
            .build()
            .unwrap()
    };
    run(async {
        let plain = CountingStore::new(MemcacheStore::new(&server.url()).unwrap());
        let before = TestApp::with(plain, key(), |b| b).await;
        let cookie = before.get("/set/p/k/kept", None).await.cookie();
        let kept = before.get("/get/p/k", Some(&cookie)).await.body;
        assert_ne!(kept, "none");
        // Asked first: at the limit, asking takes a connection too.
        let version = server.version();
        let (held, said_so) = hold_every_connection(&server);
        assert!(
            said_so || version < (1, 6, 9),
            "memcached {version:?} left a connection past its limit unanswered"
        );
        let id = SessionId::generate().unwrap();
        for protocol in [Protocol::Auto, Protocol::Meta, Protocol::Text] {
            let e = quick(protocol, WhenDown::FailClosed)
                .load(&id)
                .await
                .unwrap_err();
            // Unanswered, it is a timeout: unavailable too.
            assert!(
                matches!(&e, StoreError::Unavailable(why) if !said_so || why.to_string().contains("-c")),
                "{protocol:?}: {e:?}"
            );
        }
        let fresh = TestApp::with(
            CountingStore::new(quick(Protocol::Auto, WhenDown::StartFresh)),
            key(),
            |b| b,
        )
        .await;
        let reply = fresh.get("/get/p/k", Some(&cookie)).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "none"),
            "{reply:?}"
        );
        drop(held);
        let store = quick(Protocol::Auto, WhenDown::FailClosed);
        let mut tries = 0;
        while let Err(e) = store.load(&id).await {
            tries += 1;
            assert!(tries < 50, "still failing: {e:?}");
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
        let after = TestApp::with(CountingStore::new(store), key(), |b| b).await;
        assert_eq!(after.get("/get/p/k", Some(&cookie)).await.body, kept);
    });
}

/// Used outside actix's runtime (no tokio `LocalSet`), the store answers an error instead
/// of panicking.
#[test]
fn outside_a_local_set_the_store_errs_instead_of_panicking() {
    let store = store();
    let id = SessionId::generate().unwrap();
    let no_runtime = store.load(&id).now_or_never().expect("fails at once");
    assert!(
        matches!(no_runtime, Err(StoreError::Unsupported(_))),
        "{no_runtime:?}"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = runtime.block_on(store.load(&id)).unwrap_err();
    let StoreError::Unsupported(why) = &e else {
        panic!("{e:?}")
    };
    assert!(why.contains("LocalSet"), "{why}");
    // Updates too, and the store still works where it should.
    let update =
        runtime.block_on(store.update(&id, b"x", actix_memcache_session::Version::new(1), TTL));
    assert!(update.is_err());
    run(async {
        assert!(store.create(&id, b"ok", TTL).await.unwrap());
        assert_eq!(
            store
                .delete_if(&id, store.load(&id).await.unwrap().unwrap().version)
                .await
                .unwrap(),
            Update::Updated
        );
    });
}

/// A memcached too old for the meta protocol works in the text protocol.
#[test]
fn a_memcached_older_than_1_6_10_works_in_the_text_protocol() {
    let fake = FakeMemcached::start(|c| match c.verb.as_str() {
        "version" => Answer::Send(b"VERSION 1.6.9\r\n".to_vec()),
        _ => Answer::Normal,
    });
    let store = quick_store_speaking(fake.url(), Protocol::Text);
    run(async {
        let id = SessionId::generate().unwrap();
        assert!(store.create(&id, b"mine", TTL).await.unwrap());
        let stored = store.load(&id).await.unwrap().unwrap();
        assert_eq!(stored.data, b"mine");
        let update = store
            .update(&id, b"new", stored.version, TTL)
            .await
            .unwrap();
        assert_eq!(update, Update::Updated);
        assert!(store.touch(&id, TTL).await.unwrap());
    });
}

/// The text protocol has no opaque token: a reply is checked against the command it
/// answers. A write answered twice shifts its extra line onto the reads waiting behind it
/// on the pipelined connection: none of them gets another session's data.
#[test]
fn text_a_doubled_reply_never_hands_a_session_another_sessions_data() {
    let (fake, armed) = fake_once("cas", |_| Answer::Send(b"STORED\r\nSTORED\r\n".to_vec()));
    let store = quick_store_speaking(fake.url(), Protocol::Text);
    // The write's own reply is the first line: it stands.
    let write = run(write_with_reads_behind_it(&store, &armed));
    assert!(matches!(write, Ok(Update::Updated)), "{write:?}");
}

/// A `VALUE` line that names another key than the one asked for ends the connection: the
/// value is never handed over.
#[test]
fn text_a_value_for_another_key_is_refused() {
    let (fake, armed) = fake_once("gets", |_| {
        Answer::Send(b"VALUE session:someone-else 0 6 1\r\ntheirs\r\nEND\r\n".to_vec())
    });
    let store = patient_store_speaking(fake.url(), Protocol::Text);
    run(read_through_fault(&store, &armed));
}

/// Absurd `VALUE` lengths, a value not followed by `END`, garbage: the connection ends at
/// once (the read is resent on a new one, or 503), no panic, nothing allocated for the
/// length.
#[test]
fn text_absurd_lengths_and_garbage_end_the_connection() {
    let replies: [&[u8]; 5] = [
        b"VALUE {key} 0 18446744073709551615 1\r\n",
        b"VALUE {key} 0 4294967296 1\r\n",
        b"VALUE {key} 0 4 1\r\nkept\r\nVALUE {key} 0 4 1\r\n",
        b"\xff\xfe\x00garbage\r\n",
        b"SERVER_ERROR temporary failure\r\n",
    ];
    for reply in replies {
        let (fake, armed) = fake_once("gets", move |c| {
            let key = c.line.trim_start_matches("gets ");
            let reply = String::from_utf8_lossy(reply).replace("{key}", key);
            Answer::Send(reply.into_bytes())
        });
        let store = patient_store_speaking(fake.url(), Protocol::Text);
        run(read_through_fault(&store, &armed));
    }
}

/// A request's time limit covers its resend: a read whose connection drops just before its
/// time is up is resent on a new connection, which gets what is left of `io_timeout`, not
/// a second one (with memcached hung, such reads answered 503 after twice the timeout).
#[test]
fn a_resent_read_stays_within_one_io_timeout() {
    let dropped = Arc::new(AtomicBool::new(false));
    let hung = Arc::clone(&dropped);
    let fake = FakeMemcached::start(move |c| match c.verb.as_str() {
        "mg" if !hung.swap(true, Ordering::SeqCst) => {
            std::thread::sleep(Duration::from_millis(250));
            Answer::Hangup
        }
        "version" if hung.load(Ordering::SeqCst) => Answer::Silence,
        _ => Answer::Normal,
    });
    let store = quick_store(fake.url());
    run(async {
        let id = SessionId::generate().unwrap();
        assert!(store.create(&id, b"mine", TTL).await.unwrap());
        let started = Instant::now();
        let read = store.load(&id).await;
        let took = started.elapsed();
        assert!(dropped.load(Ordering::SeqCst), "the connection dropped");
        assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
        // Under 550 ms, what 250 ms and another 300 would take, with room for a slow machine.
        assert!(
            took < Duration::from_millis(530),
            "one io_timeout (300 ms) for both attempts, not 250 ms and another 300: {took:?}"
        );
    });
}

/// A worker thread that stalls after queuing a request and before its writer runs (an
/// overloaded machine) does not count the stall against memcached: `io_timeout` restarts
/// when the writer takes the request, so the reply that comes soon after is taken.
#[test]
fn a_stall_before_the_write_is_not_memcacheds_timeout() {
    // A reply that takes a moment, so it cannot be there before the expired timer is seen.
    let fake = slow_reads(Duration::from_millis(20));
    // A stall of 1.2 times the timeout; the limit, twice the timeout from the queuing,
    // leaves the write and the reply 380 ms.
    let timeout = Duration::from_millis(500);
    let store = MemcacheStore::builder(fake.url())
        .io_timeout(timeout)
        .protocol(Protocol::Meta)
        .build()
        .unwrap();
    run(async {
        let id = SessionId::generate().unwrap();
        assert!(store.create(&id, b"mine", TTL).await.unwrap());
        let mut read = std::pin::pin!(store.load(&id));
        let queued = read.as_mut().now_or_never();
        assert!(queued.is_none(), "the read waits for its reply: {queued:?}");
        std::thread::sleep(timeout * 6 / 5);
        let read = read.await;
        assert_eq!(read.unwrap().unwrap().data, b"mine");
    });
}

/// memcached may answer a large set before reading it (`SERVER_ERROR object too large`) and
/// then stop reading: a request queued behind the write that does not end stays in the
/// outbox, and times out from when it was queued, so the connection ends within
/// `io_timeout` instead of leaving it waiting (with the limit started only by the writer,
/// as f007d1d had it, it waited for ever).
#[test]
fn requests_behind_a_write_memcached_stopped_reading_still_time_out() {
    let (fake, armed) = fake_once("ms", |_| {
        Answer::SendThenStopReading(b"SERVER_ERROR object too large for cache\r\n".to_vec())
    });
    let store = MemcacheStore::builder(fake.url())
        .io_timeout(Duration::from_millis(300))
        .pool_max_size(1)
        .max_item_size(64 << 20)
        .build()
        .unwrap();
    run(async {
        let (big, small) = (
            SessionId::generate().unwrap(),
            SessionId::generate().unwrap(),
        );
        assert!(store.create(&small, b"small", TTL).await.unwrap());
        armed.store(true, Ordering::SeqCst);
        let value = vec![b'v'; 32 << 20];
        let started = Instant::now();
        let later = async {
            // Queued once the writer is blocked on the set's bytes.
            tokio::time::sleep(Duration::from_millis(50)).await;
            store.load(&small).await
        };
        let both = join(store.create(&big, &value, TTL), later);
        let Ok((written, read)) = tokio::time::timeout(Duration::from_secs(5), both).await else {
            panic!("a request still waits after 5 s");
        };
        let took = started.elapsed();
        assert!(
            matches!(written, Err(StoreError::TooLarge { .. })),
            "{written:?}"
        );
        assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
        assert!(took < Duration::from_millis(900), "{took:?}");
    });
}
