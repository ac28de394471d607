//! The render functions, each registered once in [`FUNCTIONS`] with the
//! metadata `/functions` serves, so what is implemented and what is
//! advertised cannot drift apart. Semantics and result names follow
//! graphite-web 1.1.8 (None handling, step alignment, naming templates).

use std::collections::BTreeMap;

use super::eval::{Context, EvalError, Value};
use super::series::{normalize, Consolidation, Fold, Series};
use super::target::Expr;
use super::time::parse_offset;

/// A call being evaluated: the registered name, the name as written (an
/// alias such as `sum`), and the unevaluated arguments.
pub struct Call<'a> {
    /// The function's registered name.
    pub name: &'static str,
    /// As written in the target.
    pub written: &'a str,
    /// Positional arguments.
    pub args: &'a [Expr],
    /// Keyword arguments.
    pub kwargs: &'a [(String, Expr)],
}

/// A parameter's type, as `/functions` names it.
#[derive(Debug, Clone, Copy)]
pub enum ParamType {
    /// One series list.
    SeriesList,
    /// Several series lists.
    SeriesLists,
    /// An integer.
    Integer,
    /// A float.
    Float,
    /// A string.
    Text,
    /// A boolean.
    Boolean,
    /// A time interval such as "1min".
    Interval,
    /// An aggregation function name.
    AggFunc,
    /// A node index.
    Node,
}

impl ParamType {
    /// The name graphite-web gives it.
    pub fn name(self) -> &'static str {
        match self {
            ParamType::SeriesList => "seriesList",
            ParamType::SeriesLists => "seriesLists",
            ParamType::Integer => "integer",
            ParamType::Float => "float",
            ParamType::Text => "string",
            ParamType::Boolean => "boolean",
            ParamType::Interval => "interval",
            ParamType::AggFunc => "aggFunc",
            ParamType::Node => "nodeOrTag",
        }
    }
}

/// One parameter of a function.
#[derive(Debug)]
pub struct Param {
    /// Its name (also its keyword).
    pub name: &'static str,
    /// Its type.
    pub kind: ParamType,
    /// Whether it must be given.
    pub required: bool,
    /// Whether it repeats (`*args`).
    pub multiple: bool,
}

/// A registered function.
pub struct FunctionDef {
    /// The name.
    pub name: &'static str,
    /// Other names that call it (`sum`, `avg`).
    pub aliases: &'static [&'static str],
    /// graphite-web's group (Combine, Transform, Filter Series, Alias, ...).
    pub group: &'static str,
    /// The parameters.
    pub params: &'static [Param],
    /// What it does, for `/functions`.
    pub description: &'static str,
    /// The implementation.
    pub run: fn(&Context<'_>, &Call<'_>) -> Result<Vec<Series>, EvalError>,
}

const fn p(name: &'static str, kind: ParamType, required: bool) -> Param {
    Param {
        name,
        kind,
        required,
        multiple: false,
    }
}

const fn many(name: &'static str, kind: ParamType) -> Param {
    Param {
        name,
        kind,
        required: true,
        multiple: true,
    }
}

use ParamType::*;

const SERIES: Param = p("seriesList", SeriesList, true);
const LISTS: Param = many("seriesLists", SeriesLists);

macro_rules! functions {
    ($($name:literal $(| $alias:literal)*, $group:literal, [$($param:expr),*], $run:expr, $desc:literal;)*) => {
        /// Every implemented function, in `/functions` order.
        pub static FUNCTIONS: &[FunctionDef] = &[$(FunctionDef {
            name: $name,
            aliases: &[$($alias),*],
            group: $group,
            params: &[$($param),*],
            description: $desc,
            run: $run,
        }),*];
    };
}

functions! {
    "sumSeries" | "sum", "Combine", [LISTS], |c, k| aggregate_series(c, k, "sum"), "Adds the series point by point (None skipped).";
    "averageSeries" | "avg", "Combine", [LISTS], |c, k| aggregate_series(c, k, "average"), "The mean of the series at each point (None skipped).";
    "maxSeries", "Combine", [LISTS], |c, k| aggregate_series(c, k, "max"), "The greatest value at each point.";
    "minSeries", "Combine", [LISTS], |c, k| aggregate_series(c, k, "min"), "The least value at each point.";
    "diffSeries", "Combine", [LISTS], |c, k| aggregate_series(c, k, "diff"), "The first series minus the others.";
    "multiplySeries", "Combine", [LISTS], |c, k| aggregate_series(c, k, "multiply"), "The product of the series (None if any is None).";
    "rangeOfSeries", "Combine", [LISTS], |c, k| aggregate_series(c, k, "rangeOf"), "Greatest minus least at each point.";
    "stddevSeries", "Combine", [LISTS], |c, k| aggregate_series(c, k, "stddev"), "Population standard deviation at each point.";
    "countSeries", "Combine", [LISTS], count_series, "How many series there are, at each point.";
    "aggregate", "Combine", [SERIES, p("func", AggFunc, true)], aggregate_named, "Combines the series with the named function.";
    "percentileOfSeries", "Combine", [SERIES, p("n", Float, true), p("interpolate", Boolean, false)], percentile_of_series, "The n-th percentile of the series at each point.";
    "divideSeries", "Combine", [p("dividendSeriesList", SeriesList, true), p("divisorSeries", SeriesList, true)], divide_series, "Each series divided by one divisor series.";
    "divideSeriesLists", "Combine", [p("dividendSeriesList", SeriesList, true), p("divisorSeriesList", SeriesList, true)], divide_series_lists, "Series divided pairwise.";
    "asPercent", "Combine", [SERIES, p("total", SeriesList, false)], as_percent, "Each series as a percent of a total.";
    "scale", "Transform", [SERIES, p("factor", Float, true)], scale, "Multiplies every value by a factor.";
    "scaleToSeconds", "Transform", [SERIES, p("seconds", Float, true)], scale_to_seconds, "Scales each value to a per-`seconds` rate.";
    "offset", "Transform", [SERIES, p("factor", Float, true)], offset, "Adds a constant to every value.";
    "isNonNull", "Transform", [SERIES], |c, k| map_all(c, k, "isNonNull", |v| Some(if v.is_some() { 1.0 } else { 0.0 })), "1 where a value is known, else 0.";
    "log", "Transform", [SERIES, p("base", Integer, false)], logarithm, "Logarithms in a base (None at or below 0).";
    "offsetToZero", "Transform", [SERIES], offset_to_zero, "Each series less its minimum.";
    "absolute", "Transform", [SERIES], |c, k| map_values(c, k, "absolute", |v| Some(v.abs())), "Absolute values.";
    "invert", "Transform", [SERIES], |c, k| map_values(c, k, "invert", |v| if v == 0.0 { None } else { Some(1.0 / v) }), "1/value (None at 0).";
    "squareRoot", "Transform", [SERIES], |c, k| map_values(c, k, "squareRoot", |v| if v < 0.0 { None } else { Some(v.sqrt()) }), "Square roots (None below 0).";
    "pow", "Transform", [SERIES, p("factor", Float, true)], pow, "Each value raised to a power.";
    "derivative", "Transform", [SERIES], derivative, "The difference from the previous value.";
    "nonNegativeDerivative", "Transform", [SERIES, p("maxValue", Float, false), p("minValue", Float, false)], |c, k| non_negative_derivative(c, k, false), "The difference from the previous value, counter wraps handled.";
    "perSecond", "Transform", [SERIES, p("maxValue", Float, false), p("minValue", Float, false)], |c, k| non_negative_derivative(c, k, true), "The per-second rate of a counter.";
    "integral", "Transform", [SERIES], integral, "The running sum.";
    "keepLastValue", "Transform", [SERIES, p("limit", Integer, false)], keep_last_value, "Fills gaps with the last value (up to a limit).";
    "transformNull", "Transform", [SERIES, p("default", Float, false)], transform_null, "Replaces None with a value.";
    "changed", "Transform", [SERIES], changed, "1 where the value changed, else 0.";
    "delay", "Transform", [SERIES, p("steps", Integer, true)], delay, "Shifts the values by a number of steps.";
    "consolidateBy", "Special", [SERIES, p("consolidationFunc", Text, true)], consolidate_by, "How points are consolidated.";
    "cumulative", "Special", [SERIES], cumulative, "consolidateBy(series, 'sum').";
    "movingAverage", "Calculate", [SERIES, p("windowSize", Interval, true), p("xFilesFactor", Float, false)], |c, k| moving(c, k, "average"), "The mean of the preceding window.";
    "movingSum", "Calculate", [SERIES, p("windowSize", Interval, true), p("xFilesFactor", Float, false)], |c, k| moving(c, k, "sum"), "The sum of the preceding window.";
    "movingMin", "Calculate", [SERIES, p("windowSize", Interval, true), p("xFilesFactor", Float, false)], |c, k| moving(c, k, "min"), "The least of the preceding window.";
    "movingMax", "Calculate", [SERIES, p("windowSize", Interval, true), p("xFilesFactor", Float, false)], |c, k| moving(c, k, "max"), "The greatest of the preceding window.";
    "movingMedian", "Calculate", [SERIES, p("windowSize", Interval, true), p("xFilesFactor", Float, false)], |c, k| moving(c, k, "median"), "The median of the preceding window.";
    "summarize", "Transform", [SERIES, p("intervalString", Interval, true), p("func", AggFunc, false), p("alignToFrom", Boolean, false)], summarize, "Buckets of an interval, aggregated.";
    "hitcount", "Transform", [SERIES, p("intervalString", Interval, true), p("alignToInterval", Boolean, false)], hitcount, "Hits per interval from per-second rates.";
    "timeShift", "Transform", [SERIES, p("timeShift", Interval, true)], time_shift, "The series as it was an interval earlier.";
    "nPercentile", "Calculate", [SERIES, p("n", Integer, true)], n_percentile, "A line at the n-th percentile of each series.";
    "highestCurrent", "Filter Series", [SERIES, p("n", Integer, false)], |c, k| top(c, k, Stat::Current, true), "The n series with the highest last value.";
    "highestMax", "Filter Series", [SERIES, p("n", Integer, false)], |c, k| top(c, k, Stat::Max, true), "The n series with the highest maximum.";
    "highestAverage", "Filter Series", [SERIES, p("n", Integer, false)], |c, k| top(c, k, Stat::Average, true), "The n series with the highest mean.";
    "lowestCurrent", "Filter Series", [SERIES, p("n", Integer, false)], |c, k| top(c, k, Stat::Current, false), "The n series with the lowest last value.";
    "lowestAverage", "Filter Series", [SERIES, p("n", Integer, false)], |c, k| top(c, k, Stat::Average, false), "The n series with the lowest mean.";
    "currentAbove", "Filter Series", [SERIES, p("n", Float, true)], |c, k| filter_named(c, k, "last", ">"), "Series whose last value is above n.";
    "currentBelow", "Filter Series", [SERIES, p("n", Float, true)], |c, k| filter_named(c, k, "last", "<="), "Series whose last value is at or below n (or that have none).";
    "averageAbove", "Filter Series", [SERIES, p("n", Float, true)], |c, k| filter_named(c, k, "average", ">"), "Series whose mean is above n.";
    "averageBelow", "Filter Series", [SERIES, p("n", Float, true)], |c, k| filter_named(c, k, "average", "<="), "Series whose mean is at or below n (or that have none).";
    "maximumAbove", "Filter Series", [SERIES, p("n", Float, true)], |c, k| filter_named(c, k, "max", ">"), "Series whose maximum is above n.";
    "maximumBelow", "Filter Series", [SERIES, p("n", Float, true)], |c, k| filter_named(c, k, "max", "<="), "Series whose maximum is at or below n (or that have none).";
    "minimumAbove", "Filter Series", [SERIES, p("n", Float, true)], |c, k| filter_named(c, k, "min", ">"), "Series whose minimum is above n.";
    "minimumBelow", "Filter Series", [SERIES, p("n", Float, true)], |c, k| filter_named(c, k, "min", "<="), "Series whose minimum is at or below n (or that have none).";
    "filterSeries", "Filter Series", [SERIES, p("func", AggFunc, true), p("operator", Text, true), p("threshold", Float, true)], filter_series, "Series whose func over the window passes operator threshold.";
    "removeEmptySeries", "Filter Series", [SERIES, p("xFilesFactor", Float, false)], remove_empty, "Drops series with no value.";
    "removeAboveValue", "Filter Data", [SERIES, p("n", Float, true)], |c, k| remove_values(c, k, true), "Values above n become None.";
    "removeBelowValue", "Filter Data", [SERIES, p("n", Float, true)], |c, k| remove_values(c, k, false), "Values below n become None.";
    "exclude", "Filter Series", [SERIES, p("pattern", Text, true)], |c, k| grep(c, k, false), "Drops series whose name matches a regex.";
    "grep", "Filter Series", [SERIES, p("pattern", Text, true)], |c, k| grep(c, k, true), "Keeps series whose name matches a regex.";
    "limit", "Filter Series", [SERIES, p("n", Integer, true)], limit, "The first n series.";
    "sortByName", "Sorting", [SERIES, p("natural", Boolean, false), p("reverse", Boolean, false)], sort_by_name, "Sorted by name.";
    "sortByMaxima", "Sorting", [SERIES], |c, k| sort_by(c, k, Stat::Max, true), "Sorted by maximum, highest first.";
    "sortByMinima", "Sorting", [SERIES], sort_by_minima, "Series with a positive maximum, sorted by minimum, lowest first.";
    "sortByTotal", "Sorting", [SERIES], |c, k| sort_by(c, k, Stat::Total, true), "Sorted by total, highest first.";
    "alias", "Alias", [SERIES, p("newName", Text, true)], alias, "Renames the series.";
    "aliasByNode", "Alias", [SERIES, many("nodes", Node)], alias_by_node, "Renames each series to some of its nodes.";
    "aliasByMetric", "Alias", [SERIES], alias_by_metric, "Renames each series to its last node.";
    "aliasSub", "Alias", [SERIES, p("search", Text, true), p("replace", Text, true)], alias_sub, "Renames with a regex substitution.";
    "legendValue", "Alias", [SERIES, many("valueTypes", Text)], legend_value, "Appends summary values to the name.";
    "sumSeriesWithWildcards", "Combine", [SERIES, many("position", Node)], |c, k| with_wildcards(c, k, Some("sum")), "Sums the series that are equal but for the given nodes.";
    "averageSeriesWithWildcards", "Combine", [SERIES, many("position", Node)], |c, k| with_wildcards(c, k, Some("average")), "Averages the series that are equal but for the given nodes.";
    "multiplySeriesWithWildcards", "Combine", [SERIES, many("position", Node)], |c, k| with_wildcards(c, k, Some("multiply")), "Multiplies the series that are equal but for the given nodes.";
    "aggregateWithWildcards", "Combine", [SERIES, p("func", AggFunc, true), many("position", Node)], |c, k| with_wildcards(c, k, None), "Combines with func the series that are equal but for the given nodes.";
    "groupByNode", "Combine", [SERIES, p("nodeNum", Node, true), p("callback", AggFunc, false)], group_by_node, "Groups series by one node and combines each group.";
    "groupByNodes", "Combine", [SERIES, p("callback", AggFunc, true), many("nodes", Node)], group_by_nodes, "Groups series by several nodes and combines each group.";
    "seriesByTag", "Special", [many("tagExpressions", Text)], series_by_tag, "The tagged series matching every tag expression (tag=v, tag!=v, tag=~re, tag!=~re).";
    "groupByTags", "Combine", [SERIES, p("callback", AggFunc, true), many("tags", Node)], group_by_tags, "Groups series by the values of some tags and combines each group.";
    "aliasByTags", "Alias", [SERIES, many("tags", Node)], alias_by_node, "Renames each series to some of its tags and nodes.";
    "constantLine", "Special", [p("value", Float, true)], constant_line, "A horizontal line.";
    "threshold", "Graph", [p("value", Float, true), p("label", Text, false), p("color", Text, false)], threshold, "A named horizontal line.";
    "color", "Graph", [SERIES, p("theColor", Text, true)], identity, "Display only: the series unchanged.";
    "alpha", "Graph", [SERIES, p("alpha", Float, true)], identity, "Display only: the series unchanged.";
    "lineWidth", "Graph", [SERIES, p("width", Float, true)], identity, "Display only: the series unchanged.";
    "dashed", "Graph", [SERIES, p("dashLength", Float, false)], dashed, "Display only: renamed dashed(name, length).";
    "stacked", "Graph", [SERIES, p("stack", Text, false)], |c, k| rename_display(c, k, "stacked"), "Display only: renamed stacked(name).";
    "secondYAxis", "Graph", [SERIES], |c, k| rename_display(c, k, "secondYAxis"), "Display only: renamed secondYAxis(name).";
    "drawAsInfinite", "Graph", [SERIES], |c, k| rename_display(c, k, "drawAsInfinite"), "Display only: renamed drawAsInfinite(name).";
}

/// The function called `name` (or one of its aliases).
pub fn lookup(name: &str) -> Option<&'static FunctionDef> {
    FUNCTIONS
        .iter()
        .find(|f| f.name == name || f.aliases.contains(&name))
}

// ------------------------------------------------------------- arguments

fn bad(call: &Call<'_>, message: impl Into<String>) -> EvalError {
    EvalError::BadArgument {
        function: call.written.to_string(),
        message: message.into(),
    }
}

impl Call<'_> {
    /// The argument at `index`, or the keyword `name`.
    fn arg(&self, index: usize, name: &str) -> Option<&Expr> {
        self.args
            .get(index)
            .or_else(|| self.kwargs.iter().find(|(k, _)| k == name).map(|(_, v)| v))
    }

    fn series(&self, ctx: &Context<'_>, index: usize) -> Result<Vec<Series>, EvalError> {
        let expr = self
            .arg(index, "seriesList")
            .ok_or_else(|| bad(self, "a series list is required"))?;
        match ctx.value(expr)? {
            Value::Series(s) => Ok(s),
            _ => Err(bad(
                self,
                format!("argument {} must be a series list", index + 1),
            )),
        }
    }

    /// Every positional argument from `index` on, as series.
    fn series_lists(&self, ctx: &Context<'_>, from: usize) -> Result<Vec<Series>, EvalError> {
        let mut out = Vec::new();
        for (i, expr) in self.args.iter().enumerate().skip(from) {
            match ctx.value(expr)? {
                Value::Series(s) => out.extend(s),
                _ => {
                    return Err(bad(
                        self,
                        format!("argument {} must be a series list", i + 1),
                    ))
                }
            }
        }
        Ok(out)
    }

    fn number(
        &self,
        ctx: &Context<'_>,
        index: usize,
        name: &str,
    ) -> Result<Option<f64>, EvalError> {
        match self.arg(index, name).map(|e| ctx.value(e)).transpose()? {
            None | Some(Value::None) => Ok(None),
            Some(Value::Number(n)) => Ok(Some(n)),
            Some(Value::Bool(b)) => Ok(Some(if b { 1.0 } else { 0.0 })),
            Some(_) => Err(bad(self, format!("{name} must be a number"))),
        }
    }

    fn required_number(
        &self,
        ctx: &Context<'_>,
        index: usize,
        name: &str,
    ) -> Result<f64, EvalError> {
        self.number(ctx, index, name)?
            .ok_or_else(|| bad(self, format!("{name} is required")))
    }

    fn string(
        &self,
        ctx: &Context<'_>,
        index: usize,
        name: &str,
    ) -> Result<Option<String>, EvalError> {
        match self.arg(index, name).map(|e| ctx.value(e)).transpose()? {
            None | Some(Value::None) => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(_) => Err(bad(self, format!("{name} must be a string"))),
        }
    }

    fn boolean(&self, ctx: &Context<'_>, index: usize, name: &str) -> Result<bool, EvalError> {
        match self.arg(index, name).map(|e| ctx.value(e)).transpose()? {
            None | Some(Value::None) => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(Value::Number(n)) => Ok(n != 0.0),
            Some(_) => Err(bad(self, format!("{name} must be a boolean"))),
        }
    }

    /// The text of an argument as written (for names that echo it).
    fn written_arg(&self, index: usize, name: &str) -> Option<String> {
        Some(match self.arg(index, name)? {
            Expr::Number(n) => fmt_g(*n),
            Expr::Str(s) => format!("\"{s}\""),
            Expr::Bool(b) => if *b { "True" } else { "False" }.to_string(),
            Expr::None => "None".into(),
            Expr::Path(p) => p.clone(),
            Expr::Call { .. } => return None,
        })
    }
}

/// Python's `%g`: six significant digits, trailing zeros dropped.
pub fn fmt_g(value: f64) -> String {
    if value.is_nan() {
        return "nan".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.into();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let exponent = value.abs().log10().floor() as i32;
    let rounded: f64 = format!("{value:.5e}").parse().unwrap_or(value);
    let exponent = if rounded.abs() >= 10f64.powi(exponent + 1) {
        exponent + 1
    } else {
        exponent
    };
    if !(-4..6).contains(&exponent) {
        let text = format!("{value:.5e}");
        let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
        let mantissa = trim_zeros(mantissa);
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    let decimals = (5 - exponent).max(0) as usize;
    trim_zeros(&format!("{value:.decimals$}"))
}

fn trim_zeros(text: &str) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text.to_string()
    }
}

/// `repr` of a Python float in a name (`2.0`, `0.5`).
fn py_float(value: f64) -> String {
    crate::store::format::python_float_repr(value)
}

/// The unique path expressions of `series`, in order, joined by ','.
fn path_expressions(series: &[Series]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for s in series {
        if !seen.contains(&s.path_expression.as_str()) {
            seen.push(&s.path_expression);
        }
    }
    seen.join(",")
}

// --------------------------------------------------------------- combine

fn known(values: &[Option<f64>]) -> Vec<f64> {
    values.iter().flatten().copied().collect()
}

/// graphite-web's aggregation functions over one column.
fn aggregate_values(func: &str, column: &[Option<f64>]) -> Option<Option<f64>> {
    let v = known(column);
    let none_if_empty = |x: f64| if v.is_empty() { None } else { Some(x) };
    Some(match func {
        "sum" | "total" => none_if_empty(v.iter().sum()),
        "average" | "avg" => none_if_empty(v.iter().sum::<f64>() / v.len() as f64),
        "avg_zero" => {
            if column.is_empty() {
                None
            } else {
                Some(column.iter().map(|x| x.unwrap_or(0.0)).sum::<f64>() / column.len() as f64)
            }
        }
        "max" => none_if_empty(v.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
        "min" => none_if_empty(v.iter().copied().fold(f64::INFINITY, f64::min)),
        "diff" => none_if_empty(v.first().copied().unwrap_or(0.0) - v.iter().skip(1).sum::<f64>()),
        "multiply" => {
            if column.iter().any(Option::is_none) || column.is_empty() {
                None
            } else {
                Some(v.iter().product())
            }
        }
        "rangeOf" | "range" => none_if_empty(
            v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                - v.iter().copied().fold(f64::INFINITY, f64::min),
        ),
        "stddev" => none_if_empty({
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        }),
        "median" => none_if_empty(median(&v)),
        "count" => none_if_empty(v.len() as f64),
        "last" | "current" => v.last().copied(),
        "first" => v.first().copied(),
        _ => return None,
    })
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The name of an aggregate, as graphite-web's `aggregate` gives it.
fn aggregate_name(func: &str) -> String {
    match func {
        "sum" | "total" => "sumSeries".into(),
        "average" | "avg" => "averageSeries".into(),
        "rangeOf" | "range" => "rangeOfSeries".into(),
        other => format!("{other}Series"),
    }
}

/// Combines `series` column by column with `func` into one series.
fn combine(series: &[Series], func: &str, name: String) -> Option<Series> {
    if series.is_empty() {
        return None;
    }
    let refs: Vec<&Series> = series.iter().collect();
    let n = normalize(&refs);
    let fold = match func {
        "sum" | "total" => Some(Fold::Sum),
        "average" | "avg" => Some(Fold::Average),
        "max" => Some(Fold::Max),
        "min" => Some(Fold::Min),
        "count" => Some(Fold::Count),
        _ => None,
    };
    let values = match fold {
        Some(fold) => n.fold(fold),
        None => n.combine(|column| aggregate_values(func, column).flatten()),
    };
    let mut out = Series::new(&name, n.start, n.end, n.step, values);
    out.tags = shared_tags(series, &name);
    out.tags.insert("aggregatedBy".into(), func.to_string());
    out.path_expression = name;
    Some(out)
}

/// The tags every input shares; `name` falls back to the series name.
fn shared_tags(series: &[Series], name: &str) -> BTreeMap<String, String> {
    let mut tags = series[0].tags.clone();
    tags.retain(|k, v| series.iter().all(|s| s.tags.get(k) == Some(v)));
    tags.entry("name".into())
        .or_insert_with(|| name.to_string());
    tags
}

fn aggregate_series(
    ctx: &Context<'_>,
    call: &Call<'_>,
    func: &str,
) -> Result<Vec<Series>, EvalError> {
    let series = call.series_lists(ctx, 0)?;
    let name = format!("{}({})", call.name, path_expressions(&series));
    Ok(combine(&series, func, name).into_iter().collect())
}

fn aggregate_named(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let series = call.series(ctx, 0)?;
    let func = call
        .string(ctx, 1, "func")?
        .ok_or_else(|| bad(call, "func is required"))?;
    if aggregate_values(&func, &[]).is_none() {
        return Err(bad(
            call,
            format!("unsupported aggregation function: {func}"),
        ));
    }
    let name = format!("{}({})", aggregate_name(&func), path_expressions(&series));
    Ok(combine(&series, &func, name).into_iter().collect())
}

fn count_series(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let series = call.series_lists(ctx, 0)?;
    if series.is_empty() {
        return Ok(Vec::new());
    }
    let refs: Vec<&Series> = series.iter().collect();
    let n = normalize(&refs);
    let count = series.len() as f64;
    let name = format!("countSeries({})", path_expressions(&series));
    let values = n.combine(|_| Some(count));
    let mut out = Series::new(&name, n.start, n.end, n.step, values);
    out.tags = shared_tags(&series, &name);
    Ok(vec![out])
}

/// NIST nearest rank over the known values.
fn percentile(values: &[f64], n: f64, interpolate: bool) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let fractional = n / 100.0 * (sorted.len() as f64 + 1.0);
    let rank = (fractional.ceil() as i64).clamp(1, sorted.len() as i64) as usize;
    let mut value = sorted[rank - 1];
    if interpolate && rank < sorted.len() {
        let next = sorted[rank];
        value += (fractional - (rank as f64 - 1.0)).fract() * (next - value);
    }
    Some(value)
}

fn percentile_of_series(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let series = call.series(ctx, 0)?;
    let n = call.required_number(ctx, 1, "n")?;
    let interpolate = call.boolean(ctx, 2, "interpolate")?;
    if series.is_empty() {
        return Ok(Vec::new());
    }
    let name = format!(
        "percentileOfSeries({},{})",
        series[0].path_expression,
        fmt_g(n)
    );
    let refs: Vec<&Series> = series.iter().collect();
    let norm = normalize(&refs);
    let values = norm.combine(|column| percentile(&known(column), n, interpolate));
    let mut out = Series::new(&name, norm.start, norm.end, norm.step, values);
    out.path_expression = name;
    Ok(vec![out])
}

/// Two series on one step: (normalized a, normalized b, start, end, step).
fn pair(a: &Series, b: &Series) -> (Vec<Option<f64>>, Vec<Option<f64>>, i64, i64, i64) {
    let n = normalize(&[a, b]);
    (n.padded(0), n.padded(1), n.start, n.end, n.step)
}

fn divide(a: &Series, b: &Series, name: String) -> Series {
    let (x, y, start, end, step) = pair(a, b);
    let values = x
        .iter()
        .zip(&y)
        .map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) if *y != 0.0 => Some(x / y),
            _ => None,
        })
        .collect();
    let mut out = Series::new(&name, start, end, step, values);
    out.path_expression = name;
    out
}

fn divide_series(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let dividends = call.series(ctx, 0)?;
    let divisors = match call
        .arg(1, "divisorSeries")
        .map(|e| ctx.value(e))
        .transpose()?
    {
        Some(Value::Series(s)) => s,
        _ => return Err(bad(call, "divisorSeries must be a series list")),
    };
    if divisors.len() != 1 {
        return Err(bad(
            call,
            format!(
                "divisorSeries must be exactly one series, not {}",
                divisors.len()
            ),
        ));
    }
    let divisor = &divisors[0];
    Ok(dividends
        .iter()
        .map(|d| {
            divide(
                d,
                divisor,
                format!("divideSeries({},{})", d.name, divisor.name),
            )
        })
        .collect())
}

fn divide_series_lists(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let dividends = call.series(ctx, 0)?;
    let divisors = match call
        .arg(1, "divisorSeriesList")
        .map(|e| ctx.value(e))
        .transpose()?
    {
        Some(Value::Series(s)) => s,
        _ => return Err(bad(call, "divisorSeriesList must be a series list")),
    };
    if dividends.len() != divisors.len() {
        return Err(bad(call, "both lists must have the same length"));
    }
    Ok(dividends
        .iter()
        .zip(&divisors)
        .map(|(d, s)| divide(d, s, format!("divideSeries({},{})", d.name, s.name)))
        .collect())
}

fn as_percent(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let series = call.series(ctx, 0)?;
    if series.is_empty() {
        return Ok(Vec::new());
    }
    let percent = |a: &Series, total: &Series, name: String| {
        let (x, y, start, end, step) = pair(a, total);
        let values = x
            .iter()
            .zip(&y)
            .map(|(x, y)| match (x, y) {
                (Some(x), Some(y)) if *y != 0.0 => Some(x * 100.0 / y),
                _ => None,
            })
            .collect();
        let mut out = Series::new(&name, start, end, step, values);
        out.path_expression = name;
        out
    };
    match call.arg(1, "total").map(|e| ctx.value(e)).transpose()? {
        None | Some(Value::None) => {
            let total_name = format!("sumSeries({})", path_expressions(&series));
            let Some(total) = combine(&series, "sum", total_name.clone()) else {
                return Ok(Vec::new());
            };
            Ok(series
                .iter()
                .map(|s| percent(s, &total, format!("asPercent({},{})", s.name, total_name)))
                .collect())
        }
        Some(Value::Number(n)) => Ok(series
            .iter()
            .map(|s| {
                let name = format!("asPercent({},{})", s.name, fmt_g(n));
                let mut out = s.with_values(
                    s.values
                        .iter()
                        .map(|v| v.and_then(|v| if n == 0.0 { None } else { Some(v * 100.0 / n) }))
                        .collect(),
                );
                out.name = name.clone();
                out.path_expression = name;
                out
            })
            .collect()),
        Some(Value::Series(totals)) if totals.len() == 1 => Ok(series
            .iter()
            .map(|s| {
                percent(
                    s,
                    &totals[0],
                    format!("asPercent({},{})", s.name, totals[0].name),
                )
            })
            .collect()),
        Some(Value::Series(totals)) if totals.len() == series.len() => Ok(series
            .iter()
            .zip(&totals)
            .map(|(s, t)| percent(s, t, format!("asPercent({},{})", s.name, t.name)))
            .collect()),
        Some(_) => Err(bad(
            call,
            "total must be a number, one series, or as many series as the list",
        )),
    }
}

// ------------------------------------------------------------- transform

/// Renames each series `template(name, args)` and sets its path
/// expression to the new name, as graphite-web's transforms do.
fn renamed(series: &mut Series, name: String) {
    series.name = name.clone();
    series.path_expression = name;
}

fn map_values(
    ctx: &Context<'_>,
    call: &Call<'_>,
    label: &str,
    f: impl Fn(f64) -> Option<f64>,
) -> Result<Vec<Series>, EvalError> {
    map_all(ctx, call, label, |v| v.and_then(&f))
}

/// Like `map_values`, but `f` also sees the None values.
fn map_all(
    ctx: &Context<'_>,
    call: &Call<'_>,
    label: &str,
    f: impl Fn(Option<f64>) -> Option<f64>,
) -> Result<Vec<Series>, EvalError> {
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        s.values = s.values.iter().map(|v| f(*v)).collect();
        let name = format!("{label}({})", s.name);
        renamed(s, name);
    }
    Ok(series)
}

fn logarithm(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let base = call.number(ctx, 1, "base")?.unwrap_or(10.0);
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        s.values = s
            .values
            .iter()
            .map(|v| v.filter(|v| *v > 0.0).map(|v| v.ln() / base.ln()))
            .collect();
        let name = format!("log({}, {})", s.name, fmt_g(base));
        renamed(s, name);
    }
    Ok(series)
}

fn offset_to_zero(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        let minimum = aggregate_values("min", &s.values).flatten();
        if let Some(minimum) = minimum {
            s.values = s.values.iter().map(|v| v.map(|v| v - minimum)).collect();
        }
        let name = format!("offsetToZero({})", s.name);
        renamed(s, name);
    }
    Ok(series)
}

fn sort_by_minima(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let mut series: Vec<Series> = call
        .series(ctx, 0)?
        .into_iter()
        .filter(|s| aggregate_values("max", &s.values).flatten().unwrap_or(0.0) > 0.0)
        .collect();
    let key = |s: &Series| {
        aggregate_values("min", &s.values)
            .flatten()
            .unwrap_or(f64::NEG_INFINITY)
    };
    series.sort_by(|a, b| key(a).total_cmp(&key(b)));
    Ok(series)
}

fn scale(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let factor = call.required_number(ctx, 1, "factor")?;
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        s.values = s.values.iter().map(|v| v.map(|v| v * factor)).collect();
        let name = format!("scale({},{})", s.name, fmt_g(factor));
        s.tags.insert("scale".into(), py_float(factor));
        renamed(s, name);
    }
    Ok(series)
}

fn scale_to_seconds(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let seconds = call.required_number(ctx, 1, "seconds")?;
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        let factor = seconds / s.step as f64;
        // graphite-web rounds to 6 decimals here.
        s.values = s
            .values
            .iter()
            .map(|v| v.map(|v| (v * factor * 1e6).round() / 1e6))
            .collect();
        let name = format!("scaleToSeconds({},{})", s.name, fmt_g(seconds));
        renamed(s, name);
    }
    Ok(series)
}

fn offset(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let amount = call.required_number(ctx, 1, "factor")?;
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        s.values = s.values.iter().map(|v| v.map(|v| v + amount)).collect();
        let name = format!("offset({},{})", s.name, fmt_g(amount));
        renamed(s, name);
    }
    Ok(series)
}

fn pow(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let factor = call.required_number(ctx, 1, "factor")?;
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        s.values = s
            .values
            .iter()
            .map(|v| v.map(|v| v.powf(factor)).filter(|v| v.is_finite()))
            .collect();
        let name = format!("pow({},{})", s.name, fmt_g(factor));
        renamed(s, name);
    }
    Ok(series)
}

fn derivative(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        let mut previous: Option<f64> = None;
        s.values = s
            .values
            .iter()
            .map(|v| {
                let out = match (v, previous) {
                    (Some(v), Some(p)) => Some(v - p),
                    _ => None,
                };
                previous = *v;
                out
            })
            .collect();
        let name = format!("derivative({})", s.name);
        renamed(s, name);
    }
    Ok(series)
}

fn non_negative_derivative(
    ctx: &Context<'_>,
    call: &Call<'_>,
    per_second: bool,
) -> Result<Vec<Series>, EvalError> {
    let max = call.number(ctx, 1, "maxValue")?;
    let min = call.number(ctx, 2, "minValue")?;
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        let step = s.step as f64;
        let mut previous: Option<f64> = None;
        s.values = s
            .values
            .iter()
            .map(|v| {
                let Some(v) = *v else {
                    previous = None;
                    return None;
                };
                if max.is_some_and(|m| v > m) || min.is_some_and(|m| v < m) {
                    previous = None;
                    return None;
                }
                let out = previous.and_then(|p| {
                    let delta = v - p;
                    if delta >= 0.0 {
                        Some(delta)
                    } else {
                        max.map(|m| m + 1.0 + v - p - min.unwrap_or(0.0))
                    }
                });
                previous = Some(v);
                if per_second {
                    out.map(|d| d / step)
                } else {
                    out
                }
            })
            .collect();
        let name = format!("{}({})", call.name, s.name);
        renamed(s, name);
    }
    Ok(series)
}

fn integral(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        let mut total = 0.0;
        s.values = s
            .values
            .iter()
            .map(|v| {
                v.map(|v| {
                    total += v;
                    total
                })
            })
            .collect();
        let name = format!("integral({})", s.name);
        renamed(s, name);
    }
    Ok(series)
}

fn keep_last_value(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let limit = call.number(ctx, 1, "limit")?.map(|l| l as usize);
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        let mut out = s.values.clone();
        let mut last: Option<f64> = None;
        let mut gap_start = None;
        for i in 0..out.len() {
            match out[i] {
                Some(v) => {
                    if let (Some(start), Some(fill)) = (gap_start.take(), last) {
                        if limit.is_none_or(|l| i - start <= l) {
                            for slot in &mut out[start..i] {
                                *slot = Some(fill);
                            }
                        }
                    }
                    last = Some(v);
                }
                None => {
                    if gap_start.is_none() {
                        gap_start = Some(i);
                    }
                }
            }
        }
        // A gap at the end is filled too (graphite-web does).
        if let (Some(start), Some(fill)) = (gap_start, last) {
            if limit.is_none_or(|l| out.len() - start <= l) {
                for slot in &mut out[start..] {
                    *slot = Some(fill);
                }
            }
        }
        s.values = out;
        let name = format!("keepLastValue({})", s.name);
        renamed(s, name);
    }
    Ok(series)
}

fn transform_null(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let default = call.number(ctx, 1, "default")?.unwrap_or(0.0);
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        s.values = s
            .values
            .iter()
            .map(|v| Some(v.unwrap_or(default)))
            .collect();
        let name = format!("transformNull({},{})", s.name, fmt_g(default));
        renamed(s, name);
    }
    Ok(series)
}

fn changed(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        let mut previous: Option<f64> = None;
        s.values = s
            .values
            .iter()
            .map(|v| match v {
                Some(v) => {
                    let changed = previous.is_some_and(|p| p != *v);
                    previous = Some(*v);
                    Some(if changed { 1.0 } else { 0.0 })
                }
                None => Some(0.0),
            })
            .collect();
        let name = format!("changed({})", s.name);
        renamed(s, name);
    }
    Ok(series)
}

fn delay(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let steps = call.required_number(ctx, 1, "steps")? as i64;
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        let n = s.values.len() as i64;
        s.values = (0..n)
            .map(|i| {
                let from = i - steps;
                if (0..n).contains(&from) {
                    s.values[from as usize]
                } else {
                    None
                }
            })
            .collect();
        let name = format!("delay({},{})", s.name, steps);
        renamed(s, name);
    }
    Ok(series)
}

fn consolidate_by(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let func = call
        .string(ctx, 1, "consolidationFunc")?
        .ok_or_else(|| bad(call, "consolidationFunc is required"))?;
    let how = Consolidation::from_name(&func)
        .ok_or_else(|| bad(call, format!("unknown consolidation function: {func}")))?;
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        s.consolidation = how;
        let name = format!("consolidateBy({},\"{func}\")", s.name);
        renamed(s, name);
    }
    Ok(series)
}

fn cumulative(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        s.consolidation = Consolidation::Sum;
        let name = format!("consolidateBy({},\"sum\")", s.name);
        renamed(s, name);
    }
    Ok(series)
}

/// A window given as points (a number) or as time (a string).
enum Window {
    Points(usize),
    Seconds(i64),
}

fn moving(ctx: &Context<'_>, call: &Call<'_>, func: &str) -> Result<Vec<Series>, EvalError> {
    let window = match call
        .arg(1, "windowSize")
        .map(|e| ctx.value(e))
        .transpose()?
    {
        Some(Value::Number(n)) if n >= 1.0 => Window::Points(n as usize),
        Some(Value::Str(text)) => {
            let text = if text.starts_with(['-', '+']) {
                text
            } else {
                format!("-{text}")
            };
            let secs = parse_offset(&text).map_err(|e| bad(call, e))?.abs();
            if secs == 0 {
                return Err(bad(call, "windowSize must be positive"));
            }
            Window::Seconds(secs)
        }
        _ => {
            return Err(bad(
                call,
                "windowSize must be a positive number or an interval",
            ))
        }
    };
    let xff = call.number(ctx, 2, "xFilesFactor")?.unwrap_or(ctx.xff);
    let written = call.written_arg(1, "windowSize").unwrap_or_default();
    // Fetch a window before `from`, so the first points have full windows.
    let first = call.series(ctx, 0)?;
    let step = first.iter().map(|s| s.step).max().unwrap_or(1);
    let preview = match window {
        Window::Points(n) => n as i64 * step,
        Window::Seconds(s) => s,
    };
    let earlier = ctx.shifted(ctx.from - preview, ctx.until);
    let series = call.series(&earlier, 0)?;
    let mut out = Vec::with_capacity(series.len());
    for s in series {
        // As graphite-web: the output starts `preview` after the fetched
        // start, and point i aggregates the W raw points before it.
        let points = match window {
            Window::Points(n) => n,
            Window::Seconds(secs) => (secs / s.step.max(1)) as usize,
        };
        let values: Vec<Option<f64>> = (points.min(s.values.len())..s.values.len())
            .map(|i| {
                let window = &s.values[i - points..i];
                let known = known(window);
                if known.is_empty() || (known.len() as f64) / (points.max(1) as f64) < xff {
                    return None;
                }
                aggregate_values(func, window).flatten()
            })
            .collect();
        let start = s.start + preview;
        let name = format!("{}({},{written})", call.name, s.name);
        let mut r = s.with_values(values);
        r.start = start;
        renamed(&mut r, name);
        out.push(r);
    }
    Ok(out)
}

fn summarize(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let interval_text = call
        .string(ctx, 1, "intervalString")?
        .ok_or_else(|| bad(call, "intervalString is required"))?;
    let func = call.string(ctx, 2, "func")?.unwrap_or_else(|| "sum".into());
    let align = call.boolean(ctx, 3, "alignToFrom")?;
    let signed = if interval_text.starts_with(['-', '+']) {
        interval_text.clone()
    } else {
        format!("-{interval_text}")
    };
    let interval = parse_offset(&signed).map_err(|e| bad(call, e))?.abs();
    if interval == 0 {
        return Err(bad(call, "the interval must be positive"));
    }
    if aggregate_values(&func, &[]).is_none() {
        return Err(bad(
            call,
            format!("unsupported aggregation function: {func}"),
        ));
    }
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        let (start, end) = if align {
            (s.start, s.end)
        } else {
            (
                s.start - s.start.rem_euclid(interval),
                s.end - s.end.rem_euclid(interval) + interval,
            )
        };
        // range(start, end, interval): a last partial bucket counts.
        let buckets = ((end - start).max(0) + interval - 1).div_euclid(interval) as usize;
        let mut grouped: Vec<Vec<Option<f64>>> = vec![Vec::new(); buckets];
        for (ts, v) in s.timestamps().zip(&s.values) {
            let k = (ts - start).div_euclid(interval);
            if (0..buckets as i64).contains(&k) {
                grouped[k as usize].push(*v);
            }
        }
        let per_bucket = (interval / s.step.max(1)).max(1) as f64;
        let xff = s.xff;
        let values = grouped
            .iter()
            .map(|g| {
                let n = g.iter().flatten().count();
                if n == 0 || (n as f64) / per_bucket < xff {
                    None
                } else {
                    aggregate_values(&func, g).flatten()
                }
            })
            .collect();
        let mut name = format!("summarize({}, \"{interval_text}\", \"{func}\"", s.name);
        if align {
            name.push_str(", true");
        }
        name.push(')');
        s.values = values;
        s.start = start;
        s.end = start + buckets as i64 * interval;
        s.step = interval;
        renamed(s, name);
    }
    Ok(series)
}

/// hitcount: values are taken as hits per second, spread over the
/// buckets each point's step overlaps. With `alignToInterval` the window
/// is fetched again from `from` truncated to the interval's unit.
fn hitcount(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let interval_text = call
        .string(ctx, 1, "intervalString")?
        .ok_or_else(|| bad(call, "intervalString is required"))?;
    let align = call.boolean(ctx, 2, "alignToInterval")?;
    let signed = if interval_text.starts_with(['-', '+']) {
        interval_text.clone()
    } else {
        format!("-{interval_text}")
    };
    let interval = parse_offset(&signed).map_err(|e| bad(call, e))?.abs();
    if interval == 0 {
        return Err(bad(call, "the interval must be positive"));
    }
    let mut series = if align {
        let unit = [86_400, 3_600, 60]
            .into_iter()
            .find(|unit| interval >= *unit)
            .unwrap_or(1);
        let aligned = ctx.shifted(ctx.from - ctx.from.rem_euclid(unit), ctx.until);
        let mut series = call.series(&aligned, 0)?;
        for s in &mut series {
            let count = (s.end - s.start).div_euclid(interval);
            s.end = s.start + count * interval + interval;
        }
        series
    } else {
        call.series(ctx, 0)?
    };
    for s in &mut series {
        let step = s.step.max(1);
        let bucket_count = ((s.end - s.start).max(0) + interval - 1).div_euclid(interval);
        let new_start = s.end - bucket_count * interval;
        let mut sums: Vec<Option<f64>> = vec![None; bucket_count.max(0) as usize];
        let mut add = |bucket: i64, hits: f64| {
            if let Some(slot) = usize::try_from(bucket).ok().and_then(|b| sums.get_mut(b)) {
                *slot = Some(slot.unwrap_or(0.0) + hits);
            }
        };
        for (i, value) in s.values.iter().enumerate() {
            let Some(value) = *value else { continue };
            let start_time = s.start + i as i64 * step;
            let (start_bucket, start_mod) = (
                (start_time - new_start).div_euclid(interval),
                (start_time - new_start).rem_euclid(interval),
            );
            let end_time = start_time + step;
            let (mut end_bucket, mut end_mod) = (
                (end_time - new_start).div_euclid(interval),
                (end_time - new_start).rem_euclid(interval),
            );
            if end_bucket >= bucket_count {
                end_bucket = bucket_count - 1;
                end_mod = interval;
            }
            if start_bucket == end_bucket {
                add(start_bucket, value * (end_mod - start_mod) as f64);
            } else {
                add(start_bucket, value * (interval - start_mod) as f64);
                for j in start_bucket + 1..end_bucket {
                    add(j, value * interval as f64);
                }
                if end_mod > 0 {
                    add(end_bucket, value * end_mod as f64);
                }
            }
        }
        let name = format!(
            "hitcount({}, \"{interval_text}\"{})",
            s.name,
            if align { ", true" } else { "" }
        );
        s.tags.insert("hitcount".into(), interval_text.clone());
        s.values = sums;
        s.start = new_start;
        s.end = new_start + bucket_count * interval;
        s.step = interval;
        renamed(s, name);
    }
    Ok(series)
}

fn time_shift(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let text = call
        .string(ctx, 1, "timeShift")?
        .ok_or_else(|| bad(call, "timeShift is required"))?;
    let text = if text.starts_with(['-', '+']) {
        text
    } else {
        format!("-{text}")
    };
    let delta = parse_offset(&text).map_err(|e| bad(call, e))?;
    let shifted = ctx.shifted(ctx.from + delta, ctx.until + delta);
    let mut series = call.series(&shifted, 0)?;
    for s in &mut series {
        s.start -= delta;
        s.end -= delta;
        let name = format!("timeShift({}, \"{text}\")", s.name);
        renamed(s, name);
    }
    Ok(series)
}

fn n_percentile(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let n = call.required_number(ctx, 1, "n")?;
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        let value = percentile(&known(&s.values), n, false);
        s.values = vec![value; s.values.len()];
        let name = format!("nPercentile({}, {})", s.name, fmt_g(n));
        renamed(s, name);
    }
    Ok(series)
}

// ---------------------------------------------------------------- filter

#[derive(Clone, Copy)]
enum Stat {
    Current,
    Max,
    Average,
    Total,
}

fn stat(s: &Series, which: Stat) -> Option<f64> {
    let v = known(&s.values);
    match which {
        Stat::Current => v.last().copied(),
        Stat::Max => v.iter().copied().reduce(f64::max),
        Stat::Average => (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64),
        Stat::Total => Some(v.iter().sum()),
    }
}

fn top(
    ctx: &Context<'_>,
    call: &Call<'_>,
    which: Stat,
    highest: bool,
) -> Result<Vec<Series>, EvalError> {
    let n = call.number(ctx, 1, "n")?.unwrap_or(1.0).max(0.0) as usize;
    let mut series: Vec<Series> = call
        .series(ctx, 0)?
        .into_iter()
        .filter(|s| stat(s, which).is_some())
        .collect();
    // Stable: equal values keep list order.
    series.sort_by(|a, b| {
        let (x, y) = (stat(a, which).unwrap_or(0.0), stat(b, which).unwrap_or(0.0));
        if highest {
            y.total_cmp(&x)
        } else {
            x.total_cmp(&y)
        }
    });
    series.truncate(n);
    Ok(series)
}

/// graphite-web's operator table: an unknown stat (no values) passes
/// `!=`, `<` and `<=`, and fails the others.
fn passes(operator: &str, value: Option<f64>, threshold: f64) -> Option<bool> {
    Some(match operator {
        "=" => value.is_some_and(|v| v == threshold),
        "!=" => value.is_none_or(|v| v != threshold),
        ">" => value.is_some_and(|v| v > threshold),
        ">=" => value.is_some_and(|v| v >= threshold),
        "<" => value.is_none_or(|v| v < threshold),
        "<=" => value.is_none_or(|v| v <= threshold),
        _ => return None,
    })
}

/// The series whose `func` over their values passes `operator threshold`.
fn filter_by(series: Vec<Series>, func: &str, operator: &str, threshold: f64) -> Vec<Series> {
    series
        .into_iter()
        .filter(|s| {
            let value = aggregate_values(func, &s.values).flatten();
            passes(operator, value, threshold).unwrap_or(false)
        })
        .collect()
}

/// currentAbove, averageBelow, ...: filterSeries with a fixed func and operator.
fn filter_named(
    ctx: &Context<'_>,
    call: &Call<'_>,
    func: &str,
    operator: &str,
) -> Result<Vec<Series>, EvalError> {
    let n = call.required_number(ctx, 1, "n")?;
    Ok(filter_by(call.series(ctx, 0)?, func, operator, n))
}

fn filter_series(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let func = call
        .string(ctx, 1, "func")?
        .ok_or_else(|| bad(call, "func is required"))?;
    let operator = call
        .string(ctx, 2, "operator")?
        .ok_or_else(|| bad(call, "operator is required"))?;
    let threshold = call.required_number(ctx, 3, "threshold")?;
    if aggregate_values(&func, &[]).is_none() {
        return Err(bad(
            call,
            format!("Unsupported aggregation function: {func}"),
        ));
    }
    if passes(&operator, None, 0.0).is_none() {
        return Err(bad(
            call,
            format!("Unsupported operator: {operator} (=, !=, >, >=, <, <=)"),
        ));
    }
    Ok(filter_by(call.series(ctx, 0)?, &func, &operator, threshold))
}

fn remove_empty(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let xff = call.number(ctx, 1, "xFilesFactor")?.unwrap_or(ctx.xff);
    Ok(call
        .series(ctx, 0)?
        .into_iter()
        .filter(|s| {
            let n = s.values.iter().flatten().count();
            n > 0 && (n as f64) / (s.values.len().max(1) as f64) >= xff
        })
        .collect())
}

fn remove_values(
    ctx: &Context<'_>,
    call: &Call<'_>,
    above: bool,
) -> Result<Vec<Series>, EvalError> {
    let n = call.required_number(ctx, 1, "n")?;
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        s.values = s
            .values
            .iter()
            .map(|v| v.filter(|v| if above { *v <= n } else { *v >= n }))
            .collect();
        let name = format!("{}({}, {})", call.name, s.name, fmt_g(n));
        renamed(s, name);
    }
    Ok(series)
}

fn regex_of(call: &Call<'_>, pattern: &str) -> Result<regex::Regex, EvalError> {
    regex::Regex::new(pattern).map_err(|e| bad(call, format!("bad regular expression: {e}")))
}

fn grep(ctx: &Context<'_>, call: &Call<'_>, keep: bool) -> Result<Vec<Series>, EvalError> {
    let pattern = call
        .string(ctx, 1, "pattern")?
        .ok_or_else(|| bad(call, "pattern is required"))?;
    let re = regex_of(call, &pattern)?;
    Ok(call
        .series(ctx, 0)?
        .into_iter()
        .filter(|s| re.is_match(&s.name) == keep)
        .collect())
}

fn limit(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let n = call.required_number(ctx, 1, "n")?.max(0.0) as usize;
    let mut series = call.series(ctx, 0)?;
    series.truncate(n);
    Ok(series)
}

fn natural_key(name: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut digits = String::new();
    for c in name.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() {
                out.push((
                    std::mem::take(&mut text),
                    digits.parse().unwrap_or(u64::MAX),
                ));
                digits.clear();
            }
            text.push(c);
        }
    }
    out.push((text, digits.parse().unwrap_or(0)));
    out
}

fn sort_by_name(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let natural = call.boolean(ctx, 1, "natural")?;
    let reverse = call.boolean(ctx, 2, "reverse")?;
    let mut series = call.series(ctx, 0)?;
    if natural {
        series.sort_by_key(|s| natural_key(&s.name));
    } else {
        series.sort_by(|a, b| a.name.cmp(&b.name));
    }
    if reverse {
        series.reverse();
    }
    Ok(series)
}

fn sort_by(
    ctx: &Context<'_>,
    call: &Call<'_>,
    which: Stat,
    descending: bool,
) -> Result<Vec<Series>, EvalError> {
    let mut series = call.series(ctx, 0)?;
    series.sort_by(|a, b| {
        let (x, y) = (
            stat(a, which).unwrap_or(f64::NEG_INFINITY),
            stat(b, which).unwrap_or(f64::NEG_INFINITY),
        );
        if descending {
            y.total_cmp(&x)
        } else {
            x.total_cmp(&y)
        }
    });
    Ok(series)
}

// ----------------------------------------------------------------- alias

fn alias(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let name = call
        .string(ctx, 1, "newName")?
        .ok_or_else(|| bad(call, "newName is required"))?;
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        s.name = name.clone();
    }
    Ok(series)
}

/// The first path-like token inside a (function) name, as graphite-web's
/// aliasByNode takes it.
fn path_in_name(name: &str) -> &str {
    let inner = name.rsplit('(').next().unwrap_or(name);
    let end = inner.find([',', ')']).unwrap_or(inner.len());
    inner[..end].trim()
}

fn node_of(name: &str, node: i64) -> Option<&str> {
    // A tagged name's nodes are those of its metric, before the tags.
    let path = path_in_name(name);
    let metric = path.split(';').next().unwrap_or(path);
    let parts: Vec<&str> = metric.split('.').collect();
    let index = if node < 0 {
        parts.len() as i64 + node
    } else {
        node
    };
    usize::try_from(index)
        .ok()
        .and_then(|i| parts.get(i).copied())
}

fn nodes_arg(ctx: &Context<'_>, call: &Call<'_>, from: usize) -> Result<Vec<Value>, EvalError> {
    call.args[from.min(call.args.len())..]
        .iter()
        .map(|e| ctx.value(e))
        .collect()
}

fn node_key(s: &Series, nodes: &[Value], call: &Call<'_>) -> Result<String, EvalError> {
    let mut parts = Vec::new();
    for node in nodes {
        match node {
            Value::Number(n) => parts.push(node_of(&s.name, *n as i64).unwrap_or("").to_string()),
            Value::Str(tag) => parts.push(s.tags.get(tag).cloned().unwrap_or_default()),
            _ => return Err(bad(call, "nodes must be numbers or tag names")),
        }
    }
    Ok(parts.join("."))
}

fn alias_by_node(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let nodes = nodes_arg(ctx, call, 1)?;
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        s.name = node_key(s, &nodes, call)?;
    }
    Ok(series)
}

fn alias_by_metric(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        let path = path_in_name(&s.name);
        s.name = path.rsplit('.').next().unwrap_or(path).to_string();
    }
    Ok(series)
}

/// Python's `re.sub` replacement syntax (`\1`, `\g<1>`) in Rust's (`${1}`).
fn python_replacement(replace: &str) -> String {
    let mut out = String::new();
    let mut chars = replace.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    let mut n = String::new();
                    while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                        n.push(*d);
                        chars.next();
                    }
                    out.push_str(&format!("${{{n}}}"));
                }
                Some('g') => {
                    chars.next();
                    if chars.peek() == Some(&'<') {
                        chars.next();
                        let group: String = chars.by_ref().take_while(|c| *c != '>').collect();
                        out.push_str(&format!("${{{group}}}"));
                    } else {
                        out.push_str("\\g");
                    }
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            other => out.push(other),
        }
    }
    out
}

fn alias_sub(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let search = call
        .string(ctx, 1, "search")?
        .ok_or_else(|| bad(call, "search is required"))?;
    let replace = call
        .string(ctx, 2, "replace")?
        .ok_or_else(|| bad(call, "replace is required"))?;
    let re = regex_of(call, &search)?;
    let replacement = python_replacement(&replace);
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        s.name = re.replace_all(&s.name, replacement.as_str()).into_owned();
    }
    Ok(series)
}

fn legend_value(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let kinds: Vec<String> = call.args[1.min(call.args.len())..]
        .iter()
        .map(|e| match ctx.value(e) {
            Ok(Value::Str(s)) => Ok(s),
            _ => Err(bad(call, "value types must be strings")),
        })
        .collect::<Result<_, _>>()?;
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        for kind in &kinds {
            let func = match kind.as_str() {
                "avg" => "average",
                "total" => "sum",
                other => other,
            };
            let value = aggregate_values(func, &s.values).flatten();
            let text = value.map(py_float).unwrap_or_else(|| "None".into());
            s.name = format!("{} ({kind}: {text})", s.name);
        }
    }
    Ok(series)
}

// ----------------------------------------------------------------- group

fn group(series: Vec<Series>, keys: Vec<String>, func: &str) -> Vec<Series> {
    let mut groups: Vec<(String, Vec<Series>)> = Vec::new();
    for (s, key) in series.into_iter().zip(keys) {
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(s),
            None => groups.push((key, vec![s])),
        }
    }
    groups
        .into_iter()
        .filter_map(|(key, members)| {
            let inner = format!("{}({})", aggregate_name(func), path_expressions(&members));
            let mut out = combine(&members, func, inner)?;
            out.name = key;
            Some(out)
        })
        .collect()
}

/// aggregateWithWildcards and its fixed-function forms: series grouped by
/// their name without the nodes at the given positions (in first-seen
/// order), each group combined and named by that key.
fn with_wildcards(
    ctx: &Context<'_>,
    call: &Call<'_>,
    fixed: Option<&str>,
) -> Result<Vec<Series>, EvalError> {
    let (func, first_position) = match fixed {
        Some(func) => (func.to_string(), 1),
        None => (
            call.string(ctx, 1, "func")?
                .ok_or_else(|| bad(call, "func is required"))?,
            2,
        ),
    };
    if aggregate_values(&func, &[]).is_none() {
        return Err(bad(
            call,
            format!("Unsupported aggregation function: {func}"),
        ));
    }
    let mut positions = Vec::new();
    for value in nodes_arg(ctx, call, first_position)? {
        match value {
            Value::Number(n) => positions.push(n as i64),
            _ => return Err(bad(call, "positions must be numbers")),
        }
    }
    let series = call.series(ctx, 0)?;
    let keys = series
        .iter()
        .map(|s| {
            s.name
                .split('.')
                .enumerate()
                .filter(|(i, _)| !positions.contains(&(*i as i64)))
                .map(|(_, part)| part)
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect();
    Ok(group(series, keys, &func))
}

fn group_by_node(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let node = match call.arg(1, "nodeNum").map(|e| ctx.value(e)).transpose()? {
        Some(v @ (Value::Number(_) | Value::Str(_))) => v,
        _ => return Err(bad(call, "nodeNum is required")),
    };
    let func = call
        .string(ctx, 2, "callback")?
        .unwrap_or_else(|| "average".into());
    if aggregate_values(&func, &[]).is_none() {
        return Err(bad(
            call,
            format!("unsupported aggregation function: {func}"),
        ));
    }
    let series = call.series(ctx, 0)?;
    let keys = series
        .iter()
        .map(|s| node_key(s, std::slice::from_ref(&node), call))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(group(series, keys, &func))
}

fn group_by_nodes(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let func = call
        .string(ctx, 1, "callback")?
        .ok_or_else(|| bad(call, "callback is required"))?;
    if aggregate_values(&func, &[]).is_none() {
        return Err(bad(
            call,
            format!("unsupported aggregation function: {func}"),
        ));
    }
    let nodes = nodes_arg(ctx, call, 2)?;
    let series = call.series(ctx, 0)?;
    let keys = series
        .iter()
        .map(|s| node_key(s, &nodes, call))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(group(series, keys, &func))
}

// ------------------------------------------------------------------ tags

fn series_by_tag(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let mut exprs = Vec::with_capacity(call.args.len());
    for expr in call.args {
        match ctx.value(expr)? {
            Value::Str(s) => exprs.push(s),
            _ => return Err(bad(call, "tag expressions must be strings")),
        }
    }
    if exprs.is_empty() {
        return Err(bad(call, "at least one tag expression is required"));
    }
    let refs: Vec<&str> = exprs.iter().map(String::as_str).collect();
    let names = ctx.source.find_tagged(&refs).map_err(|e| bad(call, e))?;
    let quoted: Vec<String> = exprs.iter().map(|e| format!("'{e}'")).collect();
    let pattern = format!("seriesByTag({})", quoted.join(","));
    ctx.fetch_names(names, &pattern)
}

fn group_by_tags(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let callback = call
        .string(ctx, 1, "callback")?
        .ok_or_else(|| bad(call, "callback is required"))?;
    // A series function's name (sumSeries) calls its aggregation (sum).
    let func = match callback.strip_suffix("Series") {
        Some(f) if aggregate_values(f, &[]).is_some() => f.to_string(),
        _ => callback.clone(),
    };
    if aggregate_values(&func, &[]).is_none() {
        return Err(bad(
            call,
            format!("unsupported aggregation function: {callback}"),
        ));
    }
    let mut tags = Vec::new();
    for expr in call.args.iter().skip(2) {
        match ctx.value(expr)? {
            Value::Str(t) => tags.push(t),
            _ => return Err(bad(call, "tags must be strings")),
        }
    }
    if tags.is_empty() {
        return Err(bad(call, "no tags specified"));
    }
    let series = call.series(ctx, 0)?;
    let by_name = tags.iter().any(|t| t == "name");
    // One shared name tag names every group; otherwise the callback does.
    let common = {
        let mut names: Vec<&str> = series
            .iter()
            .map(|s| s.tags.get("name").map_or("", String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        match names.as_slice() {
            [one] => (*one).to_string(),
            _ => callback.clone(),
        }
    };
    let keys: Vec<String> = series
        .iter()
        .map(|s| {
            let mut parts: Vec<String> = tags
                .iter()
                .filter(|t| !by_name || *t != "name")
                .map(|t| format!("{t}={}", s.tags.get(t).map_or("", String::as_str)))
                .collect();
            parts.sort();
            let head = if by_name {
                s.tags.get("name").cloned().unwrap_or_default()
            } else {
                common.clone()
            };
            std::iter::once(head)
                .chain(parts)
                .collect::<Vec<_>>()
                .join(";")
        })
        .collect();
    let mut out = group(series, keys, &func);
    for s in &mut out {
        s.path_expression = s.name.clone();
        s.tags = key_tags(&s.name);
    }
    Ok(out)
}

/// The tags a `name;k=v;...` key stands for.
fn key_tags(key: &str) -> BTreeMap<String, String> {
    let mut parts = key.split(';');
    let mut tags = BTreeMap::new();
    tags.insert("name".to_string(), parts.next().unwrap_or("").to_string());
    for part in parts {
        if let Some((k, v)) = part.split_once('=') {
            tags.insert(k.to_string(), v.to_string());
        }
    }
    tags
}

// --------------------------------------------------------------- special

fn line(ctx: &Context<'_>, value: f64, name: &str) -> Series {
    let step = ((ctx.until - ctx.from) / 2).max(1);
    let mut s = Series::new(name, ctx.from, ctx.until, step, vec![Some(value); 3]);
    s.path_expression = name.to_string();
    s
}

fn constant_line(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let value = call.required_number(ctx, 0, "value")?;
    Ok(vec![line(ctx, value, &py_float(value))])
}

fn threshold(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let value = call.required_number(ctx, 0, "value")?;
    let mut s = line(ctx, value, &py_float(value));
    if let Some(label) = call.string(ctx, 1, "label")? {
        s.name = label;
    }
    Ok(vec![s])
}

fn identity(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    call.series(ctx, 0)
}

fn rename_display(
    ctx: &Context<'_>,
    call: &Call<'_>,
    label: &str,
) -> Result<Vec<Series>, EvalError> {
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        let name = format!("{label}({})", s.name);
        renamed(s, name);
    }
    Ok(series)
}

fn dashed(ctx: &Context<'_>, call: &Call<'_>) -> Result<Vec<Series>, EvalError> {
    let length = call.number(ctx, 1, "dashLength")?.unwrap_or(5.0);
    let mut series = call.series(ctx, 0)?;
    for s in &mut series {
        let name = format!("dashed({}, {})", s.name, fmt_g(length));
        renamed(s, name);
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_g_as_python_prints_it() {
        for (v, want) in [
            (2.0, "2"),
            (20.0, "20"),
            (0.5, "0.5"),
            (-10.0, "-10"),
            (1234567.0, "1.23457e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (100000.0, "100000"),
            (f64::INFINITY, "inf"),
            (1.0 / 3.0, "0.333333"),
        ] {
            assert_eq!(fmt_g(v), want, "{v}");
        }
    }

    #[test]
    fn python_backrefs_become_rust_ones() {
        assert_eq!(python_replacement("\\1 A"), "${1} A");
        assert_eq!(python_replacement("\\g<2>x$"), "${2}x$$");
    }

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[100.0, 10.0, 0.0], 50.0, false), Some(10.0));
        assert_eq!(percentile(&[4.0], 50.0, false), Some(4.0));
        assert_eq!(percentile(&[], 50.0, false), None);
    }

    #[test]
    fn every_function_is_found_by_its_names() {
        for f in FUNCTIONS {
            assert!(std::ptr::eq(lookup(f.name).unwrap(), f));
            for a in f.aliases {
                assert!(std::ptr::eq(lookup(a).unwrap(), f));
            }
        }
        assert!(lookup("nosuchFunc").is_none());
    }
}
