//! What a run needs beyond valid values: the schema files readable and
//! parseable, the store's directory writable. `check-config` and a run
//! refuse the same things, naming the key.

use std::path::Path;

use super::{invalid, Config, ConfigError};
use crate::store::schema::Schemas;

/// Checks the files and directories `config` names, without creating any.
pub fn check_resources(config: &Config) -> Result<(), ConfigError> {
    let w = &config.whisper;
    if !w.enabled {
        return Ok(());
    }
    if let Err(e) = Schemas::load(w.schemas.as_deref(), None) {
        return Err(invalid(
            "whisper.schemas",
            path_text(w.schemas.as_deref()),
            e.to_string(),
        ));
    }
    if let Err(e) = Schemas::load(None, w.aggregation.as_deref()) {
        return Err(invalid(
            "whisper.aggregation",
            path_text(w.aggregation.as_deref()),
            e.to_string(),
        ));
    }
    writable_dir(&w.dir).map_err(|why| {
        invalid(
            "whisper.dir",
            format!("{:?}", w.dir.display().to_string()),
            format!("a writable directory (or one that can be created): {why}"),
        )
    })
}

fn path_text(path: Option<&Path>) -> String {
    path.map(|p| format!("{:?}", p.display().to_string()))
        .unwrap_or_else(|| "(built in)".into())
}

/// `dir` is a directory we may write in, or can be created in an existing
/// ancestor we may write in.
fn writable_dir(dir: &Path) -> Result<(), String> {
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => return Err(format!("{} is not a directory", at.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match at.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => at = parent,
                _ => {
                    at = Path::new(".");
                    break;
                }
            },
            Err(e) => return Err(format!("{}: {e}", at.display())),
        }
    }
    // An unnamed temporary file: proves write access, leaves nothing.
    tempfile::tempfile_in(at)
        .map(drop)
        .map_err(|e| format!("cannot write in {}: {e}", at.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    fn config(text: &str) -> Config {
        Config::from_raw(&RawConfig::from_toml(text).unwrap()).unwrap()
    }

    #[test]
    fn missing_schema_files_and_unwritable_dirs_are_refused_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let e = check_resources(&config(
            "[whisper]\nschemas = \"/nonexistent/schemas.conf\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("whisper.schemas") && e.contains("/nonexistent"),
            "{e}"
        );
        let e = check_resources(&config(
            "[whisper]\naggregation = \"/nonexistent/agg.conf\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("whisper.aggregation"), "{e}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let e = check_resources(&config(&format!("[whisper]\ndir = {:?}", file.join("sub"))))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("whisper.dir") && e.contains("ot a directory"),
            "{e}"
        );
        let fresh = dir.path().join("a/b/c");
        check_resources(&config(&format!("[whisper]\ndir = {fresh:?}"))).unwrap();
        assert!(!fresh.exists(), "the check created the directory");
        check_resources(&config("[whisper]\nenabled = false\nschemas = \"/nope\"")).unwrap();
    }
}
