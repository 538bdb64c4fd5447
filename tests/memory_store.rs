//! The in-memory store under concurrency, at its cap, and across housekeeping (issue 4:
//! "the in-memory store", "bounded memory", "N tasks hammering one key admit exactly the
//! burst").
#![cfg(feature = "memory")]

use std::io;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use governor::clock::{Clock as _, FakeRelativeClock};
use tower_bouncer::rate_limit::Quota;
use tower_bouncer::store::{
    AtCapacity, Clock, Decision, HousekeepingThread, ManualClock, MemoryStore, MemoryStoreBuilder,
    MonotonicClock, Store, StoreError,
};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn quota(text: &str) -> Quota {
    text.parse().unwrap()
}

fn check<K>(store: &MemoryStore<K>, key: K, quota: &Quota, cost: u32) -> Decision
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    store
        .check(&key, std::slice::from_ref(quota), nz(cost))
        .into_inner()
        .unwrap()
}

fn manual_store<K>(clock: &ManualClock) -> MemoryStore<K>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    MemoryStore::builder()
        .clock(clock.clone())
        .manual_housekeeping()
        .build()
}

/// The IP key of the layer is 16 bytes; the tests use the same shape.
type IpKey = [u8; 16];

fn ip_key(n: u64) -> IpKey {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&n.to_be_bytes());
    key
}

#[test]
fn issue_4_threads_hammering_one_key_admit_exactly_the_burst() {
    let clock = ManualClock::new();
    let store: MemoryStore<IpKey> = manual_store(&clock);
    let q = quota("50/h");
    let admitted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let admitted = Arc::clone(&admitted);
            thread::spawn(move || {
                for _ in 0..2_000 {
                    if check(&store, ip_key(1), &q, 1).is_allowed() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(admitted.load(Ordering::Relaxed), 50);
    assert_eq!(store.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_4_tasks_hammering_one_key_with_costs_admit_exactly_the_burst() {
    let clock = ManualClock::new();
    let store: MemoryStore<IpKey> = manual_store(&clock);
    // Burst 100, costs of 1 to 3: the cells admitted add up to exactly 100 once the bucket
    // cannot fit even one more cell.
    let q = quota("100/min");
    let tasks: Vec<_> = (0..64u32)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut cells = 0;
                for round in 0..200u32 {
                    let cost = 1 + (task + round) % 3;
                    let decision = store.check(&ip_key(9), &[q], nz(cost)).await.unwrap();
                    if decision.is_allowed() {
                        cells += cost;
                    }
                    tokio::task::yield_now().await;
                }
                cells
            })
        })
        .collect();
    let mut cells = 0;
    for task in tasks {
        cells += task.await.unwrap();
    }
    // Cells may be left over when the last asks were bigger than what remained: drain them
    // (time stands still) and count. Exactly the burst in all.
    let mut left = 0;
    while left <= 100 && check(&store, ip_key(9), &q, 1).is_allowed() {
        left += 1;
    }
    assert!(left < 3, "{left}");
    assert_eq!(cells + left, 100);
}

#[test]
fn issue_4_cost_above_the_burst_is_denied_without_hint_and_changes_nothing() {
    let clock = ManualClock::new();
    let store: MemoryStore<IpKey> = manual_store(&clock);
    let q = quota("5/min");

    // Unknown key: denied forever, still untracked.
    let never = check(&store, ip_key(1), &q, 6);
    assert!(!never.is_allowed());
    assert_eq!(never.retry_after(), None);
    assert_eq!(never.remaining(), 5);
    assert_eq!(store.theoretical_arrival_time(&ip_key(1)), None);

    // Tracked key: denied forever, TAT unchanged.
    assert!(check(&store, ip_key(2), &q, 2).is_allowed());
    let tat = store.theoretical_arrival_time(&ip_key(2));
    assert_eq!(tat, Some(Duration::from_secs(24)));
    let never = check(&store, ip_key(2), &q, 6);
    assert!(!never.is_allowed());
    assert_eq!(never.retry_after(), None);
    assert_eq!(never.remaining(), 3);
    assert_eq!(store.theoretical_arrival_time(&ip_key(2)), tat);
}

#[test]
fn issue_4_a_denial_changes_nothing() {
    let clock = ManualClock::new();
    let store: MemoryStore<IpKey> = manual_store(&clock);
    let q = quota("2/s");
    assert!(check(&store, ip_key(3), &q, 2).is_allowed());
    let tat = store.theoretical_arrival_time(&ip_key(3));
    for _ in 0..100 {
        let denied = check(&store, ip_key(3), &q, 1);
        assert!(!denied.is_allowed());
        assert_eq!(denied.retry_after(), Some(Duration::from_millis(500)));
    }
    assert_eq!(store.theoretical_arrival_time(&ip_key(3)), tat);
    clock.advance(Duration::from_millis(500));
    assert!(check(&store, ip_key(3), &q, 1).is_allowed());
}

#[test]
fn issue_4_retry_after_equals_governors_wait() {
    // 3 per 10 s, costs 1 and 2, at uneven times.
    let q = Quota::with_period(Duration::from_millis(3_333))
        .unwrap()
        .allow_burst(nz(3));
    let manual = ManualClock::new();
    let store: MemoryStore<IpKey> = manual_store(&manual);
    let fake = FakeRelativeClock::default();
    let limiter = governor::RateLimiter::<_, _, _, governor::middleware::NoOpMiddleware<_>>::new(
        governor::Quota::with_period(Duration::from_millis(3_333))
            .unwrap()
            .allow_burst(nz(3)),
        governor::state::keyed::DefaultKeyedStateStore::<IpKey>::default(),
        fake.clone(),
    );
    let plan = [
        (0, 2),
        (0, 1),
        (0, 1),
        (1_200, 2),
        (2_500, 1),
        (10, 2),
        (9_000, 3),
    ];
    let mut denials = 0;
    for (advance_ms, cost) in plan {
        manual.advance(Duration::from_millis(advance_ms));
        fake.advance(Duration::from_millis(advance_ms));
        let ours = check(&store, ip_key(4), &q, cost);
        match limiter.check_key_n(&ip_key(4), nz(cost)).unwrap() {
            Ok(()) => assert!(ours.is_allowed()),
            Err(not_until) => {
                denials += 1;
                assert_eq!(
                    ours.retry_after(),
                    Some(not_until.wait_time_from(fake.now()))
                );
            }
        }
    }
    assert_eq!(denials, 4);
}

#[test]
fn reports_remaining_next_cell_and_full_times() {
    let clock = ManualClock::new();
    let store: MemoryStore<IpKey> = manual_store(&clock);
    let q = quota("10/s").allow_burst(nz(5));
    let first = check(&store, ip_key(5), &q, 2);
    assert!(first.is_allowed());
    assert_eq!(first.remaining(), 3);
    assert_eq!(first.next_cell_after(), Duration::ZERO);
    assert_eq!(first.full_after(), Duration::from_millis(200));
    let drained = check(&store, ip_key(5), &q, 3);
    assert_eq!(drained.remaining(), 0);
    assert_eq!(drained.next_cell_after(), Duration::from_millis(100));
    assert_eq!(drained.full_after(), Duration::from_millis(500));
    clock.advance(Duration::from_millis(250));
    let denied = check(&store, ip_key(5), &q, 3);
    assert!(!denied.is_allowed());
    assert_eq!(denied.remaining(), 2);
    assert_eq!(denied.retry_after(), Some(Duration::from_millis(50)));
    assert_eq!(denied.full_after(), Duration::from_millis(250));
}

#[test]
fn issue_4_the_cap_holds_under_ten_times_cap_distinct_keys() {
    let clock = ManualClock::new();
    let store: MemoryStore<IpKey> = MemoryStore::builder()
        .clock(clock.clone())
        .max_keys(1_000)
        .manual_housekeeping()
        .build();
    let q = quota("1/min");
    // Tracked before the flood.
    assert!(check(&store, ip_key(u64::MAX), &q, 1).is_allowed());
    let mut denied = 0;
    for n in 0..10_000 {
        if !check(&store, ip_key(n), &q, 1).is_allowed() {
            denied += 1;
        }
        assert!(store.len() <= 1_000);
    }
    // Shards fill evenly: the store is (nearly) full, and refused the rest.
    assert!(store.len() > 950, "{}", store.len());
    assert_eq!(denied, 10_001 - store.len());
    let capacity = store.capacity();
    assert!(capacity <= 2 * 1_024 + 256, "{capacity}");

    // A tracked key is not affected: its bucket refills as usual.
    assert!(!check(&store, ip_key(u64::MAX), &q, 1).is_allowed());
    clock.advance(Duration::from_secs(60));
    assert!(check(&store, ip_key(u64::MAX), &q, 1).is_allowed());
}

#[test]
fn the_cap_holds_under_concurrent_floods() {
    let clock = ManualClock::new();
    let store: MemoryStore<IpKey> = MemoryStore::builder()
        .clock(clock)
        .max_keys(2_000)
        .manual_housekeeping()
        .build();
    let q = quota("1/h");
    let threads: Vec<_> = (0..4u64)
        .map(|thread| {
            let store = store.clone();
            thread::spawn(move || {
                for n in 0..10_000 {
                    check(&store, ip_key(thread << 32 | n), &q, 1);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(
        store.len() <= 2_000 && store.len() > 1_900,
        "{}",
        store.len()
    );
}

#[test]
fn with_one_shard_the_cap_is_exact() {
    let clock = ManualClock::new();
    let store: MemoryStore<IpKey> = MemoryStore::builder()
        .clock(clock.clone())
        .max_keys(100)
        .shards(1)
        .manual_housekeeping()
        .build();
    let q = quota("1/s");
    for n in 0..1_000 {
        let decision = check(&store, ip_key(n), &q, 1);
        assert_eq!(decision.is_allowed(), n < 100, "key {n}");
    }
    assert_eq!(store.len(), 100);
    // Keys expire: the next new key makes the cap sweep, and fits.
    clock.advance(Duration::from_secs(1));
    assert!(check(&store, ip_key(5_000), &q, 1).is_allowed());
    assert_eq!(store.len(), 1);
}

#[test]
fn at_capacity_allow_passes_new_keys_untracked() {
    let clock = ManualClock::new();
    let store: MemoryStore<IpKey> = MemoryStore::builder()
        .clock(clock)
        .max_keys(10)
        .shards(1)
        .at_capacity(AtCapacity::Allow)
        .manual_housekeeping()
        .build();
    let q = quota("1/h");
    for n in 0..100 {
        assert!(check(&store, ip_key(n), &q, 1).is_allowed());
    }
    assert_eq!(store.len(), 10);
    assert_eq!(store.at_capacity(), AtCapacity::Allow);
    // Tracked keys are still limited.
    assert!(!check(&store, ip_key(0), &q, 1).is_allowed());
}

/// Captures what `tracing` writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_full_store_warns_at_most_once_every_ten_seconds() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let clock = ManualClock::new();
        let store: MemoryStore<IpKey> = MemoryStore::builder()
            .clock(clock.clone())
            .max_keys(5)
            .shards(1)
            .manual_housekeeping()
            .build();
        let q = quota("1/h");
        for n in 0..1_000 {
            check(&store, ip_key(n), &q, 1);
        }
        clock.advance(Duration::from_secs(9));
        for n in 1_000..2_000 {
            check(&store, ip_key(n), &q, 1);
        }
        clock.advance(Duration::from_secs(1));
        check(&store, ip_key(3_000), &q, 1);
    });
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        text.matches("rate-limit store full: new keys are denied")
            .count(),
        2,
        "{text}"
    );
    assert!(text.contains("max_keys=5"), "{text}");
}

#[test]
fn manual_housekeeping_removes_expired_keys_and_gives_memory_back() {
    let clock = ManualClock::new();
    let store: MemoryStore<IpKey> = manual_store(&clock);
    let q = quota("1/min");
    for n in 0..50_000 {
        check(&store, ip_key(n), &q, 1);
    }
    assert!(store.capacity() >= 50_000);
    clock.advance(Duration::from_secs(30));
    assert!(!check(&store, ip_key(7), &q, 1).is_allowed());
    // Nothing has expired yet.
    assert_eq!(store.housekeep(), 0);
    assert_eq!(store.len(), 50_000);
    clock.advance(Duration::from_secs(30));
    assert_eq!(store.housekeep(), 50_000);
    assert!(store.is_empty());
    assert_eq!(store.capacity(), 0);
}

#[test]
fn housekeeping_thread_sweeps_and_stops_when_the_store_is_dropped() {
    let clock = ManualClock::new();
    let store: MemoryStore<IpKey> = MemoryStore::builder()
        .clock(clock.clone())
        .housekeeping_interval(Duration::from_millis(10))
        .build();
    let thread = store.housekeeping_thread().unwrap();
    assert!(thread.is_running());
    let q = quota("10/s");
    for n in 0..1_000 {
        check(&store, ip_key(n), &q, 1);
    }
    clock.advance(Duration::from_millis(100));
    // Two more sweeps from now: the second surely started after the clock moved.
    let done = thread.sweeps();
    assert!(thread.wait_sweeps(done + 2, Duration::from_secs(30)));
    assert!(store.is_empty());
    assert_eq!(store.capacity(), 0);
    assert!(thread.removed() >= 1_000);

    // A clone keeps the thread alive; dropping the last one stops it.
    let clone = store.clone();
    drop(store);
    assert!(!thread.wait_stopped(Duration::from_millis(50)));
    drop(clone);
    assert!(thread.wait_stopped(Duration::from_secs(30)));
    assert!(!thread.is_running());
}

#[test]
fn a_sleeping_housekeeping_thread_stops_at_once_when_the_store_is_dropped() {
    let store: MemoryStore<IpKey> = MemoryStore::new();
    let thread = store.housekeeping_thread().unwrap();
    drop(store);
    // The interval is 30 s; the thread must not wait for it.
    assert!(thread.wait_stopped(Duration::from_secs(5)));
    assert_eq!(thread.sweeps(), 0);
}

#[test]
fn manual_housekeeping_starts_no_thread() {
    let store: MemoryStore<IpKey> = MemoryStore::builder().manual_housekeeping().build();
    assert!(store.housekeeping_thread().is_none());
}

#[test]
fn the_real_clock_admits_the_burst() {
    let store: MemoryStore<&'static str> =
        MemoryStore::builder().clock(MonotonicClock::new()).build();
    let q = quota("3/h");
    let admitted = (0..10)
        .filter(|_| check(&store, "client", &q, 1).is_allowed())
        .count();
    assert_eq!(admitted, 3);
}

#[test]
fn works_through_the_store_trait_and_an_arc() {
    async fn twice<S: Store<u32>>(store: &S, quota: &Quota) -> (bool, bool) {
        let first = store
            .check(&1, std::slice::from_ref(quota), NonZeroU32::MIN)
            .await
            .unwrap();
        let second = store
            .check(&1, std::slice::from_ref(quota), NonZeroU32::MIN)
            .await
            .unwrap();
        (first.is_allowed(), second.is_allowed())
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let clock = ManualClock::new();
    let store = Arc::new(manual_store::<u32>(&clock));
    let answers = runtime.block_on(twice(&store, &quota("1/s")));
    assert_eq!(answers, (true, false));
}

fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
fn assert_send_sync<T: Send + Sync + 'static>() {}

#[test]
fn public_types_are_send_sync_and_clone() {
    assert_send_sync_clone::<MemoryStore<IpKey>>();
    assert_send_sync_clone::<MemoryStore<String>>();
    assert_send_sync_clone::<HousekeepingThread>();
    assert_send_sync_clone::<ManualClock>();
    assert_send_sync_clone::<MonotonicClock>();
    assert_send_sync_clone::<Quota>();
    assert_send_sync_clone::<Decision>();
    assert_send_sync_clone::<AtCapacity>();
    assert_send_sync::<StoreError>();
    assert_send_sync::<MemoryStoreBuilder<IpKey>>();
    assert_send_sync::<<MemoryStore<IpKey> as Store<IpKey>>::Future>();
    assert_send_sync::<Arc<dyn Clock>>();
}
