//! The shards' map from key to state, looked up by a hash the caller
//! already has: receivers hash each key once, use some of the hash's bits
//! to pick the shard ([`shard_bits`]) and the whole hash to find the key in
//! that shard's maps. Keys up to [`INLINE_KEY`] bytes (most StatsD keys)
//! live in the map's own slot beside their value, so a lookup reads one
//! slot instead of chasing a pointer to the key.

use hashbrown::HashTable;

/// Longest key stored inline; with its tag and length a key is 32 bytes.
pub const INLINE_KEY: usize = 30;

/// A metric key as stored. The flush copies key bytes into its own arena,
/// so keys need no reference count.
#[derive(Clone)]
pub enum Key {
    /// A short key, in the slot itself.
    Inline {
        /// Bytes used.
        len: u8,
        /// The key, then unused bytes.
        bytes: [u8; INLINE_KEY],
    },
    /// A longer key, on the heap.
    Boxed(Box<[u8]>),
}

impl Key {
    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize],
            Key::Boxed(b) => b,
        }
    }
}

impl From<&[u8]> for Key {
    fn from(key: &[u8]) -> Key {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0u8; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(key);
            Key::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            Key::Boxed(Box::from(key))
        }
    }
}

impl std::ops::Deref for Key {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// A key to look up, laid out as an inline [`Key`] when it is short, so
/// comparing it with a slot is a fixed-size compare the compiler inlines
/// rather than a call to memcmp with a length.
enum Probe<'k> {
    Inline(u8, [u8; INLINE_KEY]),
    Long(&'k [u8]),
}

impl<'k> Probe<'k> {
    fn new(key: &'k [u8]) -> Probe<'k> {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0u8; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(key);
            Probe::Inline(key.len() as u8, bytes)
        } else {
            Probe::Long(key)
        }
    }

    /// Inline keys are zero past their length (see `From<&[u8]>`), so
    /// equal keys have equal arrays.
    fn matches(&self, slot: &Key) -> bool {
        match (self, slot) {
            (Probe::Inline(len, bytes), Key::Inline { len: l, bytes: b }) => len == l && bytes == b,
            (Probe::Long(key), Key::Boxed(b)) => **key == **b,
            _ => false,
        }
    }
}

/// The hash every map and the shard choice use for a key.
#[derive(Clone)]
pub struct KeyHasher(ahash::RandomState);

impl KeyHasher {
    /// A hasher with the agent's fixed seeds.
    pub fn new() -> KeyHasher {
        KeyHasher(ahash::RandomState::new())
    }

    /// The hash of `key` (receivers compute it once per key).
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.0.hash_one(key)
    }
}

impl Default for KeyHasher {
    fn default() -> KeyHasher {
        KeyHasher::new()
    }
}

/// The shard for a hash out of `shards`. The map inside a shard indexes
/// buckets with the low bits and tags them with the top 7, so the shard
/// comes from bits 24..56: keys of one shard still spread over all its
/// buckets and tags. Multiply-and-shift maps those 32 bits onto
/// 0..shards without a division (which costs more than the rest of the
/// routing).
pub fn shard_bits(hash: u64, shards: usize) -> usize {
    let middle = (hash >> 24) & 0xFFFF_FFFF;
    ((middle * shards as u64) >> 32) as usize
}

/// Prefetches the home slot of a hash in one map (the entry's line and the
/// one below it, where the next buckets of its first probed group lie; the
/// control bytes are small enough to stay cached).
/// hashbrown starts probing at bucket `hash & mask`, and bucket `i`'s
/// entry lies `i + 1` entries below the control bytes; a key that sits
/// elsewhere only makes the hint useless. Taken under the shard's lock and
/// used before the map changes.
#[derive(Clone, Copy)]
pub struct Prefetcher {
    control: usize,
    mask: usize,
    size: usize,
}

impl Prefetcher {
    /// Asks the CPU to start loading where `hash`'s entry should be.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        let bucket = hash as usize & self.mask;
        let entry = self.control.wrapping_sub((bucket + 1) * self.size);
        prefetch_line(entry);
        prefetch_line(entry.wrapping_sub(64));
    }
}

#[inline]
fn prefetch_line(address: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults or reads into the
    // program, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(address as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// Key → value, by precomputed hash.
pub struct KeyMap<V> {
    table: HashTable<(Key, V)>,
    hasher: KeyHasher,
}

impl<V> KeyMap<V> {
    /// An empty map hashing with `hasher`.
    pub fn new(hasher: KeyHasher) -> KeyMap<V> {
        KeyMap {
            table: HashTable::new(),
            hasher,
        }
    }

    /// The hash this map looks `key` up with.
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash(key)
    }

    /// Keys in the map.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// No key.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The value of `key`, whose hash is `hash`.
    pub fn get_mut_hashed(&mut self, hash: u64, key: &[u8]) -> Option<&mut V> {
        let probe = Probe::new(key);
        self.table
            .find_mut(hash, |(k, _)| probe.matches(k))
            .map(|(_, v)| v)
    }

    /// Where the slots of this map's keys most likely are, for prefetching
    /// a batch's lookups before doing them; `None` for a sparse map.
    pub fn prefetcher(&self) -> Option<Prefetcher> {
        // A sparse map is small or just emptied by a flush: little to gain,
        // and finding a full bucket could scan all of its control bytes.
        if self.table.len() * 4 < self.table.num_buckets() {
            return None;
        }
        let index = self.table.iter_buckets().next()?;
        let entry = self.table.get_bucket(index)?;
        let size = std::mem::size_of::<(Key, V)>();
        Some(Prefetcher {
            control: (entry as *const (Key, V) as usize).wrapping_add((index + 1) * size),
            mask: self.table.num_buckets() - 1,
            size,
        })
    }

    /// Adds `key` (hash `hash`), which must not be in the map yet.
    pub fn insert_new_hashed(&mut self, hash: u64, key: &[u8], value: V) -> &mut V {
        let hasher = &self.hasher;
        let entry = self
            .table
            .insert_unique(hash, (Key::from(key), value), |(k, _)| {
                hasher.hash(k.as_bytes())
            });
        &mut entry.into_mut().1
    }

    /// The value of `key`, added with `make` if missing.
    pub fn get_or_insert_with(&mut self, key: &[u8], make: impl FnOnce() -> V) -> &mut V {
        let hash = self.hash(key);
        if self.get_mut_hashed(hash, key).is_none() {
            return self.insert_new_hashed(hash, key, make());
        }
        // Found above; looked up again so the borrow checker sees one path.
        match self.get_mut_hashed(hash, key) {
            Some(v) => v,
            None => unreachable!("the key was just found"),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.table
            .find(self.hash(key), |(k, _)| k.as_bytes() == key)
            .map(|(_, v)| v)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Every (key, value).
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &V)> {
        self.table.iter().map(|(k, v)| (k, v))
    }

    /// Every (key, value), values mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Key, &mut V)> {
        self.table.iter_mut().map(|(k, v)| (&*k, v))
    }

    /// Every value, mutable.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.table.iter_mut().map(|(_, v)| v)
    }

    /// Keeps the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&Key, &mut V) -> bool) {
        self.table.retain(|(k, v)| keep(k, v));
    }

    /// Takes every entry out.
    pub fn drain(&mut self) -> impl Iterator<Item = (Key, V)> + '_ {
        self.table.drain()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_boxed_keys_are_found_by_their_bytes() {
        let hasher = KeyHasher::new();
        let mut map: KeyMap<u32> = KeyMap::new(hasher.clone());
        let short = vec![b'a'; INLINE_KEY];
        let long = vec![b'a'; INLINE_KEY + 1];
        assert!(matches!(Key::from(&short[..]), Key::Inline { .. }));
        assert!(matches!(Key::from(&long[..]), Key::Boxed(_)));
        for (i, k) in [&b""[..], b"x", &short, &long].iter().enumerate() {
            let h = hasher.hash(k);
            assert!(map.get_mut_hashed(h, k).is_none());
            map.insert_new_hashed(h, k, i as u32);
        }
        assert_eq!(map.len(), 4);
        assert_eq!(map.get(&short), Some(&2));
        assert_eq!(map.get(&long), Some(&3));
        assert_eq!(map.get(b""), Some(&0));
        assert_eq!(map.get(&short[..INLINE_KEY - 1]), None);
        *map.get_or_insert_with(b"x", || 99) += 10;
        assert_eq!(map.get(b"x"), Some(&11));
        assert_eq!(*map.get_or_insert_with(b"new", || 7), 7);
        map.retain(|k, _| k.len() < 5);
        assert_eq!(map.len(), 3);
        let mut drained: Vec<Vec<u8>> = map.drain().map(|(k, _)| k.to_vec()).collect();
        drained.sort();
        assert_eq!(drained, vec![b"".to_vec(), b"new".to_vec(), b"x".to_vec()]);
    }

    #[test]
    fn growth_keeps_every_key() {
        let hasher = KeyHasher::new();
        let mut map: KeyMap<usize> = KeyMap::new(hasher.clone());
        let keys: Vec<String> = (0..50_000)
            .map(|i| format!("app.k{i}.with.a.longer.name"))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            map.insert_new_hashed(hasher.hash(k.as_bytes()), k.as_bytes(), i);
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(
                map.get_mut_hashed(hasher.hash(k.as_bytes()), k.as_bytes()),
                Some(&mut { i })
            );
        }
    }

    #[test]
    fn the_prefetcher_points_at_the_group_where_keys_sit() {
        let hasher = KeyHasher::new();
        let mut map: KeyMap<f64> = KeyMap::new(hasher.clone());
        let keys: Vec<String> = (0..10_000).map(|i| format!("bench.c.k{i}")).collect();
        for k in &keys {
            map.insert_new_hashed(hasher.hash(k.as_bytes()), k.as_bytes(), 0.0);
        }
        let p = map.prefetcher().expect("a dense map has a prefetcher");
        let size = std::mem::size_of::<(Key, f64)>();
        let mut home = 0;
        for k in &keys {
            let hash = hasher.hash(k.as_bytes());
            let entry = map
                .table
                .find(hash, |(key, _)| key.as_bytes() == k.as_bytes());
            let at = entry.expect("inserted") as *const (Key, f64) as usize;
            let guess = p
                .control
                .wrapping_sub(((hash as usize & p.mask) + 1) * size);
            // Found in the first group probed: at most 15 buckets on.
            if at <= guess && guess - at < 16 * size {
                home += 1;
            }
        }
        assert!(
            home > 9_000,
            "{home} of 10000 keys where the prefetch looks"
        );
    }

    #[test]
    fn shards_take_middle_bits_and_spread_evenly() {
        // Bits 24..56 decide; the top 7 (bucket tags) and low 24 do not.
        assert_eq!(shard_bits(0xFF00_0000_00FF_FFFF, 64), 0);
        assert_eq!(shard_bits(0x00FF_FFFF_FF00_0000, 64), 63);
        assert_eq!(shard_bits(0x0080_0000_0000_0000, 64), 32);
        let hasher = KeyHasher::new();
        for shards in [1usize, 3, 64, 100] {
            let mut counts = vec![0usize; shards];
            for i in 0..100_000 {
                counts[shard_bits(hasher.hash(format!("k{i}").as_bytes()), shards)] += 1;
            }
            let expected = 100_000 / shards;
            assert!(
                counts
                    .iter()
                    .all(|c| c.abs_diff(expected) < expected / 5 + 50),
                "{shards} shards: {counts:?}"
            );
        }
    }
}
