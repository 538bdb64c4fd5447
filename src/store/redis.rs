//! The Redis store (feature `redis`): documented on [`RedisStore`].

mod batch;
mod breaker;
mod deny_cache;
mod key;
mod rule;

use std::cell::RefCell;
use std::fmt;
use std::future::{Future, Ready};
use std::hash::Hash;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClientBuilder, ClusterConfig};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, ErrorKind, RedisError, ServerErrorKind};

pub use key::RedisKey;

use self::batch::Batcher;
use self::breaker::{Admission, Breaker};
use self::deny_cache::{DenyCache, Lookup, Ticket};
use self::rule::{Outcome, Rule};
use super::gcra::{nanos, MAX_WINDOWS};
use super::{Decision, MemoryStore, Store, StoreError, StoreErrorKind};
use crate::rate_limit::Quota;
use crate::ConfigError;

/// The GCRA script, for batches of single-window requests (see its header for the arguments
/// and the reply), after the steps it shares with the windows script.
const SCRIPT: &str = concat!(
    include_str!("redis/gcra_common.lua"),
    include_str!("redis/gcra.lua")
);

/// The script deciding several windows at once (see its header).
const WINDOWS_SCRIPT: &str = concat!(
    include_str!("redis/gcra_common.lua"),
    include_str!("redis/gcra_windows.lua")
);

/// What the store answers while Redis fails (an error, a timeout, or an open circuit).
///
/// See [`RedisStore`] for how the circuit breaker limits the cost of a failing Redis.
pub enum OnFailure<K> {
    /// Allow every request, as if every bucket were full: availability first.
    Open,
    /// Answer a [`StoreError`] (kind [`Unavailable`](StoreErrorKind::Unavailable) or
    /// [`Timeout`](StoreErrorKind::Timeout)): a rate-limit layer answers `503 Service
    /// Unavailable`. Protection first.
    Closed,
    /// Decide with this in-memory store: each instance enforces the quota on its own (N
    /// instances admit up to N times the quota) until Redis is back.
    Local(MemoryStore<K>),
}

impl<K> Clone for OnFailure<K> {
    fn clone(&self) -> Self {
        match self {
            Self::Open => Self::Open,
            Self::Closed => Self::Closed,
            Self::Local(store) => Self::Local(store.clone()),
        }
    }
}

impl<K> fmt::Debug for OnFailure<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open => f.write_str("Open"),
            Self::Closed => f.write_str("Closed"),
            Self::Local(store) => f.debug_tuple("Local").field(store).finish(),
        }
    }
}

/// A [`Store`] in Redis: one limit shared by every instance of an application.
///
/// Each [`MemoryStore`] counts for its own process: behind a load balancer with N instances,
/// a client gets N times its quota. [`RedisStore`] keeps the buckets in Redis (or Valkey, or a
/// Redis Cluster), so every instance charges the same bucket.
///
/// # How it decides
///
/// - **One round trip per decision, at most**: GCRA runs as one Lua script, loaded once and
///   called by its SHA1 (`EVALSHA`; after a `NOSCRIPT` reply — a restarted or flushed server —
///   the store sends the script itself with `EVAL`, which caches it again). Requests share one
///   multiplexed connection, and on one server the single-window decisions that reach the
///   store together (in the same turn of the runtime) go as **one script call**: the script
///   decides them in order, at one "now", reading each bucket once and writing it once. A lone
///   request is a batch of one and waits for nothing; under load a batch spares Redis most of
///   its work per decision (the script call, `TIME`, and a `GET` and a `SET` per request on a
///   hot key) and the client the encoding of one command per request. The decisions are
///   those of the same requests checked one after the other (a differential test holds
///   batches to the memory store, as it does single calls).
/// - **Redis' clock** (`TIME`): the clocks of your instances do not matter.
/// - **The same arithmetic as the memory store**, in whole nanoseconds (exact in Lua's doubles,
///   see the limits below): the same requests at the same times get the same [`Decision`]s,
///   which a differential test checks over thousands of random steps.
/// - **No key outlives its use**: a bucket expires when it is full again (an expired bucket and
///   a full one decide alike). A denial writes nothing.
///
/// # When Redis fails
///
/// Every call has a timeout (50 ms by default, [`RedisStoreBuilder::timeout`]). A failure — a
/// timeout, a lost connection, a server that cannot serve (`LOADING`, `BUSY`, `READONLY`,
/// `OOM`, `CLUSTERDOWN` …) — opens a **circuit breaker**: for the next
/// probe interval (1 s by default) no request waits for Redis; then one request probes it, and
/// a successful probe closes the circuit. A dead Redis so costs one timeout per interval, not
/// one per request. Meanwhile the [`OnFailure`] answers. (An error reply about the call
/// itself — another application's hash under one of our names, say — is answered by the policy
/// too, without opening the circuit.)
///
/// | policy | answer while Redis fails |
/// | --- | --- |
/// | [`OnFailure::Open`] (default) | allowed, as if every bucket were full |
/// | [`OnFailure::Closed`] | a [`StoreError`] (a rate-limit layer answers 503) |
/// | [`OnFailure::Local`] | the decision of a local [`MemoryStore`]: a per-instance limit |
///
/// The breaker logs a `tracing` warning when the circuit opens and when it closes; nothing is
/// logged per request.
///
/// # The local deny cache
///
/// A key whose bucket Redis reported empty is answered locally until its next cell is due, so
/// a flood on one key costs Redis about one command per cell, not one per request. Requests
/// that could not fit even if every request in flight for their key were admitted do not go
/// to Redis: they wait for those answers (within the timeout), then are denied locally or
/// sent. So the first requests of a flood cost one command, not one per connection; and after
/// each refill one request goes to Redis, when the cell is surely due, while the others wait
/// for its answer. A request that might fit never waits: with room in the bucket, concurrent
/// requests go to Redis together, pipelined. The cache only ever answers "denied" when Redis
/// would too: it keeps a lower bound of each bucket's state, measured from the moment the
/// request was sent. It holds at most 10,000 keys by default
/// ([`RedisStoreBuilder::deny_cache_capacity`]; 0 turns it off).
///
/// # Keys, prefixes, Redis Cluster
///
/// The name of a bucket is the store's prefix (`"tower-bouncer:"` by default) followed by the
/// key, written by [`RedisKey`]. Give each limit its own prefix when several limits share one
/// Redis. On a Redis Cluster ([`RedisStore::cluster_builder`]) every call touches exactly one
/// key (no batches: buckets spread over the cluster's slots, hence its nodes). A prefix with a
/// hash tag (`"{rl}:"`) would pin every bucket to one slot, hence one node: don't put braces in
/// the prefix unless that is what you want.
///
/// # Several windows
///
/// A check with several windows (`check(key, &[per_second, per_hour], cost)`, a layer with
/// [`and_quota`](crate::rate_limit::RateLimitLayerBuilder::and_quota)) runs a second script,
/// which reads every window's bucket, and writes all of them only if every window admits:
/// atomically, in one round trip, a denial writing nothing. The buckets are named
/// `PREFIX{KEY}#0`, `PREFIX{KEY}#1` …: the key is a Cluster hash tag, so all windows of a key
/// live in one slot and the script works on a cluster; each bucket expires when its window is
/// full again. The decisions are the memory store's, step for step (a differential test holds
/// them to it). The local deny cache serves them as it serves one window.
///
/// # Limits
///
/// The script computes in nanoseconds with Lua's doubles, exact below 2^53 ns (104 days): a
/// quota whose burst takes more than 52 days to refill (`replenish_interval × burst`) is
/// refused with a [`StoreError`] of kind [`Other`](StoreErrorKind::Other).
///
/// # Example
///
/// ```no_run
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use tower_bouncer::rate_limit::Quota;
/// use tower_bouncer::store::{OnFailure, MemoryStore, RedisStore, Store};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// // Inside a Tokio runtime: the connection is made in the background.
/// let store: RedisStore<String> = RedisStore::builder("redis://127.0.0.1:6379/")
///     .prefix("myapp:login:")
///     .timeout(Duration::from_millis(20))
///     .on_failure(OnFailure::Local(MemoryStore::new()))
///     .build()?;
///
/// let quota: Quota = "5/min".parse()?;
/// let decision = store
///     .check(&"alice".to_owned(), &[quota], NonZeroU32::MIN)
///     .await?;
/// println!("allowed: {}, remaining: {}", decision.is_allowed(), decision.remaining());
/// # Ok(())
/// # }
/// ```
///
/// A Redis Cluster is given by some of its nodes:
///
/// ```no_run
/// use tower_bouncer::store::{OnFailure, RedisStore};
///
/// # fn run() -> Result<(), tower_bouncer::ConfigError> {
/// let store: RedisStore<u64> = RedisStore::cluster_builder([
///     "redis://10.0.0.1:6379/",
///     "redis://10.0.0.2:6379/",
/// ])
/// .on_failure(OnFailure::Closed)
/// .build()?;
/// # Ok(())
/// # }
/// ```
///
/// What the failure policies answer when Redis cannot be reached (here nothing listens on
/// port 1):
///
/// ```
/// use std::num::NonZeroU32;
/// use tower_bouncer::rate_limit::Quota;
/// use tower_bouncer::store::{OnFailure, MemoryStore, RedisStore, Store, StoreErrorKind};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let quota: Quota = "2/min".parse().unwrap();
/// let one = NonZeroU32::MIN;
/// let unreachable = "redis://127.0.0.1:1/";
///
/// // Closed: an error, which a rate-limit layer turns into a 503.
/// let closed: RedisStore<&str> = RedisStore::builder(unreachable)
///     .on_failure(OnFailure::Closed)
///     .build()
///     .unwrap();
/// let error = closed.check(&"alice", &[quota], one).await.unwrap_err();
/// assert_eq!(error.kind(), StoreErrorKind::Unavailable);
/// // The circuit is open now: the next requests do not even try Redis for a second.
/// assert!(!closed.is_available());
///
/// // Open: allowed, as if the bucket were full.
/// let open: RedisStore<&str> = RedisStore::builder(unreachable).build().unwrap();
/// assert!(open.check(&"alice", &[quota], one).await.unwrap().is_allowed());
///
/// // Local: this instance enforces the quota on its own.
/// let local: RedisStore<&str> = RedisStore::builder(unreachable)
///     .on_failure(OnFailure::Local(MemoryStore::new()))
///     .build()
///     .unwrap();
/// assert!(local.check(&"alice", &[quota], one).await.unwrap().is_allowed());
/// assert!(local.check(&"alice", &[quota], one).await.unwrap().is_allowed());
/// assert!(!local.check(&"alice", &[quota], one).await.unwrap().is_allowed());
/// # });
/// ```
///
/// Built with [`RedisStore::builder`] (one server) or [`RedisStore::cluster_builder`];
/// `Clone` shares the connection and state.
pub struct RedisStore<K> {
    inner: Arc<Inner<K>>,
}

struct Inner<K> {
    connection: Connection,
    /// One server: single-window decisions go to Redis in batches (see `batch.rs`).
    batcher: Option<Arc<Batcher>>,
    script_hash: String,
    windows_script_hash: String,
    prefix: Box<[u8]>,
    timeout: Duration,
    policy: OnFailure<K>,
    breaker: Breaker,
    deny_cache: DenyCache,
    /// The origin of the breaker's and the deny cache's clock.
    origin: Instant,
}

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl<K> Clone for RedisStore<K> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K> fmt::Debug for RedisStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("RedisStore")
            .field(
                "connection",
                &match inner.connection {
                    Connection::Single(_) => "single",
                    Connection::Cluster(_) => "cluster",
                },
            )
            .field("prefix", &String::from_utf8_lossy(&inner.prefix))
            .field("timeout", &inner.timeout)
            .field("policy", &inner.policy)
            .field("circuit_closed", &inner.breaker.is_closed())
            .field("deny_cache", &inner.deny_cache)
            .finish_non_exhaustive()
    }
}

impl<K> RedisStore<K> {
    /// A builder for a store on one Redis (or Valkey) server, e.g. `redis://127.0.0.1:6379/`
    /// (`rediss://` for TLS is not compiled in).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder<K> {
        RedisStoreBuilder::new(vec![url.into()], false)
    }

    /// A builder for a store on a Redis Cluster, given the URLs of some of its nodes.
    pub fn cluster_builder<U: Into<String>>(
        nodes: impl IntoIterator<Item = U>,
    ) -> RedisStoreBuilder<K> {
        RedisStoreBuilder::new(nodes.into_iter().map(Into::into).collect(), true)
    }

    /// Whether requests currently go to Redis (the circuit breaker is closed).
    pub fn is_available(&self) -> bool {
        self.inner.breaker.is_closed()
    }

    /// How many keys the local deny cache holds now.
    pub fn deny_cache_len(&self) -> usize {
        self.inner.deny_cache.len()
    }

    fn now(&self) -> u64 {
        nanos(self.inner.origin.elapsed())
    }
}

thread_local! {
    /// The name of the bucket being checked, reused across calls on this thread.
    static NAME: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes the name under which the store keeps `key` under `windows` windows: `PREFIXKEY`
/// for one window; for several, the name of the first window's bucket, `PREFIX{KEY}#0` (the
/// others differ by their last byte, see [`Call::command`]). The braces are a Redis Cluster
/// hash tag: every window of a key hashes to the same slot, so one script can read and write
/// them all atomically. (The first `}` after the first `{` is at the same place in every name,
/// whatever the key's bytes, so the names always share their slot.)
fn write_name<K: RedisKey>(name: &mut Vec<u8>, prefix: &[u8], key: &K, windows: usize) {
    name.clear();
    name.extend_from_slice(prefix);
    if windows == 1 {
        key.write_redis_key(name);
    } else {
        name.push(b'{');
        key.write_redis_key(name);
        name.extend_from_slice(b"}#0");
    }
}

impl<K> RedisStore<K>
where
    K: RedisKey + Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Decides with an explicit "now" instead of Redis' clock, bypassing the deny cache, the
    /// circuit breaker and the failure policy (the timeout applies). For the differential
    /// tests only (feature `test-util`, not a stable API): `now` is the time since the Unix
    /// epoch, and the buckets it writes never expire.
    #[cfg(feature = "test-util")]
    pub async fn check_at(
        &self,
        key: &K,
        windows: &[Quota],
        cost: NonZeroU32,
        now: Duration,
    ) -> Result<Decision, StoreError> {
        let rule = Rule::new(windows)?;
        let mut name = Vec::new();
        write_name(&mut name, &self.inner.prefix, key, rule.len());
        let call = Call::new(
            &name,
            &rule,
            cost,
            Some((now.as_secs(), now.subsec_nanos())),
        );
        let reply = tokio::time::timeout(self.inner.timeout, call.run(&self.inner))
            .await
            .map_err(|_elapsed| StoreError::new(StoreErrorKind::Timeout))??;
        reply.decision(&rule, cost.get())
    }

    /// Decides several single-window requests in one script call, in order, at an explicit
    /// "now", as a batch of concurrent requests is decided: for the differential tests only
    /// (feature `test-util`, not a stable API), like [`check_at`](Self::check_at).
    #[cfg(feature = "test-util")]
    pub async fn check_batch_at(
        &self,
        requests: &[(K, Quota, NonZeroU32)],
        now: Duration,
    ) -> Result<Vec<Decision>, StoreError> {
        if requests.len() > batch::MAX_BATCH {
            return Err(StoreError::with_source(
                StoreErrorKind::Other,
                "at most 128 requests in a batch",
            ));
        }
        let mut calls = Vec::with_capacity(requests.len());
        for (key, quota, cost) in requests {
            let rule = Rule::new(std::slice::from_ref(quota))?;
            let mut name = Vec::new();
            write_name(&mut name, &self.inner.prefix, key, 1);
            calls.push((name, rule, *cost));
        }
        let command = |command: &str, script: &str| {
            let requests = calls.iter().map(|(name, rule, cost)| {
                (&name[..], rule.parameters()[0], rule.script_cost(*cost))
            });
            batch::script_command(
                command,
                script,
                requests,
                Some((now.as_secs(), now.subsec_nanos())),
            )
        };
        let query = async {
            let mut connection = match &self.inner.connection {
                Connection::Single(connection) => connection.clone(),
                Connection::Cluster(_) => {
                    return Err(StoreError::with_source(
                        StoreErrorKind::Other,
                        "batches are for one redis server",
                    ))
                }
            };
            eval(&mut connection, &self.inner.script_hash, SCRIPT, command)
                .await
                .map_err(store_error)
        };
        let reply = tokio::time::timeout(self.inner.timeout, query)
            .await
            .map_err(|_elapsed| StoreError::new(StoreErrorKind::Timeout))??;
        if reply.len() != calls.len() {
            return Err(invalid_reply());
        }
        calls
            .iter()
            .zip(reply)
            .map(|((_, rule, cost), reply)| {
                let (t, _) = rule.parameters()[0];
                Reply::of_one_window(reply, t, rule.script_cost(*cost))?.decision(rule, cost.get())
            })
            .collect()
    }

    /// One decision: the deny cache first (without allocating when it denies), then, unless
    /// the circuit is open, Redis — after waiting for the answers in flight for the key, or
    /// holding until its next cell, when the cache says so.
    fn check_rule(&self, key: &K, rule: Rule, cost: NonZeroU32) -> RedisCheck {
        let inner = &*self.inner;
        let deadline = self.now().saturating_add(nanos(inner.timeout));
        // The bucket's name, built in a reused buffer: a denial from the deny cache allocates
        // nothing.
        let looked_up = NAME.with(|name| {
            let mut name = name.borrow_mut();
            write_name(&mut name, &inner.prefix, key, rule.len());
            match inner
                .deny_cache
                .lookup(&name, &rule, cost.get(), deadline, || self.now())
            {
                Lookup::Deny(decision) => Err(decision),
                next => Ok((name.clone(), next)),
            }
        });
        let (name, next) = match looked_up {
            Ok(found) => found,
            Err(decision) => return RedisCheck::ready(Ok(decision)),
        };
        // Sent at once: an open circuit answers without a round trip (and without a box).
        let mut pending = Pending {
            store: self.clone(),
            name,
            ticket: None,
        };
        let admission = match next {
            Lookup::Send(ticket) => {
                pending.ticket = Some(ticket);
                let admission = inner.breaker.admit(self.now());
                if admission == Admission::Reject {
                    drop(pending);
                    return RedisCheck::ready(self.circuit_open(Some(key), &rule, cost));
                }
                Some(admission)
            }
            Lookup::Deny(_) | Lookup::Wait(_) | Lookup::Hold(_) => None,
        };
        let key = matches!(inner.policy, OnFailure::Local(_)).then(|| key.clone());
        // The rule is boxed: in the future it would make it too large for the allocator's
        // fast path (thread caches stop at about 1 KiB), two small allocations being cheaper.
        let rule = Box::new(rule);
        RedisCheck {
            state: State::Pending(Box::pin(decide(
                pending, rule, cost, next, admission, deadline, key,
            ))),
        }
    }

    /// The failure policy's answer while the circuit is open.
    fn circuit_open(
        &self,
        key: Option<&K>,
        rule: &Rule,
        cost: NonZeroU32,
    ) -> Result<Decision, StoreError> {
        let error = StoreError::with_source(
            StoreErrorKind::Unavailable,
            "redis circuit open after a failure",
        );
        apply_policy(&self.inner.policy, key, rule, cost, error)
    }
}

/// The asynchronous part of [`RedisStore::check_rule`]: wait or hold as the deny cache says,
/// until it denies the request or lets it go; then one round trip to Redis, whose answer the
/// cache records. `pending` holds the request's ticket once it has one (from the start when
/// `next` is [`Lookup::Send`] and `admission` is known): dropped unpolled or midway, it ends
/// the ticket.
#[allow(clippy::too_many_arguments)] // the state of one decision, handed over once
async fn decide<K>(
    mut pending: Pending<K>,
    rule: Box<Rule>,
    cost: NonZeroU32,
    mut next: Lookup,
    admission: Option<Admission>,
    deadline: u64,
    key: Option<K>,
) -> Result<Decision, StoreError>
where
    K: RedisKey + Hash + Eq + Clone + Send + Sync + 'static,
{
    let store = pending.store.clone();
    let inner = &*store.inner;
    let cache = &inner.deny_cache;
    // Every turn either ends the loop or waits for news (an answer or a release for this key,
    // or the time of its next cell) bounded by the deadline; past the deadline the cache
    // answers `Send` or `Deny`: the loop is bounded.
    while pending.ticket.is_none() {
        match next {
            Lookup::Deny(decision) => return Ok(decision),
            Lookup::Send(ticket) => {
                pending.ticket = Some(ticket);
                break;
            }
            Lookup::Wait(wait) => {
                let notified = wait.notify.notified();
                // Created before the version is read: an answer after this read wakes it.
                if cache.version(&pending.name) == Some(wait.version) {
                    let left = deadline.saturating_sub(store.now());
                    let _ = tokio::time::timeout(Duration::from_nanos(left), notified).await;
                }
            }
            Lookup::Hold(wait) => tokio::time::sleep(Duration::from_nanos(wait)).await,
        }
        next = cache.lookup(&pending.name, &rule, cost.get(), deadline, || store.now());
    }
    // A request that waited has what is left of its timeout; none left (an answer for its
    // key is slower than that), the policy answers without asking Redis again.
    let (admission, budget) = match admission {
        Some(admission) => (admission, inner.timeout),
        None => {
            let left = deadline.saturating_sub(store.now());
            if left == 0 {
                drop(pending);
                let error = StoreError::with_source(
                    StoreErrorKind::Timeout,
                    "redis did not answer within the timeout",
                );
                return apply_policy(&inner.policy, key.as_ref(), &rule, cost, error);
            }
            match inner.breaker.admit(store.now()) {
                Admission::Reject => {
                    drop(pending);
                    return store.circuit_open(key.as_ref(), &rule, cost);
                }
                admission => (admission, Duration::from_nanos(left)),
            }
        }
    };
    let call = Call::new(&pending.name, &rule, cost, None);
    let sent = store.now();
    let outcome = if budget == inner.timeout && call.is_batched(inner) {
        // A batch has the store's timeout (from the moment it is sent, at the latest in the
        // runtime's next turn): a timer of the request's own would only duplicate it.
        Ok(call.run(inner).await)
    } else {
        tokio::time::timeout(budget, call.run(inner)).await
    };
    let failure = match outcome {
        Ok(Ok(reply)) => {
            inner.breaker.on_success(admission);
            let decision = reply.decision(&rule, cost.get());
            if decision.is_ok() {
                if let Some(ticket) = pending.ticket.take() {
                    cache.record(
                        &pending.name,
                        &rule,
                        ticket,
                        sent,
                        store.now(),
                        &reply.after,
                    );
                }
            }
            return decision;
        }
        Ok(Err(error)) => error,
        Err(_elapsed) => StoreError::with_source(
            StoreErrorKind::Timeout,
            "redis did not answer within the timeout",
        ),
    };
    let partial_timeout = failure.kind() == StoreErrorKind::Timeout
        && budget < inner.timeout
        && admission == Admission::Call;
    if partial_timeout {
        // Less than the full timeout after waiting: no evidence against Redis, the circuit
        // stays as it is (a probe always reports, below).
    } else if matches!(
        failure.kind(),
        StoreErrorKind::Unavailable | StoreErrorKind::Timeout
    ) {
        inner.breaker.on_failure(admission, store.now(), &failure);
    } else {
        // Redis answered, with an error about this call (a key of another type under our
        // name, say): the policy answers it, the circuit stays closed.
        inner.breaker.on_success(admission);
    }
    drop(pending);
    apply_policy(&inner.policy, key.as_ref(), &rule, cost, failure)
}

/// A request counted in flight by the deny cache. Dropped without an answer (a failure, or
/// the caller gave up), it ends its ticket, so that the requests waiting for it look again.
struct Pending<K> {
    store: RedisStore<K>,
    name: Vec<u8>,
    ticket: Option<Ticket>,
}

impl<K> Drop for Pending<K> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            let inner = &*self.store.inner;
            let now = nanos(inner.origin.elapsed());
            inner.deny_cache.release(&self.name, ticket, now);
        }
    }
}

/// What the store answers while Redis fails (the [`OnFailure`]).
fn apply_policy<K>(
    policy: &OnFailure<K>,
    key: Option<&K>,
    rule: &Rule,
    cost: NonZeroU32,
    error: StoreError,
) -> Result<Decision, StoreError>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    match (policy, key) {
        // As if every bucket were full: a fresh key at time 0.
        (OnFailure::Open, _) => Ok(rule.decide(&[0; MAX_WINDOWS], cost.get()).1),
        (OnFailure::Local(store), Some(key)) => store.check(key, rule.quotas(), cost).into_inner(),
        (OnFailure::Closed | OnFailure::Local(_), _) => Err(error),
    }
}

impl<K> Store<K> for RedisStore<K>
where
    K: RedisKey + Hash + Eq + Clone + Send + Sync + 'static,
{
    type Future = RedisCheck;

    /// One window: the GCRA script on one bucket. Several windows: the windows script on one
    /// bucket per window, all in one hash slot (see [`RedisStore`]). Both through the deny
    /// cache.
    fn check(&self, key: &K, windows: &[Quota], cost: NonZeroU32) -> Self::Future {
        match Rule::new(windows) {
            Ok(rule) => self.check_rule(key, rule, cost),
            Err(error) => RedisCheck::ready(Err(error)),
        }
    }
}

/// One script call: `gcra.lua` for one window, `gcra_windows.lua` for several.
struct Call<'a> {
    /// The bucket's name; with several windows, the first window's (see [`write_name`]).
    name: &'a [u8],
    windows: usize,
    /// `(T, tau)` per window.
    parameters: [(u64, u64); MAX_WINDOWS],
    cost: u32,
    /// Tests only: (seconds since the Unix epoch, nanoseconds).
    now: Option<(u64, u32)>,
}

/// A script's reply: whether it allowed, and each window's TAT before and after, relative to
/// its now (the unused tail zero).
#[derive(Debug, Clone, Copy)]
struct Reply {
    allowed: bool,
    before: [u64; MAX_WINDOWS],
    after: [u64; MAX_WINDOWS],
}

impl<'a> Call<'a> {
    fn new(name: &'a [u8], rule: &Rule, cost: NonZeroU32, now: Option<(u64, u32)>) -> Self {
        let mut parameters = [(0, 0); MAX_WINDOWS];
        parameters[..rule.len()].copy_from_slice(rule.parameters());
        Self {
            name,
            windows: rule.len(),
            parameters,
            cost: rule.script_cost(cost),
            now,
        }
    }

    /// `EVALSHA hash …` or `EVAL script …`, with the arguments of the script's header.
    fn command(&self, command: &str, script: &str) -> Cmd {
        if self.windows == 1 {
            // A batch of one.
            let request = (self.name, self.parameters[0], self.cost);
            return batch::script_command(command, script, std::iter::once(request), self.now);
        }
        let mut cmd = ::redis::cmd(command);
        cmd.arg(script).arg(self.windows);
        // `PREFIX{KEY}#0`, `PREFIX{KEY}#1` …: at most MAX_WINDOWS (4), one digit.
        let mut name = self.name.to_vec();
        for index in 0..self.windows {
            if let Some(last) = name.last_mut() {
                *last = b'0' + (index % 10) as u8;
            }
            cmd.arg(&name);
        }
        cmd.arg(self.windows).arg(self.cost);
        for (t, tau) in &self.parameters[..self.windows] {
            cmd.arg(*t).arg(*tau);
        }
        if let Some((seconds, nanos)) = self.now {
            cmd.arg(seconds).arg(nanos);
        }
        cmd
    }

    /// Whether the call goes with a batch (one window, one server, Redis' clock).
    fn is_batched<K>(&self, inner: &Inner<K>) -> bool {
        inner.batcher.is_some() && self.windows == 1 && self.now.is_none()
    }

    async fn run<K>(&self, inner: &Inner<K>) -> Result<Reply, StoreError> {
        let (hash, script) = match &inner.batcher {
            Some(batcher) if self.is_batched(inner) => {
                return batcher
                    .decide(self.name.to_vec(), self.parameters[0], self.cost)
                    .await;
            }
            _ if self.windows == 1 => (&inner.script_hash, SCRIPT),
            _ => (&inner.windows_script_hash, WINDOWS_SCRIPT),
        };
        // Boxed: the `redis` crate's call is a large future, and this path (several windows,
        // a cluster, tests) is not the common one; the common one stays small enough for the
        // allocator's fast path.
        Box::pin(self.run_on_connection(inner, hash, script)).await
    }

    async fn run_on_connection<K>(
        &self,
        inner: &Inner<K>,
        hash: &str,
        script: &str,
    ) -> Result<Reply, StoreError> {
        let reply = match inner.connection.clone() {
            Connection::Single(mut connection) => self.query(&mut connection, hash, script).await,
            Connection::Cluster(mut connection) => self.query(&mut connection, hash, script).await,
        };
        let reply = reply.map_err(store_error)?;
        if self.windows == 1 {
            // A batch of one.
            let [value] = reply[..] else {
                return Err(invalid_reply());
            };
            return Reply::of_one_window(value, self.parameters[0].0, self.cost);
        }
        Reply::of_windows(&reply, self.windows)
    }

    async fn query<C: ConnectionLike + Send>(
        &self,
        connection: &mut C,
        hash: &str,
        script: &str,
    ) -> Result<Vec<i64>, RedisError> {
        eval(connection, hash, script, |command, script| {
            self.command(command, script)
        })
        .await
    }
}

/// A script call: `EVALSHA` with its hash; after a `NOSCRIPT` reply (a restarted or flushed
/// server) `EVAL` with the script itself, which Redis caches again (on the node that owns the
/// key, in a cluster). `command(name, hash or script)` builds either.
async fn eval<C: ConnectionLike + Send>(
    connection: &mut C,
    hash: &str,
    script: &str,
    command: impl Fn(&str, &str) -> Cmd,
) -> Result<Vec<i64>, RedisError> {
    match command("EVALSHA", hash).query_async(connection).await {
        Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            command("EVAL", script).query_async(connection).await
        }
        reply => reply,
    }
}

/// The error of a reply that is not what the script answers.
fn invalid_reply() -> StoreError {
    StoreError::with_source(
        StoreErrorKind::InvalidResponse,
        "the rate-limit script answered an unexpected reply",
    )
}

/// A time in a reply: never negative.
fn reply_time(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| invalid_reply())
}

impl Reply {
    /// One request's answer from `gcra.lua`: `2 × before + 1` when allowed, `2 × before` when
    /// denied, `-1` for a bucket of another type. `t` (nanoseconds per cell) and `cost` (as
    /// sent) give the TAT after an admission.
    fn of_one_window(reply: i64, t: u64, cost: u32) -> Result<Self, StoreError> {
        if reply == -1 {
            return Err(StoreError::with_source(
                StoreErrorKind::Other,
                "the bucket's name holds a redis value of another type (not ours)",
            ));
        }
        let encoded = reply_time(reply)?;
        let allowed = encoded & 1 == 1;
        let before = encoded >> 1;
        let after = if allowed {
            t.checked_mul(u64::from(cost))
                .and_then(|charge| before.checked_add(charge))
                .ok_or_else(invalid_reply)?
        } else {
            before
        };
        let mut times = ([0; MAX_WINDOWS], [0; MAX_WINDOWS]);
        times.0[0] = before;
        times.1[0] = after;
        Ok(Self {
            allowed,
            before: times.0,
            after: times.1,
        })
    }

    /// The answer of `gcra_windows.lua`: `{allowed, before_1, after_1, …}`.
    fn of_windows(reply: &[i64], windows: usize) -> Result<Self, StoreError> {
        if reply.len() != 1 + 2 * windows || windows > MAX_WINDOWS {
            return Err(invalid_reply());
        }
        let allowed = match reply[0] {
            0 => false,
            1 => true,
            _ => return Err(invalid_reply()),
        };
        let mut before = [0; MAX_WINDOWS];
        let mut after = [0; MAX_WINDOWS];
        for index in 0..windows {
            before[index] = reply_time(reply[1 + 2 * index])?;
            after[index] = reply_time(reply[2 + 2 * index])?;
        }
        Ok(Self {
            allowed,
            before,
            after,
        })
    }

    /// The decision, computed by the shared GCRA code from the state the script saw (times
    /// relative to the script's now, which is 0 here), after checking that the script decided
    /// the same.
    fn decision(&self, rule: &Rule, cost: u32) -> Result<Decision, StoreError> {
        let (outcome, decision) = rule.decide(&self.before, cost);
        let windows = rule.len();
        let agrees = match outcome {
            Outcome::Allow(after) => self.allowed && after[..windows] == self.after[..windows],
            Outcome::DenyFor(_) | Outcome::DenyForever => {
                !self.allowed && self.after == self.before
            }
        };
        if !agrees {
            return Err(StoreError::with_source(
                StoreErrorKind::InvalidResponse,
                "the rate-limit script and the local arithmetic disagree",
            ));
        }
        Ok(decision)
    }
}

fn store_error(error: RedisError) -> StoreError {
    StoreError::with_source(error_kind(&error), error)
}

/// What a [`RedisError`] means for the breaker and the failure policy.
fn error_kind(error: &RedisError) -> StoreErrorKind {
    if error.is_timeout() {
        StoreErrorKind::Timeout
    } else if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_cluster_error()
        // Replies of a server that is up but cannot serve: still loading, busy with a script,
        // a replica, out of memory, a cluster without a master for the slot.
        || matches!(
            error.code(),
            Some("LOADING" | "BUSY" | "READONLY" | "OOM" | "MASTERDOWN" | "CLUSTERDOWN" | "TRYAGAIN")
        )
    {
        StoreErrorKind::Unavailable
    } else if error.kind() == ErrorKind::UnexpectedReturnType {
        StoreErrorKind::InvalidResponse
    } else {
        StoreErrorKind::Other
    }
}

/// The future of one [`RedisStore`] decision.
///
/// Answers at once (without allocating) from the deny cache or an open circuit; otherwise
/// holds the boxed round trip to Redis (a network call costs far more than the box).
pub struct RedisCheck {
    state: State,
}

enum State {
    Ready(Ready<Result<Decision, StoreError>>),
    Pending(Pin<Box<dyn Future<Output = Result<Decision, StoreError>> + Send>>),
}

impl RedisCheck {
    fn ready(result: Result<Decision, StoreError>) -> Self {
        Self {
            state: State::Ready(std::future::ready(result)),
        }
    }
}

impl fmt::Debug for RedisCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCheck")
            .field(
                "state",
                &match self.state {
                    State::Ready(_) => "ready",
                    State::Pending(_) => "pending",
                },
            )
            .finish()
    }
}

impl Future for RedisCheck {
    type Output = Result<Decision, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Ready(ready) => Pin::new(ready).poll(cx),
            State::Pending(pending) => pending.as_mut().poll(cx),
        }
    }
}

/// Builds a [`RedisStore`]; see [`RedisStore::builder`].
pub struct RedisStoreBuilder<K> {
    nodes: Vec<String>,
    cluster: bool,
    prefix: Vec<u8>,
    timeout: Duration,
    probe_interval: Duration,
    policy: OnFailure<K>,
    deny_cache_capacity: usize,
}

impl<K> fmt::Debug for RedisStoreBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("nodes", &self.nodes.len())
            .field("cluster", &self.cluster)
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .field("timeout", &self.timeout)
            .field("probe_interval", &self.probe_interval)
            .field("policy", &self.policy)
            .field("deny_cache_capacity", &self.deny_cache_capacity)
            .finish()
    }
}

impl<K> RedisStoreBuilder<K> {
    fn new(nodes: Vec<String>, cluster: bool) -> Self {
        Self {
            nodes,
            cluster,
            prefix: b"tower-bouncer:".to_vec(),
            timeout: Duration::from_millis(50),
            probe_interval: Duration::from_secs(1),
            policy: OnFailure::Open,
            deny_cache_capacity: 10_000,
        }
    }

    /// The text before every bucket's name (default `"tower-bouncer:"`): give each limit that
    /// shares a Redis its own.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().into_bytes();
        self
    }

    /// How long one decision may wait for Redis (default 50 ms); then the failure policy
    /// answers. A request that waited for the answers in flight for its key (see "The local
    /// deny cache" on [`RedisStore`]) has what is left of this time.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long the circuit stays open after a failure before one request probes Redis again
    /// (default 1 s).
    #[must_use]
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// What to answer while Redis fails (default [`OnFailure::Open`]).
    #[must_use]
    pub fn on_failure(mut self, policy: OnFailure<K>) -> Self {
        self.policy = policy;
        self
    }

    /// How many keys the local deny cache may hold (default 10,000; 0 turns it off).
    #[must_use]
    pub fn deny_cache_capacity(mut self, capacity: usize) -> Self {
        self.deny_cache_capacity = capacity;
        self
    }

    /// Builds the store. The connection is made in the background: a Redis that is down now
    /// is a failure of the first requests (handled by the policy), not of the build.
    ///
    /// # Errors
    ///
    /// When a URL is invalid, no node is given, the timeout or the probe interval is zero, or
    /// no Tokio runtime is running (the connection lives on it).
    pub fn build(self) -> Result<RedisStore<K>, ConfigError> {
        if self.nodes.is_empty() {
            return Err(ConfigError::new("no redis url given"));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new("the redis timeout must not be zero"));
        }
        if self.probe_interval.is_zero() {
            return Err(ConfigError::new(
                "the redis probe interval must not be zero",
            ));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::new(
                "the redis store must be built inside a tokio runtime",
            ));
        }
        // Connection attempts run in the background; give them at least a second.
        let connect_timeout = self.probe_interval.max(Duration::from_secs(1));
        // Our own timeout bounds every call; the library's (500 ms by default) must not cut a
        // longer one short.
        let response_timeout = self.timeout.saturating_add(Duration::from_secs(1));
        let connection = if self.cluster {
            let client = ClusterClientBuilder::new(self.nodes.iter().map(String::as_str))
                .connection_timeout(connect_timeout)
                .response_timeout(response_timeout)
                .build()
                .map_err(|error| ConfigError::new(format!("invalid redis cluster: {error}")))?;
            let config = ClusterConfig::new().set_connection_timeout(connect_timeout);
            Connection::Cluster(client.get_pending_async_connection_with_config(config))
        } else {
            let client = ::redis::Client::open(self.nodes[0].as_str())
                .map_err(|error| ConfigError::new(format!("invalid redis url: {error}")))?;
            // One connection attempt per reconnection: the circuit breaker paces the retries.
            let config = ConnectionManagerConfig::new()
                .set_number_of_retries(0)
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(response_timeout));
            let manager = ConnectionManager::new_lazy_with_config(client, config)
                .map_err(|error| ConfigError::new(format!("invalid redis connection: {error}")))?;
            Connection::Single(manager)
        };
        let script_hash = ::redis::Script::new(SCRIPT).get_hash().to_owned();
        let batcher = match &connection {
            Connection::Single(manager) => Some(Arc::new(Batcher::new(
                manager.clone(),
                script_hash.clone(),
                self.timeout,
            ))),
            // One key per call on a cluster: buckets live on different nodes.
            Connection::Cluster(_) => None,
        };
        Ok(RedisStore {
            inner: Arc::new(Inner {
                connection,
                batcher,
                script_hash,
                windows_script_hash: ::redis::Script::new(WINDOWS_SCRIPT).get_hash().to_owned(),
                prefix: self.prefix.into_boxed_slice(),
                timeout: self.timeout,
                policy: self.policy,
                breaker: Breaker::new(nanos(self.probe_interval)),
                deny_cache: DenyCache::new(self.deny_cache_capacity),
                origin: Instant::now(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(text: &str) -> Quota {
        text.parse().unwrap()
    }

    fn reply(allowed: bool, before: u64, after: u64) -> Reply {
        Reply {
            allowed,
            before: [before, 0, 0, 0],
            after: [after, 0, 0, 0],
        }
    }

    #[test]
    fn one_number_per_request_decodes() {
        let ms: u64 = 1_000_000;
        let encoded = |value: u64| i64::try_from(value).unwrap();
        // Allowed with a bucket 300 ms ahead, cost 2 at 100 ms per cell.
        let allowed = Reply::of_one_window(encoded(2 * 300 * ms + 1), 100 * ms, 2).unwrap();
        assert!(allowed.allowed);
        assert_eq!((allowed.before[0], allowed.after[0]), (300 * ms, 500 * ms));
        let denied = Reply::of_one_window(encoded(2 * 300 * ms), 100 * ms, 2).unwrap();
        assert!(!denied.allowed);
        assert_eq!((denied.before[0], denied.after[0]), (300 * ms, 300 * ms));
        let full = Reply::of_one_window(1, 100 * ms, 1).unwrap();
        assert_eq!((full.before[0], full.after[0]), (0, 100 * ms));
        // Another type under our name, garbage, and an admission past u64.
        assert_eq!(
            Reply::of_one_window(-1, 100 * ms, 1).unwrap_err().kind(),
            StoreErrorKind::Other
        );
        for garbage in [-2, i64::MIN] {
            assert_eq!(
                Reply::of_one_window(garbage, 100 * ms, 1)
                    .unwrap_err()
                    .kind(),
                StoreErrorKind::InvalidResponse
            );
        }
        assert_eq!(
            Reply::of_one_window(i64::MAX, u64::MAX, 2)
                .unwrap_err()
                .kind(),
            StoreErrorKind::InvalidResponse
        );
    }

    #[test]
    fn a_reply_is_checked_against_the_shared_arithmetic() {
        // 10/s, burst 3: T = 100 ms, tau = 200 ms.
        let rule = Rule::new(&[quota("10/s").allow_burst(NonZeroU32::new(3).unwrap())]).unwrap();
        let ms = 1_000_000;
        let decision = reply(true, 0, 100 * ms).decision(&rule, 1).unwrap();
        assert!(decision.is_allowed());
        assert_eq!(decision.remaining(), 2);
        assert_eq!(decision.full_after(), Duration::from_millis(100));

        let decision = reply(false, 300 * ms, 300 * ms).decision(&rule, 1).unwrap();
        assert_eq!(decision.retry_after(), Some(Duration::from_millis(100)));

        // A script that allowed what the arithmetic denies is an invalid response.
        assert_eq!(
            reply(true, 300 * ms, 400 * ms)
                .decision(&rule, 1)
                .unwrap_err()
                .kind(),
            StoreErrorKind::InvalidResponse
        );
        assert!(reply(true, 0, 200 * ms).decision(&rule, 1).is_err());
        // Several windows: every window's TAT must agree.
        let rule = Rule::new(&[quota("10/s"), quota("60/min")]).unwrap();
        let both = Reply {
            allowed: true,
            before: [0; MAX_WINDOWS],
            after: [100 * ms, 1_000 * ms, 0, 0],
        };
        assert!(both.decision(&rule, 1).unwrap().is_allowed());
        let wrong = Reply {
            after: [100 * ms, 900 * ms, 0, 0],
            ..both
        };
        assert!(wrong.decision(&rule, 1).is_err());
    }

    #[test]
    fn the_failure_policies() {
        let q = quota("10/s").allow_burst(NonZeroU32::new(3).unwrap());
        let rule = Rule::new(&[q]).unwrap();
        let one = NonZeroU32::MIN;
        let error = || StoreError::new(StoreErrorKind::Timeout);

        let open = apply_policy::<u32>(&OnFailure::Open, Some(&1), &rule, one, error());
        let open = open.unwrap();
        assert!(open.is_allowed());
        assert_eq!(open.remaining(), 2);
        // Open still refuses what can never pass.
        let never = NonZeroU32::new(4).unwrap();
        let open = apply_policy::<u32>(&OnFailure::Open, Some(&1), &rule, never, error());
        assert_eq!(open.unwrap().retry_after(), None);

        let closed = apply_policy::<u32>(&OnFailure::Closed, Some(&1), &rule, one, error());
        assert_eq!(closed.unwrap_err().kind(), StoreErrorKind::Timeout);

        let local = OnFailure::Local(MemoryStore::<u32>::new());
        for _ in 0..3 {
            let decision = apply_policy(&local, Some(&1), &rule, one, error()).unwrap();
            assert!(decision.is_allowed());
        }
        let decision = apply_policy(&local, Some(&1), &rule, one, error()).unwrap();
        assert!(!decision.is_allowed());
        assert!(format!("{local:?}").starts_with("Local(MemoryStore"));
    }

    #[test]
    fn names_of_one_window_and_of_several() {
        let mut name = b"stale".to_vec();
        write_name(&mut name, b"p:", &"k", 1);
        assert_eq!(name, b"p:k");
        write_name(&mut name, b"p:", &"k", 3);
        assert_eq!(name, b"p:{k}#0");
        let rule = Rule::new(&[quota("10/s"), quota("60/min"), quota("1000/h")]).unwrap();
        let call = Call::new(&name, &rule, NonZeroU32::MIN, None);
        let packed = call.command("EVALSHA", "hash").get_packed_command();
        let text = String::from_utf8_lossy(&packed);
        for window in ["p:{k}#0", "p:{k}#1", "p:{k}#2"] {
            assert!(text.contains(window), "{text}");
        }
        assert!(!text.contains("p:{k}#3"), "{text}");
    }

    #[test]
    fn build_checks_its_configuration() {
        // Outside a runtime.
        let error = RedisStore::<u32>::builder("redis://127.0.0.1:1/")
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("tokio runtime"), "{error}");

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let bad = [
            RedisStore::<u32>::builder("not a url").build(),
            RedisStore::<u32>::builder("redis://127.0.0.1:1/")
                .timeout(Duration::ZERO)
                .build(),
            RedisStore::<u32>::builder("redis://127.0.0.1:1/")
                .probe_interval(Duration::ZERO)
                .build(),
            RedisStore::<u32>::cluster_builder(Vec::<String>::new()).build(),
        ];
        for result in bad {
            let error = result.unwrap_err().to_string();
            assert!(error.starts_with(|c: char| c.is_lowercase()), "{error}");
            assert!(!error.ends_with('.'), "{error}");
        }
        let store = RedisStore::<u32>::builder("redis://127.0.0.1:1/")
            .prefix("app:")
            .build()
            .unwrap();
        assert!(store.is_available());
        assert!(format!("{store:?}").contains("prefix: \"app:\""));
    }

    /// The future of a decision that goes to Redis is one allocation per request: it must stay
    /// within the allocator's thread-cache sizes (glibc: up to 1,032 bytes), where allocating
    /// and freeing are a few instructions; above, every request took the slow path (measured:
    /// 1,776 bytes before the rule and the rare paths' calls were boxed).
    #[tokio::test]
    async fn the_future_of_a_redis_decision_is_small() {
        let store: RedisStore<&'static str> =
            RedisStore::builder("redis://127.0.0.1:1/").build().unwrap();
        let check = store.check(&"key", &[quota("10/s")], NonZeroU32::MIN);
        let State::Pending(future) = &check.state else {
            panic!("a fresh key goes to redis");
        };
        let size = std::mem::size_of_val(&**future);
        assert!(size <= 1_000, "{size} bytes");
    }

    #[test]
    fn public_types_are_send_sync_clone() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        fn assert_send<T: Send + 'static>() {}
        assert_send_sync::<RedisStore<String>>();
        assert_send_sync::<OnFailure<String>>();
        assert_send::<RedisCheck>();
    }
}
