//! What both of memcached's protocols say, whichever spells it: the protocol setting, the
//! requests a session store sends (`Request`, `Op`), the replies they can get (`Status`),
//! and memcached's expiry. No I/O, and no spelling: `meta` and `text` write and read the
//! wire, each its own way.

use std::time::Duration;

use crate::store::error::StoreError;

/// memcached reads a TTL above 30 days as a Unix timestamp.
const MAX_RELATIVE_TTL: u64 = 30 * 24 * 3600;
/// An expiry long past: the first number memcached reads as a Unix timestamp (January
/// 1970) rather than seconds from now. An item stored with it has expired at once, so a
/// compare-and-swap to it is a conditional delete in one command, in a protocol that has
/// none: a second, unconditional delete could remove an item added since.
pub(crate) const EXPIRED: u32 = MAX_RELATIVE_TTL as u32 + 1;
/// The earliest clock reading taken as set (2020-01-01). A machine that booted with its
/// clock at 1970 and has not set it yet would turn a lifetime over 30 days into a timestamp
/// memcached takes as long past: the item would be gone as it is stored, a login would
/// conflict until it gave up (409), and a session would vanish after its 200.
const EARLIEST_CLOCK: u64 = 1_577_836_800;
/// The latest expiry memcached can store: it reads the number as a signed 32-bit one, and
/// takes a later timestamp as already past (measured: the item is gone at once).
const MAX_EXPTIME: u64 = i32::MAX as u64;

/// Which of memcached's protocols a [`MemcacheStore`](crate::MemcacheStore) speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// Chosen per server on each connect (the default): the meta protocol where it is
    /// complete (memcached 1.6.18 or later, proven by an answer to the meta no-op `mn`),
    /// the text protocol everywhere else (older memcached, proxies). Logged at info once
    /// per server, with the reason, and again when a server comes back speaking the other.
    #[default]
    Auto,
    /// The meta protocol, always (memcached 1.6.18 or later; an older server, or a proxy
    /// that fails the meta no-op, is refused by name): every reply echoes its request's
    /// opaque token, and a TTL reset is one command (`mg <key> T<ttl>`).
    Meta,
    /// The classic text protocol (`gets`, `cas`, `add`, `touch`, `delete`), always: what
    /// every memcached since 1.4 and every proxy (twemproxy, mcrouter) speaks. Replies
    /// carry no token: each is checked against the command it answers (a `VALUE` line
    /// must name the key asked for), and anything else ends the connection.
    Text,
}

/// The protocol one connection speaks, once its handshake chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spoken {
    Meta,
    Text,
}

impl std::fmt::Display for Spoken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Meta => "meta",
            Self::Text => "text",
        })
    }
}

/// What a request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// The value and its CAS token.
    Get,
    /// Whether the key exists, changing nothing.
    Exists,
    /// Store if absent.
    Add,
    /// Store if the CAS token still matches.
    Cas(u64),
    /// Reset the TTL.
    Touch,
    Delete,
    /// Delete if the CAS token still matches.
    DeleteIf(u64),
}

/// A request, written out by the connection in its protocol once it has an opaque token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request<'a> {
    pub(crate) op: Op,
    pub(crate) key: &'a str,
    /// The data block of a set.
    pub(crate) data: Option<&'a [u8]>,
    /// memcached's expiry (see [`exptime`]), for sets and touch.
    pub(crate) exptime: u64,
    /// Whether sending it twice does no harm: reads and touch. A write whose outcome is
    /// unknown must not be resent: a second CAS would answer "conflict" for a write that
    /// landed, a second conditional delete "not found" for a delete that landed (and
    /// `renew` would take the session for purged), and a second unconditional delete would
    /// remove what was added since under the key (a login's user item, whose key is the
    /// same for every login of the user, after the sign-out that the login saw land).
    pub(crate) idempotent: bool,
}

impl<'a> Request<'a> {
    pub(crate) fn get(key: &'a str) -> Self {
        Self::new(Op::Get, key, None, 0)
    }

    /// Whether the item exists, changing nothing: a harmless first request to a server
    /// that is being tried again.
    pub(crate) fn exists(key: &'a str) -> Self {
        Self::new(Op::Exists, key, None, 0)
    }

    pub(crate) fn add(
        key: &'a str,
        data: &'a [u8],
        ttl: Duration,
        now: impl FnOnce() -> u64,
    ) -> Result<Self, StoreError> {
        Ok(Self::new(Op::Add, key, Some(data), exptime(ttl, now)?))
    }

    pub(crate) fn cas(
        key: &'a str,
        data: &'a [u8],
        cas: u64,
        ttl: Duration,
        now: impl FnOnce() -> u64,
    ) -> Result<Self, StoreError> {
        Ok(Self::new(Op::Cas(cas), key, Some(data), exptime(ttl, now)?))
    }

    pub(crate) fn touch(
        key: &'a str,
        ttl: Duration,
        now: impl FnOnce() -> u64,
    ) -> Result<Self, StoreError> {
        Ok(Self::new(Op::Touch, key, None, exptime(ttl, now)?))
    }

    pub(crate) fn delete(key: &'a str) -> Self {
        Self::new(Op::Delete, key, None, 0)
    }

    /// Deletes only if the item's CAS token is still `cas`.
    pub(crate) fn delete_if(key: &'a str, cas: u64) -> Self {
        Self::new(Op::DeleteIf(cas), key, None, 0)
    }

    fn new(op: Op, key: &'a str, data: Option<&'a [u8]>, exptime: u64) -> Self {
        let idempotent = matches!(op, Op::Get | Op::Exists | Op::Touch);
        Self {
            op,
            key,
            data,
            exptime,
            idempotent,
        }
    }

    /// Whether a set's `SERVER_ERROR object too large` may answer it.
    pub(crate) fn is_set(&self) -> bool {
        self.data.is_some()
    }
}

/// The largest item any memcached stores (its `-I` is at most 1 GiB): a value announced
/// longer is no memcached's, and ends the connection instead of being read past.
pub(crate) const MAX_ITEM_CEILING: usize = 1024 * 1024 * 1024;

/// memcached's expiry for a TTL: whole seconds, at least 1 (0 would mean "never"), and a
/// timestamp past 30 days, at most [`MAX_EXPTIME`] (January 2038), however long the TTL.
/// The clock (`now`, Unix seconds) is read only for such a timestamp: about 100
/// instructions, on every write. A clock before [`EARLIEST_CLOCK`] is refused
/// ([`StoreError::Unsupported`], 503): nothing is written rather than an item that is gone
/// at once.
pub(crate) fn exptime(ttl: Duration, now: impl FnOnce() -> u64) -> Result<u64, StoreError> {
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    match secs.max(1) {
        s if s > MAX_RELATIVE_TTL => match now() {
            now if now < EARLIEST_CLOCK => Err(StoreError::Unsupported(format!(
                "this server's clock reads {now} s after 1970, before 2020: memcached would \
                 take a lifetime over 30 days ({s} s) as a date long past and drop the item \
                 as it is stored; set the clock"
            ))),
            now => Ok(now.saturating_add(s).min(MAX_EXPTIME)),
        },
        s => Ok(s),
    }
}

/// What a reply line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// `VA <len> <flags>`: `len` data bytes and `\r\n` follow.
    Value { len: usize, cas: Option<u64> },
    /// `HD`: done.
    Done,
    /// `HD c0`: done, by a memcached run with `-C`, whose CAS tokens otherwise start at 1
    /// (only a meta create asks for the token).
    DoneWithoutCas,
    /// `EN`: no such key (reads).
    Miss,
    /// `NF`: no such key (writes).
    NotFound,
    /// `NS`: not stored (add on an existing key).
    NotStored,
    /// `EX`: CAS token is stale.
    Exists,
    /// `SERVER_ERROR object too large for cache`: memcached swallowed the data block and
    /// answers with this one line; the connection stays in step.
    TooLarge,
    /// A value of `len` bytes, over this store's `max_item_size` (memcached run with a
    /// larger `-I`, or another client's item): read past and dropped, so the connection
    /// stays in step.
    Oversized { len: usize },
    /// A one-line `SERVER_ERROR` (in the meta protocol too, where it carries no token):
    /// this request failed, and the connection is still in step. A proxy answers so for a
    /// key whose backend is down, and memcached when it cannot store an item (then, over
    /// the meta protocol, it has dropped the one stored).
    ServerError(String),
}

/// memcached refused a write that passed this store's own check (`fits`): its `-I` is
/// below `max_item_size`, and over the meta protocol (or the binary one, an r2d2 pool's) it
/// has then dropped the item stored under the key, so the operator hears of it.
pub(crate) fn refused_as_too_large(size: usize) -> StoreError {
    tracing::error!(
        bytes = size,
        "memcached refused a write as too large and may have dropped the session stored \
         under its key: max_item_size is above memcached's -I"
    );
    StoreError::TooLarge { size }
}

/// `url` for a message: a `user:password@` login (the `memcache` client's SASL) is not
/// shown, with its scheme or without (a URL missing it is refused for that, and must not
/// show its password either).
pub(crate) fn without_login(url: &str) -> String {
    // A scheme is letters: a `://` after anything else is part of the login.
    let scheme = url
        .find("://")
        .filter(|&end| url[..end].bytes().all(|b| b.is_ascii_alphabetic()));
    match (scheme, url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://(login not shown)@{}", &url[..scheme], &url[at + 1..])
        }
        (_, Some(at)) => format!("(login not shown)@{}", &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// A server's line, as logs may show it. An error or `VERSION` line is the server's own
/// words: at most 100 characters of it. Any other line may be out of step, a key or a
/// stored value read as a reply (another session's id, a user's data): its first word if
/// it is one of the protocols' own, else its first 6 characters (as much of an id as logs
/// ever show), and how long it was.
pub(crate) fn short(text: &str) -> String {
    const OWN_WORDS: [&str; 16] = [
        "VALUE",
        "END",
        "STORED",
        "NOT_STORED",
        "EXISTS",
        "NOT_FOUND",
        "DELETED",
        "TOUCHED",
        "VA",
        "EN",
        "HD",
        "NS",
        "EX",
        "NF",
        "MN",
        "OK",
    ];
    let first = text.split(' ').next().unwrap_or_default();
    if ["ERROR", "CLIENT_ERROR", "SERVER_ERROR", "VERSION"].contains(&first) {
        return text.chars().take(100).collect();
    }
    let shown: String = if OWN_WORDS.contains(&first) {
        first.to_owned()
    } else {
        first.chars().take(6).collect()
    };
    if shown.len() == text.len() {
        shown
    } else {
        format!("{shown}… ({} bytes)", text.len())
    }
}

/// A reply line that ends the connection, with what to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fatal(pub(crate) String);

#[cfg(test)]
mod tests {
    use super::*;

    /// A key or a value read where a reply should be is not written to the logs: of a
    /// line that is not the server's own words, its first word if the protocol's, else 6
    /// characters.
    #[test]
    fn a_line_shown_in_the_logs_holds_no_key_and_no_value() {
        let id = "AbCdEfGhIjKlMnOpQrStUv";
        assert_eq!(
            short(&format!("VALUE session:{id} 0 57 12")),
            "VALUE… (44 bytes)"
        );
        assert_eq!(short(&format!("session:{id}")), "sessio… (30 bytes)");
        assert_eq!(short(&format!("{id} 0 1")), "AbCdEf… (26 bytes)");
        assert_eq!(
            short(r#"{"v":1,"created":1700000000}"#),
            "{\"v\":1… (28 bytes)"
        );
        assert_eq!(short("STORED"), "STORED");
        assert_eq!(short("HD O1 c5"), "HD… (8 bytes)");
        assert_eq!(
            short("SERVER_ERROR out of memory storing object"),
            "SERVER_ERROR out of memory storing object"
        );
        assert_eq!(short("VERSION 1.6.18"), "VERSION 1.6.18");
        assert_eq!(short(&"ERROR ".repeat(40)).chars().count(), 100);
        assert_eq!(short(""), "");
    }

    #[test]
    fn only_reads_and_touch_may_be_resent() {
        let secs = Duration::from_secs(1);
        assert!(Request::get("k").idempotent);
        assert!(Request::exists("k").idempotent);
        assert!(Request::touch("k", secs, || 0).unwrap().idempotent);
        assert!(!Request::delete("k").idempotent);
        assert!(!Request::delete_if("k", 1).idempotent);
        assert!(!Request::add("k", b"", secs, || 0).unwrap().idempotent);
        assert!(!Request::cas("k", b"", 1, secs, || 0).unwrap().idempotent);
    }

    #[test]
    fn ttls_round_up_and_long_ones_become_timestamps() {
        let exptime = |ttl, now| exptime(ttl, || now).unwrap();
        assert_eq!(exptime(Duration::from_millis(1), 0), 1);
        assert_eq!(exptime(Duration::from_millis(1500), 0), 2);
        assert_eq!(exptime(Duration::ZERO, 0), 1);
        let long = Duration::from_secs(MAX_RELATIVE_TTL + 1);
        let now = 1_800_000_000;
        assert_eq!(exptime(long, now), now + MAX_RELATIVE_TTL + 1);
        assert_eq!(
            exptime(long, EARLIEST_CLOCK),
            EARLIEST_CLOCK + MAX_RELATIVE_TTL + 1
        );
    }

    /// A clock not set yet (a machine booted at 1970) is refused for a lifetime that
    /// needs it, rather than stored as a date memcached takes as past; a shorter lifetime
    /// does not read the clock.
    #[test]
    fn a_clock_before_2020_is_refused_for_a_timestamp() {
        let long = Duration::from_secs(MAX_RELATIVE_TTL + 3600);
        for now in [0, 1_000, EARLIEST_CLOCK - 1] {
            let e = exptime(long, || now).unwrap_err();
            assert!(matches!(&e, StoreError::Unsupported(why) if why.contains("set the clock")));
            assert!(Request::add("k", b"", long, || now).is_err());
            assert!(Request::cas("k", b"", 1, long, || now).is_err());
            assert!(Request::touch("k", long, || now).is_err());
        }
        let short = Duration::from_secs(MAX_RELATIVE_TTL);
        let unread = || -> u64 { unreachable!("the clock is not read") };
        assert_eq!(exptime(short, unread).unwrap(), MAX_RELATIVE_TTL);
    }

    #[test]
    fn ttls_past_2038_stop_there() {
        let now = 1_800_000_000;
        let century = Duration::from_secs(100 * 365 * 24 * 3600);
        let exptime = |ttl, now| exptime(ttl, || now).unwrap();
        assert_eq!(exptime(century, now), MAX_EXPTIME);
        assert_eq!(exptime(Duration::MAX, now), MAX_EXPTIME);
        assert_eq!(
            exptime(Duration::from_secs(u64::MAX), u64::MAX),
            MAX_EXPTIME
        );
    }
}
