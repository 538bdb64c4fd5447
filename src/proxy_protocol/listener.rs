//! A TCP listener that reads PROXY protocol headers: the acceptor for `axum::serve`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::task::{JoinError, JoinSet};

use super::{read_proxy_header, ProxiedStream, ProxyProtocolConfig, ProxyProtocolError};

/// How many trusted connections may be in the middle of their handshake at once, by default.
const DEFAULT_MAX_PENDING: usize = 1024;

type Handshake = Result<(ProxiedStream<TcpStream>, SocketAddr), ProxyProtocolError>;

/// A TCP listener whose connections from trusted proxies open with a PROXY protocol header: it
/// answers each connection with the client address the header announces.
///
/// With Axum, serve it with connect info of type [`PeerAddr`](crate::client_ip::PeerAddr):
/// the socket-peer source (and every source that checks the peer) then sees the client the
/// proxy announced, while connections from other peers keep their socket address.
///
/// ```no_run
/// use axum::{routing::get, Router};
/// use tower_bouncer::client_ip::{ClientIp, ClientIpLayer, PeerAddr, SocketPeer, TrustedRanges};
/// use tower_bouncer::proxy_protocol::{ProxyProtocolConfig, ProxyProtocolListener};
///
/// # async fn run() -> std::io::Result<()> {
/// let app = Router::new()
///     .route("/", get(|client: ClientIp| async move { client.ip().to_string() }))
///     .layer(ClientIpLayer::new(SocketPeer::new()));
/// // The one address your HAProxy / load balancer connects from.
/// let config = ProxyProtocolConfig::new(TrustedRanges::parse("10.0.0.2").unwrap());
/// let listener = ProxyProtocolListener::bind("0.0.0.0:8080", config).await?;
/// axum::serve(listener, app.into_make_service_with_connect_info::<PeerAddr>()).await
/// # }
/// ```
///
/// Headers are read off the accepting loop, each in its own task bounded by the configured
/// timeout, so a slow or silent proxy connection never holds up the others; at most
/// [`max_pending_handshakes`](Self::max_pending_handshakes) are read at once. A failed
/// handshake is logged (`tracing` at error level, with the peer and the cause) and its
/// connection dropped.
pub struct ProxyProtocolListener {
    listener: TcpListener,
    config: ProxyProtocolConfig,
    pending: JoinSet<Handshake>,
    max_pending: usize,
}

impl ProxyProtocolListener {
    /// Wrap a bound listener.
    pub fn new(listener: TcpListener, config: ProxyProtocolConfig) -> Self {
        Self {
            listener,
            config,
            pending: JoinSet::new(),
            max_pending: DEFAULT_MAX_PENDING,
        }
    }

    /// Bind a listener to `addr` and wrap it.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound.
    pub async fn bind(addr: impl ToSocketAddrs, config: ProxyProtocolConfig) -> io::Result<Self> {
        Ok(Self::new(TcpListener::bind(addr).await?, config))
    }

    /// How many trusted connections may be reading their header at once (default 1024). At the
    /// bound, no new connection is accepted until a handshake ends (completes, fails or times
    /// out); the kernel's backlog holds the waiting ones.
    #[must_use]
    pub fn max_pending_handshakes(mut self, max: NonZeroUsize) -> Self {
        self.max_pending = max.get();
        self
    }

    /// The next connection and the client address to use as its peer: the address in its
    /// header for a trusted peer, its socket address for any other. Failed handshakes and
    /// accept errors are logged and skipped, so this only ever answers a usable connection.
    pub async fn accept(&mut self) -> (ProxiedStream<TcpStream>, SocketAddr) {
        loop {
            if self.pending.len() >= self.max_pending {
                if let Some(done) = self.pending.join_next().await {
                    if let Some(accepted) = finished(done) {
                        return accepted;
                    }
                }
                continue;
            }
            tokio::select! {
                biased;
                Some(done) = self.pending.join_next() => {
                    if let Some(accepted) = finished(done) {
                        return accepted;
                    }
                }
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) if !self.config.is_trusted(peer.ip()) => {
                        return (ProxiedStream::new(stream, Vec::new(), 0), peer);
                    }
                    Ok((stream, peer)) => {
                        let config = self.config.clone();
                        self.pending.spawn(async move {
                            read_proxy_header(stream, peer, &config).await
                        });
                    }
                    Err(error) => accept_error(error).await,
                },
            }
        }
    }

    /// The address the listener is bound to.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The rules the listener applies.
    pub fn config(&self) -> &ProxyProtocolConfig {
        &self.config
    }
}

impl fmt::Debug for ProxyProtocolListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyProtocolListener")
            .field("listener", &self.listener)
            .field("config", &self.config)
            .field("pending", &self.pending.len())
            .field("max_pending", &self.max_pending)
            .finish()
    }
}

fn finished(done: Result<Handshake, JoinError>) -> Option<(ProxiedStream<TcpStream>, SocketAddr)> {
    match done {
        Ok(Ok(accepted)) => Some(accepted),
        Ok(Err(error)) => {
            tracing::error!(
                peer = %error.peer(),
                kind = ?error.kind(),
                cause = error_cause(&error),
                "dropping connection: {error}"
            );
            None
        }
        Err(error) => {
            tracing::error!("proxy protocol handshake task failed: {error}");
            None
        }
    }
}

fn error_cause(error: &ProxyProtocolError) -> tracing::field::DisplayValue<String> {
    use std::error::Error as _;
    // Only on the failure path: a failed handshake already costs a dropped connection.
    tracing::field::display(
        error
            .source()
            .map(|source| source.to_string())
            .unwrap_or_default(),
    )
}

/// Accept errors: the connection-level ones concern one client and are skipped; the others
/// (out of file descriptors, typically) are logged and the loop waits a moment so it does not
/// spin, the way Axum's own listener does.
async fn accept_error(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept error: {error}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(feature = "axum")]
mod axum_support {
    use super::*;
    use crate::client_ip::PeerAddr;
    use axum::extract::connect_info::Connected;
    use axum::serve::{IncomingStream, Listener};

    impl Listener for ProxyProtocolListener {
        type Io = ProxiedStream<TcpStream>;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            ProxyProtocolListener::accept(self).await
        }

        fn local_addr(&self) -> io::Result<Self::Addr> {
            ProxyProtocolListener::local_addr(self)
        }
    }

    /// `router.into_make_service_with_connect_info::<PeerAddr>()`: the client address of each
    /// connection, as [`ProxyProtocolListener`] answered it.
    impl Connected<IncomingStream<'_, ProxyProtocolListener>> for PeerAddr {
        fn connect_info(stream: IncomingStream<'_, ProxyProtocolListener>) -> Self {
            PeerAddr(*stream.remote_addr())
        }
    }
}
