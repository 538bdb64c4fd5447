use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{
    HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, VARY,
    X_CONTENT_TYPE_OPTIONS,
};
use http::{Request, Response};
use tower_service::Service;

use super::bucket::{InspectBucket, Inspector};
use super::render;
use super::report::Report;
use crate::client_ip::{ClientIpLayer, RequestView, ResolveClientIp};
use crate::rate_limit::{ExtractKey, Quota, RateLimitLayer};

/// The path the [module docs](super) mount the endpoint at.
pub const DEFAULT_PATH: &str = "/_bouncer/explain";

/// The explain endpoint: a [`Service`] answering, for the request it receives, how its client
/// IP was resolved (JSON by default, an HTML page for browsers). See the [module docs](super).
///
/// Cloning it is cheap: the configuration is shared.
#[derive(Debug, Clone)]
pub struct Explain {
    source: Arc<dyn ResolveClientIp>,
    inspector: Option<Inspector>,
}

impl Explain {
    /// An endpoint explaining `source`: give it the very source your
    /// [`ClientIpLayer`] uses ([`ClientIpLayer::source`]), or use [`from_layer`](Self::from_layer).
    pub fn new(source: Arc<dyn ResolveClientIp>) -> Self {
        Self {
            source,
            inspector: None,
        }
    }

    /// An endpoint explaining the source of `layer`.
    pub fn from_layer(layer: &ClientIpLayer) -> Self {
        Self::new(Arc::clone(layer.source()))
    }

    /// Also show the request's rate-limit key (computed by `key`, in its `Debug` form) and the
    /// state of its bucket in `store` under `quota`, read without charging anything.
    #[must_use]
    pub fn rate_limit<K, St>(mut self, key: K, store: St, quota: Quota) -> Self
    where
        K: ExtractKey,
        St: InspectBucket<K::Key>,
    {
        self.inspector = Some(Inspector::new(key, store, quota));
        self
    }

    /// Like [`rate_limit`](Self::rate_limit), with the key, store and quota of `layer`.
    #[must_use]
    pub fn rate_limit_layer<K, St, B>(self, layer: &RateLimitLayer<K, St, B>) -> Self
    where
        K: ExtractKey + Clone,
        St: InspectBucket<K::Key> + Clone,
    {
        self.rate_limit(layer.key().clone(), layer.store().clone(), layer.quota())
    }

    /// The answer for `request`: the JSON body, or the HTML page when its `Accept` header
    /// prefers `text/html` to `application/json` (or its query has `format=html`;
    /// `format=json` forces JSON).
    pub fn respond<B>(&self, request: &Request<B>) -> Response<String> {
        let view = RequestView::new(request);
        let report = Report::gather(&*self.source, self.inspector.as_ref(), &view);
        let html = wants_html(request);
        let (body, content_type) = if html {
            (render::page(&report), "text/html; charset=utf-8")
        } else {
            (render::json(&report), "application/json")
        };
        let mut response = Response::new(body);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(VARY, HeaderValue::from_static("accept"));
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
        );
        response
    }

    /// An Axum router serving this endpoint at [`DEFAULT_PATH`] for `GET`; merge it into your
    /// application's router (behind your authentication).
    #[cfg(feature = "axum")]
    pub fn router<S>(self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        axum::Router::new().route(DEFAULT_PATH, axum::routing::get_service(self))
    }
}

impl<B> Service<Request<B>> for Explain {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(self.respond(&request)))
    }
}

/// `format=html` / `format=json` in the query decide; else `Accept`: HTML only when it weighs
/// `text/html` more than `application/json`.
fn wants_html<B>(request: &Request<B>) -> bool {
    let query = request.uri().query().unwrap_or("");
    for pair in query.split('&') {
        match pair {
            "format=html" => return true,
            "format=json" => return false,
            _ => {}
        }
    }
    let mut html = 0;
    let mut json = 0;
    for value in request.headers().get_all(ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        html = html.max(weight(value, "text", "html"));
        json = json.max(weight(value, "application", "json"));
    }
    html > json
}

/// The weight (q × 1000) `accept` gives `kind/sub`: the q of the most specific matching range.
fn weight(accept: &str, kind: &str, sub: &str) -> u32 {
    let mut best: Option<(u8, u32)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let Some((range_kind, range_sub)) = media.split_once('/') else {
            continue;
        };
        let specificity = match (range_kind, range_sub) {
            (k, s) if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(sub) => 2,
            (k, "*") if k.eq_ignore_ascii_case(kind) => 1,
            ("*", "*") => 0,
            _ => continue,
        };
        let q = parts
            .filter_map(|parameter| parameter.trim().strip_prefix("q="))
            .next()
            .map_or(1000, quality);
        if best.is_none_or(|(seen, _)| specificity > seen) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0, |(_, q)| q)
}

/// An HTTP quality value (`0.8`) in thousandths; garbage is 0.
fn quality(text: &str) -> u32 {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let whole: u32 = match whole {
        "0" => 0,
        "1" => 1000,
        _ => return 0,
    };
    let mut thousandths = 0;
    let mut scale = 100;
    for digit in fraction.bytes().take(3) {
        if !digit.is_ascii_digit() {
            return 0;
        }
        thousandths += u32::from(digit - b'0') * scale;
        scale /= 10;
    }
    (whole + thousandths).min(1000)
}
