//! The rules of sessions bound to a user, as the load and the commit apply them: whether a
//! session is still signed in, and ending a generation. (The methods a handler calls are
//! `Session::bind_user` and the sign-outs, in `session/`; a login's entry is `enlist.rs`.)
//!
//! Each user who has a bound session has an item in the store under an id derived from the
//! user's id and the signing key (see `CookieCodec::user_items`): their generation and the
//! roster of their logins (`roster.rs`). Binding a session copies the generation, the
//! item's id and the handle of its entry into it; signing out everywhere deletes the item.
//! A bound session is signed in only while its copy equals the item's generation and its
//! handle is listed, so an evicted item signs the user out (fails closed) and never leaves
//! a session signed in. The item is read together with the session (its id rides, hidden,
//! in the cookie), so a bound session still costs one round trip; an unbound one reads
//! nothing more.

use std::time::Duration;

use serde_json::Value;

use super::record::Record;
use super::roster::{self, Roster};
use crate::error::SessionError;
use crate::id::SessionId;
use crate::store::{ErasedStore, StoreError, Stored, Update};

/// The package a session's binding is kept in.
pub(crate) const PACKAGE: &str = "actix-memcache-session.user";
/// The user's id, as the app gave it.
pub(crate) const USER: &str = "id";
/// The copy of the user's generation the session was bound with.
pub(crate) const GENERATION: &str = "generation";
/// The id of the user's item the session was bound with (it depends on the key of the
/// time: see `CookieCodec::user_items`).
pub(crate) const ITEM: &str = "item";
/// The handle of the session's entry in its user's roster.
pub(crate) const HANDLE: &str = "handle";
/// When the session was last seen (unix seconds), to the refresh granularity.
pub(crate) const SEEN: &str = "seen";
/// The label the app gave the session (a device name).
pub(crate) const LABEL: &str = "label";
/// How many times the session changed users (a `bind_user` on a session bound to another
/// user). A request that read another count commits nothing (409): what it changed was
/// for a session that has since emptied for another user, even one it read anonymous.
pub(crate) const SWITCHES: &str = "switches";
/// The id a login renewed the session away from. Of two logins renewing one session (a
/// login form sent twice) only one can remove it, and so win: each leaves the other's
/// entry uncounted against the user's limit (see `enlist.rs`).
pub(crate) const REPLACES: &str = "replaces";
/// Compare-and-swap tries at a user's item before giving up with a conflict (each lost one
/// means another login or sign-out of the user landed meanwhile).
pub(crate) const EDIT_ATTEMPTS: usize = 8;

/// The user item a session was bound with, if it says.
pub(crate) fn item_of(data: &Record) -> Option<SessionId> {
    data.get(PACKAGE, ITEM)?.as_str()?.parse().ok()
}

/// The session a login renewed this one away from, if it says (see [`REPLACES`]).
pub(crate) fn replaces(data: &Record) -> Option<SessionId> {
    data.get(PACKAGE, REPLACES)?.as_str()?.parse().ok()
}

/// The user a session is bound to.
pub(crate) fn bound(data: &Record) -> Option<&str> {
    data.get(PACKAGE, USER)?.as_str()
}

/// The copy of its user's generation a session holds, if any.
pub(crate) fn held(data: &Record) -> Option<&str> {
    data.get(PACKAGE, GENERATION)?.as_str()
}

/// The handle of a bound session's entry in its user's roster.
pub(crate) fn handle(data: &Record) -> Option<&str> {
    data.get(PACKAGE, HANDLE)?.as_str()
}

/// When a bound session was last seen, as its stamp says (unix seconds).
pub(crate) fn seen(data: &Record) -> Option<u64> {
    data.get(PACKAGE, SEEN)?.as_u64()
}

/// Whether a session lacks its copy of its user's generation: a bound one then still has
/// to copy it, as only a request that bound it (or signed out the user's other sessions)
/// leaves it so.
pub(crate) fn lacks_generation(data: &Record) -> bool {
    data.get(PACKAGE, GENERATION).is_none()
}

/// Whether a session bound to a user is still signed in: its copy of the generation is the
/// one in `item` and its handle is listed there. A missing item (signed out, or evicted)
/// or one this crate did not write signs it out.
pub(crate) fn signed_in(data: &Record, item: Option<&Stored>) -> bool {
    match (held(data), handle(data), item) {
        (Some(copy), Some(handle), Some(item)) => roster::lists(&item.data, copy, handle),
        _ => false,
    }
}

/// What ending a user's generation from one of their sessions did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The others ended: the session that keeps itself signed in is the only one listed,
    /// under this generation (the one it held).
    Kept(Value),
    /// Ended, and nobody holds a new one.
    Ended,
    /// The generation the session held had ended since it was read, and nobody logged in
    /// since (the item gone: another sign-out everywhere, the same one sent twice): every
    /// session under it is signed out, this one too.
    Gone,
    /// The generation the session held had ended since it was read, and a login since
    /// holds another: every session under the old one is signed out, this one too, and
    /// the login (which may be that of whoever ended it) is left alone.
    Superseded,
    /// The generation stands, but no longer lists the session (signed out by its handle,
    /// or by another device signing out the others, since it was read): it is signed out
    /// itself, others may still be signed in, and they are left alone.
    Revoked,
}

/// Whether a session that holds `held` and is listed as `handle` is still signed in with
/// `item` (`None`: bound in this very request, so it answers for the user as a login does).
async fn still_holds(
    store: &dyn ErasedStore,
    item: &SessionId,
    held: Option<(&str, &str)>,
) -> Result<bool, SessionError> {
    let Some((held, handle)) = held else {
        return Ok(true);
    };
    let current = store.load(item).await?;
    Ok(current.is_some_and(|c| roster::lists(&c.data, held, handle)))
}

/// A read of a user's item, where one over the store's item limit (written under a larger
/// one) and longer than any roster is none: no instance reads it as a roster, whatever item
/// size it reads, so it signs nobody in. One over the limit but short enough to be a roster
/// stays an error (413): an instance reading larger items may sign sessions in by it.
pub(crate) fn user_item_read(
    read: Result<Option<Stored>, StoreError>,
) -> Result<Option<Stored>, StoreError> {
    match read {
        Err(StoreError::TooLarge { size }) if size > roster::MAX_BYTES => {
            tracing::warn!(size, "user item over the store's item limit, and no roster");
            Ok(None)
        }
        read => read,
    }
}

/// Ends the user's items under the other keys (`others`) on behalf of a session that holds
/// `held` at `item`, each only while that session still holds it: the item read, the
/// session checked, then the item deleted at the version read, and all again if it changed
/// meanwhile. So a login that lands after a revocation (an admin's sign-out, then a new
/// login under another key) stays signed in, as with `end`. Says whether it left one
/// standing because the session no longer held `item`: sessions under it may be signed in
/// still, whatever ended `item`.
pub(crate) async fn end_others(
    store: &dyn ErasedStore,
    item: &SessionId,
    held: Option<(&str, &str)>,
    others: impl Iterator<Item = SessionId>,
) -> Result<bool, SessionError> {
    'next: for other in others {
        // A conflict is a login, a rename or a refresh's stamp meanwhile: look again.
        for _ in 0..EDIT_ATTEMPTS {
            let Some(current) = user_item_read(store.load(&other).await)? else {
                continue 'next;
            };
            if !still_holds(store, item, held).await? {
                return Ok(true);
            }
            if store.delete_if(&other, current.version).await? != Update::Conflict {
                continue 'next;
            }
        }
        return Err(SessionError::Conflict);
    }
    Ok(false)
}

/// Ends the user's generation at `item` on behalf of a session that holds `held` and is
/// listed as `handle` (`None`: bound in this very request, so it answers for the user as a
/// login does). The end is conditional on the session still being signed in, with
/// compare-and-swap: a revoked session cannot sign itself back in, nor sign out a login
/// that came after its revocation. `keep` leaves the item listing only this session,
/// under the same generation, instead of deleting it; the item lives `ttl`.
pub(crate) async fn end(
    store: &dyn ErasedStore,
    item: &SessionId,
    held: Option<(&str, &str)>,
    keep: bool,
    ttl: Duration,
) -> Result<Ending, SessionError> {
    let Some((held, handle)) = held else {
        store.delete(item).await?;
        return Ok(Ending::Ended);
    };
    // A conflict is another login or an entry pruned: look again.
    for _ in 0..EDIT_ATTEMPTS {
        let current = store.load(item).await?;
        let Some((version, roster)) =
            current.and_then(|c| Some((c.version, Roster::decode(&c.data)?)))
        else {
            return Ok(Ending::Gone);
        };
        if roster.generation != held {
            return Ok(Ending::Superseded);
        }
        let Some(this) = roster.get(handle).cloned() else {
            return Ok(Ending::Revoked);
        };
        let (outcome, kept) = if keep {
            // Under the same generation: a new one would sign this session out until its
            // commit copied it, for good if the commit then failed, and sign out a request
            // of it racing this one.
            let mut next = Roster::new(roster.generation);
            next.epoch = Some(roster::new_token().map_err(SessionError::Entropy)?);
            next.entries.push(this);
            let outcome = store.update(item, &next.encode(), version, ttl).await?;
            (outcome, Some(next.generation))
        } else {
            (store.delete_if(item, version).await?, None)
        };
        match (outcome, kept) {
            (Update::Updated, Some(generation)) => return Ok(Ending::Kept(generation.into())),
            (Update::Updated, None) => return Ok(Ending::Ended),
            (Update::Missing, _) => return Ok(Ending::Gone),
            (Update::Conflict, _) => {}
        }
    }
    Err(SessionError::Conflict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, Version};

    const G: &str = "0123456789abcdef";
    const H: &str = "fedcba9876543210";

    fn bound_with(generation: &str, handle: &str) -> Record {
        let mut data = Record::new(0);
        data.put(PACKAGE, USER, Some("ada".into()));
        data.put(PACKAGE, GENERATION, Some(generation.into()));
        data.put(PACKAGE, HANDLE, Some(handle.into()));
        data
    }

    fn stored(roster: &Roster) -> Stored {
        Stored {
            data: roster.encode(),
            version: Version::new(1),
        }
    }

    fn listing(handles: &[&str]) -> Roster {
        Roster::listing(G, handles)
    }

    #[test]
    fn signed_in_only_with_the_generation_as_copied_and_the_handle_listed() {
        let data = bound_with(G, H);
        assert!(signed_in(&data, Some(&stored(&listing(&[H])))));
        assert!(
            !signed_in(&data, Some(&stored(&listing(&[])))),
            "not listed"
        );
        let mut rotated = listing(&[H]);
        rotated.generation = "0123456789abcdee".into();
        assert!(!signed_in(&data, Some(&stored(&rotated))));
        assert!(!signed_in(&data, None), "an evicted item signs out");
        let mut no_copy = data.clone();
        no_copy.put(PACKAGE, GENERATION, None);
        assert!(!signed_in(&no_copy, Some(&stored(&listing(&[H])))));
        let mut no_handle = data;
        no_handle.put(PACKAGE, HANDLE, None);
        assert!(!signed_in(&no_handle, Some(&stored(&listing(&[H])))));
    }

    #[actix_web::test]
    async fn end_is_conditional_on_the_session_being_signed_in() {
        let store = MemoryStore::new();
        let item = SessionId::generate().unwrap();
        let ttl = Duration::from_secs(60);
        let write = |r: Roster| {
            let store = &store;
            let item = &item;
            async move {
                ErasedStore::delete(store, item).await.unwrap();
                assert!(ErasedStore::create(store, item, &r.encode(), ttl)
                    .await
                    .unwrap());
            }
        };
        let other = "00000000000000aa";
        write(listing(&[H, other])).await;
        let ending = end(&store, &item, Some((G, other)), true, ttl)
            .await
            .unwrap();
        let Ending::Kept(next) = ending else {
            panic!("{ending:?}")
        };
        let now = ErasedStore::load(&store, &item).await.unwrap().unwrap();
        let now = Roster::decode(&now.data).unwrap();
        assert_eq!(Some(now.generation.as_str()), next.as_str());
        assert_eq!(now.entries.len(), 1, "only the session kept is listed");
        assert_eq!(now.entries[0].handle, other);
        assert_eq!(next.as_str(), Some(G), "the generation it held");
        // The session no longer listed can neither sign out the others nor end the user.
        for keep in [true, false] {
            let again = end(&store, &item, Some((G, H)), keep, ttl).await.unwrap();
            assert_eq!(again, Ending::Revoked);
        }
        write(listing(&[other])).await;
        assert_eq!(
            end(&store, &item, Some((G, H)), false, ttl).await.unwrap(),
            Ending::Revoked,
            "a session no longer listed ends nobody"
        );
        write(listing(&[H])).await;
        assert_eq!(
            end(&store, &item, Some((G, H)), false, ttl).await.unwrap(),
            Ending::Ended
        );
        assert!(ErasedStore::load(&store, &item).await.unwrap().is_none());
        // Ended already (the same sign-out sent twice): gone, for either.
        for keep in [true, false] {
            let again = end(&store, &item, Some((G, H)), keep, ttl).await.unwrap();
            assert_eq!(again, Ending::Gone);
        }
        // A login since holds another generation: superseded, and left alone.
        write(Roster::new("0123456789abcdee".into())).await;
        for keep in [true, false] {
            let again = end(&store, &item, Some((G, H)), keep, ttl).await.unwrap();
            assert_eq!(again, Ending::Superseded);
        }
        assert!(ErasedStore::load(&store, &item).await.unwrap().is_some());
    }
}
