//! Changing a user's roster, always with compare-and-swap so that concurrent logins merge
//! and none overwrites another's entry: a login's entry (within the user's session limit),
//! a renewed session's new id, and ending listed sessions.
//!
//! Order keeps the roster honest. A login's new session is written first and listed after,
//! so an entry whose session is missing is dead, never "not written yet"; a login of a
//! stored session is listed first and written after (the other order would sign it out
//! between the two), which the census gives a grace for. A login over the limit signs
//! others out only once it is written itself ([`trim`](UnitOfWork::trim)), so a login that
//! fails has signed nobody out.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use super::census::State;
use super::generation::{self, EDIT_ATTEMPTS};
use super::load::UnitOfWork;
use super::roster::{self, Entry, Roster, MAX_ENTRIES};
use crate::clock::now_unix;
use crate::config::{OverLimit, MAX_SESSIONS_PER_USER};
use crate::error::SessionError;
use crate::id::SessionId;
use crate::store::{StoreError, Update, Version};

/// A user's item as read before a login, made ready for it: its generation (started if
/// there was none) and its dead entries gone. Nothing is written until
/// [`admit`](UnitOfWork::admit).
#[derive(Clone)]
pub(crate) struct Prepared {
    pub(crate) roster: Roster,
    version: Version,
    /// How many sessions counted against the limit once this login was listed.
    listed: Cell<usize>,
    /// The session whose entries, other than this login's own, do not count against the
    /// limit: the one this login replaces (purged, or found unreachable: removed once the
    /// login is stored, its entries dead then), or the one logging in under its own id (an
    /// entry naming it is another login of it racing this one, one of which loses, or
    /// left from an earlier binding). They stay listed: taking them out would sign the
    /// session out if the commit failed before removing it, and could not be undone
    /// without signing back in one that another request ended meanwhile.
    discounted: Option<SessionId>,
    /// Whether this login writes or removes the `discounted` session only at the version it
    /// read (it logs in under its id, or renews it away), so that of it and another login
    /// renewing that session away only one can win. A login that purged the session, or
    /// found it unreachable, removes it whatever its version: the other can win too.
    exclusive: bool,
    /// What the latest census of the roster read, which saw every entry listed before this
    /// login's.
    read: RefCell<Read>,
}

/// What a census of a user's roster says, for counting against the limit.
#[derive(Clone, Default)]
struct Read {
    /// When each listed login was last seen, by handle, for choosing whom a login over the
    /// limit signs out.
    seen: HashMap<String, u64>,
    /// With `exclusive`, the handles of entries claiming the `discounted` session: another
    /// login of it (a form sent twice), which wins only if this one loses. They do not
    /// count either.
    renewing: Vec<String>,
    /// Groups of entries claiming one other session each: logins of it racing (a form
    /// sent twice on another device), of which one at most stays. Each group counts, and
    /// is signed out, as one session.
    rivals: Vec<Vec<String>>,
}

impl Prepared {
    /// Whether `entry` is another login of the `discounted` session, or left from one.
    fn discounts(&self, entry: &Entry) -> bool {
        self.discounted.as_ref() == Some(&entry.id)
            || self.read.borrow().renewing.contains(&entry.handle)
    }

    /// The sessions among `entries` that count against the limit, with the login listed
    /// as `own`: each by its entries (a group of rival logins is one session).
    fn sessions<'e>(
        &self,
        entries: impl IntoIterator<Item = &'e Entry>,
        own: Option<&str>,
    ) -> Vec<Vec<&'e Entry>> {
        let read = self.read.borrow();
        let mut sessions: Vec<Vec<&Entry>> = Vec::new();
        // Where each rival group's session is in `sessions`, once one of it is.
        let mut groups: HashMap<usize, usize> = HashMap::new();
        for entry in entries {
            // (This login's own entry may name the discounted session: its own id.)
            if own != Some(entry.handle.as_str()) && self.discounts(entry) {
                continue;
            }
            // None holds this login's: its entry was listed after the census.
            let group = read.rivals.iter().position(|g| g.contains(&entry.handle));
            match group.and_then(|g| groups.get(&g)) {
                Some(&at) => sessions[at].push(entry),
                None => {
                    if let Some(g) = group {
                        groups.insert(g, sessions.len());
                    }
                    sessions.push(vec![entry]);
                }
            }
        }
        sessions
    }
}

/// The session an entry's login claims, as its session says: the one it renewed away from,
/// or its own (a login that keeps its id, listed before it writes). Logins that claim one
/// session race: one at most removes or writes it at the version it read, and stays.
fn claim(entry: &Entry, state: &State) -> Option<SessionId> {
    match state {
        State::Live(live) => Some(live.replaces.clone().unwrap_or_else(|| entry.id.clone())),
        State::Pending => Some(entry.id.clone()),
        State::Unknown | State::Over(_) | State::Dead => None,
    }
}

impl UnitOfWork {
    fn item_ttl(&self) -> Duration {
        self.backend.config.generation_ttl()
    }

    /// The most sessions a user may have, and what a login beyond does.
    fn limit(&self) -> (usize, OverLimit) {
        let config = &self.backend.config;
        let default = (MAX_SESSIONS_PER_USER, OverLimit::EndLeastRecentlySeen);
        config.session_limit.unwrap_or(default)
    }

    /// The roster of `user` at `item` made ready for a login, starting a generation (an
    /// empty roster) if there is none or the item is not one this crate wrote; the entries
    /// of the `discounted` session stay, uncounted (see [`Prepared`]). A login
    /// that would go over a limit that refuses fails here, with nothing written; sessions
    /// that cannot be read count as live, and so do those listed under the user's items of
    /// fallback keys (which another instance's logins may grow, in a rolling deploy that
    /// rotates the key: [`admit`](Self::admit) counts them again).
    pub(crate) async fn prepare(
        &self,
        item: &SessionId,
        user: &str,
        (discounted, exclusive): (Option<SessionId>, bool),
    ) -> Result<Prepared, SessionError> {
        let (mut roster, version) = self.roster_for_login(item).await?;
        let states = self.census(&roster, item, user).await;
        let mut kept: Vec<_> = roster
            .entries
            .drain(..)
            .zip(states)
            .filter(|(_, state)| *state != State::Dead)
            .collect();
        let mut read = Read {
            seen: kept
                .iter()
                .map(|(entry, state)| (entry.handle.clone(), state.seen(entry)))
                .collect(),
            ..Read::default()
        };
        let mut claims: Vec<(SessionId, Vec<String>)> = Vec::new();
        for (entry, state) in &kept {
            let Some(claimed) = claim(entry, state) else {
                continue;
            };
            match claims.iter_mut().find(|(c, _)| *c == claimed) {
                Some((_, handles)) => handles.push(entry.handle.clone()),
                None => claims.push((claimed, vec![entry.handle.clone()])),
            }
        }
        for (claimed, handles) in claims {
            if exclusive && discounted.as_ref() == Some(&claimed) {
                read.renewing = handles;
            } else if handles.len() > 1 {
                read.rivals.push(handles);
            }
        }
        // Its entries are put back once the limit is checked.
        let mut prepared = Prepared {
            roster,
            version,
            listed: Cell::new(0),
            discounted,
            exclusive,
            read: RefCell::new(read),
        };
        let (limit, over) = self.limit();
        if over == OverLimit::RefuseLogin {
            let elsewhere = self.listed_elsewhere(item, user, &prepared).await?.len();
            let counted = prepared.sessions(kept.iter().map(|(entry, _)| entry), None);
            let counted = counted.len();
            if counted + elsewhere >= limit {
                return Err(SessionError::TooManySessions { limit });
            }
        }
        if kept.len() >= MAX_ENTRIES {
            // The format's own bound, met only by many logins at once: room is made now.
            kept.sort_by_key(|(entry, state)| state.seen(entry));
            kept.drain(..=kept.len() - MAX_ENTRIES);
        }
        prepared.roster.entries = kept.into_iter().map(|(entry, _)| entry).collect();
        Ok(prepared)
    }

    /// The sessions listed, and not dead, in `user`'s items other than `item` (those of
    /// fallback keys), but those `prepared` discounts (the session a login replaces may
    /// have been bound under an old key): each with its item and when it was last seen.
    async fn listed_elsewhere(
        &self,
        item: &SessionId,
        user: &str,
        prepared: &Prepared,
    ) -> Result<Vec<(SessionId, Entry, u64)>, SessionError> {
        let mut listed = Vec::new();
        for other in self.backend.config.codec.user_items(user) {
            if other == *item {
                continue;
            }
            let Some(stored) = generation::user_item_read(self.backend.store.load(&other).await)?
            else {
                continue;
            };
            let Some(roster) = Roster::decode(&stored.data) else {
                continue;
            };
            let states = self.census(&roster, &other, user).await;
            for (entry, state) in roster.entries.into_iter().zip(states) {
                if state != State::Dead && !prepared.discounts(&entry) {
                    let seen = state.seen(&entry);
                    listed.push((other.clone(), entry, seen));
                }
            }
        }
        Ok(listed)
    }

    /// The roster at `item` and its version, started if there is none (or replaced if it
    /// is not one this crate wrote, which signs out any session that matched it: the safe
    /// side).
    async fn roster_for_login(&self, item: &SessionId) -> Result<(Roster, Version), SessionError> {
        let store = &*self.backend.store;
        let ttl = self.item_ttl();
        for _ in 0..EDIT_ATTEMPTS {
            let current = match store.load(item).await {
                Err(StoreError::TooLarge { size }) if size > roster::MAX_BYTES => {
                    // Written under a larger item limit, and no roster on any instance:
                    // this login replaces it, as it does any bytes that are not a roster.
                    // No version to compare: removed.
                    tracing::warn!(size, "user item over the store's item limit: replaced");
                    store.delete(item).await?;
                    continue;
                }
                read => read?,
            };
            if let Some(stored) = &current {
                if let Some(roster) = Roster::decode(&stored.data) {
                    return Ok((roster, stored.version));
                }
            }
            let fresh = Roster::new(roster::new_token().map_err(SessionError::Entropy)?);
            let bytes = fresh.encode();
            // Whether written or beaten to it, the next pass reads the roster back.
            match &current {
                None => drop(store.create(item, &bytes, ttl).await?),
                Some(foreign) => drop(store.update(item, &bytes, foreign.version, ttl).await?),
            }
        }
        Err(SessionError::Conflict)
    }

    /// Lists `handle` (a login of `user`, stored as `id`) in the roster `prepared` made
    /// ready, with compare-and-swap. A roster changed meanwhile (another login) is
    /// prepared again, limit included; one whose generation ended meanwhile, or whose
    /// other sessions were signed out (a sign-out racing this login, which read the roster
    /// before it), fails with a conflict. A
    /// write whose outcome is unknown (the store failed) is taken out again, best effort.
    pub(crate) async fn admit(
        &self,
        prepared: &Prepared,
        item: &SessionId,
        user: &str,
        handle: &str,
        id: &SessionId,
    ) -> Result<(), SessionError> {
        let store = &*self.backend.store;
        let mut current = prepared.clone();
        for _ in 0..EDIT_ATTEMPTS {
            let mut roster = current.roster;
            roster.put(handle, id.clone(), now_unix());
            let bytes = roster.encode();
            let ttl = self.item_ttl();
            let updated = match store.update(item, &bytes, current.version, ttl).await {
                Ok(updated) => updated,
                Err(e) => {
                    // It may have landed (a reply lost): an entry left would count as a
                    // login in flight for minutes. Best effort, as the error stands.
                    if let Err(undo) = self.end_listed(item, handle, Some(id)).await {
                        tracing::debug!(error = %undo, "a login's entry of unknown outcome left");
                    }
                    return Err(e.into());
                }
            };
            match updated {
                Update::Updated => {
                    prepared.read.swap(&current.read);
                    let counted = prepared.sessions(&roster.entries, Some(handle)).len();
                    prepared.listed.set(counted);
                    return self
                        .recount(prepared, item, user, (handle, id), counted)
                        .await;
                }
                Update::Conflict | Update::Missing => {}
            }
            let discounted = (prepared.discounted.clone(), prepared.exclusive);
            current = self.prepare(item, user, discounted).await?;
            if !current.roster.same_era(&prepared.roster) {
                return Err(SessionError::Conflict);
            }
        }
        Err(SessionError::Conflict)
    }

    /// A login admitted under a limit that refuses, with `counted` sessions in its own
    /// roster: the other keys' items are read again, and the login withdrawn (its entry
    /// taken out, 403) if they now take the user over the limit. `prepare` counted them
    /// before this compare-and-swap, which does not cover them: in a rolling deploy that
    /// rotates the key, another instance's current key is this one's fallback, and its
    /// logins list themselves there meanwhile. Of two such logins racing, the later to
    /// admit counts the earlier (both may withdraw): never over the limit.
    async fn recount(
        &self,
        prepared: &Prepared,
        item: &SessionId,
        user: &str,
        (handle, id): (&str, &SessionId),
        counted: usize,
    ) -> Result<(), SessionError> {
        let (limit, over) = self.limit();
        if over != OverLimit::RefuseLogin || !self.backend.config.codec.has_fallback_keys() {
            return Ok(());
        }
        let recount = self.listed_elsewhere(item, user, prepared).await;
        if matches!(&recount, Ok(elsewhere) if counted + elsewhere.len() <= limit) {
            return Ok(());
        }
        // Its session is removed by the commit that fails, as for any failed listing.
        if let Err(undo) = self.end_listed(item, handle, Some(id)).await {
            tracing::debug!(error = %undo, "a withdrawn login's entry left");
        }
        Err(recount
            .err()
            .unwrap_or(SessionError::TooManySessions { limit }))
    }

    /// After a login listed as `own` was written: signs out the least recently seen of
    /// `user`'s other sessions while the user has more than the limit (with a limit that
    /// refuses, `prepare` already kept it). Each roster is trimmed with compare-and-swap,
    /// counting what it holds then of the entries this login's census saw, so concurrent
    /// logins end no more than they must: an entry listed since is a newer login's, which
    /// read this one's entry and trims for both (or loses, and takes its entry away); rival
    /// logins of one session count, and go, as one.
    /// Until this has run, a user may have one session more per login in flight.
    pub(crate) async fn trim(
        &self,
        prepared: &Prepared,
        item: &SessionId,
        user: &str,
        own: &str,
    ) -> Result<(), SessionError> {
        let (limit, over) = self.limit();
        if over == OverLimit::RefuseLogin {
            return Ok(());
        }
        // Within the limit once listed, and no other key's item: a login that came after
        // read this one's entry, and trims for both.
        let one_key = !self.backend.config.codec.has_fallback_keys();
        if one_key && prepared.listed.get() <= limit {
            return Ok(());
        }
        let elsewhere = self.listed_elsewhere(item, user, prepared).await?;
        let seen = prepared.read.borrow().seen.clone();
        // Which of the other keys' sessions go: chosen with this item's, removed after.
        let mut ended_elsewhere = Vec::new();
        self.edit(item, |roster| {
            let Some(r) = roster else { return Ok(false) };
            let known = r
                .entries
                .iter()
                .filter(|e| e.handle == own || seen.contains_key(&e.handle));
            let sessions = prepared.sessions(known, Some(own));
            let over = (sessions.len() + elsewhere.len()).saturating_sub(limit);
            // Other keys' first: of sessions seen in the same second, older logins go first
            // (the sort is stable).
            let mut candidates: Vec<(u64, Option<usize>, Vec<&str>)> = elsewhere
                .iter()
                .enumerate()
                .map(|(i, (_, entry, seen))| (*seen, Some(i), vec![entry.handle.as_str()]))
                .collect();
            let others = sessions
                .iter()
                .filter(|s| s.iter().all(|e| e.handle != own));
            candidates.extend(others.map(|entries| {
                // Rival logins go together, seen when the latest of them was.
                let seen_at = |e: &&Entry| seen.get(&e.handle).copied().unwrap_or(e.since);
                let at = entries.iter().map(seen_at).max().unwrap_or_default();
                let handles = entries.iter().map(|e| e.handle.as_str()).collect();
                (at, None, handles)
            }));
            candidates.sort_by_key(|(at, _, _)| *at);
            candidates.truncate(over);
            ended_elsewhere = candidates.iter().filter_map(|(_, i, _)| *i).collect();
            let here: Vec<String> = candidates
                .iter()
                .filter(|(_, i, _)| i.is_none())
                .flat_map(|(_, _, handles)| handles.iter().map(|h| (*h).to_owned()))
                .collect();
            let before = r.entries.len();
            r.entries.retain(|e| !here.contains(&e.handle));
            Ok(r.entries.len() != before)
        })
        .await?;
        for i in ended_elsewhere {
            let (other, entry, _) = &elsewhere[i];
            self.end_listed(other, &entry.handle, Some(&entry.id))
                .await?;
        }
        Ok(())
    }

    /// Removes the entries `handles` from the roster at `item` in one edit, and says
    /// whether any was listed: a request naming many handles costs one edit per item,
    /// not one for each handle.
    pub(crate) async fn end_all_listed(
        &self,
        item: &SessionId,
        handles: &[String],
    ) -> Result<bool, SessionError> {
        self.edit(item, |roster| {
            let Some(r) = roster else { return Ok(false) };
            Ok(handles.iter().fold(false, |any, h| r.remove(h) | any))
        })
        .await
    }

    /// Applies `change` to the roster at `item` with compare-and-swap, reading it again
    /// after each lost race; `change` says whether it changed anything (or why the edit
    /// must not happen). A missing roster (or one this crate did not write) is `None`.
    pub(crate) async fn edit(
        &self,
        item: &SessionId,
        mut change: impl FnMut(Option<&mut Roster>) -> Result<bool, SessionError>,
    ) -> Result<bool, SessionError> {
        let store = &*self.backend.store;
        for _ in 0..EDIT_ATTEMPTS {
            let current = generation::user_item_read(store.load(item).await)?;
            let Some((version, mut roster)) =
                current.and_then(|c| Some((c.version, Roster::decode(&c.data)?)))
            else {
                return change(None);
            };
            if !change(Some(&mut roster))? {
                return Ok(false);
            }
            match store
                .update(item, &roster.encode(), version, self.item_ttl())
                .await?
            {
                Update::Updated => return Ok(true),
                Update::Missing => return change(None),
                Update::Conflict => {}
            }
        }
        Err(SessionError::Conflict)
    }

    /// Moves the entry `handle` (of the session holding `generation`) from the session's
    /// id `from` to `to` (a renew, or undoing one). An entry that no longer names `from`
    /// was moved by a concurrent renew, which won; a session no longer listed was signed
    /// out meanwhile: either way this one ends.
    pub(crate) async fn rename(
        &self,
        item: &SessionId,
        generation: &str,
        handle: &str,
        (from, to): (&SessionId, &SessionId),
    ) -> Result<(), SessionError> {
        self.edit(item, |roster| match roster {
            Some(r)
                if r.generation == generation && r.get(handle).is_some_and(|e| e.id == *from) =>
            {
                r.put(handle, to.clone(), now_unix());
                Ok(true)
            }
            _ => Err(SessionError::Ended),
        })
        .await
        .map(drop)
    }

    /// Ends the listed sessions `ended` on behalf of the session holding `generation` and
    /// listed as `own`: their entries go, which signs each out, and the handles not listed
    /// here come back (they may be under another key's item). A session no longer signed
    /// in itself ends nobody.
    pub(crate) async fn dismiss(
        &self,
        item: &SessionId,
        generation: &str,
        own: &str,
        ended: &BTreeSet<String>,
    ) -> Result<(Vec<String>, bool), SessionError> {
        let mut elsewhere = Vec::new();
        let removed = self
            .edit(item, |roster| match roster {
                Some(r) if r.generation == generation && r.get(own).is_some() => {
                    elsewhere.clear();
                    for handle in ended {
                        if !r.remove(handle) {
                            elsewhere.push(handle.clone());
                        }
                    }
                    Ok(elsewhere.len() != ended.len())
                }
                _ => Err(SessionError::Ended),
            })
            .await?;
        Ok((elsewhere, removed))
    }

    /// Removes the entry `handle` from the roster at `item` (only while it names `naming`,
    /// if given), whoever asks, and says whether it was listed.
    pub(crate) async fn end_listed(
        &self,
        item: &SessionId,
        handle: &str,
        naming: Option<&SessionId>,
    ) -> Result<bool, SessionError> {
        self.edit(item, |roster| {
            let Some(r) = roster else { return Ok(false) };
            let names = |e: &roster::Entry| naming.is_none_or(|id| e.id == *id);
            Ok(r.get(handle).is_some_and(names) && r.remove(handle))
        })
        .await
    }
}
