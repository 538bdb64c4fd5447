//! Policies (issue 9, "What it must show"): several windows on one key without
//! double-charging, per-tier quotas, route costs — through the memory store and the layer,
//! with a manual clock (no real sleeps).
#![cfg(feature = "memory")]

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bouncer::client_ip::{ClientIp, SourceKind};
use tower_bouncer::rate_limit::{
    ExtensionKey, Policy, Quota, RateLimitLayer, RateLimited, TierKey, Tiers,
};
use tower_bouncer::store::{Decision, ManualClock, MemoryStore, Store, MAX_WINDOWS};

type Body = String;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn quota(text: &str) -> Quota {
    text.parse().unwrap()
}

fn manual<K>(clock: &ManualClock) -> MemoryStore<K>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    MemoryStore::builder()
        .clock(clock.clone())
        .manual_housekeeping()
        .build()
}

fn check(store: &MemoryStore<u64>, windows: &[Quota], cost: u32) -> Decision {
    store.check(&1, windows, nz(cost)).into_inner().unwrap()
}

/// Checks once; on a denial, asserts that no window changed (read back).
fn check_and_verify(store: &MemoryStore<u64>, windows: &[Quota], cost: u32) -> Decision {
    let before = store.theoretical_arrival_times(&1);
    let decision = check(store, windows, cost);
    if !decision.is_allowed() {
        assert_eq!(
            store.theoretical_arrival_times(&1),
            before,
            "a denial changed a window"
        );
    }
    decision
}

#[test]
fn issue_9_two_windows_3_per_second_and_5_per_minute() {
    let clock = ManualClock::new();
    let store = manual(&clock);
    let windows = [quota("3/s"), quota("5/min")];

    // A burst admits exactly 3 (the per-second window).
    let burst: Vec<bool> = (0..10)
        .map(|_| check_and_verify(&store, &windows, 1).is_allowed())
        .collect();
    assert_eq!(burst.iter().filter(|&&allowed| allowed).count(), 3);
    assert!(burst[..3].iter().all(|&allowed| allowed));
    // The per-minute window kept its 2 other cells: the 7 denials charged nothing there.
    let tats = store.theoretical_arrival_times(&1).unwrap();
    assert_eq!(tats[1], Duration::from_secs(36)); // 3 cells × 12 s

    // After 1 s exactly 2 more (what the minute window has left).
    clock.advance(Duration::from_secs(1));
    let more = (0..10)
        .filter(|_| check_and_verify(&store, &windows, 1).is_allowed())
        .count();
    assert_eq!(more, 2);

    // Then denied until the minute window frees a cell: 5 cells spent by 1 s put its TAT at
    // 60 s, and a cell fits again at 60 − 48 = 12 s. Retry-After is the minute window's wait
    // (the longest), not the second window's.
    for second in 2..12 {
        clock.advance(Duration::from_secs(1));
        let denied = check_and_verify(&store, &windows, 1);
        assert!(!denied.is_allowed(), "at {second} s");
        assert_eq!(
            denied.retry_after(),
            Some(Duration::from_secs(12 - second)),
            "at {second} s"
        );
        assert_eq!(denied.remaining(), 0);
        // The per-second window is full; the per-minute one is not.
        assert_eq!(denied.window_full_after(0), Some(Duration::ZERO));
        assert_eq!(
            denied.window_full_after(1),
            Some(Duration::from_secs(60 - second))
        );
    }
    clock.advance(Duration::from_secs(1));
    assert!(check_and_verify(&store, &windows, 1).is_allowed());
    assert!(!check_and_verify(&store, &windows, 1).is_allowed());
}

#[test]
fn issue_9_a_denial_by_one_window_charges_no_other_window() {
    // The pitfall of stacked limiters (governor #156): the first window would allow, the
    // second denies — the first must not lose a cell.
    let clock = ManualClock::new();
    let store = manual(&clock);
    let windows = [quota("100/s"), quota("1/h")];
    assert!(check(&store, &windows, 1).is_allowed());
    let before = store.theoretical_arrival_times(&1).unwrap();
    for _ in 0..1_000 {
        assert!(!check_and_verify(&store, &windows, 1).is_allowed());
    }
    assert_eq!(store.theoretical_arrival_times(&1).unwrap(), before);
    // A cost above the smallest burst never passes, and changes nothing either.
    let never = check_and_verify(&store, &windows, 2);
    assert!(!never.is_allowed());
    assert_eq!(never.retry_after(), None);
}

#[test]
fn issue_9_store_rejects_zero_or_too_many_windows() {
    let store: MemoryStore<u64> = manual(&ManualClock::new());
    let five = [quota("1/s"); MAX_WINDOWS + 1];
    assert!(store.check(&1, &[], nz(1)).into_inner().is_err());
    assert!(store.check(&1, &five, nz(1)).into_inner().is_err());
    assert!(store
        .check(&1, &five[..MAX_WINDOWS], nz(1))
        .into_inner()
        .unwrap()
        .is_allowed());
}

#[test]
fn issue_9_one_window_and_several_windows_keep_separate_states() {
    let clock = ManualClock::new();
    let store = manual(&clock);
    let one = [quota("1/min")];
    assert!(check(&store, &one, 1).is_allowed());
    assert!(check(&store, &[quota("1/min"), quota("10/h")], 1).is_allowed());
    assert!(store.theoretical_arrival_time(&1).is_some());
    assert!(store.theoretical_arrival_times(&1).is_some());
    assert_eq!(store.len(), 2);
}

#[test]
fn issue_9_housekeeping_forgets_a_multi_window_key_when_its_last_window_is_full() {
    let clock = ManualClock::new();
    let store = manual(&clock);
    let windows = [quota("1/s"), quota("1/min")];
    assert!(check(&store, &windows, 1).is_allowed());
    clock.advance(Duration::from_secs(30));
    // The per-second window is full again, the per-minute one not: the key stays.
    assert_eq!(store.housekeep(), 0);
    assert!(!check(&store, &windows, 1).is_allowed());
    clock.advance(Duration::from_secs(30));
    assert_eq!(store.housekeep(), 1);
    assert!(store.is_empty());
    assert!(check(&store, &windows, 1).is_allowed());
}

#[test]
fn issue_9_threads_on_one_key_with_two_windows_admit_exactly_the_smaller_allowance() {
    for (windows, allowance) in [
        ([quota("10/s"), quota("7/min")], 7),
        ([quota("7/min"), quota("10/s")], 7),
        ([quota("40/s"), quota("1000/h")], 40),
    ] {
        let clock = ManualClock::new();
        let store = manual(&clock);
        let admitted = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..64)
            .map(|_| {
                let store = store.clone();
                let admitted = Arc::clone(&admitted);
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        if check(&store, &windows, 1).is_allowed() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(admitted.load(Ordering::Relaxed), allowance);
        // Every admitted cell was charged to both windows, and nothing else was.
        let tats = store.theoretical_arrival_times(&1).unwrap();
        for (index, window) in windows.iter().enumerate() {
            assert_eq!(tats[index], window.replenish_interval() * allowance as u32);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Through the layer

async fn ok(_request: Request<()>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new("ok".into()))
}

fn from_ip(last: u8) -> Request<()> {
    Request::builder()
        .uri("/")
        .extension(ClientIp::new([203, 0, 113, last].into(), SourceKind::Peer))
        .body(())
        .unwrap()
}

async fn send<S>(service: &mut S, request: Request<()>) -> Response<Body>
where
    S: Service<Request<()>, Response = Response<Body>, Error = Infallible>,
{
    service.ready().await.unwrap().call(request).await.unwrap()
}

fn header(response: &Response<Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_9_64_tasks_on_one_key_through_the_layer_admit_the_smaller_allowance() {
    let clock = ManualClock::new();
    let layer = RateLimitLayer::builder(quota("20/s"))
        .and_quota("per-minute", quota("9/min"))
        .store(manual(&clock))
        .build()
        .unwrap();
    let service = ServiceBuilder::new().layer(layer).service_fn(ok);
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move {
                let mut passed = 0;
                for _ in 0..20 {
                    let response = service.clone().oneshot(from_ip(1)).await.unwrap();
                    if response.status() == StatusCode::OK {
                        passed += 1;
                    }
                }
                passed
            })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        passed += task.await.unwrap();
    }
    assert_eq!(passed, 9);
}

#[tokio::test]
async fn issue_9_layer_retry_after_is_the_longest_wait_and_fields_list_every_policy() {
    let clock = ManualClock::new();
    let policy = Policy::builder()
        .window("per-second", quota("3/s"))
        .window("per-minute", quota("5/min"))
        .build()
        .unwrap();
    let layer = RateLimitLayer::with_policy(policy)
        .ratelimit_headers(true)
        .store(manual(&clock))
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);

    let first = send(&mut service, from_ip(1)).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        header(&first, "ratelimit-policy").unwrap(),
        r#""per-second";q=3;w=1, "per-minute";q=5;w=60"#
    );
    assert_eq!(
        header(&first, "ratelimit").unwrap(),
        r#""per-second";r=2;t=1, "per-minute";r=4;t=12"#
    );
    for _ in 0..2 {
        assert_eq!(
            send(&mut service, from_ip(1)).await.status(),
            StatusCode::OK
        );
    }
    // Denied by the second window only: Retry-After is its wait (1 s).
    let denied = send(&mut service, from_ip(1)).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&denied, "retry-after").unwrap(), "1");
    assert_eq!(
        header(&denied, "ratelimit").unwrap(),
        r#""per-second";r=0;t=1, "per-minute";r=2;t=12"#
    );
    let limited = denied.extensions().get::<RateLimited>().unwrap();
    assert_eq!(limited.quota(), quota("3/s"));

    // 1 s later: 2 pass, then the minute window denies, for 11 s.
    clock.advance(Duration::from_secs(1));
    for _ in 0..2 {
        assert_eq!(
            send(&mut service, from_ip(1)).await.status(),
            StatusCode::OK
        );
    }
    let denied = send(&mut service, from_ip(1)).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&denied, "retry-after").unwrap(), "11");
    assert_eq!(
        header(&denied, "ratelimit").unwrap(),
        r#""per-second";r=1;t=1, "per-minute";r=0;t=11"#
    );
    let limited = denied.extensions().get::<RateLimited>().unwrap();
    assert_eq!(limited.quota(), quota("5/min"));
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(11)));

    // Another client is not affected.
    assert_eq!(
        send(&mut service, from_ip(2)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn issue_9_single_window_layers_answer_as_before() {
    // `new` and `builder(quota)` keep their one "default" policy and their fields.
    let clock = ManualClock::new();
    let layer = RateLimitLayer::builder(quota("2/min"))
        .ratelimit_headers(true)
        .store(manual(&clock))
        .build()
        .unwrap();
    assert_eq!(layer.policy().window_count(), 1);
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    let first = send(&mut service, from_ip(1)).await;
    assert_eq!(
        header(&first, "ratelimit").unwrap(),
        r#""default";r=1;t=30"#
    );
    send(&mut service, from_ip(1)).await;
    let denied = send(&mut service, from_ip(1)).await;
    assert_eq!(
        header(&denied, "ratelimit").unwrap(),
        r#""default";r=0;t=30"#
    );
    assert_eq!(header(&denied, "retry-after").unwrap(), "30");
}

#[test]
fn issue_9_layer_build_errors() {
    // A fixed cost above the smallest burst of any window.
    let error = RateLimitLayer::builder(quota("10/s"))
        .and_quota("per-hour", quota("5/h"))
        .cost(nz(6))
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("burst"), "{error}");
    // Two windows with one name.
    let error = RateLimitLayer::builder(quota("10/s"))
        .and_quota("default", quota("5/h"))
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("same name"), "{error}");
    // Five windows.
    let mut builder = RateLimitLayer::builder(quota("10/s"));
    for name in ["a", "b", "c", "d"] {
        builder = builder.and_quota(name, quota("5/h"));
    }
    assert!(builder.build().is_err());
}

// ---------------------------------------------------------------------------------------------
// Tiers

/// Set by the authentication layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Plan {
    Free,
    Paid,
    Enterprise,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AccountId(u64);

fn from_account(account: u64, plan: Option<Plan>) -> Request<()> {
    let mut request = Request::builder()
        .uri("/")
        .extension(AccountId(account))
        .body(())
        .unwrap();
    if let Some(plan) = plan {
        request.extensions_mut().insert(plan);
    }
    request
}

async fn passed<S>(service: &mut S, account: u64, plan: Option<Plan>, tries: usize) -> usize
where
    S: Service<Request<()>, Response = Response<Body>, Error = Infallible>,
{
    let mut passed = 0;
    for _ in 0..tries {
        if send(service, from_account(account, plan)).await.status() == StatusCode::OK {
            passed += 1;
        }
    }
    passed
}

#[tokio::test]
async fn issue_9_tiers_free_and_paid_get_their_own_quotas_unknown_gets_the_default() {
    let clock = ManualClock::new();
    let store: MemoryStore<TierKey<AccountId>> = manual(&clock);
    let layer = RateLimitLayer::builder(quota("2/min"))
        .key(ExtensionKey::<AccountId>::new())
        .tiers(
            Tiers::<Plan>::from_extension()
                .tier(Plan::Free, quota("5/min"))
                .tier(Plan::Paid, quota("100/min")),
        )
        .ratelimit_headers(true)
        .store(store.clone())
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);

    assert_eq!(passed(&mut service, 1, Some(Plan::Free), 50).await, 5);
    assert_eq!(passed(&mut service, 2, Some(Plan::Paid), 500).await, 100);
    // A tier not in the table, and no tier at all: the default (2/min).
    assert_eq!(passed(&mut service, 3, Some(Plan::Enterprise), 50).await, 2);
    assert_eq!(passed(&mut service, 4, None, 50).await, 2);
    // The tier is part of the key: account 1, now paid, starts a paid bucket; its free
    // bucket is untouched (and still empty).
    assert_eq!(passed(&mut service, 1, Some(Plan::Paid), 500).await, 100);
    assert_eq!(passed(&mut service, 1, Some(Plan::Free), 50).await, 0);
    // Enterprise and no-plan share the default tier's state for one account.
    assert_eq!(passed(&mut service, 5, None, 1).await, 1);
    assert_eq!(passed(&mut service, 5, Some(Plan::Enterprise), 50).await, 1);
    assert_eq!(store.len(), 6);

    // Each tier's fields carry its own policy.
    let free = send(&mut service, from_account(9, Some(Plan::Free))).await;
    assert_eq!(
        header(&free, "ratelimit-policy").unwrap(),
        r#""default";q=5;w=60"#
    );
    let paid = send(&mut service, from_account(9, Some(Plan::Paid))).await;
    assert_eq!(
        header(&paid, "ratelimit-policy").unwrap(),
        r#""default";q=100;w=60"#
    );
}

#[tokio::test]
async fn issue_9_tiers_with_several_windows_and_a_closure() {
    let clock = ManualClock::new();
    let paid = Policy::builder()
        .window("per-second", quota("3/s"))
        .window("per-minute", quota("4/min"))
        .build()
        .unwrap();
    let layer = RateLimitLayer::builder(quota("1/min"))
        .key(ExtensionKey::<AccountId>::new())
        .tiers(
            Tiers::from_fn(|request| request.extensions().get::<Plan>().copied())
                .tier(Plan::Paid, paid),
        )
        .store(manual(&clock))
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    assert_eq!(passed(&mut service, 1, Some(Plan::Paid), 10).await, 3);
    clock.advance(Duration::from_secs(1));
    assert_eq!(passed(&mut service, 1, Some(Plan::Paid), 10).await, 1);
    assert_eq!(passed(&mut service, 1, Some(Plan::Free), 10).await, 1);
}

#[test]
fn issue_9_a_fixed_cost_is_checked_against_every_tier() {
    let error = RateLimitLayer::builder(quota("10/min"))
        .key(ExtensionKey::<AccountId>::new())
        .tiers(Tiers::<Plan>::from_extension().tier(Plan::Free, quota("3/min")))
        .cost(nz(5))
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("burst"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Route costs (Axum)

#[cfg(feature = "axum")]
#[tokio::test]
async fn issue_9_export_costs_10_everything_else_1() {
    use axum::routing::get;
    use axum::Router;
    use tower_bouncer::rate_limit::RouteCosts;

    let clock = ManualClock::new();
    let limit = RateLimitLayer::builder(quota("25/min"))
        .route_costs(RouteCosts::new().route("/export", 10))
        .store(manual(&clock))
        .build()
        .unwrap();
    let app: Router = Router::new()
        .route("/", get(|| async { "list" }))
        .route("/export", get(|| async { "pdf" }))
        .layer(limit);
    let call = |path: &'static str| {
        let app = app.clone();
        async move {
            let request = Request::builder()
                .uri(path)
                .extension(ClientIp::new([203, 0, 113, 1].into(), SourceKind::Peer))
                .body(axum::body::Body::empty())
                .unwrap();
            app.oneshot(request).await.unwrap().status()
        }
    };
    // 25 cells: two exports (20), then five lists (5), then nothing.
    assert_eq!(call("/export").await, StatusCode::OK);
    assert_eq!(call("/export").await, StatusCode::OK);
    assert_eq!(call("/export").await, StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..5 {
        assert_eq!(call("/").await, StatusCode::OK);
    }
    assert_eq!(call("/").await, StatusCode::TOO_MANY_REQUESTS);

    // A route cost above the burst is a build error.
    let error = RateLimitLayer::builder(quota("5/min"))
        .route_costs(RouteCosts::new().route("/export", 10))
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("never pass"), "{error}");
}

#[tokio::test]
async fn issue_9_charge_by_outcome_with_two_windows_and_tiers_charges_every_window_of_the_tier() {
    // Only failed responses are charged (charge by outcome); the charge after the response
    // uses the key's policy: both windows of its tier.
    let clock = ManualClock::new();
    let store: MemoryStore<TierKey<AccountId>> = manual(&clock);
    let layer = RateLimitLayer::builder(quota("1/min"))
        .key(ExtensionKey::<AccountId>::new())
        .tiers(
            Tiers::<Plan>::from_extension().tier(
                Plan::Paid,
                Policy::builder()
                    .window("per-second", quota("3/s"))
                    .window("per-minute", quota("4/min"))
                    .build()
                    .unwrap(),
            ),
        )
        .charge_when(|status: StatusCode| status.is_server_error())
        .store(store.clone())
        .build()
        .unwrap();
    let failing = |request: Request<()>| async move {
        let fail = request.uri().path() == "/fail";
        let mut response = Response::new(Body::from("x"));
        if fail {
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        }
        Ok::<_, Infallible>(response)
    };
    let mut service = ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(failing));
    let call = |path: &'static str| {
        Request::builder()
            .uri(path)
            .extension(AccountId(1))
            .extension(Plan::Paid)
            .body(())
            .unwrap()
    };
    // Successes are never charged.
    for _ in 0..20 {
        assert_eq!(
            send(&mut service, call("/ok")).await.status(),
            StatusCode::OK
        );
    }
    // Failures are: three fit in the per-second window, the fourth is refused before the call.
    for _ in 0..3 {
        assert_eq!(
            send(&mut service, call("/fail")).await.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    assert_eq!(
        send(&mut service, call("/fail")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Both windows of the tier were charged three cells: a second later, the minute window
    // has one cell left, then nothing.
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        send(&mut service, call("/fail")).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        send(&mut service, call("/fail")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(store.len(), 1);
}
