//! The server `benches/load.sh` drives: `GET /` → `200 ok`, behind nothing (bare Axum), behind
//! tower-bouncer (socket-peer or trusted `X-Forwarded-For` source + the in-memory rate limit),
//! or behind tower_governor 0.8 with the same quota, so that their throughput can be compared
//! request for request.
//!
//! ```text
//! cargo run --release --example load_target -- --mode MODE [--quota N/s|N/min|N/h]
//!     [--listen ADDR] [--exit-after SECS] [--redis URL]
//! ```
//!
//! It prints `listening on ADDR` once it accepts connections (`--listen 127.0.0.1:0` picks a
//! free port). Every mode serves with Axum's connect info and the same single-threaded Tokio
//! runtime, so the modes differ only by their middleware. Run `--help` for the modes.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use std::convert::Infallible;

use axum::extract::Request;
use axum::response::Response;
use axum::routing::get;
use axum::{Router, ServiceExt};
use tokio::net::TcpListener;
use tower::{Layer, Service, ServiceBuilder};
use tower_bouncer::client_ip::{Detection, SocketPeer, TrustedRanges, XForwardedFor};
use tower_bouncer::rate_limit::{Quota, RateLimitLayer};
use tower_bouncer::ClientIpLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;

const USAGE: &str = "\
load_target: the server of the load benchmark (benches/load.sh)

USAGE:
  cargo run --release --example load_target -- --mode MODE [OPTIONS]

MODES:
  bare       plain Axum, no middleware
  peer       tower-bouncer: socket-peer source + rate limit (in-memory store)
  xff        tower-bouncer: rightmost-untrusted X-Forwarded-For, loopback trusted + rate limit
             (misconfiguration detection on, as by default)
  xff-plain  xff with misconfiguration detection off and no metrics recorder
  xff-metrics  xff with detection on and a Prometheus recorder installed (feature metrics):
             with xff-plain, the cost of detection and metrics
  governor   tower_governor 0.8 keyed on the peer IP, the same quota
  redis      tower-bouncer: socket-peer source + rate limit in Redis (--redis URL; feature
             redis), fail-closed: a Redis failure answers 503 (benches/load-redis.sh)

OPTIONS:
  --quota N/s | N/min | N/h   the limit per client (default 1000000000/s: nothing is denied);
                              1/min denies nearly every request
  --listen ADDR               default 127.0.0.1:0 (a free port)
  --exit-after SECS           exit after SECS seconds whatever happens (a safety bound)
  --placement outer|router    where the middleware sits (default outer): `outer` wraps the
                              whole Router (a denial costs no routing), `router` is
                              `Router::layer` (after routing); every middleware mode alike
  --redis URL                 the Redis of --mode redis (default redis://127.0.0.1:6379/)
  -h, --help                  this text

GET / answers 200 \"ok\" (or 429 from the limiter). Prints `listening on ADDR` when ready.
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bare,
    Peer,
    Xff,
    XffPlain,
    XffMetrics,
    Governor,
    Redis,
}

/// Where the middleware of a mode sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Around the whole `Router`: requests meet it before routing.
    Outer,
    /// `Router::layer`: after routing, around each route.
    Router,
}

#[derive(Debug)]
struct Options {
    mode: Mode,
    quota: Quota,
    listen: SocketAddr,
    exit_after: Option<Duration>,
    redis: String,
    placement: Placement,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut mode = None;
    let mut quota = "1000000000/s"
        .parse::<Quota>()
        .map_err(|error| error.to_string())?;
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut exit_after = None;
    let mut redis = "redis://127.0.0.1:6379/".to_owned();
    let mut placement = Placement::Outer;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--mode" => {
                mode = Some(match value.as_str() {
                    "bare" => Mode::Bare,
                    "peer" => Mode::Peer,
                    "xff" => Mode::Xff,
                    "xff-plain" => Mode::XffPlain,
                    "xff-metrics" => Mode::XffMetrics,
                    "governor" => Mode::Governor,
                    "redis" => Mode::Redis,
                    other => return Err(format!("unknown mode `{other}`")),
                })
            }
            "--quota" => {
                quota = value
                    .parse()
                    .map_err(|error| format!("--quota {value}: {error}"))?
            }
            "--listen" => {
                listen = value
                    .parse()
                    .map_err(|error| format!("--listen {value}: {error}"))?
            }
            "--exit-after" => {
                let seconds: u64 = value
                    .parse()
                    .map_err(|error| format!("--exit-after {value}: {error}"))?;
                exit_after = Some(Duration::from_secs(seconds));
            }
            "--redis" => redis = value,
            "--placement" => {
                placement = match value.as_str() {
                    "outer" => Placement::Outer,
                    "router" => Placement::Router,
                    other => return Err(format!("unknown placement `{other}`")),
                }
            }
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    let mode = mode.ok_or("--mode is required")?;
    Ok(Some(Options {
        mode,
        quota,
        listen,
        exit_after,
        redis,
        placement,
    }))
}

/// The service of `options.mode`, with its middleware where `options.placement` says, served
/// until `options.exit_after`.
async fn run(options: Options, listener: TcpListener) -> Result<(), String> {
    let router = Router::new().route("/", get(|| async { "ok" }));
    let quota = options.quota;
    // One arm per mode; `layered!` places the mode's middleware and serves it.
    macro_rules! layered {
        ($layer:expr) => {{
            let layer = $layer;
            match options.placement {
                Placement::Outer => {
                    serve(listener, Layer::layer(&layer, router), options.exit_after).await
                }
                Placement::Router => serve(listener, router.layer(layer), options.exit_after).await,
            }
        }};
    }
    let xff = || ClientIpLayer::new(XForwardedFor::rightmost_untrusted(TrustedRanges::loopback()));
    match options.mode {
        Mode::Bare => serve(listener, router, options.exit_after).await,
        Mode::Peer => layered!(ServiceBuilder::new()
            .layer(ClientIpLayer::new(SocketPeer::new()))
            .layer(RateLimitLayer::new(quota))),
        Mode::Xff => layered!(ServiceBuilder::new()
            .layer(xff())
            .layer(RateLimitLayer::new(quota))),
        Mode::XffPlain => layered!(ServiceBuilder::new()
            .layer(xff().detection(Detection::off()))
            .layer(RateLimitLayer::new(quota))),
        #[cfg(feature = "metrics")]
        Mode::XffMetrics => {
            // The recorder a Prometheus deployment installs; nothing scrapes it here, and
            // recording is the whole cost.
            let _handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .map_err(|error| format!("no Prometheus recorder: {error}"))?;
            layered!(ServiceBuilder::new()
                .layer(xff())
                .layer(RateLimitLayer::new(quota)))
        }
        #[cfg(not(feature = "metrics"))]
        Mode::XffMetrics => Err("--mode xff-metrics needs --features metrics".into()),
        #[cfg(feature = "redis")]
        Mode::Redis => {
            // Fail-closed: a Redis failure is a 503 that wrk counts as non-2xx, never a
            // silent "allowed" on the allow path.
            let store: tower_bouncer::store::RedisStore<tower_bouncer::rate_limit::MaskedIp> =
                tower_bouncer::store::RedisStore::builder(&options.redis)
                    .on_failure(tower_bouncer::store::OnFailure::Closed)
                    .build()
                    .map_err(|error| error.to_string())?;
            let limit = RateLimitLayer::builder(quota)
                .store(store)
                .build()
                .map_err(|error| error.to_string())?;
            layered!(ServiceBuilder::new()
                .layer(ClientIpLayer::new(SocketPeer::new()))
                .layer(limit))
        }
        #[cfg(not(feature = "redis"))]
        Mode::Redis => Err(format!(
            "--mode redis (--redis {}) needs --features redis",
            options.redis
        )),
        Mode::Governor => {
            let config = GovernorConfigBuilder::default()
                .period(quota.replenish_interval())
                .burst_size(quota.burst().get())
                .finish()
                .ok_or("tower_governor refused the quota")?;
            layered!(GovernorLayer::new(config))
        }
    }
}

/// Serves `service` with Axum's connect info until `exit_after` (if any) has passed.
async fn serve<S>(
    listener: TcpListener,
    service: S,
    exit_after: Option<Duration>,
) -> Result<(), String>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let serve = axum::serve(
        listener,
        ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(service),
    );
    let result = match exit_after {
        Some(limit) => match tokio::time::timeout(limit, serve).await {
            Ok(result) => result,
            Err(_elapsed) => Ok(()),
        },
        None => serve.await,
    };
    result.map_err(|error| error.to_string())
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("load_target: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("load_target: no tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Inside the runtime: the Redis store connects on it.
    runtime.block_on(async move {
        let listener = match TcpListener::bind(options.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("load_target: cannot listen on {}: {error}", options.listen);
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(address) => println!("listening on {address}"),
            Err(error) => {
                eprintln!("load_target: no local address: {error}");
                return ExitCode::FAILURE;
            }
        }
        match run(options, listener).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("load_target: {error}");
                ExitCode::FAILURE
            }
        }
    })
}
