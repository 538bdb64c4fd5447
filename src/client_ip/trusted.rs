//! Sets of trusted networks, compiled once into sorted intervals for a fast lookup.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use ipnet::{IpNet, Ipv4Net, Ipv4Subnets, Ipv6Net, Ipv6Subnets};

use crate::ConfigError;

/// The date Cloudflare's ranges shipped in [`TrustedRanges::cloudflare`] were taken
/// (`YYYY-MM-DD`). Cloudflare changes its list rarely; load a fresh copy with
/// [`TrustedRanges::from_file`] if yours is newer.
pub const CLOUDFLARE_RANGES_DATE: &str = "2026-11-22";

/// Cloudflare's published ranges, as shipped (`data/cloudflare-ranges.txt`).
const CLOUDFLARE_RANGES: &str = include_str!("../../data/cloudflare-ranges.txt");

/// The first and last IPv4-mapped IPv6 addresses (`::ffff:0.0.0.0` – `::ffff:255.255.255.255`).
const MAPPED_FIRST: u128 = 0xffff_0000_0000;
const MAPPED_LAST: u128 = 0xffff_ffff_ffff;

/// A set of trusted networks (the addresses of your own proxies), checked once when built.
///
/// Sources that read forwarding headers believe them only when the socket peer is in such a
/// set, and walk past the entries the set contains. Build one from presets, from a text with
/// one CIDR per line, or from [`IpNet`]s, and combine them with [`with`](Self::with):
///
/// ```
/// use tower_bouncer::client_ip::TrustedRanges;
///
/// let ranges = TrustedRanges::loopback()
///     .with(TrustedRanges::private())
///     .with("203.0.113.0/24 # the load balancers\n2001:db8:1::/48\n".parse()?);
///
/// assert!(ranges.contains("10.1.2.3".parse()?));
/// assert!(ranges.contains("::ffff:203.0.113.9".parse()?)); // IPv4-mapped: the IPv4 range
/// assert!(ranges.contains("2001:db8:1::17".parse()?));
/// assert!(!ranges.contains("198.51.100.1".parse()?));
/// assert!(!ranges.contains("0.0.0.0".parse()?)); // never, whatever the ranges
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The networks are merged into sorted, non-overlapping intervals behind an [`Arc`]: cloning
/// is cheap, and [`contains`](Self::contains) is a binary search that does not allocate.
///
/// Two rules hold for every set:
/// - an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is looked up as the IPv4 address, so a
///   dual-stack socket's peer matches IPv4 ranges, and mapped forms cannot slip past them;
///   an IPv6 range that covers mapped addresses (`::ffff:0:0/96`, `::/0`) covers the
///   matching IPv4 addresses too;
/// - the unspecified addresses `0.0.0.0` and `::` are **never** contained: no peer or proxy
///   can legitimately have them, even in [`any`](Self::any).
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedRanges {
    v4: Arc<[(u32, u32)]>,
    /// The first address of each `v4` interval, alone: a short list of them is scanned with
    /// vector compares (see `interval_contains`).
    v4_starts: Arc<[u32]>,
    v6: Arc<[(u128, u128)]>,
}

impl TrustedRanges {
    /// The empty set: trusts nothing.
    pub fn new() -> Self {
        Self::from_intervals(Vec::new(), Vec::new())
    }

    /// Loopback: `127.0.0.0/8` and `::1`. The right set when the proxy runs on the same host.
    pub fn loopback() -> Self {
        Self::from_nets([v4_net([127, 0, 0, 0], 8), v6_net(Ipv6Addr::LOCALHOST, 128)])
    }

    /// Private networks: RFC 1918 (`10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`), IPv6
    /// unique-local `fc00::/7`, and link-local `169.254.0.0/16` and `fe80::/10`.
    ///
    /// Typical for proxies inside a VPC, a Kubernetes cluster or a Docker network. CGNAT
    /// (`100.64.0.0/10`) is a separate preset, [`cgnat`](Self::cgnat).
    pub fn private() -> Self {
        Self::from_nets([
            v4_net([10, 0, 0, 0], 8),
            v4_net([172, 16, 0, 0], 12),
            v4_net([192, 168, 0, 0], 16),
            v4_net([169, 254, 0, 0], 16),
            v6_net(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
            v6_net(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
        ])
    }

    /// Carrier-grade NAT shared address space, `100.64.0.0/10` (RFC 6598). Some platforms
    /// (Tailscale, some clouds' internal load balancers) put their proxies there.
    pub fn cgnat() -> Self {
        Self::from_nets([v4_net([100, 64, 0, 0], 10)])
    }

    /// Cloudflare's published ranges (15 IPv4 and 7 IPv6 networks), as taken on
    /// [`CLOUDFLARE_RANGES_DATE`].
    ///
    /// A peer in these ranges proves that the request came through Cloudflare — for *some*
    /// Cloudflare customer's zone, not necessarily yours: anyone can put a zone on Cloudflare
    /// and point it at your origin. Where that matters, prefer a signed header or
    /// authenticated origin pulls (mTLS).
    pub fn cloudflare() -> Self {
        static CLOUDFLARE: LazyLock<TrustedRanges> = LazyLock::new(|| {
            // The shipped file is valid: the unit test `cloudflare_preset_is_the_shipped_list`
            // parses it, so this cannot fail at run time.
            TrustedRanges::parse(CLOUDFLARE_RANGES).expect("data/cloudflare-ranges.txt parses")
        });
        CLOUDFLARE.clone()
    }

    /// Every address (`0.0.0.0/0` and `::/0`, the unspecified addresses excepted).
    ///
    /// Use it **only** when the network guarantees that nothing but your own proxy can reach
    /// this server (a firewall, a private network with nothing else on it, a Unix socket
    /// bridged to TCP): with it, any client that reaches the server directly chooses its IP.
    ///
    /// It is deliberately not a [`preset`](Self::preset): a configuration string or a
    /// command-line flag must not be able to trust everyone. Code that means it calls this.
    pub fn any() -> Self {
        Self::from_nets([v4_net([0, 0, 0, 0], 0), v6_net(Ipv6Addr::UNSPECIFIED, 0)])
    }

    /// A preset by name: `loopback`, `private`, `cgnat` or `cloudflare`; `None` for another
    /// name. Handy for command lines and configuration files.
    ///
    /// There is no `any` preset: a string from a configuration file or a command line must not
    /// be able to make every peer a trusted proxy (every client would pick its own IP). Code
    /// that really means it calls [`TrustedRanges::any`].
    ///
    /// ```
    /// use tower_bouncer::client_ip::TrustedRanges;
    ///
    /// assert_eq!(TrustedRanges::preset("loopback"), Some(TrustedRanges::loopback()));
    /// assert_eq!(TrustedRanges::preset("everyone"), None);
    /// assert_eq!(TrustedRanges::preset("any"), None); // never from a string
    /// ```
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "loopback" => Some(Self::loopback()),
            "private" => Some(Self::private()),
            "cgnat" => Some(Self::cgnat()),
            "cloudflare" => Some(Self::cloudflare()),
            _ => None,
        }
    }

    /// Parse a list of networks: one CIDR (`10.0.0.0/8`, `2001:db8::/32`) or bare address
    /// (a `/32` or `/128`) per line. `#` starts a comment, on its own line or after a network;
    /// blank lines are skipped. Host bits below the prefix are ignored (`10.1.2.3/8` is
    /// `10.0.0.0/8`).
    ///
    /// ```
    /// use tower_bouncer::client_ip::TrustedRanges;
    ///
    /// let ranges = TrustedRanges::parse("# our proxies\n10.0.0.0/8\n\n192.0.2.1 # the bastion\n")?;
    /// assert!(ranges.contains("192.0.2.1".parse()?));
    ///
    /// let error = TrustedRanges::parse("10.0.0.0/8\n10.0.0.0/33\n").unwrap_err();
    /// assert_eq!(error.line(), Some(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A line that is neither a network nor an address; the error names its 1-based line.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut nets = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let content = match line.split_once('#') {
                Some((before, _comment)) => before,
                None => line,
            };
            let token = content.trim();
            if token.is_empty() {
                continue;
            }
            nets.push(parse_network(token).ok_or_else(|| {
                ConfigError::at_line(
                    index + 1,
                    format!("`{token}` is not a network (cidr) or an ip address"),
                )
            })?);
        }
        Ok(Self::from_nets(nets))
    }

    /// Read and [`parse`](Self::parse) a file of networks, for example a fresh copy of
    /// Cloudflare's list.
    ///
    /// # Errors
    ///
    /// The file cannot be read, or a line is not a network (the error names its line).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::new(format!(
                "cannot read trusted ranges from {}: {error}",
                path.display()
            ))
        })?;
        Self::parse(&text)
    }

    /// The union of `self` and `other`.
    #[must_use]
    pub fn with(self, other: TrustedRanges) -> Self {
        let mut v4 = self.v4.to_vec();
        v4.extend_from_slice(&other.v4);
        let mut v6 = self.v6.to_vec();
        v6.extend_from_slice(&other.v6);
        Self::from_intervals(v4, v6)
    }

    /// Whether `ip` is in the set. IPv4-mapped IPv6 addresses are looked up as IPv4; the
    /// unspecified addresses `0.0.0.0` and `::` are never in any set.
    ///
    /// A binary search over the merged intervals: no allocation, a few comparisons.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_addr(Addr::from(ip.to_canonical()))
    }

    /// [`contains`](Self::contains) for an address already canonical.
    #[inline]
    pub(crate) fn contains_addr(&self, addr: Addr) -> bool {
        match addr {
            Addr::V4(ip) => ip != 0 && v4_contains(&self.v4, &self.v4_starts, ip),
            Addr::V6(ip) => ip != 0 && interval_contains(&self.v6, ip),
        }
    }

    /// `true` when the set trusts nothing.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The number of merged intervals (adjacent and overlapping networks count once).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// The networks of the set, IPv4 first, sorted, merged and written as the fewest CIDRs:
    /// `10.0.0.0/9` and `10.128.0.0/9` come out as `10.0.0.0/8`.
    pub fn networks(&self) -> impl Iterator<Item = IpNet> + '_ {
        let v4 = self.v4.iter().flat_map(|&(first, last)| {
            Ipv4Subnets::new(Ipv4Addr::from(first), Ipv4Addr::from(last), 0).map(IpNet::V4)
        });
        let v6 = self.v6.iter().flat_map(|&(first, last)| {
            Ipv6Subnets::new(Ipv6Addr::from(first), Ipv6Addr::from(last), 0).map(IpNet::V6)
        });
        v4.chain(v6)
    }

    fn from_nets(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        push_nets(&mut v4, &mut v6, nets);
        Self::from_intervals(v4, v6)
    }

    fn from_intervals(mut v4: Vec<(u32, u32)>, v6: Vec<(u128, u128)>) -> Self {
        // An IPv6 range covering IPv4-mapped addresses covers those IPv4 addresses, since
        // `contains` looks mapped addresses up as IPv4.
        for &(first, last) in &v6 {
            let first = first.max(MAPPED_FIRST);
            let last = last.min(MAPPED_LAST);
            if first <= last {
                // Both ends are within the mapped range: the low 32 bits are the IPv4 address.
                v4.push((first as u32, last as u32));
            }
        }
        let v4: Arc<[(u32, u32)]> = merge(v4).into();
        Self {
            v4_starts: v4.iter().map(|&(first, _)| first).collect(),
            v4,
            v6: merge(v6).into(),
        }
    }
}

impl Default for TrustedRanges {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TrustedRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TrustedRanges[")?;
        for (index, net) in self.networks().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            fmt::Display::fmt(&net, f)?;
        }
        f.write_str("]")
    }
}

impl FromStr for TrustedRanges {
    type Err = ConfigError;

    /// The same as [`TrustedRanges::parse`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl FromIterator<IpNet> for TrustedRanges {
    fn from_iter<I: IntoIterator<Item = IpNet>>(nets: I) -> Self {
        Self::from_nets(nets)
    }
}

impl Extend<IpNet> for TrustedRanges {
    fn extend<I: IntoIterator<Item = IpNet>>(&mut self, nets: I) {
        let mut v4 = self.v4.to_vec();
        let mut v6 = self.v6.to_vec();
        push_nets(&mut v4, &mut v6, nets);
        *self = Self::from_intervals(v4, v6);
    }
}

fn push_nets(
    v4: &mut Vec<(u32, u32)>,
    v6: &mut Vec<(u128, u128)>,
    nets: impl IntoIterator<Item = IpNet>,
) {
    for net in nets {
        match net {
            IpNet::V4(net) => v4.push((u32::from(net.network()), u32::from(net.broadcast()))),
            IpNet::V6(net) => v6.push((u128::from(net.network()), u128::from(net.broadcast()))),
        }
    }
}

fn parse_network(token: &str) -> Option<IpNet> {
    if token.contains('/') {
        token.parse::<IpNet>().ok()
    } else {
        token.parse::<IpAddr>().ok().map(IpNet::from)
    }
}

fn v4_net(octets: [u8; 4], prefix: u8) -> IpNet {
    // Prefixes of the presets are ≤ 32: `new` cannot fail; fall back to the host network to
    // stay panic-free anyway.
    let address = Ipv4Addr::from(octets);
    IpNet::V4(Ipv4Net::new(address, prefix).unwrap_or_else(|_| Ipv4Net::from(address)))
}

fn v6_net(address: Ipv6Addr, prefix: u8) -> IpNet {
    // Prefixes of the presets are ≤ 128: see `v4_net`.
    IpNet::V6(Ipv6Net::new(address, prefix).unwrap_or_else(|_| Ipv6Net::from(address)))
}

/// Sort intervals and merge those that overlap or touch.
fn merge<T: Copy + Ord + Bound>(mut intervals: Vec<(T, T)>) -> Vec<(T, T)> {
    intervals.sort_unstable();
    let mut merged: Vec<(T, T)> = Vec::with_capacity(intervals.len());
    for (first, last) in intervals {
        match merged.last_mut() {
            Some((_, previous_last)) if previous_last.next().is_none_or(|next| first <= next) => {
                if last > *previous_last {
                    *previous_last = last;
                }
            }
            _ => merged.push((first, last)),
        }
    }
    merged
}

/// The address right after this one, if any.
trait Bound: Sized {
    fn next(self) -> Option<Self>;
}

impl Bound for u32 {
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
}

impl Bound for u128 {
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
}

/// An address as the walks carry it: plain integers, cheap to move (an `IpAddr`, 17 bytes
/// aligned to 1, is copied through memory in pieces, and a hot loop over entries then
/// stalls on every copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Addr {
    V4(u32),
    V6(u128),
}

impl From<IpAddr> for Addr {
    #[inline]
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => Self::V6(u128::from(v6)),
        }
    }
}

impl From<Addr> for IpAddr {
    #[inline]
    fn from(addr: Addr) -> Self {
        match addr {
            Addr::V4(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
            Addr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6)),
        }
    }
}

/// [`interval_contains`] for IPv4, with the intervals' starts apart: counting the starts at
/// or before `ip` in a plain `u32` slice takes a few vector compares.
#[inline]
fn v4_contains(intervals: &[(u32, u32)], starts: &[u32], ip: u32) -> bool {
    if intervals.len() > LINEAR_SCAN_MAX {
        return interval_contains(intervals, ip);
    }
    // Counted in a `u32`, as wide as the starts: the compares and the sum then vectorise (a
    // `usize` count, or `filter().count()`, stayed a scalar loop: 120 instructions more per
    // request of the stack benchmark). At most LINEAR_SCAN_MAX starts: the cast is exact.
    let after: u32 = starts.iter().map(|&first| u32::from(first <= ip)).sum();
    in_interval_before(intervals, after as usize, ip)
}

/// Whether `ip` is in the interval just before index `after` (the first interval starting
/// after `ip`): the only candidate, the intervals being sorted and disjoint.
#[inline]
fn in_interval_before<T: Copy + Ord>(intervals: &[(T, T)], after: usize, ip: T) -> bool {
    match after.checked_sub(1).and_then(|index| intervals.get(index)) {
        Some(&(_, last)) => ip <= last,
        None => false,
    }
}

/// Up to this many intervals, [`interval_contains`] scans instead of bisecting.
const LINEAR_SCAN_MAX: usize = 32;

#[inline]
fn interval_contains<T: Copy + Ord>(intervals: &[(T, T)], ip: T) -> bool {
    // The intervals are sorted and disjoint: the only candidate is the last one that starts
    // at or before `ip`. For a short list, counting the starts at or before `ip` is branch-free
    // and vectorises: it beats a binary search, whose every step waits on the last load.
    let after = if intervals.len() <= LINEAR_SCAN_MAX {
        intervals.iter().filter(|&&(first, _)| first <= ip).count()
    } else {
        intervals.partition_point(|&(first, _)| first <= ip)
    };
    in_interval_before(intervals, after, ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn ranges(text: &str) -> TrustedRanges {
        TrustedRanges::parse(text).unwrap()
    }

    proptest::proptest! {
        /// `contains` answers what a plain loop over the networks answers, for sets short
        /// enough to be scanned and long enough to be bisected.
        #[test]
        fn contains_matches_a_loop_over_the_networks(
            nets in proptest::collection::vec((proptest::prelude::any::<u32>(), 8_u8..=32), 0..80),
            probes in proptest::collection::vec(proptest::prelude::any::<u32>(), 32),
        ) {
            let nets: Vec<Ipv4Net> = nets
                .into_iter()
                .map(|(base, len)| Ipv4Net::new(Ipv4Addr::from(base), len).unwrap().trunc())
                .collect();
            let set = TrustedRanges::from_nets(nets.iter().copied().map(IpNet::V4));
            let edges = nets.iter().flat_map(|net| {
                let (first, last) = (u32::from(net.network()), u32::from(net.broadcast()));
                [first.wrapping_sub(1), first, last, last.wrapping_add(1)]
            });
            for probe in probes.into_iter().chain(edges) {
                let ip = IpAddr::V4(Ipv4Addr::from(probe));
                let expected = probe != 0 && nets.iter().any(|net| net.contains(&Ipv4Addr::from(probe)));
                proptest::prop_assert_eq!(set.contains(ip), expected, "{}", ip);
            }
        }
    }

    #[test]
    fn attack_15_cidr_edges_v4() {
        let set = ranges("10.0.0.0/8\n192.0.2.128/25\n");
        for inside in ["10.0.0.0", "10.255.255.255", "192.0.2.128", "192.0.2.255"] {
            assert!(set.contains(ip(inside)), "{inside}");
        }
        for outside in ["9.255.255.255", "11.0.0.0", "192.0.2.127", "192.0.3.0"] {
            assert!(!set.contains(ip(outside)), "{outside}");
        }
    }

    #[test]
    fn attack_15_cidr_edges_v6() {
        let set = ranges("2001:db8::/32\n2001:db9:0:1::/64\n");
        for inside in [
            "2001:db8::",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db9:0:1::",
            "2001:db9:0:1:ffff:ffff:ffff:ffff",
        ] {
            assert!(set.contains(ip(inside)), "{inside}");
        }
        for outside in [
            "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db9::",
            "2001:db9:0:0:ffff:ffff:ffff:ffff",
            "2001:db9:0:2::",
        ] {
            assert!(!set.contains(ip(outside)), "{outside}");
        }
    }

    #[test]
    fn attack_15_cidr_edges_mixed_list() {
        let set = ranges("2001:db8::/32\n10.0.0.0/8\n2606:4700::/32\n172.16.0.0/12\n");
        assert!(set.contains(ip("172.31.255.255")));
        assert!(!set.contains(ip("172.32.0.0")));
        assert!(set.contains(ip("2606:4700::1")));
        assert!(!set.contains(ip("2606:4701::")));
        // A v4 range says nothing about the v6 space and the other way round.
        assert!(!set.contains(ip("::a00:1")));
        assert!(!ranges("8000::/1\n").contains(ip("10.0.0.1")));
        // …except a v6 range that covers the IPv4-mapped space.
        assert!(ranges("::/1\n").contains(ip("10.0.0.1")));
    }

    #[test]
    fn single_addresses_and_host_bits() {
        let set = ranges("192.0.2.1\n2001:db8::7\n10.1.2.3/8\n");
        assert!(set.contains(ip("192.0.2.1")));
        assert!(!set.contains(ip("192.0.2.2")));
        assert!(set.contains(ip("2001:db8::7")));
        assert!(!set.contains(ip("2001:db8::8")));
        assert!(set.contains(ip("10.200.0.1")));
    }

    #[test]
    fn overlapping_and_adjacent_networks_merge() {
        let set = ranges("10.0.0.0/9\n10.128.0.0/9\n10.1.0.0/16\n11.0.0.0/8\n192.0.2.0/24\n");
        assert_eq!(set.len(), 2);
        assert_eq!(
            set.networks().map(|n| n.to_string()).collect::<Vec<_>>(),
            ["10.0.0.0/7", "192.0.2.0/24"]
        );
        let set = ranges("2001:db8::/33\n2001:db8:8000::/33\n2001:db8::/48\n");
        assert_eq!(set.len(), 1);
        assert_eq!(set.networks().next().unwrap().to_string(), "2001:db8::/32");
        // A merged interval that is not one CIDR is listed as the fewest CIDRs.
        let set = ranges("10.0.0.0/8\n11.0.0.0/8\n12.0.0.0/8\n");
        assert_eq!(set.len(), 1);
        assert_eq!(
            set.networks().map(|n| n.to_string()).collect::<Vec<_>>(),
            ["10.0.0.0/7", "12.0.0.0/8"]
        );
    }

    #[test]
    fn full_ranges_do_not_overflow() {
        let set = ranges("0.0.0.0/0\n255.255.255.255/32\n::/0\nffff::/16\n");
        assert_eq!(set.len(), 2);
        assert!(set.contains(ip("255.255.255.255")));
        assert!(set.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert_eq!(format!("{set:?}"), "TrustedRanges[0.0.0.0/0, ::/0]");
    }

    #[test]
    fn attack_30_mapped_v6_matches_v4_ranges() {
        let set = ranges("10.0.0.0/8\n");
        assert!(set.contains(ip("::ffff:10.0.0.5")));
        assert!(set.contains(ip("::ffff:a00:5")));
        assert!(!set.contains(ip("::ffff:11.0.0.5")));
        // The deprecated IPv4-compatible form is not an IPv4 address.
        assert!(!set.contains(ip("::10.0.0.5")));
        // A v6 range written in mapped form covers the IPv4 addresses.
        let mapped = ranges("::ffff:192.0.2.0/120\n");
        assert!(mapped.contains(ip("192.0.2.77")));
        assert!(mapped.contains(ip("::ffff:192.0.2.77")));
        assert!(!mapped.contains(ip("192.0.3.1")));
    }

    #[test]
    fn attack_05_unspecified_is_never_trusted() {
        for set in [TrustedRanges::any(), ranges("0.0.0.0/8\n::/128\n::/0\n")] {
            assert!(!set.contains(ip("0.0.0.0")));
            assert!(!set.contains(ip("::")));
            assert!(!set.contains(ip("::ffff:0.0.0.0")));
            assert!(set.contains(ip("0.0.0.1")));
        }
        assert!(TrustedRanges::any().contains(ip("203.0.113.1")));
        assert!(TrustedRanges::any().contains(ip("2001:db8::1")));
    }

    #[test]
    fn presets() {
        let loopback = TrustedRanges::loopback();
        assert!(loopback.contains(ip("127.0.0.1")));
        assert!(loopback.contains(ip("127.255.255.254")));
        assert!(loopback.contains(ip("::1")));
        assert!(!loopback.contains(ip("::2")));
        assert!(!loopback.contains(ip("128.0.0.1")));

        let private = TrustedRanges::private();
        for inside in [
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "fc00::1",
            "fdff:ffff::1",
            "fe80::1",
            "febf:ffff::1",
        ] {
            assert!(private.contains(ip(inside)), "{inside}");
        }
        for outside in [
            "172.32.0.1",
            "100.64.0.1",
            "127.0.0.1",
            "fec0::1",
            "2001:db8::1",
        ] {
            assert!(!private.contains(ip(outside)), "{outside}");
        }

        let cgnat = TrustedRanges::cgnat();
        assert!(cgnat.contains(ip("100.64.0.0")));
        assert!(cgnat.contains(ip("100.127.255.255")));
        assert!(!cgnat.contains(ip("100.128.0.0")));

        assert!(TrustedRanges::new().is_empty());
        assert!(!TrustedRanges::new().contains(ip("127.0.0.1")));
        for name in ["loopback", "private", "cgnat", "cloudflare"] {
            assert!(!TrustedRanges::preset(name).unwrap().is_empty(), "{name}");
        }
        assert!(TrustedRanges::preset("Loopback").is_none());
    }

    #[test]
    fn api_review_16_no_preset_trusts_everyone() {
        for name in ["any", "Any", "ANY", "all", "everyone", "*"] {
            assert_eq!(TrustedRanges::preset(name), None, "{name}");
        }
        // No preset comes close to `any`: none contains both a public IPv4 and a public IPv6
        // address outside a CDN's ranges.
        for name in ["loopback", "private", "cgnat", "cloudflare"] {
            let preset = TrustedRanges::preset(name).unwrap();
            assert!(!preset.contains(ip("8.8.8.8")), "{name}");
            assert!(!preset.contains(ip("2001:4860:4860::8888")), "{name}");
        }
        // `any()` stays, for code that means it.
        assert!(TrustedRanges::any().contains(ip("8.8.8.8")));
    }

    #[test]
    fn cloudflare_preset_is_the_shipped_list() {
        let set = TrustedRanges::cloudflare();
        let nets: Vec<String> = set.networks().map(|n| n.to_string()).collect();
        assert_eq!(nets.len(), 15 + 7, "{nets:?}");
        assert!(set.contains(ip("173.245.48.0")));
        assert!(set.contains(ip("173.245.63.255")));
        assert!(!set.contains(ip("173.245.64.0")));
        assert!(set.contains(ip("104.27.255.255")));
        assert!(!set.contains(ip("104.28.0.0")));
        assert!(set.contains(ip("2606:4700::6810:84e5")));
        assert!(set.contains(ip("2a06:98c7:ffff::1")));
        assert!(!set.contains(ip("2a06:98c8::1")));
        assert!(!set.contains(ip("8.8.8.8")));
        // The date constant and the file's `taken:` line agree.
        let taken = CLOUDFLARE_RANGES
            .lines()
            .find_map(|line| line.strip_prefix("# taken: "))
            .unwrap();
        assert_eq!(taken.trim(), CLOUDFLARE_RANGES_DATE);
    }

    #[test]
    fn parse_comments_blank_lines_and_whitespace() {
        let set = ranges("# header\n\n  10.0.0.0/8  # trailing\n\t192.0.2.1\t\r\n#\n   \n");
        assert_eq!(set.len(), 2);
        assert!(ranges("").is_empty());
        assert!(ranges("# only a comment\n").is_empty());
        let parsed: TrustedRanges = "127.0.0.1\n".parse().unwrap();
        assert!(parsed.contains(ip("127.0.0.1")));
    }

    #[test]
    fn parse_errors_name_the_line() {
        for (text, line) in [
            ("10.0.0.0/8\nnot-an-ip\n", 2),
            ("10.0.0.0/33\n", 1),
            ("\n\n# c\n2001:db8::/129\n", 4),
            ("10.0.0.0/8 10.1.0.0/16\n", 1),
            ("10.0.0.0/\n", 1),
            ("0127.0.0.1\n", 1),
            ("loopback\n", 1),
        ] {
            let error = TrustedRanges::parse(text).unwrap_err();
            assert_eq!(error.line(), Some(line), "{text:?}");
            assert!(error.to_string().starts_with(&format!("line {line}: ")));
        }
    }

    #[test]
    fn from_file_reads_and_reports_io_errors() {
        let dir = std::env::temp_dir().join(format!("tb-trusted-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ranges.txt");
        std::fs::write(&path, "10.0.0.0/8\n").unwrap();
        assert!(TrustedRanges::from_file(&path)
            .unwrap()
            .contains(ip("10.9.9.9")));
        std::fs::write(&path, "10.0.0.0/8\nbad\n").unwrap();
        assert_eq!(TrustedRanges::from_file(&path).unwrap_err().line(), Some(2));
        let missing = TrustedRanges::from_file(dir.join("missing.txt")).unwrap_err();
        assert_eq!(missing.line(), None);
        assert!(missing
            .to_string()
            .starts_with("cannot read trusted ranges from"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn combining() {
        let set = TrustedRanges::loopback().with(TrustedRanges::cgnat());
        assert!(set.contains(ip("127.0.0.1")) && set.contains(ip("100.64.1.1")));
        let collected: TrustedRanges = ["10.0.0.0/8", "2001:db8::/32"]
            .iter()
            .map(|n| n.parse::<IpNet>().unwrap())
            .collect();
        assert_eq!(collected.len(), 2);
        let mut extended = TrustedRanges::new();
        extended.extend(["192.0.2.0/24".parse::<IpNet>().unwrap()]);
        assert!(extended.contains(ip("192.0.2.9")));
        assert_eq!(
            format!("{:?}", TrustedRanges::loopback()),
            "TrustedRanges[127.0.0.0/8, ::1/128]"
        );
        // Clones share the intervals.
        let clone = set.clone();
        assert!(Arc::ptr_eq(&clone.v4, &set.v4));
    }
}
