//! A shop's cart (a typed package, `shop.cart`) and a login, with flash messages. Logging
//! in binds the session to the user, which renews its id (so an id seen before login is
//! useless after it), keeps an anonymous cart, and empties a session another user left
//! signed in; logging out purges the session.
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
    // A real app checks a password first. An anonymous cart survives the login; the id
    // does not, nor anything of another user signed in on this browser.
    session.bind_user(&q.user)?;
    session.send_flash(FlashMessage::success(format!("Welcome, {}", q.user)))?;
    Ok(back_to_the_shop())
}

async fn logout(session: Session) -> &'static str {
    session.purge();
    "logged out\n"
}

/// Shows and consumes the flash messages; were this page to fail, they would stay.
async fn show(session: Session) -> actix_web::Result<String> {
    let user = session.user()?;
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

fn routes(app: &mut web::ServiceConfig) {
    app.route("/", web::get().to(show))
        .route("/cart", web::post().to(add_to_cart))
        .route("/coupon", web::post().to(apply_coupon))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout));
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    common::serve("shop", routes).await
}

/// How an app tests its handlers with the `testing` helpers (`cargo test --example shop`).
#[cfg(test)]
mod tests {
    use actix_memcache_session::{Key, MemcacheSession, MemoryStore, Session, SessionStatus};
    use actix_web::{test, web, App};

    use super::*;

    /// Handler logic alone, on a session without a request or a store.
    #[actix_web::test]
    async fn a_bad_coupon_leaves_the_cart_and_says_so() {
        let session = Session::standalone();
        let code = web::Query(Coupon {
            code: "50% OFF!".into(),
        });
        apply_coupon(session.clone(), code).await.unwrap();
        assert_eq!(session.get(&CART).unwrap().coupon, None);
        let shown: Vec<String> = session
            .incoming_flashes()
            .unwrap()
            .iter()
            .map(|m| m.content().to_owned())
            .collect();
        assert!(shown.is_empty(), "sent for the next page, not shown now");
        assert_eq!(session.status(), SessionStatus::Changed);
    }

    /// The whole app over the in-process store: a client with a cart logs in.
    #[actix_web::test]
    async fn the_cart_survives_a_login_under_a_new_id() {
        let middleware = MemcacheSession::builder(MemoryStore::new(), Key::generate()).build();
        let sessions = middleware.sessions();
        let cookie = sessions
            .seed(|s| s.update(&CART, |cart| cart.items.push("apple".into())))
            .await
            .unwrap()
            .expect("a cart to store");
        let app = test::init_service(App::new().wrap(middleware).configure(routes)).await;
        let req = test::TestRequest::post()
            .uri("/login?user=alice")
            .cookie(cookie.clone())
            .to_request();
        let res = test::call_service(&app, req).await;
        assert!(res.status().is_redirection());
        let stored = sessions
            .open_response(&res)
            .await
            .unwrap()
            .expect("renewed");
        assert_eq!(stored.user().unwrap().as_deref(), Some("alice"));
        assert_eq!(stored.get(&CART).unwrap().items, ["apple"]);
        assert!(
            sessions.open_cookie(&cookie).await.unwrap().is_none(),
            "old id gone"
        );
    }

    /// Another user logging in on a browser where bob stayed signed in sees nothing of his:
    /// not his cart, nor his unread messages.
    #[actix_web::test]
    async fn a_login_over_another_users_session_keeps_nothing_of_theirs() {
        let middleware = MemcacheSession::builder(MemoryStore::new(), Key::generate()).build();
        let sessions = middleware.sessions();
        let cookie = sessions
            .seed(|s| {
                s.bind_user("bob")?;
                s.update(&CART, |cart| cart.items.push("razor".into()))?;
                s.send_flash(FlashMessage::info("for bob"))
            })
            .await
            .unwrap()
            .expect("bob's session");
        let app = test::init_service(App::new().wrap(middleware).configure(routes)).await;
        let req = test::TestRequest::post()
            .uri("/login?user=alice")
            .cookie(cookie)
            .to_request();
        let res = test::call_service(&app, req).await;
        let stored = sessions
            .open_response(&res)
            .await
            .unwrap()
            .expect("alice's");
        assert_eq!(stored.user().unwrap().as_deref(), Some("alice"));
        assert!(stored.get(&CART).unwrap().items.is_empty());
        let shown: Vec<String> = stored
            .incoming_flashes()
            .unwrap()
            .iter()
            .map(|m| m.content().to_owned())
            .collect();
        assert_eq!(shown, ["Welcome, alice"]);
    }
}
