//! The real client IP of a request, resolved from the sources you configure — without letting
//! a client lie about it.
//!
//! [`ClientIpLayer`] asks one **source** ([`ResolveClientIp`]) about every request and inserts
//! the answer, a [`ClientIp`] (the address, canonical, and the kind of source that found it),
//! into the request extensions. Handlers take it as an [extractor](#in-handlers-the-clientip-extractor);
//! other layers, such as the [rate limiter](crate::rate_limit), read it from the extensions. A
//! `ClientIp` already in the extensions (put there by a test or an outer layer) is kept.
//!
//! A source answers one of three things ([`Resolution`]): the client's address; **absent** —
//! what it reads is not in the request, so a [`Chain`] tries its next source; or
//! **untrustworthy** — present but unusable, so a chain stops. When nothing resolves,
//! [`OnUnresolved`] decides: `400` (the default) or the socket peer, flagged.
//!
//! Every source needs the socket peer, to know whether a header came from one of your proxies:
//! serve Axum with `into_make_service_with_connect_info::<SocketAddr>()`, Tonic with its connect
//! info (feature `tonic`), or insert a [`PeerAddr`] into each request (bare Hyper, tests).
//!
//! # No proxy in front: the socket peer
//!
//! When clients connect straight to the server, the connection's peer is the client, and
//! nothing a client sends can change it. [`ClientIpLayer::default()`] is
//! `ClientIpLayer::new(SocketPeer::new())`:
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_bouncer::client_ip::{ClientIp, ClientIpLayer, PeerAddr};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = ServiceBuilder::new()
//!     .layer(ClientIpLayer::default())
//!     .service_fn(|request: Request<String>| async move {
//!         let client = request.extensions().get::<ClientIp>().copied();
//!         let text = client.map_or_else(String::new, |client| format!("{client} {}", client.source()));
//!         Ok::<_, Infallible>(Response::new(text))
//!     });
//!
//! // What the server records for the connection (Axum's `ConnectInfo` does the same).
//! let mut request = Request::new(String::new());
//! request.extensions_mut().insert(PeerAddr("198.51.100.4:50000".parse()?));
//! // A forwarding header from a client is not read: nothing configured reads it.
//! request.headers_mut().insert("x-forwarded-for", "6.6.6.6".parse()?);
//!
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.into_body(), "198.51.100.4 peer");
//! # Ok(())
//! # }
//! ```
//!
//! # Behind nginx: the rightmost untrusted `X-Forwarded-For` entry
//!
//! nginx on the same host (`proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;`)
//! appends the address it saw to whatever the client sent. The source believes the header only
//! from nginx (loopback), walks it from the right and takes the first entry that is not one of
//! your proxies; clients that connect directly, bypassing nginx, fall to the socket peer:
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_bouncer::client_ip::{
//!     Chain, ClientIp, ClientIpLayer, PeerAddr, SocketPeer, TrustedRanges, XForwardedFor,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sources = Chain::new()
//!     .then(XForwardedFor::rightmost_untrusted(TrustedRanges::loopback()))
//!     .then(SocketPeer::new());
//! let service = ServiceBuilder::new()
//!     .layer(ClientIpLayer::new(sources))
//!     .service_fn(|request: Request<String>| async move {
//!         let client = request.extensions().get::<ClientIp>().copied();
//!         let text = client.map_or_else(String::new, |client| format!("{client} {}", client.source()));
//!         Ok::<_, Infallible>(Response::new(text))
//!     });
//!
//! fn request(peer: &str, x_forwarded_for: &str) -> Request<String> {
//!     let mut request = Request::builder()
//!         .header("x-forwarded-for", x_forwarded_for)
//!         .body(String::new())
//!         .unwrap();
//!     request.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
//!     request
//! }
//!
//! // Client 203.0.113.7 sends a spoofed `X-Forwarded-For: 6.6.6.6`; nginx (127.0.0.1)
//! // appends the address it saw. The spoofed leftmost entry is never reached.
//! let response = service.clone().oneshot(request("127.0.0.1:40000", "6.6.6.6, 203.0.113.7")).await?;
//! assert_eq!(response.into_body(), "203.0.113.7 xff");
//!
//! // A new spoof on every request changes nothing: one client, one address, one bucket.
//! let response = service.clone().oneshot(request("127.0.0.1:40001", "1.1.1.1, 203.0.113.7")).await?;
//! assert_eq!(response.into_body(), "203.0.113.7 xff");
//!
//! // The same spoof sent straight to the server: the header is not read, the peer answers.
//! let response = service.clone().oneshot(request("198.51.100.4:50000", "6.6.6.6")).await?;
//! assert_eq!(response.into_body(), "198.51.100.4 peer");
//!
//! // From nginx, an entry it vouches for that is not an address: untrustworthy, so the chain
//! // stops (400) instead of falling back to the peer — nginx itself.
//! let response = service.oneshot(request("127.0.0.1:40002", "203.0.113.7, garbage")).await?;
//! assert_eq!(response.status(), StatusCode::BAD_REQUEST);
//! # Ok(())
//! # }
//! ```
//!
//! # Which source for which deployment
//!
//! | Deployment | Source |
//! |---|---|
//! | No proxy: clients connect to you | [`SocketPeer::new()`](SocketPeer::new) |
//! | nginx / Caddy / HAProxy in front (same host) | [`XForwardedFor::rightmost_untrusted`] with [`TrustedRanges::loopback()`](TrustedRanges::loopback) |
//! | A proxy on your private network | [`XForwardedFor::rightmost_untrusted`] with [`TrustedRanges::private()`](TrustedRanges::private) (better: the proxy's exact addresses, [`TrustedRanges::parse`]) |
//! | Cloudflare straight to your app | [`TrustedHeader::cf_connecting_ip()`](TrustedHeader::cf_connecting_ip) (the peer must be in Cloudflare's ranges) |
//! | Cloudflare → nginx → app | [`XForwardedFor::rightmost_untrusted`] with `TrustedRanges::loopback().with(TrustedRanges::cloudflare())` |
//! | AWS ALB | [`XForwardedFor::rightmost_untrusted`] with your VPC ranges |
//! | Fly.io | [`TrustedHeader::fly_client_ip`] with [`TrustedRanges::private()`](TrustedRanges::private) |
//! | Google Cloud external load balancer (it appends `client, lb`) | [`XForwardedFor::hop_count`]`(2, …)` with its ranges (`35.191.0.0/16`, `130.211.0.0/22`) |
//! | Several proxies you count, not list | [`XForwardedFor::hop_count`] |
//! | Serverless multi-hop (browser → CDN → function → CDN → origin) | a [`Chain`] of [`SignedHeader`], then [`TrustedHeader::cf_connecting_ip()`](TrustedHeader::cf_connecting_ip), then reject |
//! | RFC 7239 `Forwarded` from your proxy | [`Forwarded::rightmost_untrusted`] (or [`Forwarded::hop_count`]) |
//! | HAProxy (TCP) or AWS NLB with the PROXY protocol | [`SocketPeer`] behind `proxy_protocol::ProxyProtocolListener` (feature `proxy-protocol`) |
//!
//! The README has the matching proxy configurations, and the example server
//! (`examples/server.rs`) the same sources as command-line flags, to check a deployment by
//! hand. The [`explain`](crate::explain) endpoint shows, for any request, what each source
//! resolved and why.
//!
//! # What each source withstands
//!
//! | Source | Reads | What a client cannot do to it |
//! |---|---|---|
//! | [`SocketPeer`] | the connection's peer | anything: it reads no header |
//! | [`XForwardedFor`] | every `X-Forwarded-For` line, in order, from trusted peers only | prepend or rotate entries (they are left of the answer); forge a trusted-looking tail from an untrusted peer (the header is not read); hide behind garbage, octal or short IPv4, IPv4-mapped IPv6 or zone ids (invalid entries stop the walk, addresses are canonical); make the walk expensive (bounded, allocation-free) |
//! | [`Forwarded`] | RFC 7239 `for=`, from trusted peers only | the same, and quoted values with commas, `for=unknown`, `for=_hidden`, two `for=` in one element (each stops the walk when reached) |
//! | [`TrustedHeader`] | one single-address header (`CF-Connecting-IP`, `X-Real-IP`, `True-Client-IP`, `Fly-Client-IP`, any name), from trusted peers only | send it directly (ignored from an untrusted peer); send it twice (a duplicated header stops) |
//! | [`SignedHeader`] | an HMAC-SHA256-signed client IP, from any peer | forge, alter or extend a value, use an unknown key (each stops); a captured value is good only for its signed IP, until it expires |
//! | [`Chain`] | its sources in order, the first that resolves | spoil a stronger source to be judged by a weaker one (untrustworthy stops the chain) |
//!
//! Each source's own docs list its rules; the crate's tests try every case of the attack
//! checklist against them.
//!
//! # Security
//!
//! - **Trust only the proxies you configure.** A forwarding header is true only in the parts
//!   your own proxies wrote, and only when the request really came through them. Every header
//!   source reads its header only when the socket peer is in its [`TrustedRanges`]; name your
//!   proxies' addresses as tightly as you can. No preset string trusts everyone
//!   ([`TrustedRanges::preset`] has no `any`); [`TrustedRanges::any`] is for code that knows
//!   only the proxy can reach the server.
//! - **A trusted header from an untrusted peer is ignored.** `CF-Connecting-IP`, `X-Real-IP`,
//!   `True-Client-IP`, `Fly-Client-IP` sent by a client that connects directly are not read
//!   ([`Reason::PeerNotTrusted`], an *absent* answer: a chain goes on to its next source).
//!   Provider ranges prove "a customer of that CDN", not "my zone": where that matters, use the
//!   signed header or mTLS between the CDN and the origin.
//! - **Take the rightmost untrusted hop.** Lists are walked from the right, the end your
//!   proxies append to; the first address that is not one of your proxies is the client.
//!   Whatever the client wrote to its left is never reached.
//! - **Never key on the leftmost `X-Forwarded-For` entry.** The client writes it: a limiter
//!   keyed on it is bypassed by sending a new value with every request.
//! - **An untrustworthy answer stops a chain.** Garbage, `unknown`, an obfuscated identifier,
//!   a duplicated single-value header or a bad signature is never skipped: skipping would let a
//!   client choose which entry, or which source, answers. With the default
//!   [`OnUnresolved::Reject`], the request gets a `400`.
//!
//! # When nothing resolves: [`OnUnresolved`]
//!
//! - [`OnUnresolved::Reject`] (the default): `400 Bad Request` with a short JSON body that
//!   names no internals.
//! - [`OnUnresolved::FallbackToPeer`]: the socket peer, flagged with
//!   [`ClientIp::is_fallback`]. Behind a proxy the peer is the proxy, so every fallback request
//!   shares the proxy's address (and its rate-limit bucket); prefer `Reject` there, or chain a
//!   [`SocketPeer`] last when direct clients are expected.
//!
//! Either way, a request without any peer address gets a `500` naming the missing connect
//! info: a server misconfiguration, not a client error.
//!
//! ```
//! use tower_bouncer::client_ip::{ClientIpLayer, OnUnresolved, TrustedRanges, XForwardedFor};
//!
//! let layer = ClientIpLayer::new(XForwardedFor::rightmost_untrusted(TrustedRanges::private()))
//!     .on_unresolved(OnUnresolved::FallbackToPeer);
//! # let _ = layer;
//! ```
//!
//! # In handlers: the `ClientIp` extractor
//!
//! With the feature `axum`, [`ClientIp`] is an extractor. A request that went through no
//! `ClientIpLayer` is a server misconfiguration: the extractor rejects it with a `500` whose
//! body names the missing layer (`MissingClientIp`). `Option<ClientIp>` never rejects: `None`
//! without the layer.
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use axum::{body::Body, http::Request, response::Response, routing::get, Router};
//! use tower::ServiceExt;
//! use tower_bouncer::client_ip::{ClientIp, ClientIpLayer, PeerAddr};
//!
//! async fn whoami(client: ClientIp) -> String {
//!     format!("{} via {}", client.ip(), client.source())
//! }
//!
//! async fn maybe(client: Option<ClientIp>) -> String {
//!     client.map_or_else(|| "unknown".to_owned(), |client| client.ip().to_string())
//! }
//!
//! let app = Router::new()
//!     .route("/whoami", get(whoami))
//!     .layer(ClientIpLayer::default())
//!     // Routes added after `.layer` do not go through it.
//!     .route("/unlayered", get(whoami))
//!     .route("/maybe", get(maybe));
//!
//! let request = |path: &str| {
//!     let mut request = Request::get(path).body(Body::empty()).unwrap();
//!     request.extensions_mut().insert(PeerAddr("198.51.100.4:50000".parse().unwrap()));
//!     request
//! };
//! async fn text(response: Response) -> String {
//!     let bytes = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
//!     String::from_utf8(bytes.to_vec()).unwrap()
//! }
//!
//! # let runtime = tokio::runtime::Builder::new_current_thread().build()?;
//! # runtime.block_on(async {
//! let response = app.clone().oneshot(request("/whoami")).await?;
//! assert_eq!(text(response).await, "198.51.100.4 via peer");
//!
//! let response = app.clone().oneshot(request("/unlayered")).await?;
//! assert_eq!(response.status(), 500);
//! assert!(text(response).await.contains("ClientIpLayer"));
//!
//! let response = app.oneshot(request("/maybe")).await?;
//! assert_eq!(text(response).await, "unknown");
//! # Ok::<(), std::convert::Infallible>(())
//! # })?;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Is it configured right?
//!
//! The layer watches live traffic and warns when the deployment looks wrong — forwarding
//! headers that no configured source reads, trusted headers from untrusted peers, most traffic
//! resolving to a handful of addresses or to proxy ranges ("you are limiting your proxy"): see
//! [`Detection`]. Every source can also say *why* it answered what it did
//! ([`ResolveClientIp::explain`], [`Explanation`]), which the [`explain`](crate::explain)
//! endpoint shows.

mod detect;
mod explanation;
mod layer;
mod parse;
mod request;
mod service;
mod source;
mod trusted;
mod value;

#[cfg(feature = "axum")]
mod extract;

pub use detect::{Detection, Misconfiguration, Misconfigurations, MISCONFIG_TARGET};
pub use explanation::{Explanation, Step, Verdict};
#[cfg(feature = "axum")]
pub use extract::MissingClientIp;
pub use layer::{ClientIpLayer, OnUnresolved};
pub use request::{PeerAddr, RequestView};
pub use service::{ClientIpService, ResponseFuture};
pub use source::{Chain, TrustedHeader};
pub use source::{Forwarded, XForwardedFor};
pub use source::{Reason, Resolution, ResolveClientIp, SocketPeer};
#[cfg(feature = "signed")]
pub use source::{SignedHeader, Signer, SigningKey, SigningKeys};
pub use trusted::{TrustedRanges, CLOUDFLARE_RANGES_DATE};
pub use value::{ClientIp, SourceKind};
