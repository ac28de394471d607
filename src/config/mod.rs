//! Configuration: the TOML file and the command-line flags are read into
//! [`RawConfig`] (what the operator wrote, all optional), then validated into
//! [`Config`] (durations, socket addresses, checked numbers). Nothing past
//! this module sees a string that still needs checking; every error names
//! the key, the value and what would be accepted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub mod check;
pub mod layer;
pub mod print;
mod raw;

pub use raw::*;

/// A configuration error, meant to be read by a person.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    /// The file is not valid TOML for sluice.
    Syntax {
        /// The file.
        path: PathBuf,
        /// What is wrong, where.
        message: String,
    },
    #[error("{key} = {value}: {expected}")]
    /// A value out of what the key accepts.
    Invalid {
        /// The key, as `section.key`.
        key: &'static str,
        /// The value given.
        value: String,
        /// What would be accepted.
        expected: String,
    },
}

fn invalid(
    key: &'static str,
    value: impl std::fmt::Display,
    expected: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        expected: expected.into(),
    }
}

// ---------------------------------------------------------- validated side

/// The validated configuration the agent runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[listen]`: sockets.
    pub listen: Listen,
    /// `[flush]`: the statistics a flush derives.
    pub stats: StatsConfig,
    /// `[graphite]`: Etsy's naming.
    pub naming: Naming,
    /// `[carbon]`: forwarding.
    pub carbon: CarbonConfig,
    /// `[whisper]`: the embedded store.
    pub whisper: WhisperConfig,
    /// `[console] enabled`: print every point.
    pub console: bool,
    /// `[admin] address`; `None`: off.
    pub admin: Option<SocketAddr>,
    /// `[http]`: /health, /metrics and Graphite's read API.
    pub http: HttpConfig,
    /// `[shutdown] timeout`: what sinks get to deliver at exit.
    pub shutdown_timeout: Duration,
    /// `[log] level`.
    pub log_level: String,
}

#[derive(Debug, Clone, PartialEq)]
/// `[listen]`.
pub struct Listen {
    /// StatsD UDP addresses.
    pub udp: Vec<SocketAddr>,
    /// StatsD TCP addresses.
    pub tcp: Vec<SocketAddr>,
    /// Receiver threads (SO_REUSEPORT sockets) per UDP address.
    pub udp_receivers: usize,
    /// Receive buffer per UDP socket, in bytes.
    pub udp_receive_buffer: usize,
    /// Longest TCP line kept.
    pub tcp_max_line_length: usize,
    /// TCP connections served at once.
    pub tcp_max_connections: usize,
    /// A TCP connection that completes no line for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Aggregator shards.
    pub shards: usize,
    /// Carbon line receivers (TCP and UDP on each address).
    pub carbon_line: Vec<SocketAddr>,
    /// Carbon pickle receivers (TCP).
    pub carbon_pickle: Vec<SocketAddr>,
    /// Longest carbon line kept.
    pub carbon_max_line_length: usize,
    /// Largest pickle frame accepted.
    pub carbon_pickle_max_frame: usize,
    /// Received points held before the writers take them.
    pub carbon_cache_points: usize,
    /// StatsD over unix datagram sockets (DogStatsD's dsd.socket).
    pub unix_datagram: Vec<std::path::PathBuf>,
    /// StatsD over unix stream sockets (newline framed).
    pub unix_stream: Vec<std::path::PathBuf>,
    /// Permission bits of the socket files.
    pub unix_mode: u32,
    /// Owner (uid) to give the socket files; `None`: sluice's user.
    pub unix_owner: Option<u32>,
    /// Group (gid) to give them; `None`: sluice's group.
    pub unix_group: Option<u32>,
}

impl Listen {
    /// Mode, owner and group of the socket files.
    pub fn unix_access(&self) -> crate::net::UnixAccess {
        crate::net::UnixAccess {
            mode: self.unix_mode,
            owner: self.unix_owner,
            group: self.unix_group,
        }
    }
}

/// Everything that decides which aggregates a flush derives.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsConfig {
    /// flushInterval.
    pub flush_interval: Duration,
    /// percentThreshold.
    pub percent_thresholds: Vec<f64>,
    /// histogram.
    pub histograms: Vec<HistogramRule>,
    /// Empty: every timer stat. Otherwise Etsy's `calculatedTimerMetrics`.
    pub calculated_timer_metrics: Vec<String>,
    /// deleteCounters.
    pub delete_counters: bool,
    /// deleteTimers.
    pub delete_timers: bool,
    /// deleteSets.
    pub delete_sets: bool,
    /// deleteGauges.
    pub delete_gauges: bool,
    /// gaugesMaxTTL (flushes).
    pub gauges_max_ttl: u32,
    /// Exact timer values kept per interval before the histogram.
    pub timer_exact_limit: usize,
    /// keyNameSanitize.
    pub key_name_sanitize: bool,
    /// How tags join a series' name: Graphite 1.1 (sorted, normalised) or
    /// Etsy 0.9's folding in the order sent.
    pub tag_style: crate::protocol::statsd::TagStyle,
    /// Caps on live series, all kinds together and per kind (counters,
    /// timers, gauges, sets); 0 is no cap.
    pub max_series: usize,
    /// Per kind: counters, timers, gauges, sets.
    pub max_series_per_kind: [usize; 4],
    /// Series created per flush interval; 0 is no cap.
    pub max_new_series_per_interval: usize,
}

/// Etsy's histogram entry: the first rule whose `metric` is a substring of
/// a timer's key gives its bins.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramRule {
    /// Substring of the timer keys this rule applies to.
    pub metric: String,
    /// Upper bounds, ascending; `f64::INFINITY` is Etsy's `'inf'`.
    pub bins: Vec<f64>,
}

/// Etsy's graphite backend naming options.
#[derive(Debug, Clone, PartialEq)]
pub struct Naming {
    /// legacyNamespace.
    pub legacy_namespace: bool,
    /// globalPrefix.
    pub global_prefix: String,
    /// prefixCounter.
    pub prefix_counter: String,
    /// prefixTimer.
    pub prefix_timer: String,
    /// prefixGauge.
    pub prefix_gauge: String,
    /// prefixSet.
    pub prefix_set: String,
    /// Empty for none.
    pub global_suffix: String,
    /// prefixStats.
    pub prefix_stats: String,
    /// flush_counts (stats_counts.* in non-legacy naming).
    pub flush_counts: bool,
}

#[derive(Debug, Clone, PartialEq)]
/// `[carbon]`.
pub struct CarbonConfig {
    /// Where points go.
    pub destinations: Vec<Destination>,
    /// How several destinations share them.
    pub mode: CarbonMode,
    /// Per destination: points and bytes kept while it is unreachable.
    pub buffer_points: usize,
    /// Bytes kept per destination while it is unreachable.
    pub buffer_bytes: usize,
    /// After a reconnect, what was sent this recently is sent again (carbon
    /// loses what it had received but not written when it stops).
    pub resend_window: Duration,
    /// Bound on what is kept for re-sending (encoded bytes, estimated).
    pub resend_bytes: usize,
    /// How long a connect may take.
    pub connect_timeout: Duration,
    /// Longest pause between reconnects.
    pub max_backoff: Duration,
    /// Points received over carbon's protocols are forwarded too.
    pub relay_received: bool,
}

/// How points are spread over several destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarbonMode {
    /// Every point to every destination.
    Replicate,
    /// Each metric to one destination, chosen by carbon's consistent-hash
    /// ring (as carbon-relay's consistent-hashing router with carbon_ch).
    Hash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// carbon's two receiving protocols.
pub enum CarbonProtocol {
    /// The plaintext protocol (port 2003).
    Line,
    /// The pickle protocol (port 2004).
    Pickle,
}

/// One carbon destination: `[line:|pickle:]host:port[:instance]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Line or pickle.
    pub protocol: CarbonProtocol,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// carbon's instance name (part of the hash ring key).
    pub instance: Option<String>,
}

impl Destination {
    /// Parses `[line:|pickle:]host:port[:instance]`.
    pub fn parse(text: &str) -> Option<Destination> {
        let (protocol, rest) = if let Some(r) = text.strip_prefix("pickle:") {
            (CarbonProtocol::Pickle, r)
        } else if let Some(r) = text.strip_prefix("line:") {
            (CarbonProtocol::Line, r)
        } else {
            (CarbonProtocol::Line, text)
        };
        let (host, after) = if let Some(r) = rest.strip_prefix('[') {
            let (h, a) = r.split_once(']')?;
            (h.to_string(), a.strip_prefix(':')?)
        } else {
            let (h, a) = rest.split_once(':')?;
            (h.to_string(), a)
        };
        let (port, instance) = match after.split_once(':') {
            Some((p, i)) if !i.is_empty() => (p, Some(i.to_string())),
            Some(_) => return None,
            None => (after, None),
        };
        let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
        if host.is_empty() || host.contains(char::is_whitespace) {
            return None;
        }
        Some(Destination {
            protocol,
            host,
            port,
            instance,
        })
    }

    /// `host:port` to connect to.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// A name for the destination's own metrics: `127_0_0_1_2003`.
    pub fn label(&self) -> String {
        let mut label = format!("{}_{}", self.host, self.port);
        if let Some(i) = &self.instance {
            label.push('_');
            label.push_str(i);
        }
        label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

impl Destination {
    /// The destination as the config file writes it.
    pub fn to_text(&self) -> String {
        let proto = match self.protocol {
            CarbonProtocol::Line => "line",
            CarbonProtocol::Pickle => "pickle",
        };
        let instance = self
            .instance
            .as_ref()
            .map(|i| format!(":{i}"))
            .unwrap_or_default();
        format!("{proto}:{}{instance}", self.address())
    }
}

#[derive(Debug, Clone, PartialEq)]
/// `[whisper]`.
pub struct WhisperConfig {
    /// Write the store.
    pub enabled: bool,
    /// Its root directory.
    pub dir: PathBuf,
    /// storage-schemas.conf; None = the built-in copy of the shipped file.
    pub schemas: Option<PathBuf>,
    /// storage-aggregation.conf; None = the built-in copy.
    pub aggregation: Option<PathBuf>,
    /// Writer threads.
    pub writers: usize,
    /// Flushes queued per writer.
    pub queue_flushes: usize,
    /// Points queued for the writers before new flushes are dropped.
    pub queue_points: usize,
    /// Open files kept; `None`: as many as the descriptor limit allows,
    /// up to [`DEFAULT_MAX_OPEN_FILES`].
    pub max_open_files: Option<usize>,
    /// Graphite events are kept this many days.
    pub events_retention_days: usize,
    /// ... and at most this many, the oldest forgotten first.
    pub max_events: usize,
}

impl WhisperConfig {
    /// The open files wanted.
    pub fn max_open_files(&self) -> usize {
        self.max_open_files.unwrap_or(DEFAULT_MAX_OPEN_FILES)
    }
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Where to listen; `None`: off.
    pub address: Option<SocketAddr>,
    /// `Access-Control-Allow-Origin` to send; `None`: no CORS headers.
    pub cors_origin: Option<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Renders evaluated at once.
    pub max_concurrent_renders: usize,
    /// Series one render may fetch.
    pub max_series: usize,
    /// Points one render may fetch.
    pub max_points: usize,
    /// Targets per render.
    pub max_targets: usize,
    /// Characters per target.
    pub max_target_length: usize,
    /// Names one find may return.
    pub max_find: usize,
}

/// Defaults of settings whose default is not Etsy's.
pub const DEFAULT_UDP: &str = "0.0.0.0:8125";
/// StatsD TCP.
pub const DEFAULT_TCP: &str = "0.0.0.0:8125";
/// Etsy's management port, on loopback.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:8126";
/// Etsy's flushInterval default.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// Shorter flushes would be mostly overhead.
pub const MIN_FLUSH_INTERVAL: Duration = Duration::from_millis(10);
/// The embedded store's directory, relative to the working directory.
pub const DEFAULT_WHISPER_DIR: &str = "./data/whisper";
/// Live series kept at most, all kinds together, when flush.max_series is
/// not set (README "Operating sluice" gives the memory this bounds).
pub const DEFAULT_MAX_SERIES: usize = 2_000_000;

/// Permission bits of unix socket files, as the Datadog agent's dsd.socket.
pub const DEFAULT_UNIX_MODE: u32 = 0o722;

/// Days Graphite events are kept (whisper.events_retention_days).
pub const DEFAULT_EVENTS_RETENTION_DAYS: usize = 90;
/// Events kept at most (whisper.max_events).
pub const DEFAULT_MAX_EVENTS: usize = 100_000;

/// Open whisper files kept, when whisper.max_open_files is not set.
pub const DEFAULT_MAX_OPEN_FILES: usize = 65536;
/// Socket defaults: receive buffer (bytes), receivers, shards.
pub const DEFAULT_UDP_RECEIVE_BUFFER: usize = 64 << 20;
/// UDP receiver threads per address.
pub const DEFAULT_UDP_RECEIVERS: usize = 2;
/// Aggregator shards.
pub const DEFAULT_SHARDS: usize = 64;
/// Longest TCP line kept.
pub const DEFAULT_TCP_MAX_LINE_LENGTH: usize = 65536;
/// TCP connections served at once.
pub const DEFAULT_TCP_MAX_CONNECTIONS: usize = 1024;
/// Timers keep exact values up to this many samples per interval.
pub const DEFAULT_TIMER_EXACT_LIMIT: usize = 1000;
/// Carbon retry and resend bounds.
pub const DEFAULT_CARBON_BUFFER_POINTS: usize = 1_000_000;
/// Retry buffer per destination, in bytes.
pub const DEFAULT_CARBON_BUFFER_BYTES: usize = 256 << 20;
/// What is re-sent after a reconnect.
pub const DEFAULT_CARBON_RESEND_WINDOW: Duration = Duration::from_secs(30);
/// Bound on what is kept for re-sending.
pub const DEFAULT_CARBON_RESEND_BYTES: usize = 64 << 20;
/// Connect timeout.
pub const DEFAULT_CARBON_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest reconnect pause.
pub const DEFAULT_CARBON_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Whisper writer threads and flushes queued per writer.
pub const DEFAULT_WHISPER_WRITERS: usize = 2;
/// Flushes queued per whisper writer.
pub const DEFAULT_WHISPER_QUEUE_FLUSHES: usize = 16;
/// A StatsD TCP connection that completes no line for this long goes.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Carbon receivers: carbon's own line limit...
pub const DEFAULT_CARBON_MAX_LINE_LENGTH: usize = 16_384;
/// ... its pickle frame limit (PICKLE_RECEIVER_MAX_LENGTH) ...
pub const DEFAULT_CARBON_PICKLE_MAX_FRAME: usize = 1 << 20;
/// ... and the received points held before the writers take them.
pub const DEFAULT_CARBON_CACHE_POINTS: usize = 10_000_000;
/// Points queued for the whisper writers.
pub const DEFAULT_WHISPER_QUEUE_POINTS: usize = 10_000_000;
/// Largest HTTP request body.
pub const DEFAULT_HTTP_MAX_BODY_BYTES: usize = 1 << 20;
/// Renders evaluated at once.
pub const DEFAULT_HTTP_MAX_CONCURRENT_RENDERS: usize = 8;
/// Series one render may fetch.
pub const DEFAULT_HTTP_MAX_SERIES: usize = 10_000;
/// Points one render may fetch.
pub const DEFAULT_HTTP_MAX_POINTS: usize = 10_000_000;
/// Targets per render.
pub const DEFAULT_HTTP_MAX_TARGETS: usize = 100;
/// Characters per target.
pub const DEFAULT_HTTP_MAX_TARGET_LENGTH: usize = 16_384;
/// Names one find may return.
pub const DEFAULT_HTTP_MAX_FIND: usize = 100_000;
/// How long sinks get to deliver at shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

impl Config {
    /// Validates `raw` into a runnable configuration.
    pub fn from_raw(raw: &RawConfig) -> Result<Config, ConfigError> {
        let l = &raw.listen;
        let udp = addresses("listen.udp", l.udp.as_deref(), DEFAULT_UDP)?;
        let tcp = addresses("listen.tcp", l.tcp.as_deref(), DEFAULT_TCP)?;
        let listen = Listen {
            udp,
            tcp,
            udp_receivers: in_range(
                "listen.udp_receivers",
                l.udp_receivers,
                DEFAULT_UDP_RECEIVERS,
                1,
                64,
            )?,
            udp_receive_buffer: in_range(
                "listen.udp_receive_buffer",
                l.udp_receive_buffer,
                DEFAULT_UDP_RECEIVE_BUFFER,
                4096,
                1 << 30,
            )?,
            tcp_max_line_length: in_range(
                "listen.tcp_max_line_length",
                l.tcp_max_line_length,
                DEFAULT_TCP_MAX_LINE_LENGTH,
                64,
                16 << 20,
            )?,
            tcp_max_connections: in_range(
                "listen.tcp_max_connections",
                l.tcp_max_connections,
                DEFAULT_TCP_MAX_CONNECTIONS,
                1,
                1 << 20,
            )?,
            tcp_idle_timeout: duration(
                "listen.tcp_idle_timeout",
                l.tcp_idle_timeout.as_ref(),
                DEFAULT_TCP_IDLE_TIMEOUT,
            )?,
            shards: in_range("listen.shards", l.shards, DEFAULT_SHARDS, 1, 4096)?,
            carbon_line: match &l.carbon_line {
                None => Vec::new(),
                Some(list) => list
                    .iter()
                    .map(|a| address("listen.carbon_line", a))
                    .collect::<Result<_, _>>()?,
            },
            carbon_pickle: match &l.carbon_pickle {
                None => Vec::new(),
                Some(list) => list
                    .iter()
                    .map(|a| address("listen.carbon_pickle", a))
                    .collect::<Result<_, _>>()?,
            },
            carbon_max_line_length: in_range(
                "listen.carbon_max_line_length",
                l.carbon_max_line_length,
                DEFAULT_CARBON_MAX_LINE_LENGTH,
                64,
                16 << 20,
            )?,
            carbon_pickle_max_frame: in_range(
                "listen.carbon_pickle_max_frame",
                l.carbon_pickle_max_frame,
                DEFAULT_CARBON_PICKLE_MAX_FRAME,
                1024,
                1 << 30,
            )?,
            carbon_cache_points: in_range(
                "listen.carbon_cache_points",
                l.carbon_cache_points,
                DEFAULT_CARBON_CACHE_POINTS,
                1,
                1 << 32,
            )?,
            unix_datagram: socket_paths("listen.unix_datagram", &l.unix_datagram)?,
            unix_stream: socket_paths("listen.unix_stream", &l.unix_stream)?,
            unix_mode: match &l.unix_mode {
                None => DEFAULT_UNIX_MODE,
                Some(text) => u32::from_str_radix(text.trim_start_matches("0o"), 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| {
                        invalid(
                            "listen.unix_mode",
                            format!("{text:?}"),
                            "octal permission bits such as \"0722\" (the Datadog agent's: anyone may write, only sluice's user reads)",
                        )
                    })?,
            },
            unix_owner: account_id("listen.unix_owner", l.unix_owner.as_deref(), "/etc/passwd")?,
            unix_group: account_id("listen.unix_group", l.unix_group.as_deref(), "/etc/group")?,
        };

        let f = &raw.flush;
        let flush_interval = duration(
            "flush.interval",
            f.interval.as_ref(),
            DEFAULT_FLUSH_INTERVAL,
        )?;
        if flush_interval < MIN_FLUSH_INTERVAL {
            return Err(invalid(
                "flush.interval",
                duration_text(flush_interval),
                "a duration of at least 10ms, such as \"500ms\", \"1s\" or \"10s\"",
            ));
        }
        let percent_thresholds = f.percent_thresholds.clone().unwrap_or_else(|| vec![90.0]);
        for p in &percent_thresholds {
            if !(p.is_finite() && *p != 0.0 && p.abs() <= 100.0) {
                return Err(invalid(
                    "flush.percent_thresholds",
                    p,
                    "numbers between -100 and 100, not 0 (negative means the top percent)",
                ));
            }
        }
        let histograms = f
            .histogram
            .iter()
            .flatten()
            .map(histogram_rule)
            .collect::<Result<Vec<_>, _>>()?;
        let calculated_timer_metrics = f.calculated_timer_metrics.clone().unwrap_or_default();
        let idle = f.delete_idle_stats.unwrap_or(false);
        let gauges_max_ttl = in_range("flush.gauges_max_ttl", f.gauges_max_ttl, 1, 1, 1 << 30)?;
        let stats = StatsConfig {
            flush_interval,
            percent_thresholds,
            histograms,
            calculated_timer_metrics,
            delete_counters: f.delete_counters.unwrap_or(idle),
            delete_timers: f.delete_timers.unwrap_or(idle),
            delete_sets: f.delete_sets.unwrap_or(idle),
            delete_gauges: f.delete_gauges.unwrap_or(idle),
            gauges_max_ttl: gauges_max_ttl as u32,
            timer_exact_limit: in_range(
                "flush.timer_exact_limit",
                f.timer_exact_limit,
                DEFAULT_TIMER_EXACT_LIMIT,
                1,
                10_000_000,
            )?,
            key_name_sanitize: f.key_name_sanitize.unwrap_or(true),
            max_series: in_range("flush.max_series", f.max_series, DEFAULT_MAX_SERIES, 0, 1 << 40)?,
            max_series_per_kind: [
                in_range("flush.max_counters", f.max_counters, 0, 0, 1 << 40)?,
                in_range("flush.max_timers", f.max_timers, 0, 0, 1 << 40)?,
                in_range("flush.max_gauges", f.max_gauges, 0, 0, 1 << 40)?,
                in_range("flush.max_sets", f.max_sets, 0, 0, 1 << 40)?,
            ],
            max_new_series_per_interval: in_range(
                "flush.max_new_series_per_interval",
                f.max_new_series_per_interval,
                0,
                0,
                1 << 40,
            )?,
            tag_style: match f.tag_style.as_deref() {
                None | Some("graphite") => crate::protocol::statsd::TagStyle::Graphite,
                Some("etsy") => crate::protocol::statsd::TagStyle::Etsy,
                Some(other) => {
                    return Err(invalid(
                        "flush.tag_style",
                        format!("{other:?}"),
                        "\"graphite\" (Graphite 1.1 tagged series: tags sorted by key, normalised as carbon does) or \"etsy\" (Etsy 0.9: tags folded in the order sent)",
                    ))
                }
            },
        };

        let g = &raw.graphite;
        let naming = Naming {
            legacy_namespace: g.legacy_namespace.unwrap_or(true),
            global_prefix: name_part("graphite.global_prefix", &g.global_prefix, "stats")?,
            prefix_counter: name_part("graphite.prefix_counter", &g.prefix_counter, "counters")?,
            prefix_timer: name_part("graphite.prefix_timer", &g.prefix_timer, "timers")?,
            prefix_gauge: name_part("graphite.prefix_gauge", &g.prefix_gauge, "gauges")?,
            prefix_set: name_part("graphite.prefix_set", &g.prefix_set, "sets")?,
            global_suffix: name_part("graphite.global_suffix", &g.global_suffix, "")?,
            prefix_stats: name_part("graphite.prefix_stats", &g.prefix_stats, "statsd")?,
            flush_counts: g.flush_counts.unwrap_or(true),
        };

        let c = &raw.carbon;
        let destinations = c
            .destinations
            .iter()
            .flatten()
            .map(|d| {
                Destination::parse(d).ok_or_else(|| {
                    invalid(
                        "carbon.destinations",
                        format!("{d:?}"),
                        "[line:|pickle:]host:port[:instance], such as \"127.0.0.1:2003\" or \"pickle:carbon.example:2004:a\"",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mode = match c.mode.as_deref() {
            None | Some("replicate") => CarbonMode::Replicate,
            Some("hash") => CarbonMode::Hash,
            Some(other) => {
                return Err(invalid(
                    "carbon.mode",
                    format!("{other:?}"),
                    "\"replicate\" (every point to every destination) or \"hash\" (carbon's consistent hashing)",
                ))
            }
        };
        let carbon = CarbonConfig {
            destinations,
            mode,
            buffer_points: in_range(
                "carbon.buffer_points",
                c.buffer_points,
                DEFAULT_CARBON_BUFFER_POINTS,
                1,
                1 << 32,
            )?,
            buffer_bytes: in_range(
                "carbon.buffer_bytes",
                c.buffer_bytes,
                DEFAULT_CARBON_BUFFER_BYTES,
                1024,
                1 << 40,
            )?,
            resend_window: duration(
                "carbon.resend_window",
                c.resend_window.as_ref(),
                DEFAULT_CARBON_RESEND_WINDOW,
            )?,
            resend_bytes: in_range(
                "carbon.resend_bytes",
                c.resend_bytes,
                DEFAULT_CARBON_RESEND_BYTES,
                0,
                1 << 40,
            )?,
            connect_timeout: duration(
                "carbon.connect_timeout",
                c.connect_timeout.as_ref(),
                DEFAULT_CARBON_CONNECT_TIMEOUT,
            )?,
            max_backoff: duration(
                "carbon.max_backoff",
                c.max_backoff.as_ref(),
                DEFAULT_CARBON_MAX_BACKOFF,
            )?,
            relay_received: c.relay_received.unwrap_or(false),
        };

        let w = &raw.whisper;
        let whisper = WhisperConfig {
            enabled: w.enabled.unwrap_or(true),
            dir: PathBuf::from(w.dir.as_deref().unwrap_or(DEFAULT_WHISPER_DIR)),
            schemas: w.schemas.as_ref().map(PathBuf::from),
            aggregation: w.aggregation.as_ref().map(PathBuf::from),
            writers: in_range("whisper.writers", w.writers, DEFAULT_WHISPER_WRITERS, 1, 64)?,
            queue_flushes: in_range(
                "whisper.queue_flushes",
                w.queue_flushes,
                DEFAULT_WHISPER_QUEUE_FLUSHES,
                1,
                10_000,
            )?,
            queue_points: in_range(
                "whisper.queue_points",
                w.queue_points,
                DEFAULT_WHISPER_QUEUE_POINTS,
                1000,
                1 << 34,
            )?,
            max_open_files: w
                .max_open_files
                .map(|n| in_range("whisper.max_open_files", Some(n), 0, 16, 1 << 22))
                .transpose()?,
            events_retention_days: in_range(
                "whisper.events_retention_days",
                w.events_retention_days,
                DEFAULT_EVENTS_RETENTION_DAYS,
                1,
                36_500,
            )?,
            max_events: in_range(
                "whisper.max_events",
                w.max_events,
                DEFAULT_MAX_EVENTS,
                1,
                10_000_000,
            )?,
        };
        if whisper.dir.as_os_str().is_empty() {
            return Err(invalid("whisper.dir", "\"\"", "a directory path"));
        }

        let admin = match raw.admin.address.as_deref() {
            Some("") => None,
            other => Some(address("admin.address", other.unwrap_or(DEFAULT_ADMIN))?),
        };
        let h = &raw.http;
        let http = HttpConfig {
            address: match h.address.as_deref() {
                None | Some("") => None,
                Some(text) => Some(address("http.address", text)?),
            },
            cors_origin: h.cors_origin.clone().filter(|o| !o.is_empty()),
            max_body_bytes: in_range(
                "http.max_body_bytes",
                h.max_body_bytes,
                DEFAULT_HTTP_MAX_BODY_BYTES,
                1024,
                1 << 30,
            )?,
            max_concurrent_renders: in_range(
                "http.max_concurrent_renders",
                h.max_concurrent_renders,
                DEFAULT_HTTP_MAX_CONCURRENT_RENDERS,
                1,
                1024,
            )?,
            max_series: in_range(
                "http.max_series",
                h.max_series,
                DEFAULT_HTTP_MAX_SERIES,
                1,
                10_000_000,
            )?,
            max_points: in_range(
                "http.max_points",
                h.max_points,
                DEFAULT_HTTP_MAX_POINTS,
                1,
                1 << 32,
            )?,
            max_targets: in_range(
                "http.max_targets",
                h.max_targets,
                DEFAULT_HTTP_MAX_TARGETS,
                1,
                10_000,
            )?,
            max_target_length: in_range(
                "http.max_target_length",
                h.max_target_length,
                DEFAULT_HTTP_MAX_TARGET_LENGTH,
                16,
                1 << 20,
            )?,
            max_find: in_range(
                "http.max_find",
                h.max_find,
                DEFAULT_HTTP_MAX_FIND,
                1,
                10_000_000,
            )?,
        };
        let shutdown_timeout = duration(
            "shutdown.timeout",
            raw.shutdown.timeout.as_ref(),
            DEFAULT_SHUTDOWN_TIMEOUT,
        )?;
        let log_level = raw.log.level.clone().unwrap_or_else(|| "info".into());
        if !matches!(
            log_level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            return Err(invalid(
                "log.level",
                &log_level,
                "one of error, warn, info, debug, trace",
            ));
        }
        Ok(Config {
            listen,
            stats,
            naming,
            carbon,
            whisper,
            console: raw.console.enabled.unwrap_or(false),
            admin,
            http,
            shutdown_timeout,
            log_level,
        })
    }
}

fn addresses(
    key: &'static str,
    given: Option<&[String]>,
    default: &str,
) -> Result<Vec<SocketAddr>, ConfigError> {
    match given {
        None => Ok(vec![address(key, default)?]),
        Some(list) => list.iter().map(|a| address(key, a)).collect(),
    }
}

/// Unix socket paths: absolute or relative, never empty, short enough for
/// `sun_path` (108 bytes with its NUL).
fn socket_paths(
    key: &'static str,
    given: &Option<Vec<String>>,
) -> Result<Vec<PathBuf>, ConfigError> {
    given
        .iter()
        .flatten()
        .map(|p| {
            if p.is_empty() || p.len() > 107 {
                Err(invalid(
                    key,
                    format!("{p:?}"),
                    "a socket file path of 1 to 107 bytes, e.g. \"/run/sluice/dsd.socket\"",
                ))
            } else {
                Ok(PathBuf::from(p))
            }
        })
        .collect()
}

fn address(key: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse::<SocketAddr>().map_err(|_| {
        invalid(
            key,
            format!("{text:?}"),
            "an IP address and port, such as \"127.0.0.1:8125\" or \"[::1]:8125\"",
        )
    })
}

fn in_range(
    key: &'static str,
    given: Option<i64>,
    default: usize,
    min: i64,
    max: i64,
) -> Result<usize, ConfigError> {
    match given {
        None => Ok(default),
        Some(v) if v >= min && v <= max => Ok(v as usize),
        Some(v) => Err(invalid(key, v, format!("an integer from {min} to {max}"))),
    }
}

fn name_part(
    key: &'static str,
    given: &Option<String>,
    default: &str,
) -> Result<String, ConfigError> {
    let value = given.clone().unwrap_or_else(|| default.to_owned());
    if value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        Ok(value)
    } else {
        Err(invalid(
            key,
            format!("{value:?}"),
            "letters, digits, '_', '-' and '.' only (or \"\" for none)",
        ))
    }
}

fn histogram_rule(raw: &RawHistogram) -> Result<HistogramRule, ConfigError> {
    let mut bins = Vec::with_capacity(raw.bins.len());
    for bin in &raw.bins {
        let bound = match bin {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) if f.is_finite() => *f,
            toml::Value::String(s) if s == "inf" => f64::INFINITY,
            other => {
                return Err(invalid(
                    "flush.histogram.bins",
                    other,
                    "numbers in ascending order, optionally ending with \"inf\"",
                ))
            }
        };
        if bins.last().is_some_and(|last: &f64| *last >= bound) || bound < 0.0 {
            return Err(invalid(
                "flush.histogram.bins",
                format!("{:?}", raw.bins),
                "non-negative numbers in ascending order, optionally ending with \"inf\"",
            ));
        }
        bins.push(bound);
    }
    Ok(HistogramRule {
        metric: raw.metric.clone(),
        bins,
    })
}

/// Parses `500ms`, `1s`, `10s`, `2m`, `1h`. A number needs its unit.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return None;
    }
    Some(Duration::from_secs_f64(seconds))
}

/// A user or group given by name or number: the number, the name looked
/// up in `table` (/etc/passwd or /etc/group: name:x:id:...).
fn account_id(
    key: &'static str,
    given: Option<&str>,
    table: &str,
) -> Result<Option<u32>, ConfigError> {
    let Some(given) = given.map(str::trim).filter(|g| !g.is_empty()) else {
        return Ok(None);
    };
    if let Ok(id) = given.parse::<u32>() {
        return Ok(Some(id));
    }
    let text = std::fs::read_to_string(table).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?.parse::<u32>().ok()?;
            (name == given).then_some(id)
        })
        .next()
        .map(Some)
        .ok_or_else(|| {
            invalid(
                key,
                format!("{given:?}"),
                format!("a numeric id or a name listed in {table}"),
            )
        })
}

const DURATION_FORMS: &str = "a duration such as \"500ms\", \"1s\", \"10s\", \"2m\" or \"1h\"";

fn duration(
    key: &'static str,
    given: Option<&RawDuration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let unitless = |n: &str| {
        invalid(
            key,
            n,
            format!(
                "{DURATION_FORMS}; a number needs a unit (\"{n}s\" for seconds, or \"{n}ms\" if this is Etsy's flushInterval, which is milliseconds)"
            ),
        )
    };
    match given {
        None => Ok(default),
        Some(RawDuration::Number(n)) => Err(unitless(&n.to_string())),
        Some(RawDuration::Text(text)) if text.trim().parse::<f64>().is_ok() => {
            Err(unitless(text.trim()))
        }
        Some(RawDuration::Text(text)) => {
            parse_duration(text).ok_or_else(|| invalid(key, format!("{text:?}"), DURATION_FORMS))
        }
    }
}

/// A duration the way the config file takes it.
pub fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(text: &str) -> Result<Config, ConfigError> {
        Config::from_raw(&RawConfig::from_toml(text).unwrap())
    }

    #[test]
    fn defaults_match_etsy() {
        let c = from("").unwrap();
        assert_eq!(c.stats.flush_interval, Duration::from_secs(10));
        assert_eq!(c.stats.percent_thresholds, vec![90.0]);
        assert!(c.naming.legacy_namespace);
        assert_eq!(c.naming.prefix_stats, "statsd");
        assert_eq!(c.listen.udp, vec!["0.0.0.0:8125".parse().unwrap()]);
        assert!(!c.stats.delete_counters);
        assert!(c.whisper.enabled);
    }

    #[test]
    fn delete_idle_stats_sets_defaults_only() {
        let c = from("[flush]\ndelete_idle_stats = true\ndelete_gauges = false").unwrap();
        assert!(c.stats.delete_counters && c.stats.delete_timers && c.stats.delete_sets);
        assert!(!c.stats.delete_gauges);
    }

    #[test]
    fn errors_name_key_value_and_expectation() {
        let e = from("[flush]\ninterval = \"soon\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("flush.interval") && e.contains("soon") && e.contains("500ms"),
            "{e}"
        );
        let e = from("[listen]\nudp = [\"nowhere\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen.udp") && e.contains("nowhere"), "{e}");
        let e = from("[flush]\npercent_thresholds = [150]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("percent_thresholds") && e.contains("150"), "{e}");
        let e = from("[listen]\nudp_receivers = 0").unwrap_err().to_string();
        assert!(
            e.contains("udp_receivers") && e.contains("from 1 to 64"),
            "{e}"
        );
        let e = from("[carbon]\ndestinations = [\"carbon\"]")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("carbon.destinations") && e.contains("host:port[:instance]"),
            "{e}"
        );
        let e = from("[flush]\nhistogram = [{metric = \"a\", bins = [5, 1]}]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ascending"), "{e}");
        assert!(RawConfig::from_toml("[flush]\nintervall = \"1s\"").is_err());
    }

    #[test]
    fn unitless_durations_are_refused_with_a_hint() {
        for text in ["[flush]\ninterval = \"10000\"", "[flush]\ninterval = 10000"] {
            let e = from(text).unwrap_err().to_string();
            assert!(
                e.contains("flush.interval = 10000")
                    && e.contains("\"10000ms\"")
                    && e.contains("flushInterval"),
                "{e}"
            );
        }
        let e = from("[shutdown]\ntimeout = 5").unwrap_err().to_string();
        assert!(
            e.contains("shutdown.timeout") && e.contains("\"5s\""),
            "{e}"
        );
    }

    #[test]
    fn carbon_destinations() {
        let d = Destination::parse("pickle:127.0.0.1:2004:a").unwrap();
        assert_eq!(
            (d.protocol, d.host.as_str(), d.port, d.instance.as_deref()),
            (CarbonProtocol::Pickle, "127.0.0.1", 2004, Some("a"))
        );
        assert_eq!(d.label(), "127_0_0_1_2004_a");
        let d = Destination::parse("[::1]:2003").unwrap();
        assert_eq!(
            (d.protocol, d.address()),
            (CarbonProtocol::Line, "[::1]:2003".into())
        );
        for bad in [
            "carbon",
            "carbon:",
            "carbon:0",
            ":2003",
            "pickle:x:70000",
            "a:1:",
        ] {
            assert!(Destination::parse(bad).is_none(), "{bad}");
        }
        let e = from("[carbon]\nmode = \"shard\"").unwrap_err().to_string();
        assert!(e.contains("carbon.mode") && e.contains("hash"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), None, "a number needs its unit");
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("-1s"), None);
    }
}
