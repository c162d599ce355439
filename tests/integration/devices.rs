//! A user's sessions (README, "A user's sessions"): the listing, signing one out, the
//! limit and its two policies, and the roster failing. Every store runs it through
//! `devices_suite!`, next to the HTTP suite.

use std::time::Duration;

use actix_memcache_session::{OverLimit, SessionHandle, SessionId, SessionStore, Update};
use actix_web::cookie::Cookie;
use futures_util::future::join;

use crate::app::TestApp;
use crate::support::{CountingStore, Reply};

macro_rules! devices_suite {
    ($make:expr) => {
        $crate::devices::devices_suite!(@each $make;
            three_devices_are_listed_with_their_labels,
            a_long_label_is_cut_at_a_character_boundary,
            one_device_signs_out_another_of_the_same_user_only,
            a_device_signed_out_before_a_change_of_users_that_signs_out_the_others_goes,
            a_session_bound_in_its_request_after_signing_out_the_others_ends_nobody_else,
            two_users_signed_out_everywhere_in_one_request_are_both_signed_out,
            the_container_lists_and_signs_out_one_session,
            over_the_limit_the_least_recently_seen_is_signed_out,
            over_the_limit_a_login_is_refused_until_one_signs_out,
            concurrent_logins_at_the_limit_never_exceed_it,
            concurrent_logins_refused_at_the_limit_write_nothing,
            logins_racing_on_two_instances_rotating_the_key_never_exceed_a_refusing_limit,
            a_deleted_roster_signs_the_user_out_and_lists_nobody,
            a_garbled_roster_signs_everyone_out_and_a_login_replaces_it,
            a_session_signed_out_or_ended_is_never_listed,
            renewing_a_bound_session_keeps_it_listed,
            last_seen_is_written_at_refresh_only,
            last_seen_advances_while_two_instances_re_sign_each_others_cookies,
            a_sign_out_everywhere_whose_item_another_key_ended_says_so,
            a_stored_session_bound_without_renewal_is_listed,
            a_listed_session_that_cannot_be_read_fails_the_listing,
            two_renewals_of_one_session_keep_the_winner_listed,
            a_login_that_fails_after_listing_signs_nobody_out,
            logging_in_again_as_the_same_user_takes_no_second_place,
            times_from_the_store_past_any_clock_do_not_panic_the_listing,
            sessions_bound_under_an_old_key_count_and_can_be_signed_out,
            a_sign_out_naming_many_handles_reads_an_old_keys_item_once,
            a_sign_out_of_devices_under_an_old_key_that_fails_says_so,
            a_sign_out_of_this_device_and_another_that_then_fails_says_so,
            a_login_replacing_a_session_bound_under_an_old_key_does_not_count_it,
            a_key_listed_twice_counts_once,
            a_signed_out_session_that_cannot_be_removed_yet_fails_no_request,
            signing_out_the_others_then_logging_in_again_stays_signed_in,
            a_login_replacing_its_own_session_takes_its_place,
            over_the_limit_sessions_under_an_old_key_are_signed_out_too,
            a_session_bound_under_a_dropped_key_is_signed_out,
            two_logins_of_a_session_keeping_its_id_leave_the_winner_signed_in,
            a_login_sent_twice_whose_winner_is_listed_but_not_written_keeps_it,
            a_login_sent_twice_whose_loser_listed_first_signs_nobody_out,
            a_renewing_login_sent_twice_whose_loser_listed_first_signs_nobody_out,
            a_renewing_login_sent_twice_at_the_limit_signs_out_one_session,
            a_purge_and_login_racing_a_renewing_login_of_its_session_counts_it,
            a_login_while_another_device_sends_its_form_twice_signs_out_one_session,
            a_keep_id_login_whose_listing_reply_is_lost_leaves_no_entry,
            a_keep_id_login_whose_session_reply_is_lost_stays_signed_in,
            a_keep_id_login_whose_session_write_did_not_land_leaves_no_entry,
            a_login_failing_to_retire_the_old_id_leaves_no_session_behind,
            a_renew_whose_listing_reply_is_lost_stays_listed,
            a_session_switching_users_keeps_nothing_of_the_other_user,
            a_switch_of_users_that_fails_changes_nothing,
            without_a_limit_a_user_keeps_at_most_64_sessions,
            what_the_other_user_adds_while_a_session_switches_users_stays_out_of_it,
            a_request_of_the_other_user_in_flight_writes_nothing_to_a_session_that_switched,
            an_anonymous_request_in_flight_across_a_change_of_users_writes_nothing,
            a_login_shows_none_of_the_other_users_flash_messages,
            a_switch_racing_the_other_user_keeps_the_new_users_values,
            a_purge_and_login_failing_to_remove_the_old_session_keeps_it_listed,
            a_session_signed_out_while_a_failing_purge_and_login_replaces_it_stays_out,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[actix_web::test]
            async fn $name() {
                $crate::devices::$name($make).await;
            }
        )*
    };
}
pub(crate) use devices_suite;

/// A signing key made of `byte`: tests that rotate keys name each by its byte.
fn key(byte: u8) -> actix_memcache_session::Key {
    actix_memcache_session::Key::try_from(&[byte; 64][..]).unwrap()
}

/// A login from the device `label`: its cookie and the session's id.
async fn login<S: SessionStore + Clone>(
    app: &TestApp<S>,
    user: &str,
    label: &str,
) -> (Cookie<'static>, SessionId) {
    let reply = app.get(&format!("/login-from/{user}/{label}"), None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    (reply.cookie(), app.store.last_created())
}

async fn whoami<S: SessionStore + Clone>(app: &TestApp<S>, cookie: &Cookie<'_>) -> String {
    let reply = app.get("/whoami", Some(cookie)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body
}

/// The listing as `cookie`'s session sees it: `(handle, label, flags)`, oldest first.
async fn devices<S: SessionStore + Clone>(
    app: &TestApp<S>,
    cookie: &Cookie<'_>,
) -> Vec<(String, String, String)> {
    let reply = app.get("/devices", Some(cookie)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply
        .body
        .lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let handle = parts.next().unwrap().to_owned();
            let label = parts.next().unwrap_or_default().to_owned();
            (handle, label, parts.next().unwrap_or_default().to_owned())
        })
        .collect()
}

/// The labels of `user`'s live sessions, as the container lists them.
async fn labels<S: SessionStore + Clone>(app: &TestApp<S>, user: &str) -> Vec<String> {
    let listed = app.sessions.of_user(user).await.unwrap();
    listed
        .into_iter()
        .map(|s| s.label.unwrap_or_default())
        .collect()
}

/// The handle of the session labelled `label` in `user`'s listing.
/// Ada logged in as "a" under key 7, then as "b" on an app signing with key 8 that keeps 7
/// as a fallback: that app, and the two cookies.
async fn rotated_after_a_login<S: SessionStore + Clone>(
    store: S,
) -> (TestApp<S>, Cookie<'static>, Cookie<'static>) {
    let old = TestApp::with(CountingStore::new(store.clone()), key(7), |b| b).await;
    let (a, _) = login(&old, "ada", "a").await;
    let rotated = TestApp::with(CountingStore::new(store), key(8), |b| {
        b.fallback_keys(vec![key(7)])
    })
    .await;
    let (b, _) = login(&rotated, "ada", "b").await;
    (rotated, a, b)
}

async fn handle_of<S: SessionStore + Clone>(
    app: &TestApp<S>,
    user: &str,
    label: &str,
) -> SessionHandle {
    let listed = app.sessions.of_user(user).await.unwrap();
    let found = listed
        .into_iter()
        .find(|s| s.label.as_deref() == Some(label));
    found.expect("listed").handle
}

/// Which of `cookies` are signed in as `user`.
async fn signed_in<S: SessionStore + Clone>(
    app: &TestApp<S>,
    user: &str,
    cookies: &[&Cookie<'_>],
) -> Vec<bool> {
    let mut out = Vec::new();
    for cookie in cookies {
        out.push(whoami(app, cookie).await == user);
    }
    out
}

pub async fn three_devices_are_listed_with_their_labels<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (phone, _) = login(&app, "ada", "phone").await;
    let (laptop, _) = login(&app, "ada", "laptop").await;
    let reply = app.get("/remember/3600/7200", Some(&laptop)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let laptop = reply.cookie();
    let (_tablet, _) = login(&app, "ada", "tablet").await;
    login(&app, "bob", "desktop").await;
    let seen = devices(&app, &laptop).await;
    let names: Vec<&str> = seen.iter().map(|(_, l, _)| l.as_str()).collect();
    assert_eq!(
        names,
        ["phone", "laptop", "tablet"],
        "oldest first: {seen:?}"
    );
    let flags: Vec<&str> = seen.iter().map(|(_, _, f)| f.as_str()).collect();
    assert_eq!(flags, ["", "current remember", ""], "{seen:?}");
    let from_phone = devices(&app, &phone).await;
    assert_eq!(from_phone[0].2, "current");
    assert_eq!(from_phone[0].0, seen[0].0, "one handle per login");
    assert_eq!(labels(&app, "bob").await, ["desktop"]);
    assert!(labels(&app, "carol").await.is_empty());
}

/// A label longer than `MAX_LABEL_BYTES` is cut to fit, never inside a character: 50
/// euro signs (150 bytes, 3 each) keep 42 (126 bytes).
pub async fn a_long_label_is_cut_at_a_character_boundary<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (cookie, _) = login(&app, "ada", &"%E2%82%AC".repeat(50)).await;
    assert_eq!(actix_memcache_session::MAX_LABEL_BYTES, 128);
    assert_eq!(labels(&app, "ada").await, ["€".repeat(42)]);
    assert_eq!(devices(&app, &cookie).await[0].1, "€".repeat(42));
}

/// Ada logged in on her phone and laptop, and bob on his desktop: their cookies.
async fn ada_twice_and_bob<S: SessionStore + Clone>(
    app: &TestApp<S>,
) -> (Cookie<'static>, Cookie<'static>, Cookie<'static>) {
    let (phone, _) = login(app, "ada", "phone").await;
    let (laptop, _) = login(app, "ada", "laptop").await;
    let (desktop, _) = login(app, "bob", "desktop").await;
    (phone, laptop, desktop)
}

/// A request that signs out another device of its user, then logs in as another user and
/// signs out that user's other sessions: both sign-outs happen. (The second took the
/// place of the first: the device stayed signed in, and the answer was 200.)
pub async fn a_device_signed_out_before_a_change_of_users_that_signs_out_the_others_goes<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (phone, laptop, desktop) = ada_twice_and_bob(&app).await;
    let phone_handle = handle_of(&app, "ada", "phone").await;
    let reply = app
        .get(
            &format!("/sign-out-session-then-switch-to/{phone_handle}/bob"),
            Some(&laptop),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        signed_in(&app, "ada", &[&phone]).await,
        [false],
        "the phone was signed out"
    );
    assert_eq!(whoami(&app, &reply.cookie()).await, "bob");
    assert_eq!(
        signed_in(&app, "bob", &[&desktop]).await,
        [false],
        "bob's other session too"
    );
}

/// A request that signs out its user's other sessions, then logs in as another user and
/// names one of that user's devices: a session bound in its request ends nobody else, so
/// the device stays signed in (the first user's others go). (The first user's binding,
/// kept for the sign-out, made the session look signed in as the second, and the device
/// was signed out.)
pub async fn a_session_bound_in_its_request_after_signing_out_the_others_ends_nobody_else<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (phone, laptop, desktop) = ada_twice_and_bob(&app).await;
    let desktop_handle = handle_of(&app, "bob", "desktop").await;
    let reply = app
        .get(
            &format!("/sign-out-others-then-switch-to/bob/then-sign-out/{desktop_handle}"),
            Some(&laptop),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        signed_in(&app, "bob", &[&desktop]).await,
        [true],
        "bob's device stays"
    );
    assert_eq!(
        signed_in(&app, "ada", &[&phone]).await,
        [false],
        "ada's others went"
    );
}

/// A request that signs its user out everywhere, logs in as another and signs that one
/// out everywhere too: both users' other sessions go, the first's first. (Only the second
/// user's sign-out was kept: the first user's other devices stayed signed in, and the
/// answer was 200.)
pub async fn two_users_signed_out_everywhere_in_one_request_are_both_signed_out<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (phone, laptop, desktop) = ada_twice_and_bob(&app).await;
    let reply = app
        .get(
            "/sign-out-everywhere-then-switch-to/bob/and-again",
            Some(&laptop),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        signed_in(&app, "ada", &[&phone, &laptop]).await,
        [false, false],
        "ada everywhere"
    );
    assert_eq!(
        signed_in(&app, "bob", &[&desktop]).await,
        [false],
        "and bob"
    );
    // Three users, each signed out in turn.
    let (phone, laptop, desktop) = ada_twice_and_bob(&app).await;
    let (tablet, _) = login(&app, "carol", "tablet").await;
    let reply = app
        .get(
            "/sign-out-everywhere-then-switch-to/bob,carol/and-again",
            Some(&laptop),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(signed_in(&app, "ada", &[&phone]).await, [false], "ada");
    assert_eq!(signed_in(&app, "bob", &[&desktop]).await, [false], "bob");
    assert_eq!(signed_in(&app, "carol", &[&tablet]).await, [false], "carol");
}

pub async fn one_device_signs_out_another_of_the_same_user_only<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (phone, _) = login(&app, "ada", "phone").await;
    let (laptop, _) = login(&app, "ada", "laptop").await;
    let (bob, _) = login(&app, "bob", "desktop").await;
    let phone_handle = handle_of(&app, "ada", "phone").await;
    // Bob names ada's phone: not his to end.
    let reply = app
        .get(&format!("/sign-out-session/{phone_handle}"), Some(&bob))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        signed_in(&app, "ada", &[&phone, &laptop]).await,
        [true, true]
    );
    let reply = app
        .get(&format!("/sign-out-session/{phone_handle}"), Some(&laptop))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        signed_in(&app, "ada", &[&phone, &laptop]).await,
        [false, true]
    );
    assert_eq!(whoami(&app, &bob).await, "bob");
    assert_eq!(labels(&app, "ada").await, ["laptop"]);
    // Its own handle signs this device out.
    let own = handle_of(&app, "ada", "laptop").await;
    let reply = app
        .get(&format!("/sign-out-session/{own}"), Some(&laptop))
        .await;
    assert_eq!(reply.body, "Purged", "{reply:?}");
    assert_eq!(whoami(&app, &laptop).await, "none");
    assert!(labels(&app, "ada").await.is_empty());
    let reply = app.get("/sign-out-session/not-a-handle", Some(&bob)).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    // A logout that purges, then signs out another device: both happen.
    let (phone, _) = login(&app, "ada", "phone").await;
    let (laptop, _) = login(&app, "ada", "laptop").await;
    let phone_handle = handle_of(&app, "ada", "phone").await;
    let route = format!("/purge-then-sign-out-session/{phone_handle}");
    let reply = app.get(&route, Some(&laptop)).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "Purged"),
        "{reply:?}"
    );
    assert_eq!(reply.cookie().value(), "", "a removal cookie");
    assert_eq!(
        signed_in(&app, "ada", &[&phone, &laptop]).await,
        [false, false]
    );
    // "Sign out the others, and this one too": the others' sign-out took the generation
    // out of this session's data; its own handle still signs it out.
    let (phone, _) = login(&app, "ada", "phone").await;
    let (laptop, _) = login(&app, "ada", "laptop").await;
    let own = handle_of(&app, "ada", "laptop").await;
    let route = format!("/sign-out-others-then-session/{own}");
    let reply = app.get(&route, Some(&laptop)).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "Purged"),
        "{reply:?}"
    );
    assert_eq!(
        signed_in(&app, "ada", &[&phone, &laptop]).await,
        [false, false]
    );
}

pub async fn the_container_lists_and_signs_out_one_session<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (phone, _) = login(&app, "ada", "phone").await;
    let (laptop, _) = login(&app, "ada", "laptop").await;
    let (bob, _) = login(&app, "bob", "desktop").await;
    let handle = handle_of(&app, "ada", "phone").await;
    let sessions = &app.sessions;
    assert!(
        !sessions.sign_out_session("bob", &handle).await.unwrap(),
        "not bob's"
    );
    assert!(sessions.sign_out_session("ada", &handle).await.unwrap());
    assert!(
        !sessions.sign_out_session("ada", &handle).await.unwrap(),
        "once"
    );
    assert_eq!(
        signed_in(&app, "ada", &[&phone, &laptop]).await,
        [false, true]
    );
    assert_eq!(whoami(&app, &bob).await, "bob");
    assert_eq!(labels(&app, "ada").await, ["laptop"]);
}

pub async fn over_the_limit_the_least_recently_seen_is_signed_out<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.max_sessions_per_user(2, OverLimit::EndLeastRecentlySeen)
            .refresh_fraction(0.0)
    })
    .await;
    let (a, _) = login(&app, "ada", "a").await;
    let (b, _) = login(&app, "ada", "b").await;
    // Seen is kept in whole seconds: `a` is used a second later, `b` is not.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = app.get("/whoami", Some(&a)).await;
    let a = reply.cookie();
    let (c, _) = login(&app, "ada", "c").await;
    assert_eq!(
        signed_in(&app, "ada", &[&a, &b, &c]).await,
        [true, false, true]
    );
    assert_eq!(labels(&app, "ada").await, ["a", "c"]);
}

/// With no limit set, a user keeps at most 64 sessions: a 65th login signs out the least
/// recently seen, as `EndLeastRecentlySeen` does.
pub async fn without_a_limit_a_user_keeps_at_most_64_sessions<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (first, _) = login(&app, "ada", "first").await;
    // Seen is kept in whole seconds: the first is seen before every other.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut others = Vec::new();
    for n in 0..64 {
        others.push(login(&app, "ada", &n.to_string()).await.0);
    }
    let listed = labels(&app, "ada").await;
    assert_eq!(listed.len(), 64, "{listed:?}");
    assert!(!listed.contains(&"first".to_owned()), "{listed:?}");
    assert_eq!(whoami(&app, &first).await, "none");
    for cookie in [&others[0], &others[63]] {
        assert_eq!(whoami(&app, cookie).await, "ada");
    }
}

pub async fn over_the_limit_a_login_is_refused_until_one_signs_out<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.max_sessions_per_user(2, OverLimit::RefuseLogin)
    })
    .await;
    let (a, _) = login(&app, "ada", "a").await;
    let (b, _) = login(&app, "ada", "b").await;
    app.store.reset();
    let refused = app.get("/login-from/ada/c", None).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(
        refused.body.contains("sign out of one first"),
        "{refused:?}"
    );
    assert!(refused.cookie.is_none(), "{refused:?}");
    let calls = app.store.calls();
    assert_eq!(calls.writes(), 0, "refused before writing: {calls:?}");
    assert_eq!(signed_in(&app, "ada", &[&a, &b]).await, [true, true]);
    login(&app, "bob", "b").await;
    // A plain logout frees its place at once.
    assert_eq!(app.get("/purge", Some(&a)).await.status, 200);
    let (c, _) = login(&app, "ada", "c").await;
    assert_eq!(signed_in(&app, "ada", &[&b, &c]).await, [true, true]);
    assert_eq!(labels(&app, "ada").await, ["b", "c"]);
}

pub async fn concurrent_logins_at_the_limit_never_exceed_it<S: SessionStore + Clone>(store: S) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.max_sessions_per_user(2, OverLimit::EndLeastRecentlySeen)
    })
    .await;
    let (a, _) = login(&app, "ada", "a").await;
    let (b, _) = login(&app, "ada", "b").await;
    // `c` has read the roster (a, b) and is about to write it; `d` logs in meanwhile.
    app.store.hold_next_write_of(app.generation_item("ada"));
    let (c, d) = join(login(&app, "ada", "c"), async {
        app.store.when_held().await;
        let d = login(&app, "ada", "d").await;
        app.store.release();
        d
    })
    .await;
    let all = [&a, &b, &c.0, &d.0];
    assert_eq!(
        signed_in(&app, "ada", &all).await,
        [false, false, true, true],
        "d ended a; c read the roster again and ended b, not d"
    );
    let mut listed = labels(&app, "ada").await;
    listed.sort();
    assert_eq!(listed, ["c", "d"]);
}

/// A rolling deploy that rotates the key: instance A signs with key 1 (key 2 a fallback),
/// B the other way round, so their logins list themselves in two items. A login on A that
/// counted both is held before it lists itself; one on B lists itself meanwhile. Each
/// counted the other's item before the other wrote it: without counting again after
/// listing itself, A's went in too, three sessions at a limit of 2.
pub async fn logins_racing_on_two_instances_rotating_the_key_never_exceed_a_refusing_limit<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let instance = |current: u8, old: u8| {
        TestApp::with(CountingStore::new(store.clone()), key(current), move |b| {
            b.max_sessions_per_user(2, OverLimit::RefuseLogin)
                .fallback_keys(vec![key(old)])
        })
    };
    let (a_app, b_app) = (instance(1, 2).await, instance(2, 1).await);
    let (a, _) = login(&a_app, "ada", "a").await;
    a_app
        .store
        .hold_next_write_of(crate::support::generation_item(&[1; 64], "ada"));
    let (refused, d) = join(a_app.get("/login-from/ada/c", None), async {
        a_app.store.when_held().await;
        let d = login(&b_app, "ada", "d").await;
        a_app.store.release();
        d
    })
    .await;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(refused.cookie.is_none());
    let withdrawn = a_app.store.last_created();
    let stored = a_app.store.inner.load(&withdrawn).await.unwrap();
    assert!(stored.is_none(), "the refused login's session is gone");
    assert_eq!(signed_in(&a_app, "ada", &[&a, &d.0]).await, [true, true]);
    let mut listed = labels(&b_app, "ada").await;
    listed.sort();
    assert_eq!(listed, ["a", "d"], "the refused login's entry is gone");
}

pub async fn concurrent_logins_refused_at_the_limit_write_nothing<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.max_sessions_per_user(2, OverLimit::RefuseLogin)
    })
    .await;
    let (a, _) = login(&app, "ada", "a").await;
    app.store.hold_next_write_of(app.generation_item("ada"));
    let (refused, d) = join(app.get("/login-from/ada/c", None), async {
        app.store.when_held().await;
        let d = login(&app, "ada", "d").await;
        app.store.release();
        d
    })
    .await;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(refused.cookie.is_none());
    assert_eq!(signed_in(&app, "ada", &[&a, &d.0]).await, [true, true]);
    assert_eq!(labels(&app, "ada").await, ["a", "d"]);
}

pub async fn a_deleted_roster_signs_the_user_out_and_lists_nobody<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (a, _) = login(&app, "ada", "a").await;
    let (b, _) = login(&app, "ada", "b").await;
    let (bob, _) = login(&app, "bob", "b").await;
    app.store
        .inner
        .delete(&app.generation_item("ada"))
        .await
        .unwrap();
    assert!(labels(&app, "ada").await.is_empty());
    assert_eq!(signed_in(&app, "ada", &[&a, &b]).await, [false, false]);
    assert_eq!(whoami(&app, &bob).await, "bob");
    let (c, _) = login(&app, "ada", "c").await;
    assert_eq!(whoami(&app, &c).await, "ada");
    assert_eq!(labels(&app, "ada").await, ["c"]);
}

pub async fn a_garbled_roster_signs_everyone_out_and_a_login_replaces_it<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (a, _) = login(&app, "ada", "a").await;
    let item = app.generation_item("ada");
    let stored = app.store.inner.load(&item).await.unwrap().unwrap();
    // The roster as written, with one line cut short.
    let mut garbled = stored.data.clone();
    garbled.truncate(garbled.len() - 3);
    garbled.extend_from_slice(b" x");
    let ttl = Duration::from_secs(600);
    let written = app.store.inner.update(&item, &garbled, stored.version, ttl);
    assert_eq!(
        written.await.unwrap(),
        actix_memcache_session::Update::Updated
    );
    assert_eq!(whoami(&app, &a).await, "none");
    assert!(labels(&app, "ada").await.is_empty());
    let (b, _) = login(&app, "ada", "b").await;
    assert_eq!(whoami(&app, &b).await, "ada");
    assert_eq!(labels(&app, "ada").await, ["b"]);
}

pub async fn a_session_signed_out_or_ended_is_never_listed<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (a, _) = login(&app, "ada", "a").await;
    let (_, b_id) = login(&app, "ada", "b").await;
    login(&app, "ada", "c").await;
    // Logged out, and ended behind the crate's back (as expiry would): neither listed.
    assert_eq!(app.get("/purge", Some(&a)).await.status, 200);
    app.store.inner.delete(&b_id).await.unwrap();
    assert_eq!(labels(&app, "ada").await, ["c"]);
    // Signed out everywhere by an admin, then a new login: only that one.
    app.sessions.sign_out_everywhere("ada").await.unwrap();
    assert!(labels(&app, "ada").await.is_empty());
    let (d, _) = login(&app, "ada", "d").await;
    assert_eq!(labels(&app, "ada").await, ["d"]);
    // Signed out of the others: only the one that stays.
    let (e, _) = login(&app, "ada", "e").await;
    assert_eq!(app.get("/sign-out-others", Some(&e)).await.status, 200);
    assert_eq!(labels(&app, "ada").await, ["e"]);
    assert_eq!(whoami(&app, &d).await, "none");
}

pub async fn renewing_a_bound_session_keeps_it_listed<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (a, _) = login(&app, "ada", "a").await;
    let before = handle_of(&app, "ada", "a").await;
    let reply = app.get("/renew", Some(&a)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let renewed = reply.cookie();
    assert_eq!(whoami(&app, &renewed).await, "ada");
    assert_eq!(whoami(&app, &a).await, "none", "the old id is gone");
    assert_eq!(
        handle_of(&app, "ada", "a").await,
        before,
        "same login, same handle"
    );
    assert_eq!(labels(&app, "ada").await, ["a"]);
}

pub async fn last_seen_is_written_at_refresh_only<S: SessionStore + Clone>(store: S) {
    let app = TestApp::configured(CountingStore::new(store), |b| b.refresh_fraction(0.0)).await;
    let (a, _) = login(&app, "ada", "a").await;
    let seen = |app: &TestApp<S>| {
        let sessions = app.sessions.clone();
        async move { sessions.of_user("ada").await.unwrap()[0].last_seen }
    };
    let first = seen(&app).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.store.reset();
    let reply = app.get("/whoami", Some(&a)).await;
    assert_eq!(reply.body, "ada");
    let calls = app.store.calls();
    assert_eq!(
        (calls.updates, calls.touches),
        (1, 0),
        "one write: {calls:?}"
    );
    assert!(seen(&app).await > first);
    // Refreshed only a quarter of the idle timeout after the cookie: nothing written.
    let app = TestApp::new(CountingStore::new(app.store.inner.clone())).await;
    let (b, _) = login(&app, "ada", "b").await;
    app.store.reset();
    assert_eq!(whoami(&app, &b).await, "ada");
    assert_eq!(app.store.calls().writes(), 0);
}

/// The second deploy of a key rotation: instance A signs with key 1 (key 2 a fallback), B
/// the other way round, and a device's requests alternate between them. Each re-signs the
/// cookie, restarting its age, so the cookie alone is never due for refresh: "last seen"
/// is written once its own stamp is as old as a cookie due for refresh (5 s here).
pub async fn last_seen_advances_while_two_instances_re_sign_each_others_cookies<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let instance = |current: u8, old: u8| {
        TestApp::with(CountingStore::new(store.clone()), key(current), move |b| {
            b.idle_timeout(Duration::from_secs(20))
                .fallback_keys(vec![key(old)])
        })
    };
    let (a_app, b_app) = (instance(1, 2).await, instance(2, 1).await);
    let seen = || async { a_app.sessions.of_user("ada").await.unwrap()[0].last_seen };
    let (cookie, _) = login(&a_app, "ada", "a").await;
    let first = seen().await;
    // Each request lands on the instance that did not sign its cookie, within 5 s of it.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let reply = b_app.get("/whoami", Some(&cookie)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ada"));
    let cookie = reply.cookie();
    assert_eq!(seen().await, first, "seen 2 s ago: not written yet");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    a_app.store.reset();
    let reply = a_app.get("/whoami", Some(&cookie)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ada"));
    let calls = a_app.store.calls();
    assert_eq!(
        (calls.updates, calls.touches),
        (1, 0),
        "the stamp in place of the touch: {calls:?}"
    );
    assert!(reply.cookie.is_some(), "re-signed");
    assert!(seen().await > first, "seen 5 s after the login");
}

/// Two instances with two current keys (the second deploy of a rotation): a device bound
/// under key 1 signs out everywhere while one bound under key 2, a thief's, signs out the
/// others, which ends key 1's item. The first finds its own item gone, and the other key's
/// item standing: the thief may be signed in, so it must not answer 200 (it answers 409,
/// and the thief is still signed in). Its own item gone for good (evicted) says the same.
pub async fn a_sign_out_everywhere_whose_item_another_key_ended_says_so<S: SessionStore + Clone>(
    store: S,
) {
    let instance = |current: u8, old: u8| {
        TestApp::with(CountingStore::new(store.clone()), key(current), move |b| {
            b.fallback_keys(vec![key(old)])
        })
    };
    let (a_app, b_app) = (instance(1, 2).await, instance(2, 1).await);
    let (own, _) = login(&a_app, "ada", "own").await;
    let (thief, _) = login(&b_app, "ada", "thief").await;
    let (reply, out) = a_app
        .interleave_with(
            "/gated/sign-out-everywhere",
            &own,
            b_app.get("/sign-out-others", Some(&thief)),
        )
        .await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(reply.cookie.is_none(), "nothing written: {reply:?}");
    assert_eq!(whoami(&b_app, &thief).await, "ada", "not signed out");
    let (own, _) = login(&a_app, "ada", "again").await;
    let item = crate::support::generation_item(&[1; 64], "ada");
    let (reply, ()) = a_app
        .interleave_with("/gated/sign-out-everywhere", &own, async {
            a_app.store.inner.delete(&item).await.unwrap();
        })
        .await;
    assert_eq!(reply.status, 409, "evicted: {reply:?}");
    assert_eq!(whoami(&b_app, &thief).await, "ada");
}

pub async fn a_stored_session_bound_without_renewal_is_listed<S: SessionStore + Clone>(store: S) {
    let app = TestApp::configured(CountingStore::new(store), |b| b.renew_on_bind(false)).await;
    let reply = app.get("/set/p/k/1", None).await;
    let cookie = reply.cookie();
    let id = app.get("/id", Some(&cookie)).await.body;
    let reply = app.get("/login-from/ada/kept", Some(&cookie)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let cookie = reply.cookie();
    assert_eq!(app.get("/id", Some(&cookie)).await.body, id, "not renewed");
    assert_eq!(whoami(&app, &cookie).await, "ada");
    assert_eq!(labels(&app, "ada").await, ["kept"]);
    // Bound through the container: listed too.
    let reply = app.get("/set/p/k/2", None).await;
    let other = reply.cookie();
    let open = app.sessions.open(&app.store.last_created()).await.unwrap();
    let open = open.expect("live");
    open.set_label("admin").unwrap();
    open.bind_user("ada").unwrap();
    open.commit().await.unwrap();
    assert_eq!(whoami(&app, &other).await, "ada");
    assert_eq!(labels(&app, "ada").await, ["kept", "admin"]);
}

pub async fn a_listed_session_that_cannot_be_read_fails_the_listing<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (_, a_id) = login(&app, "ada", "a").await;
    let (b, _) = login(&app, "ada", "b").await;
    app.store.fail_loads_of(Some(a_id));
    let listed = app.sessions.of_user("ada").await;
    assert!(
        matches!(listed, Err(actix_memcache_session::SessionError::Store(_))),
        "an incomplete list is an error: {listed:?}"
    );
    let reply = app.get("/devices", Some(&b)).await;
    assert_eq!(reply.status, 503, "{reply:?}");
    app.store.fail_loads_of(None);
    assert_eq!(labels(&app, "ada").await, ["a", "b"]);
}

/// Two requests of one bound session renew it at once: the first to remove the old id wins,
/// and the loser's new id must not take the winner's place in the roster.
pub async fn two_renewals_of_one_session_keep_the_winner_listed<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (a, _) = login(&app, "ada", "a").await;
    let (loser, winner) = app.interleave("/gated/renew", "/renew", &a).await;
    assert_eq!(winner.status, 200, "{winner:?}");
    assert_eq!(loser.status, 409, "{loser:?}");
    let winner = winner.cookie();
    assert_eq!(labels(&app, "ada").await, ["a"]);
    assert_eq!(
        whoami(&app, &winner).await,
        "ada",
        "still signed in after the listing"
    );
}

/// A login whose commit fails after its entry was listed (its session was purged
/// meanwhile, so the renew finds the old id gone) signs no other session out, and leaves
/// no entry of its own.
pub async fn a_login_that_fails_after_listing_signs_nobody_out<S: SessionStore + Clone>(store: S) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.max_sessions_per_user(1, OverLimit::EndLeastRecentlySeen)
    })
    .await;
    let (a, _) = login(&app, "ada", "a").await;
    let reply = app.get("/set/p/k/1", None).await;
    let anonymous = reply.cookie();
    let (failed, purged) = app
        .interleave("/gated/login-from/ada/b", "/purge", &anonymous)
        .await;
    assert_eq!(purged.status, 200, "{purged:?}");
    assert_eq!(failed.status, 409, "{failed:?}");
    assert_eq!(
        whoami(&app, &a).await,
        "ada",
        "not signed out by a failed login"
    );
    assert_eq!(labels(&app, "ada").await, ["a"]);
    let (b, _) = login(&app, "ada", "b").await;
    assert_eq!(signed_in(&app, "ada", &[&a, &b]).await, [false, true]);
}

/// Logging in again as the user a session is signed in as changes nothing: it does not
/// count twice against the limit.
pub async fn logging_in_again_as_the_same_user_takes_no_second_place<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.max_sessions_per_user(1, OverLimit::RefuseLogin)
    })
    .await;
    let (a, _) = login(&app, "ada", "a").await;
    let before = handle_of(&app, "ada", "a").await;
    let again = app.get("/login-from/ada/a", Some(&a)).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(whoami(&app, &a).await, "ada");
    assert_eq!(handle_of(&app, "ada", "a").await, before);
    assert_eq!(labels(&app, "ada").await, ["a"]);
}

/// A listed session whose stored times lie past any clock (a foreign writer): never a
/// panic. Last seen in the future, it is listed as seen now; created in the future, it is
/// over (past its absolute timeout, as its own request would find it), and not listed.
pub async fn times_from_the_store_past_any_clock_do_not_panic_the_listing<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (_, id) = login(&app, "ada", "a").await;
    let rewrite = |field: fn(&mut serde_json::Value) -> &mut serde_json::Value| {
        let (app, id) = (&app, &id);
        async move {
            let stored = app.store.inner.load(id).await.unwrap().unwrap();
            let mut record: serde_json::Value = serde_json::from_slice(&stored.data).unwrap();
            *field(&mut record) = u64::MAX.into();
            let bytes = serde_json::to_vec(&record).unwrap();
            let ttl = Duration::from_secs(600);
            let written = app.store.inner.update(id, &bytes, stored.version, ttl);
            assert_eq!(
                written.await.unwrap(),
                actix_memcache_session::Update::Updated
            );
        }
    };
    rewrite(|r| &mut r["packages"]["actix-memcache-session.user"]["seen"]).await;
    let listed = app.sessions.of_user("ada").await.unwrap();
    assert_eq!(listed.len(), 1);
    let now = std::time::SystemTime::now();
    assert!(listed[0].created <= now && listed[0].last_seen <= now);
    rewrite(|r| &mut r["created"]).await;
    let listed = app.sessions.of_user("ada").await.unwrap();
    assert!(listed.is_empty(), "over: {listed:?}");
}

/// Sessions bound under a key now kept as a fallback are listed in that key's item: they
/// count against the limit, and another device can sign them out.
pub async fn sessions_bound_under_an_old_key_count_and_can_be_signed_out<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let old = TestApp::with(CountingStore::new(store.clone()), key(7), |b| b).await;
    let (a, _) = login(&old, "ada", "a").await;
    let refusing = TestApp::with(CountingStore::new(store.clone()), key(8), |b| {
        b.fallback_keys(vec![key(7)])
            .max_sessions_per_user(1, OverLimit::RefuseLogin)
    })
    .await;
    let refused = refusing.get("/login-from/ada/b", None).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    let rotated = TestApp::with(CountingStore::new(store), key(8), |b| {
        b.fallback_keys(vec![key(7)])
    })
    .await;
    assert_eq!(
        whoami(&rotated, &a).await,
        "ada",
        "re-signed, still signed in"
    );
    let (b, _) = login(&rotated, "ada", "b").await;
    let mut listed = labels(&rotated, "ada").await;
    listed.sort();
    assert_eq!(listed, ["a", "b"]);
    let handle = handle_of(&rotated, "ada", "a").await;
    let reply = rotated
        .get(&format!("/sign-out-session/{handle}"), Some(&b))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(signed_in(&rotated, "ada", &[&a, &b]).await, [false, true]);
    assert_eq!(labels(&rotated, "ada").await, ["b"]);
}

/// A sign-out naming many handles edits an old key's item once, not once for each handle
/// (an app passing on a list a client sent would otherwise make one request cost a round
/// trip per handle per key), and still signs out the one listed there.
pub async fn a_sign_out_naming_many_handles_reads_an_old_keys_item_once<S: SessionStore + Clone>(
    store: S,
) {
    let (rotated, a, b) = rotated_after_a_login(store).await;
    let handle = handle_of(&rotated, "ada", "a").await;
    rotated.store.reset();
    let reply = rotated
        .get(&format!("/sign-out-many/50/{handle}"), Some(&b))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let calls = rotated.store.calls();
    assert!(
        calls.loads <= 6 && calls.updates <= 4,
        "50 handles cost {calls:?}"
    );
    assert_eq!(signed_in(&rotated, "ada", &[&a, &b]).await, [false, true]);
}

/// A sign-out of another device and of this one, whose commit then fails: the other is
/// signed out, this one is not (it goes only with the rest of the commit), so the answer is
/// the failure, not "the sign-out happened".
pub async fn a_sign_out_of_this_device_and_another_that_then_fails_says_so<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| b.max_size(400)).await;
    let (laptop, _) = login(&app, "ada", "laptop").await;
    let (phone, _) = login(&app, "ada", "phone").await;
    let handle = handle_of(&app, "ada", "phone").await;
    let path = format!("/sign-out-self-and-then-big/{handle}/1000");
    let reply = app.get(&path, Some(&laptop)).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(
        !reply.body.starts_with("the sign-out happened"),
        "{}",
        reply.body
    );
    assert_eq!(
        signed_in(&app, "ada", &[&laptop, &phone]).await,
        [true, false]
    );
}

/// Two devices signed out in one request, one listed under the current key, one under an
/// old key whose item fails: the answer is that failure, not "the sign-out happened" (the
/// old key's device is still signed in), and trying again finishes it.
pub async fn a_sign_out_of_devices_under_an_old_key_that_fails_says_so<S: SessionStore + Clone>(
    store: S,
) {
    let (rotated, a, b) = rotated_after_a_login(store).await;
    let (c, _) = login(&rotated, "ada", "c").await;
    let (ha, hc) = (
        handle_of(&rotated, "ada", "a").await,
        handle_of(&rotated, "ada", "c").await,
    );
    let old_item = crate::support::generation_item(&[7; 64], "ada");
    rotated.store.fail_loads_of(Some(old_item));
    let path = format!("/sign-out-two/{hc}/{ha}");
    let reply = rotated.get(&path, Some(&b)).await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(
        !reply.body.starts_with("the sign-out happened"),
        "{}",
        reply.body
    );
    rotated.store.fail_loads_of(None);
    assert_eq!(
        signed_in(&rotated, "ada", &[&a, &b, &c]).await,
        [true, true, false]
    );
    let again = rotated.get(&path, Some(&b)).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(
        signed_in(&rotated, "ada", &[&a, &b, &c]).await,
        [false, true, false]
    );
}

/// A purge-then-login from a session bound under an old key (a fallback now) replaces it:
/// with a limit of one that refuses, the login is let in, as it is under one key.
pub async fn a_login_replacing_a_session_bound_under_an_old_key_does_not_count_it<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let old = TestApp::with(CountingStore::new(store.clone()), key(7), |b| b).await;
    let (a, _) = login(&old, "ada", "a").await;
    let rotated = TestApp::with(CountingStore::new(store), key(8), |b| {
        b.fallback_keys(vec![key(7)])
            .max_sessions_per_user(1, OverLimit::RefuseLogin)
    })
    .await;
    let replaced = rotated.get("/purge-then-bind/ada", Some(&a)).await;
    assert_eq!(replaced.status, 200, "{replaced:?}");
    assert_eq!(whoami(&rotated, &replaced.cookie()).await, "ada");
    assert_eq!(whoami(&rotated, &a).await, "none");
    assert_eq!(rotated.sessions.of_user("ada").await.unwrap().len(), 1);
    let refused = rotated.get("/login-from/ada/b", None).await;
    assert_eq!(refused.status, 403, "{refused:?}");
}

/// Fallback keys listed twice, or with the current key among them ("every key that
/// verifies"), count each key once: a session bound under the old key counts once against
/// the limit, and each session is listed once.
pub async fn a_key_listed_twice_counts_once<S: SessionStore + Clone>(store: S) {
    let old = TestApp::with(CountingStore::new(store.clone()), key(7), |b| b).await;
    login(&old, "ada", "a").await;
    let app = TestApp::with(CountingStore::new(store), key(8), |b| {
        b.fallback_keys(vec![key(8), key(7), key(7)])
            .max_sessions_per_user(2, OverLimit::RefuseLogin)
    })
    .await;
    login(&app, "ada", "b").await;
    let mut listed = labels(&app, "ada").await;
    listed.sort();
    assert_eq!(listed, ["a", "b"]);
}

/// A request naming a session signed out since, whose removal then fails (its server
/// down): only tidying, so the answer stands, a read's as a login's, and the session,
/// still stored, reads as signed out; the next request naming it removes it. (Both
/// answered 503, and the login's new session was discarded.)
pub async fn a_signed_out_session_that_cannot_be_removed_yet_fails_no_request<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (a, a_id) = login(&app, "ada", "a").await;
    app.sessions.sign_out_everywhere("ada").await.unwrap();
    app.store.fail_deletes_of(Some(a_id.clone()));
    let read = app.get("/get/p/k", Some(&a)).await;
    assert_eq!(read.status, 200, "{read:?}");
    assert!(read.cookie.is_none(), "kept: {read:?}");
    let login = app.get("/login-from/ada/b", Some(&a)).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(whoami(&app, &login.cookie()).await, "ada");
    assert_eq!(labels(&app, "ada").await, ["b"]);
    assert!(
        app.store.inner.load(&a_id).await.unwrap().is_some(),
        "still stored"
    );
    assert_eq!(whoami(&app, &a).await, "none", "and signed out");
    app.store.fail_deletes_of(None);
    let read = app.get("/get/p/k", Some(&a)).await;
    assert_eq!(read.status, 200, "{read:?}");
    assert!(
        app.store.inner.load(&a_id).await.unwrap().is_none(),
        "removed"
    );
}

/// `path`, requested with `cookie`, while removing the session `id` fails (its server
/// down): 503, and the new session the login stored is discarded.
async fn fails_removing<S: SessionStore + Clone>(
    app: &TestApp<S>,
    path: &str,
    (cookie, id): (&Cookie<'_>, SessionId),
) {
    app.store.fail_deletes_of(Some(id));
    let failed = app.get(path, Some(cookie)).await;
    assert_eq!(failed.status, 503, "{failed:?}");
    app.store.fail_deletes_of(None);
    let created = app.store.last_created();
    assert!(
        app.store.inner.load(&created).await.unwrap().is_none(),
        "discarded"
    );
}

/// A purge and a login in one request whose removal of the purged session fails (its
/// server down): the request fails, and the purged session, still stored, stays signed in
/// and listed; the login's new session is neither listed nor kept.
pub async fn a_purge_and_login_failing_to_remove_the_old_session_keeps_it_listed<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (a, a_id) = login(&app, "ada", "a").await;
    fails_removing(&app, "/purge-then-bind/ada", (&a, a_id)).await;
    assert_eq!(labels(&app, "ada").await, ["a"]);
    assert_eq!(whoami(&app, &a).await, "ada");
}

/// A purge and a login in one request replacing a listed session, which an admin signs
/// out while the request runs (between its listing and its removal of the old session,
/// which then fails): the sign-out finds the session listed, ends it, and it stays ended.
pub async fn a_session_signed_out_while_a_failing_purge_and_login_replaces_it_stays_out<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (a, a_id) = login(&app, "ada", "a").await;
    let handle = handle_of(&app, "ada", "a").await;
    app.store.hold_next_write_of(a_id.clone());
    let (failed, ()) = join(app.get("/purge-then-bind/ada", Some(&a)), async {
        app.store.when_held().await;
        let ended = app.sessions.sign_out_session("ada", &handle).await;
        assert!(ended.unwrap(), "listed while the login runs");
        app.store.fail_deletes_of(Some(a_id));
        app.store.release();
    })
    .await;
    assert_eq!(failed.status, 503, "{failed:?}");
    app.store.fail_deletes_of(None);
    assert_eq!(whoami(&app, &a).await, "none");
    assert!(labels(&app, "ada").await.is_empty());
}

/// Signing out the other sessions and logging in again as the same user in one request
/// keeps this session signed in.
pub async fn signing_out_the_others_then_logging_in_again_stays_signed_in<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (a, _) = login(&app, "ada", "a").await;
    let (b, _) = login(&app, "ada", "b").await;
    let reply = app.get("/sign-out-others-then-bind/ada", Some(&a)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let a = reply.cookie.unwrap_or(a);
    assert_eq!(signed_in(&app, "ada", &[&a, &b]).await, [true, false]);
    assert_eq!(labels(&app, "ada").await, ["a"]);
}

/// A login that purges the session it replaces (log out, log in, one request) takes that
/// session's place under the limit, rather than counting it.
pub async fn a_login_replacing_its_own_session_takes_its_place<S: SessionStore + Clone>(store: S) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.max_sessions_per_user(1, OverLimit::RefuseLogin)
    })
    .await;
    let (a, _) = login(&app, "ada", "a").await;
    let reply = app.get("/purge-then-bind/ada", Some(&a)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(whoami(&app, &reply.cookie()).await, "ada");
    assert_eq!(whoami(&app, &a).await, "none");
    assert_eq!(app.sessions.of_user("ada").await.unwrap().len(), 1);
}

/// Over the limit, the least recently seen session goes even when it is listed under a key
/// now kept as a fallback.
pub async fn over_the_limit_sessions_under_an_old_key_are_signed_out_too<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let old = TestApp::with(CountingStore::new(store.clone()), key(5), |b| b).await;
    let (a, _) = login(&old, "ada", "a").await;
    let (b, _) = login(&old, "ada", "b").await;
    let rotated = TestApp::with(CountingStore::new(store), key(6), |b| {
        b.fallback_keys(vec![key(5)])
            .max_sessions_per_user(2, OverLimit::EndLeastRecentlySeen)
    })
    .await;
    let (c, _) = login(&rotated, "ada", "c").await;
    assert_eq!(
        signed_in(&rotated, "ada", &[&a, &b, &c]).await,
        [false, true, true]
    );
    let mut listed = labels(&rotated, "ada").await;
    listed.sort();
    assert_eq!(listed, ["b", "c"]);
}

/// A session bound under a key later dropped from `fallback_keys` is signed out, even when
/// its cookie was re-signed under the current key meanwhile: no sign-out reaches its user
/// item any more (a sign-out ends the items of the current and fallback keys only), so
/// letting it stay signed in would leave a session that "sign out everywhere" misses.
pub async fn a_session_bound_under_a_dropped_key_is_signed_out<S: SessionStore + Clone>(store: S) {
    let old = TestApp::with(CountingStore::new(store.clone()), key(3), |b| b).await;
    let (a, _) = login(&old, "ada", "a").await;
    let rotated = TestApp::with(CountingStore::new(store.clone()), key(4), |b| {
        b.fallback_keys(vec![key(3)])
    })
    .await;
    let reply = rotated.get("/whoami", Some(&a)).await;
    assert_eq!(reply.body, "ada", "{reply:?}");
    let resigned = reply.cookie();
    let dropped = TestApp::with(CountingStore::new(store), key(4), |b| b).await;
    let reply = dropped.get("/whoami", Some(&resigned)).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "none"),
        "{reply:?}"
    );
    assert!(
        reply.cookie.is_some_and(|c| c.value().is_empty()),
        "a removal cookie"
    );
    dropped.sessions.sign_out_everywhere("ada").await.unwrap();
    assert_eq!(whoami(&dropped, &resigned).await, "none");
    assert!(labels(&dropped, "ada").await.is_empty());
}

/// A session holding `p/k` = 1, in an app whose logins keep the session's id (or renew
/// it, with `renew`) and whose users may have two sessions, with "ada" signed in elsewhere so that her item exists:
/// each login's listing is a write of it, which can be held. Of two logins of the session,
/// the loser's entry does not count against the limit: the winner signs nobody out.
async fn a_session_to_log_in_twice<S: SessionStore + Clone>(
    store: S,
    renew: bool,
) -> (TestApp<S>, Cookie<'static>) {
    let store = CountingStore::new(store);
    let app = if renew {
        TestApp::configured(store, |b| {
            b.max_sessions_per_user(2, OverLimit::EndLeastRecentlySeen)
        })
        .await
    } else {
        TestApp::configured(store, |b| {
            b.renew_on_bind(false)
                .max_sessions_per_user(2, OverLimit::EndLeastRecentlySeen)
        })
        .await
    };
    login(&app, "ada", "other").await;
    let cookie = app.get("/set/p/k/1", None).await.cookie();
    (app, cookie)
}

/// Two logins as "ada" of the session `cookie` names: the second held at its write of
/// `held` while the first runs to its end, then let go. Their replies, first and second.
async fn first_while_second_held<S: SessionStore + Clone>(
    app: &TestApp<S>,
    cookie: &Cookie<'static>,
    held: SessionId,
) -> (Reply, Reply) {
    app.store.hold_next_write_of(held);
    let (second, first) = join(app.get("/login-from/ada/second", Some(cookie)), async {
        app.store.when_held().await;
        let first = app.get("/login-from/ada/first", Some(cookie)).await;
        app.store.release();
        first
    })
    .await;
    (first, second)
}

/// The first of two logins as "ada" of the session `cookie` names won: it answered 200 and
/// stays signed in, listed, and with its data; the second lost (409) and took only its
/// own line away.
async fn the_first_login_won<S: SessionStore + Clone>(
    app: &TestApp<S>,
    (first, second): (Reply, Reply),
    cookie: Cookie<'static>,
) {
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(second.status, 409, "{second:?}");
    let cookie = first.cookie.unwrap_or(cookie);
    assert_eq!(whoami(app, &cookie).await, "ada");
    assert_eq!(app.get("/get/p/k", Some(&cookie)).await.body, "1");
    let mut listed = labels(app, "ada").await;
    listed.sort();
    assert_eq!(listed, ["first", "other"]);
}

/// A login form sent twice, by a session that keeps its id at login: the second login read
/// the session before the first wrote it, and lists itself after the first has finished.
pub async fn two_logins_of_a_session_keeping_its_id_leave_the_winner_signed_in<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let (app, cookie) = a_session_to_log_in_twice(store, false).await;
    let replies = first_while_second_held(&app, &cookie, app.generation_item("ada")).await;
    the_first_login_won(&app, replies, cookie).await;
}

/// A login form sent twice, by a session that keeps its id at login, the other way round:
/// the second login finds the first's entry listed while the first has not written the
/// session yet (its entry is pending). The entry stays.
pub async fn a_login_sent_twice_whose_winner_is_listed_but_not_written_keeps_it<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let (app, cookie) = a_session_to_log_in_twice(store, false).await;
    let session = app.store.last_created();
    // The second's listing waits; the first lists itself and is held at its session write.
    app.store.hold_next_write_of(app.generation_item("ada"));
    let (second, first) = join(app.get("/login-from/ada/second", Some(&cookie)), async {
        app.store.when_held().await;
        app.store.hold_next_write_of(session.clone());
        let first = app.get("/login-from/ada/first", Some(&cookie));
        let (first, ()) = join(first, async {
            app.store.when_held().await;
            // The second lists itself again, reading the first's pending entry, and is
            // held at its own session write; then the first writes the session.
            app.store.hold_next_write_of(session.clone());
            app.store.release();
            app.store.when_held().await;
            app.store.release();
        })
        .await;
        app.store.release();
        first
    })
    .await;
    the_first_login_won(&app, (first, second), cookie).await;
}

/// A login form sent twice, by a session that keeps its id at login, at the user's limit:
/// the second login lists itself and waits to write the session while the first lists
/// itself beside it, writes the session and wins. The loser's entry does not count: the
/// winner signs out none of the user's other sessions.
pub async fn a_login_sent_twice_whose_loser_listed_first_signs_nobody_out<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let (app, cookie) = a_session_to_log_in_twice(store, false).await;
    let replies = first_while_second_held(&app, &cookie, app.store.last_created()).await;
    the_first_login_won(&app, replies, cookie).await;
}

/// A login form sent twice, by a session that gets a new id at login (the default), at the
/// user's limit: the second login lists its new session and waits to remove the old one
/// while the first lists its own beside it, removes the old one and wins. The loser's
/// entry names another new id, and still does not count: the winner signs out none of the
/// user's other sessions.
pub async fn a_renewing_login_sent_twice_whose_loser_listed_first_signs_nobody_out<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let (app, cookie) = a_session_to_log_in_twice(store, true).await;
    let replies = first_while_second_held(&app, &cookie, app.store.last_created()).await;
    the_first_login_won(&app, replies, cookie).await;
}

/// Two logins as "ada" ("first", then "second") of the session `cookie` names, in an app
/// that renews at login (the session's id is `old`), each held before removing it:
/// `meanwhile` runs once both are held; then the first goes on to its end, and the second
/// after it. Their replies, and what `meanwhile` gave.
async fn both_held_before_removing<S: SessionStore + Clone, T>(
    app: &TestApp<S>,
    cookie: &Cookie<'static>,
    old: SessionId,
    meanwhile: impl std::future::Future<Output = T>,
) -> (Reply, Reply, T) {
    let first_done = tokio::sync::Notify::new();
    app.store.hold_next_write_of(old.clone());
    let first = async {
        let first = app.get("/login-from/ada/first", Some(cookie)).await;
        first_done.notify_one();
        first
    };
    let (first, (second, got)) = join(first, async {
        app.store.when_held().await;
        app.store.hold_next_write_of(old);
        let second = app.get("/login-from/ada/second", Some(cookie));
        join(second, async {
            app.store.when_held().await;
            let got = meanwhile.await;
            // Held first, let go first.
            app.store.release();
            first_done.notified().await;
            app.store.release();
            got
        })
        .await
    })
    .await;
    (first, second, got)
}

/// A login form sent twice from a new device, by a session that gets a new id at login,
/// with the user at her limit of two: the first lists itself and is held before removing
/// the old session, the second lists itself after it and is held there too; the first
/// wins and trims. It signs out only one of her other sessions: the second's entry, listed
/// after the first read the roster, is not the first's to count (the second loses, and
/// takes it away).
pub async fn a_renewing_login_sent_twice_at_the_limit_signs_out_one_session<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.max_sessions_per_user(2, OverLimit::EndLeastRecentlySeen)
    })
    .await;
    login(&app, "ada", "o1").await;
    login(&app, "ada", "o2").await;
    let cookie = app.get("/set/p/k/1", None).await.cookie();
    let old = app.store.last_created();
    let (first, second, ()) = both_held_before_removing(&app, &cookie, old, async {}).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(second.status, 409, "{second:?}");
    let mut listed = labels(&app, "ada").await;
    listed.sort();
    assert_eq!(listed, ["first", "o2"]);
}

/// A login from another device while a login form is sent twice (both listed, neither
/// yet past removing the old session), at the limit: the two rival logins count as the
/// one session they become, so the other device's login signs out only one of the
/// user's sessions.
pub async fn a_login_while_another_device_sends_its_form_twice_signs_out_one_session<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.max_sessions_per_user(3, OverLimit::EndLeastRecentlySeen)
    })
    .await;
    login(&app, "ada", "a").await;
    login(&app, "ada", "b").await;
    let cookie = app.get("/set/p/k/1", None).await.cookie();
    let old = app.store.last_created();
    // Both listed and held: another device logs in, and trims.
    let other = async { login(&app, "ada", "other").await.0 };
    let (first, second, other) = both_held_before_removing(&app, &cookie, old, other).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(second.status, 409, "{second:?}");
    assert_eq!(whoami(&app, &other).await, "ada");
    let mut listed = labels(&app, "ada").await;
    listed.sort();
    assert_eq!(listed, ["b", "first", "other"]);
}

/// A renewing login and a purge-then-login of one session, racing, under a limit that
/// refuses: the purge removes the old session whatever its version, so both can win. The
/// second to list counts the first, renewed away from the same session, and is refused
/// at the limit rather than taking the user over it.
pub async fn a_purge_and_login_racing_a_renewing_login_of_its_session_counts_it<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.max_sessions_per_user(2, OverLimit::RefuseLogin)
    })
    .await;
    login(&app, "ada", "other").await;
    let cookie = app.get("/set/p/k/1", None).await.cookie();
    // The purge-then-login is held at its listing while the renewing login runs to its end.
    app.store.hold_next_write_of(app.generation_item("ada"));
    let (purged, renewed) = join(app.get("/purge-then-bind/ada", Some(&cookie)), async {
        app.store.when_held().await;
        let renewed = app.get("/login-from/ada/renewed", Some(&cookie)).await;
        app.store.release();
        renewed
    })
    .await;
    assert_eq!(renewed.status, 200, "{renewed:?}");
    assert_eq!(purged.status, 403, "{purged:?}");
    let mut listed = labels(&app, "ada").await;
    listed.sort();
    assert_eq!(listed, ["other", "renewed"]);
}

/// A login of a session that keeps its id, whose listing in the user's roster lands but
/// whose reply is lost (503): its entry goes again, so that it does not count as a login
/// in flight, and a login from another device at the limit signs nobody out for it.
pub async fn a_keep_id_login_whose_listing_reply_is_lost_leaves_no_entry<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.renew_on_bind(false)
            .max_sessions_per_user(2, OverLimit::EndLeastRecentlySeen)
    })
    .await;
    login(&app, "ada", "o1").await;
    let cookie = app.get("/set/p/k/1", None).await.cookie();
    app.store
        .lose_the_reply_to_the_next_update_of(app.generation_item("ada"));
    let lost = app.get("/login-from/ada/lost", Some(&cookie)).await;
    assert_eq!(lost.status, 503, "{lost:?}");
    assert_eq!(whoami(&app, &cookie).await, "none");
    login(&app, "ada", "o2").await;
    let mut listed = labels(&app, "ada").await;
    listed.sort();
    assert_eq!(listed, ["o1", "o2"]);
}

/// A keep-id login whose session write landed but whose reply was lost answers 503, and
/// leaves its entry: the session holds the binding, so it stays listed and signed in, its
/// cart with it. (The entry was taken back, so the session, bound to a line no longer
/// there, was found signed out at its next request and deleted with its cart.)
pub async fn a_keep_id_login_whose_session_reply_is_lost_stays_signed_in<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| b.renew_on_bind(false)).await;
    let cookie = app.get("/set/p/k/1", None).await.cookie();
    let id = app.store.last_created();
    app.store.lose_the_reply_to_the_next_update_of(id);
    let lost = app.get("/login-from/ada/lost", Some(&cookie)).await;
    assert_eq!(lost.status, 503, "{lost:?}");
    assert_eq!(whoami(&app, &cookie).await, "ada");
    assert_eq!(labels(&app, "ada").await, ["lost"]);
    assert_eq!(
        app.get("/get/p/k", Some(&cookie)).await.body,
        "1",
        "the cart kept"
    );
}

/// A keep-id login whose session write did not land (it lost a race, and the re-read
/// failed) answers 503 and takes its entry back: left, it counted as a login in flight, and
/// another device's login was refused at the limit.
pub async fn a_keep_id_login_whose_session_write_did_not_land_leaves_no_entry<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.renew_on_bind(false)
            .max_sessions_per_user(2, OverLimit::RefuseLogin)
    })
    .await;
    login(&app, "ada", "o1").await;
    let cookie = app.get("/set/p/k/1", None).await.cookie();
    let id = app.store.last_created();
    app.store.hold_next_write_of(id.clone());
    let (lost, ()) = join(app.get("/login-from/ada/lost", Some(&cookie)), async {
        app.store.when_held().await;
        let raced = app.get("/set/p/k2/2", Some(&cookie)).await;
        assert_eq!(raced.status, 200, "{raced:?}");
        app.store.fail_loads_of(Some(id.clone()));
        app.store.release();
    })
    .await;
    assert_eq!(lost.status, 503, "{lost:?}");
    app.store.fail_loads_of(None);
    login(&app, "ada", "o2").await;
    let mut listed = labels(&app, "ada").await;
    listed.sort();
    assert_eq!(listed, ["o1", "o2"]);
}

/// A login whose removal of the old id fails, and whose undo of its entry then fails too,
/// answers 503 and leaves no session signed in: its new id goes (no client got it).
/// (It was kept, listed and signed in, held by no device: another device's login was
/// refused at the limit until it idled out.)
pub async fn a_login_failing_to_retire_the_old_id_leaves_no_session_behind<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.max_sessions_per_user(1, OverLimit::RefuseLogin)
    })
    .await;
    let cookie = app.get("/set/p/k/1", None).await.cookie();
    let old = app.store.last_created();
    let item = app.generation_item("ada");
    app.store.hold_next_write_of(old.clone());
    let (lost, ()) = join(app.get("/login-from/ada/lost", Some(&cookie)), async {
        app.store.when_held().await;
        app.store.fail_deletes_of(Some(old.clone()));
        app.store.fail_loads_of(Some(item.clone()));
        app.store.release();
    })
    .await;
    assert_eq!(lost.status, 503, "{lost:?}");
    app.store.fail_deletes_of(None);
    app.store.fail_loads_of(None);
    assert!(labels(&app, "ada").await.is_empty());
    login(&app, "ada", "other").await;
}

/// A bound session's renew whose roster write landed but whose reply was lost answers 503
/// and keeps its old id: its entry is moved back to that id, so it stays listed and signed
/// in (the entry left naming the discarded new id was found dead: signed out).
pub async fn a_renew_whose_listing_reply_is_lost_stays_listed<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (a, _) = login(&app, "ada", "a").await;
    app.store
        .lose_the_reply_to_the_next_update_of(app.generation_item("ada"));
    let lost = app.get("/renew", Some(&a)).await;
    assert_eq!(lost.status, 503, "{lost:?}");
    assert_eq!(labels(&app, "ada").await, ["a"]);
    assert_eq!(whoami(&app, &a).await, "ada");
    let renewed = app.get("/renew", Some(&a)).await;
    assert_eq!(renewed.status, 200, "{renewed:?}");
}

/// A browser where ada stayed signed in ("keep me signed in", a cart) and bob logs in:
/// his session keeps nothing of hers (her data, her lifetime), and keeps the label his
/// login set before binding, though it is the one hers had.
pub async fn a_session_switching_users_keeps_nothing_of_the_other_user<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (a, _) = login(&app, "ada", "a").await;
    let remembered = app.get("/remember/1209600/2592000", Some(&a)).await;
    assert_eq!(remembered.status, 200, "{remembered:?}");
    let a = remembered.cookie.unwrap_or(a);
    assert_eq!(flags(&app, &a).await, ["a current remember"]);
    let reply = app.get("/login-from/bob/a", Some(&a)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let b = reply.cookie.unwrap_or(a);
    assert_eq!(whoami(&app, &b).await, "bob");
    assert_eq!(app.get("/get/p/k", Some(&b)).await.body, "none");
    assert_eq!(flags(&app, &b).await, ["a current"]);
    assert!(labels(&app, "ada").await.is_empty());
}

/// A switch of users that fails because the stored count of switches cannot be read (a
/// damaged item) changes nothing, even for a handler that goes on after the error: ada's
/// data stays hers. (It emptied the session first, and the commit wrote that.)
pub async fn a_switch_of_users_that_fails_changes_nothing<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (a, _) = login(&app, "ada", "a").await;
    let set = app.get("/set/p/k/1", Some(&a)).await;
    assert_eq!(set.status, 200, "{set:?}");
    let a = set.cookie.unwrap_or(a);
    let id = app.store.last_created();
    let stored = app.store.inner.load(&id).await.unwrap().unwrap();
    let text = String::from_utf8(stored.data).unwrap();
    let package = r#""actix-memcache-session.user":{"#;
    assert!(text.contains(package), "{text}");
    let damaged = text.replacen(package, &format!(r#"{package}"switches":"x","#), 1);
    let ttl = Duration::from_secs(60);
    let written = app
        .store
        .inner
        .update(&id, damaged.as_bytes(), stored.version, ttl);
    assert_eq!(written.await.unwrap(), Update::Updated);
    let reply = app.get("/bind-ignoring-errors/bob", Some(&a)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, "bound: false");
    assert_eq!(whoami(&app, &a).await, "ada");
    assert_eq!(
        app.get("/get/p/k", Some(&a)).await.body,
        "1",
        "ada's data stays"
    );
}

/// While bob logs in on a browser where ada stayed signed in, a request of ada's adds a
/// flash message to her session before his login removes it: the message does not reach
/// his session.
pub async fn what_the_other_user_adds_while_a_session_switches_users_stays_out_of_it<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (a, a_id) = login(&app, "ada", "a").await;
    // Bob's login is held at its removal of ada's session, which it then finds changed.
    app.store.hold_next_write_of(a_id);
    let (bob, ()) = join(app.get("/login-from/bob/b", Some(&a)), async {
        app.store.when_held().await;
        let sent = app.get("/flash/send/info/for-ada", Some(&a)).await;
        assert_eq!(sent.status, 200, "{sent:?}");
        app.store.release();
    })
    .await;
    assert_eq!(bob.status, 200, "{bob:?}");
    let b = bob.cookie();
    assert_eq!(whoami(&app, &b).await, "bob");
    assert_eq!(app.get("/flash/show", Some(&b)).await.body, "");
}

/// A request of ada's, in flight when bob logs in on her session (which keeps its id),
/// commits after him: it answers 409 and writes nothing to what is now bob's session.
pub async fn a_request_of_the_other_user_in_flight_writes_nothing_to_a_session_that_switched<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| b.renew_on_bind(false)).await;
    let (a, a_id) = login(&app, "ada", "a").await;
    app.store.hold_next_write_of(a_id);
    let (late, bob) = join(app.get("/set/q/k/1", Some(&a)), async {
        app.store.when_held().await;
        let bob = app.get("/login-from/bob/b", Some(&a)).await;
        app.store.release();
        bob
    })
    .await;
    assert_eq!(bob.status, 200, "{bob:?}");
    assert_eq!(late.status, 409, "{late:?}");
    let b = bob.cookie.unwrap_or(a);
    assert_eq!(whoami(&app, &b).await, "bob");
    assert_eq!(app.get("/get/q/k", Some(&b)).await.body, "none");
}

/// An anonymous request, in flight while ada and then bob log in on its session (which
/// keeps its id), commits after both: it answers 409, and what it added is not in bob's
/// session (had it come first, ada's login would have kept it and bob's dropped it).
pub async fn an_anonymous_request_in_flight_across_a_change_of_users_writes_nothing<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| b.renew_on_bind(false)).await;
    let cookie = app.get("/set/p/k/1", None).await.cookie();
    app.store.hold_next_write_of(app.store.last_created());
    let (late, bob) = join(app.get("/set/q/k/1", Some(&cookie)), async {
        app.store.when_held().await;
        let ada = app.get("/login-from/ada/a", Some(&cookie)).await;
        assert_eq!(ada.status, 200, "{ada:?}");
        let bob = app.get("/login-from/bob/b", Some(&cookie)).await;
        app.store.release();
        bob
    })
    .await;
    assert_eq!(bob.status, 200, "{bob:?}");
    assert_eq!(late.status, 409, "{late:?}");
    let b = bob.cookie.unwrap_or(cookie);
    assert_eq!(whoami(&app, &b).await, "bob");
    assert_eq!(app.get("/get/q/k", Some(&b)).await.body, "none");
}

/// `cookie`'s user's sessions as `label flags`, oldest first.
async fn flags<S: SessionStore + Clone>(app: &TestApp<S>, cookie: &Cookie<'_>) -> Vec<String> {
    let listed = devices(app, cookie).await;
    listed
        .into_iter()
        .map(|(_, label, flags)| format!("{label} {flags}"))
        .collect()
}

/// Flash messages sent to ada and not yet shown are not shown to bob, who logs in on her
/// session.
pub async fn a_login_shows_none_of_the_other_users_flash_messages<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (a, _) = login(&app, "ada", "a").await;
    let sent = app.get("/flash/send/info/for-ada", Some(&a)).await;
    assert_eq!(sent.status, 200, "{sent:?}");
    let shown = app.get("/switch-to/bob/show", Some(&a)).await;
    assert_eq!((shown.status, shown.body.as_str()), (200, ""), "{shown:?}");
}

/// While bob logs in on ada's session, held at the removal of hers, a request of ada's
/// writes `p/k`: bob's session gets what his login set (`"1"`, after binding or before,
/// whether ada's session held it before or not), and nothing where his login only removed
/// a `p/k` ada did not have.
pub async fn a_switch_racing_the_other_user_keeps_the_new_users_values<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let cases = [
        ("set-after", true, "\"1\""),
        ("set-after", false, "\"1\""),
        ("flip-first", true, "\"1\""),
        ("remove-first", false, "none"),
    ];
    for (how, had, expected) in cases {
        let (a, a_id) = login(&app, "ada", "a").await;
        if had {
            assert_eq!(app.get("/set/p/k/1", Some(&a)).await.status, 200);
        }
        app.store.hold_next_write_of(a_id);
        let (bob, ()) = join(app.get(&format!("/switch-to/bob/{how}"), Some(&a)), async {
            app.store.when_held().await;
            assert_eq!(app.get("/set/p/k/2", Some(&a)).await.status, 200);
            app.store.release();
        })
        .await;
        assert_eq!(bob.status, 200, "{how} {had}: {bob:?}");
        let b = bob.cookie();
        assert_eq!(whoami(&app, &b).await, "bob");
        assert_eq!(
            app.get("/get/p/k", Some(&b)).await.body,
            expected,
            "{how} {had}"
        );
    }
}
