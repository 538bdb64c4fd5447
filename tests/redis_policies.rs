//! Several windows on the Redis store (issue 9, item 5), against a real `redis-server` (and a
//! real three-node cluster): one script decides all windows of a key atomically, on buckets
//! that share a hash tag; a denial writes nothing; concurrent clients admit exactly the
//! smaller allowance. (Exactness against the memory store, time step by time step, is the
//! differential test in `redis_differential.rs`.)
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis_server::{redis_available, RedisCluster, RedisServer};
use tower_bouncer::rate_limit::Quota;
use tower_bouncer::store::{OnFailure, RedisStore, Store};

fn quota(text: &str) -> Quota {
    text.parse().unwrap()
}

const ONE: NonZeroU32 = NonZeroU32::MIN;

fn store<K>(server: &RedisServer, prefix: &str) -> RedisStore<K> {
    RedisStore::builder(server.url())
        .prefix(prefix)
        .timeout(Duration::from_secs(2))
        .on_failure(OnFailure::Closed)
        .build()
        .unwrap()
}

#[tokio::test]
async fn issue_9_redis_two_windows_admit_the_tighter_and_a_denial_writes_nothing() {
    if !redis_available("issue_9_redis_two_windows_admit_the_tighter_and_a_denial_writes_nothing") {
        return;
    }
    let server = RedisServer::start();
    let store: RedisStore<&'static str> = store(&server, "p9:");
    // 3 per hour and 5 per hour: nothing refills during the test.
    let windows = [quota("3/h"), quota("5/h")];
    let mut allowed = 0;
    for _ in 0..3 {
        allowed += u32::from(
            store
                .check(&"alice", &windows, ONE)
                .await
                .unwrap()
                .is_allowed(),
        );
    }
    assert_eq!(allowed, 3);
    // One bucket per window, named with the key as a hash tag.
    let mut names = server.scan("p9:");
    names.sort();
    assert_eq!(names, ["p9:{alice}#0", "p9:{alice}#1"]);
    let read = || {
        names
            .iter()
            .map(|name| server.command(&["GET", name]).unwrap())
            .collect::<Vec<_>>()
    };
    let before = read();
    for _ in 0..20 {
        let denied = store.check(&"alice", &windows, ONE).await.unwrap();
        assert!(!denied.is_allowed());
        assert!(denied.retry_after().unwrap() > Duration::from_secs(1_000));
    }
    // The 5/h window would have allowed: it was charged nothing by the denials.
    assert_eq!(read(), before);
    // Each bucket expires when its window is full again.
    for name in &names {
        let ttl: i64 = server.command(&["PTTL", name]).unwrap().parse().unwrap();
        assert!(ttl > 0, "{name}: {ttl}");
    }
    // A single-window check of the same key is a separate bucket.
    assert!(store
        .check(&"alice", &[quota("1/h")], ONE)
        .await
        .unwrap()
        .is_allowed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_9_redis_64_tasks_on_one_key_admit_exactly_the_smaller_allowance() {
    if !redis_available("issue_9_redis_64_tasks_on_one_key_admit_exactly_the_smaller_allowance") {
        return;
    }
    let server = RedisServer::start();
    // Four stores (four connections, as four instances would have).
    let stores: Vec<RedisStore<u32>> = (0..4).map(|_| store(&server, "p9c:")).collect();
    let windows = [quota("50/h"), quota("7/h")];
    let admitted = Arc::new(AtomicU32::new(0));
    let tasks: Vec<_> = (0..64)
        .map(|task| {
            let store = stores[task % 4].clone();
            let admitted = Arc::clone(&admitted);
            tokio::spawn(async move {
                for _ in 0..5 {
                    if store.check(&1, &windows, ONE).await.unwrap().is_allowed() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(admitted.load(Ordering::Relaxed), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_redis_cluster_windows_of_a_key_share_a_slot() {
    if !redis_available("issue_9_redis_cluster_windows_of_a_key_share_a_slot") {
        return;
    }
    let cluster = RedisCluster::start();
    let store: RedisStore<u32> = RedisStore::cluster_builder(cluster.urls())
        .timeout(Duration::from_secs(2))
        .on_failure(OnFailure::Closed)
        .build()
        .unwrap();
    let windows = [quota("3/h"), quota("4/h")];
    for key in 0..60 {
        let mut allowed = 0;
        for _ in 0..5 {
            // A cross-slot script would fail here (CROSSSLOT): every call must succeed.
            allowed += u32::from(store.check(&key, &windows, ONE).await.unwrap().is_allowed());
        }
        assert_eq!(allowed, 3, "key {key}");
    }
    let per_node: Vec<u64> = cluster
        .nodes()
        .iter()
        .map(|node| node.command(&["DBSIZE"]).unwrap().parse().unwrap())
        .collect();
    // Two buckets per key, spread over the nodes, always together.
    assert_eq!(per_node.iter().sum::<u64>(), 120, "{per_node:?}");
    assert!(per_node.iter().all(|&keys| keys % 2 == 0), "{per_node:?}");
    assert!(
        per_node.iter().filter(|&&keys| keys > 0).count() >= 2,
        "{per_node:?}"
    );
}
