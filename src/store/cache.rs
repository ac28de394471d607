//! The cache between the carbon receivers and the writer threads, with
//! carbon-cache's semantics: one value per metric and timestamp (the last
//! received wins), drained by the writers, which write each metric's
//! points with one update_many; bounded in points (full: the new point is
//! dropped and counted, like carbon's MAX_CACHE_SIZE); readable by the
//! read API before the points reach disk.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Shards of the cache; writer `i` of `n` drains the shards `s` with
/// `s % n == i`, and a metric's shard is [`shard_of`] its name, so a
/// metric always goes to the same writer (flushed or received).
pub const SHARDS: usize = 64;

/// The shard of `name` (also the writers' routing).
pub fn shard_of(router: &ahash::RandomState, name: &str) -> usize {
    (router.hash_one(name) % SHARDS as u64) as usize
}

/// The writers' router: fixed seeds, so routing is the same across
/// reloads and writer counts.
pub fn router() -> ahash::RandomState {
    ahash::RandomState::with_seeds(1, 2, 3, 4)
}

/// A metric's points, sorted by timestamp, one per timestamp. Points
/// mostly arrive in time order, so adding one is usually a push.
type Points = Vec<(i64, f64)>;

type Shard = HashMap<Box<str>, Points, ahash::RandomState>;

/// Puts `(timestamp, value)` in its place; true when the timestamp is new
/// (false: an earlier value was replaced).
fn put(points: &mut Points, timestamp: i64, value: f64) -> bool {
    match points.last() {
        Some((last, _)) if *last < timestamp => {}
        None => {}
        Some(_) => match points.binary_search_by_key(&timestamp, |(t, _)| *t) {
            Ok(i) => {
                points[i].1 = value;
                return false;
            }
            Err(i) => {
                points.insert(i, (timestamp, value));
                return true;
            }
        },
    }
    points.push((timestamp, value));
    true
}

/// A metric's drained points, oldest first.
pub type Drained = (Box<str>, Vec<(i64, f64)>);

/// Received points not yet written.
#[derive(Debug)]
pub struct ReceivedCache {
    shards: Vec<Mutex<Shard>>,
    points: AtomicUsize,
    max_points: AtomicUsize,
    router: ahash::RandomState,
}

impl Default for ReceivedCache {
    fn default() -> ReceivedCache {
        ReceivedCache::new(10_000_000)
    }
}

impl ReceivedCache {
    /// A cache holding at most `max_points`.
    pub fn new(max_points: usize) -> ReceivedCache {
        ReceivedCache {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(ahash::RandomState::new())))
                .collect(),
            points: AtomicUsize::new(0),
            max_points: AtomicUsize::new(max_points),
            router: router(),
        }
    }

    /// Changes the bound (a reload).
    pub fn set_max_points(&self, max_points: usize) {
        self.max_points.store(max_points, Ordering::Relaxed);
    }

    /// Adds a point; false when the cache is full and it was dropped.
    pub fn insert(&self, name: &str, timestamp: i64, value: f64) -> bool {
        let Ok(mut shard) = self.shards[shard_of(&self.router, name)].lock() else {
            return false;
        };
        let full = self.points.load(Ordering::Relaxed) >= self.max_points.load(Ordering::Relaxed);
        match shard.get_mut(name) {
            Some(points) => {
                // Full: only a replacement fits.
                if full
                    && points
                        .binary_search_by_key(&timestamp, |(t, _)| *t)
                        .is_err()
                {
                    return false;
                }
                if put(points, timestamp, value) {
                    self.points.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                if full {
                    return false;
                }
                shard.insert(name.into(), vec![(timestamp, value)]);
                self.points.fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }

    /// Takes everything in the shards writer `index` of `writers` owns.
    pub fn drain(&self, index: usize, writers: usize) -> Vec<Drained> {
        let mut out = Vec::new();
        for s in (0..SHARDS).filter(|s| s % writers.max(1) == index) {
            let Ok(mut shard) = self.shards[s].lock() else {
                continue;
            };
            if shard.is_empty() {
                continue;
            }
            for (name, points) in shard.drain() {
                self.points.fetch_sub(points.len(), Ordering::Relaxed);
                out.push((name, points));
            }
        }
        out
    }

    /// `name`'s cached points, oldest first.
    pub fn points(&self, name: &str) -> Vec<(i64, f64)> {
        self.shards[shard_of(&self.router, name)]
            .lock()
            .ok()
            .and_then(|shard| shard.get(name).cloned())
            .unwrap_or_default()
    }

    /// Points held.
    pub fn len(&self) -> usize {
        self.points.load(Ordering::Relaxed)
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_received_wins_and_the_bound_holds() {
        let cache = ReceivedCache::new(3);
        assert!(cache.insert("a", 10, 1.0));
        assert!(cache.insert("a", 10, 2.0), "same timestamp: replaced");
        assert!(cache.insert("a", 20, 3.0));
        assert!(cache.insert("b", 10, 4.0));
        assert!(!cache.insert("c", 10, 5.0), "full");
        assert!(cache.insert("a", 20, 6.0), "a replacement fits when full");
        assert_eq!(cache.points("a"), vec![(10, 2.0), (20, 6.0)]);
        assert_eq!(cache.len(), 3);
        let drained: usize = (0..2).map(|i| cache.drain(i, 2).len()).sum();
        assert_eq!(drained, 2);
        assert!(cache.is_empty() && cache.points("a").is_empty());
    }

    #[test]
    fn points_out_of_order_come_out_sorted_one_per_timestamp() {
        let cache = ReceivedCache::new(100);
        for (t, v) in [
            (30, 1.0),
            (10, 2.0),
            (20, 3.0),
            (10, 4.0),
            (40, 5.0),
            (30, 6.0),
        ] {
            assert!(cache.insert("m", t, v));
        }
        assert_eq!(
            cache.points("m"),
            vec![(10, 4.0), (20, 3.0), (30, 6.0), (40, 5.0)]
        );
        assert_eq!(cache.len(), 4);
    }
}
