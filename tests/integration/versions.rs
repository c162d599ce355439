//! Which protocol the store speaks to each server, with the default setting: against fakes
//! that answer as each memcached version does (with its quirks), a proxy that closes the
//! connection at a meta command or answers `version` with an error, a server restarted as
//! another version, and a fleet of mixed versions. The real versions run the shared suites
//! in `scripts/test-versions.sh`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_memcache_session::{
    MemcacheStore, Protocol, SessionId, SessionStore, StoreError, Update,
};

use crate::fake::{Answer, Command, FakeMemcached};

const TTL: Duration = Duration::from_secs(60);

/// The versions users run, as `(major, minor, patch)`.
const VERSIONS: [(u32, u32, u32); 7] = [
    (1, 5, 22),
    (1, 6, 9),
    (1, 6, 10),
    (1, 6, 14),
    (1, 6, 17),
    (1, 6, 18),
    (1, 6, 45),
];

fn run<T>(test: impl std::future::Future<Output = T>) -> T {
    actix_web::rt::System::new().block_on(test)
}

fn store_on(url: String, protocol: Protocol) -> MemcacheStore {
    MemcacheStore::builder(url)
        .io_timeout(Duration::from_millis(300))
        .protocol(protocol)
        .build()
        .unwrap()
}

/// A fake of `version` that records every command's first word, and answers `script`'s
/// way where it says so.
fn recorded(
    version: (u32, u32, u32),
    script: impl Fn(&Command) -> Option<Answer> + Send + Sync + 'static,
) -> (FakeMemcached, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let fake = FakeMemcached::of_version(version, move |c| {
        log.lock().unwrap().push(c.verb.clone());
        script(c).unwrap_or(Answer::Normal)
    });
    (fake, seen)
}

fn take(seen: &Mutex<Vec<String>>) -> Vec<String> {
    std::mem::take(&mut *seen.lock().unwrap())
}

const META: [&str; 3] = ["mg", "ms", "md"];
const TEXT: [&str; 6] = ["gets", "add", "cas", "touch", "delete", "version"];

/// Only text commands, and at least one beyond the handshake.
fn spoke_text(verbs: &[String]) -> bool {
    verbs.iter().all(|v| TEXT.contains(&v.as_str())) && verbs.iter().any(|v| v != "version")
}

/// Meta commands, and no text command beyond the handshake.
fn spoke_meta(verbs: &[String]) -> bool {
    verbs.iter().any(|v| META.contains(&v.as_str()))
        && verbs
            .iter()
            .all(|v| v == "version" || !TEXT.contains(&v.as_str()))
}

/// Every operation of the store, with every outcome each can have, checked.
async fn every_operation_answers_right(store: &MemcacheStore) {
    let id = SessionId::generate().unwrap();
    let gone = SessionId::generate().unwrap();
    assert_eq!(store.load(&gone).await.unwrap(), None, "a miss");
    assert!(!store.touch(&gone, TTL).await.unwrap(), "a touch of a miss");
    assert!(store.create(&id, b"one", TTL).await.unwrap());
    assert!(
        !store.create(&id, b"two", TTL).await.unwrap(),
        "add on an existing key"
    );
    let stored = store.load(&id).await.unwrap().expect("a hit");
    assert_eq!(stored.data, b"one");
    let stale = actix_memcache_session::Version::new(stored.version.get() + 100);
    assert_eq!(
        store.update(&id, b"x", stale, TTL).await.unwrap(),
        Update::Conflict
    );
    assert_eq!(
        store
            .update(&gone, b"x", stored.version, TTL)
            .await
            .unwrap(),
        Update::Missing
    );
    assert_eq!(
        store
            .update(&id, b"two", stored.version, TTL)
            .await
            .unwrap(),
        Update::Updated
    );
    assert!(store.touch(&id, TTL).await.unwrap());
    let stored = store.load(&id).await.unwrap().expect("updated");
    assert_eq!(stored.data, b"two");
    assert_eq!(store.delete_if(&id, stale).await.unwrap(), Update::Conflict);
    assert_eq!(
        store.delete_if(&id, stored.version).await.unwrap(),
        Update::Updated,
        "a conditional delete with the right CAS deletes (1.6.10's md does not)"
    );
    assert_eq!(store.load(&id).await.unwrap(), None, "deleted");
    assert!(
        !store.touch(&id, TTL).await.unwrap(),
        "no tombstone to touch"
    );
    store.delete(&id).await.unwrap();
}

/// With the default setting, memcached before 1.6.18 (whose misses carry no opaque token,
/// and whose 1.6.10 `md C<cas>` never deletes) gets the text protocol, and 1.6.18 and
/// later the meta protocol; every operation answers right on each.
#[test]
fn by_default_each_version_gets_the_protocol_it_completes() {
    for version in VERSIONS {
        let (fake, seen) = recorded(version, |_| None);
        let store = store_on(fake.url(), Protocol::Auto);
        run(every_operation_answers_right(&store));
        let verbs = take(&seen);
        if version < (1, 6, 18) {
            assert!(spoke_text(&verbs), "{version:?}: {verbs:?}");
        } else {
            assert!(spoke_meta(&verbs), "{version:?}: {verbs:?}");
            assert!(
                verbs.contains(&"mn".to_owned()),
                "proven, not guessed: {verbs:?}"
            );
        }
    }
}

/// A forced meta protocol refuses a memcached older than 1.6.18 by name, pointing at the
/// default; a forced text protocol works on every version.
#[test]
fn a_forced_protocol_is_kept_or_refused_by_name() {
    for version in VERSIONS {
        let (fake, seen) = recorded(version, |_| None);
        run(async {
            let id = SessionId::generate().unwrap();
            let text = store_on(fake.url(), Protocol::Text);
            every_operation_answers_right(&text).await;
            assert!(spoke_text(&take(&seen)), "{version:?}");
            let meta = store_on(fake.url(), Protocol::Meta);
            let result = meta.load(&id).await;
            if version >= (1, 6, 18) {
                assert_eq!(result.unwrap(), None, "{version:?}");
            } else {
                let Err(StoreError::Unsupported(why)) = &result else {
                    panic!("{version:?}: {result:?}")
                };
                assert!(
                    why.contains("1.6.18") && why.contains("Protocol::Auto"),
                    "{why}"
                );
            }
        });
    }
}

/// twemproxy forwards `version` to a backend (which may say 1.6.18) and closes the
/// connection at any meta command; another proxy may ignore the command, the connection
/// left open. The store speaks text to either, on a new connection (to the second after
/// one I/O timeout) rather than failing every connection. With the meta protocol forced,
/// the silent one is a timeout (503): a memcached slow for a moment would answer.
#[test]
fn a_proxy_that_closes_at_or_ignores_the_meta_no_op_gets_the_text_protocol() {
    for silent in [false, true] {
        let (fake, seen) = recorded((1, 6, 45), move |c| {
            (c.verb == "mn").then_some(if silent {
                Answer::Silence
            } else {
                Answer::Hangup
            })
        });
        // Every timeout at its default for the silent one: the wait for the no-op's answer
        // must leave time to reconnect within the connect timeout.
        let store = match silent {
            true => MemcacheStore::builder(fake.url()).build().unwrap(),
            false => store_on(fake.url(), Protocol::Auto),
        };
        run(every_operation_answers_right(&store));
        let verbs = take(&seen);
        assert_eq!(verbs[..3], ["version", "mn", "version"], "{verbs:?}");
        assert!(spoke_text(&verbs[3..]), "{verbs:?}");
        if silent {
            let store = store_on(fake.url(), Protocol::Meta);
            let result = run(store.load(&SessionId::generate().unwrap()));
            assert!(
                matches!(result, Err(StoreError::Unavailable(_))),
                "{result:?}"
            );
        }
    }
}

/// A proxy that closes the connection at `version` (twemproxy before 0.5, which closes it at
/// any command it does not know) but serves the text protocol's others: asked twice (a
/// memcached restarting closes it once), then a read on a new connection, and spoken to in
/// text, whether the protocol is left to the default or set to text; with the meta
/// protocol forced, refused by name. (Every connection failed, and every request was 503.)
#[test]
fn a_proxy_that_closes_at_version_gets_the_text_protocol() {
    let closes_at_version = || {
        recorded((1, 6, 45), |c| {
            (c.verb == "version").then_some(Answer::Hangup)
        })
    };
    for protocol in [Protocol::Auto, Protocol::Text] {
        let (fake, seen) = closes_at_version();
        let store = store_on(fake.url(), protocol);
        run(every_operation_answers_right(&store));
        let verbs = take(&seen);
        assert_eq!(
            verbs[..3],
            ["version", "version", "gets"],
            "{protocol:?}: {verbs:?}"
        );
        assert!(spoke_text(&verbs[3..]), "{protocol:?}: {verbs:?}");
    }
    let (fake, seen) = closes_at_version();
    let store = store_on(fake.url(), Protocol::Meta);
    let result = run(store.load(&SessionId::generate().unwrap()));
    let Err(StoreError::Unsupported(why)) = &result else {
        panic!("{result:?}")
    };
    assert!(
        why.contains("Protocol::Meta") && why.contains("`version`"),
        "{why}"
    );
    assert_eq!(take(&seen), ["version", "version", "gets"]);
}

/// What closes every connection it accepts (a TCP forwarder whose memcached is restarting)
/// is unavailable for now, whatever the protocol: never refused as misconfigured, which a
/// fleet would not mark down and a store starting fresh would not start fresh for.
#[test]
fn a_forwarder_that_closes_every_connection_is_unavailable_not_refused() {
    for protocol in [Protocol::Auto, Protocol::Text, Protocol::Meta] {
        let (fake, seen) = recorded((1, 6, 45), |_| Some(Answer::Hangup));
        let store = store_on(fake.url(), protocol);
        let result = run(store.load(&SessionId::generate().unwrap()));
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{protocol:?}: {result:?}"
        );
        assert_eq!(
            take(&seen)[..3],
            ["version", "version", "gets"],
            "{protocol:?}"
        );
    }
}

/// A connection closed once at `version` (a memcached restarting) is asked again, and the
/// server's protocol settled as usual: meta for one that completes it.
#[test]
fn a_connection_closed_once_at_version_is_asked_again() {
    for protocol in [Protocol::Auto, Protocol::Meta] {
        let versions = std::sync::atomic::AtomicUsize::new(0);
        let (fake, seen) = recorded((1, 6, 45), move |c| {
            let first = c.verb == "version"
                && versions.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            first.then_some(Answer::Hangup)
        });
        let store = store_on(fake.url(), protocol);
        run(every_operation_answers_right(&store));
        let verbs = take(&seen);
        assert_eq!(
            verbs[..3],
            ["version", "version", "mn"],
            "{protocol:?}: {verbs:?}"
        );
        assert!(spoke_meta(&verbs[3..]), "{protocol:?}: {verbs:?}");
    }
}

/// With the meta protocol forced, a connection closed at the meta no-op is tried once more
/// (a memcached restarting between `version` and `mn` closes it too): a server that then
/// answers `MN` is spoken to in meta, one that closes it again (a proxy) is refused by
/// name.
#[test]
fn a_forced_meta_protocol_probes_twice_before_refusing() {
    for closes in [1, usize::MAX] {
        let probes = std::sync::atomic::AtomicUsize::new(0);
        let (fake, seen) = recorded((1, 6, 45), move |c| {
            let hang_up =
                c.verb == "mn" && probes.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < closes;
            hang_up.then_some(Answer::Hangup)
        });
        let store = store_on(fake.url(), Protocol::Meta);
        if closes == 1 {
            run(every_operation_answers_right(&store));
            let verbs = take(&seen);
            assert_eq!(verbs[..4], ["version", "mn", "version", "mn"], "{verbs:?}");
            assert!(spoke_meta(&verbs[4..]), "{verbs:?}");
        } else {
            let result = run(store.load(&SessionId::generate().unwrap()));
            let Err(StoreError::Unsupported(why)) = &result else {
                panic!("{result:?}")
            };
            assert!(why.contains("Protocol::Meta"), "{why}");
            assert_eq!(take(&seen), ["version", "mn", "version", "mn"]);
        }
    }
}

/// Whatever answers the meta no-op with a line that is no reply (ended by a bare newline,
/// or past the line limit) does not speak the meta protocol: text, on a new connection.
#[test]
fn a_malformed_answer_to_the_meta_no_op_gets_the_text_protocol() {
    for answer in [b"MN\n".to_vec(), vec![b'x'; 8192]] {
        let (fake, seen) = recorded((1, 6, 45), move |c| {
            (c.verb == "mn").then(|| Answer::Send(answer.clone()))
        });
        let store = store_on(fake.url(), Protocol::Auto);
        run(every_operation_answers_right(&store));
        let verbs = take(&seen);
        assert_eq!(verbs[..3], ["version", "mn", "version"], "{verbs:?}");
        assert!(spoke_text(&verbs[3..]), "{verbs:?}");
    }
}

/// A proxy whose backend for `version` is down answers `SERVER_ERROR`: its other backends
/// may serve, so the connection is made, in the text protocol (a forced meta protocol is
/// refused: nothing proves it).
#[test]
fn a_proxy_answering_version_with_an_error_gets_the_text_protocol() {
    let down = || {
        recorded((1, 6, 18), |c| {
            (c.verb == "version")
                .then(|| Answer::Send(b"SERVER_ERROR Connection refused\r\n".to_vec()))
        })
    };
    for protocol in [Protocol::Auto, Protocol::Text] {
        let (fake, seen) = down();
        run(every_operation_answers_right(&store_on(
            fake.url(),
            protocol,
        )));
        assert!(spoke_text(&take(&seen)), "{protocol:?}");
    }
    let (fake, _) = down();
    let meta = store_on(fake.url(), Protocol::Meta);
    let e = run(meta.load(&SessionId::generate().unwrap())).unwrap_err();
    assert!(matches!(e, StoreError::Unsupported(_)), "{e:?}");
}

/// A server restarted as another version is asked again on the next connection, and the
/// session read across the restart still answers right.
#[test]
fn a_server_restarted_as_another_version_is_asked_again() {
    let restart = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hangup = Arc::clone(&restart);
    let (fake, seen) = recorded((1, 6, 18), move |_| {
        hangup
            .swap(false, std::sync::atomic::Ordering::SeqCst)
            .then_some(Answer::Hangup)
    });
    let store = store_on(fake.url(), Protocol::Auto);
    let id = SessionId::generate().unwrap();
    run(async {
        assert!(store.create(&id, b"kept", TTL).await.unwrap());
        assert!(spoke_meta(&take(&seen)));
        for (version, meta) in [((1, 6, 14), false), ((1, 6, 45), true), ((1, 5, 22), false)] {
            fake.set_version(version);
            restart.store(true, std::sync::atomic::Ordering::SeqCst);
            let stored = store.load(&id).await.unwrap().expect("the read is resent");
            assert_eq!(stored.data, b"kept");
            let verbs = take(&seen);
            let after = verbs
                .iter()
                .position(|v| v == "version")
                .expect("asked again");
            let verbs = verbs[after..].to_vec();
            assert_eq!(spoke_meta(&verbs), meta, "{version:?}: {verbs:?}");
            assert_eq!(spoke_text(&verbs), !meta, "{version:?}: {verbs:?}");
        }
    });
}

/// A server that names 1.6.18 but answers a miss without its opaque token (a proxy mixing
/// backends): the reply cannot be matched, so the connection ends and the read is a 503,
/// never another request's answer; the next read, on a new connection, answers right.
#[test]
fn a_miss_without_its_token_ends_the_connection_not_the_store() {
    let fake = FakeMemcached::of_version((1, 6, 14), |c| match c.verb.as_str() {
        "version" => Answer::Send(b"VERSION 1.6.18\r\n".to_vec()),
        _ => Answer::Normal,
    });
    let store = store_on(fake.url(), Protocol::Auto);
    run(async {
        let id = SessionId::generate().unwrap();
        assert!(store.create(&id, b"mine", TTL).await.unwrap());
        let miss = store.load(&SessionId::generate().unwrap()).await;
        assert!(matches!(miss, Err(StoreError::Unavailable(_))), "{miss:?}");
        let stored = store.load(&id).await.unwrap().expect("own data");
        assert_eq!(stored.data, b"mine");
    });
}

/// A fleet of mixed versions: each server in its own protocol, keys placed as a store of
/// one protocol places them.
#[test]
fn a_fleet_of_mixed_versions_speaks_each_servers_protocol() {
    let (old, old_seen) = recorded((1, 5, 22), |_| None);
    let (new, new_seen) = recorded((1, 6, 45), |_| None);
    let url = format!(
        "{},{}",
        old.url(),
        new.url().trim_start_matches("memcache://")
    );
    let auto = store_on(url.clone(), Protocol::Auto);
    let text = store_on(url, Protocol::Text);
    run(async {
        let ids: Vec<SessionId> = (0..40).map(|_| SessionId::generate().unwrap()).collect();
        for id in &ids {
            assert!(auto.create(id, id.as_str().as_bytes(), TTL).await.unwrap());
        }
        assert!(spoke_text(&take(&old_seen)));
        assert!(spoke_meta(&take(&new_seen)));
        for id in &ids {
            let stored = text.load(id).await.unwrap().expect("placed alike");
            assert_eq!(stored.data, id.as_str().as_bytes());
        }
    });
}
