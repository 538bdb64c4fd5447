//! The rate-limit part of an explanation: the request's key and its bucket, read without
//! charging anything.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::client_ip::RequestView;
use crate::rate_limit::{ExtractKey, Quota};
#[cfg(feature = "memory")]
use crate::store::MemoryStore;

/// A store whose buckets can be read without being charged, for the explain endpoint.
///
/// Implemented for [`MemoryStore`] (feature `memory`) and for `Arc`s of such stores.
pub trait InspectBucket<K>: Send + Sync + 'static {
    /// The state of `key`'s bucket under `quota` now, or `None` when this store cannot tell.
    /// Must not charge anything.
    fn inspect(&self, key: &K, quota: &Quota) -> Option<BucketState>;
}

#[cfg(feature = "memory")]
impl<K> InspectBucket<K> for MemoryStore<K>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    fn inspect(&self, key: &K, quota: &Quota) -> Option<BucketState> {
        let decision = self.peek(key, quota);
        Some(BucketState {
            remaining: decision.remaining(),
            burst: quota.burst().get(),
            next_cell_after: decision.next_cell_after(),
            full_after: decision.full_after(),
        })
    }
}

impl<K, S: InspectBucket<K> + ?Sized> InspectBucket<K> for Arc<S> {
    fn inspect(&self, key: &K, quota: &Quota) -> Option<BucketState> {
        (**self).inspect(key, quota)
    }
}

/// The state of one bucket at the moment of the explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketState {
    remaining: u32,
    burst: u32,
    next_cell_after: Duration,
    full_after: Duration,
}

impl BucketState {
    /// A bucket with `remaining` of `burst` cells, the next cell back after
    /// `next_cell_after` and the bucket full after `full_after`.
    pub fn new(
        remaining: u32,
        burst: u32,
        next_cell_after: Duration,
        full_after: Duration,
    ) -> Self {
        Self {
            remaining,
            burst,
            next_cell_after,
            full_after,
        }
    }

    /// Whole cells available now.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// The quota's burst: the most cells the bucket holds.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Time until one more cell is available (zero when one is available now).
    pub fn next_cell_after(&self) -> Duration {
        self.next_cell_after
    }

    /// Time until the bucket is full again.
    pub fn full_after(&self) -> Duration {
        self.full_after
    }
}

/// The key and bucket of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KeyReport {
    /// The key as text (its `Debug` form); `None` when the request has no key.
    pub(super) key: Option<String>,
    pub(super) bucket: Option<BucketState>,
}

/// A key extractor, a store and a quota, behind one type-erased function.
#[derive(Clone)]
pub(super) struct Inspector {
    inspect: Arc<dyn Fn(&RequestView<'_>) -> KeyReport + Send + Sync>,
}

impl Inspector {
    pub(super) fn new<K, St>(key: K, store: St, quota: Quota) -> Self
    where
        K: ExtractKey,
        St: InspectBucket<K::Key>,
    {
        Self {
            inspect: Arc::new(move |request| match key.extract_key(request) {
                Some(value) => KeyReport {
                    key: Some(format!("{value:?}")),
                    bucket: store.inspect(&value, &quota),
                },
                None => KeyReport {
                    key: None,
                    bucket: None,
                },
            }),
        }
    }

    pub(super) fn report(&self, request: &RequestView<'_>) -> KeyReport {
        (self.inspect)(request)
    }
}

impl fmt::Debug for Inspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inspector").finish_non_exhaustive()
    }
}
