//! Which server of a fleet holds a key: the [`Distribution`] trait, and [`Ketama`],
//! libmemcached's weighted consistent-hashing ring, point for point.

use std::fmt;

use md5::{Digest, Md5};

/// memcached's port, which libmemcached leaves out of a server's ring name.
pub(crate) const DEFAULT_PORT: u16 = 11211;
/// libmemcached's `MEMCACHED_POINTS_PER_SERVER_KETAMA`: points per server at equal weights.
const POINTS_PER_SERVER: f32 = 160.0;

/// One memcached server of a fleet, as the URL names it, with its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemcacheServer {
    host: String,
    port: u16,
    weight: u32,
}

impl MemcacheServer {
    /// A server at `host:port` with `weight` (the share of sessions it holds is its weight
    /// over the fleet's total).
    pub fn new(host: impl Into<String>, port: u16, weight: u32) -> Self {
        Self {
            host: host.into(),
            port,
            weight,
        }
    }

    /// The host, as written in the URL (an IPv6 address without its brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The weight: 1 unless the builder set another.
    pub fn weight(&self) -> u32 {
        self.weight
    }
}

impl fmt::Display for MemcacheServer {
    /// The name libmemcached and twemproxy hash for the ring: the host alone on port
    /// 11211, else `host:port`. A DNS name and its address are different names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port == DEFAULT_PORT {
            f.write_str(&self.host)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How a fleet's keys are spread over its servers. [`Ketama`] is the default; implement
/// this to route another way (the builder's
/// [`distribution`](super::MemcacheStoreBuilder::distribution) takes a function from the
/// server list to one).
///
/// ```
/// use actix_memcache_session::Distribution;
///
/// /// Every key on the first server: what a single proxy endpoint amounts to.
/// struct First;
///
/// impl Distribution for First {
///     fn server_for(&self, _key: &[u8]) -> usize {
///         0
///     }
/// }
/// assert_eq!(First.server_for(b"session:abc"), 0);
/// ```
pub trait Distribution: Send + Sync + 'static {
    /// The position, in the URL's server list, of the server that holds `key` (the whole
    /// key sent to memcached: prefix and id). A position past the list is answered with
    /// [`StoreError::InvalidConfig`](crate::StoreError::InvalidConfig), not a panic.
    fn server_for(&self, key: &[u8]) -> usize;
}

/// libmemcached's weighted ketama ring (`MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA` with
/// `MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED`), the one php-memcached (`ketama_weighted`,
/// `OPT_LIBKETAMA_COMPATIBLE`) and twemproxy (`distribution: ketama`, `hash: md5`) build:
/// a client of any of them places every key on the same server as this crate.
///
/// Each server gets points on a 32-bit circle in proportion to its weight (160 per server
/// at equal weights), four per MD5 digest of `"<name>-<n>"`; a key belongs to the first
/// point at or after the first four bytes of its own MD5.
///
/// ```
/// use actix_memcache_session::{Distribution, Ketama, MemcacheServer};
///
/// let ring = Ketama::new(&[
///     MemcacheServer::new("10.0.0.1", 11211, 1),
///     MemcacheServer::new("10.0.0.2", 11211, 2),
/// ]);
/// // 160 points a server on average, shared 1:2 and rounded down to fours: 104 + 212.
/// assert_eq!(ring.points(), 316);
/// assert!(ring.server_for(b"session:abc") < 2);
/// ```
#[derive(Debug, Clone)]
pub struct Ketama {
    /// (point, server position), sorted.
    points: Vec<(u32, u32)>,
}

impl Ketama {
    /// The ring over `servers`, in their order. A weight of 0 counts as 1, as libmemcached
    /// counts it (the builder refuses it), so that every client places keys alike; with no
    /// server at all, the ring is empty and every key goes to position 0.
    pub fn new(servers: &[MemcacheServer]) -> Self {
        let weight = |s: &MemcacheServer| s.weight.max(1);
        let total: u64 = servers.iter().map(|s| u64::from(weight(s))).sum();
        let mut points = Vec::new();
        for (position, server) in (0u32..).zip(servers) {
            let per_server = points_for(weight(server), total, servers.len());
            let name = server.to_string();
            for n in 0..per_server / 4 {
                let words = md5_words(format!("{name}-{n}").as_bytes());
                points.extend(words.map(|point| (point, position)));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// How many points the ring has.
    pub fn points(&self) -> usize {
        self.points.len()
    }
}

impl Distribution for Ketama {
    fn server_for(&self, key: &[u8]) -> usize {
        let hash = key_hash(key);
        let at = self.points.partition_point(|&(point, _)| point < hash);
        // Past the last point the circle wraps to the first.
        let (_, server) = self
            .points
            .get(at)
            .or(self.points.first())
            .copied()
            .unwrap_or_default();
        server as usize
    }
}

/// A key's place on the circle: the first four bytes of its MD5, little-endian.
fn key_hash(key: &[u8]) -> u32 {
    md5_words(key)[0]
}

/// An MD5 digest as four little-endian words.
fn md5_words(bytes: &[u8]) -> [u32; 4] {
    let digest: [u8; 16] = Md5::digest(bytes).into();
    std::array::from_fn(|i| {
        u32::from_le_bytes([
            digest[4 * i],
            digest[4 * i + 1],
            digest[4 * i + 2],
            digest[4 * i + 3],
        ])
    })
}

/// libmemcached's point count for one server, in its own 32-bit float arithmetic: the
/// rounding decides how many points a server gets (156 instead of 160 for some fleet
/// sizes), so it must be the same here to build the same ring.
fn points_for(weight: u32, total: u64, servers: usize) -> u32 {
    if total == 0 {
        return 0;
    }
    let share = weight as f32 / total as f32;
    let points = (share * POINTS_PER_SERVER / 4.0 * servers as f32 + 0.000_000_000_1).floor();
    points as u32 * 4
}

#[cfg(test)]
mod tests;
