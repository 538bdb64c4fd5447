//! Drives the single-value header sources (`TrustedHeader`) through the public API: a custom
//! name, the `X-Real-IP` preset, the `CF-Connecting-IP` preset (with its Pseudo IPv4
//! replacement by `CF-Connecting-IPv6`) and `CloudFront-Viewer-Address` (`ip:port` split at the
//! last colon).
//!
//! Run: `cargo +nightly fuzz run header_sources` (from the crate root).
//!
//! The input's first byte picks the peer (none, trusted v4 / v6 / IPv4-mapped, untrusted,
//! Cloudflare v4 / mapped / v6); the rest is split at `\n` into header lines, each line's first
//! byte picking its name (the headers of the four sources, `CF-Connecting-IPv6` and an
//! `X-Forwarded-For` none of them reads), so the fuzzer writes duplicates and mixes at will.
//! Besides "no panic", for every source it checks:
//! - no peer → absent (`NoPeer`); a peer outside the source's trusted ranges → absent
//!   (`PeerNotTrusted`): an untrusted peer's header is never believed (ATTACKS.md 3, 5);
//! - headers the source does not read change nothing (ATTACKS.md 7);
//! - no line → absent (`HeaderMissing`), two lines or more → untrustworthy
//!   (`DuplicateHeader`, ATTACKS.md 18);
//! - one line: an address std parses (alone, or as a socket address) is resolved to exactly
//!   that address when a client can have it, refused when it cannot; and whatever resolves is
//!   canonical, an address a client can have, and the address written in the value (brackets,
//!   port and zone aside) — never read out of garbage (ATTACKS.md 22, 26-32, 41, 47);
//! - `CF-Connecting-IPv6` counts only when `CF-Connecting-IP` holds a Pseudo IPv4 address
//!   (`240.0.0.0/4`), and then it must be one IPv6 address (ATTACKS.md 38);
//! - `explain` answers what `resolve` answers.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;

use http::{HeaderName, HeaderValue, Request};
use libfuzzer_sys::fuzz_target;
use tower_bouncer::client_ip::{
    PeerAddr, Reason, RequestView, Resolution, ResolveClientIp, SourceKind, TrustedHeader,
    TrustedRanges,
};

/// The header names a line can take, by its first byte.
const NAMES: [&str; 6] = [
    "x-real-ip",
    "x-client-address",
    "cf-connecting-ip",
    "cf-connecting-ipv6",
    "cloudfront-viewer-address",
    "x-forwarded-for",
];

const CF_CONNECTING_IPV6: HeaderName = HeaderName::from_static("cf-connecting-ipv6");

/// How a source reads its header's value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    /// One address: `ip`, `ip:port`, `[v6]`, `[v6]:port`, `v6%zone`, `[v6%zone]:port`.
    Address,
    /// `CF-Connecting-IP`: one address, a Pseudo IPv4 one replaced by `CF-Connecting-IPv6`.
    Cloudflare,
    /// `ip:port`, split at the last colon.
    LastColon,
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let peer = match selector % 8 {
        0 => None,
        1 => Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        2 => Some(IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1,
        ))),
        3 => Some(IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped())),
        4 => Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1))),
        5 => Some(IpAddr::V4(Ipv4Addr::new(173, 245, 48, 1))),
        6 => Some(IpAddr::V6(Ipv4Addr::new(173, 245, 48, 1).to_ipv6_mapped())),
        _ => Some(IpAddr::V6(Ipv6Addr::new(0x2400, 0xcb00, 0, 0, 0, 0, 0, 1))),
    };

    let mut request = Request::new(());
    for line in rest.split(|&byte| byte == b'\n') {
        let Some((&name, value)) = line.split_first() else {
            continue;
        };
        let Ok(value) = HeaderValue::from_bytes(value) else {
            continue;
        };
        let name = NAMES[usize::from(name) % NAMES.len()];
        request.headers_mut().append(name, value);
    }
    if let Some(peer) = peer {
        request
            .extensions_mut()
            .insert(PeerAddr(SocketAddr::new(peer, 4000)));
    }

    for (source, format) in sources() {
        check(source, *format, &request);
    }
});

/// The sources under test, built once (the Cloudflare ranges take a while to parse).
fn sources() -> &'static [(TrustedHeader, Format); 4] {
    static SOURCES: OnceLock<[(TrustedHeader, Format); 4]> = OnceLock::new();
    SOURCES.get_or_init(|| {
        let trusted =
            TrustedRanges::parse("10.0.0.0/8\n2001:db8:ffff::/48\n127.0.0.0/8\n").unwrap();
        [
            (TrustedHeader::x_real_ip(trusted.clone()), Format::Address),
            (
                TrustedHeader::from_name("X-Client-Address", trusted.clone()).unwrap(),
                Format::Address,
            ),
            (TrustedHeader::cf_connecting_ip(), Format::Cloudflare),
            (
                TrustedHeader::cloudfront_viewer_address(trusted),
                Format::LastColon,
            ),
        ]
    })
}

fn check(source: &TrustedHeader, format: Format, request: &Request<()>) {
    let view = RequestView::new(request);
    let answer = source.resolve(&view);
    assert_eq!(source.explain(&view).resolution(), answer, "{source:?}");

    // Only the source's own header counts (and CF-Connecting-IPv6 for the Cloudflare preset).
    let mut own = vec![source.name().clone()];
    if format == Format::Cloudflare {
        own.push(CF_CONNECTING_IPV6);
    }
    let only_own = keep_headers(request, &own);
    assert_eq!(
        source.resolve(&RequestView::new(&only_own)),
        answer,
        "{source:?}"
    );

    let Some(peer) = view.peer_ip() else {
        assert_eq!(answer, Resolution::Absent(Reason::NoPeer));
        return;
    };
    if !source.trusted_peers().contains(peer) {
        assert_eq!(
            answer,
            Resolution::Absent(Reason::PeerNotTrusted),
            "{source:?}"
        );
        return;
    }
    let lines: Vec<&HeaderValue> = request.headers().get_all(source.name()).iter().collect();
    let value = match lines[..] {
        [] => return assert_eq!(answer, Resolution::Absent(Reason::HeaderMissing)),
        [value] => value,
        _ => return assert_eq!(answer, Resolution::Untrustworthy(Reason::DuplicateHeader)),
    };

    let direct = match format {
        Format::Address => answer,
        // The answer without CF-Connecting-IPv6: what CF-Connecting-IP alone says.
        Format::Cloudflare => {
            let without_v6 = keep_headers(request, &[source.name().clone()]);
            source.resolve(&RequestView::new(&without_v6))
        }
        Format::LastColon => return check_last_colon(value.as_bytes(), answer),
    };
    check_address(value.as_bytes(), direct);
    match direct {
        Resolution::Resolved { ip, .. } if format == Format::Cloudflare && is_pseudo_ipv4(ip) => {
            check_pseudo_ipv4(request, direct, answer);
        }
        // CF-Connecting-IPv6 is never read unless CF-Connecting-IP is a Pseudo IPv4 address:
        // a client cannot choose its address by sending it.
        _ => assert_eq!(answer, direct),
    }
}

/// A Pseudo IPv4 `CF-Connecting-IP` (`direct`) and what the source answered with
/// `CF-Connecting-IPv6` in the request.
fn check_pseudo_ipv4(request: &Request<()>, direct: Resolution, answer: Resolution) {
    let lines: Vec<&HeaderValue> = request
        .headers()
        .get_all(CF_CONNECTING_IPV6)
        .iter()
        .collect();
    match lines[..] {
        [] => assert_eq!(answer, direct),
        [value] => match answer {
            Resolution::Resolved { ip, source, .. } => {
                assert!(ip.is_ipv6(), "CF-Connecting-IPv6 answered IPv4 {ip}");
                assert_eq!(source, SourceKind::Header);
                check_address(value.as_bytes(), answer);
            }
            other => {
                assert_eq!(
                    other,
                    Resolution::Untrustworthy(Reason::InvalidEntry { position: 1 })
                );
                if let Some(ip) = std_address(trim_ows(value.as_bytes())) {
                    assert!(!ip.is_ipv6() || !client_can_have(ip), "{ip} refused");
                }
            }
        },
        _ => assert_eq!(answer, Resolution::Untrustworthy(Reason::DuplicateHeader)),
    }
}

/// One header line read as one address, and the source's answer for it.
fn check_address(value: &[u8], answer: Resolution) {
    let text = trim_ows(value);
    match answer {
        Resolution::Resolved { ip, source, .. } => {
            assert_eq!(source, SourceKind::Header);
            assert_resolvable(ip);
            assert!(
                text.iter().all(u8::is_ascii_graphic) && !text.contains(&b','),
                "resolved {ip} from {value:?}"
            );
            assert_eq!(
                written_address(text),
                Some(ip),
                "resolved {ip} from {value:?}"
            );
        }
        other => {
            assert_eq!(
                other,
                Resolution::Untrustworthy(Reason::InvalidEntry { position: 1 })
            );
            if let Some(ip) = std_address(text) {
                assert!(!client_can_have(ip), "{ip} refused in {value:?}");
            }
        }
    }
}

/// `CloudFront-Viewer-Address`: `ip:port`, IPv6 unbracketed, split at the last colon.
fn check_last_colon(value: &[u8], answer: Resolution) {
    let text = trim_ows(value);
    let split = std::str::from_utf8(text).ok().and_then(|text| {
        let (address, port) = text.rsplit_once(':')?;
        let port_ok = (1..=5).contains(&port.len())
            && port.bytes().all(|byte| byte.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|port| port <= 65_535);
        Some((address.parse::<IpAddr>().ok()?.to_canonical(), port_ok))
    });
    match answer {
        Resolution::Resolved { ip, source, .. } => {
            assert_eq!(source, SourceKind::Header);
            assert_resolvable(ip);
            assert_eq!(split, Some((ip, true)), "resolved {ip} from {value:?}");
        }
        other => {
            assert_eq!(
                other,
                Resolution::Untrustworthy(Reason::InvalidEntry { position: 1 })
            );
            if let Some((ip, true)) = split {
                assert!(!client_can_have(ip), "{ip} refused in {value:?}");
            }
        }
    }
}

/// The address std reads from the whole value, alone or as a socket address (ports without
/// leading zeros and no zone: the forms whose meaning is beyond doubt).
fn std_address(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(text).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (_, port) = text.rsplit_once(':')?;
    if text.contains('%') || port.len() > 5 || (port.starts_with('0') && port != "0") {
        return None;
    }
    text.parse::<SocketAddr>()
        .ok()
        .map(|address| address.ip().to_canonical())
}

/// The address written in a value, brackets, port and zone set aside (their own syntax is the
/// crate's to check); `None` when no std address is written there.
fn written_address(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(text).ok()?;
    let host = if let Some(inside) = text.strip_prefix('[') {
        inside.split_once(']')?.0
    } else if text.matches(':').count() == 1 {
        text.split_once(':')?.0
    } else {
        text
    };
    let host = host.split('%').next()?;
    host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The request with only the header lines named in `names`, and the same extensions.
fn keep_headers(request: &Request<()>, names: &[HeaderName]) -> Request<()> {
    let mut kept = Request::new(());
    for (name, value) in request.headers() {
        if names.contains(name) {
            kept.headers_mut().append(name, value.clone());
        }
    }
    if let Some(peer) = request.extensions().get::<PeerAddr>() {
        kept.extensions_mut().insert(*peer);
    }
    kept
}

fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |byte: &u8| *byte == b' ' || *byte == b'\t';
    let start = bytes
        .iter()
        .position(|byte| !is_ows(byte))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|byte| !is_ows(byte))
        .map_or(start, |last| last + 1);
    &bytes[start..end]
}

fn is_pseudo_ipv4(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.octets()[0] >= 240)
}

fn client_can_have(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    !ip.is_unspecified() && !ip.is_multicast() && ip != IpAddr::V4(Ipv4Addr::BROADCAST)
}

/// A resolved address is canonical and one a client can have.
fn assert_resolvable(ip: IpAddr) {
    assert_eq!(ip, ip.to_canonical(), "{ip} is not canonical");
    assert!(client_can_have(ip), "{ip} is no client's address");
}
