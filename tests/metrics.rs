//! Issue 8, item 3: the metrics move. One test function, because it installs the process-wide
//! recorder (`metrics-util`'s `DebuggingRecorder`) once.
#![cfg(all(feature = "metrics", feature = "memory", feature = "axum"))]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{Request, Response, StatusCode};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_bouncer::client_ip::{PeerAddr, SocketPeer};
use tower_bouncer::rate_limit::{Quota, RateLimitLayer};
use tower_bouncer::ClientIpLayer;

fn request(
    path: &str,
    peer: Option<IpAddr>,
    headers: &[(&'static str, &'static str)],
) -> Request<Body> {
    let mut request = Request::get(path).body(Body::empty()).unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    if let Some(ip) = peer {
        request
            .extensions_mut()
            .insert(PeerAddr(SocketAddr::new(ip, 40_000)));
    }
    request
}

/// Every series as `name{label=value,...}` → value (counters and gauges as numbers,
/// histograms as their number of samples).
fn series(snapshotter: &Snapshotter) -> BTreeMap<String, f64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<_> = key
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            labels.sort();
            let value = match value {
                DebugValue::Counter(count) => count as f64,
                DebugValue::Gauge(gauge) => gauge.into_inner(),
                DebugValue::Histogram(samples) => samples.len() as f64,
            };
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

#[tokio::test]
async fn issue_8_metrics_move() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    // An Axum route behind both layers: 2 requests per minute per client.
    let limit = RateLimitLayer::new(Quota::per_minute(NonZeroU32::new(2).unwrap()));
    let app = Router::new()
        .route("/users/{id}", get(|| async { "hello" }))
        .layer(
            ServiceBuilder::new()
                .layer(ClientIpLayer::new(SocketPeer::new()))
                .layer(limit),
        );
    let client = Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)));
    let mut statuses = Vec::new();
    for id in 1..=3 {
        let response = app
            .clone()
            .oneshot(request(&format!("/users/{id}"), client, &[]))
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    // No peer address and no fallback: the client-IP layer rejects it as unresolved.
    let response = app
        .clone()
        .oneshot(request("/users/4", None, &[]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let seen = series(&snapshotter);
    let route = "route=/users/{id}";
    assert_eq!(
        seen[&format!("tower_bouncer_requests_total{{decision=allowed,{route},source=peer}}")],
        2.0,
        "{seen:#?}"
    );
    assert_eq!(
        seen[&format!("tower_bouncer_requests_total{{decision=denied,{route},source=peer}}")],
        1.0
    );
    assert_eq!(
        seen[&format!("tower_bouncer_requests_total{{decision=unresolved,{route},source=none}}")],
        1.0
    );

    // Outside a router the route is `unmatched`, never the raw path. Plenty of traffic from
    // distinct clients: the store is timed (1 in 64) and the tracked-keys gauge set (every
    // 4096 decisions), all on this thread.
    let busy = ServiceBuilder::new()
        .layer(ClientIpLayer::new(SocketPeer::new()).detect_misconfiguration(false))
        .layer(RateLimitLayer::new(Quota::per_minute(
            NonZeroU32::new(1).unwrap(),
        )))
        .service(service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }));
    for i in 0..4096_u32 {
        let [_, _, c, d] = i.to_be_bytes();
        let ip = IpAddr::V4(Ipv4Addr::new(198, 18, c, d));
        let response = busy
            .clone()
            .oneshot(request(&format!("/random/{i}"), Some(ip), &[]))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let seen = series(&snapshotter);
    assert_eq!(
        seen["tower_bouncer_requests_total{decision=allowed,route=unmatched,source=peer}"],
        4096.0
    );
    assert!(!seen.keys().any(|name| name.contains("/random/")));
    let timed = seen["tower_bouncer_store_duration_seconds{}"];
    assert!((64.0..=65.0).contains(&timed), "{timed}");
    // The gauge was last set at a multiple of 4096 decisions on this thread: at least the
    // 4096 keys minus the ones that arrived after it.
    let tracked = seen["tower_bouncer_tracked_keys{}"];
    assert!((1.0..=4096.0).contains(&tracked), "{tracked}");

    // A misconfigured layer: keyed on the peer behind a proxy. The default detection samples
    // one request in 64 per thread and logs the kind once a minute.
    let misconfigured = ServiceBuilder::new()
        .layer(ClientIpLayer::new(SocketPeer::new()))
        .service(service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }));
    for _ in 0..64 {
        let nginx = request(
            "/",
            Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
            &[("x-forwarded-for", "203.0.113.7")],
        );
        misconfigured.clone().oneshot(nginx).await.unwrap();
    }
    let seen = series(&snapshotter);
    assert_eq!(
        seen["tower_bouncer_misconfigurations_total{kind=ignored_forwarding_header}"],
        1.0
    );
}
