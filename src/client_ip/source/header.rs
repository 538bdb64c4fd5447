use std::fmt;
use std::net::IpAddr;

use http::header::GetAll;
use http::{HeaderName, HeaderValue};

use crate::client_ip::explanation::{ignore, ranges_text, Event};
use crate::client_ip::parse::{parse_entry, parse_ip_port_last_colon, trim_ows};
use crate::client_ip::{
    Explanation, Reason, RequestView, Resolution, ResolveClientIp, SourceKind, TrustedRanges,
    Verdict,
};
use crate::ConfigError;

const CF_CONNECTING_IP: HeaderName = HeaderName::from_static("cf-connecting-ip");
const CF_CONNECTING_IPV6: HeaderName = HeaderName::from_static("cf-connecting-ipv6");
const TRUE_CLIENT_IP: HeaderName = HeaderName::from_static("true-client-ip");
const FASTLY_CLIENT_IP: HeaderName = HeaderName::from_static("fastly-client-ip");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FLY_CLIENT_IP: HeaderName = HeaderName::from_static("fly-client-ip");
const CLOUDFRONT_VIEWER_ADDRESS: HeaderName = HeaderName::from_static("cloudfront-viewer-address");

/// The answer for a value that is not one client address.
const INVALID: Reason = Reason::InvalidEntry { position: 1 };

/// A header that holds one client address, believed **only** when the socket peer is one of
/// the proxies that set it.
///
/// `CF-Connecting-IP`, `True-Client-IP`, `X-Real-IP`, `Fly-Client-IP` and their kind are set by
/// a proxy to the address it saw. They are true only when the request really came through that
/// proxy: a client that reaches the server directly can send any value. So the header is read
/// only when the socket peer is in the given [`TrustedRanges`]; from any other peer it is not
/// read at all.
///
/// | request | answer |
/// |---|---|
/// | no peer address (no connect info) | absent, [`Reason::NoPeer`] |
/// | peer not in the trusted ranges | absent, [`Reason::PeerNotTrusted`] (the header is not read) |
/// | header not there | absent, [`Reason::HeaderMissing`] (a [`Chain`](super::Chain) goes on) |
/// | header sent more than once | **untrustworthy**, [`Reason::DuplicateHeader`] (never "the first one") |
/// | a list (`a, b`), garbage, non-ASCII bytes, an empty value | **untrustworthy**, [`Reason::InvalidEntry`] at position 1 |
/// | one address (`ip`, `ip:port`, `[v6]:port`, `v6%zone`) | resolved, [`SourceKind::Header`] |
///
/// An untrustworthy answer stops a chain: a trusted proxy that sent garbage is a problem to
/// see, not a reason to fall back to a weaker source.
///
/// The value is parsed from its bytes, strictly (see the forms above); the result is canonical
/// (`::ffff:192.0.2.1` is `192.0.2.1`, a zone is dropped).
///
/// # Examples
///
/// nginx on the same host sets `X-Real-IP`:
///
/// ```
/// use std::net::SocketAddr;
/// use tower_bouncer::client_ip::{
///     ClientIpLayer, PeerAddr, RequestView, ResolveClientIp, TrustedHeader, TrustedRanges,
/// };
///
/// // nginx: proxy_set_header X-Real-IP $remote_addr;
/// let source = TrustedHeader::x_real_ip(TrustedRanges::loopback());
///
/// let mut request = http::Request::new(());
/// request.headers_mut().insert("x-real-ip", "203.0.113.7".parse()?);
/// request.extensions_mut().insert(PeerAddr("127.0.0.1:41000".parse()?));
/// assert_eq!(source.resolve(&RequestView::new(&request)).ip(), Some("203.0.113.7".parse()?));
///
/// // The same header from a peer that is not nginx is not read.
/// request.extensions_mut().insert(PeerAddr("198.51.100.9:41000".parse()?));
/// assert_eq!(source.resolve(&RequestView::new(&request)).ip(), None);
///
/// let layer = ClientIpLayer::new(source);
/// # let _ = layer;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Any header name, behind proxies at your own addresses:
///
/// ```
/// use tower_bouncer::client_ip::{TrustedHeader, TrustedRanges};
///
/// let ranges: TrustedRanges = "10.20.0.0/16".parse()?;
/// let source = TrustedHeader::from_name("X-Client-Address", ranges)?;
/// assert_eq!(source.name().as_str(), "x-client-address");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TrustedHeader {
    name: HeaderName,
    trusted_peers: TrustedRanges,
    format: ValueFormat,
}

/// How the header's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueFormat {
    /// One address, in any form [`parse_entry`] accepts.
    Address,
    /// `CF-Connecting-IP`: one address; a Pseudo IPv4 value (`240.0.0.0/4`) is replaced by
    /// `CF-Connecting-IPv6` when Cloudflare sent that header.
    CloudflarePseudoIpv4Aware,
    /// `ip:port` with an unbracketed IPv6 address: split at the last colon.
    AddressColonPort,
}

impl TrustedHeader {
    /// A source reading the header `name`, believed only when the socket peer is in
    /// `trusted_peers`.
    ///
    /// With an empty `trusted_peers` the header is never read (every request answers
    /// [`Reason::PeerNotTrusted`]); [`from_name`](Self::from_name) refuses that.
    pub fn new(name: HeaderName, trusted_peers: TrustedRanges) -> Self {
        Self {
            name,
            trusted_peers,
            format: ValueFormat::Address,
        }
    }

    /// Like [`new`](Self::new), with the header name given as text (for command lines and
    /// configuration files). Header names are case-insensitive.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `name` is not a valid header name, when it is `Forwarded` (whose
    /// value is a list of `for=` elements, not an address: use the `Forwarded` source), or when
    /// `trusted_peers` is empty (the header would never be read).
    pub fn from_name(name: &str, trusted_peers: TrustedRanges) -> Result<Self, ConfigError> {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::new(format!("invalid header name {name:?}")))?;
        if header == http::header::FORWARDED {
            return Err(ConfigError::new(
                "the forwarded header holds `for=` elements, not one address: use the forwarded source",
            ));
        }
        if trusted_peers.is_empty() {
            return Err(ConfigError::new(format!(
                "header {name:?} would never be read: its trusted peer ranges are empty"
            )));
        }
        Ok(Self::new(header, trusted_peers))
    }

    /// `CF-Connecting-IP`, believed only from [Cloudflare's published
    /// ranges](TrustedRanges::cloudflare): the address of the client that connected to
    /// Cloudflare. True when your origin is reached through Cloudflare's proxy (an orange-cloud
    /// DNS record), directly (no other proxy between Cloudflare and this server).
    ///
    /// **Pseudo IPv4.** With Cloudflare's *Pseudo IPv4* set to *Overwrite Headers*, an IPv6
    /// client's `CF-Connecting-IP` is a made-up Class E address from `240.0.0.0/4` (a hash of
    /// the real one, shared by unrelated clients when it collides), and the real address is in
    /// `CF-Connecting-IPv6`. This source handles it: when the value is in `240.0.0.0/4` and
    /// `CF-Connecting-IPv6` is present, the answer is that IPv6 address (a duplicated or
    /// invalid `CF-Connecting-IPv6` is untrustworthy); `CF-Connecting-IPv6` is never read
    /// otherwise, so a client cannot pick its address by sending it. Without
    /// `CF-Connecting-IPv6` the Pseudo IPv4 value itself is answered. Real clients never have
    /// Class E addresses, so this changes nothing when Pseudo IPv4 is off.
    ///
    /// **What the ranges prove.** A peer in Cloudflare's ranges proves the request came
    /// through Cloudflare — for *some* Cloudflare customer, not necessarily your zone: anyone
    /// can put a zone on Cloudflare, point it at your origin's address and send requests
    /// through it with the `CF-Connecting-IP` Cloudflare computes for them (their own address,
    /// so not a forged one, but through a zone whose rules are not yours). When that matters,
    /// require *Authenticated Origin Pulls* (mTLS from Cloudflare to your origin, with your
    /// zone's certificate), or have a Worker at your zone sign the client address (the crate's
    /// signed header), and firewall the origin to Cloudflare's ranges.
    pub fn cf_connecting_ip() -> Self {
        Self {
            format: ValueFormat::CloudflarePseudoIpv4Aware,
            ..Self::new(CF_CONNECTING_IP, TrustedRanges::cloudflare())
        }
    }

    /// `CF-Connecting-IPv6`, believed only from [Cloudflare's published
    /// ranges](TrustedRanges::cloudflare): the real IPv6 address of a client when Cloudflare's
    /// Pseudo IPv4 is set to *Overwrite Headers* (Cloudflare then sets `CF-Connecting-IP` to a
    /// `240.0.0.0/4` stand-in).
    ///
    /// [`cf_connecting_ip`](Self::cf_connecting_ip) already reads this header when, and only
    /// when, `CF-Connecting-IP` holds a Pseudo IPv4 address: prefer it. Use this source alone,
    /// or first in a [`Chain`](super::Chain), only if you know Cloudflare removes a
    /// client-sent `CF-Connecting-IPv6` in your configuration; Cloudflare documents the header
    /// only for the *Overwrite Headers* mode. The same caveat as `cf_connecting_ip` applies to
    /// what Cloudflare's ranges prove.
    pub fn cf_connecting_ipv6() -> Self {
        Self::new(CF_CONNECTING_IPV6, TrustedRanges::cloudflare())
    }

    /// `True-Client-IP` (Akamai; Cloudflare Enterprise), believed only from `trusted_peers`
    /// (the CDN's addresses that reach your origin).
    ///
    /// **WARNING: Akamai and Cloudflare Enterprise KEEP a `True-Client-IP` that the client sent
    /// itself unless they are configured to overwrite it.** With the default settings a client
    /// chooses its own address by sending the header: the peer check cannot help, since the
    /// request does come from the CDN. Use this preset only after setting the CDN to always
    /// replace the header with the connecting address (Akamai: do not allow clients to send
    /// the True-Client-IP header), and test it by sending one yourself.
    pub fn true_client_ip(trusted_peers: TrustedRanges) -> Self {
        Self::new(TRUE_CLIENT_IP, trusted_peers)
    }

    /// `Fastly-Client-IP`, believed only from `trusted_peers` (Fastly's addresses).
    ///
    /// **WARNING: Fastly KEEPS a `Fastly-Client-IP` that the client sent itself unless your
    /// service overwrites it.** With the default settings a client chooses its own address by
    /// sending the header: the peer check cannot help, since the request does come from
    /// Fastly. Use this preset only when your VCL or Compute code sets it unconditionally
    /// (`set req.http.Fastly-Client-IP = client.ip;` in `vcl_recv` on the edge), and test it
    /// by sending one yourself.
    pub fn fastly_client_ip(trusted_peers: TrustedRanges) -> Self {
        Self::new(FASTLY_CLIENT_IP, trusted_peers)
    }

    /// `X-Real-IP`, believed only from `trusted_peers` (your reverse proxy's addresses).
    ///
    /// True when the proxy sets it from the connection, as nginx does with
    /// `proxy_set_header X-Real-IP $remote_addr;` — which replaces whatever the client sent.
    /// If that proxy itself sits behind another one and rewrites `$remote_addr` (nginx's
    /// `real_ip_header`), the value is only as good as that proxy's own trust settings.
    pub fn x_real_ip(trusted_peers: TrustedRanges) -> Self {
        Self::new(X_REAL_IP, trusted_peers)
    }

    /// `Fly-Client-IP`, believed only from `trusted_peers` (the addresses Fly.io's proxy uses
    /// to reach your machine).
    ///
    /// It is the address that connected to Fly.io's edge. Behind another CDN (Cloudflare in
    /// front of Fly.io) that is **the CDN's address**, not the client's: read the CDN's own
    /// header instead (or [`XForwardedFor`](super::XForwardedFor) walking past both).
    pub fn fly_client_ip(trusted_peers: TrustedRanges) -> Self {
        Self::new(FLY_CLIENT_IP, trusted_peers)
    }

    /// `CloudFront-Viewer-Address`, believed only from `trusted_peers` (CloudFront's
    /// origin-facing ranges).
    ///
    /// Amazon CloudFront adds it when your origin request policy includes it. Its value is
    /// `ip:port` with an **unbracketed** IPv6 address (`2001:db8::1:443`), so it is split at
    /// the last colon: the part before it is the address, the part after it must be a port.
    pub fn cloudfront_viewer_address(trusted_peers: TrustedRanges) -> Self {
        Self {
            format: ValueFormat::AddressColonPort,
            ..Self::new(CLOUDFRONT_VIEWER_ADDRESS, trusted_peers)
        }
    }

    /// The header this source reads.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The peers whose header is believed.
    pub fn trusted_peers(&self) -> &TrustedRanges {
        &self.trusted_peers
    }
}

/// The single line of a header: absent, the one value, or duplicated (with the first line).
fn single_line(
    lines: GetAll<'_, HeaderValue>,
) -> Result<Option<&HeaderValue>, (&HeaderValue, Reason)> {
    let mut lines = lines.iter();
    let first = lines.next();
    match (first, lines.next()) {
        (Some(first), Some(_)) => Err((first, Reason::DuplicateHeader)),
        (first, _) => Ok(first),
    }
}

/// One address in a single header value; `None` for a list, garbage or an empty value.
fn parse_single(value: &HeaderValue) -> Option<IpAddr> {
    let token = trim_ows(value.as_bytes());
    if token.contains(&b',') {
        return None;
    }
    parse_entry(token)
}

/// Cloudflare takes its Pseudo IPv4 addresses from the Class E block `240.0.0.0/4`, which no
/// real client has.
fn is_pseudo_ipv4(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.octets()[0] >= 240)
}

impl TrustedHeader {
    /// The resolution, reporting each step to `observe`.
    fn walk<'a>(
        &'a self,
        request: &RequestView<'a>,
        observe: &mut (impl FnMut(Event<'a>) + ?Sized),
    ) -> Resolution {
        let peer = request.peer_ip();
        let trusted = peer.is_some_and(|peer| self.trusted_peers.contains(peer));
        observe(Event::Peer { ip: peer, trusted });
        if peer.is_none() {
            return Resolution::Absent(Reason::NoPeer);
        }
        if !trusted {
            return Resolution::Absent(Reason::PeerNotTrusted);
        }
        let headers = request.headers();
        let name = self.name.as_str();
        let value = match single_line(headers.get_all(&self.name)) {
            Ok(Some(value)) => value,
            Ok(None) => return Resolution::Absent(Reason::HeaderMissing),
            Err((first, reason)) => {
                let verdict = Verdict::Stopped(reason);
                observe(Event::Header {
                    name,
                    raw: first.as_bytes(),
                    verdict,
                });
                return Resolution::Untrustworthy(reason);
            }
        };
        let raw = value.as_bytes();
        let parsed = match self.format {
            ValueFormat::Address | ValueFormat::CloudflarePseudoIpv4Aware => parse_single(value),
            ValueFormat::AddressColonPort => parse_ip_port_last_colon(trim_ows(raw)),
        };
        let Some(ip) = parsed else {
            observe(Event::Header {
                name,
                raw,
                verdict: Verdict::Stopped(INVALID),
            });
            return Resolution::Untrustworthy(INVALID);
        };
        if self.format == ValueFormat::CloudflarePseudoIpv4Aware && is_pseudo_ipv4(ip) {
            // A Pseudo IPv4 stand-in: when CF-Connecting-IPv6 is there, it is the answer.
            let (real, resolution) = match single_line(headers.get_all(&CF_CONNECTING_IPV6)) {
                Ok(None) => (None, Resolution::resolved(ip, SourceKind::Header)),
                Ok(Some(real)) => match parse_single(real) {
                    Some(real_ip @ IpAddr::V6(_)) => (
                        Some(real),
                        Resolution::resolved(real_ip, SourceKind::Header),
                    ),
                    _ => (Some(real), Resolution::Untrustworthy(INVALID)),
                },
                Err((first, reason)) => (Some(first), Resolution::Untrustworthy(reason)),
            };
            if let Some(real) = real {
                observe(Event::Header {
                    name,
                    raw,
                    verdict: Verdict::Replaced,
                });
                let verdict = match resolution {
                    Resolution::Untrustworthy(reason) => Verdict::Stopped(reason),
                    _ => Verdict::Client,
                };
                observe(Event::Header {
                    name: "cf-connecting-ipv6",
                    raw: real.as_bytes(),
                    verdict,
                });
                return resolution;
            }
        }
        observe(Event::Header {
            name,
            raw,
            verdict: Verdict::Client,
        });
        Resolution::resolved(ip, SourceKind::Header)
    }
}

impl ResolveClientIp for TrustedHeader {
    fn resolve(&self, request: &RequestView<'_>) -> Resolution {
        self.walk(request, &mut ignore)
    }

    fn explain(&self, request: &RequestView<'_>) -> Explanation {
        let mut events = Vec::new();
        let resolution = self.walk(request, &mut |event| events.push(event));
        let mut explanation = Explanation::new(format!("header:{}", self.name), resolution)
            .with_trusted(ranges_text(&self.trusted_peers));
        for event in events {
            explanation.record(event);
        }
        explanation
    }

    fn headers_read(&self) -> &[HeaderName] {
        std::slice::from_ref(&self.name)
    }
}

impl fmt::Debug for TrustedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("TrustedHeader");
        debug.field("name", &self.name.as_str());
        match self.format {
            ValueFormat::Address => {}
            ValueFormat::CloudflarePseudoIpv4Aware => {
                debug.field("pseudo_ipv4_from", &CF_CONNECTING_IPV6.as_str());
            }
            ValueFormat::AddressColonPort => {
                debug.field("value", &"ip:port, split at the last colon");
            }
        }
        debug.field("trusted_peers", &self.trusted_peers).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::client_ip::PeerAddr;

    const CLOUDFLARE_PEER: &str = "173.245.48.1";

    fn loopback_real_ip() -> TrustedHeader {
        TrustedHeader::x_real_ip(TrustedRanges::loopback())
    }

    fn resolve(
        source: &TrustedHeader,
        peer: Option<&str>,
        headers: &[(&'static str, &[u8])],
    ) -> Resolution {
        let mut request = http::Request::new(());
        if let Some(peer) = peer {
            let ip: IpAddr = peer.parse().unwrap();
            request
                .extensions_mut()
                .insert(PeerAddr(SocketAddr::new(ip, 40_000)));
        }
        for (name, value) in headers {
            request
                .headers_mut()
                .append(*name, HeaderValue::from_bytes(value).unwrap());
        }
        source.resolve(&RequestView::new(&request))
    }

    fn resolved(ip: &str) -> Resolution {
        Resolution::resolved(ip.parse().unwrap(), SourceKind::Header)
    }

    #[test]
    fn value_table() {
        let source = loopback_real_ip();
        let cases: &[(&[u8], Resolution)] = &[
            (b"203.0.113.7", resolved("203.0.113.7")),
            (b"  203.0.113.7\t", resolved("203.0.113.7")),
            (b"203.0.113.7:8080", resolved("203.0.113.7")),
            (b"2001:db8::1", resolved("2001:db8::1")),
            (b"[2001:db8::1]:443", resolved("2001:db8::1")),
            (b"2001:DB8:0:0:0:0:0:1", resolved("2001:db8::1")),
            (b"::ffff:203.0.113.7", resolved("203.0.113.7")),
            (b"fe80::1%eth0", resolved("fe80::1")),
            (
                b"203.0.113.7, 198.51.100.1",
                Resolution::Untrustworthy(INVALID),
            ),
            (b"203.0.113.7,", Resolution::Untrustworthy(INVALID)),
            (b"", Resolution::Untrustworthy(INVALID)),
            (b"unknown", Resolution::Untrustworthy(INVALID)),
            (b"127.1", Resolution::Untrustworthy(INVALID)),
            (b"0.0.0.0", Resolution::Untrustworthy(INVALID)),
            (b"203.0.113.7:99999", Resolution::Untrustworthy(INVALID)),
            (b"203.0.113.\xc3\xa9", Resolution::Untrustworthy(INVALID)),
            (b"\xff\xfe", Resolution::Untrustworthy(INVALID)),
        ];
        for (value, expected) in cases {
            let answer = resolve(&source, Some("127.0.0.1"), &[("x-real-ip", value)]);
            assert_eq!(answer, *expected, "{:?}", String::from_utf8_lossy(value));
        }
    }

    #[test]
    fn peer_rules() {
        let source = loopback_real_ip();
        let header: &[(&'static str, &[u8])] = &[("x-real-ip", b"203.0.113.7")];
        assert_eq!(
            resolve(&source, None, header),
            Resolution::Absent(Reason::NoPeer)
        );
        for untrusted in ["198.51.100.1", "0.0.0.0", "::", "::ffff:198.51.100.1"] {
            assert_eq!(
                resolve(&source, Some(untrusted), header),
                Resolution::Absent(Reason::PeerNotTrusted),
                "{untrusted}"
            );
        }
        // Dual-stack: the IPv4-mapped loopback is the IPv4 loopback.
        assert_eq!(
            resolve(&source, Some("::ffff:127.0.0.1"), header),
            resolved("203.0.113.7")
        );
        assert_eq!(
            resolve(&source, Some("::1"), header),
            resolved("203.0.113.7")
        );
    }

    #[test]
    fn untrusted_peer_with_garbage_is_absent_not_untrustworthy() {
        // The header is not read at all: even a duplicated garbage header is no stop.
        let source = loopback_real_ip();
        let answer = resolve(
            &source,
            Some("198.51.100.1"),
            &[("x-real-ip", b"garbage"), ("x-real-ip", b"more")],
        );
        assert_eq!(answer, Resolution::Absent(Reason::PeerNotTrusted));
    }

    #[test]
    fn missing_and_duplicate() {
        let source = loopback_real_ip();
        assert_eq!(
            resolve(
                &source,
                Some("127.0.0.1"),
                &[("x-forwarded-for", b"203.0.113.7")]
            ),
            Resolution::Absent(Reason::HeaderMissing)
        );
        assert_eq!(
            resolve(
                &source,
                Some("127.0.0.1"),
                &[("x-real-ip", b"203.0.113.7"), ("x-real-ip", b"203.0.113.7")]
            ),
            Resolution::Untrustworthy(Reason::DuplicateHeader)
        );
    }

    #[test]
    fn cf_connecting_ip_pseudo_ipv4() {
        let source = TrustedHeader::cf_connecting_ip();
        let peer = Some(CLOUDFLARE_PEER);
        // Plain values: CF-Connecting-IPv6 is never read.
        assert_eq!(
            resolve(
                &source,
                peer,
                &[
                    ("cf-connecting-ip", b"203.0.113.7"),
                    ("cf-connecting-ipv6", b"2001:db8::66")
                ]
            ),
            resolved("203.0.113.7")
        );
        // Pseudo IPv4 with the real address alongside.
        assert_eq!(
            resolve(
                &source,
                peer,
                &[
                    ("cf-connecting-ip", b"240.16.0.1"),
                    ("cf-connecting-ipv6", b"2001:db8::66")
                ]
            ),
            resolved("2001:db8::66")
        );
        // Pseudo IPv4 alone: answered as is.
        assert_eq!(
            resolve(&source, peer, &[("cf-connecting-ip", b"240.16.0.1")]),
            resolved("240.16.0.1")
        );
        // Pseudo IPv4 with a bad or duplicated IPv6 header: a stop.
        for bad in [&b"garbage"[..], b"203.0.113.7", b"::ffff:203.0.113.7"] {
            assert_eq!(
                resolve(
                    &source,
                    peer,
                    &[
                        ("cf-connecting-ip", b"240.16.0.1"),
                        ("cf-connecting-ipv6", bad)
                    ]
                ),
                Resolution::Untrustworthy(INVALID)
            );
        }
        assert_eq!(
            resolve(
                &source,
                peer,
                &[
                    ("cf-connecting-ip", b"240.16.0.1"),
                    ("cf-connecting-ipv6", b"2001:db8::66"),
                    ("cf-connecting-ipv6", b"2001:db8::67")
                ]
            ),
            Resolution::Untrustworthy(Reason::DuplicateHeader)
        );
        // 239.x is not Class E; 255.255.255.255 is broadcast, rejected by the parser.
        assert_eq!(
            resolve(
                &source,
                peer,
                &[
                    ("cf-connecting-ip", b"239.1.1.1"),
                    ("cf-connecting-ipv6", b"2001:db8::66")
                ]
            ),
            Resolution::Untrustworthy(INVALID),
            "multicast is no client address"
        );
    }

    #[test]
    fn pseudo_ipv4_is_exactly_240_slash_4() {
        for (text, pseudo) in [
            ("240.0.0.0", true),
            ("240.16.0.1", true),
            ("255.255.255.254", true),
            ("239.255.255.255", false),
            ("203.0.113.7", false),
            ("::ffff:240.0.0.1", false), // not canonical: never reaches the check as IPv6
            ("f000::1", false),
        ] {
            assert_eq!(is_pseudo_ipv4(text.parse().unwrap()), pseudo, "{text}");
        }
    }

    #[test]
    fn cloudfront_viewer_address_splits_at_the_last_colon() {
        let source = TrustedHeader::cloudfront_viewer_address(TrustedRanges::loopback());
        let peer = Some("127.0.0.1");
        let cases: &[(&[u8], Resolution)] = &[
            (b"203.0.113.7:46532", resolved("203.0.113.7")),
            (b"2001:db8::1:443", resolved("2001:db8::1")),
            (b"2001:db8:0:0:0:0:0:1:443", resolved("2001:db8::1")),
            (b"203.0.113.7:nope", Resolution::Untrustworthy(INVALID)),
            (b"garbage", Resolution::Untrustworthy(INVALID)),
        ];
        for (value, expected) in cases {
            let answer = resolve(&source, peer, &[("cloudfront-viewer-address", value)]);
            assert_eq!(answer, *expected, "{:?}", String::from_utf8_lossy(value));
        }
    }

    #[test]
    fn presets_read_their_headers() {
        let ranges = TrustedRanges::loopback;
        let presets = [
            (TrustedHeader::true_client_ip(ranges()), "true-client-ip"),
            (
                TrustedHeader::fastly_client_ip(ranges()),
                "fastly-client-ip",
            ),
            (TrustedHeader::x_real_ip(ranges()), "x-real-ip"),
            (TrustedHeader::fly_client_ip(ranges()), "fly-client-ip"),
        ];
        for (source, name) in presets {
            assert_eq!(source.name().as_str(), name);
            assert_eq!(source.trusted_peers(), &TrustedRanges::loopback());
            let header = HeaderName::from_static(name);
            let mut request = http::Request::new(());
            request
                .extensions_mut()
                .insert(PeerAddr("127.0.0.1:1".parse().unwrap()));
            request
                .headers_mut()
                .insert(header, HeaderValue::from_static("203.0.113.7"));
            assert_eq!(
                source.resolve(&RequestView::new(&request)),
                resolved("203.0.113.7"),
                "{name}"
            );
        }
        assert_eq!(
            TrustedHeader::cf_connecting_ip().trusted_peers(),
            &TrustedRanges::cloudflare()
        );
        assert_eq!(
            TrustedHeader::cf_connecting_ipv6().name().as_str(),
            "cf-connecting-ipv6"
        );
    }

    #[test]
    fn from_name_checks_its_input() {
        let source =
            TrustedHeader::from_name("X-Client-Address", TrustedRanges::loopback()).unwrap();
        assert_eq!(source.name().as_str(), "x-client-address");
        for bad in ["", "x client", "x-client:", "é"] {
            let error = TrustedHeader::from_name(bad, TrustedRanges::loopback()).unwrap_err();
            assert!(
                error.to_string().starts_with("invalid header name"),
                "{error}"
            );
        }
        let error = TrustedHeader::from_name("Forwarded", TrustedRanges::loopback()).unwrap_err();
        assert!(error.to_string().contains("forwarded source"), "{error}");
        let error = TrustedHeader::from_name("x-real-ip", TrustedRanges::new()).unwrap_err();
        assert!(error.to_string().contains("empty"), "{error}");
    }

    #[test]
    fn debug_shows_name_and_ranges() {
        let debug = format!("{:?}", loopback_real_ip());
        assert!(debug.contains("x-real-ip"), "{debug}");
        assert!(debug.contains("127.0.0.0/8"), "{debug}");
        let debug = format!("{:?}", TrustedHeader::cf_connecting_ip());
        assert!(debug.contains("cf-connecting-ip"), "{debug}");
        assert!(debug.contains("173.245.48.0/20"), "{debug}");
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::client_ip::{Chain, SocketPeer};

        fn header_line() -> impl Strategy<Value = Vec<u8>> {
            let byte = prop_oneof![
                4 => proptest::sample::select(b",:[]%. \t0123456789abcdefABCDEF".to_vec()),
                1 => any::<u8>(),
            ];
            proptest::collection::vec(byte, 0..48)
        }

        fn request_with(
            name: &'static str,
            lines: &[Vec<u8>],
            also_v6: &[Vec<u8>],
        ) -> http::Request<()> {
            let mut request = http::Request::new(());
            for (header, values) in [(name, lines), ("cf-connecting-ipv6", also_v6)] {
                for line in values {
                    if let Ok(value) = HeaderValue::from_bytes(line) {
                        request
                            .headers_mut()
                            .append(HeaderName::from_static(header), value);
                    }
                }
            }
            request
                .extensions_mut()
                .insert(PeerAddr("173.245.48.1:40000".parse().unwrap()));
            request
        }

        proptest! {
            /// No bytes panic; an answer is canonical and a client address; a present header
            /// from a trusted peer never lets a chain fall through to the peer (46-like).
            #[test]
            fn any_bytes_resolve_canonically_or_stop(
                lines in proptest::collection::vec(header_line(), 0..3),
                v6_lines in proptest::collection::vec(header_line(), 0..3),
                pick in 0_usize..4,
            ) {
                let cloudflare = TrustedRanges::cloudflare;
                let (source, name) = match pick {
                    0 => (TrustedHeader::cf_connecting_ip(), "cf-connecting-ip"),
                    1 => (TrustedHeader::cf_connecting_ipv6(), "cf-connecting-ipv6"),
                    2 => (TrustedHeader::x_real_ip(cloudflare()), "x-real-ip"),
                    _ => (
                        TrustedHeader::cloudfront_viewer_address(cloudflare()),
                        "cloudfront-viewer-address",
                    ),
                };
                let request = request_with(name, &lines, &v6_lines);
                let view = RequestView::new(&request);
                let present = request.headers().get_all(name).iter().count();
                let answer = source.resolve(&view);
                match answer {
                    Resolution::Resolved { ip, source: kind } => {
                        prop_assert_eq!(kind, SourceKind::Header);
                        prop_assert_eq!(ip, ip.to_canonical());
                        prop_assert!(!ip.is_unspecified() && !ip.is_multicast());
                        prop_assert_eq!(present, 1);
                    }
                    Resolution::Absent(reason) => {
                        prop_assert_eq!(reason, Reason::HeaderMissing);
                        prop_assert_eq!(present, 0);
                    }
                    Resolution::Untrustworthy(reason) => {
                        prop_assert!(present >= 1 || pick == 0, "{:?}", reason);
                        if present > 1 {
                            prop_assert_eq!(reason, Reason::DuplicateHeader);
                        }
                    }
                }
                let chain = Chain::new().then(source).then(SocketPeer::new());
                let chained = chain.resolve(&view);
                if present > 0 {
                    prop_assert_eq!(chained, answer);
                } else {
                    prop_assert_eq!(chained.ip(), Some("173.245.48.1".parse().unwrap()));
                }
            }
        }
    }
}
