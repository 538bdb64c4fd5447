//! The wire format of version 1: parsing (allocation-free), the MAC input, and encoding.
//!
//! The byte-level specification is in the docs of [`SignedHeader`](super::SignedHeader).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::Mac;

use super::keys::{is_valid_key_id, HmacSha256, MAX_KEY_ID_LEN};

/// The version field of the header value.
const VERSION_FIELD: &[u8] = b"v1";
/// The first bytes of every MAC input: the scheme's label, then the version byte.
const LABEL: &[u8; 4] = b"TBIP";
const VERSION: u8 = 1;
const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;

/// Length of the HMAC-SHA256 tag, in bytes.
pub(super) const TAG_LEN: usize = 32;
/// Length of the tag in base64url without padding.
const TAG_TEXT_LEN: usize = 43;
/// Length of an IPv4 address in base64url without padding (4 bytes).
const V4_TEXT_LEN: usize = 6;
/// Length of an IPv6 address in base64url without padding (16 bytes).
const V6_TEXT_LEN: usize = 22;
/// The most digits of a timestamp (`u64::MAX` has 20).
const MAX_TIMESTAMP_DIGITS: usize = 20;
/// The longest well-formed header value: `v1` `.` kid `.` timestamp `.` address `.` tag.
pub(super) const MAX_VALUE_LEN: usize = VERSION_FIELD.len()
    + 1
    + MAX_KEY_ID_LEN
    + 1
    + MAX_TIMESTAMP_DIGITS
    + 1
    + V6_TEXT_LEN
    + 1
    + TAG_TEXT_LEN;

/// A header value whose syntax is valid; nothing about it is verified yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Parsed<'a> {
    pub(super) kid: &'a [u8],
    pub(super) timestamp: u64,
    pub(super) ip: IpAddr,
    pub(super) tag: [u8; TAG_LEN],
}

/// Parses a header value strictly; `None` for anything that is not exactly one well-formed,
/// canonical version 1 value. Never allocates.
pub(super) fn parse(value: &[u8]) -> Option<Parsed<'_>> {
    if value.is_empty() || value.len() > MAX_VALUE_LEN {
        return None;
    }
    let mut fields = value.split(|byte| *byte == b'.');
    let version = fields.next()?;
    let kid = fields.next()?;
    let timestamp = fields.next()?;
    let address = fields.next()?;
    let tag = fields.next()?;
    if fields.next().is_some() || version != VERSION_FIELD || !is_valid_key_id(kid) {
        return None;
    }
    Some(Parsed {
        kid,
        timestamp: parse_timestamp(timestamp)?,
        ip: decode_address(address)?,
        tag: decode_tag(tag)?,
    })
}

/// Decimal digits, no sign, no leading zero (except `0` itself), fits in a `u64`.
fn parse_timestamp(text: &[u8]) -> Option<u64> {
    let (first, _) = text.split_first()?;
    if text.len() > MAX_TIMESTAMP_DIGITS || (*first == b'0' && text.len() > 1) {
        return None;
    }
    text.iter().try_fold(0u64, |total, byte| {
        let digit = byte.is_ascii_digit().then(|| u64::from(byte - b'0'))?;
        total.checked_mul(10)?.checked_add(digit)
    })
}

/// 4 or 16 address bytes in base64url without padding. An IPv4-mapped IPv6 address is not
/// canonical (signers send the IPv4 address) and is refused.
fn decode_address(text: &[u8]) -> Option<IpAddr> {
    // Buffers sized for base64's decode estimate (3 bytes per 4 characters, rounded up).
    match text.len() {
        V4_TEXT_LEN => {
            let mut bytes = [0u8; 6];
            let written = URL_SAFE_NO_PAD.decode_slice(text, &mut bytes).ok()?;
            let octets: [u8; 4] = bytes.get(..written)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        V6_TEXT_LEN => {
            let mut bytes = [0u8; 18];
            let written = URL_SAFE_NO_PAD.decode_slice(text, &mut bytes).ok()?;
            let octets: [u8; 16] = bytes.get(..written)?.try_into().ok()?;
            let ip = Ipv6Addr::from(octets);
            ip.to_ipv4_mapped().is_none().then_some(IpAddr::V6(ip))
        }
        _ => None,
    }
}

/// The 32-byte tag in base64url without padding.
fn decode_tag(text: &[u8]) -> Option<[u8; TAG_LEN]> {
    if text.len() != TAG_TEXT_LEN {
        return None;
    }
    let mut bytes = [0u8; 33];
    let written = URL_SAFE_NO_PAD.decode_slice(text, &mut bytes).ok()?;
    bytes.get(..written)?.try_into().ok()
}

/// Feeds the canonical MAC input of version 1 into `mac`:
/// `"TBIP" | 0x01 | family | address | timestamp (u64 BE) | len | kid | len | audience`.
///
/// `kid` is at most 32 bytes and `audience` at most 255 (both checked where they are built),
/// so each length fits its one byte.
pub(super) fn feed(mac: &mut HmacSha256, ip: IpAddr, timestamp: u64, kid: &[u8], audience: &[u8]) {
    mac.update(LABEL);
    match ip {
        IpAddr::V4(ip) => {
            mac.update(&[VERSION, FAMILY_V4]);
            mac.update(&ip.octets());
        }
        IpAddr::V6(ip) => {
            mac.update(&[VERSION, FAMILY_V6]);
            mac.update(&ip.octets());
        }
    }
    mac.update(&timestamp.to_be_bytes());
    mac.update(&[length_byte(kid)]);
    mac.update(kid);
    mac.update(&[length_byte(audience)]);
    mac.update(audience);
}

fn length_byte(field: &[u8]) -> u8 {
    // Unreachable fallback: both fields are length-checked at build time (≤ 32 and ≤ 255).
    u8::try_from(field.len()).unwrap_or(u8::MAX)
}

/// Encodes a header value (the signer's side; allocation is fine there).
pub(super) fn encode(kid: &str, timestamp: u64, ip: IpAddr, tag: &[u8; TAG_LEN]) -> String {
    let mut value = String::with_capacity(MAX_VALUE_LEN);
    value.push_str("v1.");
    value.push_str(kid);
    value.push('.');
    value.push_str(&timestamp.to_string());
    value.push('.');
    match ip {
        IpAddr::V4(ip) => URL_SAFE_NO_PAD.encode_string(ip.octets(), &mut value),
        IpAddr::V6(ip) => URL_SAFE_NO_PAD.encode_string(ip.octets(), &mut value),
    }
    value.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut value);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn value(kid: &str, ts: &str, addr: &str, tag: &str) -> String {
        format!("v1.{kid}.{ts}.{addr}.{tag}")
    }

    #[test]
    fn parses_a_well_formed_v4_value() {
        let text = value("k1", "1700000000", "ywBxBw", TAG);
        let parsed = parse(text.as_bytes()).unwrap();
        assert_eq!(parsed.kid, b"k1");
        assert_eq!(parsed.timestamp, 1_700_000_000);
        assert_eq!(parsed.ip, "203.0.113.7".parse::<IpAddr>().unwrap());
        let expected: Vec<u8> = (0u8..32).collect();
        assert_eq!(parsed.tag.as_slice(), expected.as_slice());
    }

    #[test]
    fn parses_a_well_formed_v6_value() {
        // 2001:db8::1
        let text = value("k1", "0", "IAENuAAAAAAAAAAAAAAAAQ", TAG);
        let parsed = parse(text.as_bytes()).unwrap();
        assert_eq!(parsed.ip, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(parsed.timestamp, 0);
    }

    #[test]
    fn encode_and_parse_round_trip() {
        let tag: [u8; 32] = core::array::from_fn(|index| index as u8);
        for ip in ["203.0.113.7", "2001:db8::1", "::", "255.255.255.255"] {
            let ip: IpAddr = ip.parse().unwrap();
            for timestamp in [0, 1, 1_700_000_000, u64::MAX] {
                let text = encode("kid_-9", timestamp, ip, &tag);
                assert!(text.len() <= MAX_VALUE_LEN);
                let parsed = parse(text.as_bytes()).unwrap();
                assert_eq!(
                    (parsed.ip, parsed.timestamp, parsed.tag),
                    (ip, timestamp, tag)
                );
            }
        }
    }

    #[test]
    fn the_longest_value_is_accepted_and_one_more_byte_is_not() {
        let tag = [7u8; 32];
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let text = encode(&"k".repeat(32), u64::MAX, ip, &tag);
        assert_eq!(text.len(), MAX_VALUE_LEN);
        assert!(parse(text.as_bytes()).is_some());
        assert!(parse(format!("{text}A").as_bytes()).is_none());
    }

    #[test]
    fn refuses_malformed_values() {
        let v4 = "ywBxBw";
        let cases: Vec<(&str, String)> = vec![
            ("empty", String::new()),
            ("version 2", format!("v2.k1.1.{v4}.{TAG}")),
            ("version upper case", format!("V1.k1.1.{v4}.{TAG}")),
            ("no version", format!("k1.1.{v4}.{TAG}")),
            ("extra field", format!("{}.x", value("k1", "1", v4, TAG))),
            ("trailing dot", format!("{}.", value("k1", "1", v4, TAG))),
            ("empty kid", value("", "1", v4, TAG)),
            ("kid too long", value(&"k".repeat(33), "1", v4, TAG)),
            ("kid charset", value("k+1", "1", v4, TAG)),
            ("empty timestamp", value("k1", "", v4, TAG)),
            ("leading zero", value("k1", "01", v4, TAG)),
            ("signed timestamp", value("k1", "+1", v4, TAG)),
            ("negative timestamp", value("k1", "-1", v4, TAG)),
            (
                "timestamp overflow",
                value("k1", "18446744073709551616", v4, TAG),
            ),
            ("hex timestamp", value("k1", "0x10", v4, TAG)),
            ("empty address", value("k1", "1", "", TAG)),
            ("address 5 bytes", value("k1", "1", "ywBxBwE", TAG)),
            ("address padded", value("k1", "1", "ywBxBw==", TAG)),
            ("address text", value("k1", "1", "1.2.3.4", TAG)),
            ("address trailing bits", value("k1", "1", "ywBxBx", TAG)),
            ("mapped v6", value("k1", "1", "AAAAAAAAAAAAAP__ywBxBw", TAG)),
            (
                "standard alphabet",
                value("k1", "1", "AAAAAAAAAAAAAP++ywBxBw", TAG),
            ),
            ("empty tag", value("k1", "1", v4, "")),
            ("tag truncated", value("k1", "1", v4, &TAG[..42])),
            ("tag padded", value("k1", "1", v4, &format!("{TAG}="))),
            ("tag too long", value("k1", "1", v4, &format!("{TAG}A"))),
            (
                "tag trailing bits",
                value("k1", "1", v4, &format!("{}9", &TAG[..42])),
            ),
            (
                "tag not base64",
                value("k1", "1", v4, &format!("{}*", &TAG[..42])),
            ),
            ("space", format!(" {}", value("k1", "1", v4, TAG))),
            (
                "non ascii",
                value("k1", "1", v4, TAG).replace('k', "\u{e9}"),
            ),
        ];
        for (name, text) in cases {
            assert_eq!(parse(text.as_bytes()), None, "{name}: {text}");
        }
    }
}
