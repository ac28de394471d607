//! `sluice whisper info|fetch|create`: the whisper-info, whisper-fetch and
//! whisper-create tools, with output shaped like theirs so scripts can
//! switch.

use std::fmt::Write;
use std::path::Path;

use super::format::{python_float_repr, Aggregation, WhisperError, WhisperFile};
use super::schema::parse_retentions;

/// whisper-info's text (or `--json`).
pub fn info(path: &Path, json: bool) -> Result<String, WhisperError> {
    let file = WhisperFile::open_read(path)?;
    let h = &file.header;
    let size = file.file_size()?;
    let xff = f64::from(h.x_files_factor);
    if json {
        let archives: Vec<_> = h
            .archives
            .iter()
            .map(|a| {
                serde_json::json!({
                    "offset": a.offset, "secondsPerPoint": a.seconds_per_point,
                    "points": a.points, "retention": a.retention(), "size": u64::from(a.points) * 12,
                })
            })
            .collect();
        let v = serde_json::json!({
            "aggregationMethod": h.aggregation.name(), "maxRetention": h.max_retention,
            "xFilesFactor": xff, "fileSize": size, "archives": archives,
        });
        return Ok(format!("{v:#}\n"));
    }
    let mut out = String::new();
    let _ = writeln!(out, "aggregationMethod: {}", h.aggregation.name());
    let _ = writeln!(out, "maxRetention: {}", h.max_retention);
    let _ = writeln!(out, "xFilesFactor: {}", python_float_repr(xff));
    let _ = writeln!(out, "fileSize: {size}");
    out.push('\n');
    for (i, a) in h.archives.iter().enumerate() {
        let _ = writeln!(out, "Archive {i}");
        let _ = writeln!(out, "offset: {}", a.offset);
        let _ = writeln!(out, "secondsPerPoint: {}", a.seconds_per_point);
        let _ = writeln!(out, "points: {}", a.points);
        let _ = writeln!(out, "retention: {}", a.retention());
        let _ = writeln!(out, "size: {}", u64::from(a.points) * 12);
        out.push('\n');
    }
    Ok(out)
}

/// whisper-fetch's `ts<TAB>value` lines (`%f` or `None`), or `--json`.
pub fn fetch(
    path: &Path,
    from: Option<i64>,
    until: Option<i64>,
    now: i64,
    json: bool,
) -> Result<String, WhisperError> {
    let mut file = WhisperFile::open_read(path)?;
    let from = from.unwrap_or(now - 86400);
    let Some(data) = file.fetch(from, until, now)? else {
        return Ok(String::new());
    };
    if json {
        let v = serde_json::json!({
            "start": data.from, "end": data.until, "step": data.step, "values": data.values,
        });
        return Ok(format!("{v}\n"));
    }
    let mut out = String::new();
    let mut t = data.from;
    for value in &data.values {
        match value {
            None => {
                let _ = writeln!(out, "{t}\tNone");
            }
            Some(v) if v.is_nan() => {
                let _ = writeln!(out, "{t}\tnan");
            }
            Some(v) => {
                let _ = writeln!(out, "{t}\t{v:.6}");
            }
        }
        t += data.step;
    }
    Ok(out)
}

/// whisper-create: `retentions` are `precision:retention` items, each arg
/// possibly a comma-separated list.
pub fn create(
    path: &Path,
    retentions: &[String],
    x_files_factor: f64,
    method: &str,
) -> Result<String, String> {
    let method = Aggregation::from_name(method).ok_or_else(|| {
        format!(
            "aggregation method {method:?}: one of {} is accepted",
            Aggregation::NAMES
        )
    })?;
    let joined = retentions.join(",");
    let archives = parse_retentions(&joined)?;
    let file =
        WhisperFile::create(path, &archives, x_files_factor, method).map_err(|e| e.to_string())?;
    let size = file.file_size().map_err(|e| e.to_string())?;
    Ok(format!("Created: {} ({size} bytes)\n", path.display()))
}
