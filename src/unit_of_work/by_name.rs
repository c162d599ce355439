//! A small map by name for `record`'s packages: a list sorted by name whose first entry is
//! kept inline, so that a session of one package allocates nothing for the list (a
//! `BTreeMap` allocates a node of eleven entries for the first). Sessions have a few
//! packages; a lookup is a scan up to eight and a binary search past that, an insertion a
//! shift of the entries after it (a package's entries, which may be many, stay a
//! `BTreeMap`: a loop removing them one by one would shift the rest each time).

use compact_str::CompactString;
use smallvec::SmallVec;

/// The entries of a [`ByName`] as read, in any order.
pub(crate) type Unsorted<V> = SmallVec<[(CompactString, V); 1]>;

/// The longest list looked up by a scan rather than a binary search.
const SCANNED: usize = 8;

/// Values by name, sorted by name, each name once.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ByName<V>(Unsorted<V>);

impl<V> Default for ByName<V> {
    fn default() -> Self {
        Self(SmallVec::new())
    }
}

impl<V> ByName<V> {
    /// From entries in any order; a name given twice keeps its last value, as a map
    /// inserting them in turn would. Sorted once (a sort notices input already in order),
    /// never kept sorted entry by entry, so that no order of the input costs more than a
    /// sort.
    pub(crate) fn from_unsorted(mut entries: Unsorted<V>) -> Self {
        // Reversed, then sorted stably: of two equal names the last given comes first, and
        // `dedup_by` keeps the first of each run.
        entries.reverse();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, first| later.0 == first.0);
        Self(entries)
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name))
    }

    /// Where `name` is. Most sessions have one or two packages and most lookups are of
    /// names of another length (the crate's own packages, which most sessions lack): a
    /// scan comparing lengths first costs less there than a binary search comparing bytes.
    fn position(&self, name: &str) -> Option<usize> {
        if self.0.len() <= SCANNED {
            self.0.iter().position(|(n, _)| n.as_str() == name)
        } else {
            self.find(name).ok()
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&V> {
        let i = self.position(name)?;
        Some(&self.0[i].1)
    }

    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut V> {
        let i = self.position(name)?;
        Some(&mut self.0[i].1)
    }

    /// Sets the value under `name`, in place if it is there.
    pub(crate) fn insert(&mut self, name: &str, value: V) {
        match self.find(name) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (CompactString::from(name), value)),
        }
    }

    pub(crate) fn remove(&mut self, name: &str) {
        if let Some(i) = self.position(name) {
            self.0.remove(i);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries in name order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&CompactString, &V)> {
        self.0.iter().map(|(name, value)| (name, value))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Against `BTreeMap`, the reference: the same entries in the same order from input in
    /// any order and with names given twice, then the same after each insertion and removal;
    /// lists short enough to scan and longer.
    #[test]
    fn it_agrees_with_a_btree_map() {
        let mut random = crate::fixed_random::FixedRandom::new(0x9e37_79b9_7f4a_7c15);
        let mut next = move |n: u64| random.below(n.try_into().unwrap()) as u64;
        for _ in 0..2_000 {
            let mut reference = BTreeMap::new();
            let mut unsorted = Unsorted::new();
            for value in 0..next(24) {
                let name = CompactString::from(format!("p{}", next(16)));
                reference.insert(name.clone(), value);
                unsorted.push((name, value));
            }
            let mut ours = ByName::from_unsorted(unsorted);
            let same = |ours: &ByName<u64>, reference: &BTreeMap<CompactString, u64>| {
                assert!(
                    ours.iter().eq(reference.iter()),
                    "{ours:?} against {reference:?}"
                );
                assert_eq!(ours.is_empty(), reference.is_empty());
            };
            same(&ours, &reference);
            for value in 100..100 + next(8) {
                let name = format!("p{}", next(20));
                match next(3) {
                    0 => {
                        ours.remove(&name);
                        reference.remove(name.as_str());
                    }
                    1 => {
                        if let Some(v) = ours.get_mut(&name) {
                            *v = value;
                        }
                        if let Some(v) = reference.get_mut(name.as_str()) {
                            *v = value;
                        }
                    }
                    _ => {
                        ours.insert(&name, value);
                        reference.insert(name.as_str().into(), value);
                    }
                }
                assert_eq!(ours.get(&name), reference.get(name.as_str()));
                same(&ours, &reference);
            }
        }
    }
}
