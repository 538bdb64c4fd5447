//! The PROXY protocol (v1 text, v2 binary): the real client address of TCP connections that
//! come through HAProxy (`send-proxy`, `send-proxy-v2`), an AWS Network Load Balancer or any
//! other layer-4 proxy. Feature `proxy-protocol`.
//!
//! A layer-4 proxy cannot add an HTTP header: it opens its own connection to your server, so
//! the socket peer is the proxy. With the PROXY protocol it sends, before the client's bytes, a
//! short header naming the client's address. This module reads that header and makes the
//! client's address the connection's peer, so the [socket-peer
//! source](crate::client_ip::SocketPeer) — and every source that checks who the peer is — sees
//! the client.
//!
//! # Security
//!
//! A PROXY protocol header is believed **only from the peers you trust**
//! ([`ProxyProtocolConfig::new`]). A connection from a trusted peer *must* open with a header,
//! or it is dropped (with a logged error): a proxy that silently stopped sending it would
//! otherwise make every client look like the proxy. A connection from any other peer is read
//! as plain bytes with its own socket address: a client that writes a header of its own
//! gets nothing but a malformed request.
//!
//! The header is bounded in time (5 s by default) and size (107 bytes for version 1, 536 bytes
//! by default for version 2); garbage is a typed [`ProxyProtocolError`], never a panic. Bytes
//! that arrive with the header (often the whole HTTP request) are kept and read first.
//!
//! # With Axum
//!
//! Serve a [`ProxyProtocolListener`] with connect info of type
//! [`PeerAddr`](crate::client_ip::PeerAddr):
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use tower_bouncer::client_ip::{ClientIp, ClientIpLayer, PeerAddr, SocketPeer, TrustedRanges};
//! use tower_bouncer::proxy_protocol::{ProxyProtocolConfig, ProxyProtocolListener};
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = Router::new()
//!     .route("/", get(|client: ClientIp| async move { client.ip().to_string() }))
//!     .layer(ClientIpLayer::new(SocketPeer::new()));
//! // The one address your HAProxy / load balancer connects from.
//! let config = ProxyProtocolConfig::new(TrustedRanges::parse("10.0.0.2").unwrap());
//! let listener = ProxyProtocolListener::bind("0.0.0.0:8080", config).await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<PeerAddr>()).await
//! # }
//! ```
//!
//! # With Hyper, or any other server
//!
//! Call [`read_proxy_header`] on each accepted connection and put the address it answers into
//! the request extensions as a [`PeerAddr`](crate::client_ip::PeerAddr); its documentation
//! has the whole loop. A stricter configuration, for a load balancer on one subnet:
//!
//! ```
//! use std::time::Duration;
//! use tower_bouncer::client_ip::TrustedRanges;
//! use tower_bouncer::proxy_protocol::ProxyProtocolConfig;
//!
//! let config = ProxyProtocolConfig::new(TrustedRanges::parse("10.20.0.0/16")?)
//!     .timeout(Duration::from_secs(1))?
//!     .max_header_len(300)?;
//! # let _ = config;
//! # Ok::<(), tower_bouncer::ConfigError>(())
//! ```
//!
//! # Which header fields are used
//!
//! Only the source address and port. `LOCAL` (v2: the proxy's own health check), `UNKNOWN`
//! (v1) and the `AF_UNSPEC` / `AF_UNIX` families keep the socket peer, as the specification
//! says. TLVs are checked for well-formedness and otherwise ignored.

mod accept;
mod config;
mod error;
mod listener;
mod parse;
mod stream;

pub use accept::read_proxy_header;
pub use config::ProxyProtocolConfig;
pub use error::{ProxyProtocolError, ProxyProtocolErrorKind};
pub use listener::ProxyProtocolListener;
pub use stream::ProxiedStream;

#[cfg(test)]
mod tests;
