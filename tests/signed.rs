//! The signed client-IP header against every attack of ATTACKS.md items 43–46 and issue 5's
//! "What it must withstand", plus the no-panic property and the zero-allocation verify path.
// The counting global allocator below needs `unsafe impl GlobalAlloc`; the library itself
// forbids unsafe code (`#![forbid(unsafe_code)]` in lib.rs).
#![allow(unsafe_code)]
#![cfg(feature = "signed")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use proptest::prelude::*;
use tower::{service_fn, ServiceExt};
use tower_bouncer::client_ip::{
    ClientIp, ClientIpLayer, PeerAddr, Reason, RequestView, Resolution, ResolveClientIp,
    SignedHeader, Signer, SigningKey, SigningKeys, SourceKind,
};
use tower_layer::Layer;

// ---------------------------------------------------------------------------------------------
// A global allocator that counts allocations made by the current thread.

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the thread-local counter
// has a const initializer, so touching it never allocates (no recursion).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// How many allocations `work` made on this thread.
fn allocations_in(work: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    work();
    ALLOCATIONS.with(Cell::get) - before
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

const NOW: u64 = 1_790_000_000;
const HEADER: &str = "x-signed-client-ip";
const OLD_SECRET: [u8; 32] = *b"old-secret-old-secret-old-secret";
const NEW_SECRET: [u8; 32] = *b"new-secret-new-secret-new-secret";
const CLIENT: &str = "203.0.113.7";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn header_name() -> HeaderName {
    HeaderName::from_static(HEADER)
}

fn source_with(keys: SigningKeys) -> SignedHeader {
    SignedHeader::new(header_name(), keys).with_clock(|| UNIX_EPOCH + Duration::from_secs(NOW))
}

/// The origin during a rotation: both keys accepted.
fn rotating_source() -> SignedHeader {
    source_with(
        SigningKeys::new(SigningKey::new("old", OLD_SECRET).unwrap())
            .with_key(SigningKey::new("new", NEW_SECRET).unwrap())
            .unwrap(),
    )
}

/// The origin after the rotation: only the new key.
fn source() -> SignedHeader {
    source_with(SigningKeys::new(
        SigningKey::new("new", NEW_SECRET).unwrap(),
    ))
}

fn signer() -> Signer {
    Signer::new("new", NEW_SECRET).unwrap()
}

fn valid_value() -> String {
    signer().sign(ip(CLIENT), NOW).to_str().unwrap().to_owned()
}

fn request_with(values: &[&[u8]]) -> Request<()> {
    let mut request = Request::new(());
    for value in values {
        request
            .headers_mut()
            .append(header_name(), HeaderValue::from_bytes(value).unwrap());
    }
    request
}

fn resolve(source: &SignedHeader, values: &[&[u8]]) -> Resolution {
    source.resolve(&RequestView::new(&request_with(values)))
}

/// The five fields of a value.
fn fields(value: &str) -> Vec<String> {
    value.split('.').map(str::to_owned).collect()
}

fn join(fields: &[String]) -> String {
    fields.join(".")
}

// ---------------------------------------------------------------------------------------------
// 43. Valid → accepted; any changed byte of IP, time, key id or tag → rejected.

#[test]
fn attack_43_valid_ipv4_header_resolves_to_the_signed_ip() {
    assert_eq!(
        resolve(&source(), &[valid_value().as_bytes()]),
        Resolution::resolved(ip(CLIENT), SourceKind::Signed)
    );
}

#[test]
fn attack_43_valid_ipv6_and_mapped_headers_resolve_canonically() {
    let v6 = signer().sign(ip("2001:db8:85a3::8a2e:370:7334"), NOW);
    assert_eq!(
        resolve(&source(), &[v6.as_bytes()]),
        Resolution::resolved(ip("2001:db8:85a3::8a2e:370:7334"), SourceKind::Signed)
    );
    let mapped = signer().sign(ip("::ffff:198.51.100.9"), NOW);
    assert_eq!(
        resolve(&source(), &[mapped.as_bytes()]),
        Resolution::resolved(ip("198.51.100.9"), SourceKind::Signed)
    );
}

#[test]
fn attack_43_forged_header_without_the_key_is_a_mismatch() {
    // Right format, right key id, right time: a secret the origin does not have.
    let forger = Signer::new("new", [0x11u8; 32]).unwrap();
    let forged = forger.sign(ip(CLIENT), NOW);
    assert_eq!(
        resolve(&source(), &[forged.as_bytes()]),
        Resolution::Untrustworthy(Reason::SignatureMismatch)
    );
    // Or a tag made of zeros.
    let mut parts = fields(&valid_value());
    parts[4] = "A".repeat(43);
    assert_eq!(
        source().verify(join(&parts).as_bytes()),
        Err(Reason::SignatureMismatch)
    );
}

#[test]
fn attack_43_valid_header_with_the_ip_changed_is_a_mismatch() {
    let other = fields(signer().sign(ip("198.51.100.1"), NOW).to_str().unwrap());
    let mut parts = fields(&valid_value());
    parts[3] = other[3].clone();
    assert_eq!(
        source().verify(join(&parts).as_bytes()),
        Err(Reason::SignatureMismatch)
    );
    // Swapping an IPv4 address for an IPv6 one (the family changes too).
    let v6 = fields(signer().sign(ip("2001:db8::1"), NOW).to_str().unwrap());
    parts[3] = v6[3].clone();
    assert_eq!(
        source().verify(join(&parts).as_bytes()),
        Err(Reason::SignatureMismatch)
    );
}

#[test]
fn attack_43_valid_header_with_the_timestamp_changed_is_a_mismatch() {
    for timestamp in [NOW - 1, NOW + 1, NOW - 30, 0, u64::MAX] {
        let mut parts = fields(&valid_value());
        parts[2] = timestamp.to_string();
        assert_eq!(
            source().verify(join(&parts).as_bytes()),
            Err(Reason::SignatureMismatch),
            "timestamp {timestamp}"
        );
    }
}

#[test]
fn attack_43_valid_header_with_the_key_id_changed_is_rejected() {
    // Signed with the new key, relabelled as the old key: both are configured.
    let mut parts = fields(&valid_value());
    parts[1] = "old".to_owned();
    assert_eq!(
        rotating_source().verify(join(&parts).as_bytes()),
        Err(Reason::SignatureMismatch)
    );
}

#[test]
fn attack_43_every_single_byte_changed_is_rejected() {
    let source = rotating_source();
    let valid = valid_value().into_bytes();
    assert!(source.verify(&valid).is_ok());
    let mut checked = 0u32;
    for position in 0..valid.len() {
        for byte in 0..=u8::MAX {
            if byte == valid[position] {
                continue;
            }
            let mut changed = valid.clone();
            changed[position] = byte;
            let answer = source.verify(&changed);
            assert!(
                answer.is_err(),
                "byte {position} set to {byte:#04x} was accepted: {answer:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, valid.len() as u32 * 255);
}

#[test]
fn attack_43_tag_is_compared_over_its_full_length() {
    // A tag that matches in its first 31 bytes and differs only in the last one: a comparison
    // that stopped early (or compared a prefix) would accept it.
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let mut parts = fields(&valid_value());
    let mut tag = URL_SAFE_NO_PAD.decode(&parts[4]).unwrap();
    tag[31] ^= 0x01;
    parts[4] = URL_SAFE_NO_PAD.encode(&tag);
    assert_eq!(
        source().verify(join(&parts).as_bytes()),
        Err(Reason::SignatureMismatch)
    );
    // And one that differs only in its first byte.
    let mut parts = fields(&valid_value());
    let mut tag = URL_SAFE_NO_PAD.decode(&parts[4]).unwrap();
    tag[0] ^= 0x80;
    parts[4] = URL_SAFE_NO_PAD.encode(&tag);
    assert_eq!(
        source().verify(join(&parts).as_bytes()),
        Err(Reason::SignatureMismatch)
    );
}

// ---------------------------------------------------------------------------------------------
// 44. Unknown / retired key id; old and new key overlapping during rotation.

#[test]
fn attack_44_unknown_key_id_is_rejected() {
    let stranger = Signer::new("stranger", NEW_SECRET).unwrap();
    let value = stranger.sign(ip(CLIENT), NOW);
    assert_eq!(
        resolve(&source(), &[value.as_bytes()]),
        Resolution::Untrustworthy(Reason::UnknownKeyId)
    );
}

#[test]
fn attack_44_retired_key_is_rejected_after_the_rotation() {
    let retired = Signer::new("old", OLD_SECRET).unwrap();
    let value = retired.sign(ip(CLIENT), NOW);
    // Accepted while both keys are configured…
    assert_eq!(rotating_source().verify(value.as_bytes()), Ok(ip(CLIENT)));
    // …and refused once the old key is removed, even though the value is fresh.
    assert_eq!(source().verify(value.as_bytes()), Err(Reason::UnknownKeyId));
}

#[test]
fn attack_44_old_and_new_keys_overlap_during_rotation() {
    let source = rotating_source();
    let old = Signer::new("old", OLD_SECRET)
        .unwrap()
        .sign(ip("192.0.2.1"), NOW);
    let new = signer().sign(ip("192.0.2.2"), NOW);
    assert_eq!(source.verify(old.as_bytes()), Ok(ip("192.0.2.1")));
    assert_eq!(source.verify(new.as_bytes()), Ok(ip("192.0.2.2")));
    // A key's secret does not verify under the other key's id.
    let crossed = Signer::new("old", NEW_SECRET)
        .unwrap()
        .sign(ip("192.0.2.3"), NOW);
    assert_eq!(
        source.verify(crossed.as_bytes()),
        Err(Reason::SignatureMismatch)
    );
}

#[test]
fn attack_44_key_configuration_errors() {
    assert!(SigningKey::new("short", [0u8; 31]).is_err());
    let duplicate = SigningKeys::new(SigningKey::new("k", OLD_SECRET).unwrap())
        .with_key(SigningKey::new("k", NEW_SECRET).unwrap());
    assert_eq!(
        duplicate.unwrap_err().to_string(),
        "duplicate signing key id `k`"
    );
    assert!(SigningKeys::parse_kid_secrets(["k:not base64"]).is_err());
    assert!(SigningKeys::parse_kid_secrets(["no-colon"]).is_err());
}

// ---------------------------------------------------------------------------------------------
// 45. Too old; too far in the future; two headers; empty; truncated; non-base64.

#[test]
fn attack_45_expired_header_is_rejected() {
    let value = signer().sign(ip(CLIENT), NOW - 61);
    assert_eq!(
        resolve(&source(), &[value.as_bytes()]),
        Resolution::Untrustworthy(Reason::SignatureExpired)
    );
    let edge = signer().sign(ip(CLIENT), NOW - 60);
    assert_eq!(source().verify(edge.as_bytes()), Ok(ip(CLIENT)));
    // A shorter window configured at the origin.
    let strict = source().max_age(Duration::from_secs(10)).unwrap();
    let value = signer().sign(ip(CLIENT), NOW - 11);
    assert_eq!(
        strict.verify(value.as_bytes()),
        Err(Reason::SignatureExpired)
    );
}

#[test]
fn attack_45_header_from_the_future_beyond_the_skew_is_rejected() {
    let value = signer().sign(ip(CLIENT), NOW + 6);
    assert_eq!(
        resolve(&source(), &[value.as_bytes()]),
        Resolution::Untrustworthy(Reason::SignatureFromFuture)
    );
    let within = signer().sign(ip(CLIENT), NOW + 5);
    assert_eq!(source().verify(within.as_bytes()), Ok(ip(CLIENT)));
    let no_skew = source().max_skew(Duration::ZERO).unwrap();
    let ahead = signer().sign(ip(CLIENT), NOW + 1);
    assert_eq!(
        no_skew.verify(ahead.as_bytes()),
        Err(Reason::SignatureFromFuture)
    );
}

#[test]
fn attack_45_header_twice_is_untrustworthy() {
    let value = valid_value();
    assert_eq!(
        resolve(&source(), &[value.as_bytes(), value.as_bytes()]),
        Resolution::Untrustworthy(Reason::DuplicateHeader)
    );
    // A valid value and a garbage one, in either order.
    assert_eq!(
        resolve(&source(), &[value.as_bytes(), b"garbage"]),
        Resolution::Untrustworthy(Reason::DuplicateHeader)
    );
    assert_eq!(
        resolve(&source(), &[b"garbage", value.as_bytes()]),
        Resolution::Untrustworthy(Reason::DuplicateHeader)
    );
}

#[test]
fn attack_45_empty_header_is_malformed() {
    assert_eq!(
        resolve(&source(), &[b""]),
        Resolution::Untrustworthy(Reason::SignatureMalformed)
    );
}

#[test]
fn attack_45_every_truncation_is_malformed() {
    let value = valid_value();
    for end in 0..value.len() {
        assert_eq!(
            source().verify(&value.as_bytes()[..end]),
            Err(Reason::SignatureMalformed),
            "truncated to {end} bytes"
        );
    }
}

#[test]
fn attack_45_padded_tag_is_malformed() {
    for padding in ["=", "==", "A", "A="] {
        let value = format!("{}{padding}", valid_value());
        assert_eq!(
            source().verify(value.as_bytes()),
            Err(Reason::SignatureMalformed),
            "{padding}"
        );
    }
}

#[test]
fn attack_45_non_base64_tag_is_malformed() {
    let value = valid_value();
    let (head, tag) = value.rsplit_once('.').unwrap();
    for bad in ['+', '/', '=', '*', ' ', '%', '.'] {
        let mut tag: Vec<char> = tag.chars().collect();
        tag[10] = bad;
        let tag: String = tag.into_iter().collect();
        assert_eq!(
            source().verify(format!("{head}.{tag}").as_bytes()),
            Err(Reason::SignatureMalformed),
            "{bad:?}"
        );
    }
    // The standard (non-URL) alphabet, padded, as another encoder would write it.
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    let standard = STANDARD.encode([0xFBu8; 32]);
    assert_eq!(
        source().verify(format!("{head}.{standard}").as_bytes()),
        Err(Reason::SignatureMalformed)
    );
}

#[test]
fn attack_45_other_malformed_values() {
    let value = valid_value();
    let cases = [
        value.replacen("v1.", "v2.", 1),
        value.replacen("v1.", "", 1),
        format!("{value}.extra"),
        format!(" {value}"),
        value.replacen(".", "..", 1),
        value.to_uppercase(),
        "v1....".to_owned(),
        ".".repeat(200),
    ];
    for case in &cases {
        assert_eq!(
            source().verify(case.as_bytes()),
            Err(Reason::SignatureMalformed),
            "{case}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 46. Missing → the chain goes on; invalid → the chain stops.

/// A test-local chain: first source that resolves wins, untrustworthy stops (the crate's own
/// `Chain` lives elsewhere; the behaviour under test is the signed source's answers).
#[derive(Debug)]
struct TestChain(Vec<Box<dyn ResolveClientIp>>);

impl ResolveClientIp for TestChain {
    fn resolve(&self, request: &RequestView<'_>) -> Resolution {
        let mut last = Resolution::Absent(Reason::HeaderMissing);
        for source in &self.0 {
            match source.resolve(request) {
                Resolution::Absent(reason) => last = Resolution::Absent(reason),
                answer => return answer,
            }
        }
        last
    }
}

/// The weaker source behind the signed one: an unsigned header any client can send.
#[derive(Debug)]
struct UnsignedHeader;

impl ResolveClientIp for UnsignedHeader {
    fn resolve(&self, request: &RequestView<'_>) -> Resolution {
        match request
            .headers()
            .get("x-unsigned-ip")
            .and_then(|value| value.to_str().ok()?.parse().ok())
        {
            Some(ip) => Resolution::resolved(ip, SourceKind::Custom("unsigned")),
            None => Resolution::Absent(Reason::HeaderMissing),
        }
    }
}

fn chain() -> TestChain {
    TestChain(vec![Box::new(source()), Box::new(UnsignedHeader)])
}

#[test]
fn attack_46_missing_signed_header_lets_the_chain_go_on() {
    let request = Request::builder()
        .header("x-unsigned-ip", "198.51.100.50")
        .body(())
        .unwrap();
    assert_eq!(
        chain().resolve(&RequestView::new(&request)),
        Resolution::resolved(ip("198.51.100.50"), SourceKind::Custom("unsigned"))
    );
}

#[test]
fn attack_46_invalid_signed_header_stops_the_chain() {
    let forged = Signer::new("new", [0x22u8; 32])
        .unwrap()
        .sign(ip(CLIENT), NOW);
    let expired = signer().sign(ip(CLIENT), NOW - 600);
    let unknown = Signer::new("nope", NEW_SECRET)
        .unwrap()
        .sign(ip(CLIENT), NOW);
    let cases: [(&[&[u8]], Reason); 5] = [
        (&[forged.as_bytes()], Reason::SignatureMismatch),
        (&[expired.as_bytes()], Reason::SignatureExpired),
        (&[unknown.as_bytes()], Reason::UnknownKeyId),
        (&[b"garbage"], Reason::SignatureMalformed),
        (&[b"a", b"b"], Reason::DuplicateHeader),
    ];
    for (values, reason) in cases {
        let mut request = request_with(values);
        request
            .headers_mut()
            .insert("x-unsigned-ip", HeaderValue::from_static("198.51.100.50"));
        assert_eq!(
            chain().resolve(&RequestView::new(&request)),
            Resolution::Untrustworthy(reason),
            "the chain fell through for {reason:?}"
        );
    }
}

#[tokio::test]
async fn attack_46_layer_resolves_signed_and_rejects_invalid() {
    let handler = service_fn(|request: Request<String>| async move {
        let client = request.extensions().get::<ClientIp>().copied().unwrap();
        let body = format!("{} {}", client.ip(), client.source());
        Ok::<_, Infallible>(Response::new(body))
    });
    let service = ClientIpLayer::new(source()).layer(handler);

    let mut valid = Request::new(String::new());
    valid
        .headers_mut()
        .insert(header_name(), signer().sign(ip(CLIENT), NOW));
    valid
        .extensions_mut()
        .insert(PeerAddr("192.0.2.200:443".parse().unwrap()));
    let response = service.clone().oneshot(valid).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.into_body(), "203.0.113.7 signed");

    let mut forged = Request::new(String::new());
    forged
        .headers_mut()
        .insert(header_name(), HeaderValue::from_static("v1.new.1.ywBxBw.x"));
    let response = service.oneshot(forged).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

// ---------------------------------------------------------------------------------------------
// Replay within the window (documented behaviour).

#[test]
fn replay_from_another_client_within_the_window_resolves_to_the_signed_ip() {
    // A value minted for 203.0.113.7, sent again by a different peer 30 s later: the value is
    // not bound to a connection, so it resolves to the signed address — the replayer spends
    // that client's budget, and cannot choose an address of its own.
    let value = signer().sign(ip(CLIENT), NOW - 30);
    let mut request = request_with(&[value.as_bytes()]);
    request
        .extensions_mut()
        .insert(PeerAddr("198.51.100.66:40000".parse().unwrap()));
    assert_eq!(
        source().resolve(&RequestView::new(&request)),
        Resolution::resolved(ip(CLIENT), SourceKind::Signed)
    );
    // Once the window has passed, the replay is refused.
    let late = source().with_clock(|| UNIX_EPOCH + Duration::from_secs(NOW + 31));
    assert_eq!(
        late.resolve(&RequestView::new(&request)),
        Resolution::Untrustworthy(Reason::SignatureExpired)
    );
}

#[test]
fn audience_stops_replay_at_another_origin() {
    let for_api = signer().audience("api.example.com").unwrap();
    let value = for_api.sign(ip(CLIENT), NOW);
    let api = source().audience("api.example.com").unwrap();
    let admin = source().audience("admin.example.com").unwrap();
    assert_eq!(api.verify(value.as_bytes()), Ok(ip(CLIENT)));
    assert_eq!(
        admin.verify(value.as_bytes()),
        Err(Reason::SignatureMismatch)
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets never appear in Debug output or errors.

#[test]
fn secrets_never_appear_in_debug_or_errors() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let secret_b64 = URL_SAFE_NO_PAD.encode(NEW_SECRET);
    let raw = std::str::from_utf8(&NEW_SECRET).unwrap();
    let key = SigningKey::parse_kid_secret(&format!("new:{secret_b64}")).unwrap();
    let keys = SigningKeys::new(key.clone());
    let texts = [
        format!("{key:?}"),
        format!("{key:#?}"),
        format!("{keys:?}"),
        format!("{:?}", source_with(keys.clone())),
        format!("{:#?}", source_with(keys)),
        format!("{:?}", signer()),
        format!("{:?}", ClientIpLayer::new(source()).source()),
        SigningKey::parse_kid_secret(&secret_b64)
            .unwrap_err()
            .to_string(),
        SigningKey::parse_kid_secret(&format!("{secret_b64}:x"))
            .unwrap_err()
            .to_string(),
        SigningKey::parse_kid_secret(&format!("k:{}", &secret_b64[..30]))
            .unwrap_err()
            .to_string(),
        SigningKey::new("k", &NEW_SECRET[..20])
            .unwrap_err()
            .to_string(),
    ];
    for text in &texts {
        assert!(!text.contains(&secret_b64[..12]), "{text}");
        assert!(!text.contains(&raw[..12]), "{text}");
        assert!(!text.contains("6e65772d"), "hex of the secret in {text}"); // "new-"
        assert!(
            !text.contains("110, 101, 119"),
            "bytes of the secret in {text}"
        );
    }
    assert!(texts[0].contains("\"new\""));
}

// ---------------------------------------------------------------------------------------------
// Zero allocations on the verify path.

#[test]
fn verify_and_resolve_do_not_allocate() {
    let source = rotating_source();
    let valid = valid_value();
    let v6 = signer().sign(ip("2001:db8::42"), NOW);
    let old = Signer::new("old", OLD_SECRET)
        .unwrap()
        .sign(ip(CLIENT), NOW);
    let invalid = format!("{}A", &valid[..valid.len() - 1]);
    let request = request_with(&[valid.as_bytes()]);
    let view = RequestView::new(&request);
    // Warm up anything lazily initialised (none expected, but keep the count honest).
    let _ = source.verify(valid.as_bytes());

    let count = allocations_in(|| {
        for _ in 0..100 {
            assert!(source.verify(valid.as_bytes()).is_ok());
            assert!(source.verify(v6.as_bytes()).is_ok());
            assert!(source.verify(old.as_bytes()).is_ok());
            assert!(source.verify(invalid.as_bytes()).is_err());
            assert!(source.verify(b"garbage").is_err());
            assert!(matches!(source.resolve(&view), Resolution::Resolved { .. }));
        }
    });
    assert_eq!(count, 0, "the verify path allocated {count} times");

    // The counter works: an allocation is seen.
    let seen = allocations_in(|| drop(std::hint::black_box(vec![1u8; 16])));
    assert!(seen >= 1);
}

// ---------------------------------------------------------------------------------------------
// 47. No input panics the verifier.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_byte_sequence_panics_the_verifier(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let source = rotating_source();
        let _ = source.verify(&bytes);
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            let mut request = Request::new(());
            request.headers_mut().insert(header_name(), value);
            let _ = source.resolve(&RequestView::new(&request));
        }
    }

    #[test]
    fn no_well_shaped_value_panics_and_only_genuine_ones_verify(
        kid in "[A-Za-z0-9_-]{0,34}",
        timestamp in "[0-9+-]{0,22}",
        address in "[A-Za-z0-9_=+/-]{0,24}",
        tag in "[A-Za-z0-9_=+/-]{0,45}",
    ) {
        let value = format!("v1.{kid}.{timestamp}.{address}.{tag}");
        // Without the secret, a random value never verifies.
        prop_assert!(rotating_source().verify(value.as_bytes()).is_err());
    }

    #[test]
    fn any_signed_ip_and_time_in_the_window_round_trips(
        octets in any::<[u8; 16]>(),
        v4 in any::<bool>(),
        age in 0u64..=60,
    ) {
        let client = if v4 {
            IpAddr::from([octets[0], octets[1], octets[2], octets[3]])
        } else {
            IpAddr::from(octets)
        };
        let value = signer().sign(client, NOW - age);
        prop_assert_eq!(source().verify(value.as_bytes()), Ok(client.to_canonical()));
    }
}
