//! The effective configuration, printed with the TOML file's own sections
//! and keys (so `check-config` output can be pasted back as a config file)
//! for `check-config` and the admin `config` command.

use super::{
    duration_text, CarbonMode, Config, RawAdmin, RawCarbon, RawConfig, RawConsole, RawDuration,
    RawFlush, RawGraphite, RawHistogram, RawHttp, RawListen, RawLog, RawShutdown, RawWhisper,
};

fn text(d: std::time::Duration) -> Option<RawDuration> {
    Some(RawDuration::Text(duration_text(d)))
}

fn int(n: usize) -> Option<i64> {
    Some(i64::try_from(n).unwrap_or(i64::MAX))
}

impl Config {
    /// Every setting as the file would write it; [`Config::from_raw`] of
    /// the result gives this configuration back.
    pub fn to_raw(&self) -> RawConfig {
        let (l, s, n, c, w) = (
            &self.listen,
            &self.stats,
            &self.naming,
            &self.carbon,
            &self.whisper,
        );
        RawConfig {
            listen: RawListen {
                udp: Some(l.udp.iter().map(|a| a.to_string()).collect()),
                tcp: Some(l.tcp.iter().map(|a| a.to_string()).collect()),
                udp_receivers: int(l.udp_receivers),
                udp_receive_buffer: int(l.udp_receive_buffer),
                tcp_max_line_length: int(l.tcp_max_line_length),
                tcp_max_connections: int(l.tcp_max_connections),
                tcp_idle_timeout: text(l.tcp_idle_timeout),
                shards: int(l.shards),
                carbon_line: Some(l.carbon_line.iter().map(|a| a.to_string()).collect()),
                carbon_pickle: Some(l.carbon_pickle.iter().map(|a| a.to_string()).collect()),
                carbon_max_line_length: int(l.carbon_max_line_length),
                carbon_pickle_max_frame: int(l.carbon_pickle_max_frame),
                unix_datagram: Some(
                    l.unix_datagram
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect(),
                ),
                unix_stream: Some(
                    l.unix_stream
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect(),
                ),
                unix_mode: Some(format!("{:04o}", l.unix_mode)),
                unix_owner: l.unix_owner.map(|id| id.to_string()),
                unix_group: l.unix_group.map(|id| id.to_string()),
                carbon_cache_points: int(l.carbon_cache_points),
            },
            flush: RawFlush {
                interval: text(s.flush_interval),
                percent_thresholds: Some(s.percent_thresholds.clone()),
                histogram: Some(
                    s.histograms
                        .iter()
                        .map(|h| RawHistogram {
                            metric: h.metric.clone(),
                            bins: h
                                .bins
                                .iter()
                                .map(|b| {
                                    if b.is_infinite() {
                                        toml::Value::String("inf".into())
                                    } else {
                                        toml::Value::Float(*b)
                                    }
                                })
                                .collect(),
                        })
                        .collect(),
                ),
                calculated_timer_metrics: Some(s.calculated_timer_metrics.clone()),
                delete_idle_stats: None,
                delete_counters: Some(s.delete_counters),
                delete_timers: Some(s.delete_timers),
                delete_sets: Some(s.delete_sets),
                delete_gauges: Some(s.delete_gauges),
                gauges_max_ttl: Some(i64::from(s.gauges_max_ttl)),
                timer_exact_limit: int(s.timer_exact_limit),
                key_name_sanitize: Some(s.key_name_sanitize),
                max_series: int(s.max_series),
                max_counters: int(s.max_series_per_kind[0]),
                max_timers: int(s.max_series_per_kind[1]),
                max_gauges: int(s.max_series_per_kind[2]),
                max_sets: int(s.max_series_per_kind[3]),
                max_new_series_per_interval: int(s.max_new_series_per_interval),
                tag_style: Some(
                    match s.tag_style {
                        crate::protocol::statsd::TagStyle::Graphite => "graphite",
                        crate::protocol::statsd::TagStyle::Etsy => "etsy",
                    }
                    .to_string(),
                ),
            },
            graphite: RawGraphite {
                legacy_namespace: Some(n.legacy_namespace),
                global_prefix: Some(n.global_prefix.clone()),
                prefix_counter: Some(n.prefix_counter.clone()),
                prefix_timer: Some(n.prefix_timer.clone()),
                prefix_gauge: Some(n.prefix_gauge.clone()),
                prefix_set: Some(n.prefix_set.clone()),
                global_suffix: Some(n.global_suffix.clone()),
                prefix_stats: Some(n.prefix_stats.clone()),
                flush_counts: Some(n.flush_counts),
            },
            carbon: RawCarbon {
                destinations: Some(c.destinations.iter().map(|d| d.to_text()).collect()),
                mode: Some(
                    match c.mode {
                        CarbonMode::Replicate => "replicate",
                        CarbonMode::Hash => "hash",
                    }
                    .into(),
                ),
                buffer_points: int(c.buffer_points),
                buffer_bytes: int(c.buffer_bytes),
                resend_window: text(c.resend_window),
                resend_bytes: int(c.resend_bytes),
                connect_timeout: text(c.connect_timeout),
                max_backoff: text(c.max_backoff),
                relay_received: Some(c.relay_received),
            },
            whisper: RawWhisper {
                enabled: Some(w.enabled),
                dir: Some(w.dir.display().to_string()),
                schemas: w.schemas.as_ref().map(|p| p.display().to_string()),
                aggregation: w.aggregation.as_ref().map(|p| p.display().to_string()),
                writers: int(w.writers),
                queue_flushes: int(w.queue_flushes),
                queue_points: int(w.queue_points),
                max_open_files: w.max_open_files.and_then(int),
                events_retention_days: int(w.events_retention_days),
                max_events: int(w.max_events),
            },
            console: RawConsole {
                enabled: Some(self.console),
            },
            admin: RawAdmin {
                address: Some(self.admin.map(|a| a.to_string()).unwrap_or_default()),
            },
            http: RawHttp {
                address: Some(self.http.address.map(|a| a.to_string()).unwrap_or_default()),
                cors_origin: self.http.cors_origin.clone(),
                max_body_bytes: int(self.http.max_body_bytes),
                max_concurrent_renders: int(self.http.max_concurrent_renders),
                max_series: int(self.http.max_series),
                max_points: int(self.http.max_points),
                max_targets: int(self.http.max_targets),
                max_target_length: int(self.http.max_target_length),
                max_find: int(self.http.max_find),
            },
            shutdown: RawShutdown {
                timeout: text(self.shutdown_timeout),
            },
            log: RawLog {
                level: Some(self.log_level.clone()),
            },
            proxy: None,
        }
    }
}

/// The configuration as a TOML file.
pub fn toml_text(config: &Config) -> String {
    toml::to_string_pretty(&config.to_raw()).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
}

/// The admin `config` lines: `section > key: value`, one per setting, with
/// the file's own names.
pub fn admin_lines(config: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    let Ok(toml::Value::Table(table)) = toml::Value::try_from(config.to_raw()) else {
        return lines;
    };
    for (section, value) in table {
        match value {
            toml::Value::Table(inner) => {
                for (key, v) in inner {
                    lines.push(format!("{section} > {key}: {v}"));
                }
            }
            other => lines.push(format!("{section}: {other}")),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_raw(&RawConfig::from_toml(text).unwrap()).unwrap()
    }

    #[test]
    fn printed_config_reads_back_as_the_same_config() {
        for text in [
            "[log]\nlevel = \"info\"",
            "[flush]\ninterval = \"1500ms\"\npercent_thresholds = [90, -10]\nhistogram = [{ metric = \"lat\", bins = [1, 2.5, \"inf\"] }]\ncalculated_timer_metrics = [\"count\"]\ndelete_idle_stats = true\n\
             [graphite]\nlegacy_namespace = false\nglobal_suffix = \"x\"\n\
             [carbon]\ndestinations = [\"pickle:127.0.0.1:2004:a\", \"[::1]:2003\"]\nmode = \"hash\"\n\
             [whisper]\nenabled = false\nmax_open_files = 100\n[admin]\naddress = \"\"\n[http]\naddress = \"127.0.0.1:8080\"",
        ] {
            let c = config(text);
            let printed = toml_text(&c);
            let back = Config::from_raw(&RawConfig::from_toml(&printed).unwrap()).unwrap();
            assert_eq!(back, c, "{printed}");
        }
    }

    #[test]
    fn every_section_is_printed_with_its_file_name() {
        let printed = toml_text(&config("[log]\nlevel = \"info\""));
        for section in [
            "listen", "flush", "graphite", "carbon", "whisper", "console", "admin", "http",
            "shutdown", "log",
        ] {
            assert!(
                printed.contains(&format!("[{section}]")),
                "[{section}] missing:\n{printed}"
            );
        }
        let lines = admin_lines(&config("[log]\nlevel = \"info\""));
        assert!(
            lines.contains(&"flush > interval: \"10s\"".to_string()),
            "{lines:?}"
        );
    }
}
