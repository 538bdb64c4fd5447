use std::fmt;
use std::sync::Arc;

use http::HeaderName;

use crate::client_ip::{Explanation, Reason, RequestView, Resolution, ResolveClientIp};

/// Several sources tried in order: the first that resolves wins.
///
/// The rules, for each source in turn:
/// - **resolved** → that address is the answer (with the kind of the source that found it);
/// - **absent** → the next source is tried;
/// - **untrustworthy** → the chain **stops** and answers that, as is. A request whose trusted
///   header is garbage or duplicated must not fall through to a weaker source: otherwise a
///   client could pick which source answers by spoiling the stronger one.
///
/// When every source is absent, the chain answers the **last** source's absent reason (the
/// weakest source is usually the last, and its reason is the one that decides). An empty chain
/// reads nothing and answers [`Reason::HeaderMissing`]; [`is_empty`](Self::is_empty) lets a
/// builder refuse one.
///
/// Resolving allocates nothing: the sources are kept behind `Arc`s built once.
///
/// ```
/// use tower_bouncer::client_ip::{
///     Chain, ClientIpLayer, PeerAddr, Reason, RequestView, Resolution, ResolveClientIp,
///     SocketPeer, TrustedHeader, TrustedRanges,
/// };
///
/// // Behind nginx on this host when it is there, else clients connect directly.
/// let chain = Chain::new()
///     .then(TrustedHeader::x_real_ip(TrustedRanges::loopback()))
///     .then(SocketPeer::new());
/// assert_eq!(chain.len(), 2);
///
/// // A client that connects directly: X-Real-IP is not read, the peer answers.
/// let mut request = http::Request::new(());
/// request.headers_mut().insert("x-real-ip", "6.6.6.6".parse()?);
/// request.extensions_mut().insert(PeerAddr("198.51.100.4:50000".parse()?));
/// assert_eq!(chain.resolve(&RequestView::new(&request)).ip(), Some("198.51.100.4".parse()?));
///
/// // nginx sent X-Real-IP twice: the chain stops there, it does not fall back to the peer.
/// request.headers_mut().append("x-real-ip", "203.0.113.7".parse()?);
/// request.extensions_mut().insert(PeerAddr("127.0.0.1:50000".parse()?));
/// assert_eq!(
///     chain.resolve(&RequestView::new(&request)),
///     Resolution::Untrustworthy(Reason::DuplicateHeader),
/// );
///
/// let layer = ClientIpLayer::new(chain);
/// # let _ = layer;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct Chain {
    sources: Vec<Arc<dyn ResolveClientIp>>,
    /// Every header the sources read, without repeats (built as sources are added).
    headers: Vec<HeaderName>,
}

impl Chain {
    /// An empty chain; add sources with [`then`](Self::then).
    pub fn new() -> Self {
        Self::default()
    }

    /// A chain over sources that are already shared, tried in the order given (the same as
    /// collecting them: `Chain` implements [`FromIterator`]).
    pub fn from_sources(sources: Vec<Arc<dyn ResolveClientIp>>) -> Self {
        sources.into_iter().collect()
    }

    /// Adds `source` after the sources already in the chain.
    #[must_use]
    pub fn then(self, source: impl ResolveClientIp) -> Self {
        self.then_arc(Arc::new(source))
    }

    /// Adds a shared `source` after the sources already in the chain.
    #[must_use]
    pub fn then_arc(mut self, source: Arc<dyn ResolveClientIp>) -> Self {
        for name in source.headers_read() {
            if !self.headers.contains(name) {
                self.headers.push(name.clone());
            }
        }
        self.sources.push(source);
        self
    }

    /// The sources, in the order they are tried (for an explain page, or a test).
    pub fn sources(&self) -> impl ExactSizeIterator<Item = &Arc<dyn ResolveClientIp>> + '_ {
        self.sources.iter()
    }

    /// How many sources the chain holds.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// `true` when the chain holds no source (it then resolves nothing).
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

impl ResolveClientIp for Chain {
    fn resolve(&self, request: &RequestView<'_>) -> Resolution {
        let mut last_absent = Reason::HeaderMissing;
        for source in &self.sources {
            match source.resolve(request) {
                Resolution::Absent(reason) => last_absent = reason,
                // Resolved, or untrustworthy: either way the chain ends here.
                answer => return answer,
            }
        }
        Resolution::Absent(last_absent)
    }

    fn headers_read(&self) -> &[HeaderName] {
        &self.headers
    }

    /// Every source's explanation, in order — also the sources after the one that decided,
    /// which `resolve` never runs, so that an explain page can show what they would have
    /// answered ([`Explanation::decided_by`] says which one counts). The answer is combined by
    /// the same rules as `resolve`.
    fn explain(&self, request: &RequestView<'_>) -> Explanation {
        let children: Vec<Explanation> = self
            .sources
            .iter()
            .map(|source| source.explain(request))
            .collect();
        let mut last_absent = Reason::HeaderMissing;
        let mut answer = None;
        for child in &children {
            match child.resolution() {
                Resolution::Absent(reason) => last_absent = reason,
                decided => {
                    answer = Some(decided);
                    break;
                }
            }
        }
        let resolution = answer.unwrap_or(Resolution::Absent(last_absent));
        children.into_iter().fold(
            Explanation::new("chain", resolution),
            Explanation::with_child,
        )
    }
}

/// A chain of shared sources, tried in the order the iterator yields them: the same as
/// [`Chain::from_sources`] and [`then_arc`](Chain::then_arc) one by one.
///
/// ```
/// use std::sync::Arc;
/// use tower_bouncer::client_ip::{
///     Chain, ClientIpLayer, ResolveClientIp, SocketPeer, TrustedHeader, TrustedRanges,
/// };
///
/// // Sources built from a configuration file, already shared (say, with an explain page).
/// let configured: Vec<Arc<dyn ResolveClientIp>> = vec![
///     Arc::new(TrustedHeader::x_real_ip(TrustedRanges::loopback())),
///     Arc::new(SocketPeer::new()),
/// ];
/// let chain: Chain = configured.iter().cloned().collect();
/// assert_eq!(chain.len(), 2);
/// let layer = ClientIpLayer::new(chain);
/// # let _ = layer;
/// ```
impl FromIterator<Arc<dyn ResolveClientIp>> for Chain {
    fn from_iter<I: IntoIterator<Item = Arc<dyn ResolveClientIp>>>(sources: I) -> Self {
        sources
            .into_iter()
            .fold(Self::new(), |chain, source| chain.then_arc(source))
    }
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Chain").field(&self.sources).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::client_ip::SourceKind;

    /// A source that always answers the same thing.
    #[derive(Debug)]
    struct Fixed(Resolution);

    impl ResolveClientIp for Fixed {
        fn resolve(&self, _request: &RequestView<'_>) -> Resolution {
            self.0
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, last))
    }

    fn resolved(last: u8, name: &'static str) -> Fixed {
        Fixed(Resolution::resolved(ip(last), SourceKind::Custom(name)))
    }

    fn run(chain: &Chain) -> Resolution {
        let request = http::Request::new(());
        chain.resolve(&RequestView::new(&request))
    }

    #[test]
    fn first_resolved_source_wins() {
        let chain = Chain::new()
            .then(Fixed(Resolution::Absent(Reason::HeaderMissing)))
            .then(resolved(2, "second"))
            .then(resolved(3, "third"));
        assert_eq!(
            run(&chain),
            Resolution::resolved(ip(2), SourceKind::Custom("second"))
        );
    }

    #[test]
    fn untrustworthy_stops_the_chain_before_a_later_source() {
        let stop = Resolution::Untrustworthy(Reason::DuplicateHeader);
        let chain = Chain::new()
            .then(Fixed(Resolution::Absent(Reason::PeerNotTrusted)))
            .then(Fixed(stop))
            .then(resolved(3, "weaker"));
        assert_eq!(run(&chain), stop);
    }

    #[test]
    fn all_absent_answers_the_last_reason() {
        let chain = Chain::new()
            .then(Fixed(Resolution::Absent(Reason::HeaderMissing)))
            .then(Fixed(Resolution::Absent(Reason::NoPeer)));
        assert_eq!(run(&chain), Resolution::Absent(Reason::NoPeer));
    }

    #[test]
    fn empty_chain_is_absent_header_missing() {
        let chain = Chain::new();
        assert!(chain.is_empty());
        assert_eq!(run(&chain), Resolution::Absent(Reason::HeaderMissing));
    }

    #[test]
    fn from_sources_keeps_order_and_sources_lists_them() {
        let first: Arc<dyn ResolveClientIp> = Arc::new(resolved(1, "first"));
        let second: Arc<dyn ResolveClientIp> = Arc::new(resolved(2, "second"));
        let chain = Chain::from_sources(vec![Arc::clone(&first), Arc::clone(&second)]);
        let listed: Vec<_> = chain.sources().collect();
        assert_eq!(listed.len(), 2);
        assert!(Arc::ptr_eq(listed[0], &first));
        assert!(Arc::ptr_eq(listed[1], &second));
        assert_eq!(run(&chain).ip(), Some(ip(1)));
    }

    #[test]
    fn api_review_26_collect_is_from_sources_in_order_with_the_headers_once() {
        let first: Arc<dyn ResolveClientIp> = Arc::new(resolved(1, "first"));
        let second: Arc<dyn ResolveClientIp> = Arc::new(resolved(2, "second"));
        let chain: Chain = [Arc::clone(&first), Arc::clone(&second)]
            .into_iter()
            .collect();
        let listed: Vec<_> = chain.sources().collect();
        assert!(Arc::ptr_eq(listed[0], &first));
        assert!(Arc::ptr_eq(listed[1], &second));
        assert_eq!(run(&chain).ip(), Some(ip(1)));

        // Headers read are gathered as with `then_arc`: each once.
        let header: Arc<dyn ResolveClientIp> = Arc::new(
            crate::client_ip::TrustedHeader::x_real_ip(crate::client_ip::TrustedRanges::loopback()),
        );
        let chain: Chain = std::iter::repeat_n(header, 3).collect();
        assert_eq!(chain.len(), 3);
        assert_eq!(chain.headers_read(), [HeaderName::from_static("x-real-ip")]);
        assert!(std::iter::empty::<Arc<dyn ResolveClientIp>>()
            .collect::<Chain>()
            .is_empty());
    }

    #[test]
    fn debug_lists_the_sources() {
        let chain = Chain::new().then(resolved(1, "first"));
        let debug = format!("{chain:?}");
        assert!(debug.starts_with("Chain(["), "{debug}");
        assert!(debug.contains("Fixed"), "{debug}");
    }
}
