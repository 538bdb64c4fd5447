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
        let decision = match verdict {
            Verdict::Allow { .. } => Decision::admitted(),
            Verdict::DenyUntil { earliest } => {
                Decision::denied_for(Duration::from_nanos(earliest - now))
            }
            Verdict::DenyForever => Decision::denied_forever(),
        };
        let report = self.report(tat_after.unwrap_or(now), now);
        decision.with_nanos(report.remaining, report.next_cell_after, report.full_after)
    }

    /// What a key whose TAT is `tat` has at `now`.
    fn report(&self, tat: u64, now: u64) -> Report {
        let tat = tat.max(now);
        // Cells available now: n such that now ≥ TAT + T×(n − 1) − tau.
        let slack = now.saturating_add(self.tau);
        let remaining = if tat <= slack {
            ((slack - tat) / self.t)
                .saturating_add(1)
                .min(u64::from(self.burst))
        } else {
            0
        };
        Report {
            // `remaining ≤ burst`, a u32.
            remaining: u32::try_from(remaining).unwrap_or(self.burst),
            next_cell_after: tat.saturating_sub(self.tau).saturating_sub(now),
            full_after: tat - now,
        }
    }

    /// Ticks per cell.
    pub(crate) fn interval(&self) -> u64 {
        self.t
    }
}

/// The state of one window as a decision reports it (nanoseconds from now).
#[derive(Debug, Clone, Copy)]
struct Report {
    remaining: u32,
    next_cell_after: u64,
    full_after: u64,
}

/// The most windows one decision evaluates together.
pub(crate) const MAX_WINDOWS: usize = 4;

/// Several quotas decided together: a request is allowed only if every window allows it, and
/// then every window is charged; a denial charges none.
///
/// The state of a key is one TAT per window, `[u64; MAX_WINDOWS]`, the unused tail zero. A
/// TAT of 0 is never after `now`, so an all-zero state decides like an absent key (see "an
/// expired key is an absent key" in the module docs), window by window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Windows {
    gcras: [Gcra; MAX_WINDOWS],
    len: usize,
}

/// What several windows decide together, before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowsVerdict {
    /// Every window allows: store these TATs.
    Allow { new_tats: [u64; MAX_WINDOWS] },
    /// At least one window denies; the request fits at the latest of their earliest times.
    DenyUntil { earliest: u64 },
    /// The cost exceeds the burst of a window.
    DenyForever,
}

impl Windows {
    /// The windows of `quotas`; `None` when there are none or more than [`MAX_WINDOWS`].
    pub(crate) fn new(quotas: &[Quota]) -> Option<Self> {
        if quotas.is_empty() || quotas.len() > MAX_WINDOWS {
            return None;
        }
        let first = Gcra::new(&quotas[0]);
        let mut gcras = [first; MAX_WINDOWS];
        for (gcra, quota) in gcras.iter_mut().zip(quotas).skip(1) {
            *gcra = Gcra::new(quota);
        }
        Some(Self {
            gcras,
            len: quotas.len(),
        })
    }

    fn active(&self) -> &[Gcra] {
        &self.gcras[..self.len]
    }

    /// The verdict for `cost` cells at `now`, given the stored TATs (all zero: no state).
    pub(crate) fn verdict(&self, tats: &[u64; MAX_WINDOWS], now: u64, cost: u32) -> WindowsVerdict {
        let mut new_tats = [0; MAX_WINDOWS];
        let mut latest: Option<u64> = None;
        for ((gcra, &tat), new_tat) in self.active().iter().zip(tats).zip(&mut new_tats) {
            match gcra.verdict(Some(tat), now, cost) {
                Verdict::Allow { new_tat: allowed } => *new_tat = allowed,
                Verdict::DenyUntil { earliest } => {
                    latest = Some(latest.map_or(earliest, |latest| latest.max(earliest)));
                }
                Verdict::DenyForever => return WindowsVerdict::DenyForever,
            }
        }
        match latest {
            Some(earliest) => WindowsVerdict::DenyUntil { earliest },
            None => WindowsVerdict::Allow { new_tats },
        }
    }

    /// The decision to report for `verdict`, given the TATs stored after it: the fewest cells
    /// left in any window, the longest time to the next cell and to full, and each window's
    /// time to full ([`Decision::window_full_after`]).
    pub(crate) fn decision(
        &self,
        verdict: WindowsVerdict,
        tats_after: &[u64; MAX_WINDOWS],
        now: u64,
    ) -> Decision {
        let mut decision = match verdict {
            WindowsVerdict::Allow { .. } => Decision::admitted(),
            WindowsVerdict::DenyUntil { earliest } => {
                Decision::denied_for(Duration::from_nanos(earliest - now))
            }
            WindowsVerdict::DenyForever => Decision::denied_forever(),
        };
        let mut remaining = u32::MAX;
        let mut next_cell_after = 0;
        let mut full_after = 0;
        for (index, (gcra, &tat)) in self.active().iter().zip(tats_after).enumerate() {
            let report = gcra.report(tat, now);
            remaining = remaining.min(report.remaining);
            next_cell_after = next_cell_after.max(report.next_cell_after);
            full_after = full_after.max(report.full_after);
            decision = decision.with_window_nanos(index, report.full_after);
        }
        decision.with_nanos(remaining, next_cell_after, full_after)
    }

    /// The shortest interval of the windows (the retry hint of a refusal at the cap).
    pub(crate) fn interval(&self) -> u64 {
        self.active().iter().map(Gcra::interval).min().unwrap_or(1)
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
        assert!(decision.is_allowed());
        assert_eq!(decision.remaining(), 2);
        assert_eq!(decision.retry_after(), None);
        assert_eq!(decision.next_cell_after(), Duration::ZERO);
        assert_eq!(decision.full_after(), Duration::from_millis(100));

        // An exhausted key: nothing left, next cell in 100 ms, full in 300 ms.
        let tat = Some(now + 300 * MS);
        let verdict = g.verdict(tat, now, 1);
        let decision = g.decision(verdict, tat, now);
        assert!(!decision.is_allowed());
        assert_eq!(decision.remaining(), 0);
        assert_eq!(decision.retry_after(), Some(Duration::from_millis(100)));
        assert_eq!(decision.next_cell_after(), Duration::from_millis(100));
        assert_eq!(decision.full_after(), Duration::from_millis(300));

        // One cell left, two asked: denied with one remaining.
        let tat = Some(now + 200 * MS);
        let verdict = g.verdict(tat, now, 2);
        let decision = g.decision(verdict, tat, now);
        assert!(!decision.is_allowed());
        assert_eq!(decision.remaining(), 1);
        assert_eq!(decision.retry_after(), Some(Duration::from_millis(100)));

        // Cost above the burst: no retry hint, state reported as it is.
        let verdict = g.verdict(None, now, 4);
        let decision = g.decision(verdict, None, now);
        assert!(!decision.is_allowed());
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
