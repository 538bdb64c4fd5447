//! The quotas of one check, as the Redis store, its scripts and its deny cache need them: one
//! window (the shared [`Gcra`], decided by `gcra.lua`) or several ([`Windows`], decided by
//! `gcra_windows.lua`), in one type so that both take the same path.

use std::num::NonZeroU32;

use crate::rate_limit::Quota;
use crate::store::gcra::{Gcra, Verdict, Windows, WindowsVerdict, MAX_WINDOWS};
use crate::store::{Decision, StoreError, StoreErrorKind};

/// Relative times in the scripts must stay below 2^53 ns to be exact in a double; the largest
/// is at most `T × (2 × burst)` (the tolerance plus the cost of a request).
const MAX_SCRIPT_NANOS: u128 = 1 << 53;

/// One check's quotas: 1 to [`MAX_WINDOWS`] windows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    kind: Kind,
    quotas: [Quota; MAX_WINDOWS],
    /// `(T, tau)` of each window in nanoseconds, as the scripts take them.
    parameters: [(u64, u64); MAX_WINDOWS],
    len: usize,
    /// The smallest burst of the windows.
    smallest_burst: u32,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// One window: the memory store's single-window decisions (no per-window report).
    One(Gcra),
    /// Several windows, decided together.
    Many(Windows),
}

/// What a rule decides for a request, given each window's TAT relative to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every window admits: these are the TATs after the request (relative to now).
    Allow([u64; MAX_WINDOWS]),
    /// Denied; the request fits in this many nanoseconds.
    DenyFor(u64),
    /// The cost exceeds a burst: denied whatever the state.
    DenyForever,
}

impl Rule {
    /// The rule of `quotas`.
    ///
    /// # Errors
    ///
    /// No window, more than [`MAX_WINDOWS`], or a quota the scripts cannot compute exactly (a
    /// full burst taking more than 52 days to refill): kind [`StoreErrorKind::Other`].
    pub(crate) fn new(quotas: &[Quota]) -> Result<Self, StoreError> {
        let (first, len) = match quotas {
            [first, ..] if quotas.len() <= MAX_WINDOWS => (*first, quotas.len()),
            _ => {
                return Err(StoreError::with_source(
                    StoreErrorKind::Other,
                    "a rate-limit check needs 1 to 4 windows",
                ))
            }
        };
        let mut all = [first; MAX_WINDOWS];
        let mut parameters = [(0, 0); MAX_WINDOWS];
        let mut smallest_burst = u32::MAX;
        for ((slot, parameter), quota) in all.iter_mut().zip(&mut parameters).zip(quotas) {
            *slot = *quota;
            *parameter = script_parameters(quota)?;
            smallest_burst = smallest_burst.min(quota.burst().get());
        }
        let kind = match Windows::new(quotas) {
            Some(windows) if len > 1 => Kind::Many(windows),
            _ => Kind::One(Gcra::new(&first)),
        };
        Ok(Self {
            kind,
            quotas: all,
            parameters,
            len,
            smallest_burst,
        })
    }

    /// How many windows.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The quotas, in the order given.
    pub(crate) fn quotas(&self) -> &[Quota] {
        &self.quotas[..self.len]
    }

    /// `(T, tau)` of each window, in nanoseconds.
    pub(crate) fn parameters(&self) -> &[(u64, u64)] {
        &self.parameters[..self.len]
    }

    /// The cost sent to a script: above the smallest burst the answer is "never" whatever the
    /// cost, so keep the script's numbers small.
    pub(crate) fn script_cost(&self, cost: NonZeroU32) -> u32 {
        cost.get().min(self.smallest_burst.saturating_add(1))
    }

    /// The outcome for `cost` cells, given each window's TAT relative to now (0: full).
    pub(crate) fn outcome(&self, tats: &[u64; MAX_WINDOWS], cost: u32) -> Outcome {
        match self.kind {
            Kind::One(gcra) => match gcra.verdict(Some(tats[0]), 0, cost) {
                Verdict::Allow { new_tat } => {
                    let mut after = [0; MAX_WINDOWS];
                    after[0] = new_tat;
                    Outcome::Allow(after)
                }
                Verdict::DenyUntil { earliest } => Outcome::DenyFor(earliest),
                Verdict::DenyForever => Outcome::DenyForever,
            },
            Kind::Many(windows) => match windows.verdict(tats, 0, cost) {
                WindowsVerdict::Allow { new_tats } => Outcome::Allow(new_tats),
                WindowsVerdict::DenyUntil { earliest } => Outcome::DenyFor(earliest),
                WindowsVerdict::DenyForever => Outcome::DenyForever,
            },
        }
    }

    /// The decision for `cost` cells given the TATs before the request (relative to now), as
    /// the memory store reports it: the state after the request (the same one when denied).
    pub(crate) fn decide(&self, before: &[u64; MAX_WINDOWS], cost: u32) -> (Outcome, Decision) {
        match self.kind {
            Kind::One(gcra) => {
                let verdict = gcra.verdict(Some(before[0]), 0, cost);
                let after = match verdict {
                    Verdict::Allow { new_tat } => new_tat,
                    Verdict::DenyUntil { .. } | Verdict::DenyForever => before[0],
                };
                (
                    self.outcome(before, cost),
                    gcra.decision(verdict, Some(after), 0),
                )
            }
            Kind::Many(windows) => {
                let verdict = windows.verdict(before, 0, cost);
                let after = match verdict {
                    WindowsVerdict::Allow { new_tats } => new_tats,
                    WindowsVerdict::DenyUntil { .. } | WindowsVerdict::DenyForever => *before,
                };
                (
                    self.outcome(before, cost),
                    windows.decision(verdict, &after, 0),
                )
            }
        }
    }

    /// Each window's interval `T` in nanoseconds (0 past the last window).
    pub(crate) fn interval(&self, window: usize) -> u64 {
        self.parameters().get(window).map_or(0, |&(t, _)| t)
    }
}

/// `(T, tau)` of `quota` in nanoseconds, once the quota is known to fit in the scripts.
fn script_parameters(quota: &Quota) -> Result<(u64, u64), StoreError> {
    let t = Gcra::new(quota).interval();
    let burst = u64::from(quota.burst().get());
    // Strictly below: `gcra.lua` answers 2 × TAT + 1, exact only up to 2^53.
    if u128::from(t) * u128::from(burst) * 2 >= MAX_SCRIPT_NANOS {
        return Err(StoreError::with_source(
            StoreErrorKind::Other,
            "quota too long for the redis store: a full burst must refill within 52 days",
        ));
    }
    // Cannot overflow: checked just above.
    Ok((t, t * (burst - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn quota(text: &str) -> Quota {
        text.parse().unwrap()
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn script_parameters_are_the_memory_stores() {
        let rule = Rule::new(&[quota("10/s")]).unwrap();
        assert_eq!(rule.parameters(), &[(100 * MS, 900 * MS)]);
        // A day's burst fits; a burst that takes a year to refill does not.
        assert!(
            Rule::new(&[quota("1000/h").allow_burst(NonZeroU32::new(24_000).unwrap())]).is_ok()
        );
        let error =
            Rule::new(&[quota("1/h").allow_burst(NonZeroU32::new(9_000).unwrap())]).unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Other);
        // No window, or too many.
        assert!(Rule::new(&[]).is_err());
        assert!(Rule::new(&[quota("1/s"); MAX_WINDOWS + 1]).is_err());
    }

    #[test]
    fn one_window_reports_like_the_memory_store_several_per_window() {
        let one = Rule::new(&[quota("10/s").allow_burst(NonZeroU32::new(3).unwrap())]).unwrap();
        let (outcome, decision) = one.decide(&[0; MAX_WINDOWS], 1);
        assert_eq!(outcome, Outcome::Allow([100 * MS, 0, 0, 0]));
        assert_eq!(decision.remaining(), 2);
        let (outcome, decision) = one.decide(&[300 * MS, 0, 0, 0], 1);
        assert_eq!(outcome, Outcome::DenyFor(100 * MS));
        assert_eq!(decision.retry_after(), Some(Duration::from_millis(100)));

        let many = Rule::new(&[quota("10/s"), quota("100/min")]).unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many.interval(1), 600 * MS);
        assert_eq!(many.interval(2), 0);
        let (outcome, decision) = many.decide(&[0; MAX_WINDOWS], 1);
        assert_eq!(outcome, Outcome::Allow([100 * MS, 600 * MS, 0, 0]));
        assert_eq!(
            decision.window_full_after(1),
            Some(Duration::from_millis(600))
        );
        assert_eq!(many.script_cost(NonZeroU32::new(500).unwrap()), 11);
        assert_eq!(many.outcome(&[0; MAX_WINDOWS], 11), Outcome::DenyForever);
    }
}
