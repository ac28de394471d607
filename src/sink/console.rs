//! Prints every flushed point to stdout as a carbon line: for debugging.

use std::io::Write;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{PointBatch, Sink};
use crate::protocol::carbon::write_line;

/// Prints every point as a carbon line on stdout.
pub struct ConsoleSink;

impl Sink for ConsoleSink {
    fn describe(&self) -> String {
        "console".into()
    }

    async fn run(self, mut batches: mpsc::Receiver<Arc<PointBatch>>) {
        while let Some(batch) = batches.recv().await {
            let mut text = Vec::with_capacity(batch.name_bytes() + batch.len() * 24);
            for (name, value) in batch.iter() {
                write_line(&mut text, name, value, batch.timestamp);
            }
            let mut out = std::io::stdout().lock();
            // stdout closed: nothing to report to.
            let _ = out.write_all(&text).and_then(|_| out.flush());
        }
    }
}
