//! What a new configuration (SIGHUP) changes in a running agent: a pure
//! comparison of typed values ([`plan`]), then [`apply`]: statistics,
//! naming, the flush interval, sinks and the log level change live; what
//! needs new sockets is reported as needing a restart and kept as it was.

use crate::config::Config;

/// What a reload will do.
#[derive(Debug)]
pub(crate) struct ReloadPlan {
    /// The configuration to run with: the new one, less what cannot change
    /// without a restart (kept as running, so the next reload compares
    /// with reality).
    pub config: Config,
    /// Keys that changed but take effect only after a restart.
    pub needs_restart: Vec<&'static str>,
    /// The sinks must be rebuilt.
    pub sinks_changed: bool,
    /// The log level changed.
    pub log_level_changed: bool,
    /// Changes an operator should hear about at warn level (a sink turned
    /// off, the store moved).
    pub warnings: Vec<String>,
}

/// Compares `running` with `new`.
pub(crate) fn plan(running: &Config, mut new: Config) -> ReloadPlan {
    let mut needs_restart = Vec::new();
    let (was, now) = (&running.listen, &new.listen);
    let restart_keys: [(&'static str, bool); 11] = [
        (
            "listen.unix_datagram / unix_stream / unix_mode / unix_owner / unix_group",
            was.unix_datagram != now.unix_datagram
                || was.unix_stream != now.unix_stream
                || was.unix_access() != now.unix_access(),
        ),
        ("listen.carbon_line", was.carbon_line != now.carbon_line),
        (
            "listen.carbon_pickle",
            was.carbon_pickle != now.carbon_pickle,
        ),
        (
            "listen.carbon_max_line_length / carbon_pickle_max_frame",
            was.carbon_max_line_length != now.carbon_max_line_length
                || was.carbon_pickle_max_frame != now.carbon_pickle_max_frame,
        ),
        ("listen.udp", was.udp != now.udp),
        ("listen.tcp", was.tcp != now.tcp),
        (
            "listen.udp_receivers",
            was.udp_receivers != now.udp_receivers,
        ),
        (
            "listen.udp_receive_buffer",
            was.udp_receive_buffer != now.udp_receive_buffer,
        ),
        (
            "listen.tcp_max_line_length",
            was.tcp_max_line_length != now.tcp_max_line_length,
        ),
        (
            "listen.tcp_max_connections / tcp_idle_timeout",
            was.tcp_max_connections != now.tcp_max_connections
                || was.tcp_idle_timeout != now.tcp_idle_timeout,
        ),
        ("listen.shards", was.shards != now.shards),
    ];
    needs_restart.extend(
        restart_keys
            .iter()
            .filter(|(_, changed)| *changed)
            .map(|(k, _)| *k),
    );
    if running.admin != new.admin {
        needs_restart.push("admin.address");
    }
    if running.http != new.http {
        needs_restart.push("http");
    }
    if running.stats.tag_style != new.stats.tag_style {
        needs_restart.push("flush.tag_style");
        new.stats.tag_style = running.stats.tag_style;
    }
    if running.stats.key_name_sanitize != new.stats.key_name_sanitize {
        needs_restart.push("flush.key_name_sanitize");
        new.stats.key_name_sanitize = running.stats.key_name_sanitize;
    }
    new.listen = running.listen.clone();
    new.admin = running.admin;
    new.http = running.http.clone();

    let mut warnings = Vec::new();
    let (w0, w1) = (&running.whisper, &new.whisper);
    if w0.enabled && !w1.enabled {
        warnings.push(format!(
            "the whisper store at {} is turned off",
            w0.dir.display()
        ));
    } else if w0.enabled && w1.enabled && w0.dir != w1.dir {
        warnings.push(format!(
            "the whisper store moves from {} to {}",
            w0.dir.display(),
            w1.dir.display()
        ));
    } else if !w0.enabled && w1.enabled {
        warnings.push(format!(
            "the whisper store is turned on at {}",
            w1.dir.display()
        ));
    }
    if !running.carbon.destinations.is_empty() && new.carbon.destinations.is_empty() {
        warnings.push("carbon forwarding is turned off".into());
    }
    let sinks_changed = running.whisper != new.whisper
        || running.carbon != new.carbon
        || running.console != new.console
        || running.shutdown_timeout != new.shutdown_timeout;
    ReloadPlan {
        log_level_changed: running.log_level != new.log_level,
        config: new,
        needs_restart,
        sinks_changed,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    fn config(toml: &str) -> Config {
        Config::from_raw(&RawConfig::from_toml(toml).unwrap()).unwrap()
    }

    #[test]
    fn socket_settings_need_a_restart_and_stay() {
        let running = config("[listen]\nudp = [\"127.0.0.1:8125\"]");
        let p = plan(
            &running,
            config("[listen]\nudp = [\"127.0.0.1:9125\"]\nshards = 8\n[flush]\ninterval = \"5s\""),
        );
        assert_eq!(p.needs_restart, vec!["listen.udp", "listen.shards"]);
        assert_eq!(p.config.listen, running.listen);
        assert_eq!(
            p.config.stats.flush_interval,
            std::time::Duration::from_secs(5)
        );
        assert!(!p.sinks_changed && !p.log_level_changed);
    }

    #[test]
    fn unchanged_config_changes_nothing() {
        let running = config("[carbon]\ndestinations = [\"127.0.0.1:2003\"]");
        let p = plan(&running, running.clone());
        assert!(p.needs_restart.is_empty() && !p.sinks_changed && p.warnings.is_empty());
        assert_eq!(p.config, running);
    }

    #[test]
    fn turning_a_sink_off_or_moving_the_store_warns() {
        let running =
            config("[carbon]\ndestinations = [\"127.0.0.1:2003\"]\n[whisper]\ndir = \"/a\"");
        let p = plan(&running, config("[whisper]\ndir = \"/b\""));
        assert!(p.sinks_changed);
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        assert!(p.warnings[0].contains("/a") && p.warnings[0].contains("/b"));
        assert!(p.warnings[1].contains("carbon"));
    }
}
