//! Read-your-writes: the flushes handed to the store that its writer
//! threads have not all written yet. The read API overlays their points on
//! what it reads from the files, as graphite-web asks carbon-cache's cache,
//! so a point can be read back as soon as the flush that made it ended.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::point::PointBatch;

/// Flushes kept at most; older ones are forgotten (their points are read
/// from the files by then, or were dropped by a full queue).
const MAX_PENDING: usize = 64;

struct Entry {
    batch: Arc<PointBatch>,
    /// Writers that have not written it yet.
    remaining: AtomicUsize,
    /// Name → value, built on the first read that needs it.
    lookup: OnceLock<HashMap<Box<str>, f64>>,
}

/// The flushes not yet written by every writer.
#[derive(Default)]
pub struct Pending {
    entries: Mutex<Vec<Arc<Entry>>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pending({} flushes)", self.len())
    }
}

impl Pending {
    /// `batch` goes to `writers` writers (called before it is queued).
    pub fn add(&self, batch: &Arc<PointBatch>, writers: usize) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MAX_PENDING {
            entries.remove(0);
        }
        entries.push(Arc::new(Entry {
            batch: batch.clone(),
            remaining: AtomicUsize::new(writers.max(1)),
            lookup: OnceLock::new(),
        }));
    }

    /// One writer has written `batch` (or will never: its queue was full).
    pub fn written(&self, batch: &Arc<PointBatch>) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if let Some(at) = entries.iter().position(|e| Arc::ptr_eq(&e.batch, batch)) {
            if entries[at].remaining.fetch_sub(1, Ordering::AcqRel) <= 1 {
                entries.remove(at);
            }
        }
    }

    /// `batch` will not reach the writers at all.
    pub fn forget(&self, batch: &Arc<PointBatch>) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|e| !Arc::ptr_eq(&e.batch, batch));
        }
    }

    /// `name`'s points not yet in its file, oldest first: (timestamp, value).
    pub fn points(&self, name: &str) -> Vec<(i64, f64)> {
        let entries: Vec<Arc<Entry>> = match self.entries.lock() {
            Ok(e) => e.clone(),
            Err(_) => return Vec::new(),
        };
        entries
            .iter()
            .filter_map(|e| {
                let lookup = e
                    .lookup
                    .get_or_init(|| e.batch.iter().map(|(n, v)| (Box::from(n), v)).collect());
                lookup.get(name).map(|v| (e.batch.timestamp, *v))
            })
            .collect()
    }

    /// Flushes waiting.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// None waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_stay_until_every_writer_wrote_them() {
        let pending = Pending::default();
        let mut batch = PointBatch::new(100);
        batch.push("a.b", 1.5);
        let batch = Arc::new(batch);
        pending.add(&batch, 2);
        assert_eq!(pending.points("a.b"), vec![(100, 1.5)]);
        assert!(pending.points("a.c").is_empty());
        pending.written(&batch);
        assert_eq!(pending.len(), 1);
        pending.written(&batch);
        assert!(pending.is_empty());
        pending.add(&batch, 1);
        pending.forget(&batch);
        assert!(pending.is_empty());
    }
}
