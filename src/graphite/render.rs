//! `/render` output formats, shaped as graphite-web 1.1.8 writes them:
//! json (with `maxDataPoints` consolidation exactly as graphite-web does
//! it, `noNullPoints`, `jsonp`), raw and csv.

use std::fmt::Write;

use super::series::Series;
use super::time::civil_from_days;
use crate::protocol::pickle::Pickler;
use crate::store::format::{python_float_repr, write_python_float};

/// A JSON number as Python's json module writes graphite's values: floats
/// with a fractional part, infinities as `1e9999`, NaN as null.
fn json_number(out: &mut String, value: Option<f64>) {
    match value {
        None => out.push_str("null"),
        Some(v) if v.is_nan() => out.push_str("null"),
        Some(v) if v == f64::INFINITY => out.push_str("1e9999"),
        Some(v) if v == f64::NEG_INFINITY => out.push_str("-1e9999"),
        Some(v) => write_python_float(out, v),
    }
}

/// A JSON string literal.
pub fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// (values, timestamps) of a series as the json format emits them, after
/// `maxDataPoints` consolidation over the response's whole time range.
fn json_points(
    series: &Series,
    max_points: Option<usize>,
    range: (i64, i64),
) -> Vec<(Option<f64>, i64)> {
    let step = series.step.max(1);
    let (values, start, spacing) = match max_points {
        Some(1) => (
            vec![series
                .consolidation
                .bucket(&series.values, series.values.len(), series.xff)],
            series.start,
            step,
        ),
        Some(max) if max > 0 && ((range.1 - range.0) as f64 / step as f64) > max as f64 => {
            let per_point = (((range.1 - range.0) as f64 / step as f64) / max as f64).ceil() as i64;
            let seconds = per_point * step;
            let nudge = seconds + series.start.rem_euclid(step) - series.start.rem_euclid(seconds);
            let start = series.start + nudge;
            // graphite-web drops int(nudge/step) - 1 leading values (its
            // loop runs from 1).
            let lose = ((nudge / step) - 1).max(0) as usize;
            let mut shifted = series.clone();
            shifted.values = series.values[lose.min(series.values.len())..].to_vec();
            (shifted.consolidated(per_point as usize), start, seconds)
        }
        _ => (series.values.clone(), series.start, step),
    };
    let last = series.end;
    values
        .into_iter()
        .zip(
            (0..)
                .map(|i| start + i * spacing)
                .take_while(|ts| *ts <= last),
        )
        .collect()
}

/// The json reply.
pub fn json(series: &[Series], max_points: Option<usize>, no_null_points: bool) -> String {
    let range = (
        series.iter().map(|s| s.start).min().unwrap_or(0),
        series.iter().map(|s| s.end).max().unwrap_or(0),
    );
    let mut out = String::from("[");
    let mut first = true;
    for s in series {
        let mut points = json_points(s, max_points, range);
        if no_null_points {
            points.retain(|(v, _)| v.is_some_and(|v| !v.is_nan()));
            if points.is_empty() {
                continue;
            }
        }
        if !first {
            out.push_str(", ");
        }
        first = false;
        out.push_str("{\"target\": ");
        json_string(&mut out, &s.name);
        out.push_str(", \"tags\": {");
        for (i, (k, v)) in s.tags.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            json_string(&mut out, k);
            out.push_str(": ");
            json_string(&mut out, v);
        }
        out.push_str("}, \"datapoints\": [");
        for (i, (v, ts)) in points.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push('[');
            json_number(&mut out, *v);
            out.push_str(", ");
            out.push_str(itoa::Buffer::new().format(*ts));
            out.push(']');
        }
        out.push_str("]}");
    }
    out.push(']');
    out
}

fn python_repr(value: Option<f64>) -> String {
    match value {
        None => "None".into(),
        Some(v) if v.is_nan() => "nan".into(),
        Some(v) if v == f64::INFINITY => "inf".into(),
        Some(v) if v == f64::NEG_INFINITY => "-inf".into(),
        Some(v) => python_float_repr(v),
    }
}

/// The raw reply: `name,start,end,step|v1,v2,...` per series.
pub fn raw(series: &[Series]) -> String {
    let mut out = String::new();
    for s in series {
        let _ = write!(out, "{},{},{},{}|", s.name, s.start, s.end, s.step);
        let values: Vec<String> = s.values.iter().map(|v| python_repr(*v)).collect();
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

/// The pickle reply: a list of graphite-web's `TimeSeries.getInfo()`
/// dicts (what a federating graphite-web's remote reader reads).
pub fn pickle(series: &[Series]) -> Vec<u8> {
    let mut p = Pickler::new();
    p.begin_list();
    for s in series {
        p.begin_dict();
        p.str("name");
        p.str(&s.name);
        p.str("start");
        p.int(s.start);
        p.str("end");
        p.int(s.end);
        p.str("step");
        p.int(s.step);
        p.str("values");
        p.begin_list();
        for v in &s.values {
            p.option_float(*v);
        }
        p.end_list();
        p.str("pathExpression");
        p.str(&s.path_expression);
        p.str("valuesPerPoint");
        p.int(1);
        p.str("consolidationFunc");
        p.str(s.consolidation.name());
        p.str("xFilesFactor");
        p.float(s.xff);
        p.end_dict();
    }
    p.end_list();
    p.finish()
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
fn utc_text(ts: i64) -> String {
    let (y, m, d) = civil_from_days(ts.div_euclid(86_400));
    let secs = ts.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The csv reply: `name,time,value` per point.
pub fn csv(series: &[Series]) -> String {
    let mut out = String::new();
    for s in series {
        let name = if s.name.contains(',') {
            format!("\"{}\"", s.name.replace('"', "\"\""))
        } else {
            s.name.clone()
        };
        for (v, ts) in s.values.iter().zip(s.timestamps()) {
            let value = v.map(python_float_repr).unwrap_or_default();
            let _ = write!(out, "{name},{},{value}\r\n", utc_text(ts));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_796_169_600;

    fn x() -> Series {
        // stats.gauges.x: value (ts - T0) / 10 at T0+10 .. T0+3600.
        Series::new(
            "stats.gauges.x",
            T0 + 10,
            T0 + 3610,
            10,
            (1..=360).map(|v| Some(v as f64)).collect(),
        )
    }

    #[test]
    fn max_data_points_as_graphite_web_consolidates() {
        let s = x();
        let range = (s.start, s.end);
        let p = json_points(&s, Some(100), range);
        assert_eq!(p.len(), 90);
        assert_eq!(p[0], (Some(4.5), T0 + 40));
        assert_eq!(p[89], (Some(359.5), T0 + 3600));
        let p = json_points(&s, Some(359), range);
        assert_eq!((p.len(), p[0]), (180, (Some(1.5), T0 + 20)));
        assert_eq!(json_points(&s, Some(360), range).len(), 360);
        assert_eq!(
            json_points(&s, Some(1), range),
            vec![(Some(180.5), T0 + 10)]
        );
    }

    #[test]
    fn formats() {
        let s = Series::new(
            "a.b",
            T0 + 90,
            T0 + 150,
            10,
            vec![Some(0.0), None, None, None, Some(4.0), Some(5.0)],
        );
        assert_eq!(
            raw(std::slice::from_ref(&s)),
            format!(
                "a.b,{},{},10|0.0,None,None,None,4.0,5.0\n",
                T0 + 90,
                T0 + 150
            )
        );
        assert_eq!(
            json(std::slice::from_ref(&s), None, true),
            format!("[{{\"target\": \"a.b\", \"tags\": {{\"name\": \"a.b\"}}, \"datapoints\": [[0.0, {}], [4.0, {}], [5.0, {}]]}}]", T0 + 90, T0 + 130, T0 + 140)
        );
        assert!(
            csv(&[s]).starts_with("a.b,2026-12-02 00:01:30,0.0\r\na.b,2026-12-02 00:01:40,\r\n")
        );
    }
}
