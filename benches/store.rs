//! Micro-benchmark of the in-memory store's decision, beside governor's keyed limiter.
//!
//! ```text
//! cargo bench --bench store
//! ```
//!
//! - `allow` / `deny`: one decision on a tracked key (the real monotonic clock), ours and
//!   governor's;
//! - `new_key_at_cap`: a new key refused by a full store (the flood case);
//! - `threads/N`: N threads, each on its own key, N × iterations in all: with no global lock
//!   and no shared counter, the time per iteration stays flat from 1 to 2 threads.
// `criterion_group!` defines a public function it does not document.
#![allow(missing_docs)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tower_bouncer::rate_limit::Quota;
use tower_bouncer::store::{MemoryStore, Store};

type Key = [u8; 16];

fn key(n: u64) -> Key {
    (u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)).to_le_bytes()
}

fn one() -> NonZeroU32 {
    NonZeroU32::MIN
}

/// A quota no benchmark can exhaust: a cell every nanosecond, a burst of 4 billion.
fn generous() -> Quota {
    Quota::per_second(NonZeroU32::MAX)
}

fn stingy() -> Quota {
    Quota::per_hour(one())
}

fn single_key(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    let store: MemoryStore<Key> = MemoryStore::new();
    for n in 0..10_000 {
        store.check(&key(n), &stingy(), one()).into_inner().unwrap();
    }

    let allow = generous();
    group.bench_function("allow/tower-bouncer", |b| {
        b.iter(|| {
            black_box(
                store
                    .check(black_box(&key(1_000_000)), &allow, one())
                    .into_inner(),
            )
        })
    });
    let deny = stingy();
    group.bench_function("deny/tower-bouncer", |b| {
        b.iter(|| black_box(store.check(black_box(&key(7)), &deny, one()).into_inner()))
    });

    let governor_allow: governor::DefaultKeyedRateLimiter<Key> =
        governor::RateLimiter::keyed(governor::Quota::per_second(NonZeroU32::MAX));
    let governor_deny: governor::DefaultKeyedRateLimiter<Key> =
        governor::RateLimiter::keyed(governor::Quota::per_hour(one()));
    for n in 0..10_000 {
        let _ = governor_allow.check_key(&key(n));
        let _ = governor_deny.check_key(&key(n));
    }
    group.bench_function("allow/governor", |b| {
        b.iter(|| black_box(governor_allow.check_key(black_box(&key(1_000_000)))))
    });
    group.bench_function("deny/governor", |b| {
        b.iter(|| black_box(governor_deny.check_key(black_box(&key(7))).is_err()))
    });

    let full: MemoryStore<Key> = MemoryStore::builder().max_keys(10_000).build();
    let mut n = 0;
    while full.len() < 10_000 && n < 1_000_000 {
        full.check(&key(n), &stingy(), one()).into_inner().unwrap();
        n += 1;
    }
    let mut next = 10_000_000;
    group.bench_function("new_key_at_cap/tower-bouncer", |b| {
        b.iter(|| {
            next += 1;
            black_box(full.check(&key(next), &deny, one()).into_inner())
        })
    });
    group.finish();
}

/// Each of `threads` threads runs `iters` decisions on its own key; answers the wall time.
fn run_threads(store: &MemoryStore<Key>, threads: u64, iters: u64) -> Duration {
    let barrier = Arc::new(Barrier::new(threads as usize + 1));
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let store = store.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let quota = generous();
                let mine = key(thread);
                barrier.wait();
                for _ in 0..iters {
                    let _ = black_box(store.check(black_box(&mine), &quota, one()).into_inner());
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for handle in handles {
        handle.join().unwrap();
    }
    start.elapsed()
}

fn threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("store/threads");
    let store: MemoryStore<Key> = MemoryStore::new();
    for n in 0..64 {
        store
            .check(&key(n), &generous(), one())
            .into_inner()
            .unwrap();
    }
    for count in [1_u64, 2] {
        group.bench_function(format!("{count}"), |b| {
            b.iter_custom(|iters| run_threads(&store, count, iters))
        });
    }
    group.finish();
}

criterion_group!(benches, single_key, threads);
criterion_main!(benches);
