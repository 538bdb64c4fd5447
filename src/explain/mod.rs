//! The explain endpoint: ask the server how it sees *your* request.
//!
//! "Am I limiting the wrong IPs?" is usually found out weeks later, by accident. Mount this
//! endpoint, open it through your real proxies, and it answers for the request it receives:
//!
//! - the **socket peer** of the connection;
//! - every **forwarding header** (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`,
//!   `CF-Connecting-IP`, …, and the headers your sources read) exactly as received;
//! - what **each configured source** resolves and **why**: the peer check, each entry walked
//!   from the right with its verdict (*trusted proxy: skipped*, *client*, *stopped: …*),
//!   which check of a signed header failed, which source of a chain decided;
//! - the **result**, and, when you give it the rate limiter's key and store, the request's
//!   **key** and the **state of its bucket** (cells left, next cell, full again), read without
//!   charging anything.
//!
//! It answers JSON (`application/json`) by default, and a self-contained HTML page — no script,
//! no external resource, every value escaped — when the `Accept` header prefers `text/html`
//! (a browser), or with `?format=html`.
//!
//! # Security: protect it, or leave it off
//!
//! **Nothing is mounted unless you mount it.** The endpoint shows the caller their own
//! headers (the one place the raw forwarding chain appears, and only to the caller who sent
//! it) and **your trusted configuration**: proxy ranges, header names, signing key ids (never
//! the keys). That is a map of what to forge. Serve it only behind authentication, on an
//! internal listener, or for a debugging session, and remove it afterwards. It never changes a
//! decision and never charges a bucket.
//!
//! # Examples
//!
//! Mount it at [`DEFAULT_PATH`] next to your routes, explaining the source the
//! [`ClientIpLayer`](crate::ClientIpLayer) uses:
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use axum::{routing::get, Router};
//! use tower_bouncer::client_ip::{ClientIpLayer, TrustedRanges, XForwardedFor};
//! use tower_bouncer::explain::Explain;
//!
//! let client_ip = ClientIpLayer::new(XForwardedFor::rightmost_untrusted(TrustedRanges::loopback()));
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     // Protect this route in production (see "Security" above).
//!     .merge(Explain::from_layer(&client_ip).router())
//!     .layer(client_ip);
//! # let _ = app;
//! # }
//! ```
//!
//! With the rate limiter's key and bucket, at a path of your choice, used directly as a
//! [`Service`](tower_service::Service) (it works with any server, not only Axum):
//!
//! ```
//! # #[cfg(feature = "memory")] {
//! use std::net::SocketAddr;
//! use tower_bouncer::client_ip::{ClientIp, ClientIpLayer, PeerAddr, SocketPeer};
//! use tower_bouncer::explain::Explain;
//! use tower_bouncer::rate_limit::{Quota, RateLimitLayer};
//!
//! let client_ip = ClientIpLayer::new(SocketPeer::new());
//! let limit = RateLimitLayer::new("10/min".parse::<Quota>()?);
//! let explain = Explain::from_layer(&client_ip).rate_limit_layer(&limit);
//!
//! let mut request = http::Request::builder().uri("/_bouncer/explain").body(())?;
//! request.extensions_mut().insert(PeerAddr("203.0.113.7:50000".parse::<SocketAddr>()?));
//! // The ClientIpLayer in front would have inserted this.
//! request.extensions_mut().insert(ClientIp::new("203.0.113.7".parse()?, tower_bouncer::client_ip::SourceKind::Peer));
//!
//! let response = explain.respond(&request);
//! assert_eq!(response.headers()["content-type"], "application/json");
//! let body = response.body();
//! assert!(body.contains(r#""result":{"ip":"203.0.113.7","source":"peer","fallback":false}"#));
//! assert!(body.contains(r#""bucket":{"remaining":10,"burst":10"#));
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The JSON
//!
//! ```text
//! {
//!   "peer": "127.0.0.1:50312",
//!   "forwarding_headers": [{"name": "x-forwarded-for", "value": "6.6.6.6, 203.0.113.7"}],
//!   "sources": [{
//!     "source": "xff", "outcome": "resolved", "used": true, "ip": "203.0.113.7", "kind": "xff",
//!     "trusted": "127.0.0.0/8, ::1/128",
//!     "steps": [
//!       {"step": "peer", "ip": "127.0.0.1", "trusted": true},
//!       {"step": "entry", "position": 1, "value": "203.0.113.7", "verdict": "client", "why": "client"}
//!     ]
//!   }],
//!   "result": {"ip": "203.0.113.7", "source": "xff", "fallback": false},
//!   "key": "203.0.113.7",
//!   "bucket": {"remaining": 59, "burst": 60, "next_cell_after_ms": 0, "full_after_ms": 1000}
//! }
//! ```
//!
//! `outcome` is `resolved`, `absent` (the next source is tried) or `untrustworthy` (the chain
//! stops); unresolved sources carry `reason` (a stable code) and `why`. An unresolved request
//! also has a top-level `unresolved` object. `key` and `bucket` are `null` unless configured.

mod bucket;
mod render;
mod report;
mod service;

pub use bucket::{BucketState, InspectBucket};
pub use service::{Explain, DEFAULT_PATH};

#[cfg(test)]
mod tests;
