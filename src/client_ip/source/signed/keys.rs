//! Signing keys: a key id and an HMAC-SHA256 secret, checked once when they are built.

use std::fmt;
use std::str::FromStr;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ConfigError;

/// The one MAC of wire version 1.
pub(super) type HmacSha256 = Hmac<Sha256>;

/// The longest key id, in bytes.
pub(super) const MAX_KEY_ID_LEN: usize = 32;
/// The shortest secret, in bytes.
pub(super) const MIN_SECRET_LEN: usize = 32;
/// The longest audience, in bytes.
pub(super) const MAX_AUDIENCE_LEN: usize = 255;
/// The most keys one [`SigningKeys`] holds (the verifier scans them in order).
pub(super) const MAX_KEYS: usize = 16;

/// base64url for secrets given as text: padding optional, non-canonical trailing bits refused.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

const KEY_ID_RULE: &str = "a signing key id must be 1 to 32 characters of A-Z a-z 0-9 _ -";

/// `true` for a well-formed key id: 1 to 32 bytes of `A-Z a-z 0-9 _ -`.
pub(super) fn is_valid_key_id(kid: &[u8]) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&kid.len())
        && kid
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || *byte == b'_' || *byte == b'-')
}

/// Checks an audience: 1 to 255 bytes of visible ASCII (`!` to `~`).
pub(super) fn check_audience(audience: &str) -> Result<Box<str>, ConfigError> {
    let bytes = audience.as_bytes();
    if (1..=MAX_AUDIENCE_LEN).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_graphic) {
        Ok(audience.into())
    } else {
        Err(ConfigError::new(
            "the audience must be 1 to 255 visible ascii characters (no spaces)",
        ))
    }
}

/// One signing key: a key id and an HMAC-SHA256 secret of at least 32 bytes.
///
/// The key id travels in every signed header, so the verifier knows which secret to check the
/// tag with; it is not secret. It is 1 to 32 characters of `A-Z a-z 0-9 _ -` (for example
/// `2026-11` or `edge-a`).
///
/// The secret itself is not kept: the key holds the HMAC state derived from it, computed once
/// here, so signing and verifying never rehash the secret. Neither the secret nor that state
/// appears in `Debug` output or in errors: `Debug` shows the key id only.
///
/// ```
/// use tower_bouncer::client_ip::SigningKey;
///
/// // The form of the example server's `--signing-key KID:SECRET` (SECRET in base64url).
/// let key = SigningKey::parse_kid_secret("2026-11:c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0NTY3OA")?;
/// assert_eq!(key.key_id(), "2026-11");
/// assert_eq!(format!("{key:?}"), r#"SigningKey { kid: "2026-11", secret: "<redacted>" }"#);
///
/// // A short secret is a configuration error.
/// assert!(SigningKey::new("old", b"too short").is_err());
/// # Ok::<(), tower_bouncer::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct SigningKey {
    kid: Box<str>,
    mac: HmacSha256,
}

impl SigningKey {
    /// A key from its id and its raw secret bytes.
    ///
    /// # Errors
    ///
    /// When the key id is not 1 to 32 characters of `A-Z a-z 0-9 _ -`, or the secret is shorter
    /// than 32 bytes. The error never contains the secret.
    pub fn new(kid: &str, secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        if !is_valid_key_id(kid.as_bytes()) {
            return Err(ConfigError::new(KEY_ID_RULE));
        }
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_LEN {
            return Err(ConfigError::new(format!(
                "signing key `{kid}`: the secret has {} bytes, at least {MIN_SECRET_LEN} are required",
                secret.len()
            )));
        }
        let mac = HmacSha256::new_from_slice(secret)
            .map_err(|_| ConfigError::new(format!("signing key `{kid}`: unusable secret")))?;
        Ok(Self {
            kid: kid.into(),
            mac,
        })
    }

    /// A key from the text `KID:SECRET`, the secret in base64url (padding optional), as the
    /// example server's `--signing-key` takes it.
    ///
    /// Generate a secret with `openssl rand 32 | basenc --base64url` (or any 32+ random bytes
    /// encoded in base64url).
    ///
    /// # Errors
    ///
    /// When there is no `:`, the key id is not valid, the secret is not base64url, or it decodes
    /// to fewer than 32 bytes. The error never contains the secret (nor the text before the
    /// `:` when that is not a valid key id: it might be a misplaced secret).
    pub fn parse_kid_secret(spec: &str) -> Result<Self, ConfigError> {
        let Some((kid, secret)) = spec.split_once(':') else {
            return Err(ConfigError::new(
                "a signing key must be written KID:SECRET, the secret in base64url",
            ));
        };
        if !is_valid_key_id(kid.as_bytes()) {
            return Err(ConfigError::new(KEY_ID_RULE));
        }
        let secret = SECRET_BASE64.decode(secret.as_bytes()).map_err(|_| {
            ConfigError::new(format!(
                "signing key `{kid}`: the secret is not base64url (A-Z a-z 0-9 - _)"
            ))
        })?;
        Self::new(kid, secret)
    }

    /// The key id.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// The HMAC state keyed with this secret; cloned once per signature or verification.
    pub(super) fn mac(&self) -> &HmacSha256 {
        &self.mac
    }
}

impl FromStr for SigningKey {
    type Err = ConfigError;

    /// Same as [`SigningKey::parse_kid_secret`].
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        Self::parse_kid_secret(spec)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The keys a [`SignedHeader`](super::SignedHeader) accepts: one or more (at most 16), with
/// distinct key ids.
///
/// Several keys at once is how keys rotate without downtime: add the new key here, switch the
/// signer to it, then remove the old one (see [`SignedHeader`](super::SignedHeader)).
///
/// ```
/// use tower_bouncer::client_ip::{SigningKey, SigningKeys};
///
/// let keys = SigningKeys::new(SigningKey::new("2026-10", [7u8; 32])?)
///     .with_key(SigningKey::new("2026-11", [9u8; 32])?)?;
/// assert_eq!(keys.key_ids().collect::<Vec<_>>(), ["2026-10", "2026-11"]);
///
/// // The example server's repeatable `--signing-key KID:SECRET`:
/// let keys = SigningKeys::parse_kid_secrets([
///     "2026-10:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc",
///     "2026-11:CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk",
/// ])?;
/// assert_eq!(keys.len(), 2);
///
/// // Two keys with one id is a configuration error.
/// assert!(keys.with_key(SigningKey::new("2026-11", [1u8; 32])?).is_err());
/// # Ok::<(), tower_bouncer::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct SigningKeys {
    keys: Vec<SigningKey>,
}

impl SigningKeys {
    /// A key set holding one key.
    pub fn new(key: SigningKey) -> Self {
        Self { keys: vec![key] }
    }

    /// Adds a key.
    ///
    /// # Errors
    ///
    /// When a key with the same id is already in the set, or the set already holds 16 keys.
    pub fn with_key(mut self, key: SigningKey) -> Result<Self, ConfigError> {
        if self.find(key.kid.as_bytes()).is_some() {
            return Err(ConfigError::new(format!(
                "duplicate signing key id `{}`",
                key.kid
            )));
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(ConfigError::new(format!(
                "at most {MAX_KEYS} signing keys can be configured at once"
            )));
        }
        self.keys.push(key);
        Ok(self)
    }

    /// A key set from several keys.
    ///
    /// # Errors
    ///
    /// When there is no key, two keys share an id, or there are more than 16 keys.
    pub fn from_keys(keys: impl IntoIterator<Item = SigningKey>) -> Result<Self, ConfigError> {
        let mut keys = keys.into_iter();
        let Some(first) = keys.next() else {
            return Err(ConfigError::new("at least one signing key is required"));
        };
        keys.try_fold(Self::new(first), Self::with_key)
    }

    /// A key set from `KID:SECRET` texts (see [`SigningKey::parse_kid_secret`]), as the example
    /// server's repeatable `--signing-key` takes them.
    ///
    /// # Errors
    ///
    /// When a text is not a valid key, there is no text, two keys share an id, or there are
    /// more than 16 keys.
    pub fn parse_kid_secrets<S: AsRef<str>>(
        specs: impl IntoIterator<Item = S>,
    ) -> Result<Self, ConfigError> {
        let keys = specs
            .into_iter()
            .map(|spec| SigningKey::parse_kid_secret(spec.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_keys(keys)
    }

    /// The key ids, in the order the keys were added.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.keys.iter().map(SigningKey::key_id)
    }

    /// How many keys the set holds (at least one).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always `false`: a key set holds at least one key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key with this id. Key ids are public, so a plain comparison is fine.
    pub(super) fn find(&self, kid: &[u8]) -> Option<&SigningKey> {
        self.keys.iter().find(|key| key.kid.as_bytes() == kid)
    }
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("kids", &KeyIds(self))
            .finish()
    }
}

/// Debug-prints the key ids of a set as a list.
struct KeyIds<'a>(&'a SigningKeys);

impl fmt::Debug for KeyIds<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.key_ids()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_follow_the_charset_and_length() {
        for good in ["a", "K1", "2026-11", "edge_a", &"x".repeat(32)] {
            assert!(is_valid_key_id(good.as_bytes()), "{good}");
        }
        for bad in ["", "a.b", "a:b", "a b", "é", "a/b", "a=b", &"x".repeat(33)] {
            assert!(!is_valid_key_id(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn secrets_shorter_than_32_bytes_are_refused() {
        assert!(SigningKey::new("k", [0u8; 31]).is_err());
        assert!(SigningKey::new("k", [0u8; 32]).is_ok());
        let error = SigningKey::new("k", [0u8; 5]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "signing key `k`: the secret has 5 bytes, at least 32 are required"
        );
    }

    #[test]
    fn kid_secret_text_accepts_base64url_with_or_without_padding() {
        // 32 bytes: 43 characters unpadded, 44 with one `=`.
        let unpadded = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA";
        assert!(SigningKey::parse_kid_secret(&format!("k:{unpadded}")).is_ok());
        assert!(SigningKey::parse_kid_secret(&format!("k:{unpadded}=")).is_ok());
    }

    #[test]
    fn kid_secret_text_errors_never_echo_the_secret() {
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0NTY3OA";
        let cases = [
            secret.to_owned(),                 // no colon
            format!("{secret}:kid"),           // swapped: the secret is read as a kid
            format!("kid:{secret}+"),          // not base64url
            format!("kid:{}", &secret[..20]),  // too short once decoded
            format!("bad kid:{secret}"),       // bad kid
            format!("kid:{}/", &secret[..40]), // standard base64 alphabet
        ];
        for spec in &cases {
            let message = SigningKey::parse_kid_secret(spec).unwrap_err().to_string();
            assert!(!message.contains(&secret[..16]), "{message}");
        }
    }

    #[test]
    fn key_sets_refuse_duplicates_empty_and_too_many() {
        let key = |kid: &str| SigningKey::new(kid, [3u8; 32]).unwrap();
        assert!(SigningKeys::new(key("a")).with_key(key("a")).is_err());
        assert!(SigningKeys::from_keys([]).is_err());
        assert!(SigningKeys::parse_kid_secrets(Vec::<String>::new()).is_err());
        let many = (0..MAX_KEYS).map(|index| key(&format!("k{index}")));
        let full = SigningKeys::from_keys(many).unwrap();
        assert_eq!(full.len(), MAX_KEYS);
        assert!(full.with_key(key("one-more")).is_err());
    }

    #[test]
    fn audiences_are_visible_ascii_up_to_255_bytes() {
        assert!(check_audience("api.example.com").is_ok());
        assert!(check_audience(&"a".repeat(255)).is_ok());
        for bad in ["", "a b", "é", "a\tb", &"a".repeat(256)] {
            assert!(check_audience(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let keys = SigningKeys::new(SigningKey::new("old", [0xAB; 32]).unwrap())
            .with_key(SigningKey::new("new", [0xCD; 32]).unwrap())
            .unwrap();
        assert_eq!(
            format!("{keys:?}"),
            r#"SigningKeys { kids: ["old", "new"] }"#
        );
    }
}
