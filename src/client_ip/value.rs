use std::fmt;
use std::net::IpAddr;

/// The client IP address that [`ClientIpLayer`](super::ClientIpLayer) resolved for a request.
///
/// The layer inserts it into the request extensions; handlers take it as an extractor (feature
/// `axum`), other layers read it with `request.extensions().get::<ClientIp>()`.
///
/// The address is canonical: an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) is reported as the
/// IPv4 address, and zone identifiers are gone.
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr};
/// use tower_bouncer::client_ip::{ClientIp, SourceKind};
///
/// let client = ClientIp::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), SourceKind::XForwardedFor);
/// assert_eq!(client.ip().to_string(), "203.0.113.7");
/// assert_eq!(client.source().as_str(), "xff");
/// assert!(!client.is_fallback());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp {
    ip: IpAddr,
    source: SourceKind,
    fallback: bool,
}

impl ClientIp {
    /// A client IP resolved by `source`. The address is made canonical.
    ///
    /// Useful in tests, or in an outer layer that knows the client better: the layer keeps a
    /// `ClientIp` that is already in the extensions.
    pub fn new(ip: IpAddr, source: SourceKind) -> Self {
        Self {
            ip: ip.to_canonical(),
            source,
            fallback: false,
        }
    }

    /// The socket peer, used because no configured source resolved the request
    /// ([`OnUnresolved::FallbackToPeer`](super::OnUnresolved::FallbackToPeer)).
    pub fn fallback(peer: IpAddr) -> Self {
        Self {
            ip: peer.to_canonical(),
            source: SourceKind::Peer,
            fallback: true,
        }
    }

    /// The address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Which kind of source resolved it.
    pub fn source(&self) -> SourceKind {
        self.source
    }

    /// `true` when no source resolved the request and the socket peer was used instead.
    pub fn is_fallback(&self) -> bool {
        self.fallback
    }
}

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.ip, f)
    }
}

impl From<ClientIp> for IpAddr {
    fn from(client: ClientIp) -> Self {
        client.ip
    }
}

/// Which kind of source resolved a [`ClientIp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SourceKind {
    /// The socket peer of the connection.
    Peer,
    /// The `X-Forwarded-For` header (trusted ranges or hop count).
    XForwardedFor,
    /// The RFC 7239 `Forwarded` header (trusted ranges or hop count).
    Forwarded,
    /// A single-address header set by a trusted proxy (`CF-Connecting-IP`, `X-Real-IP`, …).
    Header,
    /// A signed client-IP header verified with a shared key.
    Signed,
    /// A source written outside this crate; the string is its name.
    Custom(&'static str),
}

impl SourceKind {
    /// A short, stable name: `peer`, `xff`, `forwarded`, `header`, `signed`, or a custom name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Peer => "peer",
            Self::XForwardedFor => "xff",
            Self::Forwarded => "forwarded",
            Self::Header => "header",
            Self::Signed => "signed",
            Self::Custom(name) => name,
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
