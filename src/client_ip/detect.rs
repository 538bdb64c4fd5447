//! Misconfiguration detection: see [`Detection`], where it is documented for users.

mod sketch;

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderName;

use super::{Reason, RequestView, Resolution, ResolveClientIp, SourceKind, TrustedRanges};
use crate::store::{Clock, MonotonicClock};
use sketch::SpaceSaving;

/// The `tracing` target of every misconfiguration warning.
pub const MISCONFIG_TARGET: &str = "tower_bouncer::misconfig";

/// Forwarding headers that proxies, CDNs and platforms set to carry the client's address.
const FORWARDING_HEADERS: [HeaderName; 13] = [
    HeaderName::from_static("x-forwarded-for"),
    http::header::FORWARDED,
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("cf-connecting-ipv6"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("fly-client-ip"),
    HeaderName::from_static("fastly-client-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("x-azure-clientip"),
    HeaderName::from_static("cloudfront-viewer-address"),
    HeaderName::from_static("x-appengine-user-ip"),
];

/// How many of the most frequent client IPs count as "a handful".
const HANDFUL: usize = 3;
/// Counters in the heavy-hitter sketch.
const SKETCH_COUNTERS: usize = 32;

/// A kind of misconfiguration the client-IP layer detects (see [`Detection`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Misconfiguration {
    /// A forwarding header the configured sources do not read arrived on a request keyed on
    /// the socket peer.
    IgnoredForwardingHeader,
    /// A header the configured sources read arrived from a peer outside their trusted ranges.
    UntrustedPeer,
    /// Most sampled traffic resolves to a handful of client IPs.
    ConcentratedClients,
    /// Most sampled client IPs are in proxy, private or cloud ranges.
    ProxyRangeClients,
}

impl Misconfiguration {
    /// Every kind, in a stable order.
    ///
    /// A slice, not an array: a kind added in a later release makes it longer without
    /// changing its type.
    ///
    /// ```
    /// use tower_bouncer::client_ip::Misconfiguration;
    ///
    /// let codes: Vec<&str> = Misconfiguration::ALL.iter().map(|kind| kind.code()).collect();
    /// assert_eq!(codes[0], "ignored_forwarding_header");
    /// assert!(codes.contains(&"proxy_range_clients"));
    /// ```
    pub const ALL: &'static [Self] = &[
        Self::IgnoredForwardingHeader,
        Self::UntrustedPeer,
        Self::ConcentratedClients,
        Self::ProxyRangeClients,
    ];

    /// The stable `kind` field of the warning: `ignored_forwarding_header`, `untrusted_peer`,
    /// `concentrated_clients` or `proxy_range_clients`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::IgnoredForwardingHeader => "ignored_forwarding_header",
            Self::UntrustedPeer => "untrusted_peer",
            Self::ConcentratedClients => "concentrated_clients",
            Self::ProxyRangeClients => "proxy_range_clients",
        }
    }

    /// The position of `self` in [`ALL`](Self::ALL).
    fn index(self) -> usize {
        match self {
            Self::IgnoredForwardingHeader => 0,
            Self::UntrustedPeer => 1,
            Self::ConcentratedClients => 2,
            Self::ProxyRangeClients => 3,
        }
    }
}

impl fmt::Display for Misconfiguration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The misconfiguration-detection settings of a [`ClientIpLayer`](super::ClientIpLayer).
///
/// [`Detection::new`] (the default) is on; [`Detection::off`] detects nothing.
///
/// Misconfiguration detection: the client-IP layer watches live traffic and warns when the
/// deployment looks wrong — "you are probably limiting your proxy".
///
/// On by default. Each warning is a `tracing` event at `warn` level with the target
/// `tower_bouncer::misconfig` and a stable `kind` field (a [`Misconfiguration::code`]), logged at
/// most once per [interval](Detection::interval) per kind, and counted
/// ([`Misconfigurations`]; with the feature `metrics`, `tower_bouncer_misconfigurations_total`).
///
/// | `kind` | When | What it usually means |
/// |---|---|---|
/// | `ignored_forwarding_header` | the request was keyed on the socket peer (or the configured header was missing) while a forwarding header the sources do not read arrived | a proxy is in front, and every client shares the proxy's bucket |
/// | `untrusted_peer` | a header the sources read arrived from a peer outside their trusted ranges | someone reaches the origin directly, or the trusted ranges are stale |
/// | `concentrated_clients` | in a window of sampled requests, the three most frequent client IPs make up 80 % or more | the "client" IPs are your proxies |
/// | `proxy_range_clients` | in a window of sampled requests, half or more of the client IPs are loopback, private, CGNAT or Cloudflare addresses | the "client" IPs are your proxies |
///
/// The detection reads no header value: it only checks whether a forwarding header is
/// present. Its cost on a request is a match on the resolution and a thread-local counter; one
/// request in [`sample_every`](Detection::sample_every) (64 by default) also checks a dozen
/// header names and feeds a 32-counter heavy-hitter sketch (Space-Saving, memory bounded
/// whatever the traffic) behind a lock that is only tried, never waited for.
///
/// ```
/// use std::time::Duration;
/// use tower_bouncer::client_ip::{ClientIpLayer, Detection, Misconfiguration, SocketPeer};
///
/// // The default: on, each kind at most once a minute.
/// let layer = ClientIpLayer::new(SocketPeer::new());
/// assert_eq!(layer.misconfigurations().warnings(Misconfiguration::UntrustedPeer), 0);
///
/// // Customised: every five minutes, sampling one request in 64.
/// let layer = ClientIpLayer::new(SocketPeer::new()).detection(
///     Detection::new()
///         .interval(Duration::from_secs(300))
///         .sample_every(std::num::NonZeroU32::new(64).unwrap()),
/// );
/// // Or off.
/// let quiet = ClientIpLayer::new(SocketPeer::new()).detect_misconfiguration(false);
/// # let _ = (layer, quiet);
/// ```
#[derive(Clone)]
pub struct Detection {
    enabled: bool,
    interval: Duration,
    sample_every: NonZeroU32,
    window: NonZeroU32,
    clock: Arc<dyn Clock>,
}

impl Detection {
    /// Detection on: each kind logged at most once every 60 seconds, one request in 64
    /// sampled, the traffic-shape checks evaluated every 512 samples.
    pub fn new() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(60),
            sample_every: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
            window: NonZeroU32::new(512).unwrap_or(NonZeroU32::MIN),
            clock: Arc::new(MonotonicClock::new()),
        }
    }

    /// Detection off: nothing is checked or counted.
    pub fn off() -> Self {
        Self {
            enabled: false,
            ..Self::new()
        }
    }

    /// Logs each kind of warning at most once per `interval` (60 s by default). The counters
    /// count only logged warnings.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Samples one request in `every` per thread for the header-presence and traffic-shape
    /// checks (64 by default; 1 checks every request). Rounded up to a power of two, so
    /// that the hot path tests a mask instead of dividing.
    #[must_use]
    pub fn sample_every(mut self, every: NonZeroU32) -> Self {
        self.sample_every = every;
        self
    }

    /// Evaluates the traffic-shape checks (concentration, proxy ranges) every `samples`
    /// sampled requests (512 by default), then starts a new window.
    #[must_use]
    pub fn window(mut self, samples: NonZeroU32) -> Self {
        self.window = samples;
        self
    }

    /// The clock that spaces warnings (a [`ManualClock`](crate::store::ManualClock) in tests).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// `true` unless built with [`off`](Self::off).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }
}

impl Default for Detection {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Detection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detection")
            .field("enabled", &self.enabled)
            .field("interval", &self.interval)
            .field("sample_every", &self.sample_every)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// The warning counters of one [`ClientIpLayer`](super::ClientIpLayer) (shared by its
/// clones and services): how many warnings of each kind it logged.
#[derive(Clone, Default)]
pub struct Misconfigurations {
    detector: Option<Arc<Detector>>,
}

impl Misconfigurations {
    /// Warnings of `kind` logged so far (0 when detection is off).
    pub fn warnings(&self, kind: Misconfiguration) -> u64 {
        self.detector.as_ref().map_or(0, |detector| {
            detector.kinds[kind.index()].warned.load(Ordering::Relaxed)
        })
    }

    /// Every kind with its count, in the order of [`Misconfiguration::ALL`].
    ///
    /// ```
    /// use tower_bouncer::client_ip::{ClientIpLayer, SocketPeer};
    ///
    /// let layer = ClientIpLayer::new(SocketPeer::new());
    /// let total: u64 = layer.misconfigurations().all().map(|(_kind, count)| count).sum();
    /// assert_eq!(total, 0);
    /// ```
    pub fn all(&self) -> impl Iterator<Item = (Misconfiguration, u64)> + '_ {
        Misconfiguration::ALL
            .iter()
            .map(|&kind| (kind, self.warnings(kind)))
    }
}

impl fmt::Debug for Misconfigurations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (kind, count) in self.all() {
            map.entry(&kind.code(), &count);
        }
        map.finish()
    }
}

/// The per-layer detection state, built once from the configured source.
pub(crate) struct Detector {
    interval: u64,
    /// `sample_every − 1`, `sample_every` a power of two.
    sample_mask: u32,
    window: u64,
    clock: Arc<dyn Clock>,
    /// Forwarding headers the sources do not read.
    ignored: NameSet,
    /// Headers the sources read.
    read: Box<[HeaderName]>,
    proxy_ranges: TrustedRanges,
    /// One per kind, at [`Misconfiguration::index`] (its position in `ALL`).
    kinds: [KindState; Misconfiguration::ALL.len()],
    shape: Mutex<Shape>,
}

#[derive(Default)]
struct KindState {
    /// Clock time (ns) from which the next warning of this kind may be logged.
    next_warning: AtomicU64,
    warned: AtomicU64,
}

/// The traffic-shape window.
struct Shape {
    sketch: SpaceSaving<IpAddr>,
    in_proxy_ranges: u64,
}

/// What a full window found.
struct ShapeFinding {
    samples: u64,
    top: Option<(u64, IpAddr)>,
    proxy: Option<u64>,
}

impl Detector {
    /// The detector for `source`, or `None` when `detection` is off.
    pub(crate) fn new(detection: &Detection, source: &dyn ResolveClientIp) -> Option<Arc<Self>> {
        if !detection.enabled {
            return None;
        }
        let read: Box<[HeaderName]> = source.headers_read().into();
        let ignored: Vec<HeaderName> = FORWARDING_HEADERS
            .iter()
            .filter(|name| !read.contains(name))
            .cloned()
            .collect();
        Some(Arc::new(Self {
            interval: nanos(detection.interval),
            sample_mask: detection
                .sample_every
                .get()
                .checked_next_power_of_two()
                .unwrap_or(1 << 31)
                - 1,
            window: u64::from(detection.window.get()),
            clock: Arc::clone(&detection.clock),
            ignored: NameSet::new(ignored),
            read,
            proxy_ranges: TrustedRanges::loopback()
                .with(TrustedRanges::private())
                .with(TrustedRanges::cgnat())
                .with(TrustedRanges::cloudflare()),
            kinds: Default::default(),
            shape: Mutex::new(Shape {
                sketch: SpaceSaving::new(SKETCH_COUNTERS),
                in_proxy_ranges: 0,
            }),
        }))
    }

    /// Looks at one request: its view, what the source answered, and the client IP the layer
    /// keys it on (`None` when rejected).
    #[inline]
    pub(crate) fn observe(
        &self,
        view: &RequestView<'_>,
        resolution: &Resolution,
        client: Option<IpAddr>,
    ) {
        let keyed_on_peer = match resolution {
            Resolution::Resolved { source, .. } => *source == SourceKind::Peer,
            // The peer fallback, when configured.
            _ => client.is_some(),
        };
        // A header the sources read, ignored because of who sent it: checked on every
        // request that reached this state, which a right deployment never does.
        if matches!(resolution.reason(), Some(Reason::PeerNotTrusted))
            || (keyed_on_peer && !self.read.is_empty())
        {
            self.check_untrusted_peer(view);
        }
        if crate::metrics::DETECT.tick() & self.sample_mask == 0 {
            self.observe_sample(view, resolution, client, keyed_on_peer);
        }
    }

    #[cold]
    #[inline(never)]
    fn check_untrusted_peer(&self, view: &RequestView<'_>) {
        let Some(name) = present(view, &self.read) else {
            return;
        };
        if self.should_warn(Misconfiguration::UntrustedPeer) {
            tracing::warn!(
                target: MISCONFIG_TARGET,
                kind = Misconfiguration::UntrustedPeer.code(),
                header = name.as_str(),
                peer = %MaybeIp(view.peer_ip()),
                "a client-ip header arrived from a peer outside the trusted ranges and was ignored: \
                 someone reaches this server directly, or the trusted ranges are stale"
            );
        }
    }

    /// The checks of a sampled request: out of the hot path's code.
    #[cold]
    #[inline(never)]
    fn observe_sample(
        &self,
        view: &RequestView<'_>,
        resolution: &Resolution,
        client: Option<IpAddr>,
        keyed_on_peer: bool,
    ) {
        let header_missing = matches!(resolution.reason(), Some(Reason::HeaderMissing));
        if keyed_on_peer || header_missing {
            if let Some(name) = self.ignored.first_in(view.headers()) {
                if self.should_warn(Misconfiguration::IgnoredForwardingHeader) {
                    tracing::warn!(
                        target: MISCONFIG_TARGET,
                        kind = Misconfiguration::IgnoredForwardingHeader.code(),
                        header = name.as_str(),
                        peer = %MaybeIp(view.peer_ip()),
                        "a forwarding header arrived that the configured client-ip sources do not read: \
                         a proxy is probably in front, and requests are keyed on the proxy's address"
                    );
                }
            }
        }
        if let Some(ip) = client {
            if let Some(finding) = self.sample_shape(ip) {
                self.report_shape(&finding);
            }
        }
    }

    /// Adds one sampled client IP; answers what the window found when it is full. The lock
    /// is only tried: a contended sample is dropped.
    fn sample_shape(&self, ip: IpAddr) -> Option<ShapeFinding> {
        let mut shape = self.shape.try_lock().ok()?;
        shape.sketch.add(ip);
        if self.proxy_ranges.contains(ip) {
            shape.in_proxy_ranges += 1;
        }
        let samples = shape.sketch.total();
        if samples < self.window {
            return None;
        }
        let (top, key) = shape.sketch.top_guaranteed(HANDFUL);
        let finding = ShapeFinding {
            samples,
            top: key.filter(|_| top * 5 >= samples * 4).map(|key| (top, key)),
            proxy: Some(shape.in_proxy_ranges).filter(|count| count * 2 >= samples),
        };
        shape.sketch.reset();
        shape.in_proxy_ranges = 0;
        Some(finding)
    }

    fn report_shape(&self, finding: &ShapeFinding) {
        if let Some((top, ip)) = finding.top {
            if self.should_warn(Misconfiguration::ConcentratedClients) {
                tracing::warn!(
                    target: MISCONFIG_TARGET,
                    kind = Misconfiguration::ConcentratedClients.code(),
                    top_share_percent = top * 100 / finding.samples,
                    top_ip = %ip,
                    samples = finding.samples,
                    "most requests resolve to a handful of client ips: \
                     you are probably limiting your proxy, not your clients"
                );
            }
        }
        if let Some(count) = finding.proxy {
            if self.should_warn(Misconfiguration::ProxyRangeClients) {
                tracing::warn!(
                    target: MISCONFIG_TARGET,
                    kind = Misconfiguration::ProxyRangeClients.code(),
                    share_percent = count * 100 / finding.samples,
                    samples = finding.samples,
                    "most client ips are loopback, private, cgnat or cloudflare addresses: \
                     you are probably limiting your proxy, not your clients"
                );
            }
        }
    }

    /// `true` at most once per interval per kind: one atomic load, and a compare-and-swap
    /// when the interval has passed. Counts the warning when it answers `true`.
    fn should_warn(&self, kind: Misconfiguration) -> bool {
        let state = &self.kinds[kind.index()];
        let now = nanos(self.clock.now());
        let next = state.next_warning.load(Ordering::Relaxed);
        if now < next
            || state
                .next_warning
                .compare_exchange(
                    next,
                    now.saturating_add(self.interval),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return false;
        }
        state.warned.fetch_add(1, Ordering::Relaxed);
        crate::metrics::misconfiguration(kind.code());
        true
    }
}

impl Misconfigurations {
    pub(crate) fn of(detector: Option<&Arc<Detector>>) -> Self {
        Self {
            detector: detector.cloned(),
        }
    }
}

/// A few header names, looked for in a request by walking its header names once: a name
/// whose length no member has is passed over with one bit test, no hashing.
struct NameSet {
    names: Box<[HeaderName]>,
    /// Bit `n` set: some member is `n` bytes long (names of 64 bytes or more set bit 63).
    lengths: u64,
}

impl NameSet {
    fn new(names: Vec<HeaderName>) -> Self {
        let lengths = names
            .iter()
            .fold(0, |bits, name| bits | length_bit(name.as_str().len()));
        Self {
            names: names.into(),
            lengths,
        }
    }

    /// The first member found among the request's headers.
    fn first_in<'a>(&'a self, headers: &http::HeaderMap) -> Option<&'a HeaderName> {
        headers.keys().find_map(|key| {
            if self.lengths & length_bit(key.as_str().len()) == 0 {
                return None;
            }
            self.names.iter().find(|name| *name == key)
        })
    }
}

fn length_bit(length: usize) -> u64 {
    1 << length.min(63)
}

/// The first of `names` present in the request.
fn present<'a>(view: &RequestView<'_>, names: &'a [HeaderName]) -> Option<&'a HeaderName> {
    let headers = view.headers();
    names.iter().find(|name| headers.contains_key(*name))
}

/// A duration in whole nanoseconds, saturating at 584 years.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// An optional address for a log field: the address, or `none`.
struct MaybeIp(Option<IpAddr>);

impl fmt::Display for MaybeIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(ip) => fmt::Display::fmt(ip, f),
            None => f.write_str("none"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_ip::{Chain, SocketPeer, TrustedHeader, XForwardedFor};

    #[test]
    fn name_set_finds_members_by_length_then_name() {
        let long = HeaderName::from_static(
            "x-a-very-long-forwarding-header-name-beyond-sixty-four-bytes-for-the-length-bit",
        );
        let set = NameSet::new(vec![
            HeaderName::from_static("x-real-ip"),
            http::header::FORWARDED,
            long.clone(),
        ]);
        let mut headers = http::HeaderMap::new();
        headers.insert("x-other-ip", "1".parse().unwrap()); // same length as x-real-ip
        headers.insert("user-agent", "t".parse().unwrap());
        assert_eq!(set.first_in(&headers), None);
        headers.insert(long.clone(), "1".parse().unwrap());
        assert_eq!(set.first_in(&headers), Some(&long));
        headers.clear();
        headers.insert("forwarded", "for=1.2.3.4".parse().unwrap());
        assert_eq!(set.first_in(&headers), Some(&http::header::FORWARDED));
    }

    #[test]
    fn ignored_headers_are_the_known_ones_minus_those_read() {
        let chain = Chain::new()
            .then(TrustedHeader::cf_connecting_ip())
            .then(XForwardedFor::rightmost_untrusted(TrustedRanges::loopback()))
            .then(TrustedHeader::cf_connecting_ip())
            .then(SocketPeer::new());
        let read: Vec<_> = chain
            .headers_read()
            .iter()
            .map(HeaderName::as_str)
            .collect();
        assert_eq!(read, ["cf-connecting-ip", "x-forwarded-for"]);
        let detector = Detector::new(&Detection::new(), &chain).unwrap();
        assert_eq!(detector.ignored.names.len(), FORWARDING_HEADERS.len() - 2);
        assert!(!detector
            .ignored
            .names
            .iter()
            .any(|name| read.contains(&name.as_str())));
        assert!(Detector::new(&Detection::off(), &chain).is_none());
        // Power-of-two sampling: 100 rounds up to 128.
        let detection = Detection::new().sample_every(NonZeroU32::new(100).unwrap());
        let detector = Detector::new(&detection, &SocketPeer::new()).unwrap();
        assert_eq!(detector.sample_mask, 127);
        assert!(detector.read.is_empty());
    }

    #[test]
    fn api_review_3_all_is_a_slice_and_index_is_the_position_in_it() {
        let all: &'static [Misconfiguration] = Misconfiguration::ALL;
        for (position, kind) in all.iter().enumerate() {
            assert_eq!(kind.index(), position, "{kind}");
        }
        let counts = Misconfigurations::default();
        let listed: Vec<(Misconfiguration, u64)> = counts.all().collect();
        assert_eq!(listed.len(), all.len());
        assert!(listed
            .iter()
            .zip(all)
            .all(|((kind, count), expected)| kind == expected && *count == 0));
    }
}
