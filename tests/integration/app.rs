//! The test application every store's HTTP suite runs against.

use std::sync::Arc;

use actix_http::Request;
use actix_memcache_session::{Key, MemcacheSession, MemcacheSessionBuilder, Session, SessionStore};
use actix_service::boxed::{self, BoxService};
use actix_service::ServiceExt;
use actix_web::cookie::Cookie;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::middleware::DefaultHeaders;
use actix_web::{test, web, App, Error, HttpResponse};
use futures_util::future::join;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::support::{CountingStore, Reply};

/// A header the outer middleware adds to every response.
pub const OUTER_HEADER: &str = "x-outer";

/// Lets a test hold a request between loading its session and changing it.
struct Gate {
    loaded: Semaphore,
    go: Semaphore,
}

pub struct TestApp<S> {
    service: BoxService<Request, ServiceResponse, Error>,
    pub store: CountingStore<S>,
    gate: Arc<Gate>,
}

type Configure = fn(MemcacheSessionBuilder) -> MemcacheSessionBuilder;

impl<S: SessionStore + Clone> TestApp<S> {
    pub async fn new(store: CountingStore<S>) -> Self {
        Self::with(store, Key::generate(), |b| b).await
    }

    pub async fn configured(store: CountingStore<S>, configure: Configure) -> Self {
        Self::with(store, Key::generate(), configure).await
    }

    pub async fn with(store: CountingStore<S>, key: Key, configure: Configure) -> Self {
        let gate = Arc::new(Gate {
            loaded: Semaphore::new(0),
            go: Semaphore::new(0),
        });
        let middleware = configure(MemcacheSession::builder(store.clone(), key)).build();
        let app = App::new()
            .app_data(web::Data::from(Arc::clone(&gate)))
            .wrap(middleware)
            // Outside the session middleware: must see every response, failed commits too.
            .wrap(DefaultHeaders::new().add((OUTER_HEADER, "seen")))
            .route("/plain", web::get().to(|| async { "plain" }))
            .route("/get/{p}/{k}", web::get().to(get))
            .route("/twice/{p}/{k}", web::get().to(twice))
            .route("/set/{p}/{k}/{v}", web::get().to(set))
            .route(
                "/set-status/{status}/{p}/{k}/{v}",
                web::get().to(set_status),
            )
            .route("/set-err/{p}/{k}/{v}", web::get().to(set_err))
            .route("/set-panic/{p}/{k}/{v}", web::get().to(set_panic))
            .route("/set-err-303/{p}/{k}/{v}", web::get().to(set_err_303))
            .route("/deep/{p}/{k}/{levels}", web::get().to(deep))
            .route("/gated/set/{p}/{k}/{v}", web::get().to(gated_set))
            .route("/gated/get/{p}/{k}", web::get().to(gated_get))
            .route("/gated/renew", web::get().to(gated_renew))
            .route("/big/{p}/{k}/{n}", web::get().to(big))
            .route("/keys/{p}", web::get().to(keys))
            .route("/remove/{p}/{k}", web::get().to(remove))
            .route("/clear/{p}", web::get().to(clear))
            .route("/renew", web::get().to(renew))
            .route("/purge", web::get().to(purge))
            .route("/purge-then-set/{p}/{k}/{v}", web::get().to(purge_then_set))
            .route("/status", web::get().to(status));
        let service = test::init_service(app).await;
        Self {
            service: boxed::service(service.map(ServiceResponse::map_into_boxed_body)),
            store,
            gate,
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
        let other = async {
            self.gate.loaded.acquire().await.unwrap().forget();
            let reply = self.get(path, Some(cookie)).await;
            self.gate.go.add_permits(1);
            reply
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

async fn keys(s: Session, p: web::Path<String>) -> actix_web::Result<String> {
    Ok(s.package(p.into_inner()).keys()?.join(","))
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
