//! A whisper file of fuzzed bytes: open, fetch and update must be errors,
//! never crashes, and allocate only what the file's size allows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::store::format::WhisperFile;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("sluice-fuzz-{}.wsp", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = WhisperFile::is_interrupted_creation(&path);
    if let Ok(mut file) = WhisperFile::open(&path) {
        let now = 1_700_000_000;
        for back in [0, 60, 3600, 86_400, 1 << 31] {
            let _ = file.fetch(now - back, Some(now), now);
        }
        let _ = file.fetch(0, None, i64::from(u32::MAX));
        let _ = file.update_many(&[(now - 5, 1.0), (now - 65, 2.0), (now - 4000, 3.0)], now);
        let _ = file.update(4.0, now - 1, now);
        let _ = file.finest_point(now - now % 60);
    }
    let _ = std::fs::remove_file(&path);
});
