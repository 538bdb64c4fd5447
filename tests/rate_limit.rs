//! Integration tests of `RateLimitLayer` (issue 4, "What it must show"), driven through
//! `tower::ServiceBuilder` with a fake clock: no real sleeps.
#![cfg(feature = "memory")]

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, Request, Response, StatusCode};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_bouncer::client_ip::{ClientIp, SourceKind};
use tower_bouncer::rate_limit::{
    ExtensionKey, ExtractKey, GlobalKey, IpKey, MaskedIp, OnMissingKey, Quota, RateLimit,
    RateLimitLayer, RateLimited, ResponseFuture, RetryAfter,
};
use tower_bouncer::store::{Decision, ManualClock, MemoryStore, Store, StoreError};

type Body = String;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(nz(n))
}

async fn ok(_request: Request<()>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new("ok".into()))
}

fn request_from(ip: IpAddr) -> Request<()> {
    Request::builder()
        .uri("/")
        .extension(ClientIp::new(ip, SourceKind::Peer))
        .body(())
        .unwrap()
}

fn manual_store<K>(clock: &ManualClock) -> MemoryStore<K>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    MemoryStore::builder().clock(clock.clone()).build()
}

async fn send<S>(service: &mut S, request: Request<()>) -> Response<Body>
where
    S: Service<Request<()>, Response = Response<Body>, Error = Infallible>,
{
    service.ready().await.unwrap().call(request).await.unwrap()
}

/// How many of `requests` pass.
async fn count_passed<S>(service: &mut S, requests: impl IntoIterator<Item = Request<()>>) -> usize
where
    S: Service<Request<()>, Response = Response<Body>, Error = Infallible>,
{
    let mut passed = 0;
    for request in requests {
        let response = send(service, request).await;
        match response.status() {
            StatusCode::OK => passed += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected status {other}"),
        }
    }
    passed
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|value| value.to_str().unwrap())
}

/// A deterministic stream of pseudo-random numbers (no dependency, bounded).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 16
    }
}

// ---------------------------------------------------------------------------------------------
// IPv6 prefixes, IPv4 prefixes (issue 4: "1,000 requests from 1,000 different addresses inside
// one /64: one bucket; from different /64s: separate buckets").

fn v6(prefix: [u16; 4], low: u64) -> IpAddr {
    let high = (u64::from(prefix[0]) << 48)
        | (u64::from(prefix[1]) << 32)
        | (u64::from(prefix[2]) << 16)
        | u64::from(prefix[3]);
    IpAddr::V6(Ipv6Addr::from((u128::from(high) << 64) | u128::from(low)))
}

async fn passed_with_key(key: IpKey, addresses: impl Iterator<Item = IpAddr>) -> usize {
    let clock = ManualClock::new();
    let layer = RateLimitLayer::builder(per_minute(5))
        .key(key)
        .store(manual_store::<MaskedIp>(&clock))
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    count_passed(&mut service, addresses.map(request_from)).await
}

#[tokio::test]
async fn issue_4_thousand_addresses_in_one_64_share_one_bucket() {
    let mut random = Lcg(1);
    let addresses = (0..1000).map(|_| v6([0x2001, 0xdb8, 1, 2], random.next()));
    assert_eq!(passed_with_key(IpKey::new(), addresses).await, 5);
}

#[tokio::test]
async fn issue_4_thousand_different_64s_get_separate_buckets() {
    // Each /64 sends two requests: every one passes (5 per bucket).
    let addresses =
        (0..2000u64).map(|i| v6([0x2001, 0xdb8, ((i / 2) >> 16) as u16, (i / 2) as u16], 1));
    assert_eq!(passed_with_key(IpKey::new(), addresses).await, 2000);
}

#[tokio::test]
async fn ipv6_prefix_128_keys_single_addresses() {
    let key = IpKey::new().ipv6_prefix(128).unwrap();
    let addresses = (0..1000u64).map(|i| v6([0x2001, 0xdb8, 1, 2], i));
    assert_eq!(passed_with_key(key, addresses).await, 1000);
    // The same address over and over: 5.
    let key = IpKey::new().ipv6_prefix(128).unwrap();
    let addresses = (0..1000u64).map(|_| v6([0x2001, 0xdb8, 1, 2], 7));
    assert_eq!(passed_with_key(key, addresses).await, 5);
}

#[tokio::test]
async fn ipv6_prefix_48_groups_every_64_of_the_48() {
    let key = IpKey::new().ipv6_prefix(48).unwrap();
    let addresses = (0..1000u64).map(|i| v6([0x2001, 0xdb8, 1, i as u16], i));
    assert_eq!(passed_with_key(key, addresses).await, 5);
    // Different /48s: separate buckets.
    let key = IpKey::new().ipv6_prefix(48).unwrap();
    let addresses = (0..1000u64).map(|i| v6([0x2001, 0xdb8, i as u16, 1], 1));
    assert_eq!(passed_with_key(key, addresses).await, 1000);
}

#[tokio::test]
async fn ipv4_prefix_24_groups_the_block_and_32_does_not() {
    let block = |i: u32| IpAddr::V4(Ipv4Addr::new(203, 0, 113, (i % 256) as u8));
    let key = IpKey::new().ipv4_prefix(24).unwrap();
    assert_eq!(passed_with_key(key, (0..1000).map(block)).await, 5);
    // /32: 256 addresses, each gets its own 5 (1000 requests: every address ≤ 4 times).
    assert_eq!(
        passed_with_key(IpKey::new(), (0..1000).map(block)).await,
        1000
    );
    // Neighbouring /24s are separate.
    let blocks = (0..1000u32).map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i << 8))));
    let key = IpKey::new().ipv4_prefix(24).unwrap();
    assert_eq!(passed_with_key(key, blocks).await, 1000);
}

#[tokio::test]
async fn ipv4_mapped_client_shares_the_ipv4_bucket() {
    let addresses = (0..10).map(|i| {
        if i % 2 == 0 {
            "203.0.113.7".parse().unwrap()
        } else {
            "::ffff:203.0.113.7".parse().unwrap()
        }
    });
    assert_eq!(passed_with_key(IpKey::new(), addresses).await, 5);
}

// ---------------------------------------------------------------------------------------------
// Retry-After and the IETF fields.

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

fn layer_with_clock(
    quota: Quota,
    clock: &ManualClock,
) -> tower_bouncer::rate_limit::RateLimitLayerBuilder<
    IpKey,
    tower_bouncer::rate_limit::WithStore<MemoryStore<MaskedIp>>,
> {
    RateLimitLayer::builder(quota).store(manual_store::<MaskedIp>(clock))
}

#[tokio::test]
async fn issue_4_retry_after_rounds_a_fifth_of_a_second_up_to_1() {
    let clock = ManualClock::new();
    let quota = Quota::with_period(Duration::from_millis(200)).unwrap();
    let mut service = ServiceBuilder::new()
        .layer(layer_with_clock(quota, &clock).build().unwrap())
        .service_fn(ok);
    assert_eq!(
        send(&mut service, request_from(CLIENT)).await.status(),
        StatusCode::OK
    );
    let denied = send(&mut service, request_from(CLIENT)).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    // tower_governor's bug: 0.2 s rounded down to "0", which tells clients to retry at once.
    assert_eq!(header(denied.headers(), "retry-after"), Some("1"));
    let limited = denied.extensions().get::<RateLimited>().unwrap();
    assert_eq!(limited.retry_after(), Some(Duration::from_millis(200)));
    assert_eq!(limited.retry_after_secs(), Some(1));
    assert_eq!(limited.quota(), quota);
}

#[tokio::test]
async fn issue_4_retry_after_rounds_59_001_seconds_up_to_60() {
    let clock = ManualClock::new();
    let mut service = ServiceBuilder::new()
        .layer(layer_with_clock(per_minute(1), &clock).build().unwrap())
        .service_fn(ok);
    assert_eq!(
        send(&mut service, request_from(CLIENT)).await.status(),
        StatusCode::OK
    );
    clock.advance(Duration::from_millis(999));
    let denied = send(&mut service, request_from(CLIENT)).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(denied.headers(), "retry-after"), Some("60"));
    assert_eq!(
        denied
            .extensions()
            .get::<RateLimited>()
            .unwrap()
            .retry_after(),
        Some(Duration::from_millis(59_001))
    );
    assert_eq!(
        header(denied.headers(), "content-type"),
        Some("application/json")
    );
    assert_eq!(*denied.body(), r#"{"error":"rate limited"}"#);
}

/// Drives governor itself and the layer with the same quota and the same random arrival
/// times; they must agree on every decision, and `Retry-After` must be the ceiling of
/// governor's wait (at least 1).
async fn agrees_with_governor(
    quota: Quota,
    governor_quota: governor::Quota,
    max_advance: Duration,
    seed: u64,
) {
    use governor::clock::{Clock as _, FakeRelativeClock};

    let clock = ManualClock::new();
    let governor_clock = FakeRelativeClock::default();
    let reference =
        governor::RateLimiter::direct_with_clock(governor_quota, governor_clock.clone());
    let mut service = ServiceBuilder::new()
        .layer(layer_with_clock(quota, &clock).build().unwrap())
        .service_fn(ok);
    let mut random = Lcg(seed);
    let mut denials = 0;
    for step in 0..2000 {
        let advance = Duration::from_micros(random.next() % max_advance.as_micros() as u64);
        clock.advance(advance);
        governor_clock.advance(advance);
        let response = send(&mut service, request_from(CLIENT)).await;
        match reference.check() {
            Ok(()) => assert_eq!(response.status(), StatusCode::OK, "step {step}"),
            Err(not_until) => {
                denials += 1;
                assert_eq!(
                    response.status(),
                    StatusCode::TOO_MANY_REQUESTS,
                    "step {step}"
                );
                let wait = not_until.wait_time_from(governor_clock.now());
                let mut expected = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                expected = expected.max(1);
                assert_eq!(
                    header(response.headers(), "retry-after"),
                    Some(expected.to_string().as_str()),
                    "step {step}: governor waits {wait:?}"
                );
            }
        }
    }
    assert!(
        denials > 100,
        "the sequence must exercise denials ({denials})"
    );
}

#[tokio::test]
async fn issue_4_retry_after_is_the_ceiling_of_governors_wait() {
    agrees_with_governor(
        per_minute(5),
        governor::Quota::per_minute(nz(5)),
        Duration::from_secs(3),
        7,
    )
    .await;
    agrees_with_governor(
        Quota::per_second(nz(1)).allow_burst(nz(3)),
        governor::Quota::per_second(nz(1)).allow_burst(nz(3)),
        Duration::from_millis(700),
        11,
    )
    .await;
    agrees_with_governor(
        Quota::with_period(Duration::from_millis(2_500)).unwrap(),
        governor::Quota::with_period(Duration::from_millis(2_500)).unwrap(),
        Duration::from_secs(3),
        13,
    )
    .await;
}

#[tokio::test]
async fn issue_4_hidden_mode_has_no_timing_hint_at_all() {
    let clock = ManualClock::new();
    let hidden = layer_with_clock(per_minute(1), &clock)
        .hide_timing()
        .build()
        .unwrap();
    let visible = RateLimitLayer::builder(per_minute(1))
        .store(manual_store::<MaskedIp>(&clock))
        .build()
        .unwrap();
    let mut hidden = ServiceBuilder::new().layer(hidden).service_fn(ok);
    let mut visible = ServiceBuilder::new().layer(visible).service_fn(ok);
    for service in [&mut hidden, &mut visible] {
        assert_eq!(
            send(service, request_from(CLIENT)).await.status(),
            StatusCode::OK
        );
    }
    let quiet = send(&mut hidden, request_from(CLIENT)).await;
    let loud = send(&mut visible, request_from(CLIENT)).await;
    assert_eq!(quiet.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(loud.status(), StatusCode::TOO_MANY_REQUESTS);
    for name in [
        "retry-after",
        "ratelimit",
        "ratelimit-policy",
        "x-ratelimit-reset",
    ] {
        assert!(quiet.headers().get(name).is_none(), "{name}");
    }
    assert_eq!(
        quiet.headers().len(),
        1,
        "only content-type: {:?}",
        quiet.headers()
    );
    assert!(loud.headers().get("retry-after").is_some());
    assert_eq!(quiet.body(), loud.body());
    // Hidden timing and the IETF fields contradict each other: a build error.
    assert!(RateLimitLayer::builder(per_minute(1))
        .retry_after(RetryAfter::Hidden)
        .ratelimit_headers(true)
        .build()
        .is_err());
}

#[tokio::test]
async fn issue_4_ratelimit_fields_after_a_burst_and_after_replenishment() {
    let clock = ManualClock::new();
    // 5/min: a cell every 12 s, burst 5, refilled in 60 s.
    let layer = layer_with_clock(per_minute(5), &clock)
        .ratelimit_headers(true)
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    let mut fields = Vec::new();
    for _ in 0..6 {
        let response = send(&mut service, request_from(CLIENT)).await;
        assert_eq!(
            header(response.headers(), "ratelimit-policy"),
            Some(r#""default";q=5;w=60"#)
        );
        fields.push((
            response.status().as_u16(),
            header(response.headers(), "ratelimit").unwrap().to_owned(),
            header(response.headers(), "retry-after").map(str::to_owned),
        ));
    }
    let expected: Vec<(u16, String, Option<String>)> = vec![
        (200, r#""default";r=4;t=12"#.into(), None),
        (200, r#""default";r=3;t=12"#.into(), None),
        (200, r#""default";r=2;t=12"#.into(), None),
        (200, r#""default";r=1;t=12"#.into(), None),
        (200, r#""default";r=0;t=12"#.into(), None),
        (429, r#""default";r=0;t=12"#.into(), Some("12".into())),
    ];
    assert_eq!(fields, expected);

    // 5 s later: the next cell is 7 s away; Retry-After is never earlier than t.
    clock.advance(Duration::from_secs(5));
    let denied = send(&mut service, request_from(CLIENT)).await;
    assert_eq!(
        header(denied.headers(), "ratelimit"),
        Some(r#""default";r=0;t=7"#)
    );
    assert_eq!(header(denied.headers(), "retry-after"), Some("7"));

    // 7 s later one cell came back: spent at once.
    clock.advance(Duration::from_secs(7));
    let allowed = send(&mut service, request_from(CLIENT)).await;
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(
        header(allowed.headers(), "ratelimit"),
        Some(r#""default";r=0;t=12"#)
    );

    // A minute later the bucket is full again.
    clock.advance(Duration::from_secs(60));
    let allowed = send(&mut service, request_from(CLIENT)).await;
    assert_eq!(
        header(allowed.headers(), "ratelimit"),
        Some(r#""default";r=4;t=12"#)
    );

    // Half-way through a cell: t counts to the next cell, not to a full bucket.
    clock.advance(Duration::from_secs(6));
    let allowed = send(&mut service, request_from(CLIENT)).await;
    assert_eq!(
        header(allowed.headers(), "ratelimit"),
        Some(r#""default";r=3;t=6"#)
    );
}

#[tokio::test]
async fn ratelimit_fields_use_the_policy_name_and_never_the_client_ip() {
    let clock = ManualClock::new();
    let layer = layer_with_clock(per_minute(100), &clock)
        .ratelimit_headers(true)
        .policy_name("api")
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    let response = send(&mut service, request_from(CLIENT)).await;
    assert_eq!(
        header(response.headers(), "ratelimit-policy"),
        Some(r#""api";q=100;w=60"#)
    );
    assert_eq!(
        header(response.headers(), "ratelimit"),
        Some(r#""api";r=99;t=1"#)
    );
    for value in response.headers().values() {
        assert!(!value.to_str().unwrap().contains("203.0.113"));
    }
    assert!(RateLimitLayer::builder(per_minute(1))
        .ratelimit_headers(true)
        .policy_name("bad\"name")
        .build()
        .is_err());
}

// ---------------------------------------------------------------------------------------------
// Cost.

#[tokio::test]
async fn issue_4_fixed_cost_10_with_burst_20_admits_exactly_2() {
    let clock = ManualClock::new();
    let quota = Quota::per_hour(nz(20));
    let layer = layer_with_clock(quota, &clock)
        .cost(nz(10))
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    let passed = count_passed(&mut service, (0..100).map(|_| request_from(CLIENT))).await;
    assert_eq!(passed, 2);
}

#[test]
fn issue_4_fixed_cost_above_the_burst_is_a_build_error() {
    let quota = Quota::per_hour(nz(20));
    let error = RateLimitLayer::builder(quota)
        .cost(nz(21))
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("burst"), "{error}");
    assert!(RateLimitLayer::builder(quota).cost(nz(20)).build().is_ok());
}

#[tokio::test]
async fn issue_4_computed_cost_above_the_burst_is_a_429_without_hints() {
    let clock = ManualClock::new();
    let layer = layer_with_clock(per_minute(20), &clock)
        .ratelimit_headers(true)
        .cost_fn(|request| match request.uri().path() {
            "/export" => 21,
            "/zero" => 0,
            _ => 1,
        })
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    for path in ["/export", "/zero"] {
        let mut request = request_from(CLIENT);
        *request.uri_mut() = path.parse().unwrap();
        let response = send(&mut service, request).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert!(response.headers().get("retry-after").is_none(), "{path}");
        assert!(response.headers().get("ratelimit").is_none(), "{path}");
        let limited = response.extensions().get::<RateLimited>().unwrap();
        assert_eq!(limited.retry_after(), None);
        assert_eq!(limited.retry_after_secs(), None);
    }
    // Nothing was charged: the cheap path still has its whole burst.
    let passed = count_passed(&mut service, (0..30).map(|_| request_from(CLIENT))).await;
    assert_eq!(passed, 20);
}

/// The default 429 is built in the denied request's header map and extensions (their
/// allocations reused): none of the request's headers or extensions may reach the response.
#[tokio::test]
async fn the_429_built_in_the_request_maps_carries_nothing_of_the_request() {
    #[derive(Debug, Clone, PartialEq)]
    struct RequestOnly(&'static str);

    let clock = ManualClock::new();
    let layer = layer_with_clock(per_minute(1), &clock).build().unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    let request = || {
        let mut request = request_from(CLIENT);
        let headers = request.headers_mut();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.1".parse().unwrap());
        headers.insert("authorization", "Bearer secret".parse().unwrap());
        headers.insert("content-type", "text/plain".parse().unwrap());
        headers.append("cookie", "a=1".parse().unwrap());
        headers.append("cookie", "b=2".parse().unwrap());
        request.extensions_mut().insert(RequestOnly("request"));
        request
    };
    assert_eq!(send(&mut service, request()).await.status(), StatusCode::OK);
    let response = send(&mut service, request()).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let names: Vec<&str> = response
        .headers()
        .keys()
        .map(|name| name.as_str())
        .collect();
    assert_eq!(names, ["content-type", "retry-after"]);
    assert_eq!(response.headers().len(), 2, "one value each");
    assert_eq!(
        header(response.headers(), "content-type"),
        Some("application/json")
    );
    assert_eq!(header(response.headers(), "retry-after"), Some("60"));
    let extensions = response.extensions();
    assert_eq!(extensions.len(), 1, "only RateLimited");
    assert!(extensions.get::<RateLimited>().is_some());
    assert!(extensions.get::<RequestOnly>().is_none());
    assert!(extensions.get::<ClientIp>().is_none());
}

// ---------------------------------------------------------------------------------------------
// Missing keys, report-only.

#[tokio::test]
async fn issue_4_missing_key_is_a_500_naming_the_missing_layer_by_default() {
    let mut service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(per_minute(5)))
        .service_fn(ok);
    let response = send(&mut service, Request::new(())).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        response.body().contains("ClientIpLayer"),
        "{}",
        response.body()
    );
}

#[tokio::test]
async fn issue_4_missing_key_allow_passes_unlimited() {
    let layer = RateLimitLayer::builder(per_minute(5))
        .on_missing_key(OnMissingKey::Allow)
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    let passed = count_passed(&mut service, (0..100).map(|_| Request::new(()))).await;
    assert_eq!(passed, 100);
    // Requests that do have a key are still limited.
    let passed = count_passed(&mut service, (0..100).map(|_| request_from(CLIENT))).await;
    assert_eq!(passed, 5);
}

/// Counts the rate-limit events by level, for the report-only and tracing tests.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(tracing::Level, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _context: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() != "tower_bouncer::rate_limit" {
            return;
        }
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={:?} ", field.name(), value));
            }
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields.0));
    }
}

/// Every rate-limit event of this test binary, from one global subscriber (a per-test
/// `set_default` races with the callsite interest cache when tests run in parallel). Each
/// tracing test uses its own client address and reads only its events.
fn captured() -> &'static Events {
    use tracing_subscriber::layer::SubscriberExt;
    static EVENTS: std::sync::OnceLock<Events> = std::sync::OnceLock::new();
    EVENTS.get_or_init(|| {
        let events = Events::default();
        let subscriber = tracing_subscriber::registry().with(events.clone());
        tracing::subscriber::set_global_default(subscriber).unwrap();
        events
    })
}

fn events_of(ip: IpAddr) -> Vec<(tracing::Level, String)> {
    let marker = format!("ip={ip} ");
    captured()
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, fields)| fields.contains(&marker))
        .cloned()
        .collect()
}

#[tokio::test]
async fn issue_4_report_only_passes_everything_but_reports() {
    captured();
    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    let clock = ManualClock::new();
    let layer = layer_with_clock(per_minute(5), &clock)
        .report_only(true)
        .ratelimit_headers(true)
        .build()
        .unwrap();
    assert!(layer.is_report_only());
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    let mut would_deny = 0;
    for _ in 0..100 {
        let response = send(&mut service, request_from(CLIENT)).await;
        assert_eq!(response.status(), StatusCode::OK);
        // No hint reaches the client of a limit that is not enforced.
        assert!(response.headers().get("retry-after").is_none());
        assert!(response.headers().get("ratelimit").is_none());
        if let Some(limited) = response.extensions().get::<RateLimited>() {
            assert!(limited.is_report_only());
            would_deny += 1;
        }
    }
    assert_eq!(would_deny, 95);
    let events = events_of(CLIENT);
    let denials = events
        .iter()
        .filter(|(level, fields)| {
            *level == tracing::Level::INFO && fields.contains("report_only=true")
        })
        .count();
    let allowed = events
        .iter()
        .filter(|(level, _)| *level == tracing::Level::DEBUG)
        .count();
    assert_eq!((allowed, denials), (5, 95), "{events:?}");
    // A missing key in report-only mode passes too.
    let response = send(&mut service, Request::new(())).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn one_tracing_event_per_decision_with_ip_key_route_and_cost() {
    captured();
    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2));
    let clock = ManualClock::new();
    let layer = layer_with_clock(per_minute(1), &clock).build().unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    let mut request = request_from(CLIENT);
    *request.uri_mut() = "/search?q=1".parse().unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", "6.6.6.6, 7.7.7.7".parse().unwrap());
    send(&mut service, request).await;
    send(&mut service, request_from(CLIENT)).await;
    let events = events_of(CLIENT);
    assert_eq!(events.len(), 2, "{events:?}");
    let (level, fields) = &events[0];
    assert_eq!(*level, tracing::Level::DEBUG);
    for expected in [
        "ip=198.51.100.2",
        "key=198.51.100.2",
        "route=\"/search\"",
        "cost=1",
    ] {
        assert!(fields.contains(expected), "{expected} in {fields}");
    }
    assert!(
        !fields.contains("6.6.6.6"),
        "never the raw header chain: {fields}"
    );
    assert_eq!(events[1].0, tracing::Level::INFO);
    assert!(
        events[1].1.contains("retry_after_secs=60"),
        "{}",
        events[1].1
    );
}

// ---------------------------------------------------------------------------------------------
// Keys through the layer.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct UserId(u32);

#[tokio::test]
async fn identity_key_with_ip_fallback_keeps_separate_budgets() {
    let key = ExtensionKey::<UserId>::new().or(IpKey::new());
    let layer = RateLimitLayer::builder(per_minute(3))
        .key(key)
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    let signed_in = |user: u32| {
        let mut request = request_from(CLIENT);
        request.extensions_mut().insert(UserId(user));
        request
    };
    // Two users behind one address, and the anonymous traffic of that address: 3 buckets.
    assert_eq!(
        count_passed(&mut service, (0..10).map(|_| signed_in(1))).await,
        3
    );
    assert_eq!(
        count_passed(&mut service, (0..10).map(|_| signed_in(2))).await,
        3
    );
    assert_eq!(
        count_passed(&mut service, (0..10).map(|_| request_from(CLIENT))).await,
        3
    );
}

#[tokio::test]
async fn scoped_keys_share_buckets_only_within_a_scope() {
    let store = MemoryStore::new();
    let quota = per_minute(3);
    let build = |scope: &'static str| {
        RateLimitLayer::builder(quota)
            .key(IpKey::new().scoped(scope))
            .store(store.clone())
            .build()
            .unwrap()
    };
    let mut login = ServiceBuilder::new().layer(build("auth")).service_fn(ok);
    let mut reset = ServiceBuilder::new().layer(build("auth")).service_fn(ok);
    let mut search = ServiceBuilder::new().layer(build("search")).service_fn(ok);
    assert_eq!(
        count_passed(&mut login, (0..2).map(|_| request_from(CLIENT))).await,
        2
    );
    // The same scope on another route: one budget, 1 left.
    assert_eq!(
        count_passed(&mut reset, (0..5).map(|_| request_from(CLIENT))).await,
        1
    );
    // Another scope: its own budget.
    assert_eq!(
        count_passed(&mut search, (0..5).map(|_| request_from(CLIENT))).await,
        3
    );
}

#[tokio::test]
async fn global_key_is_one_bucket_for_everyone() {
    let layer = RateLimitLayer::builder(per_minute(4))
        .key(GlobalKey)
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    let requests = (0..50u32).map(|i| request_from(IpAddr::V4(Ipv4Addr::from(i))));
    assert_eq!(count_passed(&mut service, requests).await, 4);
}

// ---------------------------------------------------------------------------------------------
// Custom deny response.

#[tokio::test]
async fn custom_deny_response_gets_retry_after_and_the_extension() {
    let clock = ManualClock::new();
    let layer = layer_with_clock(per_minute(1), &clock)
        .deny_response(|limited: &RateLimited| {
            let mut response = Response::new("slow down");
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response
                .headers_mut()
                .insert("x-cost", limited.cost().to_string().parse().unwrap());
            response
        })
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    send(&mut service, request_from(CLIENT)).await;
    let denied = send(&mut service, request_from(CLIENT)).await;
    assert_eq!(denied.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(*denied.body(), "slow down");
    assert_eq!(header(denied.headers(), "x-cost"), Some("1"));
    assert_eq!(header(denied.headers(), "retry-after"), Some("60"));
    assert!(denied.extensions().get::<RateLimited>().is_some());
}

// ---------------------------------------------------------------------------------------------
// Concurrency.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_4_concurrent_tasks_on_one_key_admit_exactly_the_burst() {
    let clock = ManualClock::new(); // frozen: nothing replenishes during the test
    let layer = layer_with_clock(Quota::per_hour(nz(100)), &clock)
        .build()
        .unwrap();
    let service = ServiceBuilder::new().layer(layer).service_fn(ok);
    let passed = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let mut service = service.clone();
            let passed = Arc::clone(&passed);
            tokio::spawn(async move {
                for _ in 0..50 {
                    let response = send(&mut service, request_from(CLIENT)).await;
                    if response.status() == StatusCode::OK {
                        passed.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(passed.load(Ordering::Relaxed), 100);
}

// ---------------------------------------------------------------------------------------------
// A store that does not decide synchronously (the path a network store takes), and a store
// that fails.

/// The memory store's decision, delivered after one `Pending`.
#[derive(Debug, Clone)]
struct SlowStore {
    inner: MemoryStore<MaskedIp>,
    fail: bool,
}

struct Later {
    result: Option<Result<Decision, StoreError>>,
    yielded: bool,
}

impl Future for Later {
    type Output = Result<Decision, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.yielded {
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(self.result.take().expect("polled after completion"))
    }
}

impl Store<MaskedIp> for SlowStore {
    type Future = Later;

    fn check(&self, key: &MaskedIp, windows: &[Quota], cost: NonZeroU32) -> Later {
        let result = if self.fail {
            Err(StoreError::new(
                tower_bouncer::store::StoreErrorKind::Unavailable,
            ))
        } else {
            self.inner.check(key, windows, cost).into_inner()
        };
        Later {
            result: Some(result),
            yielded: false,
        }
    }
}

#[tokio::test]
async fn a_store_that_answers_later_decides_the_same() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = {
        let calls = Arc::clone(&calls);
        service_fn(move |_request: Request<()>| {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Ok::<_, Infallible>(Response::new("ok".to_owned())) }
        })
    };
    let store = SlowStore {
        inner: MemoryStore::new(),
        fail: false,
    };
    let layer = RateLimitLayer::builder(per_minute(5))
        .store(store)
        .ratelimit_headers(true)
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service(counted);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let response = send(&mut service, request_from(CLIENT)).await;
        statuses.push(response.status().as_u16());
        if response.status() == StatusCode::OK {
            assert!(response.headers().get("ratelimit").is_some());
        } else {
            assert_eq!(header(response.headers(), "retry-after"), Some("12"));
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    assert_eq!(calls.load(Ordering::Relaxed), 5);
}

#[tokio::test]
async fn a_failing_store_is_a_503_or_passes_in_report_only() {
    let store = SlowStore {
        inner: MemoryStore::new(),
        fail: true,
    };
    let enforcing = RateLimitLayer::builder(per_minute(5))
        .store(store.clone())
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new().layer(enforcing).service_fn(ok);
    let response = send(&mut service, request_from(CLIENT)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        header(response.headers(), "content-type"),
        Some("application/json")
    );

    let reporting = RateLimitLayer::builder(per_minute(5))
        .store(store)
        .report_only(true)
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new().layer(reporting).service_fn(ok);
    assert_eq!(
        send(&mut service, request_from(CLIENT)).await.status(),
        StatusCode::OK
    );
}

/// A store that says every request can never pass (as a store may for a cost above the
/// burst).
#[derive(Debug)]
struct NeverStore;

impl Store<MaskedIp> for NeverStore {
    type Future = std::future::Ready<Result<Decision, StoreError>>;

    fn check(&self, _key: &MaskedIp, _windows: &[Quota], _cost: NonZeroU32) -> Self::Future {
        std::future::ready(Ok(Decision::denied_forever()))
    }
}

#[tokio::test]
async fn a_store_denial_without_a_wait_has_no_retry_hint() {
    let layer = RateLimitLayer::builder(per_minute(5))
        .store(NeverStore)
        .ratelimit_headers(true)
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    let response = send(&mut service, request_from(CLIENT)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_none());
    assert!(response.headers().get("ratelimit").is_none());
    assert_eq!(
        response
            .extensions()
            .get::<RateLimited>()
            .unwrap()
            .retry_after(),
        None
    );
}

// ---------------------------------------------------------------------------------------------
// Types.

fn assert_clone_send_sync_static<T: Clone + Send + Sync + 'static>() {}
fn assert_send_sync_static<T: Send + Sync + 'static>() {}

type Inner = tower::util::ServiceFn<
    fn(Request<()>) -> std::future::Ready<Result<Response<Body>, Infallible>>,
>;

#[test]
fn layers_services_and_futures_are_send_sync_static() {
    type Layer = RateLimitLayer<IpKey, MemoryStore<MaskedIp>>;
    type Service = RateLimit<Inner, IpKey, MemoryStore<MaskedIp>>;
    assert_clone_send_sync_static::<Layer>();
    assert_clone_send_sync_static::<Service>();
    assert_clone_send_sync_static::<RateLimit<Inner, (ExtensionKey<UserId>, GlobalKey), SlowStore>>(
    );
    // A future owns the inner service's in-flight future: it is Send + Sync + 'static but
    // cannot be Clone (no future that has started can be).
    assert_send_sync_static::<<Service as tower::Service<Request<()>>>::Future>();
    assert_send_sync_static::<ResponseFuture<Inner, Later, MaskedIp, &'static str, ()>>();
    assert_clone_send_sync_static::<RateLimited>();
}

#[test]
fn ip_key_value_is_16_bytes() {
    assert_eq!(std::mem::size_of::<MaskedIp>(), 16);
    assert!(std::mem::align_of::<MaskedIp>() <= 8);
    let key = IpKey::new();
    let request = request_from(CLIENT);
    let view = tower_bouncer::client_ip::RequestView::new(&request);
    assert_eq!(key.extract_key(&view).unwrap().to_string(), "203.0.113.7");
}

#[test]
fn debug_output_names_the_configuration() {
    let layer = RateLimitLayer::builder(per_minute(5))
        .key(IpKey::new().ipv6_prefix(56).unwrap())
        .report_only(true)
        .build()
        .unwrap();
    let debug = format!("{layer:?}");
    for expected in ["RateLimitLayer", "ipv6_prefix: 56", "report_only: true"] {
        assert!(debug.contains(expected), "{expected} in {debug}");
    }
}

// ---------------------------------------------------------------------------------------------
// The whole stack: ClientIpLayer in front of RateLimitLayer (issue 4: "1,000 requests with a
// rotated X-Forwarded-For through a trusted proxy address, quota 5/min: exactly 5 pass").

mod stack {
    use super::*;
    use std::net::SocketAddr;
    use tower_bouncer::client_ip::{
        OnUnresolved, PeerAddr, SocketPeer, TrustedRanges, XForwardedFor,
    };
    use tower_bouncer::ClientIpLayer;

    const PROXY: &str = "10.0.0.2:41000";
    const ATTACKER: &str = "203.0.113.7:50000";

    fn request(peer: &str, forwarded_for: &str) -> Request<()> {
        let peer: SocketAddr = peer.parse().unwrap();
        Request::builder()
            .uri("/api")
            .header("x-forwarded-for", forwarded_for)
            .extension(PeerAddr(peer))
            .body(())
            .unwrap()
    }

    fn random_ip(random: &mut Lcg) -> String {
        let bits = random.next();
        if bits.is_multiple_of(2) {
            Ipv4Addr::from(bits as u32).to_string()
        } else {
            Ipv6Addr::from(u128::from(bits) << 64 | u128::from(bits)).to_string()
        }
    }

    fn stack(
        client_ip: ClientIpLayer,
    ) -> impl Service<Request<()>, Response = Response<Body>, Error = Infallible> {
        ServiceBuilder::new()
            .layer(client_ip)
            .layer(RateLimitLayer::new(per_minute(5)))
            .service_fn(ok)
    }

    fn trusted_xff() -> ClientIpLayer {
        ClientIpLayer::new(XForwardedFor::rightmost_untrusted(TrustedRanges::private()))
    }

    #[tokio::test]
    async fn issue_4_rotated_xff_through_a_trusted_proxy_lets_exactly_5_pass() {
        let mut service = stack(trusted_xff());
        let mut random = Lcg(42);
        // The attacker sends a new random X-Forwarded-For each time; the proxy appends the
        // address it saw, which is the attacker's.
        let requests: Vec<_> = (0..1000)
            .map(|_| request(PROXY, &format!("{}, 203.0.113.7", random_ip(&mut random))))
            .collect();
        assert_eq!(count_passed(&mut service, requests).await, 5);
    }

    #[tokio::test]
    async fn issue_4_rotated_xff_from_an_untrusted_peer_lets_exactly_5_pass() {
        let mut random = Lcg(43);
        // The header is not read from an untrusted peer; the peer is used instead.
        let mut fallback = stack(trusted_xff().on_unresolved(OnUnresolved::FallbackToPeer));
        let requests: Vec<_> = (0..1000)
            .map(|_| request(ATTACKER, &random_ip(&mut random)))
            .collect();
        assert_eq!(count_passed(&mut fallback, requests).await, 5);

        // The same with the socket peer as the only source.
        let mut peer_only = stack(ClientIpLayer::new(SocketPeer::new()));
        let requests: Vec<_> = (0..1000)
            .map(|_| request(ATTACKER, &random_ip(&mut random)))
            .collect();
        assert_eq!(count_passed(&mut peer_only, requests).await, 5);

        // A forged trusted-looking tail changes nothing either.
        let mut fallback = stack(trusted_xff().on_unresolved(OnUnresolved::FallbackToPeer));
        let requests: Vec<_> = (0..1000)
            .map(|_| request(ATTACKER, &format!("{}, 10.0.0.9", random_ip(&mut random))))
            .collect();
        assert_eq!(count_passed(&mut fallback, requests).await, 5);
    }

    #[tokio::test]
    async fn issue_4_two_clients_behind_one_trusted_proxy_get_separate_buckets() {
        let mut service = stack(trusted_xff());
        let mut passed = [0; 2];
        for i in 0..1000 {
            let client = ["203.0.113.7", "2001:db8:7::1"][i % 2];
            let response = send(&mut service, request(PROXY, client)).await;
            if response.status() == StatusCode::OK {
                passed[i % 2] += 1;
            }
        }
        assert_eq!(passed, [5, 5]);
    }

    #[tokio::test]
    async fn the_proxy_itself_is_never_the_key() {
        // Without trusting the proxy, everyone behind it shares the proxy's bucket — the
        // "wrong IP" story. With the ranges configured, they do not (the test above).
        let mut service = stack(ClientIpLayer::new(SocketPeer::new()));
        let requests: Vec<_> = (0..100u32)
            .map(|i| request(PROXY, &Ipv4Addr::from(0xcb00_7100 + i).to_string()))
            .collect();
        assert_eq!(count_passed(&mut service, requests).await, 5);
    }
}

// ---------------------------------------------------------------------------------------------
// Properties over random sequences.

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Through the layer, GCRA never admits more cells than burst + elapsed / period, and
        /// a client that waits exactly `Retry-After` seconds is then admitted (the header is
        /// never too early).
        #[test]
        fn admitted_cells_are_bounded_and_retry_after_is_never_early(
            per_hour in 1u32..400,
            burst in 1u32..20,
            steps in proptest::collection::vec((0u64..30_000, 1u32..25), 1..120),
        ) {
            runtime().block_on(async move {
                let clock = ManualClock::new();
                let quota = Quota::per_hour(nz(per_hour)).allow_burst(nz(burst));
                let layer = layer_with_clock(quota, &clock)
                    .cost_fn(|request| request.uri().path()[1..].parse().unwrap_or(1))
                    .build()
                    .unwrap();
                let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
                let request = |cost: u32| {
                    let mut request = request_from(CLIENT);
                    *request.uri_mut() = format!("/{cost}").parse().unwrap();
                    request
                };
                let mut elapsed = Duration::ZERO;
                let mut admitted = 0u64;
                for (advance_ms, cost) in steps {
                    let advance = Duration::from_millis(advance_ms);
                    clock.advance(advance);
                    elapsed += advance;
                    let response = send(&mut service, request(cost)).await;
                    if response.status() == StatusCode::OK {
                        admitted += u64::from(cost);
                    } else if let Some(seconds) = header(response.headers(), "retry-after") {
                        assert!(cost <= burst);
                        let seconds: u64 = seconds.parse().unwrap();
                        assert!(seconds >= 1);
                        clock.advance(Duration::from_secs(seconds));
                        elapsed += Duration::from_secs(seconds);
                        let retried = send(&mut service, request(cost)).await;
                        assert_eq!(retried.status(), StatusCode::OK, "retry after {seconds} s");
                        admitted += u64::from(cost);
                    } else {
                        // No hint: only for a cost that can never fit.
                        assert!(cost > burst);
                    }
                    let period = quota.replenish_interval().as_nanos();
                    let bound = u64::from(burst) + (elapsed.as_nanos() / period) as u64;
                    assert!(admitted <= bound, "{admitted} cells admitted, bound {bound}");
                }
            });
        }
    }
}

/// The default 429 is built in the denied request's own header map and extensions (it spares
/// their allocations): nothing of the request may show through — not its headers (a client's
/// cookie or forwarding chain), not its extensions.
#[tokio::test]
async fn default_denial_carries_nothing_of_the_request() {
    let clock = ManualClock::new();
    let mut service = ServiceBuilder::new()
        .layer(layer_with_clock(per_minute(1), &clock).build().unwrap())
        .service_fn(ok);
    let request = |ip: IpAddr| {
        let mut request = request_from(ip);
        let headers = request.headers_mut();
        for (name, value) in [
            ("cookie", "session=secret"),
            ("x-forwarded-for", "6.6.6.6, 203.0.113.7"),
            ("retry-after", "0"),
            ("content-type", "text/html"),
        ] {
            headers.insert(name, value.parse().unwrap());
        }
        request.extensions_mut().insert("a request extension");
        request
    };
    assert_eq!(
        send(&mut service, request(CLIENT)).await.status(),
        StatusCode::OK
    );
    let denied = send(&mut service, request(CLIENT)).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    let mut names: Vec<&str> = denied.headers().keys().map(|name| name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["content-type", "retry-after"]);
    assert_eq!(
        header(denied.headers(), "content-type"),
        Some("application/json")
    );
    assert_eq!(header(denied.headers(), "retry-after"), Some("60"));
    assert_eq!(denied.headers().len(), 2, "one value per header");
    assert!(denied.extensions().get::<RateLimited>().is_some());
    assert!(denied.extensions().get::<&str>().is_none());
    assert!(denied.extensions().get::<ClientIp>().is_none());
    assert_eq!(denied.body(), "{\"error\":\"rate limited\"}");
}
