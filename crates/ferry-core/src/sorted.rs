//! The engine's maps, and the protocol's string maps: entries kept in key order in a
//! double-ended queue, found by binary search.
//!
//! Why not `BTreeMap`: the engine holds a dozen maps of different types, and a B-tree's node
//! code is compiled anew for each (about 10 KB of wasm each, a fifth of the npm package), where
//! this is a few small functions over a `VecDeque`. The engine's keys mostly arrive in order
//! (file ids, part numbers) and leave from the front (files start in line, parts go in order), so
//! inserting at the back and removing at the front cost nothing; an entry elsewhere moves at most
//! half the entries. The large maps (files queued, in line) are first in, first out; the others
//! hold a few files or parts at a time.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

/// A map in key order, as `BTreeMap` offers it, for the few operations the engine uses.
#[derive(Clone, PartialEq, Eq)]
pub struct SortedMap<K, V> {
    entries: VecDeque<(K, V)>,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SortedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(key, value)| (key, value)))
            .finish()
    }
}

impl<K, V> SortedMap<K, V> {
    pub const fn new() -> Self {
        Self {
            entries: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.entries.iter().map(|(key, value)| (key, value))
    }

    /// The entries in key order, their values writable.
    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = (&K, &mut V)> {
        self.entries.iter_mut().map(|(key, value)| (&*key, value))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> {
        self.entries.iter().map(|(key, _)| key)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> {
        self.entries.iter().map(|(_, value)| value)
    }

    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> {
        self.entries.iter_mut().map(|(_, value)| value)
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The entry with the least key.
    pub fn first_key_value(&self) -> Option<(&K, &V)> {
        self.entries.front().map(|(key, value)| (key, value))
    }

    /// Takes out the entry with the least key.
    pub fn pop_first(&mut self) -> Option<(K, V)> {
        self.entries.pop_front()
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    /// Where `key` is, or where it would go.
    fn position<Q>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let key_at = |index: usize| self.entries[index].0.borrow();
        let (mut low, mut high) = (0, self.entries.len());
        // Keys mostly arrive in order: one comparison with the last finds their place.
        if high > 0 && key_at(high - 1) < key {
            return Err(high);
        }
        // A search by index: `VecDeque::binary_search_by` searches its two slices, several
        // times the code, and this is compiled once per map type.
        while low < high {
            let middle = low + (high - low) / 2;
            match key_at(middle).cmp(key) {
                Ordering::Less => low = middle + 1,
                Ordering::Greater => high = middle,
                Ordering::Equal => return Ok(middle),
            }
        }
        Err(low)
    }

    /// Puts `value` under `key`; the value it replaces, if there was one.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.position(&key) {
            Ok(index) => Some(std::mem::replace(&mut self.entries[index].1, value)),
            Err(index) => {
                self.entries.insert(index, (key, value));
                None
            }
        }
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let index = self.position(key).ok()?;
        self.entries.remove(index).map(|(_, value)| value)
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let index = self.position(key).ok()?;
        Some(&self.entries[index].1)
    }

    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let index = self.position(key).ok()?;
        Some(&mut self.entries[index].1)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.position(key).is_ok()
    }

    /// The value under `key`, put there by `make` if there was none.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let index = match self.position(&key) {
            Ok(index) => index,
            Err(index) => {
                self.entries.insert(index, (key, make()));
                index
            }
        };
        &mut self.entries[index].1
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for SortedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut map = Self::new();
        for (key, value) in entries {
            map.insert(key, value);
        }
        map
    }
}

impl<K, V> IntoIterator for SortedMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::collections::vec_deque::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a, K, V> IntoIterator for &'a SortedMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<
        std::collections::vec_deque::Iter<'a, (K, V)>,
        fn(&'a (K, V)) -> (&'a K, &'a V),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(key, value)| (key, value))
    }
}

impl<'a, K, V> IntoIterator for &'a mut SortedMap<K, V> {
    type Item = (&'a K, &'a mut V);
    type IntoIter = std::iter::Map<
        std::collections::vec_deque::IterMut<'a, (K, V)>,
        fn(&'a mut (K, V)) -> (&'a K, &'a mut V),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter_mut().map(|(key, value)| (&*key, value))
    }
}

impl<K: Ord, V, const N: usize> From<[(K, V); N]> for SortedMap<K, V> {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

/// As a JSON object, the way serde writes a `BTreeMap`.
impl<K: Serialize, V: Serialize> Serialize for SortedMap<K, V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// As serde reads a `BTreeMap`: a name given twice keeps its last value.
impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Deserialize<'de> for SortedMap<K, V> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(BTreeMap::<K, V>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

impl<K: Ord + Borrow<Q>, Q: Ord + ?Sized, V> std::ops::Index<&Q> for SortedMap<K, V> {
    type Output = V;

    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry for the key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Against `BTreeMap`, the map it stands in for: the same answers to the same operations,
    /// in order, out of order, at both ends and in the middle.
    #[test]
    fn it_answers_as_a_btree_map_does() {
        let mut sorted = SortedMap::new();
        let mut btree = BTreeMap::new();
        // A deterministic mix: keys in order, out of order, repeated, removed.
        let mut state = 7u64;
        for step in 0..20_000u64 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let key = match step % 4 {
                0 | 1 => step / 2,
                _ => (state >> 33) % (step / 2 + 1),
            };
            match (state >> 20) % 5 {
                0..=2 => assert_eq!(sorted.insert(key, step), btree.insert(key, step)),
                3 => assert_eq!(sorted.remove(&key), btree.remove(&key)),
                _ => assert_eq!(sorted.pop_first(), btree.pop_first()),
            }
            assert_eq!(sorted.get(&key), btree.get(&key));
            assert_eq!(sorted.contains_key(&key), btree.contains_key(&key));
            assert_eq!(sorted.len(), btree.len());
        }
        assert!(sorted.iter().eq(btree.iter()));
        assert_eq!(sorted.first_key_value(), btree.first_key_value());
        for value in sorted.values_mut() {
            *value += 1;
        }
        assert!(
            sorted
                .values()
                .copied()
                .eq(btree.values().map(|value| value + 1))
        );
        *sorted.get_or_insert_with(u64::MAX, || 5) += 1;
        assert_eq!(sorted.get_or_insert_with(u64::MAX, || 0), &mut 6);
        assert_eq!(sorted[&u64::MAX], 6);
    }

    #[test]
    fn string_keys_are_found_by_str() {
        let mut hosts: SortedMap<String, u32> = ["b", "a", "c"]
            .into_iter()
            .map(|host| (host.to_owned(), 1))
            .collect();
        assert!(hosts.keys().map(String::as_str).eq(["a", "b", "c"]));
        *hosts.get_mut("b").unwrap() += 1;
        assert_eq!(hosts.remove("b"), Some(2));
        assert!(!hosts.contains_key("b"));
        assert!(hosts.get("z").is_none());
    }

    #[test]
    fn serde_reads_and_writes_it_as_a_btree_map() {
        let text = r#"{"b":"1","a":"2","b":"3"}"#;
        let sorted: SortedMap<String, String> = serde_json::from_str(text).unwrap();
        let btree: BTreeMap<String, String> = serde_json::from_str(text).unwrap();
        assert!(sorted.iter().eq(btree.iter()), "{sorted:?}");
        assert_eq!(
            serde_json::to_string(&sorted).unwrap(),
            serde_json::to_string(&btree).unwrap()
        );
    }
}
