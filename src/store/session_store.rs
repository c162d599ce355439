//! The trait every store implements, and the types it speaks.

use std::future::Future;
use std::time::Duration;

use crate::id::SessionId;
use crate::store::error::StoreError;

/// A version token for compare-and-swap: memcached's CAS value, or a counter.
///
/// Two reads of an unchanged session give equal versions; any write changes it, and a
/// [`touch`](SessionStore::touch) does not. A version is never given again to the same
/// id, not even after the id is deleted and created again: a user's item lives under the
/// same id across a "sign out everywhere" and the next login, and a login holding the
/// version read before the sign-out must not write the old roster back. A counter per id
/// that starts again at `create` breaks this; one counter for the whole store (as
/// memcached's) or a random token does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version(u64);

impl Version {
    /// Wraps a store's version number.
    pub const fn new(version: u64) -> Self {
        Self(version)
    }

    /// The store's version number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A session as read from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The bytes last written.
    pub data: Vec<u8>,
    /// Their version, for [`SessionStore::update`].
    pub version: Version,
}

/// What a compare-and-swap [`SessionStore::update`] or [`SessionStore::delete_if`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Update {
    /// Done (written, or removed): the version matched.
    Updated,
    /// Nothing done: the session was written since that version was read.
    Conflict,
    /// Nothing done: no such session (deleted, expired, or never created).
    Missing,
}

/// What a request does when the store cannot reach the session its cookie names.
///
/// Set on the store (for memcached:
/// [`when_server_down`](crate::MemcacheStoreBuilder::when_server_down)); the unit of work
/// asks it through [`SessionStore::when_down`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenDown {
    /// Answer 503 (the default). The session is never read or written anywhere else, so
    /// it is there, unchanged, when its server is back.
    #[default]
    FailClosed,
    /// Go on with a fresh, empty session, as for an unknown cookie; anything the request
    /// stores goes under a new id on a live server. [`purge`](crate::Session::purge) and
    /// [`renew`](crate::Session::renew) still answer 503: the old session cannot be
    /// removed, so a logout would not be one; so does a sign-out
    /// ([`sign_out_everywhere`](crate::Session::sign_out_everywhere) and its kin), from a
    /// session started fresh because its server or its user's item's was down.
    StartFresh,
}

/// Storage for session data: what the middleware needs of memcached or any other backend.
///
/// Futures need not be `Send`: actix-web runs each worker on a single thread. Every
/// implementation must pass the acceptance suite in `testing` (feature `testing`).
///
/// A store without native compare-and-swap must still make [`create`](Self::create),
/// [`update`](Self::update) and [`delete_if`](Self::delete_if) atomic with respect to other
/// writes of the same id, or concurrent requests lose writes; and
/// [`touch`](Self::touch) must change the TTL alone, never write data it read back (beside
/// a `delete` that would undo a logout). An entry past its TTL is gone to every method,
/// whether or not the store has removed it yet. A TTL may shorten as well as lengthen.
pub trait SessionStore: 'static {
    /// Reads a session, or `None` if it does not exist or has expired.
    /// [`StoreError::TooLarge`] here says the stored item is larger than this store reads
    /// (written under a larger item limit), with its full length as `size` (never more);
    /// the middleware then treats it as unreadable (a user item of a size that another
    /// instance may read as one fails logins and sign-outs instead: see `docs/users.md`).
    fn load(&self, id: &SessionId) -> impl Future<Output = Result<Option<Stored>, StoreError>>;

    /// Stores a new session; `Ok(false)`, writing nothing, if the id is already taken.
    fn create(
        &self,
        id: &SessionId,
        data: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>>;

    /// Replaces a session's data if its version is still `version`, resetting its TTL.
    fn update(
        &self,
        id: &SessionId,
        data: &[u8],
        version: Version,
        ttl: Duration,
    ) -> impl Future<Output = Result<Update, StoreError>>;

    /// Resets a session's time to live without rewriting it (its [`Version`] stays as it
    /// was); `Ok(false)` if it is gone.
    fn touch(
        &self,
        id: &SessionId,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>>;

    /// Removes a session; removing one that does not exist is not an error.
    fn delete(&self, id: &SessionId) -> impl Future<Output = Result<(), StoreError>>;

    /// Removes a session only if it is still at `version`: [`Update::Updated`] when it was
    /// removed, [`Update::Conflict`] (removing nothing) when it was written since,
    /// [`Update::Missing`] when it is already gone. `renew` needs it: removing the old id
    /// unconditionally would lose a write committed meanwhile, or undo a logout.
    fn delete_if(
        &self,
        id: &SessionId,
        version: Version,
    ) -> impl Future<Output = Result<Update, StoreError>>;

    /// Whether a new session may take `id` now. A store spread over several servers says
    /// `false` when the server that would hold `id` is known to be down, and the caller
    /// draws another id. Default: `true`.
    fn accepts(&self, id: &SessionId) -> bool {
        let _ = id;
        true
    }

    /// What a request does when [`load`](Self::load) fails with
    /// [`StoreError::Unavailable`]. Default: [`WhenDown::FailClosed`].
    fn when_down(&self) -> WhenDown {
        WhenDown::FailClosed
    }
}
