//! GCRA rate limiting on the resolved client, or on who the authentication layer says the
//! caller is.
//!
//! [`RateLimitLayer`] charges every request to a **key** ([`ExtractKey`]: the client IP by
//! default) in a **store** ([`Store`](crate::store::Store): in memory by default) under a
//! [`Quota`]. A request within the quota reaches your service; one over it gets
//! `429 Too Many Requests` with a `Retry-After` in whole seconds, rounded up and never `0`.
//!
//! ```text
//! request ──► ClientIpLayer ──► RateLimitLayer ──► your service
//!             ClientIp into      key = f(ClientIp, identity, route)
//!             the extensions     GCRA in a Store → 429, or pass
//! ```
//!
//! # The default: the client IP, in memory
//!
//! The client-IP key reads the [`ClientIp`](crate::ClientIp) that
//! [`ClientIpLayer`](crate::ClientIpLayer) resolved — so the limit is exactly as hard to
//! dodge as your client-IP source is to fool. Put the client-IP layer **in front** (outer):
//!
//! ```
//! use std::num::NonZeroU32;
//! use axum::{routing::get, Router};
//! use tower::ServiceBuilder;
//! use tower_bouncer::client_ip::{ClientIpLayer, SocketPeer};
//! use tower_bouncer::rate_limit::{Quota, RateLimitLayer};
//!
//! let app: Router = Router::new().route("/", get(|| async { "hello" })).layer(
//!     ServiceBuilder::new()
//!         .layer(ClientIpLayer::new(SocketPeer::new()))
//!         .layer(RateLimitLayer::new(Quota::per_minute(NonZeroU32::new(60).unwrap()))),
//! );
//! // Serve with `app.into_make_service_with_connect_info::<std::net::SocketAddr>()`.
//! # let _ = app;
//! ```
//!
//! # Customised: identity first, a heavy endpoint, the IETF fields
//!
//! ```
//! use std::num::NonZeroU32;
//! use tower_bouncer::rate_limit::{ExtensionKey, ExtractKey, IpKey, Quota, RateLimitLayer};
//!
//! /// Set by your authentication layer once the API key is verified.
//! #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
//! struct ApiKeyId(u32);
//!
//! let quota = Quota::per_minute(NonZeroU32::new(100).unwrap())
//!     .allow_burst(NonZeroU32::new(20).unwrap());
//! let layer = RateLimitLayer::builder(quota)
//!     // The verified API key when there is one, else the client's /48.
//!     .key(ExtensionKey::<ApiKeyId>::new().or(IpKey::new().ipv6_prefix(48)?))
//!     // An export costs 10 cells, everything else 1.
//!     .cost_fn(|request| if request.uri().path() == "/export" { 10 } else { 1 })
//!     // `RateLimit-Policy: "api";q=20;w=12` and `RateLimit: "api";r=19;t=1`.
//!     .ratelimit_headers(true)
//!     .policy_name("api")
//!     // Decide and log, deny nothing: roll the limit out safely first.
//!     .report_only(true)
//!     .build()?;
//! # let _ = layer;
//! # Ok::<(), tower_bouncer::ConfigError>(())
//! ```
//!
//! # Several windows, tiers, route costs
//!
//! A real API rarely has one quota: "10 per second **and** 1,000 per hour", different limits
//! for free and paid callers, an export that costs more than a list.
//!
//! - **Several windows** ([`and_quota`](RateLimitLayerBuilder::and_quota), or a [`Policy`]
//!   with [`RateLimitLayer::with_policy`]): a request passes only if every window admits it,
//!   and a denial charges **nothing anywhere** — the store decides all windows of a key in one
//!   atomic step. `Retry-After` is the longest wait of the windows that deny; the IETF fields
//!   list every window under its name.
//! - **Tiers** ([`tiers`](RateLimitLayerBuilder::tiers) with a [`Tiers`] table): the policy is
//!   chosen per request from what the authentication layer put into the extensions (a plan),
//!   or from a closure; an unknown or absent tier gets the layer's own policy. The tier is part
//!   of the key ([`TierKey`]): tiers never share buckets.
//! - **Route costs** ([`route_costs`](RateLimitLayerBuilder::route_costs) with a `RouteCosts`
//!   table, feature `axum`): the matched route's cost, checked against every burst at build
//!   time.
//!
//! ```
//! use tower_bouncer::rate_limit::{ExtensionKey, Policy, RateLimitLayer, Tiers};
//!
//! #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
//! struct AccountId(u64);
//! #[derive(Debug, Clone, Copy, PartialEq, Eq)]
//! enum Plan { Free, Paid }
//!
//! // Anonymous callers and unknown plans: 10/s and 100/h.
//! let layer = RateLimitLayer::builder("10/s".parse()?)
//!     .policy_name("per-second")
//!     .and_quota("per-hour", "100/h".parse()?)
//!     .key(ExtensionKey::<AccountId>::new())
//!     .tiers(
//!         Tiers::<Plan>::from_extension()
//!             .tier(Plan::Free, Policy::new("free", "5/min".parse()?)?)
//!             .tier(
//!                 Plan::Paid,
//!                 Policy::builder()
//!                     .window("paid-per-second", "50/s".parse()?)
//!                     .window("paid-per-hour", "100000/h".parse()?)
//!                     .build()?,
//!             ),
//!     )
//!     .ratelimit_headers(true)
//!     .build()?;
//! # let _ = layer;
//! # Ok::<(), tower_bouncer::ConfigError>(())
//! ```
//!
//! # Keys
//!
//! | key | one bucket per | |
//! |---|---|---|
//! | [`IpKey`] (default) | client IP, IPv6 masked to /64 (/56, /48, /128), IPv4 to /32 (/24) | reads `ClientIp`, never a header |
//! | [`ExtensionKey<T>`] | verified identity (user id, API-key id) | **the** way to key on identity |
//! | [`GlobalKey`] | the whole service | |
//! | [`Scoped`] | name × inner key | separate limits per route or feature |
//! | `RouteKey` (feature `axum`) | matched route template | never the raw, client-chosen path |
//! | `(A, B)`, `(A, B, C)` | every part | e.g. user × route |
//! | [`a.or(b)`](ExtractKey::or) | `a`'s key, else `b`'s | e.g. user, else IP |
//!
//! A request whose key cannot be computed gets the [`OnMissingKey`] outcome: a `500` naming the
//! misconfiguration by default, or [`OnMissingKey::Allow`]. Never a panic, never a shared bucket.
//!
//! # Responses
//!
//! - **429** with `content-type: application/json`, body `{"error":"rate limited"}`, and
//!   `Retry-After`: the store's exact wait rounded **up** to whole seconds, at least `1`, never
//!   earlier than the `RateLimit` field's `t`. A request that can never pass (its computed cost
//!   is above the burst) gets the 429 without any retry hint.
//! - [`ratelimit_headers(true)`](RateLimitLayerBuilder::ratelimit_headers) adds
//!   `RateLimit-Policy: "default";q=<burst>;w=<seconds to refill>` and
//!   `RateLimit: "default";r=<cells left>;t=<seconds until the next cell>`
//!   (draft-ietf-httpapi-ratelimit-headers-10) to every response. No partition key is sent.
//! - [`hide_timing`](RateLimitLayerBuilder::hide_timing) removes every timing hint; the body is
//!   the same.
//! - [`deny_response`](RateLimitLayerBuilder::deny_response) replaces the 429 by your own.
//! - Every 429 carries a [`RateLimited`] extension (the wait and the quota).
//! - If the store fails and its own failure policy lets the error through, the answer is
//!   `503` with `{"error":"rate limiter unavailable"}`, logged at `error` level.
//!
//! The deny path costs no more than the allow path: no clock is read, nothing is formatted; the
//! body and content type are static and `Retry-After` is a slice of a static table.
//!
//! # Tracing
//!
//! One event per decision, target `tower_bouncer::rate_limit`: `debug` for an allowed request,
//! `info` for a denied one, with the resolved IP, the key (`Debug`), the route (Axum's matched
//! route, else the path) and the cost — never a raw forwarding header. With the level disabled
//! an event costs one level check.
#![cfg_attr(
    feature = "memory",
    doc = r#"
# Sharing one store between layers

```
use std::num::NonZeroU32;
use tower_bouncer::rate_limit::{ExtractKey, IpKey, Quota, RateLimitLayer};
use tower_bouncer::store::MemoryStore;

let store = MemoryStore::new();
let quota = Quota::per_minute(NonZeroU32::new(5).unwrap());
// `/login` and `/reset-password` share one "auth" budget per client.
let login = RateLimitLayer::builder(quota)
    .key(IpKey::new().scoped("auth"))
    .store(store.clone())
    .build()?;
let reset = RateLimitLayer::builder(quota)
    .key(IpKey::new().scoped("auth"))
    .store(store)
    .build()?;
# let _ = (login, reset);
# Ok::<(), tower_bouncer::ConfigError>(())
```
"#
)]

#[cfg(feature = "axum")]
mod cost;
mod future;
mod key;
mod layer;
mod policy;
mod quota;
mod response;
mod service;
mod tier;

#[cfg(feature = "axum")]
pub use cost::RouteCosts;
pub use future::ResponseFuture;
pub use key::{
    Either, ExtensionKey, ExtractKey, GlobalKey, IpKey, MaskedIp, Or, Scoped, ScopedKey,
};
#[cfg(feature = "axum")]
pub use key::{RouteKey, RoutePath};
pub use layer::{
    DefaultStore, OnMissingKey, ProvideStore, RateLimitLayer, RateLimitLayerBuilder, WithStore,
};
pub use policy::{Policy, PolicyBuilder};
pub use quota::Quota;
pub use response::{CustomDenyBody, DefaultDenyBody, DenyBody, RateLimited, RetryAfter};
pub use service::RateLimit;
pub use tier::{TierKey, Tiered, Tiers};
