//! The session's in-memory copy and its change set: what a handler's `Session` reads and
//! writes, what a savepoint copies, and the merge rules the commit applies (which entries
//! changed, rebasing onto a concurrent commit, blind changes, purge, renew, sign-out).

use std::collections::BTreeSet;

use serde_json::Value;

use super::change_set::{Change, ChangeSet, Merge};
use super::generation;
use super::record::{self, Package, Record, Slot};
use crate::clock::now_unix;
use crate::error::SessionError;
use crate::id::SessionId;
use crate::metrics::Load;
use crate::store::Version;

/// The start of this crate's own package names (the user bound, the lifetime, flash
/// messages): a handler's `Session::package` cannot reach them, so a package name taken
/// from input cannot bind a user without the login's renew, or stretch a lifetime.
pub(crate) const RESERVED: &str = "actix-memcache-session.";

/// A session that exists in the store, as this request found it.
#[derive(Debug, Clone)]
pub(super) struct Existing {
    pub(super) id: SessionId,
    pub(super) version: Version,
    /// When the request's cookie was issued, and whether an old key signed it.
    pub(super) issued: u64,
    pub(super) by_fallback: bool,
    /// The idle timeout the request's cookie carried (format 2), in seconds.
    pub(super) cookie_idle: Option<u64>,
    /// The user generation item the request's cookie named (format 3).
    pub(super) cookie_user: Option<SessionId>,
}

/// The session's in-memory copy and the change set: what [`Session`](crate::Session)
/// reads and writes, and what a savepoint copies.
#[derive(Debug, Clone)]
pub(crate) struct SessionData {
    pub(super) existing: Option<Existing>,
    pub(super) data: Record,
    /// Each changed (package, key) entry: the merge's conflict test.
    pub(super) changes: ChangeSet,
    /// A purged (or renewed) session's id, deleted on commit.
    pub(super) retired: Option<SessionId>,
    /// The session the cookie named, when this request could not read it (see
    /// `stands_in`): a purge or renew must still remove it.
    pub(super) unreachable: Option<SessionId>,
    /// The session the cookie named, found signed out (its user's generation ended), at
    /// the version read: removed on commit unless written since.
    pub(super) signed_out: Option<(SessionId, Version)>,
    /// The user whose generation ends on commit, signing out all their sessions. Boxed, as
    /// is `dismissing`: seldom there, they would otherwise make up half of every request's
    /// copy of the session, and of the futures that hold it.
    pub(super) signing_out: Option<Box<SignOut>>,
    /// Other sessions of the user to sign out on commit.
    pub(super) dismissing: Option<Box<Dismissal>>,
    /// The binding a purge in this request took away with the data: a sign-out asked
    /// after the purge still ends the user's sessions.
    pub(super) purged_binding: Option<Box<Binding>>,
    /// Entries of this crate's packages (a device label, a lifetime) this request set to
    /// the value already there: not changes, but its own when a change of users forgets
    /// what was loaded. A boxed slice: seldom there, and every request moves the session
    /// data a few times.
    pub(super) touched: Option<Box<[(String, String)]>>,
    pub(super) renewed: bool,
    pub(super) purged: bool,
    /// Started fresh in place of the session the cookie named, which this request could
    /// not read: its server (or its user item's) was down and the store said to start
    /// fresh, or its cookie was stamped ahead of this clock. Kept through a purge or renew,
    /// which take `unreachable`.
    pub(super) stands_in: bool,
    /// `unreachable` was named by a cookie stamped ahead of this clock: its server answers,
    /// so a login ends it, as a purge does.
    pub(super) ahead: bool,
    /// `unreachable` is stored, but this instance cannot read it or its user's item (over
    /// its item limit, or a later release's format): a later cookie naming a live session
    /// is served first.
    pub(super) unreadable: bool,
    /// A sign-out was asked of a session `stands_in` and not bound since: whether it was
    /// bound, and to whom, is unknown, so the sign-out cannot be done, and the commit
    /// answers 503 with nothing written rather than 200 with the others still signed in.
    pub(super) blind_sign_out: bool,
    /// The session changes users in this request: the other user's entries go, including
    /// those a concurrent request adds ([`forget_loaded`](Self::forget_loaded)).
    pub(super) forgetting: bool,
}

/// Listed sessions of the user that this session signs out on commit.
#[derive(Debug, Clone)]
pub(super) struct Dismissal {
    /// The user's item, the user, and the generation and handle this session held when
    /// asked.
    pub(super) item: SessionId,
    pub(super) user: String,
    pub(super) held: (String, String),
    /// The handles of the sessions to sign out: a set, as a request may name many.
    pub(super) handles: BTreeSet<String>,
    /// This session's own handle was named too: it is purged, which only the rest of the
    /// commit does.
    pub(super) named_self: bool,
}

/// A session's binding to a user, as its data held it.
#[derive(Debug, Clone)]
pub(super) struct Binding {
    pub(super) user: String,
    /// The user's item it was bound with (`None` if bound in this request: the current
    /// key's).
    pub(super) item: Option<SessionId>,
    /// The generation it holds and the handle it is listed as (`None` if bound in this
    /// request): a sign-out's end is conditional on the session being still signed in
    /// with them.
    pub(super) held: Option<(String, String)>,
}

/// A sign-out of a user's sessions, ended on commit.
#[derive(Debug, Clone)]
pub(super) struct SignOut {
    /// The session's binding when the sign-out was asked.
    pub(super) of: Binding,
    /// This session stays signed in, the only one listed.
    pub(super) keep_this: bool,
    /// Another user's sign-out this request asked before it changed users: done first.
    pub(super) before: Option<Box<SignOut>>,
}

/// What a session did in this request, as [`Session::status`](crate::Session::status)
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionStatus {
    /// Nothing changed; nothing will be written.
    Unchanged,
    /// Entries changed; they are written if the response commits.
    Changed,
    /// [`renew`](crate::Session::renew) was called: the data moves to a new id.
    Renewed,
    /// [`purge`](crate::Session::purge) was called: the session is deleted.
    Purged,
    /// [`abort`](crate::Session::abort) was called: nothing of this request is written.
    Aborted,
}

impl SessionData {
    pub(crate) fn fresh() -> Self {
        Self::with(Record::new(now_unix()))
    }

    /// A new, empty session standing in for `id`, which this request could not read.
    pub(super) fn standing_in(id: SessionId) -> Self {
        Self {
            unreachable: Some(id),
            stands_in: true,
            ..Self::fresh()
        }
    }

    /// A new, empty session standing in for `id`, stored but unreadable here.
    pub(super) fn unreadable(id: SessionId) -> Self {
        Self {
            unreadable: true,
            ..Self::standing_in(id)
        }
    }

    /// A new, empty session standing in for `id`, named by a cookie stamped ahead of this
    /// clock.
    pub(super) fn ahead_of(id: SessionId) -> Self {
        Self {
            ahead: true,
            ..Self::standing_in(id)
        }
    }

    /// Whether a login must renew this session to end the one its cookie named: stored, or
    /// standing in for one named by a cookie stamped ahead of this clock or stored but
    /// unreadable here (its server answers: a login ends it, as a purge does).
    pub(crate) fn ends_on_login(&self) -> bool {
        self.existing.is_some() || ((self.ahead || self.unreadable) && self.unreachable.is_some())
    }

    /// `data` as loaded, with nothing changed yet.
    pub(crate) fn with(data: Record) -> Self {
        Self {
            existing: None,
            data,
            changes: ChangeSet::default(),
            retired: None,
            unreachable: None,
            signed_out: None,
            signing_out: None,
            dismissing: None,
            purged_binding: None,
            touched: None,
            renewed: false,
            purged: false,
            stands_in: false,
            ahead: false,
            unreadable: false,
            blind_sign_out: false,
            forgetting: false,
        }
    }

    /// The binding, with what the session held at an earlier sign-out in this request
    /// (which, keeping this session, took the generation out of its data).
    fn binding_as_held(&self) -> Option<Binding> {
        let earlier = self.signing_out.as_deref();
        self.binding().map(|mut b| {
            // Only the same user's: another's (signed out before a change of users) would
            // make a session bound in this request look signed in as that one.
            if let Some(e) = earlier.filter(|e| e.of.user == b.user) {
                b.held = b.held.or_else(|| e.of.held.clone());
                b.item = b.item.or_else(|| e.of.item.clone());
            }
            b
        })
    }

    /// The session's binding: as its data holds it, or as a purge in this request took it.
    fn binding(&self) -> Option<Binding> {
        let Some(user) = generation::bound(&self.data) else {
            return self.purged_binding.as_deref().cloned();
        };
        let held = generation::held(&self.data).zip(generation::handle(&self.data));
        Some(Binding {
            user: user.to_owned(),
            item: generation::item_of(&self.data),
            held: held.map(|(g, h)| (g.to_owned(), h.to_owned())),
        })
    }

    pub(crate) fn slot(&self, package: &str, key: &str) -> Option<&Slot> {
        self.data.slot(package, key)
    }

    /// The id the session is stored under, if it is.
    pub(crate) fn id(&self) -> Option<&SessionId> {
        self.existing.as_ref().map(|e| &e.id)
    }

    pub(crate) fn keys(&self, package: &str) -> Vec<String> {
        self.data.keys(package)
    }

    /// Sets (`Some`) or removes (`None`) an entry, remembering its loaded value the first
    /// time it changes. Writing the value already there is not a change.
    pub(crate) fn put(&mut self, package: &str, key: &str, value: Option<Value>) {
        self.change(package, key, value, Merge::Strict);
    }

    /// Like [`put`](Self::put), for a change that does not depend on what was read; see
    /// [`Merge::Blind`].
    pub(crate) fn put_blind(&mut self, package: &str, key: &str, value: Option<Value>) {
        self.change(package, key, value, Merge::Blind);
    }

    /// Sets a time stamp (unix seconds); see [`Merge::Stamp`].
    pub(crate) fn put_stamp(&mut self, package: &str, key: &str, at: u64) {
        self.change(package, key, Some(at.into()), Merge::Stamp);
    }

    fn change(&mut self, package: &str, key: &str, value: Option<Value>, merge: Merge) {
        let current = self.data.slot(package, key);
        let unchanged = match (current, &value) {
            (None, None) => true,
            (Some(slot), Some(value)) => slot.value() == Some(value),
            _ => false,
        };
        if unchanged {
            // Only this crate's own settings, set at a login (an application's entries set
            // before `bind_user` to the other user's value go with theirs, as documented),
            // and only before the change of users: after it, what the data holds is this
            // request's already, and what it lacks stays out (a merge's `forget_loaded`
            // would keep the other user's value of an entry touched then).
            if merge == Merge::Strict && package.starts_with(RESERVED) && !self.forgetting {
                self.touch(package, key);
            }
            return;
        }
        self.changes.add(package, key, || Change {
            original: current.cloned(),
            merge,
            again: false,
        });
        self.data.put(package, key, value);
    }

    fn touch(&mut self, package: &str, key: &str) {
        let mut touched = self.touched.take().map(Vec::from).unwrap_or_default();
        let entry = (package.to_owned(), key.to_owned());
        if !touched.contains(&entry) {
            touched.push(entry);
        }
        self.touched = Some(touched.into_boxed_slice());
    }

    /// Removes every entry this request has not written, whatever another request writes
    /// meanwhile, and any it adds (see [`rebase`](Self::rebase)): a session changing users
    /// keeps nothing of the other user's, and what this request set before the change.
    /// The binding's own entries are the login's to set (their changes conflict as any
    /// would), but for the device's label; when it was last seen is stamped anew.
    pub(crate) fn forget_loaded(&mut self) {
        self.forgetting = true;
        // Set to what was there: this request's all the same, and its value wins a merge.
        for (package, key) in self.touched.take().into_iter().flatten() {
            let original = self.data.slot(&package, &key).cloned();
            self.changes.add(&package, &key, || Change {
                original,
                merge: Merge::Forget,
                again: false,
            });
        }
        let mut loaded = self.data.names();
        let changes = &self.changes;
        loaded.retain(|(p, k)| {
            let own = changes.get(p, k).is_some();
            !own && (p != generation::PACKAGE || k == generation::LABEL)
        });
        for (package, key) in loaded {
            self.change(&package, &key, None, Merge::Forget);
        }
    }

    /// Whether a change of `package` is the login's own in a change of users (`forgetting`):
    /// all but the binding's, whose changes conflict as any would. It wins a merge, and
    /// stays when set back.
    fn switches(forgetting: bool, package: &str) -> bool {
        forgetting && package != generation::PACKAGE
    }

    /// The value `package`/`key` had when this request loaded it.
    fn as_loaded(&self, package: &str, key: &str) -> Option<&Slot> {
        match self.changes.get(package, key) {
            Some(change) => change.original.as_ref(),
            None => self.data.slot(package, key),
        }
    }

    /// A package's entries as this request loaded them, before its own changes.
    pub(crate) fn loaded_entries(&self, package: &str) -> Package {
        let mut entries = self.data.package(package).cloned().unwrap_or_default();
        for ((p, key), change) in self.changes.iter() {
            match (p == package, &change.original) {
                (false, _) => {}
                // The other user's, forgotten at a change of users: not this session's.
                (true, _) if change.merge == Merge::Forget => {
                    entries.remove(key);
                }
                (true, Some(original)) => {
                    entries.insert(key.clone(), original.clone());
                }
                (true, None) => {
                    entries.remove(key);
                }
            }
        }
        entries
    }

    /// A package's entries as they are now.
    pub(crate) fn entries(&self, package: &str) -> Option<&Package> {
        self.data.package(package)
    }

    /// Re-applies this request's changes onto `latest`, the data another request committed
    /// meanwhile. A key both changed is a conflict (first committer wins), unless this
    /// request's change was blind and already made, or a time stamp (the later stays).
    pub(crate) fn rebase(&mut self, mut latest: Record) -> Result<(), SessionError> {
        // Bound to another user meanwhile (a login on it), or emptied for one: nothing of
        // this request's, made for the user it loaded, goes to that one. (An anonymous
        // session's changes still merge into a first login on it, as they would had the
        // login come first.)
        let value = |slot: Option<&Slot>| slot.and_then(Slot::value).cloned();
        let read = |key| value(self.as_loaded(generation::PACKAGE, key));
        let now = |key| value(latest.slot(generation::PACKAGE, key));
        let loaded = read(generation::USER);
        if (loaded.is_some() && loaded != now(generation::USER))
            || read(generation::SWITCHES) != now(generation::SWITCHES)
        {
            return Err(SessionError::Conflict);
        }
        // A renew moves its session's line in the user's roster as it loaded it: bound
        // meanwhile without a renew (through the container), the line names the old id,
        // and the new one would be signed in but listed nowhere (a listing then ends it).
        if self.renewed && read(generation::HANDLE) != now(generation::HANDLE) {
            return Err(SessionError::Conflict);
        }
        for ((package, key), change) in self.changes.iter() {
            let ours = self.data.slot(package, key);
            let theirs = latest.slot(package, key);
            let value = match change.merge {
                _ if record::unchanged(change.original.as_ref(), theirs) => ours,
                Merge::Blind if theirs == ours => ours,
                Merge::Stamp => {
                    let at = |v: Option<&Slot>| v.and_then(Slot::value).and_then(Value::as_u64);
                    if at(theirs) > at(ours) {
                        theirs
                    } else {
                        ours
                    }
                }
                Merge::Forget => ours,
                // A change of users: what the login sets wins over the other user's
                // (who, racing it, wrote for a session no longer theirs).
                _ if Self::switches(self.forgetting, package) => ours,
                Merge::Strict | Merge::Blind => return Err(SessionError::Conflict),
            };
            latest.put_slot(package, key, value.cloned());
        }
        self.data = latest;
        if self.forgetting {
            self.forget_loaded();
        }
        Ok(())
    }

    pub(crate) fn renew(&mut self) {
        self.renewed = true;
        // A login must end the session the cookie named, even one not reached.
        if let Some(id) = self.unreachable.take() {
            self.retired = Some(id);
        }
    }

    pub(crate) fn purge(&mut self) {
        let retired = self
            .existing
            .take()
            .map(|e| e.id)
            .or(self.retired.take())
            .or(self.unreachable.take());
        let purged_binding = self.binding().map(Box::new);
        *self = Self {
            retired,
            signed_out: self.signed_out.take(),
            signing_out: self.signing_out.take(),
            dismissing: self.dismissing.take(),
            purged_binding,
            purged: true,
            stands_in: self.stands_in,
            blind_sign_out: self.blind_sign_out,
            ..Self::fresh()
        };
    }

    /// Ends the bound user's generation on commit, signing them out of every session;
    /// this one is purged, or, if `keep_this`, stays signed in, the only one listed.
    pub(crate) fn sign_out(&mut self, keep_this: bool) {
        let binding = self.binding_as_held();
        self.blind_sign_out |= binding.is_none() && self.stands_in;
        let earlier = self.signing_out.take();
        let bound = generation::bound(&self.data).is_some();
        if keep_this {
            if bound {
                self.put(generation::PACKAGE, generation::GENERATION, None);
            }
        } else {
            self.purge();
        }
        self.signing_out = match binding {
            Some(of) => {
                // One asked of another user before a change of users stays, to go first
                // (with any it kept in turn, each user's in the order asked).
                let before = earlier.and_then(|e| match e.of.user == of.user {
                    true => e.before,
                    false => Some(e),
                });
                Some(Box::new(SignOut {
                    of,
                    keep_this,
                    before,
                }))
            }
            None => earlier,
        };
    }

    /// Signs out, on commit, the user's listed session `handle`: this one is purged, another
    /// loses its entry. A session not signed in (not bound, or bound in this request) ends
    /// nobody else.
    pub(crate) fn dismiss(&mut self, handle: &str) {
        if self.dismissing.is_none() {
            let binding = self.binding_as_held();
            // (Bound in this request, it ends nobody else.)
            self.blind_sign_out |= self.stands_in && binding.is_none();
            let Some(Binding {
                user,
                item: Some(item),
                held: Some(held),
            }) = binding
            else {
                return;
            };
            self.dismissing = Some(Box::new(Dismissal {
                item,
                user,
                held,
                handles: BTreeSet::new(),
                named_self: false,
            }));
        }
        let Some(dismissal) = self.dismissing.as_mut() else {
            return;
        };
        // Its own handle: this session goes (the dismissal stays, for the others).
        if dismissal.held.1 == handle {
            dismissal.named_self = true;
            return self.purge();
        }
        if !dismissal.handles.contains(handle) {
            dismissal.handles.insert(handle.to_owned());
        }
    }

    /// How the load that made this went.
    pub(super) fn loaded(&self) -> Load {
        if self.existing.is_some() {
            Load::Hit
        } else if self.signed_out.is_some() {
            Load::SignedOut
        } else if self.unreachable.is_some() {
            Load::Down
        } else {
            Load::Miss
        }
    }

    /// Forgets changes that ended where they began (a value set back), and says whether
    /// anything is left to write: a change, or a renew. Only an entry changed again is
    /// looked up and compared (most requests change an entry once).
    pub(super) fn settle(&mut self) -> bool {
        // In a change of users the login's changes stay: set back to the other user's
        // value, it is still the login's, to win a merge with.
        let forgetting = self.forgetting;
        self.changes.retain(|(p, k), change| {
            !change.again
                || change.merge == Merge::Forget
                || Self::switches(forgetting, p)
                || self.data.slot(p, k) != change.original.as_ref()
        });
        self.renewed || !self.changes.is_empty()
    }

    pub(crate) fn status(&self) -> SessionStatus {
        if self.purged {
            SessionStatus::Purged
        } else if self.renewed {
            SessionStatus::Renewed
        } else if self.changes.is_empty() {
            SessionStatus::Unchanged
        } else {
            SessionStatus::Changed
        }
    }
}

/// The merge rules, one test each (docs/semantics.md, rows 2, 3 and 6; docs/users.md).
#[cfg(test)]
mod tests {
    use super::*;

    /// A record holding `p/k = 1` and `p/other = "x"`, as loaded.
    fn loaded() -> SessionData {
        let mut record = Record::new(0);
        record.put("p", "k", Some(1.into()));
        record.put("p", "other", Some("x".into()));
        // Through the stored bytes: the values are their text, as after a load.
        SessionData::with(Record::decode(record.encode().to_vec()).unwrap())
    }

    /// What another request committed: the loaded record with `changes` applied.
    fn theirs(changes: &[(&str, Option<Value>)]) -> Record {
        let mut record = loaded().data;
        for (key, value) in changes {
            record.put("p", key, value.clone());
        }
        Record::decode(record.encode().to_vec()).unwrap()
    }

    #[test]
    fn writing_the_value_already_there_is_not_a_change() {
        let mut s = loaded();
        s.put("p", "k", Some(1.into()));
        assert_eq!(s.status(), SessionStatus::Unchanged);
        assert!(!s.settle());
    }

    #[test]
    fn a_value_set_back_to_what_was_loaded_is_no_change_to_write() {
        let mut s = loaded();
        s.put("p", "k", Some(2.into()));
        s.put("p", "k", Some(1.into()));
        assert!(!s.settle(), "nothing left to write");
        s.put("p", "k", None);
        assert!(s.settle(), "a removal is a change");
        // The same, for an entry past the change set's first (kept in its table): set
        // back, it goes; the first stays.
        let mut s = loaded();
        s.put("p", "k", Some(2.into()));
        s.put("p", "other", Some("y".into()));
        s.put("p", "other", Some("x".into()));
        assert!(s.settle());
        let left: Vec<_> = s.changes.iter().map(|((_, k), _)| k.as_str()).collect();
        assert_eq!(left, ["k"]);
        // And the first, set back while the table holds another.
        s.put("p", "other", Some("y".into()));
        s.put("p", "k", Some(1.into()));
        assert!(s.settle());
        let left: Vec<_> = s.changes.iter().map(|((_, k), _)| k.as_str()).collect();
        assert_eq!(left, ["other"]);
    }

    #[test]
    fn the_change_set_remembers_the_value_loaded() {
        let mut s = loaded();
        s.put("p", "k", Some(2.into()));
        s.put("p", "k", Some(3.into()));
        s.put("p", "new", Some(true.into()));
        let before = s.loaded_entries("p");
        assert_eq!(
            before.get("k").and_then(Slot::value),
            Some(&Value::from(1)),
            "the first original"
        );
        assert!(!before.contains_key("new"), "added by this request");
        assert_eq!(s.data.get("p", "k"), Some(&Value::from(3)));
    }

    #[test]
    fn rebase_keeps_both_requests_changes_to_different_keys() {
        let mut s = loaded();
        s.put("p", "k", Some(2.into()));
        s.rebase(theirs(&[("other", Some("y".into()))])).unwrap();
        assert_eq!(s.data.get("p", "k"), Some(&Value::from(2)), "ours");
        assert_eq!(s.data.get("p", "other"), Some(&Value::from("y")), "theirs");
    }

    #[test]
    fn rebase_refuses_a_key_both_changed_first_committer_wins() {
        let mut s = loaded();
        s.put("p", "k", Some(2.into()));
        let e = s.rebase(theirs(&[("k", Some(3.into()))])).unwrap_err();
        assert!(matches!(e, SessionError::Conflict), "{e:?}");
        let mut removed = loaded();
        removed.put("p", "k", None);
        let e = removed
            .rebase(theirs(&[("k", Some(3.into()))]))
            .unwrap_err();
        assert!(
            matches!(e, SessionError::Conflict),
            "a removal conflicts too"
        );
    }

    #[test]
    fn a_blind_change_already_made_by_the_other_request_is_no_conflict() {
        let mut s = loaded();
        s.put_blind("p", "other", None);
        s.rebase(theirs(&[("other", None)])).unwrap();
        assert_eq!(s.data.get("p", "other"), None);
        let mut not_blind = loaded();
        not_blind.put("p", "other", None);
        assert!(
            not_blind.rebase(theirs(&[("other", None)])).is_err(),
            "the same change made knowingly is a conflict"
        );
        let mut differs = loaded();
        differs.put_blind("p", "other", None);
        assert!(
            differs
                .rebase(theirs(&[("other", Some("z".into()))]))
                .is_err(),
            "a blind change that the other request did not make is one"
        );
    }

    #[test]
    fn purge_retires_the_stored_id_and_starts_empty() {
        let mut s = loaded();
        let id = SessionId::generate().unwrap();
        s.existing = Some(Existing {
            id: id.clone(),
            version: Version::new(7),
            issued: 0,
            by_fallback: false,
            cookie_idle: None,
            cookie_user: None,
        });
        s.purge();
        assert_eq!(s.status(), SessionStatus::Purged);
        assert_eq!(s.retired, Some(id), "deleted on commit");
        assert!(s.existing.is_none() && s.data.is_empty());
        assert!(!s.settle(), "nothing new to store");
    }

    #[test]
    fn renew_takes_over_the_unreachable_session_to_remove_it() {
        let mut s = loaded();
        let unreachable = SessionId::generate().unwrap();
        s.unreachable = Some(unreachable.clone());
        s.renew();
        assert_eq!(s.status(), SessionStatus::Renewed);
        assert_eq!(
            s.retired,
            Some(unreachable),
            "a login ends the session it replaces"
        );
        assert!(s.settle(), "a renew is written even without a change");
    }

    /// A session bound to ada, holding generation `g` of item `item`.
    fn bound(item: &SessionId) -> SessionData {
        let mut s = loaded();
        s.data
            .put(generation::PACKAGE, generation::USER, Some("ada".into()));
        s.data.put(
            generation::PACKAGE,
            generation::GENERATION,
            Some("g".into()),
        );
        s.data.put(
            generation::PACKAGE,
            generation::ITEM,
            Some(item.as_str().into()),
        );
        s.data
            .put(generation::PACKAGE, generation::HANDLE, Some("h".into()));
        s
    }

    fn held(out: &SignOut) -> Option<(&str, &str)> {
        out.of.held.as_ref().map(|(g, h)| (g.as_str(), h.as_str()))
    }

    #[test]
    fn sign_out_everywhere_purges_and_keeps_what_this_session_held() {
        let item = SessionId::generate().unwrap();
        let mut s = bound(&item);
        s.sign_out(false);
        assert_eq!(s.status(), SessionStatus::Purged);
        let out = s.signing_out.as_ref().expect("the user's generation ends");
        assert_eq!(out.of.user, "ada");
        assert_eq!(held(out), Some(("g", "h")), "the end is conditional on it");
        assert_eq!(out.of.item.as_ref(), Some(&item));
        assert!(!out.keep_this);
    }

    #[test]
    fn sign_out_of_the_others_keeps_this_session_without_its_copy() {
        let item = SessionId::generate().unwrap();
        let mut s = bound(&item);
        s.sign_out(true);
        assert_eq!(s.status(), SessionStatus::Changed);
        assert!(
            generation::lacks_generation(&s.data),
            "a new one is copied at commit"
        );
        let out = s.signing_out.as_ref().unwrap();
        assert!(out.keep_this);
        assert_eq!(held(out), Some(("g", "h")));
        s.sign_out(false);
        let out = s.signing_out.as_ref().unwrap();
        assert_eq!(
            held(out),
            Some(("g", "h")),
            "a second sign-out keeps the first's"
        );
    }

    #[test]
    fn sign_out_without_a_user_ends_nobody() {
        let mut s = loaded();
        s.sign_out(true);
        assert!(s.signing_out.is_none());
        assert_eq!(s.status(), SessionStatus::Unchanged);
    }

    #[test]
    fn a_value_that_cannot_be_read_merges_by_its_text() {
        let stored = |bad: &str| {
            let text = format!(r#"{{"v":1,"created":0,"packages":{{"p":{{"bad":{bad}}}}}}}"#);
            Record::decode(text.into_bytes()).unwrap()
        };
        let mut s = SessionData::with(stored("1e400"));
        s.put("p", "bad", Some(1.into()));
        assert!(s.settle(), "replacing it is a change");
        let mut unchanged = s.clone();
        unchanged.rebase(stored("1e400")).unwrap();
        assert_eq!(unchanged.data.get("p", "bad"), Some(&1.into()));
        assert!(matches!(
            s.rebase(stored("1e401")),
            Err(SessionError::Conflict)
        ));
        // One that reads only by losing what another writer changed (both 1e23 as an f64).
        let mut s = SessionData::with(stored("100000000000000000000001"));
        s.put("p", "bad", Some(5.into()));
        assert!(s.settle());
        assert!(matches!(
            s.rebase(stored("100000000000000000000002")),
            Err(SessionError::Conflict)
        ));
    }

    /// A float another request changed by the one unit serde_json's reading loses (it
    /// reads both texts as one value): a change all the same, so one of this request's to
    /// the same key is a conflict, not a write over theirs.
    #[test]
    fn a_float_changed_by_the_unit_serde_json_misreads_is_a_change() {
        let stored = |text: &str| {
            let text = format!(r#"{{"v":1,"created":0,"packages":{{"p":{{"k":{text}}}}}}}"#);
            Record::decode(text.into_bytes()).unwrap()
        };
        let theirs = "51.248178375505404";
        let read: f64 = serde_json::from_str(theirs).unwrap();
        let before = serde_json::to_string(&read).unwrap();
        assert_ne!(before, theirs, "serde_json reads it one unit off");
        let slot = |text: &str| stored(text).slot("p", "k").cloned();
        assert_eq!(slot(&before), slot(theirs), "as values, the two are one");
        let mut s = SessionData::with(stored(&before));
        s.put("p", "k", Some(7.into()));
        assert!(matches!(
            s.rebase(stored(theirs)),
            Err(SessionError::Conflict)
        ));
        // Untouched by anyone else, the same text: no conflict.
        let mut s = SessionData::with(stored(&before));
        s.put("p", "k", Some(7.into()));
        s.rebase(stored(&before)).unwrap();
        assert_eq!(s.data.get("p", "k"), Some(&7.into()));
    }

    #[test]
    fn a_time_stamp_never_conflicts_and_the_later_stays() {
        let mut s = loaded();
        s.put_stamp("p", "seen", 100);
        let mut later = s.clone();
        later.rebase(theirs(&[("seen", Some(200.into()))])).unwrap();
        assert_eq!(
            later.data.get("p", "seen"),
            Some(&200.into()),
            "theirs is later"
        );
        s.rebase(theirs(&[("seen", Some(50.into()))])).unwrap();
        assert_eq!(s.data.get("p", "seen"), Some(&100.into()), "ours is later");
    }

    /// A session started fresh for a server down cannot sign anybody out (it may have been
    /// bound): 503 on commit, kept through a purge first. Bound in this request, it ends
    /// nobody else, as any session bound in its request.
    #[test]
    fn a_sign_out_from_a_session_started_for_a_server_down_is_blind() {
        let stands_in = || SessionData {
            unreachable: Some(SessionId::generate().unwrap()),
            stands_in: true,
            ..SessionData::fresh()
        };
        let mut s = stands_in();
        s.purge();
        s.sign_out(false);
        assert!(s.blind_sign_out, "a purge first takes only the id");
        let mut s = stands_in();
        s.dismiss("x");
        assert!(s.blind_sign_out);
        let mut s = stands_in();
        s.data
            .put(generation::PACKAGE, generation::USER, Some("ada".into()));
        s.dismiss("x");
        s.sign_out(true);
        assert!(!s.blind_sign_out, "bound in this request");
        let mut fresh = SessionData::fresh();
        fresh.sign_out(false);
        fresh.dismiss("x");
        assert!(!fresh.blind_sign_out, "nothing was down");
    }

    /// A login changing users, then clearing a setting of this crate's that was not there
    /// (no "remember me"): what the other user's request sets meanwhile goes through the
    /// merge with the rest of theirs. (A clear of what was not there was kept as this
    /// request's own, and the merge took the other user's value for it: a lifetime of
    /// theirs on the new user's session.)
    #[test]
    fn a_setting_cleared_after_a_change_of_users_stays_cleared_through_a_merge() {
        use super::super::timeouts::{ABSOLUTE, IDLE, PACKAGE};
        let item = SessionId::generate().unwrap();
        let mut s = bound(&item);
        let mut latest = s.data.clone();
        latest.put(PACKAGE, IDLE, Some(1_209_600.into()));
        latest.put(PACKAGE, ABSOLUTE, Some(2_592_000.into()));
        let latest = Record::decode(latest.encode().to_vec()).unwrap();
        s.forget_loaded();
        s.put(generation::PACKAGE, generation::USER, Some("bob".into()));
        s.put(PACKAGE, IDLE, None);
        s.put(PACKAGE, ABSOLUTE, None);
        s.rebase(latest).unwrap();
        assert_eq!(s.data.get(PACKAGE, IDLE), None);
        assert_eq!(s.data.get(PACKAGE, ABSOLUTE), None);
        assert_eq!(
            s.data.get("p", "k"),
            None,
            "the other user's entries go too"
        );
    }

    #[test]
    fn dismissing_names_other_sessions_once_and_its_own_handle_purges() {
        let item = SessionId::generate().unwrap();
        let mut s = bound(&item);
        s.dismiss("x");
        s.dismiss("x");
        s.dismiss("y");
        let d = s.dismissing.as_ref().expect("two to sign out");
        assert!(d.handles.iter().eq(["x", "y"]));
        assert_eq!(d.held, ("g".to_owned(), "h".to_owned()));
        assert_eq!(d.item, item);
        s.dismiss("h");
        assert_eq!(s.status(), SessionStatus::Purged);
        s.dismiss("z");
        let d = s.dismissing.as_ref().expect("the others still go");
        assert!(
            d.handles.iter().eq(["x", "y", "z"]),
            "after its own purge too"
        );
        let mut unbound = loaded();
        unbound.dismiss("x");
        assert!(unbound.dismissing.is_none(), "not signed in: ends nobody");
    }
}
