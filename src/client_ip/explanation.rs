//! Why a source answered what it answered: the value [`ResolveClientIp::explain`] returns.
//!
//! Explaining is not the hot path: it allocates (the entries are copied as text). The crate's
//! sources explain with the very code that resolves — their walks report each step to an
//! observer, which [`resolve`](ResolveClientIp::resolve) sets to a no-op — so an explanation
//! cannot drift from the answer it explains.

use std::fmt;
use std::net::IpAddr;

#[cfg(doc)]
use super::ResolveClientIp;
use super::{Reason, Resolution, TrustedRanges};

/// The longest text of one entry or header value kept in an explanation; longer ones are cut
/// (with `…`), so a client cannot make an explanation arbitrarily large.
const MAX_TEXT: usize = 256;

/// How one source reached its answer for one request.
///
/// Built by [`ResolveClientIp::explain`]. For a [`Chain`](super::Chain), each source of the
/// chain has its own explanation in [`children`](Self::children), in order, and
/// [`decided_by`](Self::decided_by) says which one's answer is the chain's.
///
/// ```
/// use std::net::SocketAddr;
/// use tower_bouncer::client_ip::{
///     PeerAddr, RequestView, ResolveClientIp, Step, TrustedRanges, Verdict, XForwardedFor,
/// };
///
/// let source = XForwardedFor::rightmost_untrusted(TrustedRanges::private());
/// let mut request = http::Request::builder()
///     .header("x-forwarded-for", "203.0.113.7, 10.0.0.9")
///     .body(())?;
/// request.extensions_mut().insert(PeerAddr("10.0.0.2:41000".parse::<SocketAddr>()?));
///
/// let explanation = source.explain(&RequestView::new(&request));
/// assert_eq!(explanation.resolution(), source.resolve(&RequestView::new(&request)));
/// let verdicts: Vec<Verdict> = explanation
///     .steps()
///     .iter()
///     .filter_map(|step| match step {
///         Step::Entry { verdict, .. } => Some(*verdict),
///         _ => None,
///     })
///     .collect();
/// assert_eq!(verdicts, [Verdict::TrustedProxy, Verdict::Client]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    name: String,
    trusted: Option<String>,
    steps: Vec<Step>,
    children: Vec<Explanation>,
    resolution: Resolution,
}

impl Explanation {
    /// An explanation of `resolution` by the source called `name`, with no steps yet.
    ///
    /// `name` is short and stable (`xff`, `header:x-real-ip`, `peer`, …: the crate's sources use
    /// the example server's `--source` syntax).
    pub fn new(name: impl Into<String>, resolution: Resolution) -> Self {
        Self {
            name: name.into(),
            trusted: None,
            steps: Vec::new(),
            children: Vec::new(),
            resolution,
        }
    }

    /// Adds a step.
    #[must_use]
    pub fn with_step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// Adds the explanation of a source this one delegated to (a chain's sources).
    #[must_use]
    pub fn with_child(mut self, child: Explanation) -> Self {
        self.children.push(child);
        self
    }

    /// Records the ranges this source believes, as text.
    #[must_use]
    pub fn with_trusted(mut self, trusted: impl Into<String>) -> Self {
        self.trusted = Some(trusted.into());
        self
    }

    /// The source's short name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the source trusts, as text, when it has a setting for it: the trusted ranges
    /// (CIDRs, comma-separated) of the header sources, the key ids of the signed header.
    pub fn trusted(&self) -> Option<&str> {
        self.trusted.as_deref()
    }

    /// What the source looked at, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The explanations of the sources this one delegated to, in the order they were tried.
    pub fn children(&self) -> &[Explanation] {
        &self.children
    }

    /// The answer: always what [`resolve`](ResolveClientIp::resolve) answers for the same
    /// request.
    pub fn resolution(&self) -> Resolution {
        self.resolution
    }

    /// The index of the child whose answer is the chain's answer (the first one that was not
    /// absent), if any.
    pub fn decided_by(&self) -> Option<usize> {
        self.children
            .iter()
            .position(|child| !matches!(child.resolution, Resolution::Absent(_)))
    }

    /// Records one event of a walk.
    pub(crate) fn record(&mut self, event: Event<'_>) {
        let step = match event {
            Event::Peer { ip, trusted } => Step::Peer { ip, trusted },
            Event::Entry {
                position,
                raw,
                verdict,
            } => Step::Entry {
                position,
                text: text_of(raw),
                verdict,
            },
            Event::Header { name, raw, verdict } => Step::Header {
                name: name.to_owned(),
                text: text_of(raw),
                verdict,
            },
        };
        self.steps.push(step);
    }
}

/// One thing a source looked at.
///
/// The struct variants are `#[non_exhaustive]`: they may gain fields, so match them with `..`,
/// and only this crate's sources build them. A source written outside the crate records what
/// it looked at as [`Step::Note`].
///
/// ```
/// use tower_bouncer::client_ip::{Explanation, Reason, Resolution, Step};
///
/// fn describe(step: &Step) -> String {
///     match step {
///         Step::Peer { ip, trusted, .. } => format!("peer {ip:?}, trusted: {trusted}"),
///         Step::Entry { position, verdict, .. } => format!("entry {position}: {verdict:?}"),
///         Step::Header { name, verdict, .. } => format!("{name}: {verdict:?}"),
///         Step::Note(text) => text.clone(),
///         _ => String::from("a step of a later release"),
///     }
/// }
///
/// let explanation = Explanation::new("my-source", Resolution::Absent(Reason::HeaderMissing))
///     .with_step(Step::Note("no x-my-client header".into()));
/// assert_eq!(describe(&explanation.steps()[0]), "no x-my-client header");
/// ```
///
/// Outside this crate a struct variant cannot be built:
///
/// ```compile_fail,E0639
/// use tower_bouncer::client_ip::Step;
///
/// let step = Step::Peer { ip: None, trusted: false };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// The socket peer, and whether the source believes headers from it.
    #[non_exhaustive]
    Peer {
        /// The peer's address (canonical); `None` when the server recorded no peer.
        ip: Option<IpAddr>,
        /// Whether the peer is in the source's trusted ranges (or, for the peer source, usable).
        trusted: bool,
    },
    /// One entry of a list header (`X-Forwarded-For`, `Forwarded`), as the walk reached it.
    #[non_exhaustive]
    Entry {
        /// 1-based, counted from the right (the nearest proxy's entry is 1).
        position: u32,
        /// The entry as received (lossy UTF-8, cut at 256 bytes).
        text: String,
        /// What the walk made of it.
        verdict: Verdict,
    },
    /// The value of a single-value header (a trusted header, a signed header).
    #[non_exhaustive]
    Header {
        /// The header's name.
        name: String,
        /// The value as received (lossy UTF-8, cut at 256 bytes).
        text: String,
        /// What the source made of it.
        verdict: Verdict,
    },
    /// Free text, for sources written outside this crate.
    Note(String),
}

/// What a walk made of one entry or value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// A trusted proxy's address: skipped.
    TrustedProxy,
    /// Counted as a hop (hop-count walk), not read.
    Counted,
    /// The client's address: the walk ends here with it.
    Client,
    /// A stand-in the source replaced with another header's value (Cloudflare's Pseudo IPv4,
    /// replaced by `CF-Connecting-IPv6`).
    Replaced,
    /// Unusable: the walk stops here, for this reason.
    Stopped(Reason),
}

impl Verdict {
    /// A short, stable identifier: `trusted_proxy`, `counted`, `client`, `replaced` or
    /// `stopped`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TrustedProxy => "trusted_proxy",
            Self::Counted => "counted",
            Self::Client => "client",
            Self::Replaced => "replaced",
            Self::Stopped(_) => "stopped",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TrustedProxy => f.write_str("trusted proxy: skipped"),
            Self::Counted => f.write_str("counted as a hop, not read"),
            Self::Client => f.write_str("client"),
            Self::Replaced => f.write_str("a stand-in, replaced by the next header"),
            Self::Stopped(reason) => write!(f, "stopped: {reason}"),
        }
    }
}

/// What a walk reports to its observer; borrowed, so that reporting to a no-op costs nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event<'a> {
    Peer {
        ip: Option<IpAddr>,
        trusted: bool,
    },
    Entry {
        position: u32,
        raw: &'a [u8],
        verdict: Verdict,
    },
    Header {
        name: &'a str,
        raw: &'a [u8],
        verdict: Verdict,
    },
}

/// The observer of [`resolve`](ResolveClientIp::resolve): ignores everything (and compiles to
/// nothing).
pub(crate) fn ignore(_: Event<'_>) {}

/// `ranges` as text: `10.0.0.0/8, 127.0.0.0/8`.
pub(crate) fn ranges_text(ranges: &TrustedRanges) -> String {
    let mut text = String::new();
    for (index, net) in ranges.networks().enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        text.push_str(&net.to_string());
    }
    text
}

fn text_of(raw: &[u8]) -> String {
    if raw.len() <= MAX_TEXT {
        return String::from_utf8_lossy(raw).into_owned();
    }
    let mut text = String::from_utf8_lossy(&raw[..MAX_TEXT]).into_owned();
    text.push('…');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_entries_are_cut() {
        let mut explanation = Explanation::new("x", Resolution::Absent(Reason::HeaderMissing));
        explanation.record(Event::Entry {
            position: 1,
            raw: &[b'a'; 1000],
            verdict: Verdict::Stopped(Reason::InvalidEntry { position: 1 }),
        });
        let Step::Entry { text, .. } = &explanation.steps()[0] else {
            panic!("an entry step");
        };
        assert_eq!(text.len(), MAX_TEXT + '…'.len_utf8());
    }

    #[test]
    fn decided_by_is_the_first_child_not_absent() {
        let absent = Explanation::new("a", Resolution::Absent(Reason::HeaderMissing));
        let stop = Explanation::new("b", Resolution::Untrustworthy(Reason::DuplicateHeader));
        let chain = Explanation::new("chain", stop.resolution())
            .with_child(absent.clone())
            .with_child(stop)
            .with_child(absent);
        assert_eq!(chain.decided_by(), Some(1));
        assert_eq!(
            Verdict::Stopped(Reason::DuplicateHeader).to_string(),
            "stopped: a single-value header came more than once"
        );
    }
}
