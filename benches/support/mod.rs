//! Set-up shared by the benches: an aggregator with its receivers' context
//! and a flusher over it, all on the default configuration.

use std::sync::Arc;

use sluice::aggregate::flush::Flusher;
use sluice::aggregate::Aggregator;
use sluice::config::{Config, RawConfig};
use sluice::ingest::IngestContext;
use sluice::telemetry::{GraphiteStats, Telemetry};

pub fn config() -> Config {
    Config::from_raw(&RawConfig::default()).expect("default config")
}

/// A fresh aggregator and the context receivers parse into it with.
pub fn ingest_context(cfg: &Config) -> IngestContext {
    IngestContext {
        aggregator: Arc::new(Aggregator::new(cfg.listen.shards, &cfg.stats)),
        telemetry: Arc::new(Telemetry::default()),
        sanitize_keys: true,
        tag_style: sluice::protocol::statsd::TagStyle::Graphite,
        events: None,
        tap: None,
    }
}

/// A flusher over the context's aggregator.
pub fn flusher(cfg: &Config, ctx: &IngestContext) -> Flusher {
    Flusher::new(
        ctx.aggregator.clone(),
        cfg.stats.clone(),
        cfg.naming.clone(),
        ctx.telemetry.clone(),
        Arc::new(GraphiteStats::new(0)),
    )
}
