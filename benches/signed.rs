//! Verifying a signed client-IP header (issue 5: ≤ 1.5 µs median).
//!
//! `cargo bench --bench signed -- --warm-up-time 1 --measurement-time 3`
// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderName, Request};
use tower_bouncer::client_ip::{
    RequestView, ResolveClientIp, SignedHeader, Signer, SigningKey, SigningKeys,
};

const NOW: u64 = 1_790_000_000;

fn verify(c: &mut Criterion) {
    let old = SigningKey::new("2026-10", [7u8; 32]).unwrap();
    let new = SigningKey::new("2026-11", [9u8; 32]).unwrap();
    let keys = SigningKeys::new(old).with_key(new).unwrap();
    let source = SignedHeader::new(HeaderName::from_static("x-signed-client-ip"), keys)
        .audience("api.example.com")
        .unwrap()
        .with_clock(|| UNIX_EPOCH + Duration::from_secs(NOW));
    let signer = Signer::new("2026-11", [9u8; 32])
        .unwrap()
        .audience("api.example.com")
        .unwrap();
    let v4 = signer.sign("203.0.113.7".parse().unwrap(), NOW - 10);
    let v6 = signer.sign("2001:db8:85a3::8a2e:370:7334".parse().unwrap(), NOW - 10);
    assert!(source.verify(v4.as_bytes()).is_ok());
    assert!(source.verify(v6.as_bytes()).is_ok());

    let mut group = c.benchmark_group("signed");
    group.bench_function("verify_v4", |b| {
        b.iter(|| source.verify(black_box(v4.as_bytes())))
    });
    group.bench_function("verify_v6", |b| {
        b.iter(|| source.verify(black_box(v6.as_bytes())))
    });
    let request = Request::builder()
        .header("x-signed-client-ip", v4.clone())
        .header("accept", "application/json")
        .header("user-agent", "bench")
        .body(())
        .unwrap();
    group.bench_function("resolve_request_v4", |b| {
        b.iter(|| source.resolve(&RequestView::new(black_box(&request))))
    });
    let mut forged = v4.to_str().unwrap().to_owned();
    forged.pop();
    forged.push('A');
    group.bench_function("reject_forged_v4", |b| {
        b.iter(|| source.verify(black_box(forged.as_bytes())))
    });
    group.bench_function("sign_v4", |b| {
        b.iter(|| signer.sign(black_box("203.0.113.7".parse().unwrap()), NOW))
    });
    // The floor: one HMAC-SHA256 of a 42-byte message from a precomputed key state (two
    // SHA-256 compressions), which every verification must pay.
    {
        use hmac::{Hmac, Mac};
        let keyed = Hmac::<sha2::Sha256>::new_from_slice(&[9u8; 32]).unwrap();
        let message = [0x5Au8; 42];
        group.bench_function("hmac_sha256_42_bytes", |b| {
            b.iter(|| {
                let mut mac = keyed.clone();
                mac.update(black_box(&message));
                mac.finalize().into_bytes()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
