//! The rules of sessions bound to a user, as the commit applies them: the user's
//! generation item, whether a session is still signed in, and ending a generation. (The
//! methods a handler calls are `Session::bind_user` and the sign-outs, in `session/`.)
//!
//! Each user who has a bound session has a generation item in the store: a random value
//! under an id derived from the user's id and the signing key (see
//! `CookieCodec::user_items`). Binding a session copies the value and the item's id into it;
//! signing out everywhere deletes the item. A bound session is signed in only while its
//! copy equals the item, so an evicted item signs the user out (fails closed) and never
//! leaves a session signed in. The item is read together with the session (its id rides,
//! hidden, in the cookie), so a bound session still costs one round trip; an unbound one
//! reads nothing more.

use std::time::Duration;

use futures_util::future::join;
use serde_json::Value;

use super::record::Record;
use crate::error::SessionError;
use crate::id::SessionId;
use crate::store::{ErasedStore, StoreError, Stored, Update};

/// The package a session's binding is kept in.
pub(crate) const PACKAGE: &str = "actix-memcache-session.user";
/// The user's id, as the app gave it.
pub(crate) const USER: &str = "id";
/// The copy of the user's generation the session was bound with.
pub(crate) const GENERATION: &str = "generation";
/// The id of the generation item the session was bound with (it depends on the key of the
/// time: see `CookieCodec::user_items`).
pub(crate) const ITEM: &str = "item";
/// A generation: 64 random bits as lowercase hex.
const GENERATION_CHARS: usize = 16;
/// Tries to find or start a generation while sign-outs race with it: each lost race means
/// a sign-out just ended the generation read.
const START_ATTEMPTS: usize = 3;

/// The generation item a session was bound with, if it says.
pub(crate) fn item_of(data: &Record) -> Option<SessionId> {
    data.get(PACKAGE, ITEM)?.as_str()?.parse().ok()
}

/// The user a session is bound to.
pub(crate) fn bound(data: &Record) -> Option<&str> {
    data.get(PACKAGE, USER)?.as_str()
}

/// The copy of its user's generation a session holds, if any.
pub(crate) fn held(data: &Record) -> Option<&str> {
    data.get(PACKAGE, GENERATION)?.as_str()
}

/// Whether a session lacks its copy of its user's generation: a bound one then still has
/// to copy it, as only a request that bound it (or signed out the user's other sessions)
/// leaves it so.
pub(crate) fn lacks_generation(data: &Record) -> bool {
    data.get(PACKAGE, GENERATION).is_none()
}

/// Whether a session bound to a user is still signed in: its copy of the generation is the
/// one in `item`. A missing item (signed out, or evicted) or one this crate did not write
/// signs it out.
pub(crate) fn signed_in(data: &Record, item: Option<&Stored>) -> bool {
    let copy = data.get(PACKAGE, GENERATION).and_then(Value::as_str);
    match (copy, item) {
        (Some(copy), Some(item)) => generation(&item.data) == Some(copy),
        _ => false,
    }
}

/// The generation stored bytes hold, if they are one this crate wrote.
fn generation(bytes: &[u8]) -> Option<&str> {
    let hex = bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if bytes.len() == GENERATION_CHARS && hex {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

/// The user's current generation, starting one if there is none, and keeping the item for
/// at least `ttl` from now (it must outlive every session bound to it).
pub(crate) async fn start(
    store: &dyn ErasedStore,
    item: &SessionId,
    ttl: Duration,
) -> Result<Value, SessionError> {
    for _ in 0..START_ATTEMPTS {
        // The usual case, a user with a generation already: one round trip for both.
        let (current, touched) = join(store.load(item), store.touch(item, ttl)).await;
        match (current?, touched?) {
            (Some(current), touched) => match generation(&current.data) {
                Some(found) if touched => return Ok(found.into()),
                // Ended by a sign-out between the read and the touch: start over.
                Some(_) => {}
                // Not ours (memory corruption, a foreign writer): replace it. Any session
                // that matched it is signed out, which is the safe side.
                None => store.delete(item).await?,
            },
            (None, _) => {
                let candidate = new_generation()?;
                if store.create(item, candidate.as_bytes(), ttl).await? {
                    return Ok(candidate.into());
                }
            }
        }
    }
    let why = "a user's generation was ended by a sign-out at every try";
    Err(StoreError::Protocol(why.into()).into())
}

/// A new generation: 64 random bits as lowercase hex.
fn new_generation() -> Result<String, SessionError> {
    let mut bits = [0u8; GENERATION_CHARS / 2];
    getrandom::getrandom(&mut bits).map_err(|e| SessionError::Entropy(e.into()))?;
    Ok(bits.iter().map(|b| format!("{b:02x}")).collect())
}

/// What ending a user's generation from one of their sessions did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Ended; a session that keeps itself signed in holds this new generation.
    Rotated(Value),
    /// Ended, and nobody holds a new one.
    Ended,
    /// The session no longer held the current generation (signed out, or another of the
    /// user's sessions rotated it, since it was read): it is signed out itself, and the
    /// generation that others may hold now is left alone.
    Revoked,
}

/// Ends the user's generation at `item` on behalf of a session that holds `held` (`None`:
/// bound in this very request, so it answers for the user as a login does). The end is
/// conditional on `held` still being the current generation, with compare-and-swap: a
/// revoked session cannot sign itself back in, nor sign out a login that came after its
/// revocation. `keep` rotates to a new generation instead of deleting, for the session
/// that stays signed in; it lives `ttl`.
pub(crate) async fn end(
    store: &dyn ErasedStore,
    item: &SessionId,
    held: Option<&str>,
    keep: bool,
    ttl: Duration,
) -> Result<Ending, SessionError> {
    let Some(held) = held else {
        store.delete(item).await?;
        return Ok(Ending::Ended);
    };
    let current = store.load(item).await?;
    let Some(current) = current.filter(|c| generation(&c.data) == Some(held)) else {
        return Ok(Ending::Revoked);
    };
    if keep {
        let next = new_generation()?;
        let outcome = store
            .update(item, next.as_bytes(), current.version, ttl)
            .await?;
        return Ok(match outcome {
            Update::Updated => Ending::Rotated(next.into()),
            Update::Conflict | Update::Missing => Ending::Revoked,
        });
    }
    Ok(match store.delete_if(item, current.version).await? {
        Update::Updated => Ending::Ended,
        Update::Conflict | Update::Missing => Ending::Revoked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SessionStore;

    fn bound_with(generation: &str) -> Record {
        let mut data = Record::new(0);
        data.put(PACKAGE, USER, Some("ada".into()));
        data.put(PACKAGE, GENERATION, Some(generation.into()));
        data
    }

    fn stored(bytes: &[u8]) -> Stored {
        Stored {
            data: bytes.to_vec(),
            version: crate::store::Version::new(1),
        }
    }

    #[test]
    fn signed_in_only_with_the_item_as_copied() {
        let data = bound_with("0123456789abcdef");
        assert!(signed_in(&data, Some(&stored(b"0123456789abcdef"))));
        assert!(!signed_in(&data, Some(&stored(b"0123456789abcdee"))));
        assert!(!signed_in(&data, None), "an evicted item signs out");
        let mut no_copy = data.clone();
        no_copy.put(PACKAGE, GENERATION, None);
        assert!(!signed_in(&no_copy, Some(&stored(b"0123456789abcdef"))));
    }

    #[test]
    fn an_item_this_crate_did_not_write_matches_nothing() {
        for odd in [
            "",
            "0123456789ABCDEF",
            "0123456789abcdef0",
            "0123456789abcde ",
        ] {
            let data = bound_with(odd);
            assert!(!signed_in(&data, Some(&stored(odd.as_bytes()))), "{odd:?}");
        }
    }

    #[actix_web::test]
    async fn start_keeps_the_current_generation_and_replaces_a_foreign_item() {
        let store = crate::store::MemoryStore::new();
        let item = SessionId::generate().unwrap();
        let ttl = Duration::from_secs(60);
        let first = start(&store, &item, ttl).await.unwrap();
        assert!(generation(first.as_str().unwrap().as_bytes()).is_some());
        assert_eq!(start(&store, &item, ttl).await.unwrap(), first, "kept");
        ErasedStore::delete(&store, &item).await.unwrap();
        let second = start(&store, &item, ttl).await.unwrap();
        assert_ne!(second, first, "a signed-out generation never comes back");
        ErasedStore::delete(&store, &item).await.unwrap();
        assert!(ErasedStore::create(&store, &item, b"garbage", ttl)
            .await
            .unwrap());
        let replaced = start(&store, &item, ttl).await.unwrap();
        let stored = ErasedStore::load(&store, &item).await.unwrap().unwrap();
        assert_eq!(replaced.as_str().unwrap().as_bytes(), stored.data);
    }

    /// A memory store where a sign-out lands between `start`'s read and its touch, once.
    struct SignOutBeforeTouch(crate::store::MemoryStore, std::cell::Cell<bool>);

    impl SessionStore for SignOutBeforeTouch {
        async fn load(&self, id: &SessionId) -> Result<Option<Stored>, StoreError> {
            SessionStore::load(&self.0, id).await
        }
        async fn create(
            &self,
            id: &SessionId,
            data: &[u8],
            ttl: Duration,
        ) -> Result<bool, StoreError> {
            SessionStore::create(&self.0, id, data, ttl).await
        }
        async fn update(
            &self,
            id: &SessionId,
            data: &[u8],
            version: crate::store::Version,
            ttl: Duration,
        ) -> Result<crate::store::Update, StoreError> {
            SessionStore::update(&self.0, id, data, version, ttl).await
        }
        async fn touch(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
            if self.1.replace(false) {
                SessionStore::delete(&self.0, id).await?;
            }
            SessionStore::touch(&self.0, id, ttl).await
        }
        async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
            SessionStore::delete(&self.0, id).await
        }
        async fn delete_if(
            &self,
            id: &SessionId,
            version: crate::store::Version,
        ) -> Result<crate::store::Update, StoreError> {
            SessionStore::delete_if(&self.0, id, version).await
        }
    }

    #[actix_web::test]
    async fn start_does_not_return_a_generation_signed_out_under_it() {
        let store = SignOutBeforeTouch(crate::store::MemoryStore::new(), false.into());
        let item = SessionId::generate().unwrap();
        let ttl = Duration::from_secs(60);
        let read = start(&store, &item, ttl).await.unwrap();
        store.1.set(true);
        let after = start(&store, &item, ttl).await.unwrap();
        assert_ne!(after, read, "the generation read was signed out: a new one");
        let stored = ErasedStore::load(&store, &item).await.unwrap().unwrap();
        assert_eq!(after.as_str().unwrap().as_bytes(), stored.data);
    }
}
