//! Sessions bound to a user, and signing a user out of all of them at once: the methods a
//! handler (or the container) calls. The rules they rely on are the unit of work's
//! (`unit_of_work/generation.rs`).

use super::container::Sessions;
use super::extractor::Session;
use crate::error::SessionError;
use crate::unit_of_work::generation::{GENERATION, HANDLE, ITEM, PACKAGE, SWITCHES, USER};

impl Session {
    /// Binds this session to `user` (the app's id for the user: a number or name, never
    /// shown to the client), typically at login. The session then ends when
    /// [`sign_out_everywhere`](Self::sign_out_everywhere) or
    /// [`Sessions::sign_out_everywhere`] signs that user out.
    ///
    /// In a request it also [`renew`](Self::renew)s a stored session not yet bound to
    /// `user`, so that an id planted before login is useless after it, unless the
    /// middleware was built with
    /// [`renew_on_bind(false)`](crate::MemcacheSessionBuilder::renew_on_bind) (a new session
    /// gets a new id anyway). Through the container it never renews (no cookie would name
    /// the new id).
    ///
    /// Like any change it is written only if the request commits. The commit also lists
    /// the session among the user's sessions ([`Sessions::of_user`]), within the
    /// middleware's
    /// [`max_sessions_per_user`](crate::MemcacheSessionBuilder::max_sessions_per_user):
    /// it reads (or starts) the user's item, reads the sessions listed there, and adds
    /// this one with compare-and-swap, so it costs three or four round trips more (and
    /// the renew a create and a conditional delete); requests of a bound session after
    /// that cost none, as the item is read with the session. Binding a session bound to
    /// someone else moves it to `user` and empties it first, as Django's login does:
    /// every entry as loaded goes (the other user's packages, flash messages, "keep me
    /// signed in" and device label), and so does any a request of the other user adds
    /// meanwhile, while what this request sets, before the switch or after, stays and
    /// wins over what a request of the other user writes meanwhile (but for an
    /// application's entry set before it to the very value the other user's held: set
    /// the new user's entries after this call). Flash messages sent to the other user
    /// are not shown. Binding a third user in the same request keeps what the request
    /// set for the second. A request that read the session before the switch (of the
    /// other user, or from before they logged in) and commits after it answers 409 and
    /// writes nothing to it. An anonymous session keeps its data (a cart filled before
    /// logging in).
    ///
    /// ```
    /// use actix_memcache_session::Session;
    ///
    /// async fn login(session: Session) -> actix_web::Result<&'static str> {
    ///     // ... check the password of user 42 ...
    ///     session.bind_user("42")?; // renews the session id too
    ///     Ok("welcome")
    /// }
    /// ```
    ///
    /// # Errors
    /// When the binding stored in the session cannot be read (an item written by
    /// something other than this crate, or damaged): nothing is changed then.
    pub fn bind_user(&self, user: &str) -> Result<(), SessionError> {
        // A stored session changing hands: a new session gets a new id anyway, and one
        // bound to this user already was renewed when it was bound (renewing it again would
        // restart its absolute timeout on every call). A new one standing in for a session
        // whose cookie was stamped ahead of this clock renews, to end that session.
        let stored = self.id().is_some() || self.tx.borrow().data.ends_on_login();
        let package = self.own_package(PACKAGE);
        let bound = self.user()?;
        let same = bound.as_deref() == Some(user);
        // Signed in as `user` already (its generation and entry held): nothing to do. A new
        // entry would count this session twice against the user's limit.
        if same && package.contains_key(GENERATION)? && package.contains_key(HANDLE)? {
            return Ok(());
        }
        if bound.is_some() && !same {
            // Counted, so that a request in flight since before stays out (`rebase`); read
            // before anything changes, so that an unreadable count changes nothing.
            let switches: u64 = package.get(SWITCHES)?.unwrap_or(0);
            // Another user's session: nothing of theirs goes to this one (their packages,
            // flash messages, "keep me signed in", device label), as Django's login does.
            self.tx.borrow_mut().data.forget_loaded();
            package.insert(SWITCHES, switches.saturating_add(1))?;
        }
        if self.tx.borrow().renew_on_bind && stored && !same {
            self.renew();
        }
        package.insert(USER, user)?;
        // Copied from the store at commit (see `lacks_generation`), with the item's id and
        // the session's new entry in the user's roster.
        package.remove(ITEM)?;
        package.remove(HANDLE)?;
        package.remove(GENERATION).map(drop)
    }

    /// The user this session is bound to, if any.
    ///
    /// # Errors
    /// Never in practice: the package name is valid.
    pub fn user(&self) -> Result<Option<String>, SessionError> {
        self.own_package(PACKAGE).get(USER)
    }

    /// Signs this session's user out of every session, this one included, when the request
    /// commits: the other sessions find out on their next request, which then starts with
    /// an empty session; this one is [`purge`](Self::purge)d. Without a bound user it only
    /// purges this session.
    ///
    /// If the commit fails after the user's generation ended, this session is signed out
    /// too: the failure never leaves a session signed in. A session that was itself signed
    /// out since it was read (by [`Sessions::sign_out_everywhere`] or another device) ends
    /// nobody, and a login that came after the revocation stays signed in. Unless every
    /// session it held with is signed out already (its user's item gone, no login begun
    /// since, and every other key's item: another sign-out everywhere, or this
    /// one sent twice), the commit then
    /// fails with [`SessionError::Ended`] (409) and writes nothing (after a key rotation,
    /// items of the user under other keys that it ended before the revocation landed stay
    /// ended): the device that signed it out may still be signed in, and the user is not
    /// told that every session ended. Either way this session is signed out at its next
    /// request.
    pub fn sign_out_everywhere(&self) {
        self.tx.borrow_mut().data.sign_out(false);
    }

    /// Signs this session's user out of every other session when the request commits (a
    /// password change), keeping this one signed in. Without a bound user it does nothing.
    ///
    /// The user's roster is left listing only this session, with compare-and-swap, only
    /// if this session is still signed in; the generation stays, so this session and its
    /// other requests stay signed in whatever happens to the rest of the commit. If it is
    /// not (it was signed out since it was read, or another device signed out the others
    /// first), the commit fails with [`SessionError::Ended`] (409) and writes nothing
    /// (after a key rotation, items of the user under other keys that it ended before the
    /// revocation landed stay ended): a revoked session never signs itself back in, and is
    /// signed out at its next request. Asked twice, by two requests of this session, both
    /// answer as asked once.
    pub fn sign_out_other_sessions(&self) {
        self.tx.borrow_mut().data.sign_out(true);
    }
}

impl Sessions {
    /// Signs `user` out of every session bound to them, now: each finds out on its next
    /// request (or [`open`](Self::open)), which sees no session. Signing out a user without
    /// sessions is not an error.
    ///
    /// # Errors
    /// The store failing. Some sessions may be signed out all the same: a delete whose reply
    /// was lost may have landed, and with fallback keys one key's item may have ended and
    /// another's not. Trying again is safe, and ends the rest.
    pub async fn sign_out_everywhere(&self, user: &str) -> Result<(), SessionError> {
        let codec = &self.backend.config.codec;
        let store = &*self.backend.store;
        // The item of every key a session may have been bound under.
        let ended = codec
            .user_items(user)
            .map(|item| async move { store.delete(&item).await });
        for result in futures_util::future::join_all(ended).await {
            result?;
        }
        Ok(())
    }
}
