//! Reading the header off one connection.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::error::ErrorKind;
use super::parse::{parse, Header, Parsed};
use super::{ProxiedStream, ProxyProtocolConfig, ProxyProtocolError};

/// Enough for a version 1 header, a typical version 2 header and the start of the request
/// that follows; the buffer grows (within the header bound) only for a long version 2 header.
const INITIAL_BUFFER: usize = 1024;

/// Read the PROXY protocol header of a freshly accepted connection, when its peer must send one,
/// and answer the connection (with any bytes read past the header put back in front) and the
/// client address to use as its peer.
///
/// - `peer` not trusted by `config`: nothing is read; the answer is the stream as it is and
///   `peer`.
/// - `peer` trusted: the connection must open with a version 1 or version 2 header, complete
///   within the configured timeout and size bound. The address it announces is the answer;
///   for `LOCAL` (version 2), `UNKNOWN` (version 1) and non-IP address families it is `peer`.
///
/// This is the building block for servers written directly on Hyper: put the answered address
/// into the request extensions as a [`PeerAddr`](crate::client_ip::PeerAddr), and the
/// socket-peer source sees the client. Axum users take
/// [`ProxyProtocolListener`](super::ProxyProtocolListener) instead.
///
/// ```no_run
/// use std::convert::Infallible;
///
/// use hyper::server::conn::http1;
/// use hyper::service::service_fn;
/// use hyper_util::rt::TokioIo;
/// use tower_bouncer::client_ip::{PeerAddr, TrustedRanges};
/// use tower_bouncer::proxy_protocol::{read_proxy_header, ProxyProtocolConfig};
///
/// # async fn run() -> std::io::Result<()> {
/// // The one address your HAProxy / load balancer connects from.
/// let config = ProxyProtocolConfig::new(TrustedRanges::parse("10.0.0.2").unwrap());
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
/// loop {
///     let (stream, peer) = listener.accept().await?;
///     let config = config.clone();
///     tokio::spawn(async move {
///         let (stream, client) = match read_proxy_header(stream, peer, &config).await {
///             Ok(accepted) => accepted,
///             Err(error) => return eprintln!("dropped: {error}"),
///         };
///         let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
///             request.extensions_mut().insert(PeerAddr(client));
///             async move { Ok::<_, Infallible>(hyper::Response::new(client.to_string())) }
///         });
///         let _ = http1::Builder::new()
///             .serve_connection(TokioIo::new(stream), service)
///             .await;
///     });
/// }
/// # }
/// ```
///
/// # Errors
///
/// For a trusted peer only, and the connection should then be dropped: a first byte that
/// starts no header ([`MissingHeader`](super::ProxyProtocolErrorKind::MissingHeader)), a
/// malformed header, one over the size bound, the peer closing early, the timeout, or a read
/// error. See [`ProxyProtocolErrorKind`](super::ProxyProtocolErrorKind).
pub async fn read_proxy_header<S>(
    mut stream: S,
    peer: SocketAddr,
    config: &ProxyProtocolConfig,
) -> Result<(ProxiedStream<S>, SocketAddr), ProxyProtocolError>
where
    S: AsyncRead + Unpin,
{
    if !config.is_trusted(peer.ip()) {
        return Ok((ProxiedStream::new(stream, Vec::new(), 0), peer));
    }
    let timeout = config.header_timeout();
    let read = read_header(&mut stream, peer, config);
    let (header, buffer) = match tokio::time::timeout(timeout, read).await {
        Ok(read) => read?,
        Err(_elapsed) => return Err(ProxyProtocolError::timeout(peer, timeout)),
    };
    let client = header.source.unwrap_or(peer);
    Ok((ProxiedStream::new(stream, buffer, header.len), client))
}

async fn read_header<S>(
    stream: &mut S,
    peer: SocketAddr,
    config: &ProxyProtocolConfig,
) -> Result<(Header, Vec<u8>), ProxyProtocolError>
where
    S: AsyncRead + Unpin,
{
    let max_v2_len = config.max_v2_len();
    let mut buffer = Vec::with_capacity(INITIAL_BUFFER);
    // Bounded: `parse` answers `Incomplete` only while the buffer is shorter than the header
    // bound, and every turn either reads at least one byte or ends.
    loop {
        match parse(&buffer, max_v2_len) {
            Ok(Parsed::Complete(header)) => return Ok((header, buffer)),
            Ok(Parsed::Incomplete) => {}
            Err((kind, source)) => return Err(ProxyProtocolError::new(kind, peer, source)),
        }
        match stream.read_buf(&mut buffer).await {
            Ok(0) => return Err(ProxyProtocolError::new(ErrorKind::Truncated, peer, None)),
            Ok(_) => {}
            Err(error) => {
                return Err(ProxyProtocolError::new(
                    ErrorKind::Io,
                    peer,
                    Some(Box::new(error)),
                ))
            }
        }
    }
}
