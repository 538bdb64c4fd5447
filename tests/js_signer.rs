//! The JavaScript signer (`examples/signers/tower-bouncer-signer.mjs`) against the Rust
//! verifier and the Rust signer: runs `node examples/signers/test-vectors.mjs` and checks every
//! value it prints (issue 5: valid, tampered, expired, wrong key, rotated key).
//!
//! Skipped, with a printed message, only when `node` is not on `PATH` — and never when the `CI`
//! environment variable is set: CI has node, so its absence there is a failure.
#![cfg(feature = "signed")]

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use http::HeaderName;
use serde_json::Value;
use tower_bouncer::client_ip::{Reason, SignedHeader, Signer, SigningKey, SigningKeys};

/// What the Rust side reads secrets with (`SigningKey::parse_kid_secret`'s rules).
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The JSON the script prints, or `None` when node is not installed (outside CI).
fn run_script() -> Option<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/signers/test-vectors.mjs");
    let output = match Command::new("node").arg(&script).output() {
        Ok(output) => output,
        Err(error) if error.kind() == ErrorKind::NotFound => {
            assert!(
                std::env::var_os("CI").is_none(),
                "`node` is not on PATH, and CI is set: the JS signer must be tested in CI"
            );
            eprintln!(
                "SKIPPED tests/js_signer.rs: `node` is not on PATH; install Node >= 18 to test \
                 the JavaScript signer against the Rust verifier"
            );
            return None;
        }
        Err(error) => panic!("could not run node: {error}"),
    };
    assert!(
        output.status.success(),
        "node {} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("the script prints JSON"))
}

fn text(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing in {value}"))
        .to_owned()
}

fn secret(base64url: &str) -> Vec<u8> {
    SECRET_BASE64.decode(base64url).unwrap()
}

const NEW_SECRET: &str = "bmV3LXNlY3JldC1uZXctc2VjcmV0LW5ldy1zZWNyZXQ";
const OLD_SECRET: &str = "b2xkLXNlY3JldC1vbGQtc2VjcmV0LW9sZC1zZWNyZXQ";

/// The origin's verifiers, all at the script's fixed time.
struct Origin {
    /// Both keys (during a rotation), no audience.
    rotating: SignedHeader,
    /// The new key only (after the rotation).
    rotated: SignedHeader,
    /// Both keys, audience `api.example.com`.
    with_audience: SignedHeader,
}

impl Origin {
    fn at(now: u64) -> Self {
        let keys = SigningKeys::new(SigningKey::new("new", secret(NEW_SECRET)).unwrap())
            .with_key(SigningKey::new("old", secret(OLD_SECRET)).unwrap())
            .unwrap();
        let build = |keys: SigningKeys| {
            SignedHeader::new(HeaderName::from_static("x-signed-client-ip"), keys)
                .with_clock(move || UNIX_EPOCH + Duration::from_secs(now))
        };
        Self {
            rotating: build(keys.clone()),
            rotated: build(SigningKeys::new(
                SigningKey::new("new", secret(NEW_SECRET)).unwrap(),
            )),
            with_audience: build(keys).audience("api.example.com").unwrap(),
        }
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn js_signed_values_verify_in_rust_as_expected() {
    let Some(output) = run_script() else { return };
    let now = output["now"].as_u64().unwrap();
    let origin = Origin::at(now);
    let mut names = BTreeSet::new();

    for case in output["signed"].as_array().unwrap() {
        let name = text(case, "name");
        let value = text(case, "value");
        let value = value.as_bytes();
        let plain = origin.rotating.verify(value);
        match name.as_str() {
            "valid-v4" => assert_eq!(plain, Ok(ip("203.0.113.7")), "{name}"),
            "valid-v6" => assert_eq!(plain, Ok(ip("2001:db8:85a3::8a2e:370:7334")), "{name}"),
            "mapped-v6" => assert_eq!(plain, Ok(ip("198.51.100.9")), "{name}"),
            "within-window" => assert_eq!(plain, Ok(ip("203.0.113.7")), "{name}"),
            "audience" => {
                assert_eq!(origin.with_audience.verify(value), Ok(ip("203.0.113.7")));
                assert_eq!(
                    plain,
                    Err(Reason::SignatureMismatch),
                    "{name} without audience"
                );
            }
            "rotated-old-key" => {
                assert_eq!(plain, Ok(ip("192.0.2.1")), "{name} during the rotation");
                assert_eq!(
                    origin.rotated.verify(value),
                    Err(Reason::UnknownKeyId),
                    "{name} after the rotation"
                );
            }
            "expired" => assert_eq!(plain, Err(Reason::SignatureExpired), "{name}"),
            "future" => assert_eq!(plain, Err(Reason::SignatureFromFuture), "{name}"),
            "wrong-key" => assert_eq!(plain, Err(Reason::SignatureMismatch), "{name}"),
            "unknown-kid" => assert_eq!(plain, Err(Reason::UnknownKeyId), "{name}"),
            "tampered-ip" | "tampered-time" | "tampered-tag" => {
                assert_eq!(plain, Err(Reason::SignatureMismatch), "{name}");
            }
            other => panic!("unexpected case {other}"),
        }
        names.insert(name);
    }
    let expected = [
        "valid-v4",
        "valid-v6",
        "mapped-v6",
        "audience",
        "rotated-old-key",
        "expired",
        "within-window",
        "future",
        "wrong-key",
        "unknown-kid",
        "tampered-ip",
        "tampered-time",
        "tampered-tag",
    ];
    assert_eq!(
        names,
        expected.iter().map(|name| name.to_string()).collect()
    );
}

#[test]
fn js_and_rust_signers_produce_the_same_bytes() {
    let Some(output) = run_script() else { return };
    let mut compared = 0;
    for case in output["signed"].as_array().unwrap() {
        if case["tampered"].as_bool().unwrap() {
            continue;
        }
        let mut signer = Signer::new(&text(case, "keyId"), secret(&text(case, "secret"))).unwrap();
        if let Some(audience) = case["audience"].as_str() {
            signer = signer.audience(audience).unwrap();
        }
        let rust = signer.sign(ip(&text(case, "ip")), case["now"].as_u64().unwrap());
        assert_eq!(
            rust.to_str().unwrap(),
            text(case, "value"),
            "case {}",
            text(case, "name")
        );
        compared += 1;
    }
    assert_eq!(compared, 10);
}

#[test]
fn js_parses_every_ip_spelling_as_rust_does() {
    let Some(output) = run_script() else { return };
    let now = output["now"].as_u64().unwrap();
    let signer = Signer::new("new", secret(NEW_SECRET)).unwrap();
    let spellings = output["spellings"].as_array().unwrap();
    assert!(spellings.len() >= 20);
    for case in spellings {
        let spelling = text(case, "ip");
        let rust = signer.sign(ip(&spelling), now);
        assert_eq!(rust.to_str().unwrap(), text(case, "value"), "{spelling}");
    }
}

#[test]
fn js_refuses_the_ip_texts_rust_refuses() {
    let Some(output) = run_script() else { return };
    let rejects = output["rejects"].as_array().unwrap();
    assert!(rejects.len() >= 25);
    for case in rejects {
        let input = text(case, "ip");
        assert!(
            input.parse::<IpAddr>().is_err(),
            "Rust accepts {input:?}: not a shared reject case"
        );
        assert_eq!(case["refused"], Value::Bool(true), "JS accepted {input:?}");
    }
}

#[test]
fn js_decodes_base64url_secrets_as_rust_does() {
    let Some(output) = run_script() else { return };
    for case in output["decodes"].as_array().unwrap() {
        let input = text(case, "text");
        let rust = SECRET_BASE64.decode(&input).ok().map(|bytes| {
            bytes
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<String>()
        });
        let js = case["hex"].as_str().map(str::to_owned);
        assert_eq!(js, rust, "base64url {input:?}");
    }
}
