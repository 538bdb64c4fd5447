//! `RateLimitLayer` in an Axum `Router`: `.layer()` and `.route_layer()`, a real server on
//! loopback with connect info, `RouteKey` on the matched path, a custom deny response built
//! with `IntoResponse`.
#![cfg(all(feature = "axum", feature = "memory"))]

use std::net::SocketAddr;
use std::num::NonZeroU32;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use http::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use tower_bouncer::client_ip::SocketPeer;
use tower_bouncer::rate_limit::{IpKey, Quota, RateLimitLayer, RateLimited, RouteKey};
use tower_bouncer::{ClientIp, ClientIpLayer};

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap())
}

async fn whoami(client: ClientIp) -> String {
    client.ip().to_string()
}

/// One HTTP/1.1 request on a fresh connection from `local` (a 127.x address): the status code
/// and the `retry-after` value.
async fn get_from(server: SocketAddr, local: &str, path: &str) -> (u16, Option<String>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let retry_after = response
        .lines()
        .find_map(|line| line.strip_prefix("retry-after: "))
        .map(str::to_owned);
    (status, retry_after)
}

#[tokio::test]
async fn issue_4_real_server_with_layer_and_connect_info() {
    let app = Router::new()
        .route("/", get(whoami))
        .layer(RateLimitLayer::new(per_minute(5)))
        // Added last, so it runs first: the rate limiter needs its ClientIp.
        .layer(ClientIpLayer::new(SocketPeer::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let serve = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(get_from(server, "127.0.0.21", "/").await);
    }
    let expected_pass = (200, None);
    let expected_deny = (429, Some("12".to_owned()));
    assert_eq!(&statuses[..5], &vec![expected_pass; 5][..]);
    assert_eq!(&statuses[5..], &vec![expected_deny; 3][..]);
    // Another client (another loopback address) has its own bucket.
    assert_eq!(get_from(server, "127.0.0.22", "/").await.0, 200);

    serve.abort();
    let _ = serve.await;
}

/// The layers around the whole `Router` (README, "Before or after routing"): a denial
/// answers before any routing — an unknown path is limited too — and the handlers behind
/// still see the `ClientIp`.
#[tokio::test]
async fn layers_around_the_whole_router_limit_before_routing() {
    let router = Router::new().route("/", get(whoami));
    let app = tower::ServiceBuilder::new()
        .layer(ClientIpLayer::new(SocketPeer::new()))
        .layer(RateLimitLayer::new(per_minute(2)))
        .service(router);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let serve = tokio::spawn(async move {
        let app = axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
            SocketAddr,
        >(app);
        axum::serve(listener, app).await
    });

    assert_eq!(get_from(server, "127.0.0.31", "/").await, (200, None));
    assert_eq!(
        get_from(server, "127.0.0.31", "/nowhere").await,
        (404, None)
    );
    assert_eq!(
        get_from(server, "127.0.0.31", "/nowhere").await,
        (429, Some("30".to_owned()))
    );
    assert_eq!(get_from(server, "127.0.0.31", "/").await.0, 429);
    assert_eq!(get_from(server, "127.0.0.32", "/").await, (200, None));

    serve.abort();
    let _ = serve.await;
}

fn from_peer(path: &str, peer: &str) -> Request<Body> {
    let peer: SocketAddr = peer.parse().unwrap();
    Request::builder()
        .uri(path)
        .extension(ConnectInfo(peer))
        .body(Body::empty())
        .unwrap()
}

async fn status(app: &Router, path: &str, peer: &str) -> StatusCode {
    app.clone()
        .oneshot(from_peer(path, peer))
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn issue_4_route_layer_limits_only_matched_routes_per_route_template() {
    let limiter = RateLimitLayer::builder(per_minute(2))
        .key((RouteKey, IpKey::new()))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route("/search", get(|| async { "search" }))
        .route_layer(limiter)
        .layer(ClientIpLayer::new(SocketPeer::new()));
    let client = "198.51.100.1:4000";

    // `/users/1` and `/users/2` are one route: the client cannot mint buckets with ids.
    let mut user_statuses = Vec::new();
    for id in 1..=4 {
        user_statuses.push(status(&app, &format!("/users/{id}"), client).await);
    }
    assert_eq!(
        user_statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // Another route: its own bucket.
    assert_eq!(status(&app, "/search", client).await, StatusCode::OK);
    // Another client on the same route: its own bucket.
    assert_eq!(
        status(&app, "/users/9", "198.51.100.2:4000").await,
        StatusCode::OK
    );
    // `route_layer` does not apply to unmatched paths: 404s, never limited.
    for _ in 0..10 {
        assert_eq!(
            status(&app, "/nowhere", client).await,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn route_key_sees_the_matched_path_with_router_layer_too() {
    let limiter = RateLimitLayer::builder(per_minute(1))
        .key(RouteKey)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .route("/other", get(|| async { "other" }))
        .layer(limiter);
    // A global bucket per route template.
    assert_eq!(
        status(&app, "/items/1", "198.51.100.1:1").await,
        StatusCode::OK
    );
    assert_eq!(
        status(&app, "/items/2", "198.51.100.2:1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status(&app, "/other", "198.51.100.3:1").await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn route_key_outside_the_router_has_no_key_and_says_so() {
    let limiter = RateLimitLayer::builder(per_minute(1))
        .key(RouteKey)
        .build()
        .unwrap();
    let router = Router::new().route("/items/{id}", get(|| async { "item" }));
    // Wrapped around the router from outside: no MatchedPath yet, so no key, so the
    // misconfiguration answer (never a shared bucket, never the raw path).
    let app = tower::ServiceBuilder::new().layer(limiter).service(router);
    let response = app
        .oneshot(from_peer("/items/1", "198.51.100.1:1"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn custom_deny_response_with_into_response() {
    let limiter = RateLimitLayer::builder(per_minute(1))
        .ratelimit_headers(true)
        .deny_response(|limited: &RateLimited| {
            (
                StatusCode::TOO_MANY_REQUESTS,
                Json(serde_json::json!({
                    "error": "slow down",
                    "retry_after": limited.retry_after_secs(),
                })),
            )
                .into_response()
        })
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(limiter)
        .layer(ClientIpLayer::new(SocketPeer::new()));
    let client = "198.51.100.1:1";
    assert_eq!(status(&app, "/", client).await, StatusCode::OK);
    let denied = app.clone().oneshot(from_peer("/", client)).await.unwrap();
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.headers()["retry-after"], "60");
    assert_eq!(denied.headers()["ratelimit"], r#""default";r=0;t=60"#);
    assert!(denied.extensions().get::<RateLimited>().is_some());
    let body = axum::body::to_bytes(denied.into_body(), 1024)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error": "slow down", "retry_after": 60})
    );
}

#[test]
fn axum_layer_and_service_types_are_clone_send_sync_static() {
    fn assert_clone_send_sync_static<T: Clone + Send + Sync + 'static>() {}
    type Layer = RateLimitLayer<
        (RouteKey, IpKey),
        tower_bouncer::store::MemoryStore<(
            tower_bouncer::rate_limit::RoutePath,
            tower_bouncer::rate_limit::MaskedIp,
        )>,
    >;
    assert_clone_send_sync_static::<Layer>();
    assert_clone_send_sync_static::<
        tower_bouncer::rate_limit::RateLimit<
            axum::routing::Route,
            (RouteKey, IpKey),
            tower_bouncer::store::MemoryStore<(
                tower_bouncer::rate_limit::RoutePath,
                tower_bouncer::rate_limit::MaskedIp,
            )>,
        >,
    >();
}
