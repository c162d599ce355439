//! A real twemproxy (`nutcracker`) on a free loopback port, in front of memcached servers
//! of its own, with libmemcached's ring (`distribution: ketama`, `hash: md5`); stopped by
//! pid when dropped.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use actix_memcache_session::MemcacheStore;

use crate::memcached::{free_port, started, Memcached};

pub struct Nutcracker {
    child: Child,
    port: u16,
    config: PathBuf,
    /// The servers behind it, with their weights.
    pub servers: Vec<(Memcached, u32)>,
}

thread_local! {
    static PROXY: RefCell<Option<Nutcracker>> = const { RefCell::new(None) };
}

/// A `MemcacheStore` with every default through this thread's nutcracker (over two
/// memcached): it finds on connect that the proxy speaks only the text protocol.
pub fn proxy_store() -> MemcacheStore {
    let url = PROXY.with(|p| {
        p.borrow_mut()
            .get_or_insert_with(|| Nutcracker::start(&[1, 1]))
            .url()
    });
    MemcacheStore::new(&url).expect("valid URL")
}

/// The proxy's own `timeout` for a backend's reply, by default: long enough that a healthy
/// backend on a loaded machine (eight test threads on two cores) is never given up on.
const TIMEOUT_MS: u64 = 1500;

impl Nutcracker {
    /// nutcracker over new memcached servers with these weights.
    pub fn start(weights: &[u32]) -> Self {
        Self::start_timing_out(weights, TIMEOUT_MS)
    }

    /// The same, giving up on a backend's reply after `timeout_ms` (its `timeout`).
    pub fn start_timing_out(weights: &[u32], timeout_ms: u64) -> Self {
        let mut servers: Vec<(Memcached, u32)> =
            weights.iter().map(|&w| (Memcached::start(), w)).collect();
        for _ in 0..5 {
            match Self::spawn(servers, timeout_ms) {
                Ok(proxy) => return proxy,
                Err(back) => servers = back,
            }
        }
        panic!("nutcracker did not start on any of 5 free ports");
    }

    /// Starts nutcracker over `servers` on free ports; the servers back if it exited
    /// instead (a port taken meanwhile, as `Memcached::start` also finds).
    fn spawn(
        servers: Vec<(Memcached, u32)>,
        timeout_ms: u64,
    ) -> Result<Self, Vec<(Memcached, u32)>> {
        let port = free_port();
        let listed: Vec<String> = servers
            .iter()
            .map(|(m, w)| format!("   - {}:{w}", m.addr()))
            .collect();
        let config = std::env::temp_dir().join(format!("nutcracker-{port}.yml"));
        let yaml = format!(
            "pool:\n  listen: 127.0.0.1:{port}\n  hash: md5\n  distribution: ketama\n  \
             timeout: {timeout_ms}\n  servers:\n{}\n",
            listed.join("\n")
        );
        std::fs::write(&config, yaml).expect("nutcracker config");
        let stats = free_port().to_string();
        let spawn = |program: &str| {
            Command::new(program)
                .arg("-c")
                .arg(&config)
                .args(["-s", &stats, "-a", "127.0.0.1", "-o", "/dev/null"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        };
        let child = spawn("nutcracker")
            .or_else(|_| spawn("/usr/sbin/nutcracker"))
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start nutcracker ({e}): install it with `sudo apt-get install -y \
                     nutcracker`, or run `bash scripts/test.sh`, which installs it"
                )
            });
        let mut proxy = Self {
            child,
            port,
            config,
            servers,
        };
        if started(&mut proxy.child, port, "nutcracker") {
            Ok(proxy)
        } else {
            Err(std::mem::take(&mut proxy.servers))
        }
    }

    pub fn url(&self) -> String {
        format!("memcache://{}", self.addr())
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}
