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
use tower_bouncer::store::{FailurePolicy, RedisStore, RedisStoreBuilder, Store, StoreErrorKind};

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
        .on_failure(FailurePolicy::Closed)
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
        .allowed());
    assert_eq!(server.command_calls("eval"), 1);
    assert!(store
        .check(&"alice", &[quota], cells(1))
        .await
        .unwrap()
        .allowed());
    let third = store.check(&"alice", &[quota], cells(1)).await.unwrap();
    assert!(!third.allowed());
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
        .allowed());
    assert_eq!(server.command_calls("eval"), 2);
    assert!(store
        .check(&"bob", &[quota], cells(1))
        .await
        .unwrap()
        .allowed());
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
        .allowed());
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
    assert!(first.allowed());
    assert_eq!(first.remaining(), 6);
    assert_eq!(first.next_cell_after(), Duration::ZERO);
    let full = first.full_after();
    assert!(full > Duration::from_millis(3900) && full <= Duration::from_secs(4));

    let second = store.check(&7, &[quota], cells(7)).await.unwrap();
    assert!(!second.allowed(), "7 cells do not fit in 6");
    assert_eq!(second.remaining(), 6);
    let retry = second.retry_after().unwrap();
    assert!(retry > Duration::from_millis(900) && retry <= Duration::from_secs(1));

    // Above the burst: never, without a hint, and nothing written.
    let never = store.check(&7, &[quota], cells(11)).await.unwrap();
    assert!(!never.allowed());
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
        .allowed());
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
                    if decision.allowed() {
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

/// Issue 6, item 5: a flood on one key costs Redis about one command per cell, thanks to the
/// deny cache (counted with `INFO commandstats`); the decisions stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_6_deny_cache_makes_a_flood_cost_one_command_per_cell() {
    if !redis_available("issue_6_deny_cache_makes_a_flood_cost_one_command_per_cell") {
        return;
    }
    let server = RedisServer::start();
    // One cell every 100 ms, no burst.
    let quota = quota("10/s").allow_burst(cells(1));
    let flood = |store: RedisStore<&'static str>| async move {
        let admitted = Arc::new(AtomicU32::new(0));
        let requests = Arc::new(AtomicU32::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let store = store.clone();
            let admitted = Arc::clone(&admitted);
            let requests = Arc::clone(&requests);
            tasks.push(tokio::spawn(async move {
                while start.elapsed() < Duration::from_millis(1_000) {
                    let decision = store.check(&"victim", &[quota], cells(1)).await.unwrap();
                    if decision.allowed() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        assert!(decision.retry_after().unwrap() <= Duration::from_millis(100));
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
    };

    let cached: RedisStore<&'static str> = builder(&server, "cached:").build().unwrap();
    let before = server.command_calls("evalsha") + server.command_calls("eval");
    let (admitted, requests, elapsed) = flood(cached.clone()).await;
    let commands = server.command_calls("evalsha") + server.command_calls("eval") - before;
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
    // A few commands per cell: the cache's TAT is a lower bound (it starts when the request
    // was sent), so a probe may reach Redis a network delay early and be denied, and the next
    // one takes the cell. Measured here: 19 to 34 commands for 11 cells; the bound leaves room
    // for a slow machine while still failing if the cache stops answering between cells.
    assert!(
        commands <= 4 * periods,
        "{commands} commands for {periods} cells"
    );

    let uncached: RedisStore<&'static str> = builder(&server, "uncached:")
        .deny_cache_capacity(0)
        .build()
        .unwrap();
    let before = server.command_calls("evalsha") + server.command_calls("eval");
    let (_, requests, _) = flood(uncached).await;
    let commands = server.command_calls("evalsha") + server.command_calls("eval") - before;
    eprintln!("deny cache off: {requests} requests, {commands} redis commands");
    assert_eq!(commands, u64::from(requests));
    assert!(cached.deny_cache_len() <= 1);
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
        .allowed());
}
