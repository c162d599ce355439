//! The HTTP behaviour suite: every numbered behaviour of the middleware, run by each store
//! through `http_suite!`. Section numbers follow the README's semantics table.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use actix_memcache_session::{
    Key, MemcacheSession, Session, SessionError, SessionId, SessionStatus, SessionStore, Update,
};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::{dev, test, web, App, FromRequest};
use futures_util::future::join;
use futures_util::FutureExt;

use crate::app::TestApp;
use crate::support::{tampered, Calls, CountingStore, Reply};

macro_rules! http_suite {
    ($make:expr) => {
        $crate::http::http_suite!(@each $make;
            route_without_session_makes_no_store_call,
            extracting_twice_loads_once,
            a_handle_kept_past_its_request_writes_nothing,
            a_handle_kept_reads_the_session_while_its_request_commits,
            a_request_kept_reads_the_session_once_its_commit_is_done,
            a_request_kept_beside_a_handle_reads_the_renewed_id,
            an_opened_session_committed_unchanged_is_not_refreshed,
            changes_commit_and_read_back,
            error_status_aborts,
            handler_error_aborts,
            handler_panic_aborts,
            handler_error_with_a_redirect_status_aborts,
            unchanged_session_is_not_written,
            empty_new_session_is_not_written,
            commit_on_decides,
            status_reports_what_happened,
            concurrent_changes_to_different_keys_both_land,
            concurrent_changes_to_the_same_key_conflict,
            session_purged_during_a_request_is_not_revived,
            renew_racing_a_committed_write_keeps_it,
            renew_racing_a_purge_is_409_and_revives_nothing,
            read_after_a_concurrent_renew_keeps_the_new_cookie,
            a_refresh_racing_a_login_does_not_reissue_the_retired_id,
            a_failed_refresh_keeps_the_read_only_answer,
            failed_commits_pass_through_outer_middleware,
            a_session_middleware_inside_another_leaves_the_session_to_the_outer,
            a_middleware_between_two_cookies_reads_the_outer_session_once_the_inner_answered,
            an_inner_sessions_cookie_survives_the_outer_ones_failed_commit,
            a_task_holding_the_request_extensions_leaves_the_cookie_alone,
            a_session_middleware_of_one_name_inside_another_inside_the_first_serves_the_outermost,
            a_middleware_between_two_cookies_reads_the_outer_session_after_the_inner_failed,
            session_middlewares_of_two_names_nested_twice_serve_one_session_each,
            default_cookie_attributes,
            builder_cookie_attributes,
            host_prefixed_cookie_is_issued_as_browsers_require,
            tampered_cookie_gets_fresh_session,
            truncated_cookie_gets_fresh_session,
            cookie_signed_by_unknown_key_gets_fresh_session,
            cookie_for_unknown_session_gets_fresh_session,
            expired_cookie_gets_fresh_session,
            the_valid_one_of_several_same_name_cookies_is_used,
            fallback_key_is_accepted_and_resigned,
            old_cookie_on_read_touches_and_reissues,
            stored_session_expires_after_idle_timeout,
            a_refresh_racing_a_write_leaves_the_lifetime_the_write_set,
            a_refresh_whose_touch_lands_after_a_racing_write_leaves_the_lifetime_it_set,
            absolute_timeout_ends_an_active_session,
            renew_moves_data_to_a_new_id,
            renew_starts_the_absolute_timeout_afresh,
            purge_deletes_and_removes_cookie,
            purge_of_a_session_already_gone_removes_the_cookie,
            purge_then_set_starts_a_new_session,
            oversized_session_is_refused_and_nothing_written,
            a_response_that_read_the_session_varies_on_the_cookie,
            a_response_that_sets_the_cookie_is_private,
            a_session_first_loaded_after_the_request_ended_writes_nothing,
            invalid_names_get_400,
            the_crates_own_packages_are_out_of_a_handlers_reach,
            values_too_deep_to_read_back_are_refused,
            a_nan_is_refused_at_insert_and_nothing_is_lost,
            undecodable_stored_session_gets_fresh_session,
            a_stored_value_that_cannot_be_read_fails_alone_and_is_kept,
            a_typed_package_with_a_value_that_cannot_be_read_fails_until_set,
            packages_are_isolated,
            package_operations,
            typed_package_round_trips_field_by_field,
            a_typed_hash_map_set_again_with_its_entries_is_no_change,
            typed_fields_changed_by_concurrent_requests_both_land,
            typed_package_that_does_not_fit_is_an_error_and_keeps_the_data,
            rollback_to_a_savepoint_writes_only_what_came_before,
            rollback_undoes_a_purge,
            abort_with_200_writes_nothing,
            hooks_run_once_on_the_branch_taken,
            handler_panic_runs_the_abort_hooks,
            flash_messages_are_shown_once,
            flash_read_by_a_failed_request_is_still_there,
            flash_sent_while_another_request_shows_older_ones_both_land,
            unread_flashes_sent_by_many_requests_keep_the_newest_32,
            session_id_is_none_until_stored,
            after_commit_hooks_see_the_id_the_session_was_stored_under,
            hooks_read_the_session_as_committed_or_as_the_handler_left_it,
            container_reads_changes_and_purges_by_id,
            container_commit_of_an_unchanged_kept_or_bound_session_writes_nothing,
            container_change_racing_a_request_change_to_another_key_both_land,
            container_change_to_the_same_key_as_a_request_conflicts,
            a_renew_racing_a_binding_through_the_container_is_409,
            container_commit_dropped_midway_still_stores_and_runs_its_hooks,
            remember_me_outlives_the_default_idle_timeout,
            own_timeouts_are_capped_by_the_maximum,
            own_timeouts_set_without_a_login_reissue_the_cookie,
            own_timeouts_can_be_cleared,
            sign_out_everywhere_ends_every_session_of_the_user_and_no_other,
            a_login_under_an_endless_absolute_timeout_stays_signed_in,
            sign_out_everywhere_from_the_container,
            an_evicted_generation_item_signs_the_user_out,
            two_apps_sharing_a_store_keep_their_users_apart,
            a_rotated_key_keeps_every_binding_and_a_sign_out_ends_them_all,
            a_sign_out_in_a_request_ends_the_bindings_of_every_key,
            sign_out_of_other_sessions_keeps_this_one,
            a_logout_with_a_cookie_from_a_clock_ahead_ends_its_session_or_says_it_cannot,
            a_purge_and_a_sign_out_in_either_order_end_the_others_and_this_one,
            a_signed_out_cookie_sent_first_does_not_hide_a_live_one,
            a_login_after_a_sign_out_of_the_others_and_a_purge_is_a_login_of_its_own,
            a_cross_key_sign_out_spares_a_login_after_a_revocation,
            sign_out_in_a_failed_request_signs_nobody_out,
            a_sign_out_whose_commit_then_fails_says_what_happened,
            a_request_racing_its_sign_out_of_the_others_stays_signed_in,
            a_revoked_session_signing_out_the_others_stays_signed_out,
            two_devices_signing_out_the_others_at_once_leave_one_signed_in,
            a_login_in_flight_across_a_sign_out_of_the_others_is_refused,
            signing_out_the_others_twice_from_one_device_keeps_it,
            a_revoked_session_signing_out_everywhere_spares_a_later_login,
            a_session_signed_out_by_another_device_cannot_sign_out_everywhere,
            signing_out_everywhere_twice_from_one_device_answers_200_to_both,
            bound_session_reads_its_generation_with_the_session,
            session_bound_outside_a_request_gets_its_hint_on_the_next_request,
            binding_a_user_renews_the_session_unless_told_not_to,
            signed_out_session_rewritten_meanwhile_is_not_removed,
            signed_out_session_removed_meanwhile_leaves_the_new_login_cookie,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[actix_web::test]
            async fn $name() {
                $crate::http::$name($make).await;
            }
        )*
    };
}
pub(crate) use http_suite;

/// An app over `store` and a session holding `p/k = 1`, with its cookie; counts reset.
async fn with_session<S: SessionStore + Clone>(store: S) -> (TestApp<S>, Cookie<'static>) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let cookie = started(&app).await;
    (app, cookie)
}

/// Starts a session holding `p/k = 1` on `app`; counts reset.
async fn started<S: SessionStore + Clone>(app: &TestApp<S>) -> Cookie<'static> {
    let reply = app.get("/set/p/k/1", None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    app.store.reset();
    reply.cookie()
}

async fn value<S: SessionStore + Clone>(app: &TestApp<S>, cookie: &Cookie<'_>) -> String {
    let reply = app.get("/get/p/k", Some(cookie)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body
}

/// Asserts that `cookie` now opens a fresh session and that writing gives a new id.
async fn gets_fresh_session<S: SessionStore + Clone>(app: &TestApp<S>, cookie: &Cookie<'_>) {
    let old = app.store.last_created();
    assert_eq!(value(app, cookie).await, "none");
    let reply = app.get("/set/p/k/2", Some(cookie)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_ne!(reply.cookie().value(), cookie.value());
    assert_ne!(
        app.store.last_created(),
        old,
        "a fresh session needs a new id"
    );
    assert_eq!(value(app, &reply.cookie()).await, "2");
}

// 1. Lazy loading.

pub async fn route_without_session_makes_no_store_call<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let reply = app.get("/plain", Some(&cookie)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "plain"));
    assert_eq!(app.store.calls(), Calls::default());
    assert!(reply.cookie.is_none());
}

pub async fn extracting_twice_loads_once<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let reply = app.get("/twice/p/k", Some(&cookie)).await;
    assert_eq!(reply.body, "Some(Number(1)) Some(Number(1))");
    assert_eq!(app.store.calls().loads, 1);
}

// 2. Unit of work.

/// A session handle kept past the end of its request (one that changed nothing, so ended
/// without a write) is still usable, and nothing changed through it is ever written.
pub async fn a_handle_kept_past_its_request_writes_nothing<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let reply = app.get("/keep/p/k", Some(&cookie)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "1"));
    assert!(reply.cookie.is_none(), "nothing to re-issue");
    let kept = app.kept.take().expect("kept by the handler");
    assert_eq!(kept.package("p").get::<u32>("k").unwrap(), Some(1));
    kept.package("p").insert("k", 2).unwrap();
    kept.package("q").insert("j", 3).unwrap();
    assert_eq!(
        kept.status(),
        SessionStatus::Changed,
        "changed, and never written"
    );
    // A hook registered now would never run: dropped at once, with what it holds (a
    // `Session` it held would keep the request's data alive through itself).
    struct Held(std::rc::Rc<std::cell::Cell<bool>>);
    impl Drop for Held {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let dropped = std::rc::Rc::new(std::cell::Cell::new(false));
    let held = Held(dropped.clone());
    kept.after_commit(move || {
        drop(held);
        async { Ok::<_, std::io::Error>(()) }
    });
    assert!(dropped.get(), "the hook went at once");
    drop(kept);
    assert_eq!(value(&app, &cookie).await, "1");
    let reply = app.get("/get/q/j", Some(&cookie)).await;
    assert_eq!(reply.body, "none");
    assert_eq!(app.store.calls().writes(), 0);
}

/// A session extracted from the request by a task the handler spawned, while the request
/// commits, reads it as the handler left it: the extraction waits for the commit. (It read
/// an empty session meanwhile: only a kept `Session` handle got a copy.)
pub async fn a_request_kept_reads_the_session_once_its_commit_is_done<S: SessionStore + Clone>(
    store: S,
) {
    let (app, cookie) = with_session(store).await;
    app.store.hold_next_write_of(app.store.last_created());
    let meanwhile = async {
        app.store.when_held().await;
        let req = app.kept_request.take().expect("kept by the handler");
        let read = actix_web::rt::spawn(async move {
            let session = Session::extract(&req).await.unwrap();
            let value = session.package("p").get::<u32>("k").unwrap();
            (value, session.id())
        });
        // The task runs while the write is held.
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        app.store.release();
        read.await.unwrap()
    };
    let (reply, read) = join(app.get("/keep-request-set/p/k/2", Some(&cookie)), meanwhile).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let (read, id) = read;
    assert_eq!(read, Some(2), "as the handler left it");
    assert!(id.is_some(), "the id it was stored under");
}

/// The same with a handle to the session kept as well (a hook's clone, as the docs show),
/// on a request that renews: the extraction still waits for the commit, and reads the id
/// the session was stored under. (It read the handler's copy at once: the old id.)
pub async fn a_request_kept_beside_a_handle_reads_the_renewed_id<S: SessionStore + Clone>(
    store: S,
) {
    let (app, cookie) = with_session(store).await;
    let old = app.store.last_created();
    app.store.hold_next_write_of(old.clone());
    let meanwhile = async {
        app.store.when_held().await;
        let req = app.kept_request.take().expect("kept by the handler");
        let read = actix_web::rt::spawn(async move { Session::extract(&req).await.unwrap().id() });
        // The task runs while the write is held.
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        app.store.release();
        read.await.unwrap()
    };
    let (reply, read) = join(app.get("/keep-both-renew", Some(&cookie)), meanwhile).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    drop(app.kept.take());
    let read = read.expect("the session's id");
    assert_ne!(read, old, "the id before the renew");
    assert_eq!(read, app.store.last_created(), "the renewed id");
}

/// A handle kept past the request (a task the handler spawned) reads the session as the
/// handler left it while the commit is under way, and as committed after; a savepoint it
/// takes then cannot be rolled back to. (It read an empty session meanwhile.)
pub async fn a_handle_kept_reads_the_session_while_its_request_commits<S: SessionStore + Clone>(
    store: S,
) {
    let (app, cookie) = with_session(store).await;
    app.store.hold_next_write_of(app.store.last_created());
    let meanwhile = async {
        app.store.when_held().await;
        let kept = app.kept.take().expect("kept by the handler");
        let read = kept.package("p").get::<u32>("k").unwrap();
        let savepoint = kept.savepoint();
        kept.package("p").insert("k", 3).unwrap();
        let rollback = savepoint.rollback();
        app.store.release();
        (kept, read, rollback)
    };
    let (reply, (kept, read, rollback)) =
        join(app.get("/keep-set/p/k/2", Some(&cookie)), meanwhile).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(read, Some(2), "as the handler left it");
    assert!(
        matches!(rollback, Err(SessionError::InvalidSavepoint)),
        "{rollback:?}"
    );
    assert_eq!(kept.package("p").get::<u32>("k").unwrap(), Some(2));
    drop(kept);
    assert_eq!(value(&app, &cookie).await, "2");
}

pub async fn changes_commit_and_read_back<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let reply = app.get("/set/shop.cart/items/3", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(app.store.calls().creates, 1);
    let reply = app.get("/get/shop.cart/items", Some(&reply.cookie())).await;
    assert_eq!(reply.body, "3");
}

pub async fn error_status_aborts<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    for status in [404, 500] {
        let reply = app
            .get(&format!("/set-status/{status}/p/k/2"), Some(&cookie))
            .await;
        assert_eq!(reply.status, status);
        assert!(reply.cookie.is_none(), "no cookie change on abort");
    }
    assert_eq!(app.store.calls().writes(), 0);
    assert_eq!(value(&app, &cookie).await, "1");
}

pub async fn handler_error_aborts<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let reply = app.get("/set-err/p/k/2", Some(&cookie)).await;
    assert_eq!(reply.status, 400);
    assert!(reply.cookie.is_none());
    assert_eq!(app.store.calls().writes(), 0);
    assert_eq!(value(&app, &cookie).await, "1");
}

pub async fn handler_panic_aborts<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let outcome = AssertUnwindSafe(app.get("/set-panic/p/k/2", Some(&cookie)))
        .catch_unwind()
        .await;
    assert!(outcome.is_err(), "the handler panics");
    assert_eq!(app.store.calls().writes(), 0);
    assert_eq!(value(&app, &cookie).await, "1");
}

/// actix answers a handler's `Err` with the error's own status, which can be a redirect:
/// it is an error all the same, and writes nothing.
pub async fn handler_error_with_a_redirect_status_aborts<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let reply = app.get("/set-err-303/p/k/2", Some(&cookie)).await;
    assert_eq!(reply.status, 303, "{reply:?}");
    assert!(reply.cookie.is_none());
    assert_eq!(app.store.calls().writes(), 0);
    assert_eq!(value(&app, &cookie).await, "1");
}

pub async fn unchanged_session_is_not_written<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    assert_eq!(value(&app, &cookie).await, "1");
    let same = app.get("/set/p/k/1", Some(&cookie)).await;
    assert_eq!(same.status, 200);
    assert!(same.cookie.is_none());
    assert_eq!(app.store.calls().writes(), 0);
    assert_eq!(app.store.calls().loads, 2);
}

pub async fn empty_new_session_is_not_written<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let reply = app.get("/get/p/k", None).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "none"));
    assert!(reply.cookie.is_none());
    assert_eq!(app.store.calls(), Calls::default());
}

pub async fn commit_on_decides<S: SessionStore + Clone>(store: S) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.commit_on(|status| status == StatusCode::OK)
    })
    .await;
    let created = app.get("/set-status/201/p/k/1", None).await;
    assert_eq!(created.status, 201);
    assert!(created.cookie.is_none());
    assert_eq!(app.store.calls().writes(), 0);
    let ok = app.get("/set-status/200/p/k/1", None).await;
    assert!(ok.cookie.is_some());
    assert_eq!(app.store.calls().creates, 1);
}

pub async fn status_reports_what_happened<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    assert_eq!(app.get("/status", Some(&cookie)).await.body, "Unchanged");
    assert_eq!(app.get("/renew", Some(&cookie)).await.body, "Renewed");
    let app2 = TestApp::new(CountingStore::new(app.store.inner.clone())).await;
    assert_eq!(app2.get("/purge", None).await.body, "Purged");
}

// 3. No lost updates.

pub async fn concurrent_changes_to_different_keys_both_land<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let (a, b) = app
        .interleave("/gated/set/p/a/10", "/set/p/b/20", &cookie)
        .await;
    assert_eq!((a.status, b.status), (200, 200), "{a:?} {b:?}");
    assert_eq!(app.get("/get/p/a", Some(&cookie)).await.body, "10");
    assert_eq!(app.get("/get/p/b", Some(&cookie)).await.body, "20");
    assert_eq!(value(&app, &cookie).await, "1");
}

pub async fn concurrent_changes_to_the_same_key_conflict<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let (a, b) = app
        .interleave("/gated/set/p/k/10", "/set/p/k/20", &cookie)
        .await;
    assert_eq!(b.status, 200);
    assert_eq!(a.status, 409, "{a:?}");
    assert!(a.body.contains("concurrent"), "{}", a.body);
    assert!(a.cookie.is_none());
    assert_eq!(value(&app, &cookie).await, "20");
}

pub async fn session_purged_during_a_request_is_not_revived<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let id = app.store.last_created();
    let (a, b) = app.interleave("/gated/set/p/k/10", "/purge", &cookie).await;
    assert_eq!(b.status, 200);
    assert_eq!(a.status, 409, "{a:?}");
    assert!(app.store.inner.load(&id).await.unwrap().is_none());
    assert_eq!(value(&app, &cookie).await, "none");
}

/// A write another request committed while a renew (login) was under way survives under
/// the new id: the renew re-reads and rebases instead of deleting the old id blindly.
pub async fn renew_racing_a_committed_write_keeps_it<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let old = app.store.last_created();
    let (renew, write) = app.interleave("/gated/renew", "/set/p/b/20", &cookie).await;
    assert_eq!(write.status, 200, "{write:?}");
    assert_eq!(renew.status, 200, "{renew:?}");
    let renewed = renew.cookie();
    assert_eq!(app.get("/get/p/b", Some(&renewed)).await.body, "20");
    assert_eq!(value(&app, &renewed).await, "1");
    assert!(app.store.inner.load(&old).await.unwrap().is_none());
}

/// A logout while a renew was under way stays a logout: the renew answers 409 and the
/// session it was creating is removed again.
pub async fn renew_racing_a_purge_is_409_and_revives_nothing<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let (renew, purge) = app.interleave("/gated/renew", "/purge", &cookie).await;
    assert_eq!(purge.status, 200, "{purge:?}");
    assert_eq!(renew.status, 409, "{renew:?}");
    assert!(renew.cookie.is_none());
    let attempted = app.store.last_created();
    assert!(
        app.store.inner.load(&attempted).await.unwrap().is_none(),
        "the renew's new id was removed"
    );
    assert_eq!(value(&app, &cookie).await, "none");
}

/// A session the container opens and commits unchanged is written nothing, however the
/// refresh is set (here due at once for a request) and whether it is bound: no touch that
/// extends an abandoned session, no "last seen" stamp for a look. (Both were written.)
pub async fn an_opened_session_committed_unchanged_is_not_refreshed<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| b.refresh_fraction(0.0)).await;
    started(&app).await;
    let anonymous = app.store.last_created();
    let (_, bound) = log_in(&app, "ada").await;
    for id in [anonymous, bound] {
        let opened = app.sessions.open(&id).await.unwrap().expect("live");
        app.store.reset();
        opened.commit().await.unwrap();
        assert_eq!(app.store.calls().writes(), 0, "{id:?}");
    }
}

/// A slow read-only request (a long-poll) that loaded the session before another tab
/// logged in (renewed it) finds it gone when it refreshes: it must not send a removal
/// cookie, which would delete the new login cookie.
pub async fn read_after_a_concurrent_renew_keeps_the_new_cookie<S: SessionStore + Clone>(store: S) {
    let app = TestApp::configured(CountingStore::new(store), |b| b.refresh_fraction(0.0)).await;
    let cookie = started(&app).await;
    let (poll, login) = app.interleave("/gated/get/p/k", "/renew", &cookie).await;
    assert_eq!((poll.status, poll.body.as_str()), (200, "1"));
    assert!(poll.cookie.is_none(), "no cookie change: {:?}", poll.cookie);
    assert_eq!(value(&app, &login.cookie()).await, "1");
}

/// A read-only request due for refresh loaded the session; meanwhile a login in another tab
/// renewed it, and the old id still stands, as a tombstone at another version (the text
/// protocol's conditional delete leaves one for a second). The refresh's touch finds it,
/// but it is no longer the session loaded: the cookie naming the retired id must not be
/// re-issued over the login's.
pub async fn a_refresh_racing_a_login_does_not_reissue_the_retired_id<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| b.refresh_fraction(0.0)).await;
    let cookie = started(&app).await;
    let id = app.store.last_created();
    let tombstone = async {
        let stored = app.store.inner.load(&id).await.unwrap().unwrap();
        let ttl = Duration::from_secs(60);
        app.store
            .inner
            .update(&id, b"", stored.version, ttl)
            .await
            .unwrap()
    };
    let (poll, replaced) = app
        .interleave_with("/gated/get/p/k", &cookie, tombstone)
        .await;
    assert_eq!(replaced, Update::Updated);
    assert_eq!((poll.status, poll.body.as_str()), (200, "1"), "{poll:?}");
    assert!(
        poll.cookie.is_none(),
        "the retired id is not re-issued: {:?}",
        poll.cookie
    );
}

/// A read-only request whose cookie is due for refresh: if the refresh's touch fails, the
/// answer stands (200, nothing was to be written) and the cookie is kept as it was; the
/// next request refreshes it.
pub async fn a_failed_refresh_keeps_the_read_only_answer<S: SessionStore + Clone>(store: S) {
    let app = TestApp::configured(CountingStore::new(store), |b| b.refresh_fraction(0.0)).await;
    let cookie = started(&app).await;
    app.store.fail_touches(true);
    let read = app.get("/get/p/k", Some(&cookie)).await;
    assert_eq!((read.status, read.body.as_str()), (200, "1"), "{read:?}");
    assert!(read.cookie.is_none(), "not re-issued: {:?}", read.cookie);
    assert_eq!(app.store.calls().touches, 1, "it was tried");
    app.store.fail_touches(false);
    let read = app.get("/get/p/k", Some(&cookie)).await;
    assert_eq!(read.status, 200, "{read:?}");
    assert!(read.cookie.is_some(), "refreshed by the next request");
}

/// A commit that fails answers with its error as a response, so middleware wrapped
/// outside (logging, default headers, CORS) still sees it.
pub async fn failed_commits_pass_through_outer_middleware<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let (a, _) = app
        .interleave("/gated/set/p/k/10", "/set/p/k/20", &cookie)
        .await;
    assert_eq!(a.status, 409);
    assert!(a.outer, "the outer middleware saw the 409");
    let app = TestApp::configured(CountingStore::new(app.store.inner.clone()), |b| {
        b.max_size(200)
    })
    .await;
    let too_large = app.get("/big/p/k/500", None).await;
    assert_eq!(too_large.status, 413);
    assert!(too_large.outer, "the outer middleware saw the 413");
}

/// Writes a token into the session before the rest of the app runs, as a CSRF middleware
/// would: the middleware of the tests of one session middleware inside another.
async fn write_token(
    req: dev::ServiceRequest,
    next: Next<impl actix_web::body::MessageBody>,
) -> Result<dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let (http, payload) = req.into_parts();
    Session::extract(&http)
        .await?
        .package("csrf")
        .insert("token", "t")?;
    next.call(actix_web::dev::ServiceRequest::from_parts(http, payload))
        .await
}

/// The token and the cart, as the session holds them.
async fn token_and_cart(s: actix_memcache_session::Session) -> actix_web::Result<String> {
    let token: Option<String> = s.package("csrf").get("token")?;
    let items: Option<u32> = s.package("cart").get("items")?;
    Ok(format!("{token:?} {items:?}"))
}

/// An instance of the cookie `admin`, for an area inside an app of the cookie `id`.
fn admin_area<S: SessionStore + Clone>(
    store: S,
    key: Key,
) -> actix_memcache_session::MemcacheSession {
    actix_memcache_session::MemcacheSession::builder(store, key)
        .cookie_name("admin")
        .build()
}

/// Asks `path`, which must answer `status`, then `read` with every cookie that set: the
/// names of those cookies, sorted, and what `read` answered.
async fn cookies_then_read<A, B>(
    app: &A,
    (path, status): (&str, u16),
    read: &str,
) -> (Vec<String>, String)
where
    A: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    let res = test::call_service(app, test::TestRequest::get().uri(path).to_request()).await;
    assert_eq!(res.status(), status, "{path}");
    let cookies = cookies_by_name(&res);
    let names = cookies.iter().map(|c| c.name().to_owned()).collect();
    let mut req = test::TestRequest::get().uri(read);
    for cookie in cookies {
        req = req.cookie(cookie);
    }
    let body = test::call_and_read_body(app, req.to_request()).await;
    (names, String::from_utf8(body.to_vec()).unwrap())
}

/// Adds an item to the cart: the handler of the tests of one middleware inside another.
async fn add_to_cart(s: actix_memcache_session::Session) -> actix_web::Result<String> {
    s.package("cart").insert("items", 1)?;
    Ok("added".to_owned())
}

/// The cookies a response sets, sorted by name.
fn cookies_by_name<B>(
    res: &actix_web::dev::ServiceResponse<B>,
) -> Vec<actix_web::cookie::Cookie<'static>> {
    let mut cookies: Vec<_> = res.response().cookies().map(|c| c.into_owned()).collect();
    cookies.sort_by(|a, b| a.name().cmp(b.name()));
    cookies
}

/// `MemcacheSession` wrapped again on a scope, with a middleware between the two that
/// writes the session (a CSRF token): the request has one session, the outer one's, with
/// both writes, and one cookie. (Each instance committed its own copy: two cookies, the
/// last one naming the token alone.) One of another cookie name, on another scope, serves
/// a session of its own there, as before.
pub async fn a_session_middleware_inside_another_leaves_the_session_to_the_outer<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .service(
                web::scope("/shop")
                    .wrap(MemcacheSession::new(store.clone(), key.clone()))
                    .route("/cart", web::get().to(add_to_cart))
                    .route("/both", web::get().to(token_and_cart)),
            )
            .service(
                web::scope("/admin")
                    .wrap(admin_area(store.clone(), key.clone()))
                    .route("/cart", web::get().to(add_to_cart))
                    .route("/both", web::get().to(token_and_cart)),
            )
            .wrap(from_fn(write_token))
            .wrap(MemcacheSession::new(store, key)),
    )
    .await;
    let (names, body) = cookies_then_read(&app, ("/shop/cart", 200), "/shop/both").await;
    assert_eq!(names, ["id"], "one cookie");
    assert_eq!(body, r#"Some("t") Some(1)"#);
    let (names, body) = cookies_then_read(&app, ("/admin/cart", 200), "/admin/both").await;
    assert_eq!(names, ["admin", "id"], "each its own session");
    assert_eq!(body, "None Some(1)", "the token went to the outer one's");
}

/// A middleware between an instance and one of another cookie name inside it (an admin
/// area with its own cookie) reads and writes the outer one's session once the inner one
/// answered, as before it called it. (The inner one's unit of work stayed in the request:
/// the middleware read the admin session, and its write went to a unit of work already
/// ended, unstored, with a 200.)
pub async fn a_middleware_between_two_cookies_reads_the_outer_session_once_the_inner_answered<
    S: SessionStore + Clone,
>(
    store: S,
) {
    use actix_web::body::MessageBody;

    async fn audit(
        req: dev::ServiceRequest,
        next: Next<impl MessageBody>,
    ) -> Result<dev::ServiceResponse<impl MessageBody>, actix_web::Error> {
        let res = next.call(req).await?;
        let session = Session::extract(res.request()).await?;
        let items: Option<u32> = session.package("cart").get("items")?;
        session
            .package("audit")
            .insert("admin_cart_seen", items.is_some())?;
        Ok(res)
    }
    async fn seen(s: Session) -> actix_web::Result<String> {
        let seen: Option<bool> = s.package("audit").get("admin_cart_seen")?;
        Ok(format!("{seen:?}"))
    }
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .service(
                web::scope("/admin")
                    .wrap(admin_area(store.clone(), key.clone()))
                    .route("/cart", web::get().to(add_to_cart)),
            )
            .route("/seen", web::get().to(seen))
            .wrap(from_fn(audit))
            .wrap(MemcacheSession::new(store, key)),
    )
    .await;
    let (names, body) = cookies_then_read(&app, ("/admin/cart", 200), "/seen").await;
    assert_eq!(
        names,
        ["admin", "id"],
        "the middleware's write stored the outer session"
    );
    assert_eq!(
        body, "Some(false)",
        "the middleware read the outer session, not the admin one"
    );
}

/// An instance of another cookie name inside one whose commit then fails (a middleware
/// between them wrote the outer session, whose store is down): the inner one's commit
/// stood, and its cookie goes out with the outer one's error, naming the session it
/// stored. (The error answer was built anew, without it: the client kept the cookie of
/// the session a login had renewed away, and the new one was held by nobody.)
pub async fn an_inner_sessions_cookie_survives_the_outer_ones_failed_commit<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .service(
                web::scope("/admin")
                    .wrap(admin_area(store.clone(), key.clone()))
                    .route("/cart", web::get().to(add_to_cart))
                    .route("/both", web::get().to(token_and_cart)),
            )
            .wrap(from_fn(write_token))
            .wrap(MemcacheSession::new(crate::support::DownStore, key.clone())),
    )
    .await;
    let res = test::call_service(
        &app,
        test::TestRequest::get().uri("/admin/cart").to_request(),
    )
    .await;
    assert_eq!(res.status(), 503, "the outer commit failed");
    let cookies = cookies_by_name(&res);
    let names: Vec<&str> = cookies.iter().map(|c| c.name()).collect();
    assert_eq!(names, ["admin"], "the inner one's cookie stands");
    let inner = test::init_service(
        App::new().service(
            web::scope("/admin")
                .wrap(admin_area(store, key))
                .route("/both", web::get().to(token_and_cart)),
        ),
    )
    .await;
    let req = test::TestRequest::get()
        .uri("/admin/both")
        .cookie(cookies[0].clone());
    let body = test::call_and_read_body(&inner, req.to_request()).await;
    assert_eq!(body, "None Some(1)", "it names the session stored");
}

/// A task the handler spawned that holds the request's extensions (a shared borrow) while
/// the request commits: the response that sets the cookie borrows nothing of the
/// request's. (Keeping a nested instance's cookie in the request's extensions borrowed
/// them mutably, and panicked on every new session here.)
pub async fn a_task_holding_the_request_extensions_leaves_the_cookie_alone<
    S: SessionStore + Clone,
>(
    store: S,
) {
    use actix_web::HttpMessage as _;
    async fn add_holding(req: actix_web::HttpRequest, s: Session) -> actix_web::Result<String> {
        s.package("cart").insert("items", 1)?;
        // Held across an await on purpose: what a task of an application's may do.
        #[allow(clippy::await_holding_refcell_ref)]
        actix_web::rt::spawn(async move {
            let held = req.extensions();
            actix_web::rt::time::sleep(std::time::Duration::from_millis(300)).await;
            drop(held);
        });
        // The task takes its borrow before the handler answers.
        tokio::task::yield_now().await;
        Ok("added".to_owned())
    }
    let app = test::init_service(
        App::new()
            .route("/cart", web::get().to(add_holding))
            .wrap(MemcacheSession::new(store, Key::generate())),
    )
    .await;
    let res = test::call_service(&app, test::TestRequest::get().uri("/cart").to_request()).await;
    assert_eq!(res.status(), 200);
    let names: Vec<String> = cookies_by_name(&res)
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    assert_eq!(names, ["id"]);
}

/// An instance of the cookie `id` around one of `admin`, around one of `id` again (a scope
/// wrapped twice): the innermost serves the outermost's session, as one wrapped directly
/// inside another of its name does. A middleware outside the admin scope writes a token,
/// the handler a cart: one session holds both, and one `id` cookie names it. (The innermost
/// committed its own copy: two `id` cookies, the browser keeping the one without the cart.)
pub async fn a_session_middleware_of_one_name_inside_another_inside_the_first_serves_the_outermost<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .service(
                web::scope("/admin")
                    .wrap(admin_area(store.clone(), key.clone()))
                    .service(
                        web::scope("/shop")
                            .wrap(MemcacheSession::new(store.clone(), key.clone()))
                            .route("/cart", web::get().to(add_to_cart)),
                    ),
            )
            .route("/both", web::get().to(token_and_cart))
            .wrap(from_fn(write_token))
            .wrap(MemcacheSession::new(store, key)),
    )
    .await;
    let (names, body) = cookies_then_read(&app, ("/admin/shop/cart", 200), "/both").await;
    assert_eq!(names, ["id"], "one session, the outermost's");
    assert_eq!(body, r#"Some("t") Some(1)"#);
}

/// A middleware between `MemcacheSession` and one of another cookie name on a resource
/// inside it turns a refusal from inside the admin one (an `Err`, as an authentication
/// middleware gives) into a redirect to log in, and keeps in the session where to come
/// back: the outer session holds it. (The inner one's unit of work stayed in the request
/// after an `Err`: the write went to it, ended, and was dropped with the 303.)
pub async fn a_middleware_between_two_cookies_reads_the_outer_session_after_the_inner_failed<
    S: SessionStore + Clone,
>(
    store: S,
) {
    use actix_web::body::{BoxBody, MessageBody};
    use actix_web::HttpResponse;

    async fn deny(
        _: dev::ServiceRequest,
        _: Next<impl MessageBody>,
    ) -> Result<dev::ServiceResponse<BoxBody>, actix_web::Error> {
        Err(actix_web::error::ErrorUnauthorized("sign in first"))
    }
    async fn to_login(
        req: dev::ServiceRequest,
        next: Next<impl MessageBody + 'static>,
    ) -> Result<dev::ServiceResponse<BoxBody>, actix_web::Error> {
        let http = req.request().clone();
        match next.call(req).await {
            Ok(res) => Ok(res.map_into_boxed_body()),
            Err(_) => {
                let session = Session::extract(&http).await?;
                session.package("login").insert("return_to", "/admin")?;
                let to = HttpResponse::SeeOther()
                    .insert_header(("location", "/login"))
                    .finish();
                Ok(dev::ServiceResponse::new(http, to))
            }
        }
    }
    async fn return_to(s: Session) -> actix_web::Result<String> {
        let to: Option<String> = s.package("login").get("return_to")?;
        Ok(format!("{to:?}"))
    }
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .service(
                web::resource("/admin")
                    .route(web::get().to(HttpResponse::Ok))
                    .wrap(from_fn(deny))
                    .wrap(admin_area(store.clone(), key.clone()))
                    .wrap(from_fn(to_login)),
            )
            .route("/return-to", web::get().to(return_to))
            .wrap(MemcacheSession::new(store, key)),
    )
    .await;
    let (names, body) = cookies_then_read(&app, ("/admin", 303), "/return-to").await;
    assert_eq!(
        names,
        ["id"],
        "the middleware's write stored the outer session"
    );
    assert_eq!(body, r#"Some("/admin")"#);
}

/// `id` around `admin` around `id` around `admin` (scopes wrapped twice each): one session
/// each. A middleware inside the outer `admin` writes a token into the admin session, and
/// the handler inside the inner one a cart: one admin session holds both, and one `admin`
/// cookie names it. (The inner `admin` looked for one of its name only around the `id` one
/// it was inside, served a session of its own, and two `admin` cookies went out.)
pub async fn session_middlewares_of_two_names_nested_twice_serve_one_session_each<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .service(
                web::scope("/admin")
                    .wrap(from_fn(write_token))
                    .wrap(admin_area(store.clone(), key.clone()))
                    .route("/both", web::get().to(token_and_cart))
                    .service(
                        web::scope("/shop")
                            .wrap(MemcacheSession::new(store.clone(), key.clone()))
                            .service(
                                web::scope("/back")
                                    .wrap(admin_area(store.clone(), key.clone()))
                                    .route("/cart", web::get().to(add_to_cart)),
                            ),
                    ),
            )
            .wrap(MemcacheSession::new(store, key)),
    )
    .await;
    let (names, body) =
        cookies_then_read(&app, ("/admin/shop/back/cart", 200), "/admin/both").await;
    assert_eq!(names, ["admin"], "one admin session");
    assert_eq!(body, r#"Some("t") Some(1)"#);
}

// 4. Signed, timestamped cookie.

pub async fn default_cookie_attributes<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let cookie = app.get("/set/p/k/1", None).await.cookie();
    assert_eq!(cookie.name(), "id");
    assert_eq!(cookie.value().len(), 75);
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.same_site(), Some(SameSite::Lax));
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(cookie.domain(), None);
    assert_eq!(cookie.max_age(), None);
}

pub async fn builder_cookie_attributes<S: SessionStore + Clone>(store: S) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.cookie_name("sid")
            .cookie_secure(false)
            .cookie_http_only(false)
            .cookie_same_site(SameSite::Strict)
            .cookie_path("/app")
            .cookie_domain("example.com")
            .cookie_persistent(true)
            .idle_timeout(Duration::from_secs(600))
    })
    .await;
    let cookie = app.get("/set/p/k/1", None).await.cookie();
    assert_eq!(cookie.name(), "sid");
    assert_ne!(cookie.secure(), Some(true));
    assert_ne!(cookie.http_only(), Some(true));
    assert_eq!(cookie.same_site(), Some(SameSite::Strict));
    assert_eq!(cookie.path(), Some("/app"));
    assert_eq!(cookie.domain(), Some("example.com"));
    assert_eq!(cookie.max_age().map(|d| d.whole_seconds()), Some(600));
    assert_eq!(value(&app, &cookie).await, "1");
}

/// A `__Host-` cookie, as browsers take it only: `Secure`, `Path=/`, no `Domain`; its
/// removal too, or a browser would keep the cookie a purge ended.
pub async fn host_prefixed_cookie_is_issued_as_browsers_require<S: SessionStore + Clone>(store: S) {
    let app = TestApp::configured(CountingStore::new(store), |b| b.cookie_name("__Host-id")).await;
    let cookie = app.get("/set/p/k/1", None).await.cookie();
    let removal = app.get("/purge", Some(&cookie)).await.cookie();
    for (what, c) in [("issued", &cookie), ("removal", &removal)] {
        assert_eq!(c.name(), "__Host-id", "{what}");
        assert_eq!(c.secure(), Some(true), "{what}");
        assert_eq!(c.path(), Some("/"), "{what}");
        assert_eq!(c.domain(), None, "{what}");
    }
    assert_eq!(removal.value(), "");
    assert_eq!(value(&app, &cookie).await, "none", "purged");
}

pub async fn tampered_cookie_gets_fresh_session<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    gets_fresh_session(&app, &tampered(&cookie)).await;
    assert_eq!(
        value(&app, &cookie).await,
        "1",
        "the real session is untouched"
    );
}

pub async fn truncated_cookie_gets_fresh_session<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let short = Cookie::new("id", cookie.value()[..40].to_owned());
    gets_fresh_session(&app, &short).await;
    gets_fresh_session(&app, &Cookie::new("id", "")).await;
}

pub async fn cookie_signed_by_unknown_key_gets_fresh_session<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let other = TestApp::new(app.store.clone()).await;
    gets_fresh_session(&other, &cookie).await;
}

pub async fn cookie_for_unknown_session_gets_fresh_session<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    app.store
        .inner
        .delete(&app.store.last_created())
        .await
        .unwrap();
    gets_fresh_session(&app, &cookie).await;
}

pub async fn expired_cookie_gets_fresh_session<S: SessionStore + Clone>(store: S) {
    // The store keeps the session for a minute: only the cookie's timestamp can expire it.
    let store = CountingStore::new(store).with_ttl_floor(Duration::from_secs(60));
    let app = TestApp::configured(store, |b| b.idle_timeout(Duration::from_secs(1))).await;
    let cookie = started(&app).await;
    actix_web::rt::time::sleep(Duration::from_millis(2_100)).await;
    let id = app.store.last_created();
    assert!(app.store.inner.load(&id).await.unwrap().is_some());
    gets_fresh_session(&app, &cookie).await;
}

/// Several cookies with the session cookie's name (tossed from a subdomain, left on an
/// old path): the first that verifies and names a live session is used.
pub async fn the_valid_one_of_several_same_name_cookies_is_used<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let valid = cookie.value();
    let live = app.get("/set/p/k/3", None).await.cookie();
    let live = live.value();
    let gone = app.get("/set/p/k/2", None).await.cookie();
    app.store
        .inner
        .delete(&app.store.last_created())
        .await
        .unwrap();
    let gone = gone.value();
    for (header, value) in [
        (format!("id=garbage; id={valid}"), "1"),
        (format!("id={}; id={valid}", tampered(&cookie).value()), "1"),
        (format!("id={gone}; other=1; id={valid}"), "1"),
        (format!("id={valid}; id=garbage"), "1"),
        // Two live sessions: the first sent wins, whichever it is.
        (format!("id={valid}; id={live}"), "1"),
        (format!("id={live}; id={valid}"), "3"),
        (format!("id={gone}; id={valid}; id={live}"), "1"),
    ] {
        let reply = app.get_with_cookies("/get/p/k", &header).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, value),
            "{header}"
        );
    }
    let five_bad = format!("{}id={valid}", "id=x; ".repeat(5));
    let reply = app.get_with_cookies("/get/p/k", &five_bad).await;
    assert_eq!(reply.body, "none", "at most a few are tried");
}

pub async fn fallback_key_is_accepted_and_resigned<S: SessionStore + Clone>(store: S) {
    let (old, new) = (Key::generate(), Key::generate());
    let store = CountingStore::new(store);
    let before = TestApp::with(store.clone(), old.clone(), |b| b).await;
    let cookie = started(&before).await;

    // A closure cannot capture `old`, so the rotated app gets it through a thread-local.
    OLD_KEY.with(|k| *k.borrow_mut() = Some(old));
    let rotated = TestApp::with(store.clone(), new.clone(), |b| {
        b.fallback_keys(vec![OLD_KEY.with(|k| k.borrow().clone().unwrap())])
    })
    .await;
    let reply = rotated.get("/get/p/k", Some(&cookie)).await;
    assert_eq!(reply.body, "1");
    let resigned = reply.cookie();
    let calls = rotated.store.calls();
    assert_eq!(
        (calls.touches, calls.writes()),
        (1, 1),
        "re-signing only touches: the store confirms the session before its id is re-issued"
    );

    let only_new = TestApp::with(store, new, |b| b).await;
    assert_eq!(value(&only_new, &resigned).await, "1");
    assert_eq!(value(&only_new, &cookie).await, "none");
}

thread_local! {
    static OLD_KEY: std::cell::RefCell<Option<Key>> = const { std::cell::RefCell::new(None) };
}

// 5. Expiry without write traffic.

pub async fn old_cookie_on_read_touches_and_reissues<S: SessionStore + Clone>(store: S) {
    let app = TestApp::configured(CountingStore::new(store), |b| b.refresh_fraction(0.0)).await;
    let cookie = started(&app).await;
    let reply = app.get("/get/p/k", Some(&cookie)).await;
    assert_eq!(reply.body, "1");
    assert!(reply.cookie.is_some(), "the cookie is re-issued");
    let calls = app.store.calls();
    assert_eq!((calls.touches, calls.updates, calls.creates), (1, 0, 0));
}

pub async fn stored_session_expires_after_idle_timeout<S: SessionStore + Clone>(store: S) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.idle_timeout(Duration::from_secs(1))
    })
    .await;
    let cookie = started(&app).await;
    actix_web::rt::time::sleep(Duration::from_millis(2_200)).await;
    let id = app.store.last_created();
    assert!(app.store.inner.load(&id).await.unwrap().is_none());
    assert_eq!(value(&app, &cookie).await, "none");
}

/// An app whose default idle timeout is 1 s and whose every request refreshes, with a
/// session that keeps itself an hour ("keep me signed in"): its cookie and id.
async fn remembered_for_an_hour<S: SessionStore + Clone>(
    store: S,
) -> (TestApp<S>, Cookie<'static>, SessionId) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.idle_timeout(Duration::from_secs(1)).refresh_fraction(0.0)
    })
    .await;
    let kept = app.get("/remember/3600/7200", None).await;
    assert_eq!(kept.status, 200, "{kept:?}");
    let id = app.store.last_created();
    (app, kept.cookie(), id)
}

/// The session `id` ends with the default idle timeout, 1 s, not the hour it had.
async fn ends_within_the_default_idle_timeout<S: SessionStore + Clone>(
    app: &TestApp<S>,
    id: &SessionId,
) {
    actix_web::rt::time::sleep(Duration::from_millis(2_200)).await;
    assert!(
        app.store.inner.load(id).await.unwrap().is_none(),
        "the lifetime the write set, 1 s"
    );
}

/// A read-only request refreshes a "keep me signed in" session (its own idle timeout an
/// hour) while another request clears those timeouts (back to the default, 1 s): the
/// refresh's touch, made with its older copy's hour, is put back to the second, so the
/// session ends as the write said. (It stayed an hour, and so did the older copies of its
/// cookie.)
pub async fn a_refresh_racing_a_write_leaves_the_lifetime_the_write_set<S: SessionStore + Clone>(
    store: S,
) {
    let (app, cookie, id) = remembered_for_an_hour(store).await;
    let (read, cleared) = app
        .interleave_with(
            "/gated/get/p/k",
            &cookie,
            app.get("/clear-timeouts", Some(&cookie)),
        )
        .await;
    assert_eq!((read.status, read.body.as_str()), (200, "1"), "{read:?}");
    assert_eq!(cleared.status, 200, "{cleared:?}");
    ends_within_the_default_idle_timeout(&app, &id).await;
}

/// As above, with the write landing after the refresh read the session and before its
/// touch (a store may send the two over two connections, the read first): the touch is
/// put back all the same. (The read saw the version loaded, and the session stayed an
/// hour.)
pub async fn a_refresh_whose_touch_lands_after_a_racing_write_leaves_the_lifetime_it_set<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let (app, cookie, id) = remembered_for_an_hour(store).await;
    app.store.hold_next_touch_of(id.clone());
    let clear = async {
        app.store.when_held().await;
        let cleared = app.get("/clear-timeouts", Some(&cookie)).await;
        app.store.release();
        cleared
    };
    let (read, cleared) = join(app.get("/get/p/k", Some(&cookie)), clear).await;
    assert_eq!((read.status, read.body.as_str()), (200, "1"), "{read:?}");
    assert_eq!(cleared.status, 200, "{cleared:?}");
    ends_within_the_default_idle_timeout(&app, &id).await;
}

pub async fn absolute_timeout_ends_an_active_session<S: SessionStore + Clone>(store: S) {
    let store = CountingStore::new(store).with_ttl_floor(Duration::from_secs(60));
    let app = TestApp::configured(store, |b| b.absolute_timeout(Duration::from_secs(3))).await;
    let cookie = started(&app).await;
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(value(&app, &cookie).await, "1");
    actix_web::rt::time::sleep(Duration::from_millis(3_600)).await;
    gets_fresh_session(&app, &cookie).await;
}

// 6. renew and purge.

pub async fn renew_moves_data_to_a_new_id<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let old = app.store.last_created();
    let renewed = app.get("/renew", Some(&cookie)).await.cookie();
    assert_ne!(app.store.last_created(), old);
    assert!(app.store.inner.load(&old).await.unwrap().is_none());
    assert_eq!(value(&app, &renewed).await, "1");
    assert_eq!(
        value(&app, &cookie).await,
        "none",
        "the old id stops working"
    );
}

/// A renew (login) starts the session's life: the absolute timeout counts from it.
///
/// Ages are counted in whole seconds, so a sleep of `s` can age a session by `s + 1`: with
/// 4 s, renewing after 2 s and reading 2 s later leaves up to a second for a slow machine
/// at each step, while the first life is surely over.
pub async fn renew_starts_the_absolute_timeout_afresh<S: SessionStore + Clone>(store: S) {
    let store = CountingStore::new(store).with_ttl_floor(Duration::from_secs(60));
    let app = TestApp::configured(store, |b| b.absolute_timeout(Duration::from_secs(4))).await;
    let cookie = started(&app).await;
    actix_web::rt::time::sleep(Duration::from_millis(2_000)).await;
    let renewed = app.get("/renew", Some(&cookie)).await.cookie();
    actix_web::rt::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(
        value(&app, &renewed).await,
        "1",
        "4 s after creation, 2 s after login"
    );
    actix_web::rt::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(value(&app, &renewed).await, "none", "4 s after login");
}

pub async fn purge_deletes_and_removes_cookie<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let id = app.store.last_created();
    let removal = app.get("/purge", Some(&cookie)).await.cookie();
    assert_eq!(removal.value(), "");
    assert_eq!(removal.max_age().map(|d| d.whole_seconds()), Some(0));
    assert!(app.store.inner.load(&id).await.unwrap().is_none());
    assert_eq!(value(&app, &cookie).await, "none");
}

/// A logout whose session is already gone (expired, evicted, signed out elsewhere) still
/// tells the client to drop its cookie.
pub async fn purge_of_a_session_already_gone_removes_the_cookie<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let id = app.store.last_created();
    app.store.inner.delete(&id).await.unwrap();
    let reply = app.get("/purge", Some(&cookie)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let removal = reply.cookie();
    assert_eq!(removal.value(), "");
    assert_eq!(removal.max_age().map(|d| d.whole_seconds()), Some(0));
}

pub async fn purge_then_set_starts_a_new_session<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let old = app.store.last_created();
    let reply = app.get("/purge-then-set/p/other/5", Some(&cookie)).await;
    assert!(app.store.inner.load(&old).await.unwrap().is_none());
    let fresh = reply.cookie();
    assert_eq!(app.get("/get/p/other", Some(&fresh)).await.body, "5");
    assert_eq!(value(&app, &fresh).await, "none", "purged data stays gone");
}

// 7. Limits and bad data.

/// Every response of a request that read the session (a success, an aborted one, a failed
/// commit's) says it varies on `Cookie`, so that a shared cache never hands one browser's
/// page, or its `Set-Cookie`, to another; one that did not read it, or that names `Cookie`
/// or `*` already, is left as it is.
pub async fn a_response_that_read_the_session_varies_on_the_cookie<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| b.max_size(200)).await;
    let cookie = started(&app).await;
    let vary = |path: &'static str, cookie: Option<Cookie<'static>>| {
        let app = &app;
        async move {
            let reply = app.get(path, cookie.as_ref()).await;
            (reply.status, reply.vary)
        }
    };
    let c = Some(cookie);
    assert_eq!(vary("/plain", c.clone()).await, (200, vec![]));
    assert_eq!(
        vary("/get/p/k", c.clone()).await,
        (200, vec!["Cookie".into()])
    );
    assert_eq!(vary("/set/p/k/2", None).await, (200, vec!["Cookie".into()]));
    let aborted = vary("/set-status/500/p/k/3", c.clone()).await;
    assert_eq!(aborted, (500, vec!["Cookie".into()]));
    let refused = vary("/big/p/k/1000", c.clone()).await;
    assert_eq!(refused, (413, vec!["Cookie".into()]));
    // One line: a middleware outside that reads the first and replaces them all (as
    // actix-cors does) keeps it.
    let both = vec!["Accept-Encoding, Cookie".to_owned()];
    assert_eq!(vary("/vary/Accept-Encoding", c.clone()).await, (200, both));
    let unreadable = vary("/vary/caf%C3%A9", c.clone()).await;
    assert_eq!(unreadable, (200, vec!["café".into(), "Cookie".into()]));
    for named in ["*", "cookie", "Accept, Cookie"] {
        let path = format!("/vary/{}", named.replace(' ', "%20"));
        let reply = app.get(&path, c.as_ref()).await;
        assert_eq!(reply.vary, [named], "{path}");
    }
}

/// A response that sets the session cookie is kept out of shared caches: `private`
/// added, `public` and `s-maxage` taken out, the rest kept; `private` or `no-store`
/// already there, or no cookie set, leave it alone.
pub async fn a_response_that_sets_the_cookie_is_private<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let control = |path: String, cookie: Option<Cookie<'static>>| {
        let app = &app;
        async move {
            let reply = app.get(&path, cookie.as_ref()).await;
            (usize::from(reply.cookie.is_some()), reply.cache_control)
        }
    };
    assert_eq!(
        control("/set/p/k/1".into(), None).await,
        (1, vec!["private".into()])
    );
    let public = "public,%20max-age=60,%20s-maxage=600,%20must-revalidate".to_owned();
    assert_eq!(
        control(format!("/cached/{public}"), None).await,
        (1, vec!["private, max-age=60, must-revalidate".into()])
    );
    for kept in ["no-store", "private,%20max-age=5"] {
        let (_, values) = control(format!("/cached/{kept}"), None).await;
        assert_eq!(values, [kept.replace("%20", " ")]);
    }
    // `private="field"` keeps only that field out of shared caches: not enough.
    let qualified = "max-age=60,%20private=%22X-Request-Id%22";
    let (_, values) = control(format!("/cached/{qualified}"), None).await;
    assert_eq!(values, [r#"private, max-age=60, private="X-Request-Id""#]);
    // A line that is not ASCII text stays as it is, with `private` beside it.
    let (_, values) = control("/cached/public,%20caf%C3%A9".into(), None).await;
    assert_eq!(values, ["public, café", "private"]);
    let cookie = started(&app).await;
    let read = control(format!("/cached/{public}"), Some(cookie)).await;
    assert_eq!(read, (0, vec![public.replace("%20", " ")]), "no cookie set");
}

/// A session first loaded after its request ended (by a task the handler left behind)
/// reads as any session does, and writes nothing, nor runs a hook registered then (its
/// abort hook ran as the task let it go).
pub async fn a_session_first_loaded_after_the_request_ended_writes_nothing<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (cookie, _) = log_in(&app, "ada").await;
    app.store.reset();
    app.hooks.take();
    let reply = app.get("/later", Some(&cookie)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.vary.is_empty(), "nothing read by then: {reply:?}");
    let mut log = Vec::new();
    for _ in 0..100 {
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        log.extend(app.hooks.take());
        if !log.is_empty() {
            break;
        }
    }
    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    log.extend(app.hooks.take());
    assert_eq!(log, ["later:ada"]);
    assert_eq!(app.store.calls().writes(), 0);
    assert_eq!(value(&app, &cookie).await, "1");
}

pub async fn oversized_session_is_refused_and_nothing_written<S: SessionStore + Clone>(store: S) {
    let app = TestApp::configured(CountingStore::new(store), |b| b.max_size(200)).await;
    let reply = app.get("/big/p/k/500", None).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(reply.body.contains("200-byte limit"), "{}", reply.body);
    assert!(reply.cookie.is_none());
    assert_eq!(app.store.calls().writes(), 0);

    let cookie = started(&app).await;
    let reply = app.get("/big/p/k/500", Some(&cookie)).await;
    assert_eq!(reply.status, 413);
    assert_eq!(app.store.calls().writes(), 0);
    assert_eq!(value(&app, &cookie).await, "1");
}

pub async fn invalid_names_get_400<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let long = "k".repeat(129);
    for path in [
        "/set/p/bad%01key/1".to_owned(),
        "/set/bad%0Apackage/k/1".to_owned(),
        format!("/set/p/{long}/1"),
    ] {
        let reply = app.get(&path, Some(&cookie)).await;
        assert_eq!(reply.status, 400, "{path}: {reply:?}");
        assert!(reply.body.starts_with("invalid session"), "{}", reply.body);
        assert!(
            !reply.body.contains("bad") && !reply.body.contains("kkk"),
            "the body never echoes the name: {}",
            reply.body
        );
    }
    assert_eq!(app.store.calls().writes(), 0);
}

/// The user bound, the lifetime and flash messages live in packages named
/// `actix-memcache-session.*`: a handler's package name taken from input must not reach
/// them (writing the user's package bound a user without the login's renew).
pub async fn the_crates_own_packages_are_out_of_a_handlers_reach<S: SessionStore + Clone>(
    store: S,
) {
    let (app, cookie) = with_session(store).await;
    for path in [
        "/set/actix-memcache-session.user/user/1",
        "/set/actix-memcache-session.lifetime/idle/1",
        "/get/actix-memcache-session.flash/k",
    ] {
        let reply = app.get(path, Some(&cookie)).await;
        assert_eq!(reply.status, 400, "{path}: {reply:?}");
        assert!(reply.body.contains("kept for this crate"), "{}", reply.body);
    }
    assert_eq!(app.store.calls().writes(), 0);
    assert_eq!(
        app.get("/set/actix-memcache-session/k/1", Some(&cookie))
            .await
            .status,
        200
    );
}

/// A value nested deeper than can be read back is refused at `insert`; the stored session
/// stays as it was (stored, it would have become unreadable: the whole session lost).
/// JSON has no NaN: stored, it became `null` and every later read of the session answered
/// 500. It is refused at `insert` (500, saying the value cannot be stored as JSON), and the
/// session keeps what it had.
pub async fn a_nan_is_refused_at_insert_and_nothing_is_lost<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let reply = app.get("/nan/p/n", Some(&cookie)).await;
    assert_eq!(reply.status, 500, "{reply:?}");
    assert!(
        reply.body.contains("cannot be stored as JSON"),
        "{}",
        reply.body
    );
    assert_eq!(app.store.calls().updates, 0, "nothing written");
    assert_eq!(value(&app, &cookie).await, "1");
    assert_eq!(app.get("/get/p/n", Some(&cookie)).await.body, "none");
}

pub async fn values_too_deep_to_read_back_are_refused<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    assert_eq!(app.get("/deep/p/d/100", Some(&cookie)).await.status, 200);
    let reply = app.get("/deep/p/k/200", Some(&cookie)).await;
    assert_eq!(reply.status, 500, "{reply:?}");
    assert!(reply.cookie.is_none());
    assert_eq!(value(&app, &cookie).await, "1");
    assert_eq!(
        app.store.calls().updates,
        1,
        "only the 100-level value was written"
    );
}

pub async fn undecodable_stored_session_gets_fresh_session<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let id = app.store.last_created();
    let version = app.store.inner.load(&id).await.unwrap().unwrap().version;
    let garbage = b"\x80\x04pickled";
    let written = app
        .store
        .inner
        .update(&id, garbage, version, Duration::from_secs(60));
    assert_eq!(written.await.unwrap(), Update::Updated);
    gets_fresh_session(&app, &cookie).await;
}

/// Another writer stored values this crate cannot build (a number beyond `f64`) or writes
/// differently (spaces, an escape): reading that key is an error, the other keys work, and a
/// commit writes those values back as the bytes they were.
pub async fn a_stored_value_that_cannot_be_read_fails_alone_and_is_kept<S: SessionStore + Clone>(
    store: S,
) {
    let (app, cookie) = with_session(store).await;
    let id = app.store.last_created();
    let stored = app.store.inner.load(&id).await.unwrap().unwrap();
    let text = String::from_utf8(stored.data).unwrap();
    let foreign = r#""bad":1e400,"#;
    let other = r#""other":{"x":[1, "\u00e9"]}"#;
    let edited = text
        .replacen(r#""p":{"#, &format!(r#"{other},"p":{{{foreign}"#), 1)
        .into_bytes();
    let ttl = Duration::from_secs(60);
    let written = app.store.inner.update(&id, &edited, stored.version, ttl);
    assert_eq!(written.await.unwrap(), Update::Updated);

    let bad = app.get("/get/p/bad", Some(&cookie)).await;
    assert_eq!(bad.status, 500, "{bad:?}");
    assert_eq!(bad.body, "a session value does not have the requested type");
    assert_eq!(value(&app, &cookie).await, "1", "the other keys work");
    let set = app.get("/set/p/k/2", Some(&cookie)).await;
    assert_eq!(set.status, 200, "{set:?}");
    let written = app.store.inner.load(&id).await.unwrap().unwrap().data;
    let written = String::from_utf8(written).unwrap();
    assert!(written.contains(foreign), "{written}");
    assert!(written.contains(other), "{written}");
    assert!(written.contains(r#""k":2"#), "{written}");
}

/// A typed package needs every field to build its `T`: one stored value that cannot be read
/// fails `get` and `update` of the package (and keeps the value), and `set` overwrites it.
pub async fn a_typed_package_with_a_value_that_cannot_be_read_fails_until_set<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let (app, cookie) = with_session(store).await;
    let id = app.store.last_created();
    let stored = app.store.inner.load(&id).await.unwrap().unwrap();
    let text = String::from_utf8(stored.data).unwrap();
    let foreign = r#""profile":{"visits":1e400},"#;
    let edited = text.replacen(r#""p":{"#, &format!(r#"{foreign}"p":{{"#), 1);
    let ttl = Duration::from_secs(60);
    let written = app
        .store
        .inner
        .update(&id, edited.as_bytes(), stored.version, ttl);
    assert_eq!(written.await.unwrap(), Update::Updated);

    assert_eq!(app.get("/typed", Some(&cookie)).await.status, 500);
    let update = app.get("/typed/set/name/ada", Some(&cookie)).await;
    assert_eq!(update.status, 500, "{update:?}");
    let kept = app.store.inner.load(&id).await.unwrap().unwrap().data;
    assert!(String::from_utf8(kept).unwrap().contains(foreign));
    let reset = app.get("/typed/reset", Some(&cookie)).await;
    assert_eq!(reset.body, "Changed", "{reset:?}");
    let empty = r#"Profile { name: "", visits: 0, nickname: None }"#;
    assert_eq!(app.get("/typed", Some(&cookie)).await.body, empty);
    assert_eq!(
        value(&app, &cookie).await,
        "1",
        "the other packages are kept"
    );
}

pub async fn packages_are_isolated<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    app.get("/set/shop.cart/k/9", Some(&cookie)).await;
    assert_eq!(value(&app, &cookie).await, "1");
    assert_eq!(app.get("/get/shop.cart/k", Some(&cookie)).await.body, "9");
    app.get("/clear/shop.cart", Some(&cookie)).await;
    assert_eq!(
        app.get("/get/shop.cart/k", Some(&cookie)).await.body,
        "none"
    );
    assert_eq!(value(&app, &cookie).await, "1");
}

pub async fn package_operations<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    app.get("/set/p/a/\"x\"", Some(&cookie)).await;
    assert_eq!(app.get("/keys/p", Some(&cookie)).await.body, "a,k");
    assert_eq!(app.get("/remove/p/a", Some(&cookie)).await.body, "true");
    assert_eq!(app.get("/remove/p/a", Some(&cookie)).await.body, "false");
    assert_eq!(app.get("/keys/p", Some(&cookie)).await.body, "k");
    let reply: Reply = app.get("/keys/empty", Some(&cookie)).await;
    assert_eq!(reply.body, "");
}

// 8. Taking part in the unit of work.

pub async fn typed_package_round_trips_field_by_field<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let empty = r#"Profile { name: "", visits: 0, nickname: None }"#;
    assert_eq!(app.get("/typed", Some(&cookie)).await.body, empty);
    let reply = app.get("/typed/set/visits/0", Some(&cookie)).await;
    assert_eq!(
        reply.body, "Unchanged",
        "a default field not stored is not a change"
    );
    assert_eq!(app.store.calls().writes(), 0);
    assert_eq!(
        app.get("/typed/set/name/ada", Some(&cookie)).await.body,
        "Changed"
    );
    assert_eq!(
        app.get("/typed/set/nickname/a", Some(&cookie)).await.status,
        200
    );
    assert_eq!(app.store.calls().updates, 2);
    assert_eq!(
        app.get("/get/profile/name", Some(&cookie)).await.body,
        r#""ada""#
    );
    assert_eq!(
        app.get("/keys/profile", Some(&cookie)).await.body,
        "name,nickname"
    );
    let same = app.get("/typed/set/name/ada", Some(&cookie)).await;
    assert_eq!(same.body, "Unchanged");
    // `nickname` is skipped when `None`: setting it so removes the key.
    app.get("/typed/set/nickname/none", Some(&cookie)).await;
    assert_eq!(app.get("/keys/profile", Some(&cookie)).await.body, "name");
    assert_eq!(
        app.get("/typed", Some(&cookie)).await.body,
        r#"Profile { name: "ada", visits: 0, nickname: None }"#
    );
    assert_eq!(app.store.calls().updates, 3);
    assert_eq!(value(&app, &cookie).await, "1", "other packages untouched");
}

/// A `HashMap` field is a JSON object, compared whatever order a map built anew writes its
/// entries in: setting the same entries again is no change, and writes nothing.
pub async fn a_typed_hash_map_set_again_with_its_entries_is_no_change<S: SessionStore + Clone>(
    store: S,
) {
    let (app, cookie) = with_session(store).await;
    assert_eq!(
        app.get("/typed/labels", Some(&cookie)).await.body,
        "Changed"
    );
    let updates = app.store.calls().updates;
    for _ in 0..4 {
        let again = app.get("/typed/labels", Some(&cookie)).await;
        assert_eq!(again.body, "Unchanged");
    }
    assert_eq!(app.store.calls().updates, updates);
}

pub async fn typed_fields_changed_by_concurrent_requests_both_land<S: SessionStore + Clone>(
    store: S,
) {
    let (app, cookie) = with_session(store).await;
    let (a, b) = app
        .interleave("/gated/typed/set/name/ada", "/typed/set/visits/7", &cookie)
        .await;
    assert_eq!((a.status, b.status), (200, 200), "{a:?} {b:?}");
    assert_eq!(
        app.get("/typed", Some(&cookie)).await.body,
        r#"Profile { name: "ada", visits: 7, nickname: None }"#
    );
    let (a, b) = app
        .interleave("/gated/typed/set/name/bob", "/typed/set/name/eve", &cookie)
        .await;
    assert_eq!(
        (a.status, b.status),
        (409, 200),
        "the same field: {a:?} {b:?}"
    );
    assert!(app.get("/typed", Some(&cookie)).await.body.contains("eve"));
}

pub async fn typed_package_that_does_not_fit_is_an_error_and_keeps_the_data<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let (app, cookie) = with_session(store).await;
    app.get("/typed/set/name/ada", Some(&cookie)).await;
    app.store.reset();
    for path in ["/typed/misfit", "/typed/not-an-object"] {
        let reply = app.get(path, Some(&cookie)).await;
        assert_eq!(reply.status, 500, "{path}: {reply:?}");
        assert_eq!(
            reply.body,
            "a session package does not fit its declared type"
        );
        assert!(reply.cookie.is_none());
    }
    assert_eq!(app.store.calls().writes(), 0);
    assert!(app.get("/typed", Some(&cookie)).await.body.contains("ada"));
}

pub async fn rollback_to_a_savepoint_writes_only_what_came_before<S: SessionStore + Clone>(
    store: S,
) {
    let (app, cookie) = with_session(store).await;
    let reply = app.get("/savepoints", Some(&cookie)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, "a,b,k a,e,k refused=true");
    assert_eq!(app.store.calls().updates, 1);
    assert_eq!(app.get("/keys/p", Some(&cookie)).await.body, "a,e,k");
    assert_eq!(
        app.hooks.take(),
        Vec::<String>::new(),
        "a hook registered after the savepoint is rolled back with it"
    );
}

pub async fn rollback_undoes_a_purge<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let reply = app.get("/savepoint/purge", Some(&cookie)).await;
    assert_eq!(reply.body, "Purged Unchanged");
    assert!(reply.cookie.is_none(), "{reply:?}");
    assert_eq!(app.store.calls().writes(), 0);
    assert_eq!(value(&app, &cookie).await, "1");
}

pub async fn abort_with_200_writes_nothing<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let reply = app.get("/abort/p/k/2", Some(&cookie)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "Aborted"));
    assert!(reply.cookie.is_none(), "no cookie change: {reply:?}");
    let reply = app.get("/abort/p/k/2", None).await;
    assert!(reply.cookie.is_none(), "no new session either");
    assert_eq!(app.store.calls().writes(), 0);
    assert_eq!(value(&app, &cookie).await, "1");
}

/// Each way a request ends runs exactly the hooks of its branch, once; a commit hook
/// runs after the store answered, and a failing or panicking hook changes nothing.
pub async fn hooks_run_once_on_the_branch_taken<S: SessionStore + Clone>(store: S) {
    let app = TestApp::configured(CountingStore::new(store), |b| b.max_size(1000)).await;
    let cookie = started(&app).await;
    let reply = app.get("/hooks/ok", Some(&cookie)).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "ok"),
        "{reply:?}"
    );
    assert_eq!(app.hooks.take(), ["commit:ok:1"], "after the update landed");
    let reply = app.get("/hooks/new", None).await;
    assert_eq!(reply.status, 200);
    assert!(reply.cookie.is_some(), "the stored change keeps its cookie");
    assert_eq!(app.hooks.take(), ["commit:new:2"]);
    for (mode, status) in [
        ("status", 500),
        ("error", 400),
        ("abort", 200),
        ("too-large", 413),
    ] {
        let reply = app.get(&format!("/hooks/{mode}"), Some(&cookie)).await;
        assert_eq!(reply.status, status, "{mode}: {reply:?}");
        assert_eq!(app.hooks.take(), [format!("abort:{mode}")], "{mode}");
    }
    let reply = app.get("/inner-error/inner", Some(&cookie)).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(app.hooks.take(), ["abort:inner"]);
    let reply = app.get("/hooks/read", Some(&cookie)).await;
    assert_eq!((reply.status, &reply.cookie), (200, &None), "{reply:?}");
    assert_eq!(
        app.hooks.take(),
        ["commit:read:2"],
        "a request that changed nothing runs its hooks too"
    );
    assert_eq!(app.store.calls().writes(), 2);
    assert_eq!(
        app.get("/get/p/hooked", Some(&cookie)).await.body,
        r#""ok""#
    );
}

pub async fn handler_panic_runs_the_abort_hooks<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let outcome = AssertUnwindSafe(app.get("/hooks/panic", Some(&cookie)))
        .catch_unwind()
        .await;
    assert!(outcome.is_err(), "the handler's panic goes on");
    assert_eq!(app.hooks.take(), ["abort:panic"]);
    assert_eq!(app.store.calls().writes(), 0);
}

pub async fn flash_messages_are_shown_once<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    app.get("/flash/send/info/saved", Some(&cookie)).await;
    app.get("/flash/send/error/oops", Some(&cookie)).await;
    let reply = app.get("/flash/show-and-send/next", Some(&cookie)).await;
    assert_eq!(
        reply.body, "info:saved|error:oops / info:saved|error:oops",
        "oldest first, not the one sent now, the same when read twice"
    );
    assert_eq!(
        app.get("/flash/show", Some(&cookie)).await.body,
        "info:next"
    );
    assert_eq!(app.get("/flash/show", Some(&cookie)).await.body, "");
    assert_eq!(value(&app, &cookie).await, "1");
}

pub async fn flash_read_by_a_failed_request_is_still_there<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    app.get("/flash/send/warning/check", Some(&cookie)).await;
    let failed = app.get("/flash/show-then-500", Some(&cookie)).await;
    assert_eq!(
        (failed.status, failed.body.as_str()),
        (500, "warning:check")
    );
    assert_eq!(
        app.get("/flash/show", Some(&cookie)).await.body,
        "warning:check"
    );
    assert_eq!(app.get("/flash/show", Some(&cookie)).await.body, "");
}

/// Showing messages and sending one touch different keys: both land. Two requests
/// showing the same message both succeed (the message is gone after either).
pub async fn flash_sent_while_another_request_shows_older_ones_both_land<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let (app, cookie) = with_session(store).await;
    app.get("/flash/send/info/old", Some(&cookie)).await;
    let (shown, sent) = app
        .interleave("/gated/flash/show", "/flash/send/info/new", &cookie)
        .await;
    assert_eq!(
        (shown.status, sent.status),
        (200, 200),
        "{shown:?} {sent:?}"
    );
    assert_eq!(shown.body, "info:old");
    let (a, b) = app
        .interleave("/gated/flash/show", "/flash/show", &cookie)
        .await;
    assert_eq!((a.status, b.status), (200, 200), "{a:?} {b:?}");
    assert_eq!((a.body.as_str(), b.body.as_str()), ("info:new", "info:new"));
    assert_eq!(app.get("/flash/show", Some(&cookie)).await.body, "");
}

/// Messages sent one per request and never shown: the session keeps the newest 32
/// (`send_flash`), so a loop of sends cannot grow it without bound.
pub async fn unread_flashes_sent_by_many_requests_keep_the_newest_32<S: SessionStore + Clone>(
    store: S,
) {
    let (app, cookie) = with_session(store).await;
    for n in 0..40 {
        let reply = app
            .get(&format!("/flash/send/info/{n}"), Some(&cookie))
            .await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    let newest: Vec<String> = (8..40).map(|n| format!("info:{n}")).collect();
    assert_eq!(
        app.get("/flash/show", Some(&cookie)).await.body,
        newest.join("|")
    );
    assert_eq!(app.get("/flash/show", Some(&cookie)).await.body, "");
}

// 9. Sessions outside a request.

pub async fn session_id_is_none_until_stored<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let reply = app.get("/set-and-id/p/k/1", None).await;
    assert_eq!(
        reply.body, "none",
        "a new session has no id before its commit"
    );
    let id = app.store.last_created();
    let cookie = reply.cookie();
    assert_eq!(app.get("/id", Some(&cookie)).await.body, id.as_str());
    assert_eq!(app.get("/id", None).await.body, "none");
    let renewed = app.get("/renew", Some(&cookie)).await.cookie();
    assert_ne!(app.get("/id", Some(&renewed)).await.body, id.as_str());
}

/// Opening a "keep me signed in" or bound session by id and committing it unchanged writes
/// nothing: the container has no cookie to re-issue, so it must not touch the session (and
/// extend its life) as a request with an old cookie would.
pub async fn container_commit_of_an_unchanged_kept_or_bound_session_writes_nothing<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let kept = app.get("/remember/600/3600", None).await;
    assert_eq!(kept.status, 200, "{kept:?}");
    let kept = app.store.last_created();
    let (_, bound) = log_in(&app, "ada").await;
    for id in [kept, bound] {
        let open = app.sessions.open(&id).await.unwrap().expect("live");
        app.store.reset();
        open.commit().await.unwrap();
        assert_eq!(app.store.calls().writes(), 0, "{:?}", app.store.calls());
    }
}

pub async fn container_reads_changes_and_purges_by_id<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let id = app.store.last_created();
    let id: SessionId = id.as_str().parse().unwrap();
    let open = app
        .sessions
        .open(&id)
        .await
        .unwrap()
        .expect("the session is live");
    assert_eq!(open.package("p").get::<u32>("k").unwrap(), Some(1));
    assert_eq!(open.id(), Some(id.clone()));
    open.package("p").insert("note", "from an admin").unwrap();
    open.commit().await.unwrap();
    let reply = app.get("/get/p/note", Some(&cookie)).await;
    assert_eq!(reply.body, r#""from an admin""#);
    assert!(reply.cookie.is_none(), "the client's cookie is still good");

    let unchanged = app.sessions.open(&id).await.unwrap().unwrap();
    app.store.reset();
    unchanged.commit().await.unwrap();
    assert_eq!(
        app.store.calls().writes(),
        0,
        "nothing changed, nothing written"
    );
    let dropped = app.sessions.open(&id).await.unwrap().unwrap();
    dropped.package("p").insert("k", 2).unwrap();
    drop(dropped);
    assert_eq!(
        value(&app, &cookie).await,
        "1",
        "dropped without commit: not written"
    );

    app.sessions.purge(&id).await.unwrap();
    assert!(app.sessions.open(&id).await.unwrap().is_none());
    assert_eq!(value(&app, &cookie).await, "none");
    app.sessions.purge(&id).await.unwrap();
    let unknown = SessionId::generate().unwrap();
    assert!(app.sessions.open(&unknown).await.unwrap().is_none());

    let cookie = started(&app).await;
    assert_eq!(
        app.get("/container/purge-own", Some(&cookie)).await.body,
        "purged"
    );
    assert_eq!(value(&app, &cookie).await, "none");
}

/// A request loads, the container changes another key and commits, the request commits:
/// both land. Then the other way round: the container opens first and commits last.
pub async fn container_change_racing_a_request_change_to_another_key_both_land<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let (app, cookie) = with_session(store).await;
    let id = app.store.last_created();
    let container = async {
        let open = app.sessions.open(&id).await.unwrap().unwrap();
        open.package("p").insert("b", 20).unwrap();
        open.commit().await
    };
    let (request, committed) = app
        .interleave_with("/gated/set/p/a/10", &cookie, container)
        .await;
    assert_eq!(request.status, 200, "{request:?}");
    committed.unwrap();
    assert_eq!(app.get("/get/p/a", Some(&cookie)).await.body, "10");
    assert_eq!(app.get("/get/p/b", Some(&cookie)).await.body, "20");

    let open = app.sessions.open(&id).await.unwrap().unwrap();
    assert_eq!(app.get("/set/p/c/30", Some(&cookie)).await.status, 200);
    open.package("p").insert("d", 40).unwrap();
    open.commit().await.unwrap();
    assert_eq!(app.get("/keys/p", Some(&cookie)).await.body, "a,b,c,d,k");
    assert_eq!(app.get("/get/p/c", Some(&cookie)).await.body, "30");
}

/// A renew of an anonymous session racing its binding through the container (which does
/// not renew): the renew moved no line of the user's roster, so its new id, had it taken
/// the binding over, was signed in but listed nowhere, and the next listing signed it out
/// with its data. It answers 409 instead; the binding stands, listed, on the old id.
pub async fn a_renew_racing_a_binding_through_the_container_is_409<S: SessionStore + Clone>(
    store: S,
) {
    let (app, cookie) = with_session(store).await;
    let id = app.store.last_created();
    let container = async {
        let open = app.sessions.open(&id).await.unwrap().unwrap();
        open.bind_user("ada").unwrap();
        open.commit().await
    };
    let (request, committed) = app
        .interleave_with("/gated/renew", &cookie, container)
        .await;
    committed.unwrap();
    assert_eq!(request.status, 409, "{request:?}");
    assert_eq!(
        app.sessions.of_user("ada").await.unwrap().len(),
        1,
        "listed"
    );
    assert_eq!(whoami(&app, &cookie).await, "ada");
    assert_eq!(
        app.sessions.of_user("ada").await.unwrap().len(),
        1,
        "still listed"
    );
    assert_eq!(value(&app, &cookie).await, "1", "its data kept");
}

pub async fn container_change_to_the_same_key_as_a_request_conflicts<S: SessionStore + Clone>(
    store: S,
) {
    let (app, cookie) = with_session(store).await;
    let id = app.store.last_created();
    let open = app.sessions.open(&id).await.unwrap().unwrap();
    assert_eq!(app.get("/set/p/k/2", Some(&cookie)).await.status, 200);
    open.package("p").insert("k", 3).unwrap();
    assert!(matches!(open.commit().await, Err(SessionError::Conflict)));
    assert_eq!(value(&app, &cookie).await, "2", "first committer wins");
}

/// `OpenSession::commit` dropped while its after-commit hook runs (a caller's timeout or
/// `select!`): the change is stored and the hook still runs to its end, once, as a
/// request's does when its client goes away. (It was dropped with the future: the hook
/// cut short, and the abort hooks not run either.)
pub async fn container_commit_dropped_midway_still_stores_and_runs_its_hooks<
    S: SessionStore + Clone,
>(
    store: S,
) {
    use std::cell::RefCell;
    use std::rc::Rc;
    let (app, cookie) = with_session(store).await;
    let id = app.store.last_created();
    let open = app.sessions.open(&id).await.unwrap().unwrap();
    open.package("p").insert("k", 2).unwrap();
    let log: Rc<RefCell<Vec<&str>>> = Rc::default();
    let go = Rc::new(tokio::sync::Notify::new());
    let (hook_log, hook_go) = (Rc::clone(&log), Rc::clone(&go));
    open.after_commit(move || async move {
        hook_log.borrow_mut().push("stored");
        hook_go.notified().await;
        hook_log.borrow_mut().push("mail sent");
        Ok::<_, std::convert::Infallible>(())
    });
    let aborted = Rc::clone(&log);
    open.after_abort(move || async move {
        aborted.borrow_mut().push("aborted");
        Ok::<_, std::convert::Infallible>(())
    });
    let reached = async {
        while !log.borrow().contains(&"stored") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let commit = Box::pin(open.commit());
    match futures_util::future::select(commit, Box::pin(reached)).await {
        futures_util::future::Either::Right(((), commit)) => drop(commit),
        futures_util::future::Either::Left((done, _)) => panic!("the hook held: {done:?}"),
    }
    go.notify_one();
    for _ in 0..200 {
        if log.borrow().len() > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(*log.borrow(), ["stored", "mail sent"]);
    assert_eq!(value(&app, &cookie).await, "2");
}

/// A format-2 cookie: it carries the session's own idle timeout.
const FORMAT_2_CHARS: usize = 82;

pub async fn remember_me_outlives_the_default_idle_timeout<S: SessionStore + Clone>(store: S) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.idle_timeout(Duration::from_secs(1))
    })
    .await;
    let normal = started(&app).await;
    let normal_id = app.store.last_created();
    assert_eq!(normal.max_age(), None, "a session cookie by default");
    let reply = app.get("/remember/30/60", None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let remembered = reply.cookie();
    assert_eq!(remembered.value().len(), FORMAT_2_CHARS);
    assert_eq!(
        remembered.max_age(),
        Some(actix_web::cookie::time::Duration::seconds(30))
    );
    let remembered_id = app.store.last_created();

    actix_web::rt::time::sleep(Duration::from_millis(2_200)).await;
    assert!(app.store.inner.load(&normal_id).await.unwrap().is_none());
    assert_eq!(value(&app, &normal).await, "none");
    assert!(app
        .store
        .inner
        .load(&remembered_id)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        value(&app, &remembered).await,
        "1",
        "kept past the default idle timeout"
    );
}

pub async fn own_timeouts_are_capped_by_the_maximum<S: SessionStore + Clone>(store: S) {
    // The store keeps entries a minute: only the cap can end the session early.
    let store = CountingStore::new(store).with_ttl_floor(Duration::from_secs(60));
    let app = TestApp::configured(store, |b| b.max_session_lifetime(Duration::from_secs(2))).await;
    let reply = app.get("/remember/3600/86400", None).await;
    let cookie = reply.cookie();
    assert_eq!(
        cookie.max_age(),
        Some(actix_web::cookie::time::Duration::seconds(2))
    );
    assert_eq!(value(&app, &cookie).await, "1");
    actix_web::rt::time::sleep(Duration::from_millis(3_200)).await;
    assert_eq!(
        value(&app, &cookie).await,
        "none",
        "ended by the cap, not after an hour"
    );
}

pub async fn own_timeouts_set_without_a_login_reissue_the_cookie<S: SessionStore + Clone>(
    store: S,
) {
    let (app, cookie) = with_session(store).await;
    let reply = app.get("/timeouts/600/3600", Some(&cookie)).await;
    assert_eq!(reply.body, "Changed");
    let reissued = reply.cookie();
    assert_eq!(reissued.value().len(), FORMAT_2_CHARS);
    assert_eq!(app.store.calls().updates, 1);
    let again = app.get("/timeouts/600/3600", Some(&reissued)).await;
    assert_eq!(again.body, "Unchanged");
    assert!(again.cookie.is_none(), "the cookie already carries them");
    assert_eq!(value(&app, &reissued).await, "1");
    assert_eq!(
        value(&app, &cookie).await,
        "1",
        "the old cookie still works"
    );
}

/// "Keep me signed in" turned off: the session lives by the middleware's timeouts again,
/// and its cookie, re-issued, is a browser-session cookie again.
pub async fn own_timeouts_can_be_cleared<S: SessionStore + Clone>(store: S) {
    let (app, cookie) = with_session(store).await;
    let kept = app.get("/timeouts/600/3600", Some(&cookie)).await.cookie();
    assert!(kept.max_age().is_some(), "persistent: {kept}");
    let reply = app.get("/clear-timeouts", Some(&kept)).await;
    assert_eq!(reply.body, "Changed", "{reply:?}");
    let cleared = reply.cookie();
    assert_ne!(cleared.value().len(), FORMAT_2_CHARS, "{cleared}");
    assert!(
        cleared.max_age().is_none(),
        "a session cookie again: {cleared}"
    );
    assert_eq!(value(&app, &cleared).await, "1");
    let again = app.get("/clear-timeouts", Some(&cleared)).await;
    assert_eq!(again.body, "Unchanged", "nothing left to clear");
}

// 9. Sessions outside a request: sign out everywhere.

/// A format-3 cookie: it carries the hidden hint of a bound session's user.
const FORMAT_3_CHARS: usize = 103;

/// Logs `user` in on a fresh client; the session's cookie and id.
async fn log_in<S: SessionStore + Clone>(
    app: &TestApp<S>,
    user: &str,
) -> (Cookie<'static>, SessionId) {
    let reply = app.get(&format!("/login/{user}"), None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let cookie = reply.cookie();
    assert_eq!(cookie.value().len(), FORMAT_3_CHARS, "{cookie}");
    (cookie, app.store.last_created())
}

async fn whoami<S: SessionStore + Clone>(app: &TestApp<S>, cookie: &Cookie<'_>) -> String {
    let reply = app.get("/whoami", Some(cookie)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body
}

/// Three sessions of ada and one of bob, each signed in.
async fn three_and_one<S: SessionStore + Clone>(
    app: &TestApp<S>,
) -> (Vec<(Cookie<'static>, SessionId)>, Cookie<'static>) {
    let mut ada = Vec::new();
    for _ in 0..3 {
        ada.push(log_in(app, "ada").await);
    }
    let (bob, _) = log_in(app, "bob").await;
    for (cookie, _) in &ada {
        assert_eq!(whoami(app, cookie).await, "ada");
    }
    assert_eq!(whoami(app, &bob).await, "bob");
    (ada, bob)
}

pub async fn sign_out_everywhere_ends_every_session_of_the_user_and_no_other<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (ada, bob) = three_and_one(&app).await;
    let reply = app.get("/sign-out-everywhere", Some(&ada[0].0)).await;
    assert_eq!(reply.body, "Purged");
    assert_eq!(
        reply.cookie().value(),
        "",
        "this session's cookie is removed"
    );
    assert!(app.store.inner.load(&ada[0].1).await.unwrap().is_none());
    for (cookie, id) in &ada[1..] {
        let reply = app.get("/whoami", Some(cookie)).await;
        assert_eq!(reply.body, "none", "signed out");
        assert_eq!(reply.cookie().value(), "", "and told to drop the cookie");
        assert!(
            app.store.inner.load(id).await.unwrap().is_none(),
            "the signed-out session is removed"
        );
    }
    assert_eq!(value(&app, &ada[1].0).await, "none", "no data either");
    assert_eq!(
        whoami(&app, &bob).await,
        "bob",
        "another user stays signed in"
    );
    let (again, _) = log_in(&app, "ada").await;
    assert_eq!(whoami(&app, &again).await, "ada", "a new login works");
    assert_eq!(
        whoami(&app, &ada[2].0).await,
        "none",
        "the old ones stay out"
    );
}

/// The user's generation item lives as long as the longest session: with an absolute
/// timeout of `Duration::MAX` that sum overflowed (a panic), and past January 2038
/// memcached takes the expiry as already past (every login signed out at once).
pub async fn a_login_under_an_endless_absolute_timeout_stays_signed_in<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.absolute_timeout(Duration::MAX)
    })
    .await;
    let (cookie, _) = log_in(&app, "ada").await;
    assert_eq!(whoami(&app, &cookie).await, "ada");
    assert_eq!(value(&app, &cookie).await, "1");
}

pub async fn sign_out_everywhere_from_the_container<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (ada, bob) = three_and_one(&app).await;
    app.sessions.sign_out_everywhere("ada").await.unwrap();
    assert!(
        app.sessions.open(&ada[0].1).await.unwrap().is_none(),
        "the container does not open a signed-out session"
    );
    for (cookie, _) in &ada {
        assert_eq!(whoami(&app, cookie).await, "none");
    }
    assert_eq!(whoami(&app, &bob).await, "bob");
    app.sessions.sign_out_everywhere("nobody").await.unwrap();
}

/// memcached may evict the user's item under memory pressure: the user is then signed
/// out, never left signed in.
pub async fn an_evicted_generation_item_signs_the_user_out<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (ada, bob) = three_and_one(&app).await;
    let item = app.generation_item("ada");
    assert!(
        app.store.inner.load(&item).await.unwrap().is_some(),
        "the derivation is as documented"
    );
    app.store.inner.delete(&item).await.unwrap();
    for (cookie, _) in &ada {
        assert_eq!(whoami(&app, cookie).await, "none");
    }
    assert_eq!(whoami(&app, &bob).await, "bob");
}

/// Two apps over one store with every default (cookie name, key prefix) but their own keys:
/// the same user id in each is not the same user, and signing it out of one leaves the
/// other alone.
pub async fn two_apps_sharing_a_store_keep_their_users_apart<S: SessionStore + Clone>(store: S) {
    let one = TestApp::new(CountingStore::new(store.clone())).await;
    let other = TestApp::new(CountingStore::new(store)).await;
    let (in_one, _) = log_in(&one, "ada").await;
    let (in_other, _) = log_in(&other, "ada").await;
    one.sessions.sign_out_everywhere("ada").await.unwrap();
    assert_eq!(whoami(&one, &in_one).await, "none");
    assert_eq!(
        whoami(&other, &in_other).await,
        "ada",
        "the other app's ada"
    );
}

/// An app signing with a key of 32 `OLD` bytes, and the same app after a rotation to a new
/// key with the old one kept as a fallback: both over `store`.
async fn before_and_after_a_rotation<S: SessionStore + Clone, const OLD: u8>(
    store: S,
) -> (TestApp<S>, TestApp<S>) {
    let old = Key::try_from(&[OLD; 32][..]).unwrap();
    let before = TestApp::with(CountingStore::new(store.clone()), old, |b| b).await;
    let after = TestApp::with(CountingStore::new(store), Key::generate(), |b| {
        b.fallback_keys(vec![Key::try_from(&[OLD; 32][..]).unwrap()])
    })
    .await;
    (before, after)
}

/// The key a session was bound under is rotated out (kept as a fallback): the binding
/// holds, and a sign-out everywhere ends the sessions bound under either key.
pub async fn a_rotated_key_keeps_every_binding_and_a_sign_out_ends_them_all<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let (before, after) = before_and_after_a_rotation::<_, 7>(store).await;
    let (bound_before, _) = log_in(&before, "ada").await;
    let reply = after.get("/whoami", Some(&bound_before)).await;
    assert_eq!(reply.body, "ada", "the binding holds across the rotation");
    let (bound_after, _) = log_in(&after, "ada").await;
    after.sessions.sign_out_everywhere("ada").await.unwrap();
    assert_eq!(whoami(&after, &bound_before).await, "none");
    assert_eq!(whoami(&after, &bound_after).await, "none");
}

/// After a key rotation, a user's sessions are bound under the old key's item and the new
/// key's: a sign-out asked in a request (from a session under either key) ends both, as
/// the container's does.
pub async fn a_sign_out_in_a_request_ends_the_bindings_of_every_key<S: SessionStore + Clone>(
    store: S,
) {
    for (route, from_old) in [
        ("/sign-out-everywhere", false),
        ("/sign-out-everywhere", true),
        ("/sign-out-others", false),
        ("/sign-out-others", true),
    ] {
        let (before, after) = before_and_after_a_rotation::<_, 9>(store.clone()).await;
        let (bound_before, _) = log_in(&before, "ada").await;
        let (bound_after, _) = log_in(&after, "ada").await;
        let (asking, other) = if from_old {
            (&bound_before, &bound_after)
        } else {
            (&bound_after, &bound_before)
        };
        let reply = after.get(route, Some(asking)).await;
        assert_eq!(reply.status, 200, "{route} from the old key's: {from_old}");
        assert_eq!(
            whoami(&after, other).await,
            "none",
            "{route} from the old key's session: {from_old}"
        );
        let kept = if route == "/sign-out-others" {
            "ada"
        } else {
            "none"
        };
        let asking = reply.cookie.clone().unwrap_or_else(|| asking.clone());
        assert_eq!(whoami(&after, &asking).await, kept, "{route}: {from_old}");
        after.sessions.sign_out_everywhere("ada").await.unwrap();
    }
    // A session signed out while its request ran ends nobody, under either key: a login
    // that came after stays signed in, in the other key's item, which it cannot tell from a
    // session that signed this one out: 409.
    let (before, after) = before_and_after_a_rotation::<_, 9>(store).await;
    let (revoked, _) = log_in(&before, "ada").await;
    let (reply, later) = after
        .interleave_with("/gated/sign-out-everywhere", &revoked, async {
            after.sessions.sign_out_everywhere("ada").await.unwrap();
            log_in(&after, "ada").await
        })
        .await;
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(reply.cookie.is_none(), "{reply:?}");
    assert_eq!(
        whoami(&after, &later.0).await,
        "ada",
        "the later login stays"
    );
}

/// A logout helper that purges, and a sign-out asked before or after it in one request:
/// whichever order, the user's other sessions are signed out, this one ends with a removal
/// cookie, and nothing new is stored.
pub async fn a_purge_and_a_sign_out_in_either_order_end_the_others_and_this_one<
    S: SessionStore + Clone,
>(
    store: S,
) {
    for route in [
        "/purge-then-sign-out-everywhere",
        "/sign-out-others-then-purge",
    ] {
        let app = TestApp::new(CountingStore::new(store.clone())).await;
        let (ada, bob) = three_and_one(&app).await;
        let creates = app.store.calls().creates;
        let reply = app.get(route, Some(&ada[0].0)).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "Purged"),
            "{route}"
        );
        assert_eq!(reply.cookie().value(), "", "{route}: a removal cookie");
        assert_eq!(
            app.store.calls().creates,
            creates,
            "{route}: nothing stored"
        );
        for (cookie, _) in &ada {
            assert_eq!(whoami(&app, cookie).await, "none", "{route}");
        }
        assert_eq!(whoami(&app, &bob).await, "bob", "{route}");
    }
}

/// A browser holding a cookie of a session signed out since (on a more specific path, say)
/// and, after it, its new login's: the live one is used, and no removal cookie (which
/// would end the live one's, of the same name) is sent.
pub async fn a_signed_out_cookie_sent_first_does_not_hide_a_live_one<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (signed_out, _) = log_in(&app, "ada").await;
    app.sessions.sign_out_everywhere("ada").await.unwrap();
    let (live, _) = log_in(&app, "ada").await;
    let both = format!("id={}; id={}", signed_out.value(), live.value());
    let reply = app.get_with_cookies("/whoami", &both).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "ada"),
        "{reply:?}"
    );
    assert!(reply.cookie.is_none(), "{reply:?}");
    // Alone, it is signed out, and told so.
    let reply = app.get("/whoami", Some(&signed_out)).await;
    assert_eq!(reply.body, "none");
    assert_eq!(reply.cookie().value(), "", "a removal cookie");
}

/// `sign_out_other_sessions()`, `purge()`, then a login, in one request: the new session
/// is a login of its own (listed, signed out with its user), not the holder of the entry
/// the purged session had, whoever logs in.
pub async fn a_login_after_a_sign_out_of_the_others_and_a_purge_is_a_login_of_its_own<
    S: SessionStore + Clone,
>(
    store: S,
) {
    for user in ["bob", "ada"] {
        let app = TestApp::new(CountingStore::new(store.clone())).await;
        let (ada, _) = three_and_one(&app).await;
        let route = format!("/sign-out-others-purge-bind/{user}");
        let reply = app.get(&route, Some(&ada[0].0)).await;
        assert_eq!(reply.status, 200, "{user}: {reply:?}");
        let new = reply.cookie();
        assert_eq!(whoami(&app, &new).await, user);
        for (cookie, _) in &ada {
            assert_eq!(whoami(&app, cookie).await, "none", "{user}");
        }
        // Listed as its user's: a listing (which prunes dead entries) keeps it.
        let listed = app.sessions.of_user(user).await.unwrap();
        assert!(!listed.is_empty(), "{user}: listed");
        assert_eq!(whoami(&app, &new).await, user, "{user}: after a listing");
        app.sessions.sign_out_everywhere(user).await.unwrap();
        assert_eq!(
            whoami(&app, &new).await,
            "none",
            "{user}: signed out with its user"
        );
    }
}

/// A sign-out from a session bound under the old key ends the new key's item only while
/// that session is signed in: an admin's sign-out and a new login landing between its look
/// and its delete leave that login signed in (and the item it lists itself in standing:
/// 409, as for a session that signed this one out).
pub async fn a_cross_key_sign_out_spares_a_login_after_a_revocation<S: SessionStore + Clone>(
    store: S,
) {
    const NEW: [u8; 32] = [11; 32];
    let old = Key::try_from(&[10; 32][..]).unwrap();
    let before = TestApp::with(CountingStore::new(store.clone()), old, |b| b).await;
    let (stale, _) = log_in(&before, "ada").await;
    let after = TestApp::with(
        CountingStore::new(store),
        Key::try_from(&NEW[..]).unwrap(),
        |b| b.fallback_keys(vec![Key::try_from(&[10; 32][..]).unwrap()]),
    )
    .await;
    log_in(&after, "ada").await;
    after
        .store
        .hold_next_write_of(crate::support::generation_item(&NEW, "ada"));
    let meanwhile = async {
        after.store.when_held().await;
        after.sessions.sign_out_everywhere("ada").await.unwrap();
        let later = log_in(&after, "ada").await;
        after.store.release();
        later
    };
    let (reply, (later, _)) =
        join(after.get("/sign-out-everywhere", Some(&stale)), meanwhile).await;
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(reply.cookie.is_none(), "{reply:?}");
    assert_eq!(whoami(&after, &later).await, "ada", "the later login stays");
    assert_eq!(whoami(&after, &stale).await, "none");
}

pub async fn sign_out_of_other_sessions_keeps_this_one<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (ada, bob) = three_and_one(&app).await;
    let reply = app.get("/sign-out-others", Some(&ada[0].0)).await;
    assert_eq!(reply.body, "Changed");
    assert!(reply.cookie.is_none(), "the cookie is still good");
    assert_eq!(whoami(&app, &ada[0].0).await, "ada", "this one stays");
    assert_eq!(value(&app, &ada[0].0).await, "1");
    for (cookie, _) in &ada[1..] {
        assert_eq!(whoami(&app, cookie).await, "none");
    }
    assert_eq!(whoami(&app, &bob).await, "bob");
    // The kept session is still bound: a later sign-out ends it too.
    app.sessions.sign_out_everywhere("ada").await.unwrap();
    assert_eq!(whoami(&app, &ada[0].0).await, "none");
}

/// A cookie stamped ahead of this instance's clock by more than the skew allowed (issued
/// by an instance whose clock is ahead) gets a fresh session, but a logout with it is not a
/// silent 200 that leaves the session signed in: a purge deletes the session it names, and
/// a sign-out, which cannot know whose session it was, answers 503 and writes nothing.
/// (Both answered 200 and did nothing.)
pub async fn a_logout_with_a_cookie_from_a_clock_ahead_ends_its_session_or_says_it_cannot<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (cookie, id) = log_in(&app, "ada").await;
    let ahead = app.cookie_from_ahead(&id, 120);
    assert_eq!(whoami(&app, &ahead).await, "none", "refused, as before");
    let reply = app.get("/purge", Some(&ahead)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(app.store.inner.load(&id).await.unwrap().is_none(), "ended");
    assert_eq!(whoami(&app, &cookie).await, "none", "signed out");
    let (cookie, id) = log_in(&app, "ada").await;
    let ahead = app.cookie_from_ahead(&id, 120);
    for route in ["/sign-out-everywhere", "/sign-out-others"] {
        let writes = app.store.calls().writes();
        let reply = app.get(route, Some(&ahead)).await;
        assert_eq!(reply.status, 503, "{route}: {reply:?}");
        assert_eq!(
            app.store.calls().writes(),
            writes,
            "{route}: nothing written"
        );
        assert_eq!(
            whoami(&app, &cookie).await,
            "ada",
            "{route}: still signed in"
        );
    }
    // A login with nothing but `bind_user` (which renews) ends it too.
    let reply = app.get("/bind/bob", Some(&ahead)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(app.store.inner.load(&id).await.unwrap().is_none(), "ended");
    assert_eq!(whoami(&app, &cookie).await, "none", "signed out");
    assert_eq!(whoami(&app, &reply.cookie()).await, "bob");
    // Within the skew allowed, the cookie is served, and a sign-out signs out.
    let (cookie, id) = log_in(&app, "ada").await;
    let near = app.cookie_from_ahead(&id, 30);
    let reply = app.get("/sign-out-everywhere", Some(&near)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(whoami(&app, &cookie).await, "none");
}

/// A session read before an admin signed its user out, then asking to sign out the other
/// sessions: it was revoked, so it answers 409 and writes nothing (it does not sign itself
/// back in), it is signed out at its next read, and a login that came after the admin's
/// sign-out stays signed in.
pub async fn a_revoked_session_signing_out_the_others_stays_signed_out<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (ada, bob) = three_and_one(&app).await;
    let (reply, fresh) = app
        .interleave_with("/gated/sign-out-others", &ada[0].0, async {
            app.sessions.sign_out_everywhere("ada").await.unwrap();
            log_in(&app, "ada").await
        })
        .await;
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(reply.cookie.is_none(), "nothing written: {reply:?}");
    assert_eq!(whoami(&app, &ada[0].0).await, "none", "the revoked session");
    assert!(app.store.inner.load(&ada[0].1).await.unwrap().is_none());
    for (cookie, _) in &ada[1..] {
        assert_eq!(whoami(&app, cookie).await, "none");
    }
    assert_eq!(whoami(&app, &fresh.0).await, "ada", "the later login");
    assert_eq!(whoami(&app, &bob).await, "bob");
}

/// Two of a user's devices press "sign out other devices" at once: the first to commit
/// ends the other's entry; the other is no longer signed in: 409, and signed out. One
/// stays.
pub async fn two_devices_signing_out_the_others_at_once_leave_one_signed_in<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (ada, _) = three_and_one(&app).await;
    let (late, first) = app
        .interleave_with(
            "/gated/sign-out-others",
            &ada[0].0,
            app.get("/sign-out-others", Some(&ada[1].0)),
        )
        .await;
    assert_eq!(first.body, "Changed", "{first:?}");
    assert_eq!(late.status, 409, "{late:?}");
    assert_eq!(whoami(&app, &ada[1].0).await, "ada", "the first stays");
    assert_eq!(
        whoami(&app, &ada[0].0).await,
        "none",
        "the second is signed out"
    );
    assert_eq!(whoami(&app, &ada[2].0).await, "none");
}

/// A login that read the user's roster before another device signed out the others, and
/// lists itself after: refused (409), as after a sign-out everywhere, so that a password
/// change with "sign out other devices" lets in no login that checked the old password.
pub async fn a_login_in_flight_across_a_sign_out_of_the_others_is_refused<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (ada, _) = three_and_one(&app).await;
    app.store.hold_next_write_of(app.generation_item("ada"));
    let meanwhile = async {
        app.store.when_held().await;
        let out = app.get("/sign-out-others", Some(&ada[0].0)).await;
        app.store.release();
        out
    };
    let (login, out) = join(app.get("/login/ada", None), meanwhile).await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(login.status, 409, "{login:?}");
    assert!(login.cookie.is_none(), "{login:?}");
    assert_eq!(whoami(&app, &ada[0].0).await, "ada");
    assert_eq!(app.sessions.of_user("ada").await.unwrap().len(), 1);
}

/// The same device presses "sign out other devices" twice, the requests racing: the first
/// ends the others and keeps this session; the second, which read the session before,
/// finds it still signed in and the only one listed, and ends nobody more.
pub async fn signing_out_the_others_twice_from_one_device_keeps_it<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (ada, bob) = three_and_one(&app).await;
    let (late, first) = app
        .interleave("/gated/sign-out-others", "/sign-out-others", &ada[0].0)
        .await;
    assert_eq!(first.body, "Changed", "{first:?}");
    assert_eq!(late.status, 200, "{late:?}");
    assert!(late.cookie.is_none(), "{late:?}");
    assert_eq!(whoami(&app, &bob).await, "bob");
    assert_eq!(
        whoami(&app, &ada[0].0).await,
        "ada",
        "this device stays signed in"
    );
    assert_eq!(whoami(&app, &ada[1].0).await, "none");
}

/// A session read before an admin signed its user out, then signing out everywhere after a
/// login that came since: every session it held with is signed out, but the login stays
/// signed in (it may be that of whoever signed the user out), so it is told 409, not that
/// every session ended. (It answered 200.)
pub async fn a_revoked_session_signing_out_everywhere_spares_a_later_login<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (ada, _) = three_and_one(&app).await;
    let (reply, fresh) = app
        .interleave_with("/gated/sign-out-everywhere", &ada[0].0, async {
            app.sessions.sign_out_everywhere("ada").await.unwrap();
            log_in(&app, "ada").await
        })
        .await;
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(reply.cookie.is_none(), "{reply:?}");
    assert_eq!(whoami(&app, &ada[0].0).await, "none");
    assert_eq!(whoami(&app, &fresh.0).await, "ada", "the later login");
}

/// The same device presses "sign out everywhere" twice, the requests racing: the second,
/// which read the session before the first ended its user's sessions, finds them ended,
/// as it asked: 200 to both, not an error page after a sign-out that happened.
pub async fn signing_out_everywhere_twice_from_one_device_answers_200_to_both<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (ada, bob) = three_and_one(&app).await;
    let (late, first) = app
        .interleave(
            "/gated/sign-out-everywhere",
            "/sign-out-everywhere",
            &ada[0].0,
        )
        .await;
    assert_eq!((first.status, first.body.as_str()), (200, "Purged"));
    assert_eq!(
        (late.status, late.body.as_str()),
        (200, "Purged"),
        "{late:?}"
    );
    for (cookie, _) in &ada {
        assert_eq!(whoami(&app, cookie).await, "none");
    }
    assert_eq!(whoami(&app, &bob).await, "bob");
}

/// A session signed out by another device (by its handle) while its own request signs out
/// everywhere: it may not end the others any more, so it must not say it did (409). The
/// device that signed it out, which may be a thief's, is still signed in, and the user,
/// told, can sign in again and sign out everywhere.
pub async fn a_session_signed_out_by_another_device_cannot_sign_out_everywhere<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (ada, _) = three_and_one(&app).await;
    let who = app.get("/who", Some(&ada[0].0)).await.body;
    let handle = who.strip_prefix("ada ").expect("signed in").to_owned();
    let (reply, out) = app
        .interleave_with(
            "/gated/sign-out-everywhere",
            &ada[0].0,
            app.get(&format!("/sign-out-session/{handle}"), Some(&ada[1].0)),
        )
        .await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(reply.cookie.is_none(), "nothing written: {reply:?}");
    assert_eq!(whoami(&app, &ada[0].0).await, "none");
    for (cookie, _) in &ada[1..] {
        assert_eq!(whoami(&app, cookie).await, "ada", "not signed out");
    }
    let (again, _) = log_in(&app, "ada").await;
    let reply = app.get("/sign-out-everywhere", Some(&again)).await;
    assert_eq!(reply.body, "Purged", "{reply:?}");
    for (cookie, _) in &ada[1..] {
        assert_eq!(whoami(&app, cookie).await, "none", "signed out now");
    }
}

/// A sign-out that happened, then a commit that failed after it (413 here): the response
/// keeps the failure's status but says the sessions were signed out, rather than "nothing
/// was saved". Everywhere, every session was; of the others, this one stays signed in (it
/// was signed out too when the sign-out gave the user a generation the failed write would
/// have copied).
pub async fn a_sign_out_whose_commit_then_fails_says_what_happened<S: SessionStore + Clone>(
    store: S,
) {
    for (route, this_one) in [
        ("/sign-out-then-big/everywhere/1000", "none"),
        ("/sign-out-then-big/others/1000", "ada"),
        // Purged: this one goes with the others, failure or not.
        ("/sign-out-then-big/others-purge/1000", "none"),
    ] {
        let store = CountingStore::new(store.clone());
        let app = TestApp::configured(store, |b| b.max_size(400)).await;
        let (ada, bob) = three_and_one(&app).await;
        let reply = app.get(route, Some(&ada[0].0)).await;
        assert_eq!(reply.status, 413, "{reply:?}");
        assert!(
            reply
                .body
                .starts_with("the sign-out happened, but the rest was not saved"),
            "{}",
            reply.body
        );
        assert_eq!(whoami(&app, &ada[0].0).await, this_one, "{route}");
        for (cookie, _) in &ada[1..] {
            assert_eq!(whoami(&app, cookie).await, "none", "{route}");
        }
        assert_eq!(whoami(&app, &bob).await, "bob");
        app.sessions.sign_out_everywhere("ada").await.unwrap();
    }
    // A sign-out of a device listed nowhere signed nobody out: the failure is its own. (It
    // said the sign-out happened.)
    let app = TestApp::configured(CountingStore::new(store), |b| b.max_size(400)).await;
    let (ada, _) = three_and_one(&app).await;
    let reply = app
        .get("/sign-out-then-big/unlisted/1000", Some(&ada[0].0))
        .await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(
        !reply.body.starts_with("the sign-out happened"),
        "{}",
        reply.body
    );
    for (cookie, _) in &ada {
        assert_eq!(whoami(&app, cookie).await, "ada");
    }
}

/// Another request of the session (a page's second call) arriving while its sign-out of the
/// others has ended them but not yet written the session: it stays signed in, and so does
/// the session. (It was read as signed out, and removed.)
pub async fn a_request_racing_its_sign_out_of_the_others_stays_signed_in<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (ada, _) = three_and_one(&app).await;
    app.store.hold_next_write_of(ada[0].1.clone());
    let meanwhile = async {
        app.store.when_held().await;
        let seen = whoami(&app, &ada[0].0).await;
        app.store.release();
        seen
    };
    let signing_out = app.get("/sign-out-then-big/others/10", Some(&ada[0].0));
    let (reply, seen) = join(signing_out, meanwhile).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(seen, "ada", "the request in between");
    assert_eq!(whoami(&app, &ada[0].0).await, "ada", "after both");
    assert_eq!(whoami(&app, &ada[1].0).await, "none");
}

pub async fn sign_out_in_a_failed_request_signs_nobody_out<S: SessionStore + Clone>(store: S) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (ada, _) = three_and_one(&app).await;
    app.store.reset();
    let reply = app
        .get("/sign-out-everywhere-then-500", Some(&ada[0].0))
        .await;
    assert_eq!(reply.status, 500);
    assert_eq!(app.store.calls().writes(), 0, "nothing written");
    for (cookie, _) in &ada {
        assert_eq!(whoami(&app, cookie).await, "ada");
    }
}

/// A bound session's request reads its user's item too, and an unbound one does not;
/// neither writes.
pub async fn bound_session_reads_its_generation_with_the_session<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (ada, _) = log_in(&app, "ada").await;
    let unbound = started(&app).await;
    app.store.reset();
    assert_eq!(whoami(&app, &ada).await, "ada");
    assert_eq!(
        app.store.calls(),
        Calls {
            loads: 2,
            ..Calls::default()
        }
    );
    app.store.reset();
    assert_eq!(whoami(&app, &unbound).await, "none");
    assert_eq!(
        app.store.calls(),
        Calls {
            loads: 1,
            ..Calls::default()
        }
    );
}

/// Bound through the container, its client's cookie has no hint: the next request finds
/// the item anyway (a second read) and re-issues the cookie with it.
pub async fn session_bound_outside_a_request_gets_its_hint_on_the_next_request<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let (app, cookie) = with_session(store).await;
    let id = app.store.last_created();
    let open = app.sessions.open(&id).await.unwrap().unwrap();
    open.bind_user("ada").unwrap();
    open.commit().await.unwrap();
    app.store.reset();
    let reply = app.get("/whoami", Some(&cookie)).await;
    assert_eq!(reply.body, "ada");
    let reissued = reply.cookie();
    assert_eq!(reissued.value().len(), FORMAT_3_CHARS);
    assert_eq!(
        app.store.calls().loads,
        3,
        "the session, its user's item, and the read that goes with the re-issue's touch"
    );
    let again = app.get("/whoami", Some(&reissued)).await;
    assert!(again.cookie.is_none(), "the hint is there now");
    // Rebound to bob in a request: renewed, and the hint follows.
    let reply = app.get("/bind/bob", Some(&reissued)).await;
    assert_eq!(reply.body, "Renewed");
    let bob = reply.cookie();
    assert_ne!(bob.value(), reissued.value());
    app.sessions.sign_out_everywhere("ada").await.unwrap();
    assert_eq!(whoami(&app, &bob).await, "bob", "no longer ada's");
    assert_eq!(
        whoami(&app, &reissued).await,
        "none",
        "the old cookie names the retired id"
    );
}

/// Binding a user in a request renews the session, so that an id planted before login is
/// useless after it even when the app forgets `renew()`: the old id is gone, the new
/// cookie names another. With `renew_on_bind(false)` the id stays.
pub async fn binding_a_user_renews_the_session_unless_told_not_to<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store.clone())).await;
    let planted = started(&app).await;
    let id = app.store.last_created();
    let reply = app.get("/bind/ada", Some(&planted)).await;
    assert_eq!(reply.body, "Renewed", "{reply:?}");
    let bound = reply.cookie();
    assert_ne!(app.store.last_created(), id, "a new id");
    assert!(
        app.store.inner.load(&id).await.unwrap().is_none(),
        "the planted id is gone"
    );
    assert_eq!(whoami(&app, &bound).await, "ada");
    assert_eq!(value(&app, &bound).await, "1", "the data moved with it");
    assert_eq!(whoami(&app, &planted).await, "none");
    let again = app.get("/bind/ada", Some(&bound)).await;
    assert_eq!(
        again.body, "Unchanged",
        "signed in as ada already: nothing to do, not renewed again"
    );
    assert_eq!(whoami(&app, &bound).await, "ada", "the same id");

    let app = TestApp::configured(CountingStore::new(store), |b| b.renew_on_bind(false)).await;
    let kept = started(&app).await;
    let id = app.store.last_created();
    let reply = app.get("/bind/ada", Some(&kept)).await;
    assert_eq!(reply.body, "Changed", "{reply:?}");
    assert!(
        app.store.inner.load(&id).await.unwrap().is_some(),
        "the same id"
    );
    assert_eq!(whoami(&app, &reply.cookie()).await, "ada");
    assert_eq!(
        whoami(&app, &kept).await,
        "ada",
        "the old cookie still names it"
    );
}

/// A request finds its session signed out, and before it commits the session is written
/// again (as a sign-out of the other sessions, racing, rewrites it): the request does not
/// remove it.
pub async fn signed_out_session_rewritten_meanwhile_is_not_removed<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (cookie, id) = log_in(&app, "ada").await;
    app.sessions.sign_out_everywhere("ada").await.unwrap();
    let rewrite = async {
        let stored = app.store.inner.load(&id).await.unwrap().unwrap();
        let ttl = Duration::from_secs(60);
        app.store
            .inner
            .update(&id, &stored.data, stored.version, ttl)
            .await
            .unwrap()
    };
    let (reply, rewritten) = app
        .interleave_with("/gated/get/p/k", &cookie, rewrite)
        .await;
    assert_eq!(rewritten, Update::Updated);
    assert_eq!(reply.body, "none", "{reply:?}");
    assert!(
        reply.cookie.is_none(),
        "the cookie is not the request's to remove"
    );
    assert!(
        app.store.inner.load(&id).await.unwrap().is_some(),
        "not removed"
    );
}

/// Two requests of one browser carry a signed-out session's cookie; one of them logs in
/// (and removes the stale session). The other, finding it already gone, must not send a
/// removal cookie: that would wipe the login that happened meanwhile.
pub async fn signed_out_session_removed_meanwhile_leaves_the_new_login_cookie<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    let (cookie, id) = log_in(&app, "ada").await;
    app.sessions.sign_out_everywhere("ada").await.unwrap();
    let (reply, login) = app
        .interleave("/gated/get/p/k", "/login/ada", &cookie)
        .await;
    assert_eq!(login.status, 200, "{login:?}");
    assert!(!login.cookie().value().is_empty(), "the login's cookie");
    assert!(
        app.store.inner.load(&id).await.unwrap().is_none(),
        "removed by the login"
    );
    assert_eq!(reply.body, "none", "{reply:?}");
    assert!(
        reply.cookie.is_none(),
        "the request that did not delete it leaves the cookie alone: {reply:?}"
    );
    assert_eq!(whoami(&app, &login.cookie()).await, "ada");
}

/// A hook reads the session as the commit wrote it (after-commit), or as the handler left
/// it (after-abort), not an empty one; in an after-abort hook `id` is the id loaded,
/// whether the handler aborted or the commit failed.
pub async fn hooks_read_the_session_as_committed_or_as_the_handler_left_it<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let app = TestApp::configured(CountingStore::new(store), |b| b.max_size(1000)).await;
    let reply = app.get("/hook-reads/abort", None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(app.hooks.take(), ["abort:ada:abort:none"]);
    let reply = app.get("/hook-reads/commit", None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let id = app.store.last_created();
    assert_eq!(app.hooks.take(), [format!("commit:ada:commit:{id}")]);
    let cookie = reply.cookie();
    let reply = app.get("/hook-reads/abort", Some(&cookie)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(app.hooks.take(), [format!("abort:ada:abort:{id}")]);
    let reply = app.get("/hook-reads/too-large", Some(&cookie)).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(app.hooks.take(), [format!("abort:ada:large:{id}")]);
    assert_eq!(reply.user_after.as_deref(), Some("ada"), "{reply:?}");
    // Aborted by its status, with no hook holding it, it reads as the handler left it to a
    // middleware outside the session's (logging who got the 403). (It read empty.)
    let reply = app.get("/hook-reads/forbidden", Some(&cookie)).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(reply.user_after.as_deref(), Some("ada"), "{reply:?}");
    // A middleware outside the session's reads it after the commit too.
    let reply = app.get("/login-from/bob/b", None).await;
    assert_eq!(reply.user_after.as_deref(), Some("bob"), "{reply:?}");
}

/// In an after-commit hook, `Session::id` is the id the commit stored the session under: a
/// new session's, a renewed (or logged-in) one's new id, the same id for a change, and
/// `None` for a purge. In the handler it was the id loaded (`None` for a new one).
pub async fn after_commit_hooks_see_the_id_the_session_was_stored_under<S: SessionStore + Clone>(
    store: S,
) {
    let app = TestApp::new(CountingStore::new(store)).await;
    for how in ["renew", "login"] {
        let reply = app.get("/stored-id/set", None).await;
        assert_eq!(reply.body, "none", "not stored yet in the handler");
        let created = app.store.last_created();
        assert_eq!(
            app.hooks.take(),
            [format!("id:{created}")],
            "a new session's id"
        );
        let reply = app
            .get(&format!("/stored-id/{how}"), Some(&reply.cookie()))
            .await;
        assert_eq!(
            reply.body,
            created.to_string(),
            "{how}: the old id in the handler"
        );
        let renewed = app.store.last_created();
        assert_ne!(renewed, created, "{how}");
        assert_eq!(
            app.hooks.take(),
            [format!("id:{renewed}")],
            "{how}: the new id"
        );
        let same = app.get("/stored-id/set", Some(&reply.cookie())).await;
        assert_eq!(same.body, renewed.to_string());
        assert_eq!(
            app.hooks.take(),
            [format!("id:{renewed}")],
            "a change keeps its id"
        );
        let purged = app.get("/stored-id/purge", Some(&reply.cookie())).await;
        assert_eq!(purged.status, 200, "{purged:?}");
        let after = app.hooks.take();
        assert_eq!(after.len(), 1, "{after:?}");
        assert_ne!(after[0], format!("id:{renewed}"), "not the purged id");
        let gone = app
            .get("/stored-id/purge-only", Some(&purged.cookie()))
            .await;
        assert_eq!(gone.status, 200, "{gone:?}");
        assert_eq!(app.hooks.take(), ["id:none"], "purged: stored under no id");
    }
}
