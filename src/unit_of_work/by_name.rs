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
pub(crate) struct ByName<V> {
    entries: Unsorted<V>,
    /// Bit `len % 64` set for the length of each name held, so that a lookup of a name of
    /// any other length answers at once: most lookups are of the crate's own packages,
    /// which most sessions lack (about 45 instructions each under callgrind, five an
    /// `/incr`). Made from the names alone, so equal lists have equal masks.
    lengths: u64,
}

impl<V> Default for ByName<V> {
    fn default() -> Self {
        Self {
            entries: SmallVec::new(),
            lengths: 0,
        }
    }
}

/// The bit of [`ByName::lengths`] for `name`.
fn length_bit(name: &str) -> u64 {
    1 << (name.len() % 64)
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
        let lengths = Self::lengths_of(&entries);
        Self { entries, lengths }
    }

    fn lengths_of(entries: &Unsorted<V>) -> u64 {
        let bits = entries.iter().map(|(name, _)| length_bit(name));
        bits.fold(0, |lengths, bit| lengths | bit)
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(n, _)| n.as_str().cmp(name))
    }

    /// Where `name` is. Most sessions have one or two packages and most lookups are of
    /// names of another length (the crate's own packages, which most sessions lack): a
    /// scan comparing lengths first costs less there than a binary search comparing bytes.
    fn position(&self, name: &str) -> Option<usize> {
        if self.lengths & length_bit(name) == 0 {
            None
        } else if self.entries.len() <= SCANNED {
            self.entries.iter().position(|(n, _)| n.as_str() == name)
        } else {
            self.find(name).ok()
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&V> {
        let i = self.position(name)?;
        Some(&self.entries[i].1)
    }

    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut V> {
        let i = self.position(name)?;
        Some(&mut self.entries[i].1)
    }

    /// Sets the value under `name`, in place if it is there.
    pub(crate) fn insert(&mut self, name: &str, value: V) {
        match self.find(name) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => {
                self.entries.insert(i, (CompactString::from(name), value));
                self.lengths |= length_bit(name);
            }
        }
    }

    pub(crate) fn remove(&mut self, name: &str) {
        if let Some(i) = self.position(name) {
            self.entries.remove(i);
            // Another name may share the bit.
            self.lengths = Self::lengths_of(&self.entries);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in name order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&CompactString, &V)> {
        self.entries.iter().map(|(name, value)| (name, value))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Against `BTreeMap`, the reference: the same entries in the same order from input in
    /// any order and with names given twice, then the same after each insertion and removal,
    /// and the same answer for every name looked up; lists short enough to scan and longer,
    /// names of lengths 1 to 70 (some 64 apart, which share a bit of the lengths' mask).
    #[test]
    fn it_agrees_with_a_btree_map() {
        let generator = |seed| {
            let mut random = crate::fixed_random::FixedRandom::new(seed);
            move |n: u64| random.below(n.try_into().unwrap()) as u64
        };
        let mut next = generator(0x9e37_79b9_7f4a_7c15);
        let mut next_name = generator(0x2545_f491_4f6c_dd1d);
        let mut name = move |n: u64| match next_name(4) {
            0 => CompactString::from("x".repeat(1 + next_name(70) as usize)),
            _ => CompactString::from(format!("p{}", next_name(n))),
        };
        let every_name: Vec<String> = (0..20)
            .map(|n| format!("p{n}"))
            .chain((1..=71).map(|n| "x".repeat(n)))
            .collect();
        for _ in 0..2_000 {
            let mut reference = BTreeMap::new();
            let mut unsorted = Unsorted::new();
            for value in 0..next(24) {
                let name = name(16);
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
                for name in &every_name {
                    assert_eq!(ours.get(name), reference.get(name.as_str()), "{name}");
                }
            };
            same(&ours, &reference);
            for value in 100..100 + next(8) {
                let name = name(20);
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
                        reference.insert(name.clone(), value);
                    }
                }
                same(&ours, &reference);
            }
        }
    }
}
