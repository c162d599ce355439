//! The acceptance suite every [`SessionStore`] must pass (feature `testing`).
//!
//! Each behaviour is an `async fn` taking a fresh store; [`store_acceptance_suite!`]
//! turns all of them into one `#[test]` each for a store of yours:
//!
//! ```test_harness,no_run
//! # #[cfg(feature = "testing")] mod t {
//! use actix_memcache_session::MemoryStore;
//! actix_memcache_session::store_acceptance_suite!(MemoryStore::new());
//! # }
//! ```
//!
//! Timing checks sleep a few seconds (memcached counts TTLs in whole seconds), so run the
//! suite with more test threads than cores.
//!
//! [`store_acceptance_suite!`]: crate::store_acceptance_suite

use std::time::Duration;

use futures_util::future::{join, join_all};

use crate::{SessionId, SessionStore, Update};

#[doc(hidden)]
pub use actix_web::rt as __rt;

const TTL: Duration = Duration::from_secs(60);
/// A TTL short enough to wait out, and the wait: memcached may expire an item up to a
/// second early or late, since its clock ticks once a second.
const SHORT_TTL: Duration = Duration::from_secs(2);
const PAST_SHORT_TTL: Duration = Duration::from_millis(3_200);

fn new_id() -> SessionId {
    SessionId::generate().expect("OS randomness")
}

async fn data_of<S: SessionStore>(store: &S, id: &SessionId) -> Option<Vec<u8>> {
    store.load(id).await.expect("load").map(|s| s.data)
}

/// Generates one `#[test]` per acceptance behaviour, each on a store made by `$make`.
#[macro_export]
macro_rules! store_acceptance_suite {
    ($make:expr) => {
        $crate::store_acceptance_suite!(@each $make;
            load_of_unknown_id_is_none,
            create_then_load_round_trips,
            create_refuses_a_taken_id,
            update_with_current_version_replaces,
            update_with_stale_version_conflicts,
            writes_at_one_version_sent_at_once_let_one_through,
            creates_of_one_id_sent_at_once_let_one_through,
            a_touch_or_an_update_beside_a_delete_or_a_write_brings_nothing_back,
            update_of_missing_session_creates_nothing,
            touch_of_missing_session_creates_nothing,
            delete_removes_and_tolerates_missing,
            delete_if_at_the_current_version_removes,
            delete_if_at_a_stale_version_keeps_the_newer_write,
            delete_if_of_a_missing_session_reports_it,
            a_version_read_before_a_delete_does_not_match_the_id_created_again,
            sessions_are_isolated,
            ids_one_character_apart_are_isolated,
            bytes_that_look_like_protocol_round_trip,
            large_values_round_trip,
            entries_expire_after_their_ttl,
            an_expired_entry_is_gone_to_every_method,
            touch_extends_the_ttl,
            touch_keeps_the_version,
            update_resets_the_ttl,
            update_and_touch_can_shorten_the_ttl,
            any_ttl_however_long_keeps_the_entry,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::testing::__rt::System::new().block_on($crate::testing::$name($make));
            }
        )*
    };
}

/// An id never written loads as `None`.
pub async fn load_of_unknown_id_is_none<S: SessionStore>(store: S) {
    assert_eq!(data_of(&store, &new_id()).await, None);
}

/// What `create` stored, `load` returns, with a version.
pub async fn create_then_load_round_trips<S: SessionStore>(store: S) {
    let id = new_id();
    assert!(store.create(&id, b"{\"a\":1}", TTL).await.unwrap());
    assert_eq!(
        data_of(&store, &id).await.as_deref(),
        Some(&b"{\"a\":1}"[..])
    );
    let v1 = store.load(&id).await.unwrap().unwrap().version;
    let v2 = store.load(&id).await.unwrap().unwrap().version;
    assert_eq!(v1, v2, "reads must not change the version");
}

/// `create` on an existing id answers `false` and leaves the data, and its version, alone.
pub async fn create_refuses_a_taken_id<S: SessionStore>(store: S) {
    let id = new_id();
    assert!(store.create(&id, b"first", TTL).await.unwrap());
    let version = store.load(&id).await.unwrap().unwrap().version;
    assert!(!store.create(&id, b"second", TTL).await.unwrap());
    let stored = store.load(&id).await.unwrap().unwrap();
    assert_eq!(stored.data, b"first");
    assert_eq!(stored.version, version);
}

/// Creates of one id sent at once, as two first logins of one user send their user item's,
/// let exactly one through, and the store holds what that one wrote.
pub async fn creates_of_one_id_sent_at_once_let_one_through<S: SessionStore>(store: S) {
    let id = new_id();
    let writes: Vec<Vec<u8>> = (1..=4)
        .map(|n| format!("create {n}").into_bytes())
        .collect();
    let created = join_all(writes.iter().map(|w| store.create(&id, w, TTL))).await;
    let won: Vec<&Vec<u8>> = writes
        .iter()
        .zip(&created)
        .filter(|(_, outcome)| matches!(outcome, Ok(true)))
        .map(|(w, _)| w)
        .collect();
    assert_eq!(won.len(), 1, "creates {created:?}");
    assert!(created.iter().all(Result::is_ok), "creates {created:?}");
    assert_eq!(data_of(&store, &id).await.as_ref(), Some(won[0]));
}

/// `update` with the version just read writes, and changes the version.
pub async fn update_with_current_version_replaces<S: SessionStore>(store: S) {
    let id = new_id();
    store.create(&id, b"one", TTL).await.unwrap();
    let before = store.load(&id).await.unwrap().unwrap().version;
    let outcome = store.update(&id, b"two", before, TTL).await.unwrap();
    assert_eq!(outcome, Update::Updated);
    let after = store.load(&id).await.unwrap().unwrap();
    assert_eq!(after.data, b"two");
    assert_ne!(after.version, before);
    // Any write, the same bytes again too: a version that named the data would let a
    // request that read before a change and its undoing write over both.
    store.update(&id, b"two", after.version, TTL).await.unwrap();
    let again = store.load(&id).await.unwrap().unwrap().version;
    assert_ne!(again, after.version, "the same bytes written again");
}

/// `update` with a version older than the last write conflicts and writes nothing.
pub async fn update_with_stale_version_conflicts<S: SessionStore>(store: S) {
    let id = new_id();
    store.create(&id, b"one", TTL).await.unwrap();
    let stale = store.load(&id).await.unwrap().unwrap().version;
    assert_eq!(
        store.update(&id, b"two", stale, TTL).await.unwrap(),
        Update::Updated
    );
    let outcome = store.update(&id, b"three", stale, TTL).await.unwrap();
    assert_eq!(outcome, Update::Conflict);
    assert_eq!(data_of(&store, &id).await.as_deref(), Some(&b"two"[..]));
}

/// Writes at one version sent at once, as concurrent requests send them, let exactly one
/// through, and the store holds what that one wrote: `update`s, then an `update` and a
/// `delete_if`. A store that checks the version and writes after an `.await` lets several
/// through, and loses all but the last.
pub async fn writes_at_one_version_sent_at_once_let_one_through<S: SessionStore>(store: S) {
    let id = new_id();
    store.create(&id, b"zero", TTL).await.unwrap();
    let version = store.load(&id).await.unwrap().unwrap().version;
    let writes: Vec<Vec<u8>> = (1..=4).map(|n| format!("write {n}").into_bytes()).collect();
    let updates = join_all(writes.iter().map(|w| store.update(&id, w, version, TTL))).await;
    let updated: Vec<&Vec<u8>> = writes
        .iter()
        .zip(&updates)
        .filter(|(_, outcome)| matches!(outcome, Ok(Update::Updated)))
        .map(|(w, _)| w)
        .collect();
    assert_eq!(updated.len(), 1, "updates {updates:?}");
    // The others lost a race, which is no error and no missing session.
    assert!(
        updates
            .iter()
            .all(|o| matches!(o, Ok(Update::Updated | Update::Conflict))),
        "updates {updates:?}"
    );
    assert_eq!(data_of(&store, &id).await.as_ref(), Some(updated[0]));
    let version = store.load(&id).await.unwrap().unwrap().version;
    let (updated, deleted) = join(
        store.update(&id, b"last", version, TTL),
        store.delete_if(&id, version),
    )
    .await;
    let (updated, deleted) = (updated.unwrap(), deleted.unwrap());
    match (updated, deleted) {
        (Update::Updated, Update::Conflict) => {
            assert_eq!(data_of(&store, &id).await.as_deref(), Some(&b"last"[..]));
        }
        (Update::Conflict | Update::Missing, Update::Updated) => {
            assert_eq!(data_of(&store, &id).await, None);
        }
        outcomes => panic!("an update and a delete_if at one version: {outcomes:?}"),
    }
}

/// A `touch` sent beside a `delete`, or beside an `update`, never writes the entry back,
/// and an `update` beside a `delete` does not either: a touch that read the entry and
/// wrote it back would undo a logout, or a write already answered.
pub async fn a_touch_or_an_update_beside_a_delete_or_a_write_brings_nothing_back<
    S: SessionStore,
>(
    store: S,
) {
    let id = new_id();
    store.create(&id, b"old", TTL).await.unwrap();
    let (touched, deleted) = join(store.touch(&id, TTL), store.delete(&id)).await;
    touched.unwrap();
    deleted.unwrap();
    assert_eq!(data_of(&store, &id).await, None, "touch beside a delete");

    store.create(&id, b"old", TTL).await.unwrap();
    let version = store.load(&id).await.unwrap().unwrap().version;
    let (touched, updated) = join(
        store.touch(&id, TTL),
        store.update(&id, b"new", version, TTL),
    )
    .await;
    assert!(touched.unwrap());
    assert_eq!(
        updated.unwrap(),
        Update::Updated,
        "a touch keeps the version"
    );
    assert_eq!(data_of(&store, &id).await.as_deref(), Some(&b"new"[..]));

    let version = store.load(&id).await.unwrap().unwrap().version;
    let (updated, deleted) =
        join(store.update(&id, b"newer", version, TTL), store.delete(&id)).await;
    updated.unwrap();
    deleted.unwrap();
    assert_eq!(
        data_of(&store, &id).await,
        None,
        "an update beside a delete"
    );
}

/// `update` of a session that does not exist reports it missing and does not create it.
pub async fn update_of_missing_session_creates_nothing<S: SessionStore>(store: S) {
    let id = new_id();
    store.create(&id, b"one", TTL).await.unwrap();
    let version = store.load(&id).await.unwrap().unwrap().version;
    store.delete(&id).await.unwrap();
    let outcome = store.update(&id, b"two", version, TTL).await.unwrap();
    assert_eq!(outcome, Update::Missing);
    assert_eq!(data_of(&store, &id).await, None);
}

/// `touch` of a session that does not exist answers `false` and creates nothing.
pub async fn touch_of_missing_session_creates_nothing<S: SessionStore>(store: S) {
    let id = new_id();
    assert!(!store.touch(&id, TTL).await.unwrap());
    assert_eq!(data_of(&store, &id).await, None);
}

/// `delete` removes; deleting again is fine.
pub async fn delete_removes_and_tolerates_missing<S: SessionStore>(store: S) {
    let id = new_id();
    store.create(&id, b"one", TTL).await.unwrap();
    store.delete(&id).await.unwrap();
    assert_eq!(data_of(&store, &id).await, None);
    store.delete(&id).await.unwrap();
}

/// `delete_if` with the version just read removes the session.
pub async fn delete_if_at_the_current_version_removes<S: SessionStore>(store: S) {
    let id = new_id();
    store.create(&id, b"one", TTL).await.unwrap();
    let version = store.load(&id).await.unwrap().unwrap().version;
    let outcome = store.delete_if(&id, version).await.unwrap();
    assert_eq!(outcome, Update::Updated);
    assert_eq!(data_of(&store, &id).await, None);
}

/// `delete_if` with a version older than the last write conflicts and removes nothing.
pub async fn delete_if_at_a_stale_version_keeps_the_newer_write<S: SessionStore>(store: S) {
    let id = new_id();
    store.create(&id, b"one", TTL).await.unwrap();
    let stale = store.load(&id).await.unwrap().unwrap().version;
    store.update(&id, b"two", stale, TTL).await.unwrap();
    let outcome = store.delete_if(&id, stale).await.unwrap();
    assert_eq!(outcome, Update::Conflict);
    assert_eq!(data_of(&store, &id).await.as_deref(), Some(&b"two"[..]));
}

/// `delete_if` of a session that is gone reports it missing.
pub async fn delete_if_of_a_missing_session_reports_it<S: SessionStore>(store: S) {
    let id = new_id();
    store.create(&id, b"one", TTL).await.unwrap();
    let version = store.load(&id).await.unwrap().unwrap().version;
    store.delete(&id).await.unwrap();
    let outcome = store.delete_if(&id, version).await.unwrap();
    assert_eq!(outcome, Update::Missing);
    assert_eq!(data_of(&store, &id).await, None);
}

/// A version read before an id was deleted does not match the id created again: neither
/// `update` nor `delete_if` with it touches the new entry. (A user's item is deleted by a
/// sign-out of all their sessions and created again at the next login, under the same id.)
pub async fn a_version_read_before_a_delete_does_not_match_the_id_created_again<S: SessionStore>(
    store: S,
) {
    let id = new_id();
    store.create(&id, b"before", TTL).await.unwrap();
    let old = store.load(&id).await.unwrap().unwrap().version;
    store.delete(&id).await.unwrap();
    assert!(store.create(&id, b"after", TTL).await.unwrap());
    assert_ne!(store.load(&id).await.unwrap().unwrap().version, old);
    assert_eq!(
        store.update(&id, b"written back", old, TTL).await.unwrap(),
        Update::Conflict
    );
    assert_eq!(store.delete_if(&id, old).await.unwrap(), Update::Conflict);
    assert_eq!(data_of(&store, &id).await.as_deref(), Some(&b"after"[..]));
}

/// Writes to one id never show under another.
pub async fn sessions_are_isolated<S: SessionStore>(store: S) {
    let (a, b) = (new_id(), new_id());
    store.create(&a, b"a", TTL).await.unwrap();
    store.create(&b, b"b", TTL).await.unwrap();
    let va = store.load(&a).await.unwrap().unwrap().version;
    store.update(&a, b"a2", va, TTL).await.unwrap();
    store.delete(&b).await.unwrap();
    assert_eq!(data_of(&store, &a).await.as_deref(), Some(&b"a2"[..]));
    assert_eq!(data_of(&store, &b).await, None);
}

/// Ids that differ in one character (as a store keyed by a prefix of the id, or by its
/// `Debug` form, which shows 6 characters, would confuse) hold their own data.
pub async fn ids_one_character_apart_are_isolated<S: SessionStore>(store: S) {
    let a = new_id();
    let mut text = a.as_str().to_owned();
    let swapped = if text.as_bytes()[20] == b'A' {
        "B"
    } else {
        "A"
    };
    text.replace_range(20..21, swapped);
    let b: SessionId = text.parse().expect("an id one character apart");
    store.create(&a, b"a", TTL).await.unwrap();
    assert!(store.create(&b, b"b", TTL).await.unwrap(), "b is not a's");
    assert_eq!(data_of(&store, &a).await.as_deref(), Some(&b"a"[..]));
    assert_eq!(data_of(&store, &b).await.as_deref(), Some(&b"b"[..]));
    store.delete(&a).await.unwrap();
    assert_eq!(data_of(&store, &b).await.as_deref(), Some(&b"b"[..]));
}

/// Data containing line breaks and protocol words comes back byte for byte, created or
/// updated.
pub async fn bytes_that_look_like_protocol_round_trip<S: SessionStore>(store: S) {
    let tricky = b"line\r\nEND\r\nVALUE x 0 1\r\n\0\xff";
    created_and_updated_round_trip(&store, tricky).await;
}

/// A 512 KiB value comes back whole, created or updated.
pub async fn large_values_round_trip<S: SessionStore>(store: S) {
    let big: Vec<u8> = (0..512 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    created_and_updated_round_trip(&store, &big).await;
}

/// `data` comes back as it was, written by `create` and by `update` (which stores often
/// send as another command).
async fn created_and_updated_round_trip<S: SessionStore>(store: &S, data: &[u8]) {
    let id = new_id();
    assert!(store.create(&id, data, TTL).await.unwrap());
    assert_eq!(data_of(store, &id).await.as_deref(), Some(data));
    let id = new_id();
    store.create(&id, b"small", TTL).await.unwrap();
    let version = store.load(&id).await.unwrap().unwrap().version;
    assert_eq!(
        store.update(&id, data, version, TTL).await.unwrap(),
        Update::Updated
    );
    assert_eq!(data_of(store, &id).await.as_deref(), Some(data));
}

/// A session is gone once its TTL has passed.
pub async fn entries_expire_after_their_ttl<S: SessionStore>(store: S) {
    let id = new_id();
    store.create(&id, b"short", SHORT_TTL).await.unwrap();
    assert!(data_of(&store, &id).await.is_some());
    __rt::time::sleep(PAST_SHORT_TTL).await;
    assert_eq!(data_of(&store, &id).await, None);
}

/// An entry past its TTL is gone to every method, not only to `load`: `update`,
/// `delete_if` and `touch` find it missing and bring nothing back, and `create` takes its
/// id again.
pub async fn an_expired_entry_is_gone_to_every_method<S: SessionStore>(store: S) {
    let id = new_id();
    store.create(&id, b"short", SHORT_TTL).await.unwrap();
    let version = store.load(&id).await.unwrap().unwrap().version;
    __rt::time::sleep(PAST_SHORT_TTL).await;
    assert_eq!(
        store.update(&id, b"back", version, TTL).await.unwrap(),
        Update::Missing
    );
    assert!(!store.touch(&id, TTL).await.unwrap());
    assert_eq!(
        store.delete_if(&id, version).await.unwrap(),
        Update::Missing
    );
    assert_eq!(data_of(&store, &id).await, None);
    assert!(store.create(&id, b"new", TTL).await.unwrap());
    assert_eq!(data_of(&store, &id).await.as_deref(), Some(&b"new"[..]));
}

/// `touch` gives a session a new TTL.
pub async fn touch_extends_the_ttl<S: SessionStore>(store: S) {
    let id = new_id();
    store.create(&id, b"kept", SHORT_TTL).await.unwrap();
    assert!(store.touch(&id, TTL).await.unwrap());
    __rt::time::sleep(PAST_SHORT_TTL).await;
    assert_eq!(data_of(&store, &id).await.as_deref(), Some(&b"kept"[..]));
}

/// `touch` leaves the version as it was: a read-only request's refresh touches the session,
/// reads it once the touch has answered, and re-issues its cookie only if the version is
/// still the one it loaded (a touch that changed it would leave every such cookie to age
/// out).
pub async fn touch_keeps_the_version<S: SessionStore>(store: S) {
    let id = new_id();
    store.create(&id, b"kept", TTL).await.unwrap();
    let before = store.load(&id).await.unwrap().unwrap().version;
    assert!(store.touch(&id, TTL).await.unwrap());
    let after = store.load(&id).await.unwrap().unwrap().version;
    assert_eq!(before, after);
}

/// `update` gives a session the TTL it is called with.
pub async fn update_resets_the_ttl<S: SessionStore>(store: S) {
    let id = new_id();
    store.create(&id, b"one", SHORT_TTL).await.unwrap();
    let version = store.load(&id).await.unwrap().unwrap().version;
    store.update(&id, b"two", version, TTL).await.unwrap();
    __rt::time::sleep(PAST_SHORT_TTL).await;
    assert_eq!(data_of(&store, &id).await.as_deref(), Some(&b"two"[..]));
}

/// `update` and `touch` shorten a TTL as well as lengthen it: "keep me signed in" cleared
/// writes the session with the shorter idle timeout, after which it must go.
pub async fn update_and_touch_can_shorten_the_ttl<S: SessionStore>(store: S) {
    let (updated, touched) = (new_id(), new_id());
    store.create(&updated, b"one", TTL).await.unwrap();
    store.create(&touched, b"one", TTL).await.unwrap();
    let version = store.load(&updated).await.unwrap().unwrap().version;
    store
        .update(&updated, b"two", version, SHORT_TTL)
        .await
        .unwrap();
    assert!(store.touch(&touched, SHORT_TTL).await.unwrap());
    __rt::time::sleep(PAST_SHORT_TTL).await;
    assert_eq!(data_of(&store, &updated).await, None, "updated");
    assert_eq!(data_of(&store, &touched).await, None, "touched");
}

/// A TTL of a century, or `Duration::MAX`, keeps the entry rather than losing it at once
/// (memcached takes an expiry past January 2038 as already past) or panicking.
pub async fn any_ttl_however_long_keeps_the_entry<S: SessionStore>(store: S) {
    let century = Duration::from_secs(100 * 365 * 24 * 3600);
    for ttl in [century, Duration::MAX] {
        let id = new_id();
        assert!(store.create(&id, b"one", ttl).await.unwrap());
        assert_eq!(data_of(&store, &id).await.as_deref(), Some(&b"one"[..]));
        assert!(store.touch(&id, ttl).await.unwrap());
        assert_eq!(data_of(&store, &id).await.as_deref(), Some(&b"one"[..]));
        let version = store.load(&id).await.unwrap().unwrap().version;
        let updated = store.update(&id, b"two", version, ttl).await.unwrap();
        assert_eq!(updated, Update::Updated);
        assert_eq!(data_of(&store, &id).await.as_deref(), Some(&b"two"[..]));
    }
}
