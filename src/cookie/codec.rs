//! The cookie codec: the signed, timestamped session-id cookie value.
//!
//! A cookie value is `base64url(id ‖ issued ‖ mac)`: the 16-byte session id, the issue time
//! as 8 big-endian bytes of Unix seconds, and HMAC-SHA256 over the cookie name, the id and
//! the issue time. Binding the name stops a value minted for one cookie being replayed in
//! another; the timestamp lets a stale cookie be refused without asking the store.
//!
//! A session with its own idle timeout (remember me) gets format 2:
//! `base64url(2 ‖ id ‖ issued ‖ idle ‖ mac)`, the idle timeout as 4 big-endian bytes of
//! seconds, so its age is still checked without a store read.
//!
//! A session bound to a user gets format 3:
//! `base64url(3 ‖ id ‖ issued ‖ idle ‖ hint ‖ mac)`, the idle timeout 0 for the
//! middleware's, and `hint` the 16-byte id of the user's generation item (see `CookieCodec::user_items`)
//! XOR a pad, HMAC over the session id, so the store can read that item together with the
//! session. The pad hides it: the item's id is a plain hash of the user's id, which a
//! dictionary could reverse.
//!
//! The formats are told apart by length; format 1 stays what every other session gets, so
//! cookies issued before the later formats existed keep working.

use std::time::Duration;

use base64_simd::{Out, URL_SAFE_NO_PAD};
use hmac::Mac;
use subtle::ConstantTimeEq as _;

use super::key::{HmacSha256, Key};
use crate::id::{SessionId, ID_BYTES};

const STAMP_BYTES: usize = 8;
const IDLE_BYTES: usize = 4;
const MAC_BYTES: usize = 32;
/// What format 1 signs: id and issue time.
const SIGNED_V1: usize = ID_BYTES + STAMP_BYTES;
/// What format 2 signs: its version byte, id, issue time and idle timeout.
const SIGNED_V2: usize = 1 + ID_BYTES + STAMP_BYTES + IDLE_BYTES;
/// What format 3 signs: format 2's fields and the hint.
const SIGNED_V3: usize = SIGNED_V2 + ID_BYTES;
const FORMAT_2: u8 = 2;
const FORMAT_3: u8 = 3;
const MAX_RAW_BYTES: usize = SIGNED_V3 + MAC_BYTES;
/// Lengths of encoded cookie values; anything else is refused before decoding.
const V1_CHARS: usize = ((SIGNED_V1 + MAC_BYTES) * 4).div_ceil(3);
const V2_CHARS: usize = ((SIGNED_V2 + MAC_BYTES) * 4).div_ceil(3);
const V3_CHARS: usize = ((SIGNED_V3 + MAC_BYTES) * 4).div_ceil(3);
/// Marks the pad's MAC input, which is also shorter than any signed cookie: a pad is never
/// a valid signature.
const PAD_DOMAIN: u8 = 0xFF;
/// Domain separation for a user's generation item id (see [`CookieCodec::user_items`]).
const ITEM_DOMAIN: u8 = 0xFE;

/// What a valid cookie says.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub(crate) id: SessionId,
    /// Unix seconds when the cookie was issued.
    pub(crate) issued: u64,
    /// Signed with a fallback key: re-issue it under the current key.
    pub(crate) by_fallback: bool,
    /// The session's own idle timeout in seconds (format 2, or 3 when not 0).
    pub(crate) idle: Option<u32>,
    /// The id of the session's user's generation item (format 3): a hint, so the store
    /// reads it with the session; the stored session says whether it is the right one.
    pub(crate) user: Option<SessionId>,
}

/// What a cookie to issue says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Issue {
    pub(crate) id: SessionId,
    /// The session's own idle timeout, if it has one.
    pub(crate) idle: Option<Duration>,
    /// The generation item of the user the session is bound to, if it is.
    pub(crate) user: Option<SessionId>,
}

/// Why a cookie value was refused; only ever logged.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rejected {
    Malformed,
    BadSignature,
}

/// Signs and verifies cookie values for one cookie name.
pub(crate) struct CookieCodec {
    name: String,
    key: Key,
    fallback_keys: Vec<Key>,
}

impl CookieCodec {
    pub(crate) fn new(name: String, key: Key, fallback_keys: Vec<Key>) -> Self {
        Self {
            name,
            key,
            fallback_keys,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The MAC state over the cookie name, a 0 and `signed`, its parts in order (in parts,
    /// so that a domain byte and its input need no buffer joined for them).
    fn mac(&self, key: &Key, signed: &[&[u8]]) -> HmacSha256 {
        let mut mac = key.mac.clone();
        mac.update(self.name.as_bytes());
        mac.update(&[0]);
        for part in signed {
            mac.update(part);
        }
        mac
    }

    /// The ids of `user`'s generation item under each key, the current one first: the
    /// first 16 bytes of HMAC-SHA256(key, cookie name ‖ 0 ‖ 0xFE ‖ user id). The key goes
    /// in, so two apps sharing a memcached (even with every default) never share a user's
    /// item; a session remembers the item it was bound with, so rotating the key keeps
    /// every binding, and signing a user out ends the items of every key.
    pub(crate) fn user_items<'a>(&'a self, user: &'a str) -> impl Iterator<Item = SessionId> + 'a {
        std::iter::once(&self.key)
            .chain(&self.fallback_keys)
            .map(move |key| self.item_under(key, user))
    }

    /// Whether old keys still verify (each key once, the builder sees to it): a user's
    /// sessions may then be listed under several items.
    pub(crate) fn has_fallback_keys(&self) -> bool {
        !self.fallback_keys.is_empty()
    }

    /// The id of `user`'s generation item under the current key: the one a binding uses.
    pub(crate) fn user_item(&self, user: &str) -> SessionId {
        self.item_under(&self.key, user)
    }

    fn item_under(&self, key: &Key, user: &str) -> SessionId {
        let mac = self.mac(key, &[&[ITEM_DOMAIN], user.as_bytes()]);
        let digest = mac.finalize().into_bytes();
        SessionId::from_bytes(std::array::from_fn(|i| digest[i]))
    }

    /// The pad that hides a user hint in the cookie of session `id`.
    fn pad(&self, key: &Key, id: &[u8]) -> [u8; ID_BYTES] {
        let mac = self.mac(key, &[&[PAD_DOMAIN], id]);
        let mut pad = [0u8; ID_BYTES];
        pad.copy_from_slice(&mac.finalize().into_bytes()[..ID_BYTES]);
        pad
    }

    /// The cookie value for `id`, issued at `issued` (Unix seconds); format 2 when the
    /// session has its own `idle` timeout (seconds), format 3 when it is bound to a user
    /// whose generation item is `user`.
    pub(crate) fn encode(
        &self,
        id: &SessionId,
        issued: u64,
        idle: Option<u32>,
        user: Option<&SessionId>,
    ) -> String {
        let mut raw = [0u8; MAX_RAW_BYTES];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            raw[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        match (idle, user) {
            (_, Some(_)) => put(&[FORMAT_3]),
            (Some(_), None) => put(&[FORMAT_2]),
            (None, None) => {}
        }
        put(id.as_bytes());
        put(&issued.to_be_bytes());
        if idle.is_some() || user.is_some() {
            put(&idle.unwrap_or(0).to_be_bytes());
        }
        if let Some(user) = user {
            let pad = self.pad(&self.key, id.as_bytes());
            let hint: Vec<u8> = user
                .as_bytes()
                .iter()
                .zip(pad)
                .map(|(u, p)| u ^ p)
                .collect();
            put(&hint);
        }
        let tag = self.mac(&self.key, &[&raw[..at]]).finalize().into_bytes();
        raw[at..at + MAC_BYTES].copy_from_slice(&tag);
        URL_SAFE_NO_PAD.encode_to_string(&raw[..at + MAC_BYTES])
    }

    /// Checks a cookie value against the current key, then each fallback key.
    pub(crate) fn decode(&self, value: impl AsRef<[u8]>) -> Result<Verified, Rejected> {
        let value = value.as_ref();
        let signed_len = match value.len() {
            V1_CHARS => SIGNED_V1,
            V2_CHARS => SIGNED_V2,
            V3_CHARS => SIGNED_V3,
            _ => return Err(Rejected::Malformed),
        };
        // Room for the longest format: the length was checked against the three above, and
        // the decoder would panic on a buffer too short for its input.
        let mut buffer = [0u8; MAX_RAW_BYTES];
        let raw = match URL_SAFE_NO_PAD.decode(value, Out::from_slice(&mut buffer)) {
            Ok(raw) if raw.len() == signed_len + MAC_BYTES => &*raw,
            _ => return Err(Rejected::Malformed),
        };
        let (signed, tag) = raw.split_at(signed_len);
        let tag: [u8; MAC_BYTES] = field(tag)?;
        let (index, key) = std::iter::once(&self.key)
            .chain(&self.fallback_keys)
            .enumerate()
            .find(|(_, key)| {
                same_tag(
                    &self.mac(key, &[signed]).finalize().into_bytes().into(),
                    &tag,
                )
            })
            .ok_or(Rejected::BadSignature)?;
        // Only signed bytes from here on.
        let fields = match signed.split_first() {
            Some((&FORMAT_2, rest)) if signed_len == SIGNED_V2 => rest,
            Some((&FORMAT_3, rest)) if signed_len == SIGNED_V3 => rest,
            _ if signed_len == SIGNED_V1 => signed,
            _ => return Err(Rejected::Malformed),
        };
        let (id, rest) = fields.split_at(ID_BYTES);
        let (stamp, rest) = rest.split_at(STAMP_BYTES);
        let (idle, hint) = rest.split_at(rest.len().min(IDLE_BYTES));
        let user = match hint.len() {
            0 => None,
            _ => {
                let pad = self.pad(key, id);
                let hint: [u8; ID_BYTES] = field(hint)?;
                Some(SessionId::from_bytes(std::array::from_fn(|i| {
                    hint[i] ^ pad[i]
                })))
            }
        };
        Ok(Verified {
            id: SessionId::from_bytes(field(id)?),
            issued: u64::from_be_bytes(field(stamp)?),
            by_fallback: index > 0,
            idle: match idle.len() {
                0 => None,
                _ => Some(u32::from_be_bytes(field(idle)?)).filter(|&secs| secs > 0),
            },
            user,
        })
    }
}

/// Whether two tags are equal, in constant time and a word at a time: `hmac`'s
/// `verify_slice` compares through `subtle` a byte at a time, with an optimisation barrier
/// for each of the 32 (this saves 329 instructions a `/read` under callgrind).
fn same_tag(a: &[u8; MAC_BYTES], b: &[u8; MAC_BYTES]) -> bool {
    let words = |tag: &[u8; MAC_BYTES]| -> [u64; MAC_BYTES / 8] {
        std::array::from_fn(|i| u64::from_ne_bytes(std::array::from_fn(|j| tag[i * 8 + j])))
    };
    words(a).ct_eq(&words(b)).into()
}

/// A fixed-size field of a decoded value (the lengths are checked before, so never
/// `Malformed` in practice).
fn field<const N: usize>(bytes: &[u8]) -> Result<[u8; N], Rejected> {
    bytes.try_into().map_err(|_| Rejected::Malformed)
}

/// The values of every cookie called `name` in a `Cookie` request header, in order,
/// without parsing the others: as bytes, so that another cookie's byte outside ASCII (an
/// application's Latin-1 value) does not hide the session's, nor cost a check of every
/// byte (a session cookie's value is base64url: its decoding refuses any other byte). The
/// separators are found with `memchr`, many bytes at a time.
pub(crate) fn cookies_named<'a>(header: &'a [u8], name: &'a str) -> impl Iterator<Item = &'a [u8]> {
    let mut rest = Some(header);
    let pairs = std::iter::from_fn(move || {
        let pairs = rest?;
        let (pair, after) = match memchr::memchr(b';', pairs) {
            Some(at) => (&pairs[..at], Some(&pairs[at + 1..])),
            None => (pairs, None),
        };
        rest = after;
        Some(pair)
    });
    pairs.filter_map(move |pair| {
        let pair = pair.trim_ascii();
        let eq = memchr::memchr(b'=', pair)?;
        (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
    })
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as REFERENCE;
    use base64::Engine as _;

    use super::*;

    fn codec(key: &Key) -> CookieCodec {
        CookieCodec::new("id".into(), key.clone(), vec![])
    }

    #[test]
    fn round_trip() {
        let key = Key::generate();
        let id = SessionId::generate().unwrap();
        let value = codec(&key).encode(&id, 1_700_000_000, None, None);
        assert_eq!(value.len(), V1_CHARS);
        let v = codec(&key).decode(&value).unwrap();
        assert_eq!(v.id, id);
        assert_eq!(v.issued, 1_700_000_000);
        assert!(!v.by_fallback);
        assert_eq!(v.idle, None);
    }

    #[test]
    fn format_2_carries_the_idle_timeout() {
        let key = Key::generate();
        let id = SessionId::generate().unwrap();
        let value = codec(&key).encode(&id, 1_700_000_000, Some(7 * 86_400), None);
        assert_eq!(value.len(), V2_CHARS);
        let v = codec(&key).decode(&value).unwrap();
        assert_eq!(
            (v.id, v.issued, v.idle),
            (id, 1_700_000_000, Some(7 * 86_400))
        );
    }

    #[test]
    fn format_3_carries_the_user_hint_hidden() {
        let key = Key::generate();
        let (id, item) = (
            SessionId::generate().unwrap(),
            SessionId::generate().unwrap(),
        );
        for idle in [None, Some(3600)] {
            let value = codec(&key).encode(&id, 1_700_000_000, idle, Some(&item));
            assert_eq!(value.len(), V3_CHARS);
            let v = codec(&key).decode(&value).unwrap();
            assert_eq!(
                (v.id, v.idle, v.user),
                (id.clone(), idle, Some(item.clone()))
            );
            let raw = REFERENCE.decode(&value).unwrap();
            assert!(
                !raw.windows(ID_BYTES).any(|w| w == item.as_bytes()),
                "the item's id is not in clear"
            );
        }
    }

    #[test]
    fn a_hint_signed_by_a_fallback_key_is_read_with_that_key() {
        let old = Key::generate();
        let (id, item) = (
            SessionId::generate().unwrap(),
            SessionId::generate().unwrap(),
        );
        let value = codec(&old).encode(&id, 42, None, Some(&item));
        let rotated = CookieCodec::new("id".into(), Key::generate(), vec![old]);
        let v = rotated.decode(&value).unwrap();
        assert!(v.by_fallback);
        assert_eq!(v.user, Some(item));
    }

    /// Format 1, 2 and 3 values are 56, 61 and 77 bytes, so none can pass for another;
    /// and a format-2 or -3 value must start with its own version byte under the signature.
    #[test]
    fn a_signed_value_of_format_2_or_3_length_without_its_version_is_refused() {
        let key = Key::generate();
        for (signed, chars, wrong) in [(SIGNED_V2, V2_CHARS, [9, 3]), (SIGNED_V3, V3_CHARS, [9, 2])]
        {
            for first in wrong {
                let mut raw = vec![first; signed];
                let tag = codec(&key).mac(&key, &[&raw]).finalize().into_bytes();
                raw.extend_from_slice(&tag);
                let value = REFERENCE.encode(&raw);
                assert_eq!(value.len(), chars);
                assert_eq!(codec(&key).decode(&value).unwrap_err(), Rejected::Malformed);
            }
        }
    }

    #[test]
    fn every_flipped_character_is_refused() {
        let key = Key::generate();
        let id = SessionId::generate().unwrap();
        for value in [
            codec(&key).encode(&id, 42, None, None),
            codec(&key).encode(&id, 42, Some(60), None),
            codec(&key).encode(&id, 42, None, Some(&id)),
        ] {
            for i in 0..value.len() {
                let mut bytes = value.clone().into_bytes();
                bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
                let tampered = String::from_utf8(bytes).unwrap();
                assert!(codec(&key).decode(&tampered).is_err(), "position {i}");
            }
        }
    }

    #[test]
    fn tags_differing_in_any_bit_are_not_the_same() {
        let tag: [u8; MAC_BYTES] = std::array::from_fn(|i| i as u8 * 7);
        assert!(same_tag(&tag, &tag));
        for bit in 0..MAC_BYTES * 8 {
            let mut other = tag;
            other[bit / 8] ^= 1 << (bit % 8);
            assert!(!same_tag(&tag, &other), "bit {bit}");
        }
    }

    #[test]
    fn truncated_padded_and_garbage_values_are_malformed() {
        let key = Key::generate();
        let value = codec(&key).encode(&SessionId::generate().unwrap(), 42, None, None);
        for bad in [
            &value[..value.len() - 1],
            &format!("{value}A"),
            "",
            &"!".repeat(V1_CHARS),
            &"!".repeat(V2_CHARS),
            &"!".repeat(V3_CHARS),
        ] {
            assert_eq!(codec(&key).decode(bad).unwrap_err(), Rejected::Malformed);
        }
    }

    /// Each format's value is the reference encoder's base64url of its bytes; and the last
    /// character's unused bits must be zero (2 of them in formats 1 and 3, 4 in format 2):
    /// a sibling spelling decodes to the same signed bytes under a lax decoder, so it would
    /// pass.
    #[test]
    fn values_are_the_reference_base64url_and_only_its_spelling_is_read() {
        use crate::id::ALPHABET;
        let key = Key::generate();
        let id = SessionId::generate().unwrap();
        let mut siblings = 0;
        for value in [
            codec(&key).encode(&id, 42, None, None),
            codec(&key).encode(&id, 42, Some(60), None),
            codec(&key).encode(&id, 42, None, Some(&id)),
        ] {
            let raw = REFERENCE.decode(&value).unwrap();
            assert_eq!(REFERENCE.encode(&raw), value);
            assert!(codec(&key).decode(&value).is_ok());
            let unused = value.len() * 6 - raw.len() * 8;
            let last = value.len() - 1;
            let at = ALPHABET.iter().position(|&c| c == value.as_bytes()[last]);
            for flip in 1..1 << unused {
                let mut sibling = value.clone().into_bytes();
                sibling[last] = ALPHABET[at.unwrap() ^ flip];
                assert_eq!(
                    codec(&key).decode(&sibling).unwrap_err(),
                    Rejected::Malformed
                );
                assert!(REFERENCE.decode(&sibling).is_err());
                siblings += 1;
            }
        }
        assert_eq!(siblings, 3 + 15 + 3, "each unused bit flipped");
    }

    #[test]
    fn another_key_or_cookie_name_is_a_bad_signature() {
        let key = Key::generate();
        let value = codec(&key).encode(&SessionId::generate().unwrap(), 42, None, None);
        let other = codec(&Key::generate()).decode(&value).unwrap_err();
        assert_eq!(other, Rejected::BadSignature);
        let renamed = CookieCodec::new("other".into(), key, vec![]).decode(&value);
        assert_eq!(renamed.unwrap_err(), Rejected::BadSignature);
    }

    #[test]
    fn user_items_differ_by_user_cookie_and_key_and_are_not_concatenations() {
        let key = Key::generate();
        let codec = |name: &str| CookieCodec::new(name.into(), key.clone(), vec![]);
        let item = |name: &str, user: &str| codec(name).user_item(user);
        let a = item("id", "ada");
        assert_eq!(a, item("id", "ada"));
        assert_ne!(a, item("id", "bob"));
        assert_ne!(a, item("sid", "ada"));
        assert_ne!(item("id", "1ada"), item("id1", "ada"));
        let other_app = CookieCodec::new("id".into(), Key::generate(), vec![]);
        assert_ne!(a, other_app.user_item("ada"), "another key");
        let rotated = CookieCodec::new("id".into(), Key::generate(), vec![key.clone()]);
        let items: Vec<SessionId> = rotated.user_items("ada").collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1], a, "the fallback key's item comes second");
    }

    #[test]
    fn fallback_keys_verify_and_are_flagged() {
        let old = Key::generate();
        let value = codec(&old).encode(&SessionId::generate().unwrap(), 42, None, None);
        let rotated = CookieCodec::new("id".into(), Key::generate(), vec![old]);
        assert!(rotated.decode(&value).unwrap().by_fallback);
    }

    #[test]
    fn finds_every_cookie_of_a_name() {
        fn named<'a>(header: &'a [u8], name: &'a str) -> Vec<&'a [u8]> {
            cookies_named(header, name).collect()
        }
        let header = b"a=1; id=xyz;b=2; id=abc";
        assert_eq!(named(header, "id"), [b"xyz", b"abc"]);
        assert_eq!(named(header, "b"), [b"2"]);
        assert!(named(header, "i").is_empty());
        assert_eq!(
            named(b"lang=fran\xe7ais; id=xyz", "id"),
            [b"xyz"],
            "another cookie's Latin-1 byte"
        );
        let not_text = named(b"id=\xff", "id");
        assert_eq!(not_text, [b"\xff"]);
        // A real cookie of the right length with a byte that is neither UTF-8 nor base64url:
        // refused by the decoding, past the length check.
        let key = Key::generate();
        let mut value = codec(&key)
            .encode(&SessionId::generate().unwrap(), 42, None, None)
            .into_bytes();
        value[10] = 0xff;
        let header = [&b"id="[..], &value].concat();
        let found = named(&header, "id");
        assert_eq!(found, [&value[..]]);
        assert_eq!(
            codec(&key).decode(found[0]).unwrap_err(),
            Rejected::Malformed
        );
    }

    /// Against splitting the header byte by byte at each `;` (the reference), over
    /// generated headers: the same values, in the same order.
    #[test]
    fn cookies_are_found_as_a_split_at_each_semicolon_finds_them() {
        fn reference<'a>(header: &'a [u8], name: &str) -> Vec<&'a [u8]> {
            header
                .split(|&b| b == b';')
                .filter_map(|pair| {
                    let pair = pair.trim_ascii();
                    let eq = pair.iter().position(|&b| b == b'=')?;
                    (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
                })
                .collect()
        }
        const PIECES: [&[u8]; 12] = [
            b"id", b"i", b"d", b"=", b";", b"; ", b" ", b"\t", b"x", b"\xff", b"==", b"id=v",
        ];
        let mut random = crate::fixed_random::FixedRandom::new(0x9E37_79B9_7F4A_7C15);
        let mut found = 0;
        for _ in 0..20_000 {
            let mut header = Vec::new();
            for _ in 0..random.below(12) {
                header.extend_from_slice(PIECES[random.below(PIECES.len())]);
            }
            let ours: Vec<&[u8]> = cookies_named(&header, "id").collect();
            assert_eq!(
                ours,
                reference(&header, "id"),
                "{:?}",
                String::from_utf8_lossy(&header)
            );
            found += ours.len();
        }
        assert!(found > 2_000, "values found: {found}");
    }
}
