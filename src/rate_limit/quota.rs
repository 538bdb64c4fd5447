//! [`Quota`]: how many cells a key may spend, and how fast they come back.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use crate::ConfigError;

/// A rate limit: one cell comes back every [`replenish_interval`](Self::replenish_interval), and
/// at most [`burst`](Self::burst) cells can be spent at once.
///
/// This is the GCRA quota of [`governor`] (and behaves exactly like it), wrapped so that this
/// crate's public API does not change with governor's. The counts are `NonZeroU32`: a quota of
/// zero cannot be written. A request may cost several cells; a cost larger than the burst can
/// never pass.
///
/// # Examples
///
/// ```
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use tower_bouncer::rate_limit::Quota;
///
/// // 100 per minute, all 100 usable at once.
/// let per_minute = Quota::per_minute(NonZeroU32::new(100).unwrap());
/// assert_eq!(per_minute.replenish_interval(), Duration::from_millis(600));
/// assert_eq!(per_minute.burst().get(), 100);
/// assert_eq!(per_minute.window(), Duration::from_secs(60));
///
/// // The same from text, as a command line or a configuration file gives it.
/// let parsed: Quota = "100/min".parse().unwrap();
/// assert_eq!(parsed, per_minute);
/// assert_eq!(parsed.to_string(), "100/min");
///
/// // 10 per second on average, but only 2 at once.
/// let smooth = Quota::per_second(NonZeroU32::new(10).unwrap())
///     .allow_burst(NonZeroU32::new(2).unwrap());
/// assert_eq!(smooth.window(), Duration::from_millis(200));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Quota {
    inner: governor::Quota,
}

impl Quota {
    /// `cells` per second, with a burst of `cells`.
    pub const fn per_second(cells: NonZeroU32) -> Self {
        Self {
            inner: governor::Quota::per_second(cells),
        }
    }

    /// `cells` per minute, with a burst of `cells`.
    pub const fn per_minute(cells: NonZeroU32) -> Self {
        Self {
            inner: governor::Quota::per_minute(cells),
        }
    }

    /// `cells` per hour, with a burst of `cells`.
    pub const fn per_hour(cells: NonZeroU32) -> Self {
        Self {
            inner: governor::Quota::per_hour(cells),
        }
    }

    /// One cell every `period`, with a burst of 1 (raise it with
    /// [`allow_burst`](Self::allow_burst)); `None` when `period` is zero.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use std::time::Duration;
    /// use tower_bouncer::rate_limit::Quota;
    ///
    /// // 5 a day, all usable at once.
    /// let daily = Quota::with_period(Duration::from_secs(86_400 / 5))
    ///     .unwrap()
    ///     .allow_burst(NonZeroU32::new(5).unwrap());
    /// assert_eq!(daily.window(), Duration::from_secs(86_400));
    /// assert!(Quota::with_period(Duration::ZERO).is_none());
    /// ```
    pub fn with_period(period: Duration) -> Option<Self> {
        governor::Quota::with_period(period).map(|inner| Self { inner })
    }

    /// The same rate, with at most `burst` cells spendable at once.
    #[must_use]
    pub const fn allow_burst(self, burst: NonZeroU32) -> Self {
        Self {
            inner: self.inner.allow_burst(burst),
        }
    }

    /// The time for one cell to come back (whole nanoseconds, truncated: `1/s` divided by 3 is
    /// 333,333,333 ns). Zero only above 10⁹ cells per second; the stores count it as 1 ns, like
    /// governor.
    pub const fn replenish_interval(&self) -> Duration {
        self.inner.replenish_interval()
    }

    /// The most cells that can be spent at once (a request costing more can never pass).
    pub const fn burst(&self) -> NonZeroU32 {
        self.inner.burst_size()
    }

    /// The time to refill the whole burst: `replenish_interval × burst` (the `w` of an IETF
    /// `RateLimit-Policy` field).
    pub const fn window(&self) -> Duration {
        self.inner.burst_size_replenished_in()
    }

    /// The unit this quota was written in, when it is `burst / unit` exactly as the
    /// `per_*` constructors build it.
    fn unit(&self) -> Option<&'static str> {
        let burst = self.burst();
        [
            (Self::per_second(burst), "s"),
            (Self::per_minute(burst), "min"),
            (Self::per_hour(burst), "h"),
        ]
        .into_iter()
        .find_map(|(quota, unit)| (quota == *self).then_some(unit))
    }
}

impl Hash for Quota {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.replenish_interval().hash(state);
        self.burst().hash(state);
    }
}

/// `N/s`, `N/min` or `N/h` when the quota was written that way; otherwise the burst and the
/// replenish interval, e.g. `burst 20, one cell per 100ms`.
impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.unit() {
            Some(unit) => write!(f, "{}/{unit}", self.burst()),
            None => write!(
                f,
                "burst {}, one cell per {:?}",
                self.burst(),
                self.replenish_interval()
            ),
        }
    }
}

/// Parses `N/s`, `N/min` or `N/h` (`N` from 1 to 4294967295, burst `N`), as the example
/// server's `--quota` takes it.
///
/// # Errors
///
/// A [`ConfigError`] naming the problem when the text is not one of these forms, or `N` is
/// zero or too large.
impl FromStr for Quota {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some((count, unit)) = text.split_once('/') else {
            return Err(ConfigError::new(
                "a quota is written N/s, N/min or N/h (missing '/')",
            ));
        };
        // `u32::from_str` accepts a leading '+': a quota is digits only.
        if count.is_empty() || !count.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(ConfigError::new(
                "the count of a quota must be a whole number of at least 1",
            ));
        }
        let count: u32 = count
            .parse()
            .map_err(|_| ConfigError::new("the count of a quota must be at most 4294967295"))?;
        let Some(count) = NonZeroU32::new(count) else {
            return Err(ConfigError::new(
                "the count of a quota must be at least 1 (to block a route, don't route it)",
            ));
        };
        let per: fn(NonZeroU32) -> Quota = match unit {
            "s" => Quota::per_second,
            "min" => Quota::per_minute,
            "h" => Quota::per_hour,
            _ => {
                return Err(ConfigError::new(
                    "the unit of a quota must be s, min or h (e.g. 100/min)",
                ))
            }
        };
        Ok(per(count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const MINUTE: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(60 * 60);

    fn n(value: u32) -> NonZeroU32 {
        NonZeroU32::new(value).unwrap()
    }

    #[test]
    fn parses_every_unit() {
        let table = [
            ("1/s", Quota::per_second(n(1)), SECOND),
            ("5/min", Quota::per_minute(n(5)), Duration::from_secs(12)),
            ("3600/h", Quota::per_hour(n(3600)), SECOND),
            (
                "1000/s",
                Quota::per_second(n(1000)),
                Duration::from_millis(1),
            ),
            (
                "4294967295/s",
                Quota::per_second(n(u32::MAX)),
                Duration::from_nanos(0),
            ),
        ];
        for (text, expected, interval) in table {
            let quota: Quota = text.parse().unwrap();
            assert_eq!(quota, expected, "{text}");
            assert_eq!(quota.replenish_interval(), interval, "{text}");
            assert_eq!(quota.burst(), expected.burst(), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_quota() {
        let table = [
            ("", "missing '/'"),
            ("10", "missing '/'"),
            ("0/s", "at least 1"),
            ("/s", "whole number"),
            ("-1/s", "whole number"),
            ("+1/s", "whole number"),
            (" 1/s", "whole number"),
            ("1.5/s", "whole number"),
            ("4294967296/s", "at most 4294967295"),
            ("99999999999999999999999/min", "at most 4294967295"),
            ("10/sec", "s, min or h"),
            ("10/m", "s, min or h"),
            ("10/", "s, min or h"),
            ("10/s ", "s, min or h"),
            ("10/S", "s, min or h"),
            ("10/s/s", "s, min or h"),
            ("١٠/s", "whole number"),
        ];
        for (text, message) in table {
            let error = text.parse::<Quota>().unwrap_err();
            let shown = error.to_string();
            assert!(shown.contains(message), "{text:?}: {shown}");
            assert!(shown.starts_with(char::is_lowercase), "{text:?}");
            assert!(!shown.ends_with('.'), "{text:?}");
        }
    }

    #[test]
    fn display_round_trips_the_text_syntax() {
        for text in [
            "1/s",
            "7/s",
            "3/min",
            "100/min",
            "1/h",
            "3600/h",
            "4294967295/h",
        ] {
            let quota: Quota = text.parse().unwrap();
            assert_eq!(quota.to_string(), text);
            assert_eq!(quota.to_string().parse::<Quota>().unwrap(), quota);
        }
    }

    #[test]
    fn display_of_a_quota_without_a_unit_names_burst_and_interval() {
        let quota = Quota::per_second(n(10)).allow_burst(n(20));
        assert_eq!(quota.to_string(), "burst 20, one cell per 100ms");
        let quota = Quota::with_period(Duration::from_secs(7)).unwrap();
        assert_eq!(quota.to_string(), "burst 1, one cell per 7s");
    }

    #[test]
    fn window_is_interval_times_burst() {
        assert_eq!(Quota::per_minute(n(5)).window(), MINUTE);
        assert_eq!(Quota::per_hour(n(1)).window(), HOUR);
        // 1 s / 3 truncates to 333,333,333 ns, like governor's own quota.
        assert_eq!(
            Quota::per_second(n(3)).window(),
            Duration::from_nanos(999_999_999)
        );
        let burst = Quota::per_second(n(10)).allow_burst(n(30));
        assert_eq!(burst.window(), Duration::from_secs(3));
    }

    #[test]
    fn with_period_refuses_zero() {
        assert!(Quota::with_period(Duration::ZERO).is_none());
        let quota = Quota::with_period(Duration::from_nanos(1)).unwrap();
        assert_eq!(quota.burst().get(), 1);
        assert_eq!(quota.replenish_interval(), Duration::from_nanos(1));
    }

    #[test]
    fn equal_quotas_hash_alike() {
        use std::collections::HashSet;
        let set: HashSet<Quota> = ["60/min", "1/s", "60/min"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect();
        // 60/min and 1/s differ in burst: two distinct quotas.
        assert_eq!(set.len(), 2);
    }
}
