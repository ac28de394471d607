//! The sinks a configuration asks for (the whisper store, carbon, the
//! console), and the gauges the agent reads about itself and them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use crate::aggregate::Aggregator;
use crate::config::Config;
use crate::sink::carbon::CarbonForwarder;
use crate::sink::console::ConsoleSink;
use crate::sink::whisper::WhisperSink;
use crate::sink::{SinkHandle, SinkMonitor, Submitter};
use crate::store::schema::Schemas;
use crate::store::writer::{open_file_budget, prepare_root, StoreSettings};
use crate::store::Shared;
use crate::telemetry::{
    self, GraphiteStats, Reading, Readings, Telemetry, SINK_DROPPED_FLUSHES, SINK_QUEUE_DEPTH,
};

/// Sinks watched by the self-metrics; replaced on reload.
pub(crate) type SharedMonitors = Arc<Mutex<Vec<SinkMonitor>>>;

/// The sinks a configuration asks for, and the carbon forwarder's queue
/// when received points are relayed.
pub(crate) struct Built {
    pub sinks: Vec<SinkHandle>,
    pub relay: Option<Submitter>,
}

/// Starts the sinks `config` asks for on `runtime`.
pub(crate) fn build_sinks(
    config: &Config,
    store: &Shared,
    graphite: &Arc<GraphiteStats>,
    telemetry: &Arc<Telemetry>,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<Built> {
    let mut sinks = Vec::new();
    let mut relay = None;
    if config.whisper.enabled {
        let w = &config.whisper;
        let schemas = Schemas::load(w.schemas.as_deref(), w.aggregation.as_deref())?;
        // Flushes finer than a slot are combined per slot (store::slot);
        // a flush longer than a slot leaves gaps between its points.
        let finest = schemas.spec_for("stats_counts.example").archives[0].0;
        let slot = Duration::from_secs(u64::from(finest));
        if slot < config.stats.flush_interval {
            tracing::warn!(
                flush_interval = ?config.stats.flush_interval,
                finest_retention_secs = finest,
                "the flush interval is longer than the finest whisper precision for stats.*; \
                 whisper will show gaps between flushes"
            );
        } else if slot > config.stats.flush_interval {
            tracing::info!(
                flush_interval = ?config.stats.flush_interval,
                finest_retention_secs = finest,
                "flushes finer than the finest whisper precision are combined per slot by \
                 each file's aggregation method (sum for counts, last for gauges, ...)"
            );
        }
        prepare_root(&w.dir).with_context(|| {
            format!(
                "whisper.dir {} is not a writable directory",
                w.dir.display()
            )
        })?;
        let root = std::fs::canonicalize(&w.dir).unwrap_or_else(|_| w.dir.clone());
        tracing::info!(dir = %root.display(), "whisper store");
        let settings = StoreSettings {
            root,
            writers: w.writers,
            queue_flushes: w.queue_flushes,
            queue_points: w.queue_points,
            queued_points: store.queued_points.clone(),
            max_open_files: open_file_budget(w.max_open_files(), w.max_open_files.is_some()),
            index: store.index.clone(),
            tags: store.tags.clone(),
            pending: store.pending.clone(),
            cache: store.cache.clone(),
        };
        let sink = WhisperSink::new(settings, schemas, telemetry.clone());
        sinks.push(SinkHandle::spawn(sink, runtime));
    }
    if !config.carbon.destinations.is_empty() {
        let forwarder = CarbonForwarder::new(
            config.carbon.clone(),
            config.shutdown_timeout,
            graphite.clone(),
        );
        let handle = SinkHandle::spawn(forwarder, runtime);
        if config.carbon.relay_received {
            relay = Some(handle.submitter());
        }
        sinks.push(handle);
    }
    if config.console {
        sinks.push(SinkHandle::spawn(ConsoleSink, runtime));
    }
    Ok(Built { sinks, relay })
}

/// The agent's gauges, read on every flush, admin `stats` and `/metrics`:
/// live series per type, the host's UDP errors, each sink's queue and each
/// carbon destination's delivery.
pub(crate) fn readings(
    aggregator: Arc<Aggregator>,
    sinks: SharedMonitors,
    graphite: Arc<GraphiteStats>,
    store: Shared,
) -> Readings {
    Arc::new(move || {
        let mut out = vec![
            Reading {
                def: &telemetry::WHISPER_QUEUE_POINTS,
                label: None,
                value: store
                    .queued_points
                    .load(std::sync::atomic::Ordering::Relaxed) as f64,
            },
            Reading {
                def: &telemetry::CARBON_CACHE_POINTS,
                label: None,
                value: store.cache.len() as f64,
            },
        ];
        let [c, t, g, s] = aggregator.series();
        for (kind, n) in [("counters", c), ("timers", t), ("gauges", g), ("sets", s)] {
            out.push(Reading {
                def: &telemetry::SERIES,
                label: Some(kind.into()),
                value: n as f64,
            });
        }
        // Host-wide (this network namespace), totals since boot.
        if let Some((in_errors, rcvbuf_errors)) = telemetry::host_udp_errors() {
            for (def, value) in [
                (&telemetry::HOST_UDP_IN_ERRORS, in_errors),
                (&telemetry::HOST_UDP_RCVBUF_ERRORS, rcvbuf_errors),
            ] {
                out.push(Reading {
                    def,
                    label: None,
                    value: value as f64,
                });
            }
        }
        let sinks = sinks.lock().map(|m| m.clone()).unwrap_or_default();
        for sink in &sinks {
            let label = sink.label();
            out.push(Reading {
                def: &SINK_QUEUE_DEPTH,
                label: Some(label.clone()),
                value: sink.depth() as f64,
            });
            out.push(Reading {
                def: &SINK_DROPPED_FLUSHES,
                label: Some(label),
                value: sink.dropped.load(std::sync::atomic::Ordering::Relaxed) as f64,
            });
        }
        if let Ok(destinations) = graphite.destinations.lock() {
            for (label, stats) in destinations.iter() {
                stats.readings(label, &mut out);
            }
        }
        out
    })
}
