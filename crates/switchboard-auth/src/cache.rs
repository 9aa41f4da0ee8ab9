//! A bounded cache with one time-to-live for every entry. Sans-IO: the caller passes
//! `now`.
//!
//! Because every entry lives equally long, insertion order is also expiry order: one
//! queue serves both for dropping expired entries and for evicting the oldest when full,
//! with no scan and no per-entry timer.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

pub(crate) struct TtlCache<K, V> {
    ttl: Duration,
    max_entries: usize,
    /// key → (expiry, insertion number, value).
    entries: HashMap<K, (Instant, u64, V)>,
    /// `(key, insertion number, expiry)` in insertion order. Every entry has exactly one
    /// record with its insertion number; other records of the same key are stale (it was
    /// inserted again) and are skipped when popped.
    order: VecDeque<(K, u64, Instant)>,
    next_seq: u64,
}

/// Longer TTLs are cut to this: it is forever for a cache, and `now + ttl` stays within
/// what `Instant` can represent (the configuration bounds the TTL to 365 days, but this
/// type does not rely on that).
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 86_400);

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    /// `max_entries` is raised to at least 1, `ttl` cut to 100 years.
    pub(crate) fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl: ttl.min(MAX_TTL),
            max_entries: max_entries.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
        }
    }

    pub(crate) fn get(&mut self, key: &K, now: Instant) -> Option<V> {
        match self.entries.get(key) {
            Some((expires, _, value)) if now < *expires => Some(value.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert(&mut self, key: K, value: V, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(_, _, expires)| *expires <= now)
        {
            self.pop_oldest();
        }
        if !self.entries.contains_key(&key) {
            // Each live entry has a record, so this ends once one is evicted.
            while self.entries.len() >= self.max_entries && !self.order.is_empty() {
                self.pop_oldest();
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let expires = now + self.ttl;
        self.entries.insert(key.clone(), (expires, seq, value));
        self.order.push_back((key, seq, expires));
        // Stale records come only from re-inserting a live key (concurrent misses of
        // one identity); compacting when they pile up keeps the queue within twice the
        // entry bound, at amortized O(1) per insert.
        if self.order.len() > 2 * self.max_entries {
            let entries = &self.entries;
            self.order
                .retain(|(k, seq, _)| entries.get(k).is_some_and(|(_, s, _)| s == seq));
        }
    }

    /// Drops the front record, and its entry unless the record is stale.
    fn pop_oldest(&mut self) {
        if let Some((key, seq, _)) = self.order.pop_front() {
            if self.entries.get(&key).is_some_and(|(_, s, _)| *s == seq) {
                self.entries.remove(&key);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_and_evicts_oldest() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = TtlCache::new(s(10), 2);
        c.insert("a", 1, t0);
        c.insert("b", 2, t0 + s(1));
        assert_eq!(c.get(&"a", t0 + s(9)), Some(1));
        assert_eq!(c.get(&"a", t0 + s(10)), None, "expired at exactly ttl");
        assert_eq!(c.get(&"b", t0 + s(10)), Some(2));
        // Full: inserting evicts the oldest.
        c.insert("a", 1, t0 + s(2));
        c.insert("c", 3, t0 + s(3));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&"b", t0 + s(3)), None);
        assert_eq!(c.get(&"a", t0 + s(3)), Some(1));
        assert_eq!(c.get(&"c", t0 + s(3)), Some(3));
        // Replacing a key keeps one entry, and its stale queue record does not evict
        // the new value.
        c.insert("a", 10, t0 + s(4));
        c.insert("a", 11, t0 + s(5));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&"a", t0 + s(6)), Some(11));
        // Everything expired: the next insert clears it all.
        c.insert("z", 0, t0 + s(100));
        assert_eq!(c.len(), 1);
        assert!(c.order.len() <= 4 + 1);
    }

    /// `cache_ttl_secs` is a u64 from the configuration: a TTL past what `Instant` can
    /// add used to panic on the first insert (every handshake).
    #[test]
    fn a_ttl_beyond_the_clock_range_means_forever_not_a_panic() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(Duration::from_secs(u64::MAX), 2);
        c.insert("a", 1, t0);
        c.insert("b", 2, t0);
        c.insert("c", 3, t0 + Duration::from_secs(86_400 * 365 * 10));
        assert_eq!(
            c.get(&"c", t0 + Duration::from_secs(86_400 * 365 * 20)),
            Some(3)
        );
        assert_eq!(
            (c.len(), c.get(&"a", t0)),
            (2, None),
            "still bounded in count"
        );
    }

    #[test]
    fn queue_stays_bounded_under_rewrites() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(Duration::from_secs(1000), 3);
        for i in 0..1000u32 {
            c.insert(i % 2, i, t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(c.len(), 2);
        assert!(c.order.len() <= 2 * 3 + 1, "{}", c.order.len());
        assert_eq!(c.get(&1, t0), Some(999));
    }
}
