//! The text protocol through a real twemproxy: the acceptance suite, and the proxy placing
//! each session on the memcached this crate's own ring names, so an app can move between
//! direct and proxied access without losing sessions.

use std::time::Duration;

use actix_memcache_session::{
    Distribution, Ketama, MemcacheServer, MemcacheStore, SessionId, SessionStore,
};

use crate::memcached::fleet_url;
use crate::nutcracker::Nutcracker;

mod suites {
    actix_memcache_session::store_acceptance_suite!(crate::nutcracker::proxy_store());

    mod http {
        crate::http::http_suite!(crate::nutcracker::proxy_store());
    }
}

#[actix_web::test]
async fn the_proxy_and_the_crate_place_every_session_alike() {
    let proxy = Nutcracker::start(&[3, 1, 2]);
    let through = MemcacheStore::new(&proxy.url()).unwrap();
    let servers: Vec<MemcacheServer> = proxy
        .servers
        .iter()
        .map(|(m, w)| MemcacheServer::new("127.0.0.1", m.addr().port(), *w))
        .collect();
    let ring = Ketama::new(&servers);
    let ids: Vec<SessionId> = (0..200).map(|_| SessionId::generate().unwrap()).collect();
    for id in &ids {
        let data = id.as_str().as_bytes();
        assert!(through
            .create(id, data, Duration::from_secs(60))
            .await
            .unwrap());
    }
    let keys: Vec<String> = ids.iter().map(|id| format!("session:{id}")).collect();
    for (at, (server, _)) in proxy.servers.iter().enumerate() {
        for ((id, key), holds) in ids.iter().zip(&keys).zip(server.holds(&keys)) {
            let named = ring.server_for(key.as_bytes()) == at;
            assert_eq!(holds, named, "{id} on server {at}");
        }
    }
    // The same sessions, read directly from the servers as a fleet with the same weights.
    let mut direct = MemcacheStore::builder(fleet_url(proxy.servers.iter().map(|(m, _)| m)));
    for (m, w) in &proxy.servers {
        direct = direct.weight(m.addr().to_string(), *w);
    }
    let direct = direct.build().unwrap();
    for id in &ids {
        let stored = direct.load(id).await.unwrap().expect("found directly");
        assert_eq!(stored.data, id.as_str().as_bytes());
    }
}
