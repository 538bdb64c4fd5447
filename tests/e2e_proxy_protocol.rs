//! End to end through real HAProxy with `send-proxy-v2` (examples/proxies/haproxy-proxy-protocol.cfg)
//! in front of an Axum app served by `ProxyProtocolListener`, with the socket-peer source.
//!
//! Skips (with a message) only when HAProxy is not installed and `CI` is unset.

#![cfg(all(feature = "proxy-protocol", feature = "axum"))]

mod support;

use std::net::SocketAddr;

use axum::routing::get as route_get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_bouncer::client_ip::{ClientIpLayer, PeerAddr, SocketPeer, TrustedRanges};
use tower_bouncer::proxy_protocol::{ProxyProtocolConfig, ProxyProtocolListener};
use tower_bouncer::ClientIp;

use support::{free_addr, get, lo, values, Kind, Proxy, Scratch};

/// An Axum app answering `{"ip": …}` for the resolved client, served by a
/// `ProxyProtocolListener` that requires the header from `trusted`.
async fn app(
    listen: std::net::IpAddr,
    trusted: std::net::IpAddr,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
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
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<PeerAddr>(),
        )
        .await
        .unwrap();
    });
    (addr, task)
}

#[tokio::test]
async fn haproxy_send_proxy_v2_makes_the_client_the_socket_peer() {
    let test = 20;
    let scratch = Scratch::new("haproxy-proxy-protocol");
    let bind = lo(test, 3);
    let (app_addr, app_task) = app(lo(test, 1), bind).await;
    let Some(mut proxy) = Proxy::start(
        Kind::Haproxy,
        &scratch,
        "haproxy-proxy-protocol.cfg",
        &values([
            ("LISTEN", free_addr(lo(test, 2)).to_string()),
            ("PROXY_BIND", bind.to_string()),
            ("BACKEND", app_addr.to_string()),
        ]),
    ) else {
        app_task.abort();
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
    let response = get("/").send(direct, app_addr).await;
    assert_eq!(response.ip(), direct.to_string(), "{response:?}");

    // Straight to the app with a PROXY header of its own: not read, so the request is garbage
    // to HTTP (400) and the announced address appears nowhere.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(direct, 0)).unwrap();
    let mut stream = socket.connect(app_addr).await.unwrap();
    stream
        .write_all(b"PROXY TCP4 203.0.113.66 127.0.0.1 1 2\r\nGET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(support::PATIENCE, stream.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains("203.0.113.66"), "{text}");
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );

    proxy.assert_running();
    app_task.abort();
}

#[tokio::test]
async fn trusted_peer_without_the_header_is_dropped() {
    // The proxy's address connecting without a header (HAProxy misconfigured, or another
    // process on that host): dropped, never served as if the proxy were the client.
    let test = 21;
    let proxy_address = lo(test, 3);
    let (app_addr, app_task) = app(lo(test, 1), proxy_address).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(proxy_address, 0)).unwrap();
    let mut stream = socket.connect(app_addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(support::PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("the connection is closed");
    assert!(raw.is_empty(), "{}", String::from_utf8_lossy(&raw));

    // And the listener goes on serving others.
    let other = lo(test, 10);
    let response = get("/").send(other, app_addr).await;
    assert_eq!(response.ip(), other.to_string(), "{response:?}");
    app_task.abort();
}

#[tokio::test]
async fn example_server_behind_haproxy_send_proxy_v2_resolves_each_client_and_holds_the_quota() {
    let test = 22;
    let scratch = Scratch::new("server-proxy-protocol");
    let bind = lo(test, 3);
    let server = support::Server::start(
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
    let Some(mut proxy) = Proxy::start(
        Kind::Haproxy,
        &scratch,
        "haproxy-proxy-protocol.cfg",
        &values([
            ("LISTEN", free_addr(lo(test, 2)).to_string()),
            ("PROXY_BIND", bind.to_string()),
            ("BACKEND", server.addr.to_string()),
        ]),
    ) else {
        return;
    };
    let first = lo(test, 10);
    let response = get("/").send(first, proxy.addr).await;
    assert_eq!(response.ip(), first.to_string(), "{response:?}");
    assert_eq!(response.json()["source"], "peer", "{response:?}");

    // Forwarding headers mean nothing to the peer source: one bucket, exactly the quota.
    let rotating = lo(test, 11);
    let mut passed = 0;
    for n in 0..20 {
        let spoof = format!("198.51.100.{n}");
        let response = get("/")
            .header("X-Forwarded-For", spoof.clone())
            .header("X-Real-IP", spoof)
            .send(rotating, proxy.addr)
            .await;
        match response.status {
            200 => {
                assert_eq!(response.ip(), rotating.to_string(), "{response:?}");
                passed += 1;
            }
            429 => {}
            _ => panic!("unexpected answer: {response:?}"),
        }
    }
    assert_eq!(passed, 5);

    // Another client through the same HAProxy: its own bucket.
    let other = lo(test, 12);
    assert_eq!(
        get("/").send(other, proxy.addr).await.ip(),
        other.to_string()
    );
    proxy.assert_running();
}
