//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! With the feature on, the layers record the series below into whatever recorder the
//! application installed (`metrics-exporter-prometheus`, StatsD, …); with no recorder
//! installed they go nowhere. With the feature off, none of this code exists: no cost at all.
//!
//! | Name | Type | Labels | What |
//! |---|---|---|---|
//! | `tower_bouncer_requests_total` | counter | `decision`, `source`, `route` | rate-limit decisions: `decision` is `allowed`, `denied` or `unresolved` (the client-IP layer found no address and rejected the request) |
//! | `tower_bouncer_tracked_keys` | gauge | | keys tracked by the in-memory store, updated every 4096 decisions per thread |
//! | `tower_bouncer_store_duration_seconds` | histogram | | time of one store decision; sampled 1 in 64 for stores that answer at once, every call for network stores |
//! | `tower_bouncer_redis_breaker_state` | gauge | | the Redis store's circuit breaker: `0` closed, `1` half-open, `2` open |
//! | `tower_bouncer_misconfigurations_total` | counter | `kind` | misconfiguration warnings logged, per [`Misconfiguration`](crate::client_ip::Misconfiguration) code |
//!
//! Labels:
//! - `source`: the kind of source that resolved the client IP ([`SourceKind::as_str`](crate::client_ip::SourceKind::as_str):
//!   `peer`, `xff`, `forwarded`, `header`, `signed`, or a custom name), `fallback` for the
//!   peer used because nothing resolved, `none` when there is no client IP;
//! - `route`: Axum's matched route template (`/users/{id}`), or `unmatched`. Never the raw
//!   path: a client could otherwise create one series per URL it invents.
//!
//! The example `examples/metrics.rs` installs the Prometheus recorder and prints what it
//! exports.
//!
//! These series are recorded by this crate's layers and stores only; a [`Store`](crate::store::Store)
//! written outside the crate records its own, under its own names.

use std::cell::Cell;

/// The metric names, in one place.
#[cfg(feature = "metrics")]
pub(crate) mod names {
    pub(crate) const REQUESTS: &str = "tower_bouncer_requests_total";
    pub(crate) const TRACKED_KEYS: &str = "tower_bouncer_tracked_keys";
    pub(crate) const STORE_DURATION: &str = "tower_bouncer_store_duration_seconds";
    pub(crate) const BREAKER_STATE: &str = "tower_bouncer_redis_breaker_state";
    pub(crate) const MISCONFIGURATIONS: &str = "tower_bouncer_misconfigurations_total";
}

/// The state of a store's circuit breaker, as the `tower_bouncer_redis_breaker_state` gauge
/// reports it.
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // set by the Redis store
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerGauge {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

/// Sets the `tower_bouncer_redis_breaker_state` gauge. A no-op without the feature.
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // called by the Redis store
pub(crate) fn set_breaker_state(state: BreakerGauge) {
    #[cfg(feature = "metrics")]
    metrics::gauge!(names::BREAKER_STATE).set(f64::from(state as u8));
    #[cfg(not(feature = "metrics"))]
    let _ = state;
}

/// Counts one logged misconfiguration warning of `kind`.
pub(crate) fn misconfiguration(kind: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::MISCONFIGURATIONS, "kind" => kind).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = kind;
}

/// Counts one request decision.
///
/// The labelled counter handle is looked up in a small per-thread cache (no lock, no
/// allocation once warm): 64 slots, direct-mapped, keyed by the decision, the source and the
/// address of the matched route's text (Axum keeps one string per route for the router's
/// life; the text is compared too, so a reused address cannot mislabel), and checked against
/// the recorder in force (a recorder installed after the first request gets new handles).
/// A miss registers the counter with the recorder and takes the slot.
#[cfg(feature = "metrics")]
pub(crate) fn request(decision: &'static str, source: &'static str, route: Route<'_>) {
    let route = route.as_str();
    let key = [
        decision.as_ptr() as usize,
        source.as_ptr() as usize,
        route.as_ptr() as usize,
        route.len(),
    ];
    let recorder =
        metrics::with_recorder(|recorder| std::ptr::from_ref(recorder).cast::<()>() as usize);
    let index = slot_index(&key);
    let counted = COUNTERS.with(|cache| match &cache.borrow()[index] {
        Some(slot) if slot.key == key && slot.recorder == recorder && *slot.route == *route => {
            slot.counter.increment(1);
            true
        }
        _ => false,
    });
    if counted {
        return;
    }
    let counter = metrics::counter!(
        names::REQUESTS,
        "decision" => decision,
        "source" => source,
        "route" => route.to_owned()
    );
    counter.increment(1);
    COUNTERS.with(|cache| {
        cache.borrow_mut()[index] = Some(Slot {
            key,
            recorder,
            route: route.into(),
            counter,
        });
    });
}

#[cfg(feature = "metrics")]
const SLOTS: usize = 64;

/// One cached counter handle.
#[cfg(feature = "metrics")]
struct Slot {
    key: [usize; 4],
    recorder: usize,
    route: Box<str>,
    counter: metrics::Counter,
}

#[cfg(feature = "metrics")]
thread_local! {
    static COUNTERS: std::cell::RefCell<[Option<Slot>; SLOTS]> =
        const { std::cell::RefCell::new([const { None }; SLOTS]) };
}

/// The slot of a key: addresses and lengths the server chose (never client input), mixed by
/// one multiply; the top six bits pick one of the 64 slots.
#[cfg(feature = "metrics")]
fn slot_index(key: &[usize; 4]) -> usize {
    let mixed = (key[0] as u64)
        ^ (key[1] as u64).rotate_left(17)
        ^ (key[2] as u64).rotate_left(31)
        ^ (key[3] as u64).rotate_left(47);
    (mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize
}

/// The route label of a request.
#[cfg(feature = "metrics")]
pub(crate) struct Route<'a>(&'a str);

#[cfg(feature = "metrics")]
impl<'a> Route<'a> {
    /// The route of a request: Axum's matched path, never the raw path.
    pub(crate) fn of(extensions: &'a http::Extensions) -> Self {
        #[cfg(feature = "axum")]
        if let Some(path) = extensions.get::<axum::extract::MatchedPath>() {
            return Route(path.as_str());
        }
        let _ = extensions;
        Route("unmatched")
    }

    fn as_str(&self) -> &'a str {
        self.0
    }
}

/// Records one store decision's duration.
#[cfg(feature = "metrics")]
pub(crate) fn store_duration(duration: std::time::Duration) {
    metrics::histogram!(names::STORE_DURATION).record(duration.as_secs_f64());
}

/// Sets the tracked-keys gauge.
#[cfg(feature = "metrics")]
pub(crate) fn tracked_keys(keys: usize) {
    // Exact up to 2^53 keys, far beyond any store's cap.
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!(names::TRACKED_KEYS).set(keys as f64);
}

/// A per-thread request counter for sampling: one thread-local increment, no lock, no shared
/// cache line. Each use has its own, so that two samplers never alias.
pub(crate) struct Sampler(&'static std::thread::LocalKey<Cell<u32>>);

thread_local! {
    static DETECT_TICK: Cell<u32> = const { Cell::new(0) };
    static STORE_TICK: Cell<u32> = const { Cell::new(0) };
}

/// The sampler of misconfiguration detection.
pub(crate) const DETECT: Sampler = Sampler(&DETECT_TICK);
/// The sampler of store timings and the tracked-keys gauge.
#[allow(dead_code)] // used with the feature only
pub(crate) const STORE: Sampler = Sampler(&STORE_TICK);

impl Sampler {
    /// This thread's next tick (starting at 1).
    #[inline]
    pub(crate) fn tick(&self) -> u32 {
        self.0.with(|tick| {
            let next = tick.get().wrapping_add(1);
            tick.set(next);
            next
        })
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    fn values(recorder: &DebuggingRecorder) -> Vec<(String, DebugValue)> {
        recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
            .collect()
    }

    #[test]
    fn breaker_gauge_for_the_redis_store() {
        let recorder = DebuggingRecorder::new();
        metrics::with_local_recorder(&recorder, || set_breaker_state(BreakerGauge::Open));
        let seen = values(&recorder);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, names::BREAKER_STATE);
        assert!(matches!(seen[0].1, DebugValue::Gauge(g) if g.into_inner() == 2.0));
        metrics::with_local_recorder(&recorder, || set_breaker_state(BreakerGauge::HalfOpen));
        assert!(matches!(values(&recorder)[0].1, DebugValue::Gauge(g) if g.into_inner() == 1.0));
    }

    /// The per-thread handle cache follows the recorder in force: a request counted under one
    /// recorder is not credited to the next one's cached handle, and vice versa.
    #[test]
    fn cached_handles_follow_the_recorder() {
        let extensions = http::Extensions::new();
        let (first, second) = (DebuggingRecorder::new(), DebuggingRecorder::new());
        for _ in 0..3 {
            metrics::with_local_recorder(&first, || {
                request("allowed", "peer", Route::of(&extensions));
            });
        }
        metrics::with_local_recorder(&second, || {
            request("allowed", "peer", Route::of(&extensions));
        });
        let count = |recorder: &DebuggingRecorder| match values(recorder).as_slice() {
            [(name, DebugValue::Counter(count))] if name == names::REQUESTS => *count,
            other => panic!("{other:?}"),
        };
        assert_eq!((count(&first), count(&second)), (3, 1));
    }
}
