//! The error of a PROXY protocol handshake.

use std::error::Error;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// What went wrong while reading a PROXY protocol header. The connection is dropped in every
/// case: its bytes cannot be trusted to be what they seem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyProtocolErrorKind {
    /// A trusted peer sent bytes that do not start a PROXY protocol header (typically plain
    /// HTTP: the proxy is not configured to send the header, or something else reached the
    /// port from a trusted address).
    MissingHeader,
    /// The bytes start like a PROXY protocol header but are not a valid one.
    Invalid,
    /// The header is longer than allowed: 107 bytes for version 1, the configured maximum for
    /// version 2.
    TooLong,
    /// The peer closed the connection before the header was complete.
    Truncated,
    /// The header was not complete within the configured time.
    Timeout,
    /// Reading from the connection failed.
    Io,
}

pub(crate) use ProxyProtocolErrorKind as ErrorKind;

/// A failed PROXY protocol handshake: which peer, what went wrong, and the underlying cause.
///
/// Log it and drop the connection; [`ProxyProtocolListener`](super::ProxyProtocolListener)
/// does both.
#[derive(Debug)]
pub struct ProxyProtocolError {
    kind: ErrorKind,
    peer: SocketAddr,
    timeout: Option<Duration>,
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl ProxyProtocolError {
    pub(crate) fn new(
        kind: ErrorKind,
        peer: SocketAddr,
        source: Option<Box<dyn Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            peer,
            timeout: None,
            source,
        }
    }

    pub(crate) fn timeout(peer: SocketAddr, after: Duration) -> Self {
        Self {
            kind: ErrorKind::Timeout,
            peer,
            timeout: Some(after),
            source: None,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ProxyProtocolErrorKind {
        self.kind
    }

    /// The socket peer (the proxy) whose connection failed.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

impl fmt::Display for ProxyProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "proxy protocol header from {}: ", self.peer)?;
        match self.kind {
            ErrorKind::MissingHeader => {
                f.write_str("the connection does not start with a proxy protocol header")
            }
            ErrorKind::Invalid => f.write_str("invalid header"),
            ErrorKind::TooLong => f.write_str("the header is longer than allowed"),
            ErrorKind::Truncated => {
                f.write_str("the connection closed before the header was complete")
            }
            ErrorKind::Timeout => match self.timeout {
                Some(after) => write!(f, "no complete header within {after:?}"),
                None => f.write_str("no complete header in time"),
            },
            ErrorKind::Io => f.write_str("reading the header failed"),
        }
    }
}

impl Error for ProxyProtocolError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn Error + 'static))
    }
}
