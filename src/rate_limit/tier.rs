//! Per-tier policies: [`Tiers`] (the table), [`Tiered`] (the key extractor that applies it),
//! [`TierKey`] (its key).

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use super::{ExtractKey, Policy};
use crate::client_ip::RequestView;

/// A table of policies per tier (a plan, a customer class, a route group), built once and
/// given to [`RateLimitLayerBuilder::tiers`](super::RateLimitLayerBuilder::tiers).
///
/// The tier of a request comes from something the application already knows and trusts —
/// typically a value the **authentication layer** put into the request extensions once it
/// verified the caller ([`from_extension`](Self::from_extension)), or anything a closure can
/// read from the request ([`from_fn`](Self::from_fn), e.g. Axum's `MatchedPath`). Never a
/// header the client chooses: a client that picks its own tier picks its own quota.
///
/// **An unknown tier gets the layer's own policy** — the quota given to
/// [`RateLimitLayer::builder`](super::RateLimitLayer::builder) (or
/// [`with_policy`](super::RateLimitLayer::with_policy)): a request whose tier is not in the
/// table, or that has no tier at all (an anonymous caller), is limited by that default.
///
/// Keys of different tiers never share state: the tier is part of the stored key
/// ([`TierKey`]), so a caller who moves from "free" to "paid" starts a fresh bucket under the
/// paid policy, and a "free" caller can never spend a "paid" bucket.
///
/// ```
/// use tower_bouncer::rate_limit::{ExtensionKey, Policy, Quota, RateLimitLayer, Tiers};
///
/// /// Put into the extensions by the authentication layer, with the caller's id.
/// #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
/// enum Plan { Free, Paid }
/// #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
/// struct AccountId(u64);
///
/// let layer = RateLimitLayer::builder("2/min".parse()?) // anonymous and unknown plans
///     .key(ExtensionKey::<AccountId>::new())
///     .tiers(
///         Tiers::<Plan>::from_extension()
///             .tier(Plan::Free, "5/min".parse::<Quota>()?)
///             .tier(
///                 Plan::Paid,
///                 Policy::builder()
///                     .window("per-second", "10/s".parse()?)
///                     .window("per-minute", "100/min".parse()?)
///                     .build()?,
///             ),
///     )
///     .build()?;
/// # let _ = layer;
/// # Ok::<(), tower_bouncer::ConfigError>(())
/// ```
pub struct Tiers<T> {
    select: Select<T>,
    table: Vec<(T, Policy)>,
}

/// A closure reading the tier of a request.
type SelectFn<T> = Arc<dyn Fn(&RequestView<'_>) -> Option<T> + Send + Sync>;

enum Select<T> {
    Extension,
    Fn(SelectFn<T>),
}

impl<T> Clone for Select<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Extension => Self::Extension,
            Self::Fn(select) => Self::Fn(Arc::clone(select)),
        }
    }
}

impl<T> Tiers<T>
where
    T: PartialEq + Send + Sync + 'static,
{
    /// The tier is the `T` in the request extensions (set by your authentication layer); a
    /// request without one gets the layer's default policy.
    pub fn from_extension() -> Self {
        Self {
            select: Select::Extension,
            table: Vec::new(),
        }
    }

    /// The tier is what `select` reads from the request (`None`: the default policy). It must
    /// read only what the client cannot choose: an extension set by a trusted layer, the route
    /// the router matched.
    pub fn from_fn<F>(select: F) -> Self
    where
        F: Fn(&RequestView<'_>) -> Option<T> + Send + Sync + 'static,
    {
        Self {
            select: Select::Fn(Arc::new(select)),
            table: Vec::new(),
        }
    }

    /// Requests of tier `tier` are limited by `policy` (a [`Policy`], or one
    /// [`Quota`](super::Quota)). A tier given twice keeps the last policy.
    #[must_use]
    pub fn tier(mut self, tier: T, policy: impl Into<Policy>) -> Self {
        let policy = policy.into();
        match self.table.iter_mut().find(|(known, _)| *known == tier) {
            Some(entry) => entry.1 = policy,
            None => self.table.push((tier, policy)),
        }
        self
    }

    /// The tiers' policies, in the order they were given.
    pub fn policies(&self) -> impl Iterator<Item = (&T, &Policy)> {
        self.table.iter().map(|(tier, policy)| (tier, policy))
    }

    pub(crate) fn wrap<E>(self, inner: E) -> Tiered<T, E> {
        Tiered {
            select: self.select,
            table: self.table.into(),
            inner,
        }
    }
}

/// A table can be cloned, for example to give the same tiers to several layers (each layer
/// then keeps its own buckets).
///
/// ```
/// use tower_bouncer::rate_limit::{ExtensionKey, Quota, RateLimitLayer, Tiers};
///
/// #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
/// enum Plan { Free, Paid }
/// #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
/// struct AccountId(u64);
///
/// let tiers = Tiers::<Plan>::from_extension()
///     .tier(Plan::Free, "5/min".parse::<Quota>()?)
///     .tier(Plan::Paid, "100/min".parse::<Quota>()?);
/// let api = RateLimitLayer::builder("2/min".parse()?)
///     .key(ExtensionKey::<AccountId>::new())
///     .tiers(tiers.clone())
///     .build()?;
/// let uploads = RateLimitLayer::builder("1/min".parse()?)
///     .key(ExtensionKey::<AccountId>::new())
///     .tiers(tiers)
///     .build()?;
/// # let _ = (api, uploads);
/// # Ok::<(), tower_bouncer::ConfigError>(())
/// ```
impl<T: Clone> Clone for Tiers<T> {
    fn clone(&self) -> Self {
        Self {
            select: self.select.clone(),
            table: self.table.clone(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Tiers<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tiers")
            .field("select", &self.select)
            .field("table", &self.table)
            .finish()
    }
}

impl<T> fmt::Debug for Select<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Extension => f
                .debug_tuple("Extension")
                .field(&std::any::type_name::<T>())
                .finish(),
            Self::Fn(_) => f.write_str("Fn(<closure>)"),
        }
    }
}

/// A key extractor that adds the request's tier to `E`'s key and chooses the tier's policy:
/// built by [`RateLimitLayerBuilder::tiers`](super::RateLimitLayerBuilder::tiers) from a
/// [`Tiers`] table.
pub struct Tiered<T, E> {
    select: Select<T>,
    table: Arc<[(T, Policy)]>,
    inner: E,
}

impl<T, E> Tiered<T, E> {
    /// The key extractor inside.
    pub fn get_ref(&self) -> &E {
        &self.inner
    }

    /// The tiers' policies, in the order they were given.
    pub fn policies(&self) -> impl Iterator<Item = (&T, &Policy)> {
        self.table.iter().map(|(tier, policy)| (tier, policy))
    }
}

impl<T, E: Clone> Clone for Tiered<T, E> {
    fn clone(&self) -> Self {
        Self {
            select: self.select.clone(),
            table: Arc::clone(&self.table),
            inner: self.inner.clone(),
        }
    }
}

impl<T: fmt::Debug, E: fmt::Debug> fmt::Debug for Tiered<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tiered")
            .field("select", &self.select)
            .field("tiers", &self.table)
            .field("key", &self.inner)
            .finish()
    }
}

impl<T, E> ExtractKey for Tiered<T, E>
where
    T: PartialEq + fmt::Debug + Send + Sync + 'static,
    E: ExtractKey,
{
    type Key = TierKey<E::Key>;

    fn extract_key(&self, request: &RequestView<'_>) -> Option<Self::Key> {
        let key = self.inner.extract_key(request)?;
        // A handful of tiers: a scan of `==` beats hashing.
        let position = match &self.select {
            Select::Extension => request
                .extensions()
                .get::<T>()
                .and_then(|tier| self.table.iter().position(|(known, _)| known == tier)),
            Select::Fn(select) => select(request)
                .and_then(|tier| self.table.iter().position(|(known, _)| *known == tier)),
        };
        // 0 is the default policy; table entry `i` is tier `i + 1`. Past u32::MAX entries
        // (never built in practice) the default applies.
        let tier = position.map_or(0, |index| u32::try_from(index + 1).unwrap_or(0));
        Some(TierKey { tier, key })
    }

    fn policy(&self, key: &Self::Key) -> Option<&Policy> {
        let index = usize::try_from(key.tier.checked_sub(1)?).ok()?;
        self.table.get(index).map(|(_, policy)| policy)
    }
}

/// The key value of [`Tiered`]: the tier and the inner key. Keys of different tiers are
/// never equal, so they never share a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TierKey<K> {
    tier: u32,
    key: K,
}

impl<K> TierKey<K> {
    /// The tier: `None` for the default policy (no tier, or one not in the table), else the
    /// position of the tier in the table (0 for the first given).
    pub fn tier(&self) -> Option<usize> {
        usize::try_from(self.tier.checked_sub(1)?).ok()
    }

    /// The key inside the tier.
    pub fn key(&self) -> &K {
        &self.key
    }
}

// Keeps the key types small and hashable as the store needs them.
const _: () = {
    const fn hashable<K: Hash + Eq + Clone + Send + Sync>() {}
    hashable::<TierKey<u64>>();
};
