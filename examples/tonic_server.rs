//! tower-bouncer in front of a Tonic gRPC server: the layers read Tonic's `TcpConnectInfo`, the
//! handler reads the resolved `ClientIp` from the request extensions, and an over-quota call
//! gets the gRPC status `RESOURCE_EXHAUSTED` (with a `retry-after` metadata entry).
//!
//! ```text
//! cargo run --example tonic_server --features tonic              serve on 127.0.0.1:50051
//! cargo run --example tonic_server --features tonic -- --demo    serve on a free port, call it 4 times
//! ```
//!
//! The service `bouncer.WhoAmI/Get` is written by hand on `tonic::server::Grpc` with a
//! raw-bytes codec (no protoc, no generated code): it answers the caller's address as text.
//!
//! Two details of Tonic matter:
//! - **Bodies.** The layers write their own `400`/`429` bodies, so they need a response body
//!   type with `From<&'static str>`; Tonic's `tonic::body::Body` has none. A `MapResponse`
//!   layer under them turns Tonic's body into `axum::body::Body`, which has it.
//! - **Denials.** The layer's default `429` with a JSON body is not gRPC: a Tonic client reads
//!   the body as gRPC frames and fails with `INTERNAL`. The deny response below is a gRPC
//!   "trailers-only" answer (HTTP 200, `grpc-status: 8`), which every gRPC client understands.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut};
use http::HeaderValue;
use tonic::body::Body as TonicBody;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::Status;
use tower::util::MapResponseLayer;
use tower::{service_fn, Service};
use tower_bouncer::client_ip::{
    Chain, ClientIp, ClientIpLayer, SocketPeer, TrustedRanges, XForwardedFor,
};
use tower_bouncer::rate_limit::{Quota, RateLimitLayer, RateLimited};

const PATH: &str = "/bouncer.WhoAmI/Get";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let demo = std::env::args().any(|arg| arg == "--demo");
    let listen: SocketAddr = if demo {
        "127.0.0.1:0".parse()?
    } else {
        "127.0.0.1:50051".parse()?
    };

    // Behind an HTTP/2 proxy on this host, read its X-Forwarded-For; else the peer.
    let client_ip = ClientIpLayer::new(
        Chain::new()
            .then(XForwardedFor::rightmost_untrusted(TrustedRanges::loopback()))
            .then(SocketPeer::new()),
    );
    let limit = RateLimitLayer::builder("3/min".parse::<Quota>()?)
        .deny_response(resource_exhausted)
        .build()?;

    let incoming = TcpIncoming::bind(listen)?;
    let addr = incoming.local_addr()?;
    let server = Server::builder()
        .layer(client_ip)
        .layer(limit)
        .layer(MapResponseLayer::new(to_axum_body))
        .add_service(WhoAmI)
        .serve_with_incoming(incoming);
    println!("gRPC on {addr}: bouncer.WhoAmI/Get");
    if !demo {
        server.await?;
        return Ok(());
    }
    let server = tokio::spawn(server);
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = tonic::client::Grpc::new(channel);
    for call in 1..=4 {
        client.ready().await?;
        let answer = client
            .unary(
                tonic::Request::new(Vec::new()),
                http::uri::PathAndQuery::from_static(PATH),
                RawCodec,
            )
            .await;
        match answer {
            Ok(response) => println!(
                "call {call}: {}",
                String::from_utf8_lossy(response.get_ref())
            ),
            Err(status) => println!(
                "call {call}: {:?} {:?}, retry-after {:?}",
                status.code(),
                status.message(),
                status.metadata().get("retry-after")
            ),
        }
    }
    server.abort();
    Ok(())
}

/// `bouncer.WhoAmI/Get`: the caller's address, as the layers resolved it.
#[derive(Debug, Clone, Copy)]
struct WhoAmI;

impl NamedService for WhoAmI {
    const NAME: &'static str = "bouncer.WhoAmI";
}

impl Service<http::Request<TonicBody>> for WhoAmI {
    type Response = http::Response<TonicBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<TonicBody>) -> Self::Future {
        Box::pin(async move {
            if request.uri().path() != PATH {
                return Ok(Status::unimplemented("no such method").into_http());
            }
            let handler = service_fn(|request: tonic::Request<Vec<u8>>| async move {
                // The HTTP request's extensions, ClientIp included, carry over to Tonic's.
                let text = match request.extensions().get::<ClientIp>() {
                    Some(client) => format!("{} ({})", client.ip(), client.source()),
                    None => "unknown".to_owned(),
                };
                Ok::<_, Status>(tonic::Response::new(text.into_bytes()))
            });
            Ok(tonic::server::Grpc::new(RawCodec)
                .unary(handler, request)
                .await)
        })
    }
}

/// A gRPC "trailers-only" refusal: HTTP 200, `grpc-status: 8` (RESOURCE_EXHAUSTED).
fn resource_exhausted(denied: &RateLimited) -> http::Response<axum::body::Body> {
    let mut response = http::Response::new(axum::body::Body::empty());
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from_static("8"));
    headers.insert("grpc-message", HeaderValue::from_static("rate limited"));
    if let Some(seconds) = denied.retry_after_secs() {
        headers.insert("retry-after", HeaderValue::from(seconds));
    }
    response
}

/// Tonic's body as an `axum::body::Body`, in which the layers can write their own answers.
fn to_axum_body(response: http::Response<TonicBody>) -> http::Response<axum::body::Body> {
    response.map(axum::body::Body::new)
}

/// Messages are raw bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut message = vec![0; src.remaining()];
        src.copy_to_slice(&mut message);
        Ok(Some(message))
    }
}
