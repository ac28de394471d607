//! A StatsD packet through the parser, the aggregator and a flush.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sluice::aggregate::flush::Flusher;
use sluice::aggregate::Aggregator;
use sluice::config::{Config, RawConfig};
use sluice::ingest::{IngestContext, PacketParser};
use sluice::telemetry::{GraphiteStats, Telemetry};

fuzz_target!(|data: &[u8]| {
    let Ok(config) = Config::from_raw(&RawConfig::default()) else {
        return;
    };
    let ctx = IngestContext {
        aggregator: Arc::new(Aggregator::new(4, &config.stats)),
        telemetry: Arc::new(Telemetry::default()),
        sanitize_keys: data.first().is_some_and(|b| b & 1 == 0),
        tag_style: if data.first().is_some_and(|b| b & 2 == 0) {
            sluice::protocol::statsd::TagStyle::Graphite
        } else {
            sluice::protocol::statsd::TagStyle::Etsy
        },
        // In memory (never loaded from a store): events are parsed too.
        events: Some(Arc::new(sluice::store::events::EventLog::default())),
        tap: None,
    };
    let mut parser = PacketParser::default();
    parser.packet(&ctx, data);
    parser.commit(&ctx);
    let mut flusher = Flusher::new(
        ctx.aggregator.clone(),
        config.stats.clone(),
        config.naming.clone(),
        ctx.telemetry.clone(),
        Arc::new(GraphiteStats::new(0)),
    );
    let batch = flusher.flush(1_700_000_000);
    for (name, value) in batch.iter() {
        assert!(value.is_finite(), "{name} = {value}");
    }
});
