//! Metric names to file paths, as carbon-cache lays them out: dots become
//! directories, tagged names go under `_tagged/` by their sha256. Anything
//! that could leave the store's root is refused.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

/// Why a metric name cannot become a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadName {
    #[error("empty name")]
    /// Nothing left after dots and tildes.
    Empty,
    #[error("control character or NUL in name")]
    /// A control character or NUL.
    Control,
    #[error("'/' or '\\' in name")]
    /// A path separator.
    Slash,
    #[error("a name component is longer than 255 bytes")]
    /// A component too long for a file name.
    TooLong,
}

/// carbon's file for a metric, relative to the root: dots become
/// directories (`a.b.c` -> `a/b/c.wsp`), empty components vanish, a leading
/// `~` is dropped, and tagged names (`name;k=v`) go to
/// `_tagged/abc/def/<sha256>.wsp` as carbon stores them. Anything that
/// could leave the root or is unsafe in a path is refused.
pub fn metric_path(name: &str) -> Result<PathBuf, BadName> {
    if name.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(BadName::Control);
    }
    if name.contains(';') {
        let normalized = normalize_tagged(name).unwrap_or_else(|| name.to_string());
        let hash = Sha256::digest(normalized.as_bytes());
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        return Ok(PathBuf::from("_tagged")
            .join(&hex[0..3])
            .join(&hex[3..6])
            .join(format!("{hex}.wsp")));
    }
    if name.contains(['/', '\\']) {
        return Err(BadName::Slash);
    }
    let name = name.trim_start_matches('~');
    let mut path = PathBuf::new();
    let mut components = name.split('.').filter(|c| !c.is_empty()).peekable();
    if components.peek().is_none() {
        return Err(BadName::Empty);
    }
    while let Some(c) = components.next() {
        // ".wsp" adds 4 bytes to the last component.
        let limit = if components.peek().is_none() {
            251
        } else {
            255
        };
        if c.len() > limit {
            return Err(BadName::TooLong);
        }
        if components.peek().is_none() {
            path.push(format!("{c}.wsp"));
        } else {
            path.push(c);
        }
    }
    Ok(path)
}

/// carbon's TaggedSeries normal form: `name;a=1;b=2` with tags sorted as
/// whole `;k=v` strings, the last of a repeated tag kept, `name=` dropped.
/// `None` when carbon would fail to parse it (then the raw name is hashed).
fn normalize_tagged(raw: &str) -> Option<String> {
    let mut parts = raw.split(';');
    let metric = parts.next().filter(|m| !m.is_empty())?;
    let mut tags: Vec<(&str, &str)> = Vec::new();
    for tag in parts {
        let (key, value) = tag.split_once('=')?;
        if key.is_empty()
            || key.contains(['!', '^', '='])
            || value.is_empty()
            || value.starts_with('~')
        {
            return None;
        }
        tags.retain(|(k, _)| *k != key);
        tags.push((key, value));
    }
    let mut rendered: Vec<String> = tags
        .iter()
        .filter(|(k, _)| *k != "name")
        .map(|(k, v)| format!(";{k}={v}"))
        .collect();
    rendered.sort();
    Some(format!("{metric}{}", rendered.concat()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_like_carbon() {
        assert_eq!(metric_path("a.b.c").unwrap(), PathBuf::from("a/b/c.wsp"));
        assert_eq!(metric_path("a..b").unwrap(), PathBuf::from("a/b.wsp"));
        assert_eq!(metric_path(".lead").unwrap(), PathBuf::from("lead.wsp"));
        assert_eq!(
            metric_path("~edge.tilde").unwrap(),
            PathBuf::from("edge/tilde.wsp")
        );
        assert_eq!(
            metric_path("disk.used;host=a;dc=x").unwrap(),
            PathBuf::from("_tagged/f91/0bf/f910bf03defc89594eec6f4dbea9d0c93aa254890df840f081ea8a760d78ece7.wsp")
        );
    }

    #[test]
    fn hostile_names_never_leave_the_root() {
        for hostile in [
            "../../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "..",
            "...",
            "",
            "a\0b",
            "a\nb",
            "a\\b",
            "~",
            &"x".repeat(300),
        ] {
            if let Ok(p) = metric_path(hostile) {
                assert!(p.is_relative(), "{hostile:?} -> {p:?}");
                assert!(
                    p.components()
                        .all(|c| matches!(c, std::path::Component::Normal(_))),
                    "{hostile:?} -> {p:?}"
                );
            }
        }
        assert_eq!(metric_path("../../etc/passwd"), Err(BadName::Slash));
        assert_eq!(metric_path(".."), Err(BadName::Empty));
        assert_eq!(metric_path("a\0b"), Err(BadName::Control));
        assert_eq!(metric_path(&"x".repeat(300)), Err(BadName::TooLong));
    }

    #[test]
    fn tag_normalisation() {
        assert_eq!(
            normalize_tagged("disk.used;host=a;dc=x").unwrap(),
            "disk.used;dc=x;host=a"
        );
        assert_eq!(normalize_tagged("m;a=1;a=2").unwrap(), "m;a=2");
        assert_eq!(normalize_tagged("m;name=z;b=1").unwrap(), "m;b=1");
        assert_eq!(normalize_tagged("m;bad"), None);
        assert_eq!(normalize_tagged(";a=1"), None);
    }
}
