//! The change set: each (package, key) entry a request changed, with its value as loaded
//! and how it merges. Most requests that write change one entry: the first is kept inline
//! and a hash table is made for the second, so that such a request allocates nothing for
//! the set (a table's first allocation is 500 bytes). Hashed, not a tree: a tree's first
//! node (eleven entries, 1,336 bytes) is past the 1 KiB from which glibc's malloc leaves
//! its per-thread caches for a slower path. Nothing depends on the order.

use std::collections::HashMap;

use super::record::{Name, Slot};

/// A changed entry's name: its package and its key.
type Entry = (Name, Name);

/// The changed entries, each once.
#[derive(Debug, Clone, Default)]
pub(super) struct ChangeSet {
    /// The first entry changed, while it is kept.
    first: Option<(Entry, Change)>,
    /// Every other entry; no table until there is one (making an empty table seeds its
    /// hasher, a thread-local read and write, on every request's fresh change set).
    rest: Option<HashMap<Entry, Change>>,
}

/// One changed entry.
#[derive(Debug, Clone)]
pub(super) struct Change {
    /// The value as loaded.
    pub(super) original: Option<Slot>,
    /// How a concurrent commit of the same entry merges with it.
    pub(super) merge: Merge,
    /// Changed again since its first change (set by the change set): only then can it be
    /// back at its original value. Its first change is to another value, so an entry
    /// changed once needs no comparison to know it changed.
    pub(super) again: bool,
}

/// How a change merges with a concurrent commit that changed the same entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Merge {
    /// A conflict: first committer wins.
    Strict,
    /// The change does not depend on what was read (removing a flash message once shown):
    /// a concurrent commit that already made the same change is not a conflict.
    Blind,
    /// A time stamp (when a session was last seen): never a conflict, the later wins.
    Stamp,
    /// A removal when the session changes users: never a conflict, it wins.
    Forget,
}

impl ChangeSet {
    /// Records `change` for the entry unless the entry changed before (then marks it
    /// changed again): the first change holds what was loaded, and how it merges.
    pub(super) fn add(&mut self, package: &str, key: &str, change: impl FnOnce() -> Change) {
        let entry = || (Name::from(package), Name::from(key));
        match &mut self.first {
            Some(((p, k), first)) if p == package && k == key => first.again = true,
            None if self.rest.as_ref().is_none_or(HashMap::is_empty) => {
                self.first = Some((entry(), change()));
            }
            // Past the first entry, or with it dropped by `retain` while the table holds
            // others (which may include this one): the table.
            _ => {
                let rest = self.rest.get_or_insert_with(HashMap::new);
                rest.entry(entry())
                    .and_modify(|known| known.again = true)
                    .or_insert_with(change);
            }
        }
    }

    /// The change of `package`/`key`, if it changed: looked up, not searched (a session
    /// may hold many entries, and a change of users changes them all).
    pub(super) fn get(&self, package: &str, key: &str) -> Option<&Change> {
        if let Some(((p, k), change)) = &self.first {
            if p == package && k == key {
                return Some(change);
            }
        }
        let entry = (Name::from(package), Name::from(key));
        self.rest.as_ref()?.get(&entry)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Entry, &Change)> {
        let first = self.first.as_ref().map(|(entry, change)| (entry, change));
        first.into_iter().chain(self.rest.iter().flatten())
    }

    /// Keeps the changes for which `keep` says so.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Entry, &Change) -> bool) {
        if self.first.as_ref().is_some_and(|(e, c)| !keep(e, c)) {
            self.first = None;
        }
        if let Some(rest) = &mut self.rest {
            rest.retain(|e, c| keep(e, c));
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.as_ref().is_none_or(HashMap::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::Value;

    use super::*;

    /// Against a plain map, over random adds and removals of a few entries: every entry
    /// once, its first change kept and found by `get`, whether the first entry was dropped
    /// or not.
    #[test]
    fn agrees_with_a_map() {
        const NAMES: [(&str, &str); 4] = [("p", "a"), ("p", "b"), ("q", "a"), ("p", "")];
        const MERGES: [Merge; 4] = [Merge::Strict, Merge::Blind, Merge::Stamp, Merge::Forget];
        let change = |n: usize| Change {
            original: Some(Slot::from(Value::from(n))),
            merge: MERGES[n % MERGES.len()],
            again: false,
        };
        let first = |c: &Change| (c.original.as_ref().and_then(Slot::value).cloned(), c.merge);
        let mut random = crate::fixed_random::FixedRandom::new(0x2545_F491_4F6C_DD1D);
        let (mut dropped_first, mut added_after) = (0, 0);
        for _ in 0..2_000 {
            let mut set = ChangeSet::default();
            let mut model: HashMap<(&str, &str), usize> = HashMap::new();
            for step in 0..1 + random.below(12) {
                let (p, k) = NAMES[random.below(NAMES.len())];
                if random.below(3) == 0 {
                    let had_first = set.first.is_some();
                    set.retain(|(ep, ek), _| (ep.as_str(), ek.as_str()) != (p, k));
                    dropped_first += usize::from(had_first && set.first.is_none());
                    model.remove(&(p, k));
                } else {
                    added_after += usize::from(set.first.is_none() && !set.is_empty());
                    set.add(p, k, || change(step));
                    model.entry((p, k)).or_insert(step);
                }
                let mut ours: Vec<_> = set
                    .iter()
                    .map(|((p, k), c)| ((p.as_str(), k.as_str()), first(c)))
                    .collect();
                ours.sort_by_key(|(entry, _)| *entry);
                let mut theirs: Vec<_> = model
                    .iter()
                    .map(|(entry, &n)| (*entry, first(&change(n))))
                    .collect();
                theirs.sort_by_key(|(entry, _)| *entry);
                assert_eq!(ours, theirs);
                assert_eq!(set.is_empty(), model.is_empty());
                for (p, k) in NAMES {
                    let got = set.get(p, k).map(first);
                    assert_eq!(got, model.get(&(p, k)).map(|&n| first(&change(n))));
                }
            }
        }
        assert!(
            dropped_first > 100 && added_after > 100,
            "the inline entry dropped {dropped_first} times, added past {added_after}"
        );
    }

    #[test]
    fn one_entry_is_kept_inline() {
        let mut set = ChangeSet::default();
        let change = || Change {
            original: None,
            merge: Merge::Blind,
            again: false,
        };
        set.add("p", "k", change);
        set.add("p", "k", || unreachable!("changed before"));
        set.retain(|_, _| true);
        set.add("p", "k", || unreachable!("changed before"));
        assert!(set.rest.is_none(), "no table for one entry");
        set.add("p", "j", change);
        assert_eq!(set.iter().count(), 2);
        assert_eq!(set.first.as_ref().map(|(_, c)| c.merge), Some(Merge::Blind));
    }
}
