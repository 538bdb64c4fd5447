use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::detect::Detector;
use super::{ClientIpService, Detection, Misconfigurations, ResolveClientIp, SocketPeer};

/// What the layer does when its source resolves no client IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnUnresolved {
    /// Answer `400 Bad Request` with a short JSON body that names no internals
    /// (`{"error":"client address could not be determined"}`). The default.
    #[default]
    Reject,
    /// Use the socket peer instead, flagged with [`ClientIp::is_fallback`](super::ClientIp::is_fallback).
    /// When the request has no peer address either, the layer answers `500` naming the missing
    /// connect info: that is a server misconfiguration, not a client error.
    FallbackToPeer,
}

/// A [`Layer`] that resolves the client IP of every request and inserts it as a
/// [`ClientIp`](super::ClientIp) into the request extensions.
///
/// Built once from a source (see [`ResolveClientIp`] and the [module docs](super) for which
/// source fits which deployment); cloning it and applying it to services shares that one
/// configuration.
///
/// A `ClientIp` that is already in the extensions (inserted by a test or an outer layer) is kept.
#[derive(Clone)]
pub struct ClientIpLayer {
    pub(crate) config: Arc<Config>,
}

pub(crate) struct Config {
    pub(crate) source: Arc<dyn ResolveClientIp>,
    pub(crate) on_unresolved: OnUnresolved,
    pub(crate) detection: Detection,
    pub(crate) detector: Option<Arc<Detector>>,
}

impl ClientIpLayer {
    /// A layer that resolves the client IP with `source` and rejects unresolved requests with `400`.
    pub fn new(source: impl ResolveClientIp) -> Self {
        Self::from_arc(Arc::new(source))
    }

    /// A layer over a source that is already shared (for example with an explain endpoint).
    pub fn from_arc(source: Arc<dyn ResolveClientIp>) -> Self {
        Self::assemble(source, OnUnresolved::default(), Detection::new())
    }

    fn assemble(
        source: Arc<dyn ResolveClientIp>,
        on_unresolved: OnUnresolved,
        detection: Detection,
    ) -> Self {
        let detector = Detector::new(&detection, &*source);
        Self {
            config: Arc::new(Config {
                source,
                on_unresolved,
                detection,
                detector,
            }),
        }
    }

    /// Sets what happens when the source resolves nothing.
    #[must_use]
    pub fn on_unresolved(self, policy: OnUnresolved) -> Self {
        Self::assemble(
            Arc::clone(&self.config.source),
            policy,
            self.config.detection.clone(),
        )
    }

    /// Turns misconfiguration detection on (the default) or off. See
    /// [`Detection`] for what it warns about.
    #[must_use]
    pub fn detect_misconfiguration(self, enabled: bool) -> Self {
        self.detection(if enabled {
            Detection::new()
        } else {
            Detection::off()
        })
    }

    /// Sets the misconfiguration-detection settings. The counters start again from zero.
    #[must_use]
    pub fn detection(self, detection: Detection) -> Self {
        Self::assemble(
            Arc::clone(&self.config.source),
            self.config.on_unresolved,
            detection,
        )
    }

    /// The misconfiguration warnings this layer (and every service it built) logged, per kind.
    pub fn misconfigurations(&self) -> Misconfigurations {
        Misconfigurations::of(self.config.detector.as_ref())
    }

    /// The configured source.
    pub fn source(&self) -> &Arc<dyn ResolveClientIp> {
        &self.config.source
    }
}

impl Default for ClientIpLayer {
    /// The socket peer as the client IP: right when nothing stands between the clients and
    /// this server.
    fn default() -> Self {
        Self::new(SocketPeer::new())
    }
}

impl fmt::Debug for ClientIpLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIpLayer")
            .field("source", &self.config.source)
            .field("on_unresolved", &self.config.on_unresolved)
            .field("detection", &self.config.detection)
            .finish()
    }
}

impl<S> Layer<S> for ClientIpLayer {
    type Service = ClientIpService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientIpService::new(inner, Arc::clone(&self.config))
    }
}
