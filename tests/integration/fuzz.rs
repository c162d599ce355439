//! Random and mutated session cookies through the app: no panic, no error status, and no
//! forged value ever opens a session.

use std::time::Instant;

use actix_memcache_session::MemoryStore;

use crate::app::TestApp;
use crate::support::{CountingStore, Rng};

/// Requests sent; each goes through the whole middleware and extractor.
const CASES: usize = 300_000;

const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// What a `Cookie` header may carry besides base64url: visible ASCII and space.
const PRINTABLE: &[u8] =
    b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";

/// A cookie value derived from `valid`: a few characters changed, cut, lengthened,
/// shuffled, or random text.
fn mutate(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut value = valid.to_vec();
    match rng.below(6) {
        0 => {
            for _ in 0..=rng.below(3) {
                let i = rng.below(value.len());
                value[i] = rng.pick(BASE64URL);
            }
        }
        1 => value.truncate(rng.below(value.len())),
        2 => {
            for _ in 0..=rng.below(4) {
                value.push(rng.pick(BASE64URL));
            }
        }
        3 => {
            let (a, b) = (rng.below(value.len()), rng.below(value.len()));
            value.swap(a, b);
        }
        4 => value = (0..valid.len()).map(|_| rng.pick(BASE64URL)).collect(),
        _ => value = (0..rng.below(200)).map(|_| rng.pick(PRINTABLE)).collect(),
    }
    value
}

#[actix_web::test]
async fn random_and_mutated_cookies_never_open_a_session_nor_fail() {
    let mut rng = Rng::seeded("cookie fuzz");
    let seed = rng.0;
    let app = TestApp::new(CountingStore::new(MemoryStore::new())).await;
    let valid = app.get("/set/p/k/1", None).await.cookie();
    let valid = valid.value().as_bytes();
    // The header's forms below, with the cookie unchanged, open the session: a case
    // answering "none" says the cookie was refused, not that the header went unread.
    let unchanged = String::from_utf8(valid.to_vec()).unwrap();
    for header in [
        format!("id={unchanged}"),
        format!("other=1; id={unchanged}"),
        format!("id={unchanged}; id={unchanged}"),
    ] {
        let reply = app.get_with_cookies("/get/p/k", &header).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "1"),
            "{header:?}"
        );
    }
    let started = Instant::now();
    let mut tried = 0;
    while tried < CASES {
        let value = mutate(&mut rng, valid);
        if value == valid {
            continue;
        }
        tried += 1;
        let value = String::from_utf8(value).unwrap();
        let header = match rng.below(4) {
            0 => format!("id={value}"),
            1 => format!("other=1; id={value}"),
            2 => format!("id={value}; id={value}"),
            _ => value.clone(),
        };
        let reply = app.get_with_cookies("/get/p/k", &header).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "none"),
            "seed {seed}, header {header:?}"
        );
    }
    eprintln!("{tried} cookies in {:?}", started.elapsed());
}
