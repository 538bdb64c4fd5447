//! End to end through real HAProxy with `send-proxy-v2` (examples/proxies/haproxy-proxy-protocol.cfg)
//! in front of an Axum app served by `ProxyProtocolListener`, with the socket-peer source.
//!
//! Skips (with a message) only when HAProxy is not installed and `CI` is unset.

#![cfg(all(feature = "proxy-protocol", feature = "axum"))]

mod support;

use std::net::{IpAddr, SocketAddr};

use axum::routing::get as route_get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_bouncer::client_ip::{ClientIpLayer, PeerAddr, SocketPeer, TrustedRanges};
use tower_bouncer::proxy_protocol::{ProxyProtocolConfig, ProxyProtocolListener};
use tower_bouncer::ClientIp;

use support::{get, lo, resolves_and_holds_the_quota, App, Kind, Proxy, Scratch, Server};

/// An Axum app answering `{"ip": …}` for the resolved client, served by a
/// `ProxyProtocolListener` that requires the header from `trusted`.
async fn proxy_protocol_app(listen: IpAddr, trusted: IpAddr) -> App {
    let router = axum::Router::new()
        .route(
            "/",
            route_get(|client: ClientIp| async move {
                axum::Json(serde_json::json!({"ip": client.ip().to_string()}))
            }),
        )
        .layer(ClientIpLayer::new(SocketPeer::new()));
    let listener = ProxyProtocolListener::bind(
        (listen, 0),
        ProxyProtocolConfig::new(TrustedRanges::parse(&trusted.to_string()).unwrap()),
    )
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    App::spawn(addr, async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<PeerAddr>(),
        )
        .await
        .unwrap();
    })
}

/// HAProxy with `haproxy-proxy-protocol.cfg` in front of `backend`: listening on 127.0.<test>.2,
/// connecting from `bind` and opening each connection with a PROXY v2 header. `None` if HAProxy
/// is not installed, outside CI.
fn haproxy_send_proxy_v2(
    scratch: &Scratch,
    test: u8,
    bind: IpAddr,
    backend: SocketAddr,
) -> Option<Proxy> {
    let file = "haproxy-proxy-protocol.cfg";
    Proxy::in_front_of(
        Kind::Haproxy,
        scratch,
        file,
        lo(test, 2),
        Some(bind),
        backend,
    )
}

/// Connect from `from` straight to `to`, write `bytes`, and read until the connection closes
/// or [`support::PATIENCE`] runs out: the bytes read, and whether it closed in time.
async fn send_raw(from: IpAddr, to: SocketAddr, bytes: &[u8]) -> (Vec<u8>, bool) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut raw = Vec::new();
    let closed = tokio::time::timeout(support::PATIENCE, stream.read_to_end(&mut raw))
        .await
        .is_ok();
    (raw, closed)
}

#[tokio::test]
async fn haproxy_send_proxy_v2_makes_the_client_the_socket_peer() {
    let test = 20;
    let scratch = Scratch::new("haproxy-proxy-protocol");
    let bind = lo(test, 3);
    let app = proxy_protocol_app(lo(test, 1), bind).await;
    let Some(mut proxy) = haproxy_send_proxy_v2(&scratch, test, bind, app.addr) else {
        return;
    };

    // Through HAProxy: each client is itself, whatever headers it sends.
    for n in 10..13 {
        let client = lo(test, n);
        let response = get("/")
            .header("X-Forwarded-For", "203.0.113.66")
            .send(client, proxy.addr)
            .await;
        assert_eq!(response.ip(), client.to_string(), "{response:?}");
    }

    // Straight to the app, from an untrusted address: its own address, no header needed.
    let direct = lo(test, 20);
    let response = get("/").send(direct, app.addr).await;
    assert_eq!(response.ip(), direct.to_string(), "{response:?}");

    // Straight to the app with a PROXY header of its own: not read, so the request is garbage
    // to HTTP (400) and the announced address appears nowhere.
    let (raw, _) = send_raw(
        direct,
        app.addr,
        b"PROXY TCP4 203.0.113.66 127.0.0.1 1 2\r\nGET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains("203.0.113.66"), "{text}");
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );

    proxy.assert_running();
}

#[tokio::test]
async fn trusted_peer_without_the_header_is_dropped() {
    // The proxy's address connecting without a header (HAProxy misconfigured, or another
    // process on that host): dropped, never served as if the proxy were the client.
    let test = 21;
    let proxy_address = lo(test, 3);
    let app = proxy_protocol_app(lo(test, 1), proxy_address).await;
    let (raw, closed) = send_raw(
        proxy_address,
        app.addr,
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(closed, "the connection is closed");
    assert!(raw.is_empty(), "{}", String::from_utf8_lossy(&raw));

    // And the listener goes on serving others.
    let other = lo(test, 10);
    let response = get("/").send(other, app.addr).await;
    assert_eq!(response.ip(), other.to_string(), "{response:?}");
}

#[tokio::test]
async fn example_server_behind_haproxy_send_proxy_v2_resolves_each_client_and_holds_the_quota() {
    let test = 22;
    let scratch = Scratch::new("server-proxy-protocol");
    let bind = lo(test, 3);
    let server = Server::start(
        &scratch,
        lo(test, 1),
        &[
            "--proxy-protocol",
            &bind.to_string(),
            "--source",
            "peer",
            "--quota",
            "5/min",
        ],
    );
    let Some(mut proxy) = haproxy_send_proxy_v2(&scratch, test, bind, server.addr) else {
        return;
    };
    // Forwarding headers mean nothing to the peer source: one bucket, exactly the quota; another
    // client through the same HAProxy has its own.
    resolves_and_holds_the_quota(&mut proxy, test, "peer", &["X-Forwarded-For", "X-Real-IP"]).await;
}
