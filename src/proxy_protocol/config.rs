//! Which peers must send a PROXY protocol header, and how long and how big it may be.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::parse::V2_FIXED_LEN;
use crate::client_ip::TrustedRanges;
use crate::ConfigError;

/// The default time a trusted peer has to send its whole header.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default bound on a version 2 header: the 536 bytes the specification says a receiver's
/// buffer needs, which leaves room for the largest address block and a few hundred bytes of
/// TLVs (AWS NLB's VPC endpoint id, HAProxy's unique id).
const DEFAULT_MAX_HEADER_LEN: usize = 536;
/// The smallest bound that still admits every address family (16 bytes + 216 for `AF_UNIX`).
const MIN_MAX_HEADER_LEN: usize = V2_FIXED_LEN + 216;
/// The largest header the format can describe.
const MAX_MAX_HEADER_LEN: usize = V2_FIXED_LEN + u16::MAX as usize;

/// The PROXY protocol rules of a listener, checked once when built and cheap to clone.
///
/// - Connections from a **trusted** peer (your HAProxy, your load balancer) must open with a
///   PROXY protocol v1 or v2 header; the address in it becomes the connection's peer. A
///   connection that does not is dropped: a proxy that stopped sending the header would
///   otherwise turn every client into the proxy itself.
/// - Connections from any **other** peer are read as they are (no header expected) and keep
///   their socket peer: a client cannot announce an address of its choosing.
/// - The header must be complete within [`timeout`](Self::timeout) (5 s by default) and fit in
///   107 bytes (version 1) or [`max_header_len`](Self::max_header_len) bytes (version 2, 536 by
///   default).
///
/// ```
/// use std::time::Duration;
/// use tower_bouncer::proxy_protocol::ProxyProtocolConfig;
///
/// use tower_bouncer::client_ip::TrustedRanges;
///
/// let config = ProxyProtocolConfig::new("10.0.0.0/8".parse::<TrustedRanges>()?)
///     .timeout(Duration::from_secs(2))?
///     .max_header_len(1024)?;
/// assert!(config.is_trusted("10.1.2.3".parse()?));
/// assert!(!config.is_trusted("203.0.113.7".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ProxyProtocolConfig {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    trusted: TrustedRanges,
    timeout: Duration,
    max_header_len: usize,
}

impl ProxyProtocolConfig {
    /// Rules that require a header from the peers in `trusted`, with the default timeout and
    /// size bound.
    pub fn new(trusted: TrustedRanges) -> Self {
        Self {
            inner: Arc::new(Inner {
                trusted,
                timeout: DEFAULT_TIMEOUT,
                max_header_len: DEFAULT_MAX_HEADER_LEN,
            }),
        }
    }

    /// How long a trusted peer has, from the moment its connection is accepted, to send its
    /// whole header (default 5 s).
    ///
    /// # Errors
    ///
    /// A zero duration: no header could ever arrive.
    pub fn timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::new(
                "the proxy protocol timeout must not be zero",
            ));
        }
        Arc::make_mut(&mut self.inner).timeout = timeout;
        Ok(self)
    }

    /// The largest version 2 header accepted, in bytes, TLVs included (default 536). A version
    /// 1 header is always bounded by the specification's 107 bytes.
    ///
    /// # Errors
    ///
    /// Fewer than 232 bytes (the largest address block would not fit) or more than 65,551
    /// (the largest header the format can describe).
    pub fn max_header_len(mut self, len: usize) -> Result<Self, ConfigError> {
        if !(MIN_MAX_HEADER_LEN..=MAX_MAX_HEADER_LEN).contains(&len) {
            return Err(ConfigError::new(format!(
                "the proxy protocol header bound must be between {MIN_MAX_HEADER_LEN} and {MAX_MAX_HEADER_LEN} bytes, not {len}"
            )));
        }
        Arc::make_mut(&mut self.inner).max_header_len = len;
        Ok(self)
    }

    /// Whether a connection from `ip` must open with a header. An IPv4-mapped IPv6 address
    /// is checked as its IPv4 address (see [`TrustedRanges::contains`]).
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.inner.trusted.contains(ip)
    }

    /// The peers that must send a header.
    pub fn trusted(&self) -> &TrustedRanges {
        &self.inner.trusted
    }

    pub(crate) fn header_timeout(&self) -> Duration {
        self.inner.timeout
    }

    pub(crate) fn max_v2_len(&self) -> usize {
        self.inner.max_header_len
    }
}

impl fmt::Debug for ProxyProtocolConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyProtocolConfig")
            .field("trusted", &self.inner.trusted)
            .field("timeout", &self.inner.timeout)
            .field("max_header_len", &self.inner.max_header_len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_timeout_is_a_configuration_error() {
        let config = ProxyProtocolConfig::new(TrustedRanges::new());
        assert!(config.timeout(Duration::ZERO).is_err());
    }

    #[test]
    fn header_bound_outside_the_format_is_a_configuration_error() {
        for len in [0, 231, 65_552, usize::MAX] {
            assert!(
                ProxyProtocolConfig::new(TrustedRanges::new())
                    .max_header_len(len)
                    .is_err(),
                "{len}"
            );
        }
        for len in [232, 536, 65_551] {
            assert!(
                ProxyProtocolConfig::new(TrustedRanges::new())
                    .max_header_len(len)
                    .is_ok(),
                "{len}"
            );
        }
    }

    #[test]
    fn ipv4_mapped_peer_matches_an_ipv4_range() {
        let config = ProxyProtocolConfig::new(TrustedRanges::parse("10.0.0.0/8").unwrap());
        assert!(config.is_trusted("::ffff:10.0.0.5".parse().unwrap()));
        assert!(!config.is_trusted("::ffff:11.0.0.5".parse().unwrap()));
    }

    #[test]
    fn empty_set_trusts_nobody() {
        let config = ProxyProtocolConfig::new(TrustedRanges::new());
        assert!(!config.is_trusted("127.0.0.1".parse().unwrap()));
    }
}
