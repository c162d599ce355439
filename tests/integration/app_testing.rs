//! The helpers an application's own tests use (feature `testing`): seeding a stored
//! session and its cookie, and opening what a request stored. Every store runs them
//! through `app_testing_suite!`.

use std::time::Duration;

use actix_memcache_session::{
    Key, MemcacheSession, Session, SessionError, SessionStatus, SessionStore,
};
use actix_web::cookie::Cookie;
use actix_web::{test, web, App};

use crate::support::{tampered, CountingStore};

macro_rules! app_testing_suite {
    ($make:expr) => {
        $crate::app_testing::app_testing_suite!(@each $make;
            a_seeded_session_is_what_the_handler_sees,
            seeding_nothing_stores_nothing_and_a_failing_fill_writes_nothing,
            a_seeded_login_is_listed_and_keeps_its_own_timeouts,
            open_cookie_sees_only_a_valid_cookie_of_a_live_session,
            open_response_follows_the_set_cookie,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[actix_web::test]
            async fn $name() {
                $crate::app_testing::$name($make).await;
            }
        )*
    };
}
pub(crate) use app_testing_suite;

async fn cart(session: Session) -> actix_web::Result<String> {
    let cart = session.package("shop.cart");
    let items: u32 = cart.get("items")?.unwrap_or(0);
    cart.insert("items", items + 1)?;
    Ok(format!("{items} {:?}", session.user()?))
}

async fn login(session: Session, user: web::Path<String>) -> actix_web::Result<String> {
    session.bind_user(&user)?;
    Ok("in".into())
}

async fn logout(session: Session) -> &'static str {
    session.purge();
    "out"
}

async fn look(_: Session) -> &'static str {
    "looked"
}

/// The app under test, with its middleware's container.
async fn app<S: SessionStore + Clone>(
    store: S,
) -> (
    impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
    actix_memcache_session::Sessions,
) {
    let middleware = MemcacheSession::builder(store, Key::generate()).build();
    let sessions = middleware.sessions();
    let app = test::init_service(
        App::new()
            .wrap(middleware)
            .route("/cart", web::get().to(cart))
            .route("/login/{user}", web::get().to(login))
            .route("/logout", web::get().to(logout))
            .route("/look", web::get().to(look)),
    )
    .await;
    (app, sessions)
}

fn get(path: &str, cookie: &Cookie<'_>) -> actix_http::Request {
    test::TestRequest::get()
        .uri(path)
        .cookie(cookie.clone().into_owned())
        .to_request()
}

async fn items(sessions: &actix_memcache_session::Sessions, cookie: &Cookie<'_>) -> Option<u32> {
    let open = sessions.open_cookie(cookie).await.unwrap()?;
    open.package("shop.cart").get("items").unwrap()
}

pub async fn a_seeded_session_is_what_the_handler_sees<S: SessionStore + Clone>(store: S) {
    let (app, sessions) = app(store).await;
    let cookie = sessions
        .seed(|s| s.package("shop.cart").insert("items", 2))
        .await
        .unwrap()
        .expect("stored");
    let body = test::call_and_read_body(&app, get("/cart", &cookie)).await;
    assert_eq!(body, "2 None");
    assert_eq!(
        items(&sessions, &cookie).await,
        Some(3),
        "what the request stored"
    );
}

pub async fn seeding_nothing_stores_nothing_and_a_failing_fill_writes_nothing<
    S: SessionStore + Clone,
>(
    store: S,
) {
    let counting = CountingStore::new(store);
    let (_app, sessions) = app(counting.clone()).await;
    assert!(sessions.seed(|_| Ok(())).await.unwrap().is_none());
    let failed = sessions
        .seed(|s| {
            s.package("shop.cart").insert("items", 1)?;
            s.package("").insert("k", 1)
        })
        .await;
    assert!(
        matches!(failed, Err(SessionError::InvalidName { .. })),
        "{failed:?}"
    );
    assert_eq!(counting.calls().writes(), 0, "{:?}", counting.calls());
}

pub async fn a_seeded_login_is_listed_and_keeps_its_own_timeouts<S: SessionStore + Clone>(
    store: S,
) {
    let (app, sessions) = app(store).await;
    let day = Duration::from_secs(24 * 3600);
    let cookie = sessions
        .seed(|s| {
            s.bind_user("ada")?;
            s.set_label("seeded")?;
            s.set_timeouts(day, 7 * day)
        })
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(cookie.max_age().map(|a| a.whole_seconds()), Some(24 * 3600));
    let body = test::call_and_read_body(&app, get("/cart", &cookie)).await;
    assert_eq!(body, "0 Some(\"ada\")");
    let listed = sessions.of_user("ada").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].label.as_deref(), Some("seeded"));
    assert!(listed[0].remember_me);
}

pub async fn open_cookie_sees_only_a_valid_cookie_of_a_live_session<S: SessionStore + Clone>(
    store: S,
) {
    let (app, sessions) = app(store).await;
    let seed = |s: &Session| {
        s.package("shop.cart").insert("items", 1)?;
        s.bind_user("ada")
    };
    let cookie = sessions.seed(seed).await.unwrap().unwrap();
    let open = sessions.open_cookie(&cookie).await.unwrap().expect("live");
    assert_eq!(open.status(), SessionStatus::Unchanged);
    assert!(sessions
        .open_cookie(&tampered(&cookie))
        .await
        .unwrap()
        .is_none());
    let renamed = Cookie::new("other", cookie.value().to_owned());
    assert!(sessions.open_cookie(&renamed).await.unwrap().is_none());
    // Signed out everywhere: as a request would see it, nobody.
    sessions.sign_out_everywhere("ada").await.unwrap();
    assert!(sessions.open_cookie(&cookie).await.unwrap().is_none());
    // Logged out by a request: gone.
    let other = sessions.seed(seed).await.unwrap().unwrap();
    test::call_service(&app, get("/logout", &other)).await;
    assert!(sessions.open_cookie(&other).await.unwrap().is_none());
}

pub async fn open_response_follows_the_set_cookie<S: SessionStore + Clone>(store: S) {
    let (app, sessions) = app(store).await;
    let cookie = sessions
        .seed(|s| s.package("shop.cart").insert("items", 5))
        .await
        .unwrap()
        .unwrap();
    // A login renews the session: the response names the new id, with the data moved.
    let res = test::call_service(&app, get("/login/ada", &cookie)).await;
    let open = sessions.open_response(&res).await.unwrap().expect("set");
    assert_eq!(open.user().unwrap().as_deref(), Some("ada"));
    assert_eq!(
        open.package("shop.cart").get::<u32>("items").unwrap(),
        Some(5)
    );
    assert!(
        sessions.open_cookie(&cookie).await.unwrap().is_none(),
        "renewed away"
    );
    // A request that leaves the cookie as it is sets none; a logout sets a removal.
    let renewed = res.response().cookies().next().unwrap().into_owned();
    let res = test::call_service(&app, get("/look", &renewed)).await;
    assert!(sessions.open_response(&res).await.unwrap().is_none());
    let res = test::call_service(&app, get("/logout", &renewed)).await;
    assert!(
        res.response().cookies().next().is_some(),
        "a removal cookie"
    );
    assert!(sessions.open_response(&res).await.unwrap().is_none());
}
