//! Session ids: 128 bits from the operating system's CSPRNG.

use std::fmt;
use std::str::FromStr;

use base64_simd::{Out, URL_SAFE_NO_PAD};
use compact_str::CompactString;

use crate::error::SessionError;

/// Bytes of randomness in an id: 128 bits, as OWASP asks of session ids.
pub(crate) const ID_BYTES: usize = 16;
/// Characters of an id's text: base64 without padding.
pub(crate) const ID_CHARS: usize = (ID_BYTES * 4).div_ceil(3);

/// An opaque session id: 16 random bytes, written as 22 base64url characters.
///
/// The text form is safe as a memcached key (no spaces or control characters) and in a
/// cookie. An id alone is not enough to hijack a session: the cookie that carries it is
/// signed, so a client cannot pick its own id.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId {
    bytes: [u8; ID_BYTES],
    /// 22 characters, kept inline on 64-bit targets (up to 24 bytes there, 12 on 32-bit):
    /// making or copying an id then allocates nothing.
    text: CompactString,
}

impl SessionId {
    /// Draws a new id from the operating system's random number generator.
    ///
    /// # Errors
    /// When the operating system cannot supply randomness.
    pub fn generate() -> std::io::Result<Self> {
        let mut bytes = [0u8; ID_BYTES];
        getrandom::getrandom(&mut bytes)?;
        Ok(Self::from_bytes(bytes))
    }

    pub(crate) fn from_bytes(bytes: [u8; ID_BYTES]) -> Self {
        // Into a buffer of the exact size rather than through `Display`, whose formatting
        // machinery cost 600 instructions per cookie read, four times the encoding; as
        // text, which the encoder knows it wrote, without checking it again.
        let mut text = [0u8; ID_CHARS];
        Self {
            bytes,
            text: CompactString::new(
                URL_SAFE_NO_PAD.encode_as_str(&bytes, Out::from_slice(&mut text)),
            ),
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8; ID_BYTES] {
        &self.bytes
    }

    /// The id as 22 base64url characters, the form stores use in their keys.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Reads an id back from [`as_str`](SessionId::as_str)'s form, as an app that recorded
/// it would (to reach the session through [`Sessions`](crate::Sessions)).
///
/// ```
/// use actix_memcache_session::SessionId;
///
/// let id = SessionId::generate().unwrap();
/// assert_eq!(id.as_str().parse::<SessionId>().unwrap(), id);
/// assert!("not an id".parse::<SessionId>().is_err());
/// ```
impl FromStr for SessionId {
    type Err = SessionError;

    fn from_str(text: &str) -> Result<Self, SessionError> {
        // The length first: the decoder panics on a buffer too short for its input.
        if text.len() != ID_CHARS {
            return Err(SessionError::InvalidSessionId);
        }
        let mut bytes = [0u8; ID_BYTES];
        // Only the canonical spelling, one id one text: the decoder refuses set unused bits.
        match URL_SAFE_NO_PAD.decode(text.as_bytes(), Out::from_slice(&mut bytes)) {
            Ok(decoded) if decoded.len() == ID_BYTES => Ok(Self::from_bytes(bytes)),
            _ => Err(SessionError::InvalidSessionId),
        }
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for SessionId {
    /// Shows only a prefix: enough to follow one session through logs, not enough to use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}…)", &self.text[..6])
    }
}

/// base64url's characters in the order of their values, for tests that spell a value
/// otherwise.
#[cfg(test)]
pub(crate) const ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as REFERENCE;
    use base64::Engine as _;

    use super::*;

    #[test]
    fn ids_are_22_url_safe_chars_and_differ() {
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 22);
        #[cfg(target_pointer_width = "64")]
        assert!(!a.text.is_heap_allocated(), "kept inline");
        assert!(a
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn the_text_is_the_ids_bytes_in_base64url() {
        for _ in 0..100 {
            let id = SessionId::generate().unwrap();
            assert_eq!(id.as_str(), REFERENCE.encode(id.as_bytes()));
        }
        assert_eq!(
            SessionId::from_bytes([0xff; ID_BYTES]).as_str(),
            "_".repeat(21) + "w"
        );
    }

    #[test]
    fn only_the_canonical_text_of_an_id_parses() {
        let id = SessionId::generate().unwrap();
        assert_eq!(id.as_str().parse::<SessionId>().unwrap(), id);
        for bad in [
            "",
            "short",
            &format!("{}=", id.as_str()),
            &format!("{}A", id.as_str()),
            &"!".repeat(22),
            &"é".repeat(11),
            &"A".repeat(1000),
        ] {
            assert!(bad.parse::<SessionId>().is_err(), "{bad:?}");
        }
        // The last character carries 4 unused bits: each of its 15 siblings that set
        // some decodes to the same bytes with a lax decoder, and is refused.
        let (head, last) = id.as_str().split_at(ID_CHARS - 1);
        let at = ALPHABET
            .iter()
            .position(|&c| c == last.as_bytes()[0])
            .unwrap();
        for flip in 1..16 {
            let sibling = format!("{head}{}", char::from(ALPHABET[at ^ flip]));
            assert!(sibling.parse::<SessionId>().is_err(), "{sibling}");
            assert!(REFERENCE.decode(&sibling).is_err(), "the reference agrees");
        }
    }

    #[test]
    fn debug_hides_most_of_the_id() {
        let id = SessionId::generate().unwrap();
        let shown = format!("{id:?}");
        assert!(!shown.contains(id.as_str()), "{shown}");
    }
}
