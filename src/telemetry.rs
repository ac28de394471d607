//! The agent's own metrics, each declared once in the tables below and
//! rendered from them into the flush (Graphite names under prefixStats),
//! the admin `stats` command and Prometheus `/metrics`.
//!
//! A [`Counter`] keeps two numbers: the interval's part, which the flush
//! takes (and zeroes) and sends as a StatsD counter, and the total since
//! start, which admin, Prometheus and the logs report and which never goes
//! back. Receivers add per batch, not per line. Gauges are read when they
//! are rendered, as [`Reading`]s of a [`GaugeDef`].

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Whether a counter appears in the flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlush {
    /// Etsy's own: created at 0 at start, sent on every flush.
    Always,
    /// sluice's: sent once non-zero, so a clean stream flushes Etsy's
    /// exact set of names.
    WhenNonZero,
    /// Admin and Prometheus only (too chatty for every flush).
    Never,
}

/// One counter's definition.
#[derive(Debug)]
pub struct CounterDef {
    /// Graphite name under prefixStats (`statsd.<name>`), admin
    /// `sluice.<name>`, Prometheus `sluice_<name>_total`.
    pub name: &'static str,
    /// Whether the flush sends it.
    pub flush: InFlush,
    /// What it counts (Prometheus HELP).
    pub help: &'static str,
}

macro_rules! counters {
    ($($id:ident: $name:literal, $flush:ident, $help:literal;)*) => {
        /// A counter the agent keeps about itself.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Counter { $(
            #[doc = $help]
            $id,
        )* }

        /// Every counter, in [`Counter`] order.
        pub const COUNTERS: &[CounterDef] = &[$(
            CounterDef { name: $name, flush: InFlush::$flush, help: $help },
        )*];
    };
}

// One line per counter. Etsy's three come first, in Etsy's order.
counters! {
    BadLinesSeen: "bad_lines_seen", Always, "StatsD lines refused as malformed.";
    PacketsReceived: "packets_received", Always, "Datagrams and TCP reads received.";
    MetricsReceived: "metrics_received", Always, "Non-empty StatsD lines received.";
    LinesUdp: "lines_udp", Never, "StatsD lines received over UDP.";
    LinesTcp: "lines_tcp", Never, "StatsD lines received over TCP.";
    LinesUnix: "lines_unix", Never, "StatsD lines received over unix sockets (datagram and stream).";
    EventsDropped: "events_dropped", WhenNonZero, "DogStatsD service checks, and events when the store is off (not metrics; dropped).";
    EventsRecorded: "events_recorded", WhenNonZero, "DogStatsD events recorded as Graphite events.";
    KernelDroppedDatagrams: "kernel_dropped_datagrams", WhenNonZero, "Datagrams the kernel dropped on sluice's UDP sockets (SO_RXQ_OVFL).";
    LinesTooLong: "lines_too_long", WhenNonZero, "TCP lines longer than listen.tcp_max_line_length (dropped).";
    TcpConnectionsRefused: "tcp_connections_refused", WhenNonZero, "TCP connections closed at once by listen.tcp_max_connections.";
    NonFiniteDropped: "non_finite_dropped", WhenNonZero, "Flushed values that were NaN or infinite (never written).";
    WhisperPointsDropped: "whisper_points_dropped", WhenNonZero, "Points the whisper store could not take (writer queue full).";
    WhisperErrors: "whisper_errors", WhenNonZero, "Failed whisper file operations (corrupt, unwritable or unreadable files).";
    WhisperNamesRejected: "whisper_names_rejected", WhenNonZero, "Metric names the whisper store refused as unsafe paths.";
    WhisperFilesReplaced: "whisper_files_replaced", WhenNonZero, "Empty or header-only whisper files (an interrupted creation) replaced.";
    WhisperStaleHandlesClosed: "whisper_stale_handles_closed", WhenNonZero, "Handles of deleted or replaced whisper files closed after a full disk (their space freed).";
    CarbonPointsReceived: "carbon_points_received", WhenNonZero, "Points received over carbon's line and pickle protocols.";
    CarbonBadLines: "carbon_bad_lines", WhenNonZero, "Carbon lines (or pickle points) skipped as malformed or too long.";
    CarbonNanDropped: "carbon_nan_dropped", WhenNonZero, "Received carbon points whose value was NaN (dropped, as carbon does).";
    CarbonPointsDropped: "carbon_points_dropped", WhenNonZero, "Received carbon points dropped because the cache was full.";
    CarbonPickleFramesRefused: "carbon_pickle_frames_refused", WhenNonZero, "Pickle frames refused: over the size limit or not a list of points.";
    SeriesDropped: "series_dropped", WhenNonZero, "Samples refused because they would create a series past a cap (flush.max_series, max_counters..., max_new_series_per_interval).";
    ProxyLinesForwarded: "proxy_lines_forwarded", WhenNonZero, "StatsD lines the proxy sent on to a backend.";
    ProxyLinesDropped: "proxy_lines_dropped", WhenNonZero, "StatsD lines the proxy dropped: no backend up, or a send failed.";
    ProxyBackendChanges: "proxy_backend_changes", WhenNonZero, "Times a proxy backend went down or came back up.";
    WhisperPointsWritten: "whisper_points_written", Never, "Points written into whisper files.";
    WhisperFilesCreated: "whisper_files_created", Never, "Whisper files created.";
}

const COUNTER_COUNT: usize = COUNTERS.len();

/// The agent's counters, shared by everything that counts.
#[derive(Debug)]
pub struct Telemetry {
    interval: [AtomicU64; COUNTER_COUNT],
    total: [AtomicU64; COUNTER_COUNT],
    /// Unix seconds of the last packet (for the admin interface).
    pub last_msg_seen: AtomicI64,
}

impl Default for Telemetry {
    fn default() -> Telemetry {
        Telemetry {
            interval: [const { AtomicU64::new(0) }; COUNTER_COUNT],
            total: [const { AtomicU64::new(0) }; COUNTER_COUNT],
            last_msg_seen: AtomicI64::new(0),
        }
    }
}

/// One receiver's tallies for one batch, added to [`Telemetry`] at once.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchTally {
    /// Datagrams or TCP reads.
    pub packets: u64,
    /// Non-empty lines.
    pub lines: u64,
    /// Lines refused.
    pub bad_lines: u64,
    /// DogStatsD events and service checks dropped.
    pub events: u64,
    /// DogStatsD events recorded.
    pub events_recorded: u64,
}

impl Telemetry {
    /// Adds `n` to a counter's interval and total; returns the new total
    /// (for log lines).
    pub fn add(&self, counter: Counter, n: u64) -> u64 {
        let i = counter as usize;
        if n == 0 {
            return self.total[i].load(Ordering::Relaxed);
        }
        self.interval[i].fetch_add(n, Ordering::Relaxed);
        self.total[i].fetch_add(n, Ordering::Relaxed) + n
    }

    /// The total since start.
    pub fn total(&self, counter: Counter) -> u64 {
        self.total[counter as usize].load(Ordering::Relaxed)
    }

    /// A batch's tallies, at once.
    pub fn add_tally(&self, tally: &BatchTally) {
        self.add(Counter::PacketsReceived, tally.packets);
        self.add(Counter::MetricsReceived, tally.lines);
        self.add(Counter::BadLinesSeen, tally.bad_lines);
        self.add(Counter::EventsDropped, tally.events);
        self.add(Counter::EventsRecorded, tally.events_recorded);
    }

    /// The interval's part of every counter the flush sends, taken (reset
    /// to 0): (definition, value).
    pub fn take_for_flush(&self) -> impl Iterator<Item = (&'static CounterDef, u64)> + '_ {
        COUNTERS
            .iter()
            .enumerate()
            .filter(|(_, def)| def.flush != InFlush::Never)
            .map(|(i, def)| (def, self.interval[i].swap(0, Ordering::Relaxed)))
    }

    /// Every counter's total since start.
    pub fn totals(&self) -> impl Iterator<Item = (&'static CounterDef, u64)> + '_ {
        COUNTERS
            .iter()
            .zip(&self.total)
            .map(|(def, total)| (def, total.load(Ordering::Relaxed)))
    }
}

/// Names of Etsy's internal counters, created at 0 at start.
pub fn etsy_counter_names() -> impl Iterator<Item = &'static str> {
    COUNTERS
        .iter()
        .filter(|d| d.flush == InFlush::Always)
        .map(|d| d.name)
}

/// What Prometheus calls a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromKind {
    /// Can go up and down.
    Gauge,
    /// Only goes up (a total kept elsewhere: the kernel, a destination).
    Counter,
}

/// A value read when it is rendered (series, queues, destinations).
#[derive(Debug)]
pub struct GaugeDef {
    /// Graphite name under prefixStats; `{}` stands for the label's value.
    pub graphite: &'static str,
    /// Prometheus family name.
    pub prometheus: &'static str,
    /// Prometheus label name for `{}`.
    pub label: Option<&'static str>,
    /// Prometheus type.
    pub kind: PromKind,
    /// What it measures (Prometheus HELP).
    pub help: &'static str,
}

macro_rules! gauges {
    ($($id:ident: $graphite:literal, $prom:literal, $label:expr, $kind:ident, $help:literal;)*) => {
        $(
            #[doc = $help]
            pub static $id: GaugeDef = GaugeDef {
                graphite: $graphite, prometheus: $prom, label: $label,
                kind: PromKind::$kind, help: $help,
            };
        )*
        /// Every gauge, in rendering order. (Statics, not consts: a
        /// reading is matched to its definition by address.)
        pub static GAUGES: &[&GaugeDef] = &[$(&$id),*];
    };
}

// One line per gauge.
gauges! {
    SERIES: "sluice.series.{}", "sluice_series", Some("type"), Gauge, "Live series per type.";
    HOST_UDP_IN_ERRORS: "sluice.host_udp_in_errors", "sluice_host_udp_in_errors_total", None, Counter, "Host UDP InErrors since boot (/proc/net/snmp).";
    HOST_UDP_RCVBUF_ERRORS: "sluice.host_udp_rcvbuf_errors", "sluice_host_udp_rcvbuf_errors_total", None, Counter, "Host UDP RcvbufErrors since boot (/proc/net/snmp).";
    WHISPER_QUEUE_POINTS: "sluice.whisper_queue_points", "sluice_whisper_queue_points", None, Gauge, "Points queued for the whisper writer threads.";
    CARBON_CACHE_POINTS: "sluice.carbon_cache_points", "sluice_carbon_cache_points", None, Gauge, "Received carbon points not yet written.";
    SINK_QUEUE_DEPTH: "sluice.sinks.{}.queue_depth", "sluice_sink_queue_depth", Some("sink"), Gauge, "Flushes waiting in each sink's queue.";
    SINK_DROPPED_FLUSHES: "sluice.sinks.{}.dropped_flushes", "sluice_sink_dropped_flushes_total", Some("sink"), Counter, "Flushes dropped because a sink's queue was full.";
    CARBON_SENT_POINTS: "graphiteStats.destinations.{}.sent_points", "sluice_carbon_sent_points_total", Some("destination"), Counter, "Points written to each carbon destination.";
    CARBON_BUFFERED_POINTS: "graphiteStats.destinations.{}.buffered_points", "sluice_carbon_buffered_points", Some("destination"), Gauge, "Points waiting for each carbon destination.";
    CARBON_DROPPED_POINTS: "graphiteStats.destinations.{}.dropped_points", "sluice_carbon_dropped_points_total", Some("destination"), Counter, "Points dropped because a destination's buffer was full.";
    CARBON_RESENT_POINTS: "graphiteStats.destinations.{}.resent_points", "sluice_carbon_resent_points_total", Some("destination"), Counter, "Points sent again after a reconnect (the resend window).";
    CARBON_RECONNECTS: "graphiteStats.destinations.{}.reconnects", "sluice_carbon_reconnects_total", Some("destination"), Counter, "Reconnections to each carbon destination.";
    CARBON_LAST_FAILURE: "graphiteStats.destinations.{}.last_failure", "sluice_carbon_last_failure", Some("destination"), Gauge, "Unix time of the last connect or write failure (0: none).";
    CARBON_UP: "graphiteStats.destinations.{}.up", "sluice_carbon_up", Some("destination"), Gauge, "1 while connected to each carbon destination, 0 while it is down or not yet reached.";
    CARBON_DELIVERY_MS: "graphiteStats.destinations.{}.delivery_ms", "sluice_carbon_delivery_ms", Some("destination"), Gauge, "Milliseconds from the latest flush's start to its last byte written.";
}

/// One gauge's value now, with its label's value when it has one.
#[derive(Debug, Clone)]
pub struct Reading {
    /// Which gauge.
    pub def: &'static GaugeDef,
    /// The label's value (sink, destination, type).
    pub label: Option<String>,
    /// The value.
    pub value: f64,
}

impl Reading {
    /// The Graphite name under prefixStats.
    pub fn graphite_name(&self) -> String {
        match &self.label {
            Some(label) => self.def.graphite.replacen("{}", label, 1),
            None => self.def.graphite.to_string(),
        }
    }
}

/// Reads the gauges at the moment of rendering.
pub type Readings = std::sync::Arc<dyn Fn() -> Vec<Reading> + Send + Sync>;

/// Admin `stats` lines for sluice's own figures: every counter's total as
/// `sluice.<name>`, then every reading by its Graphite name.
pub fn admin_lines(telemetry: &Telemetry, readings: &[Reading]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = telemetry
        .totals()
        .map(|(def, total)| (format!("sluice.{}", def.name), total as f64))
        .collect();
    out.extend(readings.iter().map(|r| (r.graphite_name(), r.value)));
    out
}

/// Prometheus text format (0.0.4) of every counter's total, the uptime and
/// every reading, grouped per family.
pub fn prometheus_text(telemetry: &Telemetry, readings: &[Reading], uptime_secs: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP sluice_uptime_seconds Seconds since start.");
    let _ = writeln!(out, "# TYPE sluice_uptime_seconds gauge");
    let _ = writeln!(out, "sluice_uptime_seconds {uptime_secs}");
    for (def, total) in telemetry.totals() {
        let name = format!("sluice_{}_total", def.name);
        let _ = writeln!(out, "# HELP {name} {}", def.help);
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {total}");
    }
    for def in GAUGES {
        let mut samples = readings
            .iter()
            .filter(|r| std::ptr::eq(r.def, *def))
            .peekable();
        if samples.peek().is_none() {
            continue;
        }
        let kind = match def.kind {
            PromKind::Gauge => "gauge",
            PromKind::Counter => "counter",
        };
        let _ = writeln!(out, "# HELP {} {}", def.prometheus, def.help);
        let _ = writeln!(out, "# TYPE {} {kind}", def.prometheus);
        for r in samples {
            let labels = match (def.label, &r.label) {
                (Some(key), Some(value)) => format!("{{{key}=\"{}\"}}", escape_label(value)),
                _ => String::new(),
            };
            let _ = writeln!(out, "{}{labels} {}", def.prometheus, r.value);
        }
    }
    out
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Etsy's graphite backend self-stats, reported in the next flush as
/// `graphiteStats.*` (the values of the previous delivery, as in Etsy).
#[derive(Debug, Default)]
pub struct GraphiteStats {
    /// Unix seconds of the last successful flush to carbon.
    pub last_flush: AtomicI64,
    /// Unix seconds of the last carbon failure (0: none).
    pub last_exception: AtomicI64,
    /// Milliseconds the last carbon flush took.
    pub flush_time_ms: AtomicU64,
    /// Bytes of the last carbon flush.
    pub flush_length: AtomicU64,
    /// Per carbon destination (label, counters), reported with the flush
    /// as `graphiteStats.destinations.<label>.<stat>`.
    pub destinations: std::sync::Mutex<Vec<(String, std::sync::Arc<DestinationStats>)>>,
}

/// One carbon destination's delivery counters (totals since start).
#[derive(Debug, Default)]
pub struct DestinationStats {
    /// Points written.
    pub sent_points: AtomicU64,
    /// Points waiting for the destination (now).
    pub buffered_points: AtomicU64,
    /// Points dropped because the buffer was full: never delivered.
    pub dropped_points: AtomicU64,
    /// Points sent again after a reconnect (the resend window).
    pub resent_points: AtomicU64,
    /// Reconnections.
    pub reconnects: AtomicU64,
    /// Unix seconds of the last connect or write failure (0: none).
    pub last_failure: AtomicI64,
    /// Connected now.
    pub up: std::sync::atomic::AtomicBool,
    /// The latest flush delivered here: milliseconds from the start of
    /// that flush to its last byte written to this destination.
    pub delivery_ms: AtomicU64,
}

impl DestinationStats {
    /// This destination's gauges, labelled with `label`.
    pub fn readings(&self, label: &str, out: &mut Vec<Reading>) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        for (def, value) in [
            (&CARBON_SENT_POINTS, get(&self.sent_points)),
            (&CARBON_BUFFERED_POINTS, get(&self.buffered_points)),
            (&CARBON_DROPPED_POINTS, get(&self.dropped_points)),
            (&CARBON_RESENT_POINTS, get(&self.resent_points)),
            (&CARBON_RECONNECTS, get(&self.reconnects)),
            (
                &CARBON_LAST_FAILURE,
                self.last_failure.load(Ordering::Relaxed) as f64,
            ),
            (
                &CARBON_UP,
                f64::from(u8::from(self.up.load(Ordering::Relaxed))),
            ),
            (&CARBON_DELIVERY_MS, get(&self.delivery_ms)),
        ] {
            out.push(Reading {
                def,
                label: Some(label.to_string()),
                value,
            });
        }
    }
}

impl GraphiteStats {
    /// Stats as of a start at `startup_second`.
    pub fn new(startup_second: i64) -> GraphiteStats {
        let s = GraphiteStats::default();
        s.last_flush.store(startup_second, Ordering::Relaxed);
        s
    }
}

/// Lets a log line through at most once per period and counts the ones
/// held back in between, so a flood of bad input cannot flood the log.
#[derive(Debug)]
pub struct LogLimit {
    period: std::time::Duration,
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl LogLimit {
    /// At most one line a second.
    pub fn per_second() -> LogLimit {
        LogLimit {
            period: std::time::Duration::from_secs(1),
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(lines held back since the last one)` when a line may be
    /// logged now; `None` (and one more held back) otherwise.
    pub fn ready(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.period)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Now, in Unix seconds.
pub fn unix_now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Now in whole seconds, rounded as Etsy rounds it.
pub fn unix_now_rounded() -> i64 {
    unix_now_f64().round() as i64
}

/// The host's UDP error counters from /proc/net/snmp: (InErrors,
/// RcvbufErrors), for every UDP socket in this network namespace.
pub fn host_udp_errors() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/net/snmp").ok()?;
    parse_snmp_udp(&text)
}

fn parse_snmp_udp(text: &str) -> Option<(u64, u64)> {
    let mut rows = text.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = rows.next()?.split_whitespace().collect();
    let values: Vec<&str> = rows.next()?.split_whitespace().collect();
    let get = |field: &str| -> Option<u64> {
        let at = names.iter().position(|n| *n == field)?;
        values.get(at)?.parse().ok()
    };
    Some((get("InErrors")?, get("RcvbufErrors")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_net_snmp() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\nUdp: 100 2 7 90 5 0 0 0 0\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(parse_snmp_udp(text), Some((7, 5)));
        assert!(host_udp_errors().is_some(), "this host has /proc/net/snmp");
    }
}
