//! Drives the signed client-IP header (`SignedHeader`) through the public API: `verify` on one
//! value, and `resolve` / `explain` on requests carrying the header.
//!
//! Run: `cargo +nightly fuzz run signed_header` (from the crate root).
//!
//! Two verifiers share the key ids `k1` and `k2` (one without an audience and the default
//! window, one bound to an audience with a shorter window), each on a fixed clock
//! (`with_clock`). The input's first byte picks a mode:
//! - **arbitrary**: the rest, split at `\n`, are header lines verified as they are;
//! - **signed, then mutated**: the fuzzer picks a signer (`k1`, `k2`, the unknown `k3`, `k1`
//!   with a wrong secret, `k1` with the audience), a client address (IPv4, IPv6, IPv4-mapped),
//!   a timestamp (inside or outside the window) and up to eight edits of the value (flip a bit,
//!   set, insert or remove a byte, truncate).
//!
//! Besides "no panic", it checks:
//! - a fresh, unmodified value gets exactly the documented answer: the canonical signed
//!   address when the key id, secret and audience match and the time is in the window;
//!   `UnknownKeyId`, `SignatureMismatch`, `SignatureExpired` or `SignatureFromFuture`
//!   otherwise (ATTACKS.md 43-45);
//! - an edited value that differs from the original is never accepted, and never judged on
//!   its time (expired / from the future), which only a genuine tag reaches (ATTACKS.md 43);
//! - whatever value is accepted, or judged on its time, is byte for byte what the configured
//!   signer produces for the address and timestamp it carries, and an accepted address is
//!   canonical (an arbitrary value never verifies);
//! - `UnknownKeyId` only for a key id that is not configured;
//! - `resolve`: no line → absent, two lines or more → untrustworthy (`DuplicateHeader`), one
//!   line → exactly what `verify` says (ATTACKS.md 45-46); `explain` answers the same.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderName, HeaderValue, Request};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use tower_bouncer::client_ip::{
    Reason, RequestView, Resolution, ResolveClientIp, SignedHeader, Signer, SigningKey,
    SigningKeys, SourceKind,
};

const NOW: u64 = 1_790_000_000;
const HEADER: HeaderName = HeaderName::from_static("x-signed-client-ip");
const AUDIENCE: &str = "api.example.com";
const K1: [u8; 32] = [0x11; 32];
const K2: [u8; 32] = [0x22; 32];
const K3: [u8; 32] = [0x33; 32];
const WRONG: [u8; 32] = [0x44; 32];

/// A verifier and what it is configured with.
struct Verifier {
    source: SignedHeader,
    audience: Option<&'static str>,
    max_age: u64,
    max_skew: u64,
}

impl Verifier {
    fn new(audience: Option<&'static str>, max_age: u64, max_skew: u64) -> Self {
        let keys = SigningKeys::new(SigningKey::new("k1", K1).unwrap())
            .with_key(SigningKey::new("k2", K2).unwrap())
            .unwrap();
        let mut source = SignedHeader::new(HEADER, keys)
            .max_age(Duration::from_secs(max_age))
            .unwrap()
            .max_skew(Duration::from_secs(max_skew))
            .unwrap()
            .with_clock(|| UNIX_EPOCH + Duration::from_secs(NOW));
        if let Some(audience) = audience {
            source = source.audience(audience).unwrap();
        }
        Self {
            source,
            audience,
            max_age,
            max_skew,
        }
    }

    /// The signer this verifier accepts for `kid`, if it knows `kid`.
    fn genuine_signer(&self, kid: &[u8]) -> Option<Signer> {
        let secret = match kid {
            b"k1" => K1,
            b"k2" => K2,
            _ => return None,
        };
        let signer = Signer::new(std::str::from_utf8(kid).unwrap(), secret).unwrap();
        Some(match self.audience {
            Some(audience) => signer.audience(audience).unwrap(),
            None => signer,
        })
    }

    /// The answer the time check gives a genuine value dated `timestamp`.
    fn by_time(&self, timestamp: u64, ip: IpAddr) -> std::result::Result<IpAddr, Reason> {
        if timestamp > NOW.saturating_add(self.max_skew) {
            Err(Reason::SignatureFromFuture)
        } else if timestamp < NOW - self.max_age {
            Err(Reason::SignatureExpired)
        } else {
            Ok(ip.to_canonical())
        }
    }
}

/// The signers the fuzzer picks from: (key id, secret, audience).
const SIGNERS: [(&str, [u8; 32], Option<&str>); 6] = [
    ("k1", K1, None),
    ("k2", K2, None),
    ("k3", K3, None),
    ("k1", WRONG, None),
    ("k1", K1, Some(AUDIENCE)),
    ("k2", K2, Some(AUDIENCE)),
];

fuzz_target!(|data: &[u8]| {
    static VERIFIERS: OnceLock<[Verifier; 2]> = OnceLock::new();
    let verifiers = VERIFIERS.get_or_init(|| {
        [
            Verifier::new(None, 60, 5),
            Verifier::new(Some(AUDIENCE), 30, 2),
        ]
    });
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let lines: Vec<&[u8]> = rest.split(|&byte| byte == b'\n').collect();
        for verifier in verifiers {
            for line in &lines {
                check_verdict(verifier, line, verifier.source.verify(line));
            }
            check_resolve(verifier, &lines);
        }
    } else {
        let _ = signed_then_mutated(verifiers, &mut Unstructured::new(rest));
    }
});

fn signed_then_mutated(verifiers: &[Verifier], u: &mut Unstructured<'_>) -> Result<()> {
    let (kid, secret, audience) = SIGNERS[usize::from(u.arbitrary::<u8>()?) % SIGNERS.len()];
    let mut signer = Signer::new(kid, secret).unwrap();
    if let Some(audience) = audience {
        signer = signer.audience(audience).unwrap();
    }
    let ip = match u.arbitrary::<u8>()? % 3 {
        0 => IpAddr::V4(Ipv4Addr::from(u.arbitrary::<u32>()?)),
        1 => IpAddr::V6(Ipv6Addr::from(u.arbitrary::<u128>()?)),
        _ => IpAddr::V6(Ipv4Addr::from(u.arbitrary::<u32>()?).to_ipv6_mapped()),
    };
    let timestamp = if u.arbitrary::<bool>()? {
        // Within 70 s either side of now: inside and just outside both windows.
        (NOW - 70) + u64::from(u.arbitrary::<u8>()? % 141)
    } else {
        u.arbitrary::<u64>()?
    };
    let original = signer.sign(ip, timestamp);
    let original = original.as_bytes();

    let mut mutated = original.to_vec();
    for _ in 0..u.int_in_range(0..=8)? {
        let at = usize::from(u.arbitrary::<u8>()?) % (mutated.len() + 1);
        let byte = u.arbitrary::<u8>()?;
        match u.arbitrary::<u8>()? % 5 {
            0 if at < mutated.len() => mutated[at] ^= 1 << (byte % 8),
            1 if at < mutated.len() => mutated[at] = byte,
            2 => mutated.insert(at, byte),
            3 if at < mutated.len() => drop(mutated.remove(at)),
            4 => mutated.truncate(at),
            _ => {}
        }
    }

    for verifier in verifiers {
        // The fresh value: exactly the documented answer.
        let answer = verifier.source.verify(original);
        let expected = if verifier.genuine_signer(kid.as_bytes()).is_none() {
            Err(Reason::UnknownKeyId)
        } else if secret != secret_of(kid) || audience != verifier.audience {
            Err(Reason::SignatureMismatch)
        } else {
            verifier.by_time(timestamp, ip)
        };
        assert_eq!(answer, expected, "{kid} {ip} {timestamp}");
        check_verdict(verifier, original, answer);

        // The edited value: never accepted, never judged on its time.
        let answer = verifier.source.verify(&mutated);
        if mutated != original {
            assert!(
                matches!(
                    answer,
                    Err(Reason::SignatureMalformed
                        | Reason::UnknownKeyId
                        | Reason::SignatureMismatch)
                ),
                "edited {:?} from {:?}: {answer:?}",
                String::from_utf8_lossy(&mutated),
                String::from_utf8_lossy(original),
            );
        }
        check_verdict(verifier, &mutated, answer);

        let lines: &[&[u8]] = match u.arbitrary::<u8>()? % 5 {
            0 => &[],
            1 => &[original],
            2 => &[&mutated],
            3 => &[original, original],
            _ => &[&mutated, original],
        };
        check_resolve(verifier, lines);
    }
    Ok(())
}

/// The secret a genuine `kid` has.
fn secret_of(kid: &str) -> [u8; 32] {
    match kid {
        "k1" => K1,
        "k2" => K2,
        _ => K3,
    }
}

/// Whatever `verify` answered for `value`, it must be consistent with what the value is.
fn check_verdict(verifier: &Verifier, value: &[u8], answer: std::result::Result<IpAddr, Reason>) {
    let fields: Vec<&[u8]> = value.split(|&byte| byte == b'.').collect();
    match answer {
        Ok(_) | Err(Reason::SignatureExpired | Reason::SignatureFromFuture) => {
            // Only a genuine tag gets this far: the value must be the signer's own bytes.
            let [b"v1", kid, timestamp, address, _tag] = fields[..] else {
                panic!("{answer:?} for {:?}", String::from_utf8_lossy(value));
            };
            let signer = verifier.genuine_signer(kid).expect("a configured key id");
            let timestamp: u64 = std::str::from_utf8(timestamp).unwrap().parse().unwrap();
            let ip = decode_address(address).expect("a well-formed address");
            assert_eq!(
                signer.sign(ip, timestamp).as_bytes(),
                value,
                "{answer:?} for a value the signer does not produce"
            );
            assert_eq!(answer, verifier.by_time(timestamp, ip));
            if let Ok(accepted) = answer {
                assert_eq!(accepted, ip);
                assert_eq!(accepted, accepted.to_canonical());
            }
        }
        Err(Reason::UnknownKeyId) => {
            assert!(verifier.genuine_signer(fields[1]).is_none());
        }
        Err(Reason::SignatureMalformed | Reason::SignatureMismatch) => {}
        Err(other) => panic!("verify answered {other:?}"),
    }
}

/// A request with `lines` of the header: resolved as the documentation says.
fn check_resolve(verifier: &Verifier, lines: &[&[u8]]) {
    let mut request = Request::new(());
    for line in lines {
        let Ok(value) = HeaderValue::from_bytes(line) else {
            return;
        };
        request.headers_mut().append(HEADER, value);
    }
    let view = RequestView::new(&request);
    let answer = verifier.source.resolve(&view);
    let expected = match lines {
        [] => Resolution::Absent(Reason::HeaderMissing),
        [line] => match verifier.source.verify(line) {
            Ok(ip) => Resolution::resolved(ip, SourceKind::Signed),
            Err(reason) => Resolution::Untrustworthy(reason),
        },
        _ => Resolution::Untrustworthy(Reason::DuplicateHeader),
    };
    assert_eq!(answer, expected);
    assert_eq!(verifier.source.explain(&view).resolution(), answer);
}

/// The address field (base64url without padding, 4 or 16 bytes), decoded loosely: the
/// comparison with the signer's bytes catches any non-canonical spelling.
fn decode_address(text: &[u8]) -> Option<IpAddr> {
    let mut bytes = Vec::with_capacity(16);
    let (mut bits, mut count) = (0u32, 0u32);
    for &character in text {
        let value = match character {
            b'A'..=b'Z' => character - b'A',
            b'a'..=b'z' => character - b'a' + 26,
            b'0'..=b'9' => character - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).ok()?,
        ))),
        _ => None,
    }
}
