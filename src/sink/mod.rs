//! Where flushed points go. A flush produces one [`PointBatch`]; every sink
//! gets a shared reference to it through a bounded queue, so a slow sink
//! drops batches (counted) instead of stalling the flush or ingest. Sinks
//! know nothing of StatsD types: they see names, values and a timestamp.

pub mod carbon;
pub mod console;
pub mod spy;
pub mod whisper;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The points of one flush. Names live in one string, so a flush of a
/// million points makes a handful of allocations, not a million.
#[derive(Debug, Default, Clone)]
pub struct PointBatch {
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

    pub fn push(&mut self, name: &str, value: f64) {
        self.push_with(value, |out| out.push_str(name));
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Name bytes of every point (for sizing buffers).
    pub fn name_bytes(&self) -> usize {
        self.names.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        let mut start = 0usize;
        self.points.iter().map(move |&(end, value)| {
            let name = &self.names[start..end as usize];
            start = end as usize;
            (name, value)
        })
    }
}

/// A destination for flushed points, run as its own task.
pub trait Sink: Send + 'static {
    /// A short name for logs, such as `carbon 127.0.0.1:2003`.
    fn describe(&self) -> String;

    /// Consumes batches until the channel closes (shutdown), then delivers
    /// what it still holds and returns.
    fn run(self, batches: mpsc::Receiver<Arc<PointBatch>>) -> impl Future<Output = ()> + Send;
}

/// The agent's handle on a running sink.
pub struct SinkHandle {
    pub name: String,
    sender: mpsc::Sender<Arc<PointBatch>>,
    task: JoinHandle<()>,
    /// Batches dropped because the sink's queue was full.
    pub dropped: Arc<AtomicU64>,
}

/// Watches a sink's queue from elsewhere (admin, self-metrics).
#[derive(Clone)]
pub struct SinkMonitor {
    pub name: String,
    sender: mpsc::WeakSender<Arc<PointBatch>>,
    pub dropped: Arc<AtomicU64>,
}

impl SinkMonitor {
    /// Flushes waiting in the queue (0 once the sink is closed).
    pub fn depth(&self) -> usize {
        self.sender
            .upgrade()
            .map(|s| s.max_capacity() - s.capacity())
            .unwrap_or(0)
    }

    /// The name as a metric path component.
    pub fn label(&self) -> String {
        self.name
            .split_whitespace()
            .next()
            .unwrap_or("sink")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    }
}

/// Flushes queued per sink before new ones are dropped.
const QUEUE_BATCHES: usize = 64;

impl SinkHandle {
    /// Starts `sink` on the current tokio runtime.
    pub fn spawn<S: Sink>(sink: S, runtime: &tokio::runtime::Handle) -> SinkHandle {
        let (sender, receiver) = mpsc::channel(QUEUE_BATCHES);
        let name = sink.describe();
        let task = runtime.spawn(sink.run(receiver));
        SinkHandle {
            name,
            sender,
            task,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A view of the queue that does not keep it open: (name, flushes
    /// waiting, flushes dropped so far).
    pub fn monitor(&self) -> SinkMonitor {
        SinkMonitor {
            name: self.name.clone(),
            sender: self.sender.downgrade(),
            dropped: self.dropped.clone(),
        }
    }

    /// Hands a batch over without blocking; drops it (counted) if full.
    pub fn submit(&self, batch: Arc<PointBatch>) {
        if self.sender.try_send(batch).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(sink = %self.name, dropped_batches = n, "sink queue full; flush dropped");
        }
    }

    /// Closes the queue and waits up to `grace` for the sink to finish.
    pub async fn close(self, grace: Duration) {
        let SinkHandle {
            name, sender, task, ..
        } = self;
        drop(sender);
        let abort = task.abort_handle();
        if tokio::time::timeout(grace, task).await.is_err() {
            abort.abort();
            tracing::warn!(sink = %name, ?grace, "sink did not finish within the shutdown timeout");
        }
    }
}
