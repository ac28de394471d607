//! Timer state and Etsy's timer statistics.
//!
//! A timer keeps its exact values while it has at most `exact_limit` of them
//! in an interval, so small cases give Etsy's numbers to the bit. Past that
//! it moves to an HdrHistogram (3 significant digits, microsecond
//! resolution), so memory stays bounded under load. Count, sum,
//! sum_squares, min, max and mean stay exact either way.

use hdrhistogram::Histogram;

/// Histogram values are timer milliseconds times this (1 µs resolution).
const SCALE: f64 = 1000.0;
/// Largest value the histogram records (about 31 years in ms), so a wild
/// value cannot make it allocate without bound.
const MAX_SCALED: u64 = 1 << 50;

#[derive(Debug, Default)]
/// One timer's interval: exact values up to a limit, then an HdrHistogram; count, sum, sum of squares, min and max stay exact.
pub struct TimerState {
    /// Σ 1/rate: the sample-corrected count Etsy reports as `count`.
    pub count: f64,
    exact: Vec<f64>,
    histogram: Option<Box<Histogram<u64>>>,
    /// Number of values recorded (not sample-corrected).
    n: u64,
    sum: f64,
    sum_squares: f64,
    min: f64,
    max: f64,
}

impl TimerState {
    /// Records `value` sampled at `rate`, switching to a histogram past `exact_limit` values.
    pub fn record(&mut self, value: f64, rate: f64, exact_limit: usize) {
        self.count += 1.0 / rate;
        if self.n == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.n += 1;
        self.sum += value;
        self.sum_squares += value * value;
        match &mut self.histogram {
            Some(h) => record_scaled(h, value),
            None if self.exact.len() < exact_limit => self.exact.push(value),
            None => {
                let mut h = Box::new(new_histogram());
                for v in self.exact.drain(..) {
                    record_scaled(&mut h, v);
                }
                record_scaled(&mut h, value);
                self.exact = Vec::new();
                self.histogram = Some(h);
            }
        }
    }

    /// Takes this interval's values out, leaving an empty timer behind.
    pub fn take(&mut self) -> TimerState {
        std::mem::take(self)
    }

    /// No sample this interval.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// This interval's values when still exact (for the admin dump), else
    /// `None` (histogram mode); and how many values there are.
    pub fn exact_values(&self) -> (Option<&[f64]>, u64) {
        match self.histogram {
            None => (Some(&self.exact), self.n),
            Some(_) => (None, self.n),
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // 3 significant digits with auto-resize cannot fail to construct.
    let mut h = Histogram::new(3).unwrap_or_else(|_| unreachable!("sigfig 3 is valid"));
    h.auto(true);
    h
}

fn record_scaled(h: &mut Histogram<u64>, value: f64) {
    let scaled = (value * SCALE).round();
    let scaled = if scaled >= MAX_SCALED as f64 {
        MAX_SCALED
    } else {
        scaled as u64
    };
    // With auto-resize on and a bounded value, recording does not fail; a
    // failure would only lose this one value from the percentiles.
    let _ = h.record(scaled);
}

/// Names of the stats for one percent threshold, built once per config.
#[derive(Debug, Clone)]
pub struct ThresholdNames {
    /// The threshold (negative: the top percent).
    pub percent: f64,
    /// `count_N`.
    pub count: String,
    /// `mean_N`.
    pub mean: String,
    /// `upper_N` (or `lower_N` for the top percent).
    pub bound: String,
    /// `sum_N`.
    pub sum: String,
    /// `sum_squares_N`.
    pub sum_squares: String,
}

impl ThresholdNames {
    /// The names for `percent`.
    pub fn new(percent: f64) -> ThresholdNames {
        // Etsy: the JS string of p, first '.' to '_', '-' to 'top'.
        let clean = crate::protocol::number::js_number_string(percent)
            .replacen('.', "_", 1)
            .replacen('-', "top", 1);
        let bound = if percent > 0.0 { "upper" } else { "lower" };
        ThresholdNames {
            percent,
            count: format!("count_{clean}"),
            mean: format!("mean_{clean}"),
            bound: format!("{bound}_{clean}"),
            sum: format!("sum_{clean}"),
            sum_squares: format!("sum_squares_{clean}"),
        }
    }
}

/// The values of one timer in ascending order, as (value, how many) runs,
/// with running sums, so every rank-based stat is one lookup.
struct Distribution {
    values: Vec<f64>,
    counts: Vec<u64>,
    /// cumulative count, sum and sum of squares up to and including entry i
    cum_count: Vec<u64>,
    cum_sum: Vec<f64>,
    cum_squares: Vec<f64>,
    n: u64,
    exact: bool,
    min: f64,
    max: f64,
}

impl Distribution {
    fn from_timer(timer: &mut TimerState) -> Distribution {
        let (values, counts): (Vec<f64>, Vec<u64>) = match &timer.histogram {
            None => {
                let mut values = std::mem::take(&mut timer.exact);
                values.sort_unstable_by(f64::total_cmp);
                let ones = vec![1; values.len()];
                (values, ones)
            }
            Some(h) => h
                .iter_recorded()
                .map(|v| {
                    let value = h.median_equivalent(v.value_iterated_to()) as f64 / SCALE;
                    (value.clamp(timer.min, timer.max), v.count_at_value())
                })
                .unzip(),
        };
        let mut cum_count = Vec::with_capacity(values.len());
        let mut cum_sum = Vec::with_capacity(values.len());
        let mut cum_squares = Vec::with_capacity(values.len());
        let (mut c, mut s, mut q) = (0u64, 0f64, 0f64);
        for (v, k) in values.iter().zip(&counts) {
            c += k;
            // For exact runs k is 1, so this is Etsy's sequential sum.
            s += if *k == 1 { *v } else { v * *k as f64 };
            q += if *k == 1 { v * v } else { v * v * *k as f64 };
            cum_count.push(c);
            cum_sum.push(s);
            cum_squares.push(q);
        }
        Distribution {
            n: c,
            values,
            counts,
            cum_count,
            cum_sum,
            cum_squares,
            exact: timer.histogram.is_none(),
            min: timer.min,
            max: timer.max,
        }
    }

    /// Index of the run holding rank `r` (1-based).
    fn run_of(&self, rank: u64) -> usize {
        self.cum_count
            .partition_point(|&c| c < rank)
            .min(self.values.len().saturating_sub(1))
    }

    fn value_at(&self, rank: u64) -> f64 {
        if rank <= 1 {
            return self.min;
        }
        if rank >= self.n {
            return self.max;
        }
        self.values[self.run_of(rank)]
    }

    /// Sum and sum of squares of the `rank` lowest values.
    fn sums_to(&self, rank: u64) -> (f64, f64) {
        if rank == 0 {
            return (0.0, 0.0);
        }
        let i = self.run_of(rank);
        if self.cum_count[i] == rank {
            return (self.cum_sum[i], self.cum_squares[i]);
        }
        let (before_count, before_sum, before_sq) = if i == 0 {
            (0, 0.0, 0.0)
        } else {
            (
                self.cum_count[i - 1],
                self.cum_sum[i - 1],
                self.cum_squares[i - 1],
            )
        };
        let extra = (rank - before_count) as f64;
        let v = self.values[i];
        (before_sum + v * extra, before_sq + v * v * extra)
    }
}

/// Derives Etsy's timer stats for one timer, calling `emit(stat, value)`
/// in Etsy's order. `bins` are the histogram bounds for this key (with
/// their stat names), `wanted` filters stats (Etsy's
/// calculatedTimerMetrics). Consumes the timer's values.
pub fn derive_stats(
    timer: &mut TimerState,
    thresholds: &[ThresholdNames],
    bins: &[(f64, String)],
    interval_secs: f64,
    wanted: &dyn Fn(StatClass) -> bool,
    emit: &mut dyn FnMut(&str, f64),
) {
    if timer.is_empty() {
        if wanted(StatClass::CountPs) {
            emit("count_ps", 0.0);
        }
        if wanted(StatClass::Count) {
            emit("count", 0.0);
        }
        return;
    }
    let d = Distribution::from_timer(timer);
    let n = d.n;
    let (total_sum, total_squares) = if d.exact {
        (
            d.cum_sum[d.cum_sum.len() - 1],
            d.cum_squares[d.cum_squares.len() - 1],
        )
    } else {
        (timer.sum, timer.sum_squares)
    };

    for t in thresholds {
        let k = if n == 1 {
            1
        } else {
            ((t.percent.abs() / 100.0) * n as f64 + 0.5).floor() as u64
        };
        if k == 0 {
            continue;
        }
        let (bound, sum, squares) = if t.percent > 0.0 {
            let (s, q) = d.sums_to(k);
            (d.value_at(k), s, q)
        } else {
            // Etsy subtracts the cumulative sum below the top k; when k == n
            // it reads past the array and reports NaN. Here it is 0.
            let (below_s, below_q) = d.sums_to(n - k);
            (
                d.value_at(n - k + 1),
                total_sum - below_s,
                total_squares - below_q,
            )
        };
        if wanted(StatClass::Percent(PercentStat::Count)) {
            emit(&t.count, k as f64);
        }
        if wanted(StatClass::Percent(PercentStat::Mean)) {
            emit(&t.mean, sum / k as f64);
        }
        if wanted(StatClass::Percent(PercentStat::Bound(t.percent > 0.0))) {
            emit(&t.bound, bound);
        }
        if wanted(StatClass::Percent(PercentStat::Sum)) {
            emit(&t.sum, sum);
        }
        if wanted(StatClass::Percent(PercentStat::SumSquares)) {
            emit(&t.sum_squares, squares);
        }
    }

    let mean = total_sum / n as f64;
    let std = if d.exact {
        let mut diffs = 0.0;
        for v in &d.values {
            diffs += (v - mean) * (v - mean);
        }
        (diffs / n as f64).sqrt()
    } else {
        (total_squares / n as f64 - mean * mean).max(0.0).sqrt()
    };
    let median = if n % 2 == 1 {
        d.value_at(n / 2 + 1)
    } else {
        (d.value_at(n / 2) + d.value_at(n / 2 + 1)) / 2.0
    };
    let plain = [
        (StatClass::Std, "std", std),
        (StatClass::Upper, "upper", d.max),
        (StatClass::Lower, "lower", d.min),
        (StatClass::Count, "count", timer.count),
        (StatClass::CountPs, "count_ps", timer.count / interval_secs),
        (StatClass::Sum, "sum", total_sum),
        (StatClass::SumSquares, "sum_squares", total_squares),
        (StatClass::Mean, "mean", mean),
        (StatClass::Median, "median", median),
    ];
    for (class, name, value) in plain {
        if wanted(class) {
            emit(name, value);
        }
    }

    if !bins.is_empty() && wanted(StatClass::Histogram) {
        // One pass over the sorted runs; values at or above the last finite
        // bound are not counted when there is no "inf" bin (as in Etsy).
        let mut run = 0;
        for (bound, name) in bins {
            let mut freq = 0u64;
            while run < d.values.len() && d.values[run] < *bound {
                freq += d.counts[run];
                run += 1;
            }
            emit(name, freq as f64);
        }
    }
}

/// Which stat a name is, for Etsy's `calculatedTimerMetrics` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatClass {
    /// A per-threshold stat.
    Percent(PercentStat),
    /// `std`.
    Std,
    /// `upper`.
    Upper,
    /// `lower`.
    Lower,
    /// `count`.
    Count,
    /// `count_ps`.
    CountPs,
    /// `sum`.
    Sum,
    /// `sum_squares`.
    SumSquares,
    /// `mean`.
    Mean,
    /// `median`.
    Median,
    /// `histogram.bin_*`.
    Histogram,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// Which per-threshold stat.
pub enum PercentStat {
    /// `count_N`.
    Count,
    /// `mean_N`.
    Mean,
    /// upper_N (true) or lower_N (false)
    Bound(bool),
    /// `sum_N`.
    Sum,
    /// `sum_squares_N`.
    SumSquares,
}

impl StatClass {
    /// The name Etsy's filter compares with (`mean_90` -> `mean_percent`).
    pub fn filter_name(self) -> &'static str {
        match self {
            StatClass::Percent(PercentStat::Count) => "count_percent",
            StatClass::Percent(PercentStat::Mean) => "mean_percent",
            StatClass::Percent(PercentStat::Bound(true)) => "upper_percent",
            StatClass::Percent(PercentStat::Bound(false)) => "lower_percent",
            StatClass::Percent(PercentStat::Sum) => "sum_percent",
            StatClass::Percent(PercentStat::SumSquares) => "sum_squares_percent",
            StatClass::Std => "std",
            StatClass::Upper => "upper",
            StatClass::Lower => "lower",
            StatClass::Count => "count",
            StatClass::CountPs => "count_ps",
            StatClass::Sum => "sum",
            StatClass::SumSquares => "sum_squares",
            StatClass::Mean => "mean",
            StatClass::Median => "median",
            StatClass::Histogram => "histogram",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn stats(values: &[f64], rate: f64, pcts: &[f64], interval: f64) -> BTreeMap<String, f64> {
        stats_with(values, rate, pcts, interval, &[], 1000)
    }

    fn stats_with(
        values: &[f64],
        rate: f64,
        pcts: &[f64],
        interval: f64,
        bins: &[(f64, String)],
        limit: usize,
    ) -> BTreeMap<String, f64> {
        let mut t = TimerState::default();
        for v in values {
            t.record(*v, rate, limit);
        }
        let names: Vec<_> = pcts.iter().map(|p| ThresholdNames::new(*p)).collect();
        let mut out = BTreeMap::new();
        derive_stats(&mut t, &names, bins, interval, &|_| true, &mut |k, v| {
            out.insert(k.to_string(), v);
        });
        out
    }

    // Vectors from Etsy's test/process_metrics_tests.js (interval 100 ms).
    #[test]
    fn etsy_single_value() {
        let s = stats(&[100.0], 1.0, &[90.0], 0.1);
        assert_eq!(s["std"], 0.0);
        assert_eq!(s["upper"], 100.0);
        assert_eq!(s["count_ps"], 10.0);
        assert_eq!(s["sum_squares"], 10000.0);
        assert_eq!(s["mean_90"], 100.0);
        assert_eq!(s["median"], 100.0);
        let s = stats(&[100.0], 1.0, &[-10.0], 0.1);
        assert_eq!(s["lower_top10"], 100.0);
        assert_eq!(s["sum_top10"], 100.0);
    }

    #[test]
    fn etsy_three_values() {
        let s = stats(&[100.0, 200.0, 300.0], 1.0, &[90.0, 80.0], 0.1);
        assert_eq!(s["std"], 81.64965809277261);
        assert_eq!(s["count"], 3.0);
        assert_eq!(s["count_ps"], 30.0);
        assert_eq!(s["sum_squares"], 140000.0);
        assert_eq!(s["count_90"], 3.0);
        assert_eq!(s["upper_90"], 300.0);
        assert_eq!(s["count_80"], 2.0);
        assert_eq!(s["mean_80"], 150.0);
        assert_eq!(s["upper_80"], 200.0);
        assert_eq!(s["sum_squares_80"], 50000.0);
    }

    #[test]
    fn etsy_top_percent_and_median() {
        let v = [10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 100.0, 200.0];
        let s = stats(&v, 1.0, &[-20.0], 0.1);
        assert_eq!(s["mean_top20"], 150.0);
        assert_eq!(s["lower_top20"], 100.0);
        assert_eq!(s["sum_top20"], 300.0);
        let s = stats(&[300.0, 200.0, 400.0, 100.0], 1.0, &[90.0], 0.1);
        assert_eq!(s["median"], 250.0);
    }

    #[test]
    fn sampled_count() {
        let s = stats(&[100.0], 0.1, &[90.0], 0.2);
        assert_eq!(s["count"], 10.0);
        assert_eq!(s["count_ps"], 50.0);
    }

    #[test]
    fn top_hundred_is_the_whole_sum_not_nan() {
        let s = stats(&[10.0, 20.0, 30.0], 1.0, &[-100.0], 1.0);
        assert_eq!(s["sum_top100"], 60.0);
        assert_eq!(s["mean_top100"], 20.0);
        assert_eq!(s["lower_top100"], 10.0);
    }

    #[test]
    fn etsy_histogram_bins() {
        let bins = vec![
            (1.0, "bin_1".into()),
            (2.21, "bin_2_21".into()),
            (f64::INFINITY, "bin_inf".into()),
        ];
        let s = stats_with(&[0.1234, 2.89, 4.0, 6.0, 8.0], 1.0, &[], 1.0, &bins, 1000);
        assert_eq!((s["bin_1"], s["bin_2_21"], s["bin_inf"]), (1.0, 0.0, 4.0));
        let bins = vec![(1.0, "bin_1".into()), (2.0, "bin_2".into())];
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        let s = stats_with(&v, 1.0, &[], 1.0, &bins, 1000);
        assert_eq!((s["bin_1"], s["bin_2"]), (0.0, 1.0));
        assert!(!s.contains_key("bin_inf"));
    }

    #[test]
    fn histogram_mode_keeps_exact_aggregates_and_close_percentiles() {
        let values: Vec<f64> = (1..=10_000).map(f64::from).collect();
        let exact = stats_with(&values, 1.0, &[90.0], 1.0, &[], 100_000);
        let approx = stats_with(&values, 1.0, &[90.0], 1.0, &[], 100);
        for key in [
            "count",
            "sum",
            "sum_squares",
            "upper",
            "lower",
            "mean",
            "count_90",
        ] {
            assert_eq!(exact[key], approx[key], "{key}");
        }
        for key in ["upper_90", "median", "mean_90", "std"] {
            let rel = (exact[key] - approx[key]).abs() / exact[key];
            assert!(rel < 0.002, "{key}: {} vs {}", exact[key], approx[key]);
        }
    }

    #[test]
    fn empty_timer_emits_count_ps_then_count() {
        let mut t = TimerState::default();
        let mut out = Vec::new();
        derive_stats(&mut t, &[], &[], 1.0, &|_| true, &mut |k, v| {
            out.push((k.to_string(), v))
        });
        assert_eq!(out, vec![("count_ps".into(), 0.0), ("count".into(), 0.0)]);
    }

    #[test]
    fn threshold_names() {
        assert_eq!(ThresholdNames::new(99.9).mean, "mean_99_9");
        assert_eq!(ThresholdNames::new(-10.0).bound, "lower_top10");
        assert_eq!(ThresholdNames::new(90.0).sum_squares, "sum_squares_90");
    }
}
