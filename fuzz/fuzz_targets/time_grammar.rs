//! Graphite's time grammar.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sluice::graphite::time::parse_time(text, 1_796_169_600);
        let _ = sluice::graphite::time::parse_offset(text);
    }
});
