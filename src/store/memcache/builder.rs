//! `MemcacheStoreBuilder`: every setting of a [`MemcacheStore`], its default and the reason
//! for it, the server URL, and the checks that refuse at build a setting memcached or the
//! client could not work with.

use std::sync::Arc;
use std::time::Duration;

use super::fleet::Fleet;
use super::health::Health;
use super::pool::{Endpoint, Limits};
use super::protocol::{without_login, Protocol, MAX_ITEM_CEILING};
use super::ring::{Distribution, Ketama, MemcacheServer, DEFAULT_PORT};
use super::store::{Backend, MemcacheStore, DEFAULT_PREFIX, MAX_ITEM_SIZE};
use crate::store::error::StoreError;
use crate::store::session_store::WhenDown;

/// memcached's longest key.
const MAX_KEY_BYTES: usize = 250;
/// Longest connect or I/O timeout accepted: past it a timeout is a hang.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Most connections per worker accepted.
const MAX_CONNECTIONS: usize = 1024;
/// Most servers in one URL.
const MAX_SERVERS: usize = 1024;
/// Most consecutive failures before a server is marked down that can be set.
const MAX_FAILURE_LIMIT: u32 = 1000;

impl MemcacheStore {
    /// A store for the memcached at `url` (`memcache://host:port`), or the servers listed
    /// in it (`memcache://host:port,host:port,...`), with every default.
    ///
    /// No connection is made until a session is used.
    ///
    /// # Errors
    /// A URL that is not `memcache://host[:port][,host[:port]...]`.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).build()
    }

    /// A builder to change the defaults.
    pub fn builder(url: impl Into<String>) -> MemcacheStoreBuilder {
        MemcacheStoreBuilder {
            url: url.into(),
            pool_max_size: 1,
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
            key_prefix: DEFAULT_PREFIX.to_owned(),
            max_item_size: MAX_ITEM_SIZE,
            protocol: Protocol::Auto,
            weights: Vec::new(),
            failure_limit: 3,
            retry_interval: Duration::from_secs(1),
            when_down: WhenDown::FailClosed,
            distribution: None,
        }
    }
}

/// Builds a [`MemcacheStore`]; every setter says its default.
#[derive(Debug)]
#[must_use = "call .build() to get the store"]
pub struct MemcacheStoreBuilder {
    url: String,
    pool_max_size: usize,
    connect_timeout: Duration,
    io_timeout: Duration,
    key_prefix: String,
    max_item_size: usize,
    protocol: Protocol,
    weights: Vec<(String, u32)>,
    failure_limit: u32,
    retry_interval: Duration,
    when_down: WhenDown,
    distribution: Option<MakeDistribution>,
}

/// A user's distribution, made from the server list at build.
struct MakeDistribution(Box<MakeFn>);
type MakeFn = dyn FnOnce(&[MemcacheServer]) -> Box<dyn Distribution>;

impl std::fmt::Debug for MakeDistribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MakeDistribution(..)")
    }
}

impl MemcacheStoreBuilder {
    /// Connections each worker thread keeps to memcached. Default: 1. Each is pipelined:
    /// any number of requests share it, and the commands queued while one write is under
    /// way go out together in the next, so more connections mean fewer commands per
    /// syscall, not more concurrency (measured: 1 beat 2 and 4; see docs/stores.md,
    /// "Choosing the client"). Each has TCP keepalive on, probing after a minute idle: a
    /// firewall or NAT that forgets quiet flows keeps it (a peer gone without a word ends
    /// it only after the system's probes fail, about 11 minutes more on Linux).
    pub fn pool_max_size(mut self, size: usize) -> Self {
        self.pool_max_size = size;
        self
    }

    /// How long to wait for a connection to open. Default: 1 s: on loopback or a LAN a
    /// connect takes well under a millisecond, so a second means memcached is not there,
    /// and the client should get its 503 now, not in 30 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for a reply. Default: 1 s, for the same reason. It runs from when
    /// the connection's writer takes the request (a worker thread stalled before that has
    /// not been waiting for memcached), but never past twice this from when the request was
    /// queued, and from its queuing for a request left behind a write memcached does not
    /// read. A connection that times out is replaced, so the requests waiting on it get
    /// 503 too.
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// Put before each session id to make the memcached key. Default: `"session:"`, so
    /// sessions are easy to tell apart from other items in a shared memcached. At most 228
    /// bytes (memcached keys are at most 250 and an id is 22), no spaces or control
    /// characters.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// memcached's item size limit, its `-I` option. Default: 1 MiB, memcached's default.
    /// A session that would not fit is refused here with [`StoreError::TooLarge`] (413),
    /// because memcached answers a too-large write by dropping the stored session. A stored
    /// item larger than this (written under a larger limit) is read past, not kept: its
    /// load answers [`StoreError::TooLarge`], for which the middleware lets a fresh session
    /// stand in (a purge removes the large one, a sign-out answers 503). Up to
    /// 7,841 bytes (the largest user item), a user item another instance with a larger limit
    /// wrote, and may read, fails that user's logins and sign-outs here (413) until it goes.
    /// Under about 3.5 KiB (a user at the session limit of 64: about 51 bytes a login, and
    /// the key and 64 bytes more), a user's item cannot list as many logins as the limit
    /// allows: once it is full, that user's logins answer 413 (nothing written) instead of
    /// ending the least recently seen, until some expire. Logins racing may list up to
    /// twice the limit for a moment (7,841 bytes at most): 8 KiB covers every case.
    pub fn max_item_size(mut self, bytes: usize) -> Self {
        self.max_item_size = bytes;
        self
    }

    /// Which of memcached's protocols to speak. Default: [`Protocol::Auto`], chosen per
    /// server on each connect: the meta protocol on memcached 1.6.18 or later, the text
    /// protocol on older ones and through proxies (twemproxy, mcrouter), with the same
    /// semantics. Text replies carry no token: a server that doubles or drops the answer
    /// to one of two pipelined writes goes unnoticed there (`docs/servers.md`), where the
    /// meta protocol ends the connection. [`Protocol::Meta`] or [`Protocol::Text`] forces
    /// one.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// A server's weight: its share of the sessions is its weight over the total. Default:
    /// 1 for every server. `server` names it as the URL does (`"10.0.0.2:11211"`; the host
    /// alone for port 11211 works too). The ring is libmemcached's weighted ketama, so
    /// give other clients of the fleet the same weights.
    pub fn weight(mut self, server: impl Into<String>, weight: u32) -> Self {
        self.weights.push((server.into(), weight));
        self
    }

    /// Failed requests in a row (no connection, no answer within `io_timeout`, a reply this
    /// client cannot read) after which a server of a fleet is marked down: its sessions get
    /// 503 at once, without waiting out a timeout, for
    /// [`retry_interval`](Self::retry_interval). Default: 3. Counted per request: a
    /// connection that times out with several requests waiting on it (a busy one) counts
    /// each, so under load one stall of `io_timeout` marks the server down; a reply it
    /// cannot read counts at most once, the requests behind it (failed with the connection it
    /// ended) not at all.
    /// With a single server nothing is marked down: every request tries it.
    pub fn failure_limit(mut self, failures: u32) -> Self {
        self.failure_limit = failures;
        self
    }

    /// How long a server marked down is left alone before one request tries it again; the
    /// first answer puts it back in service. Default: 1 s, short enough that a restarted
    /// server is back in service within about a second.
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }

    /// What a request gets when the server holding its session does not answer. Default:
    /// [`WhenDown::FailClosed`], 503. [`WhenDown::StartFresh`] gives a fresh session
    /// instead. Either way the session is never read or written on another server, and
    /// new sessions get ids whose server is up, so nothing moves when it is back. Behind
    /// actix-session's middleware (feature `actix-session`) it does not apply: a load that
    /// fails is a 500 there, since a fresh session would let a logout during the outage
    /// leave the stored session alive (actix-session would only remove the cookie).
    pub fn when_server_down(mut self, when: WhenDown) -> Self {
        self.when_down = when;
        self
    }

    /// How keys are spread over several servers. Default: [`Ketama`], libmemcached's
    /// weighted ketama ring. `make` receives the servers in the URL's order, with their
    /// weights. Not used with a single server.
    pub fn distribution<D: Distribution>(
        mut self,
        make: impl FnOnce(&[MemcacheServer]) -> D + 'static,
    ) -> Self {
        self.distribution = Some(MakeDistribution(Box::new(move |servers| {
            Box::new(make(servers))
        })));
        self
    }

    /// The store.
    ///
    /// # Errors
    /// A URL that is not `memcache://host[:port][,host[:port]...]` (an IPv6 address in
    /// brackets, a port from 1 to 65535), or names a server twice, or more than 1024; a weight for a server not in it or of 0, a key prefix
    /// memcached would refuse, a pool size outside 1 to 1024, a timeout or retry interval that is zero or
    /// over an hour, a failure limit outside 1 to 1000, or an item size limit outside
    /// 1 KiB to 1 GiB (memcached's own bounds for `-I`).
    pub fn build(self) -> Result<MemcacheStore, StoreError> {
        let servers = self.servers()?;
        check_prefix(&self.key_prefix)?;
        check_range("pool_max_size", self.pool_max_size, 1, MAX_CONNECTIONS)?;
        for (name, timeout) in [
            ("connect_timeout", self.connect_timeout),
            ("io_timeout", self.io_timeout),
            ("retry_interval", self.retry_interval),
        ] {
            if timeout.is_zero() || timeout > MAX_TIMEOUT {
                return Err(StoreError::InvalidConfig(format!(
                    "{name} is {timeout:?}; it must be above zero and at most an hour"
                )));
            }
        }
        check_range("max_item_size", self.max_item_size, 1024, MAX_ITEM_CEILING)?;
        check_range(
            "failure_limit",
            self.failure_limit as usize,
            1,
            MAX_FAILURE_LIMIT as usize,
        )?;
        let limits = Limits {
            connections: self.pool_max_size,
            connect_timeout: self.connect_timeout,
            io_timeout: self.io_timeout,
            max_value: self.max_item_size,
            protocol: self.protocol,
        };
        let distribution = (servers.len() > 1).then(|| match self.distribution {
            Some(MakeDistribution(make)) => make(&servers),
            None => Box::new(Ketama::new(&servers)) as Box<dyn Distribution>,
        });
        let endpoints = servers
            .into_iter()
            .map(|server| {
                let endpoint = Endpoint::new(server.host().to_owned(), server.port(), limits);
                (server, endpoint)
            })
            .collect();
        let (failures, interval) = (self.failure_limit, self.retry_interval);
        let fleet = Fleet::new(endpoints, distribution, || Health::new(failures, interval));
        Ok(MemcacheStore {
            prefix: self.key_prefix.into(),
            max_item_size: self.max_item_size,
            when_down: self.when_down,
            backend: Backend::Native(Arc::new(fleet)),
        })
    }

    /// The URL's servers, in its order, with their weights.
    fn servers(&self) -> Result<Vec<MemcacheServer>, StoreError> {
        let listed = parse_url(&self.url)?;
        check_range("servers in the URL", listed.len(), 1, MAX_SERVERS)?;
        let mut weights = vec![1; listed.len()];
        for (name, weight) in &self.weights {
            let named = parse_server(name).ok();
            let at = listed
                .iter()
                .position(|(written, host, port)| {
                    written == name || named.as_ref().is_some_and(|(h, p)| h == host && p == port)
                })
                .ok_or_else(|| {
                    StoreError::InvalidConfig(format!(
                        "weight for {name:?}: no such server in the URL"
                    ))
                })?;
            if *weight == 0 {
                return Err(StoreError::InvalidConfig(format!(
                    "weight for {name:?} is 0; it must be at least 1"
                )));
            }
            weights[at] = *weight;
        }
        Ok(listed
            .into_iter()
            .zip(weights)
            .map(|((_, host, port), weight)| MemcacheServer::new(host, port, weight))
            .collect())
    }
}

/// The servers a URL lists: each as written, and its host and port.
fn parse_url(url: &str) -> Result<Vec<(String, String, u16)>, StoreError> {
    // A URL with a login is refused (`@` below) without repeating its password.
    let shown = without_login(url);
    let invalid = |why: &str| StoreError::InvalidConfig(format!("memcached URL {shown:?}: {why}"));
    let rest = url
        .strip_prefix("memcache://")
        .ok_or_else(|| invalid("expected memcache://host[:port][,host[:port]...]"))?;
    if rest.contains(['/', '?', '@']) {
        return Err(invalid(
            "only memcache://host[:port][,host[:port]...] is supported; set options on the builder",
        ));
    }
    let mut servers: Vec<(String, String, u16)> = Vec::new();
    for written in rest.split(',') {
        let (host, port) = parse_server(written).map_err(&invalid)?;
        if servers.iter().any(|(_, h, p)| *h == host && *p == port) {
            return Err(invalid("a server is listed twice"));
        }
        servers.push((written.to_owned(), host, port));
    }
    Ok(servers)
}

/// `host[:port]`, `[v6]` or `[v6]:port`, as host and port.
fn parse_server(written: &str) -> Result<(String, u16), &'static str> {
    let (host, port) = match written.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']').ok_or("a '[' without its ']'")?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or("bad address")?)),
            }
        }
        None => match written.split_once(':') {
            // Taken apart as written it would be another host and port: refused at build,
            // not found unreachable at every request.
            Some((_, port)) if port.contains(':') => {
                return Err("an IPv6 address goes in brackets: [v6] or [v6]:port");
            }
            Some((host, port)) => (host, Some(port)),
            None => (written, None),
        },
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => match port.parse() {
            Ok(0) | Err(_) => return Err("bad port (1 to 65535)"),
            Ok(port) => port,
        },
    };
    if host.is_empty() || host.contains(['[', ']']) {
        return Err("no host");
    }
    // A space after a comma, or a newline read with a secret file, would never resolve
    // (and would place keys on the ring under another name).
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a host with a space or control character (none between servers)");
    }
    Ok((host.to_owned(), port))
}

fn check_range(name: &str, value: usize, min: usize, max: usize) -> Result<(), StoreError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(StoreError::InvalidConfig(format!(
        "{name} is {value}; it must be from {min} to {max}"
    )))
}

fn check_prefix(prefix: &str) -> Result<(), StoreError> {
    let id_len = 22;
    if prefix.len() + id_len > MAX_KEY_BYTES {
        return Err(StoreError::InvalidConfig(format!(
            "key prefix is {} bytes; memcached keys stop at {MAX_KEY_BYTES}, ids take {id_len}",
            prefix.len()
        )));
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(StoreError::InvalidConfig(
            "key prefix contains a space or control character".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let ok = |u: &str| -> Vec<(String, u16)> {
            parse_url(u)
                .unwrap()
                .into_iter()
                .map(|(_, host, port)| (host, port))
                .collect()
        };
        assert_eq!(
            ok("memcache://127.0.0.1:11311"),
            [("127.0.0.1".into(), 11311)]
        );
        assert_eq!(ok("memcache://cache"), [("cache".into(), 11211)]);
        assert_eq!(ok("memcache://[::1]:5"), [("::1".into(), 5)]);
        assert_eq!(ok("memcache://[::1]"), [("::1".into(), 11211)]);
        assert_eq!(
            ok("memcache://a:1,b,[::1]:3"),
            [("a".into(), 1), ("b".into(), 11211), ("::1".into(), 3)]
        );
        for bad in [
            "127.0.0.1:11211",
            "memcache://",
            "memcache://h:port",
            "memcache://h:1?timeout=3",
            "memcache://a:1,",
            "memcache://a:1,,b:2",
            "memcache://a:1,a:1",
            "memcache://a,a:11211",
            "memcache://::1",
            "memcache://2001:db8::5",
            "memcache://h:0",
            "memcache://h:65536",
            "memcache://[::1",
            "memcache://[::1]5",
            "memcache://[]:5",
            "memcache://[[::1]]",
            "memcache://10.0.0.1:11211, 10.0.0.2:11211",
            "memcache://cache\n",
            "memcache://cache:11211\n",
            "memcache://ca che",
        ] {
            assert!(
                matches!(parse_url(bad), Err(StoreError::InvalidConfig(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_url_with_credentials_is_refused_without_repeating_them() {
        // Also without its scheme, which is refused first.
        for url in [
            "memcache://user:hunter2@cache:11211",
            "user:hunter2@cache:11211",
            "user:hun://ter2@cache:11211",
        ] {
            let Err(e) = parse_url(url) else {
                panic!("accepted {url}");
            };
            assert!(matches!(e, StoreError::InvalidConfig(_)), "{e}");
            for shown in [e.to_string(), format!("{e:?}")] {
                assert!(!shown.contains("hun") && !shown.contains("user"), "{shown}");
            }
            assert!(e.to_string().contains("@cache:11211"), "{e}");
        }
    }

    #[test]
    fn weights_name_servers_as_the_url_does() {
        let url = "memcache://10.0.0.1,10.0.0.2:11211,10.0.0.3:11300";
        let weights = |builder: MemcacheStoreBuilder| -> Vec<u32> {
            builder
                .servers()
                .unwrap()
                .iter()
                .map(MemcacheServer::weight)
                .collect()
        };
        assert_eq!(weights(MemcacheStore::builder(url)), [1, 1, 1]);
        let builder = MemcacheStore::builder(url)
            .weight("10.0.0.1:11211", 3)
            .weight("10.0.0.2", 2)
            .weight("10.0.0.3:11300", 5);
        assert_eq!(weights(builder), [3, 2, 5]);
        for bad in [
            MemcacheStore::builder(url).weight("10.0.0.4", 2),
            MemcacheStore::builder(url).weight("10.0.0.3", 2),
            MemcacheStore::builder(url).weight("10.0.0.1", 0),
        ] {
            let e = bad.build().unwrap_err();
            assert!(matches!(e, StoreError::InvalidConfig(_)), "{e}");
        }
    }

    #[test]
    fn limits_are_checked_at_build() {
        let builder = || MemcacheStore::builder("memcache://h");
        assert!(builder().build().is_ok());
        for bad in [
            builder().pool_max_size(0),
            builder().pool_max_size(MAX_CONNECTIONS + 1),
            builder().connect_timeout(Duration::ZERO),
            builder().io_timeout(Duration::ZERO),
            builder().io_timeout(Duration::MAX),
            builder().max_item_size(0),
            builder().max_item_size(MAX_ITEM_CEILING + 1),
            builder().failure_limit(0),
            builder().failure_limit(MAX_FAILURE_LIMIT + 1),
            builder().retry_interval(Duration::ZERO),
            builder().retry_interval(Duration::from_secs(3601)),
        ] {
            let e = bad.build().unwrap_err();
            assert!(matches!(e, StoreError::InvalidConfig(_)), "{e}");
        }
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(check_prefix("session:").is_ok());
        assert!(check_prefix(&"p".repeat(228)).is_ok());
        assert!(check_prefix(&"p".repeat(229)).is_err());
        assert!(check_prefix("has space").is_err());
        assert!(check_prefix("nl\n").is_err());
    }
}
