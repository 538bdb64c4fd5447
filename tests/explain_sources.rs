//! `explain` tells the truth: for every source of the crate, over arbitrary header bytes and
//! peers, `explain(..).resolution()` is exactly `resolve(..)` (issue 8 item 2), and the steps
//! agree with the answer.
#![cfg(feature = "signed")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue, Request};
use proptest::prelude::*;
use tower_bouncer::client_ip::{
    Chain, Explanation, Forwarded, PeerAddr, Reason, RequestView, Resolution, ResolveClientIp,
    SignedHeader, Signer, SigningKey, SigningKeys, SocketPeer, Step, TrustedHeader, TrustedRanges,
    Verdict, XForwardedFor,
};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_800_000_000;

fn trusted() -> TrustedRanges {
    TrustedRanges::parse("10.0.0.0/8\n2001:db8:ffff::/48\n127.0.0.0/8\n").unwrap()
}

fn clock() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
}

fn signed() -> SignedHeader {
    let keys = SigningKeys::new(SigningKey::new("k1", SECRET).unwrap());
    SignedHeader::new(HeaderName::from_static("x-client-ip-signed"), keys).with_clock(clock)
}

fn sources() -> Vec<Box<dyn ResolveClientIp>> {
    let mut sources: Vec<Box<dyn ResolveClientIp>> = vec![
        Box::new(XForwardedFor::rightmost_untrusted(trusted())),
        Box::new(Forwarded::rightmost_untrusted(trusted())),
        Box::new(TrustedHeader::x_real_ip(trusted())),
        Box::new(TrustedHeader::cf_connecting_ip()),
        Box::new(TrustedHeader::cloudfront_viewer_address(trusted())),
        Box::new(SocketPeer::new()),
        Box::new(signed()),
        Box::new(
            Chain::new()
                .then(signed())
                .then(TrustedHeader::x_real_ip(trusted()))
                .then(XForwardedFor::rightmost_untrusted(trusted()))
                .then(SocketPeer::new()),
        ),
        Box::new(Chain::new()),
    ];
    for hops in [1, 2, 3] {
        sources.push(Box::new(XForwardedFor::hop_count(hops, trusted()).unwrap()));
        sources.push(Box::new(Forwarded::hop_count(hops, trusted()).unwrap()));
    }
    sources
}

const HEADERS: [&str; 6] = [
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "cf-connecting-ip",
    "cf-connecting-ipv6",
    "cloudfront-viewer-address",
];

fn header_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => proptest::sample::select(b",;=\"\\[]:%._ \t0123456789abcdefforFOR".to_vec()),
        1 => any::<u8>(),
    ]
}

/// A header line: random bytes, or a plausible list of addresses.
fn line() -> impl Strategy<Value = Vec<u8>> {
    let address = prop_oneof![
        Just("10.0.0.7".to_owned()),
        Just("127.0.0.1".to_owned()),
        Just("203.0.113.7".to_owned()),
        Just("[2001:db8::7]:443".to_owned()),
        Just("unknown".to_owned()),
        Just("garbage".to_owned()),
        Just("240.0.0.9".to_owned()),
        any::<u32>().prop_map(|bits| Ipv4Addr::from(bits).to_string()),
    ];
    prop_oneof![
        proptest::collection::vec(header_byte(), 0..60),
        proptest::collection::vec(address.clone(), 1..5)
            .prop_map(|list| list.join(", ").into_bytes()),
        proptest::collection::vec(address, 1..5).prop_map(|list| list
            .iter()
            .map(|ip| format!("for=\"{ip}\""))
            .collect::<Vec<_>>()
            .join(", ")
            .into_bytes()),
    ]
}

fn peer() -> impl Strategy<Value = Option<IpAddr>> {
    prop_oneof![
        Just(None),
        Just(Some("10.0.0.2".parse().unwrap())),
        Just(Some("127.0.0.1".parse().unwrap())),
        Just(Some("173.245.48.1".parse().unwrap())),
        Just(Some("0.0.0.0".parse().unwrap())),
        any::<u32>().prop_map(|bits| Some(IpAddr::V4(Ipv4Addr::from(bits)))),
    ]
}

/// A signed header: valid, stale, or bytes.
fn signed_value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        (any::<u32>(), 0_u64..200).prop_map(|(bits, age)| {
            let signer = Signer::new("k1", SECRET).unwrap();
            Some(
                signer
                    .sign(IpAddr::V4(Ipv4Addr::from(bits)), NOW - age)
                    .as_bytes()
                    .to_vec(),
            )
        }),
        proptest::collection::vec(header_byte(), 0..40).prop_map(Some),
    ]
}

fn build(
    peer: Option<IpAddr>,
    headers: &[(usize, Vec<u8>)],
    signed: &Option<Vec<u8>>,
) -> Request<()> {
    let mut request = Request::new(());
    for (index, line) in headers {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            request.headers_mut().append(
                HeaderName::from_static(HEADERS[index % HEADERS.len()]),
                value,
            );
        }
    }
    if let Some(value) = signed
        .as_ref()
        .and_then(|v| HeaderValue::from_bytes(v).ok())
    {
        request.headers_mut().append("x-client-ip-signed", value);
    }
    if let Some(peer) = peer {
        request
            .extensions_mut()
            .insert(PeerAddr(SocketAddr::new(peer, 4000)));
    }
    request
}

/// The steps agree with the answer: a resolved walk's last entry is the client, an
/// untrustworthy stop on an entry is the last step.
fn check_steps(explanation: &Explanation) {
    for child in explanation.children() {
        check_steps(child);
    }
    let last = explanation
        .steps()
        .iter()
        .rev()
        .find(|step| matches!(step, Step::Entry { .. } | Step::Header { .. }));
    let last_verdict = match last {
        Some(Step::Entry { verdict, .. } | Step::Header { verdict, .. }) => Some(*verdict),
        _ => None,
    };
    match explanation.resolution() {
        Resolution::Resolved { .. }
            if explanation.name() != "chain" && explanation.name() != "peer" =>
        {
            assert_eq!(last_verdict, Some(Verdict::Client), "{explanation:#?}");
        }
        Resolution::Untrustworthy(
            reason @ (Reason::InvalidEntry { .. }
            | Reason::UnknownIdentifier { .. }
            | Reason::ObfuscatedIdentifier { .. }
            | Reason::MissingOrRepeatedFor { .. }),
        ) if explanation.name() != "chain" && explanation.name() != "peer" => {
            assert_eq!(
                last_verdict,
                Some(Verdict::Stopped(reason)),
                "{explanation:#?}"
            );
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn explain_resolution_equals_resolve(
        peer in peer(),
        headers in proptest::collection::vec((0..HEADERS.len(), line()), 0..6),
        signed in signed_value(),
    ) {
        let request = build(peer, &headers, &signed);
        let view = RequestView::new(&request);
        for source in sources() {
            let explanation = source.explain(&view);
            prop_assert_eq!(explanation.resolution(), source.resolve(&view), "{:?}", source);
            check_steps(&explanation);
        }
    }
}

#[test]
fn xff_walk_names_each_entry_and_why() {
    let source = XForwardedFor::rightmost_untrusted(trusted());
    let mut request = Request::new(());
    request.headers_mut().insert(
        "x-forwarded-for",
        HeaderValue::from_static("6.6.6.6, garbage, 203.0.113.7, 10.0.0.9, 127.0.0.1"),
    );
    request
        .extensions_mut()
        .insert(PeerAddr("10.0.0.2:1".parse().unwrap()));
    let explanation = source.explain(&RequestView::new(&request));
    assert_eq!(explanation.name(), "xff");
    assert_eq!(
        explanation.trusted(),
        Some("10.0.0.0/8, 127.0.0.0/8, 2001:db8:ffff::/48")
    );
    let steps: Vec<(u32, &str, Verdict)> = explanation
        .steps()
        .iter()
        .filter_map(|step| match step {
            Step::Entry {
                position,
                text,
                verdict,
                ..
            } => Some((*position, text.as_str(), *verdict)),
            _ => None,
        })
        .collect();
    // Right to left; the walk stops at the client and never reads `garbage` or `6.6.6.6`.
    assert_eq!(
        steps,
        [
            (1, "127.0.0.1", Verdict::TrustedProxy),
            (2, "10.0.0.9", Verdict::TrustedProxy),
            (3, "203.0.113.7", Verdict::Client),
        ]
    );
    // `Step::Peer` is `#[non_exhaustive]`: matched with `..`, never built outside the crate.
    assert!(
        matches!(
            explanation.steps()[0],
            Step::Peer {
                ip: Some(ip),
                trusted: true,
                ..
            } if ip == "10.0.0.2".parse::<std::net::IpAddr>().unwrap()
        ),
        "{:?}",
        explanation.steps()[0]
    );
}

#[test]
fn hop_count_counts_then_stops_on_garbage() {
    let source = Forwarded::hop_count(2, trusted()).unwrap();
    let mut request = Request::new(());
    request.headers_mut().insert(
        "forwarded",
        HeaderValue::from_static("for=203.0.113.7, for=_hidden, for=10.0.0.9"),
    );
    request
        .extensions_mut()
        .insert(PeerAddr("10.0.0.2:1".parse().unwrap()));
    let explanation = source.explain(&RequestView::new(&request));
    assert_eq!(explanation.name(), "forwarded-hops:2");
    let verdicts: Vec<Verdict> = explanation
        .steps()
        .iter()
        .filter_map(|step| match step {
            Step::Entry { verdict, .. } => Some(*verdict),
            _ => None,
        })
        .collect();
    let stop = Reason::ObfuscatedIdentifier { position: 2 };
    assert_eq!(verdicts, [Verdict::Counted, Verdict::Stopped(stop)]);
    assert_eq!(explanation.resolution(), Resolution::Untrustworthy(stop));
}

#[test]
fn chain_explains_every_source_and_which_one_decided() {
    let chain = Chain::new()
        .then(signed())
        .then(TrustedHeader::x_real_ip(trusted()))
        .then(SocketPeer::new());
    let mut request = Request::new(());
    request
        .headers_mut()
        .insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
    request
        .extensions_mut()
        .insert(PeerAddr("198.51.100.4:1".parse().unwrap()));
    let explanation = chain.explain(&RequestView::new(&request));
    let names: Vec<&str> = explanation
        .children()
        .iter()
        .map(Explanation::name)
        .collect();
    assert_eq!(
        names,
        ["signed:x-client-ip-signed", "header:x-real-ip", "peer"]
    );
    assert_eq!(explanation.decided_by(), Some(2));
    assert_eq!(
        explanation.children()[1].resolution(),
        Resolution::Absent(Reason::PeerNotTrusted)
    );
    assert_eq!(
        explanation.resolution().ip(),
        Some("198.51.100.4".parse().unwrap())
    );

    // A bad signature: the signed source says which check failed, and the chain stops there.
    request.headers_mut().insert(
        "x-client-ip-signed",
        Signer::new("k1", SECRET)
            .unwrap()
            .sign("203.0.113.7".parse().unwrap(), NOW - 3600),
    );
    let explanation = chain.explain(&RequestView::new(&request));
    // Every source is explained; the first one decided.
    assert_eq!(explanation.children().len(), 3);
    assert_eq!(explanation.decided_by(), Some(0));
    assert_eq!(
        explanation.resolution(),
        Resolution::Untrustworthy(Reason::SignatureExpired)
    );
    assert!(matches!(
        &explanation.children()[0].steps()[0],
        Step::Header {
            verdict: Verdict::Stopped(Reason::SignatureExpired),
            ..
        }
    ));
}

/// A source written outside the crate, with no `explain` of its own, still explains.
#[derive(Debug)]
struct Fixed;

impl ResolveClientIp for Fixed {
    fn resolve(&self, _request: &RequestView<'_>) -> Resolution {
        Resolution::Absent(Reason::Custom("never"))
    }
}

#[test]
fn default_explain_is_the_resolution_under_the_debug_name() {
    let request = Request::new(());
    let explanation = Fixed.explain(&RequestView::new(&request));
    assert_eq!(explanation.name(), "Fixed");
    assert_eq!(
        explanation.resolution(),
        Resolution::Absent(Reason::Custom("never"))
    );
    assert!(explanation.steps().is_empty());
}
