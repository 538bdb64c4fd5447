//! Find the real client IP behind proxies — without letting a client lie about it — and
//! rate-limit on it with GCRA.
//!
//! # The threat model in a paragraph
//!
//! Anyone can send any header. A forwarding header (`X-Forwarded-For`, `Forwarded`,
//! `CF-Connecting-IP`, …) is true only in the parts your own proxies wrote, and only when the
//! request really came through them. So tower-bouncer reads a forwarding header only when the
//! socket peer is a proxy you trust, walks lists from the right (the entries your proxies
//! appended) and takes the first address that is not one of your proxies; anything it cannot
//! believe on the way — garbage, `unknown`, a duplicated single-value header, a bad signature —
//! **stops** the resolution instead of being skipped, because skipping would let the client pick
//! which entry or which source answers. What the client wrote on the left never matters. The rate
//! limiter then keys on that address (IPv6 on its /64 by default, since one subscriber holds at
//! least that much), or on an identity your authentication layer put in the request.
//!
//! # Quick start: Axum
//!
//! Both layers, behind nginx on the same host. The client-IP layer is the outer one: it runs
//! first, and the rate limiter keys on the [`ClientIp`] it resolved.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use axum::{routing::get, Router};
//! use tower_bouncer::client_ip::{ClientIp, ClientIpLayer, TrustedRanges, XForwardedFor};
//! use tower_bouncer::rate_limit::{Quota, RateLimitLayer};
//!
//! #[tokio::main]
//! async fn main() {
//!     // Behind nginx on the same host: believe X-Forwarded-For only when nginx (loopback) sent it.
//!     let source = XForwardedFor::rightmost_untrusted(TrustedRanges::loopback());
//!     let quota = Quota::per_minute(std::num::NonZeroU32::new(60).unwrap());
//!     let app = Router::new()
//!         .route("/", get(|client: ClientIp| async move { client.ip().to_string() }))
//!         .layer(RateLimitLayer::new(quota)) // keyed on the client IP, /64 for IPv6
//!         .layer(ClientIpLayer::new(source)); // outermost: runs first
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//!     axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
//! }
//! ```
//!
//! Serve with connect info (`into_make_service_with_connect_info`) so the layer knows the
//! socket peer; without it, every source answers "no peer".
//!
//! # Which source for which deployment
//!
//! | Deployment | Source |
//! |---|---|
//! | Clients connect directly | [`SocketPeer`](client_ip::SocketPeer) |
//! | nginx / Caddy / HAProxy in front | [`XForwardedFor::rightmost_untrusted`](client_ip::XForwardedFor::rightmost_untrusted) with the proxy's addresses |
//! | Cloudflare straight to the app | [`TrustedHeader::cf_connecting_ip`](client_ip::TrustedHeader::cf_connecting_ip) |
//! | Cloudflare → nginx → app | [`XForwardedFor::rightmost_untrusted`](client_ip::XForwardedFor::rightmost_untrusted) with loopback and [Cloudflare's ranges](client_ip::TrustedRanges::cloudflare) |
//! | Several proxies you count, not list | [`XForwardedFor::hop_count`](client_ip::XForwardedFor::hop_count) |
//! | Serverless multi-hop | a [`Chain`](client_ip::Chain) of the [signed header](client_ip::SignedHeader), then `CF-Connecting-IP` |
//!
//! The [`client_ip`] module has the full table, what each source withstands, and the security
//! rules behind them. The [`explain`] endpoint shows, for any request, what each source
//! resolved and why.
//!
//! # Shape
//!
//! ```text
//! request ──► ClientIpLayer ──────────► RateLimitLayer ─────────► your service
//!             sources → ClientIp          key = f(ClientIp, identity, route)
//!             into extensions             GCRA in a Store → 429, or pass
//! ```
//!
//! # Features
//!
//! | Feature | Default | What it adds |
//! |---|---|---|
//! | `memory` | yes | the in-memory rate-limit store |
//! | `axum` | yes | Axum's `ConnectInfo` as the peer, the [`ClientIp`] extractor |
//! | `signed` | yes | the signed client-IP header for multi-hop deployments (default because it is the one fix that holds when a serverless hop sits between two CDN hops; it adds four small pure-Rust crates: `hmac`, `sha2`, `base64`, `subtle`) |
//! | `tonic` | no | Tonic's `TcpConnectInfo` as the peer |
//! | `redis` | no | `store::RedisStore`: one limit shared by many instances (plain `redis://` only: `rediss://` TLS is not compiled in) |
//! | `proxy-protocol` | no | `proxy_protocol::ProxyProtocolListener`: PROXY protocol v1/v2 from trusted proxies |
//! | `metrics` | no | counters, gauges and histograms through the `metrics` facade ([`metrics`] lists them) |
//! | `test-util` | no | hooks for this crate's own tests; not a stable API |
//!
//! Without the signed header: `tower-bouncer = { version = "0.1", default-features = false,
//! features = ["memory", "axum"] }`.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

pub mod client_ip;
mod error;
pub mod explain;
pub mod metrics;
#[cfg(feature = "proxy-protocol")]
pub mod proxy_protocol;
pub mod rate_limit;
pub mod store;

pub use client_ip::{ClientIp, ClientIpLayer, ClientIpService};
pub use error::ConfigError;
pub use rate_limit::{Quota, RateLimit, RateLimitLayer};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
