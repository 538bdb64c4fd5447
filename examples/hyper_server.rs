//! tower-bouncer on bare Hyper 1, without Axum: the crate's `PeerAddr` extension carries the
//! socket peer (inserted per connection from the accepted stream's address), then
//! `ClientIpLayer` resolves the client and `RateLimitLayer` limits it.
//!
//! ```text
//! cargo run --example hyper_server -- [ADDR]     (default 127.0.0.1:3001)
//! curl http://127.0.0.1:3001/                    → client 127.0.0.1 (peer)
//! curl http://127.0.0.1:3001/_bouncer/explain    → the explain JSON (protect it in production)
//! ```
//!
//! Five requests a minute per client; the sixth answers `429` with `Retry-After`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tower::{service_fn, ServiceBuilder};
use tower_bouncer::client_ip::{
    Chain, ClientIp, ClientIpLayer, PeerAddr, SocketPeer, TrustedRanges, XForwardedFor,
};
use tower_bouncer::explain::{Explain, DEFAULT_PATH};
use tower_bouncer::rate_limit::{Quota, RateLimitLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen: SocketAddr = match std::env::args().nth(1) {
        Some(addr) => addr.parse()?,
        None => SocketAddr::from(([127, 0, 0, 1], 3001)),
    };

    // Behind a proxy on this host, read its X-Forwarded-For; else the peer is the client.
    let client_ip = ClientIpLayer::new(
        Chain::new()
            .then(XForwardedFor::rightmost_untrusted(TrustedRanges::loopback()))
            .then(SocketPeer::new()),
    );
    let limit = RateLimitLayer::new("5/min".parse::<Quota>()?);
    // A diagnostic endpoint: shows the caller's forwarding headers and the trusted ranges.
    // Keep it off, or behind authentication, in production.
    let explain = Explain::from_layer(&client_ip).rate_limit_layer(&limit);

    let app = ServiceBuilder::new()
        .layer(client_ip)
        .layer(limit)
        .service(service_fn(move |request: Request<Incoming>| {
            let explain = explain.clone();
            async move { Ok::<_, Infallible>(handle(&explain, &request)) }
        }));

    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, peer) = listener.accept().await?;
        // Each connection's requests carry its peer address, for the client-IP sources.
        let service = ServiceBuilder::new()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                request
            })
            .service(app.clone());
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            if let Err(error) = connection.await {
                eprintln!("connection from {peer}: {error}");
            }
        });
    }
}

fn handle(explain: &Explain, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() == DEFAULT_PATH {
        return explain.respond(request).map(Full::from);
    }
    // The ClientIpLayer in front always inserts it (or answers 400 itself).
    let text = match request.extensions().get::<ClientIp>() {
        Some(client) => format!("client {} ({})\n", client.ip(), client.source()),
        None => "no client ip\n".to_owned(),
    };
    Response::new(Full::from(text))
}
