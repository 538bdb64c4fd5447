//! Issue 8, item 4: charge by outcome. A login endpoint limited on failed attempts only:
//! checked before the call, charged after a 401/403.
#![cfg(feature = "memory")]

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_bouncer::client_ip::{ClientIp, SourceKind};
use tower_bouncer::rate_limit::{IpKey, MaskedIp, Quota, RateLimitLayer};
use tower_bouncer::store::{Decision, ManualClock, MemoryStore, Store, StoreError};

const RIGHT: &str = "hunter2";

/// The login handler: 200 for the right password, 401 otherwise.
async fn login(request: Request<&'static str>) -> Result<Response<&'static str>, Infallible> {
    let mut response = Response::new("");
    if *request.body() != RIGHT {
        *response.status_mut() = StatusCode::UNAUTHORIZED;
    }
    Ok(response)
}

fn attempt(ip: IpAddr, password: &'static str) -> Request<&'static str> {
    let mut request = Request::new(password);
    request
        .extensions_mut()
        .insert(ClientIp::new(ip, SourceKind::Peer));
    request
}

fn attacker() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 66))
}

/// Burst 5, one failed attempt back every 60 s.
fn quota() -> Quota {
    Quota::with_period(Duration::from_secs(60))
        .unwrap()
        .allow_burst(NonZeroU32::new(5).unwrap())
}

fn failed_logins(store: MemoryStore<MaskedIp>) -> RateLimitLayer<IpKey, MemoryStore<MaskedIp>> {
    RateLimitLayer::builder(quota())
        .store(store)
        .charge_when(|status: StatusCode| {
            status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
        })
        .build()
        .unwrap()
}

async fn status<S>(service: &mut S, request: Request<&'static str>) -> StatusCode
where
    S: Service<Request<&'static str>, Response = Response<&'static str>, Error = Infallible>,
{
    service
        .ready()
        .await
        .unwrap()
        .call(request)
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn issue_8_brute_force_login_loop_is_stopped_after_burst_failures() {
    let clock = ManualClock::new();
    let store = MemoryStore::builder().clock(clock.clone()).build();
    let mut service = ServiceBuilder::new()
        .layer(failed_logins(store.clone()))
        .service(service_fn(login));

    // The brute-force loop: five wrong passwords are answered (401) and charged…
    for guess in ["123456", "password", "qwerty", "letmein", "dragon"] {
        assert_eq!(
            status(&mut service, attempt(attacker(), guess)).await,
            StatusCode::UNAUTHORIZED
        );
    }
    // …then every attempt is 429 — even the right password — and the handler is not called.
    for guess in ["monkey", RIGHT, "shadow", RIGHT] {
        assert_eq!(
            status(&mut service, attempt(attacker(), guess)).await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    // 429s are not charged: after one period, one attempt is back.
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        status(&mut service, attempt(attacker(), RIGHT)).await,
        StatusCode::OK
    );
    // The success cost nothing: the cell is still there for one more failure…
    assert_eq!(
        status(&mut service, attempt(attacker(), "abc123")).await,
        StatusCode::UNAUTHORIZED
    );
    // …and that failure spent it.
    assert_eq!(
        status(&mut service, attempt(attacker(), RIGHT)).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn issue_8_successful_logins_cost_nothing() {
    let clock = ManualClock::new();
    let store = MemoryStore::builder().clock(clock.clone()).build();
    let mut service = ServiceBuilder::new()
        .layer(failed_logins(store.clone()))
        .service(service_fn(login));
    let user = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    for _ in 0..100 {
        assert_eq!(
            status(&mut service, attempt(user, RIGHT)).await,
            StatusCode::OK
        );
    }
    // Nothing was ever charged: the key is not even tracked.
    assert!(store.is_empty());
    // Four typos still leave a fifth attempt.
    for _ in 0..4 {
        assert_eq!(
            status(&mut service, attempt(user, "typo")).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        status(&mut service, attempt(user, RIGHT)).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn memory_store_preview_changes_nothing() {
    let clock = ManualClock::new();
    let store: MemoryStore<u32> = MemoryStore::builder().clock(clock.clone()).build();
    let one = NonZeroU32::MIN;
    let peeked = Store::preview(&store, &7, &[quota()], one)
        .unwrap()
        .await
        .unwrap();
    assert!(peeked.is_allowed());
    assert_eq!(peeked.remaining(), 5);
    assert!(store.is_empty());
    for _ in 0..5 {
        assert!(store.check(&7, &[quota()], one).await.unwrap().is_allowed());
    }
    let tat = store.theoretical_arrival_time(&7);
    let peeked = Store::preview(&store, &7, &[quota()], one)
        .unwrap()
        .await
        .unwrap();
    assert!(!peeked.is_allowed());
    assert_eq!(peeked.retry_after(), Some(Duration::from_secs(60)));
    assert_eq!(store.theoretical_arrival_time(&7), tat);
}

/// A store that cannot preview: charge by outcome answers the store-failure 503, never an
/// uncounted pass.
#[derive(Debug, Clone)]
struct NoPreview;

impl Store<MaskedIp> for NoPreview {
    type Future = std::future::Ready<Result<Decision, StoreError>>;

    fn check(&self, _key: &MaskedIp, _windows: &[Quota], _cost: NonZeroU32) -> Self::Future {
        std::future::ready(Ok(Decision::admitted()))
    }
}

#[tokio::test]
async fn charge_by_outcome_with_a_store_that_cannot_preview_fails_closed() {
    let layer = RateLimitLayer::builder(quota())
        .store(NoPreview)
        .charge_when(|status: StatusCode| status == StatusCode::UNAUTHORIZED)
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(login));
    let response = service.oneshot(attempt(attacker(), RIGHT)).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}
