//! Graphite's HTTP read API over the store, with graphite-web 1.1.8's
//! shapes: `/render`, `/metrics/find`, `/metrics/expand`,
//! `/metrics/index.json`, `/functions`, `/version`, and empty tag
//! auto-completion. Each endpoint is a function of the request's merged
//! parameters and the store ([`ReadApi`]); `crate::http` is the transport.
//!
//! `time` is the time grammar, `target` the target grammar, `series` and
//! `functions` the arithmetic, `eval` the evaluation, `render` the output
//! formats.

pub mod eval;
pub mod events;
pub mod functions;
pub mod render;
pub mod series;
pub mod tags;
pub mod target;
pub mod time;

use std::path::PathBuf;

use eval::{Context, EvalError, Limits, Source};
use series::Series;

use crate::protocol::pickle::Pickler;
use crate::store::format::WhisperFile;
use crate::store::index::{has_glob, split_components};
use crate::store::path::metric_path;
use crate::store::Shared;

/// A request's parameters: query string and form body merged (body after
/// query, as graphite-web merges them), several values per name kept.
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The last value of `name` (graphite-web reads the last one).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (and of `name[]`).
    pub fn all(&self, name: &str) -> Vec<&str> {
        let bracketed = format!("{name}[]");
        self.0
            .iter()
            .filter(|(k, _)| *k == name || *k == bracketed)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether `name` is present at all.
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// A reply: status, content type, body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// The body (bytes: `format=pickle` is binary).
    pub body: Vec<u8>,
}

impl Reply {
    fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            content_type,
            body: body.into(),
        }
    }

    /// The body as text (lossy), for logs and tests.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// graphite-web's 400: `Invalid parameters (<message>)`.
    fn invalid(message: impl std::fmt::Display) -> Reply {
        Reply {
            status: 400,
            content_type: "text/plain; charset=utf-8",
            body: format!("Invalid parameters ({message})\n").into(),
        }
    }

    fn json_error(status: u16, message: &str) -> Reply {
        let mut body = String::from("{\"error\": ");
        render::json_string(&mut body, message);
        body.push('}');
        Reply {
            status,
            content_type: "application/json",
            body: body.into(),
        }
    }
}

/// Bounds on what one request may ask for.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Series fetched per render.
    pub max_series: usize,
    /// Points fetched per render.
    pub max_points: usize,
    /// Characters per target.
    pub max_target_length: usize,
    /// Targets per render.
    pub max_targets: usize,
    /// Names one find may return.
    pub max_find: usize,
}

/// The read API over one store.
pub struct ReadApi {
    /// The store's root.
    pub root: PathBuf,
    /// Its names and the flushes its writers still hold.
    pub store: Shared,
    /// Bounds.
    pub limits: ReadLimits,
}

impl Source for ReadApi {
    fn expand(&self, pattern: &str) -> Vec<String> {
        let pattern = pattern.trim();
        if !has_glob(pattern) {
            return if self.store.index.contains(pattern)
                || self.file_of(pattern).is_some_and(|p| p.exists())
            {
                vec![pattern.to_string()]
            } else {
                Vec::new()
            };
        }
        let mut names: Vec<String> = self
            .store
            .index
            .find(pattern, self.limits.max_series.saturating_add(1))
            .into_iter()
            .filter(|f| f.leaf)
            .map(|f| f.path)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn find_tagged(&self, exprs: &[&str]) -> Result<Vec<String>, String> {
        let mut names = self.store.tags.find_series(exprs)?;
        names.truncate(self.limits.max_series.saturating_add(1));
        Ok(names)
    }

    fn fetch_many(&self, names: &[String], from: i64, until: i64, now: i64) -> Vec<Option<Series>> {
        // Reading and decoding files is most of a large render: split it
        // over the cores (renders are already off the async workers).
        let threads = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
            .min(names.len() / PARALLEL_FETCH_MIN);
        if threads < 2 {
            return names
                .iter()
                .map(|n| self.fetch(n, from, until, now))
                .collect();
        }
        let per_thread = names.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = names
                .chunks(per_thread)
                .map(|chunk| {
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|n| self.fetch(n, from, until, now))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| {
                    w.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    }

    fn fetch(&self, name: &str, from: i64, until: i64, now: i64) -> Option<Series> {
        let path = self.file_of(name)?;
        let mut file = match WhisperFile::open_read(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(metric = name, error = %e, "render: file unreadable");
                return None;
            }
        };
        let finest = file
            .header
            .archives
            .first()
            .map(|a| i64::from(a.seconds_per_point));
        match file.fetch(from, Some(until), now) {
            Ok(Some(mut f)) => {
                // Read-your-writes: points the writers still hold go in
                // their slots (finest archive only, where they are raw).
                if finest == Some(f.step) {
                    let cached = self.store.cache.points(name);
                    for (ts, value) in self.store.pending.points(name).into_iter().chain(cached) {
                        let slot = (ts - ts.rem_euclid(f.step) - f.from) / f.step;
                        if let Some(v) =
                            usize::try_from(slot).ok().and_then(|i| f.values.get_mut(i))
                        {
                            *v = Some(value);
                        }
                    }
                }
                Some(Series::new(name, f.from, f.until, f.step, f.values))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(metric = name, error = %e, "render: fetch failed");
                None
            }
        }
    }
}

/// Names per thread below which a fetch stays on one thread (a thread
/// costs tens of microseconds; a file's fetch about as much).
const PARALLEL_FETCH_MIN: usize = 4;

/// The version graphite-web reports (Grafana switches features on it).
pub const VERSION: &str = "1.1.8";

impl ReadApi {
    /// (now − retention, last modification) of a metric's file.
    fn interval_of(&self, name: &str, now: i64) -> Option<(f64, f64)> {
        let path = self.file_of(name)?;
        let file = WhisperFile::open_read(&path).ok()?;
        let modified = std::fs::metadata(&path)
            .ok()?
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs_f64();
        Some((
            (now - i64::from(file.header.max_retention)) as f64,
            modified,
        ))
    }

    fn file_of(&self, name: &str) -> Option<PathBuf> {
        metric_path(name).ok().map(|p| self.root.join(p))
    }

    /// `/version`.
    pub fn version(&self) -> Reply {
        Reply::ok("text/html; charset=utf-8", format!("{VERSION}\n"))
    }

    /// `/render`.
    pub fn render(&self, params: &Params, wall_now: i64) -> Reply {
        let now = match params.get("now").map(|t| time::parse_time(t, wall_now)) {
            None => wall_now,
            Some(Ok(t)) => t,
            Some(Err(e)) => return Reply::invalid(e),
        };
        let parse = |name: &str, default: &str| {
            time::parse_time(
                params
                    .get(name)
                    .filter(|v| !v.is_empty())
                    .unwrap_or(default),
                now,
            )
        };
        let (mut from, mut until) = match (parse("from", "-1d"), parse("until", "now")) {
            (Ok(f), Ok(u)) => (f, u),
            (Err(e), _) | (_, Err(e)) => return Reply::invalid(e),
        };
        if from > until {
            std::mem::swap(&mut from, &mut until);
        }
        if from == until {
            return Reply::invalid("Invalid empty time range");
        }
        let format = if params.has("rawData") {
            "raw"
        } else {
            params.get("format").unwrap_or("png")
        };
        let format = if params.has("pickle") {
            "pickle"
        } else {
            format
        };
        if !matches!(format, "json" | "raw" | "csv" | "pickle") {
            return Reply {
                status: 400,
                content_type: "text/plain; charset=utf-8",
                body: format!(
                    "Invalid value for 'format' parameter: {format:?} (sluice renders json, raw, csv and pickle; no images)\n"
                )
                .into(),
            };
        }
        let targets: Vec<&str> = params
            .all("target")
            .into_iter()
            .filter(|t| !t.trim().is_empty())
            .collect();
        if targets.len() > self.limits.max_targets {
            return Reply::invalid(format!(
                "{} targets in one request; at most {} (http.max_targets)",
                targets.len(),
                self.limits.max_targets
            ));
        }
        let limits = Limits {
            max_series: self.limits.max_series,
            max_points: self.limits.max_points,
        };
        let ctx = Context::new(from, until, now, self, limits);
        let mut series = Vec::new();
        for target in targets {
            if target.len() > self.limits.max_target_length {
                return Reply::invalid(format!(
                    "a target of {} characters; at most {} (http.max_target_length)",
                    target.len(),
                    self.limits.max_target_length
                ));
            }
            let expr = match target::parse(target) {
                Ok(e) => e,
                Err(e) => return Reply::invalid(format!("{e}); targets: \"{target}\"")),
            };
            match ctx.series(&expr) {
                Ok(s) => series.extend(s),
                Err(e @ EvalError::Limit(_)) => return Reply::invalid(e),
                Err(e) => return Reply::invalid(format!("{e}); targets: \"{target}\"")),
            }
        }
        match format {
            "raw" => Reply::ok("text/plain", render::raw(&series)),
            "csv" => Reply::ok("text/csv", render::csv(&series)),
            "pickle" => Reply::ok("application/pickle", render::pickle(&series)),
            _ => {
                let max_points = params
                    .get("maxDataPoints")
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse().ok());
                let body = render::json(&series, max_points, params.has("noNullPoints"));
                with_jsonp(params, body)
            }
        }
    }

    /// `/metrics/find`.
    pub fn find(&self, params: &Params, wall_now: i64) -> Reply {
        let Some(query) = params.get("query") else {
            return Reply::invalid("Missing required parameter 'query'");
        };
        if query.is_empty() {
            return Reply::invalid("Required parameter 'query' is empty");
        }
        let format = params.get("format").unwrap_or("treejson");
        let query = if format == "completer" {
            let mut q = query.replace("..", "*.");
            if !q.ends_with('*') {
                q.push('*');
            }
            q
        } else {
            query.to_string()
        };
        let mut found = self.store.index.find(&query, self.limits.max_find);
        // graphite-web sorts by the last component only (stable).
        found.sort_by(|a, b| last_component(&a.path).cmp(last_component(&b.path)));
        let mut body = String::new();
        match format {
            "treejson" => {
                let parts = split_components(&query);
                let prefix = if parts.len() > 1 {
                    format!("{}.", parts[..parts.len() - 1].join("."))
                } else {
                    String::new()
                };
                // De-duplicated by name: branches first, then leaves.
                let mut seen: Vec<(String, bool)> = Vec::new();
                for leaf in [false, true] {
                    for f in found.iter().filter(|f| f.leaf == leaf) {
                        let name = last_component(&f.path).to_string();
                        if !seen.iter().any(|(n, l)| *n == name && *l == leaf) {
                            seen.push((name, leaf));
                        }
                    }
                }
                body.push('[');
                for (i, (name, leaf)) in seen.iter().enumerate() {
                    if i > 0 {
                        body.push_str(", ");
                    }
                    let flag = if *leaf { 0 } else { 1 };
                    body.push_str("{\"text\": ");
                    render::json_string(&mut body, name);
                    body.push_str(", \"id\": ");
                    render::json_string(&mut body, &format!("{prefix}{name}"));
                    body.push_str(&format!(
                        ", \"allowChildren\": {flag}, \"expandable\": {flag}, \"leaf\": {}}}",
                        1 - flag
                    ));
                }
                body.push(']');
            }
            "completer" => {
                body.push_str("{\"metrics\": [");
                for (i, f) in found.iter().enumerate() {
                    if i > 0 {
                        body.push_str(", ");
                    }
                    let path = if f.leaf {
                        f.path.clone()
                    } else {
                        format!("{}.", f.path)
                    };
                    body.push_str("{\"path\": ");
                    render::json_string(&mut body, &path);
                    body.push_str(", \"name\": ");
                    render::json_string(&mut body, last_component(&f.path));
                    body.push_str(&format!(", \"is_leaf\": \"{}\"}}", u8::from(f.leaf)));
                }
                body.push_str("]}");
            }
            "json" => {
                found.sort_by(|a, b| a.path.cmp(&b.path));
                body.push('[');
                for (i, f) in found.iter().enumerate() {
                    if i > 0 {
                        body.push_str(", ");
                    }
                    body.push_str("{\"path\": ");
                    render::json_string(&mut body, &f.path);
                    body.push_str(&format!(", \"is_leaf\": {}", f.leaf));
                    // Leaves carry the time their file covers: now less
                    // the retention, to its last write.
                    if let Some((start, end)) = f
                        .leaf
                        .then(|| self.interval_of(&f.path, wall_now))
                        .flatten()
                    {
                        body.push_str(&format!(
                            ", \"intervals\": [{{\"start\": {start}, \"end\": {end}}}]"
                        ));
                    }
                    body.push('}');
                }
                body.push(']');
            }
            "nodelist" => {
                let position: i64 = match params.get("position").map(str::parse) {
                    None => -1,
                    Some(Ok(p)) => p,
                    Some(Err(_)) => {
                        return Reply::invalid("'position' must be an integer");
                    }
                };
                let mut nodes: Vec<&str> = found
                    .iter()
                    .filter_map(|f| {
                        let parts: Vec<&str> = f.path.split('.').collect();
                        let i = if position < 0 {
                            parts.len().checked_sub(position.unsigned_abs() as usize)?
                        } else {
                            usize::try_from(position).ok()?
                        };
                        parts.get(i).copied()
                    })
                    .collect();
                nodes.sort_unstable();
                nodes.dedup();
                body.push_str("{\"nodes\": ");
                string_list(&mut body, &nodes);
                body.push('}');
            }
            "pickle" => {
                // graphite-web's remote finder reads this; intervals as
                // plain (start, end) pairs, which it accepts.
                let mut p = Pickler::new();
                p.begin_list();
                for f in &found {
                    p.begin_dict();
                    p.str("path");
                    p.str(&f.path);
                    p.str("is_leaf");
                    p.bool(f.leaf);
                    if f.leaf {
                        p.str("intervals");
                        p.begin_list();
                        if let Some((start, end)) = self.interval_of(&f.path, wall_now) {
                            p.begin_tuple();
                            p.float(start);
                            p.float(end);
                            p.end_tuple();
                        }
                        p.end_list();
                    }
                    p.end_dict();
                }
                p.end_list();
                return Reply::ok("application/pickle", p.finish());
            }
            _ => {
                return Reply {
                    status: 400,
                    content_type: "text/plain; charset=utf-8",
                    body: b"Invalid value for 'format' parameter\n".to_vec(),
                }
            }
        }
        with_jsonp(params, body)
    }

    /// `/metrics/expand`.
    pub fn expand_names(&self, params: &Params) -> Reply {
        let leaves_only = params
            .get("leavesOnly")
            .is_some_and(|v| v == "1" || v == "true");
        let group = params
            .get("groupByExpr")
            .is_some_and(|v| v == "1" || v == "true");
        let matches = |q: &str| -> Vec<String> {
            let mut paths: Vec<String> = self
                .store
                .index
                .find(q, self.limits.max_find)
                .into_iter()
                .filter(|f| f.leaf || !leaves_only)
                .map(|f| f.path)
                .collect();
            paths.sort();
            paths.dedup();
            paths
        };
        let queries = params.all("query");
        let mut body = String::from("{\"results\": ");
        if group {
            body.push('{');
            for (i, q) in queries.iter().enumerate() {
                if i > 0 {
                    body.push_str(", ");
                }
                render::json_string(&mut body, q);
                body.push_str(": ");
                string_list(&mut body, &matches(q));
            }
            body.push('}');
        } else {
            let mut all: Vec<String> = queries.iter().flat_map(|q| matches(q)).collect();
            all.sort();
            all.dedup();
            string_list(&mut body, &all);
        }
        body.push('}');
        with_jsonp(params, body)
    }

    /// `/metrics/index.json`.
    pub fn index_json(&self, params: &Params) -> Reply {
        let mut body = String::new();
        string_list(&mut body, &self.store.index.all_metrics());
        with_jsonp(params, body)
    }

    /// `/functions` (strict JSON: no bare Infinity).
    pub fn functions(&self, name: Option<&str>) -> Reply {
        let describe = |f: &functions::FunctionDef, out: &mut String| {
            out.push_str("{\"name\": ");
            render::json_string(out, f.name);
            let params: Vec<String> = f
                .params
                .iter()
                .map(|p| {
                    if p.multiple {
                        format!("*{}", p.name)
                    } else {
                        p.name.to_string()
                    }
                })
                .collect();
            out.push_str(", \"function\": ");
            render::json_string(out, &format!("{}({})", f.name, params.join(", ")));
            out.push_str(", \"description\": ");
            render::json_string(out, f.description);
            out.push_str(", \"module\": \"graphite.render.functions\", \"group\": ");
            render::json_string(out, f.group);
            out.push_str(", \"params\": [");
            for (i, p) in f.params.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str("{\"name\": ");
                render::json_string(out, p.name);
                out.push_str(", \"type\": ");
                render::json_string(out, p.kind.name());
                if p.required {
                    out.push_str(", \"required\": true");
                }
                if p.multiple {
                    out.push_str(", \"multiple\": true");
                }
                out.push('}');
            }
            out.push_str("]}");
        };
        let mut body = String::new();
        match name {
            Some(name) => match functions::lookup(name) {
                Some(f) => describe(f, &mut body),
                None => return Reply::json_error(404, &format!("Function not found: {name}")),
            },
            None => {
                body.push('{');
                for (i, f) in functions::FUNCTIONS.iter().enumerate() {
                    if i > 0 {
                        body.push_str(", ");
                    }
                    render::json_string(&mut body, f.name);
                    body.push_str(": ");
                    describe(f, &mut body);
                }
                body.push('}');
            }
        }
        Reply::ok("application/json", body)
    }
}

fn last_component(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

fn string_list(out: &mut String, items: &[impl AsRef<str>]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        render::json_string(out, item.as_ref());
    }
    out.push(']');
}

fn with_jsonp(params: &Params, body: String) -> Reply {
    match params.get("jsonp").filter(|cb| !cb.is_empty()) {
        Some(callback)
            if callback
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'$') =>
        {
            Reply::ok("text/javascript", format!("{callback}({body})"))
        }
        Some(_) => Reply::invalid("jsonp must be a JavaScript identifier"),
        None => Reply::ok("application/json", body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::PointBatch;
    use crate::store::format::Aggregation;

    fn api(root: &std::path::Path) -> ReadApi {
        ReadApi {
            root: root.to_path_buf(),
            store: Shared::default(),
            limits: ReadLimits {
                max_series: 100,
                max_points: 100_000,
                max_target_length: 1000,
                max_targets: 10,
                max_find: 1000,
            },
        }
    }

    #[test]
    fn points_the_writers_still_hold_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_796_169_600;
        let path = dir.path().join("a/b.wsp");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut file = WhisperFile::create(&path, &[(10, 360)], 0.0, Aggregation::Sum).unwrap();
        file.update(1.0, now - 30, now).unwrap();
        let api = api(dir.path());
        api.store.index.insert("a.b");
        let mut batch = PointBatch::new(now - 10);
        batch.push("a.b", 7.0);
        let batch = std::sync::Arc::new(batch);
        api.store.pending.add(&batch, 1);
        let s = api.fetch("a.b", now - 60, now, now).unwrap();
        let known: Vec<f64> = s.values.iter().flatten().copied().collect();
        assert_eq!(known, [1.0, 7.0], "the file's point and the pending one");
        api.store.pending.written(&batch);
        let s = api.fetch("a.b", now - 60, now, now).unwrap();
        assert_eq!(s.values.iter().flatten().count(), 1);
    }

    #[test]
    fn render_answers_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let api = api(dir.path());
        let params = |q: &str| Params(form_urlencoded::parse(q.as_bytes()).into_owned().collect());
        let r = api.render(
            &params("target=constantLine(5)&from=100&until=200&format=json"),
            1000,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("\"target\": \"5.0\""), "{}", r.text());
        let many: String = (0..11).map(|_| "target=a&").collect();
        let r = api.render(&params(&format!("{many}format=json")), 1000);
        assert!(
            r.status == 400 && r.text().contains("http.max_targets"),
            "{}",
            r.text()
        );
        assert_eq!(api.render(&params("format=json"), 1000).text(), "[]");
    }
}
