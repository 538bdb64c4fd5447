//! tower-bouncer in front of a Tonic gRPC server (issue 8 item 5): the layers read Tonic's
//! `TcpConnectInfo`, the handler sees the client's address, and an over-quota call is refused
//! — as HTTP 429 by default (which a Tonic client reports as a failed call naming the 429), or
//! as a gRPC-native `RESOURCE_EXHAUSTED` with a custom deny response (the one to use).
//!
//! The service is written by hand on `tonic::server::Grpc` with a raw-bytes codec: no protoc,
//! no generated code.
//!
//! Tonic's own body type has no `From<&'static str>`, which the layers need to write their
//! 400 and 429 bodies; the server maps response bodies to `axum::body::Body` (which has it,
//! and which Tonic's router already depends on) under the layers.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut};
use http::uri::PathAndQuery;
use http::{HeaderValue, Uri};
use hyper_util::rt::TokioIo;
use tonic::body::Body as TonicBody;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::{Code, Status};
use tower::util::MapResponseLayer;
use tower::{service_fn, Service};
use tower_bouncer::client_ip::{ClientIp, ClientIpLayer, SocketPeer};
use tower_bouncer::rate_limit::{Quota, RateLimitLayer};

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

const PATH: &str = "/bouncer.WhoAmI/Get";

/// `bouncer.WhoAmI/Get`: answers the client IP the layers resolved, as text.
#[derive(Debug, Clone, Copy)]
struct WhoAmI;

impl NamedService for WhoAmI {
    const NAME: &'static str = "bouncer.WhoAmI";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Service<http::Request<TonicBody>> for WhoAmI {
    type Response = http::Response<TonicBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<TonicBody>) -> Self::Future {
        Box::pin(async move {
            if request.uri().path() != PATH {
                return Ok(Status::unimplemented("no such method").into_http());
            }
            let handler = service_fn(|request: tonic::Request<Vec<u8>>| async move {
                // The extensions of the HTTP request, ClientIp included, carry over.
                let client = request.extensions().get::<ClientIp>().copied();
                let text = match client {
                    Some(client) => format!("{} {}", client.ip(), client.source()),
                    None => "none".to_owned(),
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
fn grpc_resource_exhausted(
    denied: &tower_bouncer::rate_limit::RateLimited,
) -> http::Response<axum::body::Body> {
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

/// Tonic's response body as an `axum::body::Body`, which the layers can build their own
/// answers in.
fn to_axum_body(response: http::Response<TonicBody>) -> http::Response<axum::body::Body> {
    response.map(axum::body::Body::new)
}

/// Serves `WhoAmI` behind the layers on a fresh 127.0.0.1 port.
async fn serve(grpc_native_deny: bool) -> SocketAddr {
    let quota: Quota = "2/min".parse().unwrap();
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap();
    let client_ip = ClientIpLayer::new(SocketPeer::new());
    let bodies = MapResponseLayer::new(to_axum_body);
    if grpc_native_deny {
        let limit = RateLimitLayer::builder(quota)
            .deny_response(grpc_resource_exhausted)
            .build()
            .unwrap();
        let router = Server::builder()
            .layer(client_ip)
            .layer(limit)
            .layer(bodies)
            .add_service(WhoAmI);
        tokio::spawn(router.serve_with_incoming(incoming));
    } else {
        let router = Server::builder()
            .layer(client_ip)
            .layer(RateLimitLayer::new(quota))
            .layer(bodies)
            .add_service(WhoAmI);
        tokio::spawn(router.serve_with_incoming(incoming));
    }
    addr
}

/// Calls `WhoAmI/Get` over a new HTTP/2 connection from `local` (a 127.x address).
async fn call(server: SocketAddr, local: IpAddr) -> Result<String, Status> {
    let channel = Endpoint::from_shared(format!("http://{server}"))
        .unwrap()
        .connect_with_connector(service_fn(move |_: Uri| async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(local, 0))?;
            Ok::<_, std::io::Error>(TokioIo::new(socket.connect(server).await?))
        }))
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let response = client
        .unary(
            tonic::Request::new(Vec::new()),
            PathAndQuery::from_static(PATH),
            RawCodec,
        )
        .await?;
    Ok(String::from_utf8(response.into_inner()).unwrap())
}

#[tokio::test]
async fn grpc_sees_the_client_address_and_is_refused_over_quota() {
    let server = serve(false).await;
    let alice: IpAddr = "127.0.0.31".parse().unwrap();
    let bob: IpAddr = "127.0.0.32".parse().unwrap();
    // The peer source read Tonic's TcpConnectInfo: the client's own address.
    assert_eq!(call(server, alice).await.unwrap(), "127.0.0.31 peer");
    assert_eq!(call(server, alice).await.unwrap(), "127.0.0.31 peer");
    // Over the 2/min quota: an HTTP 429 with the layer's JSON body. Tonic's client reads that
    // body as gRPC frames and reports INTERNAL ("invalid compression flag"), naming the 429:
    // refused, but not in gRPC's terms — hence the gRPC-native deny response below.
    let denied = call(server, alice).await.unwrap_err();
    assert_ne!(denied.code(), Code::Ok);
    assert!(
        denied.message().contains("status: 429 Too Many Requests"),
        "{denied:?}"
    );
    assert!(denied.metadata().get("retry-after").is_some(), "{denied:?}");
    // Another client has its own bucket.
    assert_eq!(call(server, bob).await.unwrap(), "127.0.0.32 peer");
}

#[tokio::test]
async fn grpc_native_denial_is_resource_exhausted() {
    let server = serve(true).await;
    let alice: IpAddr = "127.0.0.33".parse().unwrap();
    assert_eq!(call(server, alice).await.unwrap(), "127.0.0.33 peer");
    assert_eq!(call(server, alice).await.unwrap(), "127.0.0.33 peer");
    let denied = call(server, alice).await.unwrap_err();
    assert_eq!(denied.code(), Code::ResourceExhausted, "{denied:?}");
    assert_eq!(denied.message(), "rate limited");
    let retry: u64 = denied
        .metadata()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
}
