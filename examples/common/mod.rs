//! What both examples share: picking the store and the address.

use actix_memcache_session::{Key, MemcacheSession, MemcacheStore, MemoryStore};

/// The store the example runs on.
#[derive(Clone)]
pub enum Store {
    Memcache(MemcacheStore),
    Memory(MemoryStore),
}

impl Store {
    /// memcached when `MEMCACHE_URL` is set (`memcache://127.0.0.1:11211`), the
    /// in-process store otherwise; says which.
    pub fn from_env() -> std::io::Result<Self> {
        match std::env::var("MEMCACHE_URL") {
            Ok(url) => {
                let store = MemcacheStore::new(&url).map_err(std::io::Error::other)?;
                println!("session store: memcached at {url}");
                Ok(Store::Memcache(store))
            }
            Err(_) => {
                println!(
                    "session store: in-process MemoryStore (MEMCACHE_URL is not set; \
                     sessions end when this process does)"
                );
                Ok(Store::Memory(MemoryStore::new()))
            }
        }
    }

    /// The middleware for one worker. The cookie is not `Secure` because the example
    /// serves plain HTTP on localhost; keep the default (`true`) behind HTTPS.
    pub fn middleware(&self, key: Key) -> MemcacheSession {
        match self {
            Store::Memcache(store) => MemcacheSession::builder(store.clone(), key),
            Store::Memory(store) => MemcacheSession::builder(store.clone(), key),
        }
        .cookie_secure(false)
        .build()
    }
}

/// `127.0.0.1:$PORT`, 8080 by default.
pub fn address() -> (String, u16) {
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    ("127.0.0.1".to_owned(), port)
}
