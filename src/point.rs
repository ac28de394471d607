//! A flush's points as sinks and the store see them: names, values and one
//! timestamp. Shared by the flush (which fills it), the sinks and the
//! store's writers; it knows nothing of StatsD.

use std::time::Instant;

/// The points of one flush. Names live in one string, so a flush of a
/// million points makes a handful of allocations, not a million.
#[derive(Debug, Default, Clone)]
pub struct PointBatch {
    /// Unix seconds of every point.
    pub timestamp: i64,
    names: String,
    /// (end of the name in `names`, value)
    points: Vec<(u32, f64)>,
    /// Points refused because their value was NaN or infinite.
    pub non_finite: u64,
    /// When the flush that made this batch began (for delivery times).
    pub started: Option<Instant>,
}

impl PointBatch {
    /// An empty batch.
    pub fn new(timestamp: i64) -> PointBatch {
        PointBatch {
            timestamp,
            ..PointBatch::default()
        }
    }

    /// An empty batch with room for `points` points of `name_bytes` in all.
    pub fn with_capacity(timestamp: i64, points: usize, name_bytes: usize) -> PointBatch {
        PointBatch {
            timestamp,
            names: String::with_capacity(name_bytes),
            points: Vec::with_capacity(points),
            non_finite: 0,
            started: None,
        }
    }

    /// Empties the batch for reuse, keeping its buffers.
    pub fn reset(&mut self, timestamp: i64) {
        self.timestamp = timestamp;
        self.names.clear();
        self.points.clear();
        self.non_finite = 0;
        self.started = None;
    }

    /// Adds a point whose name `write_name` appends. Non-finite values are
    /// not added (carbon cannot store them); they are counted instead.
    pub fn push_with(&mut self, value: f64, write_name: impl FnOnce(&mut String)) {
        if !value.is_finite() {
            self.non_finite += 1;
            return;
        }
        write_name(&mut self.names);
        self.points.push((self.names.len() as u32, value));
    }

    /// Adds a point.
    pub fn push(&mut self, name: &str, value: f64) {
        self.push_with(value, |out| out.push_str(name));
    }

    /// Points in the batch.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// No point.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Name bytes of every point (for sizing buffers).
    pub fn name_bytes(&self) -> usize {
        self.names.len()
    }

    /// (name, value) of every point, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        let mut start = 0usize;
        self.points.iter().map(move |&(end, value)| {
            let name = &self.names[start..end as usize];
            start = end as usize;
            (name, value)
        })
    }
}
