//! Evaluating a parsed target against the store: path expressions become
//! series fetched from whisper files, calls run the registered functions.
//! Bounded: series and points per request are counted against the limits.

use std::cell::Cell;

use super::functions::{lookup, Call};
use super::series::Series;
use super::target::Expr;

/// Where series come from.
pub trait Source {
    /// The metric names a path expression matches, sorted.
    fn expand(&self, pattern: &str) -> Vec<String>;
    /// One metric's series over `[from, until]` as of `now` (whisper's
    /// fetch rules); None when it has no file.
    fn fetch(&self, name: &str, from: i64, until: i64, now: i64) -> Option<Series>;
    /// [`Source::fetch`] of each name, in order (a source may fetch them
    /// in parallel).
    fn fetch_many(&self, names: &[String], from: i64, until: i64, now: i64) -> Vec<Option<Series>> {
        names
            .iter()
            .map(|n| self.fetch(n, from, until, now))
            .collect()
    }
    /// Tagged series matching every tag expression (seriesByTag), sorted;
    /// an error says why the expressions are invalid.
    fn find_tagged(&self, _exprs: &[&str]) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
}

/// A store of two made-up series, `a.b` and `a.c` (any glob matches both),
/// 10 s apart, every `gap_every`-th value None: what property tests and
/// fuzzers evaluate targets over, with no files.
pub struct SyntheticSource {
    /// Values per series at most.
    pub max_points: usize,
    /// Every this many values one is None.
    pub gap_every: usize,
}

impl Source for SyntheticSource {
    fn expand(&self, pattern: &str) -> Vec<String> {
        if crate::store::index::has_glob(pattern) || pattern == "a.b" {
            vec!["a.b".into(), "a.c".into()]
        } else {
            Vec::new()
        }
    }

    fn fetch(&self, name: &str, from: i64, until: i64, _now: i64) -> Option<Series> {
        let step = 10;
        let start = from - from.rem_euclid(step) + step;
        let n = usize::try_from((until - start) / step)
            .unwrap_or(0)
            .min(self.max_points);
        let values = (0..n)
            .map(|i| (i % self.gap_every.max(1) != 0).then_some(i as f64 - 5.0))
            .collect();
        Some(Series::new(
            name,
            start,
            start + n as i64 * step,
            step,
            values,
        ))
    }
}

/// Names fetched together before the points budget is checked again: a
/// request over its budget stops within one batch.
const FETCH_BATCH: usize = 64;

/// Why a target could not be evaluated (a 400, never a panic).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// No such function.
    #[error("Received request for unknown function: {0}")]
    UnknownFunction(String),
    /// A function's arguments are wrong.
    #[error("{function}: {message}")]
    BadArgument {
        /// The function.
        function: String,
        /// What is wrong.
        message: String,
    },
    /// A limit of the request was passed.
    #[error("{0}")]
    Limit(String),
}

/// What a request may use at most.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Series fetched per request.
    pub max_series: usize,
    /// Points fetched per request.
    pub max_points: usize,
}

/// One render request's evaluation context.
pub struct Context<'a> {
    /// Window start (Unix seconds).
    pub from: i64,
    /// Window end.
    pub until: i64,
    /// The request's `now`.
    pub now: i64,
    /// The store.
    pub source: &'a dyn Source,
    /// Bounds.
    pub limits: Limits,
    /// The default xFilesFactor.
    pub xff: f64,
    series_used: Cell<usize>,
    points_used: Cell<usize>,
}

/// An evaluated argument.
#[derive(Debug, Clone)]
pub enum Value {
    /// A list of series.
    Series(Vec<Series>),
    /// A number.
    Number(f64),
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// None.
    None,
}

impl<'a> Context<'a> {
    /// A context for the window `[from, until]` as of `now`.
    pub fn new(
        from: i64,
        until: i64,
        now: i64,
        source: &'a dyn Source,
        limits: Limits,
    ) -> Context<'a> {
        Context {
            from,
            until,
            now,
            source,
            limits,
            xff: 0.0,
            series_used: Cell::new(0),
            points_used: Cell::new(0),
        }
    }

    /// The same request over another window (timeShift, moving windows),
    /// sharing this one's budget.
    pub fn shifted(&self, from: i64, until: i64) -> Context<'a> {
        Context {
            from,
            until,
            now: self.now,
            source: self.source,
            limits: self.limits,
            xff: self.xff,
            series_used: Cell::new(self.series_used.get()),
            points_used: Cell::new(self.points_used.get()),
        }
    }

    /// Evaluates `expr` to series.
    pub fn series(&self, expr: &Expr) -> Result<Vec<Series>, EvalError> {
        match self.value(expr)? {
            Value::Series(s) => Ok(s),
            _ => Err(EvalError::BadArgument {
                function: "target".into(),
                message: "a series list was expected".into(),
            }),
        }
    }

    /// Evaluates `expr`.
    pub fn value(&self, expr: &Expr) -> Result<Value, EvalError> {
        Ok(match expr {
            Expr::Path(pattern) => Value::Series(self.fetch(pattern)?),
            Expr::Call { name, args, kwargs } => {
                let def = lookup(name).ok_or_else(|| EvalError::UnknownFunction(name.clone()))?;
                let call = Call {
                    name: def.name,
                    written: name,
                    args,
                    kwargs,
                };
                Value::Series((def.run)(self, &call)?)
            }
            Expr::Number(n) => Value::Number(*n),
            Expr::Str(s) => Value::Str(s.clone()),
            Expr::Bool(b) => Value::Bool(*b),
            Expr::None => Value::None,
        })
    }

    fn fetch(&self, pattern: &str) -> Result<Vec<Series>, EvalError> {
        self.fetch_names(self.source.expand(pattern), pattern)
    }

    /// The series of `names`, within the request's budget, each marked
    /// as coming from `path_expression`.
    pub fn fetch_names(&self, names: Vec<String>, pattern: &str) -> Result<Vec<Series>, EvalError> {
        let used = self.series_used.get().saturating_add(names.len());
        if used > self.limits.max_series {
            return Err(EvalError::Limit(format!(
                "more than {} series in one request (http.max_series)",
                self.limits.max_series
            )));
        }
        self.series_used.set(used);
        let mut out = Vec::with_capacity(names.len());
        for batch in names.chunks(FETCH_BATCH) {
            let fetched = self
                .source
                .fetch_many(batch, self.from, self.until, self.now);
            for mut series in fetched.into_iter().flatten() {
                let points = self.points_used.get() + series.values.len();
                if points > self.limits.max_points {
                    return Err(EvalError::Limit(format!(
                        "more than {} points in one request (http.max_points)",
                        self.limits.max_points
                    )));
                }
                self.points_used.set(points);
                series.path_expression = pattern.to_string();
                series.xff = self.xff;
                out.push(series);
            }
        }
        Ok(out)
    }
}
