//! This crate's stores behind actix-session's `SessionMiddleware` (feature `actix-session`),
//! against real memcached in both protocols, on a fleet and through a proxy, and in memory: the scenarios of
//! actix-session's own store tests (a basic workflow, expiry refreshed on changes and on
//! every request, renew, purge), and the safe choices where its Redis store is unsafe.

use std::time::Duration as StdDuration;

use actix_session::config::{PersistentSession, TtlExtensionPolicy};
use actix_session::storage::{SessionKey, SessionStore};
use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::time::Duration;
use actix_web::cookie::{Cookie, Key};
use actix_web::{test, web, App, HttpResponse};

macro_rules! actix_session_suite {
    ($make:expr) => {
        $crate::actix_session::actix_session_suite!(@each $make;
            a_session_round_trips_through_the_middleware,
            expiry_is_refreshed_on_changes_and_on_every_request,
            renew_moves_the_state_and_ends_the_old_key,
            purge_ends_the_session,
            an_update_of_an_ended_session_does_not_bring_it_back,
            keys_this_store_did_not_make_name_nothing,
            many_writes_of_one_session_at_once_all_land,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[actix_web::test]
            async fn $name() {
                $crate::actix_session::$name($make).await;
            }
        )*
    };
}
pub(crate) use actix_session_suite;

async fn insert(session: Session, v: web::Path<u32>) -> actix_web::Result<&'static str> {
    session.insert("counter", *v)?;
    Ok("set")
}

async fn read(session: Session) -> actix_web::Result<String> {
    Ok(format!("{:?}", session.get::<u32>("counter")?))
}

async fn renew(session: Session) -> &'static str {
    session.renew();
    "renewed"
}

async fn purge(session: Session) -> &'static str {
    session.purge();
    "purged"
}

async fn nothing() -> HttpResponse {
    HttpResponse::Ok().finish()
}

/// An app over `store`, sessions living `ttl`, extended on every request if `every`.
pub(crate) async fn app<S: SessionStore + 'static>(
    store: S,
    ttl: i64,
    every: bool,
) -> impl actix_web::dev::Service<
    actix_http::Request,
    Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
    Error = actix_web::Error,
> {
    let policy = if every {
        TtlExtensionPolicy::OnEveryRequest
    } else {
        TtlExtensionPolicy::OnStateChanges
    };
    let lifecycle = PersistentSession::default()
        .session_ttl(Duration::seconds(ttl))
        .session_ttl_extension_policy(policy);
    let middleware = SessionMiddleware::builder(store, Key::generate())
        .cookie_secure(false)
        .session_lifecycle(lifecycle)
        .build();
    test::init_service(
        App::new()
            .wrap(middleware)
            .route("/set/{v}", web::get().to(insert))
            .route("/get", web::get().to(read))
            .route("/renew", web::get().to(renew))
            .route("/purge", web::get().to(purge))
            .route("/nothing", web::get().to(nothing)),
    )
    .await
}

fn get(path: &str, cookie: Option<&Cookie<'_>>) -> actix_http::Request {
    let mut req = test::TestRequest::get().uri(path);
    if let Some(c) = cookie {
        req = req.cookie(c.clone().into_owned());
    }
    req.to_request()
}

/// Calls `path`; its body and the session cookie it set, if any.
pub(crate) async fn call(
    app: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
    path: &str,
    cookie: Option<&Cookie<'_>>,
) -> (String, Option<Cookie<'static>>) {
    let res = test::call_service(app, get(path, cookie)).await;
    assert!(res.status().is_success(), "{path}: {}", res.status());
    let set = res.response().cookies().next().map(Cookie::into_owned);
    let body = test::read_body(res).await;
    (String::from_utf8(body.to_vec()).unwrap(), set)
}

pub async fn a_session_round_trips_through_the_middleware<S: SessionStore + Clone + 'static>(
    store: S,
) {
    let app = app(store, 100, false).await;
    let (_, cookie) = call(&app, "/set/100", None).await;
    let cookie = cookie.expect("a session cookie");
    assert_eq!(call(&app, "/get", Some(&cookie)).await.0, "Some(100)");
    assert_eq!(call(&app, "/get", None).await.0, "None");
}

/// Sixteen requests of one session that each write it, at once (a page's requests over
/// HTTP/2, actix-identity refreshing its visit time): every one answers 200, the last
/// writer winning, as with actix-session's own stores. (Racing in lockstep on one
/// connection, those past the eighth round answered 500.)
pub async fn many_writes_of_one_session_at_once_all_land<S: SessionStore + Clone + 'static>(
    store: S,
) {
    let app = app(store, 100, false).await;
    let (_, cookie) = call(&app, "/set/100", None).await;
    let cookie = cookie.expect("a session cookie");
    let paths: Vec<String> = (0..16).map(|n| format!("/set/{n}")).collect();
    let writes = paths.iter().map(|path| call(&app, path, Some(&cookie)));
    for (body, _) in futures_util::future::join_all(writes).await {
        assert_eq!(body, "set");
    }
    let last = call(&app, "/get", Some(&cookie)).await.0;
    assert!((0..16).any(|n| last == format!("Some({n})")), "{last}");
}

/// memcached counts TTLs in whole seconds on a clock that ticks once a second: an item
/// given 3 s lives between 2 and 4, so requests 1 s apart keep it, and 4.5 s without one
/// ends it.
pub async fn expiry_is_refreshed_on_changes_and_on_every_request<
    S: SessionStore + Clone + 'static,
>(
    store: S,
) {
    // On changes: each write gives the session its TTL again.
    let app_ = app(store.clone(), 3, false).await;
    let (_, cookie) = call(&app_, "/set/1", None).await;
    let cookie = cookie.unwrap();
    for v in 2..=4 {
        tokio::time::sleep(StdDuration::from_millis(1000)).await;
        call(&app_, &format!("/set/{v}"), Some(&cookie)).await;
    }
    assert_eq!(call(&app_, "/get", Some(&cookie)).await.0, "Some(4)");
    // On every request: reads alone keep it; without them it expires.
    let app_ = app(store, 3, true).await;
    let (_, cookie) = call(&app_, "/set/1", None).await;
    let cookie = cookie.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(StdDuration::from_millis(1000)).await;
        call(&app_, "/nothing", Some(&cookie)).await;
    }
    assert_eq!(call(&app_, "/get", Some(&cookie)).await.0, "Some(1)");
    tokio::time::sleep(StdDuration::from_millis(4500)).await;
    assert_eq!(
        call(&app_, "/get", Some(&cookie)).await.0,
        "None",
        "expired"
    );
}

pub async fn renew_moves_the_state_and_ends_the_old_key<S: SessionStore + Clone + 'static>(
    store: S,
) {
    let app = app(store, 100, false).await;
    let (_, old) = call(&app, "/set/7", None).await;
    let old = old.unwrap();
    let (_, new) = call(&app, "/renew", Some(&old)).await;
    let new = new.expect("a new cookie");
    assert_ne!(new.value(), old.value());
    assert_eq!(call(&app, "/get", Some(&new)).await.0, "Some(7)");
    assert_eq!(
        call(&app, "/get", Some(&old)).await.0,
        "None",
        "the old key is gone"
    );
}

pub async fn purge_ends_the_session<S: SessionStore + Clone + 'static>(store: S) {
    let app = app(store, 100, false).await;
    let (_, cookie) = call(&app, "/set/7", None).await;
    let cookie = cookie.unwrap();
    let (_, removal) = call(&app, "/purge", Some(&cookie)).await;
    assert_eq!(removal.expect("a removal cookie").value(), "");
    assert_eq!(call(&app, "/get", Some(&cookie)).await.0, "None");
}

pub async fn an_update_of_an_ended_session_does_not_bring_it_back<
    S: SessionStore + Clone + 'static,
>(
    store: S,
) {
    let ttl = Duration::seconds(60);
    let state = [("counter".to_owned(), "1".to_owned())].into();
    let key = store.save(state, &ttl).await.unwrap();
    let again = store.save(Default::default(), &ttl).await.unwrap();
    assert_ne!(key.as_ref(), again.as_ref(), "a new key each time");
    SessionStore::delete(&store, &key).await.unwrap();
    let state = [("counter".to_owned(), "2".to_owned())].into();
    let same = SessionKey::try_from(key.as_ref().to_owned()).unwrap();
    assert!(store.update(same, state, &ttl).await.is_err());
    assert!(
        store.load(&key).await.unwrap().is_none(),
        "not brought back"
    );
    store.update_ttl(&key, &ttl).await.unwrap();
    assert!(
        store.load(&key).await.unwrap().is_none(),
        "a touch creates nothing"
    );
}

pub async fn keys_this_store_did_not_make_name_nothing<S: SessionStore + Clone + 'static>(
    store: S,
) {
    let ttl = Duration::seconds(60);
    for odd in ["", "not a key", "../../etc", &"x".repeat(300)] {
        let key = SessionKey::try_from(odd.to_owned()).unwrap();
        assert!(store.load(&key).await.unwrap().is_none(), "{odd:?}");
        assert!(store
            .update(
                SessionKey::try_from(odd.to_owned()).unwrap(),
                Default::default(),
                &ttl
            )
            .await
            .is_err());
        store.update_ttl(&key, &ttl).await.unwrap();
        SessionStore::delete(&store, &key).await.unwrap();
    }
}

/// A session stored over the store's item limit (written under a larger one) is unreadable
/// to the store: it reads as no session, as in this crate's own middleware, so that
/// actix-session starts a fresh one under a new key instead of answering 500 on every
/// request (or on every write, had it kept the key) until the item expires.
#[actix_web::test]
async fn a_session_stored_over_the_store_limit_reads_as_none() {
    use actix_memcache_session::MemcacheStore;

    let server = crate::memcached::Memcached::start();
    let lax = MemcacheStore::new(&server.url()).unwrap();
    let strict = MemcacheStore::builder(server.url())
        .max_item_size(64 << 10)
        .build()
        .unwrap();
    let state = [("k".to_owned(), "x".repeat(100_000))].into();
    let ttl = Duration::seconds(60);
    let key = SessionStore::save(&lax, state, &ttl).await.unwrap();
    assert!(SessionStore::load(&strict, &key).await.unwrap().is_none());
    let updated = SessionStore::update(&strict, key, Default::default(), &ttl).await;
    assert!(updated.is_err(), "not written over: {updated:?}");
}
