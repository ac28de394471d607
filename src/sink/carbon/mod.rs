//! Forwarding to carbon: one [`link::Link`] task per destination (line or
//! pickle protocol), fed by the forwarder according to `carbon.mode`:
//! `replicate` hands every flush to every destination, `hash` splits each
//! flush by carbon's consistent-hash ring ([`ring`]). Each link has its own
//! queue, so a slow or dead destination never holds up the others.

pub mod link;
pub mod ring;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{PointBatch, Sink};
use crate::config::{CarbonConfig, CarbonMode};
use crate::telemetry::GraphiteStats;
use link::Link;
use ring::HashRing;

/// Flushes queued per destination before new ones are dropped (counted).
const LINK_QUEUE: usize = 64;

/// Forwards flushes to carbon destinations, one link each.
pub struct CarbonForwarder {
    config: CarbonConfig,
    shutdown_grace: Duration,
    graphite: Arc<GraphiteStats>,
}

impl CarbonForwarder {
    /// A forwarder for `config`'s destinations.
    pub fn new(
        config: CarbonConfig,
        shutdown_grace: Duration,
        graphite: Arc<GraphiteStats>,
    ) -> CarbonForwarder {
        CarbonForwarder {
            config,
            shutdown_grace,
            graphite,
        }
    }
}

impl Sink for CarbonForwarder {
    fn describe(&self) -> String {
        let list: Vec<String> = self
            .config
            .destinations
            .iter()
            .map(|d| format!("{:?} {}", d.protocol, d.address()).to_lowercase())
            .collect();
        format!("carbon ({:?}) {}", self.config.mode, list.join(", ")).to_lowercase()
    }

    async fn run(self, mut batches: mpsc::Receiver<Arc<PointBatch>>) {
        let mut queues = Vec::new();
        let mut stats = Vec::new();
        let mut tasks = Vec::new();
        for destination in &self.config.destinations {
            let link = Link::new(
                destination.clone(),
                self.config.clone(),
                self.shutdown_grace,
                self.graphite.clone(),
            );
            if let Ok(mut registry) = self.graphite.destinations.lock() {
                registry.push((destination.label(), link.stats.clone()));
            }
            stats.push(link.stats.clone());
            let (tx, rx) = mpsc::channel(LINK_QUEUE);
            queues.push(tx);
            tasks.push(tokio::spawn(link.run(rx)));
        }
        let ring = (self.config.mode == CarbonMode::Hash).then(|| {
            let nodes: Vec<(String, Option<String>)> = self
                .config
                .destinations
                .iter()
                .map(|d| (d.host.clone(), d.instance.clone()))
                .collect();
            HashRing::new(&nodes)
        });
        while let Some(batch) = batches.recv().await {
            let parts: Vec<Arc<PointBatch>> = match &ring {
                None => vec![batch; queues.len()],
                Some(ring) => split_by_ring(&batch, ring, queues.len()),
            };
            for ((queue, part), stat) in queues.iter().zip(parts).zip(&stats) {
                let points = part.len() as u64;
                if queue.try_send(part).is_err() {
                    let total = stat.dropped_points.fetch_add(points, Ordering::Relaxed) + points;
                    tracing::warn!(
                        dropped_total = total,
                        "carbon destination queue full; flush dropped"
                    );
                }
            }
        }
        drop(queues);
        for task in tasks {
            let _ = task.await;
        }
        // A reload may have started a successor: leave its entries alone.
        if let Ok(mut registry) = self.graphite.destinations.lock() {
            registry.retain(|(_, s)| !stats.iter().any(|mine| Arc::ptr_eq(mine, s)));
        }
    }
}

/// One batch per destination, each metric in the one the ring picks.
fn split_by_ring(batch: &PointBatch, ring: &HashRing, destinations: usize) -> Vec<Arc<PointBatch>> {
    let mut parts: Vec<PointBatch> = (0..destinations)
        .map(|_| {
            let mut part = PointBatch::new(batch.timestamp);
            part.started = batch.started;
            part
        })
        .collect();
    for (name, value) in batch.iter() {
        let node = ring.node_for(name).min(destinations - 1);
        parts[node].push(name, value);
    }
    parts.into_iter().map(Arc::new).collect()
}
