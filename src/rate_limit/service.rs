use std::fmt;
use std::future::Future;
use std::mem;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::future::{Charge, Charger, Extra, Pending, ResponseFuture, Verdict};
use super::layer::{fmt_config, Config, Cost, StoreCharger};
use super::response::{
    json_response, DefaultDenyBody, DenyBody, Responder, Timing, MISSING_KEY_BODY, STORE_ERROR_BODY,
};
use super::{ExtractKey, OnMissingKey, Policy, RateLimited};
use crate::client_ip::{ClientIp, RequestView};
use crate::store::{Decision, Store, StoreError, StoreErrorKind};

/// The service built by [`RateLimitLayer`](super::RateLimitLayer): charges each request to its
/// key and answers `429` when the quota is spent; see the [module docs](super).
///
/// It is always as ready as the inner service (`poll_ready` delegates) and never changes its
/// error type: a denial is a response.
///
/// With a store that decides synchronously (the in-memory store), the decision is taken in
/// `call` and the inner service is called right away. With a store that must wait (a network
/// store), the future owns the ready inner service (and a clone takes its place) until the
/// store has answered; the inner service must therefore be `Clone`, and the store's future
/// `Unpin` (the memory store's `Ready` is; a network store returns a boxed future).
pub struct RateLimit<S, K, St, B = DefaultDenyBody> {
    inner: S,
    config: Arc<Config<K, St, B>>,
}

impl<S, K, St, B> RateLimit<S, K, St, B> {
    pub(crate) fn new(inner: S, config: Arc<Config<K, St, B>>) -> Self {
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

impl<S: Clone, K, St, B> Clone for RateLimit<S, K, St, B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug, K: fmt::Debug, St: fmt::Debug, B> fmt::Debug for RateLimit<S, K, St, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("RateLimit");
        debug.field("inner", &self.inner);
        fmt_config(&self.config, debug).finish()
    }
}

impl<S, K, St, B, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, K, St, B>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    K: ExtractKey,
    St: Store<K::Key>,
    St::Future: Unpin,
    ResBody: From<&'static str>,
    B: DenyBody<ResBody>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, St::Future, K::Key, B, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let view = RequestView::new(&request);
        let Some(key) = config.extractor.extract_key(&view) else {
            return match missing_key(config, &request) {
                Some(response) => ResponseFuture::ready(response),
                None => ResponseFuture::inner(self.inner.call(request), Extra::none(), None),
            };
        };
        // The key's own policy (its tier's), else the layer's.
        let policy = config.extractor.policy(&key).unwrap_or(&config.policy);
        let cost = match &config.cost {
            Cost::Fixed(cost) => cost.get(),
            Cost::Computed(compute) => compute(&view),
            #[cfg(feature = "axum")]
            Cost::Routes(costs) => costs.cost_of(&view),
        };
        let charge = NonZeroU32::new(cost).filter(|charge| *charge <= policy.min_burst());
        let Some(charge) = charge else {
            let verdict = never_passes(&config.responder, policy, &mut request, &key, cost);
            return finish(&mut self.inner, request, verdict, None);
        };

        #[cfg(feature = "metrics")]
        let tick = crate::metrics::STORE.tick();
        #[cfg(feature = "metrics")]
        if tick.is_multiple_of(TRACKED_KEYS_EVERY) {
            if let Some(keys) = config.store.tracked_keys() {
                crate::metrics::tracked_keys(keys);
            }
        }
        #[cfg(feature = "metrics")]
        let started = std::time::Instant::now;
        #[cfg(feature = "metrics")]
        let timer = tick.is_multiple_of(STORE_DURATION_EVERY).then(started);

        let (mut check, after) = match &config.charger {
            None => (config.store.check(&key, policy.quotas(), charge), None),
            Some(charger) => match config.store.preview(&key, policy.quotas(), charge) {
                Some(preview) => {
                    let charger: Arc<dyn Charger<K::Key, St::Future>> = charger.clone();
                    (
                        preview,
                        Some(Charge {
                            key: key.clone(),
                            policy: policy.clone(),
                            cost: charge,
                            charger,
                        }),
                    )
                }
                None => {
                    let error = StoreError::with_source(
                        StoreErrorKind::Other,
                        "charge_when needs a store that can check without charging (Store::preview)",
                    );
                    let verdict = decide(
                        &config.responder,
                        policy,
                        &mut request,
                        &key,
                        cost,
                        Err(error),
                    );
                    return finish(&mut self.inner, request, verdict, None);
                }
            },
        };
        // A store that decides synchronously (the memory store's future is `Ready`) answers on
        // this first poll, and the inner service — made ready by `poll_ready` — is called
        // right here: no clone of it, no state machine. Polling with a no-op waker is allowed:
        // a future must wake the waker of its *latest* poll, and a pending check is polled
        // again by the response future with the task's real waker.
        match Pin::new(&mut check).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => {
                #[cfg(feature = "metrics")]
                if let Some(timer) = timer {
                    crate::metrics::store_duration(timer.elapsed());
                }
                let verdict = decide(&config.responder, policy, &mut request, &key, cost, result);
                finish(&mut self.inner, request, verdict, after)
            }
            Poll::Pending => {
                // The ready service goes with the future; a clone takes its place and is
                // driven to readiness by the next `poll_ready`.
                let clone = self.inner.clone();
                let service = mem::replace(&mut self.inner, clone);
                let policy = policy.clone();
                ResponseFuture::checking(
                    check,
                    Pending {
                        service,
                        request,
                        policy,
                        key,
                        cost,
                        responder: Arc::clone(&config.responder),
                        charge: after,
                        #[cfg(feature = "metrics")]
                        started: timer.unwrap_or_else(started),
                    },
                )
            }
        }
    }
}

/// Calls the inner service or answers, as the verdict says.
fn finish<S, F, Key, B, ReqBody, ResBody>(
    inner: &mut S,
    request: Request<ReqBody>,
    verdict: Verdict<Response<ResBody>>,
    charge: Option<Charge<Key, F>>,
) -> ResponseFuture<S, F, Key, B, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    match verdict {
        Verdict::Pass(extra) => ResponseFuture::inner(inner.call(request), extra, charge),
        Verdict::Respond(response) => ResponseFuture::ready(response),
    }
}

impl<Key, St: Store<Key>> Charger<Key, St::Future> for StoreCharger<St> {
    fn charges(&self, status: StatusCode) -> bool {
        (self.charge_when)(status)
    }

    fn charge(&self, key: &Key, policy: &Policy, cost: NonZeroU32) -> St::Future {
        self.store.check(key, policy.quotas(), cost)
    }
}

/// The tracked-keys gauge is refreshed once every this many decisions per thread.
#[cfg(feature = "metrics")]
const TRACKED_KEYS_EVERY: u32 = 4096;
/// One store decision in this many (per thread) is timed, when the store answers at once.
#[cfg(feature = "metrics")]
const STORE_DURATION_EVERY: u32 = 64;

/// The request has no key: the configured outcome. `None` lets it through unlimited.
fn missing_key<K, St, B, ReqBody, ResBody>(
    config: &Config<K, St, B>,
    request: &Request<ReqBody>,
) -> Option<Response<ResBody>>
where
    K: fmt::Debug,
    ResBody: From<&'static str>,
{
    if config.on_missing_key == OnMissingKey::Reject && !config.responder.report_only {
        tracing::error!(
            target: "tower_bouncer::rate_limit",
            ip = %MaybeIp(client_ip(request)),
            route = route(request),
            key_extractor = ?config.extractor,
            "rate limit: no key for the request (is ClientIpLayer, or the layer that sets the key, in front?); answering 500"
        );
        return Some(json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            MISSING_KEY_BODY,
        ));
    }
    tracing::warn!(
        target: "tower_bouncer::rate_limit",
        ip = %MaybeIp(client_ip(request)),
        route = route(request),
        key_extractor = ?config.extractor,
        report_only = config.responder.report_only,
        "rate limit: no key for the request; passing it unlimited"
    );
    None
}

/// The request costs 0 or more than the burst: it can never pass.
fn never_passes<Key, B, ReqBody, R>(
    responder: &Responder<B>,
    policy: &Policy,
    request: &mut Request<ReqBody>,
    key: &Key,
    cost: u32,
) -> Verdict<Response<R>>
where
    Key: fmt::Debug,
    R: From<&'static str>,
    B: DenyBody<R>,
{
    tracing::info!(
        target: "tower_bouncer::rate_limit",
        ip = %MaybeIp(client_ip(request)),
        key = ?key,
        route = route(request),
        cost,
        burst = policy.min_burst().get(),
        report_only = responder.report_only,
        "rate limit: denied; the cost can never fit in the burst"
    );
    #[cfg(feature = "metrics")]
    count(request, "denied");
    // The window whose burst is too small (the first, for a cost of 0).
    let quota = policy
        .quotas()
        .iter()
        .copied()
        .find(|quota| quota.burst().get() < cost)
        .unwrap_or(policy.first());
    let limited = RateLimited::new(None, quota, cost, responder.report_only);
    if responder.report_only {
        return Verdict::Pass(Extra::report(limited));
    }
    Verdict::Respond(responder.deny(limited, None, policy, request))
}

/// What a store decision means for the request, with its one tracing event.
pub(crate) fn decide<Key, B, ReqBody, R>(
    responder: &Responder<B>,
    policy: &Policy,
    request: &mut Request<ReqBody>,
    key: &Key,
    cost: u32,
    result: Result<Decision, StoreError>,
) -> Verdict<Response<R>>
where
    Key: fmt::Debug,
    R: From<&'static str>,
    B: DenyBody<R>,
{
    let decision = match result {
        Ok(decision) => decision,
        Err(error) => {
            tracing::error!(
                target: "tower_bouncer::rate_limit",
                ip = %MaybeIp(client_ip(request)),
                key = ?key,
                route = route(request),
                cost,
                error = %error,
                report_only = responder.report_only,
                "rate limit: the store failed"
            );
            if responder.report_only {
                return Verdict::Pass(Extra::none());
            }
            return Verdict::Respond(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                STORE_ERROR_BODY,
            ));
        }
    };
    if decision.is_allowed() {
        #[cfg(feature = "metrics")]
        count(request, "allowed");
        tracing::debug!(
            target: "tower_bouncer::rate_limit",
            ip = %MaybeIp(client_ip(request)),
            key = ?key,
            route = route(request),
            cost,
            remaining = decision.remaining(),
            "rate limit: allowed"
        );
        return Verdict::Pass(Extra::fields(responder.allowed_fields(&decision, policy)));
    }
    // A denial without a wait (a store saying the cost can never fit) gets no retry hint.
    let timing = decision
        .retry_after()
        .map(|_| Timing::of(&decision, policy, cost, responder.fields));
    tracing::info!(
        target: "tower_bouncer::rate_limit",
        ip = %MaybeIp(client_ip(request)),
        key = ?key,
        route = route(request),
        cost,
        retry_after_secs = timing.and_then(|timing| timing.retry_after),
        report_only = responder.report_only,
        "rate limit: denied"
    );
    #[cfg(feature = "metrics")]
    count(request, "denied");
    // The window that denied; with several, the one with the longest wait.
    let quota = if policy.is_single() {
        policy.first()
    } else {
        policy.quota(policy.denial(&decision, cost).1)
    };
    let limited = RateLimited::new(decision.retry_after(), quota, cost, responder.report_only);
    if responder.report_only {
        return Verdict::Pass(Extra::report(limited));
    }
    Verdict::Respond(responder.deny(
        limited,
        timing.map(|timing| (timing, &decision)),
        policy,
        request,
    ))
}

/// Counts a decision in `tower_bouncer_requests_total`.
#[cfg(feature = "metrics")]
fn count<B>(request: &Request<B>, decision: &'static str) {
    let source = match request.extensions().get::<ClientIp>() {
        Some(client) if client.is_fallback() => "fallback",
        Some(client) => client.source().as_str(),
        None => "none",
    };
    crate::metrics::request(
        decision,
        source,
        crate::metrics::Route::of(request.extensions()),
    );
}

fn client_ip<B>(request: &Request<B>) -> Option<IpAddr> {
    request.extensions().get::<ClientIp>().map(ClientIp::ip)
}

/// The route for logs: the matched route template when Axum set one, else the path (logs only;
/// keys never use the raw path).
fn route<B>(request: &Request<B>) -> &str {
    #[cfg(feature = "axum")]
    if let Some(path) = request.extensions().get::<axum::extract::MatchedPath>() {
        return path.as_str();
    }
    request.uri().path()
}

/// An optional address for a log field: the address, or `none`.
struct MaybeIp(Option<IpAddr>);

impl fmt::Display for MaybeIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(ip) => fmt::Display::fmt(ip, f),
            None => f.write_str("none"),
        }
    }
}
