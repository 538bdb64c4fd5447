//! The signed client-IP header: a source that verifies an HMAC-SHA256 tag, its keys, and the
//! signer that mints the values. The wire format is specified on [`SignedHeader`].

mod keys;
mod signer;
mod wire;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::Mac;
use http::HeaderName;
use subtle::ConstantTimeEq;

use crate::client_ip::explanation::{ignore, Event};
use crate::client_ip::{
    Explanation, Reason, RequestView, Resolution, ResolveClientIp, SourceKind, Verdict,
};
use crate::ConfigError;

pub use keys::{SigningKey, SigningKeys};
pub use signer::Signer;

const DEFAULT_MAX_AGE: u64 = 60;
const MAX_MAX_AGE: u64 = 3600;
const DEFAULT_MAX_SKEW: u64 = 5;
const MAX_MAX_SKEW: u64 = 60;

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// A client-IP header signed with HMAC-SHA256 by a hop you run (a serverless function, an edge
/// worker) and verified here with a shared secret: the fix for multi-hop deployments such as
/// browser → CDN → serverless function → CDN → origin, where the origin's peer and the CDN's
/// own header only name the serverless platform, and an unsigned custom header would be
/// whatever any client sends.
///
/// The first hop that sees the real client signs `(ip, time, key id)` with a [`Signer`] (or the
/// JavaScript signer in `examples/signers/`) and sends the value in a header of your choice;
/// this source verifies it:
///
/// | the request                                     | answer                                  |
/// |-------------------------------------------------|-----------------------------------------|
/// | no such header                                  | absent ([`Reason::HeaderMissing`])      |
/// | the header on more than one line                | untrustworthy ([`Reason::DuplicateHeader`]) |
/// | not exactly one well-formed version 1 value     | untrustworthy ([`Reason::SignatureMalformed`]) |
/// | a key id that is not configured                 | untrustworthy ([`Reason::UnknownKeyId`]) |
/// | a tag that does not match                       | untrustworthy ([`Reason::SignatureMismatch`]) |
/// | signed more than `max_age` ago                  | untrustworthy ([`Reason::SignatureExpired`]) |
/// | dated more than `max_skew` ahead                | untrustworthy ([`Reason::SignatureFromFuture`]) |
/// | valid                                           | resolved, [`SourceKind::Signed`]        |
///
/// Absent lets a chain go on (for example to `CF-Connecting-IP` for traffic that does not pass
/// through your serverless function); anything present but wrong stops it, so a forged header
/// can never make the chain fall through to a weaker source.
///
/// # Security
///
/// - **The peer is not checked.** The tag is the proof: whoever sent the request, only a
///   holder of a configured secret can produce a value that verifies. Compose it first in a
///   chain with the sources for direct traffic (`Chain::new().then(SignedHeader::new(..))
///   .then(TrustedHeader::cf_connecting_ip()…)`); firewalling the origin to your CDN still
///   matters for everything else the CDN enforces.
/// - **Replay within the window.** A value is not bound to a connection: anyone who obtains a
///   valid value (a log, a compromised hop) can send it again, from any address, until it
///   expires (`max_age`, default 60 s), and it resolves to the **signed** IP. That lets them
///   spend that client's rate-limit budget, not pick an address of their choice, and not
///   extend the value's life. Keep `max_age` short, send the header only over TLS, and do not
///   log it. Binding the value to an [`audience`](Self::audience) stops replay against your
///   other origins.
/// - **Checks in an order that teaches an attacker nothing useful**: syntax, then the key id
///   (key ids are public; without the secret, knowing one does not help), then the tag in
///   constant time over its full 32 bytes, and only then the time. A forged or altered value
///   is always a mismatch, whatever its timestamp, so the window cannot be probed without a
///   key; only genuine values are told apart as expired or from the future.
/// - Secrets are checked once (at least 32 bytes) and never appear in `Debug` output, logs or
///   errors; `Debug` shows key ids only.
///
/// # Wire format, version 1
///
/// The header value is ASCII, five fields separated by `.`, with no whitespace:
///
/// ```text
/// v1.<kid>.<timestamp>.<address>.<tag>
/// v1.2026-11.1790000000.ywBxBw.<43 characters>          (client 203.0.113.7)
/// ```
///
/// | field       | content                                                                  |
/// |-------------|--------------------------------------------------------------------------|
/// | `v1`        | the version; it pins the algorithm (HMAC-SHA256) — there is no negotiation. Any other version is malformed. |
/// | `kid`       | the key id: 1 to 32 characters of `A-Z a-z 0-9 _ -`.                     |
/// | `timestamp` | Unix time in seconds when the value was signed: 1 to 20 decimal digits, no sign, no leading zero (`0` itself is allowed), at most 2⁶⁴−1. |
/// | `address`   | the client address in network byte order, base64url without padding: 4 bytes (6 characters) for IPv4, 16 bytes (22 characters) for IPv6. An IPv4-mapped IPv6 address (`::ffff:0:0/96`) is not canonical — it is sent as its IPv4 address — and is malformed. |
/// | `tag`       | HMAC-SHA256 over the MAC input below, 32 bytes, base64url without padding (43 characters). |
///
/// base64url is RFC 4648 §5 (`A-Z a-z 0-9 - _`); padding (`=`) and non-zero unused trailing
/// bits are malformed, so every signed content has exactly one encoding. The longest value is
/// 123 bytes.
///
/// The **MAC input** is the concatenation, with no separators:
///
/// | bytes   | content                                                      |
/// |---------|--------------------------------------------------------------|
/// | 4       | ASCII `TBIP` (the scheme's label)                            |
/// | 1       | `0x01`, the version                                          |
/// | 1       | the family: `0x04` (IPv4) or `0x06` (IPv6)                   |
/// | 4 or 16 | the address bytes, network order                             |
/// | 8       | the timestamp, unsigned 64-bit big-endian                    |
/// | 1       | the key id's length *k* (1 to 32)                            |
/// | *k*     | the key id, ASCII                                            |
/// | 1       | the audience's length *a* (0 when no audience is configured) |
/// | *a*     | the audience, ASCII (1 to 255 visible characters)            |
///
/// The audience is covered by the tag but not sent: signer and verifier must be configured
/// with the same one (or both with none). Every field has a fixed size or a length prefix, so
/// two different contents never produce the same input. The tag is HMAC-SHA256 keyed with the
/// shared secret (at least 32 bytes).
///
/// A value verifies when the key id is configured, the tag matches, and
/// `now − max_age ≤ timestamp ≤ now + max_skew`, with `now` the verifier's Unix time in
/// whole seconds. A future version changes the `v1` field and the MAC input's version byte.
///
/// # Examples
///
/// The origin, and a signed request:
///
/// ```
/// use std::net::IpAddr;
/// use http::{HeaderName, Request};
/// use tower_bouncer::client_ip::{
///     ClientIpLayer, RequestView, Resolution, ResolveClientIp, SignedHeader, Signer,
///     SigningKey, SigningKeys, SourceKind,
/// };
///
/// let secret = [42u8; 32]; // in production: 32+ random bytes from your secret store
/// let header = HeaderName::from_static("x-signed-client-ip");
/// let source = SignedHeader::new(header.clone(), SigningKeys::new(SigningKey::new("k1", secret)?));
///
/// // What the serverless function does:
/// let client: IpAddr = "203.0.113.7".parse().unwrap();
/// let value = Signer::new("k1", secret)?.sign_now(client);
///
/// let request = Request::builder().header(header, value).body(()).unwrap();
/// let resolution = source.resolve(&RequestView::new(&request));
/// assert_eq!(resolution, Resolution::resolved(client, SourceKind::Signed));
///
/// // Direct traffic has no signed header: the source is absent and a chain moves on.
/// let direct = Request::new(());
/// assert!(matches!(source.resolve(&RequestView::new(&direct)), Resolution::Absent(_)));
///
/// let layer = ClientIpLayer::new(source);
/// # let _ = layer;
/// # Ok::<(), tower_bouncer::ConfigError>(())
/// ```
///
/// Customised: two keys during a rotation, an audience, a shorter window, a fixed clock:
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use http::HeaderName;
/// use tower_bouncer::client_ip::{Reason, SignedHeader, Signer, SigningKeys};
///
/// let keys = SigningKeys::parse_kid_secrets([
///     "2026-10:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc",
///     "2026-11:CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk",
/// ])?;
/// let source = SignedHeader::new(HeaderName::from_static("x-signed-client-ip"), keys)
///     .audience("api.example.com")?
///     .max_age(Duration::from_secs(30))?
///     .max_skew(Duration::from_secs(2))?
///     .with_clock(|| UNIX_EPOCH + Duration::from_secs(1_790_000_000));
///
/// let signer = Signer::new("2026-11", [9u8; 32])?.audience("api.example.com")?;
/// let ip = "2001:db8::7".parse().unwrap();
/// let fresh = signer.sign(ip, 1_790_000_000 - 30);
/// assert_eq!(source.verify(fresh.as_bytes()), Ok(ip));
/// let stale = signer.sign(ip, 1_790_000_000 - 31);
/// assert_eq!(source.verify(stale.as_bytes()), Err(Reason::SignatureExpired));
///
/// // Minted for another origin: the tag does not match.
/// let elsewhere = Signer::new("2026-11", [9u8; 32])?.audience("admin.example.com")?;
/// let value = elsewhere.sign(ip, 1_790_000_000);
/// assert_eq!(source.verify(value.as_bytes()), Err(Reason::SignatureMismatch));
/// # Ok::<(), tower_bouncer::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct SignedHeader {
    name: HeaderName,
    keys: SigningKeys,
    audience: Option<Box<str>>,
    max_age: u64,
    max_skew: u64,
    clock: Option<Clock>,
}

impl SignedHeader {
    /// A source reading header `name`, accepting values signed with any key of `keys`, with a
    /// window of 60 seconds, 5 seconds of clock skew into the future, no audience, and the
    /// system clock.
    pub fn new(name: HeaderName, keys: SigningKeys) -> Self {
        Self {
            name,
            keys,
            audience: None,
            max_age: DEFAULT_MAX_AGE,
            max_skew: DEFAULT_MAX_SKEW,
            clock: None,
        }
    }

    /// How old a value may be: its timestamp may be up to this far in the past (default
    /// 60 seconds; whole seconds, a fraction is dropped). A clock behind the signer's by up to
    /// this much is covered too. A replayed value stays usable this long: keep it short.
    ///
    /// # Errors
    ///
    /// When shorter than 1 second or longer than 1 hour.
    pub fn max_age(mut self, max_age: Duration) -> Result<Self, ConfigError> {
        let seconds = max_age.as_secs();
        if !(1..=MAX_MAX_AGE).contains(&seconds) {
            return Err(ConfigError::new(
                "the signed header's max age must be between 1 second and 1 hour",
            ));
        }
        self.max_age = seconds;
        Ok(self)
    }

    /// How far into the future a timestamp may be, for a signer whose clock runs ahead of this
    /// server's (default 5 seconds; whole seconds, a fraction is dropped).
    ///
    /// # Errors
    ///
    /// When longer than 60 seconds.
    pub fn max_skew(mut self, max_skew: Duration) -> Result<Self, ConfigError> {
        let seconds = max_skew.as_secs();
        if seconds > MAX_MAX_SKEW {
            return Err(ConfigError::new(
                "the signed header's max clock skew must be at most 60 seconds",
            ));
        }
        self.max_skew = seconds;
        Ok(self)
    }

    /// Requires values signed for `audience` (for example this origin's host name), so a value
    /// minted for another origin sharing the key does not verify here. The signer must use the
    /// same audience ([`Signer::audience`]); it is compared byte for byte.
    ///
    /// # Errors
    ///
    /// When the audience is not 1 to 255 visible ASCII characters.
    pub fn audience(mut self, audience: &str) -> Result<Self, ConfigError> {
        self.audience = Some(keys::check_audience(audience)?);
        Ok(self)
    }

    /// Reads the time from `clock` instead of [`SystemTime::now`] (for tests, or a clock of
    /// your own).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The header this source reads.
    pub fn header_name(&self) -> &HeaderName {
        &self.name
    }

    /// The accepted keys.
    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }

    /// Verifies one header value and returns the signed client address (canonical), or why
    /// it is refused. This is what [`resolve`](ResolveClientIp::resolve) does with the
    /// header's single line; it never allocates.
    ///
    /// # Errors
    ///
    /// [`Reason::SignatureMalformed`], [`Reason::UnknownKeyId`], [`Reason::SignatureMismatch`],
    /// [`Reason::SignatureExpired`] or [`Reason::SignatureFromFuture`], checked in that order.
    pub fn verify(&self, value: &[u8]) -> Result<IpAddr, Reason> {
        let parsed = wire::parse(value).ok_or(Reason::SignatureMalformed)?;
        let key = self.keys.find(parsed.kid).ok_or(Reason::UnknownKeyId)?;
        let mut mac = key.mac().clone();
        let audience = self.audience.as_deref().unwrap_or("").as_bytes();
        wire::feed(&mut mac, parsed.ip, parsed.timestamp, parsed.kid, audience);
        let expected = mac.finalize().into_bytes();
        if !bool::from(expected.as_slice().ct_eq(&parsed.tag)) {
            return Err(Reason::SignatureMismatch);
        }
        let now = self.now_unix();
        if parsed.timestamp > now {
            if parsed.timestamp - now > self.max_skew {
                return Err(Reason::SignatureFromFuture);
            }
        } else if now - parsed.timestamp > self.max_age {
            return Err(Reason::SignatureExpired);
        }
        Ok(parsed.ip)
    }

    /// The verifier's Unix time in whole seconds (0 for a clock before the epoch).
    fn now_unix(&self) -> u64 {
        let now = match &self.clock {
            Some(clock) => clock(),
            None => SystemTime::now(),
        };
        now.duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs())
    }
}

impl SignedHeader {
    /// The resolution, reporting the header's value and the check that failed to `observe`.
    fn walk<'a>(
        &'a self,
        request: &RequestView<'a>,
        observe: &mut (impl FnMut(Event<'a>) + ?Sized),
    ) -> Resolution {
        let mut lines = request.headers().get_all(&self.name).iter();
        let Some(value) = lines.next() else {
            return Resolution::Absent(Reason::HeaderMissing);
        };
        let (resolution, verdict) = if lines.next().is_some() {
            let reason = Reason::DuplicateHeader;
            (Resolution::Untrustworthy(reason), Verdict::Stopped(reason))
        } else {
            match self.verify(value.as_bytes()) {
                Ok(ip) => (
                    Resolution::resolved(ip, SourceKind::Signed),
                    Verdict::Client,
                ),
                Err(reason) => (Resolution::Untrustworthy(reason), Verdict::Stopped(reason)),
            }
        };
        observe(Event::Header {
            name: self.name.as_str(),
            raw: value.as_bytes(),
            verdict,
        });
        resolution
    }
}

impl ResolveClientIp for SignedHeader {
    fn resolve(&self, request: &RequestView<'_>) -> Resolution {
        self.walk(request, &mut ignore)
    }

    fn explain(&self, request: &RequestView<'_>) -> Explanation {
        let mut events = Vec::new();
        let resolution = self.walk(request, &mut |event| events.push(event));
        let mut explanation = Explanation::new(format!("signed:{}", self.name), resolution)
            .with_trusted(format!(
                "key ids {}",
                self.keys.key_ids().collect::<Vec<_>>().join(", ")
            ));
        for event in events {
            explanation.record(event);
        }
        explanation
    }

    fn headers_read(&self) -> &[HeaderName] {
        std::slice::from_ref(&self.name)
    }
}

impl fmt::Debug for SignedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedHeader")
            .field("name", &self.name)
            .field("keys", &self.keys)
            .field("audience", &self.audience)
            .field("max_age", &Duration::from_secs(self.max_age))
            .field("max_skew", &Duration::from_secs(self.max_skew))
            .field(
                "clock",
                &if self.clock.is_some() {
                    "custom"
                } else {
                    "system"
                },
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use http::Request;

    use super::*;

    const NOW: u64 = 1_790_000_000;
    const SECRET: [u8; 32] = [0x5A; 32];

    fn source() -> SignedHeader {
        let keys = SigningKeys::new(SigningKey::new("k1", SECRET).unwrap());
        SignedHeader::new(HeaderName::from_static("x-signed-client-ip"), keys)
            .with_clock(|| UNIX_EPOCH + Duration::from_secs(NOW))
    }

    fn signer() -> Signer {
        Signer::new("k1", SECRET).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn public_types_are_send_sync_clone() {
        fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync_clone::<SignedHeader>();
        assert_send_sync_clone::<Signer>();
        assert_send_sync_clone::<SigningKey>();
        assert_send_sync_clone::<SigningKeys>();
    }

    #[test]
    fn verify_answers_in_the_documented_order() {
        let source = source();
        let good = signer().sign(ip("203.0.113.7"), NOW);
        let good = good.to_str().unwrap();
        // Malformed beats everything.
        assert_eq!(
            source.verify(b"v1.nokey.1.x.y"),
            Err(Reason::SignatureMalformed)
        );
        // An unknown key id is reported before the tag is looked at.
        let unknown = good.replacen("v1.k1.", "v1.k2.", 1);
        assert_eq!(source.verify(unknown.as_bytes()), Err(Reason::UnknownKeyId));
        // A forged value that is also expired is a mismatch, not expired: the clock cannot
        // be probed without a key.
        let forged_old = signer().sign(ip("203.0.113.7"), 5);
        let forged_old = forged_old.to_str().unwrap();
        let forged_old = format!("{}A", &forged_old[..forged_old.len() - 1]);
        assert_eq!(
            source.verify(forged_old.as_bytes()),
            Err(Reason::SignatureMismatch)
        );
        // A genuine old value is expired.
        let old = signer().sign(ip("203.0.113.7"), 5);
        assert_eq!(source.verify(old.as_bytes()), Err(Reason::SignatureExpired));
    }

    #[test]
    fn the_window_boundaries_are_inclusive() {
        let source = source().max_age(Duration::from_secs(60)).unwrap();
        let at = |timestamp| source.verify(signer().sign(ip("192.0.2.1"), timestamp).as_bytes());
        assert_eq!(at(NOW), Ok(ip("192.0.2.1")));
        assert_eq!(at(NOW - 60), Ok(ip("192.0.2.1")));
        assert_eq!(at(NOW - 61), Err(Reason::SignatureExpired));
        assert_eq!(at(NOW + 5), Ok(ip("192.0.2.1")));
        assert_eq!(at(NOW + 6), Err(Reason::SignatureFromFuture));
        assert_eq!(at(0), Err(Reason::SignatureExpired));
        assert_eq!(at(u64::MAX), Err(Reason::SignatureFromFuture));
    }

    #[test]
    fn a_clock_before_the_epoch_refuses_everything_but_time_zero() {
        let source = source().with_clock(|| UNIX_EPOCH - Duration::from_secs(10));
        let at = |timestamp| source.verify(signer().sign(ip("192.0.2.1"), timestamp).as_bytes());
        assert_eq!(at(NOW), Err(Reason::SignatureFromFuture));
        assert_eq!(at(0), Ok(ip("192.0.2.1")));
    }

    #[test]
    fn the_clock_is_read_on_every_verification() {
        let now = Arc::new(AtomicU64::new(NOW));
        let clock = Arc::clone(&now);
        let source = source()
            .with_clock(move || UNIX_EPOCH + Duration::from_secs(clock.load(Ordering::Relaxed)));
        let value = signer().sign(ip("192.0.2.1"), NOW);
        assert!(source.verify(value.as_bytes()).is_ok());
        now.store(NOW + 61, Ordering::Relaxed);
        assert_eq!(
            source.verify(value.as_bytes()),
            Err(Reason::SignatureExpired)
        );
    }

    #[test]
    fn settings_are_bounded() {
        assert!(source().max_age(Duration::from_millis(999)).is_err());
        assert!(source().max_age(Duration::from_secs(1)).is_ok());
        assert!(source().max_age(Duration::from_secs(3600)).is_ok());
        assert!(source().max_age(Duration::from_secs(3601)).is_err());
        assert!(source().max_skew(Duration::ZERO).is_ok());
        assert!(source().max_skew(Duration::from_secs(60)).is_ok());
        assert!(source().max_skew(Duration::from_secs(61)).is_err());
        assert!(source().audience("").is_err());
    }

    #[test]
    fn mapped_addresses_are_signed_as_ipv4() {
        let mapped = signer().sign(ip("::ffff:203.0.113.7"), NOW);
        let plain = signer().sign(ip("203.0.113.7"), NOW);
        assert_eq!(mapped, plain);
        assert_eq!(source().verify(mapped.as_bytes()), Ok(ip("203.0.113.7")));
    }

    #[test]
    fn the_audience_must_match_on_both_sides() {
        let with = signer().audience("api.example.com").unwrap();
        let value = with.sign(ip("192.0.2.1"), NOW);
        assert_eq!(
            source().verify(value.as_bytes()),
            Err(Reason::SignatureMismatch)
        );
        let source = source().audience("api.example.com").unwrap();
        assert_eq!(source.verify(value.as_bytes()), Ok(ip("192.0.2.1")));
        let without = signer().sign(ip("192.0.2.1"), NOW);
        assert_eq!(
            source.verify(without.as_bytes()),
            Err(Reason::SignatureMismatch)
        );
        let other = signer()
            .audience("API.example.com")
            .unwrap()
            .sign(ip("192.0.2.1"), NOW);
        assert_eq!(
            source.verify(other.as_bytes()),
            Err(Reason::SignatureMismatch)
        );
    }

    #[test]
    fn resolve_reads_exactly_one_line() {
        let source = source();
        let name = source.header_name().clone();
        let value = signer().sign(ip("192.0.2.1"), NOW);

        let none = Request::new(());
        assert_eq!(
            source.resolve(&RequestView::new(&none)),
            Resolution::Absent(Reason::HeaderMissing)
        );
        let one = Request::builder().header(&name, &value).body(()).unwrap();
        assert_eq!(
            source.resolve(&RequestView::new(&one)),
            Resolution::resolved(ip("192.0.2.1"), SourceKind::Signed)
        );
        let two = Request::builder()
            .header(&name, &value)
            .header(&name, &value)
            .body(())
            .unwrap();
        assert_eq!(
            source.resolve(&RequestView::new(&two)),
            Resolution::Untrustworthy(Reason::DuplicateHeader)
        );
        let empty = Request::builder().header(&name, "").body(()).unwrap();
        assert_eq!(
            source.resolve(&RequestView::new(&empty)),
            Resolution::Untrustworthy(Reason::SignatureMalformed)
        );
    }

    #[test]
    fn debug_names_settings_and_key_ids_only() {
        let text = format!("{:?}", source().audience("api.example.com").unwrap());
        assert_eq!(
            text,
            "SignedHeader { name: \"x-signed-client-ip\", keys: SigningKeys { kids: [\"k1\"] }, \
             audience: Some(\"api.example.com\"), max_age: 60s, max_skew: 5s, clock: \"custom\" }"
        );
        let signer = format!("{:?}", signer());
        assert_eq!(
            signer,
            r#"Signer { kid: "k1", audience: None, secret: "<redacted>" }"#
        );
    }
}
