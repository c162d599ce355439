//! Servers that misbehave on purpose, on loopback: a scripted fake memcached (extra or
//! missing replies, garbage, absurd lengths, silence) and a proxy in front of a real
//! memcached that drops the connection after forwarding a write. For faults a real server
//! will not produce; behaviour is tested against the real one.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::memcached::listener;

/// One command as the fake server received it.
#[derive(Debug, Clone)]
pub struct Command {
    /// The command line, without `\r\n`.
    pub line: String,
    /// Its first word: `mg`, `ms`, `md`, `version`; in the text protocol `gets`, `add`,
    /// `cas`, `touch`, `delete`.
    pub verb: String,
}

/// What the fake does with a command.
pub enum Answer {
    /// What memcached 1.6.18 would answer.
    Normal,
    /// These bytes instead (any number of lines, or garbage).
    Send(Vec<u8>),
    /// Nothing, ever: the client must time out.
    Silence,
    /// Close the connection without answering (as twemproxy does on a meta command).
    Hangup,
    /// These bytes, then close the connection (a reply cut short).
    SendThenHangup(Vec<u8>),
    /// These bytes before the command's data is read, and then nothing read or sent any
    /// more, the connection kept open (a server answering a large set early whose socket
    /// then fills).
    SendThenStopReading(Vec<u8>),
}

type Script = dyn Fn(&Command) -> Answer + Send + Sync;

/// A scripted memcached: a small in-memory server of the meta and text commands the store
/// sends, whose answers `script` may replace, command by command. It answers as the
/// memcached version it is set to (1.6.18 unless told), with that version's quirks: see
/// [`FakeMemcached::set_version`].
pub struct FakeMemcached {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    version: Arc<Mutex<(u32, u32, u32)>>,
}

#[derive(Default)]
struct Items {
    map: HashMap<String, (Vec<u8>, u64)>,
    next_cas: u64,
}

impl FakeMemcached {
    pub fn start(script: impl Fn(&Command) -> Answer + Send + Sync + 'static) -> Self {
        let listener = listener();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let items = Arc::new(Mutex::new(Items::default()));
        let version = Arc::new(Mutex::new((1, 6, 18)));
        let stopping = Arc::clone(&stop);
        let serving = Arc::clone(&version);
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (script, items) = (Arc::clone(&script), Arc::clone(&items));
                let (version, stop) = (Arc::clone(&serving), Arc::clone(&stopping));
                thread::spawn(move || serve(conn, &*script, &items, &version, &stop));
            }
        });
        Self {
            addr,
            stop,
            version,
        }
    }

    /// A fake of memcached `version`, answering as it does.
    pub fn of_version(
        version: (u32, u32, u32),
        script: impl Fn(&Command) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let fake = Self::start(script);
        fake.set_version(version);
        fake
    }

    /// Answers from now on as memcached `version` does (measured with the release builds
    /// in `shared/memcached-versions`): before 1.6.18 a miss (`EN`) carries no opaque
    /// token and `md` replies have two spaces before it; on 1.6.10 to 1.6.12 `md <key>
    /// C<cas>` answers `EX` even with the right CAS; before 1.6.10 the meta commands the
    /// store sends are refused (`CLIENT_ERROR`, then `ERROR` for a data line), and before
    /// 1.6 there is no meta command at all (`ERROR`).
    pub fn set_version(&self, version: (u32, u32, u32)) {
        *self.version.lock().unwrap() = version;
    }

    pub fn url(&self) -> String {
        format!("memcache://{}", self.addr)
    }
}

impl Drop for FakeMemcached {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    conn: TcpStream,
    script: &Script,
    items: &Mutex<Items>,
    version: &Mutex<(u32, u32, u32)>,
    stop: &AtomicBool,
) {
    let mut out = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end().to_owned();
        let words: Vec<&str> = line.split(' ').collect();
        // Where a set's data length stands: `ms <key> <len>`, `add|cas <key> 0 <exp> <len>`.
        let len_at = match words[0] {
            "ms" => Some(2),
            "add" | "cas" => Some(4),
            _ => None,
        };
        let command = Command {
            verb: words[0].to_owned(),
            line: line.clone(),
        };
        let answer = script(&command);
        if let Answer::SendThenStopReading(bytes) = &answer {
            let _ = out.write_all(bytes);
            while !stop.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(20));
            }
            return;
        }
        let data = if let Some(at) = len_at {
            let len: usize = words.get(at).and_then(|w| w.parse().ok()).unwrap_or(0);
            let mut data = vec![0; len + 2];
            if reader.read_exact(&mut data).is_err() {
                return;
            }
            data.truncate(len);
            Some(data)
        } else {
            None
        };
        let version = *version.lock().unwrap();
        let reply = match answer {
            Answer::Normal => normal(&words, data, &mut items.lock().unwrap(), version),
            Answer::Send(bytes) => bytes,
            Answer::Silence => continue,
            Answer::Hangup => return,
            Answer::SendThenHangup(bytes) => {
                let _ = out.write_all(&bytes);
                return;
            }
            Answer::SendThenStopReading(_) => unreachable!("answered before the data"),
        };
        if out.write_all(&reply).is_err() {
            return;
        }
    }
}

/// memcached `version`'s answer to the few commands the store sends.
fn normal(
    words: &[&str],
    data: Option<Vec<u8>>,
    items: &mut Items,
    version: (u32, u32, u32),
) -> Vec<u8> {
    if words[0] == "version" {
        let (a, b, c) = version;
        return format!("VERSION {a}.{b}.{c}\r\n").into_bytes();
    }
    if let Some(reply) = normal_text(words, &data, items) {
        return reply;
    }
    let meta = matches!(words[0], "mg" | "ms" | "md" | "mn");
    if meta && version < (1, 6, 0) {
        return b"ERROR\r\n".to_vec();
    }
    if words[0] == "mn" {
        return b"MN\r\n".to_vec();
    }
    if meta && version < (1, 6, 10) {
        // 1.6.9's `ms` takes `<key> <flags>*`: today's data length is an invalid flag, and
        // the data line that follows is an unknown command.
        return match words[0] {
            "ms" => b"CLIENT_ERROR invalid flag\r\nERROR\r\n".to_vec(),
            _ => b"CLIENT_ERROR bad command line format\r\n".to_vec(),
        };
    }
    let tokenless_miss = version < (1, 6, 18);
    let md_space = if version < (1, 6, 18) { " " } else { "" };
    let key = words.get(1).copied().unwrap_or_default().to_owned();
    let flags = &words[2.min(words.len())..];
    let flag = |f: char| flags.iter().find_map(|w| w.strip_prefix(f));
    let opaque = flag('O').map_or(String::new(), |o| format!(" O{o}"));
    let cas_given = flag('C').and_then(|c| c.parse::<u64>().ok());
    let reply = match words[0] {
        "mg" => match items.map.get(&key) {
            None if tokenless_miss => return b"EN\r\n".to_vec(),
            None => "EN".to_owned(),
            Some((value, cas)) if flags.contains(&"v") => {
                let mut bytes = format!("VA {} c{cas}{opaque}\r\n", value.len()).into_bytes();
                bytes.extend_from_slice(value);
                bytes.extend_from_slice(b"\r\n");
                return bytes;
            }
            Some(_) => "HD".to_owned(),
        },
        "ms" => {
            let current = items.map.get(&key).map(|(_, cas)| *cas);
            let refused = match (flags.contains(&"ME"), cas_given, current) {
                (true, _, Some(_)) => Some("NS"),
                (false, Some(_), None) => Some("NF"),
                (false, Some(given), Some(cas)) if given != cas => Some("EX"),
                _ => None,
            };
            match refused {
                Some(code) => code.to_owned(),
                None => {
                    items.next_cas += 1;
                    items
                        .map
                        .insert(key, (data.unwrap_or_default(), items.next_cas));
                    "HD".to_owned()
                }
            }
        }
        "md" => match (items.map.get(&key), cas_given) {
            (None, _) => format!("NF{md_space}"),
            (Some((_, cas)), Some(given)) if *cas != given => format!("EX{md_space}"),
            // The conditional delete that never deletes.
            (Some(_), Some(_)) if ((1, 6, 10)..(1, 6, 13)).contains(&version) => {
                format!("EX{md_space}")
            }
            _ => {
                items.map.remove(&key);
                format!("HD{md_space}")
            }
        },
        _ => return b"ERROR\r\n".to_vec(),
    };
    format!("{reply}{opaque}\r\n").into_bytes()
}

impl Items {
    /// A text-protocol `add` or `cas` that stores: as memcached does, an expiry above 30
    /// days is a Unix time, and one already past leaves nothing (the item expired at once).
    fn store(&mut self, key: String, words: &[&str], data: &Option<Vec<u8>>) -> &'static str {
        const MAX_RELATIVE: u64 = 30 * 24 * 3600;
        let exptime = words.get(3).and_then(|e| e.parse::<u64>().ok());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.next_cas += 1;
        if exptime.is_some_and(|e| e > MAX_RELATIVE && e <= now) {
            self.map.remove(&key);
        } else {
            let value = data.clone().unwrap_or_default();
            self.map.insert(key, (value, self.next_cas));
        }
        "STORED"
    }
}

/// memcached's answer to a text-protocol command, if it is one.
fn normal_text(words: &[&str], data: &Option<Vec<u8>>, items: &mut Items) -> Option<Vec<u8>> {
    let key = words.get(1).copied().unwrap_or_default().to_owned();
    let current = items.map.get(&key).map(|(_, cas)| *cas);
    let reply = match words[0] {
        "gets" => {
            let Some((value, cas)) = items.map.get(&key) else {
                return Some(b"END\r\n".to_vec());
            };
            let mut bytes = format!("VALUE {key} 0 {} {cas}\r\n", value.len()).into_bytes();
            bytes.extend_from_slice(value);
            bytes.extend_from_slice(b"\r\nEND\r\n");
            return Some(bytes);
        }
        "add" if current.is_some() => "NOT_STORED",
        "cas" => match (current, words.get(5).and_then(|c| c.parse::<u64>().ok())) {
            (None, _) => "NOT_FOUND",
            (Some(cas), Some(given)) if cas == given => items.store(key, words, data),
            _ => "EXISTS",
        },
        "add" => items.store(key, words, data),
        "touch" if current.is_some() => "TOUCHED",
        "delete" if items.map.remove(&key).is_some() => "DELETED",
        "touch" | "delete" => "NOT_FOUND",
        _ => return None,
    };
    Some(format!("{reply}\r\n").into_bytes())
}

/// A proxy to `upstream` that, the first time a client sends a write (`ms`; `cas` or `add`
/// in the text protocol), or a command of the verbs given to `on`, forwards it and then
/// closes the connection without passing the reply back: the command landed, and the
/// client cannot know. Later connections pass through untouched.
pub struct DroppingProxy {
    addr: SocketAddr,
    /// Set once the command it drops after was forwarded.
    pub dropped: Arc<AtomicBool>,
}

impl DroppingProxy {
    pub fn start(upstream: SocketAddr) -> Self {
        Self::on(upstream, &[b"ms ", b"cas ", b"add "])
    }

    pub fn on(upstream: SocketAddr, verbs: &'static [&'static [u8]]) -> Self {
        let listener = listener();
        let addr = listener.local_addr().unwrap();
        let dropped = Arc::new(AtomicBool::new(false));
        let (once, forwarded) = (Arc::new(AtomicBool::new(false)), Arc::clone(&dropped));
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (once, forwarded) = (Arc::clone(&once), Arc::clone(&forwarded));
                let dropping = Arc::new(AtomicBool::new(false));
                let (c2, s2, dropping2) = (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    Arc::clone(&dropping),
                );
                let picked = move |chunk: &[u8]| {
                    let this = verbs.iter().any(|verb| {
                        chunk.starts_with(verb)
                            || chunk
                                .windows(verb.len() + 1)
                                .any(|w| w[0] == b'\n' && &w[1..] == *verb)
                    });
                    if this && !once.swap(true, Ordering::SeqCst) {
                        Fate::PassThenCut
                    } else {
                        Fate::Pass
                    }
                };
                thread::spawn(move || {
                    let stops = Stops {
                        dropping: &dropping,
                        forwarded: &forwarded,
                        held: &AtomicUsize::new(0),
                    };
                    pump_requests(client, server, picked, &stops)
                });
                thread::spawn(move || pump(s2, c2, || !dropping2.load(Ordering::SeqCst)));
            }
        });
        Self { addr, dropped }
    }

    pub fn url(&self) -> String {
        format!("memcache://{}", self.addr)
    }
}

/// What a proxy does with a chunk of commands a client sent.
pub enum Fate {
    Pass,
    /// Passed on after a while.
    Late(Duration),
    /// Not passed on: the connection closes, and the commands never reach memcached.
    Cut,
    /// Passed on, and the connection closes without their replies: the commands landed,
    /// and the client cannot know.
    PassThenCut,
}

/// What `pump_requests` tells.
struct Stops<'a> {
    /// Set on a `PassThenCut`, before the chunk is passed on: the replies stop.
    dropping: &'a AtomicBool,
    /// Set on a `PassThenCut`, once the chunk was passed on.
    forwarded: &'a AtomicBool,
    /// Chunks read and not yet passed on or dropped, now.
    held: &'a AtomicUsize,
}

/// Copies commands from `from` to `to`, each chunk as `fate` says.
fn pump_requests(
    mut from: TcpStream,
    mut to: TcpStream,
    mut fate: impl FnMut(&[u8]) -> Fate,
    stops: &Stops<'_>,
) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        stops.held.fetch_add(1, Ordering::SeqCst);
        let chunk = &buf[..n];
        let go_on = match fate(chunk) {
            Fate::Pass => to.write_all(chunk).is_ok(),
            Fate::Late(wait) => {
                thread::sleep(wait);
                to.write_all(chunk).is_ok()
            }
            Fate::Cut => false,
            Fate::PassThenCut => {
                stops.dropping.store(true, Ordering::SeqCst);
                let _ = to.write_all(chunk);
                stops.forwarded.store(true, Ordering::SeqCst);
                // Let memcached apply it before the connection goes.
                thread::sleep(Duration::from_millis(100));
                false
            }
        };
        stops.held.fetch_sub(1, Ordering::SeqCst);
        if !go_on {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// A proxy to `upstream` that fails at random, as a flaky network does: of the chunks of
/// commands a client sends, about one in `odds` is cut before memcached sees it, one in
/// `odds` is passed on and its replies lost, one in `odds` is passed on late (by `late`),
/// and after about one in `odds` of memcached's replies the connection's replies stop (the
/// client must time out). Between [`storm`](Self::storm) and [`calm`](Self::calm); it
/// starts calm.
pub struct ChaosProxy {
    addr: SocketAddr,
    calm: Arc<AtomicBool>,
    /// Faults so far.
    pub faults: Arc<AtomicUsize>,
    /// Chunks of commands read and not yet passed on or dropped, now.
    held: Arc<AtomicUsize>,
}

impl ChaosProxy {
    pub fn start(upstream: SocketAddr, seed: u64, odds: usize, late: Duration) -> Self {
        let listener = listener();
        let addr = listener.local_addr().unwrap();
        let calm = Arc::new(AtomicBool::new(true));
        let faults = Arc::new(AtomicUsize::new(0));
        let rng = Arc::new(Mutex::new(crate::support::Rng(seed)));
        let held = Arc::new(AtomicUsize::new(0));
        let (calming, counting, holding) =
            (Arc::clone(&calm), Arc::clone(&faults), Arc::clone(&held));
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let dropping = Arc::new(AtomicBool::new(false));
                // One draw of below(odds * 4) per chunk: 0, 1, 2 a fault, the rest none.
                let draw = {
                    let (rng, calm, faults) = (
                        Arc::clone(&rng),
                        Arc::clone(&calming),
                        Arc::clone(&counting),
                    );
                    move || {
                        if calm.load(Ordering::SeqCst) {
                            return usize::MAX;
                        }
                        let n = rng.lock().unwrap().below(odds * 4);
                        if n < 3 {
                            faults.fetch_add(1, Ordering::SeqCst);
                        }
                        n
                    }
                };
                let fate = {
                    let draw = draw.clone();
                    move |_: &[u8]| match draw() {
                        0 => Fate::Cut,
                        1 => Fate::PassThenCut,
                        2 => Fate::Late(late),
                        _ => Fate::Pass,
                    }
                };
                let held = Arc::clone(&holding);
                let stopped = Arc::clone(&dropping);
                thread::spawn(move || {
                    let stops = Stops {
                        dropping: &dropping,
                        forwarded: &AtomicBool::new(false),
                        held: &held,
                    };
                    pump_requests(client, server, fate, &stops)
                });
                thread::spawn(move || {
                    pump(s2, c2, || {
                        if draw() < 3 {
                            stopped.store(true, Ordering::SeqCst);
                        }
                        !stopped.load(Ordering::SeqCst)
                    })
                });
            }
        });
        Self {
            addr,
            calm,
            faults,
            held,
        }
    }

    /// Whether a chunk of commands it read is not yet passed on or dropped (one held back
    /// to be passed on late, say).
    pub fn holds_any(&self) -> bool {
        self.held.load(Ordering::SeqCst) > 0
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Faults from now on.
    pub fn storm(&self) {
        self.calm.store(false, Ordering::SeqCst);
    }

    /// No faults from now on.
    pub fn calm(&self) {
        self.calm.store(true, Ordering::SeqCst);
    }
}

/// A proxy to `upstream` that counts round trips: the times a client sends after a reply
/// reached it. Replies are held back a while, so a command sent right after another, before
/// any reply (pipelined), counts with it, while one sent only after a reply counts anew.
pub struct TurnCountingProxy {
    addr: SocketAddr,
    turns: Arc<Turns>,
}

#[derive(Default)]
struct Turns {
    count: AtomicUsize,
    /// The last bytes through went to the client.
    replied: AtomicBool,
}

/// How long a reply is held back: far longer than two commands of one request apart.
const REPLY_DELAY: Duration = Duration::from_millis(50);

impl TurnCountingProxy {
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = listener();
        let addr = listener.local_addr().unwrap();
        let turns = Arc::new(Turns::default());
        let counting = Arc::clone(&turns);
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (up, down) = (Arc::clone(&counting), Arc::clone(&counting));
                thread::spawn(move || {
                    pump(client, server, || {
                        if up.replied.swap(false, Ordering::SeqCst) {
                            up.count.fetch_add(1, Ordering::SeqCst);
                        }
                        true
                    })
                });
                thread::spawn(move || {
                    pump(s2, c2, || {
                        thread::sleep(REPLY_DELAY);
                        down.replied.store(true, Ordering::SeqCst);
                        true
                    })
                });
            }
        });
        turns.replied.store(true, Ordering::SeqCst);
        Self { addr, turns }
    }

    pub fn url(&self) -> String {
        format!("memcache://{}", self.addr)
    }

    /// Round trips since the last call.
    pub fn take(&self) -> usize {
        self.turns.count.swap(0, Ordering::SeqCst)
    }
}

/// Copies `from` to `to`, asking `before` ahead of each chunk whether to go on, until it
/// says no or either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream, before: impl Fn() -> bool) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Held back, not passed on, until the other side closes the connection.
        if before() && to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
