//! The agent's own counters: one definition each, incremented by ingest and
//! the sinks, folded into the flush under the `statsd.*` names (Etsy's
//! prefixStats). Receivers add per batch, not per line.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Etsy's internal counters, created at 0 at start (under prefixStats).
pub const ETSY_COUNTERS: [&str; 3] = ["bad_lines_seen", "packets_received", "metrics_received"];

/// Counters that become StatsD counters at each flush.
#[derive(Debug, Default)]
pub struct SelfStats {
    pub packets_received: AtomicU64,
    pub metrics_received: AtomicU64,
    pub bad_lines_seen: AtomicU64,
    /// Bad lines since start (never reset; the admin `stats` shows it).
    pub bad_lines_total: AtomicU64,
    /// DogStatsD events and service checks (not metrics; dropped).
    pub events_dropped: AtomicU64,
    /// TCP lines longer than listen.tcp_max_line_length (dropped).
    pub lines_too_long: AtomicU64,
    /// TCP connections closed at once because of listen.tcp_max_connections.
    pub tcp_connections_refused: AtomicU64,
    /// Flushed values that were NaN or infinite (never sent to carbon).
    pub non_finite_dropped: AtomicU64,
    /// Whisper store: points that could not be written (queue full).
    pub whisper_points_dropped: AtomicU64,
    /// Whisper store: failed file operations (each logged, rate-limited).
    pub whisper_errors: AtomicU64,
    /// Whisper store: metric names refused as unsafe paths.
    pub whisper_names_rejected: AtomicU64,
    /// Whisper store: points written and files created (not emitted).
    pub whisper_points_written: AtomicU64,
    pub whisper_files_created: AtomicU64,
    /// Whisper store: empty or header-only files (left by an interrupted
    /// creation) replaced by a new file.
    pub whisper_files_replaced: AtomicU64,
    /// Datagrams the kernel dropped on our sockets (SO_RXQ_OVFL): the
    /// interval's part and the total since start.
    pub kernel_dropped: AtomicU64,
    pub kernel_dropped_total: AtomicU64,
    /// Packets and lines since start (for /metrics).
    pub packets_total: AtomicU64,
    pub lines_total: AtomicU64,
    /// Unix seconds of the last packet (for the admin interface).
    pub last_msg_seen: AtomicI64,
}

/// One receiver's tallies for one batch, added to [`SelfStats`] at once.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchTally {
    pub packets: u64,
    pub lines: u64,
    pub bad_lines: u64,
    pub events: u64,
}

impl SelfStats {
    pub fn add_kernel_drops(&self, n: u64) {
        self.kernel_dropped.fetch_add(n, Ordering::Relaxed);
        self.kernel_dropped_total.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add(&self, tally: &BatchTally) {
        self.packets_total
            .fetch_add(tally.packets, Ordering::Relaxed);
        self.lines_total.fetch_add(tally.lines, Ordering::Relaxed);
        if tally.packets > 0 {
            self.packets_received
                .fetch_add(tally.packets, Ordering::Relaxed);
        }
        if tally.lines > 0 {
            self.metrics_received
                .fetch_add(tally.lines, Ordering::Relaxed);
        }
        if tally.bad_lines > 0 {
            self.bad_lines_seen
                .fetch_add(tally.bad_lines, Ordering::Relaxed);
            self.bad_lines_total
                .fetch_add(tally.bad_lines, Ordering::Relaxed);
        }
        if tally.events > 0 {
            self.events_dropped
                .fetch_add(tally.events, Ordering::Relaxed);
        }
    }

    /// Etsy's three internal counters, taken (reset to 0) for a flush.
    pub fn take_etsy_counters(&self) -> [(&'static str, u64); 3] {
        [
            (
                "bad_lines_seen",
                self.bad_lines_seen.swap(0, Ordering::Relaxed),
            ),
            (
                "packets_received",
                self.packets_received.swap(0, Ordering::Relaxed),
            ),
            (
                "metrics_received",
                self.metrics_received.swap(0, Ordering::Relaxed),
            ),
        ]
    }

    /// sluice's own counters, taken for a flush. They become series only
    /// once non-zero, so a clean stream has Etsy's exact set of names.
    pub fn take_extra_counters(&self) -> [(&'static str, u64); 8] {
        let take = |c: &AtomicU64| c.swap(0, Ordering::Relaxed);
        [
            ("events_dropped", take(&self.events_dropped)),
            ("kernel_dropped_datagrams", take(&self.kernel_dropped)),
            ("lines_too_long", take(&self.lines_too_long)),
            (
                "tcp_connections_refused",
                take(&self.tcp_connections_refused),
            ),
            ("non_finite_dropped", take(&self.non_finite_dropped)),
            ("whisper_points_dropped", take(&self.whisper_points_dropped)),
            ("whisper_errors", take(&self.whisper_errors)),
            ("whisper_names_rejected", take(&self.whisper_names_rejected)),
        ]
    }
}

/// Etsy's graphite backend self-stats, reported in the next flush as
/// `graphiteStats.*` (the values of the previous delivery, as in Etsy).
#[derive(Debug, Default)]
pub struct GraphiteStats {
    pub last_flush: AtomicI64,
    pub last_exception: AtomicI64,
    pub flush_time_ms: AtomicU64,
    pub flush_length: AtomicU64,
    /// Per carbon destination (label, counters), reported with the flush
    /// as `graphiteStats.destinations.<label>.<stat>`.
    pub destinations: std::sync::Mutex<Vec<(String, std::sync::Arc<DestinationStats>)>>,
}

/// One carbon destination's delivery counters (totals since start).
#[derive(Debug, Default)]
pub struct DestinationStats {
    pub sent_points: AtomicU64,
    /// Points waiting for the destination (now).
    pub buffered_points: AtomicU64,
    /// Points dropped because the buffer was full: never delivered.
    pub dropped_points: AtomicU64,
    /// Points sent again after a reconnect (the resend window).
    pub resent_points: AtomicU64,
    pub reconnects: AtomicU64,
    /// Unix seconds of the last connect or write failure (0: none).
    pub last_failure: AtomicI64,
    /// The latest flush delivered here: milliseconds from the start of
    /// that flush to its last byte written to this destination.
    pub delivery_ms: AtomicU64,
}

impl DestinationStats {
    /// (stat name, value) for the flush.
    pub fn snapshot(&self) -> [(&'static str, f64); 7] {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        [
            ("sent_points", get(&self.sent_points)),
            ("buffered_points", get(&self.buffered_points)),
            ("dropped_points", get(&self.dropped_points)),
            ("resent_points", get(&self.resent_points)),
            ("reconnects", get(&self.reconnects)),
            (
                "last_failure",
                self.last_failure.load(Ordering::Relaxed) as f64,
            ),
            ("delivery_ms", get(&self.delivery_ms)),
        ]
    }
}

impl GraphiteStats {
    pub fn new(startup_second: i64) -> GraphiteStats {
        let s = GraphiteStats::default();
        s.last_flush.store(startup_second, Ordering::Relaxed);
        s
    }
}

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
