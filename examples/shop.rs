//! Two packages sharing one session: a shop's cart (`shop.cart`) and a login (`auth`).
//! Logging in renews the session id (so an id seen before login is useless after it);
//! logging out purges the session.
//!
//! `cargo run --example shop`, then:
//! ```text
//! curl -c jar -b jar -X POST 'http://127.0.0.1:8080/cart?item=apple'
//! curl -c jar -b jar -X POST 'http://127.0.0.1:8080/login?user=alice'
//! curl -c jar -b jar http://127.0.0.1:8080/
//! curl -c jar -b jar -X POST http://127.0.0.1:8080/logout
//! ```

mod common;

use actix_memcache_session::Session;
use actix_web::web;
use serde::Deserialize;

#[derive(Deserialize)]
struct Item {
    item: String,
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

async fn add_to_cart(session: Session, q: web::Query<Item>) -> actix_web::Result<String> {
    let cart = session.package("shop.cart");
    let mut items: Vec<String> = cart.get("items")?.unwrap_or_default();
    items.push(q.into_inner().item);
    cart.insert("items", &items)?;
    Ok(format!("cart: {items:?}\n"))
}

async fn login(session: Session, q: web::Query<Login>) -> actix_web::Result<String> {
    // A real app checks a password first. The cart survives the login; the id does not.
    session.renew();
    session.package("auth").insert("user", &q.user)?;
    Ok(format!("logged in as {}\n", q.user))
}

async fn logout(session: Session) -> &'static str {
    session.purge();
    "logged out\n"
}

async fn show(session: Session) -> actix_web::Result<String> {
    let user: Option<String> = session.package("auth").get("user")?;
    let items: Vec<String> = session
        .package("shop.cart")
        .get("items")?
        .unwrap_or_default();
    Ok(format!(
        "user: {}\ncart: {items:?}\n",
        user.as_deref().unwrap_or("(anonymous)")
    ))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    common::serve("shop", |app| {
        app.route("/", web::get().to(show))
            .route("/cart", web::post().to(add_to_cart))
            .route("/login", web::post().to(login))
            .route("/logout", web::post().to(logout));
    })
    .await
}
