//! Invariants of the forwarding-header sources (ATTACKS.md 47 and 48), by property testing.
//!
//! - no byte sequence in any header line panics a source;
//! - a resolved address is canonical, and a rightmost-untrusted walk never returns a trusted one;
//! - for any chain built by trusted proxies appending what they saw, nothing the client
//!   prepends (any bytes, any number of lines) changes the result.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::{HeaderName, HeaderValue, Request};
use proptest::prelude::*;
use tower_bouncer::client_ip::{
    Forwarded, PeerAddr, RequestView, Resolution, ResolveClientIp, SourceKind, TrustedRanges,
    XForwardedFor,
};

fn trusted() -> TrustedRanges {
    TrustedRanges::parse("10.0.0.0/8\n2001:db8:ffff::/48\n127.0.0.0/8\n").unwrap()
}

/// Bytes that stress the parsers: separators, quotes, brackets, digits, and anything at all.
fn header_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => proptest::sample::select(b",;=\"\\[]:%._ \t0123456789abcdefABCDEFforFOR".to_vec()),
        1 => any::<u8>(),
    ]
}

fn header_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(header_byte(), 0..80),
        1 => proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

fn request(peer: IpAddr, headers: &[(&'static str, Vec<Vec<u8>>)]) -> Request<()> {
    let mut request = Request::new(());
    for (name, lines) in headers {
        for line in lines {
            if let Ok(value) = HeaderValue::from_bytes(line) {
                request
                    .headers_mut()
                    .append(HeaderName::from_static(name), value);
            }
        }
    }
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::new(peer, 4000)));
    request
}

fn sources() -> Vec<(Box<dyn ResolveClientIp>, bool)> {
    let mut sources: Vec<(Box<dyn ResolveClientIp>, bool)> = vec![
        (
            Box::new(XForwardedFor::rightmost_untrusted(trusted())),
            true,
        ),
        (Box::new(Forwarded::rightmost_untrusted(trusted())), true),
    ];
    for hops in [1, 2, 3] {
        sources.push((
            Box::new(XForwardedFor::hop_count(hops, trusted()).unwrap()),
            false,
        ));
        sources.push((
            Box::new(Forwarded::hop_count(hops, trusted()).unwrap()),
            false,
        ));
    }
    sources
}

/// An address a client can have, outside the trusted ranges.
fn client_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|bits| IpAddr::V4(Ipv4Addr::from(bits))),
        any::<u128>().prop_map(|bits| IpAddr::V6(Ipv6Addr::from(bits))),
        any::<u64>()
            .prop_map(|low| IpAddr::V6(Ipv6Addr::from((0x2a00_u128 << 112) | u128::from(low)))),
    ]
    .prop_filter("an address a client can have, not trusted", |ip| {
        let usable = match ip {
            IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast()),
            IpAddr::V6(v6) => {
                !(v6.is_unspecified() || v6.is_multicast() || v6.to_ipv4_mapped().is_some())
            }
        };
        usable && !trusted().contains(*ip)
    })
}

/// A trusted proxy's address.
fn proxy_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|low| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (low & 0x00ff_ffff)))),
        any::<u32>().prop_map(|low| IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | (low & 0x00ff_ffff)))),
        (any::<u16>(), any::<u64>()).prop_map(|(middle, low)| IpAddr::V6(Ipv6Addr::from(
            (0x2001_0db8_ffff_u128 << 80) | (u128::from(middle) << 64) | u128::from(low)
        ))),
    ]
}

/// How a proxy writes the address it saw, in `X-Forwarded-For`.
fn xff_entry(ip: IpAddr, form: u8) -> String {
    match (ip, form % 4) {
        (IpAddr::V4(v4), 0 | 1) => v4.to_string(),
        (IpAddr::V4(v4), 2) => format!("{v4}:{}", 1024 + u16::from(form)),
        (IpAddr::V4(v4), _) => format!("::ffff:{v4}"),
        (IpAddr::V6(v6), 0 | 1) => v6.to_string(),
        (IpAddr::V6(v6), 2) => format!("[{v6}]"),
        (IpAddr::V6(v6), _) => format!("[{v6}]:{}", 1024 + u16::from(form)),
    }
}

/// How a proxy writes the address it saw, in a `Forwarded` element.
fn forwarded_element(ip: IpAddr, form: u8) -> String {
    let node = match (ip, form % 3) {
        (IpAddr::V4(v4), 0) => v4.to_string(),
        (IpAddr::V4(v4), 1) => format!("\"{v4}\""),
        (IpAddr::V4(v4), _) => format!("\"{v4}:{}\"", 1024 + u16::from(form)),
        (IpAddr::V6(v6), 0 | 1) => format!("\"[{v6}]\""),
        (IpAddr::V6(v6), _) => format!("\"[{v6}]:{}\"", 1024 + u16::from(form)),
    };
    match form % 5 {
        0 => format!("for={node}"),
        4 => format!("ext=\"a, for=6.6.6.6; b\";for={node};host=\"x\\\",y\""),
        1 => format!("for={node};proto=https"),
        2 => format!("proto=http;FOR={node};host=\"example.com:8080\""),
        _ => format!("by=\"[2001:db8:ffff::1]\";for={node}"),
    }
}

/// The header lines a server sees after every proxy appended what it saw to what the client
/// sent: on the last line (nginx) or on a new line (HAProxy).
fn chain(client_lines: &[Vec<u8>], appended: &[String], new_line: &[bool]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = client_lines
        .iter()
        .filter(|line| HeaderValue::from_bytes(line).is_ok())
        .cloned()
        .collect();
    for (index, entry) in appended.iter().enumerate() {
        match lines.last_mut() {
            Some(last) if !new_line.get(index).copied().unwrap_or(false) => {
                last.extend_from_slice(b", ");
                last.extend_from_slice(entry.as_bytes());
            }
            _ => lines.push(entry.as_bytes().to_vec()),
        }
    }
    lines
}

proptest! {
    /// ATTACKS 47: no input panics; output is canonical; a rightmost-untrusted walk never
    /// returns a trusted address.
    #[test]
    fn attack_47_no_header_bytes_panic_and_output_is_canonical(
        xff in proptest::collection::vec(header_line(), 0..4),
        forwarded in proptest::collection::vec(header_line(), 0..4),
        peer in prop_oneof![proxy_ip(), client_ip()],
    ) {
        let request = request(peer, &[("x-forwarded-for", xff), ("forwarded", forwarded)]);
        let view = RequestView::new(&request);
        for (source, rightmost) in sources() {
            let resolution = source.resolve(&view);
            match resolution {
                Resolution::Resolved { ip, .. } => {
                    prop_assert_eq!(ip, ip.to_canonical());
                    prop_assert!(!ip.is_unspecified() && !ip.is_multicast());
                    if rightmost {
                        prop_assert!(!trusted().contains(ip), "{:?} returned {}", source, ip);
                    }
                }
                other => prop_assert!(other.reason().is_some()),
            }
        }
    }

    /// ATTACKS 48: whatever the client sends, the chain its trusted proxies built resolves to
    /// the address the first proxy saw, with either walk and either header.
    #[test]
    fn attack_48_client_prefix_never_changes_the_result(
        client in client_ip(),
        proxies in proptest::collection::vec(proxy_ip(), 1..6),
        forms in proptest::collection::vec(any::<u8>(), 6),
        new_line in proptest::collection::vec(any::<bool>(), 6),
        client_lines in proptest::collection::vec(header_line(), 0..3),
    ) {
        // Proxy 1 saw the client, proxy 2 saw proxy 1, …; the last proxy is the socket peer.
        let seen: Vec<IpAddr> = std::iter::once(client)
            .chain(proxies.iter().copied())
            .take(proxies.len())
            .collect();
        let peer = *proxies.last().unwrap();
        let hops = u32::try_from(proxies.len()).unwrap();
        let expected = Resolution::resolved(client, SourceKind::XForwardedFor);

        let xff: Vec<String> = seen.iter().zip(&forms).map(|(ip, form)| xff_entry(*ip, *form)).collect();
        let forwarded: Vec<String> =
            seen.iter().zip(&forms).map(|(ip, form)| forwarded_element(*ip, *form)).collect();

        for lines in [chain(&client_lines, &xff, &new_line), chain(&[], &xff, &new_line)] {
            let request = request(peer, &[("x-forwarded-for", lines)]);
            let view = RequestView::new(&request);
            prop_assert_eq!(XForwardedFor::rightmost_untrusted(trusted()).resolve(&view), expected);
            prop_assert_eq!(XForwardedFor::hop_count(hops, trusted()).unwrap().resolve(&view), expected);
        }
        let expected = Resolution::resolved(client, SourceKind::Forwarded);
        for lines in [chain(&client_lines, &forwarded, &new_line), chain(&[], &forwarded, &new_line)] {
            let request = request(peer, &[("forwarded", lines)]);
            let view = RequestView::new(&request);
            prop_assert_eq!(Forwarded::rightmost_untrusted(trusted()).resolve(&view), expected);
            prop_assert_eq!(Forwarded::hop_count(hops, trusted()).unwrap().resolve(&view), expected);
        }
    }

    /// ATTACKS 10/48 with the classic spoof: the client prepends addresses, trusted ones
    /// included, and the answer is still the address the first proxy saw.
    #[test]
    fn attack_48_prepended_addresses_never_win(
        client in client_ip(),
        spoofed in proptest::collection::vec(prop_oneof![client_ip(), proxy_ip()], 0..5),
        proxies in proptest::collection::vec(proxy_ip(), 1..4),
    ) {
        let mut entries: Vec<String> = spoofed.iter().map(ToString::to_string).collect();
        entries.push(client.to_string());
        entries.extend(proxies[..proxies.len() - 1].iter().map(ToString::to_string));
        let header = entries.join(", ");
        let request = request(*proxies.last().unwrap(), &[("x-forwarded-for", vec![header.into_bytes()])]);
        let view = RequestView::new(&request);
        prop_assert_eq!(
            XForwardedFor::rightmost_untrusted(trusted()).resolve(&view).ip(),
            Some(client.to_canonical())
        );
    }
}
