//! Several windows against one (issue 9, "How fast"): two windows must cost at most 1.5× one
//! window, in the store and through the whole layer.
//!
//! ```text
//! cargo bench --bench policies
//! ```
//!
//! - `store/{one,two}_windows/{allow,deny}`: one decision of the memory store on a tracked key
//!   (the real monotonic clock). One window is a compare-and-swap on 8 bytes; two windows
//!   take the key's small lock for the decision.
//! - `layer/{one,two}_windows/{allow,deny}`: `RateLimitLayer` (client-IP key, memory store,
//!   IETF fields off) around a service that answers at once, called with a prepared request
//!   (building the request is not measured).
//!
//! Then, because a shared machine's load drifts between criterion's groups, the ratio itself
//! is measured interleaved: 21 rounds, each timing 100,000 decisions with one window and then
//! 100,000 with two, and the median ratio of the rounds is printed (`ratio ... median`),
//! with the target of 1.5.
// `criterion_group!` defines a public function it does not document.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use criterion::{criterion_group, BatchSize, Criterion};
use http::{Request, Response};
use tower::{service_fn, Service, ServiceBuilder};
use tower_bouncer::client_ip::{ClientIp, SourceKind};
use tower_bouncer::rate_limit::{Quota, RateLimitLayer};
use tower_bouncer::store::{MemoryStore, Store};

type Key = [u8; 16];

fn key(n: u64) -> Key {
    (u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)).to_le_bytes()
}

fn one() -> NonZeroU32 {
    NonZeroU32::MIN
}

/// Windows no benchmark can exhaust.
fn generous() -> [Quota; 2] {
    [
        Quota::per_second(NonZeroU32::MAX),
        Quota::per_hour(NonZeroU32::MAX),
    ]
}

/// Windows exhausted by the first request.
fn stingy() -> [Quota; 2] {
    [Quota::per_hour(one()), Quota::per_hour(one())]
}

fn store(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    let store: MemoryStore<Key> = MemoryStore::new();
    // A populated store, as in production.
    for n in 0..10_000 {
        store
            .check(&key(n), &stingy()[..1], one())
            .into_inner()
            .unwrap();
        store.check(&key(n), &stingy(), one()).into_inner().unwrap();
    }
    for (name, count) in [("one_window", 1), ("two_windows", 2)] {
        let allow = generous();
        let allow = &allow[..count];
        group.bench_function(format!("{name}/allow"), |b| {
            b.iter(|| {
                black_box(
                    store
                        .check(black_box(&key(1_000_000)), allow, one())
                        .into_inner(),
                )
            })
        });
        let deny = stingy();
        let deny = &deny[..count];
        group.bench_function(format!("{name}/deny"), |b| {
            b.iter(|| black_box(store.check(black_box(&key(7)), deny, one()).into_inner()))
        });
    }
    group.finish();
}

fn request() -> Request<()> {
    Request::builder()
        .uri("/")
        .extension(ClientIp::new([203, 0, 113, 7].into(), SourceKind::Peer))
        .body(())
        .unwrap()
}

/// Calls the service once and polls its future once: every future here is ready at once.
fn call<S>(service: &mut S, request: Request<()>) -> Response<String>
where
    S: Service<Request<()>, Response = Response<String>, Error = Infallible>,
{
    let mut context = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(())) = service.poll_ready(&mut context) else {
        unreachable!("always ready")
    };
    match pin!(service.call(request)).poll(&mut context) {
        Poll::Ready(Ok(response)) => response,
        _ => unreachable!("the memory store and the inner service answer at once"),
    }
}

fn layer(c: &mut Criterion) {
    let mut group = c.benchmark_group("layer");
    for (name, count) in [("one_window", 1), ("two_windows", 2)] {
        for (path, windows) in [("allow", generous()), ("deny", stingy())] {
            let mut builder = RateLimitLayer::builder(windows[0]);
            if count == 2 {
                builder = builder.and_quota("per-hour", windows[1]);
            }
            let layer = builder.build().unwrap();
            let mut service = ServiceBuilder::new().layer(layer).service(service_fn(
                |_request: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) },
            ));
            // Exhaust the stingy windows; warm the generous ones.
            call(&mut service, request());
            group.bench_function(format!("{name}/{path}"), |b| {
                b.iter_batched(
                    request,
                    |request| black_box(call(&mut service, request)),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, store, layer);

const ROUNDS: usize = 21;
const PER_ROUND: u32 = 100_000;

/// The median over interleaved rounds of (time of `two`) / (time of `one`).
fn interleaved_ratio(mut one: impl FnMut(), mut two: impl FnMut()) -> (f64, f64, f64) {
    let mut ratios = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            one();
        }
        let first = start.elapsed();
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            two();
        }
        ratios.push(start.elapsed().as_secs_f64() / first.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    (ratios[0], ratios[ROUNDS / 2], ratios[ROUNDS - 1])
}

fn ratios() {
    let store: MemoryStore<Key> = MemoryStore::new();
    let (allow, deny) = (generous(), stingy());
    store
        .check(&key(7), &deny[..1], one())
        .into_inner()
        .unwrap();
    store.check(&key(7), &deny, one()).into_inner().unwrap();
    let decide = |windows: &[Quota], n: u64| {
        let _ = black_box(store.check(black_box(&key(n)), windows, one()).into_inner());
    };
    report(
        "store allow",
        interleaved_ratio(|| decide(&allow[..1], 1), || decide(&allow, 1)),
    );
    report(
        "store deny",
        interleaved_ratio(|| decide(&deny[..1], 7), || decide(&deny, 7)),
    );

    for (path, windows) in [("allow", generous()), ("deny", stingy())] {
        let build = |count: usize| {
            let mut builder = RateLimitLayer::builder(windows[0]);
            if count == 2 {
                builder = builder.and_quota("per-hour", windows[1]);
            }
            let mut service = ServiceBuilder::new()
                .layer(builder.build().unwrap())
                .service(service_fn(|_request: Request<()>| async {
                    Ok::<_, Infallible>(Response::new(String::new()))
                }));
            call(&mut service, request());
            service
        };
        let (mut single, mut double) = (build(1), build(2));
        // The request is built inside the loop for both: the same cost on both sides.
        report(
            &format!("layer {path}"),
            interleaved_ratio(
                || {
                    black_box(call(&mut single, request()));
                },
                || {
                    black_box(call(&mut double, request()));
                },
            ),
        );
    }
}

fn report(name: &str, (low, median, high): (f64, f64, f64)) {
    println!(
        "ratio two windows / one window, {name}: median {median:.2} (min {low:.2}, max {high:.2}; target <= 1.5)"
    );
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|arg| arg == "--bench") {
        ratios();
    }
}
