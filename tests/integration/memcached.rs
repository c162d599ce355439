//! A real memcached per test thread, on a free loopback port, stopped when the thread ends.
//! `MEMCACHED=/path/to/memcached` runs another build than the one on `PATH` (for
//! `scripts/test-versions.sh`); `MEMCACHED_OTHER` names a second one for the tests of a
//! fleet of mixed versions.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_memcache_session::{MemcacheStore, Protocol};

pub struct Memcached {
    child: Option<Child>,
    /// The binary it runs.
    program: String,
    port: u16,
    /// Options beyond the harness's own.
    extra: Vec<String>,
}

thread_local! {
    static SERVER: RefCell<Option<Memcached>> = const { RefCell::new(None) };
    static FLEET: RefCell<Vec<Memcached>> = const { RefCell::new(Vec::new()) };
}

/// Ports already given to a memcached of this process. The OS may hand a port it gave
/// another thread back to `bind(:0)` before that thread's memcached has bound it; two
/// tests would then share one server, and one would kill it under the other.
static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

pub fn free_port() -> u16 {
    loop {
        // Held until the port is recorded: `listener` cannot be offered it in between.
        let held = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let port = held.local_addr().expect("its address").port();
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        if taken.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// A listener on a loopback port for a fake server or proxy, never on a port `free_port`
/// gave a memcached or nutcracker: `bind(:0)` may offer one whose server has not bound it
/// yet, and a fake server or proxy there would answer that server's `version` check in its
/// place (a test would then run against it).
pub fn listener() -> TcpListener {
    listener_outside(given_to_a_server)
}

fn given_to_a_server(port: u16) -> bool {
    let taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    taken.as_ref().is_some_and(|t| t.contains(&port))
}

fn listener_outside(given: impl Fn(u16) -> bool) -> TcpListener {
    // Each port refused stays bound until one is found, so that `bind(:0)` offers another.
    let mut refused = Vec::new();
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        if !given(port) {
            return listener;
        }
        refused.push(listener);
    }
}

/// This thread's memcached, started on first use.
pub fn with_server<T>(f: impl FnOnce(&mut Memcached) -> T) -> T {
    SERVER.with(|s| f(s.borrow_mut().get_or_insert_with(Memcached::start)))
}

/// A `MemcacheStore` on this thread's memcached.
pub fn store() -> MemcacheStore {
    MemcacheStore::new(&with_server(|m| m.url())).expect("valid URL")
}

/// A `MemcacheStore` speaking the text protocol to this thread's memcached.
pub fn text_store() -> MemcacheStore {
    MemcacheStore::builder(with_server(|m| m.url()))
        .protocol(Protocol::Text)
        .build()
        .expect("valid URL")
}

/// The URL of a store over `servers`.
pub fn fleet_url<'a>(servers: impl IntoIterator<Item = &'a Memcached>) -> String {
    let addrs: Vec<String> = servers.into_iter().map(|m| m.addr().to_string()).collect();
    format!("memcache://{}", addrs.join(","))
}

/// A `MemcacheStore` over this thread's three memcached servers, started on first use.
pub fn fleet_store() -> MemcacheStore {
    let url = FLEET.with(|fleet| {
        let mut fleet = fleet.borrow_mut();
        if fleet.is_empty() {
            // With `MEMCACHED_OTHER`, the middle server runs that build: a mixed fleet.
            let other = std::env::var("MEMCACHED_OTHER").ok();
            fleet.extend((0..3).map(|i| match (&other, i) {
                (Some(other), 1) => Memcached::start_program(other, &[]),
                _ => Memcached::start(),
            }));
        }
        fleet_url(fleet.iter())
    });
    MemcacheStore::new(&url).expect("valid URL")
}

/// A `MemcacheStore` over an `r2d2-memcache` pool on this thread's memcached; `options`
/// is the URL's query (`""` for the binary protocol, `"?protocol=ascii"`).
#[cfg(feature = "r2d2")]
pub fn r2d2_store(options: &str) -> MemcacheStore {
    let url = format!("{}{options}", with_server(|m| m.url()));
    r2d2_store_at(&url, Duration::from_secs(5))
}

/// A `MemcacheStore` over an `r2d2-memcache` pool of up to four connections to `url`,
/// whose `connection_timeout` is `wait`.
#[cfg(feature = "r2d2")]
pub fn r2d2_store_at(url: &str, wait: Duration) -> MemcacheStore {
    let manager = r2d2_memcache::MemcacheConnectionManager::new(url);
    let pool = r2d2_memcache::r2d2::Pool::builder()
        .max_size(4)
        .connection_timeout(wait)
        .build(manager)
        .expect("r2d2 pool");
    MemcacheStore::from_r2d2(pool)
}

/// The memcached binary the tests run: `$MEMCACHED`, or `memcached` on `PATH`.
pub fn program() -> String {
    std::env::var("MEMCACHED").unwrap_or_else(|_| "memcached".to_owned())
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
        .unwrap_or(false)
}

/// Whether a server answers `version` on `port` with its `VERSION` line. A connection alone
/// proves nothing: a child that another thread is spawning holds a copy of `free_port`'s
/// listener until it execs, and a connect to that copy succeeds, then is reset. With a
/// connect as the only check, about one start in 2,400 under six threads had its first
/// request reset or refused (none with spawns and `free_port` serialised).
fn answers_version(port: u16) -> bool {
    version_line(port).is_ok_and(|line| line.starts_with("VERSION "))
}

/// The same for a memcached run with `-B binary`, which answers no text command: the
/// binary protocol's `version` (opcode 0x0b), answered with a response header (magic
/// 0x81).
fn answers_binary_version(port: u16) -> bool {
    let ask = || -> std::io::Result<[u8; 24]> {
        let mut conn = TcpStream::connect(("127.0.0.1", port))?;
        conn.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut header = [0u8; 24];
        header[..2].copy_from_slice(&[0x80, 0x0b]);
        conn.write_all(&header)?;
        conn.read_exact(&mut header)?;
        Ok(header)
    };
    ask().is_ok_and(|reply| reply[..2] == [0x81, 0x0b])
}

/// Whether `child`, just started to listen on `port`, answers there within five seconds
/// (else a panic); `false` if it exited instead (its port taken meanwhile). Its exit is
/// looked at first: an answer is only its own while it runs.
pub fn started(child: &mut Child, port: u16, name: &str) -> bool {
    started_answering(child, port, name, answers_version)
}

/// [`started`], with `answers` as the proof that it answers.
fn started_answering(child: &mut Child, port: u16, name: &str, answers: fn(u16) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("{name} exited ({status}) on port {port}; trying other ports");
            return false;
        }
        if answers(port) {
            return true;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The server's answer to `version` on `port`, within a second.
fn version_line(port: u16) -> std::io::Result<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(1)))?;
    conn.write_all(b"version\r\n")?;
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line)?;
    Ok(line)
}

impl Memcached {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A memcached of its own (not this thread's), with extra command-line options.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_program(&program(), extra)
    }

    /// A memcached of its own from the binary at `program`.
    pub fn start_program(program: &str, extra: &[&str]) -> Self {
        for _ in 0..5 {
            let mut server = Self {
                child: None,
                program: program.to_owned(),
                port: free_port(),
                extra: extra.iter().map(|&o| o.to_owned()).collect(),
            };
            if server.spawn() {
                return server;
            }
        }
        panic!("memcached did not start on any of 5 free ports");
    }

    /// Starts memcached on `self.port`; `false` if it exited instead (port taken).
    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new(&self.program);
        cmd.args(["-l", "127.0.0.1", "-p", &self.port.to_string(), "-U", "0"])
            .args(["-t", "1", "-m", "64"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if running_as_root() {
            cmd.args(["-u", "root"]);
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}): install memcached with `sudo apt-get install -y \
                 memcached`, or run `bash scripts/test.sh`, which installs it",
                self.program
            )
        });
        let binary_only = self
            .extra
            .windows(2)
            .any(|o| o[0] == "-B" && o[1] == "binary");
        let answers = if binary_only {
            answers_binary_version
        } else {
            answers_version
        };
        let up = started_answering(self.child.insert(child), self.port, "memcached", answers);
        if !up {
            self.child = None;
        }
        up
    }

    pub fn url(&self) -> String {
        format!("memcache://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts memcached again on the same port (with no data, as after a crash).
    /// The port may be held meanwhile, for a moment, by another test's `free_port` or
    /// `listener`: tried again for up to three seconds.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(3);
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "memcached did not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Freezes the server (`SIGSTOP`): it keeps its connections and data but answers
    /// nothing, like a host that stopped responding.
    pub fn pause(&self) {
        self.signal("-STOP");
        // A signal is delivered, not obeyed, when kill(1) returns: wait until every
        // thread has stopped, or a request could still be answered.
        let pid = self.child.as_ref().expect("memcached is running").id();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !all_stopped(pid) {
            assert!(Instant::now() < deadline, "memcached {pid} did not stop");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Undoes [`pause`](Self::pause).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("memcached is running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run kill(1) ({e}): install it with `sudo apt-get install -y procps`, \
                     or run `bash scripts/test.sh`, which installs it"
                )
            });
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Whether the server holds each of `keys`, asked directly (`gets <key>`, which every
    /// version answers).
    pub fn holds(&self, keys: &[String]) -> Vec<bool> {
        let mut conn = TcpStream::connect(self.addr()).expect("probe connection");
        let mut batch = String::new();
        for key in keys {
            batch.push_str(&format!("gets {key}\r\n"));
        }
        conn.write_all(batch.as_bytes()).unwrap();
        let mut reader = BufReader::new(conn);
        let mut line = String::new();
        let mut read_line = |line: &mut String| {
            line.clear();
            reader.read_line(line).expect("a reply");
            line.trim_end().to_owned()
        };
        keys.iter()
            .map(|key| {
                let first = read_line(&mut line);
                if first == "END" {
                    return false;
                }
                let len: usize = match first.split(' ').collect::<Vec<_>>()[..] {
                    ["VALUE", k, _, len, _] if k == key => len.parse().expect("a length"),
                    _ => panic!("gets {key}: {first}"),
                };
                // Session data is JSON, one line; the length says where it ends.
                let data = read_line(&mut line);
                assert_eq!(data.len(), len, "gets {key}: data");
                assert_eq!(read_line(&mut line), "END", "gets {key}");
                true
            })
            .collect()
    }

    /// The version it names (`version`).
    pub fn version(&self) -> (u32, u32, u32) {
        let line = version_line(self.port).expect("an answer to version");
        let parts: Vec<u32> = line
            .trim_end()
            .trim_start_matches("VERSION ")
            .split('.')
            .map(|p| p.parse().expect("a version number"))
            .collect();
        (parts[0], parts[1], parts[2])
    }

    /// memcached's own counters (`stats`).
    pub fn stats(&self) -> HashMap<String, u64> {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).expect("stats connection");
        conn.write_all(b"stats\r\n").unwrap();
        let mut stats = HashMap::new();
        for line in BufReader::new(conn).lines() {
            let line = line.unwrap();
            if line == "END" {
                break;
            }
            let mut words = line.split(' ').skip(1);
            if let (Some(name), Some(value)) = (words.next(), words.next()) {
                if let Ok(value) = value.parse() {
                    stats.insert(name.to_owned(), value);
                }
            }
        }
        stats
    }
}

/// Whether every thread of process `pid` is stopped (state `T`).
fn all_stopped(pid: u32) -> bool {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/<pid>/task");
    tasks.flatten().all(|task| {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // The state follows the command name, which is in parentheses.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    })
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The harness itself: a restart waits out another listener for a second on its port
/// (fails if `restart` tries once).
#[test]
fn a_restart_waits_for_its_port_to_be_free() {
    let mut server = Memcached::start();
    let port = server.port;
    server.stop();
    // Another thread's `free_port` or `listener` may hold the port for a moment too.
    let held = (0..100)
        .find_map(|_| {
            let held = TcpListener::bind(("127.0.0.1", port));
            if held.is_err() {
                std::thread::sleep(Duration::from_millis(10));
            }
            held.ok()
        })
        .expect("the port just freed");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        drop(held);
    });
    server.restart();
    release.join().expect("the listener is dropped");
    assert!(answers_version(port), "memcached answers on its old port");
}

/// The harness itself: a fake server's listener is never on a port given to a memcached,
/// and the ports it refuses stay held until it has one, so that `bind(:0)` offers others
/// (fails if `listener` takes the first port offered, or lets a refused one go).
#[test]
fn a_listener_skips_the_ports_given_to_servers() {
    assert!(given_to_a_server(free_port()));
    let own = listener().local_addr().expect("its address").port();
    assert!(!given_to_a_server(own));

    let refused = RefCell::new(Vec::new());
    let listener = listener_outside(|port| {
        for &held in refused.borrow().iter() {
            let again = TcpListener::bind(("127.0.0.1", held));
            assert!(again.is_err(), "port {held} was let go while refused");
        }
        let refuse = refused.borrow().len() < 3;
        if refuse {
            refused.borrow_mut().push(port);
        }
        refuse
    });
    let port = listener.local_addr().expect("its address").port();
    let refused = refused.into_inner();
    assert_eq!(refused.len(), 3, "three ports refused before one was taken");
    assert!(!refused.contains(&port), "{port} was refused");
}
