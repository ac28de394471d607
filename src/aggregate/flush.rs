//! The flush: the one place where StatsD meets Graphite.
//!
//! Each interval, [`Flusher::flush`] folds the agent's own counters into the
//! aggregator, takes every shard's interval out under its lock (applying
//! Etsy's reset and delete rules there), then, outside any lock, derives
//! rates and timer statistics and names every value the way Etsy's graphite
//! backend does. The result is one [`PointBatch`] for the sinks.

use std::borrow::Cow;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::timer::{derive_stats, StatClass, ThresholdNames, TimerState};
use super::Aggregator;
use crate::config::{Naming, StatsConfig};
use crate::protocol::number::js_number_string;
use crate::protocol::statsd::{sanitize_key, Sample, SampleKind};
use crate::sink::PointBatch;
use crate::telemetry::{Counter, GraphiteStats, Readings, Telemetry};

/// What one flush took out of the shards. Keys are copied into one arena
/// (no per-key allocation or reference counting), and the whole snapshot
/// is reused from flush to flush, so a steady flush allocates nothing new.
#[derive(Default)]
struct Snapshot {
    keys: Vec<u8>,
    counters: Vec<(KeyRange, f64)>,
    timers: Vec<(KeyRange, TimerState)>,
    gauges: Vec<(KeyRange, f64)>,
    sets: Vec<(KeyRange, usize)>,
}

/// A key's bytes in [`Snapshot::keys`].
#[derive(Clone, Copy)]
struct KeyRange(u32, u32);

impl Snapshot {
    fn key(&mut self, key: &[u8]) -> KeyRange {
        let start = self.keys.len() as u32;
        self.keys.extend_from_slice(key);
        KeyRange(start, self.keys.len() as u32)
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.counters.clear();
        self.timers.clear();
        self.gauges.clear();
        self.sets.clear();
    }
}

fn key_of(keys: &[u8], r: KeyRange) -> &[u8] {
    &keys[r.0 as usize..r.1 as usize]
}

/// Turns each interval's aggregates into one [`PointBatch`] of Graphite points.
pub struct Flusher {
    aggregator: Arc<Aggregator>,
    stats: StatsConfig,
    names: Namer,
    thresholds: Vec<ThresholdNames>,
    histograms: Vec<(String, Vec<(f64, String)>)>,
    telemetry: Arc<Telemetry>,
    graphite: Arc<GraphiteStats>,
    previous_ts: Option<i64>,
    /// sluice's own gauges (series, sink queues, destinations), written
    /// as `<prefix>.<name>` lines after the aggregates, outside numStats.
    readings: Option<Readings>,
    snapshot: Snapshot,
    /// The last flush's batch once every sink has let go of it: its
    /// buffers are reused, so a big flush does not fault in fresh pages.
    spare: Option<PointBatch>,
    /// Scratch for the agent's own keys (no allocation per flush).
    key_buf: String,
    /// Sizes of the last batch, to size a fresh one in one go.
    last_points: usize,
    last_name_bytes: usize,
}

impl Flusher {
    /// A flusher over `aggregator` with these statistics and names.
    pub fn new(
        aggregator: Arc<Aggregator>,
        stats: StatsConfig,
        naming: Naming,
        telemetry: Arc<Telemetry>,
        graphite: Arc<GraphiteStats>,
    ) -> Flusher {
        let names = Namer::new(naming, stats.key_name_sanitize);
        for name in crate::telemetry::etsy_counter_names() {
            aggregator.ensure_counter(names.internal_key(name).as_bytes());
        }
        let mut flusher = Flusher {
            aggregator,
            stats: stats.clone(),
            names,
            thresholds: Vec::new(),
            histograms: Vec::new(),
            telemetry,
            graphite,
            previous_ts: None,
            readings: None,
            snapshot: Snapshot::default(),
            spare: None,
            key_buf: String::new(),
            last_points: 0,
            last_name_bytes: 0,
        };
        flusher.reconfigure(stats);
        flusher
    }

    /// Adds the gauges the agent reports about itself on every flush.
    pub fn set_readings(&mut self, readings: Readings) {
        self.readings = Some(readings);
    }

    /// Takes new naming and statistics settings (a reload); they apply
    /// from the next flush on, to the data already aggregated.
    pub fn reload(&mut self, stats: StatsConfig, naming: Naming) {
        self.names = Namer::new(naming, stats.key_name_sanitize);
        for name in crate::telemetry::etsy_counter_names() {
            self.aggregator
                .ensure_counter(self.names.internal_key(name).as_bytes());
        }
        self.reconfigure(stats);
    }

    /// Takes new statistics settings; they apply from the next flush on.
    pub fn reconfigure(&mut self, stats: StatsConfig) {
        self.thresholds = stats
            .percent_thresholds
            .iter()
            .map(|p| ThresholdNames::new(*p))
            .collect();
        self.histograms = stats
            .histograms
            .iter()
            .map(|rule| {
                let bins = rule
                    .bins
                    .iter()
                    .map(|b| {
                        let text = if b.is_infinite() {
                            "inf".to_string()
                        } else {
                            js_number_string(*b).replacen('.', "_", 1)
                        };
                        (*b, format!("histogram.bin_{text}"))
                    })
                    .collect();
                (rule.metric.clone(), bins)
            })
            .collect();
        let settings = &self.aggregator.settings;
        let caps = &settings.caps;
        caps.total.store(stats.max_series, Ordering::Relaxed);
        for (cap, n) in caps.per_kind.iter().zip(stats.max_series_per_kind) {
            cap.store(n, Ordering::Relaxed);
        }
        caps.new_per_interval
            .store(stats.max_new_series_per_interval, Ordering::Relaxed);
        settings.timer_exact_limit.store(
            stats.timer_exact_limit.min(u32::MAX as usize) as u32,
            Ordering::Relaxed,
        );
        settings
            .delete_gauges
            .store(stats.delete_gauges, Ordering::Relaxed);
        settings
            .gauges_max_ttl
            .store(stats.gauges_max_ttl, Ordering::Relaxed);
        self.stats = stats;
    }

    /// Hands back a batch the sinks are done with, for its buffers.
    pub fn recycle(&mut self, batch: PointBatch) {
        self.spare = Some(batch);
    }

    /// Runs one flush stamped `ts` (Unix seconds) and returns its points.
    pub fn flush(&mut self, ts: i64) -> PointBatch {
        let flush_started = Instant::now();
        let refused = self.aggregator.take_dropped();
        if refused > 0 {
            let total = self.telemetry.add(Counter::SeriesDropped, refused);
            // Once per flush at most: the rate limit is the interval.
            tracing::warn!(
                refused,
                refused_total = total,
                top_prefixes = ?self.aggregator.top_refused_prefixes(5),
                "new series refused by the series caps (flush.max_series and friends); known series go on"
            );
        }
        self.fold_own_counters(ts);
        let mut snap = std::mem::take(&mut self.snapshot);
        snap.clear();
        self.take_snapshot(&mut snap);
        self.aggregator.interval_done();
        let num_stats =
            snap.counters.len() + snap.timers.len() + snap.gauges.len() + snap.sets.len();
        let started = Instant::now();
        let interval_secs = self.stats.flush_interval.as_secs_f64();
        let mut batch = match self.spare.take() {
            Some(mut spare) => {
                spare.reset(ts);
                spare
            }
            None => PointBatch::with_capacity(ts, self.last_points, self.last_name_bytes),
        };
        let n = &self.names;
        let keys = &snap.keys;

        let counters_started = Instant::now();
        for (key, value) in &snap.counters {
            let rate = value / interval_secs;
            n.counter(&mut batch, &n.text(key_of(keys, *key)), rate, *value);
        }
        let mut processing = counters_started.elapsed();

        let timers_started = Instant::now();
        let wanted_list = &self.stats.calculated_timer_metrics;
        let wanted = |class: StatClass| {
            wanted_list.is_empty() || wanted_list.iter().any(|w| w == class.filter_name())
        };
        for (key, timer) in &mut snap.timers {
            let bins = self.bins_for(key_of(keys, *key));
            let key = n.text(key_of(keys, *key));
            derive_stats(
                timer,
                &self.thresholds,
                bins,
                interval_secs,
                &wanted,
                &mut |stat, value| n.timer(&mut batch, &key, stat, value),
            );
        }
        processing += timers_started.elapsed();

        for (key, value) in &snap.gauges {
            n.gauge(&mut batch, &n.text(key_of(keys, *key)), *value);
        }
        for (key, size) in &snap.sets {
            n.set(&mut batch, &n.text(key_of(keys, *key)), *size as f64);
        }
        // Timer states hold their samples; do not keep them until the
        // next flush.
        snap.timers.clear();
        self.snapshot = snap;
        n.own(&mut batch, OwnStat::NumStats, num_stats as f64);
        n.own(
            &mut batch,
            OwnStat::CalculationTime,
            started.elapsed().as_millis() as f64,
        );
        n.own(
            &mut batch,
            OwnStat::ProcessingTime,
            processing.as_millis() as f64,
        );
        let g = &self.graphite;
        let graphite = [
            (
                "last_exception",
                g.last_exception.load(Ordering::Relaxed) as f64,
            ),
            ("last_flush", g.last_flush.load(Ordering::Relaxed) as f64),
            ("flush_time", g.flush_time_ms.load(Ordering::Relaxed) as f64),
            (
                "flush_length",
                g.flush_length.load(Ordering::Relaxed) as f64,
            ),
        ];
        // Before Etsy's four graphiteStats lines, which end a flush.
        if let Some(readings) = &self.readings {
            for reading in readings() {
                n.own(
                    &mut batch,
                    OwnStat::Agent(&reading.graphite_name()),
                    reading.value,
                );
            }
        }
        for (stat, value) in graphite {
            n.own(&mut batch, OwnStat::Graphite(stat), value);
        }
        if batch.non_finite > 0 {
            self.telemetry
                .add(Counter::NonFiniteDropped, batch.non_finite);
        }
        self.last_points = batch.len();
        self.last_name_bytes = batch.name_bytes();
        batch.started = Some(flush_started);
        batch
    }

    /// Adds the receivers' tallies to the internal counters and sets
    /// timestamp_lag, through the ordinary aggregation path.
    fn fold_own_counters(&mut self, ts: i64) {
        let agg = &self.aggregator;
        let mut key = std::mem::take(&mut self.key_buf);
        for (def, count) in self.telemetry.take_for_flush() {
            if count == 0 {
                continue;
            }
            self.names.write_internal_key(&mut key, def.name);
            agg.apply_one(
                key.as_bytes(),
                Sample {
                    kind: SampleKind::Counter,
                    value: count as f64,
                    rate: 1.0,
                    member: &[],
                },
            );
        }
        if let Some(previous) = self.previous_ts {
            let lag =
                (ts - previous) as f64 - self.stats.flush_interval.as_millis() as f64 / 1000.0;
            self.names.write_internal_key(&mut key, "timestamp_lag");
            agg.set_internal_gauge(key.as_bytes(), lag);
        }
        self.key_buf = key;
        self.previous_ts = Some(ts);
    }

    /// Takes the interval out of every shard, one lock at a time, applying
    /// Etsy's reset rules in the same pass.
    fn take_snapshot(&self, snap: &mut Snapshot) {
        let s = &self.stats;
        for mut shard in self.aggregator.shards() {
            snap.counters.reserve(shard.counters.len());
            for (key, value) in shard.counters.iter() {
                let key = snap.key(key);
                snap.counters.push((key, *value));
            }
            if s.delete_counters {
                shard.counters.retain(|key, value| {
                    *value = 0.0;
                    is_etsy_internal_counter(key)
                });
            } else {
                shard.counters.values_mut().for_each(|v| *v = 0.0);
            }

            snap.timers.reserve(shard.timers.len());
            if s.delete_timers {
                for (key, timer) in shard.timers.drain() {
                    let key = snap.key(&key);
                    snap.timers.push((key, timer));
                }
            } else {
                for (key, timer) in shard.timers.iter_mut() {
                    let key = snap.key(key);
                    snap.timers.push((key, timer.take()));
                }
            }

            snap.gauges.reserve(shard.gauges.len());
            for (key, gauge) in shard.gauges.iter() {
                let key = snap.key(key);
                snap.gauges.push((key, gauge.value));
            }
            if s.delete_gauges {
                shard.gauges.retain(|_, g| {
                    if !g.from_packets {
                        return true;
                    }
                    g.ttl = g.ttl.saturating_sub(1);
                    g.ttl >= 1
                });
            }

            snap.sets.reserve(shard.sets.len());
            if s.delete_sets {
                for (key, set) in shard.sets.drain() {
                    let key = snap.key(&key);
                    snap.sets.push((key, set.len()));
                }
            } else {
                for (key, set) in shard.sets.iter_mut() {
                    let key = snap.key(key);
                    snap.sets.push((key, set.len()));
                    *set = Default::default();
                }
            }
        }
    }

    fn bins_for(&self, key: &[u8]) -> &[(f64, String)] {
        for (metric, bins) in &self.histograms {
            if memchr::memmem::find(key, metric.as_bytes()).is_some() {
                return bins;
            }
        }
        &[]
    }
}

/// Etsy keeps (zeroes) counters whose key contains one of these even with
/// deleteCounters.
fn is_etsy_internal_counter(key: &[u8]) -> bool {
    ["packets_received", "metrics_received", "bad_lines_seen"]
        .iter()
        .any(|needle| memchr::memmem::find(key, needle.as_bytes()).is_some())
}

/// A key split for naming: the name (sanitized if the receivers did not)
/// and the `;tags` that go after the suffix.
struct KeyText<'k> {
    name: Cow<'k, str>,
    tags: Cow<'k, str>,
}

/// Key bytes as text; invalid UTF-8 becomes U+FFFD, as Etsy's
/// `msg.toString()` makes it.
fn text_of(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The agent's own flush stats, named per Etsy's graphite backend.
#[derive(Clone, Copy)]
enum OwnStat<'a> {
    NumStats,
    CalculationTime,
    ProcessingTime,
    Graphite(&'static str),
    /// One of sluice's own gauges, by its name under prefixStats.
    Agent(&'a str),
}

/// Etsy's graphite backend naming (legacyNamespace, prefixes, suffix, tags
/// after the suffix).
struct Namer {
    naming: Naming,
    sanitize_at_write: bool,
    global: Vec<String>,
    counter: Vec<String>,
    timer: Vec<String>,
    gauge: Vec<String>,
    set: Vec<String>,
    suffix: String,
    /// Legacy `stats_counts` namespace.
    counts: Vec<String>,
}

impl Namer {
    fn new(naming: Naming, key_name_sanitize: bool) -> Namer {
        let segs = |parts: &[&str]| -> Vec<String> {
            parts
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| p.to_string())
                .collect()
        };
        let (global, counter, timer, gauge, set) = if naming.legacy_namespace {
            (
                segs(&["stats"]),
                segs(&["stats"]),
                segs(&["stats", "timers"]),
                segs(&["stats", "gauges"]),
                segs(&["stats", "sets"]),
            )
        } else {
            let g = naming.global_prefix.as_str();
            (
                segs(&[g]),
                segs(&[g, &naming.prefix_counter]),
                segs(&[g, &naming.prefix_timer]),
                segs(&[g, &naming.prefix_gauge]),
                segs(&[g, &naming.prefix_set]),
            )
        };
        let suffix = if naming.global_suffix.is_empty() {
            String::new()
        } else {
            format!(".{}", naming.global_suffix)
        };
        Namer {
            naming,
            sanitize_at_write: !key_name_sanitize,
            global,
            counter,
            timer,
            gauge,
            set,
            suffix,
            counts: vec!["stats_counts".to_string()],
        }
    }

    /// `<prefixStats>.<name>`: the key of an internal counter or gauge.
    fn internal_key(&self, name: &str) -> String {
        let mut key = String::new();
        self.write_internal_key(&mut key, name);
        key
    }

    /// `<prefixStats>.<name>` into `out` (cleared first).
    fn write_internal_key(&self, out: &mut String, name: &str) {
        out.clear();
        out.push_str(&self.naming.prefix_stats);
        out.push('.');
        out.push_str(name);
    }

    /// A key as its names use it, converted once for all of them.
    fn text<'k>(&self, key: &'k [u8]) -> KeyText<'k> {
        // Keys are short: a plain scan beats memchr's set-up here.
        let split = key.iter().position(|b| *b == b';').unwrap_or(key.len());
        let (name, tags) = key.split_at(split);
        let name = if self.sanitize_at_write {
            Cow::Owned(text_of(&sanitize_key(name)).into_owned())
        } else {
            text_of(name)
        };
        KeyText {
            name,
            tags: text_of(tags),
        }
    }

    /// Etsy's `format(namespace, key, extra...)`: namespace and key name
    /// joined by dots, then the suffix, then the key's `;tags`.
    fn write(&self, out: &mut String, namespace: &[String], key: &KeyText<'_>, extra: &[&str]) {
        for segment in namespace {
            out.push_str(segment);
            out.push('.');
        }
        out.push_str(&key.name);
        for e in extra {
            out.push('.');
            out.push_str(e);
        }
        out.push_str(&self.suffix);
        out.push_str(&key.tags);
    }

    fn counter(&self, batch: &mut PointBatch, key: &KeyText<'_>, rate: f64, count: f64) {
        if self.naming.legacy_namespace {
            batch.push_with(rate, |o| self.write(o, &self.counter, key, &[]));
            if self.naming.flush_counts {
                batch.push_with(count, |o| self.write(o, &self.counts, key, &[]));
            }
        } else {
            batch.push_with(rate, |o| self.write(o, &self.counter, key, &["rate"]));
            if self.naming.flush_counts {
                batch.push_with(count, |o| self.write(o, &self.counter, key, &["count"]));
            }
        }
    }

    fn timer(&self, batch: &mut PointBatch, key: &KeyText<'_>, stat: &str, value: f64) {
        batch.push_with(value, |o| self.write(o, &self.timer, key, &[stat]));
    }

    fn gauge(&self, batch: &mut PointBatch, key: &KeyText<'_>, value: f64) {
        batch.push_with(value, |o| self.write(o, &self.gauge, key, &[]));
    }

    fn set(&self, batch: &mut PointBatch, key: &KeyText<'_>, count: f64) {
        batch.push_with(count, |o| self.write(o, &self.set, key, &["count"]));
    }

    fn own(&self, batch: &mut PointBatch, stat: OwnStat<'_>, value: f64) {
        let ps = self.naming.prefix_stats.as_str();
        let ps_key = self.text(ps.as_bytes());
        let sfx = self.suffix.as_str();
        let legacy = self.naming.legacy_namespace;
        batch.push_with(value, |o| match stat {
            OwnStat::NumStats if legacy => {
                let _ = write!(o, "{ps}.numStats{sfx}");
            }
            OwnStat::NumStats => self.write(o, &self.global, &ps_key, &["numStats"]),
            OwnStat::CalculationTime if legacy => {
                let _ = write!(o, "stats.{ps}.graphiteStats.calculationtime{sfx}");
            }
            OwnStat::CalculationTime => self.write(
                o,
                &self.global,
                &ps_key,
                &["graphiteStats", "calculationtime"],
            ),
            OwnStat::ProcessingTime if legacy => {
                let _ = write!(o, "stats.{ps}.processing_time{sfx}");
            }
            OwnStat::ProcessingTime => self.write(o, &self.global, &ps_key, &["processing_time"]),
            OwnStat::Graphite(name) => {
                for segment in &self.global {
                    o.push_str(segment);
                    o.push('.');
                }
                let _ = write!(o, "{ps}.graphiteStats.{name}{sfx}");
            }
            OwnStat::Agent(name) => {
                for segment in &self.global {
                    o.push_str(segment);
                    o.push('.');
                }
                let _ = write!(o, "{ps}.{name}{sfx}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    //! Etsy's flush rules in-process: the aggregator fed through the real
    //! parser, flushed by the real Flusher, checked name by name against
    //! what Etsy's statsd 0.9 flushes for the same input (the end-to-end
    //! parity test runs Etsy itself).

    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::config::{Config, RawConfig};
    use crate::ingest::{IngestContext, PacketParser};

    struct Harness {
        ctx: IngestContext,
        flusher: Flusher,
        parser: PacketParser,
        ts: i64,
    }

    impl Harness {
        fn new(toml: &str) -> Harness {
            let config = Config::from_raw(&RawConfig::from_toml(toml).unwrap()).unwrap();
            let aggregator = Arc::new(Aggregator::new(4, &config.stats));
            let telemetry = Arc::new(Telemetry::default());
            let flusher = Flusher::new(
                aggregator.clone(),
                config.stats.clone(),
                config.naming.clone(),
                telemetry.clone(),
                Arc::new(GraphiteStats::new(1000)),
            );
            Harness {
                ctx: IngestContext {
                    aggregator,
                    telemetry,
                    sanitize_keys: true,
                    tag_style: crate::protocol::statsd::TagStyle::Etsy,
                    events: None,
                    tap: None,
                },
                flusher,
                parser: PacketParser::default(),
                ts: 1000,
            }
        }

        fn send(&mut self, packet: &[u8]) {
            self.parser.packet(&self.ctx, packet);
            self.parser.commit(&self.ctx);
        }

        fn flush(&mut self) -> BTreeMap<String, f64> {
            self.ts += 10;
            let batch = self.flusher.flush(self.ts);
            batch.iter().map(|(n, v)| (n.to_string(), v)).collect()
        }
    }

    #[test]
    fn counters_are_divided_by_the_rate_and_reset() {
        let mut h = Harness::new("[flush]\ninterval = \"10s\"");
        h.send(b"hits:1|c\nhits:2|c|@0.5\nhits:3|c");
        let f = h.flush();
        assert_eq!(f["stats_counts.hits"], 8.0);
        assert_eq!(f["stats.hits"], 0.8, "per second over the 10 s interval");
        assert_eq!(f["stats.statsd.metrics_received"], 0.3);
        assert_eq!(f["stats_counts.statsd.packets_received"], 1.0);
        let f = h.flush();
        assert_eq!(
            f["stats_counts.hits"], 0.0,
            "kept at 0 without delete_counters"
        );
    }

    #[test]
    fn idle_stats_are_deleted_when_asked() {
        let mut h = Harness::new("[flush]\ndelete_idle_stats = true\ndelete_gauges = false");
        h.send(b"c:1|c\nt:5|ms\ns:a|s\ng:3|g");
        let f = h.flush();
        assert!(f.contains_key("stats_counts.c") && f.contains_key("stats.timers.t.count"));
        let f = h.flush();
        for gone in [
            "stats_counts.c",
            "stats.timers.t.count",
            "stats.sets.s.count",
        ] {
            assert!(!f.contains_key(gone), "{gone} outlived its interval");
        }
        assert_eq!(f["stats.gauges.g"], 3.0, "delete_gauges = false keeps them");
        assert_eq!(
            f["stats_counts.statsd.bad_lines_seen"], 0.0,
            "Etsy's own counters stay"
        );
    }

    #[test]
    fn gauges_take_deltas_and_persist() {
        let mut h = Harness::new("[log]\nlevel = \"info\"");
        h.send(b"temp:50|g\ntemp:+10|g\ntemp:-5|g\nneg:-3|g");
        let f = h.flush();
        assert_eq!(f["stats.gauges.temp"], 55.0);
        assert_eq!(f["stats.gauges.neg"], -3.0);
        h.send(b"temp:+1|g");
        assert_eq!(h.flush()["stats.gauges.temp"], 56.0);
    }

    #[test]
    fn timers_derive_etsy_statistics() {
        let mut h = Harness::new("[flush]\ninterval = \"10s\"\npercent_thresholds = [90, 50]");
        h.send(b"lat:100|ms\nlat:200|ms\nlat:300|ms|@0.5\nlat:50|ms");
        let f = h.flush();
        let t = |s: &str| f[&format!("stats.timers.lat.{s}")];
        assert_eq!(t("count"), 5.0, "a sample at @0.5 counts twice");
        assert_eq!(t("count_ps"), 0.5);
        assert_eq!((t("lower"), t("upper"), t("sum")), (50.0, 300.0, 650.0));
        assert_eq!(t("mean"), 162.5);
        assert_eq!(t("median"), 150.0);
        assert_eq!((t("upper_90"), t("count_90")), (300.0, 4.0));
        assert_eq!((t("upper_50"), t("mean_50")), (100.0, 75.0));
        assert_eq!(t("sum_squares"), 142_500.0, "over the values, not the rate");
    }

    #[test]
    fn an_unknown_type_makes_the_whole_line_bad() {
        let mut h = Harness::new("[log]\nlevel = \"info\"");
        h.send(b"a:1|cb:2|g\nok:1|c\nzz:2|z");
        let f = h.flush();
        assert_eq!(f["stats_counts.statsd.bad_lines_seen"], 2.0);
        assert!(!f.contains_key("stats_counts.a") && !f.contains_key("stats.gauges.a"));
        assert!(!f.contains_key("stats_counts.zz"));
        assert_eq!(f["stats_counts.ok"], 1.0);
    }

    #[test]
    fn sets_count_unique_members() {
        let mut h = Harness::new("[log]\nlevel = \"info\"");
        h.send(b"users:alice|s\nusers:bob|s\nusers:alice|s");
        assert_eq!(h.flush()["stats.sets.users.count"], 2.0);
    }

    #[test]
    fn non_legacy_naming_with_prefixes_and_suffix() {
        let mut h = Harness::new(
            "[graphite]\nlegacy_namespace = false\nglobal_prefix = \"app\"\nglobal_suffix = \"host1\"",
        );
        h.send(b"hits:2|c\ntemp:1|g");
        let f = h.flush();
        assert_eq!(f["app.counters.hits.count.host1"], 2.0);
        assert_eq!(f["app.gauges.temp.host1"], 1.0);
        assert!(f.contains_key("app.statsd.numStats.host1"), "{f:?}");
    }
}
