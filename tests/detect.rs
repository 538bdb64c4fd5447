//! Issue 8, item 1: misconfiguration detection. Each warning has a test that provokes it and
//! one that shows it stays quiet when the deployment is right. Warnings are captured with a
//! test `tracing` layer that records every event's target, level and fields.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use tower::{service_fn, Layer, ServiceExt};
use tower_bouncer::client_ip::{
    Chain, ClientIpLayer, Detection, Misconfiguration, OnUnresolved, PeerAddr, SocketPeer,
    TrustedHeader, TrustedRanges, XForwardedFor, MISCONFIG_TARGET,
};
use tower_bouncer::store::ManualClock;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

// ---------------------------------------------------------------------------------------------
// Capturing warnings

#[derive(Debug, Clone)]
struct Event {
    target: String,
    level: tracing::Level,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Event>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Event {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields,
        });
    }
}

impl Capture {
    /// Installs the capture for the current thread (the tests run on a current-thread
    /// runtime, so every event of the layer lands here).
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(tracing_subscriber::registry().with(self.clone()))
    }

    /// The misconfiguration warnings, as `kind` codes.
    fn kinds(&self) -> Vec<String> {
        self.warnings()
            .into_iter()
            .map(|e| e.fields["kind"].clone())
            .collect()
    }

    fn warnings(&self) -> Vec<Event> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|event| event.target == MISCONFIG_TARGET)
            .inspect(|event| assert_eq!(event.level, tracing::Level::WARN))
            .cloned()
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Driving the layer

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn request(peer: IpAddr, headers: &[(&str, &str)]) -> Request<()> {
    let mut request = Request::new(());
    for (name, value) in headers {
        request.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::new(peer, 40_000)));
    request
}

async fn send(layer: &ClientIpLayer, request: Request<()>) -> u16 {
    let service = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(""))
    }));
    service.oneshot(request).await.unwrap().status().as_u16()
}

/// Every request sampled, windows of 100 samples, a clock the test moves.
fn eager(clock: &ManualClock) -> Detection {
    Detection::new()
        .sample_every(NonZeroU32::MIN)
        .window(NonZeroU32::new(100).unwrap())
        .clock(clock.clone())
}

fn cloudflare_peer() -> IpAddr {
    // 173.245.48.0/20 is one of Cloudflare's published ranges.
    v4(173, 245, 48, 10)
}

// ---------------------------------------------------------------------------------------------
// ignored_forwarding_header

#[tokio::test]
async fn issue_8_ignored_forwarding_header_warns_once_per_interval() {
    let capture = Capture::default();
    let _guard = capture.install();
    let clock = ManualClock::new();
    let layer = ClientIpLayer::new(SocketPeer::new()).detection(eager(&clock));

    // Behind nginx, keyed on the socket peer: every client is nginx.
    for _ in 0..10 {
        let nginx = request(v4(10, 0, 0, 2), &[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(send(&layer, nginx).await, 200);
    }
    let warnings = capture.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].fields["kind"], "ignored_forwarding_header");
    assert_eq!(warnings[0].fields["header"], "x-forwarded-for");
    assert_eq!(warnings[0].fields["peer"], "10.0.0.2");
    // The header's value never appears in the warning.
    assert!(!format!("{warnings:?}").contains("203.0.113.7"));
    let counts = layer.misconfigurations();
    assert_eq!(
        counts.warnings(Misconfiguration::IgnoredForwardingHeader),
        1
    );

    // Once the interval has passed, it warns again.
    clock.advance(Duration::from_secs(59));
    send(
        &layer,
        request(v4(10, 0, 0, 2), &[("forwarded", "for=203.0.113.7")]),
    )
    .await;
    assert_eq!(
        counts.warnings(Misconfiguration::IgnoredForwardingHeader),
        1
    );
    clock.advance(Duration::from_secs(1));
    send(
        &layer,
        request(v4(10, 0, 0, 2), &[("cf-connecting-ip", "203.0.113.7")]),
    )
    .await;
    assert_eq!(
        counts.warnings(Misconfiguration::IgnoredForwardingHeader),
        2
    );
    assert_eq!(capture.warnings()[1].fields["header"], "cf-connecting-ip");
}

#[tokio::test]
async fn issue_8_ignored_forwarding_header_when_the_configured_header_is_missing() {
    let capture = Capture::default();
    let _guard = capture.install();
    let clock = ManualClock::new();
    // Configured for X-Real-IP, but the proxy sends X-Forwarded-For.
    let layer = ClientIpLayer::new(TrustedHeader::x_real_ip(TrustedRanges::private()))
        .detection(eager(&clock));
    let status = send(
        &layer,
        request(v4(10, 0, 0, 2), &[("x-forwarded-for", "203.0.113.7")]),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(capture.kinds(), ["ignored_forwarding_header"]);
}

#[tokio::test]
async fn issue_8_ignored_forwarding_header_quiet_when_right() {
    let capture = Capture::default();
    let _guard = capture.install();
    let clock = ManualClock::new();

    // Direct clients, no forwarding header.
    let direct = ClientIpLayer::new(SocketPeer::new()).detection(eager(&clock));
    send(&direct, request(v4(198, 51, 100, 4), &[("accept", "*/*")])).await;

    // Cloudflare in front, keyed on CF-Connecting-IP: Cloudflare also sends X-Forwarded-For,
    // which the source does not read — and rightly so.
    let cloudflare = ClientIpLayer::new(TrustedHeader::cf_connecting_ip()).detection(eager(&clock));
    let through_cloudflare = request(
        cloudflare_peer(),
        &[
            ("cf-connecting-ip", "203.0.113.7"),
            ("x-forwarded-for", "203.0.113.7"),
            ("true-client-ip", "203.0.113.7"),
        ],
    );
    assert_eq!(send(&cloudflare, through_cloudflare).await, 200);

    // nginx in front, keyed on X-Forwarded-For.
    let nginx = ClientIpLayer::new(XForwardedFor::rightmost_untrusted(TrustedRanges::private()))
        .detection(eager(&clock));
    send(
        &nginx,
        request(v4(10, 0, 0, 2), &[("x-forwarded-for", "203.0.113.7")]),
    )
    .await;

    assert!(capture.warnings().is_empty(), "{:?}", capture.warnings());
    for layer in [direct, cloudflare, nginx] {
        assert!(layer.misconfigurations().all().all(|(_, n)| n == 0));
    }
}

// ---------------------------------------------------------------------------------------------
// untrusted_peer

#[tokio::test]
async fn issue_8_untrusted_peer_sending_the_trusted_header_warns() {
    let capture = Capture::default();
    let _guard = capture.install();
    let clock = ManualClock::new();

    // A lone trusted-header source: the request is rejected, and the reason is worth a warning.
    let alone = ClientIpLayer::new(TrustedHeader::x_real_ip(TrustedRanges::loopback()))
        .detection(eager(&clock));
    let direct = request(v4(198, 51, 100, 4), &[("x-real-ip", "6.6.6.6")]);
    assert_eq!(send(&alone, direct).await, 400);

    // In a chain with the peer as the last resort, the request passes keyed on the peer, and
    // still warns: someone reaches the origin directly with the header.
    let chain = ClientIpLayer::new(
        Chain::new()
            .then(TrustedHeader::x_real_ip(TrustedRanges::loopback()))
            .then(SocketPeer::new()),
    )
    .detection(eager(&clock));
    let direct = request(v4(198, 51, 100, 4), &[("x-real-ip", "6.6.6.6")]);
    assert_eq!(send(&chain, direct).await, 200);

    let warnings = capture.warnings();
    assert_eq!(capture.kinds(), ["untrusted_peer", "untrusted_peer"]);
    assert_eq!(warnings[0].fields["header"], "x-real-ip");
    assert_eq!(warnings[0].fields["peer"], "198.51.100.4");
    assert!(!format!("{warnings:?}").contains("6.6.6.6"));
    assert_eq!(
        alone
            .misconfigurations()
            .warnings(Misconfiguration::UntrustedPeer),
        1
    );
    assert_eq!(
        chain
            .misconfigurations()
            .warnings(Misconfiguration::UntrustedPeer),
        1
    );
}

#[tokio::test]
async fn issue_8_untrusted_peer_quiet_when_right() {
    let capture = Capture::default();
    let _guard = capture.install();
    let clock = ManualClock::new();
    let chain = ClientIpLayer::new(
        Chain::new()
            .then(TrustedHeader::x_real_ip(TrustedRanges::loopback()))
            .then(SocketPeer::new()),
    )
    .detection(eager(&clock));
    // Through the local nginx: the header is read.
    send(
        &chain,
        request(v4(127, 0, 0, 1), &[("x-real-ip", "203.0.113.7")]),
    )
    .await;
    // A direct client without the header.
    send(&chain, request(v4(198, 51, 100, 4), &[])).await;
    assert!(capture.warnings().is_empty(), "{:?}", capture.warnings());
}

// ---------------------------------------------------------------------------------------------
// concentrated_clients and proxy_range_clients

#[tokio::test]
async fn issue_8_concentrated_clients_warns() {
    let capture = Capture::default();
    let _guard = capture.install();
    let clock = ManualClock::new();
    // Keyed on the peer behind three public load-balancer addresses (no header to betray them).
    let layer = ClientIpLayer::new(SocketPeer::new()).detection(eager(&clock));
    for i in 0..100_u8 {
        send(&layer, request(v4(203, 0, 113, 1 + i % 3), &[])).await;
    }
    let warnings = capture.warnings();
    assert_eq!(capture.kinds(), ["concentrated_clients"], "{warnings:?}");
    assert_eq!(warnings[0].fields["top_share_percent"], "100");
    assert_eq!(warnings[0].fields["samples"], "100");
    assert_eq!(
        layer
            .misconfigurations()
            .warnings(Misconfiguration::ConcentratedClients),
        1
    );
}

#[tokio::test]
async fn issue_8_proxy_range_clients_warns() {
    let capture = Capture::default();
    let _guard = capture.install();
    let clock = ManualClock::new();
    // Keyed on the peer inside a Kubernetes cluster: every "client" is a 10.x pod or node.
    let layer = ClientIpLayer::new(SocketPeer::new()).detection(eager(&clock));
    for i in 0..100_u8 {
        send(&layer, request(v4(10, 1, i, 7), &[])).await;
    }
    let warnings = capture.warnings();
    assert_eq!(capture.kinds(), ["proxy_range_clients"], "{warnings:?}");
    assert_eq!(warnings[0].fields["share_percent"], "100");
    // A fallback to a Cloudflare peer counts as well.
    let fallback = ClientIpLayer::new(TrustedHeader::x_real_ip(TrustedRanges::loopback()))
        .on_unresolved(OnUnresolved::FallbackToPeer)
        .detection(eager(&clock));
    for _ in 0..100 {
        assert_eq!(send(&fallback, request(cloudflare_peer(), &[])).await, 200);
    }
    let counts = fallback.misconfigurations();
    assert_eq!(counts.warnings(Misconfiguration::ProxyRangeClients), 1);
    // One address, so it is concentrated too.
    assert_eq!(counts.warnings(Misconfiguration::ConcentratedClients), 1);
}

#[tokio::test]
async fn issue_8_traffic_shape_quiet_when_right() {
    let capture = Capture::default();
    let _guard = capture.install();
    let clock = ManualClock::new();
    let layer = ClientIpLayer::new(XForwardedFor::rightmost_untrusted(TrustedRanges::private()))
        .detection(eager(&clock));
    // Three windows of many distinct public clients, some of them regulars.
    for i in 0..300_u32 {
        let ip = if i % 10 == 0 {
            "198.51.100.1".to_owned()
        } else {
            format!("203.0.{}.{}", i / 250, i % 250)
        };
        let through_nginx = request(v4(10, 0, 0, 2), &[("x-forwarded-for", &ip)]);
        assert_eq!(send(&layer, through_nginx).await, 200);
    }
    assert!(capture.warnings().is_empty(), "{:?}", capture.warnings());
}

// ---------------------------------------------------------------------------------------------
// Turning it off

#[tokio::test]
async fn issue_8_detection_off_is_silent_and_counts_nothing() {
    let capture = Capture::default();
    let _guard = capture.install();
    for layer in [
        ClientIpLayer::new(SocketPeer::new()).detect_misconfiguration(false),
        ClientIpLayer::new(SocketPeer::new()).detection(Detection::off()),
    ] {
        for _ in 0..2_000 {
            let nginx = request(v4(10, 0, 0, 2), &[("x-forwarded-for", "203.0.113.7")]);
            send(&layer, nginx).await;
        }
        assert!(layer.misconfigurations().all().all(|(_, n)| n == 0));
    }
    assert!(capture.warnings().is_empty());
}

#[tokio::test]
async fn issue_8_detection_on_by_default_with_sampling() {
    let capture = Capture::default();
    let _guard = capture.install();
    // The default samples one request in 64 per thread: a misconfigured deployment is
    // noticed within the first 64 requests.
    let layer = ClientIpLayer::new(SocketPeer::new());
    for _ in 0..64 {
        let nginx = request(v4(10, 0, 0, 2), &[("x-forwarded-for", "203.0.113.7")]);
        send(&layer, nginx).await;
    }
    assert_eq!(capture.kinds(), ["ignored_forwarding_header"]);
}
