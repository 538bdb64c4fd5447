//! Where a client IP can come from: one type per source, all behind [`ResolveClientIp`].

use std::fmt;
use std::net::IpAddr;

use http::HeaderName;

use super::{Explanation, RequestView, SourceKind};

/// One way of finding the client IP of a request.
///
/// A source answers one of three things (see [`Resolution`]):
/// - **resolved**: the client's address;
/// - **absent**: what this source reads is not in the request, so a [`Chain`] tries its next
///   source;
/// - **untrustworthy**: what it reads is present but unusable (garbage, an `unknown`
///   identifier, a duplicated single-value header, a bad signature…). A chain **stops** there:
///   skipping to a weaker source would let a client choose which source answers.
///
/// Implement it for a source of your own; the crate's sources are plain types that implement it.
///
/// ```
/// use tower_bouncer::client_ip::{Reason, RequestView, Resolution, ResolveClientIp, SourceKind};
///
/// /// Every request comes from the address a test harness put in a header, whoever sent it.
/// /// (Never do this in production: it trusts the client.)
/// #[derive(Debug)]
/// struct TestHarnessHeader;
///
/// impl ResolveClientIp for TestHarnessHeader {
///     fn resolve(&self, request: &RequestView<'_>) -> Resolution {
///         let Some(value) = request.headers().get("x-test-client") else {
///             return Resolution::Absent(Reason::HeaderMissing);
///         };
///         match value.to_str().ok().and_then(|text| text.parse().ok()) {
///             Some(ip) => Resolution::resolved(ip, SourceKind::Custom("test-harness")),
///             None => Resolution::Untrustworthy(Reason::InvalidEntry { position: 1 }),
///         }
///     }
/// }
/// ```
pub trait ResolveClientIp: fmt::Debug + Send + Sync + 'static {
    /// Resolve the client IP of `request`. Must not panic, allocate or block.
    fn resolve(&self, request: &RequestView<'_>) -> Resolution;

    /// The forwarding headers this source reads (none by default).
    ///
    /// Misconfiguration detection uses it, once when the layer is built, to know which
    /// forwarding headers the configuration *ignores*: one of those arriving on live traffic
    /// means a proxy is probably in front of a source that does not read it. A source that
    /// reads a header should name it here.
    fn headers_read(&self) -> &[HeaderName] {
        &[]
    }

    /// Resolve the client IP of `request` and say why: every entry walked and what was made
    /// of it, the peer check, which source of a chain decided. For the explain endpoint and
    /// for tests; it allocates, so it is never called on the request path.
    ///
    /// Its [`resolution`](Explanation::resolution) is always what [`resolve`](Self::resolve)
    /// answers. The default, for sources written outside this crate, is that answer with no
    /// steps, named after the source's `Debug` text; override it to show your own steps.
    fn explain(&self, request: &RequestView<'_>) -> Explanation {
        Explanation::new(format!("{self:?}"), self.resolve(request))
    }
}

impl<R: ResolveClientIp + ?Sized> ResolveClientIp for Box<R> {
    fn resolve(&self, request: &RequestView<'_>) -> Resolution {
        (**self).resolve(request)
    }

    fn headers_read(&self) -> &[HeaderName] {
        (**self).headers_read()
    }

    fn explain(&self, request: &RequestView<'_>) -> Explanation {
        (**self).explain(request)
    }
}

impl<R: ResolveClientIp + ?Sized> ResolveClientIp for std::sync::Arc<R> {
    fn resolve(&self, request: &RequestView<'_>) -> Resolution {
        (**self).resolve(request)
    }

    fn headers_read(&self) -> &[HeaderName] {
        (**self).headers_read()
    }

    fn explain(&self, request: &RequestView<'_>) -> Explanation {
        (**self).explain(request)
    }
}

/// What a source answered for one request.
///
/// A resolved answer is built with [`Resolution::resolved`], which makes the address
/// canonical; the `Resolved` variant is `#[non_exhaustive]`, so it cannot be built directly
/// outside this crate (and is matched with `..`):
///
/// ```
/// use tower_bouncer::client_ip::{Resolution, SourceKind};
///
/// let answer = Resolution::resolved("::ffff:203.0.113.7".parse()?, SourceKind::Custom("mine"));
/// match answer {
///     Resolution::Resolved { ip, source, .. } => {
///         assert_eq!(ip.to_string(), "203.0.113.7"); // IPv4-mapped: made canonical
///         assert_eq!(source.as_str(), "mine");
///     }
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// ```compile_fail,E0639
/// use tower_bouncer::client_ip::{Resolution, SourceKind};
///
/// // Would skip the canonicalisation `Resolution::resolved` promises.
/// let answer = Resolution::Resolved { ip: "::ffff:1.2.3.4".parse().unwrap(), source: SourceKind::Peer };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resolution {
    /// The client's address (canonical) and the kind of source that found it. Built with
    /// [`Resolution::resolved`].
    #[non_exhaustive]
    Resolved {
        /// The client's address.
        ip: IpAddr,
        /// Which kind of source found it.
        source: SourceKind,
    },
    /// Nothing to read: a chain goes on to its next source.
    Absent(Reason),
    /// Present but unusable: a chain stops here.
    Untrustworthy(Reason),
}

impl Resolution {
    /// A resolved address; the address is made canonical (`::ffff:1.2.3.4` becomes `1.2.3.4`).
    pub fn resolved(ip: IpAddr, source: SourceKind) -> Self {
        Self::Resolved {
            ip: ip.to_canonical(),
            source,
        }
    }

    /// The resolved address, if any.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Resolved { ip, .. } => Some(*ip),
            _ => None,
        }
    }

    /// Why nothing was resolved, if nothing was.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Self::Resolved { .. } => None,
            Self::Absent(reason) | Self::Untrustworthy(reason) => Some(*reason),
        }
    }
}

/// Why a source resolved no address. Every unresolved answer carries one, so logs and the
/// explain endpoint can say what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The request carries no peer address: the server was not started with connect info
    /// (`into_make_service_with_connect_info::<SocketAddr>()`), Tonic's `TcpConnectInfo`, or a
    /// [`PeerAddr`](super::PeerAddr) extension.
    NoPeer,
    /// The peer is not in the source's trusted ranges, so its header is not read at all.
    PeerNotTrusted,
    /// The header this source reads is not in the request.
    HeaderMissing,
    /// A single-value header came in more than one line.
    DuplicateHeader,
    /// Every entry of the chain is a trusted proxy: there is no client address in it.
    AllEntriesTrusted,
    /// The hop count is larger than the number of entries in the chain.
    TooFewEntries {
        /// Entries the source needed.
        needed: u32,
        /// Entries the chain had.
        found: u32,
    },
    /// The entry reached by the walk is not an address (garbage, a bad port, a bad zone, an
    /// address no client can have).
    InvalidEntry {
        /// 1-based position of the entry, counted from the right (the nearest proxy's entry is 1).
        position: u32,
    },
    /// The entry reached by the walk is `for=unknown` (RFC 7239).
    UnknownIdentifier {
        /// 1-based position of the element, counted from the right.
        position: u32,
    },
    /// The entry reached by the walk is an obfuscated identifier such as `for=_hidden`.
    ObfuscatedIdentifier {
        /// 1-based position of the element, counted from the right.
        position: u32,
    },
    /// A `Forwarded` element reached by the walk has no `for=` parameter, or more than one.
    MissingOrRepeatedFor {
        /// 1-based position of the element, counted from the right.
        position: u32,
    },
    /// A header value is not usable text (it has bytes outside visible ASCII).
    InvalidHeaderValue,
    /// A signed header is malformed (bad version, encoding or length).
    SignatureMalformed,
    /// A signed header names a key id that is not configured.
    UnknownKeyId,
    /// A signed header's timestamp is older than the window allows.
    SignatureExpired,
    /// A signed header's timestamp is further in the future than the allowed clock skew.
    SignatureFromFuture,
    /// A signed header's tag does not match.
    SignatureMismatch,
    /// A source written outside this crate gave up; the string says why.
    Custom(&'static str),
}

impl Reason {
    /// A short, stable identifier such as `peer_not_trusted`, for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoPeer => "no_peer",
            Self::PeerNotTrusted => "peer_not_trusted",
            Self::HeaderMissing => "header_missing",
            Self::DuplicateHeader => "duplicate_header",
            Self::AllEntriesTrusted => "all_entries_trusted",
            Self::TooFewEntries { .. } => "too_few_entries",
            Self::InvalidEntry { .. } => "invalid_entry",
            Self::UnknownIdentifier { .. } => "unknown_identifier",
            Self::ObfuscatedIdentifier { .. } => "obfuscated_identifier",
            Self::MissingOrRepeatedFor { .. } => "missing_or_repeated_for",
            Self::InvalidHeaderValue => "invalid_header_value",
            Self::SignatureMalformed => "signature_malformed",
            Self::UnknownKeyId => "unknown_key_id",
            Self::SignatureExpired => "signature_expired",
            Self::SignatureFromFuture => "signature_from_future",
            Self::SignatureMismatch => "signature_mismatch",
            Self::Custom(reason) => reason,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPeer => f.write_str(
                "no peer address in the request extensions (serve with connect info, or insert PeerAddr)",
            ),
            Self::PeerNotTrusted => f.write_str("the peer is not a trusted proxy; its header is ignored"),
            Self::HeaderMissing => f.write_str("the header is not in the request"),
            Self::DuplicateHeader => f.write_str("a single-value header came more than once"),
            Self::AllEntriesTrusted => f.write_str("every entry is a trusted proxy"),
            Self::TooFewEntries { needed, found } => {
                write!(f, "the chain has {found} entries, the hop count needs {needed}")
            }
            Self::InvalidEntry { position } => {
                write!(f, "entry {position} from the right is not a client address")
            }
            Self::UnknownIdentifier { position } => {
                write!(f, "element {position} from the right is `for=unknown`")
            }
            Self::ObfuscatedIdentifier { position } => {
                write!(f, "element {position} from the right is an obfuscated identifier")
            }
            Self::MissingOrRepeatedFor { position } => {
                write!(f, "element {position} from the right has no single `for=` parameter")
            }
            Self::InvalidHeaderValue => f.write_str("the header value is not visible ascii"),
            Self::SignatureMalformed => f.write_str("the signed header is malformed"),
            Self::UnknownKeyId => f.write_str("the signed header names an unknown key id"),
            Self::SignatureExpired => f.write_str("the signed header has expired"),
            Self::SignatureFromFuture => {
                f.write_str("the signed header is dated further ahead than the allowed skew")
            }
            Self::SignatureMismatch => f.write_str("the signed header's tag does not match"),
            Self::Custom(reason) => f.write_str(reason),
        }
    }
}

mod chain;
mod forwarded;
mod header;
mod peer;
#[cfg(feature = "signed")]
mod signed;
mod xff;

pub use chain::Chain;
pub use forwarded::Forwarded;
pub use header::TrustedHeader;
pub use peer::SocketPeer;
#[cfg(feature = "signed")]
pub use signed::{SignedHeader, Signer, SigningKey, SigningKeys};
pub use xff::XForwardedFor;
