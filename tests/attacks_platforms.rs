//! ATTACKS.md, the trust boundary and platform items, tried against the single-address
//! header sources, chains, and the layer. Each test is named after the item it covers.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6};

use http::{HeaderValue, Request, Response, StatusCode};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_bouncer::client_ip::{
    Chain, ClientIp, ClientIpLayer, Forwarded, OnUnresolved, PeerAddr, Reason, RequestView,
    Resolution, ResolveClientIp, SocketPeer, SourceKind, TrustedHeader, TrustedRanges,
    XForwardedFor,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Request headers: name and raw value bytes, in order.
type Headers = [(&'static str, &'static [u8])];

const INVALID: Reason = Reason::InvalidEntry { position: 1 };

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn build(peer: Option<SocketAddr>, headers: &Headers) -> Request<()> {
    let mut request = Request::new(());
    if let Some(peer) = peer {
        request.extensions_mut().insert(PeerAddr(peer));
    }
    for (name, value) in headers {
        request
            .headers_mut()
            .append(*name, HeaderValue::from_bytes(value).unwrap());
    }
    request
}

fn from(peer: &str) -> Option<SocketAddr> {
    Some(SocketAddr::new(ip(peer), 40_000))
}

fn resolve(
    source: &dyn ResolveClientIp,
    peer: Option<SocketAddr>,
    headers: &Headers,
) -> Resolution {
    let request = build(peer, headers);
    source.resolve(&RequestView::new(&request))
}

fn header(ip_text: &str) -> Resolution {
    Resolution::resolved(ip(ip_text), SourceKind::Header)
}

/// Runs one request through `layer` in front of a handler that answers
/// `ip source fallback`; returns the status and body.
async fn through_layer(
    layer: ClientIpLayer,
    peer: Option<SocketAddr>,
    headers: &Headers,
) -> (StatusCode, String) {
    let service =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|request: Request<()>| async move {
                let client = request.extensions().get::<ClientIp>().copied();
                let body = match client {
                    Some(client) => format!(
                        "{} {} {}",
                        client.ip(),
                        client.source(),
                        client.is_fallback()
                    ),
                    None => "none".to_owned(),
                };
                Ok::<_, Infallible>(Response::new(body))
            }));
    let response = service.oneshot(build(peer, headers)).await.unwrap();
    (response.status(), response.into_body())
}

/// The single-address header presets, each with a trusted peer and its header name.
fn presets() -> Vec<(TrustedHeader, &'static str, &'static str)> {
    let proxies = || TrustedRanges::private();
    vec![
        (
            TrustedHeader::cf_connecting_ip(),
            "cf-connecting-ip",
            "173.245.48.1",
        ),
        (
            TrustedHeader::cf_connecting_ipv6(),
            "cf-connecting-ipv6",
            "2400:cb00::1",
        ),
        (TrustedHeader::x_real_ip(proxies()), "x-real-ip", "10.0.0.5"),
        (
            TrustedHeader::true_client_ip(proxies()),
            "true-client-ip",
            "10.0.0.5",
        ),
        (
            TrustedHeader::fastly_client_ip(proxies()),
            "fastly-client-ip",
            "10.0.0.5",
        ),
        (
            TrustedHeader::fly_client_ip(proxies()),
            "fly-client-ip",
            "10.0.0.5",
        ),
        (
            TrustedHeader::cloudfront_viewer_address(proxies()),
            "cloudfront-viewer-address",
            "10.0.0.5",
        ),
    ]
}

/// A value every preset accepts: CloudFront needs a port, `CF-Connecting-IPv6` an IPv6.
fn client_value(name: &str) -> (&'static [u8], &'static str) {
    match name {
        "cf-connecting-ipv6" => (b"2001:db8::7", "2001:db8::7"),
        "cloudfront-viewer-address" => (b"203.0.113.7:51000", "203.0.113.7"),
        _ => (b"203.0.113.7", "203.0.113.7"),
    }
}

// ---------------------------------------------------------------------------------------------
// Trust boundary

#[test]
fn attack_03_single_ip_headers_from_an_untrusted_peer_are_ignored() {
    for (source, name, _) in presets() {
        let (value, _) = client_value(name);
        for peer in [
            "198.51.100.1",
            "2001:db8:ffff::1",
            "127.0.0.1",
            "::ffff:198.51.100.1",
        ] {
            assert_eq!(
                resolve(&source, from(peer), &[(name, value)]),
                Resolution::Absent(Reason::PeerNotTrusted),
                "{name} from {peer}"
            );
        }
        // Not read at all: garbage or duplicates from an untrusted peer are no stop either.
        assert_eq!(
            resolve(
                &source,
                from("198.51.100.1"),
                &[(name, b"garbage"), (name, b"x")]
            ),
            Resolution::Absent(Reason::PeerNotTrusted),
            "{name}"
        );
    }
}

#[tokio::test]
async fn attack_03_spoofed_header_through_the_layer_rejects_or_falls_back_to_the_peer() {
    let headers: &Headers = &[
        ("x-real-ip", b"203.0.113.7"),
        ("cf-connecting-ip", b"203.0.113.7"),
        ("true-client-ip", b"203.0.113.7"),
        ("fly-client-ip", b"203.0.113.7"),
    ];
    let source = || {
        Chain::new()
            .then(TrustedHeader::cf_connecting_ip())
            .then(TrustedHeader::x_real_ip(TrustedRanges::loopback()))
            .then(TrustedHeader::true_client_ip(TrustedRanges::loopback()))
            .then(TrustedHeader::fly_client_ip(TrustedRanges::loopback()))
    };
    let (status, _) =
        through_layer(ClientIpLayer::new(source()), from("198.51.100.1"), headers).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let layer = ClientIpLayer::new(source()).on_unresolved(OnUnresolved::FallbackToPeer);
    let (status, body) = through_layer(layer, from("198.51.100.1"), headers).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "198.51.100.1 peer true");
    // With the peer as the last source of the chain: the peer, not flagged.
    let layer = ClientIpLayer::new(source().then(SocketPeer::new()));
    let (_, body) = through_layer(layer, from("198.51.100.1"), headers).await;
    assert_eq!(body, "198.51.100.1 peer false");
}

#[tokio::test]
async fn attack_04_trusted_peer_without_the_header_is_absent_and_the_chain_goes_on() {
    for (source, name, peer) in presets() {
        assert_eq!(
            resolve(&source, from(peer), &[]),
            Resolution::Absent(Reason::HeaderMissing),
            "{name}"
        );
    }
    let chain = Chain::new()
        .then(TrustedHeader::x_real_ip(TrustedRanges::loopback()))
        .then(SocketPeer::new());
    assert_eq!(
        resolve(&chain, from("127.0.0.1"), &[]),
        Resolution::resolved(ip("127.0.0.1"), SourceKind::Peer)
    );
    // Alone in the layer: unresolved → the policy (400 by default).
    let layer = ClientIpLayer::new(TrustedHeader::x_real_ip(TrustedRanges::loopback()));
    let (status, _) = through_layer(layer, from("127.0.0.1"), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn attack_05_unspecified_or_missing_peer_is_never_trusted() {
    let everyone = TrustedHeader::x_real_ip(TrustedRanges::any());
    let value: &Headers = &[("x-real-ip", b"203.0.113.7")];
    for unspecified in ["0.0.0.0", "::", "::ffff:0.0.0.0"] {
        assert_eq!(
            resolve(&everyone, from(unspecified), value),
            Resolution::Absent(Reason::PeerNotTrusted),
            "{unspecified}"
        );
    }
    assert_eq!(
        resolve(&everyone, None, value),
        Resolution::Absent(Reason::NoPeer)
    );
    assert!(Reason::NoPeer.to_string().contains("connect info"));
    // The socket peer itself never answers an unspecified address.
    assert!(resolve(&SocketPeer::new(), from("0.0.0.0"), &[])
        .ip()
        .is_none());
    assert!(resolve(&SocketPeer::new(), from("::"), &[]).ip().is_none());
    // No peer at all with the fallback policy: a 500 that names what is missing.
    let layer = ClientIpLayer::new(everyone).on_unresolved(OnUnresolved::FallbackToPeer);
    let (status, body) = through_layer(layer, None, value).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("connect info"), "{body}");
}

#[test]
fn attack_06_dual_stack_peer_matches_v4_ranges_and_zones_give_no_bypass() {
    let source = TrustedHeader::x_real_ip("10.0.0.0/8".parse().unwrap());
    let value: &Headers = &[("x-real-ip", b"203.0.113.7")];
    assert_eq!(
        resolve(&source, from("::ffff:10.0.0.5"), value),
        header("203.0.113.7")
    );
    assert_eq!(
        resolve(&source, from("::ffff:11.0.0.5"), value),
        Resolution::Absent(Reason::PeerNotTrusted)
    );
    // A zone (scope id) on the peer changes nothing, either way.
    let zoned = |text: &str| {
        Some(SocketAddr::V6(SocketAddrV6::new(
            text.parse().unwrap(),
            40_000,
            0,
            7,
        )))
    };
    assert_eq!(
        resolve(&source, zoned("::ffff:10.0.0.5"), value),
        header("203.0.113.7")
    );
    assert_eq!(
        resolve(&source, zoned("::ffff:11.0.0.5"), value),
        Resolution::Absent(Reason::PeerNotTrusted)
    );
    let link_local = TrustedHeader::x_real_ip("fe80::/10".parse().unwrap());
    assert_eq!(
        resolve(&link_local, zoned("fe80::1"), value),
        header("203.0.113.7")
    );
    assert_eq!(
        resolve(&link_local, zoned("2001:db8::1"), value),
        Resolution::Absent(Reason::PeerNotTrusted)
    );
}

#[tokio::test]
async fn attack_07_headers_not_configured_are_never_read() {
    let every_other: &Headers = &[
        ("x-forwarded-for", b"203.0.113.1"),
        ("forwarded", b"for=203.0.113.2"),
        ("cf-connecting-ip", b"203.0.113.3"),
        ("true-client-ip", b"203.0.113.4"),
        ("fly-client-ip", b"203.0.113.5"),
        ("fastly-client-ip", b"203.0.113.6"),
        ("x-client-ip", b"203.0.113.8"),
        ("x_real_ip", b"203.0.113.9"),
    ];
    let source = TrustedHeader::x_real_ip(TrustedRanges::loopback());
    assert_eq!(
        resolve(&source, from("127.0.0.1"), every_other),
        Resolution::Absent(Reason::HeaderMissing)
    );
    // The socket peer never looks at any header.
    let (_, body) = through_layer(
        ClientIpLayer::new(SocketPeer::new()),
        from("198.51.100.1"),
        every_other,
    )
    .await;
    assert_eq!(body, "198.51.100.1 peer false");
}

#[test]
fn attack_09_underscore_look_alike_is_not_the_header() {
    let source = TrustedHeader::x_real_ip(TrustedRanges::loopback());
    assert_eq!(
        resolve(&source, from("127.0.0.1"), &[("x_real_ip", b"203.0.113.7")]),
        Resolution::Absent(Reason::HeaderMissing)
    );
    let cloudflare = TrustedHeader::cf_connecting_ip();
    assert_eq!(
        resolve(
            &cloudflare,
            from("173.245.48.1"),
            &[("cf_connecting_ip", b"203.0.113.7")]
        ),
        Resolution::Absent(Reason::HeaderMissing)
    );
}

// ---------------------------------------------------------------------------------------------
// Several header lines

#[test]
fn attack_18_single_ip_header_sent_twice_is_untrustworthy_never_the_first() {
    for (source, name, peer) in presets() {
        let (value, _) = client_value(name);
        for second in [value, b"198.51.100.66", b""] {
            assert_eq!(
                resolve(&source, from(peer), &[(name, value), (name, second)]),
                Resolution::Untrustworthy(Reason::DuplicateHeader),
                "{name}"
            );
        }
        // And one line is fine.
        let (_, expected) = client_value(name);
        assert_eq!(
            resolve(&source, from(peer), &[(name, value)]),
            header(expected)
        );
    }
}

#[test]
fn attack_18_a_list_in_a_single_ip_header_is_untrustworthy() {
    for (source, name, peer) in presets() {
        for list in [
            &b"203.0.113.7, 198.51.100.1"[..],
            b"203.0.113.7,",
            b",203.0.113.7",
        ] {
            assert_eq!(
                resolve(&source, from(peer), &[(name, list)]),
                Resolution::Untrustworthy(INVALID),
                "{name}: {:?}",
                String::from_utf8_lossy(list)
            );
        }
    }
}

#[test]
fn attack_23_non_ascii_in_a_single_ip_header_is_invalid_without_panic() {
    for (source, name, peer) in presets() {
        for bytes in [
            &b"203.0.113.\xe9"[..],
            b"\xff\xfe\xfd",
            b"\x80",
            b"203.0.113.7\xa0",
        ] {
            assert_eq!(
                resolve(&source, from(peer), &[(name, bytes)]),
                Resolution::Untrustworthy(INVALID),
                "{name}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Chains stop on untrustworthy answers (like item 46)

#[tokio::test]
async fn attack_46_garbage_or_duplicate_trusted_header_stops_the_chain() {
    let chain = || {
        Chain::new()
            .then(TrustedHeader::cf_connecting_ip())
            .then(TrustedHeader::x_real_ip("173.245.48.0/20".parse().unwrap()))
            .then(SocketPeer::new())
    };
    let cases: &[(&Headers, Reason)] = &[
        (
            &[
                ("cf-connecting-ip", b"garbage"),
                ("x-real-ip", b"203.0.113.7"),
            ],
            INVALID,
        ),
        (&[("cf-connecting-ip", b"")], INVALID),
        (
            &[
                ("cf-connecting-ip", b"198.51.100.1"),
                ("cf-connecting-ip", b"198.51.100.2"),
                ("x-real-ip", b"203.0.113.7"),
            ],
            Reason::DuplicateHeader,
        ),
    ];
    for (headers, reason) in cases {
        assert_eq!(
            resolve(&chain(), from("173.245.48.1"), headers),
            Resolution::Untrustworthy(*reason)
        );
        // Through the layer: rejected, never the weaker X-Real-IP or the peer.
        let (status, _) =
            through_layer(ClientIpLayer::new(chain()), from("173.245.48.1"), headers).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    // Absent (header missing) does go on to the next source.
    assert_eq!(
        resolve(
            &chain(),
            from("173.245.48.1"),
            &[("x-real-ip", b"203.0.113.7")]
        ),
        header("203.0.113.7")
    );
}

// ---------------------------------------------------------------------------------------------
// Platforms

#[test]
fn attack_38_cf_connecting_ip_only_from_cloudflare_ranges_v4_and_v6() {
    let source = TrustedHeader::cf_connecting_ip();
    let value: &Headers = &[("cf-connecting-ip", b"203.0.113.7")];
    // First and last addresses of Cloudflare ranges, IPv4, IPv6 and IPv4-mapped.
    for peer in [
        "173.245.48.0",
        "173.245.63.255",
        "104.16.0.1",
        "131.0.75.255",
        "::ffff:162.158.0.1",
        "2400:cb00::",
        "2400:cb00:ffff:ffff:ffff:ffff:ffff:ffff",
        "2a06:98c7:ffff::1",
        "2c0f:f248::1",
    ] {
        assert_eq!(
            resolve(&source, from(peer), value),
            header("203.0.113.7"),
            "{peer}"
        );
    }
    // Just outside, elsewhere, loopback, private.
    for peer in [
        "173.245.47.255",
        "173.245.64.0",
        "131.0.76.0",
        "2400:cb01::",
        "2a06:98c8::",
        "127.0.0.1",
        "10.0.0.1",
        "::1",
    ] {
        assert_eq!(
            resolve(&source, from(peer), value),
            Resolution::Absent(Reason::PeerNotTrusted),
            "{peer}"
        );
    }
    // An IPv6 client's address in CF-Connecting-IP.
    assert_eq!(
        resolve(
            &source,
            from("2606:4700::1"),
            &[("cf-connecting-ip", b"2001:db8::9")]
        ),
        header("2001:db8::9")
    );
}

#[test]
fn attack_38_pseudo_ipv4_prefers_cf_connecting_ipv6_and_only_then() {
    let source = TrustedHeader::cf_connecting_ip();
    let edge = from("172.64.0.9");
    // Pseudo IPv4 set to "Overwrite Headers": the Class E stand-in and the real IPv6.
    assert_eq!(
        resolve(
            &source,
            edge,
            &[
                ("cf-connecting-ip", b"240.16.0.1"),
                (
                    "cf-connecting-ipv6",
                    b"2400:cb00:f00d:dead:beef:1111:2222:3333"
                )
            ]
        ),
        header("2400:cb00:f00d:dead:beef:1111:2222:3333")
    );
    // An IPv4 client that sends its own CF-Connecting-IPv6 does not choose its address.
    assert_eq!(
        resolve(
            &source,
            edge,
            &[
                ("cf-connecting-ip", b"203.0.113.7"),
                ("cf-connecting-ipv6", b"2001:db8::66")
            ]
        ),
        header("203.0.113.7")
    );
    // The documented chain for the plain IPv6 header goes on when it is absent.
    let chain = Chain::new()
        .then(TrustedHeader::cf_connecting_ipv6())
        .then(TrustedHeader::cf_connecting_ip());
    assert_eq!(
        resolve(&chain, edge, &[("cf-connecting-ip", b"203.0.113.7")]),
        header("203.0.113.7")
    );
}

/// The doc comment right above `pub fn <name>` in header.rs, as one line of text.
fn preset_docs(name: &str) -> String {
    let file = include_str!("../src/client_ip/source/header.rs");
    let signature = format!("pub fn {name}(");
    let end = file.find(&signature).unwrap();
    let before: Vec<&str> = file[..end].lines().collect();
    let docs: Vec<&str> = before
        .iter()
        .rev()
        .skip(1) // the indentation of the `pub fn` line itself
        .map(|line| line.trim_start())
        .take_while(|line| line.starts_with("///"))
        .map(|line| line.trim_start_matches('/').trim())
        .collect();
    // One line of text, so phrases that wrap still match.
    docs.into_iter().rev().collect::<Vec<_>>().join(" ")
}

#[test]
fn attack_39_true_client_ip_and_fastly_presets_warn_loudly() {
    for preset in ["true_client_ip", "fastly_client_ip"] {
        let docs = preset_docs(preset);
        assert!(docs.contains("**WARNING:"), "{preset}: {docs}");
        assert!(docs.contains("KEEP"), "{preset}: {docs}");
        assert!(docs.contains("client sent itself"), "{preset}: {docs}");
    }
    // And the behaviour the warning is about: from the CDN's own address, a client-chosen
    // value is indistinguishable and is believed. The peer check cannot help here.
    let akamai = TrustedHeader::true_client_ip("23.32.0.0/11".parse().unwrap());
    assert_eq!(
        resolve(
            &akamai,
            from("23.32.0.1"),
            &[("true-client-ip", b"6.6.6.6")]
        ),
        header("6.6.6.6")
    );
}

#[test]
fn attack_40_fly_client_ip_behind_another_cdn_is_the_cdn_address() {
    let docs = preset_docs("fly_client_ip");
    assert!(docs.contains("the CDN's address"), "{docs}");
    // Cloudflare in front of Fly.io: Fly's proxy saw Cloudflare's edge.
    let fly_proxy = from("172.16.5.5");
    let fly = TrustedHeader::fly_client_ip(TrustedRanges::private());
    assert_eq!(
        resolve(
            &fly,
            fly_proxy,
            &[
                ("fly-client-ip", b"172.70.1.2"),
                ("cf-connecting-ip", b"203.0.113.7")
            ]
        ),
        header("172.70.1.2")
    );
    assert!(TrustedRanges::cloudflare().contains(ip("172.70.1.2")));
}

#[test]
fn attack_41_cloudfront_viewer_address_splits_at_the_last_colon() {
    let source = TrustedHeader::cloudfront_viewer_address("10.0.0.0/8".parse().unwrap());
    let peer = from("10.1.2.3");
    let cases: &[(&[u8], Option<&str>)] = &[
        (b"203.0.113.7:46532", Some("203.0.113.7")),
        (b"2001:db8::1:443", Some("2001:db8::1")),
        (b"2001:db8:0:0:1:0:0:1:65535", Some("2001:db8::1:0:0:1")),
        (b"::ffff:203.0.113.7:80", Some("203.0.113.7")),
        (b"203.0.113.7", None),
        (b"203.0.113.7:", None),
        (b"203.0.113.7:99999", None),
        (b"2001:db8::1", None),
        (b"garbage:80", None),
    ];
    for (value, expected) in cases {
        let answer = resolve(&source, peer, &[("cloudfront-viewer-address", value)]);
        let expected = match expected {
            Some(text) => header(text),
            None => Resolution::Untrustworthy(INVALID),
        };
        assert_eq!(answer, expected, "{:?}", String::from_utf8_lossy(value));
    }
}

#[test]
fn attack_42_provider_ranges_prove_a_customer_not_my_zone_documented() {
    let docs = preset_docs("cf_connecting_ip");
    assert!(docs.contains("not necessarily your zone"), "{docs}");
    assert!(docs.contains("Authenticated Origin Pulls"), "{docs}");
    assert!(docs.contains("signed header"), "{docs}");
    // Any Cloudflare edge address is believed, whichever zone the request came through.
    let source = TrustedHeader::cf_connecting_ip();
    for edge in ["104.16.0.1", "198.41.128.1", "2606:4700::6810:1"] {
        assert_eq!(
            resolve(
                &source,
                from(edge),
                &[("cf-connecting-ip", b"198.51.100.200")]
            ),
            header("198.51.100.200")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Forwarding lists end to end: X-Forwarded-For and Forwarded through the layer

/// The internal proxies of these tests: RFC 1918 and loopback.
fn proxies() -> TrustedRanges {
    TrustedRanges::private().with(TrustedRanges::loopback())
}

/// Every forwarding-list source, rightmost-untrusted over `proxies()`, each with its header
/// name and a way to write a list of addresses as that header's value.
/// A forwarding-list source, its header name, and how to write a list as its value.
type ListSource = (
    Box<dyn ResolveClientIp>,
    &'static str,
    fn(&[&str]) -> String,
);

fn list_sources() -> Vec<ListSource> {
    fn xff(entries: &[&str]) -> String {
        entries.join(", ")
    }
    fn forwarded(entries: &[&str]) -> String {
        let quoted: Vec<String> = entries
            .iter()
            .map(|entry| {
                if entry.contains(':') {
                    format!("for=\"[{entry}]\"")
                } else {
                    format!("for={entry}")
                }
            })
            .collect();
        quoted.join(", ")
    }
    vec![
        (
            Box::new(XForwardedFor::rightmost_untrusted(proxies())),
            "x-forwarded-for",
            xff,
        ),
        (
            Box::new(Forwarded::rightmost_untrusted(proxies())),
            "forwarded",
            forwarded,
        ),
    ]
}

/// Through `layer` with one owned header value.
async fn through_layer_with(
    layer: ClientIpLayer,
    peer: Option<SocketAddr>,
    name: &'static str,
    value: &str,
) -> (StatusCode, String) {
    let value: &'static [u8] = Box::leak(value.as_bytes().to_vec().into_boxed_slice());
    through_layer(layer, peer, &[(name, value)]).await
}

fn layer_of(source: Box<dyn ResolveClientIp>) -> ClientIpLayer {
    ClientIpLayer::from_arc(source.into())
}

#[tokio::test]
async fn attack_01_forwarding_headers_from_an_untrusted_peer_are_not_read() {
    for (source, name, write) in list_sources() {
        let value = write(&["203.0.113.7"]);
        let chain = Chain::new().then(source).then(SocketPeer::new());
        let (status, body) = through_layer_with(
            ClientIpLayer::new(chain),
            from("198.51.100.1"),
            name,
            &value,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "198.51.100.1 peer false", "{name}");
    }
    // Alone in the layer with the reject policy: 400, the header is not used.
    for (source, name, write) in list_sources() {
        let value = write(&["203.0.113.7"]);
        let (status, _) =
            through_layer_with(layer_of(source), from("198.51.100.1"), name, &value).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
    }
}

#[tokio::test]
async fn attack_02_forged_trusted_tail_from_an_untrusted_peer_is_not_believed() {
    for (source, name, write) in list_sources() {
        // The client pretends a trusted proxy already vouched for its victim's address.
        let value = write(&["203.0.113.50", "10.0.0.1"]);
        let layer = layer_of(source).on_unresolved(OnUnresolved::FallbackToPeer);
        let (status, body) = through_layer_with(layer, from("198.51.100.1"), name, &value).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "198.51.100.1 peer true", "{name}");
    }
}

#[tokio::test]
async fn attack_08_only_the_configured_forwarding_header_counts() {
    let headers: &Headers = &[
        ("x-forwarded-for", b"203.0.113.1"),
        ("forwarded", b"for=203.0.113.2"),
    ];
    let xff = XForwardedFor::rightmost_untrusted(proxies());
    let forwarded = Forwarded::rightmost_untrusted(proxies());
    assert_eq!(
        resolve(&xff, from("10.0.0.1"), headers).ip(),
        Some(ip("203.0.113.1"))
    );
    assert_eq!(
        resolve(&forwarded, from("10.0.0.1"), headers).ip(),
        Some(ip("203.0.113.2"))
    );
    // The other header alone is not a fallback.
    assert_eq!(
        resolve(&xff, from("10.0.0.1"), &[("forwarded", b"for=203.0.113.2")]),
        Resolution::Absent(Reason::HeaderMissing)
    );
    assert_eq!(
        resolve(
            &forwarded,
            from("10.0.0.1"),
            &[("x-forwarded-for", b"203.0.113.1")]
        ),
        Resolution::Absent(Reason::HeaderMissing)
    );
    let (_, body) = through_layer(ClientIpLayer::new(xff), from("10.0.0.1"), headers).await;
    assert_eq!(body, "203.0.113.1 xff false");
    let (_, body) = through_layer(ClientIpLayer::new(forwarded), from("10.0.0.1"), headers).await;
    assert_eq!(body, "203.0.113.2 forwarded false");
}

#[tokio::test]
async fn attack_10_rightmost_untrusted_with_1_2_and_5_trusted_hops_and_prepended_spoof() {
    let expected_kind = ["xff", "forwarded"];
    for ((source, name, write), kind) in list_sources().into_iter().zip(expected_kind) {
        let layer = layer_of(source);
        for hops in [1_usize, 2, 5] {
            // The peer (10.0.0.1) appended what it saw; the hops before it are proxies too.
            let mut entries = vec!["6.6.6.6", "203.0.113.7"];
            let inner = ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"];
            entries.extend_from_slice(&inner[..hops - 1]);
            let (status, body) =
                through_layer_with(layer.clone(), from("10.0.0.1"), name, &write(&entries)).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                body,
                format!("203.0.113.7 {kind} false"),
                "{name}, {hops} hops"
            );
        }
        // An IPv6 client behind an IPv6 proxy, with a spoofed prefix.
        let value = write(&["6.6.6.6", "2001:db8::7", "fd00::2"]);
        let (_, body) = through_layer_with(layer.clone(), from("fd00::1"), name, &value).await;
        assert_eq!(body, format!("2001:db8::7 {kind} false"), "{name}");
    }
}

#[tokio::test]
async fn attack_10_hop_count_n1_and_n2_through_the_layer() {
    let cases: [(u32, &[&str]); 2] = [
        (1, &["6.6.6.6", "203.0.113.7"]),
        (2, &["6.6.6.6", "203.0.113.7", "198.51.100.30"]),
    ];
    for (hops, entries) in cases {
        let xff = XForwardedFor::hop_count(hops, proxies()).unwrap();
        let (_, body) = through_layer_with(
            ClientIpLayer::new(xff),
            from("10.0.0.1"),
            "x-forwarded-for",
            &entries.join(", "),
        )
        .await;
        assert_eq!(body, "203.0.113.7 xff false", "N={hops}");
        let forwarded = Forwarded::hop_count(hops, proxies()).unwrap();
        let value: Vec<String> = entries.iter().map(|entry| format!("for={entry}")).collect();
        let (_, body) = through_layer_with(
            ClientIpLayer::new(forwarded),
            from("10.0.0.1"),
            "forwarded",
            &value.join(","),
        )
        .await;
        assert_eq!(body, "203.0.113.7 forwarded false", "N={hops}");
    }
}

#[tokio::test]
async fn attack_10_story_1_rotated_leftmost_xff_is_one_client() {
    // The field's bypass: a new random leftmost X-Forwarded-For on every request. Through a
    // trusted proxy that appends the real address, every request is the same client.
    let layer = ClientIpLayer::new(XForwardedFor::rightmost_untrusted(proxies()));
    let mut seen = HashSet::new();
    for n in 0..200_u32 {
        let spoof = Ipv4Addr::from(0x0b00_0000 + n * 7919);
        let value = format!("{spoof}, 203.0.113.7");
        let (status, body) =
            through_layer_with(layer.clone(), from("10.0.0.1"), "x-forwarded-for", &value).await;
        assert_eq!(status, StatusCode::OK);
        seen.insert(body);
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen.contains("203.0.113.7 xff false"));
}

#[tokio::test]
async fn attack_11_every_entry_trusted_is_unresolved_never_the_leftmost() {
    for (source, name, write) in list_sources() {
        let value = write(&["10.0.0.9", "10.0.0.2"]);
        assert_eq!(
            resolve(&*source, from("10.0.0.1"), &[]),
            Resolution::Absent(Reason::HeaderMissing)
        );
        let layer = layer_of(source);
        let (status, body) =
            through_layer_with(layer.clone(), from("10.0.0.1"), name, &value).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        let layer = layer.on_unresolved(OnUnresolved::FallbackToPeer);
        let (status, body) = through_layer_with(layer, from("10.0.0.1"), name, &value).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "10.0.0.1 peer true", "{name}: never 10.0.0.9");
    }
}

#[test]
fn attack_40_behind_cloudflare_then_fly_walk_xff_past_both() {
    // Client → Cloudflare (appends the client) → Fly.io proxy (appends Cloudflare's edge).
    let fly_proxy = from("172.16.5.5");
    let headers: &Headers = &[
        ("x-forwarded-for", b"6.6.6.6, 203.0.113.7, 172.70.1.2"),
        ("fly-client-ip", b"172.70.1.2"),
    ];
    let walk = XForwardedFor::rightmost_untrusted(
        TrustedRanges::private().with(TrustedRanges::cloudflare()),
    );
    assert_eq!(
        resolve(&walk, fly_proxy, headers).ip(),
        Some(ip("203.0.113.7"))
    );
}

// ---------------------------------------------------------------------------------------------
// Through a real Axum server: distinct loopback clients are distinct peers
// (The `ClientIp` extractor and reading `ConnectInfo` need the crate's `axum` feature.)

#[cfg(feature = "axum")]
mod axum_server {
    use axum::routing::get;
    use axum::Router;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpSocket};

    use super::*;

    async fn show(client: ClientIp) -> String {
        format!(
            "{} {} {}",
            client.ip(),
            client.source(),
            client.is_fallback()
        )
    }

    async fn serve(layer: ClientIpLayer) -> SocketAddr {
        let app = Router::new().route("/", get(show)).layer(layer);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        addr
    }

    async fn http_get(server: SocketAddr, from: Ipv4Addr, headers: &str) -> (u16, String) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
        let mut stream = socket.connect(server).await.unwrap();
        let request = format!("GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_owned())
    }

    #[tokio::test]
    async fn attack_01_02_10_11_end_to_end_on_loopback() {
        // 127.0.0.1 plays the trusted proxy; 127.0.0.2 is a client that connects directly.
        let proxy_range: TrustedRanges = "127.0.0.1/32".parse().unwrap();
        let proxy = Ipv4Addr::new(127, 0, 0, 1);
        let client = Ipv4Addr::new(127, 0, 0, 2);
        for (source, header) in [
            (
                Box::new(XForwardedFor::rightmost_untrusted(proxy_range.clone()))
                    as Box<dyn ResolveClientIp>,
                "X-Forwarded-For",
            ),
            (
                Box::new(Forwarded::rightmost_untrusted(proxy_range.clone())),
                "Forwarded",
            ),
        ] {
            let (kind, list): (&str, fn(&[&str]) -> String) = if header == "Forwarded" {
                ("forwarded", |entries: &[&str]| {
                    entries
                        .iter()
                        .map(|e| format!("for={e}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
            } else {
                ("xff", |entries: &[&str]| entries.join(", "))
            };
            let chain =
                Chain::from_sources(vec![source.into(), std::sync::Arc::new(SocketPeer::new())]);
            let server = serve(ClientIpLayer::new(chain)).await;

            // 10: through the proxy, a client-prepended spoof is ignored.
            let line = format!("{header}: {}\r\n", list(&["6.6.6.6", "203.0.113.7"]));
            let (status, body) = http_get(server, proxy, &line).await;
            assert_eq!(
                (status, body.as_str()),
                (200, format!("203.0.113.7 {kind} false").as_str())
            );

            // 1: the same header sent directly is not read; the peer answers.
            let (_, body) = http_get(server, client, &line).await;
            assert_eq!(body, "127.0.0.2 peer false", "{header}");

            // 2: a forged trusted tail, sent directly, is not believed either.
            let forged = format!("{header}: {}\r\n", list(&["203.0.113.50", "127.0.0.1"]));
            let (_, body) = http_get(server, client, &forged).await;
            assert_eq!(body, "127.0.0.2 peer false", "{header}");

            // 11: every entry trusted is a stop, never the leftmost: 400.
            let all_trusted = format!("{header}: {}\r\n", list(&["127.0.0.1", "127.0.0.1"]));
            let (status, _) = http_get(server, proxy, &all_trusted).await;
            assert_eq!(status, 400, "{header}");
        }
    }
}
