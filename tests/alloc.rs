//! Zero heap allocations per resolution, proved with a counting global allocator.
//!
//! Every source resolves without touching the heap. The layer's `call` path allocates only
//! what `http::Extensions::insert` allocates to store the `ClientIp` (it boxes every value),
//! which no code of this crate can avoid; the test pins that number so a regression shows.
// The library forbids `unsafe` (`#![forbid(unsafe_code)]` in src/lib.rs); a global allocator
// cannot be written without it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::{HeaderValue, Request, Response};
use tower::Service;
use tower_bouncer::client_ip::{
    Chain, ClientIp, ClientIpLayer, Forwarded, OnUnresolved, PeerAddr, Reason, RequestView,
    Resolution, ResolveClientIp, SocketPeer, SourceKind, TrustedHeader, TrustedRanges,
    XForwardedFor,
};
use tower_layer::Layer;

/// Counts allocations made by the current thread (tests run on parallel threads).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: the thread-local may already be gone while a thread shuts down.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds exactly as it does for `System`; counting touches only a
// thread-local `Cell` with a const initialiser (no allocation, no re-entrancy).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The number of allocations `f` makes on this thread, and its result.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = f();
    let after = ALLOCATIONS.with(Cell::get);
    (result, after - before)
}

/// Resolves `request` with `source` once to warm up, then asserts that a second resolution
/// allocates nothing; returns that resolution.
fn assert_zero_alloc_resolve<B>(source: &dyn ResolveClientIp, request: &Request<B>) -> Resolution {
    let warm = source.resolve(&RequestView::new(request));
    let (answer, count) = allocations(|| source.resolve(&RequestView::new(request)));
    assert_eq!(answer, warm);
    assert_eq!(
        count, 0,
        "{source:?} allocated {count} times resolving {answer:?}"
    );
    answer
}

/// Request headers: name and value, in order.
type Headers = [(&'static str, &'static str)];

fn request(peer: Option<IpAddr>, headers: &Headers) -> Request<()> {
    let mut request = Request::new(());
    if let Some(ip) = peer {
        request
            .extensions_mut()
            .insert(PeerAddr(SocketAddr::new(ip, 40_000)));
    }
    for (name, value) in headers {
        request
            .headers_mut()
            .append(*name, HeaderValue::from_static(value));
    }
    request
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

#[test]
fn counter_sees_allocations() {
    // The test harness itself must be able to fail: a `Vec` is one allocation.
    let (_vec, count) = allocations(|| std::hint::black_box(Vec::<u8>::with_capacity(16)));
    assert_eq!(count, 1);
}

#[test]
fn socket_peer_resolves_without_allocating() {
    let source = SocketPeer::new();
    let with_peer = request(Some(v4(192, 0, 2, 10)), &[]);
    assert_eq!(
        assert_zero_alloc_resolve(&source, &with_peer).ip(),
        Some(v4(192, 0, 2, 10))
    );
    let without = request(None, &[]);
    assert_eq!(
        assert_zero_alloc_resolve(&source, &without),
        Resolution::Absent(Reason::NoPeer)
    );
}

#[test]
fn chain_resolves_without_allocating() {
    let chain = Chain::new().then(Chain::new()).then(SocketPeer::new());
    let with_peer = request(Some(v4(192, 0, 2, 10)), &[]);
    assert_eq!(
        assert_zero_alloc_resolve(&chain, &with_peer).ip(),
        Some(v4(192, 0, 2, 10))
    );
    let without = request(None, &[]);
    assert_eq!(
        assert_zero_alloc_resolve(&chain, &without),
        Resolution::Absent(Reason::NoPeer)
    );
}

#[test]
fn trusted_header_resolves_without_allocating() {
    let real_ip = TrustedHeader::x_real_ip(TrustedRanges::loopback());
    let loopback = Some(v4(127, 0, 0, 1));
    let cases: &[(Option<IpAddr>, &Headers, Resolution)] = &[
        (
            loopback,
            &[("x-real-ip", "[2001:db8::7]:443")],
            Resolution::resolved("2001:db8::7".parse().unwrap(), SourceKind::Header),
        ),
        (
            Some(v4(198, 51, 100, 1)),
            &[("x-real-ip", "203.0.113.7")],
            Resolution::Absent(Reason::PeerNotTrusted),
        ),
        (loopback, &[], Resolution::Absent(Reason::HeaderMissing)),
        (
            loopback,
            &[("x-real-ip", "203.0.113.7"), ("x-real-ip", "203.0.113.8")],
            Resolution::Untrustworthy(Reason::DuplicateHeader),
        ),
        (
            loopback,
            &[("x-real-ip", "203.0.113.7, 203.0.113.8")],
            Resolution::Untrustworthy(Reason::InvalidEntry { position: 1 }),
        ),
    ];
    for (peer, headers, expected) in cases {
        let request = request(*peer, headers);
        assert_eq!(assert_zero_alloc_resolve(&real_ip, &request), *expected);
    }

    let cloudflare = TrustedHeader::cf_connecting_ip();
    let edge = Some(v4(173, 245, 48, 1));
    let plain = request(edge, &[("cf-connecting-ip", "203.0.113.7")]);
    assert_eq!(
        assert_zero_alloc_resolve(&cloudflare, &plain).ip(),
        Some(v4(203, 0, 113, 7))
    );
    let pseudo = request(
        edge,
        &[
            ("cf-connecting-ip", "240.16.0.1"),
            ("cf-connecting-ipv6", "2001:db8::9"),
        ],
    );
    assert_eq!(
        assert_zero_alloc_resolve(&cloudflare, &pseudo).ip(),
        Some("2001:db8::9".parse().unwrap())
    );
    let cloudfront = TrustedHeader::cloudfront_viewer_address(TrustedRanges::loopback());
    let viewer = request(
        loopback,
        &[("cloudfront-viewer-address", "2001:db8::1:443")],
    );
    assert_eq!(
        assert_zero_alloc_resolve(&cloudfront, &viewer).ip(),
        Some("2001:db8::1".parse().unwrap())
    );
}

#[test]
fn chain_of_headers_resolves_without_allocating() {
    let chain = Chain::new()
        .then(TrustedHeader::cf_connecting_ip())
        .then(TrustedHeader::x_real_ip(TrustedRanges::loopback()))
        .then(SocketPeer::new());
    let through_nginx = request(Some(v4(127, 0, 0, 1)), &[("x-real-ip", "203.0.113.7")]);
    assert_eq!(
        assert_zero_alloc_resolve(&chain, &through_nginx).ip(),
        Some(v4(203, 0, 113, 7))
    );
    let stop = request(Some(v4(127, 0, 0, 1)), &[("x-real-ip", "garbage")]);
    assert_eq!(
        assert_zero_alloc_resolve(&chain, &stop),
        Resolution::Untrustworthy(Reason::InvalidEntry { position: 1 })
    );
}

/// Twenty trusted CIDRs, as in the benchmark: the proxies of a multi-region setup.
fn twenty_ranges() -> TrustedRanges {
    let mut text = String::new();
    for n in 0..16 {
        text.push_str(&format!("10.{n}.0.0/16\n"));
    }
    text.push_str("192.168.0.0/16\n172.16.0.0/12\nfd00::/8\n2001:db8:ffff::/48\n");
    text.parse().unwrap()
}

#[test]
fn x_forwarded_for_resolves_without_allocating_in_both_modes() {
    let rightmost = XForwardedFor::rightmost_untrusted(twenty_ranges());
    let hops = XForwardedFor::hop_count(2, twenty_ranges()).unwrap();
    let peer = Some(v4(10, 0, 0, 1));
    let three = request(
        peer,
        &[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.0.2")],
    );
    assert_eq!(
        assert_zero_alloc_resolve(&rightmost, &three).ip(),
        Some(v4(203, 0, 113, 7))
    );
    assert_eq!(
        assert_zero_alloc_resolve(&hops, &three).ip(),
        Some(v4(203, 0, 113, 7))
    );
    let lines = request(
        peer,
        &[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "[2001:db8::7]:443, , fd00::1%eth0"),
        ],
    );
    assert_eq!(
        assert_zero_alloc_resolve(&rightmost, &lines).ip(),
        Some("2001:db8::7".parse().unwrap())
    );
    let garbage = request(peer, &[("x-forwarded-for", "203.0.113.7, nope")]);
    assert_eq!(
        assert_zero_alloc_resolve(&rightmost, &garbage),
        Resolution::Untrustworthy(Reason::InvalidEntry { position: 1 })
    );
    let short = request(peer, &[("x-forwarded-for", "203.0.113.7")]);
    assert!(assert_zero_alloc_resolve(&hops, &short).ip().is_none());
    let untrusted = request(
        Some(v4(198, 51, 100, 1)),
        &[("x-forwarded-for", "203.0.113.7")],
    );
    assert_eq!(
        assert_zero_alloc_resolve(&rightmost, &untrusted),
        Resolution::Absent(Reason::PeerNotTrusted)
    );
    // A long list: still nothing on the heap.
    let long: &'static str = Box::leak(
        (0..1000)
            .map(|n| format!("10.{}.{}.{}", n % 16, n / 256, n % 256))
            .collect::<Vec<_>>()
            .join(", ")
            .into_boxed_str(),
    );
    let long = request(peer, &[("x-forwarded-for", long)]);
    assert_eq!(
        assert_zero_alloc_resolve(&rightmost, &long),
        Resolution::Untrustworthy(Reason::AllEntriesTrusted)
    );
}

#[test]
fn forwarded_resolves_without_allocating_in_both_modes() {
    let rightmost = Forwarded::rightmost_untrusted(twenty_ranges());
    let hops = Forwarded::hop_count(2, twenty_ranges()).unwrap();
    let peer = Some(v4(10, 0, 0, 1));
    let plain = request(
        peer,
        &[(
            "forwarded",
            "for=6.6.6.6, For=\"[2001:db8::7]:4711\";proto=https;by=10.0.0.1, for=10.1.0.2;host=\"a,b\"",
        )],
    );
    assert_eq!(
        assert_zero_alloc_resolve(&rightmost, &plain).ip(),
        Some("2001:db8::7".parse().unwrap())
    );
    assert_eq!(
        assert_zero_alloc_resolve(&hops, &plain).ip(),
        Some("2001:db8::7".parse().unwrap())
    );
    let escaped = request(peer, &[("forwarded", "for=\"203.0.113.\\7\"")]);
    assert_eq!(
        assert_zero_alloc_resolve(&rightmost, &escaped).ip(),
        Some(v4(203, 0, 113, 7))
    );
    let hidden = request(
        peer,
        &[("forwarded", "for=6.6.6.6, for=_hidden, for=10.1.0.2")],
    );
    assert_eq!(
        assert_zero_alloc_resolve(&rightmost, &hidden),
        Resolution::Untrustworthy(Reason::ObfuscatedIdentifier { position: 2 })
    );
    let unknown = request(peer, &[("forwarded", "for=unknown")]);
    assert!(assert_zero_alloc_resolve(&hops, &unknown).ip().is_none());
}

#[test]
fn every_source_in_one_chain_resolves_without_allocating() {
    let chain = Chain::new()
        .then(TrustedHeader::cf_connecting_ip())
        .then(Forwarded::rightmost_untrusted(twenty_ranges()))
        .then(XForwardedFor::hop_count(1, twenty_ranges()).unwrap())
        .then(XForwardedFor::rightmost_untrusted(twenty_ranges()))
        .then(SocketPeer::new());
    let to_xff = request(Some(v4(10, 0, 0, 1)), &[("x-forwarded-for", "203.0.113.7")]);
    assert_eq!(
        assert_zero_alloc_resolve(&chain, &to_xff).ip(),
        Some(v4(203, 0, 113, 7))
    );
    let to_peer = request(
        Some(v4(198, 51, 100, 1)),
        &[("x-forwarded-for", "203.0.113.7")],
    );
    assert_eq!(
        assert_zero_alloc_resolve(&chain, &to_peer).ip(),
        Some(v4(198, 51, 100, 1))
    );
}

/// An inner service that allocates nothing itself.
#[derive(Clone)]
struct Inner;

impl<B> Service<Request<B>> for Inner {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // 200 unless the layer resolved the client from another source than the one the
        // test drives (X-Forwarded-For), so the measured path is the one intended.
        let mut response = Response::new(String::new());
        match request.extensions().get::<ClientIp>() {
            None => {}
            Some(client) if client.source() == SourceKind::XForwardedFor => {}
            Some(_) => *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR,
        }
        ready(Ok(response))
    }
}

/// Allocations of one `poll_ready` + `call` + poll of the response future of `service`,
/// with `request` built beforehand (building and dropping it is not counted).
fn call_allocations<S>(service: &mut S, request: Request<()>) -> usize
where
    S: Service<Request<()>, Response = Response<String>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    let (response, count) = allocations(|| {
        assert!(service.poll_ready(&mut cx).is_ready());
        let mut future = pin!(service.call(request));
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(response) => response,
            Poll::Pending => panic!("ready inner service returned pending"),
        }
    });
    let response = response.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    count
}

#[test]
fn client_ip_service_call_allocates_only_the_extension_box() {
    // Through a trusted proxy: the chain walks X-Forwarded-For.
    let peer = Some(v4(10, 0, 0, 1));
    let headers: &Headers = &[("x-forwarded-for", "6.6.6.6, 203.0.113.7")];
    let mut inner = Inner;
    let chain = Chain::new()
        .then(TrustedHeader::cf_connecting_ip())
        .then(TrustedHeader::x_real_ip(TrustedRanges::loopback()))
        .then(XForwardedFor::rightmost_untrusted(twenty_ranges()))
        .then(SocketPeer::new());
    let mut service = ClientIpLayer::new(chain)
        .on_unresolved(OnUnresolved::FallbackToPeer)
        .layer(Inner);

    // Warm up both paths once.
    call_allocations(&mut inner, request(peer, headers));
    call_allocations(&mut service, request(peer, headers));

    let inner_only = call_allocations(&mut inner, request(peer, headers));
    let layered = call_allocations(&mut service, request(peer, headers));
    // The request already holds an extension (the peer, as with Axum's `ConnectInfo`), so
    // the extension map exists: storing `ClientIp` costs exactly its `Box` inside
    // `http::Extensions::insert`. Resolution itself adds nothing.
    assert_eq!(
        layered - inner_only,
        1,
        "layer call allocated {layered}, inner alone {inner_only}"
    );
}
