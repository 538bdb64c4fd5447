//! Batching of single-window decisions on one Redis server: the requests that reach the store
//! while a batch waits to be sent join it, and one script call decides them all, in order, at
//! one "now" (`gcra.lua` takes any number of buckets).
//!
//! The first request of a batch schedules a task that sends it; every request that arrives
//! before that task runs (the other connections served in the same turn of the runtime) joins
//! the batch. Nothing waits on purpose: a lone request is sent as soon as the task runs, a
//! batch of one. Under load a batch amortises what dominates Redis' cost of a decision — the
//! script call, `TIME`, and one `GET` and one `SET` per bucket rather than per request — and
//! the client's command encoding and reply parsing.
//!
//! Each request gets its own answer or error. The script call has the store's timeout, which
//! bounds a fresh request's wait (it joined the batch at most one turn of the runtime before
//! the call left); a request that first waited for another's answer keeps a timer for what is
//! left of its own. A request whose caller gave up while queued is left out of the batch. The
//! sending task is spawned on the runtime, so a caller that gives up does not strand the
//! others.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{Cmd, RedisError};
use tokio::sync::oneshot;

use super::{error_kind, eval, Reply, SCRIPT};
use crate::store::{StoreError, StoreErrorKind};

/// The most requests in one script call (a batch holds Redis for a few microseconds per
/// request); more wait for the next call, sent at once.
pub(super) const MAX_BATCH: usize = 128;

/// The queue of requests waiting for the next script call, shared by every clone of a store.
pub(crate) struct Batcher {
    connection: ConnectionManager,
    script_hash: String,
    timeout: Duration,
    queue: Mutex<Queue>,
}

struct Queue {
    items: Vec<Item>,
    /// Whether a task is on its way to send `items`.
    scheduled: bool,
}

/// Held by a scheduled task until it runs: a task dropped unrun (its runtime shut down) clears
/// `scheduled`, so that the next request schedules another instead of queueing forever.
struct Unscheduled(Option<Arc<Batcher>>);

impl Drop for Unscheduled {
    fn drop(&mut self) {
        if let Some(batcher) = self.0.take() {
            batcher
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .scheduled = false;
        }
    }
}

/// One request: its bucket, `T`, `tau` and cost (as the script takes them), and where its
/// answer goes.
struct Item {
    name: Vec<u8>,
    t: u64,
    tau: u64,
    cost: u32,
    answer: oneshot::Sender<Result<Reply, StoreError>>,
}

impl Batcher {
    pub(crate) fn new(
        connection: ConnectionManager,
        script_hash: String,
        timeout: Duration,
    ) -> Self {
        Self {
            connection,
            script_hash,
            timeout,
            queue: Mutex::new(Queue {
                items: Vec::new(),
                scheduled: false,
            }),
        }
    }

    /// Decides one request with the next batch.
    pub(crate) async fn decide(
        self: &Arc<Self>,
        name: Vec<u8>,
        (t, tau): (u64, u64),
        cost: u32,
    ) -> Result<Reply, StoreError> {
        let (answer, answered) = oneshot::channel();
        let first = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.items.push(Item {
                name,
                t,
                tau,
                cost,
                answer,
            });
            !std::mem::replace(&mut queue.scheduled, true)
        };
        if first && !self.schedule() {
            // Outside a runtime (the connection could not work there either): send here (boxed:
            // the call is a large future, and this future stays small without it).
            Box::pin(Arc::clone(self).send()).await;
        }
        answered.await.unwrap_or_else(|_| {
            // The sending task was dropped with the runtime before it answered.
            Err(StoreError::with_source(
                StoreErrorKind::Unavailable,
                "the redis batch was dropped before it was sent",
            ))
        })
    }

    /// Spawns a task that sends the queue; `false` outside a Tokio runtime.
    fn schedule(self: &Arc<Self>) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let guard = Unscheduled(Some(Arc::clone(self)));
        // Boxed: `send` schedules itself, and a recursive future type must be named.
        let send: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            let mut guard = guard;
            if let Some(batcher) = guard.0.take() {
                batcher.send().await;
            }
        });
        runtime.spawn(send);
        true
    }

    /// Sends what is queued (at most [`MAX_BATCH`] requests: a task of its own takes the
    /// rest, at once).
    async fn send(self: Arc<Self>) {
        let batch: Vec<Item> = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            // Requests whose caller gave up (timed out while queued) are not sent.
            queue.items.retain(|item| !item.answer.is_closed());
            if queue.items.len() <= MAX_BATCH {
                // This call takes everything: the next request schedules the next one.
                queue.scheduled = false;
                std::mem::take(&mut queue.items)
            } else {
                let batch = queue.items.drain(..MAX_BATCH).collect();
                if !self.schedule() {
                    // No runtime to send the rest on: the next request sends it.
                    queue.scheduled = false;
                }
                batch
            }
        };
        if batch.is_empty() {
            return;
        }
        let mut connection = self.connection.clone();
        let replies = tokio::time::timeout(
            self.timeout,
            eval(
                &mut connection,
                &self.script_hash,
                SCRIPT,
                |name, script| command(name, script, &batch),
            ),
        )
        .await;
        answer(batch, replies);
    }
}

/// `EVALSHA hash N name… (T tau n)…` (or `EVAL script …`) for `batch`.
fn command(command: &str, script: &str, batch: &[Item]) -> Cmd {
    script_command(
        command,
        script,
        batch
            .iter()
            .map(|item| (&item.name[..], (item.t, item.tau), item.cost)),
        None,
    )
}

/// `EVALSHA hash N name… R (T tau)… (n × 128 + rule)… [now_s now_ns]` (or `EVAL script …`):
/// the call of `gcra.lua` for the requests `(bucket, (T, tau), cost)`, in order, with each
/// distinct `(T, tau)` sent once; `now` for tests only. At most [`MAX_BATCH`] requests, so at
/// most 128 rules: a rule's index fits in the 7 low bits.
pub(super) fn script_command<'a>(
    command: &str,
    script: &str,
    requests: impl Iterator<Item = (&'a [u8], (u64, u64), u32)> + Clone,
    now: Option<(u64, u32)>,
) -> Cmd {
    let mut cmd = ::redis::cmd(command);
    cmd.arg(script).arg(requests.clone().count());
    // The rules in order of first use, and each request's index in them.
    let mut rules: Vec<(u64, u64)> = Vec::new();
    let mut packed: Vec<u64> = Vec::new();
    for (name, rule, cost) in requests {
        cmd.arg(name);
        let index = match rules.iter().position(|known| *known == rule) {
            Some(index) => index,
            None => {
                rules.push(rule);
                rules.len() - 1
            }
        };
        // `index` < MAX_BATCH = 128 (one rule per request at most).
        packed.push(u64::from(cost) << 7 | index as u64);
    }
    cmd.arg(rules.len());
    for (t, tau) in &rules {
        cmd.arg(*t).arg(*tau);
    }
    for value in packed {
        cmd.arg(value);
    }
    if let Some((seconds, nanos)) = now {
        cmd.arg(seconds).arg(nanos);
    }
    cmd
}

/// Gives each request of `batch` its answer from the script's reply (or the call's error).
fn answer(
    batch: Vec<Item>,
    replies: Result<Result<Vec<i64>, RedisError>, tokio::time::error::Elapsed>,
) {
    let replies = match replies {
        Ok(Ok(replies)) if replies.len() == batch.len() => replies,
        failed => {
            // One error per request, of the call's kind (errors do not clone).
            let (kind, message) = match failed {
                Ok(Ok(_)) => (
                    StoreErrorKind::InvalidResponse,
                    "the rate-limit script answered an unexpected reply".to_owned(),
                ),
                Ok(Err(error)) => (error_kind(&error), error.to_string()),
                Err(_elapsed) => (
                    StoreErrorKind::Timeout,
                    "redis did not answer within the timeout".to_owned(),
                ),
            };
            for item in batch {
                let _ = item
                    .answer
                    .send(Err(StoreError::with_source(kind, message.clone())));
            }
            return;
        }
    };
    for (item, reply) in batch.into_iter().zip(replies) {
        // The receiver may be gone (its caller timed out): nothing to do then.
        let _ = item
            .answer
            .send(Reply::of_one_window(reply, item.t, item.cost));
    }
}
