//! Accounts: a login with "keep me signed in", a "your sessions" page, and "sign out
//! everywhere". Each login binds its session to the user, so one call ends all of them.
//!
//! `cargo run --example accounts`, then, as two devices (two cookie jars):
//! ```text
//! curl -c laptop -b laptop -X POST 'http://127.0.0.1:8080/login?user=alice&remember=true'
//! curl -c phone -b phone -X POST 'http://127.0.0.1:8080/login?user=alice'
//! curl -c laptop -b laptop http://127.0.0.1:8080/sessions
//! curl -c phone -b phone -X POST http://127.0.0.1:8080/sign-out-everywhere
//! curl -c laptop -b laptop http://127.0.0.1:8080/          # signed out here too
//! ```

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use actix_memcache_session::{Session, SessionId, Sessions};
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde::Deserialize;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// The app's own record of which sessions each user has: its database in a real app. The
/// ids are only what this app saw; `Sessions::open` tells which are still live.
fn known_sessions() -> &'static Mutex<BTreeMap<String, BTreeSet<String>>> {
    static KNOWN: OnceLock<Mutex<BTreeMap<String, BTreeSet<String>>>> = OnceLock::new();
    KNOWN.get_or_init(Default::default)
}

/// Records this session under its user. A session has an id only once stored, so a login
/// is recorded by the first request after it (the page it redirects to).
fn record(user: &str, session: &Session) {
    if let Some(id) = session.id() {
        let mut known = known_sessions()
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        known
            .entry(user.to_owned())
            .or_default()
            .insert(id.to_string());
    }
}

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
    // A real app checks a password first.
    session.renew();
    session.bind_user(&q.user)?;
    if q.remember {
        // Two weeks idle, a month at most, and a persistent cookie.
        session.set_timeouts(14 * DAY, 30 * DAY)?;
    }
    let device = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown device");
    session.package("accounts").insert("device", device)?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/"))
        .finish())
}

async fn home(session: Session) -> actix_web::Result<String> {
    let Some(user) = session.user()? else {
        return Ok("not signed in\n".to_owned());
    };
    record(&user, &session);
    Ok(format!("signed in as {user}\n"))
}

/// The user's live sessions, this one marked; ended ones are forgotten.
async fn your_sessions(session: Session, sessions: Sessions) -> actix_web::Result<String> {
    let Some(user) = session.user()? else {
        return Ok("not signed in\n".to_owned());
    };
    record(&user, &session);
    let ids: Vec<String> = {
        let known = known_sessions()
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        known.get(&user).into_iter().flatten().cloned().collect()
    };
    let this = session.id().map(|id| id.to_string());
    let mut page = format!("sessions of {user}:\n");
    for id in ids {
        let Ok(parsed) = id.parse::<SessionId>() else {
            continue;
        };
        // Only a session still bound to this user counts: not one signed out since.
        let live = match sessions.open(&parsed).await? {
            Some(open) if open.user()?.as_deref() == Some(user.as_str()) => Some(open),
            _ => None,
        };
        let Some(open) = live else {
            let mut known = known_sessions()
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            known.entry(user.clone()).or_default().remove(&id);
            continue;
        };
        let device: Option<String> = open.package("accounts").get("device")?;
        let marker = if this.as_deref() == Some(id.as_str()) {
            " (this one)"
        } else {
            ""
        };
        page.push_str(&format!(
            "  {}… {}{marker}\n",
            &id[..6],
            device.as_deref().unwrap_or("unknown device")
        ));
    }
    Ok(page)
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

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    common::serve("accounts", |app| {
        app.route("/", web::get().to(home))
            .route("/login", web::post().to(login))
            .route("/sessions", web::get().to(your_sessions))
            .route("/sign-out-everywhere", web::post().to(sign_out_everywhere))
            .route("/logout", web::post().to(logout));
    })
    .await
}
