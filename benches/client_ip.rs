//! Client-IP resolution speed: `cargo bench --bench client_ip`.
//!
//! Targets (issue 3): a 3-entry `X-Forwarded-For` against 20 trusted CIDRs ≤ 100 ns median;
//! a 100-entry chain linear in its length; a range check far below the naive ~39 ns loop.
//!
//! The issue's figures come from another machine; its reference (naive parse-all of 3 entries,
//! ~110 ns there) is measured here too, and `cargo bench --bench client_ip -- paired_ratio`
//! prints the ratio of the two in alternating batches (target ≤ 0.91).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ipnet::IpNet;
use tower_bouncer::client_ip::{
    Forwarded, PeerAddr, RequestView, ResolveClientIp, TrustedRanges, XForwardedFor,
};

/// 20 CIDRs: the 15 IPv4 ranges of Cloudflare, private networks and loopback.
const TWENTY_CIDRS: &str = "173.245.48.0/20\n103.21.244.0/22\n103.22.200.0/22\n103.31.4.0/22
141.101.64.0/18\n108.162.192.0/18\n190.93.240.0/20\n188.114.96.0/20\n197.234.240.0/22
198.41.128.0/17\n162.158.0.0/15\n104.16.0.0/13\n104.24.0.0/14\n172.64.0.0/13\n131.0.72.0/22
10.0.0.0/8\n172.16.0.0/12\n192.168.0.0/16\n127.0.0.0/8\nfc00::/7\n";

fn request(name: &str, value: &str, peer: &str) -> http::Request<()> {
    let mut request = http::Request::builder()
        .header(name, value)
        .body(())
        .unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(PeerAddr(peer));
    request
}

fn xff(c: &mut Criterion) {
    let ranges = TrustedRanges::parse(TWENTY_CIDRS).unwrap();
    assert_eq!(ranges.networks().count(), 20);
    let source = XForwardedFor::rightmost_untrusted(ranges.clone());
    let three = request(
        "x-forwarded-for",
        "203.0.113.7, 162.158.1.2, 10.0.0.3",
        "10.0.0.2:4000",
    );
    assert!(source.resolve(&RequestView::new(&three)).ip().is_some());
    c.bench_function("xff_rightmost_3_entries_20_cidrs", |b| {
        b.iter(|| source.resolve(&RequestView::new(black_box(&three))))
    });

    let hops = XForwardedFor::hop_count(2, ranges.clone()).unwrap();
    c.bench_function("xff_hop_count_2_of_3_entries", |b| {
        b.iter(|| hops.resolve(&RequestView::new(black_box(&three))))
    });

    let mut group = c.benchmark_group("xff_rightmost_chain_all_trusted_but_first");
    for length in [10_usize, 100] {
        let mut header = String::from("203.0.113.7");
        for index in 1..length {
            header.push_str(&format!(", 10.0.{}.{}", index / 250, index % 250 + 1));
        }
        let chain = request("x-forwarded-for", &header, "10.0.0.2:4000");
        assert!(source.resolve(&RequestView::new(&chain)).ip().is_some());
        group.bench_with_input(BenchmarkId::from_parameter(length), &chain, |b, chain| {
            b.iter(|| source.resolve(&RequestView::new(black_box(chain))))
        });
    }
    group.finish();
}

fn forwarded(c: &mut Criterion) {
    let source = Forwarded::rightmost_untrusted(TrustedRanges::parse(TWENTY_CIDRS).unwrap());
    let three = request(
        "forwarded",
        "for=203.0.113.7;proto=https, for=\"162.158.1.2:4711\", for=10.0.0.3;by=10.0.0.2",
        "10.0.0.2:4000",
    );
    assert!(source.resolve(&RequestView::new(&three)).ip().is_some());
    c.bench_function("forwarded_rightmost_3_elements", |b| {
        b.iter(|| source.resolve(&RequestView::new(black_box(&three))))
    });
}

fn ranges(c: &mut Criterion) {
    let cloudflare = TrustedRanges::cloudflare();
    let miss: IpAddr = "203.0.113.7".parse().unwrap();
    let hit: IpAddr = "162.158.1.2".parse().unwrap();
    let hit_v6: IpAddr = "2606:4700::6810:84e5".parse().unwrap();
    assert!(!cloudflare.contains(miss) && cloudflare.contains(hit) && cloudflare.contains(hit_v6));
    c.bench_function("cloudflare_contains_v4_miss", |b| {
        b.iter(|| cloudflare.contains(black_box(miss)))
    });
    c.bench_function("cloudflare_contains_v4_hit", |b| {
        b.iter(|| cloudflare.contains(black_box(hit)))
    });
    c.bench_function("cloudflare_contains_v6_hit", |b| {
        b.iter(|| cloudflare.contains(black_box(hit_v6)))
    });
    // For comparison: the naive loop over the networks.
    let naive: Vec<IpNet> = cloudflare.networks().collect();
    c.bench_function("naive_ipnet_loop_v4_miss", |b| {
        b.iter(|| naive.iter().any(|net| net.contains(&black_box(miss))))
    });
    // The issue's machine reference ("naive parse-all of 3 XFF entries, ~110 ns"): decode the
    // whole line, split, trim, parse every entry into a Vec. Side by side with the sources, it
    // turns absolute times on a noisy machine into ratios.
    let line = http::HeaderValue::from_static("203.0.113.7, 10.0.0.1, 10.0.0.2");
    c.bench_function("reference_naive_parse_all_3_xff_entries", |b| {
        b.iter(|| {
            black_box(&line).to_str().ok().map(|text| {
                text.split(',')
                    .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
                    .collect::<Vec<_>>()
            })
        })
    });
}

/// The issue's ratio, measured so that a busy machine disturbs it least: the 3-entry
/// `X-Forwarded-For` resolution and the naive reference run in alternating batches of
/// `BATCH` calls, and the median of the 2001 adjacent pairs' ratios is printed (criterion's
/// sequential figures move by ±15 % between runs here; the paired ratio by ±2 %). Target:
/// 100 ns against the issue machine's 110 ns, a ratio of at most 0.91.
/// Runs under `cargo bench` only, with no filter or a filter it matches (`paired_ratio`).
fn paired(_: &mut Criterion) {
    const BATCH: u32 = 2000;
    const ROUNDS: usize = 2001;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&String> = args.iter().filter(|arg| !arg.starts_with('-')).collect();
    let wanted = filters
        .iter()
        .all(|filter| "paired_ratio".contains(filter.as_str()));
    if !args.iter().any(|arg| arg == "--bench") || !wanted {
        return;
    }
    let source = XForwardedFor::rightmost_untrusted(TrustedRanges::parse(TWENTY_CIDRS).unwrap());
    let three = request(
        "x-forwarded-for",
        "203.0.113.7, 162.158.1.2, 10.0.0.3",
        "10.0.0.2:4000",
    );
    let line = http::HeaderValue::from_static("203.0.113.7, 10.0.0.1, 10.0.0.2");
    let resolve = || {
        let started = std::time::Instant::now();
        for _ in 0..BATCH {
            black_box(source.resolve(&RequestView::new(black_box(&three))));
        }
        started.elapsed()
    };
    let reference = || {
        let started = std::time::Instant::now();
        for _ in 0..BATCH {
            black_box(black_box(&line).to_str().ok().map(|text| {
                text.split(',')
                    .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
                    .collect::<Vec<_>>()
            }));
        }
        started.elapsed()
    };
    for _ in 0..50 {
        resolve();
        reference();
    }
    let mut ratios = Vec::with_capacity(ROUNDS);
    let (mut ours, mut theirs) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
    for round in 0..ROUNDS {
        // Alternate which goes first, so neither always follows the other.
        let (a, b) = if round % 2 == 0 {
            let a = resolve();
            (a, reference())
        } else {
            let b = reference();
            (resolve(), b)
        };
        ratios.push(a.as_secs_f64() / b.as_secs_f64());
        ours.push(a.as_secs_f64() * 1e9 / f64::from(BATCH));
        theirs.push(b.as_secs_f64() * 1e9 / f64::from(BATCH));
    }
    for values in [&mut ratios, &mut ours, &mut theirs] {
        values.sort_by(f64::total_cmp);
    }
    println!(
        "paired_ratio xff_rightmost_3_entries_20_cidrs / reference_naive_parse_all_3_xff_entries: \
         median of {ROUNDS} paired ratios {:.3} (quartiles {:.3}–{:.3}); medians {:.1} ns / {:.1} ns",
        ratios[ROUNDS / 2],
        ratios[ROUNDS / 4],
        ratios[3 * ROUNDS / 4],
        ours[ROUNDS / 2],
        theirs[ROUNDS / 2],
    );
}

criterion_group!(benches, xff, forwarded, ranges);
criterion_group!(ratio, paired);
criterion_main!(benches, header, ratio);

// ---------------------------------------------------------------------------------------------
// Single-address headers: `CF-Connecting-IP` with the Cloudflare-preset peer check
// (target ≤ 60 ns median).

use http::{HeaderValue, Request};
use tower_bouncer::client_ip::{Chain, SocketPeer, TrustedHeader};

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

criterion_group!(header, cf_connecting_ip);
