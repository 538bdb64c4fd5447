//! The time source of a store: [`MonotonicClock`] in production, [`ManualClock`] in tests.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::gcra::nanos;

/// A source of time for a store: the time elapsed since the clock's own origin.
///
/// It must never go backwards, and every clone of a clock must read the same time.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The time elapsed since this clock's origin.
    fn now(&self) -> Duration;
}

/// The real clock: `std::time::Instant`, monotonic, measured from the clock's creation.
///
/// Chosen over a TSC clock (`quanta`, governor's default) on purpose: TSC readings taken on
/// different cores can disagree, and a limiter that sees time step back and forth between
/// threads answers spurious 429s (governor issue #299). `Instant` is `CLOCK_MONOTONIC` on
/// Linux: consistent across cores, and read through the vDSO without a system call.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }
}

/// A clock that moves only when told to: for tests.
///
/// Clones share the same time, so a test keeps one clone and gives another to the store.
///
/// ```
/// use std::time::Duration;
/// use tower_bouncer::store::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let shared = clock.clone();
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(shared.now(), Duration::from_millis(1500));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock (and every clone of it) forward by `by`, saturating at 584 years.
    pub fn advance(&self, by: Duration) {
        let by = nanos(by);
        // `fetch_update` only fails when the closure answers `None`; this one never does.
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some(now.saturating_add(by))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::new();
        let clone = clock.clone();
        assert_eq!(clock.now(), Duration::ZERO);
        clone.advance(Duration::from_nanos(7));
        assert_eq!(clock.now(), Duration::from_nanos(7));
        clock.advance(Duration::MAX);
        assert_eq!(clone.now(), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn monotonic_clock_never_goes_back() {
        let clock = MonotonicClock::new();
        let mut last = clock.now();
        for _ in 0..1000 {
            let now = clock.now();
            assert!(now >= last);
            last = now;
        }
    }
}
