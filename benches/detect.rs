//! The cost of misconfiguration detection and metrics on the allow path (issue 8: at most 3 %).
//!
//! The stack is `ClientIpLayer` (socket peer) + `RateLimitLayer` (in-memory store, a quota no
//! request exceeds) over a service that answers at once; requests come from 1024 clients in
//! turn and are built outside the timed section. Variants:
//!
//! - `detection_off`: `detect_misconfiguration(false)`, no metrics recorder;
//! - `detection_on`: the default detection, no metrics recorder;
//! - `detection_on_prometheus` (feature `metrics`): the default detection, with
//!   `metrics-exporter-prometheus`'s recorder installed (it stays installed: this variant runs
//!   last), then paired with the same stack recording into a no-op recorder.
//!
//! After the first two, the bench also runs both stacks in alternating batches and prints
//! the median ratio of adjacent pairs (`detection off → on: median of 2001 paired ratios
//! 1.0xx`), which a busy machine disturbs far less than two benchmarks run one after the
//! other.
//!
//! ```text
//! cargo bench --bench detect --features metrics
//! ```
//!
//! Measured 2026-11-22 on the shared 2-core development machine (load ≈ 5), paired medians:
//! noise floor 0.998–1.005; detection off → on 0.991–1.014; metrics no-op recorder →
//! Prometheus recorder 1.022–1.036; neither → both 1.036–1.048. Criterion's own sequential
//! numbers vary by ±30 % between runs on that machine: read the paired ratios.

#![allow(missing_docs)] // criterion's macros generate undocumented public functions

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use http::{Request, Response};
use tower::{service_fn, Service, ServiceBuilder};
use tower_bouncer::client_ip::{PeerAddr, SocketPeer};
use tower_bouncer::rate_limit::{Quota, RateLimitLayer};
use tower_bouncer::ClientIpLayer;

const CLIENTS: u32 = 1024;

fn stack(
    detection: bool,
) -> impl Service<Request<()>, Response = Response<&'static str>, Error = Infallible> + Clone {
    let quota = Quota::per_second(NonZeroU32::new(u32::MAX).unwrap())
        .allow_burst(NonZeroU32::new(1_000_000).unwrap());
    ServiceBuilder::new()
        .layer(ClientIpLayer::new(SocketPeer::new()).detect_misconfiguration(detection))
        .layer(RateLimitLayer::new(quota))
        .service(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new("ok"))
        }))
}

fn requests(batch: u32, offset: u32) -> Vec<Request<()>> {
    (0..batch)
        .map(|i| {
            let n = (offset + i) % CLIENTS;
            let [_, _, c, d] = n.to_be_bytes();
            let mut request = Request::new(());
            request.headers_mut().insert(
                http::header::USER_AGENT,
                http::HeaderValue::from_static("bench/1.0"),
            );
            request.extensions_mut().insert(PeerAddr(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(198, 51, c, d)),
                40_000,
            )));
            request
        })
        .collect()
}

fn run<S>(service: &mut S, batch: Vec<Request<()>>)
where
    S: Service<Request<()>, Response = Response<&'static str>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    for request in batch {
        let future = pin!(service.call(request));
        match future.poll(&mut cx) {
            Poll::Ready(Ok(response)) => {
                assert_eq!(response.status(), 200);
                black_box(response);
            }
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => unreachable!("every layer answers at once here"),
        }
    }
}

fn variant(c: &mut Criterion, name: &str, detection: bool) {
    const BATCH: u32 = 256;
    let mut service = stack(detection);
    let mut offset = 0;
    c.bench_function(name, |b| {
        b.iter_batched(
            || {
                offset = (offset + BATCH) % CLIENTS;
                requests(BATCH, offset)
            },
            |batch| run(&mut service, batch),
            BatchSize::SmallInput,
        )
    });
}

/// The time of one batch, request building excluded.
fn timed<S>(service: &mut S, batch: Vec<Request<()>>) -> Duration
where
    S: Service<Request<()>, Response = Response<&'static str>, Error = Infallible>,
{
    let start = Instant::now();
    run(service, batch);
    start.elapsed()
}

/// On a shared, busy machine two benchmarks run one after the other see different loads.
/// This runs the two stacks in small alternating batches instead (ABBA order, so neither
/// always goes first), takes the ratio of each adjacent pair, and prints the median of those
/// ratios — the figure issue 8 asks for — with the 10th percentile of each side's times.
fn interleaved(
    label: &str,
    mut base: impl FnMut(Vec<Request<()>>) -> Duration,
    mut with: impl FnMut(Vec<Request<()>>) -> Duration,
) {
    const ROUNDS: usize = 2001;
    const BATCH: u32 = 512;
    let (mut a, mut b, mut ratios) = (
        Vec::with_capacity(ROUNDS),
        Vec::with_capacity(ROUNDS),
        Vec::with_capacity(ROUNDS),
    );
    for round in 0..ROUNDS {
        let offset = (round as u32 * 7) % CLIENTS;
        let (x, y) = if round % 2 == 0 {
            let x = base(requests(BATCH, offset));
            (x, with(requests(BATCH, offset)))
        } else {
            let y = with(requests(BATCH, offset));
            (base(requests(BATCH, offset)), y)
        };
        ratios.push(y.as_secs_f64() / x.as_secs_f64());
        a.push(x);
        b.push(y);
    }
    a.sort();
    b.sort();
    ratios.sort_by(f64::total_cmp);
    let per = |d: Duration| d.as_nanos() as f64 / f64::from(BATCH);
    let (p10_a, p10_b) = (per(a[ROUNDS / 10]), per(b[ROUNDS / 10]));
    println!(
        "{label}: median of {ROUNDS} paired ratios {:.4} (quartiles {:.4}–{:.4}); \
         10th percentile {p10_a:.1} → {p10_b:.1} ns/request",
        ratios[ROUNDS / 2],
        ratios[ROUNDS / 4],
        ratios[3 * ROUNDS / 4],
    );
}

fn allow_path(c: &mut Criterion) {
    variant(c, "allow_path_256/detection_off", false);
    variant(c, "allow_path_256/detection_on", true);
    let (mut off, mut on, mut off_again) = (stack(false), stack(true), stack(false));
    interleaved(
        "noise floor, detection off → off",
        |batch| timed(&mut off, batch),
        |batch| timed(&mut off_again, batch),
    );
    interleaved(
        "detection off → on",
        |batch| timed(&mut off, batch),
        |batch| timed(&mut on, batch),
    );
    #[cfg(feature = "metrics")]
    {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("no recorder installed yet");
        variant(c, "allow_path_256/detection_on_prometheus", true);
        // The metrics' cost: the same service, recording nowhere (a no-op recorder set for the
        // batch) or into the Prometheus recorder.
        let noop = metrics::NoopRecorder;
        let mut recording = on.clone();
        interleaved(
            "detection on, metrics: no recorder → prometheus recorder",
            |batch| metrics::with_local_recorder(&noop, || timed(&mut on, batch)),
            |batch| timed(&mut recording, batch),
        );
        // Both together, against neither.
        let (mut bare, mut full) = (stack(false), stack(true));
        interleaved(
            "detection off and no recorder → detection on and prometheus recorder",
            |batch| metrics::with_local_recorder(&noop, || timed(&mut bare, batch)),
            |batch| timed(&mut full, batch),
        );
    }
}

criterion_group!(benches, allow_path);
criterion_main!(benches);
