//! Where flushed points go. A flush produces one [`PointBatch`]; every sink
//! gets a shared reference to it through a bounded queue, so a slow sink
//! drops batches (counted) instead of stalling the flush or ingest. Sinks
//! know nothing of StatsD types: they see names, values and a timestamp.

pub mod carbon;
pub mod console;
pub mod spy;
pub mod whisper;

pub use crate::point::PointBatch;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A destination for flushed points, run as its own task.
pub trait Sink: Send + 'static {
    /// A short name for logs, such as `carbon 127.0.0.1:2003`.
    fn describe(&self) -> String;

    /// Consumes batches until the channel closes (shutdown), then delivers
    /// what it still holds and returns.
    fn run(self, batches: mpsc::Receiver<Arc<PointBatch>>) -> impl Future<Output = ()> + Send;

    /// Told of every batch as it is handed over, on the flush thread,
    /// before the sink's task sees it (the store uses it for
    /// read-your-writes).
    fn hook(&self) -> Option<Arc<dyn SubmitHook>> {
        None
    }
}

/// Synchronous notice of a batch handed to a sink.
pub trait SubmitHook: Send + Sync {
    /// `batch` is about to be queued.
    fn submitting(&self, batch: &Arc<PointBatch>);
    /// `batch` was not queued (the queue was full).
    fn dropped(&self, batch: &Arc<PointBatch>);
}

/// The agent's handle on a running sink.
pub struct SinkHandle {
    /// The sink's description.
    pub name: String,
    sender: mpsc::Sender<Arc<PointBatch>>,
    task: JoinHandle<()>,
    /// Batches dropped because the sink's queue was full.
    pub dropped: Arc<AtomicU64>,
    hook: Option<Arc<dyn SubmitHook>>,
}

/// Hands batches to a sink from outside the flush thread (the carbon
/// receivers relaying what they received); never blocks.
#[derive(Clone)]
pub struct Submitter {
    name: String,
    sender: mpsc::Sender<Arc<PointBatch>>,
    dropped: Arc<AtomicU64>,
}

impl Submitter {
    /// Queues `batch`; a full queue drops it (counted with the sink's).
    pub fn submit(&self, batch: Arc<PointBatch>) {
        if self.sender.try_send(batch).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(sink = %self.name, dropped_batches = n, "sink queue full; relayed points dropped");
        }
    }
}

/// Watches a sink's queue from elsewhere (admin, self-metrics).
#[derive(Clone)]
pub struct SinkMonitor {
    /// The sink's description.
    pub name: String,
    sender: mpsc::WeakSender<Arc<PointBatch>>,
    /// Flushes dropped on a full queue.
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
        let hook = sink.hook();
        let task = runtime.spawn(sink.run(receiver));
        SinkHandle {
            name,
            sender,
            task,
            dropped: Arc::new(AtomicU64::new(0)),
            hook,
        }
    }

    /// A handle for submitting from elsewhere (it keeps the queue open).
    pub fn submitter(&self) -> Submitter {
        Submitter {
            name: self.name.clone(),
            sender: self.sender.clone(),
            dropped: self.dropped.clone(),
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
        if let Some(hook) = &self.hook {
            hook.submitting(&batch);
        }
        if let Err(refused) = self.sender.try_send(batch) {
            if let Some(hook) = &self.hook {
                let (mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b)) =
                    refused;
                hook.dropped(&b);
            }
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
