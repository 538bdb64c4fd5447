//! `ClientIpLayer` and the `ClientIp` extractor, driven through Tower (`ServiceBuilder` +
//! `service_fn` + `oneshot`) and through a real Axum server on loopback.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_bouncer::client_ip::{
    Chain, ClientIp, ClientIpLayer, ClientIpService, OnUnresolved, PeerAddr, Reason, RequestView,
    Resolution, ResolveClientIp, ResponseFuture, SocketPeer, SourceKind,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// A source that always answers the same thing and counts how often it was asked.
#[derive(Debug)]
struct Fixed {
    answer: Resolution,
    calls: Arc<AtomicUsize>,
}

impl Fixed {
    fn new(answer: Resolution) -> (Self, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        (
            Self {
                answer,
                calls: Arc::clone(&calls),
            },
            calls,
        )
    }
}

impl ResolveClientIp for Fixed {
    fn resolve(&self, _request: &RequestView<'_>) -> Resolution {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.answer
    }
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn peer(ip: IpAddr) -> PeerAddr {
    PeerAddr(SocketAddr::new(ip, 40_000))
}

/// `ip source fallback` of the `ClientIp` the inner service saw, or `none`.
fn describe(client: Option<&ClientIp>) -> String {
    match client {
        Some(client) => format!(
            "{} {} {}",
            client.ip(),
            client.source(),
            client.is_fallback()
        ),
        None => "none".to_owned(),
    }
}

/// Runs one request through `layer` in front of an echo service; returns the status, the
/// body, and how many times the inner service ran.
async fn through_layer(layer: ClientIpLayer, request: Request<()>) -> (StatusCode, String, usize) {
    let inner_calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&inner_calls);
    let service =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(move |request: Request<()>| {
                counter.fetch_add(1, Ordering::SeqCst);
                let body = describe(request.extensions().get::<ClientIp>());
                async move { Ok::<_, Infallible>(Response::new(body)) }
            }));
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    (
        status,
        response.into_body(),
        inner_calls.load(Ordering::SeqCst),
    )
}

fn request_from(peer_addr: Option<PeerAddr>) -> Request<()> {
    let mut request = Request::new(());
    if let Some(peer_addr) = peer_addr {
        request.extensions_mut().insert(peer_addr);
    }
    request
}

// ---------------------------------------------------------------------------------------------
// Through Tower

#[tokio::test]
async fn peer_source_inserts_client_ip_with_its_source() {
    let layer = ClientIpLayer::new(SocketPeer::new());
    let (status, body, calls) =
        through_layer(layer, request_from(Some(peer(v4(192, 0, 2, 10))))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "192.0.2.10 peer false");
    assert_eq!(calls, 1);
}

#[tokio::test]
async fn resolved_source_kind_and_canonical_address_reach_the_inner_service() {
    let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
    let (source, _) = Fixed::new(Resolution::resolved(mapped, SourceKind::Header));
    let layer = ClientIpLayer::new(source);
    let (status, body, _) = through_layer(layer, request_from(None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "203.0.113.7 header false");
}

/// The reject body names none of the internals: no reason code, no source, no address.
fn assert_reject_body(body: &str) {
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    let object = json.as_object().unwrap();
    assert_eq!(object.len(), 1, "{body}");
    assert!(object["error"].is_string(), "{body}");
    for internal in [
        "header",
        "peer",
        "trusted",
        "xff",
        "forwarded",
        "192.0",
        "duplicate",
        "missing",
        "reason",
    ] {
        assert!(
            !body.to_ascii_lowercase().contains(internal),
            "reject body names `{internal}`: {body}"
        );
    }
}

#[tokio::test]
async fn reject_answers_400_json_naming_no_internals_when_absent() {
    let (source, _) = Fixed::new(Resolution::Absent(Reason::HeaderMissing));
    let layer = ClientIpLayer::new(source).on_unresolved(OnUnresolved::Reject);
    let service =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|_request: Request<()>| async {
                Ok::<_, Infallible>(Response::new(String::from("inner ran")))
            }));
    let response = service
        .oneshot(request_from(Some(peer(v4(192, 0, 2, 10)))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.headers()[http::header::CONTENT_TYPE],
        "application/json"
    );
    assert_reject_body(response.body());
}

#[tokio::test]
async fn reject_is_the_default_and_covers_untrustworthy_answers() {
    let (source, _) = Fixed::new(Resolution::Untrustworthy(Reason::DuplicateHeader));
    let (status, body, calls) = through_layer(
        ClientIpLayer::new(source),
        request_from(Some(peer(v4(192, 0, 2, 10)))),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(calls, 0, "the inner service must not run on a reject");
    assert_reject_body(&body);
}

#[tokio::test]
async fn fallback_to_peer_flags_the_peer_as_fallback() {
    for answer in [
        Resolution::Absent(Reason::PeerNotTrusted),
        Resolution::Untrustworthy(Reason::InvalidEntry { position: 1 }),
    ] {
        let (source, _) = Fixed::new(answer);
        let layer = ClientIpLayer::new(source).on_unresolved(OnUnresolved::FallbackToPeer);
        let mapped_peer: IpAddr = "::ffff:192.0.2.10".parse().unwrap();
        let (status, body, calls) =
            through_layer(layer, request_from(Some(peer(mapped_peer)))).await;
        assert_eq!(status, StatusCode::OK, "{answer:?}");
        assert_eq!(body, "192.0.2.10 peer true", "{answer:?}");
        assert_eq!(calls, 1);
    }
}

#[tokio::test]
async fn fallback_without_any_peer_is_a_500_server_misconfiguration() {
    let (source, _) = Fixed::new(Resolution::Absent(Reason::HeaderMissing));
    let layer = ClientIpLayer::new(source).on_unresolved(OnUnresolved::FallbackToPeer);
    let (status, body, calls) = through_layer(layer, request_from(None)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(calls, 0);
    assert!(body.contains("connect info"), "{body}");
}

#[tokio::test]
async fn socket_peer_without_peer_and_reject_is_400() {
    let (status, body, calls) =
        through_layer(ClientIpLayer::new(SocketPeer::new()), request_from(None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(calls, 0);
    assert_reject_body(&body);
}

#[tokio::test]
async fn an_existing_client_ip_is_kept_and_the_source_not_asked() {
    let (source, asked) = Fixed::new(Resolution::resolved(
        v4(198, 51, 100, 1),
        SourceKind::Header,
    ));
    let mut request = request_from(Some(peer(v4(192, 0, 2, 10))));
    request.extensions_mut().insert(ClientIp::new(
        v4(203, 0, 113, 99),
        SourceKind::Custom("outer"),
    ));
    let (status, body, _) = through_layer(ClientIpLayer::new(source), request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "203.0.113.99 outer false");
    assert_eq!(asked.load(Ordering::SeqCst), 0);
}

/// Reading Axum's `ConnectInfo` needs the crate's `axum` feature.
#[cfg(feature = "axum")]
#[tokio::test]
async fn peer_addr_is_read_before_axum_connect_info() {
    use axum::extract::ConnectInfo;

    let mut request = request_from(Some(peer(v4(192, 0, 2, 10))));
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(v4(198, 51, 100, 20), 1)));
    let (_, body, _) = through_layer(ClientIpLayer::new(SocketPeer::new()), request).await;
    assert_eq!(body, "192.0.2.10 peer false");

    // Without `PeerAddr`, Axum's connect info is the peer.
    let mut request = request_from(None);
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(v4(198, 51, 100, 20), 1)));
    let (_, body, _) = through_layer(ClientIpLayer::new(SocketPeer::new()), request).await;
    assert_eq!(body, "198.51.100.20 peer false");
}

#[tokio::test]
async fn a_chain_in_the_layer_stops_on_untrustworthy() {
    let (absent, _) = Fixed::new(Resolution::Absent(Reason::HeaderMissing));
    let (stop, _) = Fixed::new(Resolution::Untrustworthy(Reason::DuplicateHeader));
    let chain = Chain::new().then(absent).then(stop).then(SocketPeer::new());
    let (status, _, calls) = through_layer(
        ClientIpLayer::new(chain),
        request_from(Some(peer(v4(192, 0, 2, 10)))),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(calls, 0);
}

#[tokio::test]
async fn axum_body_works_as_the_response_body() {
    let service = ServiceBuilder::new()
        .layer(ClientIpLayer::new(SocketPeer::new()))
        .service(service_fn(|_request: Request<()>| async {
            Ok::<_, Infallible>(Response::new(axum::body::Body::from("ok")))
        }));
    let response = service.oneshot(request_from(None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let bytes = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert_reject_body(std::str::from_utf8(&bytes).unwrap());
}

// ---------------------------------------------------------------------------------------------
// Compile-time: the layer, the service and its future can cross threads and be shared.

/// A minimal inner service with a `Send + Sync` future.
#[derive(Clone)]
struct Echo;

impl Service<Request<()>> for Echo {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<()>) -> Self::Future {
        ready(Ok(Response::new(String::new())))
    }
}

fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn layer_service_and_future_are_send_sync_clone() {
    assert_send_sync_clone::<ClientIpLayer>();
    assert_send_sync_clone::<ClientIpService<Echo>>();
    assert_send_sync_clone::<Chain>();
    assert_send_sync::<<ClientIpService<Echo> as Service<Request<()>>>::Future>();
    assert_send_sync::<ResponseFuture<Ready<Result<Response<String>, Infallible>>, String>>();
    // With Axum's router as the inner service, the future must at least be `Send`
    // (Axum and Hyper require it).
    fn assert_send<T: Send>() {}
    assert_send::<<ClientIpService<axum::Router> as Service<Request<axum::body::Body>>>::Future>();
}

// ---------------------------------------------------------------------------------------------
// Through a real Axum server on loopback
// (The `ClientIp` extractor and reading `ConnectInfo` need the crate's `axum` feature.)

#[cfg(feature = "axum")]
mod axum_server {
    use axum::routing::get;
    use axum::Router;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpSocket};
    use tower_bouncer::client_ip::{TrustedHeader, TrustedRanges};

    use super::*;

    async fn show(client: ClientIp) -> String {
        describe(Some(&client))
    }

    async fn show_optional(client: Option<ClientIp>) -> String {
        describe(client.as_ref())
    }

    /// Serves `app` with connect info on 127.0.0.1:0; returns its address.
    async fn serve(app: Router) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        addr
    }

    /// One HTTP/1.1 GET from the loopback address `from`; returns the status and the body.
    async fn http_get(
        server: SocketAddr,
        from: Ipv4Addr,
        path: &str,
        headers: &str,
    ) -> (u16, String) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
        let mut stream = socket.connect(server).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap();
        (status, body.to_owned())
    }

    #[tokio::test]
    async fn axum_server_distinct_loopback_clients_are_distinct_peers() {
        let app = Router::new()
            .route("/", get(show))
            .layer(ClientIpLayer::new(SocketPeer::new()));
        let server = serve(app).await;
        for last in [2, 3, 77] {
            let from = Ipv4Addr::new(127, 0, 0, last);
            let (status, body) = http_get(server, from, "/", "").await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body, format!("127.0.0.{last} peer false"));
        }
    }

    #[tokio::test]
    async fn axum_server_extractor_without_layer_is_500_naming_the_layer() {
        let app = Router::new()
            .route("/", get(show))
            .route("/optional", get(show_optional));
        let server = serve(app).await;
        let (status, body) = http_get(server, Ipv4Addr::new(127, 0, 0, 1), "/", "").await;
        assert_eq!(status, 500);
        assert!(body.contains("ClientIpLayer"), "{body}");
        let (status, body) = http_get(server, Ipv4Addr::new(127, 0, 0, 1), "/optional", "").await;
        assert_eq!(status, 200);
        assert_eq!(body, "none");
    }

    #[tokio::test]
    async fn axum_server_optional_extractor_sees_the_layer_value() {
        let app = Router::new()
            .route("/optional", get(show_optional))
            .layer(ClientIpLayer::new(SocketPeer::new()));
        let server = serve(app).await;
        let (status, body) = http_get(server, Ipv4Addr::new(127, 0, 0, 5), "/optional", "").await;
        assert_eq!(status, 200);
        assert_eq!(body, "127.0.0.5 peer false");
    }

    #[tokio::test]
    async fn axum_server_reject_and_fallback_policies() {
        let (source, _) = Fixed::new(Resolution::Absent(Reason::HeaderMissing));
        let source: Arc<dyn ResolveClientIp> = Arc::new(source);
        let reject = Router::new()
            .route("/", get(show))
            .layer(ClientIpLayer::from_arc(Arc::clone(&source)));
        let fallback = Router::new()
            .route("/", get(show))
            .layer(ClientIpLayer::from_arc(source).on_unresolved(OnUnresolved::FallbackToPeer));
        let reject = serve(reject).await;
        let fallback = serve(fallback).await;
        let from = Ipv4Addr::new(127, 0, 0, 9);

        let (status, body) = http_get(reject, from, "/", "").await;
        assert_eq!(status, 400);
        assert_reject_body(&body);

        let (status, body) = http_get(fallback, from, "/", "").await;
        assert_eq!(status, 200);
        assert_eq!(body, "127.0.0.9 peer true");
    }

    #[tokio::test]
    async fn axum_router_without_connect_info_and_fallback_is_500() {
        let (source, _) = Fixed::new(Resolution::Absent(Reason::HeaderMissing));
        let app = Router::new()
            .route("/", get(show))
            .layer(ClientIpLayer::new(source).on_unresolved(OnUnresolved::FallbackToPeer));
        // Driven without a server: no `ConnectInfo`, no `PeerAddr`.
        let response = app
            .oneshot(Request::new(axum::body::Body::empty()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn axum_server_trusted_header_is_believed_only_from_the_trusted_loopback_address() {
        // Only 127.0.0.1 is "the proxy"; 127.0.0.2 is a client that reached the server directly.
        let proxy: TrustedRanges = "127.0.0.1/32".parse().unwrap();
        let chain = Chain::new()
            .then(TrustedHeader::x_real_ip(proxy))
            .then(SocketPeer::new());
        let app = Router::new()
            .route("/", get(show))
            .layer(ClientIpLayer::new(chain));
        let server = serve(app).await;
        let proxy = Ipv4Addr::new(127, 0, 0, 1);
        let client = Ipv4Addr::new(127, 0, 0, 2);

        let (status, body) = http_get(server, proxy, "/", "X-Real-IP: 203.0.113.7\r\n").await;
        assert_eq!((status, body.as_str()), (200, "203.0.113.7 header false"));

        let (status, body) = http_get(server, client, "/", "X-Real-IP: 203.0.113.7\r\n").await;
        assert_eq!((status, body.as_str()), (200, "127.0.0.2 peer false"));

        let (status, body) = http_get(server, proxy, "/", "").await;
        assert_eq!((status, body.as_str()), (200, "127.0.0.1 peer false"));

        // A duplicated header from the proxy stops the chain: 400, never the peer.
        let (status, body) = http_get(
            server,
            proxy,
            "/",
            "X-Real-IP: 203.0.113.7\r\nX-Real-IP: 203.0.113.8\r\n",
        )
        .await;
        assert_eq!(status, 400);
        assert_reject_body(&body);
    }
}
