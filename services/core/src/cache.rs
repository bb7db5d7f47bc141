//! A cache of answers that may be reused for a short while, unless something changed since: a
//! certificate that passed, an organisation found active. Each entry remembers when it was made
//! and at which count of changes (a generation the owner increments when trust may have been
//! taken away); an entry older than the time to live, or from another generation, is not used.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An answer with when it was found and at which generation.
type Entry<V> = (Instant, u64, V);

/// Recent answers by key; cloning shares the cache.
#[derive(Debug, Clone)]
pub struct RecentCache<K, V> {
    entries: Arc<Mutex<HashMap<K, Entry<V>>>>,
    time_to_live: Duration,
    /// Bounds the memory: past this many entries the cache starts afresh.
    most_entries: usize,
}

impl<K: Eq + Hash, V: Clone> RecentCache<K, V> {
    pub fn new(time_to_live: Duration, most_entries: usize) -> RecentCache<K, V> {
        RecentCache {
            entries: Arc::default(),
            time_to_live,
            most_entries: most_entries.max(1),
        }
    }

    /// The answer remembered for `key` at `generation`, if it is recent enough.
    pub fn get<Q>(&self, key: &Q, generation: u64) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries
            .get(key)
            .filter(|(at, seen, _)| *seen == generation && at.elapsed() < self.time_to_live)
            .map(|(_, _, value)| value.clone())
    }

    /// Remembers `value` for `key`, as of `generation` (read before the answer was found, so
    /// that a change during the look-up leaves it unused).
    pub fn remember(&self, key: K, generation: u64, value: V) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= self.most_entries {
            entries.clear();
        }
        entries.insert(key, (Instant::now(), generation, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_reused_only_within_its_time_and_generation() {
        let cache = RecentCache::new(Duration::from_secs(60), 10);
        cache.remember("a", 1, 7);
        assert_eq!(cache.get("a", 1), Some(7));
        assert_eq!(cache.get("a", 2), None, "something changed since");
        let expired = RecentCache::new(Duration::ZERO, 10);
        expired.remember("a", 1, 7);
        assert_eq!(expired.get("a", 1), None);
    }

    #[test]
    fn a_full_cache_starts_afresh() {
        let cache = RecentCache::new(Duration::from_secs(60), 2);
        cache.remember(1, 0, ());
        cache.remember(2, 0, ());
        cache.remember(3, 0, ());
        assert_eq!((cache.get(&1, 0), cache.get(&3, 0)), (None, Some(())));
    }
}
