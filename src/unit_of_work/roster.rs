//! The user's item as stored: their generation and the roster of sessions signed in under
//! it, one entry per login. Pure bytes in, bytes out; the rules that use it are in
//! `generation.rs`, `census.rs` and `enlist.rs`.
//!
//! ```text
//! 0123456789abcdef [fedcba9876543210]       the generation: 64 random bits as hex, and
//!                                           the sign-out of the others that left it, if any
//! 89abcdef01234567 <22-character id> 1700000000   an entry: its handle, the session's
//! ...                                             id and when the entry was written
//! ```
//!
//! A session is signed in only while the generation is the one it copied and its handle is
//! listed: removing an entry signs that one session out, atomically with the
//! compare-and-swap that removes it. Everything is checked before use; bytes that break
//! any rule are not a roster this crate wrote, and match no session (fail closed).

use crate::id::SessionId;

/// Hex characters in a generation and in a handle (64 random bits each).
pub(crate) const TOKEN_CHARS: usize = 16;
/// The most entries a roster holds, so that the item, read with every request of a bound
/// session, stays small (about 60 bytes an entry): twice the most sessions a user may keep
/// (`MAX_SESSIONS_PER_USER`), for logins in flight that have not trimmed it yet.
pub(crate) const MAX_ENTRIES: usize = 2 * crate::config::MAX_SESSIONS_PER_USER;
/// Digits of a unix time in seconds, at most.
const MAX_TIME_DIGITS: usize = 20;
/// The longest roster: a generation and an epoch, then [`MAX_ENTRIES`] lines of a handle,
/// an id and a time of [`MAX_TIME_DIGITS`] (7,841 bytes). A user's item longer than this
/// is no roster on any instance, whatever item size it reads.
pub(crate) const MAX_BYTES: usize = 2 * TOKEN_CHARS
    + 1
    + MAX_ENTRIES * (1 + TOKEN_CHARS + 1 + crate::id::ID_CHARS + 1 + MAX_TIME_DIGITS);

/// One login: a handle that names it (stable across renewals), the session's current id,
/// and when the entry was last written (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) handle: String,
    pub(crate) id: SessionId,
    pub(crate) since: u64,
}

/// A user's generation and its entries, as decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Roster {
    pub(crate) generation: String,
    /// New at each sign-out of the others, which keeps the generation (the session that
    /// asked stays signed in, with every request of it): a login prepared before one is
    /// refused, as one prepared before a sign-out everywhere is. Sessions never hold it.
    pub(crate) epoch: Option<String>,
    pub(crate) entries: Vec<Entry>,
}

impl Roster {
    pub(crate) fn new(generation: String) -> Self {
        Self {
            generation,
            epoch: None,
            entries: Vec::new(),
        }
    }

    /// The roster in `bytes`, if they are one this crate wrote.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let ((generation, epoch), lines) = split(bytes)?;
        let mut entries = Vec::new();
        for line in lines {
            let (handle, id, since) = entry(line)?;
            entries.push(Entry {
                handle: handle.to_owned(),
                id,
                since,
            });
        }
        Some(Self {
            generation: generation.to_owned(),
            epoch: epoch.map(str::to_owned),
            entries,
        })
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(TOKEN_CHARS + self.entries.len() * 62);
        out.push_str(&self.generation);
        if let Some(epoch) = &self.epoch {
            out.push(' ');
            out.push_str(epoch);
        }
        for e in &self.entries {
            out.push_str(&format!("\n{} {} {}", e.handle, e.id.as_str(), e.since));
        }
        out.into_bytes()
    }

    /// Whether `other` is this roster's generation, with no sign-out of the others since.
    pub(crate) fn same_era(&self, other: &Roster) -> bool {
        self.generation == other.generation && self.epoch == other.epoch
    }

    pub(crate) fn get(&self, handle: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.handle == handle)
    }

    /// Lists `handle` under `id` from `since`, replacing its entry if it has one.
    pub(crate) fn put(&mut self, handle: &str, id: SessionId, since: u64) {
        self.remove(handle);
        self.entries.push(Entry {
            handle: handle.to_owned(),
            id,
            since,
        });
    }

    /// Removes `handle`'s entry, and says whether it had one.
    pub(crate) fn remove(&mut self, handle: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.handle != handle);
        self.entries.len() != before
    }
}

#[cfg(test)]
impl Roster {
    /// A roster of `generation` listing `handles`, each for a new id.
    pub(crate) fn listing(generation: &str, handles: &[&str]) -> Self {
        let mut r = Self::new(generation.into());
        for h in handles {
            r.put(h, SessionId::generate().unwrap(), 1_700_000_000);
        }
        r
    }
}

/// Whether `bytes` are a roster of `generation` that lists `handle`. Checks every line as
/// [`Roster::decode`] does, without allocating: it runs for every request of a bound
/// session.
pub(crate) fn lists(bytes: &[u8], generation: &str, handle: &str) -> bool {
    let Some(((current, _), lines)) = split(bytes) else {
        return false;
    };
    let mut found = false;
    for line in lines {
        match entry(line) {
            Some((listed, _, _)) => found |= listed == handle,
            None => return false,
        }
    }
    found && current == generation
}

/// Whether `s` is a generation or handle: 16 lowercase hex characters.
pub(crate) fn is_token(s: &str) -> bool {
    s.len() == TOKEN_CHARS && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A new generation or handle: 64 random bits as lowercase hex.
pub(crate) fn new_token() -> std::io::Result<String> {
    let mut bits = [0u8; TOKEN_CHARS / 2];
    getrandom::getrandom(&mut bits)?;
    Ok(bits.iter().map(|b| format!("{b:02x}")).collect())
}

/// The generation with the epoch, if any, and the entry lines, if the first line is valid
/// and the entries within [`MAX_ENTRIES`].
type Split<'a> = ((&'a str, Option<&'a str>), std::str::Split<'a, char>);

fn split(bytes: &[u8]) -> Option<Split<'_>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.split('\n');
    let mut first = lines.next()?.split(' ');
    let generation = first.next().filter(|g| is_token(g))?;
    let epoch = match first.next() {
        Some(epoch) => Some(epoch).filter(|e| is_token(e))?.into(),
        None => None,
    };
    if first.next().is_some() || text.bytes().filter(|&b| b == b'\n').count() > MAX_ENTRIES {
        return None;
    }
    Some(((generation, epoch), lines))
}

/// An entry line's handle, id and time, if it is well formed.
fn entry(line: &str) -> Option<(&str, SessionId, u64)> {
    let mut fields = line.split(' ');
    let handle = fields.next().filter(|h| is_token(h))?;
    // Read as `SessionId` reads it, for `lists` as for `decode`: an id of another spelling
    // that `lists` let through listed a session that no sign-out could then find.
    let id = fields.next()?.parse().ok()?;
    let since = fields
        .next()
        .filter(|t| {
            !t.is_empty() && t.len() <= MAX_TIME_DIGITS && t.bytes().all(|b| b.is_ascii_digit())
        })?
        .parse()
        .ok()?;
    fields.next().is_none().then_some((handle, id, since))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_roster_is_max_bytes() {
        let mut r = Roster::new("0123456789abcdef".into());
        r.epoch = Some("fedcba9876543210".into());
        for n in 0..MAX_ENTRIES {
            r.put(
                &format!("{n:016x}"),
                SessionId::generate().unwrap(),
                u64::MAX,
            );
        }
        let bytes = r.encode();
        assert_eq!(bytes.len(), MAX_BYTES);
        assert_eq!(MAX_BYTES, 7_841);
        assert_eq!(Roster::decode(&bytes), Some(r.clone()));
        r.put("ffffffffffffffff", SessionId::generate().unwrap(), 1);
        assert_eq!(Roster::decode(&r.encode()), None, "one entry more");
    }

    const G: &str = "0123456789abcdef";
    const H: &str = "fedcba9876543210";

    fn roster(handles: &[&str]) -> Roster {
        Roster::listing(G, handles)
    }

    #[test]
    fn a_roster_round_trips_and_lists_its_handles_under_its_generation() {
        let r = roster(&[H, "00000000000000aa"]);
        let bytes = r.encode();
        assert_eq!(Roster::decode(&bytes), Some(r));
        assert!(lists(&bytes, G, H));
        assert!(!lists(&bytes, G, "00000000000000ab"), "not listed");
        assert!(!lists(&bytes, "0123456789abcdee", H), "another generation");
        let empty = Roster::new(G.into()).encode();
        assert_eq!(empty, G.as_bytes(), "no entries: the generation alone");
        assert!(!lists(&empty, G, H));
    }

    #[test]
    fn an_epoch_round_trips_and_changes_no_session_it_lists() {
        let mut r = roster(&[H]);
        r.epoch = Some("00000000000000ee".into());
        let bytes = r.encode();
        assert!(bytes.starts_with(format!("{G} 00000000000000ee\n").as_bytes()));
        assert_eq!(Roster::decode(&bytes), Some(r.clone()));
        assert!(lists(&bytes, G, H), "the sessions listed stay signed in");
        let before = roster(&[H]);
        assert!(!r.same_era(&before), "a sign-out of the others since");
        assert!(r.same_era(&Roster::decode(&bytes).unwrap()));
    }

    #[test]
    fn put_replaces_a_handles_entry_and_remove_says_whether_it_had_one() {
        let mut r = roster(&[H]);
        let moved = SessionId::generate().unwrap();
        r.put(H, moved.clone(), 5);
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.get(H).map(|e| (&e.id, e.since)), Some((&moved, 5)));
        assert!(r.remove(H));
        assert!(!r.remove(H));
    }

    #[test]
    fn bytes_this_crate_did_not_write_are_no_roster_and_list_nobody() {
        let good = String::from_utf8(roster(&[H]).encode()).unwrap();
        let line = good.split('\n').nth(1).unwrap().to_owned();
        let id = line.split(' ').nth(1).unwrap().to_owned();
        let mut bad = vec![
            String::new(),
            "0123456789ABCDEF".into(),
            format!("{G}\n"),
            format!("{G}\n{line} 1"),
            format!("{G}\n{line}\n"),
            format!("{G}\n{H} {id}"),
            format!("{G}\n{H} {id} "),
            format!("{G}\n{H} {id} -1"),
            format!("{G}\n{H} {id} 123456789012345678901"),
            format!("{G}\n{H} {id} 99999999999999999999"),
            format!("{G}\n{H}  {id} 1"),
            format!("{G}\n{H} {}! 1", &id[..21]),
            format!("{G}\n{H} {id}A 1"),
            // The id's last character with unused bits set: another spelling of some id.
            format!("{G}\n{H} {}B 1", &id[..21]),
            format!("{G}\n{H} {}R 1", &id[..21]),
            format!("{G}\n{} {id} 1", &H[..15]),
            format!("{G} \n{line}"),
            format!("{G} {H} {H}\n{line}"),
            format!("{G} 0123\n{line}"),
            format!("{G}  {H}\n{line}"),
        ];
        let too_many = format!("\n{line}").repeat(MAX_ENTRIES + 1);
        bad.push(format!("{G}{too_many}"));
        for bytes in bad {
            assert_eq!(Roster::decode(bytes.as_bytes()), None, "{bytes:?}");
            assert!(!lists(bytes.as_bytes(), G, H), "{bytes:?}");
        }
        let mut invalid_utf8 = good.into_bytes();
        invalid_utf8.push(0xFF);
        assert_eq!(Roster::decode(&invalid_utf8), None);
        assert!(!lists(&invalid_utf8, G, H));
    }

    #[test]
    fn a_full_roster_still_decodes() {
        let handles: Vec<String> = (0..MAX_ENTRIES).map(|i| format!("{i:016x}")).collect();
        let refs: Vec<&str> = handles.iter().map(String::as_str).collect();
        let r = roster(&refs);
        assert_eq!(
            Roster::decode(&r.encode()).map(|r| r.entries.len()),
            Some(MAX_ENTRIES)
        );
    }

    #[test]
    fn tokens_are_new_each_time_and_valid() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert!(is_token(&a) && is_token(&b));
        assert_ne!(a, b);
    }
}
