//! The lock-sharded aggregator: StatsD samples in, per-key state kept until
//! the flush takes it.
//!
//! Keys are spread over N shards by their hash ([`KeyHasher`]); each
//! shard is a mutex over four maps (counters, gauges, timers, sets), as in
//! Etsy where each type has its own namespace. Receivers group a batch's
//! samples by shard and lock each shard once per batch
//! ([`Aggregator::apply`]). Updating a key that exists
//! allocates nothing. The flush ([`flush`]) takes each shard's interval out
//! under its lock and does all arithmetic and naming outside it.

pub mod flush;
pub mod keymap;
pub mod timer;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::protocol::statsd::{Sample, SampleKind};
use timer::TimerState;

pub use keymap::{Key, KeyHasher, KeyMap, KeyRef, PaddedKey, Prefetcher};

type Map<V> = KeyMap<V>;

#[derive(Debug, Clone, Copy)]
/// A gauge's value and the flushes it may still go unset (gaugesMaxTTL).
pub struct Gauge {
    /// The last value set.
    pub value: f64,
    /// Flushes left before deletion (only with delete_gauges).
    pub ttl: u32,
    /// False for gauges the agent sets itself (never TTL-deleted).
    pub from_packets: bool,
}

/// The four kinds of state, for the admin interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Counters.
    Counter,
    /// Timers.
    Timer,
    /// Gauges.
    Gauge,
    /// Sets.
    Set,
}

/// One key's state as the admin interface shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Dumped {
    /// A counter or gauge value.
    Number(f64),
    /// A timer's values.
    Numbers(Vec<f64>),
    /// A timer in histogram mode: how many values it holds.
    Summary(u64),
    /// A set's members.
    Strings(Vec<String>),
}

/// One shard: a lock's worth of the four metric maps.
pub struct Shard {
    /// Counters: the interval's sum (value / rate).
    pub counters: Map<f64>,
    /// Gauges.
    pub gauges: Map<Gauge>,
    /// Timers: the interval's samples.
    pub timers: Map<TimerState>,
    /// Sets: the interval's unique members.
    pub sets: Map<HashSet<Box<[u8]>, ahash::RandomState>>,
}

/// Caps on live series; 0 is no cap. Checked only when a sample would
/// create a series, so known series cost nothing. Receivers check them
/// concurrently, so a cap can be passed by at most one series per
/// receiver.
#[derive(Default)]
pub struct SeriesCaps {
    /// All kinds together (flush.max_series, --max-series).
    pub total: AtomicUsize,
    /// Per kind: counters, timers, gauges, sets.
    pub per_kind: [AtomicUsize; 4],
    /// Series created per flush interval, all kinds.
    pub new_per_interval: AtomicUsize,
}

/// Where the caps stand: live series at the last flush, series created
/// since, and what was refused.
#[derive(Default)]
struct Admission {
    live: [AtomicUsize; 4],
    created: [AtomicUsize; 4],
    dropped: AtomicU64,
    /// Refused samples per name prefix (up to the first `.`), bounded.
    prefixes: Mutex<HashMap<String, u64>>,
}

/// Prefixes remembered for the admin's "who hit the cap".
const MAX_PREFIXES: usize = 256;

fn kind_index(kind: SampleKind) -> usize {
    match kind {
        SampleKind::Counter => 0,
        SampleKind::Timer => 1,
        SampleKind::Gauge { .. } => 2,
        SampleKind::Set => 3,
    }
}

impl Admission {
    /// Whether a new series of `kind` may be created under `caps`.
    fn admit(&self, caps: &SeriesCaps, kind: usize) -> bool {
        let load = |a: &AtomicUsize| a.load(Ordering::Relaxed);
        let (total, per_kind, per_interval) = (
            load(&caps.total),
            load(&caps.per_kind[kind]),
            load(&caps.new_per_interval),
        );
        if total | per_kind | per_interval != 0 {
            let created: usize = self.created.iter().map(load).sum();
            let live: usize = self.live.iter().map(load).sum();
            let full = (per_kind != 0
                && load(&self.live[kind]) + load(&self.created[kind]) >= per_kind)
                || (total != 0 && live + created >= total)
                || (per_interval != 0 && created >= per_interval);
            if full {
                return false;
            }
        }
        self.created[kind].fetch_add(1, Ordering::Relaxed);
        true
    }

    /// `n` samples of names starting with `prefix` were refused.
    fn refused(&self, prefix: &[u8], n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        let mut prefixes = self.prefixes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = prefixes.get_mut(String::from_utf8_lossy(prefix).as_ref()) {
            *count += n;
        } else if prefixes.len() < MAX_PREFIXES {
            prefixes.insert(String::from_utf8_lossy(prefix).into_owned(), n);
        }
    }
}

/// A name's prefix for the caps' report: up to its first `.`.
fn prefix_of(key: &[u8]) -> &[u8] {
    key.split(|&b| b == b'.').next().unwrap_or(key)
}

/// Refusals of one batch, run-length by prefix, so a flood of one prefix
/// takes the report's lock once per batch rather than once per sample.
#[derive(Default)]
struct Refusals {
    prefix: Vec<u8>,
    count: u64,
}

impl Refusals {
    fn add(&mut self, admission: &Admission, key: KeyRef<'_>) {
        key.with_bytes(|key| {
            let prefix = prefix_of(key);
            if self.count > 0 && self.prefix != prefix {
                admission.refused(&self.prefix, self.count);
                self.count = 0;
            }
            if self.count == 0 {
                self.prefix.clear();
                self.prefix.extend_from_slice(prefix);
            }
            self.count += 1;
        });
    }

    fn finish(self, admission: &Admission) {
        if self.count > 0 {
            admission.refused(&self.prefix, self.count);
        }
    }
}

/// Settings the hot path reads; atomics so a reload can change them.
pub struct IngestSettings {
    /// Caps on live series.
    pub caps: SeriesCaps,
    /// flush.timer_exact_limit.
    pub timer_exact_limit: AtomicU32,
    /// flush.delete_gauges.
    pub delete_gauges: AtomicBool,
    /// flush.gauges_max_ttl.
    pub gauges_max_ttl: AtomicU32,
}

/// The in-memory aggregates, sharded by key hash, each shard behind its own mutex.
pub struct Aggregator {
    shards: Box<[Mutex<Shard>]>,
    hasher: KeyHasher,
    /// Settings the receivers read (reloadable).
    pub settings: IngestSettings,
    admission: Admission,
}

impl Aggregator {
    /// An aggregator of `shards` shards.
    pub fn new(shards: usize, stats: &crate::config::StatsConfig) -> Aggregator {
        let hasher = KeyHasher::new();
        let shards = (0..shards.max(1))
            .map(|_| Mutex::new(Shard::new(&hasher)))
            .collect();
        Aggregator {
            shards,
            hasher,
            admission: Admission::default(),
            settings: IngestSettings {
                caps: SeriesCaps::default(),
                timer_exact_limit: AtomicU32::new(
                    stats.timer_exact_limit.min(u32::MAX as usize) as u32
                ),
                delete_gauges: AtomicBool::new(stats.delete_gauges),
                gauges_max_ttl: AtomicU32::new(stats.gauges_max_ttl),
            },
        }
    }

    /// How many shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The hash of `key` that picks its shard and finds it there.
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash(key)
    }

    /// The shard that owns a key with this hash.
    pub fn shard_for(&self, hash: u64) -> usize {
        keymap::shard_bits(hash, self.shards.len())
    }

    /// The shard that owns `key`.
    pub fn shard_of(&self, key: &[u8]) -> usize {
        self.shard_for(self.hash(key))
    }

    /// Locks one shard. A receiver that panicked while holding the lock
    /// leaves consistent maps behind (updates are single assignments), so a
    /// poisoned lock is used as is.
    pub fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies samples (key hash, key, sample) that all belong to
    /// `shard`, under one lock. Returns where that shard's maps keep their
    /// slots now, for prefetching the next batch's lookups.
    pub fn apply<'a>(
        &self,
        shard: usize,
        samples: impl Iterator<Item = (u64, KeyRef<'a>, Sample<'a>)>,
    ) -> ShardHints {
        let limit = self.settings.timer_exact_limit.load(Ordering::Relaxed) as usize;
        let ttl = if self.settings.delete_gauges.load(Ordering::Relaxed) {
            self.settings.gauges_max_ttl.load(Ordering::Relaxed)
        } else {
            0
        };
        let mut guard = self.lock(shard);
        let mut refusals = Refusals::default();
        for (hash, key, sample) in samples {
            if !guard.update(hash, key, &sample, limit, ttl, Some(self)) {
                refusals.add(&self.admission, key);
            }
        }
        let hints = guard.hints();
        drop(guard);
        refusals.finish(&self.admission);
        hints
    }

    /// Applies one sample (locks its shard; for the agent's own metrics,
    /// which no cap refuses).
    pub fn apply_one(&self, key: &[u8], sample: Sample<'_>) {
        let hash = self.hash(key);
        let limit = self.settings.timer_exact_limit.load(Ordering::Relaxed) as usize;
        KeyRef::of(key, |key| {
            self.lock(self.shard_for(hash))
                .update(hash, key, &sample, limit, 0, None)
        });
    }

    /// Samples refused by the caps since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.admission.dropped.swap(0, Ordering::Relaxed)
    }

    /// The name prefixes whose new series the caps refused most, with
    /// their counts since start (most first, at most `n`).
    pub fn top_refused_prefixes(&self, n: usize) -> Vec<(String, u64)> {
        let prefixes = self
            .admission
            .prefixes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut top: Vec<(String, u64)> = prefixes.iter().map(|(k, v)| (k.clone(), *v)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(n);
        top
    }

    /// After a flush: the caps count from the series that are live now.
    pub fn interval_done(&self) {
        for (i, n) in self.series().into_iter().enumerate() {
            self.admission.live[i].store(n, Ordering::Relaxed);
            self.admission.created[i].store(0, Ordering::Relaxed);
        }
    }

    /// Sets a gauge the agent owns (such as timestamp_lag): never TTL-deleted.
    pub fn set_internal_gauge(&self, key: &[u8], value: f64) {
        let mut shard = self.lock(self.shard_of(key));
        let gauge = Gauge {
            value,
            ttl: 0,
            from_packets: false,
        };
        *shard.gauges.get_or_insert_with(key, || gauge) = gauge;
    }

    /// Makes sure a counter exists (Etsy creates its internal counters at 0).
    pub fn ensure_counter(&self, key: &[u8]) {
        let mut shard = self.lock(self.shard_of(key));
        shard.counters.get_or_insert_with(key, || 0.0);
    }

    /// Counts of live series: (counters, timers, gauges, sets).
    pub fn series(&self) -> [usize; 4] {
        let mut n = [0; 4];
        for shard in self.shards() {
            n[0] += shard.counters.len();
            n[1] += shard.timers.len();
            n[2] += shard.gauges.len();
            n[3] += shard.sets.len();
        }
        n
    }

    /// A copy of one kind of state, each shard read under its lock (so a
    /// shard is never seen half-updated), sorted by key.
    pub fn dump(&self, kind: Kind) -> Vec<(String, Dumped)> {
        let mut out = Vec::new();
        self.dump_each(kind, &mut |entries| {
            out.extend(entries);
            true
        });
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The live values of `kind`, one shard at a time, each shard's sorted
    /// by name and handed to `each` after its lock is released; stops when
    /// `each` returns false. Memory holds one shard's entries.
    pub fn dump_each(&self, kind: Kind, each: &mut dyn FnMut(Vec<(String, Dumped)>) -> bool) {
        let name = |k: &Key| String::from_utf8_lossy(k).into_owned();
        for i in 0..self.shards.len() {
            let mut out = Vec::new();
            let shard = self.lock(i);
            match kind {
                Kind::Counter => out.extend(
                    shard
                        .counters
                        .iter()
                        .map(|(k, v)| (name(k), Dumped::Number(*v))),
                ),
                Kind::Gauge => out.extend(
                    shard
                        .gauges
                        .iter()
                        .map(|(k, g)| (name(k), Dumped::Number(g.value))),
                ),
                Kind::Timer => out.extend(shard.timers.iter().map(|(k, t)| {
                    let dumped = match t.exact_values() {
                        (Some(values), _) => Dumped::Numbers(values.to_vec()),
                        (None, n) => Dumped::Summary(n),
                    };
                    (name(k), dumped)
                })),
                Kind::Set => out.extend(shard.sets.iter().map(|(k, members)| {
                    let mut m: Vec<String> = members
                        .iter()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .collect();
                    m.sort();
                    (name(k), Dumped::Strings(m))
                })),
            }
            drop(shard);
            out.sort_by(|a, b| a.0.cmp(&b.0));
            if !out.is_empty() && !each(out) {
                return;
            }
        }
    }

    /// Deletes the keys of `kind` that `matches`; returns their names.
    pub fn delete(&self, kind: Kind, matches: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut deleted = Vec::new();
        for mut shard in self.shards() {
            let mut take = |k: &Key| {
                let text = String::from_utf8_lossy(k);
                if matches(&text) {
                    deleted.push(text.into_owned());
                    false
                } else {
                    true
                }
            };
            match kind {
                Kind::Counter => shard.counters.retain(|k, _| take(k)),
                Kind::Gauge => shard.gauges.retain(|k, _| take(k)),
                Kind::Timer => shard.timers.retain(|k, _| take(k)),
                Kind::Set => shard.sets.retain(|k, _| take(k)),
            }
        }
        deleted.sort();
        deleted
    }

    fn shards(&self) -> impl Iterator<Item = MutexGuard<'_, Shard>> {
        (0..self.shards.len()).map(|i| self.lock(i))
    }
}

impl Shard {
    fn new(hasher: &KeyHasher) -> Shard {
        Shard {
            counters: KeyMap::new(hasher.clone()),
            gauges: KeyMap::new(hasher.clone()),
            timers: KeyMap::new(hasher.clone()),
            sets: KeyMap::new(hasher.clone()),
        }
    }

    /// Where the four maps keep their slots, for prefetching.
    fn hints(&self) -> ShardHints {
        ShardHints([
            self.counters.prefetcher(),
            self.timers.prefetcher(),
            self.gauges.prefetcher(),
            self.sets.prefetcher(),
        ])
    }

    /// Applies a sample; false when it would have created a series the
    /// caps (of `capped`, None for the agent's own) refuse.
    fn update(
        &mut self,
        hash: u64,
        key: KeyRef<'_>,
        sample: &Sample<'_>,
        timer_limit: usize,
        gauge_ttl: u32,
        capped: Option<&Aggregator>,
    ) -> bool {
        let admit =
            || capped.is_none_or(|a| a.admission.admit(&a.settings.caps, kind_index(sample.kind)));
        match sample.kind {
            SampleKind::Counter => {
                let add = sample.value * (1.0 / sample.rate);
                match self.counters.get_mut_ref(hash, key) {
                    Some(c) => *c += add,
                    None if !admit() => return false,
                    None => {
                        self.counters.insert_new_ref(hash, key, add);
                    }
                }
            }
            SampleKind::Gauge { delta } => {
                let value = sample.value;
                match self.gauges.get_mut_ref(hash, key) {
                    Some(g) => {
                        g.value = if delta { g.value + value } else { value };
                        g.ttl = gauge_ttl;
                        g.from_packets = true;
                    }
                    None if !admit() => return false,
                    None => {
                        // A delta on a missing gauge starts from 0, as in Etsy.
                        let gauge = Gauge {
                            value,
                            ttl: gauge_ttl,
                            from_packets: true,
                        };
                        self.gauges.insert_new_ref(hash, key, gauge);
                    }
                }
            }
            SampleKind::Timer => match self.timers.get_mut_ref(hash, key) {
                Some(t) => t.record(sample.value, sample.rate, timer_limit),
                None if !admit() => return false,
                None => {
                    let mut t = TimerState::default();
                    t.record(sample.value, sample.rate, timer_limit);
                    self.timers.insert_new_ref(hash, key, t);
                }
            },
            SampleKind::Set => {
                let set = match self.sets.get_mut_ref(hash, key) {
                    Some(s) => s,
                    None if !admit() => return false,
                    None => self.sets.insert_new_ref(hash, key, HashSet::default()),
                };
                if !set.contains(sample.member) {
                    set.insert(Box::from(sample.member));
                }
            }
        }
        true
    }
}

/// Where one shard's maps (counters, timers, gauges, sets) kept their
/// slots when it was last locked. A receiver prefetches the next lookups
/// with them while it works on the current ones; after the maps change
/// (growth, a flush) a hint is only wrong, never unsafe.
#[derive(Clone, Copy, Default)]
pub struct ShardHints([Option<Prefetcher>; 4]);

impl ShardHints {
    fn prefetch(&self, hash: u64, kind: SampleKind) {
        if let Some(p) = &self.0[kind_index(kind)] {
            p.prefetch(hash);
        }
    }
}

/// Samples ahead of the one being applied whose slots are prefetched:
/// enough to cover a miss to memory, few enough to stay in the CPU's
/// outstanding-miss buffers.
const PREFETCH_AHEAD: usize = 8;

/// Routes the samples of one receive batch to their shards: each sample
/// goes into its shard's queue as one 64-byte record (a short key padded
/// inside it; long keys and set members in one reusable arena), and each
/// shard is locked once. Reused across batches, so a steady stream of
/// known keys allocates nothing.
#[derive(Default)]
pub struct ShardBatch {
    arena: Vec<u8>,
    queues: Vec<Vec<Pending>>,
    hints: Vec<ShardHints>,
}

/// A queued key: its [`PaddedKey`], or for a long key its arena range in
/// the first two words and 0xFF in byte 31 (which a padded key keeps 0),
/// so a queued sample stays within one cache line.
#[derive(Clone, Copy)]
struct BatchKey(PaddedKey);

/// Byte 31 of a long key's [`BatchKey`].
const LONG_MARK: u64 = 0xFF << 56;

impl BatchKey {
    fn long(start: usize, end: usize) -> BatchKey {
        BatchKey(PaddedKey([start as u64, end as u64, 0, LONG_MARK]))
    }

    /// Where a long key starts in the arena.
    fn long_start(&self) -> Option<usize> {
        let words = &self.0 .0;
        (words[3] == LONG_MARK).then_some(words[0] as usize)
    }

    #[inline(always)]
    fn get<'a>(&'a self, arena: &'a [u8]) -> KeyRef<'a> {
        let words = &self.0 .0;
        if words[3] == LONG_MARK {
            KeyRef::Long(
                arena
                    .get(words[0] as usize..words[1] as usize)
                    .unwrap_or_default(),
            )
        } else {
            KeyRef::Short(&self.0)
        }
    }
}

/// A key added to a [`ShardBatch`], with its hash and shard.
#[derive(Clone, Copy)]
pub struct QueuedKey {
    key: BatchKey,
    hash: u64,
    shard: u32,
}

impl QueuedKey {
    fn short(aggregator: &Aggregator, padded: PaddedKey, hash: u64) -> QueuedKey {
        QueuedKey {
            key: BatchKey(padded),
            hash,
            shard: aggregator.shard_for(hash) as u32,
        }
    }
}

/// One queued sample. `extra` is the rate's bits, or for a set the
/// member's arena range (sets have no rate and no value).
struct Pending {
    key: BatchKey,
    hash: u64,
    value: f64,
    extra: u64,
    kind: SampleKind,
}

impl ShardBatch {
    /// Adds a key that `write` appends to the batch's arena, hashed once
    /// for its shard and its map lookup.
    pub fn add_key(
        &mut self,
        aggregator: &Aggregator,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> QueuedKey {
        let start = self.arena.len();
        write(&mut self.arena);
        let written = &self.arena[start..];
        if let Some((padded, hash)) = aggregator.hasher.pad_and_hash(written, written.len()) {
            self.arena.truncate(start);
            return QueuedKey::short(aggregator, padded, hash);
        }
        let hash = aggregator.hash(written);
        QueuedKey {
            key: BatchKey::long(start, self.arena.len()),
            hash,
            shard: aggregator.shard_for(hash) as u32,
        }
    }

    /// Queues a plain line's sample: its key is the `len` bytes that
    /// `from_key` (the rest of the packet) starts with. Inlined whole, so
    /// a short key goes from word loads of the packet to the queue in
    /// registers.
    #[inline(always)]
    pub fn push_plain(
        &mut self,
        aggregator: &Aggregator,
        from_key: &[u8],
        len: usize,
        sample: &Sample<'_>,
    ) {
        let key = self.add_plain_key(aggregator, from_key, len);
        self.push(key, sample);
    }

    /// Adds the key of `len` bytes that `from_key` starts with: a short one
    /// is padded from word loads and never copied into the arena.
    #[inline(always)]
    fn add_plain_key(&mut self, aggregator: &Aggregator, from_key: &[u8], len: usize) -> QueuedKey {
        match aggregator.hasher.pad_and_hash(from_key, len) {
            Some((padded, hash)) => QueuedKey::short(aggregator, padded, hash),
            None => {
                let key = from_key.get(..len).unwrap_or(from_key);
                self.add_key(aggregator, |arena| arena.extend_from_slice(key))
            }
        }
    }

    /// Takes back the key added last, when no sample of its line was good.
    pub fn drop_key(&mut self, key: QueuedKey) {
        if let Some(start) = key.key.long_start() {
            self.arena.truncate(start);
        }
    }

    /// Queues one sample of `key`.
    #[inline(always)]
    pub fn push(&mut self, key: QueuedKey, sample: &Sample<'_>) {
        let extra = if sample.kind == SampleKind::Set {
            let start = self.arena.len() as u64;
            self.arena.extend_from_slice(sample.member);
            (start << 32) | self.arena.len() as u64
        } else {
            sample.rate.to_bits()
        };
        let shard = key.shard as usize;
        if shard >= self.queues.len() {
            self.queues.resize_with(shard + 1, Vec::new);
        }
        self.queues[shard].push(Pending {
            key: key.key,
            hash: key.hash,
            value: sample.value,
            extra,
            kind: sample.kind,
        });
    }

    /// Applies everything queued, one lock per shard touched, and empties
    /// the batch.
    pub fn commit(&mut self, aggregator: &Aggregator) {
        let shards = aggregator.shard_count().min(self.queues.len());
        self.hints.resize(self.queues.len(), ShardHints::default());
        let (arena, queues, hints) = (&self.arena, &self.queues, &mut self.hints);
        // The prefetch runs PREFETCH_AHEAD samples ahead of the updates,
        // across the end of one shard's queue into the next one's.
        let mut ahead = Ahead::new(queues);
        for _ in 0..PREFETCH_AHEAD {
            ahead.prefetch_next(hints);
        }
        for (shard, queue) in queues.iter().enumerate().take(shards) {
            if queue.is_empty() {
                continue;
            }
            let ahead_hints = &*hints;
            let ahead = &mut ahead;
            let samples = queue.iter().map(|p| {
                ahead.prefetch_next(ahead_hints);
                let key = p.key.get(arena);
                let (rate, member) = if p.kind == SampleKind::Set {
                    let (from, to) = ((p.extra >> 32) as usize, p.extra as u32 as usize);
                    (1.0, &arena[from..to])
                } else {
                    (f64::from_bits(p.extra), &[][..])
                };
                let sample = Sample {
                    kind: p.kind,
                    value: p.value,
                    rate,
                    member,
                };
                (p.hash, key, sample)
            });
            hints[shard] = aggregator.apply(shard, samples);
        }
        for queue in &mut self.queues {
            queue.clear();
        }
        self.arena.clear();
    }
}

/// The prefetch cursor of a commit: the next queued sample to prefetch,
/// in the order the commit applies them.
struct Ahead<'q> {
    queues: &'q [Vec<Pending>],
    shard: usize,
    at: usize,
}

impl<'q> Ahead<'q> {
    fn new(queues: &'q [Vec<Pending>]) -> Ahead<'q> {
        Ahead {
            queues,
            shard: 0,
            at: 0,
        }
    }

    #[inline]
    fn prefetch_next(&mut self, hints: &[ShardHints]) {
        while let Some(queue) = self.queues.get(self.shard) {
            if let Some(p) = queue.get(self.at) {
                if let Some(h) = hints.get(self.shard) {
                    h.prefetch(p.hash, p.kind);
                }
                self.at += 1;
                return;
            }
            self.shard += 1;
            self.at = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_sample_fills_one_cache_line() {
        assert!(std::mem::size_of::<Pending>() <= 64);
    }
}
