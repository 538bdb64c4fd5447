//! [`MemoryStore`]: GCRA state in a sharded in-process map, with bounded memory.
//!
//! The design (layout, hot path, housekeeping, cap) is documented on [`MemoryStore`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::{ready, Ready};
use std::hash::Hash;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock, Weak};
use std::thread;
use std::time::Duration;

use super::gcra::{nanos, Gcra, Verdict, Windows, WindowsVerdict, MAX_WINDOWS};
use super::hashed::{Keyed, Probe, Stored, Table};
use super::{Clock, Decision, MonotonicClock, Store, StoreError, StoreErrorKind};
use crate::rate_limit::Quota;

const DEFAULT_MAX_KEYS: usize = 1_000_000;
const DEFAULT_HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(30);
const MIN_HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(10);
/// A full shard sweeps itself on the request path at most once this often (store time, ns)...
const CAP_PURGE_INTERVAL: u64 = 1_000_000_000;
/// ...unless new keys numbering this fraction of its share of the cap have arrived since its
/// last sweep (1/16: a sweep of the shard is paid for by a sixteenth as many new keys; under
/// steady churn it frees about as many keys as arrived). Neither applies before a key may
/// have expired: a flood of keys that stay alive never makes a shard sweep.
const CAP_PURGE_SHARE: usize = 16;
/// How often the "store full" warning may be logged.
const FULL_WARNING_INTERVAL: u64 = 10_000_000_000;
/// Lost compare-and-swap races before a request falls back to the shard's write lock.
const CAS_ATTEMPTS: usize = 64;
const MAX_SHARDS: usize = 1024;

/// What a full [`MemoryStore`] does with a request from a key it does not track yet.
///
/// Reached only when the cap of tracked keys is hit *and* no tracked key of the shard has
/// expired: at least `max_keys` clients are active at once. That is a flood of new keys (or a
/// cap set too low), so the default is the safe answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AtCapacity {
    /// Deny the request (a 429), with a retry hint of one replenish interval of its quota.
    ///
    /// The default: clients already tracked keep their buckets, and a client who can mint
    /// keys (rotated IPv6 addresses, forged identities) gains nothing by flooding. New clients
    /// are refused until keys expire, and the warning tells the operator to look.
    #[default]
    Deny,
    /// Allow the request without tracking the key (as a fresh bucket would).
    ///
    /// Nobody legitimate is refused, but while the store is full every new key is unlimited:
    /// a client who can mint keys is not limited at all. Choose it only when availability
    /// matters more than the limit.
    Allow,
}

/// The bounded in-memory [`Store`]: GCRA state per key in a sharded map, with a
/// housekeeping thread and a hard cap on tracked keys.
///
/// Clones share the same state. Examples are in the [`store`](crate::store) module.
///
/// # Layout and hot path
///
/// The map is split into shards (4 × the available parallelism, rounded up to a power of
/// two), each a `RwLock<HashMap<K, AtomicU64>>`: the 8-byte value is the key's theoretical
/// arrival time (TAT) in nanoseconds since the store's clock origin. A key is hashed once per
/// request, with SipHash under a secret key drawn at random once per process, and that hash
/// picks both the shard and the bucket: keys are chosen by clients, so neither can be
/// predicted or flooded on purpose.
///
/// A request on a tracked key takes its shard's read lock, looks the key up and updates the
/// TAT with a compare-and-swap loop: no allocation, no global lock, and no counter shared by
/// all threads is written, so threads working on different keys scale. The loop is bounded:
/// after 64 lost races the request takes the shard's write lock, under which nothing else
/// can move the TAT. A new key takes the shard's write lock once to be inserted.
///
/// # Several windows at once
///
/// A key checked under several windows (`check(key, &[per_second, per_hour], cost)`) lives
/// in a second table of the shard, holding one TAT per window (`[u64; 4]`, 32 bytes) behind a
/// small per-key `Mutex`. The decision takes the shard's read lock, then the key's lock, reads
/// every window, and writes all of them only if every window admits; the lock is held for a
/// few comparisons and stores, nothing that blocks or allocates. So the decision is atomic per
/// key — two requests never interleave between one window's check and another's charge, and
/// a denial writes nothing — while requests on other keys proceed in parallel as before. A
/// single-window key keeps its 8-byte compare-and-swap path; the two kinds of state never mix.
/// A several-window key is forgotten when its **last** window is full again.
///
/// The current time is read *after* the shard's lock is taken. Housekeeping removes a key
/// under the write lock only when its TAT is not after the time it reads, so every request
/// that sees the key gone reads a later time, and for it an expired key and an absent key
/// decide alike (see [the arithmetic](crate::store#the-arithmetic)): removal never changes a
/// decision.
///
/// # Bounded memory
///
/// - **Housekeeping thread.** By default the store owns one thread that, every 30 seconds
///   ([`MemoryStoreBuilder::housekeeping_interval`]), removes the keys whose bucket is full
///   again, shard by shard, and shrinks each shard left at most a quarter full (removing
///   alone frees nothing: a hash map keeps its table). The thread holds only a weak reference
///   to the store and stops as soon as the last clone of the store is dropped. With
///   [`MemoryStoreBuilder::manual_housekeeping`] there is no thread, and
///   [`MemoryStore::housekeep`] does the same work when called.
/// - **A hard cap** on tracked keys ([`MemoryStoreBuilder::max_keys`], default 1,000,000). Each shard holds at most its share of the cap, so no
///   counter is shared by all threads; shards fill evenly because clients cannot aim at one.
///   When a new key arrives at a full shard, the store first removes that shard's expired
///   keys, but only when one may have expired (each shard knows a lower bound of its
///   earliest expiry), and then at most once a second or once per sixteenth of the shard's
///   share of the cap in new keys: a flood of keys that stay alive never causes a sweep, and
///   under churn a sweep is paid for by the new keys that needed it. If the shard is still
///   full, [`AtCapacity`] decides, and a `tracing` warning says so (at most once every 10
///   seconds). Keys already tracked are never affected by the cap.
///
/// A key of 16 bytes costs 29 to 57 bytes of table (hash tables grow by doubling; 33 bytes
/// measured at 200,000 keys), so the default cap bounds the store near 60 MB. The table of a
/// shard never grows past twice the size its share of the cap needs (churn at the cap can
/// leave deleted slots that make a table double once, never again).
pub struct MemoryStore<K> {
    inner: Arc<Inner<K>>,
}

struct Inner<K> {
    shards: Box<[Shard<K>]>,
    clock: Arc<dyn Clock>,
    max_keys: usize,
    at_capacity: AtCapacity,
    /// Store time (ns) from which the next "store full" warning may be logged.
    next_full_warning: AtomicU64,
    housekeeping: Option<HousekeepingThread>,
    /// Dropped with the last clone of the store: the housekeeping thread's signal to stop.
    _stop: Option<mpsc::Sender<Infallible>>,
}

// Aligned to two cache lines so that the lock words of two shards never share one.
#[repr(align(128))]
struct Shard<K> {
    map: RwLock<Tables<K>>,
    /// The share of `max_keys` this shard may hold.
    cap: usize,
    /// Store time (ns) from which the next sweep forced by the cap may run.
    next_purge: AtomicU64,
    /// New keys that arrived (inserted or refused) since the shard's last sweep.
    new_keys_since_sweep: AtomicU64,
    /// No key of the shard expires before this store time (ns): a lower bound of its earliest
    /// TAT, lowered on every insert (under the write lock) and set exactly by every sweep.
    /// TATs only grow in between, so the bound stays true; a sweep before it finds nothing.
    earliest_expiry: AtomicU64,
}

impl<K> MemoryStore<K> {
    /// A builder, to set the cap, the clock or the housekeeping.
    pub fn builder() -> MemoryStoreBuilder<K> {
        MemoryStoreBuilder {
            max_keys: DEFAULT_MAX_KEYS,
            at_capacity: AtCapacity::default(),
            clock: None,
            housekeeping_interval: Some(DEFAULT_HOUSEKEEPING_INTERVAL),
            shards: None,
            _key: PhantomData,
        }
    }

    /// The number of keys tracked now (expired keys count until housekeeping removes them).
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| shard.read().len())
            .sum()
    }

    /// How many keys the store's tables can hold without growing: the memory it keeps, in
    /// keys (housekeeping shrinks it back after a flood).
    pub fn capacity(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| shard.read().capacity())
            .sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cap of tracked keys.
    pub fn max_keys(&self) -> usize {
        self.inner.max_keys
    }

    /// What the store does with a new key when it is full.
    pub fn at_capacity(&self) -> AtCapacity {
        self.inner.at_capacity
    }

    /// A handle on the housekeeping thread, `None` with manual housekeeping (or when the
    /// thread could not be started). It outlives the store.
    pub fn housekeeping_thread(&self) -> Option<HousekeepingThread> {
        self.inner.housekeeping.clone()
    }
}

impl<K> MemoryStore<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// A store with the defaults: the monotonic clock, a cap of 1,000,000 keys, new keys
    /// denied at the cap, and a housekeeping thread every 30 seconds.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Removes every key whose bucket is full again and shrinks the shards left at most a
    /// quarter full; answers how many keys were removed.
    ///
    /// The housekeeping thread calls this on its own; call it yourself with
    /// [`MemoryStoreBuilder::manual_housekeeping`]. It never changes a decision.
    pub fn housekeep(&self) -> usize {
        self.inner.housekeep()
    }

    /// The theoretical arrival time of `key` (its GCRA state), as time since the store
    /// clock's origin; `None` when the key is not tracked. For tests and diagnostics: a denied
    /// request leaves it unchanged.
    pub fn theoretical_arrival_time(&self, key: &K) -> Option<Duration> {
        let probe = Probe::new(key);
        let map = self.inner.shard(probe.hash).read();
        map.one
            .get(&probe as &dyn Keyed<K>)
            .map(|tat| Duration::from_nanos(tat.load(Ordering::Relaxed)))
    }

    /// The theoretical arrival times of `key` tracked under several windows at once, one per
    /// window in the order the windows were given (the unused tail reads zero); `None` when
    /// the key is not tracked that way. For tests and diagnostics: a denied request leaves
    /// every window unchanged.
    pub fn theoretical_arrival_times(&self, key: &K) -> Option<[Duration; MAX_WINDOWS]> {
        let probe = Probe::new(key);
        let map = self.inner.shard(probe.hash).read();
        map.many.get(&probe as &dyn Keyed<K>).map(|tats| {
            let tats = *tats.lock().unwrap_or_else(PoisonError::into_inner);
            tats.map(Duration::from_nanos)
        })
    }

    /// The state of `key`'s bucket under `quota` now, without charging anything: the decision
    /// a request of one cell would get, with nothing written. For diagnostics (the explain
    /// endpoint); an untracked key reports a full bucket. Only the single-window state: a key
    /// checked under several windows is read with
    /// [`theoretical_arrival_times`](Self::theoretical_arrival_times).
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use tower_bouncer::rate_limit::Quota;
    /// use tower_bouncer::store::{MemoryStore, Store};
    ///
    /// let store: MemoryStore<u8> = MemoryStore::new();
    /// let quota: Quota = "3/min".parse().unwrap();
    /// assert_eq!(store.peek(&1, &quota).remaining(), 3);
    /// store.check(&1, &[quota], NonZeroU32::MIN).into_inner().unwrap();
    /// assert_eq!(store.peek(&1, &quota).remaining(), 2);
    /// assert_eq!(store.peek(&1, &quota).remaining(), 2); // peeking charges nothing
    /// ```
    pub fn peek(&self, key: &K, quota: &Quota) -> Decision {
        let gcra = Gcra::new(quota);
        let now = self.inner.now();
        let tat = self.theoretical_arrival_time(key).map(nanos);
        gcra.decision(gcra.verdict(tat, now, 1), tat, now)
    }
}

impl<K> Default for MemoryStore<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K> Clone for MemoryStore<K> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K> fmt::Debug for MemoryStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.inner.shards.len())
            .field("max_keys", &self.inner.max_keys)
            .field("at_capacity", &self.inner.at_capacity)
            .field("clock", &self.inner.clock)
            .field("housekeeping", &self.inner.housekeeping)
            .finish_non_exhaustive()
    }
}

impl<K> Store<K> for MemoryStore<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Future = Ready<Result<Decision, StoreError>>;

    fn check(&self, key: &K, windows: &[Quota], cost: NonZeroU32) -> Self::Future {
        ready(match windows {
            [quota] => Ok(self.inner.decide(key, &Gcra::new(quota), cost.get())),
            _ => match Windows::new(windows) {
                Some(windows) => Ok(self.inner.decide(key, &windows, cost.get())),
                None => Err(StoreError::with_source(
                    StoreErrorKind::Other,
                    "a rate-limit check needs 1 to 4 windows",
                )),
            },
        })
    }

    /// Reads the key's TAT and computes the GCRA decision, writing nothing.
    fn preview(&self, key: &K, windows: &[Quota], cost: NonZeroU32) -> Option<Self::Future> {
        let probe = Probe::new(key);
        let map = self.inner.shard(probe.hash).read();
        let now = self.inner.now();
        let probe = &probe as &dyn Keyed<K>;
        // The state stays as it is: report it unchanged, as a denial does.
        let decision = match windows {
            [quota] => {
                let gcra = Gcra::new(quota);
                let tat = map.one.get(probe).map(|tat| tat.load(Ordering::Relaxed));
                let verdict = gcra.verdict(tat, now, cost.get());
                Ok(gcra.decision(verdict, tat, now))
            }
            _ => match Windows::new(windows) {
                Some(gcra) => {
                    let tats = map.many.get(probe).map_or([0; MAX_WINDOWS], |tats| {
                        *tats.lock().unwrap_or_else(PoisonError::into_inner)
                    });
                    let verdict = gcra.verdict(&tats, now, cost.get());
                    Ok(gcra.decision(verdict, &tats, now))
                }
                None => Err(StoreError::with_source(
                    StoreErrorKind::Other,
                    "a rate-limit check needs 1 to 4 windows",
                )),
            },
        };
        Some(ready(decision))
    }

    fn tracked_keys(&self) -> Option<usize> {
        Some(self.len())
    }
}

impl<K> Shard<K> {
    // A poisoned lock means a `Hash` or `Eq` of `K` panicked while it was held; the map is
    // still a valid map (its operations are panic-safe), so the store carries on.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables<K>> {
        self.map.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tables<K>> {
        self.map.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a full shard should sweep itself before refusing a new key: only when a key may
    /// have expired, and at most once a second or once per `cap / 16` new keys.
    fn purge_due(&self, now: u64) -> bool {
        now >= self.earliest_expiry.load(Ordering::Relaxed)
            && (now >= self.next_purge.load(Ordering::Relaxed)
                || self.new_keys_since_sweep.load(Ordering::Relaxed)
                    >= (self.cap / CAP_PURGE_SHARE) as u64)
    }

    /// Removes the keys expired at `now` (under the write lock), and records when the next
    /// one expires; answers how many were removed. A key of several windows expires when its
    /// last window is full again.
    fn sweep(&self, map: &mut Tables<K>, now: u64) -> usize {
        let before = map.len();
        let mut earliest = u64::MAX;
        map.one.retain(|_, tat| {
            let tat = *tat.get_mut();
            if tat > now {
                earliest = earliest.min(tat);
            }
            tat > now
        });
        map.many.retain(|_, tats| {
            let last =
                <Windows as Rule>::expiry(tats.get_mut().unwrap_or_else(PoisonError::into_inner));
            if last > now {
                earliest = earliest.min(last);
            }
            last > now
        });
        self.earliest_expiry.store(earliest, Ordering::Relaxed);
        self.new_keys_since_sweep.store(0, Ordering::Relaxed);
        before - map.len()
    }
}

impl<K> Inner<K> {
    fn now(&self) -> u64 {
        nanos(self.clock.now())
    }

    /// The answer for a new key when its shard is full; `state` is what it would have stored.
    fn refuse_or_pass_untracked<R: Rule>(&self, rule: &R, state: R::State, now: u64) -> Decision {
        self.warn_full(now);
        match self.at_capacity {
            AtCapacity::Deny => {
                let interval = Duration::from_nanos(rule.interval());
                Decision::denied_for(interval)
                    .with_next_cell_after(interval)
                    .with_full_after(interval)
            }
            AtCapacity::Allow => rule.allowed(state, now),
        }
    }

    fn warn_full(&self, now: u64) {
        let next = self.next_full_warning.load(Ordering::Relaxed);
        if now < next
            || self
                .next_full_warning
                .compare_exchange(
                    next,
                    now.saturating_add(FULL_WARNING_INTERVAL),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        match self.at_capacity {
            AtCapacity::Deny => tracing::warn!(
                max_keys = self.max_keys,
                "rate-limit store full: new keys are denied until tracked keys expire \
                 (a flood of new clients, or max_keys too low)"
            ),
            AtCapacity::Allow => tracing::warn!(
                max_keys = self.max_keys,
                "rate-limit store full: new keys pass unlimited and untracked until tracked \
                 keys expire (a flood of new clients, or max_keys too low)"
            ),
        }
    }
}

impl<K: Hash + Eq + Clone> Inner<K> {
    /// The shard of a key, from bits 32 and up of its hash: the table inside the shard
    /// uses the low bits (bucket) and the top 7 (tag), which then stay independent of it.
    fn shard(&self, hash: u64) -> &Shard<K> {
        // The shard count is a power of two, at most 1024: ten bits.
        let index = (hash >> 32) as usize & (self.shards.len() - 1);
        &self.shards[index]
    }

    fn housekeep(&self) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut map = shard.write();
            let now = self.now();
            removed += shard.sweep(&mut map, now);
            map.shrink();
        }
        removed
    }

    /// One decision for `key` under `rule` (one window or several): the same steps for both,
    /// each kind of key in its own table.
    fn decide<R: Rule>(&self, key: &K, rule: &R, cost: u32) -> Decision {
        let probe = Probe::new(key);
        let shard = self.shard(probe.hash);
        let probe = &probe as &dyn Keyed<K>;
        {
            let map = shard.read();
            let now = self.now();
            match R::table(&map).get(probe) {
                Some(slot) => {
                    if let Some(decision) = rule.charge_shared(slot, now, cost) {
                        return decision;
                    }
                    // Lost every race: decide under the write lock below.
                }
                None => {
                    let state = match rule.fresh(now, cost) {
                        Ok(state) => state,
                        Err(denied) => return denied,
                    };
                    // A full shard that may not sweep yet refuses without the write lock,
                    // so a flood of new keys at the cap does not block tracked keys.
                    if map.len() >= shard.cap && !shard.purge_due(now) {
                        shard.new_keys_since_sweep.fetch_add(1, Ordering::Relaxed);
                        return self.refuse_or_pass_untracked(rule, state, now);
                    }
                }
            }
        }

        let mut map = shard.write();
        let now = self.now();
        if let Some(slot) = R::table_mut(&mut map).get_mut(probe) {
            return rule.charge_exclusive(slot, now, cost);
        }
        let state = match rule.fresh(now, cost) {
            Ok(state) => state,
            Err(denied) => return denied,
        };
        if map.len() >= shard.cap {
            if shard.purge_due(now) {
                shard
                    .next_purge
                    .store(now.saturating_add(CAP_PURGE_INTERVAL), Ordering::Relaxed);
                shard.sweep(&mut map, now);
            }
            if map.len() >= shard.cap {
                shard.new_keys_since_sweep.fetch_add(1, Ordering::Relaxed);
                drop(map);
                return self.refuse_or_pass_untracked(rule, state, now);
            }
        }
        R::table_mut(&mut map).insert(Stored(key.clone()), R::slot(state));
        shard.new_keys_since_sweep.fetch_add(1, Ordering::Relaxed);
        let expiry = R::expiry(&state);
        if expiry < shard.earliest_expiry.load(Ordering::Relaxed) {
            shard.earliest_expiry.store(expiry, Ordering::Relaxed);
        }
        rule.allowed(state, now)
    }
}

/// The two tables of a shard: keys decided under one window (8 bytes of state, updated by
/// compare-and-swap) and keys decided under several (one TAT per window behind a small
/// per-key lock). Both count towards the shard's cap; a key decided both ways has two
/// independent states.
struct Tables<K> {
    one: Table<K, AtomicU64>,
    many: Table<K, Mutex<[u64; MAX_WINDOWS]>>,
}

impl<K> Default for Tables<K> {
    fn default() -> Self {
        Self {
            one: HashMap::default(),
            many: HashMap::default(),
        }
    }
}

impl<K> Tables<K> {
    fn len(&self) -> usize {
        self.one.len() + self.many.len()
    }

    fn capacity(&self) -> usize {
        self.one.capacity() + self.many.capacity()
    }
}

impl<K: Hash + Eq> Tables<K> {
    /// Gives memory back: each table left at most a quarter full keeps room for twice its
    /// keys.
    fn shrink(&mut self) {
        if self.one.len() <= self.one.capacity() / 4 {
            self.one.shrink_to(self.one.len().saturating_mul(2));
        }
        if self.many.len() <= self.many.capacity() / 4 {
            self.many.shrink_to(self.many.len().saturating_mul(2));
        }
    }
}

/// How one kind of key is decided and stored: [`Gcra`] (one window, in `Tables::one`) or
/// [`Windows`] (several, in `Tables::many`).
trait Rule {
    /// What the table holds per key.
    type Slot;
    /// The state of a key, outside the table.
    type State: Copy;

    fn table<K>(tables: &Tables<K>) -> &Table<K, Self::Slot>;
    fn table_mut<K>(tables: &mut Tables<K>) -> &mut Table<K, Self::Slot>;
    /// An absent key: the state to store when allowed, or the denial.
    fn fresh(&self, now: u64, cost: u32) -> Result<Self::State, Decision>;
    /// The decision for a key now holding `state` after being allowed.
    fn allowed(&self, state: Self::State, now: u64) -> Decision;
    /// A tracked key, under the shard's read lock; `None` to retry under the write lock.
    fn charge_shared(&self, slot: &Self::Slot, now: u64, cost: u32) -> Option<Decision>;
    /// A tracked key, under the shard's write lock.
    fn charge_exclusive(&self, slot: &mut Self::Slot, now: u64, cost: u32) -> Decision;
    fn slot(state: Self::State) -> Self::Slot;
    /// When a key holding `state` is full again (removable).
    fn expiry(state: &Self::State) -> u64;
    /// The retry hint of a refusal at the cap.
    fn interval(&self) -> u64;
}

impl Rule for Gcra {
    type Slot = AtomicU64;
    type State = u64;

    fn table<K>(tables: &Tables<K>) -> &Table<K, AtomicU64> {
        &tables.one
    }

    fn table_mut<K>(tables: &mut Tables<K>) -> &mut Table<K, AtomicU64> {
        &mut tables.one
    }

    fn fresh(&self, now: u64, cost: u32) -> Result<u64, Decision> {
        match self.verdict(None, now, cost) {
            Verdict::Allow { new_tat } => Ok(new_tat),
            verdict => Err(self.decision(verdict, None, now)),
        }
    }

    fn allowed(&self, new_tat: u64, now: u64) -> Decision {
        self.decision(Verdict::Allow { new_tat }, Some(new_tat), now)
    }

    fn charge_shared(&self, tat: &AtomicU64, now: u64, cost: u32) -> Option<Decision> {
        charge(tat, self, now, cost)
    }

    fn charge_exclusive(&self, tat: &mut AtomicU64, now: u64, cost: u32) -> Decision {
        let tat = tat.get_mut();
        let verdict = self.verdict(Some(*tat), now, cost);
        if let Verdict::Allow { new_tat } = verdict {
            *tat = new_tat;
        }
        self.decision(verdict, Some(*tat), now)
    }

    fn slot(tat: u64) -> AtomicU64 {
        AtomicU64::new(tat)
    }

    fn expiry(tat: &u64) -> u64 {
        *tat
    }

    fn interval(&self) -> u64 {
        Gcra::interval(self)
    }
}

impl Rule for Windows {
    type Slot = Mutex<[u64; MAX_WINDOWS]>;
    type State = [u64; MAX_WINDOWS];

    fn table<K>(tables: &Tables<K>) -> &Table<K, Self::Slot> {
        &tables.many
    }

    fn table_mut<K>(tables: &mut Tables<K>) -> &mut Table<K, Self::Slot> {
        &mut tables.many
    }

    fn fresh(&self, now: u64, cost: u32) -> Result<Self::State, Decision> {
        let absent = [0; MAX_WINDOWS];
        match self.verdict(&absent, now, cost) {
            WindowsVerdict::Allow { new_tats } => Ok(new_tats),
            verdict => Err(self.decision(verdict, &absent, now)),
        }
    }

    fn allowed(&self, new_tats: Self::State, now: u64) -> Decision {
        self.decision(WindowsVerdict::Allow { new_tats }, &new_tats, now)
    }

    /// The per-key lock is held only for the decision: a few comparisons and stores, nothing
    /// that can block or panic. Under the shard's read lock, so housekeeping (write lock)
    /// never removes a key while it is decided.
    fn charge_shared(&self, slot: &Self::Slot, now: u64, cost: u32) -> Option<Decision> {
        let mut tats = slot.lock().unwrap_or_else(PoisonError::into_inner);
        Some(charge_windows(self, &mut tats, now, cost))
    }

    fn charge_exclusive(&self, slot: &mut Self::Slot, now: u64, cost: u32) -> Decision {
        let tats = slot.get_mut().unwrap_or_else(PoisonError::into_inner);
        charge_windows(self, tats, now, cost)
    }

    fn slot(state: Self::State) -> Self::Slot {
        Mutex::new(state)
    }

    fn expiry(tats: &Self::State) -> u64 {
        tats.iter().copied().max().unwrap_or(0)
    }

    fn interval(&self) -> u64 {
        Windows::interval(self)
    }
}

/// Decides several windows on a key's TATs, and writes them only when every window allows.
fn charge_windows(
    windows: &Windows,
    tats: &mut [u64; MAX_WINDOWS],
    now: u64,
    cost: u32,
) -> Decision {
    let verdict = windows.verdict(tats, now, cost);
    if let WindowsVerdict::Allow { new_tats } = verdict {
        *tats = new_tats;
    }
    windows.decision(verdict, tats, now)
}

/// Charges a tracked key with a bounded compare-and-swap loop; `None` when every attempt
/// lost a race.
///
/// Relaxed ordering is enough: the TAT is the only data, and read-modify-write operations on
/// one atomic are totally ordered whatever the ordering.
fn charge(tat: &AtomicU64, gcra: &Gcra, now: u64, cost: u32) -> Option<Decision> {
    let mut current = tat.load(Ordering::Relaxed);
    for _ in 0..CAS_ATTEMPTS {
        let verdict = gcra.verdict(Some(current), now, cost);
        let Verdict::Allow { new_tat } = verdict else {
            return Some(gcra.decision(verdict, Some(current), now));
        };
        match tat.compare_exchange_weak(current, new_tat, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Some(gcra.decision(verdict, Some(new_tat), now)),
            Err(actual) => current = actual,
        }
    }
    None
}

/// Builds a [`MemoryStore`]; from [`MemoryStore::builder`].
pub struct MemoryStoreBuilder<K> {
    max_keys: usize,
    at_capacity: AtCapacity,
    clock: Option<Arc<dyn Clock>>,
    housekeeping_interval: Option<Duration>,
    shards: Option<usize>,
    _key: PhantomData<fn() -> K>,
}

impl<K> fmt::Debug for MemoryStoreBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStoreBuilder")
            .field("max_keys", &self.max_keys)
            .field("at_capacity", &self.at_capacity)
            .field("clock", &self.clock)
            .field("housekeeping_interval", &self.housekeeping_interval)
            .field("shards", &self.shards)
            .finish()
    }
}

impl<K> MemoryStoreBuilder<K> {
    /// The most keys the store tracks at once (default 1,000,000; at least 1). A key of 16
    /// bytes costs 29 to 57 bytes of table.
    #[must_use]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.max(1);
        self
    }

    /// What happens to a new key when the store is full (default [`AtCapacity::Deny`]).
    #[must_use]
    pub fn at_capacity(mut self, at_capacity: AtCapacity) -> Self {
        self.at_capacity = at_capacity;
        self
    }

    /// The clock (default [`MonotonicClock`]; tests give a
    /// [`ManualClock`](super::ManualClock)).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// How often the housekeeping thread sweeps (default 30 seconds, at least 10 ms).
    #[must_use]
    pub fn housekeeping_interval(mut self, interval: Duration) -> Self {
        self.housekeeping_interval = Some(interval.max(MIN_HOUSEKEEPING_INTERVAL));
        self
    }

    /// No housekeeping thread: expired keys are removed only when the cap is reached, or when
    /// you call [`MemoryStore::housekeep`]. For tests, and for programs that must not start
    /// threads.
    #[must_use]
    pub fn manual_housekeeping(mut self) -> Self {
        self.housekeeping_interval = None;
        self
    }

    /// The number of shards (rounded up to a power of two, at most 1024 and at most
    /// `max_keys`). The default, 4 × the available parallelism, suits almost everyone; one
    /// shard makes the cap exact to the key, for tests.
    #[must_use]
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }
}

impl<K> MemoryStoreBuilder<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Builds the store, and starts its housekeeping thread unless
    /// [`manual_housekeeping`](Self::manual_housekeeping) was chosen: one thread per store
    /// built (clones share it), asleep between sweeps. If the system refuses a thread, the
    /// store works without one (the cap still bounds it) and logs a warning.
    pub fn build(self) -> MemoryStore<K> {
        let parallelism = thread::available_parallelism().map_or(1, |n| n.get());
        let wanted = self.shards.unwrap_or(parallelism.saturating_mul(4));
        // The largest power of two not above `max_keys`, so that every shard holds a key.
        let most = (self.max_keys / 2 + 1).next_power_of_two().min(MAX_SHARDS);
        let count = wanted.clamp(1, MAX_SHARDS).next_power_of_two().min(most);
        let shards = (0..count)
            .map(|index| Shard {
                map: RwLock::new(Tables::default()),
                cap: self.max_keys / count + usize::from(index < self.max_keys % count),
                next_purge: AtomicU64::new(0),
                new_keys_since_sweep: AtomicU64::new(0),
                earliest_expiry: AtomicU64::new(u64::MAX),
            })
            .collect();
        let clock = self
            .clock
            .unwrap_or_else(|| Arc::new(MonotonicClock::new()));

        let inner = Arc::new_cyclic(|weak: &Weak<Inner<K>>| {
            let (housekeeping, stop) = match self.housekeeping_interval {
                Some(interval) => match spawn_housekeeping(weak.clone(), interval) {
                    Ok((handle, stop)) => (Some(handle), Some(stop)),
                    Err(error) => {
                        tracing::warn!(
                            %error,
                            "rate-limit store: no housekeeping thread; expired keys are \
                             removed only when the store is full"
                        );
                        (None, None)
                    }
                },
                None => (None, None),
            };
            Inner {
                shards,
                clock,
                max_keys: self.max_keys,
                at_capacity: self.at_capacity,
                next_full_warning: AtomicU64::new(0),
                housekeeping,
                _stop: stop,
            }
        });
        MemoryStore { inner }
    }
}

/// The housekeeping thread of a [`MemoryStore`], seen from outside: whether it still runs
/// and how often it swept. Cloneable, and it outlives the store.
///
/// ```
/// # #[cfg(feature = "memory")] {
/// use std::time::Duration;
/// use tower_bouncer::store::MemoryStore;
///
/// let store: MemoryStore<u64> = MemoryStore::new();
/// let thread = store.housekeeping_thread().unwrap();
/// assert!(thread.is_running());
/// drop(store);
/// assert!(thread.wait_stopped(Duration::from_secs(10)));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct HousekeepingThread {
    status: Arc<Status>,
}

#[derive(Debug, Default)]
struct Status {
    state: Mutex<StatusState>,
    changed: Condvar,
}

#[derive(Debug, Default, Clone, Copy)]
struct StatusState {
    running: bool,
    sweeps: u64,
    removed: u64,
}

impl HousekeepingThread {
    fn state(&self) -> StatusState {
        *self
            .status
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the thread still runs (it stops once the last clone of the store is dropped).
    pub fn is_running(&self) -> bool {
        self.state().running
    }

    /// How many sweeps the thread has made.
    pub fn sweeps(&self) -> u64 {
        self.state().sweeps
    }

    /// How many expired keys the thread has removed in all.
    pub fn removed(&self) -> u64 {
        self.state().removed
    }

    /// Waits until the thread has made at least `sweeps` sweeps in all, at most `timeout`;
    /// answers whether it has (`false` as well when the thread stopped first).
    pub fn wait_sweeps(&self, sweeps: u64, timeout: Duration) -> bool {
        let state = self
            .status
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (state, _) = self
            .status
            .changed
            .wait_timeout_while(state, timeout, |state| {
                state.running && state.sweeps < sweeps
            })
            .unwrap_or_else(PoisonError::into_inner);
        state.sweeps >= sweeps
    }

    /// Waits until the thread has stopped, at most `timeout`; answers whether it has.
    pub fn wait_stopped(&self, timeout: Duration) -> bool {
        let state = self
            .status
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (state, _) = self
            .status
            .changed
            .wait_timeout_while(state, timeout, |state| state.running)
            .unwrap_or_else(PoisonError::into_inner);
        !state.running
    }
}

/// Marks the thread stopped when it ends, however it ends.
struct MarkStopped(Arc<Status>);

impl Drop for MarkStopped {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.running = false;
        self.0.changed.notify_all();
    }
}

fn spawn_housekeeping<K>(
    store: Weak<Inner<K>>,
    interval: Duration,
) -> std::io::Result<(HousekeepingThread, mpsc::Sender<Infallible>)>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    let (stop, stopped) = mpsc::channel::<Infallible>();
    let status = Arc::new(Status::default());
    status
        .state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .running = true;
    let thread_status = MarkStopped(Arc::clone(&status));
    let spawned = thread::Builder::new()
        .name("tower-bouncer-housekeeping".to_owned())
        .spawn(move || {
            let status = thread_status;
            // Runs until the store is gone: every clone dropped drops the sender.
            loop {
                match stopped.recv_timeout(interval) {
                    Ok(never) => match never {},
                    Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => {
                        // `None` while the store is being built or dropped: the channel
                        // tells which on the next turn.
                        let Some(store) = store.upgrade() else {
                            continue;
                        };
                        let removed = store.housekeep();
                        drop(store);
                        let mut state = status
                            .0
                            .state
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        state.sweeps += 1;
                        state.removed += removed as u64;
                        status.0.changed.notify_all();
                    }
                }
            }
        });
    match spawned {
        Ok(_detached) => Ok((HousekeepingThread { status }, stop)),
        Err(error) => {
            // The closure (and its `MarkStopped`) was dropped: the status says "stopped".
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ManualClock;

    fn quota(text: &str) -> Quota {
        text.parse().unwrap()
    }

    fn check<K: Hash + Eq + Clone + Send + Sync + 'static>(
        store: &MemoryStore<K>,
        key: K,
        quota: &Quota,
        cost: u32,
    ) -> Decision {
        store
            .check(
                &key,
                std::slice::from_ref(quota),
                NonZeroU32::new(cost).unwrap(),
            )
            .into_inner()
            .unwrap()
    }

    fn manual(max_keys: usize, shards: usize) -> (ManualClock, MemoryStore<u64>) {
        let clock = ManualClock::new();
        let store = MemoryStore::builder()
            .clock(clock.clone())
            .max_keys(max_keys)
            .shards(shards)
            .manual_housekeeping()
            .build();
        (clock, store)
    }

    #[test]
    fn shard_counts_and_caps_add_up() {
        let table = [
            // (max_keys, shards asked, shards expected)
            (1, 8, 1),
            (2, 8, 2),
            (3, 8, 2),
            (10, 8, 8),
            (10, 3, 4),
            (1_000_000, 5000, 1024),
            (100, 0, 1),
        ];
        for (max_keys, asked, expected) in table {
            let store: MemoryStore<u64> = MemoryStore::builder()
                .max_keys(max_keys)
                .shards(asked)
                .manual_housekeeping()
                .build();
            let shards = &store.inner.shards;
            assert_eq!(shards.len(), expected, "{max_keys} {asked}");
            assert_eq!(shards.iter().map(|s| s.cap).sum::<usize>(), max_keys);
            assert!(shards.iter().all(|s| s.cap >= 1));
        }
        let zero: MemoryStore<u64> = MemoryStore::builder()
            .max_keys(0)
            .manual_housekeeping()
            .build();
        assert_eq!(zero.max_keys(), 1);
    }

    #[test]
    fn a_full_shard_refuses_new_keys_but_not_tracked_ones() {
        let (_clock, store) = manual(3, 1);
        let q = quota("2/min");
        for key in 0..3 {
            assert!(check(&store, key, &q, 1).is_allowed());
        }
        let refused = check(&store, 99, &q, 1);
        assert!(!refused.is_allowed());
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(30)));
        assert_eq!(store.len(), 3);
        // A tracked key still has its second cell.
        assert!(check(&store, 0, &q, 1).is_allowed());
        assert!(!check(&store, 0, &q, 1).is_allowed());
    }

    #[test]
    fn allow_policy_passes_new_keys_untracked() {
        let store: MemoryStore<u64> = MemoryStore::builder()
            .clock(ManualClock::new())
            .max_keys(1)
            .at_capacity(AtCapacity::Allow)
            .manual_housekeeping()
            .build();
        let q = quota("1/min");
        assert!(check(&store, 1, &q, 1).is_allowed());
        for _ in 0..5 {
            let passed = check(&store, 2, &q, 1);
            assert!(passed.is_allowed());
            assert_eq!(passed.remaining(), 0);
        }
        assert_eq!(store.len(), 1);
        assert_eq!(store.theoretical_arrival_time(&2), None);
    }

    #[test]
    fn the_cap_sweeps_only_when_a_key_may_have_expired() {
        let (clock, store) = manual(4, 1);
        let q = quota("1/s");
        for key in 0..4 {
            assert!(check(&store, key, &q, 1).is_allowed());
        }
        // Full, and nothing can expire before 1 s: refused without a sweep.
        clock.advance(Duration::from_millis(999));
        for key in 10..20 {
            assert!(!check(&store, key, &q, 1).is_allowed());
        }
        assert_eq!(
            store.inner.shards[0]
                .earliest_expiry
                .load(Ordering::Relaxed),
            1_000_000_000
        );
        clock.advance(Duration::from_millis(1));
        assert!(check(&store, 20, &q, 1).is_allowed());
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn the_cap_sweeps_at_most_once_a_second_or_once_per_quarter_of_the_shard() {
        let (clock, store) = manual(32, 1);
        let q = quota("1/s");
        assert!(check(&store, 0, &q, 1).is_allowed());
        clock.advance(Duration::from_millis(500));
        for key in 1..32 {
            assert!(check(&store, key, &q, 1).is_allowed());
        }
        // 1 s: key 0 expires; the first sweep makes room for one key.
        clock.advance(Duration::from_millis(500));
        assert!(check(&store, 100, &q, 1).is_allowed());
        assert_eq!(store.theoretical_arrival_time(&0), None);
        // 1.6 s: keys 1..32 have expired, but the last sweep was 0.6 s ago and only one new
        // key came since: the shard sweeps again once 32 / 16 = 2 new keys have come.
        clock.advance(Duration::from_millis(600));
        assert!(!check(&store, 200, &q, 1).is_allowed());
        assert!(check(&store, 201, &q, 1).is_allowed());
        assert_eq!(store.theoretical_arrival_time(&1), None);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn housekeeping_removes_only_expired_keys_and_shrinks() {
        let (clock, store) = manual(100_000, 4);
        let q = quota("1/s");
        for key in 0..10_000 {
            check(&store, key, &q, 1);
        }
        let capacity = |store: &MemoryStore<u64>| -> usize {
            store.inner.shards.iter().map(|s| s.read().capacity()).sum()
        };
        assert!(capacity(&store) >= 10_000);
        clock.advance(Duration::from_millis(999));
        assert!(check(&store, 10_000, &q, 1).is_allowed());
        assert_eq!(store.housekeep(), 0);
        clock.advance(Duration::from_millis(1));
        // Every key but 10,000 (charged at 0.999 s, full again at 1.999 s) has expired.
        assert_eq!(store.housekeep(), 10_000);
        assert_eq!(store.len(), 1);
        assert!(capacity(&store) < 16, "{}", capacity(&store));
        clock.advance(Duration::from_secs(1));
        assert_eq!(store.housekeep(), 1);
        assert_eq!(capacity(&store), 0);
    }

    #[test]
    fn cas_fallback_under_the_write_lock_decides_the_same() {
        // Drive the write-lock path directly: a tracked key decided there.
        let (_clock, store) = manual(10, 1);
        let q = quota("2/s");
        let gcra = Gcra::new(&q);
        assert!(check(&store, 7, &q, 1).is_allowed());
        let tat = AtomicU64::new(store.theoretical_arrival_time(&7).unwrap().as_nanos() as u64);
        let via_cas = charge(&tat, &gcra, 0, 1).unwrap();
        let via_store = check(&store, 7, &q, 1);
        assert_eq!(via_cas, via_store);
    }

    #[test]
    fn debug_output_names_the_settings() {
        let (_clock, store) = manual(10, 1);
        let shown = format!("{store:?}");
        assert!(shown.contains("max_keys: 10"), "{shown}");
        let builder = format!("{:?}", MemoryStore::<u64>::builder());
        assert!(builder.contains("MemoryStoreBuilder"), "{builder}");
    }
}
