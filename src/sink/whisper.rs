//! The whisper sink: a thin adapter that hands each flush to the store's
//! writer threads ([`crate::store::writer::WriterPool`]).

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::point::PointBatch;
use crate::sink::{Sink, SubmitHook};
use crate::store::pending::Pending;
use crate::store::schema::Schemas;
use crate::store::writer::{StoreSettings, WriterPool};
use crate::telemetry::Telemetry;

/// Flushes into the embedded whisper store.
pub struct WhisperSink {
    settings: StoreSettings,
    schemas: Schemas,
    stats: Arc<Telemetry>,
}

impl WhisperSink {
    /// A sink writing under `settings.root` with these schemas.
    pub fn new(settings: StoreSettings, schemas: Schemas, stats: Arc<Telemetry>) -> WhisperSink {
        WhisperSink {
            settings,
            schemas,
            stats,
        }
    }
}

/// Registers each flush as pending before the writers see it.
struct PendingHook {
    pending: Arc<Pending>,
    writers: usize,
}

impl SubmitHook for PendingHook {
    fn submitting(&self, batch: &Arc<PointBatch>) {
        self.pending.add(batch, self.writers);
    }

    fn dropped(&self, batch: &Arc<PointBatch>) {
        self.pending.forget(batch);
    }
}

impl Sink for WhisperSink {
    fn hook(&self) -> Option<Arc<dyn SubmitHook>> {
        Some(Arc::new(PendingHook {
            pending: self.settings.pending.clone(),
            writers: self.settings.writers.max(1),
        }))
    }

    fn describe(&self) -> String {
        format!("whisper {}", self.settings.root.display())
    }

    async fn run(self, mut batches: mpsc::Receiver<Arc<PointBatch>>) {
        let pool = WriterPool::start(&self.settings, self.schemas, self.stats);
        while let Some(batch) = batches.recv().await {
            pool.submit(&batch);
        }
        if tokio::task::spawn_blocking(move || pool.finish())
            .await
            .is_err()
        {
            tracing::error!("the whisper writers could not be joined");
        }
    }
}
