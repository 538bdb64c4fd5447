//! The tower-bouncer example server: a demo, a debugging tool to run behind your own proxy, and
//! the target of the end-to-end tests. Its command line and JSON are a stable contract.
//!
//! ```text
//! cargo run --release --example server -- [OPTIONS]
//! ```
//! Run it with `--help` for the options. `GET /` answers the resolved client IP, the source that
//! resolved it and the rate-limit key; `GET /explain` shows what every configured source
//! resolves for this request, and why.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tower_bouncer::client_ip::{
    Chain, ClientIp, ClientIpLayer, Forwarded, OnUnresolved, RequestView, ResolveClientIp,
    SocketPeer, TrustedHeader, TrustedRanges, XForwardedFor,
};
#[cfg(feature = "signed")]
use tower_bouncer::client_ip::{SignedHeader, SigningKeys};
use tower_bouncer::explain::Explain;
use tower_bouncer::rate_limit::{
    ExtractKey, IpKey, MaskedIp, Policy, Quota, RateLimitLayer, Tiers,
};

const USAGE: &str = "\
tower-bouncer example server

USAGE:
  cargo run --release --example server -- [OPTIONS]

OPTIONS:
  --listen ADDR              address to listen on (default 127.0.0.1:3000)
  --source SPEC              repeatable; several form a chain, the first that resolves wins.
                             SPEC: peer | xff | xff-hops:N | forwarded | forwarded-hops:N |
                                   header:NAME | signed:NAME          (default: peer)
  --trust RANGE              repeatable: a CIDR or address, or loopback | private | cgnat |
                             cloudflare. The proxies whose headers are believed
  --signing-key KID:SECRET   repeatable (key rotation); SECRET is base64url, >= 32 bytes
  --on-unresolved peer|reject      default reject
  --quota N/s | N/min | N/h  rate limit per client; no limit when absent. Repeatable: several
                             windows (e.g. --quota 10/s --quota 1000/h), all must admit; a
                             denial charges none. The IETF fields name them per-second,
                             per-minute, per-hour (one window: default)
  --burst N                  default N (with one --quota)
  --tier-header NAME         DEMO ONLY, UNSAFE: the client's tier is read from this request
                             header, which the client controls: anyone can claim any tier. In
                             a real service the tier comes from your authentication layer
                             (Tiers::from_extension), never from a header
  --tier NAME=QUOTA          repeatable (needs --tier-header and a --quota, the default for an
                             unknown or absent tier): requests whose tier header is NAME get
                             QUOTA; repeat a NAME for several windows. Tiers never share
                             buckets
  --ipv6-prefix LEN          IPv6 clients share a bucket per prefix (default 64)
  --ipv4-prefix LEN          IPv4 clients share a bucket per prefix (default 32)
  --hide-retry-after         no timing hint at all in 429 responses
  --ratelimit-headers        IETF RateLimit-Policy / RateLimit fields
  --redis URL                keep the buckets in Redis (redis://HOST:PORT/): one limit shared
                             by every server on the same Redis (build with --features redis)
  --redis-failure open|closed|local   while Redis fails: allow, answer 503, or limit in
                             memory on this server alone (default open)
  --proxy-protocol RANGE     repeatable: connections from RANGE must open with a PROXY protocol
                             v1/v2 header; its source address becomes the peer (a CIDR, an
                             address or a preset, as --trust; needs feature proxy-protocol)
  -h, --help                 this text

ENDPOINTS:
  GET /         {\"ip\":\"203.0.113.7\",\"source\":\"xff\",\"key\":\"203.0.113.7\"}
  GET /explain  what each configured source resolves for this request, and why
";

#[derive(Debug)]
struct Options {
    listen: SocketAddr,
    sources: Vec<String>,
    trust: TrustedRanges,
    trust_given: bool,
    #[cfg_attr(not(feature = "signed"), allow(dead_code))]
    signing_keys: Vec<String>,
    on_unresolved: OnUnresolved,
    quotas: Vec<Quota>,
    burst: Option<NonZeroU32>,
    tier_header: Option<HeaderName>,
    tiers: Vec<(String, Quota)>,
    ipv6_prefix: u8,
    ipv4_prefix: u8,
    hide_retry_after: bool,
    ratelimit_headers: bool,
    #[cfg_attr(not(feature = "proxy-protocol"), allow(dead_code))]
    proxy_protocol: Option<TrustedRanges>,
    redis: Option<String>,
    redis_failure: Option<RedisFailure>,
}

/// `--redis-failure`: what the Redis store answers while Redis fails.
#[derive(Debug, Clone, Copy)]
enum RedisFailure {
    Open,
    Closed,
    Local,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
        sources: Vec::new(),
        trust: TrustedRanges::new(),
        trust_given: false,
        signing_keys: Vec::new(),
        on_unresolved: OnUnresolved::Reject,
        quotas: Vec::new(),
        burst: None,
        tier_header: None,
        tiers: Vec::new(),
        ipv6_prefix: 64,
        ipv4_prefix: 32,
        hide_retry_after: false,
        ratelimit_headers: false,
        proxy_protocol: None,
        redis: None,
        redis_failure: None,
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value (see --help)"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => {
                let text = value("--listen")?;
                options.listen = text.parse().map_err(|_| {
                    format!("--listen: `{text}` is not an address like 127.0.0.1:3000")
                })?;
            }
            "--source" => options.sources.push(value("--source")?),
            "--trust" => {
                let ranges = parse_ranges("--trust", &value("--trust")?)?;
                options.trust = std::mem::take(&mut options.trust).with(ranges);
                options.trust_given = true;
            }
            "--signing-key" => options.signing_keys.push(value("--signing-key")?),
            "--on-unresolved" => {
                options.on_unresolved = match value("--on-unresolved")?.as_str() {
                    "peer" => OnUnresolved::FallbackToPeer,
                    "reject" => OnUnresolved::Reject,
                    other => {
                        return Err(format!(
                            "--on-unresolved: `{other}` is not `peer` or `reject`"
                        ))
                    }
                }
            }
            "--quota" => {
                let text = value("--quota")?;
                options
                    .quotas
                    .push(text.parse().map_err(|error| format!("--quota: {error}"))?);
            }
            "--tier-header" => {
                let text = value("--tier-header")?;
                options.tier_header = Some(
                    HeaderName::try_from(text.as_str())
                        .map_err(|_| format!("--tier-header: `{text}` is not a header name"))?,
                );
            }
            "--tier" => {
                let text = value("--tier")?;
                let Some((name, quota)) = text.split_once('=') else {
                    return Err(format!(
                        "--tier: `{text}` is not NAME=QUOTA (e.g. paid=100/min)"
                    ));
                };
                if name.is_empty() {
                    return Err(format!("--tier: `{text}` has an empty tier name"));
                }
                let quota = quota
                    .parse()
                    .map_err(|error| format!("--tier {name}: {error}"))?;
                options.tiers.push((name.to_owned(), quota));
            }
            "--burst" => {
                let text = value("--burst")?;
                options.burst = Some(
                    text.parse()
                        .map_err(|_| format!("--burst: `{text}` is not a whole number >= 1"))?,
                );
            }
            "--ipv6-prefix" => {
                options.ipv6_prefix = parse_prefix("--ipv6-prefix", &value("--ipv6-prefix")?, 128)?
            }
            "--ipv4-prefix" => {
                options.ipv4_prefix = parse_prefix("--ipv4-prefix", &value("--ipv4-prefix")?, 32)?
            }
            "--hide-retry-after" => options.hide_retry_after = true,
            "--ratelimit-headers" => options.ratelimit_headers = true,
            "--proxy-protocol" => {
                let text = value("--proxy-protocol")?;
                if !cfg!(feature = "proxy-protocol") {
                    return Err(
                        "--proxy-protocol needs the example built with --features proxy-protocol"
                            .into(),
                    );
                }
                let ranges = parse_ranges("--proxy-protocol", &text)?;
                let known = options.proxy_protocol.take().unwrap_or_default();
                options.proxy_protocol = Some(known.with(ranges));
            }
            "--redis" => options.redis = Some(value("--redis")?),
            "--redis-failure" => {
                options.redis_failure = Some(match value("--redis-failure")?.as_str() {
                    "open" => RedisFailure::Open,
                    "closed" => RedisFailure::Closed,
                    "local" => RedisFailure::Local,
                    other => {
                        return Err(format!(
                            "--redis-failure: `{other}` is not open, closed or local"
                        ))
                    }
                })
            }
            other => return Err(format!("unknown option `{other}` (see --help)")),
        }
    }
    if options.sources.is_empty() {
        options.sources.push("peer".to_owned());
    }
    if options.burst.is_some() && options.quotas.len() != 1 {
        return Err("--burst needs exactly one --quota".into());
    }
    if !options.tiers.is_empty() || options.tier_header.is_some() {
        if options.tier_header.is_none() {
            return Err("--tier needs --tier-header NAME (demo only)".into());
        }
        if options.tiers.is_empty() {
            return Err("--tier-header needs at least one --tier NAME=QUOTA".into());
        }
        if options.quotas.is_empty() {
            return Err("--tier needs a --quota: the policy of unknown and absent tiers".into());
        }
    }
    if options.redis.is_some() && options.quotas.is_empty() {
        return Err("--redis needs a --quota".into());
    }
    if options.redis_failure.is_some() && options.redis.is_none() {
        return Err("--redis-failure needs --redis".into());
    }
    if options.redis.is_some() && options.tier_header.is_some() {
        return Err("--tier-header is a memory-store demo: not with --redis".into());
    }
    Ok(Some(options))
}

/// A `--trust` or `--proxy-protocol` value: a preset (`loopback`, `private`, `cgnat`,
/// `cloudflare`), else a CIDR or an address. `any` is refused: a flag must not be able to make
/// every peer a trusted proxy (any client could then choose its own IP).
fn parse_ranges(flag: &str, text: &str) -> Result<TrustedRanges, String> {
    if let Some(preset) = TrustedRanges::preset(text) {
        return Ok(preset);
    }
    if text.trim().eq_ignore_ascii_case("any") {
        return Err(format!(
            "{flag}: `any` is refused: trusting every address lets any client choose its own IP; give your proxies' addresses (a CIDR or an address, or loopback, private, cgnat, cloudflare)"
        ));
    }
    text.parse::<TrustedRanges>().map_err(|error| {
        format!(
            "{flag}: `{text}` is neither a CIDR nor a preset (loopback, private, cgnat, cloudflare): {error}"
        )
    })
}

fn parse_prefix(flag: &str, text: &str, max: u8) -> Result<u8, String> {
    match text.parse::<u8>() {
        Ok(len) if (1..=max).contains(&len) => Ok(len),
        _ => Err(format!(
            "{flag}: `{text}` is not a prefix length between 1 and {max}"
        )),
    }
}

fn build_sources(options: &Options) -> Result<Vec<Arc<dyn ResolveClientIp>>, String> {
    let trust = || options.trust.clone();
    let need_trust = |spec: &str| -> Result<(), String> {
        if options.trust_given {
            Ok(())
        } else {
            Err(format!(
                "--source {spec} reads a header only from trusted proxies: give --trust with your proxy's addresses"
            ))
        }
    };
    let hops = |spec: &str, text: &str| -> Result<u32, String> {
        text.parse::<u32>()
            .map_err(|_| format!("--source {spec}: `{text}` is not a hop count"))
    };
    let mut sources = Vec::new();
    for spec in &options.sources {
        let (kind, argument) = match spec.split_once(':') {
            Some((kind, argument)) => (kind, Some(argument)),
            None => (spec.as_str(), None),
        };
        let source: Arc<dyn ResolveClientIp> = match (kind, argument) {
            ("peer", None) => Arc::new(SocketPeer::new()),
            ("xff", None) => {
                need_trust(spec)?;
                Arc::new(XForwardedFor::rightmost_untrusted(trust()))
            }
            ("xff-hops", Some(n)) => {
                need_trust(spec)?;
                Arc::new(XForwardedFor::hop_count(hops(spec, n)?, trust()).map_err(|e| format!("--source {spec}: {e}"))?)
            }
            ("forwarded", None) => {
                need_trust(spec)?;
                Arc::new(Forwarded::rightmost_untrusted(trust()))
            }
            ("forwarded-hops", Some(n)) => {
                need_trust(spec)?;
                Arc::new(Forwarded::hop_count(hops(spec, n)?, trust()).map_err(|e| format!("--source {spec}: {e}"))?)
            }
            ("header", Some(name)) => {
                need_trust(spec)?;
                Arc::new(TrustedHeader::from_name(name, trust()).map_err(|e| format!("--source {spec}: {e}"))?)
            }
            #[cfg(feature = "signed")]
            ("signed", Some(name)) => {
                if options.signing_keys.is_empty() {
                    return Err(format!("--source {spec} needs at least one --signing-key KID:SECRET"));
                }
                let keys = SigningKeys::parse_kid_secrets(&options.signing_keys)
                    .map_err(|e| format!("--signing-key: {e}"))?;
                let name = HeaderName::try_from(name)
                    .map_err(|_| format!("--source {spec}: `{name}` is not a header name"))?;
                Arc::new(SignedHeader::new(name, keys))
            }
            _ => return Err(format!("--source: `{spec}` is not one of peer | xff | xff-hops:N | forwarded | forwarded-hops:N | header:NAME | signed:NAME")),
        };
        sources.push(source);
    }
    Ok(sources)
}

#[derive(Debug)]
struct App {
    key: IpKey,
    explain: Explain,
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn key_text(app: &App, request: &Request) -> Value {
    let Some(key) = app.key.extract_key(&RequestView::new(request)) else {
        return Value::Null;
    };
    // The key is the client's prefix: show its length when it is shorter than the address.
    let (len, full) = match key.ip() {
        std::net::IpAddr::V4(_) => (app.key.ipv4_prefix_len(), 32),
        std::net::IpAddr::V6(_) => (app.key.ipv6_prefix_len(), 128),
    };
    if len < full {
        Value::String(format!("{key}/{len}"))
    } else {
        Value::String(key.to_string())
    }
}

async fn root(app: Arc<App>, request: Request) -> Response {
    let Some(client) = request.extensions().get::<ClientIp>().copied() else {
        return json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "no client ip"}),
        );
    };
    let mut body = json!({
        "ip": client.ip().to_string(),
        "source": client.source().as_str(),
        "key": key_text(&app, &request),
    });
    if client.is_fallback() {
        body["fallback"] = Value::Bool(true);
    }
    json_response(StatusCode::OK, body)
}

/// `GET /explain`: the library's explain endpoint (JSON, or an HTML page for a browser), with
/// the `key` field written as `GET /` writes it (with the prefix length).
async fn explain(app: Arc<App>, request: Request) -> Response {
    let response = app.explain.respond(&request);
    let is_json = response.headers().get(header::CONTENT_TYPE)
        == Some(&header::HeaderValue::from_static("application/json"));
    match serde_json::from_str::<Value>(response.body()) {
        Ok(mut body) if is_json => {
            body["key"] = key_text(&app, &request);
            json_response(StatusCode::OK, body)
        }
        _ => response.into_response(),
    }
}

fn build_router(options: &Options) -> Result<Router, String> {
    let sources = build_sources(options)?;
    let client_ip =
        ClientIpLayer::new(Chain::from_sources(sources)).on_unresolved(options.on_unresolved);
    let key = IpKey::new()
        .ipv6_prefix(options.ipv6_prefix)
        .and_then(|key| key.ipv4_prefix(options.ipv4_prefix))
        .map_err(|e| e.to_string())?;
    let mut explainer = Explain::from_layer(&client_ip);
    let (mut plain_limit, mut tiered_limit, mut redis_limit) = (None, None, None);
    if let Some(&first) = options.quotas.first() {
        let quota = match options.burst {
            Some(burst) => first.allow_burst(burst),
            None => first,
        };
        let policy = window_policy(None, &options.quotas)?;
        let mut limit = RateLimitLayer::builder(quota);
        if options.quotas.len() > 1 {
            limit = RateLimitLayer::with_policy(policy);
        }
        let mut limit = limit.key(key).ratelimit_headers(options.ratelimit_headers);
        if options.hide_retry_after {
            limit = limit.hide_timing();
        }
        match (&options.tier_header, &options.redis) {
            (None, None) => {
                let limit = limit.build().map_err(|e| format!("--quota: {e}"))?;
                explainer = explainer.rate_limit_layer(&limit);
                plain_limit = Some(limit);
            }
            // `/explain` does not read Redis buckets.
            (None, Some(url)) => {
                let store = redis_store(url, options.redis_failure)?;
                redis_limit = Some(
                    limit
                        .store(store)
                        .build()
                        .map_err(|e| format!("--quota: {e}"))?,
                );
            }
            (Some(header), _) => {
                // DEMO ONLY: a header the client chooses picks the tier (see --help).
                let header = header.clone();
                let mut tiers = Tiers::from_fn(move |request: &RequestView<'_>| {
                    request
                        .headers()
                        .get(&header)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned)
                });
                let mut names: Vec<&str> = Vec::new();
                for (name, _) in &options.tiers {
                    if !names.contains(&name.as_str()) {
                        names.push(name);
                    }
                }
                for name in names {
                    let windows: Vec<Quota> = options
                        .tiers
                        .iter()
                        .filter(|(tier, _)| tier == name)
                        .map(|(_, quota)| *quota)
                        .collect();
                    tiers = tiers.tier(name.to_owned(), window_policy(Some(name), &windows)?);
                }
                let limit = limit
                    .tiers(tiers)
                    .build()
                    .map_err(|e| format!("--tier: {e}"))?;
                explainer = explainer.rate_limit_layer(&limit);
                tiered_limit = Some(limit);
            }
        }
    }
    let app = Arc::new(App {
        key,
        explain: explainer,
    });

    let root_app = Arc::clone(&app);
    let explain_app = Arc::clone(&app);
    let mut router = Router::new()
        .route(
            "/",
            get(move |request: Request| root(Arc::clone(&root_app), request)),
        )
        .route(
            "/explain",
            get(move |request: Request| explain(Arc::clone(&explain_app), request)),
        );
    if let Some(limit) = plain_limit {
        router = router.layer(limit);
    }
    if let Some(limit) = tiered_limit {
        router = router.layer(limit);
    }
    if let Some(limit) = redis_limit {
        router = router.layer(limit);
    }
    Ok(router.layer(client_ip))
}

/// The policy of `--quota` (or of one `--tier`'s quotas): one window named `default` (or the
/// tier's name); several named by their unit (`per-second`, or `free-per-second` for a tier).
fn window_policy(tier: Option<&str>, quotas: &[Quota]) -> Result<Policy, String> {
    let flag = tier.map_or("--quota".to_owned(), |tier| format!("--tier {tier}"));
    let mut policy = Policy::builder();
    for quota in quotas {
        let name = if quotas.len() == 1 {
            tier.unwrap_or("default").to_owned()
        } else {
            let text = quota.to_string();
            let unit = match text.rsplit_once('/').map(|(_, unit)| unit) {
                Some("s") => "per-second",
                Some("min") => "per-minute",
                _ => "per-hour",
            };
            match tier {
                Some(tier) => format!("{tier}-{unit}"),
                None => unit.to_owned(),
            }
        };
        policy = policy.window(name, *quota);
    }
    policy.build().map_err(|e| {
        if e.to_string().contains("same name") {
            format!("{flag}: give each window a different unit (s, min, h)")
        } else {
            format!("{flag}: {e}")
        }
    })
}

/// The store of `--redis URL`. Built inside the Tokio runtime: its connection lives there.
#[cfg(feature = "redis")]
fn redis_store(
    url: &str,
    failure: Option<RedisFailure>,
) -> Result<tower_bouncer::store::RedisStore<MaskedIp>, String> {
    use tower_bouncer::store::{MemoryStore, OnFailure, RedisStore};
    let policy = match failure.unwrap_or(RedisFailure::Open) {
        RedisFailure::Open => OnFailure::Open,
        RedisFailure::Closed => OnFailure::Closed,
        RedisFailure::Local => OnFailure::Local(MemoryStore::new()),
    };
    RedisStore::builder(url)
        .on_failure(policy)
        .build()
        .map_err(|e| format!("--redis: {e}"))
}

/// Without the `redis` feature there is no Redis store.
#[cfg(not(feature = "redis"))]
fn redis_store(
    _url: &str,
    _failure: Option<RedisFailure>,
) -> Result<tower_bouncer::store::MemoryStore<MaskedIp>, String> {
    Err("--redis needs the example built with --features redis".into())
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Inside the runtime: the Redis store connects on it.
    let router = match runtime.block_on(async { build_router(&options) }) {
        Ok(router) => router,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(options.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("error: cannot listen on {}: {error}", options.listen);
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(addr) => println!("listening on {addr}"),
            Err(error) => eprintln!("warning: local address unknown: {error}"),
        }
        #[cfg(feature = "proxy-protocol")]
        if let Some(trusted) = options.proxy_protocol {
            use tower_bouncer::client_ip::PeerAddr;
            use tower_bouncer::proxy_protocol::{ProxyProtocolConfig, ProxyProtocolListener};

            let listener = ProxyProtocolListener::new(listener, ProxyProtocolConfig::new(trusted));
            let service = router.into_make_service_with_connect_info::<PeerAddr>();
            return match axum::serve(listener, service).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: server stopped: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        match axum::serve(listener, service).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: server stopped: {error}");
                ExitCode::FAILURE
            }
        }
    })
}
