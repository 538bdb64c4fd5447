use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::response::{json_response, DenyBody, Responder, RATELIMIT, RATELIMIT_POLICY};
use super::service::decide;
use super::{Policy, RateLimited};
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
pub(crate) struct Pending<S, Key, B, ReqBody, F> {
    pub(crate) service: S,
    pub(crate) request: Request<ReqBody>,
    /// The key's policy (shared, cloned only on this path).
    pub(crate) policy: Policy,
    pub(crate) key: Key,
    pub(crate) cost: u32,
    pub(crate) responder: Arc<Responder<B>>,
    /// Charge by outcome: what to charge once the response is known.
    pub(crate) charge: Option<Charge<Key, F>>,
    /// When the store was asked (for the store-duration histogram).
    #[cfg(feature = "metrics")]
    pub(crate) started: std::time::Instant,
}

/// Charges a key after the response, for charge by outcome (implemented by
/// `StoreCharger`, which holds the store and the predicate).
pub(crate) trait Charger<Key, F>: Send + Sync {
    /// Whether a response with `status` is charged.
    fn charges(&self, status: StatusCode) -> bool;
    /// Charges `cost` cells of every window of `policy` to `key`.
    fn charge(&self, key: &Key, policy: &Policy, cost: NonZeroU32) -> F;
}

/// What a passed request is charged once its response is known.
pub(crate) struct Charge<Key, F> {
    pub(crate) key: Key,
    /// The key's policy (its tier's, else the layer's).
    pub(crate) policy: Policy,
    pub(crate) cost: NonZeroU32,
    pub(crate) charger: Arc<dyn Charger<Key, F>>,
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
            pending: Option<Pending<S, Key, B, ReqBody, F>>,
        },
        Inner {
            #[pin]
            future: S::Future,
            extra: Option<Extra>,
            charge: Option<Charge<Key, F>>,
        },
        Charging {
            #[pin]
            charge: F,
            response: Option<S::Response>,
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
    pub(crate) fn inner(future: S::Future, extra: Extra, charge: Option<Charge<Key, F>>) -> Self {
        Self {
            state: State::Inner {
                future,
                extra: Some(extra),
                charge,
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

    pub(crate) fn checking(check: F, pending: Pending<S, Key, B, ReqBody, F>) -> Self {
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
    ResBody: From<&'static str>,
    B: DenyBody<ResBody>,
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
                    #[cfg(feature = "metrics")]
                    crate::metrics::store_duration(pending.started.elapsed());
                    let verdict = decide(
                        &pending.responder,
                        &pending.policy,
                        &mut pending.request,
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
                                charge: pending.charge,
                            });
                        }
                        Verdict::Respond(response) => {
                            state.set(State::Ready { response: None });
                            return Poll::Ready(Ok(response));
                        }
                    }
                }
                StateProj::Inner {
                    future,
                    extra,
                    charge,
                } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(extra) = extra.take() {
                        extra.apply(&mut response);
                    }
                    match charge.take() {
                        Some(charge) if charge.charger.charges(response.status()) => {
                            tracing::debug!(
                                target: "tower_bouncer::rate_limit",
                                key = ?charge.key,
                                status = response.status().as_u16(),
                                cost = charge.cost.get(),
                                "rate limit: charging the request after its response"
                            );
                            let future =
                                charge
                                    .charger
                                    .charge(&charge.key, &charge.policy, charge.cost);
                            state.set(State::Charging {
                                charge: future,
                                response: Some(response),
                            });
                        }
                        _ => return Poll::Ready(Ok(response)),
                    }
                }
                StateProj::Charging { charge, response } => {
                    // The response is already decided: a failed or denied charge only logs.
                    if let Err(error) = ready!(charge.poll(cx)) {
                        tracing::error!(
                            target: "tower_bouncer::rate_limit",
                            error = %error,
                            "rate limit: the store failed to charge a request after its response"
                        );
                    }
                    return Poll::Ready(Ok(response
                        .take()
                        .unwrap_or_else(polled_after_completion)));
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
