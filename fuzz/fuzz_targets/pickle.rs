//! Pickle frames through the safe decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice::protocol::pickle::decode(data);
    let _ = sluice::protocol::pickle::decode_points(data);
});
