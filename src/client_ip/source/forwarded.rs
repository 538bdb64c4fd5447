//! The RFC 7239 `Forwarded` source: the `for=` parameter of each element, walked from the right.
//!
//! ```text
//! Forwarded: for=198.51.100.17;proto=https, for="[2001:db8::7]:4711";by=10.0.0.2
//! ```
//!
//! The syntax it accepts and the answers it gives are documented on [`Forwarded`].

use std::iter::Rev;
use std::net::IpAddr;

use http::header::{HeaderValue, ValueIter, FORWARDED};

use super::xff::Walk;
use crate::client_ip::explanation::{ignore, Event};
use crate::client_ip::parse::{parse_entry, trim_ows};
use crate::client_ip::trusted::Addr;
use crate::client_ip::{
    Explanation, Reason, RequestView, Resolution, ResolveClientIp, SourceKind, TrustedRanges,
};
use crate::ConfigError;

/// The longest `for=` value, unescaped, that can be read (an IPv6 address with a 64-byte zone
/// and a port fits).
const MAX_VALUE_LEN: usize = 128;

/// The client IP from the RFC 7239 `Forwarded` header's `for=` parameters, walked from the
/// right. The same two walks as [`XForwardedFor`](super::XForwardedFor), over elements instead
/// of comma-separated entries.
///
/// The header is split without allocating, and from the right: elements at the `,` outside
/// quoted strings, each element into its `;`-separated `name=value` pairs. Scanning from the
/// right keeps the elements your proxies wrote readable whatever the client put on the left,
/// even an unmatched quote or bracket. Within an element:
/// - parameter names are case-insensitive; whitespace around `;`, `,` and `=` is tolerated;
///   `by`, `proto`, `host` and extension parameters are checked for syntax and ignored;
/// - values are tokens or quoted strings; the quoted pairs (`\"`) of the `for=` value are
///   unescaped into a small stack buffer (a `for=` value longer than 128 bytes is invalid).
///   An unquoted value may also carry `:` and `[]` (`for=2001:db8::1`, as hand-written proxy
///   configurations produce);
/// - the `for=` value is read as an entry of the
///   [`X-Forwarded-For` rules](super::XForwardedFor#entries) (ports, `[v6]:port`, zones,
///   mapped IPv6);
/// - `for=unknown` (with or without a port) stops the walk when reached:
///   [`UnknownIdentifier`](Reason::UnknownIdentifier);
/// - an obfuscated node (`for=_hidden`) or an obfuscated port (`for="192.0.2.1:_p1"`) stops
///   it as [`ObfuscatedIdentifier`](Reason::ObfuscatedIdentifier);
/// - an element with no `for=`, or with two, stops it as
///   [`MissingOrRepeatedFor`](Reason::MissingOrRepeatedFor): a hop that does
///   not say, once, where it came from cannot be walked past;
/// - anything malformed stops it as [`InvalidEntry`](Reason::InvalidEntry).
///
/// Empty elements (stray commas) carry no hop and are skipped, as in `X-Forwarded-For`.
///
/// ```
/// use std::net::SocketAddr;
/// use tower_bouncer::client_ip::{
///     Forwarded, PeerAddr, Reason, RequestView, Resolution, ResolveClientIp, TrustedRanges,
/// };
///
/// let source = Forwarded::rightmost_untrusted(TrustedRanges::loopback());
///
/// let mut request = http::Request::builder()
///     .header("forwarded", r#"for=6.6.6.6, for="[2001:db8::7]:4711";proto=https, for=127.0.0.2"#)
///     .body(())?;
/// let peer: SocketAddr = "127.0.0.1:41000".parse()?;
/// request.extensions_mut().insert(PeerAddr(peer));
/// assert_eq!(source.resolve(&RequestView::new(&request)).ip(), Some("2001:db8::7".parse()?));
///
/// // A proxy that hides the client stops the walk: nothing left of it can be believed.
/// let mut request = http::Request::builder()
///     .header("forwarded", "for=6.6.6.6, for=_hidden, for=127.0.0.2")
///     .body(())?;
/// request.extensions_mut().insert(PeerAddr(peer));
/// assert_eq!(
///     source.resolve(&RequestView::new(&request)),
///     Resolution::Untrustworthy(Reason::ObfuscatedIdentifier { position: 2 })
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Forwarded {
    walk: Walk,
}

impl Forwarded {
    /// The `for=` of the rightmost element that is not in `ranges`; the same rules as
    /// [`XForwardedFor::rightmost_untrusted`](super::XForwardedFor::rightmost_untrusted), and
    /// the stops listed on [`Forwarded`] when an element reached cannot be read.
    pub fn rightmost_untrusted(ranges: TrustedRanges) -> Self {
        Self {
            walk: Walk::RightmostUntrusted { trusted: ranges },
        }
    }

    /// The `for=` of the `hops`th element from the right, read when the peer is in
    /// `trusted_peers`; element 1 is the one the nearest proxy appended. Counted exactly as
    /// [`XForwardedFor::hop_count`](super::XForwardedFor::hop_count): with
    /// `Forwarded: for=C, for=CDN` seen behind one CDN and one nginx, `hops = 2` gives `C`.
    ///
    /// ```
    /// use tower_bouncer::client_ip::{Forwarded, TrustedRanges};
    ///
    /// let source = Forwarded::hop_count(1, TrustedRanges::loopback())?;
    /// # let _ = source;
    /// # Ok::<(), tower_bouncer::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `hops` is 0: the header would never be read.
    pub fn hop_count(hops: u32, trusted_peers: TrustedRanges) -> Result<Self, ConfigError> {
        Ok(Self {
            walk: Walk::hop_count(hops, trusted_peers, "forwarded")?,
        })
    }
}

impl Forwarded {
    /// The walk, reporting each step to `observe`.
    fn walk<'a>(
        &self,
        request: &RequestView<'a>,
        observe: &mut (impl FnMut(Event<'a>) + ?Sized),
    ) -> Resolution {
        let elements = RevElements {
            lines: request.headers().get_all(FORWARDED).iter().rev(),
            line: None,
        };
        self.walk.resolve(
            request,
            elements,
            |element: &'a [u8]| element,
            |element, position| read_element(element, position).map(Addr::from),
            SourceKind::Forwarded,
            observe,
        )
    }
}

impl ResolveClientIp for Forwarded {
    fn resolve(&self, request: &RequestView<'_>) -> Resolution {
        self.walk(request, &mut ignore)
    }

    fn explain(&self, request: &RequestView<'_>) -> Explanation {
        self.walk
            .explain(request, "forwarded", |observe| self.walk(request, observe))
    }

    fn headers_read(&self) -> &[http::HeaderName] {
        static READ: [http::HeaderName; 1] = [FORWARDED];
        &READ
    }
}

/// The elements of every `Forwarded` line, right to left, split at commas outside quoted
/// strings, trimmed, empty ones skipped.
struct RevElements<'a> {
    lines: Rev<ValueIter<'a, HeaderValue>>,
    line: Option<&'a [u8]>,
}

impl<'a> Iterator for RevElements<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let line = match self.line {
                Some(line) => line,
                None => self.lines.next()?.as_bytes(),
            };
            let (rest, element) = match last_separator(line) {
                Some(comma) => (Some(&line[..comma]), &line[comma + 1..]),
                None => (None, line),
            };
            self.line = rest;
            let element = trim_ows(element);
            if !element.is_empty() {
                return Some(element);
            }
        }
    }
}

/// The index of the last `,` of `line` outside a quoted string, scanning from the right.
///
/// Scanning from the right, a `"` opens a quoted string (its closing quote), and the next `"`
/// not escaped by an odd run of backslashes closes it. Every byte is visited once.
fn last_separator(line: &[u8]) -> Option<usize> {
    let mut quoted = false;
    let mut index = line.len();
    while index > 0 {
        index -= 1;
        match line[index] {
            b'"' if quoted => {
                let backslashes = line[..index]
                    .iter()
                    .rev()
                    .take_while(|&&byte| byte == b'\\')
                    .count();
                if backslashes % 2 == 0 {
                    quoted = false;
                }
                // The backslashes are escapes (or garbage): neither splits. Skip them.
                index -= backslashes;
            }
            b'"' => quoted = true,
            b',' if !quoted => return Some(index),
            _ => {}
        }
    }
    None
}

/// A parameter value as written: a token, or the inside of a quoted string (still escaped).
#[derive(Clone, Copy)]
enum Value<'a> {
    Token(&'a [u8]),
    Quoted(&'a [u8]),
}

/// The address in the `for=` of one element, or why there is none.
fn read_element(element: &[u8], position: u32) -> Result<IpAddr, Reason> {
    let invalid = Reason::InvalidEntry { position };
    let mut found: Option<Value<'_>> = None;
    let mut for_count: u32 = 0;
    let mut rest = element;
    loop {
        rest = trim_start(rest);
        let Some(&first) = rest.first() else { break };
        if first == b';' {
            // An empty pair (`a=1;;b=2`, a trailing `;`) is allowed by the grammar.
            rest = &rest[1..];
            continue;
        }
        let name_len = rest.iter().take_while(|&&byte| is_tchar(byte)).count();
        if name_len == 0 {
            return Err(invalid);
        }
        let name = &rest[..name_len];
        rest = trim_start(&rest[name_len..]);
        rest = trim_start(rest.strip_prefix(b"=").ok_or(invalid)?);
        let (value, after) = split_value(rest).ok_or(invalid)?;
        rest = trim_start(after);
        if let Some(&next) = rest.first() {
            if next != b';' {
                return Err(invalid);
            }
        }
        if name.eq_ignore_ascii_case(b"for") {
            for_count = for_count.saturating_add(1);
            found = Some(value);
        }
    }
    match (for_count, found) {
        (1, Some(value)) => read_for(value, position),
        _ => Err(Reason::MissingOrRepeatedFor { position }),
    }
}

/// Split a value off the front of `rest`: a quoted string (up to its closing quote) or an
/// unquoted run up to `;` or whitespace.
fn split_value(rest: &[u8]) -> Option<(Value<'_>, &[u8])> {
    if let Some(inside) = rest.strip_prefix(b"\"") {
        let mut index = 0;
        while let Some(&byte) = inside.get(index) {
            match byte {
                b'"' => return Some((Value::Quoted(&inside[..index]), &inside[index + 1..])),
                b'\\' => {
                    if !inside.get(index + 1).copied().is_some_and(is_quoted_text) {
                        return None;
                    }
                    index += 2;
                }
                byte if is_quoted_text(byte) => index += 1,
                _ => return None,
            }
        }
        // No closing quote.
        None
    } else {
        let len = rest
            .iter()
            .take_while(|&&byte| byte != b';' && byte != b' ' && byte != b'\t')
            .count();
        let value = &rest[..len];
        let usable = !value.is_empty()
            && value
                .iter()
                .all(|&byte| byte.is_ascii_graphic() && !matches!(byte, b'"' | b'\\' | b','));
        usable.then_some((Value::Token(value), &rest[len..]))
    }
}

/// Read a `for=` value: an address, or the reason it is not one.
fn read_for(value: Value<'_>, position: u32) -> Result<IpAddr, Reason> {
    let invalid = Reason::InvalidEntry { position };
    let mut buffer = [0_u8; MAX_VALUE_LEN];
    let node: &[u8] = match value {
        Value::Token(token) => token,
        Value::Quoted(quoted) if quoted.len() > MAX_VALUE_LEN => return Err(invalid),
        // Nothing to unescape: read it in place.
        Value::Quoted(quoted) if !quoted.contains(&b'\\') => quoted,
        Value::Quoted(quoted) => {
            let mut len = 0;
            let mut escaped = false;
            for &byte in quoted {
                if !escaped && byte == b'\\' {
                    escaped = true;
                    continue;
                }
                escaped = false;
                *buffer.get_mut(len).ok_or(invalid)? = byte;
                len += 1;
            }
            &buffer[..len]
        }
    };
    if node.first() == Some(&b'_') {
        return if is_obfuscated(node) {
            Err(Reason::ObfuscatedIdentifier { position })
        } else {
            Err(invalid)
        };
    }
    let (name, port) = split_node(node);
    if name.eq_ignore_ascii_case(b"unknown") {
        return match port {
            None => Err(Reason::UnknownIdentifier { position }),
            Some(port) if is_obfuscated(port) || is_port(port) => {
                Err(Reason::UnknownIdentifier { position })
            }
            Some(_) => Err(invalid),
        };
    }
    if let Some(port) = port.filter(|port| port.first() == Some(&b'_')) {
        return if is_obfuscated(port) && parse_entry(name).is_some() {
            Err(Reason::ObfuscatedIdentifier { position })
        } else {
            Err(invalid)
        };
    }
    parse_entry(node).ok_or(invalid)
}

/// Split `node` into its name and port: `[v6]:port`, `v4:port` or `name:port` with a single
/// colon; an unbracketed IPv6 address has no port.
fn split_node(node: &[u8]) -> (&[u8], Option<&[u8]>) {
    if node.first() == Some(&b'[') {
        if let Some(close) = node.iter().position(|&byte| byte == b']') {
            if let Some(port) = node[close + 1..].strip_prefix(b":") {
                return (&node[..=close], Some(port));
            }
        }
        return (node, None);
    }
    let mut colons = node.iter().enumerate().filter(|(_, &byte)| byte == b':');
    match (colons.next(), colons.next()) {
        (Some((colon, _)), None) => (&node[..colon], Some(&node[colon + 1..])),
        _ => (node, None),
    }
}

/// RFC 7239 `obfnode` / `obfport`: `_` and one or more of `A-Z a-z 0-9 . _ -`.
fn is_obfuscated(value: &[u8]) -> bool {
    match value.split_first() {
        Some((b'_', rest)) => {
            !rest.is_empty()
                && rest
                    .iter()
                    .all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
        }
        _ => false,
    }
}

fn is_port(value: &[u8]) -> bool {
    (1..=5).contains(&value.len())
        && value.iter().all(u8::is_ascii_digit)
        && value
            .iter()
            .fold(0_u32, |port, &digit| port * 10 + u32::from(digit - b'0'))
            <= u32::from(u16::MAX)
}

/// RFC 9110 `tchar`.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// RFC 9110 `qdtext` and the second byte of a `quoted-pair`: tab, space, visible ASCII,
/// `obs-text`.
fn is_quoted_text(byte: u8) -> bool {
    byte == b'\t' || byte == b' ' || byte.is_ascii_graphic() || byte >= 0x80
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .take_while(|&&byte| byte == b' ' || byte == b'\t')
        .count();
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::super::xff::tests::{ip, ranges, request};
    use super::*;

    const PEER: &str = "10.0.0.1:4000";

    fn source() -> Forwarded {
        Forwarded::rightmost_untrusted(ranges("10.0.0.0/8\n2001:db8:ffff::/48\n"))
    }

    fn resolve(source: &Forwarded, peer: &str, lines: &[&[u8]]) -> Resolution {
        source.resolve(&RequestView::new(&request(peer, "forwarded", lines)))
    }

    fn resolved(text: &str) -> Resolution {
        Resolution::resolved(ip(text), SourceKind::Forwarded)
    }

    fn one(header: &str) -> Resolution {
        resolve(&source(), PEER, &[header.as_bytes()])
    }

    fn elements(line: &[u8]) -> Vec<&[u8]> {
        let mut rest = Some(line);
        let mut found = Vec::new();
        while let Some(line) = rest {
            let (left, element) = match last_separator(line) {
                Some(comma) => (Some(&line[..comma]), &line[comma + 1..]),
                None => (None, line),
            };
            rest = left;
            found.push(trim_ows(element));
        }
        found
    }

    #[test]
    fn attack_01_02_untrusted_peer_header_is_not_read() {
        for header in ["for=203.0.113.7", "for=192.0.2.66, for=10.0.0.1", "garbage"] {
            assert_eq!(
                resolve(&source(), "198.51.100.1:1", &[header.as_bytes()]),
                Resolution::Absent(Reason::PeerNotTrusted)
            );
        }
        assert_eq!(
            resolve(&source(), "", &[b"for=203.0.113.7"]),
            Resolution::Absent(Reason::NoPeer)
        );
    }

    #[test]
    fn attack_04_trusted_peer_header_absent() {
        assert_eq!(
            resolve(&source(), PEER, &[]),
            Resolution::Absent(Reason::HeaderMissing)
        );
        assert_eq!(one(" , ,"), Resolution::Absent(Reason::HeaderMissing));
    }

    #[test]
    fn attack_08_only_the_configured_header_counts() {
        let mut request = request(PEER, "forwarded", &[b"for=203.0.113.7"]);
        request
            .headers_mut()
            .insert("x-forwarded-for", HeaderValue::from_static("198.51.100.9"));
        assert_eq!(
            source().resolve(&RequestView::new(&request)),
            resolved("203.0.113.7")
        );
    }

    #[test]
    fn attack_09_33_header_name_lookalike_and_case() {
        let request_ = request(PEER, "x_forwarded", &[b"for=203.0.113.7"]);
        assert_eq!(
            source().resolve(&RequestView::new(&request_)),
            Resolution::Absent(Reason::HeaderMissing)
        );
        let request_ = http::Request::builder()
            .header("FORWARDED", "For=203.0.113.7")
            .extension(crate::client_ip::PeerAddr(PEER.parse().unwrap()))
            .body(())
            .unwrap();
        assert_eq!(
            source().resolve(&RequestView::new(&request_)),
            resolved("203.0.113.7")
        );
    }

    #[test]
    fn attack_10_rightmost_untrusted_with_1_2_and_5_trusted_hops() {
        for header in [
            "for=6.6.6.6, for=203.0.113.7",
            "for=6.6.6.6, for=203.0.113.7, for=10.0.0.2",
            "for=6.6.6.6, for=203.0.113.7, for=10.0.0.2, for=10.0.0.3, for=\"[2001:db8:ffff::1]\", for=10.0.0.5",
            "for=garbage\"[, for=203.0.113.7;proto=https, for=10.0.0.2;by=10.0.0.1",
        ] {
            assert_eq!(one(header), resolved("203.0.113.7"), "{header}");
        }
    }

    #[test]
    fn attack_11_every_element_trusted_is_unresolved() {
        assert_eq!(
            one("for=10.0.0.3, for=10.0.0.2"),
            Resolution::Untrustworthy(Reason::AllEntriesTrusted)
        );
    }

    #[test]
    fn attack_12_13_hop_count() {
        assert!(Forwarded::hop_count(0, ranges("10.0.0.0/8")).is_err());
        let first = Forwarded::hop_count(1, ranges("10.0.0.0/8")).unwrap();
        let second = Forwarded::hop_count(2, ranges("10.0.0.0/8")).unwrap();
        let third = Forwarded::hop_count(3, ranges("10.0.0.0/8")).unwrap();
        let header: &[u8] = b"for=6.6.6.6, for=203.0.113.7;proto=https, for=198.51.100.2";
        assert_eq!(resolve(&first, PEER, &[header]), resolved("198.51.100.2"));
        assert_eq!(resolve(&second, PEER, &[header]), resolved("203.0.113.7"));
        assert_eq!(resolve(&third, PEER, &[header]), resolved("6.6.6.6"));
        assert_eq!(
            resolve(&third, PEER, &[b"for=203.0.113.7, for=198.51.100.2"]),
            Resolution::Untrustworthy(Reason::TooFewEntries {
                needed: 3,
                found: 2
            })
        );
        assert_eq!(
            resolve(
                &second,
                PEER,
                &[b"for=1.1.1.1, for=unknown, for=198.51.100.2"]
            ),
            Resolution::Untrustworthy(Reason::UnknownIdentifier { position: 2 })
        );
        assert_eq!(
            resolve(&first, "198.51.100.1:1", &[header]),
            Resolution::Absent(Reason::PeerNotTrusted)
        );
    }

    #[test]
    fn attack_14_private_client_reached_legitimately_is_returned() {
        let source = Forwarded::rightmost_untrusted(ranges("10.0.0.0/8"));
        assert_eq!(
            resolve(&source, PEER, &[b"for=192.168.1.20, for=10.0.0.2"]),
            resolved("192.168.1.20")
        );
    }

    #[test]
    fn attack_15_cidr_edges_in_the_walk() {
        assert_eq!(
            one("for=203.0.113.7, for=10.255.255.255, for=10.0.0.0"),
            resolved("203.0.113.7")
        );
        assert_eq!(one("for=203.0.113.7, for=11.0.0.0"), resolved("11.0.0.0"));
        assert_eq!(
            one("for=203.0.113.7, for=\"[2001:db9::]\""),
            resolved("2001:db9::")
        );
    }

    #[test]
    fn attack_16_17_several_lines_form_one_list() {
        assert_eq!(
            resolve(
                &source(),
                PEER,
                &[b"for=6.6.6.6, for=203.0.113.7", b"", b"for=10.0.0.2"]
            ),
            resolved("203.0.113.7")
        );
        // An unmatched quote on an earlier line does not leak into the later ones.
        assert_eq!(
            resolve(&source(), PEER, &[b"for=\"6.6.6.6", b"for=203.0.113.7"]),
            resolved("203.0.113.7")
        );
    }

    #[test]
    fn attack_19_separators_and_whitespace() {
        for header in [
            "for=203.0.113.7,for=10.0.0.2",
            "for=203.0.113.7 , for=10.0.0.2",
            "for=203.0.113.7\t,\tfor=10.0.0.2",
            ",for=203.0.113.7,,for=10.0.0.2,",
            "for=203.0.113.7 ; proto=https , for = 10.0.0.2 ;by=x",
            "proto=https;;for=203.0.113.7;, for=10.0.0.2",
        ] {
            assert_eq!(one(header), resolved("203.0.113.7"), "{header}");
        }
    }

    #[test]
    fn attack_20_21_garbage_right_stops_left_is_irrelevant() {
        for (header, position) in [
            ("for=203.0.113.7, garbage", 1),
            ("for=203.0.113.7, for=nope, for=10.0.0.2", 2),
            ("for=203.0.113.7, for=10.0.0.3;proto, for=10.0.0.2", 2),
            ("for=203.0.113.7, for=10.0.0.3 junk", 1),
            ("for=203.0.113.7, =10.0.0.3", 1),
            ("for=203.0.113.7, for=", 1),
            ("for=203.0.113.7, for=\"10.0.0.3", 1),
            ("for=203.0.113.7, for=\"10.0.0.3\"x", 1),
        ] {
            assert_eq!(
                one(header),
                Resolution::Untrustworthy(Reason::InvalidEntry { position }),
                "{header}"
            );
        }
        assert_eq!(
            one("for=<script>;;;\"\"=, for=203.0.113.7, for=10.0.0.2"),
            resolved("203.0.113.7")
        );
    }

    #[test]
    fn attack_22_23_non_ips_and_non_ascii_are_never_returned() {
        for header in [
            &b"for=localhost"[..],
            b"for=\"example.com\"",
            b"for=\"\"",
            b"for=\"203.0.113.7\xff\"",
            b"for=203.0.113.7\x80",
        ] {
            let resolution = resolve(&source(), PEER, &[header]);
            assert!(
                matches!(
                    resolution,
                    Resolution::Untrustworthy(Reason::InvalidEntry { position: 1 })
                ),
                "{header:?}: {resolution:?}"
            );
        }
        assert_eq!(
            resolve(
                &source(),
                PEER,
                &[b"for=\"caf\xc3\xa9\xff\", for=203.0.113.7, for=10.0.0.2"]
            ),
            resolved("203.0.113.7")
        );
    }

    #[test]
    fn attack_24_long_header_is_linear() {
        let mut header = String::from("for=203.0.113.7");
        for _ in 0..10_000 {
            header.push_str(", for=10.0.0.2;proto=https");
        }
        let started = std::time::Instant::now();
        assert_eq!(one(&header), resolved("203.0.113.7"));
        // Quoted backslash runs are skipped once, not rescanned.
        let mut quoted = String::from("for=203.0.113.7, host=\"");
        quoted.push_str(&"\\\\".repeat(20_000));
        quoted.push_str("\";for=10.0.0.2");
        assert_eq!(one(&quoted), resolved("203.0.113.7"));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn attack_25_to_32_address_forms() {
        for (header, expected) in [
            ("for=203.0.113.7", "203.0.113.7"),
            ("for=\"203.0.113.7\"", "203.0.113.7"),
            ("for=\"203.0.113.7:8080\"", "203.0.113.7"),
            ("for=\"[2001:db8::1]\"", "2001:db8::1"),
            ("for=\"[2001:db8::1]:4711\"", "2001:db8::1"),
            ("for=2001:db8::1", "2001:db8::1"),
            ("for=\"[fe80::1%eth0]:443\"", "fe80::1"),
            ("for=\"::ffff:203.0.113.7\"", "203.0.113.7"),
            ("for=\"[2001:DB8:0:0:0:0:0:1]\"", "2001:db8::1"),
            ("for=\"\\2\\0\\3.0.113.7\"", "203.0.113.7"),
        ] {
            assert_eq!(one(header), resolved(expected), "{header}");
        }
        for header in [
            "for=\"203.0.113.7:99999\"",
            "for=\"[203.0.113.7]\"",
            "for=\"[2001:db8::1]:\"",
            "for=0.0.0.0",
            "for=\"[::]\"",
            "for=255.255.255.255",
            "for=224.0.0.1",
            "for=0127.0.0.1",
        ] {
            assert_eq!(
                one(header),
                Resolution::Untrustworthy(Reason::InvalidEntry { position: 1 }),
                "{header}"
            );
        }
    }

    #[test]
    fn attack_33_names_case_insensitive_params_in_any_order() {
        for header in [
            "FOR=203.0.113.7",
            "For=203.0.113.7;Proto=https",
            "by=10.0.0.1;for=203.0.113.7;host=example.com;proto=https",
            "proto=https;host=\"example.com:443\";for=\"203.0.113.7\";by=\"[2001:db8::9]\"",
            "host=example.com;FoR=203.0.113.7;ext=\"a;b,c\"",
        ] {
            assert_eq!(one(header), resolved("203.0.113.7"), "{header}");
        }
    }

    #[test]
    fn attack_34_unknown_hidden_and_obfuscated_ports_stop_the_walk() {
        for (header, reason) in [
            (
                "for=203.0.113.7, for=unknown",
                Reason::UnknownIdentifier { position: 1 },
            ),
            (
                "for=203.0.113.7, for=UNKNOWN, for=10.0.0.2",
                Reason::UnknownIdentifier { position: 2 },
            ),
            (
                "for=203.0.113.7, for=\"unknown:4711\"",
                Reason::UnknownIdentifier { position: 1 },
            ),
            (
                "for=203.0.113.7, for=_hidden",
                Reason::ObfuscatedIdentifier { position: 1 },
            ),
            (
                "for=203.0.113.7, for=\"_SEVKISEK\", for=10.0.0.2",
                Reason::ObfuscatedIdentifier { position: 2 },
            ),
            (
                "for=203.0.113.7, for=\"192.0.2.43:_p1\"",
                Reason::ObfuscatedIdentifier { position: 1 },
            ),
            (
                "for=203.0.113.7, for=\"[2001:db8::1]:_p-1.x\"",
                Reason::ObfuscatedIdentifier { position: 1 },
            ),
            (
                "for=203.0.113.7, for=_",
                Reason::InvalidEntry { position: 1 },
            ),
            (
                "for=203.0.113.7, for=\"_a b\"",
                Reason::InvalidEntry { position: 1 },
            ),
            (
                "for=203.0.113.7, for=\"nothost:_p1\"",
                Reason::InvalidEntry { position: 1 },
            ),
        ] {
            assert_eq!(one(header), Resolution::Untrustworthy(reason), "{header}");
        }
        // Left of where the walk stops, they are irrelevant.
        assert_eq!(
            one("for=unknown, for=_hidden, for=203.0.113.7, for=10.0.0.2"),
            resolved("203.0.113.7")
        );
    }

    #[test]
    fn attack_35_quoted_commas_and_semicolons_do_not_split() {
        assert_eq!(
            one("for=203.0.113.7;host=\"a,for=6.6.6.6;b\", for=10.0.0.2"),
            resolved("203.0.113.7")
        );
        assert_eq!(
            one("for=6.6.6.6, for=203.0.113.7;ext=\"x\\\",for=1.1.1.1\", for=10.0.0.2"),
            resolved("203.0.113.7")
        );
        assert_eq!(
            elements(br#"a="1,2", b="x\",y", c"#),
            [&b"c"[..], br#"b="x\",y""#, br#"a="1,2""#]
        );
    }

    #[test]
    fn attack_36_unmatched_quote_or_bracket_on_the_left_is_harmless() {
        for header in [
            "for=\"6.6.6.6, for=203.0.113.7, for=10.0.0.2",
            "for=\"[2001:db8::6, for=203.0.113.7, for=10.0.0.2",
            "\", for=203.0.113.7, for=10.0.0.2",
            "for=6.6.6.6\\\", for=203.0.113.7, for=10.0.0.2",
            "for=[, for=203.0.113.7;by=\"[10.0.0.1]\", for=10.0.0.2",
        ] {
            assert_eq!(one(header), resolved("203.0.113.7"), "{header}");
        }
        // Reached by the walk, the unmatched quote is an invalid element.
        assert_eq!(
            one("for=203.0.113.7, for=\"10.0.0.3, for=10.0.0.2"),
            Resolution::Untrustworthy(Reason::InvalidEntry { position: 2 })
        );
    }

    #[test]
    fn attack_37_missing_or_repeated_for() {
        for (header, position) in [
            ("for=203.0.113.7, proto=https", 1),
            (
                "for=203.0.113.7, for=10.0.0.3;for=10.0.0.4, for=10.0.0.2",
                2,
            ),
            ("for=203.0.113.7, for=6.6.6.6;FOR=10.0.0.4", 1),
            ("for=203.0.113.7, by=10.0.0.1;host=x", 1),
        ] {
            assert_eq!(
                one(header),
                Resolution::Untrustworthy(Reason::MissingOrRepeatedFor { position }),
                "{header}"
            );
        }
    }

    #[test]
    fn attack_47_resolved_is_canonical_and_not_trusted() {
        for header in [
            "for=\"[::ffff:10.0.0.3]\", for=10.0.0.2",
            "for=\"[::ffff:203.0.113.7]:1\"",
        ] {
            if let Some(found) = one(header).ip() {
                assert!(!ranges("10.0.0.0/8").contains(found));
                assert_eq!(found, found.to_canonical());
            }
        }
        assert_eq!(
            one("for=\"[::ffff:10.0.0.3]\", for=10.0.0.2"),
            Resolution::Untrustworthy(Reason::AllEntriesTrusted)
        );
    }

    #[test]
    fn attack_49_every_unresolved_result_has_a_reason() {
        let hops = Forwarded::hop_count(4, ranges("10.0.0.0/8")).unwrap();
        for (source, peer, lines) in [
            (&source(), "", &[&b"for=1.2.3.4"[..]][..]),
            (&source(), "198.51.100.1:1", &[b"for=1.2.3.4"]),
            (&source(), PEER, &[]),
            (&source(), PEER, &[b"for=10.0.0.3"]),
            (&source(), PEER, &[b"for=unknown"]),
            (&source(), PEER, &[b"for=_x"]),
            (&source(), PEER, &[b"proto=http"]),
            (&source(), PEER, &[b"for=\"1.2.3.4"]),
            (&hops, PEER, &[b"for=1.2.3.4"]),
        ] {
            let resolution = resolve(source, peer, lines);
            assert!(resolution.ip().is_none(), "{lines:?}");
            assert!(!resolution.reason().unwrap().code().is_empty());
        }
    }

    #[test]
    fn quoted_value_too_long_is_invalid() {
        let long = format!("for=\"{}\"", "a".repeat(MAX_VALUE_LEN + 1));
        assert_eq!(
            one(&long),
            Resolution::Untrustworthy(Reason::InvalidEntry { position: 1 })
        );
        let zone = format!("for=\"[fe80::1%{}]:65535\"", "z".repeat(64));
        assert_eq!(one(&zone), resolved("fe80::1"));
    }

    #[test]
    fn debug_shows_the_mode_and_ranges() {
        let debug = format!(
            "{:?}",
            Forwarded::hop_count(3, TrustedRanges::loopback()).unwrap()
        );
        assert!(
            debug.contains("HopCount") && debug.contains("hops: 3"),
            "{debug}"
        );
        assert!(debug.contains("::1/128"), "{debug}");
    }
}
