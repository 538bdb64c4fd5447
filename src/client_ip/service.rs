use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::layer::Config;
use super::{ClientIp, OnUnresolved, RequestView, Resolution};

const REJECT_BODY: &str = r#"{"error":"client address could not be determined"}"#;
const NO_PEER_BODY: &str = r#"{"error":"server misconfiguration: no peer address in the request (serve with connect info, or insert tower_bouncer::client_ip::PeerAddr)"}"#;

/// The service built by [`ClientIpLayer`](super::ClientIpLayer): resolves the client IP and
/// inserts a [`ClientIp`] into the request extensions before calling the inner service.
pub struct ClientIpService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> ClientIpService<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes this service, returning the inner one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for ClientIpService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for ClientIpService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIpService")
            .field("inner", &self.inner)
            .field("source", &self.config.source)
            .field("on_unresolved", &self.config.on_unresolved)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ClientIpService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<&'static str>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if request.extensions().get::<ClientIp>().is_none() {
            let view = RequestView::new(&request);
            let resolution = self.config.source.resolve(&view);
            if let Some(detector) = &self.config.detector {
                let client = match resolution {
                    Resolution::Resolved { ip, .. } => Some(ip),
                    _ if self.config.on_unresolved == OnUnresolved::FallbackToPeer => {
                        view.peer_ip()
                    }
                    _ => None,
                };
                detector.observe(&view, &resolution, client);
            }
            let client = match resolution {
                Resolution::Resolved { ip, source } => ClientIp::new(ip, source),
                Resolution::Absent(reason) | Resolution::Untrustworthy(reason) => {
                    match (self.config.on_unresolved, view.peer_ip()) {
                        (OnUnresolved::FallbackToPeer, Some(peer)) => {
                            tracing::debug!(
                                target: "tower_bouncer::client_ip",
                                reason = reason.code(),
                                peer = %peer,
                                "client ip unresolved, falling back to the peer"
                            );
                            ClientIp::fallback(peer)
                        }
                        (OnUnresolved::FallbackToPeer, None) => {
                            tracing::error!(
                                target: "tower_bouncer::client_ip",
                                reason = reason.code(),
                                "client ip unresolved and the request has no peer address"
                            );
                            return ResponseFuture::ready(json_response(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                NO_PEER_BODY,
                            ));
                        }
                        (_, peer) => {
                            #[cfg(feature = "metrics")]
                            crate::metrics::request(
                                "unresolved",
                                "none",
                                crate::metrics::Route::of(view.extensions()),
                            );
                            tracing::debug!(
                                target: "tower_bouncer::client_ip",
                                reason = reason.code(),
                                peer = ?peer,
                                "client ip unresolved, rejecting"
                            );
                            return ResponseFuture::ready(json_response(
                                StatusCode::BAD_REQUEST,
                                REJECT_BODY,
                            ));
                        }
                    }
                }
            };
            request.extensions_mut().insert(client);
        }
        ResponseFuture::inner(self.inner.call(request))
    }
}

fn json_response<B: From<&'static str>>(status: StatusCode, body: &'static str) -> Response<B> {
    let mut response = Response::new(B::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pin_project! {
    /// The response future of [`ClientIpService`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] future: F },
        Ready { response: Option<Response<B>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    fn ready(response: Response<B>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<&'static str>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polling a future again after it returned `Ready` breaks the `Future`
                // contract; answer an empty 500 rather than panic.
                None => Poll::Ready(Ok(json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"error":"response future polled after completion"}"#,
                ))),
            },
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
