//! A render target: parsed, then evaluated over a tiny in-memory store.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::graphite::eval::{Context, Limits, Source};
use sluice::graphite::series::Series;
use sluice::graphite::target::parse;

struct Tiny;

impl Source for Tiny {
    fn expand(&self, pattern: &str) -> Vec<String> {
        if pattern.contains(['*', '?', '[', '{']) || pattern == "a.b" {
            vec!["a.b".into(), "a.c".into()]
        } else {
            Vec::new()
        }
    }

    fn fetch(&self, name: &str, from: i64, until: i64, _now: i64) -> Option<Series> {
        let step = 10;
        let start = from - from.rem_euclid(step) + step;
        let n = ((until - start) / step).clamp(0, 400) as usize;
        let values = (0..n)
            .map(|i| {
                if i % 4 == 0 {
                    None
                } else {
                    Some(i as f64 - 7.0)
                }
            })
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

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(expr) = parse(text) {
        let limits = Limits {
            max_series: 50,
            max_points: 50_000,
        };
        let ctx = Context::new(1_000_000, 1_003_600, 1_003_600, &Tiny, limits);
        let _ = ctx.series(&expr);
    }
});
