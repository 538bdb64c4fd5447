//! Tables whose keys are hashed once per operation: with the process's secret SipHash key,
//! and that one hash used both to pick a shard and inside the table.
//!
//! Keys are chosen by clients (addresses, identities, Redis bucket names built from them), so
//! they are hashed with a secret key: a client must not be able to aim at one shard or one
//! bucket. SipHash costs a hundred-odd instructions per key; a table keyed by [`Stored`] and
//! looked up through a [`Probe`] computes it once per operation instead of once for the shard
//! and again inside the table.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::OnceLock;

/// A map from keys `K` (looked up by their borrowed form) to `V`, hashed once per operation.
pub(crate) type Table<K, V> = HashMap<Stored<K>, V, PassThrough>;

/// The secret SipHash key every table hashes its keys with, drawn once per process.
pub(crate) fn key_hash<Q: Hash + ?Sized>(key: &Q) -> u64 {
    static SECRET: OnceLock<RandomState> = OnceLock::new();
    SECRET.get_or_init(RandomState::new).hash_one(key)
}

/// A key as the table stores it.
pub(crate) struct Stored<K>(pub(crate) K);

/// A key (in its borrowed form `Q`) and its hash, as the table looks it up: either a stored
/// key (whose hash is computed again, which the table does only when it grows or shrinks) or
/// a [`Probe`] made from a request's key and the hash already computed for it. Looking a key
/// up needs neither an owned copy of it nor a second hash.
pub(crate) trait Keyed<Q: ?Sized> {
    fn hash(&self) -> u64;
    fn key(&self) -> &Q;
}

impl<K: Borrow<Q>, Q: Hash + ?Sized> Keyed<Q> for Stored<K> {
    fn hash(&self) -> u64 {
        // `Borrow` promises that `K` and `Q` hash alike: the probe's hash is this one.
        key_hash(self.0.borrow())
    }

    fn key(&self) -> &Q {
        self.0.borrow()
    }
}

/// A key being looked up, with the hash computed for it once.
pub(crate) struct Probe<'a, Q: ?Sized> {
    pub(crate) hash: u64,
    pub(crate) key: &'a Q,
}

impl<'a, Q: Hash + ?Sized> Probe<'a, Q> {
    /// `key` with its hash, computed here: the one hash of the operation.
    pub(crate) fn new(key: &'a Q) -> Self {
        Self {
            hash: key_hash(key),
            key,
        }
    }
}

impl<Q: ?Sized> Keyed<Q> for Probe<'_, Q> {
    fn hash(&self) -> u64 {
        self.hash
    }

    fn key(&self) -> &Q {
        self.key
    }
}

impl<'a, K, Q> Borrow<dyn Keyed<Q> + 'a> for Stored<K>
where
    K: Borrow<Q> + 'a,
    Q: Hash + ?Sized + 'a,
{
    fn borrow(&self) -> &(dyn Keyed<Q> + 'a) {
        self
    }
}

// Both `Hash` impls feed the table's hasher the same single number: the key's SipHash.
impl<Q: ?Sized> Hash for dyn Keyed<Q> + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(Keyed::hash(self));
    }
}

impl<K: Hash> Hash for Stored<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(key_hash(&self.0));
    }
}

impl<Q: Eq + ?Sized> PartialEq for dyn Keyed<Q> + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<Q: Eq + ?Sized> Eq for dyn Keyed<Q> + '_ {}

impl<K: Eq> PartialEq for Stored<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<K: Eq> Eq for Stored<K> {}

/// The table's hasher: the number it is fed is already a keyed SipHash, so it passes it on.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PassThrough;

#[derive(Debug, Default)]
pub(crate) struct PassThroughHasher(u64);

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;

    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

impl Hasher for PassThroughHasher {
    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    // Only `write_u64` is ever called (by the two `Hash` impls above); anything else is
    // mixed in rather than trusted, so the hasher stays total.
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_finds_a_stored_key_by_its_borrowed_form() {
        let mut table: Table<Box<[u8]>, u32> = Table::default();
        for (value, name) in [b"tb:a".as_slice(), b"tb:b", b"tb:ab", b""]
            .iter()
            .enumerate()
        {
            table.insert(Stored(Box::from(*name)), value as u32);
        }
        for (value, name) in [b"tb:a".as_slice(), b"tb:b", b"tb:ab", b""]
            .iter()
            .enumerate()
        {
            let probe = Probe {
                hash: key_hash(*name),
                key: *name,
            };
            assert_eq!(table.get(&probe as &dyn Keyed<[u8]>), Some(&(value as u32)));
        }
        let absent: &[u8] = b"tb:c";
        let probe = Probe {
            hash: key_hash(absent),
            key: absent,
        };
        assert_eq!(table.get(&probe as &dyn Keyed<[u8]>), None);
        // A stored key and its borrowed form hash alike (what `Borrow` promises).
        let stored = Stored(Box::<[u8]>::from(&b"tb:a"[..]));
        assert_eq!(Keyed::<[u8]>::hash(&stored), key_hash(&b"tb:a"[..]));
    }
}
