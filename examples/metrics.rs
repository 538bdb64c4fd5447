//! The metrics of tower-bouncer, exported in the Prometheus text format.
//!
//! ```text
//! cargo run --example metrics --features metrics            # drive a few requests, print the export
//! cargo run --example metrics --features metrics -- --serve # serve the app and GET /metrics on 127.0.0.1:3001
//! ```
//!
//! The Prometheus recorder is `metrics-exporter-prometheus` without its HTTP listener: the
//! app serves the rendered text itself at `/metrics` (protect that route in production).

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::Request;
use metrics_exporter_prometheus::PrometheusBuilder;
use tower::{ServiceBuilder, ServiceExt};
use tower_bouncer::client_ip::{PeerAddr, SocketPeer};
use tower_bouncer::rate_limit::{Quota, RateLimitLayer};
use tower_bouncer::ClientIpLayer;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prometheus = PrometheusBuilder::new().install_recorder()?;

    let limited = Router::new()
        .route("/users/{id}", get(|| async { "hello" }))
        .layer(
            ServiceBuilder::new()
                .layer(ClientIpLayer::new(SocketPeer::new()))
                .layer(RateLimitLayer::new(Quota::per_minute(
                    NonZeroU32::new(3).ok_or("zero quota")?,
                ))),
        );
    let app = limited.route(
        "/metrics",
        get(move || {
            let prometheus = prometheus.clone();
            async move { prometheus.render() }
        }),
    );

    if std::env::args().any(|arg| arg == "--serve") {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
        println!("serving on http://127.0.0.1:3001 (try /users/1 a few times, then /metrics)");
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await?;
        return Ok(());
    }

    // Five requests from one client (three pass, two are limited), one from another.
    for (client, id) in [(7, 1), (7, 2), (7, 3), (7, 4), (7, 5), (8, 1)] {
        let mut request = Request::get(format!("/users/{id}")).body(Body::empty())?;
        let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, client)), 40_000);
        request.extensions_mut().insert(PeerAddr(peer));
        let response = app.clone().oneshot(request).await?;
        println!("203.0.113.{client} GET /users/{id} → {}", response.status());
    }
    let request = Request::get("/metrics").body(Body::empty())?;
    let response = app.oneshot(request).await.map_err(|e: Infallible| e)?;
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    println!("\n{}", String::from_utf8_lossy(&body));
    Ok(())
}
