//! The low side of the configuration: what the operator wrote in the TOML
//! file (and the flags laid over it), every value optional and unchecked.
//! Field names are the file's own keys; config/sluice.toml documents
//! every one of them, with its default, so they carry no doc comments of
//! their own here.
#![allow(missing_docs)]

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub listen: RawListen,
    #[serde(default)]
    pub flush: RawFlush,
    #[serde(default)]
    pub graphite: RawGraphite,
    #[serde(default)]
    pub carbon: RawCarbon,
    #[serde(default)]
    pub whisper: RawWhisper,
    #[serde(default)]
    pub console: RawConsole,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub shutdown: RawShutdown,
    #[serde(default)]
    pub log: RawLog,
    /// `sluice proxy`'s settings (read by `proxy::ProxyConfig`; the agent
    /// only lets the table through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<toml::Table>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    pub udp: Option<Vec<String>>,
    pub tcp: Option<Vec<String>>,
    pub udp_receivers: Option<i64>,
    pub udp_receive_buffer: Option<i64>,
    pub tcp_max_line_length: Option<i64>,
    pub tcp_max_connections: Option<i64>,
    pub tcp_idle_timeout: Option<RawDuration>,
    pub shards: Option<i64>,
    pub carbon_line: Option<Vec<String>>,
    pub carbon_pickle: Option<Vec<String>>,
    pub carbon_max_line_length: Option<i64>,
    pub carbon_pickle_max_frame: Option<i64>,
    pub carbon_cache_points: Option<i64>,
    pub unix_datagram: Option<Vec<String>>,
    pub unix_stream: Option<Vec<String>>,
    pub unix_mode: Option<String>,
    pub unix_owner: Option<String>,
    pub unix_group: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawFlush {
    pub interval: Option<RawDuration>,
    pub percent_thresholds: Option<Vec<f64>>,
    pub histogram: Option<Vec<RawHistogram>>,
    pub calculated_timer_metrics: Option<Vec<String>>,
    pub delete_idle_stats: Option<bool>,
    pub delete_counters: Option<bool>,
    pub delete_timers: Option<bool>,
    pub delete_sets: Option<bool>,
    pub delete_gauges: Option<bool>,
    pub gauges_max_ttl: Option<i64>,
    pub timer_exact_limit: Option<i64>,
    pub key_name_sanitize: Option<bool>,
    pub tag_style: Option<String>,
    pub max_series: Option<i64>,
    pub max_counters: Option<i64>,
    pub max_timers: Option<i64>,
    pub max_gauges: Option<i64>,
    pub max_sets: Option<i64>,
    pub max_new_series_per_interval: Option<i64>,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawHistogram {
    pub metric: String,
    pub bins: Vec<toml::Value>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawGraphite {
    pub legacy_namespace: Option<bool>,
    pub global_prefix: Option<String>,
    pub prefix_counter: Option<String>,
    pub prefix_timer: Option<String>,
    pub prefix_gauge: Option<String>,
    pub prefix_set: Option<String>,
    pub global_suffix: Option<String>,
    pub prefix_stats: Option<String>,
    pub flush_counts: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawCarbon {
    pub destinations: Option<Vec<String>>,
    pub mode: Option<String>,
    pub buffer_points: Option<i64>,
    pub buffer_bytes: Option<i64>,
    pub resend_window: Option<RawDuration>,
    pub resend_bytes: Option<i64>,
    pub connect_timeout: Option<RawDuration>,
    pub max_backoff: Option<RawDuration>,
    pub relay_received: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawWhisper {
    pub enabled: Option<bool>,
    pub dir: Option<String>,
    pub schemas: Option<String>,
    pub aggregation: Option<String>,
    pub writers: Option<i64>,
    pub queue_flushes: Option<i64>,
    pub queue_points: Option<i64>,
    pub max_open_files: Option<i64>,
    pub events_retention_days: Option<i64>,
    pub max_events: Option<i64>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub address: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub address: Option<String>,
    pub cors_origin: Option<String>,
    pub max_body_bytes: Option<i64>,
    pub max_concurrent_renders: Option<i64>,
    pub max_series: Option<i64>,
    pub max_points: Option<i64>,
    pub max_targets: Option<i64>,
    pub max_target_length: Option<i64>,
    pub max_find: Option<i64>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    pub timeout: Option<RawDuration>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
}

/// A duration as written: text such as `"10s"`, or a bare number, which
/// is kept only to be refused with a hint (a number has no unit, and
/// Etsy's flushInterval is milliseconds).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawDuration {
    /// `"500ms"`, `"10s"`, `"2m"`, `"1h"` (or a number in a string).
    Text(String),
    /// A TOML number.
    Number(f64),
}

impl From<&str> for RawDuration {
    fn from(text: &str) -> RawDuration {
        RawDuration::Text(text.to_string())
    }
}

impl RawConfig {
    /// Reads and parses a TOML file; an empty one is refused.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let syntax = |message: String| ConfigError::Syntax {
            path: path.to_owned(),
            message,
        };
        // An empty (or comment-only) file would mean "every default": never
        // what a reload of a truncated file wants.
        let table: toml::Table = toml::from_str(&text).map_err(|e| syntax(e.to_string()))?;
        if table.is_empty() {
            return Err(syntax(
                "the file sets nothing (an empty file is refused; write at least one setting, \
                 such as [flush] interval = \"10s\")"
                    .into(),
            ));
        }
        Self::from_toml(&text).map_err(syntax)
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<RawConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}
