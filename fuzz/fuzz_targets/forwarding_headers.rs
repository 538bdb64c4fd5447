//! Drives the `X-Forwarded-For` and `Forwarded` parsers through the public sources.
//!
//! Run: `cargo +nightly fuzz run forwarding_headers` (from the crate root).
//!
//! The input's first byte picks the peer; the rest is split at `\n` into header lines, given
//! alternately to `X-Forwarded-For` and `Forwarded` (and all of them to both). Besides "no
//! panic", it checks the invariants of ATTACKS.md 47: a resolved address is canonical, is an
//! address a client can have, and a rightmost-untrusted walk never returns a trusted address.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::{HeaderValue, Request};
use libfuzzer_sys::fuzz_target;
use tower_bouncer::client_ip::{
    Forwarded, PeerAddr, RequestView, Resolution, ResolveClientIp, TrustedRanges, XForwardedFor,
};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let trusted = TrustedRanges::parse("10.0.0.0/8\n2001:db8:ffff::/48\n127.0.0.0/8\n").unwrap();
    let peer = match selector % 4 {
        0 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        1 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1)),
        2 => IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped()),
        _ => IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
    };

    let mut request = Request::new(());
    for (index, line) in rest.split(|&byte| byte == b'\n').enumerate() {
        let Ok(value) = HeaderValue::from_bytes(line) else {
            continue;
        };
        let name = if (index + usize::from(selector >> 2)) % 2 == 0 {
            "x-forwarded-for"
        } else {
            "forwarded"
        };
        request.headers_mut().append(name, value);
    }
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::new(peer, 4000)));
    let view = RequestView::new(&request);

    let rightmost: [&dyn ResolveClientIp; 2] = [
        &XForwardedFor::rightmost_untrusted(trusted.clone()),
        &Forwarded::rightmost_untrusted(trusted.clone()),
    ];
    for source in rightmost {
        if let Some(ip) = check(source.resolve(&view)) {
            assert!(!trusted.contains(ip), "{source:?} returned trusted {ip}");
        }
    }
    let hops = u32::from(selector % 5) + 1;
    check(XForwardedFor::hop_count(hops, trusted.clone()).unwrap().resolve(&view));
    check(Forwarded::hop_count(hops, trusted).unwrap().resolve(&view));
});

fn check(resolution: Resolution) -> Option<IpAddr> {
    match resolution {
        Resolution::Resolved { ip, .. } => {
            assert_eq!(ip, ip.to_canonical());
            assert!(!ip.is_unspecified() && !ip.is_multicast());
            assert_ne!(ip, IpAddr::V4(Ipv4Addr::BROADCAST));
            Some(ip)
        }
        other => {
            assert!(other.reason().is_some());
            None
        }
    }
}
