//! How a rate-limit key becomes the name of a Redis key.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::rc::Rc;
use std::sync::Arc;

/// A rate-limit key that can name a Redis key.
///
/// The [`RedisStore`](super::RedisStore) writes its prefix, then the key's bytes: the Redis
/// key of the bucket. Distinct keys must write distinct bytes, or they share one bucket.
///
/// The built-in encodings are readable in `redis-cli`: strings as they are, integers in
/// decimal, IP addresses (and the layer's [`MaskedIp`](crate::rate_limit::MaskedIp)) in their
/// usual text form, byte arrays in lowercase hex, `()` (one global bucket) as nothing. Tuples join their parts with `|`, each part with `|` and `%`
/// escaped as `%7C` and `%25`, so `("a|b", "c")` and `("a", "b|c")` stay two buckets.
///
/// # Example
///
/// ```
/// use tower_bouncer::store::RedisKey;
///
/// struct TenantId(u32);
///
/// impl RedisKey for TenantId {
///     fn write_redis_key(&self, out: &mut Vec<u8>) {
///         out.extend_from_slice(b"tenant:");
///         self.0.write_redis_key(out);
///     }
/// }
///
/// let mut name = Vec::new();
/// (TenantId(7), "/upload").write_redis_key(&mut name);
/// assert_eq!(name, b"tenant:7|/upload");
/// ```
pub trait RedisKey {
    /// Appends the bytes that name this key to `out`.
    fn write_redis_key(&self, out: &mut Vec<u8>);
}

impl<T: RedisKey + ?Sized> RedisKey for &T {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        (**self).write_redis_key(out);
    }
}

impl<T: RedisKey + ?Sized> RedisKey for Box<T> {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        (**self).write_redis_key(out);
    }
}

impl<T: RedisKey + ?Sized> RedisKey for Arc<T> {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        (**self).write_redis_key(out);
    }
}

impl<T: RedisKey + ?Sized> RedisKey for Rc<T> {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        (**self).write_redis_key(out);
    }
}

impl RedisKey for str {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl RedisKey for String {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl RedisKey for () {
    fn write_redis_key(&self, _out: &mut Vec<u8>) {}
}

macro_rules! display_keys {
    ($($ty:ty),* $(,)?) => {$(
        impl RedisKey for $ty {
            fn write_redis_key(&self, out: &mut Vec<u8>) {
                // Writing into a `Vec` cannot fail.
                let _ = write!(out, "{self}");
            }
        }
    )*};
}

display_keys!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, char);
display_keys!(Ipv6Addr);

/// An IPv4 address in its usual text form (`203.0.113.7`), written digit by digit: `Display`
/// through `write!` cost a thousand instructions per request, for the most common key.
fn write_ipv4(ip: Ipv4Addr, out: &mut Vec<u8>) {
    // "255.255.255.255" is the longest.
    let mut text = [0u8; 15];
    let mut at = 0;
    for (index, octet) in ip.octets().into_iter().enumerate() {
        if index > 0 {
            text[at] = b'.';
            at += 1;
        }
        if octet >= 100 {
            text[at] = b'0' + octet / 100;
            at += 1;
        }
        if octet >= 10 {
            text[at] = b'0' + octet / 10 % 10;
            at += 1;
        }
        text[at] = b'0' + octet % 10;
        at += 1;
    }
    out.extend_from_slice(&text[..at]);
}

impl RedisKey for Ipv4Addr {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        write_ipv4(*self, out);
    }
}

impl RedisKey for IpAddr {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        match self {
            IpAddr::V4(ip) => write_ipv4(*ip, out),
            IpAddr::V6(ip) => ip.write_redis_key(out),
        }
    }
}

fn write_hex(bytes: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0xf)]);
    }
}

impl RedisKey for [u8] {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        write_hex(self, out);
    }
}

impl<const N: usize> RedisKey for [u8; N] {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        write_hex(self, out);
    }
}

impl RedisKey for Vec<u8> {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        write_hex(self, out);
    }
}

/// Writes `part` with `|` and `%` escaped, so that parts joined by `|` cannot run together.
fn write_part<T: RedisKey + ?Sized>(part: &T, out: &mut Vec<u8>) {
    let start = out.len();
    part.write_redis_key(out);
    if !out[start..].iter().any(|byte| matches!(byte, b'|' | b'%')) {
        return;
    }
    let raw = out.split_off(start);
    for byte in raw {
        match byte {
            b'|' => out.extend_from_slice(b"%7C"),
            b'%' => out.extend_from_slice(b"%25"),
            other => out.push(other),
        }
    }
}

macro_rules! tuple_keys {
    ($first:ident $(, $rest:ident)*) => {
        impl<$first: RedisKey $(, $rest: RedisKey)*> RedisKey for ($first, $($rest,)*) {
            #[allow(non_snake_case)]
            fn write_redis_key(&self, out: &mut Vec<u8>) {
                let ($first, $($rest,)*) = self;
                write_part($first, out);
                $(
                    out.push(b'|');
                    write_part($rest, out);
                )*
            }
        }
    };
}

tuple_keys!(A);
tuple_keys!(A, B);
tuple_keys!(A, B, C);
tuple_keys!(A, B, C, D);

// The key values of the rate-limit layer's extractors.

/// The masked client address in its text form (`203.0.113.0`, `2001:db8:1:2::`).
impl RedisKey for crate::rate_limit::MaskedIp {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        IpAddr::from(*self).write_redis_key(out);
    }
}

/// `scope|key`, both parts escaped as in a tuple.
impl<K: RedisKey> RedisKey for crate::rate_limit::ScopedKey<K> {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        write_part(self.scope(), out);
        out.push(b'|');
        write_part(self.key(), out);
    }
}

/// `tN|key`: `t0` for the default policy, `t1` for the first tier of the table, and so on —
/// keys of different tiers never share a bucket.
impl<K: RedisKey> RedisKey for crate::rate_limit::TierKey<K> {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        out.push(b't');
        self.tier()
            .map_or(0, |index| index + 1)
            .write_redis_key(out);
        out.push(b'|');
        write_part(self.key(), out);
    }
}

/// `L|key` or `R|key`: the two kinds of key never share a bucket.
impl<L: RedisKey, R: RedisKey> RedisKey for crate::rate_limit::Either<L, R> {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        match self {
            Self::Left(key) => {
                out.extend_from_slice(b"L|");
                write_part(key, out);
            }
            Self::Right(key) => {
                out.extend_from_slice(b"R|");
                write_part(key, out);
            }
        }
    }
}

/// The route template (`/users/{id}`).
#[cfg(feature = "axum")]
impl RedisKey for crate::rate_limit::RoutePath {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_str().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(key: &impl RedisKey) -> String {
        let mut out = Vec::new();
        key.write_redis_key(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn built_in_encodings() {
        assert_eq!(name(&"alice"), "alice");
        assert_eq!(name(&String::from("bob")), "bob");
        assert_eq!(name(&42_u64), "42");
        assert_eq!(name(&-7_i32), "-7");
        assert_eq!(name(&()), "");
        assert_eq!(
            name(&"203.0.113.7".parse::<IpAddr>().unwrap()),
            "203.0.113.7"
        );
        assert_eq!(
            name(&"2001:db8::1".parse::<Ipv6Addr>().unwrap()),
            "2001:db8::1"
        );
        assert_eq!(name(&[0x20_u8, 0x01, 0x0d, 0xb8]), "20010db8");
        assert_eq!(name(&vec![0xff_u8, 0]), "ff00");
        assert_eq!(name(&Arc::<str>::from("shared")), "shared");
        assert_eq!(name(&("user", 7_u32, "/route")), "user|7|/route");
    }

    #[test]
    fn ipv4_names_are_the_display_form() {
        let mut octets = [0u8, 7, 9, 10, 99, 100, 101, 199, 200, 255];
        for first in octets {
            for second in octets {
                octets.rotate_left(1);
                let ip = Ipv4Addr::new(first, second, octets[0], octets[3]);
                assert_eq!(name(&ip), ip.to_string());
                assert_eq!(name(&IpAddr::V4(ip)), ip.to_string());
            }
        }
        // Spread over the whole space (a multiplicative hash of 0..20,000).
        for index in 0..20_000_u32 {
            let ip = Ipv4Addr::from(index.wrapping_mul(2_654_435_761));
            assert_eq!(name(&ip), ip.to_string());
        }
        assert_eq!(name(&Ipv4Addr::BROADCAST), "255.255.255.255");
        assert_eq!(name(&Ipv4Addr::UNSPECIFIED), "0.0.0.0");
    }

    #[test]
    fn tuple_parts_cannot_run_together() {
        // Without escaping, both would be "a|b|c".
        assert_eq!(name(&("a|b", "c")), "a%7Cb|c");
        assert_eq!(name(&("a", "b|c")), "a|b%7Cc");
        // The escape character itself is escaped, so an escape cannot be forged.
        assert_eq!(name(&("a%7Cb", "c")), "a%257Cb|c");
        // Nested tuples stay distinct from flat ones.
        assert_eq!(name(&(("a", "b"), "c")), "a%7Cb|c");
        assert_ne!(name(&(("a", "b"), "c")), name(&("a", "b", "c")));
    }

    #[test]
    fn the_layer_key_types() {
        use crate::rate_limit::{Either, IpKey};
        let key = IpKey::new();
        assert_eq!(
            name(&key.mask("2001:db8:1:2:3:4:5:6".parse().unwrap())),
            "2001:db8:1:2::"
        );
        assert_eq!(
            name(&key.mask("203.0.113.7".parse().unwrap())),
            "203.0.113.7"
        );
        let left: Either<&str, u32> = Either::Left("7");
        let right: Either<&str, u32> = Either::Right(7);
        assert_eq!(name(&left), "L|7");
        assert_eq!(name(&right), "R|7");
        assert_eq!(name(&Either::<&str, u32>::Left("a|b")), "L|a%7Cb");
    }
}
