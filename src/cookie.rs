//! The cookie codec: signing keys, and the signed, timestamped session-id cookie value.
//!
//! A cookie value is `base64url(id ‖ issued ‖ mac)`: the 16-byte session id, the issue time
//! as 8 big-endian bytes of Unix seconds, and HMAC-SHA256 over the cookie name, the id and
//! the issue time. Binding the name stops a value minted for one cookie being replayed in
//! another; the timestamp lets a stale cookie be refused without asking the store.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::id::{SessionId, ID_BYTES};

type HmacSha256 = Hmac<Sha256>;

/// Shortest key accepted: 256 bits, the HMAC-SHA256 output size.
const MIN_KEY_BYTES: usize = 32;
const STAMP_BYTES: usize = 8;
const MAC_BYTES: usize = 32;
const RAW_BYTES: usize = ID_BYTES + STAMP_BYTES + MAC_BYTES;
/// Length of an encoded cookie value; anything else is refused before decoding.
const VALUE_CHARS: usize = (RAW_BYTES * 4).div_ceil(3);

/// A secret key that signs session cookies.
///
/// `Debug` never shows the bytes, and `==` compares in constant time.
///
/// ```
/// use actix_memcache_session::Key;
///
/// let key = Key::generate();
/// assert!(Key::try_from(&[7u8; 16][..]).is_err()); // shorter than 32 bytes
/// let from_secret = Key::try_from(&[7u8; 64][..]).unwrap();
/// assert_ne!(key, from_secret);
/// assert_eq!(format!("{key:?}"), "Key(..)");
/// ```
#[derive(Clone)]
pub struct Key {
    bytes: Box<[u8]>,
    /// The keyed MAC state, prepared once: cloning it is cheaper than re-keying per cookie.
    mac: HmacSha256,
}

impl Key {
    /// A new random 64-byte key from the operating system's CSPRNG.
    ///
    /// Sessions signed with it end when the process does; load a stored secret with
    /// [`Key::try_from`] to keep sessions across restarts.
    ///
    /// # Panics
    /// When the operating system cannot supply randomness. This runs at start-up, not per
    /// request.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 64];
        getrandom::getrandom(&mut bytes).expect("the OS random number generator failed");
        Self::new(&bytes)
    }

    fn new(bytes: &[u8]) -> Self {
        let mac = HmacSha256::new_from_slice(bytes).expect("HMAC accepts a key of any length");
        Self {
            bytes: bytes.into(),
            mac,
        }
    }
}

impl TryFrom<&[u8]> for Key {
    type Error = KeyError;

    /// A key from a secret of at least 32 bytes.
    fn try_from(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort { len: secret.len() });
        }
        Ok(Self::new(secret))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.bytes.ct_eq(&other.bytes).into()
    }
}

impl Eq for Key {}

/// Why a secret cannot be a [`Key`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The secret is shorter than 32 bytes.
    #[error("a session key needs at least {MIN_KEY_BYTES} bytes, got {len}")]
    TooShort {
        /// Length of the secret that was offered.
        len: usize,
    },
}

/// What a valid cookie says.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) id: SessionId,
    /// Unix seconds when the cookie was issued.
    pub(crate) issued: u64,
    /// Signed with a fallback key: re-issue it under the current key.
    pub(crate) by_fallback: bool,
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

    fn mac(&self, key: &Key, signed: &[u8]) -> HmacSha256 {
        let mut mac = key.mac.clone();
        mac.update(self.name.as_bytes());
        mac.update(&[0]);
        mac.update(signed);
        mac
    }

    /// The cookie value for `id`, issued at `issued` (Unix seconds).
    pub(crate) fn encode(&self, id: &SessionId, issued: u64) -> String {
        let mut raw = [0u8; RAW_BYTES];
        raw[..ID_BYTES].copy_from_slice(id.as_bytes());
        raw[ID_BYTES..ID_BYTES + STAMP_BYTES].copy_from_slice(&issued.to_be_bytes());
        let tag = self
            .mac(&self.key, &raw[..ID_BYTES + STAMP_BYTES])
            .finalize()
            .into_bytes();
        raw[ID_BYTES + STAMP_BYTES..].copy_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks a cookie value against the current key, then each fallback key.
    pub(crate) fn decode(&self, value: &str) -> Result<Verified, Rejected> {
        if value.len() != VALUE_CHARS {
            return Err(Rejected::Malformed);
        }
        let mut raw = [0u8; RAW_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(value, &mut raw) {
            Ok(RAW_BYTES) => {}
            _ => return Err(Rejected::Malformed),
        }
        let (signed, tag) = raw.split_at(ID_BYTES + STAMP_BYTES);
        let by_fallback = std::iter::once(&self.key)
            .chain(&self.fallback_keys)
            .position(|key| self.mac(key, signed).verify_slice(tag).is_ok())
            .ok_or(Rejected::BadSignature)?
            > 0;
        let mut id = [0u8; ID_BYTES];
        id.copy_from_slice(&signed[..ID_BYTES]);
        let mut stamp = [0u8; STAMP_BYTES];
        stamp.copy_from_slice(&signed[ID_BYTES..]);
        Ok(Verified {
            id: SessionId::from_bytes(id),
            issued: u64::from_be_bytes(stamp),
            by_fallback,
        })
    }
}

/// The values of every cookie called `name` in a `Cookie` request header, in order,
/// without parsing the others.
pub(crate) fn cookies_named<'a>(header: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> {
    header.split(';').filter_map(move |pair| {
        let (n, v) = pair.trim().split_once('=')?;
        (n == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(key: &Key) -> CookieCodec {
        CookieCodec::new("id".into(), key.clone(), vec![])
    }

    #[test]
    fn round_trip() {
        let key = Key::generate();
        let id = SessionId::generate().unwrap();
        let value = codec(&key).encode(&id, 1_700_000_000);
        assert_eq!(value.len(), VALUE_CHARS);
        let v = codec(&key).decode(&value).unwrap();
        assert_eq!(v.id, id);
        assert_eq!(v.issued, 1_700_000_000);
        assert!(!v.by_fallback);
    }

    #[test]
    fn every_flipped_character_is_refused() {
        let key = Key::generate();
        let value = codec(&key).encode(&SessionId::generate().unwrap(), 42);
        for i in 0..value.len() {
            let mut bytes = value.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert!(codec(&key).decode(&tampered).is_err(), "position {i}");
        }
    }

    #[test]
    fn truncated_padded_and_garbage_values_are_malformed() {
        let key = Key::generate();
        let value = codec(&key).encode(&SessionId::generate().unwrap(), 42);
        for bad in [
            &value[..value.len() - 1],
            &format!("{value}A"),
            "",
            &"!".repeat(VALUE_CHARS),
        ] {
            assert_eq!(codec(&key).decode(bad).unwrap_err(), Rejected::Malformed);
        }
    }

    #[test]
    fn another_key_or_cookie_name_is_a_bad_signature() {
        let key = Key::generate();
        let value = codec(&key).encode(&SessionId::generate().unwrap(), 42);
        let other = codec(&Key::generate()).decode(&value).unwrap_err();
        assert_eq!(other, Rejected::BadSignature);
        let renamed = CookieCodec::new("other".into(), key, vec![]).decode(&value);
        assert_eq!(renamed.unwrap_err(), Rejected::BadSignature);
    }

    #[test]
    fn fallback_keys_verify_and_are_flagged() {
        let old = Key::generate();
        let value = codec(&old).encode(&SessionId::generate().unwrap(), 42);
        let rotated = CookieCodec::new("id".into(), Key::generate(), vec![old]);
        assert!(rotated.decode(&value).unwrap().by_fallback);
    }

    #[test]
    fn key_equality_and_length_rule() {
        let a = Key::try_from(&[1u8; 32][..]).unwrap();
        assert_eq!(a, Key::try_from(&[1u8; 32][..]).unwrap());
        assert_ne!(a, Key::try_from(&[2u8; 32][..]).unwrap());
        assert!(matches!(
            Key::try_from(&[1u8; 31][..]),
            Err(KeyError::TooShort { len: 31 })
        ));
    }

    #[test]
    fn finds_every_cookie_of_a_name() {
        let named = |header, name| cookies_named(header, name).collect::<Vec<_>>();
        let header = "a=1; id=xyz;b=2; id=abc";
        assert_eq!(named(header, "id"), ["xyz", "abc"]);
        assert_eq!(named(header, "b"), ["2"]);
        assert!(named(header, "i").is_empty());
    }
}
