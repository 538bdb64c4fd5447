//! Where the rate-limit state lives: the [`Store`] trait, and the bounded in-memory
//! [`MemoryStore`].
//!
//! A store answers one question: may `key` spend `cost` cells of `quota` now? It charges the
//! cells and answers [`Decision`] "allowed", or changes nothing and answers "denied" with the
//! time to wait. Every store runs the same GCRA arithmetic (below), so a decision does not
//! depend on where the state is kept.
//!
//! # The arithmetic
//!
//! GCRA with [`governor`]'s semantics (a differential property test holds the memory store
//! to governor's decisions and waits), on one integer per key, in whole ticks (nanoseconds
//! in the memory store), so that a script on another store can repeat it step for step:
//!
//! ```text
//! T    = replenish interval, ticks per cell (at least 1)
//! B    = burst
//! tau  = T × (B − 1)          the tolerance: what the burst allows beyond the first cell
//! TAT  = theoretical arrival time of the key; an absent key has TAT = now
//!
//! a request of n cells at time now:
//!   n > B                          denied forever: it can never fit (no retry hint)
//!   now ≥ TAT + T×(n − 1) − tau    allowed:  TAT ← max(TAT, now) + T×n
//!   otherwise                      denied:   nothing changes; retry after
//!                                            TAT + T×(n − 1) − tau − now  (> 0)
//!
//! reported, with S = max(TAT, now) the state after the decision:
//!   remaining        = (now + tau − S) / T + 1   (integer division; 0 when S > now + tau)
//!   next_cell_after  = S − tau − now             (0 when negative)
//!   full_after       = S − now
//! ```
//!
//! Every operation saturates instead of overflowing (only periods beyond 584 years reach it).
//!
//! **An expired key is an absent key.** When `TAT ≤ now`, the stored key and an absent key
//! give the same decision for every `n ≤ B`: both are allowed, since
//! `TAT + T×(n − 1) − tau ≤ now + T×(n − 1) − tau ≤ now` (as `T×(n − 1) ≤ tau`); both set
//! `TAT ← now + T×n`, since `max(TAT, now) = now`; and the reports, computed from
//! `max(TAT, now)`, agree. So a store may forget a key as soon as its TAT is not after the
//! current time (a network store sets the key to expire then), and housekeeping that removes
//! exactly those keys changes no decision.
//!
//! # The in-memory store
//!
//! [`MemoryStore`] (feature `memory`, on by default) keeps one 8-byte number per tracked key
//! in a sharded map. Its memory is bounded with nothing for you to spawn or call:
//!
//! - a **housekeeping thread** owned by the store forgets every key whose bucket is full again
//!   (such a key decides exactly like an absent one, so this changes no decision) and gives the
//!   freed memory back by shrinking the map; it stops as soon as the last clone of the store is
//!   dropped;
//! - a **hard cap** on tracked keys ([`MemoryStoreBuilder::max_keys`], 1,000,000 by default):
//!   when full, the store first forgets expired keys, then applies [`AtCapacity`] to the new key
//!   (deny by default). Keys already tracked are never affected.
//!
//! ```
//! # #[cfg(feature = "memory")] {
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//! use tower_bouncer::rate_limit::Quota;
//! use tower_bouncer::store::{MemoryStore, Store};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store: MemoryStore<&'static str> = MemoryStore::new();
//! let quota: Quota = "2/min".parse().unwrap();
//! let one = NonZeroU32::MIN;
//!
//! assert!(store.check(&"alice", &[quota], one).await?.is_allowed());
//! assert!(store.check(&"alice", &[quota], one).await?.is_allowed());
//! let third = store.check(&"alice", &[quota], one).await?;
//! assert!(!third.is_allowed());
//! // The next cell comes back 30 s after the first one was spent.
//! let wait = third.retry_after().unwrap();
//! assert!(wait > Duration::from_secs(29) && wait <= Duration::from_secs(30));
//! // Another key has its own bucket.
//! assert!(store.check(&"bob", &[quota], one).await?.is_allowed());
//! # Ok::<(), tower_bouncer::store::StoreError>(())
//! # }).unwrap();
//! # }
//! ```
//!
//! # Several windows at once
//!
//! A request can be held to several quotas at once — "3 per second **and** 5 per minute" — in
//! one call: it passes only if every window has room, and then every window is charged. A
//! denial charges **nothing anywhere**, so the window that would have allowed loses no quota
//! (stacking two single-window limiters gets this wrong: the first one charges before the
//! second denies).
//!
//! ```
//! # #[cfg(feature = "memory")] {
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//! use tower_bouncer::rate_limit::Quota;
//! use tower_bouncer::store::{ManualClock, MemoryStore, Store};
//!
//! let clock = ManualClock::new();
//! let store: MemoryStore<&'static str> =
//!     MemoryStore::builder().clock(clock.clone()).manual_housekeeping().build();
//! let windows: [Quota; 2] = ["3/s".parse().unwrap(), "5/min".parse().unwrap()];
//! let one = NonZeroU32::MIN;
//! let check = || store.check(&"alice", &windows, one).into_inner().unwrap();
//!
//! let burst = (0..10).filter(|_| check().is_allowed()).count();
//! assert_eq!(burst, 3); // the per-second window
//! let before = store.theoretical_arrival_times(&"alice");
//! let denied = check();
//! assert!(!denied.is_allowed());
//! assert_eq!(store.theoretical_arrival_times(&"alice"), before); // nothing charged
//! clock.advance(Duration::from_secs(1));
//! let more = (0..10).filter(|_| check().is_allowed()).count();
//! assert_eq!(more, 2); // the per-minute window has 2 of its 5 left
//! // Each window's state, for the IETF fields of each policy.
//! let decision = check();
//! assert_eq!(decision.remaining(), 0);
//! assert_eq!(decision.window_full_after(1), Some(Duration::from_secs(59)));
//! # }
//! ```
//!
//! The memory store's future is [`std::future::Ready`]: outside async code,
//! `store.check(..).into_inner()` gives the decision at once.
//!
//! Tests drive time by hand with a [`ManualClock`], and can size the store and run its
//! housekeeping themselves:
//!
//! ```
//! # #[cfg(feature = "memory")] {
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//! use tower_bouncer::rate_limit::Quota;
//! use tower_bouncer::store::{AtCapacity, ManualClock, MemoryStore, Store};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let clock = ManualClock::new();
//! let store = MemoryStore::builder()
//!     .clock(clock.clone())
//!     .max_keys(10_000)
//!     .at_capacity(AtCapacity::Deny)
//!     .manual_housekeeping()
//!     .build();
//! let quota: Quota = "1/s".parse().unwrap();
//! let one = NonZeroU32::MIN;
//!
//! assert!(store.check(&42_u64, &[quota], one).await.unwrap().is_allowed());
//! assert!(!store.check(&42_u64, &[quota], one).await.unwrap().is_allowed());
//! clock.advance(Duration::from_secs(1));
//! assert_eq!(store.len(), 1);
//! // The bucket of key 42 is full again: housekeeping forgets it.
//! assert_eq!(store.housekeep(), 1);
//! assert!(store.is_empty());
//! assert!(store.check(&42_u64, &[quota], one).await.unwrap().is_allowed());
//! # });
//! # }
//! ```
//!
//! # Writing a store
//!
//! Implement [`Store`] and build each [`Decision`] with [`Decision::admitted`],
//! [`Decision::denied_for`] or [`Decision::denied_forever`]. A store that can fail (a network
//! store) answers a [`StoreError`]; what a layer does then is its documented failure policy.

mod clock;
// Shared by the stores; without one of them only `nanos` is used.
#[cfg_attr(not(feature = "memory"), allow(dead_code))]
mod gcra;
#[cfg(feature = "memory")]
mod hashed;
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "redis")]
pub use self::redis::{OnFailure, RedisCheck, RedisKey, RedisStore, RedisStoreBuilder};
pub use clock::{Clock, ManualClock, MonotonicClock};
#[cfg(feature = "memory")]
pub use memory::{AtCapacity, HousekeepingThread, MemoryStore, MemoryStoreBuilder};

use crate::rate_limit::Quota;

/// The most windows (quotas) one [`Store::check`] decides together: 4, enough for "10 per
/// second, 1,000 per hour and 10,000 per day" and one more.
pub const MAX_WINDOWS: usize = gcra::MAX_WINDOWS;

/// Keeps GCRA state per key and decides whether a request may pass.
///
/// The future is named so that services built on a store need no boxing: the memory store
/// answers at once with [`std::future::Ready`]; a network store may return its own future.
pub trait Store<K>: fmt::Debug + Send + Sync + 'static {
    /// The future of one decision.
    type Future: Future<Output = Result<Decision, StoreError>> + Send + 'static;

    /// Charge `cost` cells of every window in `windows` to `key` — or, if any window denies,
    /// deny and change nothing in any window.
    ///
    /// `windows` is one quota (`std::slice::from_ref(&quota)`, or `&[quota]`) or several
    /// decided together, at most [`MAX_WINDOWS`]: "10 per second **and** 1,000 per hour". The
    /// decision is atomic per key: concurrent requests never see one window charged and
    /// another not, and a denial never spends quota in the windows that would have allowed.
    /// The [`Decision`] reports the fewest cells left in any window, the longest wait of the
    /// windows that deny, and each window's state ([`Decision::window_full_after`]).
    ///
    /// A `cost` above the burst of any window is denied without a retry hint
    /// ([`Decision::retry_after`] is `None`): it can never pass. No window, or more than
    /// [`MAX_WINDOWS`], is an error of kind [`StoreErrorKind::Other`] (a layer never asks).
    ///
    /// Two windows over the same key are one state, distinct from the state of that key under
    /// one window: give a key one set of windows (the layer does).
    fn check(&self, key: &K, windows: &[Quota], cost: NonZeroU32) -> Self::Future;

    /// The decision [`check`](Self::check) would take now, **without charging anything**; `None`
    /// when the store cannot answer that (the default).
    ///
    /// Charge by outcome
    /// ([`charge_when`](crate::rate_limit::RateLimitLayerBuilder::charge_when)) previews before
    /// the call and checks after the response.
    fn preview(&self, key: &K, windows: &[Quota], cost: NonZeroU32) -> Option<Self::Future> {
        let _ = (key, windows, cost);
        None
    }

    /// How many keys the store tracks now, when it knows cheaply (the tracked-keys gauge of
    /// the `metrics` feature); `None` by default.
    fn tracked_keys(&self) -> Option<usize> {
        None
    }
}

impl<K, S: Store<K> + ?Sized> Store<K> for Arc<S> {
    type Future = S::Future;

    fn check(&self, key: &K, windows: &[Quota], cost: NonZeroU32) -> Self::Future {
        (**self).check(key, windows, cost)
    }

    fn preview(&self, key: &K, windows: &[Quota], cost: NonZeroU32) -> Option<Self::Future> {
        (**self).preview(key, windows, cost)
    }

    fn tracked_keys(&self) -> Option<usize> {
        (**self).tracked_keys()
    }
}

/// The answer of a [`Store`] for one request.
///
/// Times are measured from the moment of the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    remaining: u32,
    /// Nanoseconds; 0 means no hint (allowed, or denied forever).
    retry_after: u64,
    next_cell_after: u64,
    full_after: u64,
    /// Nanoseconds until each window is full again, for the first `window_count` windows.
    windows: [u64; MAX_WINDOWS],
    window_count: u8,
}

impl Decision {
    /// An allowed request (chain the `with_*` setters to report the state after it).
    pub const fn admitted() -> Self {
        Self {
            allowed: true,
            remaining: 0,
            retry_after: 0,
            next_cell_after: 0,
            full_after: 0,
            windows: [0; MAX_WINDOWS],
            window_count: 0,
        }
    }

    /// A request denied for `retry_after`, the time until its cost fits. A denial always
    /// carries a wait: zero is raised to one nanosecond.
    pub fn denied_for(retry_after: Duration) -> Self {
        Self {
            allowed: false,
            retry_after: gcra::nanos(retry_after).max(1),
            ..Self::admitted()
        }
    }

    /// A request that can never pass (its cost exceeds the burst): denied, without a retry
    /// hint.
    pub const fn denied_forever() -> Self {
        Self {
            allowed: false,
            ..Self::admitted()
        }
    }

    /// Sets [`remaining`](Self::remaining).
    #[must_use]
    pub const fn with_remaining(mut self, remaining: u32) -> Self {
        self.remaining = remaining;
        self
    }

    /// Sets [`next_cell_after`](Self::next_cell_after) (saturating at 584 years).
    #[must_use]
    pub fn with_next_cell_after(mut self, next_cell_after: Duration) -> Self {
        self.next_cell_after = gcra::nanos(next_cell_after);
        self
    }

    /// Sets [`full_after`](Self::full_after) (saturating at 584 years).
    #[must_use]
    pub fn with_full_after(mut self, full_after: Duration) -> Self {
        self.full_after = gcra::nanos(full_after);
        self
    }

    /// Sets [`window_full_after`](Self::window_full_after) of window `index` (a store deciding
    /// several windows reports each of them; `index` at or above [`MAX_WINDOWS`] is ignored).
    #[must_use]
    pub fn with_window_full_after(mut self, index: usize, full_after: Duration) -> Self {
        if let Some(slot) = self.windows.get_mut(index) {
            *slot = gcra::nanos(full_after);
            // `index < MAX_WINDOWS`, a u8.
            self.window_count = self.window_count.max(index as u8 + 1);
        }
        self
    }

    /// Sets the reports in nanoseconds (the shared arithmetic's units, no conversion).
    pub(crate) const fn with_nanos(
        mut self,
        remaining: u32,
        next_cell_after: u64,
        full_after: u64,
    ) -> Self {
        self.remaining = remaining;
        self.next_cell_after = next_cell_after;
        self.full_after = full_after;
        self
    }

    /// Sets window `index`'s time to full in nanoseconds (`index < MAX_WINDOWS`).
    pub(crate) fn with_window_nanos(mut self, index: usize, full_after: u64) -> Self {
        if let Some(slot) = self.windows.get_mut(index) {
            *slot = full_after;
            // `index < MAX_WINDOWS`, a u8.
            self.window_count = self.window_count.max(index as u8 + 1);
        }
        self
    }

    /// Whether the request may pass (its cells are charged).
    pub const fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// Whole cells still available right after this decision (the `r` of an IETF `RateLimit`
    /// field).
    pub const fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Denied: how long until the request's cost fits (never zero). `None` when allowed, and
    /// `None` when denied because the cost exceeds the burst (it can never pass).
    pub const fn retry_after(&self) -> Option<Duration> {
        if self.allowed || self.retry_after == 0 {
            None
        } else {
            Some(Duration::from_nanos(self.retry_after))
        }
    }

    /// Time until at least one more cell is available (the `t` of an IETF `RateLimit` field:
    /// with GCRA the next cell, not a window reset); zero when a cell is available now.
    pub const fn next_cell_after(&self) -> Duration {
        Duration::from_nanos(self.next_cell_after)
    }

    /// Time until the bucket is completely full again (with several windows: the last of
    /// them).
    pub const fn full_after(&self) -> Duration {
        Duration::from_nanos(self.full_after)
    }

    /// Time until window `index` (in the order of the `windows` given to [`Store::check`]) is
    /// completely full again; `None` past the last window reported. A store that reports no
    /// window (a single window, described by [`full_after`](Self::full_after) alone) answers
    /// `full_after` for window 0.
    ///
    /// The layer derives each window's cells left and time to the next cell from it, for the
    /// IETF `RateLimit` field of every policy.
    pub fn window_full_after(&self, index: usize) -> Option<Duration> {
        if index < usize::from(self.window_count) {
            self.windows
                .get(index)
                .map(|&nanos| Duration::from_nanos(nanos))
        } else if index == 0 && self.window_count == 0 {
            Some(self.full_after())
        } else {
            None
        }
    }
}

/// A store that could not decide (unreachable, too slow, or an invalid answer).
///
/// Opaque: [`kind`](Self::kind) says what went wrong, [`source`](Error::source) gives the
/// cause when there is one. The in-memory store never fails.
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    source: Option<Box<dyn Error + Send + Sync + 'static>>,
}

/// What went wrong in a [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store could not be reached (connection refused or lost, circuit open).
    Unavailable,
    /// The store did not answer in time.
    Timeout,
    /// The store answered something that is not a decision.
    InvalidResponse,
    /// Any other failure.
    Other,
}

impl StoreError {
    /// An error of `kind` without a cause.
    pub fn new(kind: StoreErrorKind) -> Self {
        Self { kind, source: None }
    }

    /// An error of `kind` caused by `source`.
    pub fn with_source(
        kind: StoreErrorKind,
        source: impl Into<Box<dyn Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            kind,
            source: Some(source.into()),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            StoreErrorKind::Unavailable => "rate-limit store unavailable",
            StoreErrorKind::Timeout => "rate-limit store timed out",
            StoreErrorKind::InvalidResponse => "rate-limit store gave an invalid response",
            StoreErrorKind::Other => "rate-limit store failed",
        })
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_constructors_and_accessors() {
        let allowed = Decision::admitted()
            .with_remaining(4)
            .with_next_cell_after(Duration::ZERO)
            .with_full_after(Duration::from_secs(2));
        assert!(allowed.is_allowed());
        assert_eq!(allowed.remaining(), 4);
        assert_eq!(allowed.retry_after(), None);
        assert_eq!(allowed.full_after(), Duration::from_secs(2));

        let denied = Decision::denied_for(Duration::from_millis(1500));
        assert!(!denied.is_allowed());
        assert_eq!(denied.retry_after(), Some(Duration::from_millis(1500)));

        // A denial always has a wait.
        let zero = Decision::denied_for(Duration::ZERO);
        assert_eq!(zero.retry_after(), Some(Duration::from_nanos(1)));

        let never = Decision::denied_forever().with_remaining(3);
        assert!(!never.is_allowed());
        assert_eq!(never.retry_after(), None);
        assert_eq!(never.remaining(), 3);

        assert_eq!(
            Decision::admitted()
                .with_full_after(Duration::MAX)
                .full_after(),
            Duration::from_nanos(u64::MAX)
        );
    }

    #[test]
    fn store_error_display_and_source() {
        let table = [
            (StoreErrorKind::Unavailable, "rate-limit store unavailable"),
            (StoreErrorKind::Timeout, "rate-limit store timed out"),
            (
                StoreErrorKind::InvalidResponse,
                "rate-limit store gave an invalid response",
            ),
            (StoreErrorKind::Other, "rate-limit store failed"),
        ];
        for (kind, message) in table {
            let error = StoreError::new(kind);
            assert_eq!(error.kind(), kind);
            assert_eq!(error.to_string(), message);
            assert!(error.source().is_none());
        }
        let cause = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = StoreError::with_source(StoreErrorKind::Unavailable, cause);
        assert_eq!(error.source().unwrap().to_string(), "refused");
    }

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn public_types_are_send_sync() {
        assert_send_sync::<Decision>();
        assert_send_sync::<StoreError>();
    }
}
