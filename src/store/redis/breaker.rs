//! The circuit breaker in front of Redis: a dead Redis costs one timeout per probe interval,
//! not one per request.
//!
//! ```text
//!             a call fails                      the probe interval has passed
//!   Closed ───────────────────► Open ───────────────────────────────► Probing
//!     ▲                          ▲   (every other request: policy)      │ one request
//!     │                          └──────────────────────────────────────┤ goes to Redis
//!     │                               the probe fails                    │
//!     └──────────────────────────────────────────────────────────────────┘
//!                                     the probe succeeds
//! ```
//!
//! Lock-free: one atomic state and one atomic deadline. A warning is logged when the circuit
//! opens (Redis lost) and when it closes (Redis back); failed probes are `debug` events, so a
//! Redis that stays down logs one warning, not one per probe.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const PROBING: u8 = 2;

/// What a request may do, answered by [`Breaker::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The circuit is closed: call Redis.
    Call,
    /// The circuit is open and this request is its probe: call Redis.
    Probe,
    /// The circuit is open: do not call Redis, apply the failure policy.
    Reject,
}

/// A circuit breaker driven by the caller's clock (nanoseconds since any fixed origin).
#[derive(Debug)]
pub(crate) struct Breaker {
    state: AtomicU8,
    /// While open: when the next probe may go.
    next_probe: AtomicU64,
    interval: u64,
}

impl Breaker {
    /// A closed breaker that probes every `interval` nanoseconds once open.
    pub(crate) fn new(interval: u64) -> Self {
        Self {
            state: AtomicU8::new(CLOSED),
            next_probe: AtomicU64::new(0),
            interval,
        }
    }

    /// May a request call Redis at `now`?
    pub(crate) fn admit(&self, now: u64) -> Admission {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Admission::Call,
            OPEN if now >= self.next_probe.load(Ordering::Acquire)
                && self
                    .state
                    .compare_exchange(OPEN, PROBING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok() =>
            {
                crate::metrics::set_breaker_state(crate::metrics::BreakerGauge::HalfOpen);
                Admission::Probe
            }
            _ => Admission::Reject,
        }
    }

    /// Redis answered the request that `admission` let through.
    pub(crate) fn on_success(&self, admission: Admission) {
        // Only the probe closes an open circuit: a late answer to a call sent before the
        // circuit opened says little about Redis now.
        if admission == Admission::Probe
            && self
                .state
                .compare_exchange(PROBING, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            crate::metrics::set_breaker_state(crate::metrics::BreakerGauge::Closed);
            tracing::warn!("redis rate-limit store reachable again: circuit closed");
        }
    }

    /// The request that `admission` let through failed at `now` (error or timeout).
    pub(crate) fn on_failure(&self, admission: Admission, now: u64, error: &dyn std::fmt::Display) {
        match admission {
            Admission::Call => {
                self.next_probe
                    .store(now.saturating_add(self.interval), Ordering::Release);
                if self
                    .state
                    .compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    crate::metrics::set_breaker_state(crate::metrics::BreakerGauge::Open);
                    tracing::warn!(
                        %error,
                        probe_interval_ms = self.interval / 1_000_000,
                        "redis rate-limit store failing: circuit open, the failure policy \
                         applies until a probe succeeds"
                    );
                }
            }
            Admission::Probe => {
                self.next_probe
                    .store(now.saturating_add(self.interval), Ordering::Release);
                self.state.store(OPEN, Ordering::Release);
                crate::metrics::set_breaker_state(crate::metrics::BreakerGauge::Open);
                tracing::debug!(%error, "redis rate-limit store probe failed: circuit stays open");
            }
            Admission::Reject => {}
        }
    }

    /// Whether requests currently go to Redis.
    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) == CLOSED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn closed_calls_until_a_failure_opens_it() {
        let breaker = Breaker::new(SECOND);
        assert_eq!(breaker.admit(0), Admission::Call);
        breaker.on_success(Admission::Call);
        assert!(breaker.is_closed());
        breaker.on_failure(Admission::Call, 10, &"refused");
        assert!(!breaker.is_closed());
        // Everything is rejected until the probe interval has passed.
        assert_eq!(breaker.admit(10), Admission::Reject);
        assert_eq!(breaker.admit(SECOND + 9), Admission::Reject);
    }

    #[test]
    fn one_probe_per_interval_and_a_successful_probe_closes_it() {
        let breaker = Breaker::new(SECOND);
        breaker.on_failure(Admission::Call, 0, &"timeout");
        assert_eq!(breaker.admit(SECOND), Admission::Probe);
        // Only one probe at a time.
        assert_eq!(breaker.admit(SECOND), Admission::Reject);
        assert_eq!(breaker.admit(5 * SECOND), Admission::Reject);
        breaker.on_failure(Admission::Probe, SECOND + 50, &"timeout");
        assert_eq!(breaker.admit(2 * SECOND), Admission::Reject);
        assert_eq!(breaker.admit(2 * SECOND + 50), Admission::Probe);
        breaker.on_success(Admission::Probe);
        assert!(breaker.is_closed());
        assert_eq!(breaker.admit(2 * SECOND + 51), Admission::Call);
    }

    #[test]
    fn a_late_answer_to_an_old_call_does_not_close_it() {
        let breaker = Breaker::new(SECOND);
        breaker.on_failure(Admission::Call, 0, &"timeout");
        breaker.on_success(Admission::Call);
        assert!(!breaker.is_closed());
        // Nor does a late failure push the probe of an open circuit back forever: the
        // deadline moves, the state stays open.
        breaker.on_failure(Admission::Call, 10, &"timeout");
        assert_eq!(breaker.admit(SECOND + 10), Admission::Probe);
    }
}
