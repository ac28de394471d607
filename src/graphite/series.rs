//! A series as graphite-web's `TimeSeries` holds it, and the arithmetic
//! every function shares: consolidation into buckets, and `normalize`,
//! which brings series of different steps onto one step (the LCM) before
//! they are combined.

use std::borrow::Cow;
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
        // One pass, no allocation: this runs once per output point.
        let mut known = values.iter().flatten().copied();
        let first = known.next()?;
        let (mut count, mut sum, mut min, mut max, mut last) = (1usize, first, first, first, first);
        for v in known {
            count += 1;
            sum += v;
            min = min.min(v);
            max = max.max(v);
            last = v;
        }
        if (count as f64) / (per_point.max(1) as f64) < xff {
            return None;
        }
        Some(match self {
            Consolidation::Average => sum / count as f64,
            Consolidation::Sum => sum,
            Consolidation::Min => min,
            Consolidation::Max => max,
            Consolidation::First => first,
            Consolidation::Last => last,
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
/// steps, and values zipped by index (missing tails are None). Rows
/// already on the common step are borrowed, not copied.
pub struct Normalized<'a> {
    /// One value list per input, consolidated; shorter ones end early.
    pub rows: Vec<Cow<'a, [Option<f64>]>>,
    /// The longest row's length: every column index is below it.
    pub len: usize,
    /// Common start.
    pub start: i64,
    /// Common end.
    pub end: i64,
    /// Common step.
    pub step: i64,
}

/// Normalizes `series` (at least one).
pub fn normalize<'a>(series: &[&'a Series]) -> Normalized<'a> {
    let step = series.iter().map(|s| s.step).fold(1, lcm).max(1);
    let start = series.iter().map(|s| s.start).min().unwrap_or(0);
    let mut end = series.iter().map(|s| s.end).max().unwrap_or(0);
    end -= (end - start).rem_euclid(step);
    let rows: Vec<Cow<'a, [Option<f64>]>> = series
        .iter()
        .map(|s| {
            let per_point = (step / s.step.max(1)) as usize;
            if per_point <= 1 {
                Cow::Borrowed(&s.values[..])
            } else {
                Cow::Owned(s.consolidated(per_point))
            }
        })
        .collect();
    let len = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    Normalized {
        rows,
        len,
        start,
        end,
        step,
    }
}

/// A row-wise fold of normalized rows: per column, the known values'
/// count and the running result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// Sum of the known values, in row order.
    Sum,
    /// Their mean (the row-order sum over the count).
    Average,
    /// The greatest.
    Max,
    /// The least.
    Min,
    /// How many are known.
    Count,
}

impl Normalized<'_> {
    /// Row `row`, padded with None to `len`.
    pub fn padded(&self, row: usize) -> Vec<Option<f64>> {
        let mut values = self.rows.get(row).map(|r| r.to_vec()).unwrap_or_default();
        values.resize(self.len, None);
        values
    }

    /// Applies `f` to each index's column of values.
    pub fn combine(&self, f: impl Fn(&[Option<f64>]) -> Option<f64>) -> Vec<Option<f64>> {
        let mut column = Vec::with_capacity(self.rows.len());
        (0..self.len)
            .map(|i| {
                column.clear();
                column.extend(self.rows.iter().map(|r| r.get(i).copied().flatten()));
                f(&column)
            })
            .collect()
    }

    /// The same as `combine` with the fold's column function, computed a
    /// row at a time (the rows are walked in memory order; each column's
    /// values are still taken in row order, so the floating-point result
    /// is the column-wise one). None where no value is known.
    pub fn fold(&self, fold: Fold) -> Vec<Option<f64>> {
        let mut acc: Vec<f64> = vec![0.0; self.len];
        let mut known: Vec<u32> = vec![0; self.len];
        for row in &self.rows {
            for ((a, n), v) in acc.iter_mut().zip(known.iter_mut()).zip(row.iter()) {
                match fold {
                    // Branch-free: adding 0.0 for None changes no sum
                    // (Python's sum starts from 0 as well).
                    Fold::Sum | Fold::Average | Fold::Count => *a += v.unwrap_or(0.0),
                    Fold::Max | Fold::Min => {
                        let Some(v) = *v else { continue };
                        *a = match (*n, fold) {
                            (0, _) => v,
                            (_, Fold::Max) => a.max(v),
                            _ => a.min(v),
                        };
                    }
                }
                *n += u32::from(v.is_some());
            }
        }
        acc.iter()
            .zip(&known)
            .map(|(a, n)| {
                (*n > 0).then(|| match fold {
                    Fold::Average => a / f64::from(*n),
                    Fold::Count => f64::from(*n),
                    _ => *a,
                })
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
        assert_eq!(n.fold(Fold::Sum), sum);
    }

    #[test]
    fn row_folds_equal_the_column_functions() {
        let a = Series::new("a", 0, 40, 10, vec![Some(1.0), None, Some(0.1), None]);
        let b = Series::new("b", 0, 30, 10, vec![Some(-2.0), None, Some(0.2)]);
        let c = Series::new("c", 0, 40, 10, vec![Some(4.0), None, Some(0.3), Some(7.0)]);
        let n = normalize(&[&a, &b, &c]);
        let column = |f: fn(&[f64]) -> f64| {
            n.combine(|col| {
                let known: Vec<f64> = col.iter().flatten().copied().collect();
                (!known.is_empty()).then(|| f(&known))
            })
        };
        assert_eq!(n.fold(Fold::Sum), column(|v| v.iter().sum()));
        assert_eq!(
            n.fold(Fold::Average),
            column(|v| v.iter().sum::<f64>() / v.len() as f64)
        );
        assert_eq!(
            n.fold(Fold::Max),
            column(|v| v.iter().copied().fold(f64::MIN, f64::max))
        );
        assert_eq!(
            n.fold(Fold::Min),
            column(|v| v.iter().copied().fold(f64::MAX, f64::min))
        );
        assert_eq!(n.fold(Fold::Count), column(|v| v.len() as f64));
        assert_eq!(n.fold(Fold::Sum)[1], None);
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
