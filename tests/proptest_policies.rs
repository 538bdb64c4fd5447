//! Property tests of several windows decided together (issue 9), in the memory store:
//!
//! - `several_windows_never_admit_more_than_any_window_allows`: over random sequences of
//!   (time, cost), no stretch of admissions exceeds burst + elapsed / period of **any**
//!   window, and a denied request changes no window (read back).
//! - `several_windows_decide_like_all_windows_at_once`: the decisions equal a plain model —
//!   per-window GCRA, allowed only when every window allows, the wait the longest of theirs,
//!   nothing written on a denial — so nothing is charged anywhere when one window denies.
#![cfg(feature = "memory")]

use std::num::NonZeroU32;
use std::time::Duration;

use proptest::prelude::*;
use tower_bouncer::rate_limit::Quota;
use tower_bouncer::store::{ManualClock, MemoryStore, Store};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// A window: one cell per `period` ns, `burst` cells.
fn window() -> impl Strategy<Value = (u64, u32)> {
    (1_000u64..3_000_000_000, 1u32..12)
}

fn windows() -> impl Strategy<Value = Vec<(u64, u32)>> {
    prop::collection::vec(window(), 2..=4)
}

/// (advance in ns, cost in cells).
fn steps() -> impl Strategy<Value = Vec<(u64, u32)>> {
    prop::collection::vec(
        (
            prop_oneof![Just(0u64), 0u64..1_000_000, 0u64..4_000_000_000],
            1u32..6,
        ),
        1..200,
    )
}

fn quotas(windows: &[(u64, u32)]) -> Vec<Quota> {
    windows
        .iter()
        .map(|&(period, burst)| {
            Quota::with_period(Duration::from_nanos(period))
                .unwrap()
                .allow_burst(nz(burst))
        })
        .collect()
}

fn store(clock: &ManualClock) -> MemoryStore<u8> {
    MemoryStore::builder()
        .clock(clock.clone())
        .manual_housekeeping()
        .build()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn several_windows_never_admit_more_than_any_window_allows(
        windows in windows(),
        steps in steps(),
    ) {
        let quotas = quotas(&windows);
        let clock = ManualClock::new();
        let store = store(&clock);
        let mut now: u64 = 0;
        let mut admitted: Vec<(u64, u64)> = Vec::new();
        for (step, &(by, cost)) in steps.iter().enumerate() {
            now += by;
            clock.advance(Duration::from_nanos(by));
            let before = store.theoretical_arrival_times(&0);
            let decision = store.check(&0, &quotas, nz(cost)).into_inner().unwrap();
            if decision.is_allowed() {
                admitted.push((now, u64::from(cost)));
            } else {
                prop_assert_eq!(
                    store.theoretical_arrival_times(&0), before,
                    "step {}: a denial changed a window", step
                );
            }
            if step % 11 == 0 {
                // Forgetting full keys changes no decision.
                store.housekeep();
            }
        }
        for &(period, burst) in &windows {
            for i in 0..admitted.len() {
                let mut cells: u128 = 0;
                for j in i..admitted.len() {
                    cells += u128::from(admitted[j].1);
                    let elapsed = u128::from(admitted[j].0 - admitted[i].0);
                    prop_assert!(
                        cells * u128::from(period) <= elapsed + u128::from(burst) * u128::from(period),
                        "{} cells in {} ns, window burst {} period {} ns", cells, elapsed, burst, period
                    );
                }
            }
        }
    }

    #[test]
    fn several_windows_decide_like_all_windows_at_once(
        windows in windows(),
        steps in steps(),
    ) {
        let quotas = quotas(&windows);
        let clock = ManualClock::new();
        let store = store(&clock);
        // The model: one TAT per window (0: never charged).
        let mut tats = vec![0u64; windows.len()];
        let mut now: u64 = 0;
        for (step, &(by, cost)) in steps.iter().enumerate() {
            now += by;
            clock.advance(Duration::from_nanos(by));
            let decision = store.check(&0, &quotas, nz(cost)).into_inner().unwrap();

            let n = u64::from(cost);
            let mut fits = true;
            let mut never = false;
            let mut wait = 0u64;
            for (&(period, burst), &tat) in windows.iter().zip(&tats) {
                if cost > burst {
                    never = true;
                    continue;
                }
                let tau = period * u64::from(burst - 1);
                let earliest = (tat.max(now) + period * (n - 1)).saturating_sub(tau);
                if earliest > now {
                    fits = false;
                    wait = wait.max(earliest - now);
                }
            }
            if never {
                prop_assert!(!decision.is_allowed(), "step {}", step);
                prop_assert_eq!(decision.retry_after(), None, "step {}", step);
            } else if fits {
                prop_assert!(decision.is_allowed(), "step {}: the model allows", step);
                for (&(period, _), tat) in windows.iter().zip(tats.iter_mut()) {
                    *tat = (*tat).max(now) + period * n;
                }
            } else {
                prop_assert!(!decision.is_allowed(), "step {}: the model denies", step);
                prop_assert_eq!(decision.retry_after(), Some(Duration::from_nanos(wait)), "step {}", step);
            }
            // Each window reports its own time to full.
            for (index, &tat) in tats.iter().enumerate() {
                prop_assert_eq!(
                    decision.window_full_after(index),
                    Some(Duration::from_nanos(tat.saturating_sub(now))),
                    "step {} window {}", step, index
                );
            }
            if let Some(stored) = store.theoretical_arrival_times(&0) {
                for (index, &tat) in tats.iter().enumerate() {
                    // The store may hold an expired TAT the model reads as "now".
                    let stored = stored[index].as_nanos() as u64;
                    prop_assert_eq!(stored.max(now), tat.max(now), "step {} window {}", step, index);
                }
            }
        }
    }
}
