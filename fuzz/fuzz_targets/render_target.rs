//! A render target: parsed, then evaluated over a tiny in-memory store.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::graphite::eval::{Context, Limits, SyntheticSource};
use sluice::graphite::target::parse;

/// Two tiny series, so functions have data to chew on.
const TINY: SyntheticSource = SyntheticSource {
    max_points: 400,
    gap_every: 4,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(expr) = parse(text) {
        let limits = Limits {
            max_series: 50,
            max_points: 50_000,
        };
        let ctx = Context::new(1_000_000, 1_003_600, 1_003_600, &TINY, limits);
        let _ = ctx.series(&expr);
    }
});
