//! The local deny cache: a key whose bucket Redis reported empty is answered here until its
//! next cell is due, so a flood on one key costs Redis about one command per cell.
//!
//! # Why the decisions stay exact
//!
//! Each entry keeps a *lower bound* of the key's theoretical arrival time (TAT) on the local
//! monotonic clock: the TAT Redis returned, relative to Redis' "now", added to the instant the
//! request was *sent*. Redis ran the script after that instant, so the true TAT is at least as
//! late. And a TAT never moves back (other instances only push it forward; an expired key is a
//! full bucket, which a lower bound already treats as such). So when the cached bound says
//! "denied", Redis would say "denied" too; when it does not, the request goes to Redis. The
//! retry-after answered locally can be shorter than Redis' by the network delay, never longer.
//!
//! The map is bounded: at capacity, expired entries are dropped first, then an arbitrary one.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::store::gcra::{Gcra, Verdict};
use crate::store::Decision;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Lower bound of the TAT, nanoseconds on the cache's clock.
    tat: u64,
    /// The quota the TAT belongs to.
    gcra: Gcra,
}

/// A bounded map from Redis key names to known-empty buckets.
#[derive(Debug)]
pub(crate) struct DenyCache {
    capacity: usize,
    map: Mutex<HashMap<Box<[u8]>, Entry>>,
}

impl DenyCache {
    /// A cache of at most `capacity` keys; 0 disables it.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<Box<[u8]>, Entry>> {
        // The lock is only held by the code below, which does not panic: a poisoned map is
        // still a valid map.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The local denial for `cost` cells of `key` at `now`, if the cached state proves one.
    pub(crate) fn denial(&self, key: &[u8], gcra: &Gcra, cost: u32, now: u64) -> Option<Decision> {
        if self.capacity == 0 {
            return None;
        }
        let mut map = self.map();
        let entry = *map.get(key)?;
        if entry.tat <= now {
            // The bucket has refilled (at least partly): ask Redis again.
            map.remove(key);
            return None;
        }
        drop(map);
        if entry.gcra != *gcra {
            return None;
        }
        // Relative to now, as the Redis store computes its decisions.
        let tat = entry.tat - now;
        match gcra.verdict(Some(tat), 0, cost) {
            verdict @ Verdict::DenyUntil { .. } => Some(gcra.decision(verdict, Some(tat), 0)),
            Verdict::Allow { .. } | Verdict::DenyForever => None,
        }
    }

    /// Remembers that `key`'s TAT is at least `tat` (cache clock), when that denies the next
    /// single cell; forgets the key otherwise.
    pub(crate) fn record(&self, key: &[u8], gcra: &Gcra, tat: u64, now: u64) {
        if self.capacity == 0 {
            return;
        }
        let empty = tat > now && matches!(gcra.verdict(Some(tat - now), 0, 1), Verdict::DenyUntil { .. });
        let mut map = self.map();
        if !empty {
            map.remove(key);
            return;
        }
        if let Some(entry) = map.get_mut(key) {
            entry.tat = entry.tat.max(tat);
            entry.gcra = *gcra;
            return;
        }
        if map.len() >= self.capacity {
            map.retain(|_, entry| entry.tat > now);
            if map.len() >= self.capacity {
                if let Some(victim) = map.keys().next().cloned() {
                    map.remove(&victim);
                }
            }
        }
        map.insert(key.into(), Entry { tat, gcra: *gcra });
    }

    /// Keys currently cached.
    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::Quota;
    use std::num::NonZeroU32;
    use std::time::Duration;

    const MS: u64 = 1_000_000;

    fn gcra(per_second: u32, burst: u32) -> Gcra {
        Gcra::new(
            &Quota::per_second(NonZeroU32::new(per_second).unwrap())
                .allow_burst(NonZeroU32::new(burst).unwrap()),
        )
    }

    #[test]
    fn an_empty_bucket_is_denied_locally_until_its_next_cell() {
        // 10/s, burst 3: T = 100 ms, tau = 200 ms. TAT 300 ms ahead: empty for 100 ms.
        let g = gcra(10, 3);
        let cache = DenyCache::new(16);
        let now = 1_000 * MS;
        cache.record(b"k", &g, now + 300 * MS, now);
        let denied = cache.denial(b"k", &g, 1, now + 40 * MS).unwrap();
        assert!(!denied.allowed());
        assert_eq!(denied.retry_after(), Some(Duration::from_millis(60)));
        assert_eq!(denied.remaining(), 0);
        assert_eq!(denied.full_after(), Duration::from_millis(260));
        // A cost of 2 waits one cell longer.
        let two = cache.denial(b"k", &g, 2, now + 40 * MS).unwrap();
        assert_eq!(two.retry_after(), Some(Duration::from_millis(160)));
        // When the next cell is due, one cell goes to Redis; two cells are still denied.
        assert!(cache.denial(b"k", &g, 1, now + 100 * MS).is_none());
        assert!(cache.denial(b"k", &g, 2, now + 100 * MS).is_some());
        // Other keys and other quotas are not answered.
        assert!(cache.denial(b"other", &g, 1, now).is_none());
        assert!(cache.denial(b"k", &gcra(10, 4), 1, now).is_none());
    }

    #[test]
    fn a_bucket_with_room_is_not_cached_and_expired_entries_leave() {
        let g = gcra(10, 3);
        let cache = DenyCache::new(16);
        let now = 1_000 * MS;
        // TAT 200 ms ahead: one cell left, nothing to deny.
        cache.record(b"k", &g, now + 200 * MS, now);
        assert_eq!(cache.len(), 0);
        cache.record(b"k", &g, now + 300 * MS, now);
        assert_eq!(cache.len(), 1);
        // A later answer with room forgets it.
        cache.record(b"k", &g, now + 150 * MS, now);
        assert_eq!(cache.len(), 0);
        cache.record(b"k", &g, now + 300 * MS, now);
        assert!(cache.denial(b"k", &g, 1, now + 300 * MS).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn bounded_size() {
        let g = gcra(1, 1);
        let cache = DenyCache::new(4);
        let now = 10 * 1_000 * MS;
        for key in 0..100_u8 {
            cache.record(&[key], &g, now + 1_000 * MS, now);
            assert!(cache.len() <= 4);
        }
        // The newest key is always kept.
        assert!(cache.denial(&[99], &g, 1, now).is_some());
        let disabled = DenyCache::new(0);
        disabled.record(b"k", &g, now + 1_000 * MS, now);
        assert_eq!(disabled.len(), 0);
        assert!(disabled.denial(b"k", &g, 1, now).is_none());
    }
}
