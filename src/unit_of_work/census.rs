//! Which of a user's listed logins are live: each entry's session is read (all at once, one
//! round trip), and only the session itself, holding the roster's generation and the
//! entry's handle, says it is. The roster alone never does.

use futures_util::future::join_all;

use super::generation;
use super::load::UnitOfWork;
use super::record::Record;
use super::roster::{Entry, Roster};
use super::timeouts::Timeouts;
use crate::clock::{now_unix, CLOCK_SKEW};
use crate::error::SessionError;
use crate::id::SessionId;
use crate::store::StoreError;

/// How long an entry may name a session that exists but does not hold it yet (a login of
/// a stored session, written entry first) before it counts as dead. Far longer than any
/// commit.
pub(crate) const PENDING_GRACE_SECS: u64 = 300;

/// What one entry's session says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// Signed in: the session holds the roster's generation and the entry's handle.
    Live(Live),
    /// A login still being written: the session exists, and does not hold the entry yet.
    Pending,
    /// Its server did not answer.
    Unknown,
    /// Holds the entry, but is past its absolute timeout by this server's clock, and still
    /// stored: when last seen. Not listed, and not removed: this server's clock may be the
    /// one that is wrong (it jumped ahead), and removing the entry would sign the session
    /// out on every server for good. The store says when it is gone: memcached expires the
    /// session when the lifetime its last write gave it ends, which the absolute timeout
    /// cut short. Counted against the limit, as a session that cannot be read is, and
    /// ranked by when it was last seen, as a live one is. (One created further ahead of
    /// this clock than a clock may drift is dead: its writer's clock ran ahead, and it
    /// may be stored for its whole idle timeout.)
    Over(u64),
    /// Gone, expired, unreadable, or holding something else (renewed away, rebound): the
    /// entry can go.
    Dead,
}

/// What a live listed session says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Live {
    pub(crate) created: u64,
    pub(crate) seen: u64,
    pub(crate) remember_me: bool,
    pub(crate) label: Option<String>,
    /// The session its login renewed away from.
    pub(crate) replaces: Option<SessionId>,
}

impl State {
    /// When the session was last seen, for choosing which to end first; an entry whose
    /// session could not be read counts from when it was written.
    pub(crate) fn seen(&self, entry: &Entry) -> u64 {
        match self {
            Self::Live(live) => live.seen,
            Self::Over(seen) => *seen,
            _ => entry.since,
        }
    }
}

impl UnitOfWork {
    /// Reads the session of every entry in `roster` (of `user`, at `item`) and says what
    /// each is.
    pub(crate) async fn census(&self, roster: &Roster, item: &SessionId, user: &str) -> Vec<State> {
        let store = &*self.backend.store;
        let reads = join_all(roster.entries.iter().map(|e| store.load(&e.id))).await;
        let now = now_unix();
        roster
            .entries
            .iter()
            .zip(reads)
            .map(|(entry, read)| match read {
                // Larger than this store reads (written under a larger item limit): as
                // unreadable as a record that does not decode. (The load lets a fresh session
                // stand in for it, so that a logout still reaches it; a listing or a login
                // here takes it for dead.)
                Err(StoreError::TooLarge { .. }) => State::Dead,
                Err(e) => {
                    tracing::debug!(error = %e, "a listed session could not be read");
                    State::Unknown
                }
                Ok(None) => State::Dead,
                Ok(Some(stored)) => match Record::decode(stored.data) {
                    Err(_) => State::Dead,
                    Ok(data) => self.state(&data, roster, entry, item, user, now),
                },
            })
            .collect()
    }

    fn state(
        &self,
        data: &Record,
        roster: &Roster,
        entry: &Entry,
        item: &SessionId,
        user: &str,
        now: u64,
    ) -> State {
        let holds = generation::bound(data) == Some(user)
            && generation::held(data) == Some(roster.generation.as_str())
            && generation::handle(data) == Some(entry.handle.as_str())
            && generation::item_of(data).as_ref() == Some(item);
        if !holds {
            // Written entry first; the session follows within the commit. An entry stamped
            // further ahead than another server's clock can be is not waited for.
            let plausible = entry.since <= now.saturating_add(CLOCK_SKEW);
            let young = now < entry.since.saturating_add(PENDING_GRACE_SECS);
            return if plausible && young {
                State::Pending
            } else {
                State::Dead
            };
        }
        // Times from the store are never later than now, whatever they say; a last-seen
        // stamp further ahead than another server's clock can be is not trusted at all
        // (it would rank the session as seen just now, for as long as it is ahead).
        let created = data.created.min(now);
        let seen = generation::seen(data)
            .filter(|&seen| seen <= now.saturating_add(CLOCK_SKEW))
            .map_or(created, |seen| seen.min(now));
        let timeouts = Timeouts::of(data, &self.backend.config);
        if timeouts.ttl(data.created, now).is_zero() {
            return if timeouts.created_ahead(data.created, now) {
                State::Dead
            } else {
                State::Over(seen)
            };
        }
        let label = data.get(generation::PACKAGE, generation::LABEL);
        State::Live(Live {
            created,
            seen,
            remember_me: timeouts.own,
            label: label.and_then(|l| l.as_str()).map(str::to_owned),
            replaces: generation::replaces(data),
        })
    }
}

impl UnitOfWork {
    /// The live sessions of `user`, by handle, across the items of every signing key, with
    /// the dead entries found on the way removed (which signs nothing in). A session whose
    /// server does not answer makes this an error: the list would not be complete.
    pub(crate) async fn live_sessions(
        &self,
        user: &str,
    ) -> Result<Vec<(String, Live)>, SessionError> {
        let items: Vec<SessionId> = self.backend.config.codec.user_items(user).collect();
        let store = &*self.backend.store;
        let rosters = join_all(items.iter().map(|item| store.load(item))).await;
        let mut live = Vec::new();
        for (item, stored) in items.iter().zip(rosters) {
            let stored = generation::user_item_read(stored)?;
            let Some(roster) = stored.and_then(|s| Roster::decode(&s.data)) else {
                continue;
            };
            let dead = self.sort(&roster, item, user, &mut live).await?;
            if dead.is_empty() {
                continue;
            }
            // A renew may have moved an entry between the roster's read and its session's:
            // the entries that name another id now are read again, and never pruned.
            let now = store
                .load(item)
                .await?
                .and_then(|s| Roster::decode(&s.data));
            if let Some(now) = now.filter(|r| r.generation == roster.generation) {
                let mut moved = Roster::new(roster.generation.clone());
                let renamed = |d: &Entry| now.get(&d.handle).filter(|e| e.id != d.id).cloned();
                moved.entries = dead.iter().filter_map(renamed).collect();
                self.sort(&moved, item, user, &mut live).await?;
            }
            self.prune(item, &roster.generation, &dead).await?;
        }
        Ok(live)
    }

    /// Reads the sessions `roster` lists, adds the live ones to `live`, and returns the
    /// dead entries. A session whose server does not answer is an error: the list would
    /// not be complete.
    async fn sort(
        &self,
        roster: &Roster,
        item: &SessionId,
        user: &str,
        live: &mut Vec<(String, Live)>,
    ) -> Result<Vec<Entry>, SessionError> {
        let states = self.census(roster, item, user).await;
        let mut dead = Vec::new();
        for (entry, state) in roster.entries.iter().zip(states) {
            match state {
                State::Live(l) => live.push((entry.handle.clone(), l)),
                State::Pending | State::Over(_) => {}
                State::Dead => dead.push(entry.clone()),
                State::Unknown => {
                    let why = "a listed session's server did not answer";
                    return Err(StoreError::Unavailable(why.into()).into());
                }
            }
        }
        Ok(dead)
    }

    /// Removes entries found dead, unless they changed since (a renewal moved one).
    async fn prune(
        &self,
        item: &SessionId,
        generation: &str,
        dead: &[Entry],
    ) -> Result<(), SessionError> {
        self.edit(item, |roster| match roster {
            Some(r) if r.generation == generation => {
                let before = r.entries.len();
                r.entries.retain(|e| !dead.contains(e));
                Ok(r.entries.len() != before)
            }
            _ => Ok(false),
        })
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::time::Duration;

    use super::*;
    use crate::store::MemoryStore;
    use crate::Key;

    /// Lists `handle` in `roster` (at `item`, of "ada") since `since`, and returns the id
    /// and stored bytes of its session, created at `created`, holding `holds`, and last
    /// seen at `seen`.
    fn listed(
        roster: &mut Roster,
        item: &SessionId,
        handle: &str,
        holds: Option<&str>,
        since: u64,
        (created, seen): (u64, Option<u64>),
    ) -> (SessionId, Vec<u8>) {
        let id = SessionId::generate().unwrap();
        roster.put(handle, id.clone(), since);
        let mut data = Record::new(created);
        data.put(generation::PACKAGE, generation::USER, Some("ada".into()));
        data.put(
            generation::PACKAGE,
            generation::GENERATION,
            Some(roster.generation.clone().into()),
        );
        data.put(
            generation::PACKAGE,
            generation::ITEM,
            Some(item.as_str().into()),
        );
        data.put(generation::PACKAGE, generation::LABEL, Some(handle.into()));
        if let Some(held) = holds {
            data.put(generation::PACKAGE, generation::HANDLE, Some(held.into()));
        }
        if let Some(seen) = seen {
            data.put(generation::PACKAGE, generation::SEEN, Some(seen.into()));
        }
        (id, data.encode().to_vec())
    }

    #[actix_web::test]
    async fn only_the_session_itself_says_it_is_live_and_a_login_in_flight_has_a_grace() {
        let builder = crate::MemcacheSession::builder(MemoryStore::new(), Key::generate());
        let uow = UnitOfWork::new(Rc::new(builder.backend()));
        let store = &*uow.backend.store;
        let item = SessionId::generate().unwrap();
        let mut roster = Roster::listing("0123456789abcdef", &[]);
        let now = now_unix();
        let ttl = Duration::from_secs(60);
        let mut put = |handle: &str, holds: Option<&str>, since: u64, created: u64| {
            listed(
                &mut roster,
                &item,
                handle,
                holds,
                since,
                (created, Some(now - 60)),
            )
        };
        let hours = |n: u64| n * 3600;
        let written = [
            put("000000000000000a", Some("000000000000000a"), now, now),
            put("000000000000000b", Some("000000000000000b"), now, now),
            put("000000000000000c", None, now, now),
            put("000000000000000d", None, now - PENDING_GRACE_SECS, now),
            put(
                "000000000000000e",
                Some("0000000000000999"),
                now - PENDING_GRACE_SECS,
                now,
            ),
            put("000000000000000f", None, now + hours(1), now),
            // Past the absolute timeout (12 hours) by this clock, and still stored.
            put(
                "0000000000000010",
                Some("0000000000000010"),
                now - hours(13),
                now - hours(13),
            ),
            // Created while another server's clock ran an hour ahead of this one.
            put(
                "0000000000000011",
                Some("0000000000000011"),
                now,
                now + hours(1),
            ),
            // Past the absolute timeout, and holding another entry.
            put(
                "0000000000000012",
                Some("0000000000000999"),
                now - hours(13),
                now - hours(13),
            ),
        ];
        for (i, (id, bytes)) in written.iter().enumerate() {
            // `b` is not stored: gone (logged out, expired).
            if i != 1 {
                assert!(store.create(id, bytes, ttl).await.unwrap());
            }
        }
        let states = uow.census(&roster, &item, "ada").await;
        assert!(
            matches!(&states[0], State::Live(l) if l.label.as_deref() == Some("000000000000000a"))
        );
        assert_eq!(states[1], State::Dead, "gone");
        assert_eq!(states[2], State::Pending, "listed first, written next");
        assert_eq!(states[3], State::Dead, "never written after its grace");
        assert_eq!(states[4], State::Dead, "holds another entry");
        assert_eq!(states[5], State::Dead, "stamped by a clock an hour ahead");
        let over = State::Over(now - 60);
        assert_eq!(states[6], over, "over by this clock, still stored");
        assert_eq!(
            over.seen(&roster.entries[6]),
            now - 60,
            "ranked by when last seen"
        );
        assert_eq!(
            states[7],
            State::Dead,
            "created ahead: its writer's clock ran ahead"
        );
        assert_eq!(states[8], State::Dead, "over, and holds another entry");
        // Not live for another user or item (within its grace, not dead yet either).
        let bob = uow.census(&roster, &item, "bob").await;
        assert_eq!(bob[0], State::Pending, "another user's");
        let other_item = SessionId::generate().unwrap();
        let elsewhere = uow.census(&roster, &other_item, "ada").await;
        assert_eq!(elsewhere[0], State::Pending);
    }

    /// A listed session past its absolute timeout by this server's clock, which may be the
    /// one that jumped ahead, is neither listed nor removed: a login keeps its line, and so
    /// does a listing, which removes only what the store no longer holds.
    #[actix_web::test]
    async fn a_session_over_by_this_clock_alone_keeps_its_line() {
        let builder = crate::MemcacheSession::builder(MemoryStore::new(), Key::generate());
        let uow = UnitOfWork::new(Rc::new(builder.backend()));
        let store = &*uow.backend.store;
        let item = uow.backend.config.codec.user_item("ada");
        let mut roster = Roster::listing("0123456789abcdef", &[]);
        let handle = "0000000000000010";
        let long_ago = now_unix() - 13 * 3600;
        let (id, bytes) = listed(
            &mut roster,
            &item,
            handle,
            Some(handle),
            long_ago,
            (long_ago, None),
        );
        let ttl = Duration::from_secs(60);
        assert!(store.create(&id, &bytes, ttl).await.unwrap());
        assert!(store.create(&item, &roster.encode(), ttl).await.unwrap());

        assert!(
            uow.live_sessions("ada").await.unwrap().is_empty(),
            "not listed"
        );
        let stored = store.load(&item).await.unwrap().unwrap();
        let after = Roster::decode(&stored.data).unwrap();
        assert_eq!(after.entries, roster.entries, "not removed by the listing");
        let prepared = uow.prepare(&item, "ada", (None, false)).await.unwrap();
        assert_eq!(prepared.roster.entries, roster.entries, "kept by a login");

        store.delete(&id).await.unwrap();
        assert!(uow.live_sessions("ada").await.unwrap().is_empty());
        let stored = store.load(&item).await.unwrap().unwrap();
        let after = Roster::decode(&stored.data).unwrap();
        assert!(
            after.entries.is_empty(),
            "removed once the store no longer holds it"
        );
    }

    /// What "ada"'s roster lists after a login over a limit of two, ending the least
    /// recently seen, with two sessions listed: each a handle, the time its line and its
    /// session were made, and its last-seen stamp.
    async fn after_a_login_over_two(listed_now: [(&str, u64, u64); 2]) -> Vec<String> {
        let builder = crate::MemcacheSession::builder(MemoryStore::new(), Key::generate())
            .max_sessions_per_user(2, crate::OverLimit::EndLeastRecentlySeen);
        let uow = UnitOfWork::new(Rc::new(builder.backend()));
        let store = &*uow.backend.store;
        let item = uow.backend.config.codec.user_item("ada");
        let mut roster = Roster::listing("0123456789abcdef", &[]);
        let ttl = Duration::from_secs(60);
        for (handle, since, seen) in listed_now {
            let (id, bytes) = listed(
                &mut roster,
                &item,
                handle,
                Some(handle),
                since,
                (since, Some(seen)),
            );
            assert!(store.create(&id, &bytes, ttl).await.unwrap());
        }
        assert!(store.create(&item, &roster.encode(), ttl).await.unwrap());
        let new = "0000000000000003";
        let prepared = uow.prepare(&item, "ada", (None, false)).await.unwrap();
        let id = SessionId::generate().unwrap();
        uow.admit(&prepared, &item, "ada", new, &id).await.unwrap();
        uow.trim(&prepared, &item, "ada", new).await.unwrap();
        let stored = store.load(&item).await.unwrap().unwrap();
        Roster::decode(&stored.data)
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.handle)
            .collect()
    }

    /// A login over the limit ranks an over session by when it was last seen, as a live
    /// one: the live session seen an hour ago goes, not the over one seen a minute ago
    /// (whose line says it logged in 13 hours ago).
    #[actix_web::test]
    async fn a_login_over_the_limit_ranks_an_over_session_by_when_it_was_seen() {
        let ago = |secs: u64| now_unix() - secs;
        let (over, live) = ("0000000000000001", "0000000000000002");
        let left = after_a_login_over_two([
            (over, ago(13 * 3600), ago(60)),
            (live, ago(2 * 3600), ago(3600)),
        ]);
        assert_eq!(
            left.await,
            [over, "0000000000000003"],
            "the least recently seen went"
        );
    }

    /// A last-seen stamp further ahead than a clock can be (written by a server whose
    /// clock ran a day ahead) is not trusted: the session ranks by its creation, and goes
    /// before one seen a minute ago. (It ranked as seen just now.)
    #[actix_web::test]
    async fn a_login_over_the_limit_does_not_trust_a_last_seen_stamp_far_ahead() {
        let ago = |secs: u64| now_unix() - secs;
        let (ahead, recent) = ("0000000000000001", "0000000000000002");
        let left = after_a_login_over_two([
            (ahead, ago(2 * 3600), now_unix() + 86_400),
            (recent, ago(3600), ago(60)),
        ]);
        assert_eq!(
            left.await,
            [recent, "0000000000000003"],
            "the one stamped ahead went"
        );
    }
}
