//! Flags over the file: the command line's settings laid over what the
//! TOML file says (a flag wins), with relative schema paths in the file
//! taken relative to the file's directory, as carbon's files sit beside it.

use std::path::{Path, PathBuf};

use super::{ConfigError, RawConfig, RawDuration};

/// The settings the command line can override.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The TOML file; without it, every default.
    pub config: Option<PathBuf>,
    /// `--udp` (repeatable): replaces listen.udp.
    pub udp: Vec<String>,
    /// `--tcp` (repeatable): replaces listen.tcp.
    pub tcp: Vec<String>,
    /// `--admin`: admin.address ("" turns it off).
    pub admin: Option<String>,
    /// `--http`: http.address ("" turns it off).
    pub http: Option<String>,
    /// `--line-receiver` (repeatable): replaces listen.carbon_line.
    pub line_receiver: Vec<String>,
    /// `--pickle-receiver` (repeatable): replaces listen.carbon_pickle.
    pub pickle_receiver: Vec<String>,
    /// `--unix-datagram` (repeatable): replaces listen.unix_datagram.
    pub unix_datagram: Vec<String>,
    /// `--unix-stream` (repeatable): replaces listen.unix_stream.
    pub unix_stream: Vec<String>,
    /// `--max-series`: flush.max_series.
    pub max_series: Option<i64>,
    /// `--carbon` (repeatable): replaces carbon.destinations.
    pub carbon: Vec<String>,
    /// `--flush-interval`: flush.interval.
    pub flush_interval: Option<String>,
    /// `--whisper-dir`: whisper.dir, and turns the store on.
    pub whisper_dir: Option<String>,
    /// `--no-whisper`: turns the store off.
    pub no_whisper: bool,
    /// `--console`: console.enabled.
    pub console: bool,
    /// `--log-level`: log.level.
    pub log_level: Option<String>,
}

impl Overrides {
    /// Reads the file (if any) and lays the flags over it.
    pub fn load(&self) -> Result<RawConfig, ConfigError> {
        let mut raw = match &self.config {
            Some(path) => {
                let mut raw = RawConfig::from_file(path)?;
                resolve_beside(&mut raw, path.parent().unwrap_or(Path::new("")));
                raw
            }
            None => RawConfig::default(),
        };
        self.apply(&mut raw);
        Ok(raw)
    }

    /// Lays the flags over `raw`.
    pub fn apply(&self, raw: &mut RawConfig) {
        if !self.udp.is_empty() {
            raw.listen.udp = Some(self.udp.clone());
        }
        if !self.tcp.is_empty() {
            raw.listen.tcp = Some(self.tcp.clone());
        }
        if let Some(admin) = &self.admin {
            raw.admin.address = Some(admin.clone());
        }
        if let Some(http) = &self.http {
            raw.http.address = Some(http.clone());
        }
        if !self.line_receiver.is_empty() {
            raw.listen.carbon_line = Some(self.line_receiver.clone());
        }
        if !self.pickle_receiver.is_empty() {
            raw.listen.carbon_pickle = Some(self.pickle_receiver.clone());
        }
        if !self.unix_datagram.is_empty() {
            raw.listen.unix_datagram = Some(self.unix_datagram.clone());
        }
        if !self.unix_stream.is_empty() {
            raw.listen.unix_stream = Some(self.unix_stream.clone());
        }
        if let Some(n) = self.max_series {
            raw.flush.max_series = Some(n);
        }
        if !self.carbon.is_empty() {
            raw.carbon.destinations = Some(self.carbon.clone());
        }
        if let Some(interval) = &self.flush_interval {
            raw.flush.interval = Some(RawDuration::Text(interval.clone()));
        }
        if let Some(dir) = &self.whisper_dir {
            raw.whisper.dir = Some(dir.clone());
            raw.whisper.enabled = Some(true);
        }
        if self.no_whisper {
            raw.whisper.enabled = Some(false);
        }
        if self.console {
            raw.console.enabled = Some(true);
        }
        if let Some(level) = &self.log_level {
            raw.log.level = Some(level.clone());
        }
    }
}

/// Relative schema paths in a file are relative to the file's directory.
fn resolve_beside(raw: &mut RawConfig, dir: &Path) {
    for file in [&mut raw.whisper.schemas, &mut raw.whisper.aggregation]
        .into_iter()
        .flatten()
    {
        if Path::new(file.as_str()).is_relative() {
            *file = dir.join(file.as_str()).to_string_lossy().into_owned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn file(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("sluice.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(
            dir.path(),
            "[listen]\nudp = [\"127.0.0.1:1\"]\n[flush]\ninterval = \"10s\"\n[whisper]\nenabled = true\n[log]\nlevel = \"warn\"",
        );
        let overrides = Overrides {
            config: Some(path),
            udp: vec!["127.0.0.1:2".into()],
            flush_interval: Some("1s".into()),
            no_whisper: true,
            console: true,
            ..Overrides::default()
        };
        let c = Config::from_raw(&overrides.load().unwrap()).unwrap();
        assert_eq!(c.listen.udp, vec!["127.0.0.1:2".parse().unwrap()]);
        assert_eq!(c.stats.flush_interval, std::time::Duration::from_secs(1));
        assert!(!c.whisper.enabled && c.console);
        assert_eq!(c.log_level, "warn", "a setting without a flag stays");
    }

    #[test]
    fn whisper_dir_flag_turns_the_store_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), "[whisper]\nenabled = false");
        let overrides = Overrides {
            config: Some(path),
            whisper_dir: Some("/tmp/store".into()),
            ..Overrides::default()
        };
        let c = Config::from_raw(&overrides.load().unwrap()).unwrap();
        assert!(c.whisper.enabled);
        assert_eq!(c.whisper.dir, PathBuf::from("/tmp/store"));
    }

    #[test]
    fn schema_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(
            dir.path(),
            "[whisper]\nschemas = \"storage-schemas.conf\"\naggregation = \"/abs/agg.conf\"",
        );
        let raw = Overrides {
            config: Some(path),
            ..Overrides::default()
        }
        .load()
        .unwrap();
        assert_eq!(
            raw.whisper.schemas.as_deref(),
            Some(dir.path().join("storage-schemas.conf").to_str().unwrap())
        );
        assert_eq!(raw.whisper.aggregation.as_deref(), Some("/abs/agg.conf"));
    }

    #[test]
    fn an_empty_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), "# nothing\n\n");
        let e = Overrides {
            config: Some(path),
            ..Overrides::default()
        }
        .load()
        .unwrap_err()
        .to_string();
        assert!(e.contains("empty"), "{e}");
    }
}
