//! The local deny cache: what this instance knows of a key's buckets, so that a flood on one
//! key costs Redis about one command per cell instead of one per request.
//!
//! # Why the decisions stay exact
//!
//! Each entry keeps a *lower bound* of each bucket's theoretical arrival time (TAT) on the
//! local monotonic clock: the TAT Redis returned, relative to Redis' "now", added to the
//! instant the request was *sent* (less one microsecond: Redis' `TIME` has microsecond
//! resolution, so its "now" may lag the true instant by up to that). Redis ran the script after
//! that instant, so the true TAT is at least as late. And a TAT never moves back (other
//! instances only push it forward; an expired key is a full bucket, which a lower bound
//! already treats as such). A request is denied locally only when this lower bound denies it
//! at the moment it is answered: Redis, asked at that moment, would deny it too. The
//! retry-after answered locally can be shorter than Redis' by the network delay, never longer.
//!
//! # Requests in flight: wait for the answers instead of asking again
//!
//! An entry also counts the cells this instance has sent to Redis for the key and not yet seen
//! answered. A request that could not fit even if every one of them were admitted does not go
//! to Redis: it *waits* for their answers (at most the store's timeout), then looks again. An
//! answer can only raise the lower bound, so the waiting request is then denied locally if the
//! bound proves Redis would deny it, and sent otherwise. Waiting changes the moment a request is
//! decided, never the rule it is decided by: the decision stays exact. So 64 concurrent first
//! requests on a fresh key of burst 1 cost Redis one command: one goes, 63 wait for its answer
//! and are denied by it. A request that might fit never waits: with room in the bucket (the
//! allow path) requests go to Redis concurrently, pipelined on the multiplexed connection.
//!
//! # One probe per refill
//!
//! The lower bound may be early by up to the network delay of the request that measured it, so
//! a request sent the moment the bound lets a cell through may reach Redis before the cell is
//! due, be denied there, and cost a second command. Each entry therefore also keeps an
//! *estimate* from above: the TAT Redis returned added to the instant its answer *arrived*
//! (plus a microsecond), which is where the TAT is unless another instance moved it. A request
//! that the lower bound no longer denies but the estimate still does is *held* until the
//! estimate lets it through (one round trip at most, within the store's timeout), then looks
//! again: the first one is sent, and the others find it in flight and wait for its answer. With
//! one instance the cell is due when that request reaches Redis: one command per cell.
//!
//! # Memory
//!
//! An entry lives while requests are in flight for its key, and then only while it still
//! denies or holds a request of one cell. The map is bounded and sharded (up to 16 shards, each
//! with its own lock and its share of the capacity): at capacity, a shard drops the entries that
//! no longer serve, then an arbitrary one without requests in flight; when every entry has
//! requests in flight, a new key goes to Redis untracked. No lock is held across an await:
//! waiting requests hold a handle to the entry's [`Notify`], made by the first of them.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::rule::{Outcome, Rule};
use crate::store::gcra::MAX_WINDOWS;
use crate::store::hashed::{Keyed, Probe, Stored, Table};
use crate::store::Decision;

/// Redis' `TIME` resolution, in nanoseconds: the margin of both bounds.
const RESOLUTION: u64 = 1_000;

#[derive(Debug)]
struct Entry {
    /// This entry's identity: tickets of an earlier entry under the same name do not count.
    id: u64,
    /// Lower bound of each bucket's TAT (nanoseconds on the cache's clock; 0: nothing known).
    lower: [u64; MAX_WINDOWS],
    /// Each bucket's TAT unless another instance moved it: when to send the next request.
    estimate: [u64; MAX_WINDOWS],
    /// Cells sent to Redis for this key and not answered yet.
    in_flight: u64,
    /// Changes at every answer or release: a waiter that saw another value has news.
    version: u64,
    /// Until when the entry denies or holds one cell; kept until then, or while in flight.
    serves_until: u64,
    /// Wakes the requests waiting for this key's answers (made by the first of them).
    notify: Option<Arc<Notify>>,
}

/// A request on its way to Redis, counted in its key's entry until
/// [`record`](DenyCache::record) or [`release`](DenyCache::release) ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    /// The entry's id; 0 when the request is not tracked (a full cache, or no cache).
    entry: u64,
    cost: u64,
}

impl Ticket {
    const UNTRACKED: Self = Self { entry: 0, cost: 0 };
}

/// A request waiting for the answers in flight for its key.
#[derive(Debug, Clone)]
pub(crate) struct Wait {
    /// Notified at every answer or release for the key.
    pub(crate) notify: Arc<Notify>,
    /// The entry's version when the request started waiting.
    pub(crate) version: u64,
}

/// What the cache answers for one request.
#[derive(Debug, Clone)]
pub(crate) enum Lookup {
    /// Denied locally: Redis would deny it too.
    Deny(Decision),
    /// Ask Redis, then end the ticket with [`record`](DenyCache::record) or
    /// [`release`](DenyCache::release).
    Send(Ticket),
    /// Wait until the entry's version changes (create the [`Notify`]'s `notified()` future,
    /// then check [`version`](DenyCache::version)), then look again.
    Wait(Wait),
    /// Look again after this many nanoseconds: the next cell is due by then.
    Hold(u64),
}

struct Map {
    /// Bucket names, hashed once per operation (the hash also picks the shard).
    entries: Table<Box<[u8]>, Entry>,
    /// Entry ids and versions, unique within the shard.
    counter: u64,
}

impl std::fmt::Debug for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Map")
            .field("entries", &self.entries.len())
            .field("counter", &self.counter)
            .finish()
    }
}

impl Map {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }
}

/// A bounded map from the names of Redis buckets to what this instance knows of them.
#[derive(Debug)]
pub(crate) struct DenyCache {
    /// Keys per shard; 0 when the cache is off.
    capacity: usize,
    shards: Box<[Mutex<Map>]>,
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
                        entries: Table::default(),
                        counter: 0,
                    })
                })
                .collect(),
        }
    }

    /// The shard of the key whose hash is `hash`.
    fn map(&self, hash: u64) -> MutexGuard<'_, Map> {
        // The high half picks the shard: the table inside uses the low bits.
        let shard = &self.shards[(hash >> 32) as usize % self.shards.len()];
        // The lock is only held by the code below, which does not panic: a poisoned map is
        // still a valid map.
        shard.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What to do with `cost` cells of `key` under `rule`.
    ///
    /// `deadline` (cache clock) bounds waiting and holding: from then on the request is sent.
    /// `now` reads the clock. It is read under the lock, after the entry's last update: an
    /// earlier reading could predate the request that recorded the entry, and overstate the
    /// wait.
    pub(crate) fn lookup(
        &self,
        key: &[u8],
        rule: &Rule,
        cost: u32,
        deadline: u64,
        now: impl FnOnce() -> u64,
    ) -> Lookup {
        if self.capacity == 0 {
            return Lookup::Send(Ticket::UNTRACKED);
        }
        let probe = Probe::new(key);
        let probe = &probe as &dyn Keyed<[u8]>;
        let mut map = self.map(probe.hash());
        let map = &mut *map;
        let now = now();
        let Some(entry) = map.entries.get_mut(probe) else {
            let id = map.next();
            let ticket = match self.insert(map, probe, now, id) {
                Some(entry) => {
                    entry.in_flight = u64::from(cost);
                    Ticket {
                        entry: id,
                        cost: u64::from(cost),
                    }
                }
                None => Ticket::UNTRACKED,
            };
            return Lookup::Send(ticket);
        };
        let lower = relative(&entry.lower, now);
        let (outcome, decision) = rule.decide(&lower, cost);
        if let Outcome::DenyFor(_) = outcome {
            return Lookup::Deny(decision);
        }
        if now < deadline {
            // If every cell in flight were admitted, would this one still fit? If not, wait
            // for their answers rather than ask.
            if entry.in_flight > 0 {
                let ahead = advance(&lower, rule, entry.in_flight);
                if let Outcome::DenyFor(_) = rule.outcome(&ahead, cost) {
                    let notify = entry.notify.get_or_insert_with(|| Arc::new(Notify::new()));
                    return Lookup::Wait(Wait {
                        notify: Arc::clone(notify),
                        version: entry.version,
                    });
                }
            }
            let estimate = advance(&relative(&entry.estimate, now), rule, entry.in_flight);
            if let Outcome::DenyFor(wait) = rule.outcome(&estimate, cost) {
                if wait <= deadline - now {
                    return Lookup::Hold(wait);
                }
            }
        }
        entry.in_flight = entry.in_flight.saturating_add(u64::from(cost));
        Lookup::Send(Ticket {
            entry: entry.id,
            cost: u64::from(cost),
        })
    }

    /// The version of `key`'s entry (`None`: no entry): a waiter whose version changed has
    /// news.
    pub(crate) fn version(&self, key: &[u8]) -> Option<u64> {
        if self.capacity == 0 {
            return None;
        }
        let probe = Probe::new(key);
        let probe = &probe as &dyn Keyed<[u8]>;
        self.map(probe.hash())
            .entries
            .get(probe)
            .map(|entry| entry.version)
    }

    /// Remembers Redis' answer for `key` under `rule`, and ends `ticket`. `sent` and
    /// `received` are the instants the request left and its answer came (cache clock);
    /// `after` is each bucket's TAT after the request, relative to Redis' now.
    pub(crate) fn record(
        &self,
        key: &[u8],
        rule: &Rule,
        ticket: Ticket,
        sent: u64,
        received: u64,
        after: &[u64; MAX_WINDOWS],
    ) {
        if self.capacity == 0 {
            return;
        }
        let mut lower = [0; MAX_WINDOWS];
        let mut estimate = [0; MAX_WINDOWS];
        for window in 0..rule.len() {
            lower[window] = sent
                .saturating_add(after[window])
                .saturating_sub(RESOLUTION);
            estimate[window] = received
                .saturating_add(after[window])
                .saturating_add(RESOLUTION);
        }
        let probe = Probe::new(key);
        let probe = &probe as &dyn Keyed<[u8]>;
        let mut map = self.map(probe.hash());
        let map = &mut *map;
        let version = map.next();
        if let Some(entry) = map.entries.get_mut(probe) {
            if ticket.entry == entry.id {
                entry.in_flight = entry.in_flight.saturating_sub(ticket.cost);
            }
            for window in 0..rule.len() {
                entry.lower[window] = entry.lower[window].max(lower[window]);
                entry.estimate[window] = entry.estimate[window]
                    .max(estimate[window])
                    .max(entry.lower[window]);
            }
            entry.serves_until = serves_until(rule, &entry.estimate, received);
            Self::changed(&mut map.entries, probe, version, received);
            return;
        }
        // No entry (an untracked request, or one evicted): keep the answer if it serves.
        let serves = serves_until(rule, &estimate, received);
        if serves <= received {
            return;
        }
        let id = map.next();
        if let Some(entry) = self.insert(map, probe, received, id) {
            entry.lower = lower;
            entry.estimate = estimate;
            entry.serves_until = serves;
        }
    }

    /// Ends `ticket` of `key` without an answer (Redis failed, or the request was dropped):
    /// the requests waiting for it look again.
    pub(crate) fn release(&self, key: &[u8], ticket: Ticket, now: u64) {
        if self.capacity == 0 || ticket == Ticket::UNTRACKED {
            return;
        }
        let probe = Probe::new(key);
        let probe = &probe as &dyn Keyed<[u8]>;
        let mut map = self.map(probe.hash());
        let map = &mut *map;
        let version = map.next();
        if let Some(entry) = map.entries.get_mut(probe) {
            if entry.id == ticket.entry {
                entry.in_flight = entry.in_flight.saturating_sub(ticket.cost);
                Self::changed(&mut map.entries, probe, version, now);
            }
        }
    }

    /// `key`'s entry changed: a new version, its waiters woken, and the entry dropped when it
    /// serves no more.
    fn changed(
        entries: &mut Table<Box<[u8]>, Entry>,
        key: &dyn Keyed<[u8]>,
        version: u64,
        now: u64,
    ) {
        let Some(entry) = entries.get_mut(key) else {
            return;
        };
        entry.version = version;
        if let Some(notify) = &entry.notify {
            notify.notify_waiters();
        }
        if entry.in_flight == 0 && entry.serves_until <= now {
            entries.remove(key);
        }
    }

    /// A new, empty entry for `key` (the caller fills it), making room at capacity; `None`
    /// when every entry of the shard has requests in flight.
    fn insert<'a>(
        &self,
        map: &'a mut Map,
        key: &dyn Keyed<[u8]>,
        now: u64,
        id: u64,
    ) -> Option<&'a mut Entry> {
        let entries = &mut map.entries;
        if entries.len() >= self.capacity {
            entries.retain(|_, entry| {
                let keep = entry.in_flight > 0 || entry.serves_until > now;
                if !keep {
                    wake(entry);
                }
                keep
            });
        }
        if entries.len() >= self.capacity {
            // One victim: the first entry without requests in flight.
            let mut evicted = false;
            entries.retain(|_, entry| {
                if evicted || entry.in_flight > 0 {
                    return true;
                }
                evicted = true;
                wake(entry);
                false
            });
            if !evicted {
                return None;
            }
        }
        // The callers looked the key up and found nothing: a plain insert (which hashes the
        // stored name once more, on this path only), then the entry through the probe.
        entries.insert(
            Stored(key.key().into()),
            Entry {
                id,
                lower: [0; MAX_WINDOWS],
                estimate: [0; MAX_WINDOWS],
                in_flight: 0,
                version: id,
                serves_until: 0,
                notify: None,
            },
        );
        entries.get_mut(key)
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

/// Wakes the requests waiting on an entry that goes away: they look again.
fn wake(entry: &Entry) {
    if let Some(notify) = &entry.notify {
        notify.notify_waiters();
    }
}

/// Times on the cache's clock made relative to `now` (past times are 0: now).
fn relative(times: &[u64; MAX_WINDOWS], now: u64) -> [u64; MAX_WINDOWS] {
    times.map(|time| time.saturating_sub(now))
}

/// Relative TATs after `cells` more cells were charged to every window of `rule`.
fn advance(tats: &[u64; MAX_WINDOWS], rule: &Rule, cells: u64) -> [u64; MAX_WINDOWS] {
    let mut ahead = *tats;
    for (window, tat) in ahead.iter_mut().enumerate().take(rule.len()) {
        *tat = tat.saturating_add(cells.saturating_mul(rule.interval(window)));
    }
    ahead
}

/// Until when TATs estimated at `estimate` deny one cell under `rule` (`now`: not even now).
fn serves_until(rule: &Rule, estimate: &[u64; MAX_WINDOWS], now: u64) -> u64 {
    match rule.outcome(&relative(estimate, now), 1) {
        Outcome::DenyFor(wait) => now.saturating_add(wait),
        Outcome::Allow(_) | Outcome::DenyForever => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::Quota;
    use std::num::NonZeroU32;
    use std::time::Duration;

    const MS: u64 = 1_000_000;
    const US: u64 = 1_000;
    const FAR: u64 = u64::MAX;

    fn rule(per_second: u32, burst: u32) -> Rule {
        Rule::new(&[Quota::per_second(NonZeroU32::new(per_second).unwrap())
            .allow_burst(NonZeroU32::new(burst).unwrap())])
        .unwrap()
    }

    fn denied(lookup: Lookup) -> Decision {
        match lookup {
            Lookup::Deny(decision) => decision,
            other => panic!("{other:?}"),
        }
    }

    fn sent(lookup: Lookup) -> Ticket {
        match lookup {
            Lookup::Send(ticket) => ticket,
            other => panic!("{other:?}"),
        }
    }

    fn waits(lookup: Lookup) -> Wait {
        match lookup {
            Lookup::Wait(wait) => wait,
            other => panic!("{other:?}"),
        }
    }

    /// Redis answered a request sent at `at` within a microsecond, TAT `after` ahead.
    fn answer(cache: &DenyCache, rule: &Rule, ticket: Ticket, at: u64, after: u64) {
        cache.record(b"k", rule, ticket, at, at + US, &[after, 0, 0, 0]);
    }

    #[test]
    fn an_empty_bucket_is_denied_locally_until_its_next_cell() {
        // 10/s, burst 3: T = 100 ms, tau = 200 ms. TAT 300 ms ahead: empty for 100 ms.
        let r = rule(10, 3);
        let cache = DenyCache::new(16);
        let now = 1_000 * MS;
        let ticket = sent(cache.lookup(b"k", &r, 1, FAR, || now));
        answer(&cache, &r, ticket, now, 300 * MS + US);
        let one = denied(cache.lookup(b"k", &r, 1, FAR, || now + 40 * MS));
        assert!(!one.is_allowed());
        assert_eq!(one.retry_after(), Some(Duration::from_millis(60)));
        assert_eq!(one.remaining(), 0);
        assert_eq!(one.full_after(), Duration::from_millis(260));
        // A cost of 2 waits one cell longer.
        let two = denied(cache.lookup(b"k", &r, 2, FAR, || now + 40 * MS));
        assert_eq!(two.retry_after(), Some(Duration::from_millis(160)));
        // When the next cell is due, two cells are still denied locally, one goes to Redis
        // (after a microsecond's hold: the estimate from above).
        denied(cache.lookup(b"k", &r, 2, FAR, || now + 100 * MS));
        assert!(matches!(
            cache.lookup(b"k", &r, 1, FAR, || now + 100 * MS),
            Lookup::Hold(wait) if wait <= 3 * US
        ));
        sent(cache.lookup(b"k", &r, 1, FAR, || now + 100 * MS + 3 * US));
        // Other keys are not answered; the same bucket under another quota is (a TAT is a
        // time, whatever the quota that wrote it).
        sent(cache.lookup(b"other", &r, 1, FAR, || now));
        denied(cache.lookup(b"k", &rule(10, 2), 1, FAR, || now + 100 * MS));
    }

    #[test]
    fn concurrent_requests_wait_for_the_first_answer_when_they_cannot_fit() {
        // 10/s, burst 1: a fresh key, 64 concurrent requests. One goes to Redis, the others
        // wait for its answer.
        let r = rule(10, 1);
        let cache = DenyCache::new(16);
        let now = 1_000 * MS;
        let first = sent(cache.lookup(b"k", &r, 1, FAR, || now));
        let version = cache.version(b"k").unwrap();
        let waiting: Vec<Wait> = (0..63)
            .map(|_| waits(cache.lookup(b"k", &r, 1, FAR, || now)))
            .collect();
        assert!(waiting.iter().all(|wait| wait.version == version));
        assert!(Arc::ptr_eq(&waiting[0].notify, &waiting[62].notify));
        // The answer (admitted, TAT one cell ahead) changes the version: the waiters look
        // again and are denied locally.
        answer(&cache, &r, first, now, 100 * MS);
        assert_ne!(cache.version(b"k"), Some(version));
        for _ in 0..63 {
            let decision = denied(cache.lookup(b"k", &r, 1, FAR, || now + 2 * US));
            assert!(decision.retry_after().unwrap() <= Duration::from_millis(100));
        }
    }

    #[test]
    fn with_room_in_the_bucket_nobody_waits() {
        // The allow path: a huge burst, one hot key, every concurrent request goes to Redis.
        let r = rule(1_000_000_000, 1_000_000_000);
        let cache = DenyCache::new(16);
        let now = 1_000 * MS;
        let tickets: Vec<Ticket> = (0..1_000)
            .map(|_| sent(cache.lookup(b"k", &r, 1, FAR, || now)))
            .collect();
        for ticket in tickets {
            answer(&cache, &r, ticket, now, 500);
        }
        // Nothing in flight and nothing to deny: the entry is gone.
        assert_eq!(cache.len(), 0);
        // Burst 3: three requests in flight, the fourth waits.
        let r = rule(10, 3);
        for _ in 0..3 {
            sent(cache.lookup(b"k", &r, 1, FAR, || now));
        }
        waits(cache.lookup(b"k", &r, 1, FAR, || now));
        // A cost of 2 waits once 2 are in flight.
        let cache = DenyCache::new(16);
        sent(cache.lookup(b"k", &r, 1, FAR, || now));
        sent(cache.lookup(b"k", &r, 1, FAR, || now));
        waits(cache.lookup(b"k", &r, 2, FAR, || now));
    }

    #[test]
    fn a_release_wakes_the_waiters_and_the_next_one_is_sent() {
        let r = rule(10, 1);
        let cache = DenyCache::new(16);
        let now = 1_000 * MS;
        let first = sent(cache.lookup(b"k", &r, 1, FAR, || now));
        let wait = waits(cache.lookup(b"k", &r, 1, FAR, || now));
        // Redis failed: the next request goes.
        cache.release(b"k", first, now + MS);
        assert_ne!(cache.version(b"k"), Some(wait.version));
        let second = sent(cache.lookup(b"k", &r, 1, FAR, || now + MS));
        waits(cache.lookup(b"k", &r, 1, FAR, || now + MS));
        // A stale ticket (of an entry since replaced) changes nothing.
        cache.release(b"k", first, now + MS);
        waits(cache.lookup(b"k", &r, 1, FAR, || now + MS));
        cache.release(b"k", second, now + MS);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn past_the_deadline_a_request_is_sent_instead_of_waiting() {
        let r = rule(10, 1);
        let cache = DenyCache::new(16);
        let now = 1_000 * MS;
        sent(cache.lookup(b"k", &r, 1, now + 50 * MS, || now));
        waits(cache.lookup(b"k", &r, 1, now + 50 * MS, || now + 49 * MS));
        sent(cache.lookup(b"k", &r, 1, now + 50 * MS, || now + 50 * MS));
    }

    #[test]
    fn one_probe_per_refill() {
        // 10/s, burst 1: T = 100 ms. The answer came 200 µs after the request was sent: the
        // TAT is somewhere in a 200 µs range (plus a microsecond each side).
        let r = rule(10, 1);
        let cache = DenyCache::new(16);
        let now = 1_000 * MS;
        let ticket = sent(cache.lookup(b"k", &r, 1, FAR, || now));
        cache.record(b"k", &r, ticket, now, now + 200 * US, &[100 * MS, 0, 0, 0]);
        let due = now + 100 * MS;
        // Before the lower bound: denied.
        denied(cache.lookup(b"k", &r, 1, FAR, || due - 2 * US));
        // Between the bounds: held until the estimate, not sent early.
        assert_eq!(
            match cache.lookup(b"k", &r, 1, FAR, || due) {
                Lookup::Hold(wait) => wait,
                other => panic!("{other:?}"),
            },
            201 * US
        );
        // Not held beyond the deadline: sent.
        sent(cache.lookup(b"k", &r, 1, due + 100 * US, || due));
        let cache = DenyCache::new(16);
        let ticket = sent(cache.lookup(b"k", &r, 1, FAR, || now));
        cache.record(b"k", &r, ticket, now, now + 200 * US, &[100 * MS, 0, 0, 0]);
        // At the estimate: the first request is the probe, the flood waits for its answer.
        let at = due + 201 * US;
        let probe = sent(cache.lookup(b"k", &r, 1, FAR, || at));
        for _ in 0..100 {
            waits(cache.lookup(b"k", &r, 1, FAR, || at));
        }
        answer(&cache, &r, probe, at, 100 * MS);
        for _ in 0..100 {
            let decision = denied(cache.lookup(b"k", &r, 1, FAR, || at + 2 * US));
            assert!(decision.retry_after().unwrap() <= Duration::from_millis(100));
        }
    }

    #[test]
    fn several_windows_are_cached_per_bucket() {
        // 10/s burst 2, and 20/min (one cell every 3 s): the minute window empties first.
        let quotas = [
            Quota::per_second(NonZeroU32::new(10).unwrap())
                .allow_burst(NonZeroU32::new(2).unwrap()),
            Quota::per_minute(NonZeroU32::new(20).unwrap())
                .allow_burst(NonZeroU32::new(1).unwrap()),
        ];
        let r = Rule::new(&quotas).unwrap();
        let cache = DenyCache::new(16);
        let now = 1_000 * MS;
        let ticket = sent(cache.lookup(b"k", &r, 1, FAR, || now));
        // Admitted: 100 ms in the first window, 3 s in the second.
        waits(cache.lookup(b"k", &r, 1, FAR, || now));
        cache.record(
            b"k",
            &r,
            ticket,
            now + US,
            now + 2 * US,
            &[100 * MS, 3_000 * MS, 0, 0],
        );
        let decision = denied(cache.lookup(b"k", &r, 1, FAR, || now + 500 * MS));
        assert_eq!(decision.retry_after(), Some(Duration::from_millis(2_500)));
        assert_eq!(
            decision.window_full_after(1),
            Some(Duration::from_millis(2_500))
        );
    }

    #[test]
    fn bounded_size() {
        let r = rule(1, 1);
        let cache = DenyCache::new(4);
        let now = 10 * 1_000 * MS;
        for key in 0..100_u8 {
            cache.record(
                &[key],
                &r,
                Ticket::UNTRACKED,
                now,
                now,
                &[1_000 * MS, 0, 0, 0],
            );
            assert!(cache.len() <= 4);
        }
        // The newest key is always kept.
        denied(cache.lookup(&[99], &r, 1, FAR, || now));
        // Entries with requests in flight are not evicted: a new key goes untracked.
        let cache = DenyCache::new(1);
        let first = sent(cache.lookup(b"a", &r, 1, FAR, || now));
        assert_eq!(
            sent(cache.lookup(b"b", &r, 1, FAR, || now)),
            Ticket::UNTRACKED
        );
        waits(cache.lookup(b"a", &r, 1, FAR, || now));
        cache.release(b"a", first, now);
        sent(cache.lookup(b"b", &r, 1, FAR, || now));
        // Sharded: the total stays within the capacity.
        let cache = DenyCache::new(100);
        for key in 0..10_000_u32 {
            cache.record(
                &key.to_be_bytes(),
                &r,
                Ticket::UNTRACKED,
                now,
                now,
                &[1_000 * MS, 0, 0, 0],
            );
        }
        assert!(cache.len() <= 100 && cache.len() >= 90, "{}", cache.len());
        let disabled = DenyCache::new(0);
        disabled.record(
            b"k",
            &r,
            Ticket::UNTRACKED,
            now,
            now,
            &[1_000 * MS, 0, 0, 0],
        );
        assert_eq!(disabled.len(), 0);
        assert_eq!(
            sent(disabled.lookup(b"k", &r, 1, FAR, || now)),
            Ticket::UNTRACKED
        );
    }
}
