//! A small least-recently-used map bounded by the total weight of its values, for the lake
//! reader's caches. Eviction scans for the oldest entry: the maps hold at most a few hundred
//! entries, and a scan costs far less than the object-store read that follows a miss.

use std::collections::HashMap;
use std::hash::Hash;

pub struct Lru<K, V> {
    entries: HashMap<K, Entry<V>>,
    tick: u64,
    weight: usize,
    capacity: usize,
}

struct Entry<V> {
    value: V,
    used: u64,
    weight: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    /// A map holding values of total weight up to `capacity` (always at least one value).
    pub fn new(capacity: usize) -> Lru<K, V> {
        Lru {
            entries: HashMap::new(),
            tick: 0,
            weight: 0,
            capacity,
        }
    }

    pub fn get(&mut self, key: &K) -> Option<V> {
        self.tick += 1;
        let entry = self.entries.get_mut(key)?;
        entry.used = self.tick;
        Some(entry.value.clone())
    }

    pub fn insert(&mut self, key: K, value: V, weight: usize) {
        self.tick += 1;
        if let Some(old) = self.entries.remove(&key) {
            self.weight -= old.weight;
        }
        while !self.entries.is_empty() && self.weight + weight > self.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            if let Some(e) = oldest.and_then(|k| self.entries.remove(&k)) {
                self.weight -= e.weight;
            }
        }
        self.weight += weight;
        let used = self.tick;
        self.entries.insert(
            key,
            Entry {
                value,
                used,
                weight,
            },
        );
    }

    /// Drops every entry whose key matches `stale` (a deleted segment's chunks, say).
    pub fn remove_where(&mut self, stale: impl Fn(&K) -> bool) {
        let weight = &mut self.weight;
        self.entries.retain(|k, e| {
            let keep = !stale(k);
            if !keep {
                *weight -= e.weight;
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_to_stay_under_capacity() {
        let mut lru = Lru::new(10);
        lru.insert("a", 1, 4);
        lru.insert("b", 2, 4);
        assert_eq!(lru.get(&"a"), Some(1));
        lru.insert("c", 3, 4);
        assert_eq!(
            (lru.get(&"a"), lru.get(&"b"), lru.get(&"c")),
            (Some(1), None, Some(3))
        );
        lru.insert("huge", 4, 100);
        assert_eq!((lru.get(&"a"), lru.get(&"huge")), (None, Some(4)));
        lru.remove_where(|k| *k == "huge");
        assert_eq!(lru.get(&"huge"), None);
        assert_eq!(lru.weight, 0);
    }
}
