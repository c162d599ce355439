//! Committing: what the request changed is written with compare-and-swap, rebased onto
//! concurrent commits, or nothing is written; then the hooks of the branch taken run. A
//! sign-out of the user's sessions goes first.

use std::rc::Rc;

use actix_web::ResponseError;

use super::data::{Binding, Dismissal, Existing, SessionData, SignOut};
use super::enlist::Prepared;
use super::generation;
use super::hooks::{Hooks, Outcome};
use super::load::{UnitOfWork, OPENED};
use super::record::Record;
use super::roster;
use super::spare::Encoded;
use super::timeouts::Timeouts;
use crate::backoff::Backoff;
use crate::clock::now_unix;
use crate::cookie::Issue;
use crate::error::SessionError;
use crate::id::SessionId;
use crate::in_box::made_in_box;
use crate::metrics::{Commit, Touch};
use crate::store::{create_new, NotCreated, NotSent, StoreError, Stored, Update, Version};
use crate::to_completion;

/// Wakes the extractions waiting for a unit of work's data when dropped.
struct WakeOnDrop<'a>(&'a UnitOfWork);

impl Drop for WakeOnDrop<'_> {
    fn drop(&mut self) {
        self.0.wake_waiting();
    }
}

/// What the response's `Set-Cookie` should say after a commit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CookieAction {
    /// Leave the client's cookie as it is.
    Keep,
    /// Issue a cookie, stamped now.
    Issue(Issue),
    /// Tell the client to drop its cookie.
    Remove,
}

impl UnitOfWork {
    /// Takes the session's data and hooks out of a loaded session, so that no borrow is
    /// held across the store's awaits; `None` for the data when the handler aborted, and
    /// `None` once the request ended (a quiet end leaves the data in place: what a kept
    /// handle changes after it must never be taken to be written).
    fn take(&self) -> Option<(Option<SessionData>, Hooks)> {
        if self.ended.get() {
            return None;
        }
        let tx = self.session.get()?;
        // Another holder than this unit of work: a handle kept past the request.
        let kept = Rc::strong_count(tx) > 1;
        let taken = tx.try_borrow_mut().ok()?.finish(kept);
        self.ended.set(true);
        // Beside a kept handle too (a hook's clone), which reads a copy meanwhile: an
        // extraction waits to read the session as committed (its new id after a renew).
        self.committing.set(taken.0.is_some());
        Some(taken)
    }

    /// Waits until the data `take` took is back, if it is out: a session extracted from
    /// the request meanwhile reads it as the handler left it, not the stand-in.
    pub(crate) async fn handed_back(&self) {
        if self.committing.get() {
            // Made before anything could hand it back (one thread): `wake_waiting` wakes it.
            self.handed_back.notified().await;
        }
    }

    /// Wakes the extractions waiting for the data, which is back (or never will be).
    fn wake_waiting(&self) {
        if self.committing.replace(false) {
            self.handed_back.notify_waiters();
        }
    }

    /// Ends the request writing nothing, for `why` (an abort outcome), and runs the abort
    /// hooks.
    pub(crate) async fn abort(&self, why: Commit) {
        if let Some((data, hooks)) = self.take() {
            self.hand_back(data);
            self.backend.config.metrics.commit(why);
            hooks.run(Outcome::Aborted).await;
        }
    }

    /// Ends the request at once when its commit has nothing to do and no hook waits for it
    /// (most requests: a read of an unbound session), without the future `finish` would
    /// need boxed to outlive the client. `None` when there is something to do: then
    /// `finish`.
    pub(crate) fn finish_quietly(&self) -> Option<CookieAction> {
        let mut tx = self.session.get()?.try_borrow_mut().ok()?;
        let s = &tx.data;
        let quiet = tx.is_plain()
            && s.signing_out.is_none()
            && s.dismissing.is_none()
            && !s.blind_sign_out
            && self.quiet(s);
        if !quiet {
            return None;
        }
        tx.end_quietly();
        self.ended.set(true);
        let (action, ended) = self.unchanged(&tx.data);
        tx.stored = stored_id(tx.data.id().cloned(), &tx.data, &action);
        self.backend.config.metrics.commit(ended);
        Some(action)
    }

    /// Commits what the request changed, unless the handler aborted, then runs the hooks
    /// of the branch taken: a failed commit runs the abort hooks.
    pub(crate) async fn finish(&self) -> Result<CookieAction, SessionError> {
        let Some((mut data, hooks)) = self.take() else {
            return Ok(CookieAction::Keep);
        };
        // Dropped midway (a worker shutting down), the data is not handed back: the
        // extractions waiting for it read the stand-in rather than wait forever.
        let _wake = WakeOnDrop(self);
        let (ended, result) = match &mut data {
            None => (Commit::AbortedByHandler, Ok(CookieAction::Keep)),
            Some(data) => {
                let before = data.id().cloned();
                match self.commit(data).await {
                    Ok((action, ended)) => {
                        self.stored_under(stored_id(before, data, &action));
                        (ended, Ok(action))
                    }
                    Err(e) => {
                        // Nothing stored: the id loaded, wherever the commit failed.
                        self.stored_under(before);
                        (Commit::failed(e.status_code()), Err(e))
                    }
                }
            }
        };
        self.hand_back(data);
        self.backend.config.metrics.commit(ended);
        let branch = match ended {
            Commit::Written | Commit::Unchanged => Outcome::Committed,
            _ => Outcome::Aborted,
        };
        hooks.run(branch).await;
        result
    }

    /// Puts the data the commit took back into the session, so that its hooks (and any
    /// handle kept past the request) read it as committed, or as the handler left it when
    /// the commit failed or the request aborted, as does a `Session` extracted after it (an
    /// outer middleware's, logging who got a 403). A failed commit hands back what it had
    /// begun as well (a failed login's binding names the handle and generation it tried,
    /// and a write that failed after merging holds what it merged of the session's
    /// newer version: keeping a copy to hand back instead would cost every commit one);
    /// what they change goes nowhere (nothing is taken once ended).
    fn hand_back(&self, data: Option<SessionData>) {
        if let (Some(data), Some(Ok(mut tx))) =
            (data, self.session.get().map(|tx| tx.try_borrow_mut()))
        {
            tx.data = data;
        }
        self.wake_waiting();
    }

    /// Tells the session, for its hooks, the id the commit stored it under (see
    /// [`stored_id`]), or, when it failed, the one it was loaded under.
    fn stored_under(&self, id: Option<SessionId>) {
        if let Some(Ok(mut tx)) = self.session.get().map(|tx| tx.try_borrow_mut()) {
            tx.stored = id;
        }
    }

    /// Writes what the request changed, and says whether it wrote anything. Nothing is
    /// written for a session that did not change, except a `touch` when its cookie is due
    /// for refresh. (`quiet` answers for it when there is nothing to do: keep the two in
    /// step.)
    ///
    /// It borrows the data rather than taking it, so that its future does not hold a
    /// second copy.
    async fn commit(&self, s: &mut SessionData) -> Result<(CookieAction, Commit), SessionError> {
        if s.blind_sign_out {
            let why = "a sign-out from a session this request could not read (its server, or \
                its user's, down, its cookie stamped ahead of this clock, or it or its user's \
                item over the store's item limit or of a later release's format)";
            return Err(StoreError::Unavailable(why.into()).into());
        }
        // Each boxed apart: with the finish around it, either would pass the 1 KiB from
        // which glibc's malloc takes its slower path (which then consolidates its caches).
        match (s.signing_out.take(), s.dismissing.take()) {
            // Most requests (a read of an unbound session) end here, without the write's
            // future: over 1 KiB, it would take glibc's slower path on every request.
            (None, None) if self.quiet(s) => Ok(self.unchanged(s)),
            (None, None) => made_in_box(|| self.write(s)).await,
            // Another user's devices signed out, then a change of users signing out the
            // new one's others: each user's, the devices first.
            (Some(out), Some(d)) if d.user != out.of.user => {
                made_in_box(|| self.dismiss_then_sign_out(s, *d, *out)).await
            }
            // The same user's: signing them all out covers the devices named.
            (Some(out), _) => made_in_box(|| self.sign_out_then_write(s, *out)).await,
            (None, Some(d)) => made_in_box(|| self.dismiss_then_write(s, *d)).await,
        }
    }

    /// [`dismiss_then_write`](Self::dismiss_then_write) with a sign-out of another user
    /// (the one this request changed to) in place of the write.
    async fn dismiss_then_sign_out(
        &self,
        s: &mut SessionData,
        d: Dismissal,
        out: SignOut,
    ) -> Result<(CookieAction, Commit), SessionError> {
        let said = self.dismiss_listed(&d).await?;
        let signed_out = Box::pin(self.sign_out_then_write(s, out)).await;
        signed_out.map_err(|e| signed_out_first(said, e))
    }

    /// A commit that signs out other listed sessions of the user: they go first, so that a
    /// commit that fails after it leaves them signed out, never them signed in and this
    /// request's change written.
    async fn dismiss_then_write(
        &self,
        s: &mut SessionData,
        d: Dismissal,
    ) -> Result<(CookieAction, Commit), SessionError> {
        let said = self.dismiss_listed(&d).await?;
        self.write(s)
            .await
            .map(|(action, _)| (action, Commit::Written))
            .map_err(|e| signed_out_first(said, e))
    }

    /// Ends the generation `of` held (keeping this session's entry if `keep`), in the
    /// user's item, and first in the items of the user's other keys: what the ending was,
    /// whether one of those was left standing, and the user's item.
    async fn end_generation(
        &self,
        of: &Binding,
        keep: bool,
    ) -> Result<(generation::Ending, bool, SessionId), SessionError> {
        let store = &*self.backend.store;
        let item = (of.item.clone()).unwrap_or_else(|| self.current_item(&of.user));
        let held = of.held.as_ref().map(|(g, h)| (g.as_str(), h.as_str()));
        // Sessions bound under another key (a login before or after a key rotation) are
        // listed in that key's item: it ends too, as the container's sign-out ends it.
        // First, so that a failure leaves none of them signed in with this one signed out
        // (this one then answers the failure, still signed in unless revoked meanwhile:
        // trying again finishes the sign-out); and each only while this session is signed
        // in, so that a revoked one ends nobody.
        let others = self
            .backend
            .config
            .codec
            .user_items(&of.user)
            .filter(|other| *other != item);
        let spared = generation::end_others(store, &item, held, others).await?;
        let ttl = self.backend.config.generation_ttl();
        let ending = generation::end(store, &item, held, keep, ttl).await?;
        Ok((ending, spared, item))
    }

    /// Ends the generation of a user this request signed out before it changed users (see
    /// [`SignOut::before`]), as [`sign_out_then_write`](Self::sign_out_then_write) does:
    /// this session is no longer theirs, so none of theirs stays signed in; one signed out
    /// since it was read ends nobody and answers 409.
    async fn sign_out_before(&self, out: &SignOut) -> Result<(), SessionError> {
        // A user signed out before that one, in turn.
        if let Some(first) = &out.before {
            Box::pin(self.sign_out_before(first)).await?;
        }
        let (ending, spared, _) = self.end_generation(&out.of, false).await?;
        match ending {
            generation::Ending::Ended => Ok(()),
            generation::Ending::Gone if !spared => Ok(()),
            generation::Ending::Kept(_)
            | generation::Ending::Gone
            | generation::Ending::Superseded
            | generation::Ending::Revoked => Err(SessionError::Ended),
        }
    }

    /// Signs out the sessions `d` names, and says whether that is to be said to have
    /// happened if the rest of the commit fails.
    async fn dismiss_listed(&self, d: &Dismissal) -> Result<bool, SessionError> {
        let (generation, own) = &d.held;
        let (elsewhere, mut signed_out) =
            self.dismiss(&d.item, generation, own, &d.handles).await?;
        // Sessions bound under a fallback key are listed in that key's item. A failure there
        // leaves some named session signed in: its own failure, as when a sign-out
        // everywhere fails to end an old key's item (trying again finishes it).
        for item in self.backend.config.codec.user_items(&d.user) {
            if item != d.item && !elsewhere.is_empty() {
                signed_out |= self.end_all_listed(&item, &elsewhere).await?;
            }
        }
        // Said to have happened once this commit signed one out: every other handle named
        // went with it or is listed nowhere (signed out already, a stale page, or not this
        // user's), so none named is left signed in. Not said when it ended nobody, nor when
        // it named this session's own, which goes only with the rest of the commit.
        Ok(signed_out && !d.named_self)
    }

    /// A commit that signs the user out: the user's generation first, so that a commit that
    /// fails after it leaves this session signed out with the others, never the others
    /// signed in.
    async fn sign_out_then_write(
        &self,
        s: &mut SessionData,
        mut out: SignOut,
    ) -> Result<(CookieAction, Commit), SessionError> {
        if let Some(before) = out.before.take() {
            Box::pin(self.sign_out_before(&before)).await?;
            let signed_out = Box::pin(self.sign_out_then_write(s, out)).await;
            return signed_out.map_err(|e| signed_out_first(true, e));
        }
        // Purged since, or bound to another user: this session is not the one that held
        // the entry, and nothing stays signed in (a login in it goes as any login, unless
        // the sign-out answers 409 below).
        let keep =
            out.keep_this && !s.purged && generation::bound(&s.data) == Some(out.of.user.as_str());
        let (ending, spared, item) = self.end_generation(&out.of, keep).await?;
        match ending {
            generation::Ending::Kept(generation) => {
                // The session stays listed under the entry it held (rebinding the same user
                // in this request may have dropped it from the data).
                let package = generation::PACKAGE;
                if let Some((_, handle)) = &out.of.held {
                    s.put(package, generation::HANDLE, Some(handle.clone().into()));
                    s.put(package, generation::ITEM, Some(item.as_str().into()));
                }
                s.put(package, generation::GENERATION, Some(generation))
            }
            generation::Ending::Ended => {}
            // Ended since it was read (another sign-out everywhere, or this one sent twice),
            // nobody signed in since, and no other key's item left standing: every session
            // it held with is signed out, as asked. (One left standing may be a device that
            // signed this one out, or one that a sign-out racing this one never reached.)
            generation::Ending::Gone if !keep && !spared => return self.write(s).await,
            // This session is no longer signed in: signed out since it was read (by an
            // admin, or another device signing out the others, everyone, or this one). It
            // must not sign itself back in, nor end anybody, nor answer as if it had (the
            // device that signed it out may still be signed in, or have logged in again
            // since): 409, nothing written (but the other keys' items ended above); it is
            // signed out at its next read.
            generation::Ending::Gone
            | generation::Ending::Superseded
            | generation::Ending::Revoked => return Err(SessionError::Ended),
        }
        // The sign-out happened: a failure from here on must say so, not "nothing saved".
        let written = self.write(s).await;
        written
            .map(|(action, _)| (action, Commit::Written))
            .map_err(|e| SessionError::SignedOut(Box::new(e)))
    }

    /// The rest of the commit, once a sign-out of the user's sessions is settled.
    async fn write(&self, s: &mut SessionData) -> Result<(CookieAction, Commit), SessionError> {
        let metrics = &self.backend.config.metrics;
        let mut wrote = s.retired.is_some() || s.signed_out.is_some();
        // The user's item, worked out once (an HMAC for a session bound now): nothing below
        // changes the user until the write, which may rebase onto another request's.
        let user_item = self.user_item(&s.data);
        // Worked out once: nothing below changes the session's timeouts.
        let timeouts = self.timeouts(&s.data);
        let anyway = s
            .existing
            .as_ref()
            .is_some_and(|e| self.reissue_anyway(e, &timeouts, user_item.as_ref()));
        // A cookie issued again anyway restarts its age, so a bound session's stamp is also
        // due by its own age: else, on two instances rotating the key, each re-signing the
        // other's cookies, "last seen" would never advance.
        let refresh = s.existing.as_ref().is_some_and(|e| {
            self.refresh_due(e, &timeouts)
                || (anyway && user_item.is_some() && self.seen_due(&s.data, &timeouts))
        });
        let roster = match &user_item {
            Some(item) => self.roster_change(item, s, refresh).await?,
            None => RosterChange::None,
        };
        // Only a refresh's time stamp to write: the answer stands whatever happens to it.
        let stamp_only = matches!(roster, RosterChange::Seen) && !s.settle();
        if matches!(roster, RosterChange::Seen) {
            s.put_stamp(generation::PACKAGE, generation::SEEN, now_unix());
        }
        let dirty = s.settle();
        // A new session left empty is not stored.
        wrote |= dirty && (s.existing.is_some() || !s.data.is_empty());
        let issue = |id, data: &Record| {
            CookieAction::Issue(Issue {
                id,
                idle: self.timeouts(data).cookie_idle(),
                user: self.user_item(data),
            })
        };
        // Whether the cookie to issue names a new id (a new or renewed session).
        let new_id = s.renewed || s.existing.is_none();
        let action = match s.existing.take() {
            None if dirty && !s.data.is_empty() => {
                let id = self.create(&s.data).await?;
                let listed = self.list(user_item.as_ref(), &roster, &s.data, (&id, &id));
                if let Err(e) = listed.await {
                    self.discard(&id).await;
                    return Err(e);
                }
                issue(id, &s.data)
            }
            None => CookieAction::Keep,
            Some(existing) if s.renewed => {
                let renew = self.renew(&existing, s, user_item.as_ref(), &roster);
                let id = Box::pin(renew).await?;
                issue(id, &s.data)
            }
            Some(existing) => {
                let reissue = refresh || anyway;
                if dirty && !stamp_only {
                    // A stored session bound here keeps its id: listed before it is
                    // written (see `enlist.rs`).
                    let id = &existing.id;
                    self.list(user_item.as_ref(), &roster, &s.data, (id, id))
                        .await?;
                    if let Err((e, landed)) = self.update_telling(&existing, s).await {
                        // A write whose reply was lost may have landed, binding the session
                        // to this entry: it stays (found dead and pruned if it did not).
                        if !landed {
                            self.unlist(user_item.as_ref(), &roster, &s.data, (id, id))
                                .await;
                        }
                        return Err(e);
                    }
                } else if !reissue {
                    metrics.touch(Touch::Skipped);
                } else if !Box::pin(self.refresh(&existing, s, stamp_only)).await {
                    return Ok((CookieAction::Keep, Commit::Unchanged));
                }
                if reissue {
                    issue(existing.id, &s.data)
                } else {
                    CookieAction::Keep
                }
            }
        };
        let ended = match self.clear_old(s).await {
            Ok(ended) => ended,
            Err(e) => {
                // The new id no client will get: it goes, and so does its entry (the
                // session it replaced, not removed, was never taken off the roster).
                match &action {
                    CookieAction::Issue(issue) if new_id => {
                        Box::pin(self.abandon(&issue.id, s)).await;
                    }
                    _ => {}
                }
                return Err(e);
            }
        };
        if let RosterChange::Login(prepared) = &roster {
            Box::pin(self.trim_after(user_item.as_ref(), prepared, &s.data)).await;
        }
        let outcome = if wrote && !stamp_only {
            Commit::Written
        } else {
            Commit::Unchanged
        };
        // Ended with nothing new to issue: the client drops its cookie.
        if ended && action == CookieAction::Keep {
            return Ok((CookieAction::Remove, outcome));
        }
        Ok((action, outcome))
    }

    /// Whether the commit has nothing to do, as `write` would find: an unbound session
    /// this request did not change, end or sign out, whose cookie needs neither a refresh
    /// nor re-issuing. (A bound one always goes through `write`: its roster decides.)
    fn quiet(&self, s: &SessionData) -> bool {
        if s.retired.is_some() || s.signed_out.is_some() || s.purged {
            return false;
        }
        // Any change left to `write`, even one that settles to nothing (a value set back):
        // settling here would cost a changed session's commit a second time.
        // The flags first: a changed session's commit (twice: `finish_quietly`, then
        // `commit`) does not look its user up.
        if s.renewed || !s.changes.is_empty() || generation::bound(&s.data).is_some() {
            return false;
        }
        s.existing.as_ref().is_none_or(|existing| {
            let timeouts = self.timeouts(&s.data);
            !self.refresh_due(existing, &timeouts)
                && !self.reissue_anyway(existing, &timeouts, None)
        })
    }

    /// A quiet commit's end: nothing written, the cookie kept.
    fn unchanged(&self, s: &SessionData) -> (CookieAction, Commit) {
        debug_assert!(
            self.user_item(&s.data).is_none(),
            "quiet is for unbound only"
        );
        if s.existing.is_some() {
            self.backend.config.metrics.touch(Touch::Skipped);
        }
        (CookieAction::Keep, Commit::Unchanged)
    }

    /// Whether a stored session's cookie is issued again whatever its age (as when due for
    /// refresh): when a fallback key signed it (it is re-signed), or when it does not carry
    /// the session's own idle timeout or its user's hint (set by this request, or outside a
    /// request). Like a refresh, these only need the store to confirm the session is still
    /// there.
    fn reissue_anyway(
        &self,
        existing: &Existing,
        timeouts: &Timeouts,
        user_item: Option<&SessionId>,
    ) -> bool {
        let idle = timeouts.cookie_idle().map(|d| d.as_secs());
        let stale = idle != existing.cookie_idle || user_item != existing.cookie_user.as_ref();
        existing.by_fallback || stale
    }

    fn encode(&self, data: &Record) -> Result<Encoded, SessionError> {
        let bytes = data.encode();
        self.backend.config.metrics.size(bytes.len());
        let limit = self.backend.config.max_size;
        if bytes.len() > limit {
            return Err(SessionError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        Ok(bytes)
    }

    /// Stores a new session under a new id, one the store accepts: never on a server
    /// known to be down, so nothing has to move when it is back.
    async fn create(&self, data: &Record) -> Result<SessionId, SessionError> {
        let bytes = self.encode(data)?;
        let created = create_new(&*self.backend.store, &bytes, self.ttl(data)).await;
        created.map_err(|e| match e {
            NotCreated::Entropy(e) => SessionError::Entropy(e),
            NotCreated::Store(e) => e.into(),
        })
    }

    /// After losing a compare-and-swap race: waits (jittered, within the retry budget),
    /// re-reads the session, and re-applies this request's changes onto what the winner
    /// wrote. Returns the version to try next. A key both changed is a conflict (first
    /// committer wins); a session gone meanwhile was ended by another request.
    async fn rebase(
        &self,
        id: &SessionId,
        s: &mut SessionData,
        backoff: &mut Backoff,
    ) -> Result<Version, SessionError> {
        let Some(pause) = backoff.next_pause(self.backend.config.retry_budget) else {
            tracing::debug!(?id, "retry budget spent on concurrent commits");
            return Err(SessionError::Conflict);
        };
        actix_web::rt::time::sleep(pause).await;
        self.backend.config.metrics.merge_retry();
        let Some(Stored { data, version }) = self.backend.store.load(id).await? else {
            return Err(SessionError::Ended);
        };
        let Ok(latest) = Record::decode(data) else {
            return Err(SessionError::Ended);
        };
        s.rebase(latest)?;
        Ok(version)
    }

    /// Compare-and-swap, rebasing onto concurrent commits until it lands or the retry
    /// budget is spent.
    async fn update(&self, existing: &Existing, s: &mut SessionData) -> Result<(), SessionError> {
        self.update_telling(existing, s).await.map_err(|(e, _)| e)
    }

    /// [`update`](Self::update), saying on failure whether its last write may have landed
    /// all the same (see [`may_have_landed`]).
    async fn update_telling(
        &self,
        existing: &Existing,
        s: &mut SessionData,
    ) -> Result<(), (SessionError, bool)> {
        let store = &*self.backend.store;
        let mut version = existing.version;
        let mut backoff = Backoff::new();
        loop {
            let bytes = self.encode(&s.data).map_err(|e| (e, false))?;
            let written = store
                .update(&existing.id, &bytes, version, self.ttl(&s.data))
                .await
                .map_err(|e| {
                    let landed = may_have_landed(&e);
                    (e.into(), landed)
                })?;
            match written {
                Update::Updated => return Ok(()),
                Update::Missing => return Err((SessionError::Ended, false)),
                Update::Conflict => {}
            }
            version = self
                .rebase(&existing.id, s, &mut backoff)
                .await
                .map_err(|e| (e, false))?;
        }
    }

    /// Moves the session to a new id: creates the new one first (a renew that fails
    /// half-way must not lose the session), lists it in its user's roster if it is bound,
    /// then removes the old one only if it is still the version this request built on. A
    /// write committed meanwhile is rebased into the new id; a session purged meanwhile is
    /// not brought back (409, the new one removed).
    async fn renew(
        &self,
        existing: &Existing,
        s: &mut SessionData,
        item: Option<&SessionId>,
        roster: &RosterChange,
    ) -> Result<SessionId, SessionError> {
        // A login starts the session's life: the absolute timeout counts from here.
        s.data.created = now_unix();
        let new = self.create(&s.data).await?;
        if let Err(e) = self.list(item, roster, &s.data, (&existing.id, &new)).await {
            // A renamed entry whose reply was lost names the new id, which goes: moved
            // back, or its session is found dead. (A login's entry is undone in `admit`.)
            if matches!((roster, &e), (RosterChange::Renew, SessionError::Store(_))) {
                self.unlist(item, roster, &s.data, (&new, &existing.id))
                    .await;
            }
            self.discard(&new).await;
            return Err(e);
        }
        if let Err(e) = self.retire(existing, s, &new).await {
            // No client gets the new id (the answer carries no cookie), even when the old
            // one's removal landed unseen: it goes, after its entry (which, naming an id
            // gone, a listing meanwhile would prune, though the old id lives on).
            self.unlist(item, roster, &s.data, (&new, &existing.id))
                .await;
            self.discard(&new).await;
            return Err(e);
        }
        Ok(new)
    }

    /// The rest of a renew once the new id is stored and listed: removes the old one if it
    /// is still the version this request built on, else rebases onto what was committed
    /// meanwhile and writes that over the new one.
    async fn retire(
        &self,
        existing: &Existing,
        s: &mut SessionData,
        new: &SessionId,
    ) -> Result<(), SessionError> {
        let store = &*self.backend.store;
        let mut version = existing.version;
        let mut backoff = Backoff::new();
        loop {
            match store.delete_if(&existing.id, version).await? {
                Update::Updated => return Ok(()),
                Update::Conflict => {}
                Update::Missing => return Err(SessionError::Ended),
            }
            version = self.rebase(&existing.id, s, &mut backoff).await?;
            s.data.created = now_unix();
            // Nobody else knows the new id: its version is read only to write over it.
            self.overwrite(new, &s.data).await?;
        }
    }

    /// Removes what the commit leaves behind: a purged or renewed session's unreachable id,
    /// and a signed-out session as read. Says whether the session the cookie named ended.
    /// With none of those, it does nothing (which `quiet` counts on).
    async fn clear_old(&self, s: &SessionData) -> Result<bool, SessionError> {
        let store = &*self.backend.store;
        if let Some(old) = &s.retired {
            store.delete(old).await?;
        }
        let mut ended = s.purged;
        if let Some((old, version)) = &s.signed_out {
            // Only the request that deletes it ends it: one written since (a login racing
            // this request) is not this one's to end, and one already deleted was ended by
            // another request, whose cookie the client may hold by now.
            match store.delete_if(old, *version).await {
                Ok(deleted) => ended |= deleted == Update::Updated,
                // Tidying only: signed out, it reads so until it expires, and the next
                // request naming it tries again. The answer stands, as a refresh's does.
                Err(e) => tracing::warn!(error = %e, "a signed-out session not removed yet"),
            }
        }
        Ok(ended)
    }

    /// Gives up a new id this commit stored and listed, after a later step failed: no client
    /// will get its cookie. Its entry goes (only while it names it), then the session.
    async fn abandon(&self, id: &SessionId, s: &SessionData) {
        if let (Some(item), Some(handle)) = (self.user_item(&s.data), generation::handle(&s.data)) {
            if let Err(e) = self.end_listed(&item, handle, Some(id)).await {
                tracing::debug!(error = %e, "an abandoned login's entry left as it is");
            }
        }
        self.discard(id).await;
    }

    /// Writes `data` over the session `id` this commit created.
    async fn overwrite(&self, id: &SessionId, data: &Record) -> Result<(), SessionError> {
        let store = &*self.backend.store;
        let bytes = self.encode(data)?;
        let Some(current) = store.load(id).await? else {
            return Err(SessionError::Ended);
        };
        match store
            .update(id, &bytes, current.version, self.ttl(data))
            .await?
        {
            Update::Updated => Ok(()),
            Update::Conflict | Update::Missing => Err(SessionError::Ended),
        }
    }

    /// Removes a session this commit created and then gave up on. Best effort: if it stays,
    /// no cookie names it, and it expires.
    async fn discard(&self, id: &SessionId) {
        if let Err(e) = self.backend.store.delete(id).await {
            tracing::debug!(error = %e, "abandoned new session left to expire");
        }
    }

    /// What this commit does to the user's roster, for a session bound to a user at
    /// `item`. A login (a session bound in this request) copies the generation read and a
    /// new handle into the session now, and is listed when its id is known; a stored
    /// session whose cookie is due for `refresh` writes when it was last seen.
    async fn roster_change(
        &self,
        item: &SessionId,
        s: &mut SessionData,
        refresh: bool,
    ) -> Result<RosterChange, SessionError> {
        if generation::lacks_generation(&s.data) {
            let user = generation::bound(&s.data).unwrap_or_default();
            // The session this login replaces, or the one it logs in under its own id: its
            // other entries stay listed and do not count against the limit (`Prepared`).
            // Only the latter is written or removed at the version read (`Prepared::exclusive`).
            let discounted = match &s.retired {
                Some(replaced) => (Some(replaced.clone()), false),
                None => (s.id().cloned(), true),
            };
            // Boxed: a login's reads are a large future, and most commits are not logins.
            let prepared = Box::pin(self.prepare(item, user, discounted)).await?;
            let handle = roster::new_token().map_err(SessionError::Entropy)?;
            let generation = prepared.roster.generation.clone();
            let package = generation::PACKAGE;
            s.put(package, generation::GENERATION, Some(generation.into()));
            s.put(package, generation::ITEM, Some(item.as_str().into()));
            s.put(package, generation::HANDLE, Some(handle.into()));
            s.put_stamp(package, generation::SEEN, now_unix());
            // Only a stored session renewed is removed on a condition, which one login wins.
            let replaces = s.existing.as_ref().filter(|_| s.renewed);
            let replaces = replaces.map(|existing| existing.id.as_str().into());
            s.put(package, generation::REPLACES, replaces);
            return Ok(RosterChange::Login(Box::new(prepared)));
        }
        if s.renewed {
            return Ok(RosterChange::Renew);
        }
        Ok(if refresh {
            RosterChange::Seen
        } else {
            RosterChange::None
        })
    }

    /// Lists the session, stored (or about to be) as `id`, in its user's roster, as
    /// `change` says: a login's new entry, or a renewed session's entry moved.
    async fn list(
        &self,
        item: Option<&SessionId>,
        change: &RosterChange,
        data: &Record,
        (from, id): (&SessionId, &SessionId),
    ) -> Result<(), SessionError> {
        let login = match change {
            RosterChange::Login(prepared) => Some(prepared),
            RosterChange::Renew => None,
            // Nothing to list (most commits): the session's user, handle and generation
            // are not looked up.
            RosterChange::Seen | RosterChange::None => return Ok(()),
        };
        let (Some(item), Some(user), Some(handle), Some(generation)) = (
            item,
            generation::bound(data),
            generation::handle(data),
            generation::held(data),
        ) else {
            return Ok(());
        };
        // Boxed: the roster's futures are large, and most commits have none to run.
        match login {
            Some(prepared) => Box::pin(self.admit(prepared, item, user, handle, id)).await,
            None => Box::pin(self.rename(item, generation, handle, (from, id))).await,
        }
    }

    /// Undoes [`list`](Self::list) after the write that followed it failed: a login's
    /// entry goes, a renewed session's entry moves back from `from` to its old id `to`
    /// (both only if no other request changed it since). Best effort: an entry left naming
    /// a session no client holds is found dead, or signs out only a session that failed.
    async fn unlist(
        &self,
        item: Option<&SessionId>,
        change: &RosterChange,
        data: &Record,
        (from, to): (&SessionId, &SessionId),
    ) {
        let (Some(item), Some(handle), Some(generation)) =
            (item, generation::handle(data), generation::held(data))
        else {
            return;
        };
        let undone = match change {
            RosterChange::Login(_) => Box::pin(self.end_listed(item, handle, Some(from)))
                .await
                .map(drop),
            RosterChange::Renew => {
                Box::pin(self.rename(item, generation, handle, (from, to))).await
            }
            RosterChange::Seen | RosterChange::None => return,
        };
        if let Err(e) = undone {
            tracing::debug!(error = %e, "a failed commit's roster entry left as it is");
        }
    }

    /// After a login was written: signs out the user's least recently seen sessions over
    /// the limit. The login stands whatever happens here; a failure leaves the next login
    /// to do it.
    async fn trim_after(&self, item: Option<&SessionId>, prepared: &Prepared, data: &Record) {
        let (Some(item), Some(user), Some(handle)) =
            (item, generation::bound(data), generation::handle(data))
        else {
            return;
        };
        if let Err(e) = self.trim(prepared, item, user, handle).await {
            tracing::warn!(error = %e, "sessions over the user's limit not signed out yet");
        }
    }

    /// Refreshes a session this request did not change, so that its cookie can be
    /// re-issued: says whether it is still the session as loaded (else the cookie is
    /// another request's, and the answer keeps it). A bound session's refresh writes when
    /// it was last seen (`stamp`: on the version loaded or merged, one round trip); any
    /// other, or one the stamp would take over `max_size`, is touched.
    async fn refresh(&self, existing: &Existing, s: &mut SessionData, stamp: bool) -> bool {
        let metrics = &self.backend.config.metrics;
        if stamp {
            match self.update(existing, s).await {
                Ok(()) => {
                    metrics.touch(Touch::Done);
                    return true;
                }
                Err(SessionError::TooLarge { .. }) => {}
                Err(SessionError::Store(e)) => {
                    tracing::warn!(error = %e, "session refresh failed; cookie kept");
                    metrics.touch(Touch::Failed);
                    return false;
                }
                // Ended or renewed meanwhile.
                Err(_) => {
                    metrics.touch(Touch::Gone);
                    return false;
                }
            }
        }
        // Read after the touch, to re-issue the cookie only for the session as loaded: once
        // a login has renewed it away (its old id removed, or written over), its cookie would
        // overwrite the login's. A login that has stored its new id but not yet removed the
        // old one cannot be told from here (semantics.md, row 6). After, not with it: a
        // store may send two requests over two connections, and a write landing between a
        // read sent first and the touch would keep this request's lifetime, unseen.
        let store = &*self.backend.store;
        let id = &existing.id;
        let ttl = self.ttl(&s.data);
        // Boxed: the store futures inline would take the commit's over 1 KiB, past which
        // glibc's malloc takes its slower path, for every request.
        let read = async {
            let touched = store.touch(id, ttl).await?;
            Ok(if touched { store.load(id).await? } else { None })
        };
        let read: Result<Option<Stored>, StoreError> = Box::pin(read).await;
        match read {
            Ok(Some(now)) if now.version == existing.version => {
                metrics.touch(Touch::Done);
                true
            }
            // Gone or changed since this request loaded it: another request renewed,
            // purged or wrote it. Written, it got this request's lifetime with the touch,
            // where the write may have set another (timeouts cleared): it gets its own.
            Ok(now) => {
                if let Some(now) = now {
                    self.retouch(id, now.data).await;
                }
                metrics.touch(Touch::Gone);
                false
            }
            // Nothing was to be written: the read-only answer stands, and the refresh
            // waits for the next request.
            Err(e) => {
                tracing::warn!(error = %e, "session refresh failed; cookie kept");
                metrics.touch(Touch::Failed);
                false
            }
        }
    }

    /// Touches `id` again with the lifetime its stored `data` sets, after a touch made with
    /// an older copy's. Best effort: failing, the session keeps the lifetime the first
    /// touch gave it (and a third request writing in between gets this one's).
    async fn retouch(&self, id: &SessionId, data: Vec<u8>) {
        let Ok(latest) = Record::decode(data) else {
            return;
        };
        if let Err(e) = self.backend.store.touch(id, self.ttl(&latest)).await {
            tracing::warn!(error = %e, "session lifetime not restored after a racing write");
        }
    }

    /// Whether a session's cookie is due for re-issue (and a read-only session for a
    /// touch).
    fn refresh_due(&self, existing: &Existing, timeouts: &Timeouts) -> bool {
        let age = now_unix().saturating_sub(existing.issued);
        existing.issued != OPENED && age >= self.backend.config.refresh_after(timeouts.idle)
    }

    /// Whether a bound session's "last seen" stamp is as old as a cookie due for refresh.
    fn seen_due(&self, data: &Record, timeouts: &Timeouts) -> bool {
        generation::seen(data).is_some_and(|seen| {
            now_unix().saturating_sub(seen) >= self.backend.config.refresh_after(timeouts.idle)
        })
    }
}

/// The id a commit stored the session under, for its after-commit hooks: the cookie's, or
/// the one it had (`before`) unless it was purged.
fn stored_id(
    before: Option<SessionId>,
    data: &SessionData,
    action: &CookieAction,
) -> Option<SessionId> {
    match action {
        CookieAction::Issue(issue) => Some(issue.id.clone()),
        CookieAction::Keep if !data.purged => before,
        CookieAction::Keep | CookieAction::Remove => None,
    }
}

/// `e`, failing a commit after a sign-out it made (`said`: one to be said to have
/// happened): it says so, unless it does already (a sign-out later in the commit).
fn signed_out_first(said: bool, e: SessionError) -> SessionError {
    match e {
        SessionError::SignedOut(_) => e,
        e if said => SessionError::SignedOut(Box::new(e)),
        e => e,
    }
}

/// Whether a write that failed with `e` may have landed all the same: sent, and its server
/// went away, answered what cannot be read, or (a proxy) gave up waiting, before its reply.
fn may_have_landed(e: &StoreError) -> bool {
    match e {
        StoreError::Unavailable(cause) => !cause.is::<NotSent>(),
        StoreError::Protocol(_) => true,
        _ => false,
    }
}

/// What a commit does to the user's roster (see `enlist.rs`).
enum RosterChange {
    /// None: the session is not bound, or nothing about its entry changes.
    None,
    /// A login: listed under a new handle once its id is known.
    Login(Box<Prepared>),
    /// A renewed bound session: its entry moves to the new id.
    Renew,
    /// A refresh of a bound session: when it was last seen is written.
    Seen,
}

impl UnitOfWork {
    /// Ends a request whose future was dropped (its client went away) before the response
    /// came back: nothing was written, so the abort hooks run, once, on this thread's
    /// `LocalSet`. A session first loaded after this (by a task the handler left behind)
    /// writes nothing.
    pub(crate) fn end_dropped(&self) {
        if self.end_unloaded() {
            return;
        }
        // `take` gives nothing once the request ended.
        if let Some((data, hooks)) = self.take() {
            self.hand_back(data);
            self.backend.config.metrics.commit(Commit::AbortedByHandler);
            // None to run: nothing handed to the `LocalSet`, which a container's session
            // dropped outside one (a plain tokio test) does not have.
            if !hooks.none_on(Outcome::Aborted) {
                to_completion::finish_elsewhere(
                    hooks.run(Outcome::Aborted),
                    "a session's abort hooks",
                );
            }
        }
    }
}

impl Drop for UnitOfWork {
    /// Dropped with its session loaded but neither committed nor aborted: the request's
    /// future went before it ended.
    fn drop(&mut self) {
        self.end_dropped();
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use actix_web::test::TestRequest;

    use super::*;
    use crate::store::MemoryStore;
    use crate::{Key, MemcacheSession};

    /// A request that ended quietly leaves its data in place: a change made through a
    /// handle kept past it is never taken to be written, even by a second end.
    #[actix_web::test]
    async fn after_a_quiet_end_nothing_is_taken() {
        let backend = MemcacheSession::builder(MemoryStore::new(), Key::generate()).backend();
        let uow = UnitOfWork::new(Rc::new(backend));
        uow.verify_cookies(&TestRequest::default().to_http_request());
        let tx = uow.load().await.unwrap();
        assert_eq!(uow.finish_quietly(), Some(CookieAction::Keep));
        tx.borrow_mut().data.put("p", "k", Some(1.into()));
        assert_eq!(uow.finish().await.unwrap(), CookieAction::Keep);
        assert!(uow.take().is_none());
    }
}
