use crate::client_ip::{
    Explanation, Reason, RequestView, Resolution, ResolveClientIp, SourceKind, Step,
};

/// The socket peer of the connection: the right source when nothing stands between the
/// clients and this server (and the only one a client cannot influence at all).
///
/// It reads, in this order, the crate's [`PeerAddr`](crate::client_ip::PeerAddr) extension,
/// Axum's `ConnectInfo<SocketAddr>` (feature `axum`) and Tonic's `TcpConnectInfo`
/// (feature `tonic`). A request with none of them resolves to
/// [`Reason::NoPeer`]: the server must be started with connect info.
///
/// ```
/// use tower_bouncer::client_ip::{ClientIpLayer, SocketPeer};
///
/// let layer = ClientIpLayer::new(SocketPeer::new());
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketPeer {
    _private: (),
}

impl SocketPeer {
    /// The socket-peer source.
    pub fn new() -> Self {
        Self { _private: () }
    }
}

impl ResolveClientIp for SocketPeer {
    fn resolve(&self, request: &RequestView<'_>) -> Resolution {
        match request.peer_ip() {
            Some(ip) if !ip.is_unspecified() => Resolution::resolved(ip, SourceKind::Peer),
            Some(_) => Resolution::Untrustworthy(Reason::InvalidEntry { position: 0 }),
            None => Resolution::Absent(Reason::NoPeer),
        }
    }

    fn explain(&self, request: &RequestView<'_>) -> Explanation {
        let resolution = self.resolve(request);
        Explanation::new("peer", resolution).with_step(Step::Peer {
            ip: request.peer_ip(),
            trusted: resolution.ip().is_some(),
        })
    }
}
