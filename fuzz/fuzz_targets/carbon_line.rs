//! Received carbon lines, as the line receiver splits and parses them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::protocol::carbon::parse_received;
use sluice::store::cache::ReceivedCache;

fuzz_target!(|data: &[u8]| {
    let cache = ReceivedCache::new(1000);
    for line in data.split(|b| *b == b'\n') {
        if let Ok(Some(p)) = parse_received(line, 1_700_000_000) {
            assert!(!p.value.is_nan());
            cache.insert(p.name, p.timestamp, p.value);
        }
    }
});
