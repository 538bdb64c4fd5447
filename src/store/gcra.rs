//! The GCRA arithmetic every store shares, in whole ticks (nanoseconds in the memory store).
//!
//! It is written as plain integer operations on one number per key so that another store (a
//! Lua script on Redis) can repeat it step for step and reach the same decisions. The
//! semantics are governor's (`src/gcra.rs`), checked by a differential property test.
//!
//! The formulas, and why an expired key may be forgotten, are in the `store` module's
//! documentation ("The arithmetic"); this file is their one implementation.

use std::time::Duration;

use super::Decision;
use crate::rate_limit::Quota;

/// The parameters of one quota in ticks of one nanosecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Ticks per cell, at least 1.
    t: u64,
    /// `t × (burst − 1)`.
    tau: u64,
    burst: u32,
}

/// What GCRA decides for one request, before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Allowed: store this TAT.
    Allow { new_tat: u64 },
    /// Denied until this time; store nothing.
    DenyUntil { earliest: u64 },
    /// The cost exceeds the burst: denied whatever the state; store nothing.
    DenyForever,
}

impl Gcra {
    pub(crate) fn new(quota: &Quota) -> Self {
        let t = nanos(quota.replenish_interval()).max(1);
        let burst = quota.burst().get();
        Self {
            t,
            tau: t.saturating_mul(u64::from(burst - 1)),
            burst,
        }
    }

    /// The verdict for `cost` cells at `now`, given the stored TAT (`None`: no state).
    pub(crate) fn verdict(&self, tat: Option<u64>, now: u64, cost: u32) -> Verdict {
        if cost > self.burst {
            return Verdict::DenyForever;
        }
        let tat = tat.unwrap_or(now);
        let additional = self.t.saturating_mul(u64::from(cost - 1));
        let earliest = tat.saturating_add(additional).saturating_sub(self.tau);
        if now < earliest {
            Verdict::DenyUntil { earliest }
        } else {
            Verdict::Allow {
                new_tat: tat
                    .max(now)
                    .saturating_add(self.t.saturating_mul(u64::from(cost))),
            }
        }
    }

    /// The decision to report for `verdict`, given the TAT that is stored after it (the new
    /// one when allowed, the unchanged one otherwise; `None`: no state).
    pub(crate) fn decision(&self, verdict: Verdict, tat_after: Option<u64>, now: u64) -> Decision {
        let tat = tat_after.unwrap_or(now).max(now);
        let decision = match verdict {
            Verdict::Allow { .. } => Decision::admitted(),
            Verdict::DenyUntil { earliest } => {
                Decision::denied_for(Duration::from_nanos(earliest - now))
            }
            Verdict::DenyForever => Decision::denied_forever(),
        };
        // Cells available now: n such that now ≥ TAT + T×(n − 1) − tau.
        let slack = now.saturating_add(self.tau);
        let remaining = if tat <= slack {
            ((slack - tat) / self.t)
                .saturating_add(1)
                .min(u64::from(self.burst))
        } else {
            0
        };
        decision
            // `remaining ≤ burst`, a u32.
            .with_remaining(u32::try_from(remaining).unwrap_or(self.burst))
            .with_next_cell_after(Duration::from_nanos(
                tat.saturating_sub(self.tau).saturating_sub(now),
            ))
            .with_full_after(Duration::from_nanos(tat - now))
    }

    /// Ticks per cell.
    pub(crate) fn interval(&self) -> u64 {
        self.t
    }
}

/// A duration in whole nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn gcra(per_second: u32, burst: u32) -> Gcra {
        Gcra::new(
            &Quota::per_second(NonZeroU32::new(per_second).unwrap())
                .allow_burst(NonZeroU32::new(burst).unwrap()),
        )
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn parameters_match_governor() {
        let g = gcra(10, 5);
        assert_eq!((g.t, g.tau, g.burst), (100 * MS, 400 * MS, 5));
        // An interval under a nanosecond counts as one nanosecond, as in governor.
        let g = gcra(u32::MAX, 1);
        assert_eq!((g.t, g.tau), (1, 0));
    }

    #[test]
    fn verdicts_over_a_burst_then_a_refill() {
        // 10/s, burst 3: T = 100 ms, tau = 200 ms.
        let g = gcra(10, 3);
        let now = 1_000 * MS;
        let mut tat = None;
        for expected in [now + 100 * MS, now + 200 * MS, now + 300 * MS] {
            assert_eq!(g.verdict(tat, now, 1), Verdict::Allow { new_tat: expected });
            tat = Some(expected);
        }
        // Fourth cell: earliest = TAT − tau = now + 100 ms.
        assert_eq!(
            g.verdict(tat, now, 1),
            Verdict::DenyUntil {
                earliest: now + 100 * MS
            }
        );
        // Two cells at once 100 ms later: earliest = TAT + T − tau = now + 200 ms.
        assert_eq!(
            g.verdict(tat, now + 100 * MS, 2),
            Verdict::DenyUntil {
                earliest: now + 200 * MS
            }
        );
        assert_eq!(
            g.verdict(tat, now + 200 * MS, 2),
            Verdict::Allow {
                new_tat: now + 500 * MS
            }
        );
        assert_eq!(g.verdict(tat, now, 4), Verdict::DenyForever);
    }

    #[test]
    fn decision_reports() {
        let g = gcra(10, 3);
        let now = 5_000 * MS;
        // A fresh key charged one cell: two left, next cell at once, full in 100 ms.
        let verdict = g.verdict(None, now, 1);
        let Verdict::Allow { new_tat } = verdict else {
            panic!("{verdict:?}")
        };
        let decision = g.decision(verdict, Some(new_tat), now);
        assert!(decision.allowed());
        assert_eq!(decision.remaining(), 2);
        assert_eq!(decision.retry_after(), None);
        assert_eq!(decision.next_cell_after(), Duration::ZERO);
        assert_eq!(decision.full_after(), Duration::from_millis(100));

        // An exhausted key: nothing left, next cell in 100 ms, full in 300 ms.
        let tat = Some(now + 300 * MS);
        let verdict = g.verdict(tat, now, 1);
        let decision = g.decision(verdict, tat, now);
        assert!(!decision.allowed());
        assert_eq!(decision.remaining(), 0);
        assert_eq!(decision.retry_after(), Some(Duration::from_millis(100)));
        assert_eq!(decision.next_cell_after(), Duration::from_millis(100));
        assert_eq!(decision.full_after(), Duration::from_millis(300));

        // One cell left, two asked: denied with one remaining.
        let tat = Some(now + 200 * MS);
        let verdict = g.verdict(tat, now, 2);
        let decision = g.decision(verdict, tat, now);
        assert!(!decision.allowed());
        assert_eq!(decision.remaining(), 1);
        assert_eq!(decision.retry_after(), Some(Duration::from_millis(100)));

        // Cost above the burst: no retry hint, state reported as it is.
        let verdict = g.verdict(None, now, 4);
        let decision = g.decision(verdict, None, now);
        assert!(!decision.allowed());
        assert_eq!(decision.retry_after(), None);
        assert_eq!(decision.remaining(), 3);
        assert_eq!(decision.full_after(), Duration::ZERO);
    }

    #[test]
    fn an_expired_key_decides_like_an_absent_key() {
        let g = gcra(7, 4);
        let now = 10_000 * MS;
        for expired in [0, 1, now / 2, now - 1, now] {
            for cost in 1..=5 {
                let stored = g.verdict(Some(expired), now, cost);
                let absent = g.verdict(None, now, cost);
                assert_eq!(stored, absent, "tat {expired} cost {cost}");
                let after = |verdict| match verdict {
                    Verdict::Allow { new_tat } => Some(new_tat),
                    _ => None,
                };
                assert_eq!(
                    g.decision(stored, after(stored).or(Some(expired)), now),
                    g.decision(absent, after(absent), now),
                );
            }
        }
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        let g = Gcra::new(
            &Quota::with_period(Duration::MAX)
                .unwrap()
                .allow_burst(NonZeroU32::new(u32::MAX).unwrap()),
        );
        assert_eq!((g.t, g.tau), (u64::MAX, u64::MAX));
        let verdict = g.verdict(Some(u64::MAX), u64::MAX - 1, u32::MAX);
        assert_eq!(verdict, Verdict::Allow { new_tat: u64::MAX });
        let decision = g.decision(verdict, Some(u64::MAX), u64::MAX - 1);
        assert_eq!(decision.full_after(), Duration::from_nanos(1));
        assert_eq!(nanos(Duration::MAX), u64::MAX);
    }
}
