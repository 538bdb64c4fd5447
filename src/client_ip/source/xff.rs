//! The `X-Forwarded-For` source, and the right-to-left walk it shares with `Forwarded`.
//!
//! Each proxy appends the address it received the request from to the right of the list, so
//! the right end is the part written by proxies you control and the left end is whatever the
//! client sent. Both walks start at the right:
//!
//! - **rightmost untrusted**: skip the entries of your own proxies (the trusted ranges); the
//!   first entry that is not one of them is the client;
//! - **hop count**: you know there are exactly N proxies; the Nth entry from the right is the
//!   client.
//!
//! Either way the header is read only when the socket peer is itself trusted, and an entry that
//! cannot be read stops the walk: skipping it would hand the choice to whoever wrote it.

use std::net::IpAddr;
use std::num::NonZeroU32;

use http::HeaderName;

use crate::client_ip::explanation::{ignore, ranges_text, Event};
use crate::client_ip::parse::{Entry, RevEntries};
use crate::client_ip::trusted::Addr;
use crate::client_ip::{
    Explanation, Reason, RequestView, Resolution, ResolveClientIp, SourceKind, TrustedRanges,
    Verdict,
};
use crate::ConfigError;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The same name in a static, looked up by reference: a `const` would be built and dropped
/// at every use.
static X_FORWARDED_FOR_NAME: HeaderName = X_FORWARDED_FOR;

/// The client IP from `X-Forwarded-For`, walked from the right.
///
/// Two ways to pick the client, both reading the header only when the socket peer is trusted:
/// - [`rightmost_untrusted`](Self::rightmost_untrusted): the rightmost entry that is not one of
///   your proxies — the right choice when you know your proxies' addresses;
/// - [`hop_count`](Self::hop_count): the Nth entry from the right — when you know how many
///   proxies there are but not their addresses (cloud load balancers).
///
/// Never key anything on the *leftmost* entry: the client writes it.
///
/// # Entries
///
/// Every line of the header is read, in order (`X-Forwarded-For: a, b` and a second line
/// `X-Forwarded-For: c` form the list `a, b, c`), byte by byte: a non-UTF-8 byte in the
/// client's part spoils only that entry. Commas separate entries; spaces and tabs around them
/// are ignored; empty elements and stray commas carry no hop and are skipped (they are not
/// counted in positions or hops). An entry is one of `192.0.2.1`, `192.0.2.1:80`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:443`, `fe80::1%eth0`, `[fe80::1%eth0]:443`:
/// - ports are 1 to 5 digits, at most 65535; an unbracketed IPv6 address has no port
///   (`2001:db8::1:80` is an address); brackets are for IPv6 only (`[192.0.2.1]` is invalid);
/// - zone ids (1 to 64 of `A-Z a-z 0-9 . _ ~ -`) are stripped before the trust check; a
///   malformed zone, or a zone on IPv4, is invalid;
/// - IPv4-mapped IPv6 (`::ffff:192.0.2.1`) is the IPv4 address, for the trust check and the
///   result; every result is canonical;
/// - IPv4 is four decimal octets: `0127.0.0.1`, `127.1`, `2130706433` are invalid;
/// - bytes outside visible ASCII are invalid, and so are addresses no client can have:
///   `0.0.0.0`, `::`, `255.255.255.255`, multicast.
///
/// ```
/// use std::net::SocketAddr;
/// use tower_bouncer::client_ip::{
///     PeerAddr, Reason, RequestView, Resolution, ResolveClientIp, TrustedRanges, XForwardedFor,
/// };
///
/// // nginx on 10.0.0.2 in front of us; it appends what it saw to the client's own header.
/// let source = XForwardedFor::rightmost_untrusted(TrustedRanges::private());
///
/// let mut request = http::Request::builder()
///     .header("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.9")
///     .body(())?;
/// let peer: SocketAddr = "10.0.0.2:41000".parse()?;
/// request.extensions_mut().insert(PeerAddr(peer));
///
/// let resolution = source.resolve(&RequestView::new(&request));
/// assert_eq!(resolution.ip(), Some("203.0.113.7".parse()?)); // not the client's 6.6.6.6
///
/// // The same header straight from the internet is not read at all.
/// let peer: SocketAddr = "198.51.100.20:41000".parse()?;
/// request.extensions_mut().insert(PeerAddr(peer));
/// let resolution = source.resolve(&RequestView::new(&request));
/// assert_eq!(resolution, Resolution::Absent(Reason::PeerNotTrusted));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct XForwardedFor {
    walk: Walk,
}

impl XForwardedFor {
    /// The rightmost entry that is not in `ranges`.
    ///
    /// - the peer is not in `ranges`: [`Absent(PeerNotTrusted)`](Reason::PeerNotTrusted)
    ///   (no peer: [`Absent(NoPeer)`](Reason::NoPeer));
    /// - no entry at all (header missing, or only empty lines and commas):
    ///   [`Absent(HeaderMissing)`](Reason::HeaderMissing);
    /// - walking from the right, entries in `ranges` are skipped; the first one that is not is
    ///   the client;
    /// - an entry that is not an address, reached before the client:
    ///   [`Untrustworthy(InvalidEntry)`](Reason::InvalidEntry), its position counted from the
    ///   right, 1-based;
    /// - every entry in `ranges`:
    ///   [`Untrustworthy(AllEntriesTrusted)`](Reason::AllEntriesTrusted) — never the leftmost.
    pub fn rightmost_untrusted(ranges: TrustedRanges) -> Self {
        Self {
            walk: Walk::RightmostUntrusted { trusted: ranges },
        }
    }

    /// The `hops`th entry from the right, read when the peer is in `trusted_peers`.
    ///
    /// Entry 1 is the rightmost, the one the nearest proxy (your socket peer) appended: the
    /// address *it* received the connection from. So `hops` is the number of proxies in front
    /// of this server:
    ///
    /// | proxies                         | header the server sees    | `hops` | client   |
    /// |---------------------------------|---------------------------|--------|----------|
    /// | client → nginx → app            | `X-Forwarded-For: C`      | 1      | `C`      |
    /// | client → CDN → nginx → app      | `X-Forwarded-For: C, CDN` | 2      | `C`      |
    /// | spoofing client → nginx → app   | `X-Forwarded-For: F, C`   | 1      | `C`      |
    ///
    /// Fewer entries than `hops`: [`Untrustworthy(TooFewEntries)`](Reason::TooFewEntries);
    /// the entry at `hops` not an address:
    /// [`Untrustworthy(InvalidEntry)`](Reason::InvalidEntry). The entries to its right are not
    /// read, and nothing to its left matters. No entry at all:
    /// [`Absent(HeaderMissing)`](Reason::HeaderMissing).
    ///
    /// ```
    /// use tower_bouncer::client_ip::{TrustedRanges, XForwardedFor};
    ///
    /// // Google Cloud's external load balancer appends two entries: the client and itself.
    /// let source = XForwardedFor::hop_count(2, TrustedRanges::private())?;
    /// assert!(XForwardedFor::hop_count(0, TrustedRanges::private()).is_err());
    /// # Ok::<(), tower_bouncer::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `hops` is 0: the header would never be read.
    pub fn hop_count(hops: u32, trusted_peers: TrustedRanges) -> Result<Self, ConfigError> {
        Ok(Self {
            walk: Walk::hop_count(hops, trusted_peers, "x-forwarded-for")?,
        })
    }
}

impl XForwardedFor {
    /// The walk, reporting each step to `observe`.
    fn walk<'a>(
        &self,
        request: &RequestView<'a>,
        observe: &mut (impl FnMut(Event<'a>) + ?Sized),
    ) -> Resolution {
        let entries = RevEntries::new(request.headers().get_all(&X_FORWARDED_FOR_NAME));
        self.walk.resolve(
            request,
            entries,
            |entry: Entry<'a>| entry.raw,
            |entry, position| entry.address().ok_or(Reason::InvalidEntry { position }),
            SourceKind::XForwardedFor,
            observe,
        )
    }
}

impl ResolveClientIp for XForwardedFor {
    fn resolve(&self, request: &RequestView<'_>) -> Resolution {
        self.walk(request, &mut ignore)
    }

    fn explain(&self, request: &RequestView<'_>) -> Explanation {
        self.walk
            .explain(request, "xff", |observe| self.walk(request, observe))
    }

    fn headers_read(&self) -> &[HeaderName] {
        static READ: [HeaderName; 1] = [X_FORWARDED_FOR];
        &READ
    }
}

/// How a list of hops is walked from the right; shared by `X-Forwarded-For` and `Forwarded`.
#[derive(Debug, Clone)]
pub(super) enum Walk {
    /// Skip the entries in the ranges; the first other entry is the client.
    RightmostUntrusted {
        /// The proxies: the peer must be one, their entries are skipped.
        trusted: TrustedRanges,
    },
    /// The Nth entry from the right is the client.
    HopCount {
        /// N, 1 being the rightmost entry.
        hops: NonZeroU32,
        /// The peers whose header is read.
        trusted_peers: TrustedRanges,
    },
}

impl Walk {
    pub(super) fn hop_count(
        hops: u32,
        trusted_peers: TrustedRanges,
        header: &str,
    ) -> Result<Self, ConfigError> {
        let hops = NonZeroU32::new(hops).ok_or_else(|| {
            ConfigError::new(format!(
                "the {header} hop count must be at least 1 (1 is the entry the nearest proxy appended)"
            ))
        })?;
        Ok(Self::HopCount {
            hops,
            trusted_peers,
        })
    }

    /// Walk `entries` (right to left, empty elements already skipped); `read` turns the entry
    /// at a 1-based position into an address or the reason it is unusable, `raw` gives its
    /// bytes as received. Bounded by the
    /// number of entries; `read` is called only on the entries the walk needs. Each step is
    /// reported to `observe` (a no-op when resolving, a recorder when explaining).
    pub(super) fn resolve<'a, E: Copy>(
        &self,
        request: &RequestView<'_>,
        entries: impl Iterator<Item = E>,
        raw: impl Fn(E) -> &'a [u8],
        read: impl Fn(E, u32) -> Result<Addr, Reason>,
        kind: SourceKind,
        observe: &mut (impl FnMut(Event<'a>) + ?Sized),
    ) -> Resolution {
        let peers = self.trusted_peers();
        let peer = request.peer_ip();
        let trusted = peer.is_some_and(|peer| peers.contains(peer));
        observe(Event::Peer { ip: peer, trusted });
        match peer {
            None => return Resolution::Absent(Reason::NoPeer),
            Some(_) if !trusted => return Resolution::Absent(Reason::PeerNotTrusted),
            Some(_) => {}
        }
        let mut position: u32 = 0;
        let mut step = |position: u32, entry: E, verdict: Verdict| {
            observe(Event::Entry {
                position,
                raw: raw(entry),
                verdict,
            });
        };
        match self {
            Self::RightmostUntrusted { trusted } => {
                for entry in entries {
                    position = position.saturating_add(1);
                    match read(entry, position) {
                        Err(reason) => {
                            step(position, entry, Verdict::Stopped(reason));
                            return Resolution::Untrustworthy(reason);
                        }
                        Ok(addr) if trusted.contains_addr(addr) => {
                            step(position, entry, Verdict::TrustedProxy);
                        }
                        Ok(addr) => {
                            step(position, entry, Verdict::Client);
                            return Resolution::resolved(IpAddr::from(addr), kind);
                        }
                    }
                }
                if position == 0 {
                    Resolution::Absent(Reason::HeaderMissing)
                } else {
                    Resolution::Untrustworthy(Reason::AllEntriesTrusted)
                }
            }
            Self::HopCount { hops, .. } => {
                for entry in entries {
                    position = position.saturating_add(1);
                    if position == hops.get() {
                        return match read(entry, position) {
                            Ok(addr) => {
                                step(position, entry, Verdict::Client);
                                Resolution::resolved(IpAddr::from(addr), kind)
                            }
                            Err(reason) => {
                                step(position, entry, Verdict::Stopped(reason));
                                Resolution::Untrustworthy(reason)
                            }
                        };
                    }
                    step(position, entry, Verdict::Counted);
                }
                if position == 0 {
                    Resolution::Absent(Reason::HeaderMissing)
                } else {
                    Resolution::Untrustworthy(Reason::TooFewEntries {
                        needed: hops.get(),
                        found: position,
                    })
                }
            }
        }
    }

    /// The peers whose header is read.
    fn trusted_peers(&self) -> &TrustedRanges {
        match self {
            Self::RightmostUntrusted { trusted } => trusted,
            Self::HopCount { trusted_peers, .. } => trusted_peers,
        }
    }

    /// The explanation of a walk over the header called `short` (`xff`, `forwarded`): `run`
    /// runs the very walk `resolve` runs, with a recording observer.
    pub(super) fn explain<'a>(
        &self,
        _request: &RequestView<'a>,
        short: &str,
        run: impl FnOnce(&mut dyn FnMut(Event<'a>)) -> Resolution,
    ) -> Explanation {
        let name = match self {
            Self::RightmostUntrusted { .. } => short.to_owned(),
            Self::HopCount { hops, .. } => format!("{short}-hops:{hops}"),
        };
        let mut events = Vec::new();
        let resolution = run(&mut |event| events.push(event));
        let mut explanation =
            Explanation::new(name, resolution).with_trusted(ranges_text(self.trusted_peers()));
        for event in events {
            explanation.record(event);
        }
        explanation
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::net::SocketAddr;

    use http::HeaderValue;

    use super::*;
    use crate::client_ip::PeerAddr;

    /// A request from `peer` (none when empty) with the given header lines.
    pub(in crate::client_ip::source) fn request(
        peer: &str,
        name: &str,
        lines: &[&[u8]],
    ) -> http::Request<()> {
        let mut request = http::Request::new(());
        for line in lines {
            request.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(line).unwrap(),
            );
        }
        if !peer.is_empty() {
            let peer: SocketAddr = peer.parse().unwrap();
            request.extensions_mut().insert(PeerAddr(peer));
        }
        request
    }

    pub(in crate::client_ip::source) fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    pub(in crate::client_ip::source) fn ranges(text: &str) -> TrustedRanges {
        TrustedRanges::parse(text).unwrap()
    }

    fn resolve(source: &XForwardedFor, peer: &str, lines: &[&[u8]]) -> Resolution {
        source.resolve(&RequestView::new(&request(peer, "x-forwarded-for", lines)))
    }

    fn resolved(text: &str) -> Resolution {
        Resolution::resolved(ip(text), SourceKind::XForwardedFor)
    }

    fn rightmost() -> XForwardedFor {
        XForwardedFor::rightmost_untrusted(ranges("10.0.0.0/8\n2001:db8:ffff::/48\n"))
    }

    const PEER: &str = "10.0.0.1:4000";

    #[test]
    fn attack_01_untrusted_peer_header_is_not_read() {
        let source = rightmost();
        for lines in [
            &[&b"203.0.113.7"[..]][..],
            &[b"garbage"],
            &[b"10.0.0.5"],
            &[],
        ] {
            assert_eq!(
                resolve(&source, "198.51.100.1:4000", lines),
                Resolution::Absent(Reason::PeerNotTrusted)
            );
        }
        let hops = XForwardedFor::hop_count(1, ranges("10.0.0.0/8")).unwrap();
        assert_eq!(
            resolve(&hops, "198.51.100.1:4000", &[b"203.0.113.7"]),
            Resolution::Absent(Reason::PeerNotTrusted)
        );
    }

    #[test]
    fn attack_02_forged_trusted_tail_from_untrusted_peer_is_not_believed() {
        assert_eq!(
            resolve(
                &rightmost(),
                "198.51.100.1:4000",
                &[b"192.0.2.66, 10.0.0.1"]
            ),
            Resolution::Absent(Reason::PeerNotTrusted)
        );
    }

    #[test]
    fn attack_04_trusted_peer_header_absent() {
        assert_eq!(
            resolve(&rightmost(), PEER, &[]),
            Resolution::Absent(Reason::HeaderMissing)
        );
        let hops = XForwardedFor::hop_count(2, ranges("10.0.0.0/8")).unwrap();
        assert_eq!(
            resolve(&hops, PEER, &[]),
            Resolution::Absent(Reason::HeaderMissing)
        );
        // Only empty elements: no hop at all, the same as no header.
        assert_eq!(
            resolve(&rightmost(), PEER, &[b"", b" , ,"]),
            Resolution::Absent(Reason::HeaderMissing)
        );
    }

    #[test]
    fn attack_05_no_peer_or_unspecified_peer() {
        assert_eq!(
            resolve(&rightmost(), "", &[b"203.0.113.7"]),
            Resolution::Absent(Reason::NoPeer)
        );
        let any = XForwardedFor::rightmost_untrusted(TrustedRanges::any());
        for peer in ["0.0.0.0:1", "[::]:1", "[::ffff:0.0.0.0]:1"] {
            assert_eq!(
                resolve(&any, peer, &[b"203.0.113.7"]),
                Resolution::Absent(Reason::PeerNotTrusted),
                "{peer}"
            );
        }
    }

    #[test]
    fn attack_06_mapped_peer_matches_v4_range() {
        assert_eq!(
            resolve(&rightmost(), "[::ffff:10.0.0.5]:4000", &[b"203.0.113.7"]),
            resolved("203.0.113.7")
        );
        // A zone (scope id) on the peer changes nothing either way.
        let link_local = XForwardedFor::rightmost_untrusted(ranges("fe80::/10"));
        for peer in ["[fe80::1%2]:4000", "[fe80::1]:4000"] {
            assert_eq!(
                resolve(&link_local, peer, &[b"203.0.113.7"]),
                resolved("203.0.113.7"),
                "{peer}"
            );
        }
        assert_eq!(
            resolve(&rightmost(), "[2001:db8::1%2]:4000", &[b"203.0.113.7"]),
            Resolution::Absent(Reason::PeerNotTrusted)
        );
    }

    #[test]
    fn attack_08_only_the_configured_header_counts() {
        let mut request = request(PEER, "x-forwarded-for", &[b"203.0.113.7"]);
        request
            .headers_mut()
            .insert("forwarded", HeaderValue::from_static("for=198.51.100.9"));
        assert_eq!(
            rightmost().resolve(&RequestView::new(&request)),
            resolved("203.0.113.7")
        );
    }

    #[test]
    fn attack_09_underscore_lookalike_is_not_the_header() {
        let request = request(PEER, "x_forwarded_for", &[b"203.0.113.7"]);
        assert_eq!(
            rightmost().resolve(&RequestView::new(&request)),
            Resolution::Absent(Reason::HeaderMissing)
        );
        // Header names are case-insensitive.
        let request = request_upper();
        assert_eq!(
            rightmost().resolve(&RequestView::new(&request)),
            resolved("203.0.113.7")
        );
    }

    fn request_upper() -> http::Request<()> {
        http::Request::builder()
            .header("X-FORWARDED-FOR", "203.0.113.7")
            .extension(PeerAddr(PEER.parse().unwrap()))
            .body(())
            .unwrap()
    }

    #[test]
    fn attack_10_rightmost_untrusted_with_1_2_and_5_trusted_hops() {
        let source = rightmost();
        for (header, peer) in [
            ("6.6.6.6, 203.0.113.7", "10.0.0.1:1"),
            ("6.6.6.6, 203.0.113.7, 10.0.0.2", "10.0.0.1:1"),
            (
                "6.6.6.6, 203.0.113.7, 10.0.0.2, 10.1.0.3, 2001:db8:ffff::4, 10.2.0.5",
                "10.0.0.1:1",
            ),
            ("6.6.6.6, 203.0.113.7, 10.0.0.2", "[2001:db8:ffff::9]:1"),
        ] {
            assert_eq!(
                resolve(&source, peer, &[header.as_bytes()]),
                resolved("203.0.113.7"),
                "{header}"
            );
        }
    }

    #[test]
    fn attack_10_client_prepended_spoof_changes_nothing() {
        let source = rightmost();
        for prefix in [
            "",
            "6.6.6.6, ",
            "1.1.1.1, 6.6.6.6, ",
            "10.9.9.9, ",
            "garbage, ",
        ] {
            let header = format!("{prefix}203.0.113.7, 10.0.0.2, 10.0.0.3");
            assert_eq!(
                resolve(&source, PEER, &[header.as_bytes()]),
                resolved("203.0.113.7"),
                "{header}"
            );
        }
    }

    #[test]
    fn attack_11_every_entry_trusted_is_unresolved_not_leftmost() {
        assert_eq!(
            resolve(&rightmost(), PEER, &[b"10.0.0.9, 10.0.0.8, 10.0.0.7"]),
            Resolution::Untrustworthy(Reason::AllEntriesTrusted)
        );
    }

    #[test]
    fn attack_12_hop_count_larger_than_list_and_zero() {
        let source = XForwardedFor::hop_count(3, ranges("10.0.0.0/8")).unwrap();
        assert_eq!(
            resolve(&source, PEER, &[b"203.0.113.7, 10.0.0.2"]),
            Resolution::Untrustworthy(Reason::TooFewEntries {
                needed: 3,
                found: 2
            })
        );
        let error = XForwardedFor::hop_count(0, ranges("10.0.0.0/8")).unwrap_err();
        assert!(error.to_string().contains("at least 1"), "{error}");
    }

    #[test]
    fn attack_13_hop_count_n1_and_n2_exactly() {
        let one = XForwardedFor::hop_count(1, ranges("10.0.0.0/8")).unwrap();
        let two = XForwardedFor::hop_count(2, ranges("10.0.0.0/8")).unwrap();
        let header: &[u8] = b"6.6.6.6, 203.0.113.7, 198.51.100.2";
        assert_eq!(resolve(&one, PEER, &[header]), resolved("198.51.100.2"));
        assert_eq!(resolve(&two, PEER, &[header]), resolved("203.0.113.7"));
        assert_eq!(
            resolve(&one, PEER, &[b"203.0.113.7"]),
            resolved("203.0.113.7")
        );
        // The hop count does not look at the trusted ranges for the entries.
        assert_eq!(resolve(&one, PEER, &[b"10.0.0.7"]), resolved("10.0.0.7"));
        // Entries right of the Nth are not read; entries left of it do not matter.
        assert_eq!(
            resolve(&two, PEER, &[b"junk, 203.0.113.7, also junk"]),
            resolved("203.0.113.7")
        );
        assert_eq!(
            resolve(&two, PEER, &[b"203.0.113.7, junk, 198.51.100.2"]),
            Resolution::Untrustworthy(Reason::InvalidEntry { position: 2 })
        );
    }

    #[test]
    fn attack_14_private_client_reached_legitimately_is_returned() {
        let source = XForwardedFor::rightmost_untrusted(ranges("10.0.0.0/8"));
        assert_eq!(
            resolve(&source, PEER, &[b"192.168.1.20, 10.0.0.2"]),
            resolved("192.168.1.20")
        );
    }

    #[test]
    fn attack_15_cidr_edges_in_the_walk() {
        let source = XForwardedFor::rightmost_untrusted(ranges("10.0.0.0/8\n2001:db8::/32"));
        assert_eq!(
            resolve(&source, PEER, &[b"203.0.113.7, 10.255.255.255, 10.0.0.0"]),
            resolved("203.0.113.7")
        );
        assert_eq!(
            resolve(&source, PEER, &[b"203.0.113.7, 11.0.0.0, 10.0.0.0"]),
            resolved("11.0.0.0")
        );
        assert_eq!(
            resolve(&source, PEER, &[b"203.0.113.7, 9.255.255.255"]),
            resolved("9.255.255.255")
        );
        assert_eq!(
            resolve(
                &source,
                PEER,
                &[b"203.0.113.7, 2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"]
            ),
            resolved("203.0.113.7")
        );
        assert_eq!(
            resolve(&source, PEER, &[b"203.0.113.7, 2001:db9::"]),
            resolved("2001:db9::")
        );
    }

    #[test]
    fn attack_16_two_lines_form_one_list_in_order() {
        let source = rightmost();
        assert_eq!(
            resolve(&source, PEER, &[b"6.6.6.6, 203.0.113.7", b"10.0.0.2"]),
            resolved("203.0.113.7")
        );
        let two = XForwardedFor::hop_count(2, ranges("10.0.0.0/8")).unwrap();
        assert_eq!(
            resolve(&two, PEER, &[b"6.6.6.6", b"203.0.113.7, 10.0.0.2"]),
            resolved("203.0.113.7")
        );
        assert_eq!(
            resolve(&two, PEER, &[b"6.6.6.6, 203.0.113.7", b"10.0.0.2"]),
            resolved("203.0.113.7")
        );
    }

    #[test]
    fn attack_17_empty_line_among_real_ones() {
        assert_eq!(
            resolve(
                &rightmost(),
                PEER,
                &[b"203.0.113.7", b"", b"10.0.0.2", b" "]
            ),
            resolved("203.0.113.7")
        );
    }

    #[test]
    fn attack_19_separators_and_whitespace() {
        for header in [
            &b"203.0.113.7,10.0.0.2"[..],
            b"203.0.113.7, 10.0.0.2",
            b"203.0.113.7 ,10.0.0.2",
            b"203.0.113.7\t,\t10.0.0.2",
            b"203.0.113.7,,10.0.0.2,",
            b", 203.0.113.7 , , 10.0.0.2 ,",
        ] {
            assert_eq!(
                resolve(&rightmost(), PEER, &[header]),
                resolved("203.0.113.7"),
                "{header:?}"
            );
        }
        // Positions count hops, not empty elements.
        assert_eq!(
            resolve(&rightmost(), PEER, &[b"203.0.113.7, nope,, 10.0.0.2,,"]),
            Resolution::Untrustworthy(Reason::InvalidEntry { position: 2 })
        );
    }

    #[test]
    fn attack_20_garbage_right_of_the_client_stops_the_walk() {
        for (header, position) in [
            ("203.0.113.7, garbage", 1),
            ("203.0.113.7, garbage, 10.0.0.2", 2),
            ("203.0.113.7, 10.0.0.3, 10.0.0.2:99999", 1),
            ("203.0.113.7, unknown, 10.0.0.2", 2),
        ] {
            assert_eq!(
                resolve(&rightmost(), PEER, &[header.as_bytes()]),
                Resolution::Untrustworthy(Reason::InvalidEntry { position }),
                "{header}"
            );
        }
    }

    #[test]
    fn attack_21_garbage_left_of_the_stop_is_irrelevant() {
        assert_eq!(
            resolve(
                &rightmost(),
                PEER,
                &[b"garbage, <script>, 203.0.113.7, 10.0.0.2"]
            ),
            resolved("203.0.113.7")
        );
    }

    #[test]
    fn attack_22_non_ip_strings_are_never_returned() {
        for header in [
            "localhost",
            "example.com",
            "_hidden",
            "unknown",
            "-",
            "1.2.3",
        ] {
            let resolution = resolve(&rightmost(), PEER, &[header.as_bytes()]);
            assert_eq!(
                resolution,
                Resolution::Untrustworthy(Reason::InvalidEntry { position: 1 }),
                "{header}"
            );
        }
    }

    #[test]
    fn attack_23_non_utf8_in_the_client_prefix_does_not_spoil_the_result() {
        let header: &[u8] = b"\xff\xfe\x80 caf\xc3\xa9, 203.0.113.7, 10.0.0.2";
        assert_eq!(
            resolve(&rightmost(), PEER, &[header]),
            resolved("203.0.113.7")
        );
        // Reached by the walk, such an entry is invalid, not a panic.
        assert_eq!(
            resolve(
                &rightmost(),
                PEER,
                &[b"203.0.113.7, \xff10.0.0.3, 10.0.0.2"]
            ),
            Resolution::Untrustworthy(Reason::InvalidEntry { position: 2 })
        );
        assert_eq!(
            resolve(&rightmost(), PEER, &[b"203.0.113.7\t\x80"]),
            Resolution::Untrustworthy(Reason::InvalidEntry { position: 1 })
        );
    }

    #[test]
    fn attack_24_64k_header_of_10000_entries_is_linear() {
        // 10,000 trusted entries right of the client: the walk reads each once.
        let mut header = String::from("203.0.113.7");
        while header.len() < 64 * 1024 - 16 {
            header.push_str(", 10.0.0.2");
        }
        let count = header.matches(',').count() + 1;
        assert!(count >= 6_000, "{count}");
        let mut short = String::from("1.2.3.4");
        for _ in 0..10_000 {
            short.push_str(",10.0.0.2");
        }
        for header in [header, short] {
            let started = std::time::Instant::now();
            for _ in 0..10 {
                assert_eq!(
                    resolve(&rightmost(), PEER, &[header.as_bytes()]),
                    Resolution::resolved(
                        if header.starts_with("1.2.3.4") {
                            ip("1.2.3.4")
                        } else {
                            ip("203.0.113.7")
                        },
                        SourceKind::XForwardedFor
                    )
                );
            }
            // Linear work is well under a millisecond per walk; quadratic work (10^8 steps)
            // would take far longer even in a debug build.
            assert!(started.elapsed() < std::time::Duration::from_secs(2));
        }
        // The hop count over a list too short counts it once, linearly.
        let source = XForwardedFor::hop_count(20_000, ranges("10.0.0.0/8")).unwrap();
        let mut header = String::from("1.2.3.4");
        for _ in 0..9_999 {
            header.push_str(",10.0.0.2");
        }
        assert_eq!(
            resolve(&source, PEER, &[header.as_bytes()]),
            Resolution::Untrustworthy(Reason::TooFewEntries {
                needed: 20_000,
                found: 10_000
            })
        );
    }

    #[test]
    fn attack_25_to_32_address_forms_in_the_walk() {
        for (header, expected) in [
            ("203.0.113.7:5000, 10.0.0.2:80", "203.0.113.7"),
            ("[2001:db8::7]:443, [2001:db8:ffff::1]:80", "2001:db8::7"),
            ("2001:db8::1:80", "2001:db8::1:80"),
            ("fe80::1%eth0, 10.0.0.2", "fe80::1"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
            ("2001:DB8:0:0:0:0:0:7", "2001:db8::7"),
        ] {
            assert_eq!(
                resolve(&rightmost(), PEER, &[header.as_bytes()]),
                resolved(expected),
                "{header}"
            );
        }
        // Mapped and zoned forms of a trusted proxy are still the trusted proxy.
        assert_eq!(
            resolve(
                &rightmost(),
                PEER,
                &[b"203.0.113.7, ::ffff:10.0.0.2, [::ffff:10.0.0.3]:80"]
            ),
            resolved("203.0.113.7")
        );
        assert_eq!(
            resolve(&rightmost(), PEER, &[b"203.0.113.7, 2001:db8:ffff::2%eth0"]),
            resolved("203.0.113.7")
        );
        for header in [
            "203.0.113.7:nope",
            "203.0.113.7:99999",
            "[203.0.113.7]",
            "fe80::1%",
            "0.0.0.0",
            "::",
            "255.255.255.255",
            "224.0.0.1",
            "ff02::1",
            "0127.0.0.1",
            "127.1",
        ] {
            assert_eq!(
                resolve(&rightmost(), PEER, &[header.as_bytes()]),
                Resolution::Untrustworthy(Reason::InvalidEntry { position: 1 }),
                "{header}"
            );
        }
    }

    #[test]
    fn attack_47_resolved_is_canonical_and_never_trusted() {
        let source = rightmost();
        for header in ["::ffff:10.0.0.3, 10.0.0.2", "203.0.113.7, ::ffff:10.0.0.3"] {
            if let Some(found) = resolve(&source, PEER, &[header.as_bytes()]).ip() {
                assert!(!ranges("10.0.0.0/8").contains(found), "{header}");
                assert_eq!(found, found.to_canonical());
            }
        }
    }

    #[test]
    fn attack_49_every_unresolved_result_has_a_reason() {
        let source = rightmost();
        for (peer, lines) in [
            ("", &[&b"1.2.3.4"[..]][..]),
            ("198.51.100.1:1", &[b"1.2.3.4"]),
            (PEER, &[]),
            (PEER, &[b"10.0.0.3"]),
            (PEER, &[b"nope"]),
        ] {
            let resolution = resolve(&source, peer, lines);
            assert!(resolution.ip().is_none());
            assert!(!resolution.reason().unwrap().code().is_empty());
        }
    }

    #[test]
    fn debug_shows_the_mode_and_ranges() {
        let debug = format!(
            "{:?}",
            XForwardedFor::hop_count(2, TrustedRanges::loopback()).unwrap()
        );
        assert!(debug.contains("HopCount"), "{debug}");
        assert!(debug.contains("hops: 2"), "{debug}");
        assert!(debug.contains("127.0.0.0/8"), "{debug}");
        let debug = format!("{:?}", rightmost());
        assert!(debug.contains("RightmostUntrusted"), "{debug}");
        assert!(debug.contains("10.0.0.0/8"), "{debug}");
    }
}
