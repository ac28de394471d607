//! A series as graphite-web's `TimeSeries` holds it, and the arithmetic
//! every function shares: consolidation into buckets, and `normalize`,
//! which brings series of different steps onto one step (the LCM) before
//! they are combined.

use std::collections::BTreeMap;

/// How a series is consolidated into coarser buckets (consolidateBy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consolidation {
    /// The mean of the non-None values (the default).
    Average,
    /// Their sum.
    Sum,
    /// The least.
    Min,
    /// The greatest.
    Max,
    /// The first non-None.
    First,
    /// The last non-None.
    Last,
    /// The mean with None counted as 0.
    AvgZero,
}

impl Consolidation {
    /// The function called `name` in consolidateBy.
    pub fn from_name(name: &str) -> Option<Consolidation> {
        Some(match name {
            "average" | "avg" => Consolidation::Average,
            "sum" => Consolidation::Sum,
            "min" => Consolidation::Min,
            "max" => Consolidation::Max,
            "first" => Consolidation::First,
            "last" => Consolidation::Last,
            "avg_zero" => Consolidation::AvgZero,
            _ => return None,
        })
    }

    /// graphite-web's name for it (`consolidationFunc`).
    pub fn name(self) -> &'static str {
        match self {
            Consolidation::Average => "average",
            Consolidation::Sum => "sum",
            Consolidation::Min => "min",
            Consolidation::Max => "max",
            Consolidation::First => "first",
            Consolidation::Last => "last",
            Consolidation::AvgZero => "avg_zero",
        }
    }

    /// One bucket of `per_point` raw values; None when no value is known
    /// or fewer than `xff` of them are.
    pub fn bucket(self, values: &[Option<f64>], per_point: usize, xff: f64) -> Option<f64> {
        let known: Vec<f64> = values.iter().flatten().copied().collect();
        if known.is_empty() || (known.len() as f64) / (per_point.max(1) as f64) < xff {
            return None;
        }
        Some(match self {
            Consolidation::Average => known.iter().sum::<f64>() / known.len() as f64,
            Consolidation::Sum => known.iter().sum(),
            Consolidation::Min => known.iter().copied().fold(f64::INFINITY, f64::min),
            Consolidation::Max => known.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Consolidation::First => known[0],
            Consolidation::Last => known[known.len() - 1],
            Consolidation::AvgZero => {
                values.iter().map(|v| v.unwrap_or(0.0)).sum::<f64>() / values.len() as f64
            }
        })
    }
}

/// A series: its name, tags, time range and one value per step.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// What `target` says in the reply.
    pub name: String,
    /// Tags (`name` is the metric path, or the tagged name's metric).
    pub tags: BTreeMap<String, String>,
    /// First timestamp.
    pub start: i64,
    /// End (exclusive for fetched data: start + len * step).
    pub end: i64,
    /// Seconds per value.
    pub step: i64,
    /// The values.
    pub values: Vec<Option<f64>>,
    /// How buckets of this series are consolidated.
    pub consolidation: Consolidation,
    /// The path expression it came from (aggregate names use it).
    pub path_expression: String,
    /// The xFilesFactor buckets are held to.
    pub xff: f64,
}

impl Series {
    /// A series named `name` (also its `name` tag and path expression).
    pub fn new(name: &str, start: i64, end: i64, step: i64, values: Vec<Option<f64>>) -> Series {
        let mut tags = BTreeMap::new();
        tags.insert("name".to_string(), tagged_metric(name).to_string());
        for (k, v) in name.split(';').skip(1).filter_map(|t| t.split_once('=')) {
            tags.insert(k.to_string(), v.to_string());
        }
        Series {
            name: name.to_string(),
            tags,
            start,
            end,
            step,
            values,
            consolidation: Consolidation::Average,
            path_expression: name.to_string(),
            xff: 0.0,
        }
    }

    /// A copy with new values (name, tags, times kept).
    pub fn with_values(&self, values: Vec<Option<f64>>) -> Series {
        Series {
            values,
            ..self.clone()
        }
    }

    /// The values in buckets of `per_point`, as graphite-web's consolidating
    /// iterator yields them (a last partial bucket included).
    pub fn consolidated(&self, per_point: usize) -> Vec<Option<f64>> {
        if per_point <= 1 {
            return self.values.clone();
        }
        self.values
            .chunks(per_point)
            .map(|chunk| self.consolidation.bucket(chunk, per_point, self.xff))
            .collect()
    }

    /// The timestamps of the values.
    pub fn timestamps(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.values.len() as i64).map(move |i| self.start + i * self.step)
    }
}

/// The metric of a tagged name (`disk.used;dc=eu` → `disk.used`).
pub fn tagged_metric(name: &str) -> &str {
    name.split(';').next().unwrap_or(name)
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: i64, b: i64) -> i64 {
    if a == 0 || b == 0 {
        return a.max(b);
    }
    (a / gcd(a, b)).saturating_mul(b).abs()
}

/// graphite-web's `normalize`: the series consolidated onto the LCM of
/// their steps, with the earliest start, the latest end trimmed to whole
/// steps, and values zipped by index (missing tails are None).
pub struct Normalized {
    /// One value list per input, consolidated, all as long as the longest.
    pub rows: Vec<Vec<Option<f64>>>,
    /// Common start.
    pub start: i64,
    /// Common end.
    pub end: i64,
    /// Common step.
    pub step: i64,
}

/// Normalizes `series` (at least one).
pub fn normalize(series: &[&Series]) -> Normalized {
    let step = series.iter().map(|s| s.step).fold(1, lcm).max(1);
    let start = series.iter().map(|s| s.start).min().unwrap_or(0);
    let mut end = series.iter().map(|s| s.end).max().unwrap_or(0);
    end -= (end - start).rem_euclid(step);
    let mut rows: Vec<Vec<Option<f64>>> = series
        .iter()
        .map(|s| s.consolidated((step / s.step.max(1)) as usize))
        .collect();
    let len = rows.iter().map(Vec::len).max().unwrap_or(0);
    for row in &mut rows {
        row.resize(len, None);
    }
    Normalized {
        rows,
        start,
        end,
        step,
    }
}

impl Normalized {
    /// Applies `f` to each index's column of values.
    pub fn combine(&self, f: impl Fn(&[Option<f64>]) -> Option<f64>) -> Vec<Option<f64>> {
        let len = self.rows.first().map(Vec::len).unwrap_or(0);
        let mut column = Vec::with_capacity(self.rows.len());
        (0..len)
            .map(|i| {
                column.clear();
                column.extend(self.rows.iter().map(|r| r[i]));
                f(&column)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_uses_the_lcm_and_the_earliest_start() {
        // The spec's sumSeries(x, coarse): x at 10 s from T0+10 (1..18),
        // coarse at 60 s from T0+60 (1001..1003).
        let t0 = 1_796_169_600;
        let x = Series::new(
            "x",
            t0 + 10,
            t0 + 190,
            10,
            (1..=18).map(|v| Some(v as f64)).collect(),
        );
        let coarse = Series::new(
            "c",
            t0 + 60,
            t0 + 240,
            60,
            vec![Some(1001.0), Some(1002.0), Some(1003.0)],
        );
        let n = normalize(&[&x, &coarse]);
        assert_eq!((n.start, n.step), (t0 + 10, 60));
        let sum = n.combine(|c| Some(c.iter().flatten().sum()));
        assert_eq!(sum, vec![Some(1004.5), Some(1011.5), Some(1018.5)]);
    }

    #[test]
    fn buckets_follow_xff_and_the_function() {
        let v = [Some(1.0), None, Some(3.0), None];
        assert_eq!(Consolidation::Average.bucket(&v, 4, 0.0), Some(2.0));
        assert_eq!(Consolidation::Average.bucket(&v, 4, 0.6), None);
        assert_eq!(Consolidation::AvgZero.bucket(&v, 4, 0.0), Some(1.0));
        assert_eq!(Consolidation::Last.bucket(&v, 4, 0.0), Some(3.0));
        assert_eq!(Consolidation::Sum.bucket(&[None, None], 2, 0.0), None);
    }
}
