//! The Rust signer: what the first hop that sees the real client runs.

use std::fmt;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::Mac;
use http::HeaderValue;

use super::keys::{check_audience, SigningKey};
use super::wire;
use crate::ConfigError;

/// Mints signed client-IP header values that a [`SignedHeader`](super::SignedHeader) verifies.
///
/// Run it where the real client is known — a serverless function behind the first CDN hop, an
/// edge worker — and send the value to the origin in the header the origin reads. A
/// JavaScript twin for Vercel, Cloudflare Workers, Deno and Node lives in the repository's
/// `examples/signers/tower-bouncer-signer.mjs`; both produce the same bytes.
///
/// ```
/// use std::net::IpAddr;
/// use tower_bouncer::client_ip::Signer;
///
/// let signer = Signer::new("2026-11", [42u8; 32])?.audience("api.example.com")?;
/// let ip: IpAddr = "203.0.113.7".parse().unwrap();
/// let value = signer.sign(ip, 1_790_000_000);
/// assert!(value.to_str().unwrap().starts_with("v1.2026-11.1790000000.ywBxBw."));
///
/// // In production, the current time:
/// let _value = signer.sign_now(ip);
/// # Ok::<(), tower_bouncer::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    audience: Option<Box<str>>,
}

impl Signer {
    /// A signer with key id `kid` and a secret of at least 32 bytes.
    ///
    /// # Errors
    ///
    /// As [`SigningKey::new`]: a bad key id or a short secret.
    pub fn new(kid: &str, secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        SigningKey::new(kid, secret).map(Self::from_key)
    }

    /// A signer with an existing key.
    pub fn from_key(key: SigningKey) -> Self {
        Self {
            key,
            audience: None,
        }
    }

    /// Binds every value to `audience` (for example the origin's host name): the tag covers
    /// it, so a value minted for one origin does not verify at another. The verifier must be
    /// configured with the same audience ([`SignedHeader::audience`](super::SignedHeader::audience));
    /// it is compared byte for byte, so use one spelling (lowercase host names).
    ///
    /// # Errors
    ///
    /// When the audience is not 1 to 255 visible ASCII characters.
    pub fn audience(mut self, audience: &str) -> Result<Self, ConfigError> {
        self.audience = Some(check_audience(audience)?);
        Ok(self)
    }

    /// The key id this signer puts in its values.
    pub fn key_id(&self) -> &str {
        self.key.key_id()
    }

    /// The header value for client `ip` at `unix_time` (seconds since the Unix epoch).
    ///
    /// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) is signed as the IPv4 address.
    pub fn sign(&self, ip: IpAddr, unix_time: u64) -> HeaderValue {
        let ip = ip.to_canonical();
        let mut mac = self.key.mac().clone();
        let audience = self.audience.as_deref().unwrap_or("").as_bytes();
        wire::feed(
            &mut mac,
            ip,
            unix_time,
            self.key.key_id().as_bytes(),
            audience,
        );
        let tag: [u8; wire::TAG_LEN] = mac.finalize().into_bytes().into();
        let value = wire::encode(self.key.key_id(), unix_time, ip, &tag);
        // Unreachable error: the value is built from `A-Z a-z 0-9 . _ -` only (the key id is
        // checked at build time), all valid header value bytes.
        HeaderValue::try_from(value).expect("a signed value is visible ascii")
    }

    /// The header value for client `ip` at the current system time.
    pub fn sign_now(&self, ip: IpAddr) -> HeaderValue {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        self.sign(ip, now)
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.key.key_id())
            .field("audience", &self.audience)
            .field("secret", &"<redacted>")
            .finish()
    }
}
