//! actix-identity on actix-session, with the sessions in memcached: this crate's
//! `MemcacheStore` as actix-session's store (feature `actix-session`). Logging in and out
//! are actix-identity's; the sessions are actix-session's (whole state, read eagerly), not
//! `MemcacheSession`'s unit of work.
//!
//! `cargo run --example identity` (the in-process store; with memcached running,
//! `MEMCACHE_URL=memcache://127.0.0.1:11211 cargo run --example identity`), then:
//! ```text
//! curl -c jar -b jar http://127.0.0.1:8080/              # anonymous
//! curl -c jar -b jar -X POST http://127.0.0.1:8080/login/alice
//! curl -c jar -b jar http://127.0.0.1:8080/              # alice
//! curl -c jar -b jar -X POST http://127.0.0.1:8080/logout
//! curl -c jar -b jar http://127.0.0.1:8080/              # anonymous again
//! ```

use actix_identity::{Identity, IdentityMiddleware};
use actix_memcache_session::{MemcacheStore, MemoryStore};
use actix_session::storage::SessionStore;
use actix_session::SessionMiddleware;
use actix_web::cookie::Key;
use actix_web::{web, App, HttpMessage, HttpRequest, HttpResponse, HttpServer};

async fn index(user: Option<Identity>) -> actix_web::Result<String> {
    Ok(match user {
        Some(user) => format!("signed in as {}\n", user.id()?),
        None => "anonymous\n".to_owned(),
    })
}

async fn login(req: HttpRequest, name: web::Path<String>) -> actix_web::Result<HttpResponse> {
    // A real app checks a password first.
    Identity::login(&req.extensions(), name.into_inner())?;
    Ok(HttpResponse::Ok().body("signed in\n"))
}

async fn logout(user: Identity) -> HttpResponse {
    user.logout();
    HttpResponse::Ok().body("signed out\n")
}

fn routes(app: &mut web::ServiceConfig) {
    app.route("/", web::get().to(index))
        .route("/login/{name}", web::post().to(login))
        .route("/logout", web::post().to(logout));
}

/// Serves the app over `store` on 127.0.0.1:$PORT (8080 by default).
async fn serve<S: SessionStore + Clone + Send + 'static>(store: S) -> std::io::Result<()> {
    // A fresh key per run: sessions end with the process.
    let key = Key::generate();
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    println!("identity on http://127.0.0.1:{port}/");
    HttpServer::new(move || {
        App::new()
            .wrap(IdentityMiddleware::default())
            // Plain HTTP on localhost only: keep `cookie_secure` on behind HTTPS.
            .wrap(
                SessionMiddleware::builder(store.clone(), key.clone())
                    .cookie_secure(false)
                    .build(),
            )
            .configure(routes)
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    match std::env::var("MEMCACHE_URL") {
        Ok(url) => {
            println!("session store: memcached at {url}");
            serve(MemcacheStore::new(&url).map_err(std::io::Error::other)?).await
        }
        Err(_) => {
            println!("session store: in-process MemoryStore (MEMCACHE_URL is not set)");
            serve(MemoryStore::new()).await
        }
    }
}

/// Logging in and out through actix-identity, over this crate's store
/// (`cargo test --example identity`).
#[cfg(test)]
mod tests {
    use actix_web::cookie::Cookie;
    use actix_web::test;

    use super::*;

    #[actix_web::test]
    async fn a_login_is_remembered_until_the_logout() {
        let store = MemoryStore::new();
        let app = test::init_service(
            App::new()
                .wrap(IdentityMiddleware::default())
                .wrap(SessionMiddleware::new(store, Key::generate()))
                .configure(routes),
        )
        .await;
        let call = |method: test::TestRequest, path: &str, cookie: Option<Cookie<'static>>| {
            let mut req = method.uri(path);
            if let Some(cookie) = cookie {
                req = req.cookie(cookie);
            }
            req.to_request()
        };
        let res =
            test::call_service(&app, call(test::TestRequest::post(), "/login/alice", None)).await;
        let cookie = res
            .response()
            .cookies()
            .next()
            .expect("a session")
            .into_owned();
        let req = call(test::TestRequest::get(), "/", Some(cookie.clone()));
        assert_eq!(
            test::call_and_read_body(&app, req).await,
            "signed in as alice\n"
        );
        let req = call(test::TestRequest::post(), "/logout", Some(cookie.clone()));
        test::call_service(&app, req).await;
        let req = call(test::TestRequest::get(), "/", Some(cookie));
        assert_eq!(
            test::call_and_read_body(&app, req).await,
            "anonymous\n",
            "the old cookie"
        );
    }
}
