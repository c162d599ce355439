//! `Key`: the secret that signs session cookies, keyed for HMAC-SHA256 once. Its bytes
//! never leave it.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Shortest key accepted: 256 bits, the HMAC-SHA256 output size.
const MIN_KEY_BYTES: usize = 32;
/// SHA-256's block: HMAC pads a shorter key to it with zeros, and hashes a longer one.
const BLOCK_BYTES: usize = 64;

/// A secret key that signs session cookies.
///
/// `Debug` never shows the bytes, and `==` compares in constant time whether two keys sign
/// alike (HMAC pads a secret to 64 bytes with zeros, and hashes a longer one first, so a
/// secret and the same with zero bytes added are one key).
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
    /// What HMAC signs with: the secret, or its SHA-256 when longer than a block, padded
    /// with zeros to a block. Two secrets alike here sign alike, and are one key.
    block: [u8; BLOCK_BYTES],
    /// The keyed MAC state, prepared once: cloning it is cheaper than re-keying per cookie.
    pub(super) mac: HmacSha256,
}

impl Key {
    /// A new random 64-byte key from the operating system's CSPRNG.
    ///
    /// Sessions signed with it end when the process does; load a stored secret with
    /// [`Key::try_from`] to keep sessions across restarts. Make it once, outside
    /// `HttpServer::new`'s closure, which runs once per worker: each worker would sign with
    /// its own key, and refuse the others' cookies.
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
        let mut block = [0; BLOCK_BYTES];
        if bytes.len() > BLOCK_BYTES {
            block[..32].copy_from_slice(&Sha256::digest(bytes));
        } else {
            block[..bytes.len()].copy_from_slice(bytes);
        }
        Self { block, mac }
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
        self.block.ct_eq(&other.block).into()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_equality_and_length_rule() {
        let a = Key::try_from(&[1u8; 32][..]).unwrap();
        assert_eq!(a, Key::try_from(&[1u8; 32][..]).unwrap());
        assert_ne!(a, Key::try_from(&[2u8; 32][..]).unwrap());
        // Keys that sign alike are one: as `fallback_keys` counts them, each user item once.
        let mut padded = [1u8; 33];
        padded[32] = 0;
        assert_eq!(a, Key::try_from(&padded[..]).unwrap());
        let long = [3u8; 100];
        let hashed = Sha256::digest(long);
        assert_eq!(
            Key::try_from(&long[..]).unwrap(),
            Key::try_from(&hashed[..]).unwrap()
        );
        assert_ne!(a, Key::try_from(&[1u8; 65][..]).unwrap());
        assert!(matches!(
            Key::try_from(&[1u8; 31][..]),
            Err(KeyError::TooShort { len: 31 })
        ));
    }
}
