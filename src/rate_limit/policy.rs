//! [`Policy`]: the windows (named quotas) a request must fit in all at once.

use std::borrow::Cow;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use super::response::{ceil_secs, PolicyFields, FIELD_CAPACITY};
use super::Quota;
use crate::store::{Decision, MAX_WINDOWS};
use crate::ConfigError;

/// One or more named quotas — windows — that a request must fit in **all at once**: "10 per
/// second **and** 1,000 per hour", each with its own burst.
///
/// A request passes only if every window has room for its cost; then every window is
/// charged. A denial charges **nothing anywhere**: the window that would have allowed loses
/// no quota. The store decides all windows of a key in one atomic step
/// ([`Store::check`](crate::store::Store::check)), so concurrent requests never see one
/// window charged and another not. A denied request's `Retry-After` is the longest wait among
/// the windows that deny, and the IETF fields list every window under its name:
///
/// ```text
/// RateLimit-Policy: "per-second";q=10;w=1, "per-hour";q=1000;w=3600
/// RateLimit: "per-second";r=9;t=1, "per-hour";r=999;t=4
/// ```
///
/// A policy is checked when it is built (1 to [`MAX_WINDOWS`] windows, names that fit in the
/// fields, no name twice) and is cheap to clone (shared). A single [`Quota`] converts into a
/// policy of one window named `"default"`.
///
/// ```
/// use tower_bouncer::rate_limit::{Policy, Quota, RateLimitLayer};
///
/// let policy = Policy::builder()
///     .window("per-second", "10/s".parse()?)
///     .window("per-hour", "1000/h".parse()?)
///     .build()?;
/// assert_eq!(policy.window_count(), 2);
/// let layer = RateLimitLayer::with_policy(policy).ratelimit_headers(true).build()?;
/// # let _ = layer;
///
/// // The same two windows, written on the layer's builder.
/// let layer = RateLimitLayer::builder("10/s".parse()?)
///     .policy_name("per-second")
///     .and_quota("per-hour", "1000/h".parse()?)
///     .build()?;
/// # let _ = layer;
/// # Ok::<(), tower_bouncer::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Policy {
    inner: Arc<Inner>,
}

struct Inner {
    quotas: Box<[Quota]>,
    fields: Box<[PolicyFields]>,
    min_burst: NonZeroU32,
    /// `RateLimit-Policy`: every window's item, comma-separated.
    policy_field: HeaderValue,
}

impl Policy {
    /// A builder: add windows with [`window`](PolicyBuilder::window).
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            windows: Vec::new(),
        }
    }

    /// A policy of one window named `name`.
    ///
    /// # Errors
    ///
    /// When `name` cannot be sent in the IETF fields (1 to 64 printable ASCII characters,
    /// without `"` or `\`).
    pub fn new(name: impl Into<Cow<'static, str>>, quota: Quota) -> Result<Self, ConfigError> {
        Self::builder().window(name, quota).build()
    }

    pub(crate) fn from_windows(
        windows: Vec<(Cow<'static, str>, Quota)>,
    ) -> Result<Self, ConfigError> {
        if windows.is_empty() {
            return Err(ConfigError::new(
                "a rate-limit policy needs at least one window",
            ));
        }
        if windows.len() > MAX_WINDOWS {
            return Err(ConfigError::new(
                "a rate-limit policy has at most 4 windows",
            ));
        }
        for (index, (name, _)) in windows.iter().enumerate() {
            if windows[..index].iter().any(|(other, _)| other == name) {
                return Err(ConfigError::new(
                    "two windows of a rate-limit policy have the same name",
                ));
            }
        }
        let fields = windows
            .iter()
            .map(|(name, quota)| PolicyFields::new(name, quota))
            .collect::<Result<Box<[_]>, _>>()?;
        let mut policy = Vec::new();
        for (index, field) in fields.iter().enumerate() {
            if index > 0 {
                policy.extend_from_slice(b", ");
            }
            policy.extend_from_slice(field.policy().as_bytes());
        }
        let policy_field = HeaderValue::from_bytes(&policy).map_err(|_| {
            ConfigError::new("the rate-limit policy names are not a valid header value")
        })?;
        let quotas: Box<[Quota]> = windows.iter().map(|(_, quota)| *quota).collect();
        let min_burst = quotas
            .iter()
            .map(Quota::burst)
            .min()
            .unwrap_or(NonZeroU32::MIN);
        Ok(Self {
            inner: Arc::new(Inner {
                quotas,
                fields,
                min_burst,
                policy_field,
            }),
        })
    }

    /// The windows' quotas, in order (what a [`Store`](crate::store::Store) is asked).
    pub fn quotas(&self) -> &[Quota] {
        &self.inner.quotas
    }

    /// The windows: name and quota, in order.
    pub fn windows(&self) -> impl Iterator<Item = (&str, Quota)> + '_ {
        self.inner
            .fields
            .iter()
            .zip(self.inner.quotas.iter())
            .map(|(fields, quota)| (fields.name(), *quota))
    }

    /// How many windows (1 to [`MAX_WINDOWS`]).
    pub fn window_count(&self) -> usize {
        self.inner.quotas.len()
    }

    /// The smallest burst of the windows: a request costing more can never pass.
    pub fn min_burst(&self) -> NonZeroU32 {
        self.inner.min_burst
    }

    /// The first window's quota.
    pub(crate) fn first(&self) -> Quota {
        self.inner.quotas[0]
    }

    pub(crate) fn is_single(&self) -> bool {
        self.inner.quotas.len() == 1
    }

    /// The first window's prebuilt fields.
    pub(crate) fn first_fields(&self) -> &PolicyFields {
        &self.inner.fields[0]
    }

    /// The `RateLimit-Policy` value.
    pub(crate) fn policy_field(&self) -> HeaderValue {
        self.inner.policy_field.clone()
    }

    /// Each window's cells left and seconds until its next cell, from a decision that reports
    /// every window.
    fn window_states<'a>(
        &'a self,
        decision: &'a Decision,
    ) -> impl Iterator<Item = WindowState> + 'a {
        self.inner
            .quotas
            .iter()
            .enumerate()
            .map(move |(index, quota)| {
                let full = decision.window_full_after(index).unwrap_or(Duration::ZERO);
                WindowState::of(full, quota)
            })
    }

    /// The `RateLimit` value for a decision over several windows:
    /// `"per-second";r=2;t=1, "per-hour";r=997;t=3`, written into a stack buffer.
    pub(crate) fn windows_field(&self, decision: &Decision) -> HeaderValue {
        let mut buffer = [0u8; (FIELD_CAPACITY + 2) * MAX_WINDOWS];
        let mut at = 0;
        for (index, (fields, state)) in self
            .inner
            .fields
            .iter()
            .zip(self.window_states(decision))
            .enumerate()
        {
            if index > 0 {
                buffer[at..at + 2].copy_from_slice(b", ");
                at += 2;
            }
            at += fields.write_field(&mut buffer[at..], state.remaining, state.reset_secs);
        }
        match HeaderValue::from_bytes(&buffer[..at]) {
            Ok(value) => value,
            // Unreachable: names were checked to be visible ascii; the rest is digits, `;=, `.
            Err(_) => HeaderValue::from_static("r=0"),
        }
    }

    /// For a denial over several windows: the seconds until the next cell of the windows that
    /// deny (those with fewer cells left than `cost`), the longest; and the index of the window
    /// with the longest wait.
    pub(crate) fn denial(&self, decision: &Decision, cost: u32) -> (u64, usize) {
        let mut reset = 0;
        let mut longest = (0, 0);
        for (index, (state, quota)) in self
            .window_states(decision)
            .zip(self.inner.quotas.iter())
            .enumerate()
        {
            if state.remaining < cost {
                reset = reset.max(state.reset_secs);
                let wait = state.wait(quota, cost);
                if wait > longest.0 {
                    longest = (wait, index);
                }
            }
        }
        (reset, longest.1)
    }

    pub(crate) fn quota(&self, index: usize) -> Quota {
        self.inner
            .quotas
            .get(index)
            .copied()
            .unwrap_or(self.inner.quotas[0])
    }
}

/// One window's share of a decision, in the units of the `RateLimit` field.
#[derive(Debug, Clone, Copy)]
struct WindowState {
    remaining: u32,
    reset_secs: u64,
    /// Nanoseconds until the window is full.
    full: u64,
}

impl WindowState {
    /// The same arithmetic as the store's report (module `store`, "The arithmetic"), from the
    /// time until the window is full: `remaining = (tau − full) / T + 1`, the next cell in
    /// `full mod T` (a whole `T` on an exact multiple), never before `full − tau`.
    fn of(full_after: Duration, quota: &Quota) -> Self {
        let (t, tau, burst) = parameters(quota);
        let full = nanos(full_after);
        let remaining = if full <= tau {
            ((tau - full) / t).saturating_add(1).min(u64::from(burst))
        } else {
            0
        };
        let next_cell = full.saturating_sub(tau);
        let more = if full == 0 {
            0
        } else {
            match full % t {
                0 => t,
                rest => rest,
            }
        }
        .max(next_cell);
        Self {
            // `remaining ≤ burst`, a u32.
            remaining: u32::try_from(remaining).unwrap_or(burst),
            reset_secs: ceil_secs(Duration::from_nanos(more)),
            full,
        }
    }

    /// Nanoseconds until `cost` cells fit: `full + T×(cost − 1) − tau`.
    fn wait(&self, quota: &Quota, cost: u32) -> u64 {
        let (t, tau, _) = parameters(quota);
        self.full
            .saturating_add(t.saturating_mul(u64::from(cost.saturating_sub(1))))
            .saturating_sub(tau)
    }
}

fn parameters(quota: &Quota) -> (u64, u64, u32) {
    let t = nanos(quota.replenish_interval()).max(1);
    let burst = quota.burst().get();
    (t, t.saturating_mul(u64::from(burst - 1)), burst)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// One window named `"default"`.
impl From<Quota> for Policy {
    fn from(quota: Quota) -> Self {
        match Self::from_windows(vec![(Cow::Borrowed("default"), quota)]) {
            Ok(policy) => policy,
            // Unreachable: one window, and "default" is a valid name.
            Err(_) => unreachable!("a one-window policy named \"default\" is always valid"),
        }
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.windows()).finish()
    }
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.windows().eq(other.windows())
    }
}

impl Eq for Policy {}

/// Builds a [`Policy`]; from [`Policy::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct PolicyBuilder {
    windows: Vec<(Cow<'static, str>, Quota)>,
}

impl PolicyBuilder {
    /// Adds a window: `quota`, named `name` in the IETF fields (`"per-second"`,
    /// `"per-hour"` …).
    pub fn window(mut self, name: impl Into<Cow<'static, str>>, quota: Quota) -> Self {
        self.windows.push((name.into(), quota));
        self
    }

    /// Checks the windows and builds the policy.
    ///
    /// # Errors
    ///
    /// No window, more than [`MAX_WINDOWS`], a name given twice, or a name that cannot be sent
    /// in the IETF fields (1 to 64 printable ASCII characters, without `"` or `\`).
    pub fn build(self) -> Result<Policy, ConfigError> {
        Policy::from_windows(self.windows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Quota {
        text.parse().unwrap()
    }

    #[test]
    fn policies_are_checked_when_built() {
        type Windows = &'static [(&'static str, &'static str)];
        let table: &[(Windows, Option<&str>)] = &[
            (&[], Some("at least one window")),
            (&[("a", "1/s"), ("a", "1/h")], Some("same name")),
            (&[("a\"", "1/s")], Some("printable ascii")),
            (
                &[
                    ("a", "1/s"),
                    ("b", "1/s"),
                    ("c", "1/s"),
                    ("d", "1/s"),
                    ("e", "1/s"),
                ],
                Some("at most 4"),
            ),
            (
                &[("a", "1/s"), ("b", "1/s"), ("c", "1/s"), ("d", "1/s")],
                None,
            ),
        ];
        for (windows, error) in table {
            let mut builder = Policy::builder();
            for (name, quota) in windows.iter() {
                builder = builder.window(*name, q(quota));
            }
            match (builder.build(), error) {
                (Ok(_), None) => {}
                (Err(got), Some(expected)) => {
                    assert!(got.to_string().contains(expected), "{got}")
                }
                (got, expected) => panic!("{windows:?}: {got:?} vs {expected:?}"),
            }
        }
    }

    #[test]
    fn the_policy_field_lists_every_window() {
        let policy = Policy::builder()
            .window("per-second", q("10/s"))
            .window("per-hour", q("1000/h"))
            .build()
            .unwrap();
        assert_eq!(
            policy.policy_field(),
            r#""per-second";q=10;w=1, "per-hour";q=1000;w=3600"#
        );
        assert_eq!(policy.min_burst().get(), 10);
        assert_eq!(
            Policy::from(q("5/min")).policy_field(),
            r#""default";q=5;w=60"#
        );
        assert_eq!(
            format!("{policy:?}"),
            r#"{"per-second": Quota { inner: Quota { max_burst: 10, replenish_1_per: 100ms } }, "per-hour": Quota { inner: Quota { max_burst: 1000, replenish_1_per: 3.6s } }}"#
        );
    }

    #[test]
    fn window_states_follow_the_store_arithmetic() {
        // 3/s: T = 333,333,333 ns, tau = 666,666,666 ns.
        let quota = q("3/s");
        let table = [
            (0, 3, 0),
            (333_333_333, 2, 1),
            (999_999_999, 0, 1),
            (2_000_000_000, 0, 2),
        ];
        for (full, remaining, reset) in table {
            let state = WindowState::of(Duration::from_nanos(full), &quota);
            assert_eq!(
                (state.remaining, state.reset_secs),
                (remaining, reset),
                "{full}"
            );
        }
        // 5/min at 59 s to full: nothing left, the next cell in 11 s (59 − 48).
        let state = WindowState::of(Duration::from_secs(59), &q("5/min"));
        assert_eq!((state.remaining, state.reset_secs), (0, 11));
        assert_eq!(state.wait(&q("5/min"), 1), 11_000_000_000);
    }
}
