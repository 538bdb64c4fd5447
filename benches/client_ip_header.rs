//! `CF-Connecting-IP` with the Cloudflare-preset peer check (target: ≤ 60 ns median).
//!
//! `cargo bench --bench client_ip_header`

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderValue, Request};
use tower_bouncer::client_ip::{
    Chain, PeerAddr, RequestView, ResolveClientIp, SocketPeer, TrustedHeader,
};

/// A request as a browser behind Cloudflare sends it, from the given peer.
fn cloudflare_request(peer: &str, client: &'static str) -> Request<()> {
    let mut request = Request::new(());
    let headers = request.headers_mut();
    for (name, value) in [
        ("host", "api.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        ("accept", "application/json"),
        ("accept-encoding", "br, gzip"),
        ("x-forwarded-for", client),
        ("x-forwarded-proto", "https"),
        ("cf-ray", "8f1e2d3c4b5a6978-FRA"),
        ("cf-ipcountry", "DE"),
        ("cf-visitor", r#"{"scheme":"https"}"#),
        ("cdn-loop", "cloudflare"),
        ("cf-connecting-ip", client),
    ] {
        headers.append(name, HeaderValue::from_static(value));
    }
    request
        .extensions_mut()
        .insert(PeerAddr(peer.parse().expect("a socket address")));
    request
}

fn cf_connecting_ip(c: &mut Criterion) {
    let source = TrustedHeader::cf_connecting_ip();
    let mut group = c.benchmark_group("cf_connecting_ip");
    let cases = [
        (
            "cloudflare_v4_peer",
            cloudflare_request("172.70.1.2:41000", "203.0.113.7"),
        ),
        (
            "cloudflare_v6_peer",
            cloudflare_request("[2606:4700::6810:1]:41000", "2001:db8::7"),
        ),
        (
            "untrusted_peer",
            cloudflare_request("198.51.100.1:41000", "203.0.113.7"),
        ),
    ];
    for (name, request) in &cases {
        // Check once that each case takes the path its name says.
        let answer = source.resolve(&RequestView::new(request));
        assert_eq!(
            answer.ip().is_some(),
            *name != "untrusted_peer",
            "{name}: {answer:?}"
        );
        group.bench_function(*name, |b| {
            b.iter(|| source.resolve(&RequestView::new(black_box(request))))
        });
    }
    group.finish();

    let chain = Chain::new()
        .then(TrustedHeader::cf_connecting_ip())
        .then(SocketPeer::new());
    let request = cloudflare_request("172.70.1.2:41000", "203.0.113.7");
    c.bench_function("chain/cf_connecting_ip_then_peer", |b| {
        b.iter(|| chain.resolve(&RequestView::new(black_box(&request))))
    });
}

criterion_group!(benches, cf_connecting_ip);
criterion_main!(benches);
