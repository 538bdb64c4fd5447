//! tower-bouncer on bare Hyper 1 (issue 8 item 5): the crate's `PeerAddr` extension, inserted
//! per connection from the accepted stream's address, is what the sources read; the layers
//! resolve the client and answer 429 over real TCP on 127.0.0.1.
#![cfg(feature = "memory")]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tower::{service_fn, ServiceBuilder};
use tower_bouncer::client_ip::{
    Chain, ClientIp, ClientIpLayer, PeerAddr, SocketPeer, TrustedRanges, XForwardedFor,
};
use tower_bouncer::explain::{Explain, DEFAULT_PATH};
use tower_bouncer::rate_limit::{Quota, RateLimitLayer};

type Body = Full<Bytes>;

/// Serves `connections` connections on a fresh 127.0.0.1 port; answers the address.
async fn serve(connections: usize) -> SocketAddr {
    let client_ip = ClientIpLayer::new(
        Chain::new()
            .then(XForwardedFor::rightmost_untrusted(
                TrustedRanges::parse("127.0.0.1/32").unwrap(),
            ))
            .then(SocketPeer::new()),
    );
    let limit = RateLimitLayer::new("2/min".parse::<Quota>().unwrap());
    let explain = Explain::from_layer(&client_ip).rate_limit_layer(&limit);
    let app = ServiceBuilder::new()
        .layer(client_ip)
        .layer(limit)
        .service(service_fn(move |request: Request<Incoming>| {
            let explain = explain.clone();
            async move {
                if request.uri().path() == DEFAULT_PATH {
                    return Ok::<_, Infallible>(explain.respond(&request).map(Body::from));
                }
                let client = request.extensions().get::<ClientIp>().copied();
                let text = match client {
                    Some(client) => format!("{} {}", client.ip(), client.source()),
                    None => "none".to_owned(),
                };
                Ok(Response::new(Body::from(text)))
            }
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..connections {
            let (stream, peer) = listener.accept().await.unwrap();
            let service = ServiceBuilder::new()
                .map_request(move |mut request: Request<Incoming>| {
                    request.extensions_mut().insert(PeerAddr(peer));
                    request
                })
                .service(app.clone());
            // Spawned unboxed: the layer's default deny-body type has no lifetime (with
            // `&'static str` there, rustc rejected this spawn: "`From` is not general enough").
            tokio::spawn(
                http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)),
            );
        }
    });
    addr
}

/// One request on a new connection from `local` (a 127.x address).
async fn get(
    server: SocketAddr,
    local: IpAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    let stream = socket.connect(server).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder().uri(path).header("host", "localhost");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn bare_hyper_resolves_the_peer_and_limits_it() {
    let server = serve(5).await;
    let alice: IpAddr = "127.0.0.23".parse().unwrap();
    let bob: IpAddr = "127.0.0.24".parse().unwrap();

    // The peer source read the PeerAddr the accept loop inserted.
    let (status, _, body) = get(server, alice, "/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "127.0.0.23 peer");
    // A forged X-Forwarded-For from an untrusted peer changes nothing.
    let (status, _, body) = get(server, alice, "/", &[("x-forwarded-for", "6.6.6.6")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "127.0.0.23 peer");
    // Third request of a 2/min quota: denied, with a retry hint.
    let (status, headers, _) = get(server, alice, "/", &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    // Another client has its own bucket.
    let (status, _, body) = get(server, bob, "/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "127.0.0.24 peer");
    // The explain endpoint, served by the same stack, sees the same peer.
    let (status, headers, body) = get(server, bob, DEFAULT_PATH, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["result"]["ip"], "127.0.0.24");
    assert!(body["peer"].as_str().unwrap().starts_with("127.0.0.24:"));
    assert_eq!(body["sources"][0]["reason"], "peer_not_trusted");
    assert_eq!(body["key"], "127.0.0.24");
    assert_eq!(body["bucket"]["remaining"], 0);
}

#[tokio::test]
async fn bare_hyper_behind_a_trusted_proxy_reads_its_header() {
    let server = serve(1).await;
    // 127.0.0.1 is the trusted proxy: the rightmost entry it appended is the client.
    let proxy: IpAddr = "127.0.0.1".parse().unwrap();
    let (status, _, body) = get(
        server,
        proxy,
        "/",
        &[("x-forwarded-for", "6.6.6.6, 203.0.113.7")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "203.0.113.7 xff");
}
