//! The shards' map from key to state, looked up by a hash the caller
//! already has: receivers hash each key once, use some of the hash's bits
//! to pick the shard ([`shard_bits`]) and the whole hash to find the key in
//! that shard's maps. Keys up to [`INLINE_KEY`] bytes (most StatsD keys)
//! live in the map's own slot beside their value, so a lookup reads one
//! slot instead of chasing a pointer to the key.

use hashbrown::HashTable;

/// Longest key stored inline: its bytes, zeros up to byte 30, and its
/// length in byte 30 make 31 bytes, and with the enum's tag 32.
pub const INLINE_KEY: usize = 30;

/// A metric key as stored. The flush copies key bytes into its own arena,
/// so keys need no reference count.
#[derive(Clone)]
pub enum Key {
    /// A short key, in the slot itself, laid out as a [`PaddedKey`].
    Inline([u8; INLINE_KEY + 1]),
    /// A longer key, on the heap.
    Boxed(Box<[u8]>),
}

impl Key {
    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline(bytes) => &bytes[..bytes[INLINE_KEY] as usize],
            Key::Boxed(b) => b,
        }
    }
}

impl From<&[u8]> for Key {
    fn from(key: &[u8]) -> Key {
        KeyRef::of(key, |key| key.to_key())
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

/// A short key as the maps compare and hash it: four little-endian words
/// holding the key's bytes, zeros, its length in byte [`INLINE_KEY`] and
/// a zero byte 31. Equal keys have equal words, so a lookup compares four
/// words and never calls memcmp. Receivers build it from word loads of
/// the packet and keep it as words, so no load of it waits on narrower
/// stores (a failed store-to-load forwarding costs a dozen cycles).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PaddedKey(pub(super) [u64; 4]);

impl PaddedKey {
    /// `key` padded; `None` when it is longer than [`INLINE_KEY`].
    pub fn new(key: &[u8]) -> Option<PaddedKey> {
        padded_words(key, key.len()).map(PaddedKey)
    }

    /// The slot form: bytes 0..31.
    fn to_inline(self) -> [u8; INLINE_KEY + 1] {
        let mut all = [0u8; 32];
        for (chunk, word) in all.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        let mut bytes = [0u8; INLINE_KEY + 1];
        bytes.copy_from_slice(&all[..INLINE_KEY + 1]);
        bytes
    }
}

/// 32 bytes from `32 - len` keep the first `len` bytes of a block.
static KEEP_FIRST: [u8; 64] = {
    let mut mask = [0u8; 64];
    let mut i = 0;
    while i < 32 {
        mask[i] = 0xFF;
        i += 1;
    }
    mask
};

/// The little-endian word at byte `at` of `bytes` (callers pass arrays,
/// so the bounds are known and the read is one load).
#[inline(always)]
fn le_word(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The words of a padded key: `len` bytes from the start of `from_key`,
/// zeros, `len` in byte 30 and a zero byte 31. When `from_key` (the key
/// and whatever follows it) has 32 bytes, that is four word loads and a
/// mask; otherwise byte by byte. `None` when the key is too long to inline.
#[inline(always)]
fn padded_words(from_key: &[u8], len: usize) -> Option<[u64; 4]> {
    if len > INLINE_KEY || len > from_key.len() {
        return None;
    }
    let mut words = [0u64; 4];
    match (
        from_key.first_chunk::<32>(),
        KEEP_FIRST[32 - len..].first_chunk::<32>(),
    ) {
        (Some(block), Some(mask)) => {
            for (i, w) in words.iter_mut().enumerate() {
                *w = le_word(block, i * 8) & le_word(mask, i * 8);
            }
        }
        _ => {
            for (i, &b) in from_key[..len].iter().enumerate() {
                words[i / 8] |= u64::from(b) << ((i % 8) * 8);
            }
        }
    }
    words[3] |= (len as u64) << 48;
    Some(words)
}

/// The words of a stored inline key (byte 31 is zero), read straight
/// from the slot: the last word is the 8 bytes from byte 23, shifted.
#[inline(always)]
fn inline_words(bytes: &[u8; INLINE_KEY + 1]) -> [u64; 4] {
    let at = |i| le_word(bytes, i);
    [at(0), at(8), at(16), at(23) >> 8]
}

/// A key to look up or insert: padded when short, the bytes when long.
/// Build it with [`KeyRef::of`] or from a [`PaddedKey`]; a `Long` key is
/// always longer than [`INLINE_KEY`], so it never equals an inline slot.
#[derive(Clone, Copy)]
pub enum KeyRef<'k> {
    /// A key of at most [`INLINE_KEY`] bytes.
    Short(&'k PaddedKey),
    /// A longer key.
    Long(&'k [u8]),
}

impl<'k> KeyRef<'k> {
    /// Calls `with` on `key` as a `KeyRef` (padding it on the stack when
    /// short).
    pub fn of<R>(key: &[u8], with: impl FnOnce(KeyRef<'_>) -> R) -> R {
        match PaddedKey::new(key) {
            Some(padded) => with(KeyRef::Short(&padded)),
            None => with(KeyRef::Long(key)),
        }
    }

    /// Calls `with` on the key's bytes.
    pub fn with_bytes<R>(&self, with: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            KeyRef::Short(p) => {
                let bytes = p.to_inline();
                with(&bytes[..bytes[INLINE_KEY] as usize])
            }
            KeyRef::Long(key) => with(key),
        }
    }

    #[inline(always)]
    fn matches(&self, slot: &Key) -> bool {
        match (self, slot) {
            (KeyRef::Short(p), Key::Inline(bytes)) => {
                // Word by word, xor-ed and or-ed as scalars: built as an
                // array, the slot's words went through the stack and the
                // 16-byte compare that read them back waited on the stores.
                let slot = inline_words(bytes);
                let w = &p.0;
                ((w[0] ^ slot[0]) | (w[1] ^ slot[1]) | (w[2] ^ slot[2]) | (w[3] ^ slot[3])) == 0
            }
            (KeyRef::Long(key), Key::Boxed(b)) => **key == **b,
            _ => false,
        }
    }

    fn to_key(self) -> Key {
        match self {
            KeyRef::Short(p) => Key::Inline(p.to_inline()),
            KeyRef::Long(key) => Key::Boxed(Box::from(key)),
        }
    }
}

/// The hash every map and the shard choice use for a key: for a short key
/// two rounds of folded multiplies over its padded words with per-process
/// random seeds (no pass over bytes), for a long one ahash.
#[derive(Clone)]
pub struct KeyHasher {
    long: ahash::RandomState,
    seeds: [u64; 6],
}

/// The 64 x 64 -> 128-bit product's halves xor-ed: every input bit moves
/// many output bits.
#[inline]
fn folded_multiply(x: u64, y: u64) -> u64 {
    let full = u128::from(x) * u128::from(y);
    (full as u64) ^ ((full >> 64) as u64)
}

impl KeyHasher {
    /// A hasher with seeds of its own (every clone shares them).
    pub fn new() -> KeyHasher {
        let long = ahash::RandomState::new();
        // Odd, so no seed can zero a product by itself.
        let seeds = std::array::from_fn(|i| long.hash_one(i) | 1);
        KeyHasher { long, seeds }
    }

    /// The hash of `key` (receivers compute it once per key).
    pub fn hash(&self, key: &[u8]) -> u64 {
        match padded_words(key, key.len()) {
            Some(words) => self.hash_words(&words),
            None => self.long.hash_one(key),
        }
    }

    #[inline]
    fn hash_words(&self, w: &[u64; 4]) -> u64 {
        let s = &self.seeds;
        let a = folded_multiply(w[0] ^ s[0], w[1] ^ s[1]);
        let b = folded_multiply(w[2] ^ s[2], w[3] ^ s[3]);
        folded_multiply(a ^ s[4], b ^ s[5])
    }

    fn hash_key(&self, key: &Key) -> u64 {
        match key {
            Key::Inline(bytes) => self.hash_words(&inline_words(bytes)),
            Key::Boxed(b) => self.long.hash_one(&**b),
        }
    }

    /// Pads the key `from_key` starts with (`len` bytes) and hashes it,
    /// from word loads of `from_key`; `None` for a long key.
    #[inline]
    pub fn pad_and_hash(&self, from_key: &[u8], len: usize) -> Option<(PaddedKey, u64)> {
        let words = padded_words(from_key, len)?;
        Some((PaddedKey(words), self.hash_words(&words)))
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
        KeyRef::of(key, |key| self.get_mut_ref(hash, key))
    }

    /// The value of `key`, whose hash is `hash`.
    #[inline]
    pub fn get_mut_ref(&mut self, hash: u64, key: KeyRef<'_>) -> Option<&mut V> {
        self.table
            .find_mut(hash, |(k, _)| key.matches(k))
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
        KeyRef::of(key, |key| self.insert_new_ref(hash, key, value))
    }

    /// Adds `key` (hash `hash`), which must not be in the map yet.
    pub fn insert_new_ref(&mut self, hash: u64, key: KeyRef<'_>, value: V) -> &mut V {
        let hasher = &self.hasher;
        let entry = self
            .table
            .insert_unique(hash, (key.to_key(), value), |(k, _)| hasher.hash_key(k));
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
        assert_eq!(std::mem::size_of::<Key>(), 32);
        assert!(matches!(Key::from(&short[..]), Key::Inline(_)));
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
    fn a_key_padded_from_its_packet_is_the_key_padded_alone() {
        let hasher = KeyHasher::new();
        let packet: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
        for len in 0..=INLINE_KEY {
            for at in [0, 40, 100 - 32, 100 - 31, 100 - len] {
                let key = &packet[at..at + len];
                let alone = PaddedKey::new(key).expect("short");
                let (padded, hash) = hasher.pad_and_hash(&packet[at..], len).expect("short");
                assert!(padded == alone, "len {len} at {at}");
                KeyRef::Short(&padded).with_bytes(|bytes| assert_eq!(bytes, key));
                assert_eq!(Key::from(key).as_bytes(), key);
                assert_eq!(hash, hasher.hash(key));
                assert_eq!(hash, hasher.hash_words(&alone.0));
                assert_eq!(hash, hasher.hash_key(&Key::from(key)));
            }
        }
        assert!(hasher.pad_and_hash(&packet, INLINE_KEY + 1).is_none());
        assert!(hasher.pad_and_hash(b"ab", 3).is_none());
        // The length byte tells a key from the same key with zeros after.
        assert!(PaddedKey::new(b"a") != PaddedKey::new(b"a\0"));
        assert_ne!(hasher.hash(b"a"), hasher.hash(b"a\0"));
        let mut map: KeyMap<u32> = KeyMap::new(hasher.clone());
        map.insert_new_hashed(hasher.hash(b"a"), b"a", 1);
        assert!(map.get_mut_hashed(hasher.hash(b"a\0"), b"a\0").is_none());
        assert_eq!(map.get(b"a"), Some(&1));
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
