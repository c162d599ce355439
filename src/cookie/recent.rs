//! The cookie values a worker verified lately: a value seen again is answered from here,
//! without its HMAC-SHA256 (one a key tried, and the hint's pad: most of a cookie's cost).
//!
//! Verifying is a pure function of the value, the cookie name and the keys, which a
//! middleware fixes for its life, so a remembered answer is the one a new check would give. Only values that
//! verified are kept (forged ones evict nothing), the age and clock checks still run on
//! every request (see `Config::verify`), and a look-up compares the whole value in constant
//! time, so how long it takes says nothing about the values kept beyond whether the value
//! presented is one of them. Browsers send the same cookie until it is re-issued, at a
//! quarter of the idle timeout by default.

use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;

use constant_time_eq::constant_time_eq_n;
use foldhash::fast::RandomState;
use lru::LruCache;

use super::codec::{CookieCodec, Rejected, Verified, MAX_CHARS};

/// The most recently used verified values of one worker, at most a set number.
pub(crate) struct RecentlyVerified {
    /// `None` when remembering is off. One worker's, so never borrowed twice at once.
    values: Option<RefCell<LruCache<Value, Verified, RandomState>>>,
}

impl RecentlyVerified {
    /// Remembers up to `capacity` values; 0 remembers none.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            values: NonZeroUsize::new(capacity)
                .map(|cap| RefCell::new(LruCache::with_hasher(cap, RandomState::default()))),
        }
    }

    /// What `codec` says of `value`, remembered if it verified.
    pub(crate) fn decode(&self, codec: &CookieCodec, value: &[u8]) -> Result<Verified, Rejected> {
        let (Some(values), Some(key)) = (&self.values, Value::new(value)) else {
            return codec.decode(value);
        };
        if let Some(verified) = values.borrow_mut().get(&key) {
            return Ok(verified.clone());
        }
        let verified = codec.decode(value)?;
        values.borrow_mut().put(key, verified.clone());
        Ok(verified)
    }
}

/// A cookie value as kept: inline, so keeping one allocates nothing beyond its entry.
struct Value {
    len: usize,
    /// The value, then zeros.
    bytes: [u8; MAX_CHARS],
}

impl Value {
    /// `None` for a value longer than any that verifies.
    fn new(value: &[u8]) -> Option<Self> {
        let mut bytes = [0u8; MAX_CHARS];
        bytes.get_mut(..value.len())?.copy_from_slice(value);
        Some(Self {
            len: value.len(),
            bytes,
        })
    }
}

/// In constant time: the map compares a presented value with a kept one whenever their
/// hashes meet.
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && constant_time_eq_n(&self.bytes, &other.bytes)
    }
}

impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.bytes[..self.len]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Key, SessionId};

    fn codec(key: &Key) -> CookieCodec {
        CookieCodec::new("id".into(), key.clone(), vec![])
    }

    fn kept(recent: &RecentlyVerified) -> usize {
        recent.values.as_ref().map_or(0, |v| v.borrow().len())
    }

    fn value(codec: &CookieCodec) -> String {
        codec.encode(&SessionId::generate().unwrap(), 1_700_000_000, None, None)
    }

    #[test]
    fn a_remembered_value_is_answered_as_its_codec_answered_it() {
        let (key, other) = (Key::generate(), Key::generate());
        let recent = RecentlyVerified::new(8);
        let hint = SessionId::generate().unwrap();
        let id = SessionId::generate().unwrap();
        // Signed by a fallback key, with an idle timeout and a hint: every field kept.
        let old = CookieCodec::new("id".into(), other.clone(), vec![]);
        let value = old.encode(&id, 1_700_000_000, Some(600), Some(&hint));
        let rotated = CookieCodec::new("id".into(), key.clone(), vec![other]);
        let first = recent.decode(&rotated, value.as_bytes()).unwrap();
        // Answered from memory: a codec that would refuse it is not asked.
        let again = recent.decode(&codec(&key), value.as_bytes()).unwrap();
        for v in [&first, &again] {
            assert_eq!(
                (&v.id, v.issued, v.by_fallback, v.idle, v.user.as_ref()),
                (&id, 1_700_000_000, true, Some(600), Some(&hint))
            );
        }
        assert_eq!(kept(&recent), 1);
    }

    #[test]
    fn a_value_one_character_off_a_remembered_one_is_checked_and_refused() {
        let key = Key::generate();
        let codec = codec(&key);
        let recent = RecentlyVerified::new(8);
        let good = value(&codec);
        recent.decode(&codec, good.as_bytes()).unwrap();
        // Every other base64url character at every place: the map compares a presented
        // value with a kept one when their hashes share a 7-bit tag (1 in 128), so a
        // compare that looked at part of the value only would let one of the thousands
        // differing in the rest through.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for at in 0..good.len() {
            for &c in alphabet {
                let mut bad = good.clone().into_bytes();
                if bad[at] == c {
                    continue;
                }
                bad[at] = c;
                assert!(recent.decode(&codec, &bad).is_err(), "{at}");
            }
        }
        assert!(recent.decode(&codec, &good.as_bytes()[1..]).is_err());
        assert!(recent
            .decode(&codec, &[good.as_bytes(), b"A"].concat())
            .is_err());
        assert_eq!(kept(&recent), 1, "refused values are not kept");
    }

    #[test]
    fn it_keeps_at_most_its_capacity_and_none_when_zero() {
        let codec = codec(&Key::generate());
        let recent = RecentlyVerified::new(2);
        let values: Vec<String> = (0..3).map(|_| value(&codec)).collect();
        for v in &values {
            recent.decode(&codec, v.as_bytes()).unwrap();
        }
        assert_eq!(kept(&recent), 2);
        let off = RecentlyVerified::new(0);
        assert!(off.values.is_none());
        let v = off.decode(&codec, values[0].as_bytes()).unwrap();
        assert_eq!(v.issued, 1_700_000_000);
        assert!(off.decode(&codec, b"garbage").is_err());
    }

    #[test]
    fn a_value_longer_than_any_cookie_is_refused_and_not_kept() {
        let codec = codec(&Key::generate());
        let recent = RecentlyVerified::new(2);
        let long = "A".repeat(MAX_CHARS + 1);
        assert!(recent.decode(&codec, long.as_bytes()).is_err());
        assert_eq!(kept(&recent), 0);
    }
}
