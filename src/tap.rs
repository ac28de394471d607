//! The live tap: incoming StatsD lines whose name matches a glob, copied
//! to whoever is watching (admin `tap PATTERN`, the page's tap view over
//! `/tap`). Free when nobody watches: the receive path reads one relaxed
//! atomic per packet. Bounded: a slow watcher loses tap lines, counted and
//! told, and never holds up ingest.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::admin::Glob;

/// Lines queued per watcher before the next ones are missed.
pub const TAP_QUEUE: usize = 4096;

struct Watcher {
    glob: Glob,
    lines: mpsc::Sender<Box<[u8]>>,
    missed: AtomicU64,
}

/// The tap, shared by the receivers (offer) and the watchers.
#[derive(Default)]
pub struct Tap {
    watching: AtomicUsize,
    watchers: Mutex<Vec<Arc<Watcher>>>,
}

/// One watcher's end: the lines, and how many it missed. Dropping it
/// stops the copying.
pub struct Subscription {
    tap: Arc<Tap>,
    watcher: Arc<Watcher>,
    /// The matching lines, as received.
    pub lines: mpsc::Receiver<Box<[u8]>>,
}

impl Subscription {
    /// Lines missed since the last call (the queue was full).
    pub fn take_missed(&self) -> u64 {
        self.watcher.missed.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut watchers) = self.tap.watchers.lock() {
            watchers.retain(|w| !Arc::ptr_eq(w, &self.watcher));
            self.tap.watching.store(watchers.len(), Ordering::Relaxed);
        }
    }
}

impl Tap {
    /// Whether anyone watches (one relaxed load: the hot path's cost).
    #[inline]
    pub fn is_active(&self) -> bool {
        self.watching.load(Ordering::Relaxed) != 0
    }

    /// Starts watching lines whose name matches `pattern` (the admin
    /// delete globs: `*` any run of characters, dots included, `?` one);
    /// `None` when the glob is too big to compile.
    pub fn subscribe(self: &Arc<Self>, pattern: &str) -> Option<Subscription> {
        let glob = Glob::new(pattern)?;
        let (sender, lines) = mpsc::channel(TAP_QUEUE);
        let watcher = Arc::new(Watcher {
            glob,
            lines: sender,
            missed: AtomicU64::new(0),
        });
        let mut watchers = self.watchers.lock().ok()?;
        watchers.push(watcher.clone());
        self.watching.store(watchers.len(), Ordering::Relaxed);
        Some(Subscription {
            tap: self.clone(),
            watcher,
            lines,
        })
    }

    /// Copies `line` to every watcher whose glob matches its name (the
    /// bytes before the first `:`, `|` or `;`).
    pub fn offer(&self, line: &[u8]) {
        let end = line
            .iter()
            .position(|b| matches!(b, b':' | b'|' | b';'))
            .unwrap_or(line.len());
        let Ok(name) = std::str::from_utf8(&line[..end]) else {
            return;
        };
        let Ok(watchers) = self.watchers.lock() else {
            return;
        };
        for w in watchers.iter().filter(|w| w.glob.matches(name)) {
            if w.lines.try_send(line.into()).is_err() {
                w.missed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_lines_reach_the_watcher_and_a_full_queue_counts_misses() {
        let tap = Arc::new(Tap::default());
        assert!(!tap.is_active());
        let mut sub = tap.subscribe("api.*").expect("a valid glob");
        assert!(tap.is_active());
        tap.offer(b"api.hits:1|c");
        tap.offer(b"web.hits:1|c");
        tap.offer(b"api.lat:3|ms|@0.5");
        assert_eq!(&*sub.lines.try_recv().unwrap(), b"api.hits:1|c");
        assert_eq!(&*sub.lines.try_recv().unwrap(), b"api.lat:3|ms|@0.5");
        assert!(sub.lines.try_recv().is_err());
        for _ in 0..TAP_QUEUE + 10 {
            tap.offer(b"api.hits:1|c");
        }
        assert_eq!(sub.take_missed(), 10);
        assert_eq!(sub.take_missed(), 0);
        drop(sub);
        assert!(!tap.is_active());
    }
}
