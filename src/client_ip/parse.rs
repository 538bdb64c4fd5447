//! Pure, allocation-free parsing of the addresses found in forwarding headers.
//!
//! Everything here works on borrowed bytes and std's own address parsers; nothing allocates,
//! nothing panics, every loop is bounded by its input.
//!
//! # One entry: [`parse_entry`]
//!
//! An entry is one address token, already trimmed of spaces and tabs. Accepted forms:
//!
//! | form                  | example               |
//! |-----------------------|-----------------------|
//! | IPv4                  | `192.0.2.1`           |
//! | IPv4 and port         | `192.0.2.1:8080`      |
//! | IPv6                  | `2001:db8::1`         |
//! | bracketed IPv6        | `[2001:db8::1]`       |
//! | bracketed IPv6, port  | `[2001:db8::1]:443`   |
//! | IPv6 with a zone      | `fe80::1%eth0`, `[fe80::1%eth0]:443` |
//!
//! The rules:
//! - a port is 1 to 5 ASCII digits, at most 65535 (`:nope`, `:99999`, a bare `:` are invalid);
//!   it is dropped from the result;
//! - an unbracketed IPv6 address never has a port: `2001:db8::1:80` is the address
//!   `2001:db8::1:80`, exactly what std parses;
//! - brackets are for IPv6 only: `[192.0.2.1]` is invalid;
//! - a zone id (`%` and 1 to 64 characters of `A-Z a-z 0-9 . _ ~ -`) is stripped; an empty or
//!   malformed zone, a zone on an IPv4 address (IPv4-mapped included), or a zone outside the
//!   brackets is invalid;
//! - the result is canonical: `::ffff:192.0.2.1` is `192.0.2.1`, uppercase and uncompressed
//!   IPv6 come out in std's compressed lowercase form when displayed;
//! - IPv4 must be four decimal octets without leading zeros: std rejects `0127.0.0.1`,
//!   `127.1` and `2130706433`, and so do we;
//! - any byte outside visible ASCII (NUL, controls, space, non-ASCII) makes the entry invalid;
//! - addresses no client can have are invalid: unspecified (`0.0.0.0`, `::`), the IPv4
//!   broadcast `255.255.255.255`, and multicast (`224.0.0.0/4`, `ff00::/8`).
//!
//! # A list: [`RevEntries`]
//!
//! `X-Forwarded-For` is a comma-separated list that may come in several header lines (HAProxy
//! adds a line rather than appending). [`RevEntries`] walks every entry of every line from the
//! right — the end the nearest proxy wrote — without allocating. Empty elements and stray
//! commas (`a,,b`, `, a`, an empty header line among real ones) carry no hop and are skipped;
//! they are not counted in positions. Each line is split as bytes, entry by entry, never
//! decoded as a whole: a non-UTF-8 byte that a client put in its own (left) part of the list
//! spoils only that entry, never the entries the proxies appended to its right.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::header::{GetAll, HeaderValue, ValueIter};

use crate::client_ip::trusted::Addr;

/// The longest zone id accepted after `%`.
const MAX_ZONE_LEN: usize = 64;

/// Parse one trimmed address entry in any of the forms of the [module docs](self).
///
/// `None` for anything else, including addresses no client can have.
#[inline]
pub(crate) fn parse_entry(bytes: &[u8]) -> Option<IpAddr> {
    // The common case first: a plain dotted quad, parsed in one pass.
    if let Some(v4) = parse_v4(bytes) {
        return client_v4(v4).map(IpAddr::V4);
    }
    parse_entry_other(bytes)
}

/// [`parse_entry`] for everything but a plain dotted quad.
fn parse_entry_other(bytes: &[u8]) -> Option<IpAddr> {
    // Every piece below is checked by a strict parser (std's address parsers, the port and
    // zone rules), none of which accepts a byte outside visible ASCII: no separate pass needed.
    let ip = match bytes.first()? {
        b'[' => {
            // `[v6]` or `[v6]:port`, the zone inside the brackets.
            let rest = &bytes[1..];
            let close = rest.iter().position(|&byte| byte == b']')?;
            let (inside, after) = (&rest[..close], &rest[close + 1..]);
            if !after.is_empty() {
                parse_port(after.strip_prefix(b":")?)?;
            }
            parse_v6_with_zone(inside)?
        }
        _ => match bytes.iter().filter(|&&byte| byte == b':').count() {
            // A `%` here is a zone on IPv4: std's parser rejects it.
            0 => IpAddr::V4(parse_v4(bytes)?),
            // IPv6 has at least two colons: one colon is `v4:port`.
            1 => {
                let colon = bytes.iter().position(|&byte| byte == b':')?;
                parse_port(&bytes[colon + 1..])?;
                IpAddr::V4(parse_v4(&bytes[..colon])?)
            }
            // An unbracketed IPv6 address, with or without a zone: never a port.
            _ => parse_v6_with_zone(bytes)?,
        },
    };
    client_address(ip)
}

/// Parse `ip:port` split at the **last** colon, the form of `CloudFront-Viewer-Address`
/// (`192.0.2.1:46532`, `2001:db8::1:46532` — IPv6 not bracketed). The port is required
/// (1 to 5 digits, at most 65535); brackets and zones are invalid; the address must be one a
/// client can have (see [`parse_entry`]). The result is canonical.
// Used by the `CloudFront-Viewer-Address` header source (branch ip-header).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn parse_ip_port_last_colon(bytes: &[u8]) -> Option<IpAddr> {
    if !bytes.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    let colon = bytes.iter().rposition(|&byte| byte == b':')?;
    parse_port(&bytes[colon + 1..])?;
    let address = &bytes[..colon];
    let ip = if address.contains(&b':') {
        IpAddr::V6(parse_v6(address)?).to_canonical()
    } else {
        IpAddr::V4(parse_v4(address)?)
    };
    client_address(ip)
}

/// `bytes` without leading and trailing spaces and tabs (HTTP's optional whitespace).
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&byte| !is_ows(byte))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&byte| !is_ows(byte))
        .map_or(start, |last| last + 1);
    &bytes[start..end]
}

/// The comma-separated entries of every line of a header, from the rightmost entry of the
/// last line to the leftmost entry of the first, trimmed, empty elements skipped.
///
/// ```text
/// X-Forwarded-For: a, b
/// X-Forwarded-For: c,,d
///   yields d, c, b, a
/// ```
///
/// Each [`Entry`] comes with its address already read when it is a plain dotted quad: the
/// scan from the right reads the octets on its way to the comma, so the common entry costs
/// one pass over its bytes. Anything else (a port, IPv6, garbage) is left to [`parse_entry`].
pub(crate) struct RevEntries<'a> {
    lines: std::iter::Rev<ValueIter<'a, HeaderValue>>,
    /// What is left of the current line, not yet yielded (its right end is the next entry).
    line: Option<&'a [u8]>,
}

/// One entry of a list, trimmed and never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    /// The entry's bytes, as received.
    pub(crate) raw: &'a [u8],
    /// The entry read as a plain dotted quad (`192.0.2.1`) during the scan; `None` when it is
    /// anything else, to be read by [`parse_entry`].
    dotted_quad: Option<Ipv4Addr>,
}

impl Entry<'_> {
    /// The address of the entry, as [`parse_entry`] reads it.
    #[inline]
    pub(crate) fn address(&self) -> Option<Addr> {
        match self.dotted_quad {
            Some(v4) => client_v4(v4).map(|v4| Addr::V4(u32::from(v4))),
            None => parse_entry_other(self.raw).map(Addr::from),
        }
    }
}

impl<'a> RevEntries<'a> {
    /// The entries of every line of `values` (`headers.get_all(name)`), right to left.
    pub(crate) fn new(values: GetAll<'a, HeaderValue>) -> Self {
        Self {
            lines: values.iter().rev(),
            line: None,
        }
    }
}

impl<'a> Iterator for RevEntries<'a> {
    type Item = Entry<'a>;

    // Inlined into the walk: the entry then stays in registers (returned through memory, it
    // costs a store-forwarding stall per entry).
    #[inline(always)]
    fn next(&mut self) -> Option<Entry<'a>> {
        loop {
            let line = match self.line {
                Some(line) => line,
                None => self.lines.next()?.as_bytes(),
            };
            if let Some((entry, rest)) = last_dotted_quad(line) {
                self.line = rest;
                return Some(entry);
            }
            let (rest, raw) = match line.iter().rposition(|&byte| byte == b',') {
                Some(comma) => (Some(&line[..comma]), &line[comma + 1..]),
                None => (None, line),
            };
            self.line = rest;
            let raw = trim_ows(raw);
            if !raw.is_empty() {
                return Some(Entry {
                    raw,
                    dotted_quad: None,
                });
            }
        }
    }
}

fn is_ows(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// The last entry of `line` when it is a plain dotted quad, read from the right in one pass,
/// and what is left of the line before its comma (`None`: the entry was the first).
///
/// `None` when the last entry is anything else (or empty): the caller then splits and trims
/// as usual and hands the entry to [`parse_entry`]. Whatever this returns is exactly what the
/// split, the trim and [`parse_v4`] give (a differential test pins it).
#[inline(always)]
fn last_dotted_quad(line: &[u8]) -> Option<(Entry<'_>, Option<&[u8]>)> {
    let mut at = line.len();
    while at > 0 && is_ows(line[at - 1]) {
        at -= 1;
    }
    let end = at;
    let mut octets = [0_u8; 4];
    for index in (0..4).rev() {
        let (value, start) = octet_ending_at(line, at)?;
        octets[index] = value;
        at = start;
        if index > 0 {
            if at == 0 || line[at - 1] != b'.' {
                return None;
            }
            at -= 1;
        }
    }
    let start = at;
    while at > 0 && is_ows(line[at - 1]) {
        at -= 1;
    }
    let rest = match at.checked_sub(1) {
        None => None,
        Some(comma) if line[comma] == b',' => Some(&line[..comma]),
        // A fourth digit, a letter, a colon...: not a plain dotted quad.
        Some(_) => return None,
    };
    let entry = Entry {
        raw: &line[start..end],
        dotted_quad: Some(Ipv4Addr::from(octets)),
    };
    Some((entry, rest))
}

/// The decimal octet whose last digit is `line[end - 1]`: its value and the index of its first
/// digit. One to three digits, the first not `0` unless alone, at most 255; a digit before
/// the third is left for the caller to reject (it expects a `.`, a comma or nothing there).
#[inline(always)]
fn octet_ending_at(line: &[u8], end: usize) -> Option<(u8, usize)> {
    // `wrapping_sub` past the start gives an index `get` refuses.
    let digit = |back: usize| {
        line.get(end.wrapping_sub(back))
            .map(|byte| byte.wrapping_sub(b'0'))
            .filter(|digit| *digit < 10)
    };
    let ones = digit(1)?;
    let Some(tens) = digit(2) else {
        return Some((ones, end - 1));
    };
    let Some(hundreds) = digit(3) else {
        // Two digits: no leading zero.
        return (tens != 0).then(|| (tens * 10 + ones, end - 2));
    };
    let value = u16::from(hundreds) * 100 + u16::from(tens) * 10 + u16::from(ones);
    if hundreds == 0 {
        return None;
    }
    Some((u8::try_from(value).ok()?, end - 3))
}

impl std::fmt::Debug for RevEntries<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevEntries").finish_non_exhaustive()
    }
}

/// `ip` if a client can have it: not unspecified, broadcast or multicast.
fn client_address(ip: IpAddr) -> Option<IpAddr> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => client_v4(v4).map(IpAddr::V4),
        IpAddr::V6(v6) => (!(v6.is_unspecified() || v6.is_multicast())).then_some(IpAddr::V6(v6)),
    }
}

/// `v4` if a client can have it: not `0.0.0.0`, `255.255.255.255` or multicast.
#[inline]
fn client_v4(v4: Ipv4Addr) -> Option<Ipv4Addr> {
    (!(v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast())).then_some(v4)
}

/// Four decimal octets, each `0` or 1 to 3 digits without a leading zero, at most 255 — the
/// exact grammar of std's `Ipv4Addr::from_str` (a differential test pins that), read straight
/// from the bytes. It is the hottest parse of the crate (every `X-Forwarded-For` entry): one
/// octet at a time, without a state machine, it costs a fraction of UTF-8 validation plus
/// std's parser.
#[inline]
fn parse_v4(bytes: &[u8]) -> Option<Ipv4Addr> {
    // "0.0.0.0" to "255.255.255.255".
    if !(7..=15).contains(&bytes.len()) {
        return None;
    }
    let mut octets = [0_u8; 4];
    let mut at = 0;
    for (index, octet) in octets.iter_mut().enumerate() {
        if index > 0 {
            if bytes.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
        let (value, used) = parse_octet(bytes.get(at..).unwrap_or_default())?;
        *octet = value;
        at += used;
    }
    (at == bytes.len()).then(|| Ipv4Addr::from(octets))
}

/// One decimal octet at the start of `bytes`: its value and how many bytes it used (1 to 3).
/// `0` alone, or 1 to 3 digits without a leading zero, at most 255.
#[inline]
fn parse_octet(bytes: &[u8]) -> Option<(u8, usize)> {
    let digit = |at: usize| {
        bytes
            .get(at)
            .and_then(|byte| byte.checked_sub(b'0'))
            .filter(|digit| *digit <= 9)
    };
    let first = digit(0)?;
    let Some(second) = digit(1) else {
        return Some((first, 1));
    };
    if first == 0 {
        return None; // a leading zero
    }
    let two = first * 10 + second; // at most 99
    let Some(third) = digit(2) else {
        return Some((two, 2));
    };
    let three = u16::from(two) * 10 + u16::from(third);
    // A fourth digit is not an octet: the caller finds it where it expects a `.` or the end.
    Some((u8::try_from(three).ok()?, 3))
}

fn parse_v6(bytes: &[u8]) -> Option<Ipv6Addr> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// An IPv6 address with an optional zone (`fe80::1%eth0`); the zone is validated and dropped.
/// A zone on an IPv4-mapped address is invalid (IPv4 has no zones).
fn parse_v6_with_zone(bytes: &[u8]) -> Option<IpAddr> {
    let (address, zone) = match bytes.iter().position(|&byte| byte == b'%') {
        Some(percent) => (&bytes[..percent], Some(&bytes[percent + 1..])),
        None => (bytes, None),
    };
    let ip = IpAddr::V6(parse_v6(address)?).to_canonical();
    match zone {
        None => Some(ip),
        Some(zone) if ip.is_ipv6() && valid_zone(zone) => Some(ip),
        Some(_) => None,
    }
}

fn valid_zone(zone: &[u8]) -> bool {
    (1..=MAX_ZONE_LEN).contains(&zone.len())
        && zone
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'~' | b'-'))
}

/// A port: 1 to 5 ASCII digits, at most 65535.
fn parse_port(bytes: &[u8]) -> Option<u16> {
    if bytes.is_empty() || bytes.len() > 5 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = bytes
        .iter()
        .fold(0_u32, |value, &digit| value * 10 + u32::from(digit - b'0'));
    u16::try_from(value).ok()
}

#[cfg(test)]
mod tests {

    /// `parse_v4` accepts exactly what std's parser accepts, and gives the same address.
    #[test]
    fn parse_v4_matches_std_on_tricky_inputs() {
        let pieces = [
            "0", "1", "9", "00", "01", "10", "99", "100", "199", "255", "256", "300", "999",
            "0000", "1000", "", "a", "+1", "-1", " 1", "1 ", "\u{0661}", "0x1", "1e2",
        ];
        let mut checked = 0;
        for a in pieces {
            for b in ["0", "255", "01", ""] {
                for c in ["7", "256", "00"] {
                    for d in pieces {
                        let text = format!("{a}.{b}.{c}.{d}");
                        assert_eq!(parse_v4(text.as_bytes()), text.parse().ok(), "{text:?}");
                        checked += 1;
                    }
                }
            }
        }
        for text in [
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.4.",
            ".1.2.3.4",
            "1..2.3",
            "127.1",
            "2130706433",
            "0127.0.0.1",
            "1.2.3.4 ",
            "255.255.255.255",
            "0.0.0.0",
            "192.168.001.1",
        ] {
            assert_eq!(parse_v4(text.as_bytes()), text.parse().ok(), "{text:?}");
            checked += 1;
        }
        assert!(checked > 6000);
    }

    proptest::proptest! {
        /// Any short string over the characters that matter gets the same answer as std's.
        #[test]
        fn parse_v4_matches_std_on_random_bytes(bytes in proptest::collection::vec(
            proptest::sample::select(&b"0123456789.a "[..]), 0..20)) {
            let expected = std::str::from_utf8(&bytes).ok().and_then(|text| text.parse().ok());
            proptest::prop_assert_eq!(parse_v4(&bytes), expected);
        }
    }
    use super::*;
    use http::HeaderMap;

    fn entry(text: &str) -> Option<String> {
        parse_entry(text.as_bytes()).map(|ip| ip.to_string())
    }

    fn entries(lines: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_bytes(line).unwrap());
        }
        RevEntries::new(headers.get_all("x-forwarded-for"))
            .map(|entry| entry.raw.to_vec())
            .collect()
    }

    /// The plain reading of a list the fused scan must agree with: split every line at its
    /// commas, trim, drop empty elements, right to left, each entry read by `parse_entry`.
    fn reference(lines: &[Vec<u8>]) -> Vec<(Vec<u8>, Option<IpAddr>)> {
        let mut found = Vec::new();
        for line in lines.iter().rev() {
            for element in line.split(|&byte| byte == b',').rev() {
                let element = trim_ows(element);
                if !element.is_empty() {
                    found.push((element.to_vec(), parse_entry(element)));
                }
            }
        }
        found
    }

    fn scanned(lines: &[Vec<u8>]) -> Vec<(Vec<u8>, Option<IpAddr>)> {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_bytes(line).unwrap());
        }
        RevEntries::new(headers.get_all("x-forwarded-for"))
            .map(|entry| (entry.raw.to_vec(), entry.address().map(IpAddr::from)))
            .collect()
    }

    #[test]
    fn fused_scan_matches_split_trim_parse_on_tricky_lists() {
        for line in [
            "203.0.113.7, 10.0.0.1,10.0.0.2",
            " 1.2.3.4 ,\t5.6.7.8\t",
            "1234.1.1.1, 1.2.3.4.5, 01.2.3.4, 1.2.3.004, 1.2.3.256, 1.2.3.255",
            "a1.2.3.4, 1.2.3.4a, 1.2.3.4:80, [::1]:80, ::ffff:1.2.3.4, 1:2.3.4.5",
            ",, 1.2.3.4,,",
            "",
            " ",
            ",",
            "0.0.0.0, 255.255.255.255, 224.0.0.1, 9.9.9.9",
            "1.2.3.4 5.6.7.8",
            "1.2.3.4 ,5.6.7.8",
            ".1.2.3.4",
            "1.2.3.4.",
            "1..2.3",
        ] {
            let lines = vec![line.as_bytes().to_vec()];
            assert_eq!(scanned(&lines), reference(&lines), "{line:?}");
        }
        let lines: Vec<Vec<u8>> = vec![
            b"1.1.1.1, 2.2.2.2".to_vec(),
            b"".to_vec(),
            b"3.3.3.3,".to_vec(),
        ];
        assert_eq!(scanned(&lines), reference(&lines));
    }

    proptest::proptest! {
        /// The fused right-to-left scan reads every list exactly as the plain split, trim and
        /// parse does: the same entries, the same addresses.
        #[test]
        fn fused_scan_matches_split_trim_parse(lines in proptest::collection::vec(
            proptest::collection::vec(
                proptest::sample::select(&b"0123456789012345.....,, \t:[]af%"[..]), 0..40),
            1..4)) {
            proptest::prop_assert_eq!(scanned(&lines), reference(&lines));
        }

        /// The same on lists of near-addresses: octets valid or not, glued by dots, commas,
        /// spaces and the odd colon.
        #[test]
        fn fused_scan_matches_on_near_addresses(pieces in proptest::collection::vec(
            (proptest::sample::select(&["0", "1", "9", "00", "01", "10", "99", "100", "255", "256",
                "999", "1000", "a", ""][..]),
             proptest::sample::select(&[".", ".", ".", ", ", ",", " ", ":", "\t,"][..])),
            0..24)) {
            let line: String = pieces.iter().flat_map(|(octet, glue)| [*octet, *glue]).collect();
            let lines = vec![line.into_bytes()];
            proptest::prop_assert_eq!(scanned(&lines), reference(&lines));
        }
    }

    fn strings(entries: Vec<Vec<u8>>) -> Vec<String> {
        entries
            .into_iter()
            .map(|bytes| String::from_utf8(bytes).unwrap())
            .collect()
    }

    #[test]
    fn attack_26_address_forms_and_ports() {
        for (input, expected) in [
            ("192.0.2.1", "192.0.2.1"),
            ("192.0.2.1:80", "192.0.2.1"),
            ("192.0.2.1:0", "192.0.2.1"),
            ("192.0.2.1:65535", "192.0.2.1"),
            ("192.0.2.1:00080", "192.0.2.1"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]:1", "2001:db8::1"),
        ] {
            assert_eq!(entry(input).as_deref(), Some(expected), "{input}");
        }
        for input in [
            "192.0.2.1:nope",
            "192.0.2.1:99999",
            "192.0.2.1:65536",
            "192.0.2.1:",
            "192.0.2.1:123456",
            "192.0.2.1:+80",
            "192.0.2.1:-1",
            "[2001:db8::1]:",
            "[2001:db8::1]:nope",
            "[2001:db8::1]:99999",
            "[2001:db8::1]80",
            "[2001:db8::1",
            "2001:db8::1]",
            "[2001:db8::1]]",
            "[[2001:db8::1]]",
            "[]",
            "[]:80",
            ":80",
            "192.0.2.1:80:80",
        ] {
            assert_eq!(entry(input), None, "{input}");
        }
    }

    #[test]
    fn attack_27_unbracketed_v6_has_no_port() {
        assert_eq!(entry("2001:db8::1:80").as_deref(), Some("2001:db8::1:80"));
        assert_eq!(entry("::1:443").as_deref(), Some("::1:443"));
        // Eight full groups and a "port" is not an address.
        assert_eq!(entry("2001:db8:0:0:0:0:0:1:80"), None);
    }

    #[test]
    fn attack_28_brackets_are_for_v6_only() {
        assert_eq!(entry("[2001:db8::2]").as_deref(), Some("2001:db8::2"));
        assert_eq!(entry("[192.0.2.1]"), None);
        assert_eq!(entry("[192.0.2.1]:80"), None);
        // A bracketed IPv4-mapped address is IPv6 syntax: allowed, and canonical.
        assert_eq!(entry("[::ffff:192.0.2.1]:80").as_deref(), Some("192.0.2.1"));
    }

    #[test]
    fn attack_29_zones_are_stripped_or_invalid() {
        for (input, expected) in [
            ("fe80::1%eth0", "fe80::1"),
            ("[fe80::1%eth0]", "fe80::1"),
            ("[fe80::1%eth0]:443", "fe80::1"),
            ("fe80::1%25eth0", "fe80::1"),
            ("fe80::1%a.b_c~d-1", "fe80::1"),
            ("2001:db8::1%7", "2001:db8::1"),
        ] {
            assert_eq!(entry(input).as_deref(), Some(expected), "{input}");
        }
        let long_zone = format!("fe80::1%{}", "z".repeat(64));
        assert_eq!(entry(&long_zone).as_deref(), Some("fe80::1"));
        let too_long = format!("fe80::1%{}", "z".repeat(65));
        for input in [
            too_long.as_str(),
            "fe80::1%",
            "[fe80::1%]:443",
            "fe80::1%eth0%eth1",
            "fe80::1%eth/0",
            "fe80::1%eth0:443",
            "[fe80::1]%eth0",
            "[fe80::1]%eth0:443",
            "192.0.2.1%eth0",
            "192.0.2.1:80%eth0",
            "::ffff:192.0.2.1%eth0",
            "[::ffff:192.0.2.1%eth0]:80",
            "%eth0",
        ] {
            assert_eq!(entry(input), None, "{input}");
        }
    }

    #[test]
    fn attack_30_mapped_v6_is_canonical_v4() {
        assert_eq!(entry("::ffff:1.2.3.4").as_deref(), Some("1.2.3.4"));
        assert_eq!(entry("::FFFF:102:304").as_deref(), Some("1.2.3.4"));
        assert_eq!(entry("[::ffff:1.2.3.4]:80").as_deref(), Some("1.2.3.4"));
        assert_eq!(
            parse_entry(b"0:0:0:0:0:ffff:0102:0304"),
            Some(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)))
        );
    }

    #[test]
    fn attack_31_uppercase_and_uncompressed_v6_are_canonical() {
        assert_eq!(
            entry("2001:0DB8:0000:0000:0000:0000:0000:0001").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(entry("[FE80::A%Eth0]:8080").as_deref(), Some("fe80::a"));
    }

    #[test]
    fn attack_32_addresses_no_client_can_have() {
        for input in [
            "0.0.0.0",
            "0.0.0.0:80",
            "::",
            "[::]:80",
            "0:0:0:0:0:0:0:0",
            "::ffff:0.0.0.0",
            "255.255.255.255",
            "::ffff:255.255.255.255",
            "224.0.0.1",
            "239.255.255.250:1900",
            "::ffff:224.0.0.1",
            "ff02::1",
            "[ff05::1:3]:547",
        ] {
            assert_eq!(entry(input), None, "{input}");
        }
        // Unusual but possible client addresses stay valid.
        for input in [
            "0.0.0.1",
            "255.255.255.254",
            "223.255.255.255",
            "240.0.0.1",
            "::1",
        ] {
            assert!(entry(input).is_some(), "{input}");
        }
    }

    #[test]
    fn attack_25_octal_short_and_integer_v4_are_invalid() {
        for input in [
            "0127.0.0.1",
            "127.000.000.001",
            "127.1",
            "127.0.1",
            "2130706433",
            "0x7f.0.0.1",
            "0x7f000001",
            "127.0.0.1.",
            ".127.0.0.1",
            "127..0.1",
            "256.0.0.1",
            "1.2.3.4.5",
            "١٢٧.0.0.1",
            "１２７.0.0.1",
            "127.0.0.１",
        ] {
            assert_eq!(entry(input), None, "{input}");
        }
    }

    #[test]
    fn attack_22_a_non_ip_string_is_never_an_ip() {
        for input in [
            "unknown",
            "_hidden",
            "localhost",
            "example.com",
            "for=192.0.2.1",
            "\"192.0.2.1\"",
            "192.0.2.1,",
            "192.0.2.1;",
            "192.0.2.1/24",
            "-",
            ":",
            "::::",
            "[",
            "]",
            "%",
        ] {
            assert_eq!(entry(input), None, "{input}");
        }
    }

    #[test]
    fn attack_23_control_and_non_ascii_bytes_are_invalid() {
        for input in [
            &b"192.0.2.1\0"[..],
            b"\x00192.0.2.1",
            b"192.0.2\x001",
            b"192.0.2.1\x7f",
            b"192.0.2.1\r",
            b"192.0.2.1\n",
            b"192.0.2.1 ",
            b" 192.0.2.1",
            b"192.0.\t2.1",
            b"192.0.2.1\xff",
            b"\xc3\xa9192.0.2.1",
            b"[2001:db8::1\x80]",
            b"fe80::1%eth\xe2\x80\x8b0",
            b"",
        ] {
            assert_eq!(parse_entry(input), None, "{input:?}");
            assert_eq!(parse_ip_port_last_colon(input), None, "{input:?}");
        }
    }

    #[test]
    fn attack_19_splitting_is_whitespace_insensitive() {
        let expected = ["b", "a"];
        for line in [
            &b"a,b"[..],
            b"a, b",
            b"a ,b",
            b"a\t,\tb",
            b"  a  ,  b  ",
            b"a,\t b\t",
        ] {
            assert_eq!(strings(entries(&[line])), expected, "{line:?}");
        }
        // Empty elements and stray commas carry no hop.
        for line in [&b"a,,b"[..], b",a,b", b"a,b,", b", ,a, ,\t,b,,", b"a , , b"] {
            assert_eq!(strings(entries(&[line])), expected, "{line:?}");
        }
        assert!(entries(&[b""]).is_empty());
        assert!(entries(&[b",,, ,"]).is_empty());
        assert!(entries(&[]).is_empty());
    }

    #[test]
    fn attack_16_17_several_lines_form_one_list_in_order() {
        assert_eq!(
            strings(entries(&[b"a, b", b"c", b"d,e"])),
            ["e", "d", "c", "b", "a"]
        );
        // An empty line among real ones is skipped.
        assert_eq!(strings(entries(&[b"a", b"", b"b", b" "])), ["b", "a"]);
    }

    #[test]
    fn attack_23_non_utf8_left_part_does_not_spoil_the_right() {
        let found = entries(&[b"\xff\xfe garbage \xc3, 192.0.2.1, 10.0.0.1"]);
        assert_eq!(found[0], b"10.0.0.1");
        assert_eq!(found[1], b"192.0.2.1");
        assert_eq!(parse_entry(&found[1]), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(parse_entry(&found[2]), None);
    }

    #[test]
    fn trim_ows_trims_spaces_and_tabs_only() {
        assert_eq!(trim_ows(b" \t a b \t "), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
        assert_eq!(trim_ows(b"\ra\n"), b"\ra\n");
    }

    #[test]
    fn cloudfront_viewer_address_splits_at_the_last_colon() {
        let parse = |text: &str| parse_ip_port_last_colon(text.as_bytes()).map(|ip| ip.to_string());
        assert_eq!(parse("192.0.2.1:46532").as_deref(), Some("192.0.2.1"));
        assert_eq!(parse("2001:db8::1:46532").as_deref(), Some("2001:db8::1"));
        assert_eq!(
            parse("2001:db8:0:0:0:0:0:1:443").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(parse("::ffff:192.0.2.1:80").as_deref(), Some("192.0.2.1"));
        for input in [
            "192.0.2.1",
            "192.0.2.1:",
            "192.0.2.1:99999",
            "192.0.2.1:x",
            "[2001:db8::1]:443",
            "fe80::1%eth0:443",
            "2001:db8::1",
            "0.0.0.0:80",
            "224.0.0.1:80",
            "127.1:80",
            ":80",
            "",
        ] {
            assert_eq!(parse(input), None, "{input}");
        }
    }
}
