//! Issue 6 through the rate-limit layer: `RateLimitLayer` on a `RedisStore` (a real
//! `redis-server`) answers the same 429s as on the memory store, and a 503 when Redis is down
//! and the policy is fail-closed.
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use std::convert::Infallible;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use redis_server::{redis_available, RedisServer};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_bouncer::client_ip::{ClientIp, SourceKind};
use tower_bouncer::rate_limit::{MaskedIp, Quota, RateLimitLayer};
use tower_bouncer::store::{OnFailure, RedisStore};

async fn ok(_request: Request<()>) -> Result<Response<String>, Infallible> {
    Ok(Response::new("ok".into()))
}

fn request_from(ip: &str) -> Request<()> {
    Request::builder()
        .uri("/")
        .extension(ClientIp::new(
            ip.parse::<IpAddr>().unwrap(),
            SourceKind::Peer,
        ))
        .body(())
        .unwrap()
}

#[tokio::test]
async fn issue_6_layer_on_redis_store_answers_429_then_503_when_redis_is_down() {
    if !redis_available("issue_6_layer_on_redis_store_answers_429_then_503_when_redis_is_down") {
        return;
    }
    let mut server = RedisServer::start();
    let store: RedisStore<MaskedIp> = RedisStore::builder(server.url())
        .on_failure(OnFailure::Closed)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let quota = Quota::per_minute(NonZeroU32::new(3).unwrap());
    let layer = RateLimitLayer::builder(quota).store(store).build().unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service(service_fn(ok));

    let mut statuses = Vec::new();
    for host in 1..=5 {
        // One /64: the same bucket for every host in it.
        let ip = format!("2001:db8:0:1::{host}");
        let response = service
            .ready()
            .await
            .unwrap()
            .call(request_from(&ip))
            .await
            .unwrap();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap().to_owned());
        statuses.push((response.status(), retry_after));
    }
    let ok = (StatusCode::OK, None);
    let denied = (StatusCode::TOO_MANY_REQUESTS, Some("20".to_owned()));
    assert_eq!(
        statuses,
        [ok.clone(), ok.clone(), ok, denied.clone(), denied]
    );
    // The bucket is named after the masked client address.
    assert_eq!(
        server.scan("tower-bouncer:"),
        ["tower-bouncer:2001:db8:0:1::"]
    );

    server.kill();
    let response = service
        .ready()
        .await
        .unwrap()
        .call(request_from("203.0.113.9"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}
