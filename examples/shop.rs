//! Two packages sharing one session: a shop's cart (a typed package, `shop.cart`) and a
//! login (`auth`), with flash messages. Logging in renews the session id (so an id seen
//! before login is useless after it); logging out purges the session.
//!
//! `cargo run --example shop`, then:
//! ```text
//! curl -c jar -b jar -X POST 'http://127.0.0.1:8080/cart?item=apple'
//! curl -c jar -b jar -X POST 'http://127.0.0.1:8080/coupon?code=SPRING'
//! curl -c jar -b jar -X POST 'http://127.0.0.1:8080/login?user=alice'
//! curl -c jar -b jar http://127.0.0.1:8080/
//! curl -c jar -b jar -X POST http://127.0.0.1:8080/logout
//! ```

mod common;

use actix_memcache_session::{FlashMessage, Session, TypedPackage};
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

/// The cart, declared once: every handler reads and writes the same shape, and each field
/// is its own key, so adding an item and applying a coupon at once both land.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cart {
    items: Vec<String>,
    coupon: Option<String>,
}

const CART: TypedPackage<Cart> = TypedPackage::new("shop.cart");

#[derive(Deserialize)]
struct Item {
    item: String,
}

#[derive(Deserialize)]
struct Coupon {
    code: String,
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

/// Post/redirect/get: the message is shown by the page the client is sent to.
fn back_to_the_shop() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/"))
        .finish()
}

async fn add_to_cart(session: Session, q: web::Query<Item>) -> actix_web::Result<HttpResponse> {
    let item = q.into_inner().item;
    session.update(&CART, |cart| cart.items.push(item.clone()))?;
    session.send_flash(FlashMessage::success(format!("{item} added")))?;
    Ok(back_to_the_shop())
}

async fn apply_coupon(session: Session, q: web::Query<Coupon>) -> actix_web::Result<HttpResponse> {
    let code = q.into_inner().code;
    if code.len() > 16 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        // The cart is not touched; the message alone is stored.
        session.send_flash(FlashMessage::error("That is not a coupon code"))?;
        return Ok(back_to_the_shop());
    }
    session.update(&CART, |cart| cart.coupon = Some(code))?;
    session.send_flash(FlashMessage::info("Coupon applied"))?;
    Ok(back_to_the_shop())
}

async fn login(session: Session, q: web::Query<Login>) -> actix_web::Result<HttpResponse> {
    // A real app checks a password first. The cart survives the login; the id does not.
    session.renew();
    session.package("auth").insert("user", &q.user)?;
    session.send_flash(FlashMessage::success(format!("Welcome, {}", q.user)))?;
    Ok(back_to_the_shop())
}

async fn logout(session: Session) -> &'static str {
    session.purge();
    "logged out\n"
}

/// Shows and consumes the flash messages; were this page to fail, they would stay.
async fn show(session: Session) -> actix_web::Result<String> {
    let user: Option<String> = session.package("auth").get("user")?;
    let cart = session.get(&CART)?;
    let mut page = String::new();
    for message in session.incoming_flashes()? {
        page.push_str(&format!("[{}] {}\n", message.level(), message.content()));
    }
    page.push_str(&format!(
        "user: {}\ncart: {:?}, coupon: {}\n",
        user.as_deref().unwrap_or("(anonymous)"),
        cart.items,
        cart.coupon.as_deref().unwrap_or("none")
    ));
    Ok(page)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    common::serve("shop", |app| {
        app.route("/", web::get().to(show))
            .route("/cart", web::post().to(add_to_cart))
            .route("/coupon", web::post().to(apply_coupon))
            .route("/login", web::post().to(login))
            .route("/logout", web::post().to(logout));
    })
    .await
}
