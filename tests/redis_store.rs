//! The Redis store against a real `redis-server` (one per test, on a free loopback port):
//! the script, NOSCRIPT recovery, expiry, a shared limit across connections, the deny cache.
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_server::{redis_available, RedisServer};
use tower_bouncer::rate_limit::Quota;
use tower_bouncer::store::{OnFailure, RedisStore, RedisStoreBuilder, Store, StoreErrorKind};

fn quota(text: &str) -> Quota {
    text.parse().unwrap()
}

fn cells(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// A store for tests that count decisions: a generous timeout (the machine may be busy) and
/// fail-closed, so that a Redis failure shows as an error instead of a silent "allowed".
fn builder<K>(server: &RedisServer, prefix: &str) -> RedisStoreBuilder<K> {
    RedisStore::builder(server.url())
        .prefix(prefix)
        .timeout(Duration::from_secs(2))
        .on_failure(OnFailure::Closed)
}

/// Issue 6, item 1: one script by hash; after `SCRIPT FLUSH` (NOSCRIPT) the store sends the
/// script again and goes on.
#[tokio::test]
async fn issue_6_evalsha_survives_script_flush() {
    if !redis_available("issue_6_evalsha_survives_script_flush") {
        return;
    }
    let server = RedisServer::start();
    let store: RedisStore<&'static str> = builder(&server, "tower-bouncer:").build().unwrap();
    let quota = quota("2/min");

    // The first call ever: the server does not know the script yet (the failed EVALSHA
    // counts as a failed call, not in `calls`).
    assert!(store
        .check(&"alice", &[quota], cells(1))
        .await
        .unwrap()
        .is_allowed());
    assert_eq!(server.command_calls("eval"), 1);
    assert!(store
        .check(&"alice", &[quota], cells(1))
        .await
        .unwrap()
        .is_allowed());
    let third = store.check(&"alice", &[quota], cells(1)).await.unwrap();
    assert!(!third.is_allowed());
    let retry = third.retry_after().unwrap();
    assert!(
        retry > Duration::from_secs(29) && retry <= Duration::from_secs(30),
        "{retry:?}"
    );
    assert_eq!(third.remaining(), 0);
    assert_eq!(server.command_calls("evalsha"), 2);

    assert_eq!(server.command(&["SCRIPT", "FLUSH"]).unwrap(), "+OK");
    assert!(store
        .check(&"bob", &[quota], cells(1))
        .await
        .unwrap()
        .is_allowed());
    assert_eq!(server.command_calls("eval"), 2);
    assert!(store
        .check(&"bob", &[quota], cells(1))
        .await
        .unwrap()
        .is_allowed());
    assert_eq!(
        server.command_calls("eval"),
        2,
        "the script is cached again"
    );
    // The state survived: bob has spent his two cells.
    assert!(!store
        .check(&"bob", &[quota], cells(1))
        .await
        .unwrap()
        .is_allowed());
}

/// Issue 6: the same decision fields as the memory store, and cost per request.
#[tokio::test]
async fn issue_6_decision_fields_and_costs() {
    if !redis_available("issue_6_decision_fields_and_costs") {
        return;
    }
    let server = RedisServer::start();
    let store: RedisStore<u64> = builder(&server, "tower-bouncer:").build().unwrap();
    // 1 cell per second, burst 10.
    let quota = quota("1/s").allow_burst(cells(10));

    let first = store.check(&7, &[quota], cells(4)).await.unwrap();
    assert!(first.is_allowed());
    assert_eq!(first.remaining(), 6);
    assert_eq!(first.next_cell_after(), Duration::ZERO);
    let full = first.full_after();
    assert!(full > Duration::from_millis(3900) && full <= Duration::from_secs(4));

    let second = store.check(&7, &[quota], cells(7)).await.unwrap();
    assert!(!second.is_allowed(), "7 cells do not fit in 6");
    assert_eq!(second.remaining(), 6);
    let retry = second.retry_after().unwrap();
    assert!(retry > Duration::from_millis(900) && retry <= Duration::from_secs(1));

    // Above the burst: never, without a hint, and nothing written.
    let never = store.check(&7, &[quota], cells(11)).await.unwrap();
    assert!(!never.is_allowed());
    assert_eq!(never.retry_after(), None);
    assert_eq!(never.remaining(), 6);
}

/// Issue 6, item 1: a bucket expires when it is full again, and after the window `SCAN` finds
/// no key of ours. Also the `1e+08` trap: a TTL of 10^8 ms or more is sent as an integer.
#[tokio::test]
async fn issue_6_keys_expire_when_the_bucket_is_full_again() {
    if !redis_available("issue_6_keys_expire_when_the_bucket_is_full_again") {
        return;
    }
    let server = RedisServer::start();
    let store: RedisStore<u32> = builder(&server, "expiry-test:").build().unwrap();
    // 10/s, burst 5: one cell refills in 100 ms, the whole burst in 500 ms.
    let quota = quota("10/s").allow_burst(cells(5));
    for key in 0..50 {
        for _ in 0..6 {
            store.check(&key, &[quota], cells(1)).await.unwrap();
        }
    }
    assert_eq!(server.scan("expiry-test:").len(), 50);
    let ttl: i64 = server
        .command(&["PTTL", "expiry-test:0"])
        .unwrap()
        .parse()
        .unwrap();
    assert!(ttl > 0 && ttl <= 500, "ttl {ttl} ms");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(server.scan("expiry-test:"), Vec::<String>::new());

    // 1/h with a cost of 28 cells: full again in 28 h = 100,800,000 ms ≥ 10^8.
    let slow = quota_per_hour_burst(1, 30);
    assert!(store
        .check(&99, &[slow], cells(28))
        .await
        .unwrap()
        .is_allowed());
    let ttl: i64 = server
        .command(&["PTTL", "expiry-test:99"])
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (100_799_000..=100_800_000).contains(&ttl),
        "ttl {ttl} ms: the expiry must be sent as an integer"
    );
}

fn quota_per_hour_burst(per_hour: u32, burst: u32) -> Quota {
    Quota::per_hour(cells(per_hour)).allow_burst(cells(burst))
}

/// Issue 6, "what it must show": four stores on separate connections share one quota of 100,
/// hammered concurrently: exactly 100 admitted in total.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_6_four_stores_share_one_quota_of_100() {
    if !redis_available("issue_6_four_stores_share_one_quota_of_100") {
        return;
    }
    let server = RedisServer::start();
    let quota = quota("100/h");
    let admitted = Arc::new(AtomicU32::new(0));
    let denied = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        // A store of its own: its own connection, its own deny cache.
        let store: RedisStore<&'static str> = builder(&server, "tower-bouncer:").build().unwrap();
        for _ in 0..8 {
            let store = store.clone();
            let admitted = Arc::clone(&admitted);
            let denied = Arc::clone(&denied);
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    let decision = store.check(&"shared", &[quota], cells(1)).await.unwrap();
                    if decision.is_allowed() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        denied.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(admitted.load(Ordering::Relaxed), 100);
    assert_eq!(denied.load(Ordering::Relaxed), 4 * 8 * 50 - 100);
}

/// EVAL and EVALSHA calls so far (`INFO commandstats`).
fn script_calls(server: &RedisServer) -> u64 {
    server.command_calls("evalsha") + server.command_calls("eval")
}

/// Loads the script with a first call, so that the counts below are of decisions only (the
/// first call ever is an EVALSHA answered NOSCRIPT, then an EVAL).
async fn load_script(store: &RedisStore<&'static str>) {
    store
        .check(&"warm-up", &[quota("1000/s")], cells(1))
        .await
        .unwrap();
}

/// Floods `key` from 4 tasks for one second; (admitted, requests, elapsed). Every denial must
/// come with a retry hint of at most `period`.
async fn flood(
    store: RedisStore<&'static str>,
    windows: Vec<Quota>,
    period: Duration,
) -> (u32, u32, Duration) {
    let admitted = Arc::new(AtomicU32::new(0));
    let requests = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        let windows = windows.clone();
        let admitted = Arc::clone(&admitted);
        let requests = Arc::clone(&requests);
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < Duration::from_millis(1_000) {
                let decision = store.check(&"victim", &windows, cells(1)).await.unwrap();
                if decision.is_allowed() {
                    admitted.fetch_add(1, Ordering::Relaxed);
                } else {
                    assert!(decision.retry_after().unwrap() <= period);
                }
                requests.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    (
        admitted.load(Ordering::Relaxed),
        requests.load(Ordering::Relaxed),
        start.elapsed(),
    )
}

/// Issue 6, item 5: a flood on one key costs Redis one command per cell, thanks to the deny
/// cache (counted with `INFO commandstats`); the decisions stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_6_deny_cache_makes_a_flood_cost_one_command_per_cell() {
    if !redis_available("issue_6_deny_cache_makes_a_flood_cost_one_command_per_cell") {
        return;
    }
    let server = RedisServer::start();
    // One cell every 100 ms, no burst.
    let quota = quota("10/s").allow_burst(cells(1));
    let period = Duration::from_millis(100);

    let cached: RedisStore<&'static str> = builder(&server, "cached:").build().unwrap();
    load_script(&cached).await;
    let before = script_calls(&server);
    let (admitted, requests, elapsed) = flood(cached.clone(), vec![quota], period).await;
    let commands = script_calls(&server) - before;
    let periods = (elapsed.as_millis() / 100) as u64 + 1;
    eprintln!(
        "deny cache on: {requests} requests, {admitted} admitted, {commands} redis commands \
         over {elapsed:?} ({periods} cells)"
    );
    // Exact: never more than one cell per 100 ms (plus the first).
    assert!(
        u64::from(admitted) <= periods,
        "{admitted} admitted in {periods} cells"
    );
    assert!(
        admitted >= 5,
        "the key must still get its cells: {admitted}"
    );
    assert!(
        u64::from(requests) > 20 * commands,
        "the flood must be answered locally"
    );
    // One command per cell: the flood's first requests wait for the first answer instead of
    // racing to Redis, and after each refill one request goes when the cell is surely due
    // (held until the estimate from above), the others wait for its answer. Measured: 10
    // commands for 10 cells, every time. One more is allowed for a wall-clock step on Redis'
    // side.
    assert!(
        commands <= u64::from(admitted) + 1,
        "{commands} commands for {admitted} admitted cells"
    );

    let uncached: RedisStore<&'static str> = builder(&server, "uncached:")
        .deny_cache_capacity(0)
        .build()
        .unwrap();
    let before = script_calls(&server);
    let (_, requests, _) = flood(uncached, vec![quota], period).await;
    let commands = script_calls(&server) - before;
    eprintln!("deny cache off: {requests} requests, {commands} redis commands");
    // Every request goes to Redis: the 4 tasks' requests in flight together share a script
    // call (a batch), so at least one call per 4 requests.
    assert!(
        commands >= u64::from(requests).div_ceil(4),
        "{commands} script calls for {requests} requests from 4 tasks"
    );
    assert!(cached.deny_cache_len() <= 1);
}

/// Issue 6, item 5: the deny cache serves checks with several windows too (`gcra_windows.lua`):
/// one command per cell of the tightest window, the decisions exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_6_deny_cache_serves_several_windows() {
    if !redis_available("issue_6_deny_cache_serves_several_windows") {
        return;
    }
    let server = RedisServer::start();
    // 10/s with a burst of 1, and 600/min: the first window is the tighter.
    let windows = vec![quota("10/s").allow_burst(cells(1)), quota("600/min")];
    let store: RedisStore<&'static str> = builder(&server, "windows:").build().unwrap();
    // Loads the windows script (a NOSCRIPT, then an EVAL) before counting.
    store.check(&"warm-up", &windows, cells(1)).await.unwrap();
    let before = script_calls(&server);
    let (admitted, requests, elapsed) = flood(store, windows, Duration::from_millis(100)).await;
    let commands = script_calls(&server) - before;
    let periods = (elapsed.as_millis() / 100) as u64 + 1;
    eprintln!(
        "two windows: {requests} requests, {admitted} admitted, {commands} redis commands \
         ({periods} cells)"
    );
    assert!(u64::from(admitted) <= periods);
    assert!(admitted >= 5, "{admitted}");
    assert!(
        commands <= u64::from(admitted) + 1,
        "{commands} commands for {admitted} admitted cells"
    );
}

/// Issue 6, item 5 (flood start): 64 concurrent first requests on a fresh key of burst 1 send
/// one command to Redis, not 64: the others wait for its answer, which empties the bucket,
/// and are denied locally. Exactly one is admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_6_concurrent_first_requests_cost_one_command() {
    if !redis_available("issue_6_concurrent_first_requests_cost_one_command") {
        return;
    }
    let server = RedisServer::start();
    let store: RedisStore<&'static str> = builder(&server, "fresh:").build().unwrap();
    load_script(&store).await;
    let quota = quota("1/min");
    let before = script_calls(&server);
    let start = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                store.check(&"fresh", &[quota], cells(1)).await.unwrap()
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        let decision = task.await.unwrap();
        if decision.is_allowed() {
            admitted += 1;
        } else {
            let retry = decision.retry_after().unwrap();
            assert!(retry > Duration::from_secs(58) && retry <= Duration::from_secs(60));
        }
    }
    let commands = script_calls(&server) - before;
    assert_eq!(admitted, 1);
    assert!(
        commands <= 2,
        "{commands} commands for 64 concurrent first requests"
    );

    // Without the cache, each of them asks Redis: what the test above is measured against.
    let uncached: RedisStore<&'static str> = builder(&server, "fresh-uncached:")
        .deny_cache_capacity(0)
        .build()
        .unwrap();
    let before = script_calls(&server);
    let decisions = futures_join(
        &uncached,
        (0..64).map(|_| ("fresh", quota)).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(decisions.iter().filter(|d| d.is_allowed()).count(), 1);
    assert_eq!(script_calls(&server) - before, 64);
}

/// All the checks at once on one task: every future is created (and its cache lookup done)
/// before any is awaited.
async fn futures_join(
    store: &RedisStore<&'static str>,
    checks: Vec<(&'static str, Quota)>,
) -> Vec<tower_bouncer::store::Decision> {
    let futures: Vec<_> = checks
        .iter()
        .map(|(key, quota)| store.check(key, std::slice::from_ref(quota), cells(1)))
        .collect();
    let mut decisions = Vec::new();
    for future in futures {
        decisions.push(future.await.unwrap());
    }
    decisions
}

/// Issue 6, item 5 (the allow path): requests on one hot key with room in its bucket never wait
/// for each other's answers; they all go to Redis at once, in one batch (one script call).
/// Shown with a Redis asleep longer than the timeout: all 32 requests fail by their own
/// timeout, and when Redis wakes up its bucket holds all 32 cells (one cell is 10 ms: it
/// expires in about 320 ms) — every request was sent before the first answer could come. Had
/// they waited for each other, Redis would see one: as it does for a key of burst 1, where the
/// requests behind the first one wait for its answer (and, the circuit open, never send).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_6_allow_path_on_one_hot_key_does_not_serialise() {
    if !redis_available("issue_6_allow_path_on_one_hot_key_does_not_serialise") {
        return;
    }
    let server = RedisServer::start();
    // (error kinds, commands Redis ran, the bucket's time to live in ms) for 32 concurrent
    // requests while Redis sleeps.
    let asleep = |quota: Quota, expected: u64| {
        let server = &server;
        async move {
            let store: RedisStore<&'static str> = RedisStore::builder(server.url())
                .prefix("hot:")
                .timeout(Duration::from_millis(300))
                .probe_interval(Duration::from_secs(10))
                .on_failure(OnFailure::Closed)
                .build()
                .unwrap();
            load_script(&store).await;
            server.command(&["DEL", "hot:hot"]).unwrap();
            let before = script_calls(server);
            server.debug_sleep(1.0);
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Each check is its own task, polled at once: it joins the batch when polled.
            let tasks: Vec<_> = (0..32)
                .map(|_| tokio::spawn(store.check(&"hot", &[quota], cells(1))))
                .collect();
            let mut kinds = Vec::new();
            for task in tasks {
                kinds.push(task.await.unwrap().unwrap_err().kind());
            }
            // PING waits until Redis is awake; then the commands it had queued run (bounded).
            assert_eq!(server.command(&["PING"]).unwrap(), "+PONG");
            let start = Instant::now();
            while script_calls(server) - before < expected
                && start.elapsed() < Duration::from_secs(2)
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let ttl = server.command(&["PTTL", "hot:hot"]).unwrap();
            let ttl: i64 = ttl.trim_start_matches(':').trim().parse().unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            (kinds, script_calls(server) - before, ttl)
        }
    };
    // One cell every 10 ms, room for 1,000.
    let roomy = quota("100/s").allow_burst(cells(1000));
    let (kinds, commands, ttl) = asleep(roomy, 1).await;
    assert!(
        kinds.iter().all(|kind| *kind == StoreErrorKind::Timeout),
        "{kinds:?}"
    );
    assert!(
        (280..=320).contains(&ttl),
        "every request was on its way to redis: 32 cells of 10 ms, the bucket expires in \
         {ttl} ms ({commands} script calls)"
    );
    let (_, commands, _) = asleep(quota("1/min"), 1).await;
    assert_eq!(
        commands, 1,
        "burst 1: one request goes, the others wait for it"
    );
}

/// Issue 6, item 4: an error reply about one call (a key of another type under our name) is
/// answered by the failure policy for that call only; the circuit stays closed.
#[tokio::test]
async fn issue_6_an_error_reply_does_not_open_the_circuit() {
    if !redis_available("issue_6_an_error_reply_does_not_open_the_circuit") {
        return;
    }
    let server = RedisServer::start();
    let store: RedisStore<&'static str> = builder(&server, "tower-bouncer:").build().unwrap();
    assert_eq!(
        server
            .command(&["HSET", "tower-bouncer:squatted", "field", "value"])
            .unwrap(),
        "1"
    );
    let quota = quota("5/min");
    let error = store
        .check(&"squatted", &[quota], cells(1))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Other);
    assert!(store.is_available());
    assert!(store
        .check(&"free", &[quota], cells(1))
        .await
        .unwrap()
        .is_allowed());
}
