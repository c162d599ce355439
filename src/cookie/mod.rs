//! The session cookie: the key that signs it, and the codec that writes and reads its value
//! (which session, when issued, its own idle timeout, its user's item), and the values a
//! worker verified lately.

mod codec;
mod key;
mod recent;

pub(crate) use codec::{cookies_named, CookieCodec, Issue, Verified};
pub use key::{Key, KeyError};
pub(crate) use recent::RecentlyVerified;
