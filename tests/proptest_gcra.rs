//! Property tests of the memory store's GCRA.
//!
//! - `memory_store_decides_like_governor`: the same random sequence of (advance, key, cost)
//!   through `MemoryStore` (ManualClock) and governor's keyed `RateLimiter`
//!   (FakeRelativeClock) gives the same allow/deny, the same wait and the same remaining
//!   burst on every step.
//! - `never_admits_more_than_burst_plus_elapsed`: over every stretch of any sequence, the cells
//!   admitted never exceed burst + elapsed / period (issue 4).
//! - Both check that a denial changes nothing (the TAT read back is unchanged).
#![cfg(feature = "memory")]

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, FakeRelativeClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use proptest::prelude::*;
use tower_bouncer::rate_limit::Quota;
use tower_bouncer::store::{ManualClock, MemoryStore, Store};

#[derive(Debug, Clone, Copy)]
enum QuotaSpec {
    PerSecond(u32),
    PerMinute(u32),
    /// One cell per this many nanoseconds, with this burst.
    Period(u64, u32),
}

impl QuotaSpec {
    fn ours(self) -> Quota {
        match self {
            Self::PerSecond(n) => Quota::per_second(nz(n)),
            Self::PerMinute(n) => Quota::per_minute(nz(n)),
            Self::Period(ns, burst) => Quota::with_period(Duration::from_nanos(ns))
                .unwrap()
                .allow_burst(nz(burst)),
        }
    }

    fn governor(self) -> governor::Quota {
        match self {
            Self::PerSecond(n) => governor::Quota::per_second(nz(n)),
            Self::PerMinute(n) => governor::Quota::per_minute(nz(n)),
            Self::Period(ns, burst) => governor::Quota::with_period(Duration::from_nanos(ns))
                .unwrap()
                .allow_burst(nz(burst)),
        }
    }
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn quota_spec() -> impl Strategy<Value = QuotaSpec> {
    prop_oneof![
        (1u32..50).prop_map(QuotaSpec::PerSecond),
        (1u32..120).prop_map(QuotaSpec::PerMinute),
        (1u64..2_000_000_000, 1u32..20).prop_map(|(ns, burst)| QuotaSpec::Period(ns, burst)),
        // Tiny periods: nanosecond arithmetic at its edge.
        (1u64..10, 1u32..5).prop_map(|(ns, burst)| QuotaSpec::Period(ns, burst)),
    ]
}

/// A step: how far to move the clock (its kind and a raw number), a key, a raw cost.
type Step = (u8, u64, u8, u32);

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec((0u8..5, any::<u64>(), 0u8..4, any::<u32>()), 1..300)
}

/// Turns a step's raw numbers into an advance that often lands on GCRA's boundaries.
fn advance(kind: u8, raw: u64, period: u64) -> u64 {
    match kind {
        0 => 0,
        1 => raw % (period.saturating_mul(3).saturating_add(1)),
        2 => (raw % 4) * period,
        3 => raw % 1_000,
        _ => (raw % 4) * period + 1,
    }
}

fn cost(raw: u32, burst: u32) -> NonZeroU32 {
    // Up to two more than the burst, to cover "can never pass".
    nz(1 + raw % (burst + 2))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn memory_store_decides_like_governor(spec in quota_spec(), steps in steps()) {
        let ours_quota = spec.ours();
        let period = ours_quota.replenish_interval().as_nanos() as u64;
        let burst = ours_quota.burst().get();

        let manual = ManualClock::new();
        let store: MemoryStore<u8> = MemoryStore::builder()
            .clock(manual.clone())
            .manual_housekeeping()
            .build();
        let fake = FakeRelativeClock::default();
        let limiter = governor::RateLimiter::<_, _, _, governor::middleware::NoOpMiddleware<_>>::new(
            spec.governor(),
            DefaultKeyedStateStore::<u8>::default(),
            fake.clone(),
        )
        .with_middleware::<StateInformationMiddleware>();

        for (step, &(kind, raw, key, raw_cost)) in steps.iter().enumerate() {
            let by = Duration::from_nanos(advance(kind, raw, period));
            manual.advance(by);
            fake.advance(by);
            let cost = cost(raw_cost, burst);

            let before = store.theoretical_arrival_time(&key);
            let ours = store.check(&key, &[ours_quota], cost).into_inner().unwrap();
            let theirs = limiter.check_key_n(&key, cost);
            match theirs {
                Err(insufficient) => {
                    prop_assert!(!ours.is_allowed(), "step {step}: governor says insufficient capacity {insufficient:?}");
                    prop_assert_eq!(ours.retry_after(), None, "step {}", step);
                }
                Ok(Ok(snapshot)) => {
                    prop_assert!(ours.is_allowed(), "step {step}: governor allowed, we denied {ours:?}");
                    prop_assert_eq!(ours.remaining(), snapshot.remaining_burst_capacity(), "step {}", step);
                }
                Ok(Err(not_until)) => {
                    prop_assert!(!ours.is_allowed(), "step {step}: governor denied, we allowed {ours:?}");
                    let wait = not_until.wait_time_from(fake.now());
                    prop_assert_eq!(ours.retry_after(), Some(wait), "step {}", step);
                }
            }
            if !ours.is_allowed() {
                prop_assert_eq!(store.theoretical_arrival_time(&key), before, "step {}: a denial changed the state", step);
            }
            // A store that forgets expired keys decides the same: sweep now and then.
            if raw % 7 == 0 {
                store.housekeep();
            }
        }
    }

    #[test]
    fn never_admits_more_than_burst_plus_elapsed(spec in quota_spec(), steps in steps()) {
        let quota = spec.ours();
        let period = quota.replenish_interval().as_nanos() as u64;
        let burst = quota.burst().get();
        let clock = ManualClock::new();
        let store: MemoryStore<u8> = MemoryStore::builder()
            .clock(clock.clone())
            .manual_housekeeping()
            .build();

        let mut now: u64 = 0;
        // (time, cells) of every admission.
        let mut admitted: Vec<(u64, u64)> = Vec::new();
        for &(kind, raw, _key, raw_cost) in &steps {
            let by = advance(kind, raw, period);
            now += by;
            clock.advance(Duration::from_nanos(by));
            let cost = cost(raw_cost, burst);
            let before = store.theoretical_arrival_time(&0);
            let decision = store.check(&0, &[quota], cost).into_inner().unwrap();
            if decision.is_allowed() {
                admitted.push((now, u64::from(cost.get())));
            } else {
                prop_assert_eq!(store.theoretical_arrival_time(&0), before);
            }
        }
        // Every stretch from admission i to admission j: cells × T ≤ elapsed + burst × T.
        for i in 0..admitted.len() {
            let mut cells: u128 = 0;
            for j in i..admitted.len() {
                cells += u128::from(admitted[j].1);
                let elapsed = u128::from(admitted[j].0 - admitted[i].0);
                prop_assert!(
                    cells * u128::from(period) <= elapsed + u128::from(burst) * u128::from(period),
                    "{} cells admitted in {} ns with burst {} and period {} ns",
                    cells, elapsed, burst, period
                );
            }
        }
    }
}
