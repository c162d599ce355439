//! The test application every store's HTTP suite runs against.

use std::sync::Arc;
use std::time::Duration;

use std::cell::RefCell;

use actix_http::Request;
use actix_memcache_session::{
    FlashMessage, Key, Level, MemcacheSession, MemcacheSessionBuilder, Session, SessionError,
    SessionHandle, SessionId, SessionStore, Sessions, TypedPackage,
};
use actix_service::boxed::{self, BoxService};
use actix_service::{Service, ServiceExt};
use actix_web::cookie::Cookie;
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::DefaultHeaders;
use actix_web::{test, web, App, Error, FromRequest, HttpResponse};
use futures_util::future::join;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::support::{within, CountingStore, Reply};

/// A header the outer middleware adds to every response.
pub const OUTER_HEADER: &str = "x-outer";
/// The user a middleware outside the session's reads from the session once the commit is
/// done (as a logging middleware would), on `/login-from/...` and `/hook-reads/...`
/// responses.
pub const USER_AFTER_HEADER: &str = "x-user-after";

/// Lets a test hold a request between loading its session and changing it.
struct Gate {
    loaded: Semaphore,
    go: Semaphore,
}

pub struct TestApp<S> {
    service: BoxService<Request, ServiceResponse, Error>,
    pub store: CountingStore<S>,
    gate: Arc<Gate>,
    pub hooks: web::Data<HookLog>,
    /// The session handle a `/keep/...` request kept past its end.
    pub kept: web::Data<Kept>,
    /// The request a `/keep-request-set/...` request kept past its end.
    pub kept_request: web::Data<KeptRequest>,
    /// The container over the same middleware.
    pub sessions: Sessions,
    /// The secret the key was made from, when the app made it.
    secret: Option<Vec<u8>>,
}

/// What the session hooks of `/hooks/...` requests did, in order: `"commit:<mode>:<n>"`
/// with the store's write count when the hook ran, or `"abort:<mode>"`.
pub struct HookLog {
    entries: RefCell<Vec<String>>,
    writes: Box<dyn Fn() -> usize>,
}

impl HookLog {
    /// The entries so far, emptied.
    pub fn take(&self) -> Vec<String> {
        self.entries.take()
    }

    fn push(&self, entry: String) {
        self.entries.borrow_mut().push(entry);
    }
}

/// A session handle kept by a handler past the end of its request.
pub type Kept = RefCell<Option<Session>>;

/// A request kept by its handler past its end (as a task it spawns keeps it).
pub type KeptRequest = RefCell<Option<actix_web::HttpRequest>>;

/// What a test changes on the middleware's builder.
pub type Configure = fn(MemcacheSessionBuilder) -> MemcacheSessionBuilder;

impl<S: SessionStore + Clone> TestApp<S> {
    pub async fn new(store: CountingStore<S>) -> Self {
        Self::configured(store, |b| b).await
    }

    /// An app with a key of its own, whose secret it keeps (see `generation_item`).
    pub async fn configured(store: CountingStore<S>, configure: Configure) -> Self {
        let mut secret = vec![0; 64];
        getrandom::getrandom(&mut secret).unwrap();
        let key = Key::try_from(&secret[..]).unwrap();
        let mut app = Self::with(store, key, configure).await;
        app.secret = Some(secret);
        app
    }

    /// A cookie for session `id` as an instance whose clock is `ahead` seconds ahead of
    /// this one's (behind, if negative) would issue it (made by `new` or `configured`).
    pub fn cookie_from_ahead(&self, id: &SessionId, ahead: i64) -> Cookie<'static> {
        let secret = self.secret.as_deref().expect("an app that made its key");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let value = crate::support::cookie_stamped(secret, id, now.saturating_add_signed(ahead));
        Cookie::new("id", value)
    }

    /// The id of `user`'s generation item in this app (made by `new` or `configured`).
    pub fn generation_item(&self, user: &str) -> SessionId {
        let secret = self.secret.as_deref().expect("an app that made its key");
        crate::support::generation_item(secret, user)
    }

    pub async fn with(
        store: CountingStore<S>,
        key: Key,
        configure: impl FnOnce(MemcacheSessionBuilder) -> MemcacheSessionBuilder,
    ) -> Self {
        let gate = Arc::new(Gate {
            loaded: Semaphore::new(0),
            go: Semaphore::new(0),
        });
        let middleware = configure(MemcacheSession::builder(store.clone(), key)).build();
        let sessions = middleware.sessions();
        let counted = store.clone();
        let hooks = web::Data::new(HookLog {
            entries: RefCell::default(),
            writes: Box::new(move || counted.calls().writes()),
        });
        let kept = web::Data::new(Kept::default());
        let kept_request = web::Data::new(KeptRequest::default());
        let app = App::new()
            .app_data(web::Data::from(Arc::clone(&gate)))
            .app_data(hooks.clone())
            .app_data(kept.clone())
            .app_data(kept_request.clone())
            .wrap(middleware)
            .wrap_fn(|req, srv| {
                let done = srv.call(req);
                async move {
                    let mut res = done.await?;
                    let path = res.request().path();
                    if path.starts_with("/login-from/") || path.starts_with("/hook-reads/") {
                        let session = Session::extract(res.request()).await?;
                        let user = session.user()?.unwrap_or_else(|| "none".to_owned());
                        let value = HeaderValue::from_str(&user)?;
                        res.headers_mut()
                            .insert(HeaderName::from_static(USER_AFTER_HEADER), value);
                    }
                    Ok(res)
                }
            })
            // Outside the session middleware: must see every response, failed commits too.
            .wrap(DefaultHeaders::new().add((OUTER_HEADER, "seen")))
            .route("/plain", web::get().to(|| async { "plain" }))
            .route("/get/{p}/{k}", web::get().to(get))
            .route("/maybe-get/{p}/{k}", web::get().to(maybe_get))
            .route("/twice/{p}/{k}", web::get().to(twice))
            .route("/keep/{p}/{k}", web::get().to(keep))
            .route("/keep-set/{p}/{k}/{v}", web::get().to(keep_set))
            .route(
                "/keep-request-set/{p}/{k}/{v}",
                web::get().to(keep_request_set),
            )
            .route("/set/{p}/{k}/{v}", web::get().to(set))
            .route(
                "/set-status/{status}/{p}/{k}/{v}",
                web::get().to(set_status),
            )
            .route("/set-err/{p}/{k}/{v}", web::get().to(set_err))
            .route("/set-panic/{p}/{k}/{v}", web::get().to(set_panic))
            .route("/set-err-303/{p}/{k}/{v}", web::get().to(set_err_303))
            .route("/deep/{p}/{k}/{levels}", web::get().to(deep))
            .route("/nan/{p}/{k}", web::get().to(nan))
            .route("/gated/set/{p}/{k}/{v}", web::get().to(gated_set))
            .route("/gated/get/{p}/{k}", web::get().to(gated_get))
            .route("/gated/renew", web::get().to(gated_renew))
            .route("/big/{p}/{k}/{n}", web::get().to(big))
            .route("/vary/{value}", web::get().to(vary))
            .route("/cached/{value}", web::get().to(cached))
            .route("/later", web::get().to(later))
            .route("/keys/{p}", web::get().to(keys))
            .route("/dump/{p}", web::get().to(dump))
            .route("/note/{k}/{v}", web::get().to(note))
            .route("/remove/{p}/{k}", web::get().to(remove))
            .route("/clear/{p}", web::get().to(clear))
            .route("/renew", web::get().to(renew))
            .route("/keep-both-renew", web::get().to(keep_both_renew))
            .route("/purge", web::get().to(purge))
            .route("/purge-then-set/{p}/{k}/{v}", web::get().to(purge_then_set))
            .route("/status", web::get().to(status))
            .route("/id", web::get().to(id))
            .route("/remember/{idle}/{absolute}", web::get().to(remember))
            .route("/timeouts/{idle}/{absolute}", web::get().to(timeouts))
            .route("/clear-timeouts", web::get().to(clear_timeouts))
            .route("/set-and-id/{p}/{k}/{v}", web::get().to(set_and_id))
            .route("/container/purge-own", web::get().to(purge_own))
            .route("/login/{user}", web::get().to(login))
            .route("/bind/{user}", web::get().to(bind))
            .route(
                "/bind-ignoring-errors/{user}",
                web::get().to(bind_ignoring_errors),
            )
            .route("/login-from/{user}/{label}", web::get().to(login_from))
            .route(
                "/gated/login-from/{user}/{label}",
                web::get().to(gated_login_from),
            )
            .route("/devices", web::get().to(devices))
            .route("/purge-then-bind/{user}", web::get().to(purge_then_bind))
            .route(
                "/sign-out-others-then-bind/{user}",
                web::get().to(sign_out_others_then_bind),
            )
            .route("/sign-out-two/{a}/{b}", web::get().to(sign_out_two))
            .route("/sign-out-many/{n}/{handle}", web::get().to(sign_out_many))
            .route(
                "/sign-out-self-and-then-big/{other}/{n}",
                web::get().to(sign_out_self_and_then_big),
            )
            .route(
                "/sign-out-session/{handle}",
                web::get().to(sign_out_session),
            )
            .route(
                "/sign-out-session-then-switch-to/{handle}/{user}",
                web::get().to(sign_out_session_then_switch),
            )
            .route(
                "/sign-out-others-then-switch-to/{user}/then-sign-out/{handle}",
                web::get().to(sign_out_others_then_switch),
            )
            .route(
                "/sign-out-everywhere-then-switch-to/{users}/and-again",
                web::get().to(sign_out_everywhere_twice),
            )
            .route(
                "/purge-then-sign-out-session/{handle}",
                web::get().to(purge_then_sign_out_session),
            )
            .route(
                "/sign-out-others-then-session/{handle}",
                web::get().to(sign_out_others_then_session),
            )
            .route("/whoami", web::get().to(whoami))
            .route("/sign-out-everywhere", web::get().to(sign_out_everywhere))
            .route(
                "/sign-out-everywhere-then-500",
                web::get().to(sign_out_everywhere_then_500),
            )
            .route("/sign-out-others", web::get().to(sign_out_others))
            .route("/counted/sign-out/{how}", web::get().to(counted_sign_out))
            .route("/counted/login/{user}", web::get().to(counted_login))
            .route(
                "/counted/admin-sign-out/{user}/{handle}",
                web::get().to(counted_admin_sign_out),
            )
            .route("/who", web::get().to(who))
            .route(
                "/purge-then-sign-out-everywhere",
                web::get().to(purge_then_sign_out_everywhere),
            )
            .route(
                "/sign-out-others-then-purge",
                web::get().to(sign_out_others_then_purge),
            )
            .route(
                "/sign-out-others-purge-bind/{user}",
                web::get().to(sign_out_others_purge_bind),
            )
            .route(
                "/sign-out-then-big/{how}/{n}",
                web::get().to(sign_out_then_big),
            )
            .route(
                "/gated/sign-out-others",
                web::get().to(gated_sign_out_others),
            )
            .route(
                "/gated/sign-out-everywhere",
                web::get().to(gated_sign_out_everywhere),
            )
            .route("/typed", web::get().to(typed_get))
            .route("/typed/set/{field}/{v}", web::get().to(typed_set))
            .route(
                "/gated/typed/set/{field}/{v}",
                web::get().to(gated_typed_set),
            )
            .route("/typed/reset", web::get().to(typed_reset))
            .route("/typed/labels", web::get().to(typed_labels))
            .route("/typed/misfit", web::get().to(typed_misfit))
            .route("/typed/not-an-object", web::get().to(typed_not_an_object))
            .route("/savepoints", web::get().to(savepoints))
            .route("/savepoint/purge", web::get().to(savepoint_purge))
            .route("/abort/{p}/{k}/{v}", web::get().to(abort))
            .route("/hooks/{mode}", web::get().to(hooked))
            .route("/stored-id/{how}", web::get().to(stored_id))
            .route("/hook-reads/{how}", web::get().to(hook_reads))
            .route("/switch-to/{user}/{how}", web::get().to(switch_to))
            .service(
                // A service inside the session middleware that fails after the handler.
                web::scope("/inner-error")
                    .wrap_fn(|req, srv| {
                        let response = srv.call(req);
                        async move {
                            response.await?;
                            Err::<ServiceResponse, _>(actix_web::error::ErrorForbidden(
                                "inner service failed",
                            ))
                        }
                    })
                    .route("/{mode}", web::get().to(hooked)),
            )
            .route("/flash/send/{level}/{text}", web::get().to(flash_send))
            .route("/flash/show", web::get().to(flash_show))
            .route("/gated/flash/show", web::get().to(gated_flash_show))
            .route("/flash/show-then-500", web::get().to(flash_show_then_500))
            .route(
                "/flash/show-and-send/{text}",
                web::get().to(flash_show_and_send),
            );
        let service = test::init_service(app).await;
        Self {
            service: boxed::service(service.map(ServiceResponse::map_into_boxed_body)),
            store,
            gate,
            hooks,
            kept,
            kept_request,
            sessions,
            secret: None,
        }
    }

    /// GET `path`, with the session cookie if given; a service error becomes its response,
    /// as actix's HTTP server would send it.
    pub async fn get(&self, path: &str, cookie: Option<&Cookie<'_>>) -> Reply {
        let mut req = test::TestRequest::get().uri(path);
        if let Some(cookie) = cookie {
            req = req.cookie(cookie.clone().into_owned());
        }
        match self.service.call(req.to_request()).await {
            Ok(res) => Reply::from(res).await,
            Err(e) => {
                let res = e.error_response();
                let req = test::TestRequest::default().to_http_request();
                Reply::from(ServiceResponse::new(req, res)).await
            }
        }
    }

    /// GET `path` with a raw `Cookie` header (several cookies, repeated names).
    pub async fn get_with_cookies(&self, path: &str, header: &str) -> Reply {
        let req = test::TestRequest::get()
            .uri(path)
            .insert_header(("cookie", header));
        Reply::from(self.service.call(req.to_request()).await.unwrap()).await
    }

    /// Runs `gated` (a `/gated/...` path) until it has loaded the session, then `path` to
    /// completion, then lets `gated` change and commit: load, load, commit, commit.
    pub async fn interleave(&self, gated: &str, path: &str, cookie: &Cookie<'_>) -> (Reply, Reply) {
        self.interleave_with(gated, cookie, self.get(path, Some(cookie)))
            .await
    }

    /// As [`interleave`](Self::interleave), with any work in the middle.
    pub async fn interleave_with<T>(
        &self,
        gated: &str,
        cookie: &Cookie<'_>,
        middle: impl std::future::Future<Output = T>,
    ) -> (Reply, T) {
        let other = async {
            within("the gated request to load", self.gate.loaded.acquire())
                .await
                .unwrap()
                .forget();
            let done = middle.await;
            self.gate.go.add_permits(1);
            done
        };
        join(self.get(gated, Some(cookie)), other).await
    }
}

/// Path values are JSON when they parse as JSON (numbers, `true`), strings otherwise.
fn json(v: &str) -> Value {
    serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()))
}

async fn get(s: Session, path: web::Path<(String, String)>) -> actix_web::Result<String> {
    let (p, k) = path.into_inner();
    let value: Option<Value> = s.package(p).get(&k)?;
    Ok(value.map_or_else(|| "none".to_owned(), |v| v.to_string()))
}

/// `get` behind an extractor that swallows the session's error: the second extractor must
/// still load the session the cookie names (or fail as the first did).
async fn maybe_get(
    _: Option<Session>,
    s: Session,
    path: web::Path<(String, String)>,
) -> actix_web::Result<String> {
    get(s, path).await
}

/// `get`, keeping a handle to the session past the request's end.
async fn keep(
    s: Session,
    path: web::Path<(String, String)>,
    kept: web::Data<Kept>,
) -> actix_web::Result<String> {
    kept.replace(Some(s.clone()));
    get(s, path).await
}

/// `set`, keeping a handle to the session past the request's end.
async fn keep_set(
    s: Session,
    path: web::Path<(String, String, String)>,
    kept: web::Data<Kept>,
) -> actix_web::Result<String> {
    kept.replace(Some(s.clone()));
    set(s, path).await
}

/// `set`, keeping the request (not the session handle) past the request's end.
async fn keep_request_set(
    s: Session,
    req: actix_web::HttpRequest,
    path: web::Path<(String, String, String)>,
    kept: web::Data<KeptRequest>,
) -> actix_web::Result<String> {
    kept.replace(Some(req));
    set(s, path).await
}

/// `renew`, keeping both the request and a handle to the session past the request's end.
async fn keep_both_renew(
    s: Session,
    req: actix_web::HttpRequest,
    kept: web::Data<Kept>,
    kept_request: web::Data<KeptRequest>,
) -> String {
    kept.replace(Some(s.clone()));
    kept_request.replace(Some(req));
    renew(s).await
}

async fn twice(
    a: Session,
    b: Session,
    path: web::Path<(String, String)>,
) -> actix_web::Result<String> {
    let (p, k) = path.into_inner();
    let x: Option<Value> = a.package(&p).get(&k)?;
    let y: Option<Value> = b.package(&p).get(&k)?;
    Ok(format!("{x:?} {y:?}"))
}

async fn set(s: Session, path: web::Path<(String, String, String)>) -> actix_web::Result<String> {
    let (p, k, v) = path.into_inner();
    s.package(p).insert(&k, json(&v))?;
    Ok("ok".to_owned())
}

async fn set_status(
    s: Session,
    path: web::Path<(u16, String, String, String)>,
) -> actix_web::Result<HttpResponse> {
    let (status, p, k, v) = path.into_inner();
    s.package(p).insert(&k, json(&v))?;
    Ok(HttpResponse::build(StatusCode::from_u16(status).unwrap()).body("status"))
}

async fn set_err(
    s: Session,
    path: web::Path<(String, String, String)>,
) -> actix_web::Result<String> {
    let (p, k, v) = path.into_inner();
    s.package(p).insert(&k, json(&v))?;
    Err(actix_web::error::ErrorBadRequest("handler failed"))
}

async fn set_panic(s: Session, path: web::Path<(String, String, String)>) -> &'static str {
    let (p, k, v) = path.into_inner();
    s.package(p).insert(&k, json(&v)).unwrap();
    panic!("handler panicked after changing the session");
}

async fn set_err_303(
    s: Session,
    path: web::Path<(String, String, String)>,
) -> actix_web::Result<String> {
    let (p, k, v) = path.into_inner();
    s.package(p).insert(&k, json(&v))?;
    let login_first = actix_web::error::InternalError::new("log in first", StatusCode::SEE_OTHER);
    Err(login_first.into())
}

async fn deep(s: Session, path: web::Path<(String, String, usize)>) -> actix_web::Result<String> {
    let (p, k, levels) = path.into_inner();
    let value = (0..levels).fold(Value::from(0), |inner, _| Value::Array(vec![inner]));
    s.package(p).insert(&k, value)?;
    Ok("ok".to_owned())
}

/// Stores a float NaN under `p/k`, in a list.
async fn nan(s: Session, path: web::Path<(String, String)>) -> actix_web::Result<String> {
    let (p, k) = path.into_inner();
    s.package(p).insert(&k, vec![1.0, f64::NAN])?;
    Ok("ok".to_owned())
}

/// Waits at the gate after the session loaded.
async fn pass(gate: &Gate) {
    gate.loaded.add_permits(1);
    gate.go.acquire().await.unwrap().forget();
}

async fn gated_get(
    s: Session,
    gate: web::Data<Gate>,
    path: web::Path<(String, String)>,
) -> actix_web::Result<String> {
    pass(&gate).await;
    get(s, path).await
}

async fn gated_renew(s: Session, gate: web::Data<Gate>) -> String {
    pass(&gate).await;
    renew(s).await
}

async fn gated_set(
    s: Session,
    gate: web::Data<Gate>,
    path: web::Path<(String, String, String)>,
) -> actix_web::Result<String> {
    pass(&gate).await;
    set(s, path).await
}

async fn big(s: Session, path: web::Path<(String, String, usize)>) -> actix_web::Result<String> {
    let (p, k, n) = path.into_inner();
    s.package(p).insert(&k, "x".repeat(n))?;
    Ok("ok".to_owned())
}

/// Reads the session, and answers with its own `Vary: value`.
async fn vary(s: Session, value: web::Path<String>) -> actix_web::Result<HttpResponse> {
    s.package("p").get::<Value>("k")?;
    Ok(HttpResponse::Ok()
        .insert_header(("vary", value.into_inner()))
        .finish())
}

/// Writes the session, and answers with its own `Cache-Control: value`.
async fn cached(s: Session, value: web::Path<String>) -> actix_web::Result<HttpResponse> {
    s.package("p").insert("k", 1)?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", value.into_inner()))
        .finish())
}

/// Answers without the session, leaving a task that loads it once the request has ended,
/// changes it and registers hooks: `"later:<user or none>"` in the hook log when done,
/// `"abort:later"` if its abort hook ever runs.
async fn later(req: actix_web::HttpRequest, log: web::Data<HookLog>) -> &'static str {
    actix_web::rt::spawn(async move {
        // Past the response, and the unit of work's end.
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        let Ok(session) = Session::extract(&req).await else {
            return;
        };
        let user = session.user().ok().flatten();
        let _ = session.package("p").insert("late", 1);
        let aborted = log.clone();
        session.after_abort(move || async move {
            aborted.push("abort:later".to_owned());
            Ok::<_, std::io::Error>(())
        });
        log.push(format!("later:{}", user.as_deref().unwrap_or("none")));
    });
    "later"
}

async fn keys(s: Session, p: web::Path<String>) -> actix_web::Result<String> {
    Ok(s.package(p.into_inner()).keys()?.join(","))
}

/// Package `p` as a JSON object.
async fn dump(s: Session, p: web::Path<String>) -> actix_web::Result<String> {
    let package = s.package(p.into_inner());
    let mut all = serde_json::Map::new();
    for key in package.keys()? {
        let value: Option<Value> = package.get(&key)?;
        all.insert(key, value.unwrap_or(Value::Null));
    }
    Ok(Value::Object(all).to_string())
}

/// Sets `k` in package `p` and answers the package's `owner`, as read before the change.
async fn note(s: Session, path: web::Path<(String, String)>) -> actix_web::Result<String> {
    let (k, v) = path.into_inner();
    let package = s.package("p");
    let owner: Option<Value> = package.get("owner")?;
    package.insert(&k, json(&v))?;
    Ok(owner.map_or_else(|| "none".to_owned(), |v| v.to_string()))
}

async fn remove(s: Session, path: web::Path<(String, String)>) -> actix_web::Result<String> {
    let (p, k) = path.into_inner();
    Ok(s.package(p).remove(&k)?.to_string())
}

async fn clear(s: Session, p: web::Path<String>) -> actix_web::Result<String> {
    s.package(p.into_inner()).clear()?;
    Ok("ok".to_owned())
}

async fn renew(s: Session) -> String {
    s.renew();
    format!("{:?}", s.status())
}

async fn purge(s: Session) -> String {
    s.purge();
    format!("{:?}", s.status())
}

async fn purge_then_set(
    s: Session,
    path: web::Path<(String, String, String)>,
) -> actix_web::Result<String> {
    s.purge();
    set(s, path).await
}

async fn status(s: Session) -> String {
    format!("{:?}", s.status())
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Profile {
    name: String,
    visits: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    nickname: Option<String>,
}

const PROFILE: TypedPackage<Profile> = TypedPackage::new("profile");

async fn typed_get(s: Session) -> actix_web::Result<String> {
    Ok(format!("{:?}", s.get(&PROFILE)?))
}

async fn typed_set(s: Session, path: web::Path<(String, String)>) -> actix_web::Result<String> {
    let (field, v) = path.into_inner();
    s.update(&PROFILE, |p| match field.as_str() {
        "name" => p.name = v,
        "visits" => p.visits = v.parse().unwrap_or_default(),
        "nickname" => p.nickname = (v != "none").then_some(v),
        _ => {}
    })?;
    Ok(format!("{:?}", s.status()))
}

async fn gated_typed_set(
    s: Session,
    gate: web::Data<Gate>,
    path: web::Path<(String, String)>,
) -> actix_web::Result<String> {
    pass(&gate).await;
    typed_set(s, path).await
}

async fn typed_reset(s: Session) -> actix_web::Result<String> {
    s.set(&PROFILE, &Profile::default())?;
    Ok(format!("{:?}", s.status()))
}

#[derive(Default, Serialize, Deserialize)]
struct Labels {
    counts: std::collections::HashMap<String, u32>,
}

/// Sets 16 labels, in a map built anew: its order differs from one build to the next.
async fn typed_labels(s: Session) -> actix_web::Result<String> {
    let counts = (b'a'..=b'p').map(|c| (char::from(c).to_string(), u32::from(c)));
    let labels = Labels {
        counts: counts.collect(),
    };
    s.set(&TypedPackage::new("labels"), &labels)?;
    Ok(format!("{:?}", s.status()))
}

/// A type that disagrees with `Profile` on `name`.
#[derive(Default, Serialize, Deserialize)]
struct Misfit {
    name: u64,
}

async fn typed_misfit(s: Session) -> actix_web::Result<String> {
    let misfit: TypedPackage<Misfit> = TypedPackage::new("profile");
    s.update(&misfit, |m| m.name += 1)?;
    Ok("ok".to_owned())
}

async fn typed_not_an_object(s: Session) -> actix_web::Result<String> {
    let list: TypedPackage<Vec<u32>> = TypedPackage::new("profile");
    s.set(&list, &vec![1])?;
    Ok("ok".to_owned())
}

/// a=1, then b, c, d in savepoints rolled back, then e=5; reports whether rolling back to
/// a savepoint discarded by an earlier rollback is refused.
async fn savepoints(s: Session, log: web::Data<HookLog>) -> actix_web::Result<String> {
    let p = s.package("p");
    p.insert("a", 1)?;
    let outer = s.savepoint();
    p.insert("b", 2)?;
    let log = log.into_inner();
    s.after_commit(move || async move {
        log.push("commit:rolled-back".to_owned());
        Ok::<_, SessionError>(())
    });
    let inner = s.savepoint();
    p.insert("c", 3)?;
    inner.rollback()?;
    let after_inner = p.keys()?.join(",");
    p.insert("d", 4)?;
    outer.rollback()?;
    p.insert("e", 5)?;
    let refused = matches!(inner.rollback(), Err(SessionError::InvalidSavepoint));
    Ok(format!(
        "{after_inner} {} refused={refused}",
        p.keys()?.join(",")
    ))
}

async fn savepoint_purge(s: Session) -> actix_web::Result<String> {
    let before = s.savepoint();
    s.purge();
    let purged = format!("{:?}", s.status());
    before.rollback()?;
    Ok(format!("{purged} {:?}", s.status()))
}

async fn abort(s: Session, path: web::Path<(String, String, String)>) -> actix_web::Result<String> {
    let (p, k, v) = path.into_inner();
    s.package(p).insert(&k, json(&v))?;
    s.renew();
    s.abort();
    Ok(format!("{:?}", s.status()))
}

/// Registers a hook of each branch, plus a failing and a panicking commit hook before
/// them, then ends as `mode` says.
/// Changes the session (`set`), renews it (`renew`), binds a user (`login`) or purges it
/// (`purge`, then stores anew; `purge-only`); answers the id `Session::id` gives in the handler, and logs the one it gives
/// in an after-commit hook (`id:<id or none>`).
async fn stored_id(
    s: Session,
    how: web::Path<String>,
    log: web::Data<HookLog>,
) -> actix_web::Result<String> {
    let name = |id: Option<SessionId>| id.map_or_else(|| "none".to_owned(), |id| id.to_string());
    match how.as_str() {
        "renew" => s.renew(),
        "login" => s.bind_user("ada")?,
        "purge" | "purge-only" => s.purge(),
        _ => {}
    }
    if how.as_str() != "purge-only" {
        s.package("p").insert("id", how.as_str())?;
    }
    let (session, log) = (s.clone(), log.into_inner());
    s.after_commit(move || async move {
        log.push(format!("id:{}", name(session.id())));
        Ok::<_, SessionError>(())
    });
    Ok(name(s.id()))
}

/// Binds `user`, and as `how` says: removes `p/k` first (`remove-first`), sets it to
/// `"0"` and back to `"1"` first (`flip-first`), sets it to `"1"` after (`set-after`), or
/// answers the flash messages shown after (`show`).
async fn switch_to(s: Session, path: web::Path<(String, String)>) -> actix_web::Result<String> {
    let (user, how) = path.into_inner();
    match how.as_str() {
        "remove-first" => drop(s.package("p").remove("k")?),
        "flip-first" => {
            s.package("p").insert("k", "0")?;
            s.package("p").insert("k", "1")?;
        }
        _ => {}
    }
    s.bind_user(&user)?;
    match how.as_str() {
        "set-after" => s.package("p").insert("k", "1")?,
        "show" => return shown(&s),
        _ => {}
    }
    Ok(how)
}

/// Binds "ada", sets `p/k` to `how` (a value too large to store for `too-large`), and
/// ends as `how` says (`abort` aborts); its hooks log what they read of the session:
/// `<branch>:<user>:<p/k, or "large">:<id>`.
async fn hook_reads(
    s: Session,
    how: web::Path<String>,
    log: web::Data<HookLog>,
) -> actix_web::Result<HttpResponse> {
    s.bind_user("ada")?;
    let value = match how.as_str() {
        "too-large" => "x".repeat(5000),
        how => how.to_owned(),
    };
    s.package("p").insert("k", value)?;
    if how.as_str() == "forbidden" {
        // No hook holds the session: only what the abort leaves is there to read.
        return Ok(HttpResponse::Forbidden().body(how.into_inner()));
    }
    for branch in ["commit", "abort"] {
        let (session, log) = (s.clone(), log.clone().into_inner());
        let read = move || async move {
            let user = session.user()?.unwrap_or_else(|| "none".to_owned());
            let value: Option<String> = session.package("p").get("k")?;
            let value = value.map(|v| if v.len() > 100 { "large".into() } else { v });
            let id = session
                .id()
                .map_or_else(|| "none".to_owned(), |id| id.to_string());
            log.push(format!(
                "{branch}:{user}:{}:{id}",
                value.as_deref().unwrap_or("none")
            ));
            Ok::<_, SessionError>(())
        };
        match branch {
            "commit" => s.after_commit(read),
            _ => s.after_abort(read),
        }
    }
    if how.as_str() == "abort" {
        s.abort();
    }
    Ok(HttpResponse::Ok().body(how.into_inner()))
}

async fn hooked(
    s: Session,
    mode: web::Path<String>,
    log: web::Data<HookLog>,
) -> actix_web::Result<HttpResponse> {
    let mode = mode.into_inner();
    s.after_commit(|| async { Err::<(), _>("the mail server is down") });
    s.after_commit(|| async {
        panic!("a hook panics");
        #[allow(unreachable_code)]
        Ok::<_, SessionError>(())
    });
    let (on_commit, on_abort) = (log.clone().into_inner(), log.into_inner());
    let tag = mode.clone();
    s.after_commit(move || async move {
        on_commit.push(format!("commit:{tag}:{}", (on_commit.writes)()));
        Ok::<_, SessionError>(())
    });
    let tag = mode.clone();
    s.after_abort(move || async move {
        on_abort.push(format!("abort:{tag}"));
        Ok::<_, SessionError>(())
    });
    let value = if mode == "too-large" {
        "x".repeat(5000)
    } else {
        mode.clone()
    };
    // `read` changes nothing: its hooks run all the same.
    if mode != "read" {
        s.package("p").insert("hooked", value)?;
    }
    match mode.as_str() {
        "status" => Ok(HttpResponse::InternalServerError().finish()),
        "error" => Err(actix_web::error::ErrorBadRequest("handler failed")),
        "panic" => panic!("handler panicked after registering hooks"),
        "abort" => {
            s.abort();
            Ok(HttpResponse::Ok().body("aborted"))
        }
        _ => Ok(HttpResponse::Ok().body("ok")),
    }
}

async fn flash_send(s: Session, path: web::Path<(String, String)>) -> actix_web::Result<String> {
    let (level, text) = path.into_inner();
    let level = match level.as_str() {
        "error" => Level::Error,
        "warning" => Level::Warning,
        _ => Level::Info,
    };
    s.send_flash(FlashMessage::new(level, text))?;
    Ok("sent".to_owned())
}

fn shown(s: &Session) -> actix_web::Result<String> {
    let messages = s.incoming_flashes()?;
    let shown: Vec<String> = messages
        .iter()
        .map(|m| format!("{}:{}", m.level(), m.content()))
        .collect();
    Ok(shown.join("|"))
}

async fn flash_show(s: Session) -> actix_web::Result<String> {
    shown(&s)
}

async fn gated_flash_show(s: Session, gate: web::Data<Gate>) -> actix_web::Result<String> {
    pass(&gate).await;
    shown(&s)
}

async fn flash_show_then_500(s: Session) -> actix_web::Result<HttpResponse> {
    let body = shown(&s)?;
    Ok(HttpResponse::InternalServerError().body(body))
}

async fn flash_show_and_send(s: Session, text: web::Path<String>) -> actix_web::Result<String> {
    s.send_flash(FlashMessage::info(text.into_inner()))?;
    let first = shown(&s)?;
    let again = shown(&s)?;
    Ok(format!("{first} / {again}"))
}

async fn id(s: Session) -> String {
    s.id()
        .map_or_else(|| "none".to_owned(), |id| id.to_string())
}

/// Sets a value and reports the id before the commit.
async fn set_and_id(
    s: Session,
    path: web::Path<(String, String, String)>,
) -> actix_web::Result<String> {
    set(s.clone(), path).await?;
    Ok(id(s).await)
}

/// Purges this request's own session through the container.
async fn purge_own(s: Session, sessions: Sessions) -> actix_web::Result<String> {
    let id = s
        .id()
        .ok_or_else(|| actix_web::error::ErrorNotFound("no session"))?;
    sessions.purge(&id).await?;
    Ok("purged".to_owned())
}

/// A login: renew, `p/k = 1`, and the session bound to `user`.
async fn login(s: Session, user: web::Path<String>) -> actix_web::Result<String> {
    s.renew();
    s.package("p").insert("k", 1)?;
    bind(s, user).await
}

async fn bind(s: Session, user: web::Path<String>) -> actix_web::Result<String> {
    s.bind_user(&user)?;
    Ok(format!("{:?}", s.status()))
}

/// Binds `user`, and goes on whatever that answered, as a careless handler would.
async fn bind_ignoring_errors(s: Session, user: web::Path<String>) -> String {
    format!("bound: {}", s.bind_user(&user).is_ok())
}

/// A login from a device: renewed, bound to `user`, labelled.
async fn login_from(s: Session, path: web::Path<(String, String)>) -> actix_web::Result<String> {
    let (user, label) = path.into_inner();
    s.set_label(&label)?;
    s.bind_user(&user)?;
    Ok(format!("{:?}", s.status()))
}

async fn gated_login_from(
    s: Session,
    gate: web::Data<Gate>,
    path: web::Path<(String, String)>,
) -> actix_web::Result<String> {
    pass(&gate).await;
    login_from(s, path).await
}

/// The signed-in user's sessions, oldest first: one line each, `handle label flags`, with
/// `current` and `remember` among the flags.
async fn devices(s: Session, sessions: Sessions) -> actix_web::Result<String> {
    let Some(user) = s.user()? else {
        return Ok("none".to_owned());
    };
    let current = s.handle();
    let listed = sessions.of_user(&user).await?;
    Ok(listed
        .iter()
        .map(|l| {
            let mut line = format!("{} {}", l.handle, l.label.as_deref().unwrap_or("-"));
            if Some(&l.handle) == current.as_ref() {
                line += " current";
            }
            if l.remember_me {
                line += " remember";
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

async fn purge_then_bind(s: Session, user: web::Path<String>) -> actix_web::Result<String> {
    s.purge();
    s.bind_user(&user)?;
    Ok(format!("{:?}", s.status()))
}

async fn sign_out_others_purge_bind(
    s: Session,
    user: web::Path<String>,
) -> actix_web::Result<String> {
    s.sign_out_other_sessions();
    s.purge();
    s.bind_user(&user)?;
    Ok(format!("{:?}", s.status()))
}

async fn sign_out_others_then_bind(
    s: Session,
    user: web::Path<String>,
) -> actix_web::Result<String> {
    s.sign_out_other_sessions();
    s.bind_user(&user)?;
    Ok(format!("{:?}", s.status()))
}

async fn sign_out_session(s: Session, handle: web::Path<String>) -> actix_web::Result<String> {
    let handle: SessionHandle = handle.parse()?;
    s.sign_out_session(&handle);
    Ok(format!("{:?}", s.status()))
}

/// Signs out the device `handle`, then logs in as `user` and signs out that user's other
/// sessions: two sign-outs of two users in one request.
async fn sign_out_session_then_switch(
    s: Session,
    path: web::Path<(String, String)>,
) -> actix_web::Result<String> {
    let (handle, user) = path.into_inner();
    s.sign_out_session(&handle.parse()?);
    s.bind_user(&user)?;
    s.sign_out_other_sessions();
    Ok(format!("{:?}", s.status()))
}

/// Signs out this user's other sessions, then logs in as `user` and signs out the device
/// `handle` (of that user, so bound in this request: it ends nobody else).
async fn sign_out_others_then_switch(
    s: Session,
    path: web::Path<(String, String)>,
) -> actix_web::Result<String> {
    let (user, handle) = path.into_inner();
    s.sign_out_other_sessions();
    s.bind_user(&user)?;
    s.sign_out_session(&handle.parse()?);
    Ok(format!("{:?}", s.status()))
}

/// Signs out this user everywhere, then logs in as each of `users` (separated by commas)
/// in turn and signs that one out everywhere too: several users' sign-outs in one request.
async fn sign_out_everywhere_twice(
    s: Session,
    users: web::Path<String>,
) -> actix_web::Result<String> {
    s.sign_out_everywhere();
    for user in users.split(',') {
        s.bind_user(user)?;
        s.sign_out_everywhere();
    }
    Ok(format!("{:?}", s.status()))
}

/// Signs out the device `other`, then this one by its handle, then stores `n` bytes.
async fn sign_out_self_and_then_big(
    s: Session,
    path: web::Path<(String, usize)>,
) -> actix_web::Result<String> {
    let (other, n) = path.into_inner();
    s.sign_out_session(&other.parse()?);
    if let Some(own) = s.handle() {
        s.sign_out_session(&own);
    }
    s.package("p").insert("blob", "x".repeat(n))?;
    Ok(format!("{:?}", s.status()))
}

/// Signs out two devices in one request, `a` first.
async fn sign_out_two(s: Session, path: web::Path<(String, String)>) -> actix_web::Result<String> {
    let (a, b) = path.into_inner();
    s.sign_out_session(&a.parse()?);
    s.sign_out_session(&b.parse()?);
    Ok(format!("{:?}", s.status()))
}

/// Names `n` handles listed nowhere, then `handle`.
async fn sign_out_many(s: Session, path: web::Path<(usize, String)>) -> actix_web::Result<String> {
    let (n, handle) = path.into_inner();
    for i in 0..n {
        s.sign_out_session(&format!("{i:016x}").parse()?);
    }
    s.sign_out_session(&handle.parse()?);
    Ok(format!("{:?}", s.status()))
}

async fn sign_out_others_then_session(
    s: Session,
    handle: web::Path<String>,
) -> actix_web::Result<String> {
    s.sign_out_other_sessions();
    sign_out_session(s, handle).await
}

async fn purge_then_sign_out_session(
    s: Session,
    handle: web::Path<String>,
) -> actix_web::Result<String> {
    s.purge();
    sign_out_session(s, handle).await
}

async fn whoami(s: Session) -> actix_web::Result<String> {
    Ok(s.user()?.unwrap_or_else(|| "none".to_owned()))
}

async fn sign_out_everywhere(s: Session) -> String {
    s.sign_out_everywhere();
    format!("{:?}", s.status())
}

async fn sign_out_everywhere_then_500(s: Session) -> HttpResponse {
    s.sign_out_everywhere();
    HttpResponse::InternalServerError().finish()
}

/// Signs out everywhere, then stores `n` bytes in the (purged, so new) session.
/// A sign-out (`everywhere`, `others`, or `others-purge`: a logout helper that signs out
/// the others and purges), then a write of `n` bytes, more than fits when the test says so.
async fn sign_out_then_big(
    s: Session,
    path: web::Path<(String, usize)>,
) -> actix_web::Result<String> {
    let (how, n) = path.into_inner();
    match how.as_str() {
        "everywhere" => s.sign_out_everywhere(),
        "others" => s.sign_out_other_sessions(),
        "others-purge" => {
            s.sign_out_other_sessions();
            s.purge();
        }
        // A device's handle listed nowhere (signed out already, or a stale page).
        "unlisted" => s.sign_out_session(&"0123456789abcdef".parse()?),
        other => panic!("no sign-out {other:?}"),
    }
    s.package("p").insert("blob", "x".repeat(n))?;
    Ok(format!("{:?}", s.status()))
}

async fn sign_out_others(s: Session) -> String {
    s.sign_out_other_sessions();
    format!("{:?}", s.status())
}

/// Logs `"begun"` now and `"settled"` when this request's commit is done, whichever way it
/// ends, hung up on or not: a test knows when none is under way.
fn count_until_settled(s: &Session, log: web::Data<HookLog>) {
    log.push("begun".to_owned());
    let settled = |log: web::Data<HookLog>| {
        move || async move {
            log.push("settled".to_owned());
            Ok::<_, std::io::Error>(())
        }
    };
    s.after_commit(settled(log.clone()));
    s.after_abort(settled(log));
}

/// A counted sign-out ([`count_until_settled`]): `everywhere`, `others`, or else the
/// session of that handle. As an app's would, it answers 401 to a session not signed in
/// (one signed out before it was read), which may sign nobody out.
async fn counted_sign_out(
    s: Session,
    how: web::Path<String>,
    log: web::Data<HookLog>,
) -> actix_web::Result<String> {
    let handle = match how.as_str() {
        "everywhere" | "others" => None,
        handle => Some(handle.parse::<SessionHandle>()?),
    };
    if s.user()?.is_none() {
        return Err(actix_web::error::ErrorUnauthorized("not signed in"));
    }
    count_until_settled(&s, log);
    match (how.as_str(), handle) {
        (_, Some(handle)) => s.sign_out_session(&handle),
        ("everywhere", _) => s.sign_out_everywhere(),
        _ => s.sign_out_other_sessions(),
    }
    Ok(format!("{:?}", s.status()))
}

/// A counted login ([`count_until_settled`]), as `/login/{user}`: at a session limit, it
/// may sign out other sessions of the user as it commits.
async fn counted_login(
    s: Session,
    user: web::Path<String>,
    log: web::Data<HookLog>,
) -> actix_web::Result<String> {
    count_until_settled(&s, log);
    login(s, user).await
}

/// An admin signing out `user`'s session `handle` ([`Sessions::sign_out_session`]):
/// `"true"` if it was listed; or, for `everywhere`, every session of the user
/// ([`Sessions::sign_out_everywhere`]): `"true"`. Counted as [`count_until_settled`],
/// `"settled"` once the call is done or dropped (the client hung up).
async fn counted_admin_sign_out(
    sessions: Sessions,
    path: web::Path<(String, String)>,
    log: web::Data<HookLog>,
) -> actix_web::Result<String> {
    struct Settled(web::Data<HookLog>);
    impl Drop for Settled {
        fn drop(&mut self) {
            self.0.push("settled".to_owned());
        }
    }
    let (user, handle) = path.into_inner();
    let handle = match handle.as_str() {
        "everywhere" => None,
        handle => Some(handle.parse::<SessionHandle>()?),
    };
    log.push("begun".to_owned());
    let _settled = Settled(log);
    Ok(match handle {
        Some(handle) => sessions.sign_out_session(&user, &handle).await?,
        None => sessions.sign_out_everywhere(&user).await.map(|()| true)?,
    }
    .to_string())
}

/// Who is signed in and the handle of the session's login: `"user handle"`, or `"none"`.
async fn who(s: Session) -> actix_web::Result<String> {
    Ok(match s.user()? {
        Some(user) => {
            let handle = s.handle().map_or("-".to_owned(), |h| h.to_string());
            format!("{user} {handle}")
        }
        None => "none".to_owned(),
    })
}

async fn purge_then_sign_out_everywhere(s: Session) -> String {
    s.purge();
    s.sign_out_everywhere();
    format!("{:?}", s.status())
}

async fn sign_out_others_then_purge(s: Session) -> String {
    s.sign_out_other_sessions();
    s.purge();
    format!("{:?}", s.status())
}

async fn gated_sign_out_others(s: Session, gate: web::Data<Gate>) -> actix_web::Result<String> {
    s.user()?;
    pass(&gate).await;
    Ok(sign_out_others(s).await)
}

async fn gated_sign_out_everywhere(s: Session, gate: web::Data<Gate>) -> actix_web::Result<String> {
    s.user()?;
    pass(&gate).await;
    Ok(sign_out_everywhere(s).await)
}

/// A login with "keep me signed in": renew, `p/k = 1`, and the session's own timeouts.
async fn remember(s: Session, path: web::Path<(u64, u64)>) -> actix_web::Result<String> {
    s.renew();
    s.package("p").insert("k", 1)?;
    timeouts(s, path).await
}

async fn clear_timeouts(s: Session) -> actix_web::Result<String> {
    s.clear_timeouts()?;
    Ok(format!("{:?}", s.status()))
}

async fn timeouts(s: Session, path: web::Path<(u64, u64)>) -> actix_web::Result<String> {
    let (idle, absolute) = path.into_inner();
    s.set_timeouts(Duration::from_secs(idle), Duration::from_secs(absolute))?;
    Ok(format!("{:?}", s.status()))
}
