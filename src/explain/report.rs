//! What the endpoint shows for one request, gathered once and rendered as JSON or HTML.

use std::net::SocketAddr;

use http::header::{HeaderMap, FORWARDED};
use http::HeaderName;

use super::bucket::{Inspector, KeyReport};
use crate::client_ip::{ClientIp, Explanation, RequestView, Resolution, ResolveClientIp};

/// Headers shown in the "forwarding headers" section whatever the configuration.
const FORWARDING_HEADERS: [HeaderName; 9] = [
    HeaderName::from_static("x-forwarded-for"),
    FORWARDED,
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("cf-connecting-ipv6"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("fastly-client-ip"),
    HeaderName::from_static("fly-client-ip"),
    HeaderName::from_static("cloudfront-viewer-address"),
];

/// Everything one explanation shows.
#[derive(Debug)]
pub(super) struct Report {
    pub(super) peer: Option<SocketAddr>,
    /// Every forwarding header line as received, in order: `(name, value)`.
    pub(super) forwarding: Vec<(String, String)>,
    pub(super) explanation: Explanation,
    /// What the `ClientIpLayer` in front decided, when there is one.
    pub(super) client: Option<ClientIp>,
    pub(super) key: Option<KeyReport>,
}

impl Report {
    pub(super) fn gather(
        source: &dyn ResolveClientIp,
        inspector: Option<&Inspector>,
        request: &RequestView<'_>,
    ) -> Self {
        let explanation = source.explain(request);
        let client =
            request.extensions().get::<ClientIp>().copied().or_else(|| {
                match explanation.resolution() {
                    Resolution::Resolved { ip, source } => Some(ClientIp::new(ip, source)),
                    _ => None,
                }
            });
        Self {
            peer: request.peer(),
            forwarding: forwarding_headers(request.headers(), &explanation),
            client,
            key: inspector.map(|inspector| inspector.report(request)),
            explanation,
        }
    }

    /// The sources to list: a chain's children, or the one source.
    pub(super) fn sources(&self) -> &[Explanation] {
        if self.explanation.name() == "chain" {
            self.explanation.children()
        } else {
            std::slice::from_ref(&self.explanation)
        }
    }

    /// Whether `index` (into [`sources`](Self::sources)) comes after the source that decided:
    /// the layer never runs it.
    pub(super) fn is_after_decision(&self, index: usize) -> bool {
        self.explanation.name() == "chain"
            && self
                .explanation
                .decided_by()
                .is_some_and(|decided| index > decided)
    }

    /// Whether `index` (into [`sources`](Self::sources)) is the source whose answer counts.
    pub(super) fn is_decisive(&self, index: usize) -> bool {
        if self.explanation.name() == "chain" {
            self.explanation.decided_by() == Some(index)
        } else {
            !matches!(self.explanation.resolution(), Resolution::Absent(_))
        }
    }
}

/// The names a source reads that are not in the standard list (`header:NAME`, `signed:NAME`).
fn configured_names(explanation: &Explanation, names: &mut Vec<HeaderName>) {
    if let Some((_, name)) = explanation
        .name()
        .split_once(':')
        .filter(|(kind, _)| matches!(*kind, "header" | "signed"))
    {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    for child in explanation.children() {
        configured_names(child, names);
    }
}

fn forwarding_headers(headers: &HeaderMap, explanation: &Explanation) -> Vec<(String, String)> {
    let mut names = FORWARDING_HEADERS.to_vec();
    configured_names(explanation, &mut names);
    headers
        .iter()
        .filter(|(name, _)| names.contains(name))
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}
