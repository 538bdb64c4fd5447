//! Issue 6, item 2: the Redis script and the memory store make identical decisions (and
//! issue 9: the same for several windows at once, through the windows script).
//!
//! Both stores are driven with the same random sequence of (time step, key, quota, cost): the
//! memory store on a `ManualClock`, the Redis store with the same time passed explicitly to the
//! script. Every step must give the same `Decision`: allowed or not, remaining, retry-after,
//! next cell and full-after, to the nanosecond.
#![cfg(all(feature = "redis", feature = "test-util"))]

#[path = "support/redis_server.rs"]
mod redis_server;

use std::num::NonZeroU32;
use std::time::Duration;

use redis_server::{redis_available, RedisServer};
use tower_bouncer::rate_limit::Quota;
use tower_bouncer::store::{Clock, ManualClock, MemoryStore, RedisStore, Store};

/// A small deterministic generator (xorshift64*), so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

fn quotas() -> Vec<Quota> {
    let n = |value| NonZeroU32::new(value).unwrap();
    vec![
        // An interval that is not a whole number of microseconds: 333,333,333 ns.
        Quota::per_second(n(3)),
        Quota::per_second(n(10)).allow_burst(n(5)),
        Quota::per_minute(n(7)).allow_burst(n(3)),
        // An odd interval: 1,234,567 ns per cell.
        Quota::with_period(Duration::from_nanos(1_234_567))
            .unwrap()
            .allow_burst(n(4)),
        Quota::per_hour(n(100)).allow_burst(n(20)),
    ]
}

/// A runtime for one run: the Redis store's connection lives on it.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The clock both stores see, and the two stores.
type Stores = (ManualClock, MemoryStore<(u32, u32)>, RedisStore<(u32, u32)>);

/// The memory store on a manual clock, and a Redis store with its own `prefix` (built inside
/// the runtime).
fn stores(server: &RedisServer, prefix: &str) -> Stores {
    let clock = ManualClock::new();
    let memory = MemoryStore::builder()
        .clock(clock.clone())
        .manual_housekeeping()
        .build();
    let redis = RedisStore::builder(server.url())
        .prefix(prefix)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    (clock, memory, redis)
}

/// Each key keeps one quota (as a layer does); several keys per quota.
fn run(seed: u64, steps: usize, server: &RedisServer) -> usize {
    runtime().block_on(async {
        let (clock, memory, redis) = stores(server, &format!("differential-{seed}:"));
        // Redis sees the same times, from an epoch in 2023.
        let epoch = Duration::from_secs(1_700_000_000);
        let quotas = quotas();
        let mut rng = Rng(seed);
        let mut allowed = 0;
        // The last retry-after answered: stepping to exactly it (or 1 ns short) probes the
        // boundary between denied and allowed, where an off-by-one would show.
        let mut last_retry: Option<Duration> = None;
        for step in 0..steps {
            let quota_index = rng.below(quotas.len() as u64) as usize;
            let quota = quotas[quota_index];
            let key = (quota_index as u32, rng.below(3) as u32);
            let burst = u64::from(quota.burst().get());
            // Mostly small costs, sometimes above the burst (never fits).
            let cost = NonZeroU32::new(1 + rng.below(burst + 1) as u32).unwrap();
            // Time steps from nothing to two cells, in nanoseconds (not whole microseconds).
            let interval = quota.replenish_interval().as_nanos() as u64;
            let advance = match (rng.below(6), last_retry) {
                (0, _) => 0,
                (1, _) => rng.below(1_000),
                (2, Some(retry)) => retry.as_nanos() as u64,
                (3, Some(retry)) => retry.as_nanos() as u64 - 1,
                _ => rng.below(2 * interval),
            };
            clock.advance(Duration::from_nanos(advance));
            if rng.below(500) == 0 {
                // Now and then a long pause: every bucket refills.
                clock.advance(Duration::from_secs(4_000));
            }

            let expected = memory.check(&key, &[quota], cost).await.unwrap();
            let actual = redis
                .check_at(&key, &[quota], cost, epoch + clock.now())
                .await
                .unwrap();
            assert_eq!(
                actual,
                expected,
                "seed {seed}, step {step}: key {key:?}, quota {quota}, cost {cost}, \
                 time {:?}",
                clock.now()
            );
            allowed += usize::from(expected.is_allowed());
            if let Some(retry) = expected.retry_after() {
                last_retry = Some(retry);
            }
        }
        allowed
    })
}

/// The policies of several windows: each key keeps one policy, as a layer does.
fn policies() -> Vec<Vec<Quota>> {
    let n = |value| NonZeroU32::new(value).unwrap();
    vec![
        // Issue 9's example: 3/s and 5/min.
        vec![Quota::per_second(n(3)), Quota::per_minute(n(5))],
        vec![
            Quota::per_second(n(10)).allow_burst(n(5)),
            Quota::per_hour(n(100)).allow_burst(n(20)),
        ],
        vec![
            Quota::with_period(Duration::from_nanos(1_234_567))
                .unwrap()
                .allow_burst(n(4)),
            Quota::per_second(n(3)),
            Quota::per_minute(n(7)).allow_burst(n(3)),
        ],
        vec![
            Quota::per_second(n(20)),
            Quota::per_second(n(5)).allow_burst(n(8)),
            Quota::per_minute(n(30)).allow_burst(n(6)),
            Quota::per_hour(n(50)).allow_burst(n(10)),
        ],
    ]
}

/// Issue 9: the same as `run`, with several windows per key; every decision must match the
/// memory store's to the nanosecond, each window's report included.
fn run_windows(seed: u64, steps: usize, server: &RedisServer) -> (usize, usize) {
    runtime().block_on(async {
        let (clock, memory, redis) = stores(server, &format!("windows-{seed}:"));
        let epoch = Duration::from_secs(1_700_000_000);
        let policies = policies();
        let mut rng = Rng(seed);
        let (mut allowed, mut denied) = (0, 0);
        let mut last_retry: Option<Duration> = None;
        for step in 0..steps {
            let index = rng.below(policies.len() as u64) as usize;
            let windows = &policies[index];
            let key = (index as u32, rng.below(3) as u32);
            let burst = windows.iter().map(|q| q.burst().get()).min().unwrap();
            let cost = NonZeroU32::new(1 + rng.below(u64::from(burst) + 1) as u32).unwrap();
            let interval = windows
                .iter()
                .map(|q| q.replenish_interval().as_nanos() as u64)
                .min()
                .unwrap();
            let advance = match (rng.below(6), last_retry) {
                (0, _) => 0,
                (1, _) => rng.below(1_000),
                (2, Some(retry)) => retry.as_nanos() as u64,
                (3, Some(retry)) => retry.as_nanos() as u64 - 1,
                _ => rng.below(3 * interval),
            };
            clock.advance(Duration::from_nanos(advance));
            if rng.below(300) == 0 {
                clock.advance(Duration::from_secs(4_000));
            }
            let expected = memory.check(&key, windows, cost).await.unwrap();
            let actual = redis
                .check_at(&key, windows, cost, epoch + clock.now())
                .await
                .unwrap();
            assert_eq!(
                actual,
                expected,
                "seed {seed}, step {step}: key {key:?}, windows {windows:?}, cost {cost}, \
                 time {:?}",
                clock.now()
            );
            if expected.is_allowed() {
                allowed += 1;
            } else {
                denied += 1;
            }
            if let Some(retry) = expected.retry_after() {
                last_retry = Some(retry);
            }
        }
        (allowed, denied)
    })
}

#[test]
fn issue_9_differential_windows_script_matches_memory_store() {
    if !redis_available("issue_9_differential_windows_script_matches_memory_store") {
        return;
    }
    let server = RedisServer::start();
    let (mut allowed, mut denied) = (0, 0);
    for seed in [7_u64, 0x5eed, 0xfeed_f00d] {
        let (a, d) = run_windows(seed, 3_000, &server);
        allowed += a;
        denied += d;
    }
    // 9,000 steps; both outcomes occur often.
    assert!(allowed > 1_500 && denied > 1_500, "{allowed} / {denied}");
}

#[test]
fn issue_6_differential_redis_script_matches_memory_store() {
    if !redis_available("issue_6_differential_redis_script_matches_memory_store") {
        return;
    }
    let server = RedisServer::start();
    let seeds = [0x9e37_79b9_7f4a_7c15_u64, 42, 0xdead_beef];
    let mut total_allowed = 0;
    for seed in seeds {
        total_allowed += run(seed, 4_000, &server);
    }
    // 12,000 steps; both outcomes occur often.
    assert!(
        total_allowed > 2_000 && total_allowed < 10_000,
        "{total_allowed}"
    );
}

/// The same for batches: `gcra.lua` decides the requests that reach the store together in one
/// call, in order, at one "now" (a bucket may appear several times in a batch). Each batch must
/// decide exactly as the memory store deciding the same requests one after the other at that
/// time. Returns (allowed, denied, batches holding a bucket more than once).
fn run_batches(seed: u64, batches: usize, server: &RedisServer) -> (usize, usize, usize) {
    runtime().block_on(async {
        let (clock, memory, redis) = stores(server, &format!("batches-{seed}:"));
        let epoch = Duration::from_secs(1_700_000_000);
        let quotas = quotas();
        let mut rng = Rng(seed);
        let (mut allowed, mut denied, mut repeated) = (0, 0, 0);
        for batch in 0..batches {
            // 1 to 24 requests over at most 4 buckets: buckets repeat within a batch.
            let size = 1 + rng.below(24) as usize;
            let mut requests = Vec::with_capacity(size);
            for _ in 0..size {
                let quota_index = rng.below(quotas.len() as u64) as usize;
                let quota = quotas[quota_index];
                let key = (quota_index as u32, rng.below(2) as u32);
                let burst = u64::from(quota.burst().get());
                let cost = NonZeroU32::new(1 + rng.below(burst + 1) as u32).unwrap();
                requests.push((key, quota, cost));
            }
            let mut keys: Vec<_> = requests.iter().map(|(key, _, _)| *key).collect();
            keys.sort_unstable();
            keys.dedup();
            repeated += usize::from(keys.len() < requests.len());
            // Between batches: from nothing to about two cells of the slowest quota here.
            let advance = match rng.below(4) {
                0 => 0,
                1 => rng.below(1_000),
                _ => rng.below(700_000_000),
            };
            clock.advance(Duration::from_nanos(advance));
            let mut expected = Vec::with_capacity(size);
            for (key, quota, cost) in &requests {
                expected.push(memory.check(key, &[*quota], *cost).await.unwrap());
            }
            let actual = redis
                .check_batch_at(&requests, epoch + clock.now())
                .await
                .unwrap();
            assert_eq!(
                actual,
                expected,
                "seed {seed}, batch {batch}: {requests:?} at {:?}",
                clock.now()
            );
            for decision in &expected {
                if decision.is_allowed() {
                    allowed += 1;
                } else {
                    denied += 1;
                }
            }
        }
        (allowed, denied, repeated)
    })
}

#[test]
fn issue_6_differential_batches_match_memory_store() {
    if !redis_available("issue_6_differential_batches_match_memory_store") {
        return;
    }
    let server = RedisServer::start();
    let (mut allowed, mut denied, mut repeated) = (0, 0, 0);
    for seed in [3_u64, 0xba7c4, 0x1234_5678_9abc] {
        let (a, d, r) = run_batches(seed, 600, &server);
        allowed += a;
        denied += d;
        repeated += r;
    }
    // About 22,000 requests in 1,800 batches; both outcomes occur often, and most batches
    // hold some bucket more than once.
    assert!(allowed > 2_000 && denied > 2_000, "{allowed} / {denied}");
    assert!(repeated > 1_000, "{repeated}");
}
