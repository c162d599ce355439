//! What both examples share: picking the store and the address.

use actix_memcache_session::{Key, MemcacheSession, MemoryStore};

/// The store the example runs on.
#[derive(Clone)]
pub enum Store {
    Memory(MemoryStore),
}

impl Store {
    /// The in-process store; says so, since its sessions end with the process.
    pub fn from_env() -> Self {
        println!("session store: in-process MemoryStore (sessions end when this process does)");
        Store::Memory(MemoryStore::new())
    }

    /// The middleware for one worker. The cookie is not `Secure` because the example
    /// serves plain HTTP on localhost; keep the default (`true`) behind HTTPS.
    pub fn middleware(&self, key: Key) -> MemcacheSession {
        match self {
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
