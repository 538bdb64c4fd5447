use std::net::{IpAddr, SocketAddr};

use http::{Extensions, HeaderMap, Method, Request, Uri};

/// The socket peer of a connection, for servers that do not use Axum's or Tonic's connect info.
///
/// Bare Hyper users insert it into every request's extensions (for example from a
/// `service_fn` closure that captured the accepted stream's address); the peer source and
/// every trusted-header source read it first.
///
/// ```
/// use std::net::SocketAddr;
/// use tower_bouncer::client_ip::PeerAddr;
///
/// let mut request = http::Request::new(());
/// let peer: SocketAddr = "192.0.2.10:55000".parse().unwrap();
/// request.extensions_mut().insert(PeerAddr(peer));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// The peer of a connection, from the address `accept` returned.
///
/// ```
/// use std::net::SocketAddr;
/// use tower_bouncer::client_ip::{PeerAddr, RequestView};
///
/// let accepted: SocketAddr = "[::ffff:192.0.2.10]:55000".parse()?;
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(PeerAddr::from(accepted));
/// // The view reads it, canonical (IPv4-mapped IPv6 is the IPv4 address).
/// assert_eq!(RequestView::new(&request).peer_ip(), Some("192.0.2.10".parse()?));
///
/// let peer: PeerAddr = accepted.into();
/// assert_eq!(peer.0, accepted);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        Self(addr)
    }
}

/// A borrowed view of what a source may read from a request: method, URI, headers, extensions
/// and the socket peer.
///
/// It is built once per request by the layers of this crate, without allocating, and handed to
/// every [`ResolveClientIp`](super::ResolveClientIp) source and rate-limit key.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
}

impl<'a> RequestView<'a> {
    /// A view of `request`. The peer is looked up in the extensions when asked for, in this
    /// order: [`PeerAddr`], Axum's `ConnectInfo<SocketAddr>` and `ConnectInfo<PeerAddr>` (feature
    /// `axum`; the latter is what the PROXY protocol listener provides), Tonic's
    /// `TcpConnectInfo` (feature `tonic`).
    pub fn new<B>(request: &'a Request<B>) -> Self {
        Self::from_pieces(
            request.method(),
            request.uri(),
            request.headers(),
            request.extensions(),
        )
    }

    /// A view of request parts (for extractors and middleware that hold `Parts`).
    pub fn from_parts(parts: &'a http::request::Parts) -> Self {
        Self::from_pieces(&parts.method, &parts.uri, &parts.headers, &parts.extensions)
    }

    fn from_pieces(
        method: &'a Method,
        uri: &'a Uri,
        headers: &'a HeaderMap,
        extensions: &'a Extensions,
    ) -> Self {
        Self {
            method,
            uri,
            headers,
            extensions,
        }
    }

    /// The request method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The request URI.
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The request headers, as received.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The request extensions.
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }

    /// The socket peer, when the server recorded one (looked up in the extensions on each
    /// call, in the order given at [`new`](Self::new): a view that never needs the peer costs
    /// no lookup).
    pub fn peer(&self) -> Option<SocketAddr> {
        peer_from_extensions(self.extensions)
    }

    /// The socket peer's address, canonical (an IPv4-mapped IPv6 peer is its IPv4 address).
    pub fn peer_ip(&self) -> Option<IpAddr> {
        self.peer().map(|peer| peer.ip().to_canonical())
    }
}

fn peer_from_extensions(extensions: &Extensions) -> Option<SocketAddr> {
    if let Some(PeerAddr(peer)) = extensions.get::<PeerAddr>() {
        return Some(*peer);
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(peer)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(*peer);
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(PeerAddr(peer))) =
        extensions.get::<axum::extract::ConnectInfo<PeerAddr>>()
    {
        return Some(*peer);
    }
    #[cfg(feature = "tonic")]
    if let Some(info) = extensions.get::<tonic::transport::server::TcpConnectInfo>() {
        return info.remote_addr();
    }
    None
}
