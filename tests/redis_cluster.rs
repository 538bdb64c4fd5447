//! Issue 6, item 3: the Redis store on a real three-node Redis Cluster on loopback
//! (`redis-server --cluster-enabled yes` ×3, joined with `redis-cli --cluster create`).
//!
//! Every call touches one key, so buckets spread over the nodes; each bucket still admits
//! exactly its burst, and NOSCRIPT after `SCRIPT FLUSH` on every node is handled per node.
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use redis_server::{redis_available, RedisCluster};
use tower_bouncer::rate_limit::Quota;
use tower_bouncer::store::{OnFailure, RedisStore, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_6_three_node_cluster() {
    if !redis_available("issue_6_three_node_cluster") {
        return;
    }
    let started = Instant::now();
    let cluster = RedisCluster::start();
    eprintln!("cluster up in {:?}", started.elapsed());
    let store: RedisStore<u32> = RedisStore::cluster_builder(cluster.urls())
        .timeout(Duration::from_secs(2))
        .on_failure(OnFailure::Closed)
        .build()
        .unwrap();
    let quota: Quota = "3/h".parse().unwrap();
    let one = NonZeroU32::MIN;

    for round in 0..2 {
        if round == 1 {
            for node in cluster.nodes() {
                assert_eq!(node.command(&["SCRIPT", "FLUSH"]).unwrap(), "+OK");
            }
        }
        for key in (round * 100)..(round * 100 + 100) {
            let mut allowed = 0;
            for _ in 0..5 {
                allowed += u32::from(store.check(&key, &[quota], one).await.unwrap().is_allowed());
            }
            assert_eq!(allowed, 3, "key {key}");
        }
    }
    // The buckets are spread over the three nodes.
    for node in cluster.nodes() {
        let keys: u64 = node.command(&["DBSIZE"]).unwrap().parse().unwrap();
        assert!(keys > 20, "node {} holds {keys} buckets", node.port());
    }
    let total: u64 = cluster
        .nodes()
        .iter()
        .map(|node| node.command(&["DBSIZE"]).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 200);
    eprintln!("cluster test done in {:?}", started.elapsed());
}
