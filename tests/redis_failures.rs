//! Issue 6, item 4: when Redis fails. A real `redis-server` is killed mid-load and restarted,
//! or made unresponsive with `DEBUG SLEEP`; the failure policy holds for every request, no
//! request waits longer than the timeout, the circuit breaker keeps the cost of a dead Redis
//! to one timeout per probe interval, and decisions go through Redis again once it is back.
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_server::{redis_available, RedisServer};
use tower_bouncer::rate_limit::Quota;
use tower_bouncer::store::{
    Decision, MemoryStore, OnFailure, RedisStore, Store, StoreError, StoreErrorKind,
};

/// Larger than the 50 ms default so that a healthy call on a busy test machine does not time
/// out; what is tested is that no call waits longer.
const TIMEOUT: Duration = Duration::from_millis(150);
const PROBE_INTERVAL: Duration = Duration::from_millis(300);
/// Scheduling noise allowed on top of the timeout on a busy 2-core machine (debug build).
const SLACK: Duration = Duration::from_millis(250);

fn one() -> NonZeroU32 {
    NonZeroU32::MIN
}

fn store(server: &RedisServer, policy: OnFailure<u64>) -> RedisStore<u64> {
    RedisStore::builder(server.url())
        .timeout(TIMEOUT)
        .probe_interval(PROBE_INTERVAL)
        .on_failure(policy)
        .build()
        .unwrap()
}

/// One decision, timed; a call that outlives timeout + slack is a hang.
async fn timed(
    store: &RedisStore<u64>,
    key: u64,
    quota: &Quota,
) -> (Result<Decision, StoreError>, Duration) {
    let start = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        store.check(&key, std::slice::from_ref(quota), one()),
    )
    .await
    .expect("a decision must never hang");
    (result, start.elapsed())
}

/// Waits (bounded) until a decision goes through Redis again.
async fn wait_until_redis_answers(store: &RedisStore<u64>, quota: &Quota) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let (_, _) = timed(store, 1, quota).await;
        if store.is_available() {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the store did not go back to Redis within 10 s");
}

/// Fail closed: Redis killed under load from four tasks. Every request gets an answer within
/// the timeout — a decision while Redis is up, a `StoreError` (503 in the layer) while it is
/// down — and decisions resume through Redis after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_6_redis_killed_mid_load_fail_closed_then_restarted() {
    if !redis_available("issue_6_redis_killed_mid_load_fail_closed_then_restarted") {
        return;
    }
    let mut server = RedisServer::start();
    let store = store(&server, OnFailure::Closed);
    let quota: Quota = "1000/s".parse().unwrap();
    // Warm up: the script is loaded and the connection made.
    assert!(timed(&store, 0, &quota).await.0.unwrap().is_allowed());

    let log = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..4_u64 {
        let store = store.clone();
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            let mut n = 0_u64;
            while start.elapsed() < Duration::from_millis(2_500) {
                n += 1;
                let at = start.elapsed();
                let (result, took) = timed(&store, task * 1_000_000 + n % 500, &quota).await;
                let outcome = result.map_err(|error| error.kind());
                log.lock().unwrap().push((at, took, outcome));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill();
    let killed = start.elapsed();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    server.restart();
    let restarted = start.elapsed();
    for task in tasks {
        task.await.unwrap();
    }

    let log = std::mem::take(&mut *log.lock().unwrap());
    let slowest = log.iter().map(|(_, took, _)| *took).max().unwrap();
    assert!(slowest <= TIMEOUT + SLACK, "a call took {slowest:?}");
    let mut errors = 0;
    let mut after_restart = 0;
    for (at, _, outcome) in log.iter() {
        match outcome {
            Ok(decision) => {
                assert!(decision.is_allowed());
                if *at > restarted {
                    after_restart += 1;
                }
            }
            Err(kind) => {
                assert!(
                    matches!(kind, StoreErrorKind::Unavailable | StoreErrorKind::Timeout),
                    "{kind:?}"
                );
                assert!(*at + TIMEOUT + SLACK >= killed, "an error before the kill");
                errors += 1;
            }
        }
    }
    // While Redis was down (a second), every request failed closed.
    let during_outage = log
        .iter()
        .filter(|(at, took, _)| *at > killed + SLACK && *at + *took < restarted)
        .collect::<Vec<_>>();
    assert!(during_outage.len() > 20, "{}", during_outage.len());
    assert!(during_outage.iter().all(|(_, _, outcome)| outcome.is_err()));
    // The breaker kept the outage cheap: only probes (and the calls in flight at the kill)
    // may have waited.
    let waited = log
        .iter()
        .filter(|(_, took, _)| *took >= TIMEOUT / 2)
        .count();
    let probes = (restarted - killed).as_millis() / PROBE_INTERVAL.as_millis() + 2;
    assert!(waited as u128 <= probes + 4, "{waited} slow calls");
    eprintln!(
        "{} calls, {errors} failed closed, {after_restart} decided after the restart, \
         {waited} waited",
        log.len()
    );
    // Back through Redis: the restarted (empty) server holds our buckets.
    assert!(after_restart > 0, "no decision after the restart");
    wait_until_redis_answers(&store, &quota).await;
    // A quota whose bucket outlives the SCAN below (a 1000/s bucket expires in 1 ms).
    let hourly: Quota = "10/h".parse().unwrap();
    assert!(store
        .check(&424_242, &[hourly], one())
        .await
        .unwrap()
        .is_allowed());
    assert!(server
        .scan("tower-bouncer:")
        .contains(&"tower-bouncer:424242".to_owned()));
}

/// Fail open: while Redis is down every request passes, as with a full bucket; a local deny
/// cache entry still denies what Redis had denied.
#[tokio::test]
async fn issue_6_redis_killed_fail_open() {
    if !redis_available("issue_6_redis_killed_fail_open") {
        return;
    }
    let mut server = RedisServer::start();
    let store = store(&server, OnFailure::Open);
    let quota: Quota = "2/h".parse().unwrap();
    for _ in 0..2 {
        assert!(timed(&store, 7, &quota).await.0.unwrap().is_allowed());
    }
    assert!(!timed(&store, 7, &quota).await.0.unwrap().is_allowed());
    server.kill();
    for _ in 0..100 {
        let (result, took) = timed(&store, 8, &quota).await;
        assert!(took <= TIMEOUT + SLACK);
        let decision = result.unwrap();
        assert!(decision.is_allowed());
        assert_eq!(decision.remaining(), 1);
    }
    assert!(!store.is_available());
    // Key 7 was denied by Redis for half an hour: the deny cache still knows.
    assert!(!timed(&store, 7, &quota).await.0.unwrap().is_allowed());
    server.restart();
    wait_until_redis_answers(&store, &quota).await;
}

/// Fall back to a local limiter: while Redis is down, the quota holds per instance.
#[tokio::test]
async fn issue_6_redis_killed_fail_to_local_store() {
    if !redis_available("issue_6_redis_killed_fail_to_local_store") {
        return;
    }
    let mut server = RedisServer::start();
    let local = MemoryStore::new();
    let store = store(&server, OnFailure::Local(local.clone()));
    let quota: Quota = "5/h".parse().unwrap();
    assert!(timed(&store, 1, &quota).await.0.unwrap().is_allowed());
    assert_eq!(
        local.len(),
        0,
        "the local store is not used while Redis answers"
    );
    server.kill();
    let mut allowed = 0;
    for _ in 0..100 {
        let (result, took) = timed(&store, 9, &quota).await;
        assert!(took <= TIMEOUT + SLACK);
        allowed += usize::from(result.unwrap().is_allowed());
    }
    assert_eq!(allowed, 5, "exactly the burst, locally");
    assert_eq!(local.len(), 1);
    server.restart();
    wait_until_redis_answers(&store, &quota).await;
    // Redis (restarted empty) decides again: key 9 has a fresh bucket there.
    assert!(timed(&store, 9, &quota).await.0.unwrap().is_allowed());
}

/// Redis made slow with `DEBUG SLEEP`: each request waits at most the timeout, and once the
/// circuit is open only one probe per interval waits; afterwards Redis decides again.
#[tokio::test]
async fn issue_6_debug_sleep_timeout_and_breaker_hold() {
    if !redis_available("issue_6_debug_sleep_timeout_and_breaker_hold") {
        return;
    }
    let server = RedisServer::start();
    let store = store(&server, OnFailure::Open);
    let quota: Quota = "1000/s".parse().unwrap();
    assert!(timed(&store, 0, &quota).await.0.unwrap().is_allowed());
    let before = server.command_calls("evalsha");

    server.debug_sleep(1.5);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    let mut calls = 0;
    let mut waited = 0;
    while start.elapsed() < Duration::from_millis(1_000) {
        let (result, took) = timed(&store, calls, &quota).await;
        assert!(took <= TIMEOUT + SLACK, "a call took {took:?}");
        assert!(result.unwrap().is_allowed(), "fail open");
        if took >= TIMEOUT * 4 / 5 {
            waited += 1;
        }
        calls += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let probes = 1_000 / PROBE_INTERVAL.as_millis() + 1;
    eprintln!("{calls} calls during DEBUG SLEEP, {waited} waited for the timeout");
    assert!(calls > 100);
    assert!(
        waited >= 1 && waited as u128 <= probes + 1,
        "{waited} timeouts"
    );
    assert!(!store.is_available());

    // The sleep ends at 1.5 s: the next probe closes the circuit.
    tokio::time::sleep(Duration::from_millis(600)).await;
    wait_until_redis_answers(&store, &quota).await;
    assert!(server.command_calls("evalsha") > before);
}
