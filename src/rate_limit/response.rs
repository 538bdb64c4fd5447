//! The answers of the rate limiter: the 429, `Retry-After`, the IETF `RateLimit-Policy` /
//! `RateLimit` fields, and the [`RateLimited`] extension.
//!
//! Everything a response needs that does not depend on the request is built once, when the
//! layer is built. The deny path reads prebuilt values: the body and content type are static,
//! `Retry-After` comes from a static table of decimal strings, and no clock is read (the store
//! already said how long to wait).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};

use super::{Policy, Quota};
use crate::store::Decision;
use crate::ConfigError;

/// The body of the default 429 (and of nothing else).
pub(crate) const DENY_BODY: &str = r#"{"error":"rate limited"}"#;
/// The body of the 500 answered when a request has no key and the policy is to reject.
pub(crate) const MISSING_KEY_BODY: &str = r#"{"error":"server misconfiguration: no rate-limit key for this request (for a client-ip key, put ClientIpLayer in front of RateLimitLayer)"}"#;
/// The body of the 503 answered when the store failed and its own failure policy let the
/// error through.
pub(crate) const STORE_ERROR_BODY: &str = r#"{"error":"rate limiter unavailable"}"#;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-10).
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10).
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Whether responses tell the client when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RetryAfter {
    /// A 429 carries `Retry-After` in whole seconds, rounded up and never `0`. The default.
    #[default]
    Visible,
    /// No timing hint at all: no `Retry-After`, no `RateLimit` fields, on any response; the 429
    /// body is the same. Use it when a client must not learn how the limit is shaped (a login
    /// form under credential stuffing).
    Hidden,
}

/// What the limiter knew when it denied a request: in the response extensions of every 429 it
/// answers (and, in report-only mode, of the response of every request it would have denied).
///
/// Outer layers and custom deny responses read it, for example to count denials per quota.
///
/// ```
/// use tower_bouncer::rate_limit::RateLimited;
///
/// fn log_denial(response: &http::Response<String>) {
///     if let Some(limited) = response.extensions().get::<RateLimited>() {
///         println!("denied; retry after {:?} s", limited.retry_after_secs());
///     }
/// }
/// # log_denial(&http::Response::new(String::new()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    retry_after: Option<Duration>,
    quota: Quota,
    cost: u32,
    report_only: bool,
}

impl RateLimited {
    pub(crate) fn new(
        retry_after: Option<Duration>,
        quota: Quota,
        cost: u32,
        report_only: bool,
    ) -> Self {
        Self {
            retry_after,
            quota,
            cost,
            report_only,
        }
    }

    /// How long until the request's cost fits in the bucket (exact, as the store computed it).
    ///
    /// `None` when it never will: the request costs more than the burst (or 0, see
    /// [`cost_fn`](super::RateLimitLayerBuilder::cost_fn)).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// [`retry_after`](Self::retry_after) in whole seconds as `Retry-After` sends it: rounded
    /// up, at least 1.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(|wait| ceil_secs(wait).max(1))
    }

    /// The quota that denied the request: with several windows, the one with the longest
    /// wait (for a cost that can never pass, one whose burst is too small).
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// The cost the request was charged (and refused) at.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// `true` when the layer is in report-only mode: the request was let through anyway.
    pub fn is_report_only(&self) -> bool {
        self.report_only
    }
}

/// The custom deny response: a closure from what happened to a response.
pub(crate) type DenyFn<B> = Arc<dyn Fn(&RateLimited) -> Response<B> + Send + Sync>;

/// The deny-body type of a layer without a [custom deny
/// response](super::RateLimitLayerBuilder::deny_response): the layer builds its own JSON 429,
/// so no value of this type ever exists.
///
/// It is the default of the `B` parameter of [`RateLimitLayer`](super::RateLimitLayer),
/// [`RateLimit`](super::RateLimit) and their builder and future. A type without a lifetime:
/// with a reference there (`&'static str`), a server that spawns each connection's future
/// (bare Hyper) stumbles on a compiler limitation ("implementation of `From` is not general
/// enough").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultDenyBody {}

/// The deny-body type of a layer with a [custom deny
/// response](super::RateLimitLayerBuilder::deny_response): the body `T` the closure answers
/// with, converted into the service's response body. The layer wraps it; you never build one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomDenyBody<T>(T);

/// A deny-body type the service can turn into its response body `R`: [`DefaultDenyBody`]
/// for any `R`, [`CustomDenyBody<T>`] when `R: From<T>`. Sealed: only those two.
pub trait DenyBody<R>: sealed::Sealed {
    /// The response body.
    #[doc(hidden)]
    fn into_body(self) -> R;
}

impl<R> DenyBody<R> for DefaultDenyBody {
    fn into_body(self) -> R {
        match self {}
    }
}

impl<T, R: From<T>> DenyBody<R> for CustomDenyBody<T> {
    fn into_body(self) -> R {
        R::from(self.0)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::DefaultDenyBody {}
    impl<T> Sealed for super::CustomDenyBody<T> {}
}

/// A custom deny closure answering `Response<CustomDenyBody<T>>`.
pub(crate) fn custom_deny<T, F>(deny: F) -> DenyFn<CustomDenyBody<T>>
where
    F: Fn(&RateLimited) -> Response<T> + Send + Sync + 'static,
{
    Arc::new(move |limited| deny(limited).map(CustomDenyBody))
}

/// The prebuilt IETF fields of one policy.
#[derive(Clone)]
pub(crate) struct PolicyFields {
    name: Box<str>,
    /// `RateLimit-Policy`, complete: `"default";q=100;w=60`.
    policy: HeaderValue,
    /// The start of every `RateLimit` value: `"default";r=`.
    prefix: Box<[u8]>,
}

/// The longest policy name accepted, so a `RateLimit` value fits in a stack buffer.
const MAX_POLICY_NAME: usize = 64;
/// `"` name `";r=` u32 `;t=` u64.
pub(crate) const FIELD_CAPACITY: usize = MAX_POLICY_NAME + 2 + 3 + 10 + 3 + 20;

impl PolicyFields {
    pub(crate) fn new(name: &str, quota: &Quota) -> Result<Self, ConfigError> {
        if name.is_empty() || name.len() > MAX_POLICY_NAME {
            return Err(ConfigError::new(
                "the rate-limit policy name must be 1 to 64 characters long",
            ));
        }
        if !name
            .bytes()
            .all(|byte| (0x20..=0x7e).contains(&byte) && byte != b'"' && byte != b'\\')
        {
            return Err(ConfigError::new(
                "the rate-limit policy name must be printable ascii without `\"` or `\\`",
            ));
        }
        let mut policy = Vec::with_capacity(name.len() + 32);
        policy.push(b'"');
        policy.extend_from_slice(name.as_bytes());
        policy.extend_from_slice(b"\";q=");
        push_decimal(&mut policy, u64::from(quota.burst().get()));
        policy.extend_from_slice(b";w=");
        push_decimal(&mut policy, ceil_secs(quota.window()).max(1));
        let policy = HeaderValue::from_bytes(&policy).map_err(|_| {
            ConfigError::new("the rate-limit policy name is not a valid header value")
        })?;

        let mut prefix = Vec::with_capacity(name.len() + 5);
        prefix.push(b'"');
        prefix.extend_from_slice(name.as_bytes());
        prefix.extend_from_slice(b"\";r=");
        Ok(Self {
            name: name.into(),
            policy,
            prefix: prefix.into_boxed_slice(),
        })
    }

    /// The policy's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The `RateLimit-Policy` value.
    pub(crate) fn policy(&self) -> HeaderValue {
        self.policy.clone()
    }

    /// A `RateLimit` value: `"name";r=<remaining>;t=<seconds>`, written into a stack buffer
    /// (one copy into the header value, no string formatting).
    pub(crate) fn field(&self, remaining: u32, reset_secs: u64) -> HeaderValue {
        let mut buffer = [0u8; FIELD_CAPACITY];
        let at = self.write_field(&mut buffer, remaining, reset_secs);
        match HeaderValue::from_bytes(&buffer[..at]) {
            Ok(value) => value,
            // Unreachable: the name was checked to be visible ascii and the rest is digits and
            // `;=`. Answer the policy-less form rather than panic.
            Err(_) => HeaderValue::from_static("r=0"),
        }
    }
}

impl PolicyFields {
    /// Writes `"name";r=<remaining>;t=<seconds>` at the start of `out`, which must hold
    /// [`FIELD_CAPACITY`] bytes; answers the length written.
    pub(crate) fn write_field(&self, out: &mut [u8], remaining: u32, reset_secs: u64) -> usize {
        let mut at = 0;
        // The prefix is at most MAX_POLICY_NAME + 5 bytes (checked in `new`), and the two
        // numbers at most 10 + 20 digits: everything fits in FIELD_CAPACITY.
        out[..self.prefix.len()].copy_from_slice(&self.prefix);
        at += self.prefix.len();
        at += write_decimal(&mut out[at..], u64::from(remaining));
        out[at..at + 3].copy_from_slice(b";t=");
        at += 3;
        at += write_decimal(&mut out[at..], reset_secs);
        at
    }
}

impl fmt::Debug for PolicyFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyFields")
            .field("policy", &self.policy)
            .finish()
    }
}

/// Seconds in `duration`, rounded up (`0.2 s` → 1, `59.001 s` → 60, `0 s` → 0).
pub(crate) fn ceil_secs(duration: Duration) -> u64 {
    let whole = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        whole.saturating_add(1)
    } else {
        whole
    }
}

/// How long until the client has more quota than right after `decision`: the next cell the
/// bucket gains (the `t` of the `RateLimit` field). Zero when the bucket is full.
///
/// With GCRA the bucket gains a cell each time the time until it is full crosses a multiple
/// of the replenish interval, so this is `full_after mod interval` (a whole interval on an
/// exact multiple); with no cell left it equals the store's `next_cell_after`, and it is never
/// earlier than that.
pub(crate) fn more_quota_after(decision: &Decision, quota: &Quota) -> Duration {
    // Nanoseconds fit in a u64 for 584 years; u64 division is several times cheaper than u128.
    let full = u64::try_from(decision.full_after().as_nanos()).unwrap_or(u64::MAX);
    let interval = u64::try_from(quota.replenish_interval().as_nanos()).unwrap_or(u64::MAX);
    let next = if full == 0 || interval == 0 {
        Duration::ZERO
    } else {
        match full % interval {
            0 => quota.replenish_interval(),
            rest => Duration::from_nanos(rest),
        }
    };
    next.max(decision.next_cell_after())
}

/// The decisions' timing, in whole seconds as the headers send them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// `RateLimit` `t=`: seconds until at least one more cell is available.
    pub(crate) reset: u64,
    /// `Retry-After` of a denial: never earlier than `t`, never 0. `None`: it can never pass.
    pub(crate) retry_after: Option<u64>,
}

impl Timing {
    /// `with_reset`: whether the `RateLimit` field is sent, so `t` is needed (and
    /// `Retry-After` must not be earlier than it); without the field only the store's wait
    /// counts. With several windows, `t` is the longest of the windows that deny.
    pub(crate) fn of(decision: &Decision, policy: &Policy, cost: u32, with_reset: bool) -> Self {
        let reset = if !with_reset {
            0
        } else if policy.is_single() {
            ceil_secs(more_quota_after(decision, &policy.first()))
        } else {
            policy.denial(decision, cost).0
        };
        let retry_after = if decision.is_allowed() {
            None
        } else {
            decision
                .retry_after()
                .map(|wait| ceil_secs(wait).max(reset).max(1))
        };
        Self { reset, retry_after }
    }
}

/// How the responses of one layer look: built once, shared by every service and future.
pub(crate) struct Responder<B> {
    pub(crate) timing: RetryAfter,
    /// Whether the IETF fields are sent (each policy prebuilt its own).
    pub(crate) fields: bool,
    pub(crate) deny: Option<DenyFn<B>>,
    pub(crate) report_only: bool,
}

impl<B> Responder<B> {
    /// The `RateLimit-Policy` and `RateLimit` values of an allowed request, when enabled.
    pub(crate) fn allowed_fields(
        &self,
        decision: &Decision,
        policy: &Policy,
    ) -> Option<[HeaderValue; 2]> {
        if self.report_only || !self.fields {
            return None;
        }
        Some(fields_of(decision, policy, None))
    }

    /// The 429 for `limited`. `timing` is `None` when the request can never pass: then the
    /// response carries no retry hint.
    ///
    /// `request` is the denied request, about to be dropped: the default response reuses its
    /// header map and extensions, emptied, so that a denial allocates nothing for them.
    pub(crate) fn deny<R, ReqBody>(
        &self,
        limited: RateLimited,
        timing: Option<(Timing, &Decision)>,
        policy: &Policy,
        request: &mut Request<ReqBody>,
    ) -> Response<R>
    where
        R: From<&'static str>,
        B: DenyBody<R>,
    {
        let (mut response, custom) = match &self.deny {
            Some(custom) => (custom(&limited).map(DenyBody::into_body), true),
            None => {
                let response =
                    json_response_reusing(StatusCode::TOO_MANY_REQUESTS, DENY_BODY, request);
                (response, false)
            }
        };
        if self.timing == RetryAfter::Visible {
            let headers = response.headers_mut();
            // A custom response may carry its own fields: they are kept. The default one has
            // only its content type.
            let absent = |headers: &http::HeaderMap, name: &HeaderName| {
                !custom || !headers.contains_key(name)
            };
            if self.fields {
                if absent(headers, &RATELIMIT_POLICY) {
                    headers.insert(RATELIMIT_POLICY, policy.policy_field());
                }
                if let Some((timing, decision)) = timing {
                    if absent(headers, &RATELIMIT) {
                        let [_, field] = fields_of(decision, policy, Some(timing));
                        headers.insert(RATELIMIT, field);
                    }
                }
            }
            if let Some(seconds) = timing.and_then(|(timing, _)| timing.retry_after) {
                if absent(headers, &RETRY_AFTER) {
                    headers.append(RETRY_AFTER, seconds_value(seconds));
                }
            }
        }
        response.extensions_mut().insert(limited);
        response
    }
}

impl<B> fmt::Debug for Responder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("retry_after", &self.timing)
            .field("ratelimit_headers", &self.fields)
            .field("custom_deny_response", &self.deny.is_some())
            .field("report_only", &self.report_only)
            .finish()
    }
}

/// `RateLimit-Policy` and `RateLimit` for `decision` under `policy`. One window: its fields,
/// with `r=0` and the denial's `t` when denied. Several: every window with its own `r` and `t`.
fn fields_of(decision: &Decision, policy: &Policy, denied: Option<Timing>) -> [HeaderValue; 2] {
    if policy.is_single() {
        let fields = policy.first_fields();
        let field = match denied {
            Some(timing) => fields.field(0, timing.reset),
            None => fields.field(
                decision.remaining(),
                ceil_secs(more_quota_after(decision, &policy.first())),
            ),
        };
        [fields.policy(), field]
    } else {
        [policy.policy_field(), policy.windows_field(decision)]
    }
}

/// A response with a static JSON body, built in the header map and extensions of `request`
/// (emptied, their capacity kept): the request is about to be dropped, and its maps spare the
/// response two allocations (and their frees).
pub(crate) fn json_response_reusing<R: From<&'static str>, ReqBody>(
    status: StatusCode,
    body: &'static str,
    request: &mut Request<ReqBody>,
) -> Response<R> {
    let mut response = Response::new(R::from(body));
    *response.status_mut() = status;
    // Swapped, not taken: the request gets the response's new empty maps (which own nothing),
    // so no third empty map is made and dropped.
    let headers = response.headers_mut();
    std::mem::swap(headers, request.headers_mut());
    headers.clear();
    headers.append(CONTENT_TYPE, APPLICATION_JSON);
    let extensions = response.extensions_mut();
    std::mem::swap(extensions, request.extensions_mut());
    extensions.clear();
    response
}

/// A response with a static JSON body.
pub(crate) fn json_response<R: From<&'static str>>(
    status: StatusCode,
    body: &'static str,
) -> Response<R> {
    let mut response = Response::new(R::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, APPLICATION_JSON);
    response
}

// ---------------------------------------------------------------------------------------------
// Decimal numbers without formatting.

/// Numbers below this come from the static table.
const TABLE_END: u64 = 10_000;
/// Bytes of "0" "1" … "9999" concatenated: 10 one-digit, 90 two-digit, 900 three-digit and
/// 9000 four-digit numbers.
const TABLE_LEN: usize = 10 + 90 * 2 + 900 * 3 + 9000 * 4;

const fn build_table() -> [u8; TABLE_LEN] {
    let mut out = [0u8; TABLE_LEN];
    let mut n = 0;
    let mut at = 0;
    while n < TABLE_END {
        let len = digit_count(n);
        let mut i = len;
        let mut rest = n;
        while i > 0 {
            i -= 1;
            out[at + i] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        at += len;
        n += 1;
    }
    out
}

const fn digit_count(mut n: u64) -> usize {
    let mut count = 1;
    while n >= 10 {
        n /= 10;
        count += 1;
    }
    count
}

static TABLE_BYTES: [u8; TABLE_LEN] = build_table();

/// "0123456789101112…9999": the decimal forms of 0 to 9999, back to back, built at compile
/// time. A `Retry-After` value is a slice of it, so a denial formats nothing and allocates
/// nothing for its header.
static TABLE: &str = match std::str::from_utf8(&TABLE_BYTES) {
    Ok(text) => text,
    Err(_) => panic!("the decimal table is ascii digits"),
};

/// Where `n` (< 10 000) starts in [`TABLE`], and its length.
fn table_span(n: u64) -> (usize, usize) {
    // Each `as usize` is of a value below 40 000.
    match n {
        0..=9 => (n as usize, 1),
        10..=99 => (10 + (n as usize - 10) * 2, 2),
        100..=999 => (190 + (n as usize - 100) * 3, 3),
        _ => (2890 + (n as usize - 1000) * 4, 4),
    }
}

/// `n` as a header value: a static slice below 10 000 (2 h 46 min), a small allocation above.
pub(crate) fn seconds_value(n: u64) -> HeaderValue {
    if n < TABLE_END {
        let (start, len) = table_span(n);
        if let Some(digits) = TABLE.get(start..start + len) {
            return HeaderValue::from_static(digits);
        }
    }
    HeaderValue::from(n)
}

/// Writes `n` in decimal at the start of `out`; returns the number of bytes written.
/// `out` must hold 20 bytes (the longest `u64`); shorter buffers get a truncated number.
fn write_decimal(out: &mut [u8], n: u64) -> usize {
    let len = digit_count(n).min(out.len());
    let mut rest = n;
    for slot in out[..len].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    len
}

/// Appends `n` in decimal (build time only).
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut buffer = [0u8; 20];
    let len = write_decimal(&mut buffer, n);
    out.extend_from_slice(&buffer[..len]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    #[test]
    fn ceil_secs_rounds_up() {
        let table = [
            (Duration::ZERO, 0),
            (Duration::from_millis(1), 1),
            (Duration::from_millis(200), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1001), 2),
            (Duration::from_millis(59_001), 60),
            (Duration::from_nanos(59_999_999_999), 60),
            (Duration::from_secs(60), 60),
            (Duration::MAX, u64::MAX),
        ];
        for (duration, expected) in table {
            assert_eq!(ceil_secs(duration), expected, "{duration:?}");
        }
    }

    #[test]
    fn seconds_table_matches_decimal_formatting() {
        for n in (0..20_000).chain([u64::MAX, 86_400, 99_999]) {
            assert_eq!(seconds_value(n).to_str().unwrap(), n.to_string(), "{n}");
        }
    }

    #[test]
    fn write_decimal_writes_every_width() {
        for n in [0, 7, 10, 99, 100, 4_294_967_295, u64::MAX] {
            let mut buffer = [0u8; 20];
            let len = write_decimal(&mut buffer, n);
            assert_eq!(&buffer[..len], n.to_string().as_bytes());
        }
    }

    #[test]
    fn policy_fields_follow_draft_10() {
        let quota = Quota::per_minute(NonZeroU32::new(100).unwrap());
        let fields = PolicyFields::new("default", &quota).unwrap();
        assert_eq!(fields.policy(), r#""default";q=100;w=60"#);
        assert_eq!(fields.field(37, 1), r#""default";r=37;t=1"#);
        assert_eq!(
            fields.field(u32::MAX, u64::MAX),
            format!(r#""default";r={};t={}"#, u32::MAX, u64::MAX).as_str()
        );
        let long = "p".repeat(MAX_POLICY_NAME);
        let fields = PolicyFields::new(&long, &quota).unwrap();
        assert!(fields
            .field(u32::MAX, u64::MAX)
            .to_str()
            .unwrap()
            .ends_with(&format!("r={};t={}", u32::MAX, u64::MAX)));
    }

    #[test]
    fn policy_names_that_would_break_the_field_are_errors() {
        let quota = Quota::per_second(NonZeroU32::new(1).unwrap());
        for name in ["", "a\"b", "a\\b", "é", "line\nbreak", &"x".repeat(65)] {
            assert!(PolicyFields::new(name, &quota).is_err(), "{name:?}");
        }
        assert!(PolicyFields::new("per-user burst", &quota).is_ok());
    }
}
