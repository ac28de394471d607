//! A sink that keeps every batch it is given, for tests of the flush and of
//! the agent's wiring: a real sink type, not a per-test mock.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{PointBatch, Sink};

#[derive(Clone, Default)]
/// Records every batch it is handed (for tests).
pub struct SpySink {
    /// The batches, in order.
    pub seen: Arc<Mutex<Vec<Arc<PointBatch>>>>,
}

impl SpySink {
    /// A copy of the batches seen so far.
    pub fn batches(&self) -> Vec<Arc<PointBatch>> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Sink for SpySink {
    fn describe(&self) -> String {
        "spy".into()
    }

    async fn run(self, mut batches: mpsc::Receiver<Arc<PointBatch>>) {
        while let Some(batch) = batches.recv().await {
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(batch);
            }
        }
    }
}
