//! `MemoryStore` runs the store acceptance suite and the HTTP suite.

use actix_memcache_session::MemoryStore;

actix_memcache_session::store_acceptance_suite!(MemoryStore::new());
#[cfg(feature = "actix-session")]
crate::actix_session::actix_session_suite!(MemoryStore::new());

mod http {
    use actix_memcache_session::MemoryStore;

    crate::http::http_suite!(MemoryStore::new());

    crate::devices::devices_suite!(MemoryStore::new());
    crate::app_testing::app_testing_suite!(MemoryStore::new());
}
