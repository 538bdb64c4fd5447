use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::response::{json_response, Responder, RATELIMIT, RATELIMIT_POLICY};
use super::service::decide;
use super::RateLimited;
use crate::store::{Decision, StoreError};

/// What to do with a request once it is decided.
pub(crate) enum Verdict<R> {
    /// Call the inner service, then add `Extra` to its response.
    Pass(Extra),
    /// Answer this instead.
    Respond(R),
}

/// What an allowed (or report-only) request adds to the inner service's response.
pub(crate) struct Extra {
    /// `RateLimit-Policy` and `RateLimit`, when enabled.
    fields: Option<[HeaderValue; 2]>,
    /// Report-only mode: the denial that was not enforced.
    limited: Option<RateLimited>,
}

impl Extra {
    pub(crate) fn none() -> Self {
        Self {
            fields: None,
            limited: None,
        }
    }

    pub(crate) fn fields(fields: Option<[HeaderValue; 2]>) -> Self {
        Self {
            fields,
            limited: None,
        }
    }

    pub(crate) fn report(limited: RateLimited) -> Self {
        Self {
            fields: None,
            limited: Some(limited),
        }
    }

    fn apply<B>(self, response: &mut Response<B>) {
        if let Some([policy, field]) = self.fields {
            // Appended, not inserted: the fields are structured-field lists, so the lines of
            // stacked layers (different policy names) combine into one list.
            let headers = response.headers_mut();
            headers.append(RATELIMIT_POLICY, policy);
            headers.append(RATELIMIT, field);
        }
        if let Some(limited) = self.limited {
            response.extensions_mut().insert(limited);
        }
    }
}

/// A request waiting for a store that did not decide synchronously.
pub(crate) struct Pending<S, Key, B, ReqBody> {
    pub(crate) service: S,
    pub(crate) request: Request<ReqBody>,
    pub(crate) key: Key,
    pub(crate) cost: u32,
    pub(crate) responder: Arc<Responder<B>>,
}

pin_project! {
    /// The response future of [`RateLimit`](super::RateLimit).
    ///
    /// With the in-memory store it is either the inner service's future (plus the IETF fields
    /// to add, when enabled) or a ready response: no boxing, no allocation. With a store that
    /// must wait, it first waits for the store's decision, holding the request and the ready
    /// inner service.
    pub struct ResponseFuture<S, F, Key, B, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, F, Key, B, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F, Key, B, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Checking {
            #[pin]
            check: F,
            pending: Option<Pending<S, Key, B, ReqBody>>,
        },
        Inner {
            #[pin]
            future: S::Future,
            extra: Option<Extra>,
        },
        Ready {
            response: Option<S::Response>,
        },
    }
}

impl<S, F, Key, B, ReqBody> ResponseFuture<S, F, Key, B, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn inner(future: S::Future, extra: Extra) -> Self {
        Self {
            state: State::Inner {
                future,
                extra: Some(extra),
            },
        }
    }

    pub(crate) fn ready(response: S::Response) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
        }
    }

    pub(crate) fn checking(check: F, pending: Pending<S, Key, B, ReqBody>) -> Self {
        Self {
            state: State::Checking {
                check,
                pending: Some(pending),
            },
        }
    }
}

impl<S, F, Key, B, ReqBody, ResBody> Future for ResponseFuture<S, F, Key, B, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    F: Future<Output = Result<Decision, StoreError>>,
    Key: fmt::Debug,
    ResBody: From<&'static str> + From<B>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Checking { check, pending } => {
                    let result = ready!(check.poll(cx));
                    let Some(mut pending) = pending.take() else {
                        return Poll::Ready(Ok(polled_after_completion()));
                    };
                    let verdict = decide(
                        &pending.responder,
                        &pending.request,
                        &pending.key,
                        pending.cost,
                        result,
                    );
                    match verdict {
                        Verdict::Pass(extra) => {
                            let future = pending.service.call(pending.request);
                            state.set(State::Inner {
                                future,
                                extra: Some(extra),
                            });
                        }
                        Verdict::Respond(response) => {
                            state.set(State::Ready { response: None });
                            return Poll::Ready(Ok(response));
                        }
                    }
                }
                StateProj::Inner { future, extra } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(extra) = extra.take() {
                        extra.apply(&mut response);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Ready { response } => {
                    return Poll::Ready(Ok(response
                        .take()
                        .unwrap_or_else(polled_after_completion)));
                }
            }
        }
    }
}

/// Polling a future again after it returned `Ready` breaks the `Future` contract; answer a 500
/// rather than panic.
fn polled_after_completion<B: From<&'static str>>() -> Response<B> {
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        r#"{"error":"response future polled after completion"}"#,
    )
}

impl<S, F, Key, B, ReqBody> fmt::Debug for ResponseFuture<S, F, Key, B, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
