//! What a request is counted against: the [`ExtractKey`] trait and the built-in keys.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::Policy;
use crate::client_ip::{ClientIp, RequestView};
use crate::ConfigError;

/// Computes the rate-limit key of a request: the bucket it is counted against.
///
/// A key extractor reads only what it can trust: the [`ClientIp`] that
/// [`ClientIpLayer`](crate::ClientIpLayer) resolved, an identity the authentication layer put
/// into the extensions, the route the router matched. It never reads a raw header a client can
/// choose — a client that can change its key at will has no limit at all.
///
/// Answer `None` when the key cannot be computed (no `ClientIp` in the extensions, no
/// identity): the layer then applies its [`OnMissingKey`](super::OnMissingKey) policy. It never
/// counts such a request in some shared bucket.
///
/// The built-ins: [`IpKey`] (the default), [`ExtensionKey`], [`GlobalKey`], [`Scoped`],
/// `RouteKey` (feature `axum`), tuples `(A, B)` and `(A, B, C)` (all parts at once), and
/// [`or`](Self::or) (the first that answers).
///
/// # Implementing it
///
/// ```
/// use tower_bouncer::client_ip::RequestView;
/// use tower_bouncer::rate_limit::ExtractKey;
///
/// /// The tenant id a tenant-resolution layer put into the extensions.
/// #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
/// struct TenantId(u64);
///
/// /// One bucket per tenant.
/// #[derive(Debug)]
/// struct TenantKey;
///
/// impl ExtractKey for TenantKey {
///     type Key = TenantId;
///
///     fn extract_key(&self, request: &RequestView<'_>) -> Option<TenantId> {
///         request.extensions().get::<TenantId>().copied()
///     }
/// }
/// ```
///
/// (This one is [`ExtensionKey<TenantId>`](ExtensionKey); it shows the shape.)
pub trait ExtractKey: fmt::Debug + Send + Sync + 'static {
    /// The key value. It is hashed and compared on every request, and stored in the rate-limit
    /// store for as long as its bucket is tracked: keep it small.
    type Key: Hash + Eq + Clone + Send + Sync + fmt::Debug + 'static;

    /// The key of `request`, or `None` when it cannot be computed. Must not panic, block, or
    /// read anything a client can choose freely.
    fn extract_key(&self, request: &RequestView<'_>) -> Option<Self::Key>;

    /// The policy for `key` when it is not the layer's own: `None` (the default) keeps the
    /// layer's policy.
    ///
    /// This is how the quota differs per key: [`Tiered`](super::Tiered) (from
    /// [`RateLimitLayerBuilder::tiers`](super::RateLimitLayerBuilder::tiers)) answers its
    /// tier's policy. A key must always get the same policy, and keys with different policies
    /// must never be equal — `Tiered` puts the tier into the key for that. Scopes, `Arc`,
    /// `Box`, [`or`](Self::or) and tuples pass the question on to their parts (a tuple asks
    /// its parts in order).
    fn policy(&self, key: &Self::Key) -> Option<&Policy> {
        let _ = key;
        None
    }

    /// Falls back to `other` when this extractor has no key: for example the user id when the
    /// caller is signed in, else the client IP.
    ///
    /// The two kinds of key never share a bucket: the key is an [`Either`].
    ///
    /// ```
    /// use tower_bouncer::rate_limit::{ExtensionKey, ExtractKey, IpKey};
    ///
    /// #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    /// struct UserId(u64);
    ///
    /// let key = ExtensionKey::<UserId>::new().or(IpKey::new());
    /// # let _ = key;
    /// ```
    fn or<B: ExtractKey>(self, other: B) -> Or<Self, B>
    where
        Self: Sized,
    {
        Or {
            first: self,
            second: other,
        }
    }

    /// Puts this key in a named scope: buckets of different scopes never meet, buckets of the
    /// same scope are shared by every layer that uses the same store. See [`Scoped`].
    fn scoped(self, scope: &'static str) -> Scoped<Self>
    where
        Self: Sized,
    {
        Scoped::new(scope, self)
    }
}

impl<E: ExtractKey + ?Sized> ExtractKey for Arc<E> {
    type Key = E::Key;

    fn extract_key(&self, request: &RequestView<'_>) -> Option<Self::Key> {
        (**self).extract_key(request)
    }

    fn policy(&self, key: &Self::Key) -> Option<&Policy> {
        (**self).policy(key)
    }
}

impl<E: ExtractKey + ?Sized> ExtractKey for Box<E> {
    type Key = E::Key;

    fn extract_key(&self, request: &RequestView<'_>) -> Option<Self::Key> {
        (**self).extract_key(request)
    }

    fn policy(&self, key: &Self::Key) -> Option<&Policy> {
        (**self).policy(key)
    }
}

// ---------------------------------------------------------------------------------------------
// IpKey

/// The client IP, masked to a prefix: the default key.
///
/// It reads the [`ClientIp`] that [`ClientIpLayer`](crate::ClientIpLayer) put into the request
/// extensions — never a header — so it is exactly as trustworthy as the client-IP source you
/// configured. A request without a `ClientIp` has no key (the layer's
/// [`OnMissingKey`](super::OnMissingKey) policy applies).
///
/// **IPv6** addresses are masked to a /64 by default: one subscriber usually holds at least a
/// /64 and can rotate through 2^64 addresses in it, so a /128 key is no limit at all. Some
/// providers hand out /56 or /48; [`ipv6_prefix`](Self::ipv6_prefix) sets the length.
/// **IPv4** addresses are kept whole (/32) by default; a /24 groups a carrier-grade NAT or a
/// small hosting block ([`ipv4_prefix`](Self::ipv4_prefix)).
///
/// The key value is a [`MaskedIp`]: 16 bytes, no heap, IPv4 and IPv6 keys can never be equal.
///
/// ```
/// use tower_bouncer::rate_limit::IpKey;
///
/// let per_subscriber = IpKey::new(); // IPv6 /64, IPv4 /32
/// let coarse = IpKey::new().ipv6_prefix(48)?.ipv4_prefix(24)?;
/// assert_eq!(coarse.ipv6_prefix_len(), 48);
/// # let _ = per_subscriber;
/// # Ok::<(), tower_bouncer::ConfigError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IpKey {
    v4_mask: u32,
    v6_mask: u128,
    v4_len: u8,
    v6_len: u8,
}

impl IpKey {
    /// IPv6 masked to /64, IPv4 kept whole (/32).
    pub const fn new() -> Self {
        Self {
            v4_mask: u32::MAX,
            v6_mask: prefix_mask_128(64),
            v4_len: 32,
            v6_len: 64,
        }
    }

    /// Masks IPv6 clients to a `/len` prefix (1 to 128; /64 by default, /56 and /48 are common
    /// allocations, /128 keys single addresses).
    ///
    /// # Errors
    ///
    /// When `len` is 0 (every IPv6 client in one bucket: use [`GlobalKey`] if you mean it) or
    /// greater than 128.
    pub fn ipv6_prefix(mut self, len: u8) -> Result<Self, ConfigError> {
        if len == 0 || len > 128 {
            return Err(ConfigError::new(
                "the ipv6 key prefix must be between 1 and 128 bits",
            ));
        }
        self.v6_len = len;
        self.v6_mask = prefix_mask_128(len);
        Ok(self)
    }

    /// Masks IPv4 clients to a `/len` prefix (1 to 32; /32 by default, /24 for traffic from
    /// carrier-grade NATs or hosting blocks).
    ///
    /// # Errors
    ///
    /// When `len` is 0 or greater than 32.
    pub fn ipv4_prefix(mut self, len: u8) -> Result<Self, ConfigError> {
        if len == 0 || len > 32 {
            return Err(ConfigError::new(
                "the ipv4 key prefix must be between 1 and 32 bits",
            ));
        }
        self.v4_len = len;
        self.v4_mask = u32::MAX << (32 - u32::from(len));
        Ok(self)
    }

    /// The IPv6 prefix length.
    pub fn ipv6_prefix_len(&self) -> u8 {
        self.v6_len
    }

    /// The IPv4 prefix length.
    pub fn ipv4_prefix_len(&self) -> u8 {
        self.v4_len
    }

    /// The key of an address: masked to the configured prefix.
    pub fn mask(&self, ip: IpAddr) -> MaskedIp {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let masked = u32::from(v4) & self.v4_mask;
                MaskedIp(Ipv4Addr::from(masked).to_ipv6_mapped().octets())
            }
            IpAddr::V6(v6) => MaskedIp((u128::from(v6) & self.v6_mask).to_be_bytes()),
        }
    }
}

/// A mask with the `len` leading bits set (`len` ≤ 128).
const fn prefix_mask_128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len as u32)
    }
}

impl Default for IpKey {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for IpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpKey")
            .field("ipv4_prefix", &self.v4_len)
            .field("ipv6_prefix", &self.v6_len)
            .finish()
    }
}

impl ExtractKey for IpKey {
    type Key = MaskedIp;

    fn extract_key(&self, request: &RequestView<'_>) -> Option<MaskedIp> {
        request
            .extensions()
            .get::<ClientIp>()
            .map(|client| self.mask(client.ip()))
    }
}

/// The key value of [`IpKey`]: a client address masked to its prefix.
///
/// 16 bytes with an alignment of 1 (an IPv4 key is stored as its IPv4-mapped IPv6 form, which
/// no IPv6 key can take: [`ClientIp`] reports every IPv4-mapped address as IPv4). It prints as
/// the masked address (`203.0.113.0`, `2001:db8:1:2::`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MaskedIp([u8; 16]);

impl MaskedIp {
    /// The masked address (the network address of the client's prefix).
    pub fn ip(&self) -> IpAddr {
        Ipv6Addr::from(self.0).to_canonical()
    }
}

/// The masked address, as [`MaskedIp::ip`] gives it.
///
/// ```
/// use std::net::IpAddr;
/// use tower_bouncer::rate_limit::IpKey;
///
/// let key = IpKey::new().mask("2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse()?);
/// let network: IpAddr = key.into();
/// assert_eq!(network, "2001:db8:1:2::".parse::<IpAddr>()?); // the client's /64
///
/// let key = IpKey::new().mask("203.0.113.7".parse()?);
/// assert_eq!(IpAddr::from(key), "203.0.113.7".parse::<IpAddr>()?); // IPv4: kept whole
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl From<MaskedIp> for IpAddr {
    fn from(masked: MaskedIp) -> Self {
        masked.ip()
    }
}

impl Hash for MaskedIp {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // One 128-bit write instead of the slice impl's length prefix and byte loop.
        state.write_u128(u128::from_ne_bytes(self.0));
    }
}

impl fmt::Debug for MaskedIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.ip(), f)
    }
}

impl fmt::Display for MaskedIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.ip(), f)
    }
}

// ---------------------------------------------------------------------------------------------
// ExtensionKey

/// A value the authentication layer put into the request extensions (a user id, an API-key id,
/// a tenant): **the** way to limit on identity.
///
/// Put your authentication middleware in front of the rate-limit layer; when it has verified
/// the caller, it inserts a small id type into the extensions, and this key reads it. Never key
/// on a raw, unverified header (`Authorization`, `X-Api-Key`, `X-User-Id`): a client can send a
/// new value with every request and get a fresh bucket each time.
///
/// A request without the extension (not signed in) has no key: combine with
/// [`or`](ExtractKey::or) to fall back to the client IP.
///
/// ```
/// use tower_bouncer::rate_limit::{ExtensionKey, ExtractKey, IpKey};
///
/// /// Inserted by the authentication layer once the API key is verified.
/// #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
/// struct ApiKeyId(u32);
///
/// let per_api_key = ExtensionKey::<ApiKeyId>::new();
/// let per_api_key_else_ip = ExtensionKey::<ApiKeyId>::new().or(IpKey::new());
/// # let _ = (per_api_key, per_api_key_else_ip);
/// ```
pub struct ExtensionKey<T> {
    _value: PhantomData<fn() -> T>,
}

impl<T> ExtensionKey<T> {
    /// A key read from the `T` request extension.
    pub const fn new() -> Self {
        Self {
            _value: PhantomData,
        }
    }
}

impl<T> Default for ExtensionKey<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for ExtensionKey<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for ExtensionKey<T> {}

impl<T> fmt::Debug for ExtensionKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ExtensionKey")
            .field(&std::any::type_name::<T>())
            .finish()
    }
}

impl<T> ExtractKey for ExtensionKey<T>
where
    T: Hash + Eq + Clone + Send + Sync + fmt::Debug + 'static,
{
    type Key = T;

    fn extract_key(&self, request: &RequestView<'_>) -> Option<T> {
        request.extensions().get::<T>().cloned()
    }
}

// ---------------------------------------------------------------------------------------------
// GlobalKey, Scoped

/// One bucket for every request: a limit on the service as a whole (for example to protect a
/// fragile backend), whoever calls.
///
/// Combine with [`Scoped`] to give each protected route its own global bucket.
///
/// ```
/// use tower_bouncer::rate_limit::{ExtractKey, GlobalKey};
///
/// let whole_service = GlobalKey;
/// let export_endpoint = GlobalKey.scoped("export");
/// # let _ = (whole_service, export_endpoint);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GlobalKey;

impl ExtractKey for GlobalKey {
    type Key = ();

    fn extract_key(&self, _request: &RequestView<'_>) -> Option<()> {
        Some(())
    }
}

/// A key in a named scope: separate buckets per route or per feature.
///
/// Two layers that share a store (`.store(store.clone())`) share buckets only where both scope
/// and key are equal: `Scoped::new("login", IpKey::new())` on `/login` and
/// `Scoped::new("search", IpKey::new())` on `/search` count the same client separately, while
/// two routes scoped `"login"` count it together.
///
/// ```
/// use tower_bouncer::rate_limit::{ExtractKey, IpKey, Scoped};
///
/// let login = Scoped::new("login", IpKey::new());
/// let search = IpKey::new().scoped("search"); // the same thing, written as a method
/// # let _ = (login, search);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Scoped<E> {
    scope: &'static str,
    inner: E,
}

impl<E> Scoped<E> {
    /// `inner`'s keys, in the scope `scope`.
    pub const fn new(scope: &'static str, inner: E) -> Self {
        Self { scope, inner }
    }

    /// The scope's name.
    pub fn scope(&self) -> &'static str {
        self.scope
    }

    /// The key extractor inside the scope.
    pub fn get_ref(&self) -> &E {
        &self.inner
    }
}

impl<E: ExtractKey> ExtractKey for Scoped<E> {
    type Key = ScopedKey<E::Key>;

    fn extract_key(&self, request: &RequestView<'_>) -> Option<Self::Key> {
        self.inner.extract_key(request).map(|key| ScopedKey {
            scope: self.scope,
            key,
        })
    }

    fn policy(&self, key: &Self::Key) -> Option<&Policy> {
        self.inner.policy(&key.key)
    }
}

/// The key value of [`Scoped`]: a scope name and the inner key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScopedKey<K> {
    scope: &'static str,
    key: K,
}

impl<K> ScopedKey<K> {
    /// The scope's name.
    pub fn scope(&self) -> &'static str {
        self.scope
    }

    /// The key inside the scope.
    pub fn key(&self) -> &K {
        &self.key
    }
}

// ---------------------------------------------------------------------------------------------
// RouteKey

/// The route the Axum router matched (`/users/{id}`, not `/users/42`): one bucket per route
/// (feature `axum`).
///
/// It reads Axum's `MatchedPath` extension, never the raw URI path: the path is chosen by the
/// client, so keying on it would give every client an unbounded number of buckets
/// (`/users/1`, `/users/2`, `/users/2?x` …). The router sets `MatchedPath` for layers added
/// with `Router::layer` or `Router::route_layer`; a layer wrapped around the whole router from
/// outside sees no matched path, and the request has no key.
///
/// Alone it is one global bucket per route; combined with the client in a tuple it is one
/// bucket per client per route:
///
/// ```
/// use tower_bouncer::rate_limit::{IpKey, RouteKey};
///
/// let per_route = RouteKey;
/// let per_client_per_route = (RouteKey, IpKey::new());
/// # let _ = (per_route, per_client_per_route);
/// ```
#[cfg(feature = "axum")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteKey;

#[cfg(feature = "axum")]
impl ExtractKey for RouteKey {
    type Key = RoutePath;

    fn extract_key(&self, request: &RequestView<'_>) -> Option<RoutePath> {
        request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map(|path| RoutePath(path.clone()))
    }
}

/// The key value of [`RouteKey`]: the matched route template. Cloning it shares the router's
/// string (no allocation).
#[cfg(feature = "axum")]
#[derive(Clone)]
pub struct RoutePath(axum::extract::MatchedPath);

#[cfg(feature = "axum")]
impl RoutePath {
    /// The route template, such as `/users/{id}`.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

#[cfg(feature = "axum")]
impl PartialEq for RoutePath {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

#[cfg(feature = "axum")]
impl Eq for RoutePath {}

#[cfg(feature = "axum")]
impl Hash for RoutePath {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

#[cfg(feature = "axum")]
impl fmt::Debug for RoutePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

// ---------------------------------------------------------------------------------------------
// Composite keys

impl<A: ExtractKey, B: ExtractKey> ExtractKey for (A, B) {
    type Key = (A::Key, B::Key);

    /// Both keys; `None` when either is missing.
    fn extract_key(&self, request: &RequestView<'_>) -> Option<Self::Key> {
        Some((self.0.extract_key(request)?, self.1.extract_key(request)?))
    }

    fn policy(&self, key: &Self::Key) -> Option<&Policy> {
        self.0.policy(&key.0).or_else(|| self.1.policy(&key.1))
    }
}

impl<A: ExtractKey, B: ExtractKey, C: ExtractKey> ExtractKey for (A, B, C) {
    type Key = (A::Key, B::Key, C::Key);

    /// All three keys; `None` when any is missing.
    fn extract_key(&self, request: &RequestView<'_>) -> Option<Self::Key> {
        Some((
            self.0.extract_key(request)?,
            self.1.extract_key(request)?,
            self.2.extract_key(request)?,
        ))
    }

    fn policy(&self, key: &Self::Key) -> Option<&Policy> {
        self.0
            .policy(&key.0)
            .or_else(|| self.1.policy(&key.1))
            .or_else(|| self.2.policy(&key.2))
    }
}

/// The first of two key extractors that has a key: built by [`ExtractKey::or`].
#[derive(Debug, Clone, Copy)]
pub struct Or<A, B> {
    first: A,
    second: B,
}

impl<A: ExtractKey, B: ExtractKey> ExtractKey for Or<A, B> {
    type Key = Either<A::Key, B::Key>;

    fn extract_key(&self, request: &RequestView<'_>) -> Option<Self::Key> {
        if let Some(key) = self.first.extract_key(request) {
            return Some(Either::Left(key));
        }
        self.second.extract_key(request).map(Either::Right)
    }

    fn policy(&self, key: &Self::Key) -> Option<&Policy> {
        match key {
            Either::Left(key) => self.first.policy(key),
            Either::Right(key) => self.second.policy(key),
        }
    }
}

/// The key value of [`Or`]: the first extractor's key, or the second's. A `Left` and a `Right`
/// are never equal, so the two kinds of key never share a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Either<L, R> {
    /// The first extractor's key.
    Left(L),
    /// The second extractor's key (the first had none).
    Right(R),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_ip::SourceKind;

    fn view_with<T: Clone + Send + Sync + 'static>(value: Option<T>) -> http::Request<()> {
        let mut request = http::Request::new(());
        if let Some(value) = value {
            request.extensions_mut().insert(value);
        }
        request
    }

    fn key_of(key: &IpKey, ip: &str) -> MaskedIp {
        let ip: IpAddr = ip.parse().unwrap();
        let request = view_with(Some(ClientIp::new(ip, SourceKind::Peer)));
        key.extract_key(&RequestView::new(&request)).unwrap()
    }

    #[test]
    fn masked_ip_is_16_bytes_with_small_alignment() {
        assert_eq!(std::mem::size_of::<MaskedIp>(), 16);
        assert!(std::mem::align_of::<MaskedIp>() <= 8);
    }

    #[test]
    fn ip_key_masks_by_family_and_prefix() {
        // (ipv6 prefix, ipv4 prefix, a, b, same bucket?)
        let table: &[(u8, u8, &str, &str, bool)] = &[
            (
                64,
                32,
                "2001:db8:1:2::1",
                "2001:db8:1:2:ffff:ffff:ffff:ffff",
                true,
            ),
            (64, 32, "2001:db8:1:2::1", "2001:db8:1:3::1", false),
            (56, 32, "2001:db8:1:2::1", "2001:db8:1:ff::1", true),
            (56, 32, "2001:db8:1:2::1", "2001:db8:1:100::1", false),
            (48, 32, "2001:db8:1:2::1", "2001:db8:1:ffff::1", true),
            (48, 32, "2001:db8:1::1", "2001:db8:2::1", false),
            (128, 32, "2001:db8::1", "2001:db8::2", false),
            (128, 32, "2001:db8::1", "2001:db8::1", true),
            (64, 32, "203.0.113.7", "203.0.113.8", false),
            (64, 24, "203.0.113.7", "203.0.113.200", true),
            (64, 24, "203.0.113.7", "203.0.114.7", false),
            (64, 32, "203.0.113.7", "::ffff:203.0.113.7", true),
            // An IPv4 key never equals an IPv6 key, whatever the prefixes.
            (128, 32, "::ffff:cb00:7107", "::cb00:7107", false),
            (1, 1, "1.2.3.4", "::1", false),
            (64, 32, "0.0.0.0", "::", false),
        ];
        for &(v6, v4, a, b, same) in table {
            let key = IpKey::new()
                .ipv6_prefix(v6)
                .unwrap()
                .ipv4_prefix(v4)
                .unwrap();
            assert_eq!(
                key_of(&key, a) == key_of(&key, b),
                same,
                "/{v6} /{v4}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn masked_ip_prints_the_network_address() {
        let key = IpKey::new().ipv4_prefix(24).unwrap();
        assert_eq!(key_of(&key, "203.0.113.7").to_string(), "203.0.113.0");
        assert_eq!(
            format!("{:?}", key_of(&key, "2001:db8:1:2:3:4:5:6")),
            "2001:db8:1:2::"
        );
    }

    #[test]
    fn ip_key_rejects_impossible_prefixes() {
        assert!(IpKey::new().ipv6_prefix(0).is_err());
        assert!(IpKey::new().ipv6_prefix(129).is_err());
        assert!(IpKey::new().ipv4_prefix(0).is_err());
        assert!(IpKey::new().ipv4_prefix(33).is_err());
        assert!(IpKey::new().ipv6_prefix(1).is_ok());
        assert!(IpKey::new().ipv4_prefix(32).is_ok());
    }

    #[test]
    fn ip_key_never_reads_headers() {
        let mut request = view_with::<ClientIp>(None);
        request
            .headers_mut()
            .insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
        assert_eq!(IpKey::new().extract_key(&RequestView::new(&request)), None);
    }

    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    struct UserId(u32);

    #[test]
    fn or_falls_back_and_never_mixes_kinds() {
        let key = ExtensionKey::<UserId>::new().or(IpKey::new());
        let mut signed_in = view_with(Some(UserId(7)));
        signed_in.extensions_mut().insert(ClientIp::new(
            "203.0.113.7".parse().unwrap(),
            SourceKind::Peer,
        ));
        let anonymous = view_with(Some(ClientIp::new(
            "203.0.113.7".parse().unwrap(),
            SourceKind::Peer,
        )));
        let nothing = view_with::<()>(None);
        assert_eq!(
            key.extract_key(&RequestView::new(&signed_in)),
            Some(Either::Left(UserId(7)))
        );
        assert!(matches!(
            key.extract_key(&RequestView::new(&anonymous)),
            Some(Either::Right(_))
        ));
        assert_eq!(key.extract_key(&RequestView::new(&nothing)), None);
    }

    #[test]
    fn tuples_need_every_part() {
        let key = (ExtensionKey::<UserId>::new(), GlobalKey.scoped("export"));
        let with = view_with(Some(UserId(1)));
        let without = view_with::<()>(None);
        let (user, scoped) = key.extract_key(&RequestView::new(&with)).unwrap();
        assert_eq!(user, UserId(1));
        assert_eq!(scoped.scope(), "export");
        assert_eq!(key.extract_key(&RequestView::new(&without)), None);
    }

    #[test]
    fn scopes_separate_buckets() {
        let request = view_with::<()>(None);
        let view = RequestView::new(&request);
        let login = GlobalKey.scoped("login").extract_key(&view);
        let search = GlobalKey.scoped("search").extract_key(&view);
        let login_again = Scoped::new("login", GlobalKey).extract_key(&view);
        assert_ne!(login, search);
        assert_eq!(login, login_again);
    }

    #[cfg(feature = "axum")]
    #[test]
    fn route_key_reads_only_the_matched_path() {
        let mut request = http::Request::builder().uri("/users/42").body(()).unwrap();
        assert_eq!(RouteKey.extract_key(&RequestView::new(&request)), None);
        // MatchedPath has no public constructor: take it from a real router in the
        // integration tests; here only the absence is checked.
        request.extensions_mut().insert(UserId(1));
        assert_eq!(RouteKey.extract_key(&RequestView::new(&request)), None);
    }
}
