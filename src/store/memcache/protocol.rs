//! memcached's meta protocol: the five commands a session store needs, written as bytes,
//! and the replies they can get. No I/O here.
//!
//! - `mg <key> v c` reads a value and its CAS token: `VA <len> c<cas>` + data, or `EN`.
//! - `ms <key> <len> T<ttl> ME` adds: `HD`, or `NS` when the key exists.
//! - `ms <key> <len> T<ttl> C<cas>` compare-and-swaps: `HD`, `EX` (stale), `NF` (missing).
//! - `mg <key> T<ttl>` touches: `HD`, or `EN`.
//! - `md <key>` deletes: `HD`, or `NF`.

use std::time::Duration;

/// memcached reads a TTL above 30 days as a Unix timestamp.
const MAX_RELATIVE_TTL: u64 = 30 * 24 * 3600;

/// A request, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request(pub(crate) Vec<u8>);

impl Request {
    pub(crate) fn get(key: &str) -> Self {
        Self(format!("mg {key} v c\r\n").into_bytes())
    }

    pub(crate) fn add(key: &str, data: &[u8], ttl: Duration, now: u64) -> Self {
        Self::set(key, data, &format!("T{} ME", exptime(ttl, now)))
    }

    pub(crate) fn cas(key: &str, data: &[u8], cas: u64, ttl: Duration, now: u64) -> Self {
        Self::set(key, data, &format!("T{} C{cas}", exptime(ttl, now)))
    }

    pub(crate) fn touch(key: &str, ttl: Duration, now: u64) -> Self {
        Self(format!("mg {key} T{}\r\n", exptime(ttl, now)).into_bytes())
    }

    pub(crate) fn delete(key: &str) -> Self {
        Self(format!("md {key}\r\n").into_bytes())
    }

    fn set(key: &str, data: &[u8], flags: &str) -> Self {
        let head = format!("ms {key} {} {flags}\r\n", data.len());
        let mut bytes = Vec::with_capacity(head.len() + data.len() + 2);
        bytes.extend_from_slice(head.as_bytes());
        bytes.extend_from_slice(data);
        bytes.extend_from_slice(b"\r\n");
        Self(bytes)
    }
}

/// memcached's expiry for a TTL: whole seconds, at least 1 (0 would mean "never"), and a
/// timestamp past 30 days.
pub(crate) fn exptime(ttl: Duration, now: u64) -> u64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    match secs.max(1) {
        s if s > MAX_RELATIVE_TTL => now + s,
        s => s,
    }
}

/// The first line of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// `VA <len> <flags>`: `len` data bytes and `\r\n` follow.
    Value { len: usize, cas: Option<u64> },
    /// `HD`: done.
    Done,
    /// `EN`: no such key (reads).
    Miss,
    /// `NF`: no such key (writes).
    NotFound,
    /// `NS`: not stored (add on an existing key).
    NotStored,
    /// `EX`: CAS token is stale.
    Exists,
    /// `SERVER_ERROR object too large for cache`.
    TooLarge,
    /// Anything else: an error line, or a reply this client does not expect.
    Unexpected(String),
}

impl Status {
    /// Parses one reply line, without its `\r\n`.
    pub(crate) fn parse(line: &[u8]) -> Self {
        let text = String::from_utf8_lossy(line);
        let mut words = text.split(' ');
        match words.next().unwrap_or_default() {
            "VA" => {
                let Some(len) = words.next().and_then(|w| w.parse().ok()) else {
                    return Self::Unexpected(text.into_owned());
                };
                let cas = words.find_map(|w| w.strip_prefix('c')?.parse().ok());
                Self::Value { len, cas }
            }
            "HD" => Self::Done,
            "EN" => Self::Miss,
            "NF" => Self::NotFound,
            "NS" => Self::NotStored,
            "EX" => Self::Exists,
            "SERVER_ERROR" if text.contains("too large") => Self::TooLarge,
            _ => Self::Unexpected(text.into_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: Request) -> String {
        String::from_utf8(r.0).unwrap()
    }

    #[test]
    fn requests_are_meta_commands() {
        assert_eq!(text(Request::get("s:abc")), "mg s:abc v c\r\n");
        let secs = Duration::from_secs(60);
        assert_eq!(
            text(Request::add("k", b"xy", secs, 0)),
            "ms k 2 T60 ME\r\nxy\r\n"
        );
        assert_eq!(
            text(Request::cas("k", b"xy", 77, secs, 0)),
            "ms k 2 T60 C77\r\nxy\r\n"
        );
        assert_eq!(text(Request::touch("k", secs, 0)), "mg k T60\r\n");
        assert_eq!(text(Request::delete("k")), "md k\r\n");
    }

    #[test]
    fn ttls_round_up_and_long_ones_become_timestamps() {
        assert_eq!(exptime(Duration::from_millis(1), 0), 1);
        assert_eq!(exptime(Duration::from_millis(1500), 0), 2);
        assert_eq!(exptime(Duration::ZERO, 0), 1);
        let long = Duration::from_secs(MAX_RELATIVE_TTL + 1);
        assert_eq!(exptime(long, 1_000), 1_000 + MAX_RELATIVE_TTL + 1);
    }

    #[test]
    fn replies_parse() {
        assert_eq!(
            Status::parse(b"VA 5 c123"),
            Status::Value {
                len: 5,
                cas: Some(123)
            }
        );
        assert_eq!(Status::parse(b"VA 0"), Status::Value { len: 0, cas: None });
        assert_eq!(Status::parse(b"HD"), Status::Done);
        assert_eq!(Status::parse(b"EN"), Status::Miss);
        assert_eq!(Status::parse(b"NF"), Status::NotFound);
        assert_eq!(Status::parse(b"NS"), Status::NotStored);
        assert_eq!(Status::parse(b"EX"), Status::Exists);
        assert_eq!(
            Status::parse(b"SERVER_ERROR object too large for cache"),
            Status::TooLarge
        );
        assert!(matches!(Status::parse(b"VA x"), Status::Unexpected(_)));
        assert!(matches!(Status::parse(b"ERROR"), Status::Unexpected(_)));
    }
}
