//! The local deny cache: a key whose bucket Redis reported empty is answered here until its
//! next cell is due, so a flood on one key costs Redis a few commands per cell, not one per
//! request.
//!
//! # Why the decisions stay exact
//!
//! Each entry keeps a *lower bound* of the key's theoretical arrival time (TAT) on the local
//! monotonic clock: the TAT Redis returned, relative to Redis' "now", added to the instant the
//! request was *sent*. Redis ran the script after that instant, so the true TAT is at least as
//! late. And a TAT never moves back (other instances only push it forward; an expired key is a
//! full bucket, which a lower bound already treats as such). So when the cached bound says
//! "denied", Redis would say "denied" too. The retry-after answered locally can be shorter than
//! Redis' by the network delay, never longer.
//!
//! # One request per refill
//!
//! When the next cell comes due, the first request for the key becomes its *probe* and goes to
//! Redis. While the probe is on its way, a concurrent request that costs at least as much as
//! the probe, and would not fit even after the probe was charged, is denied locally: whichever
//! way Redis decides the probe, it would deny that request right after it (if the probe is
//! allowed, the bucket has its cost less; if it is denied, a request at least as large is
//! denied too). So a flood on one key sends one probe at a time to Redis, not one command per
//! concurrent request. A request that might fit goes to Redis as usual.
//!
//! The entry being a lower bound, the first probe after a refill may reach Redis a network
//! delay before the cell is really due: Redis denies it (exactly), its answer tightens the
//! bound, and the next probe takes the cell. Two or three commands per cell, in practice.
//!
//! The map is bounded and sharded (up to 16 shards, each with its own lock and its share of
//! the capacity): at capacity, a shard drops its expired entries first, then an arbitrary one.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::store::gcra::{Gcra, Verdict};
use crate::store::Decision;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Lower bound of the TAT, nanoseconds on the cache's clock.
    tat: u64,
    /// The quota the TAT belongs to.
    gcra: Gcra,
    /// The request on its way to Redis since the next cell came due: (its id, its cost).
    probe: Option<(u64, u32)>,
}

/// What the cache answers for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Denied locally: Redis would deny it too.
    Deny(Decision),
    /// Ask Redis; this request is the key's probe: pass the id to
    /// [`record`](DenyCache::record) or [`release`](DenyCache::release).
    Probe(u64),
    /// Ask Redis.
    Miss,
}

#[derive(Debug)]
struct Map {
    entries: HashMap<Box<[u8]>, Entry>,
    next_probe_id: u64,
}

/// A bounded map from Redis key names to known-empty buckets.
#[derive(Debug)]
pub(crate) struct DenyCache {
    /// Keys per shard; 0 when the cache is off.
    capacity: usize,
    shards: Box<[Mutex<Map>]>,
    hasher: RandomState,
}

const MAX_SHARDS: usize = 16;

impl DenyCache {
    /// A cache of at most `capacity` keys; 0 disables it.
    pub(crate) fn new(capacity: usize) -> Self {
        let shards = capacity.clamp(1, MAX_SHARDS);
        Self {
            capacity: capacity / shards,
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Map {
                        entries: HashMap::new(),
                        next_probe_id: 0,
                    })
                })
                .collect(),
            hasher: RandomState::new(),
        }
    }

    fn map(&self, key: &[u8]) -> MutexGuard<'_, Map> {
        // Truncating the hash keeps its low bits, enough to pick one of 16 shards.
        let shard = &self.shards[self.hasher.hash_one(key) as usize % self.shards.len()];
        // The lock is only held by the code below, which does not panic: a poisoned map is
        // still a valid map.
        shard.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What to do with `cost` cells of `key`.
    ///
    /// `now` reads the clock. It is read under the lock, after the entry's last update: an
    /// earlier reading could predate the request that recorded the entry, and overstate the
    /// wait.
    pub(crate) fn lookup(
        &self,
        key: &[u8],
        gcra: &Gcra,
        cost: u32,
        now: impl FnOnce() -> u64,
    ) -> Lookup {
        if self.capacity == 0 {
            return Lookup::Miss;
        }
        let mut map = self.map(key);
        let map = &mut *map;
        let Some(entry) = map.entries.get_mut(key) else {
            return Lookup::Miss;
        };
        if entry.gcra != *gcra {
            return Lookup::Miss;
        }
        let now = now();
        // Relative to now, as the Redis store computes its decisions.
        let tat = entry.tat.saturating_sub(now);
        if let verdict @ Verdict::DenyUntil { .. } = gcra.verdict(Some(tat), 0, cost) {
            return Lookup::Deny(gcra.decision(verdict, Some(tat), 0));
        }
        match entry.probe {
            None => {
                map.next_probe_id += 1;
                entry.probe = Some((map.next_probe_id, cost));
                Lookup::Probe(map.next_probe_id)
            }
            Some((_, probe_cost)) if cost >= probe_cost => {
                // As if the probe had been charged first.
                let after = match gcra.verdict(Some(tat), 0, probe_cost) {
                    Verdict::Allow { new_tat } => new_tat,
                    Verdict::DenyUntil { .. } | Verdict::DenyForever => return Lookup::Miss,
                };
                match gcra.verdict(Some(after), 0, cost) {
                    verdict @ Verdict::DenyUntil { .. } => {
                        Lookup::Deny(gcra.decision(verdict, Some(after), 0))
                    }
                    Verdict::Allow { .. } | Verdict::DenyForever => Lookup::Miss,
                }
            }
            Some(_) => Lookup::Miss,
        }
    }

    /// Remembers Redis' answer for `key`: its TAT is at least `tat` (cache clock). Kept when
    /// that denies the next single cell, forgotten otherwise. Ends the probe `probe`.
    pub(crate) fn record(&self, key: &[u8], gcra: &Gcra, tat: u64, now: u64, probe: Option<u64>) {
        if self.capacity == 0 {
            return;
        }
        let empty = tat > now
            && matches!(
                gcra.verdict(Some(tat - now), 0, 1),
                Verdict::DenyUntil { .. }
            );
        let mut map = self.map(key);
        let entries = &mut map.entries;
        if let Some(entry) = entries.get_mut(key) {
            if !empty {
                entries.remove(key);
                return;
            }
            entry.tat = if entry.gcra == *gcra {
                entry.tat.max(tat)
            } else {
                tat
            };
            entry.gcra = *gcra;
            if entry.probe.is_some_and(|(id, _)| Some(id) == probe) {
                entry.probe = None;
            }
            return;
        }
        if !empty {
            return;
        }
        if entries.len() >= self.capacity {
            entries.retain(|_, entry| entry.tat > now);
            if entries.len() >= self.capacity {
                if let Some(victim) = entries.keys().next().cloned() {
                    entries.remove(&victim);
                }
            }
        }
        entries.insert(
            key.into(),
            Entry {
                tat,
                gcra: *gcra,
                probe: None,
            },
        );
    }

    /// Ends the probe `probe` of `key` without an answer (Redis failed, or the request was
    /// dropped): the next request becomes the probe.
    pub(crate) fn release(&self, key: &[u8], probe: u64) {
        let mut map = self.map(key);
        if let Some(entry) = map.entries.get_mut(key) {
            if entry.probe.is_some_and(|(id, _)| id == probe) {
                entry.probe = None;
            }
        }
    }

    /// Keys currently cached.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .len()
            })
            .sum()
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

    fn denied(lookup: Lookup) -> Decision {
        match lookup {
            Lookup::Deny(decision) => decision,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_empty_bucket_is_denied_locally_until_its_next_cell() {
        // 10/s, burst 3: T = 100 ms, tau = 200 ms. TAT 300 ms ahead: empty for 100 ms.
        let g = gcra(10, 3);
        let cache = DenyCache::new(16);
        let now = 1_000 * MS;
        cache.record(b"k", &g, now + 300 * MS, now, None);
        let one = denied(cache.lookup(b"k", &g, 1, || now + 40 * MS));
        assert!(!one.allowed());
        assert_eq!(one.retry_after(), Some(Duration::from_millis(60)));
        assert_eq!(one.remaining(), 0);
        assert_eq!(one.full_after(), Duration::from_millis(260));
        // A cost of 2 waits one cell longer.
        let two = denied(cache.lookup(b"k", &g, 2, || now + 40 * MS));
        assert_eq!(two.retry_after(), Some(Duration::from_millis(160)));
        // When the next cell is due, two cells are still denied locally, one goes to Redis.
        denied(cache.lookup(b"k", &g, 2, || now + 100 * MS));
        assert!(matches!(
            cache.lookup(b"k", &g, 1, || now + 100 * MS),
            Lookup::Probe(_)
        ));
        // Other keys and other quotas are not answered.
        assert_eq!(cache.lookup(b"other", &g, 1, || now), Lookup::Miss);
        assert_eq!(cache.lookup(b"k", &gcra(10, 4), 1, || now), Lookup::Miss);
    }

    #[test]
    fn one_probe_per_refill() {
        // 10/s, burst 1: T = 100 ms, tau = 0.
        let g = gcra(10, 1);
        let cache = DenyCache::new(16);
        let now = 1_000 * MS;
        cache.record(b"k", &g, now + 100 * MS, now, None);
        let due = now + 100 * MS;
        let Lookup::Probe(probe) = cache.lookup(b"k", &g, 1, || due) else {
            panic!("the first request after the refill is the probe")
        };
        // While it is on its way, the flood is denied as if it came right after it (the probe
        // charged at this moment fills the bucket until one cell later).
        for _ in 0..100 {
            let decision = denied(cache.lookup(b"k", &g, 1, || due + MS));
            assert_eq!(decision.retry_after(), Some(Duration::from_millis(100)));
        }
        // Redis answers (allowed: TAT one cell ahead): the probe ends, the key stays cached.
        cache.record(b"k", &g, due + 100 * MS, due + MS, Some(probe));
        denied(cache.lookup(b"k", &g, 1, || due + 2 * MS));
        // A probe that fails is released: the next request probes again.
        let Lookup::Probe(second) = cache.lookup(b"k", &g, 1, || due + 100 * MS) else {
            panic!("a new probe after the next refill")
        };
        cache.release(b"k", second);
        assert!(matches!(
            cache.lookup(b"k", &g, 1, || due + 100 * MS),
            Lookup::Probe(third) if third != second
        ));
    }

    #[test]
    fn a_request_that_might_fit_goes_to_redis_during_a_probe() {
        // 10/s, burst 3: T = 100 ms, tau = 200 ms; TAT 300 ms ahead (empty).
        let g = gcra(10, 3);
        let now = 1_000 * MS;
        let cache_at = |tat| {
            let cache = DenyCache::new(16);
            cache.record(b"k", &g, tat, now, None);
            cache
        };

        // 150 ms later one cell is free: a probe of 1, then another 1 cannot fit after it.
        let later = now + 150 * MS;
        let cache = cache_at(now + 300 * MS);
        assert!(matches!(
            cache.lookup(b"k", &g, 1, || later),
            Lookup::Probe(_)
        ));
        denied(cache.lookup(b"k", &g, 1, || later));

        // 250 ms later two cells are free: a second request of 1 fits after the probe.
        let much_later = now + 250 * MS;
        let cache = cache_at(now + 300 * MS);
        assert!(matches!(
            cache.lookup(b"k", &g, 1, || much_later),
            Lookup::Probe(_)
        ));
        assert_eq!(cache.lookup(b"k", &g, 1, || much_later), Lookup::Miss);

        // A probe of 2, then a request of 1: if Redis denies the probe (another instance took
        // a cell), the smaller request may still fit. It goes to Redis.
        let cache = cache_at(now + 300 * MS);
        assert!(matches!(
            cache.lookup(b"k", &g, 2, || much_later),
            Lookup::Probe(_)
        ));
        assert_eq!(cache.lookup(b"k", &g, 1, || much_later), Lookup::Miss);
        // A request of 3 cannot fit at all yet: denied without a probe.
        denied(cache.lookup(b"k", &g, 3, || much_later));
    }

    #[test]
    fn a_bucket_with_room_is_not_cached() {
        let g = gcra(10, 3);
        let cache = DenyCache::new(16);
        let now = 1_000 * MS;
        // TAT 200 ms ahead: one cell left, nothing to deny.
        cache.record(b"k", &g, now + 200 * MS, now, None);
        assert_eq!(cache.len(), 0);
        cache.record(b"k", &g, now + 300 * MS, now, None);
        assert_eq!(cache.len(), 1);
        // A later answer with room forgets it.
        cache.record(b"k", &g, now + 150 * MS, now, None);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn bounded_size() {
        let g = gcra(1, 1);
        let cache = DenyCache::new(4);
        let now = 10 * 1_000 * MS;
        for key in 0..100_u8 {
            cache.record(&[key], &g, now + 1_000 * MS, now, None);
            assert!(cache.len() <= 4);
        }
        // The newest key is always kept.
        denied(cache.lookup(&[99], &g, 1, || now));
        // Sharded: the total stays within the capacity.
        let cache = DenyCache::new(100);
        for key in 0..10_000_u32 {
            cache.record(&key.to_be_bytes(), &g, now + 1_000 * MS, now, None);
        }
        assert!(cache.len() <= 100 && cache.len() >= 90, "{}", cache.len());
        let disabled = DenyCache::new(0);
        disabled.record(b"k", &g, now + 1_000 * MS, now, None);
        assert_eq!(disabled.len(), 0);
        assert_eq!(disabled.lookup(b"k", &g, 1, || now), Lookup::Miss);
    }
}
