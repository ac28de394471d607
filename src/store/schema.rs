//! carbon's storage-schemas.conf and storage-aggregation.conf, read with
//! carbon's semantics: INI sections tried in file order, the first whose
//! `pattern` (an unanchored regular expression) matches wins; retentions in
//! carbon's grammar (`10s:6h,1m:7d` or `60:1440`); carbon's defaults when
//! nothing matches (60 s x 10080 points; average with xFilesFactor 0.5).
//!
//! Unlike carbon, which logs and skips a section it cannot use, any bad
//! section is an error naming the file, the section and the value, so a
//! typo cannot silently change retention.

use std::path::Path;

use regex::Regex;

use super::format::{validate_archives, Aggregation};

/// Built-in copies of the shipped config/ files, used when the config names
/// none, so a bare `sluice` writes sensible StatsD retention.
pub const DEFAULT_SCHEMAS: &str = include_str!("../../config/storage-schemas.conf");
/// The shipped storage-aggregation.conf, used when none is configured.
pub const DEFAULT_AGGREGATION: &str = include_str!("../../config/storage-aggregation.conf");

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
/// A schema file could not be used.
pub struct SchemaError {
    /// Which file.
    pub file: String,
    /// What is wrong, with the line or section.
    pub message: String,
}

#[derive(Debug, Clone)]
/// A storage-schemas.conf section.
pub struct Schema {
    /// Its name.
    pub name: String,
    pattern: Regex,
    /// (seconds per point, points), finest first.
    pub archives: Vec<(u32, u32)>,
}

#[derive(Debug, Clone)]
/// A storage-aggregation.conf section.
pub struct AggregationRule {
    /// Its name.
    pub name: String,
    pattern: Regex,
    /// xFilesFactor, if set.
    pub x_files_factor: Option<f64>,
    /// aggregationMethod, if set.
    pub method: Option<Aggregation>,
}

/// What a new file for a metric is created with.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSpec {
    /// (seconds per point, points), finest first.
    pub archives: Vec<(u32, u32)>,
    /// xFilesFactor.
    pub x_files_factor: f64,
    /// aggregationMethod.
    pub method: Aggregation,
}

#[derive(Debug, Clone)]
/// The schema files, in file order.
pub struct Schemas {
    /// storage-schemas.conf sections.
    pub schemas: Vec<Schema>,
    /// storage-aggregation.conf sections.
    pub aggregation: Vec<AggregationRule>,
}

/// carbon's fallback retention when no schema matches.
const DEFAULT_ARCHIVES: [(u32, u32); 1] = [(60, 10080)];

impl Schemas {
    /// Reads the two files; `None` means the built-in (shipped) content.
    pub fn load(
        schemas: Option<&Path>,
        aggregation: Option<&Path>,
    ) -> Result<Schemas, SchemaError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|e| SchemaError {
                file: path.display().to_string(),
                message: format!("cannot read: {e}"),
            })
        };
        let (schema_name, schema_text) = match schemas {
            Some(p) => (p.display().to_string(), read(p)?),
            None => (
                "built-in storage-schemas.conf".into(),
                DEFAULT_SCHEMAS.into(),
            ),
        };
        let (agg_name, agg_text) = match aggregation {
            Some(p) => (p.display().to_string(), read(p)?),
            None => (
                "built-in storage-aggregation.conf".into(),
                DEFAULT_AGGREGATION.into(),
            ),
        };
        Ok(Schemas {
            schemas: parse_schemas(&schema_text, &schema_name)?,
            aggregation: parse_aggregation(&agg_text, &agg_name)?,
        })
    }

    /// The archives, xFilesFactor and method for a new file of `metric`.
    pub fn spec_for(&self, metric: &str) -> FileSpec {
        let archives = self
            .schemas
            .iter()
            .find(|s| s.pattern.is_match(metric))
            .map(|s| s.archives.clone())
            .unwrap_or_else(|| DEFAULT_ARCHIVES.to_vec());
        let rule = self.aggregation.iter().find(|r| r.pattern.is_match(metric));
        FileSpec {
            archives,
            x_files_factor: rule.and_then(|r| r.x_files_factor).unwrap_or(0.5),
            method: rule.and_then(|r| r.method).unwrap_or(Aggregation::Average),
        }
    }
}

/// One INI section: its name and (lowercased key, value) pairs.
struct Section {
    name: String,
    line: usize,
    entries: Vec<(String, String)>,
}

impl Section {
    /// An error about this section of `file`.
    fn error(&self, file: &str, message: String) -> SchemaError {
        SchemaError {
            file: file.into(),
            message: format!("section [{}]: {message}", self.name),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A ConfigParser-shaped reader: `[section]`, `key = value` or
/// `key: value`, full-line comments with `#` or `;`, keys
/// case-insensitive, inline `#` kept as part of the value.
fn parse_ini(text: &str, file: &str) -> Result<Vec<Section>, SchemaError> {
    let err = |line: usize, message: String| SchemaError {
        file: file.to_string(),
        message: format!("line {line}: {message}"),
    };
    let mut sections: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim().to_string();
            if sections.iter().any(|s| s.name == name) {
                return Err(err(line_no, format!("section [{name}] appears twice")));
            }
            sections.push(Section {
                name,
                line: line_no,
                entries: Vec::new(),
            });
            continue;
        }
        let Some(split) = line.find(['=', ':']) else {
            return Err(err(
                line_no,
                format!("expected `key = value`, found {line:?}"),
            ));
        };
        let (key, value) = (line[..split].trim(), line[split + 1..].trim());
        let Some(section) = sections.last_mut() else {
            return Err(err(line_no, format!("{key:?} is outside any [section]")));
        };
        section
            .entries
            .push((key.to_ascii_lowercase(), value.to_string()));
    }
    Ok(sections)
}

fn pattern_of(section: &Section, file: &str) -> Result<Regex, SchemaError> {
    let pattern = section
        .get("pattern")
        .ok_or_else(|| section.error(file, format!("no pattern (line {})", section.line)))?;
    Regex::new(pattern).map_err(|e| {
        section.error(
            file,
            format!("pattern {pattern:?} is not a valid regular expression: {e}"),
        )
    })
}

/// Parses storage-schemas.conf text (`file` names it in errors).
pub fn parse_schemas(text: &str, file: &str) -> Result<Vec<Schema>, SchemaError> {
    let mut out = Vec::new();
    for section in parse_ini(text, file)? {
        let pattern = pattern_of(&section, file)?;
        let bad = |message: String| section.error(file, message);
        let retentions = section
            .get("retentions")
            .ok_or_else(|| bad("no retentions".into()))?;
        let archives = parse_retentions(retentions).map_err(bad)?;
        out.push(Schema {
            name: section.name.clone(),
            pattern,
            archives,
        });
    }
    Ok(out)
}

/// Parses storage-aggregation.conf text (`file` names it in errors).
pub fn parse_aggregation(text: &str, file: &str) -> Result<Vec<AggregationRule>, SchemaError> {
    let mut out = Vec::new();
    for section in parse_ini(text, file)? {
        let pattern = pattern_of(&section, file)?;
        let bad = |message: String| section.error(file, message);
        let x_files_factor = match section.get("xfilesfactor") {
            None => None,
            Some(v) => match v.parse::<f64>() {
                Ok(x) if (0.0..=1.0).contains(&x) => Some(x),
                _ => {
                    return Err(bad(format!(
                        "xFilesFactor = {v:?}: a number from 0 to 1 is accepted"
                    )))
                }
            },
        };
        let method = match section.get("aggregationmethod") {
            None => None,
            Some(v) => Some(Aggregation::from_name(v).ok_or_else(|| {
                bad(format!(
                    "aggregationMethod = {v:?}: one of {} is accepted",
                    Aggregation::NAMES
                ))
            })?),
        };
        out.push(AggregationRule {
            name: section.name.clone(),
            pattern,
            x_files_factor,
            method,
        });
    }
    Ok(out)
}

/// carbon's retention list: `10s:6h,1m:7d,10m:5y` or `60:1440`, validated
/// with whisper's archive rules.
pub fn parse_retentions(text: &str) -> Result<Vec<(u32, u32)>, String> {
    let mut archives = Vec::new();
    for item in text.split(',') {
        archives.push(parse_retention(item.trim())?);
    }
    validate_archives(&archives).map_err(|e| format!("retentions = {text:?}: {e}"))?;
    archives.sort_by_key(|a| a.0);
    Ok(archives)
}

fn parse_retention(item: &str) -> Result<(u32, u32), String> {
    let expected = "precision:retention such as 10s:6h, 1m:7d or 60:1440 (units s m h d w y)";
    let mut parts = item.split(':');
    let (Some(precision), Some(retention), None) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("retention {item:?}: expected {expected}"));
    };
    let precision = seconds(precision)
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("precision {precision:?} in {item:?}: expected {expected}"))?;
    let points = if !retention.is_empty() && retention.bytes().all(|b| b.is_ascii_digit()) {
        retention.parse::<u64>().ok()
    } else {
        seconds(retention).map(|s| s / precision)
    }
    .ok_or_else(|| format!("retention {retention:?} in {item:?}: expected {expected}"))?;
    let precision =
        u32::try_from(precision).map_err(|_| format!("precision too large in {item:?}"))?;
    let points = u32::try_from(points).map_err(|_| format!("too many points in {item:?}"))?;
    Ok((precision, points))
}

/// `10` (seconds) or digits followed by one of s m h d w y.
fn seconds(text: &str) -> Option<u64> {
    let digits = text.bytes().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let number: u64 = text[..digits].parse().ok()?;
    let unit = match &text[digits..] {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 604_800,
        "y" => 31_536_000,
        _ => return None,
    };
    number.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tagged_series_roll_up_as_their_untagged_names() {
        let schemas = Schemas::load(None, None).unwrap();
        for name in [
            "stats.timers.api.lat.lower",
            "stats.timers.api.lat.upper_90",
            "stats.timers.api.lat.sum_squares",
            "stats.timers.api.lat.count",
            "stats.timers.api.lat.count_90",
            "stats.timers.api.lat.mean",
            "stats.sets.users.count",
            "stats_counts.hits",
            "stats.gauges.temp",
            "stats.hits",
        ] {
            let plain = schemas.spec_for(name);
            let tagged = schemas.spec_for(&format!("{name};env=prod;svc=web"));
            assert_eq!(plain.method, tagged.method, "{name}");
            assert_eq!(plain.x_files_factor, tagged.x_files_factor, "{name}");
        }
        assert_eq!(
            schemas.spec_for("stats.timers.a.upper;env=prod").method,
            Aggregation::Max
        );
    }

    use super::*;

    #[test]
    fn retention_grammar() {
        assert_eq!(parse_retentions("60:1440").unwrap(), vec![(60, 1440)]);
        assert_eq!(
            parse_retentions("10s:6h, 1m:7d,10m:5y").unwrap(),
            vec![(10, 2160), (60, 10080), (600, 262_800)]
        );
        assert_eq!(parse_retentions("7s:1m").unwrap(), vec![(7, 8)]);
        assert!(parse_retentions("1min:1d").is_err());
        assert!(parse_retentions("10s").is_err());
        assert!(parse_retentions("10s:1d:2").is_err());
        assert!(parse_retentions("10s:1d,15s:2d")
            .unwrap_err()
            .contains("multiple"));
        assert!(parse_retentions("0:10").is_err());
    }

    #[test]
    fn first_match_wins_unanchored() {
        let text = "[carbon]\npattern = carbon\nretentions = 60:90d\n\n[all]\npattern = .*\nretentions = 10s:1d\n";
        let schemas = Schemas {
            schemas: parse_schemas(text, "t").unwrap(),
            aggregation: Vec::new(),
        };
        assert_eq!(schemas.spec_for("x.carbon.y").archives, vec![(60, 129_600)]);
        assert_eq!(schemas.spec_for("stats.x").archives, vec![(10, 8640)]);
        let none = Schemas {
            schemas: Vec::new(),
            aggregation: Vec::new(),
        };
        let spec = none.spec_for("anything");
        assert_eq!(spec.archives, vec![(60, 10080)]);
        assert_eq!(
            (spec.x_files_factor, spec.method),
            (0.5, Aggregation::Average)
        );
    }

    #[test]
    fn aggregation_rules_and_partial_sections() {
        let text = "# comment\n[min]\nPATTERN = \\.lower$\nxFilesFactor: 0.1\naggregationMethod = min\n[x]\npattern = ^only_xff\\.\nxFilesFactor = 0\n";
        let s = Schemas {
            schemas: Vec::new(),
            aggregation: parse_aggregation(text, "t").unwrap(),
        };
        let spec = s.spec_for("stats.timers.a.lower");
        assert_eq!((spec.x_files_factor, spec.method), (0.1, Aggregation::Min));
        let spec = s.spec_for("only_xff.a");
        assert_eq!(
            (spec.x_files_factor, spec.method),
            (0.0, Aggregation::Average)
        );
    }

    #[test]
    fn errors_name_file_section_and_value() {
        let e = parse_aggregation("[a]\npattern = x\naggregationMethod = median\n", "agg.conf")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("agg.conf")
                && e.contains("[a]")
                && e.contains("median")
                && e.contains("absmax"),
            "{e}"
        );
        let e = parse_schemas("[b]\npattern = (\nretentions = 10s:1d\n", "s.conf")
            .unwrap_err()
            .to_string();
        assert!(e.contains("[b]") && e.contains("regular expression"), "{e}");
        let e = parse_schemas("[c]\nretentions = 10s:1d\n", "s.conf")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no pattern"), "{e}");
        let e = parse_schemas("[d]\npattern = .\nretentions = 10x:1d\n", "s.conf")
            .unwrap_err()
            .to_string();
        assert!(e.contains("[d]") && e.contains("10x"), "{e}");
        assert!(parse_schemas("[e]\n[e]\n", "s.conf").is_err());
        assert!(parse_schemas("pattern = x\n", "s.conf").is_err());
    }

    #[test]
    fn shipped_files_suit_statsd() {
        let s = Schemas::load(None, None).unwrap();
        let spec = |m: &str| s.spec_for(m);
        assert_eq!(spec("stats.gauges.temp").method, Aggregation::Last);
        assert_eq!(spec("stats_counts.hits").method, Aggregation::Sum);
        assert_eq!(spec("stats.counters.hits.count").method, Aggregation::Sum);
        assert_eq!(spec("stats.timers.lat.count").method, Aggregation::Sum);
        assert_eq!(spec("stats.timers.lat.count_90").method, Aggregation::Sum);
        assert_eq!(spec("stats.timers.lat.sum_top10").method, Aggregation::Sum);
        assert_eq!(spec("stats.timers.lat.upper_99_9").method, Aggregation::Max);
        assert_eq!(spec("stats.timers.lat.lower").method, Aggregation::Min);
        assert_eq!(
            spec("stats.timers.lat.count_ps").method,
            Aggregation::Average
        );
        assert_eq!(
            spec("stats.timers.lat.mean_90").method,
            Aggregation::Average
        );
        assert_eq!(spec("stats.hits").method, Aggregation::Average);
        assert_eq!(spec("stats.sets.users.count").method, Aggregation::Sum);
        assert_eq!(spec("stats.hits").archives[0], (10, 2160));
    }
}
