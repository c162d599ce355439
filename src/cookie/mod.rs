//! The session cookie: the key that signs it, and the codec that writes and reads its value
//! (which session, when issued, its own idle timeout, its user's item).

mod codec;
mod key;

pub(crate) use codec::{cookies_named, CookieCodec, Issue, Verified};
pub use key::{Key, KeyError};
