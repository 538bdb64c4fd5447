use std::borrow::Cow;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use http::{Response, StatusCode};
use tower_layer::Layer;

use super::response::{custom_deny, CustomDenyBody, DefaultDenyBody, DenyFn, Responder};
#[cfg(feature = "axum")]
use super::RouteCosts;
use super::{ExtractKey, Policy, Quota, RateLimit, RateLimited, RetryAfter, Tiered, Tiers};
use crate::client_ip::RequestView;
use crate::store::Store;
use crate::ConfigError;

#[cfg(feature = "memory")]
use super::{IpKey, MaskedIp};
#[cfg(feature = "memory")]
use crate::store::MemoryStore;

/// What the layer does with a request whose key cannot be computed (for [`IpKey`](super::IpKey):
/// no [`ClientIp`](crate::ClientIp) in the extensions; for
/// [`ExtensionKey`](super::ExtensionKey): no identity).
///
/// Such a request is never counted in some shared bucket, and never makes the layer panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnMissingKey {
    /// Answer `500 Internal Server Error` with a body naming the cause: a missing key is a
    /// server misconfiguration (typically no `ClientIpLayer` in front of the rate limiter),
    /// and failing loudly finds it in the first test. Logged at `error` level. The default.
    #[default]
    Reject,
    /// Let the request through without limiting it, logged at `warn` level. For keys that are
    /// legitimately absent on some requests — but then consider [`ExtractKey::or`] to fall back
    /// to another key instead.
    Allow,
}

/// How much a request costs, in cells of the quota.
pub(crate) enum Cost {
    Fixed(NonZeroU32),
    Computed(Arc<dyn Fn(&RequestView<'_>) -> u32 + Send + Sync>),
    #[cfg(feature = "axum")]
    Routes(Arc<RouteCosts>),
}

impl fmt::Debug for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(cost) => f.debug_tuple("Fixed").field(cost).finish(),
            Self::Computed(_) => f.write_str("Computed(<closure>)"),
            #[cfg(feature = "axum")]
            Self::Routes(costs) => f.debug_tuple("Routes").field(costs).finish(),
        }
    }
}

/// The configuration of one layer, checked at build time and shared by every service.
pub(crate) struct Config<K, St, B> {
    pub(crate) extractor: K,
    /// Shared with the charger of charge by outcome.
    pub(crate) store: Arc<St>,
    /// The layer's policy: for every key whose extractor names none (an unknown tier too).
    pub(crate) policy: Policy,
    pub(crate) cost: Cost,
    pub(crate) on_missing_key: OnMissingKey,
    pub(crate) responder: Arc<Responder<B>>,
    /// Charge by outcome: check before the call, charge after a response it accepts.
    pub(crate) charger: Option<Arc<StoreCharger<St>>>,
}

/// Charges after the response, for charge by outcome: the store, the quota and the predicate.
/// (Not the whole `Config`, whose deny-body type `B` would then have to be `'static`.)
pub(crate) struct StoreCharger<St> {
    pub(crate) store: Arc<St>,
    pub(crate) charge_when: ChargeWhen,
}

/// The predicate of [`RateLimitLayerBuilder::charge_when`].
pub(crate) type ChargeWhen = Arc<dyn Fn(StatusCode) -> bool + Send + Sync>;

/// A [`Layer`] that rate-limits requests with GCRA: each request is charged to a key (the
/// client IP by default) in a [`Store`]; a request over the quota gets a `429 Too Many
/// Requests` instead of reaching the inner service.
///
/// [`RateLimitLayer::new`] is the client IP (masked to /64 for IPv6), the in-memory store and
/// a cost of 1; [`RateLimitLayer::builder`] sets everything else. The [module
/// docs](super) have complete examples. Cloning the layer, and the services it builds, shares
/// one configuration and one store.
///
/// `B` records the [custom deny response](RateLimitLayerBuilder::deny_response)'s body type:
/// [`DefaultDenyBody`] when there is none, [`CustomDenyBody<T>`] for a closure answering
/// `Response<T>`.
pub struct RateLimitLayer<K, St, B = DefaultDenyBody> {
    config: Arc<Config<K, St, B>>,
}

#[cfg(feature = "memory")]
impl RateLimitLayer<IpKey, MemoryStore<MaskedIp>> {
    /// Limits each client IP (IPv6 masked to /64) to `quota`, in a fresh in-memory store, at a
    /// cost of 1 per request, with `Retry-After` on every 429.
    ///
    /// The client IP comes from the [`ClientIp`](crate::ClientIp) extension: put a
    /// [`ClientIpLayer`](crate::ClientIpLayer) in front of this layer.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use tower_bouncer::rate_limit::{Quota, RateLimitLayer};
    ///
    /// let layer = RateLimitLayer::new(Quota::per_minute(NonZeroU32::new(60).unwrap()));
    /// # let _ = layer;
    /// ```
    pub fn new(quota: Quota) -> Self {
        Self::assemble(
            IpKey::new(),
            MemoryStore::new(),
            Policy::from(quota),
            Cost::Fixed(NonZeroU32::MIN),
            OnMissingKey::default(),
            Responder {
                timing: RetryAfter::Visible,
                fields: false,
                deny: None,
                report_only: false,
            },
            None,
        )
    }
}

impl RateLimitLayer<(), ()> {
    /// A builder for a layer with `quota`: the client-IP key, the in-memory store (feature
    /// `memory`; without it, give a store with [`store`](RateLimitLayerBuilder::store)) and a
    /// cost of 1 until you set otherwise.
    ///
    /// More windows ("and 1,000 per hour") are added with
    /// [`and_quota`](RateLimitLayerBuilder::and_quota); per-tier policies with
    /// [`tiers`](RateLimitLayerBuilder::tiers).
    pub fn builder(quota: Quota) -> RateLimitLayerBuilder<super::IpKey, DefaultStore> {
        Self::builder_of(vec![(Cow::Borrowed("default"), quota)])
    }

    /// A builder for a layer with `policy`: every window of it must admit a request (see
    /// [`Policy`]); otherwise like [`builder`](Self::builder).
    ///
    /// ```
    /// use tower_bouncer::rate_limit::{Policy, RateLimitLayer};
    ///
    /// let layer = RateLimitLayer::with_policy(
    ///     Policy::builder()
    ///         .window("per-second", "10/s".parse()?)
    ///         .window("per-hour", "1000/h".parse()?)
    ///         .build()?,
    /// )
    /// .build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_bouncer::ConfigError>(())
    /// ```
    pub fn with_policy(policy: Policy) -> RateLimitLayerBuilder<super::IpKey, DefaultStore> {
        Self::builder_of(
            policy
                .windows()
                .map(|(name, quota)| (Cow::Owned(name.to_owned()), quota))
                .collect(),
        )
    }

    fn builder_of(
        windows: Vec<(Cow<'static, str>, Quota)>,
    ) -> RateLimitLayerBuilder<super::IpKey, DefaultStore> {
        RateLimitLayerBuilder {
            windows,
            extractor: super::IpKey::new(),
            store: DefaultStore { _private: () },
            cost: Cost::Fixed(NonZeroU32::MIN),
            timing: RetryAfter::Visible,
            ratelimit_headers: false,
            report_only: false,
            on_missing_key: OnMissingKey::default(),
            deny: None,
            tier_bursts: None,
            charge_when: None,
        }
    }
}

impl<K, St, B> RateLimitLayer<K, St, B> {
    fn assemble(
        extractor: K,
        store: St,
        policy: Policy,
        cost: Cost,
        on_missing_key: OnMissingKey,
        responder: Responder<B>,
        charge_when: Option<ChargeWhen>,
    ) -> Self {
        let store = Arc::new(store);
        let charger = charge_when.map(|charge_when| {
            Arc::new(StoreCharger {
                store: Arc::clone(&store),
                charge_when,
            })
        });
        Self {
            config: Arc::new(Config {
                extractor,
                store,
                policy,
                cost,
                on_missing_key,
                responder: Arc::new(responder),
                charger,
            }),
        }
    }

    /// The quota (the first window of the layer's policy).
    pub fn quota(&self) -> Quota {
        self.config.policy.first()
    }

    /// The layer's policy: every window (for keys without a tier of their own).
    pub fn policy(&self) -> &Policy {
        &self.config.policy
    }

    /// The key extractor.
    pub fn key(&self) -> &K {
        &self.config.extractor
    }

    /// The store (shared by every clone of this layer and every service it built).
    pub fn store(&self) -> &St {
        &self.config.store
    }

    /// `true` in report-only mode.
    pub fn is_report_only(&self) -> bool {
        self.config.responder.report_only
    }
}

impl<K, St, B> Clone for RateLimitLayer<K, St, B> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
        }
    }
}

impl<K: fmt::Debug, St: fmt::Debug, B> fmt::Debug for RateLimitLayer<K, St, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_config(&self.config, f.debug_struct("RateLimitLayer")).finish()
    }
}

pub(crate) fn fmt_config<'a, 'b, K: fmt::Debug, St: fmt::Debug, B>(
    config: &Config<K, St, B>,
    mut debug: fmt::DebugStruct<'a, 'b>,
) -> fmt::DebugStruct<'a, 'b> {
    debug
        .field("key", &config.extractor)
        .field("store", &config.store)
        .field("policy", &config.policy)
        .field("cost", &config.cost)
        .field("on_missing_key", &config.on_missing_key)
        .field("charge_by_outcome", &config.charger.is_some())
        .field("responses", &config.responder);
    debug
}

impl<S, K, St, B> Layer<S> for RateLimitLayer<K, St, B> {
    type Service = RateLimit<S, K, St, B>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, Arc::clone(&self.config))
    }
}

// ---------------------------------------------------------------------------------------------
// Builder

/// Builds a [`RateLimitLayer`]; made by [`RateLimitLayer::builder`].
///
/// Every setter returns the builder; [`build`](Self::build) checks the whole configuration once
/// and answers a [`ConfigError`] for one that cannot work.
///
/// `C` records where the store comes from: [`DefaultStore`] (a fresh in-memory store made at
/// build time, keyed by whatever key you choose) or [`WithStore`] (the one you gave).
#[must_use = "a builder does nothing until `build` is called"]
pub struct RateLimitLayerBuilder<K, C, B = DefaultDenyBody> {
    /// The layer's policy, window by window (checked by `build`).
    windows: Vec<(Cow<'static, str>, Quota)>,
    extractor: K,
    store: C,
    cost: Cost,
    timing: RetryAfter,
    ratelimit_headers: bool,
    report_only: bool,
    on_missing_key: OnMissingKey,
    deny: Option<DenyFn<B>>,
    /// The smallest burst of the tiers' policies, when `tiers` was called.
    tier_bursts: Option<NonZeroU32>,
    charge_when: Option<ChargeWhen>,
}

impl<K, C, B> RateLimitLayerBuilder<K, C, B> {
    /// Sets the key extractor: what a request is counted against (see [`ExtractKey`] and the
    /// built-in keys). The default is [`IpKey::new()`](super::IpKey::new).
    ///
    /// Call it before [`tiers`](Self::tiers): a new key replaces the tiered one.
    pub fn key<K2: ExtractKey>(self, key: K2) -> RateLimitLayerBuilder<K2, C, B> {
        RateLimitLayerBuilder {
            windows: self.windows,
            extractor: key,
            store: self.store,
            cost: self.cost,
            timing: self.timing,
            ratelimit_headers: self.ratelimit_headers,
            report_only: self.report_only,
            on_missing_key: self.on_missing_key,
            deny: self.deny,
            tier_bursts: None,
            charge_when: self.charge_when,
        }
    }

    /// Sets the store. Give two layers clones of one store to let them share buckets (with
    /// [`Scoped`](super::Scoped) keys to choose which).
    pub fn store<St>(self, store: St) -> RateLimitLayerBuilder<K, WithStore<St>, B> {
        RateLimitLayerBuilder {
            windows: self.windows,
            extractor: self.extractor,
            store: WithStore(store),
            cost: self.cost,
            timing: self.timing,
            ratelimit_headers: self.ratelimit_headers,
            report_only: self.report_only,
            on_missing_key: self.on_missing_key,
            deny: self.deny,
            tier_bursts: self.tier_bursts,
            charge_when: self.charge_when,
        }
    }

    /// Every request costs `cost` cells (1 by default). A cost above the quota's burst can
    /// never pass: [`build`](Self::build) rejects it.
    pub fn cost(mut self, cost: NonZeroU32) -> Self {
        self.cost = Cost::Fixed(cost);
        self
    }

    /// Each request costs what `cost` computes from it (a heavy endpoint can cost 10).
    ///
    /// A computed cost above the burst can never pass: such a request gets a 429 **without**
    /// any retry hint, since waiting would not help. A computed cost of **0** is treated the
    /// same way: 0 almost always means a bug in the closure, and failing closed is safer than
    /// a silent bypass of the limit. To exempt a route, leave it outside the layer
    /// (`route_layer` on the routes that are limited).
    pub fn cost_fn<F>(mut self, cost: F) -> Self
    where
        F: Fn(&RequestView<'_>) -> u32 + Send + Sync + 'static,
    {
        self.cost = Cost::Computed(Arc::new(cost));
        self
    }

    /// Whether responses carry timing hints ([`RetryAfter::Visible`] by default).
    pub fn retry_after(mut self, timing: RetryAfter) -> Self {
        self.timing = timing;
        self
    }

    /// Removes every timing hint: `retry_after(RetryAfter::Hidden)`.
    pub fn hide_timing(self) -> Self {
        self.retry_after(RetryAfter::Hidden)
    }

    /// Adds the IETF fields of draft-ietf-httpapi-ratelimit-headers-10 to every response
    /// (allowed and denied): `RateLimit-Policy: "default";q=100;w=60` (the burst, and the
    /// seconds to refill it) and `RateLimit: "default";r=37;t=1` (cells left, and seconds
    /// until at least one more is available). No partition key is sent, so the client IP
    /// never appears. Off by default; incompatible with [`hide_timing`](Self::hide_timing).
    pub fn ratelimit_headers(mut self, enabled: bool) -> Self {
        self.ratelimit_headers = enabled;
        self
    }

    /// The policy name in the IETF fields (`"default"` by default) — of the first window,
    /// when there are several: printable ASCII without `"` or `\`, 1 to 64 characters, checked
    /// by [`build`](Self::build). Give stacked layers different names.
    pub fn policy_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        if let Some(first) = self.windows.first_mut() {
            first.0 = name.into();
        }
        self
    }

    /// Adds a window: a request must also fit in `quota`, named `name` in the IETF fields
    /// (name the first window with [`policy_name`](Self::policy_name)). A request is admitted
    /// only if every window admits it, and a denial charges no window — see [`Policy`].
    ///
    /// ```
    /// use tower_bouncer::rate_limit::RateLimitLayer;
    ///
    /// // 10 per second and 1,000 per hour, each with its own burst.
    /// let layer = RateLimitLayer::builder("10/s".parse()?)
    ///     .policy_name("per-second")
    ///     .and_quota("per-hour", "1000/h".parse()?)
    ///     .ratelimit_headers(true)
    ///     .build()?;
    /// assert_eq!(layer.policy().window_count(), 2);
    /// # Ok::<(), tower_bouncer::ConfigError>(())
    /// ```
    pub fn and_quota(mut self, name: impl Into<Cow<'static, str>>, quota: Quota) -> Self {
        self.windows.push((name.into(), quota));
        self
    }

    /// Costs per route, from a [`RouteCosts`] table (feature `axum`): `/export` costs 10,
    /// everything else 1. Every cost is checked against the bursts by [`build`](Self::build).
    #[cfg(feature = "axum")]
    pub fn route_costs(mut self, costs: RouteCosts) -> Self {
        self.cost = Cost::Routes(Arc::new(costs));
        self
    }

    /// Report-only mode: decide and log every request, deny none — how a careful operator rolls
    /// a limit out.
    ///
    /// A request that would have been denied is logged exactly like a denial (`info`, with
    /// `report_only = true`) and passes; its response carries a [`RateLimited`] extension
    /// (with [`is_report_only`](RateLimited::is_report_only) `true`) so an outer layer can
    /// count would-be denials. Responses carry **no** `Retry-After` or `RateLimit` fields in
    /// this mode, since clients that honour them would change their behaviour under a limit
    /// that is not enforced. A request without a key passes too (logged at `warn`).
    pub fn report_only(mut self, enabled: bool) -> Self {
        self.report_only = enabled;
        self
    }

    /// What happens to a request whose key cannot be computed ([`OnMissingKey::Reject`] by
    /// default).
    pub fn on_missing_key(mut self, policy: OnMissingKey) -> Self {
        self.on_missing_key = policy;
        self
    }

    /// Charge by outcome: a request is only **checked** before the call (denied with the
    /// usual 429 when its cost does not fit), and its cost is **charged** after the inner
    /// service answered, only when `charge` accepts the response's status.
    ///
    /// The classic use: count failed logins only. A client that keeps sending wrong
    /// passwords is stopped after `burst` failures (even with the right password, until the
    /// bucket refills); successful logins cost nothing.
    ///
    /// The store must be able to check without charging ([`Store::preview`]: the in-memory store
    /// can); with one that cannot, every request gets the store-failure answer (`503`, logged
    /// at `error`). Concurrent requests of one key are all checked before any is charged, so
    /// a client racing many requests at once can get up to that many past a nearly spent
    /// bucket — the bucket is then charged for each one it could still hold.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use http::StatusCode;
    /// use tower_bouncer::rate_limit::{Quota, RateLimitLayer};
    ///
    /// // Five failed logins per client per 15 minutes.
    /// let quota = Quota::with_period(std::time::Duration::from_secs(180))
    ///     .unwrap()
    ///     .allow_burst(NonZeroU32::new(5).unwrap());
    /// let layer = RateLimitLayer::builder(quota)
    ///     .charge_when(|status: StatusCode| {
    ///         status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
    ///     })
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_bouncer::ConfigError>(())
    /// ```
    pub fn charge_when<F>(mut self, charge: F) -> Self
    where
        F: Fn(StatusCode) -> bool + Send + Sync + 'static,
    {
        self.charge_when = Some(Arc::new(charge));
        self
    }

    /// Answers denials with the response `deny` builds instead of the default JSON 429.
    ///
    /// The layer then adds `Retry-After` (unless the closure set it) and the IETF fields as
    /// configured — nothing when timing is hidden — and the [`RateLimited`] extension. The body
    /// type `T` must convert into the service's response body (`axum::body::Body` for an
    /// `axum::response::Response`, or `&'static str`); the layer's `B` becomes
    /// [`CustomDenyBody<T>`].
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use http::{Response, StatusCode};
    /// use tower_bouncer::rate_limit::{Quota, RateLimitLayer};
    ///
    /// let layer = RateLimitLayer::builder(Quota::per_second(NonZeroU32::new(5).unwrap()))
    ///     .deny_response(|_limited| {
    ///         let mut response = Response::new("slow down");
    ///         *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    ///         response
    ///     })
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_bouncer::ConfigError>(())
    /// ```
    pub fn deny_response<T, F>(self, deny: F) -> RateLimitLayerBuilder<K, C, CustomDenyBody<T>>
    where
        F: Fn(&RateLimited) -> Response<T> + Send + Sync + 'static,
    {
        RateLimitLayerBuilder {
            windows: self.windows,
            extractor: self.extractor,
            store: self.store,
            cost: self.cost,
            timing: self.timing,
            ratelimit_headers: self.ratelimit_headers,
            report_only: self.report_only,
            on_missing_key: self.on_missing_key,
            deny: Some(custom_deny(deny)),
            charge_when: self.charge_when,
            tier_bursts: self.tier_bursts,
        }
    }
}

impl<K: ExtractKey, C, B> RateLimitLayerBuilder<K, C, B> {
    /// A policy per tier: each request's tier (from its extensions, set by your
    /// authentication layer, or from a closure) picks its policy in `tiers`; a request with
    /// no tier or an unknown one gets the layer's own policy (the quota given to
    /// [`builder`](RateLimitLayer::builder)). The key becomes a [`TierKey`](super::TierKey):
    /// keys of different tiers never share state. See [`Tiers`] for an example.
    ///
    /// Call it after [`key`](Self::key). Fixed and per-route costs are checked against the
    /// bursts of every tier.
    pub fn tiers<T>(self, tiers: Tiers<T>) -> RateLimitLayerBuilder<Tiered<T, K>, C, B>
    where
        T: PartialEq + Send + Sync + 'static,
    {
        let tier_bursts = tiers.policies().map(|(_, policy)| policy.min_burst()).min();
        RateLimitLayerBuilder {
            windows: self.windows,
            extractor: tiers.wrap(self.extractor),
            store: self.store,
            cost: self.cost,
            timing: self.timing,
            ratelimit_headers: self.ratelimit_headers,
            report_only: self.report_only,
            on_missing_key: self.on_missing_key,
            deny: self.deny,
            tier_bursts,
            charge_when: self.charge_when,
        }
    }
}

impl<K, C, B> RateLimitLayerBuilder<K, C, B>
where
    K: ExtractKey,
    C: ProvideStore<K::Key>,
{
    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// - a policy that cannot be built: more than [`MAX_WINDOWS`](crate::store::MAX_WINDOWS)
    ///   windows, two with one name, a name that cannot be sent (see [`Policy`]);
    /// - a fixed [`cost`](Self::cost), or a [route cost](Self::route_costs), above the
    ///   smallest burst of any window of any tier (it could never pass), or a route cost of 0;
    /// - [`ratelimit_headers(true)`](Self::ratelimit_headers) together with
    ///   [`hide_timing`](Self::hide_timing) (the fields are timing hints);
    /// - a [`policy_name`](Self::policy_name) that cannot be sent in the fields.
    pub fn build(self) -> Result<RateLimitLayer<K, C::Store, B>, ConfigError> {
        let policy = Policy::from_windows(self.windows)?;
        let min_burst = match self.tier_bursts {
            Some(tiers) => tiers.min(policy.min_burst()),
            None => policy.min_burst(),
        };
        match &self.cost {
            Cost::Fixed(cost) if *cost > min_burst => {
                return Err(ConfigError::new(
                    "the cost of a request is larger than the quota's burst: no request could ever pass",
                ));
            }
            #[cfg(feature = "axum")]
            Cost::Routes(costs) => costs.check(min_burst.get())?,
            _ => {}
        }
        if self.ratelimit_headers && self.timing == RetryAfter::Hidden {
            return Err(ConfigError::new(
                "ratelimit headers are timing hints: they cannot be enabled with hidden timing",
            ));
        }
        Ok(RateLimitLayer::assemble(
            self.extractor,
            self.store.provide_store(),
            policy,
            self.cost,
            self.on_missing_key,
            Responder {
                timing: self.timing,
                fields: self.ratelimit_headers,
                deny: self.deny,
                report_only: self.report_only,
            },
            self.charge_when,
        ))
    }
}

impl<K: fmt::Debug, C: fmt::Debug, B> fmt::Debug for RateLimitLayerBuilder<K, C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayerBuilder")
            .field("windows", &self.windows)
            .field("key", &self.extractor)
            .field("store", &self.store)
            .field("cost", &self.cost)
            .field("retry_after", &self.timing)
            .field("ratelimit_headers", &self.ratelimit_headers)
            .field("report_only", &self.report_only)
            .field("on_missing_key", &self.on_missing_key)
            .field("custom_deny_response", &self.deny.is_some())
            .field("tiers", &self.tier_bursts.is_some())
            .field("charge_by_outcome", &self.charge_when.is_some())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Where the builder's store comes from

/// Where a [`RateLimitLayerBuilder`] gets its store for keys of type `Key`: [`DefaultStore`]
/// or [`WithStore`]. It lets [`key`](RateLimitLayerBuilder::key) change the key type while the
/// default store follows. Sealed: only those two implement it.
pub trait ProvideStore<Key>: sealed::Sealed {
    /// The store the layer will use.
    type Store: Store<Key>;

    /// The store.
    fn provide_store(self) -> Self::Store;
}

/// The builder's default: a fresh [`MemoryStore`](crate::store::MemoryStore) with default
/// settings, made at build time for the chosen key type (feature `memory`).
#[derive(Debug, Clone, Copy)]
pub struct DefaultStore {
    _private: (),
}

#[cfg(feature = "memory")]
impl<Key> ProvideStore<Key> for DefaultStore
where
    MemoryStore<Key>: Store<Key>,
    Key: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    type Store = MemoryStore<Key>;

    fn provide_store(self) -> MemoryStore<Key> {
        MemoryStore::new()
    }
}

/// A store given to the builder with [`store`](RateLimitLayerBuilder::store).
#[derive(Debug, Clone)]
pub struct WithStore<St>(St);

mod sealed {
    /// Keeps [`ProvideStore`](super::ProvideStore) implemented by this crate only.
    #[allow(unreachable_pub)] // public in a private module: the sealing pattern
    pub trait Sealed {}

    impl Sealed for super::DefaultStore {}
    impl<St> Sealed for super::WithStore<St> {}
}

impl<Key, St: Store<Key>> ProvideStore<Key> for WithStore<St> {
    type Store = St;

    fn provide_store(self) -> St {
        self.0
    }
}
