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
//!   last).
//!
//! ```text
//! cargo bench --bench detect --features metrics
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

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

fn allow_path(c: &mut Criterion) {
    variant(c, "allow_path_256/detection_off", false);
    variant(c, "allow_path_256/detection_on", true);
    #[cfg(feature = "metrics")]
    {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("no recorder installed yet");
        variant(c, "allow_path_256/detection_on_prometheus", true);
    }
}

criterion_group!(benches, allow_path);
criterion_main!(benches);
