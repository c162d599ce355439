//! Accounts: a login with "keep me signed in", a "your sessions" page with "sign out this
//! one", and "sign out everywhere". Each login binds its session to the user, which lists
//! it among the user's sessions with no record of the app's own.
//!
//! `cargo run --example accounts`, then, as two devices (two cookie jars):
//! ```text
//! curl -c laptop -b laptop -A laptop -X POST 'http://127.0.0.1:8080/login?user=alice&remember=true'
//! curl -c phone -b phone -A phone -X POST 'http://127.0.0.1:8080/login?user=alice'
//! curl -c laptop -b laptop http://127.0.0.1:8080/sessions          # both, with handles
//! curl -c laptop -b laptop -X POST http://127.0.0.1:8080/sessions/HANDLE/sign-out
//! curl -c phone -b phone http://127.0.0.1:8080/                    # the phone is out
//! curl -c laptop -b laptop -X POST http://127.0.0.1:8080/sign-out-everywhere
//! ```

mod common;

use std::time::{Duration, SystemTime};

use actix_memcache_session::{Session, SessionHandle, Sessions};
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde::Deserialize;

const DAY: Duration = Duration::from_secs(24 * 3600);

#[derive(Deserialize)]
struct Login {
    user: String,
    #[serde(default)]
    remember: bool,
}

async fn login(
    session: Session,
    req: HttpRequest,
    q: web::Query<Login>,
) -> actix_web::Result<HttpResponse> {
    // A real app checks a password first. Binding renews the session id by itself.
    session.bind_user(&q.user)?;
    if q.remember {
        // Two weeks idle, a month at most, and a persistent cookie.
        session.set_timeouts(14 * DAY, 30 * DAY)?;
    } else {
        // Signed in again without it: what an earlier login remembered goes, and so do the
        // copies of its persistent cookie (signed in again as the same user, binding does
        // not renew).
        session.clear_timeouts()?;
        session.renew();
    }
    let device = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown device");
    session.set_label(device)?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/"))
        .finish())
}

async fn home(session: Session) -> actix_web::Result<String> {
    Ok(match session.user()? {
        Some(user) => format!("signed in as {user}\n"),
        None => "not signed in\n".to_owned(),
    })
}

/// Minutes since `t`, for the page.
fn minutes_ago(t: SystemTime) -> u64 {
    t.elapsed().map_or(0, |d| d.as_secs() / 60)
}

/// The user's live sessions, oldest first, this one marked.
async fn your_sessions(session: Session, sessions: Sessions) -> actix_web::Result<String> {
    let Some(user) = session.user()? else {
        return Ok("not signed in\n".to_owned());
    };
    let this = session.handle();
    let mut page = format!("sessions of {user}:\n");
    for s in sessions.of_user(&user).await? {
        let marker = if Some(&s.handle) == this.as_ref() {
            " (this one)"
        } else {
            ""
        };
        page.push_str(&format!(
            "  {} {}{marker}: signed in {} min ago, last seen {} min ago{}\n",
            s.handle,
            s.label.as_deref().unwrap_or("unknown device"),
            minutes_ago(s.created),
            minutes_ago(s.last_seen),
            if s.remember_me {
                ", kept signed in"
            } else {
                ""
            },
        ));
    }
    Ok(page)
}

/// Signs out one of this user's sessions ("sign out the phone"), if the response commits.
/// A handle listed nowhere (ended already, or another user's) ends nothing, so the answer
/// says what was asked, not that it happened.
async fn sign_out_one(session: Session, handle: web::Path<String>) -> actix_web::Result<String> {
    let handle: SessionHandle = handle.parse()?;
    if session.user()?.is_none() {
        return Ok("not signed in\n".to_owned());
    }
    session.sign_out_session(&handle);
    Ok(format!("asked to sign out {handle}\n"))
}

/// Ends every session of this user, this one included, if the response commits.
async fn sign_out_everywhere(session: Session) -> &'static str {
    session.sign_out_everywhere();
    "signed out everywhere\n"
}

async fn logout(session: Session) -> &'static str {
    session.purge();
    "signed out\n"
}

fn routes(app: &mut web::ServiceConfig) {
    app.route("/", web::get().to(home))
        .route("/login", web::post().to(login))
        .route("/sessions", web::get().to(your_sessions))
        .route("/sessions/{handle}/sign-out", web::post().to(sign_out_one))
        .route("/sign-out-everywhere", web::post().to(sign_out_everywhere))
        .route("/logout", web::post().to(logout));
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    common::serve("accounts", routes).await
}

#[cfg(test)]
mod tests {
    use actix_memcache_session::{Key, MemcacheSession, MemoryStore};
    use actix_web::{test, App};

    use super::*;

    /// Signed in again without "keep me signed in", a session forgets that an earlier
    /// login kept it: its cookie is no longer persistent, and copies of the persistent one
    /// no longer work. (It stayed remembered.)
    #[actix_web::test]
    async fn a_login_without_keep_me_signed_in_forgets_an_earlier_one() {
        let middleware = MemcacheSession::builder(MemoryStore::new(), Key::generate()).build();
        let sessions = middleware.sessions();
        let cookie = sessions
            .seed(|s| {
                s.bind_user("alice")?;
                s.set_timeouts(14 * DAY, 30 * DAY)
            })
            .await
            .unwrap()
            .expect("a remembered session");
        assert!(cookie.max_age().is_some(), "persistent: {cookie}");
        let app = test::init_service(App::new().wrap(middleware).configure(routes)).await;
        let req = test::TestRequest::post()
            .uri("/login?user=alice")
            .cookie(cookie.clone())
            .to_request();
        let res = test::call_service(&app, req).await;
        assert!(res.status().is_redirection());
        let reissued = res.response().cookies().next().expect("a cookie re-issued");
        assert_eq!(reissued.max_age(), None, "{reissued}");
        assert!(
            sessions.open_cookie(&cookie).await.unwrap().is_none(),
            "a copy of the remembered cookie no longer works"
        );
    }
}
