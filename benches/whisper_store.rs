//! Whisper store throughput: point updates per second through the store's
//! real write path (name -> path, open/create with the schema, handle cache,
//! update_many with propagation), one thread, on the page cache.
//!
//! For 10 K and 100 K files, each round hands the writer 5 flushes at once
//! (5 points per file, one update_many per file), with the shipped StatsD
//! schema (10s:6h,1m:7d,10m:5y). 100 K files run twice: with the default
//! budget of 65536 open files and with 131072 (all open), both bounded by
//! the process's descriptor limit (printed).
//! Bounded: a fixed number of rounds, then it stops and prints.
//!
//! Run: cargo bench --bench whisper_store   (needs ~2 GB of disk in $TMPDIR)

use std::sync::Arc;
use std::time::Instant;

use sluice::sink::PointBatch;
use sluice::store::schema::Schemas;
use sluice::store::writer::{open_file_budget, StoreSettings, Writer};
use sluice::telemetry::{Counter, Telemetry};

const POINTS_PER_FILE: usize = 5;

fn flushes(files: usize, start_ts: i64) -> Vec<Arc<PointBatch>> {
    (0..POINTS_PER_FILE)
        .map(|k| {
            let mut b = PointBatch::new(start_ts + 10 * k as i64);
            for f in 0..files {
                b.push_with((f + k) as f64, |name| {
                    name.push_str("stats.timers.service");
                    name.push_str(&(f / 100).to_string());
                    name.push_str(".endpoint");
                    name.push_str(&(f % 100).to_string());
                    name.push_str(".mean");
                });
            }
            Arc::new(b)
        })
        .collect()
}

fn run(files: usize, rounds: usize, max_open: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = StoreSettings {
        root: dir.path().to_path_buf(),
        writers: 1,
        queue_flushes: 16,
        max_open_files: open_file_budget(max_open, true),
        index: Arc::default(),
        tags: Arc::default(),
        pending: Arc::default(),
        cache: Arc::default(),
        queue_points: 10_000_000,
        queued_points: Arc::default(),
    };
    let stats = Arc::new(Telemetry::default());
    let schemas = Arc::new(Schemas::load(None, None).expect("built-in schemas"));
    let mut writer = Writer::new(
        &settings,
        schemas,
        stats.clone(),
        (0, 1, ahash::RandomState::new()),
    );
    let mut ts = 1_700_000_000i64;

    // Round 0 creates the files; it is reported apart.
    let batches = flushes(files, ts);
    let started = Instant::now();
    writer.write_at(&batches, ts + 50);
    let create = started.elapsed();
    ts += 50;

    let mut points = 0usize;
    let started = Instant::now();
    for _ in 0..rounds {
        let batches = flushes(files, ts);
        writer.write_at(&batches, ts + 50);
        points += files * POINTS_PER_FILE;
        ts += 50;
    }
    let elapsed = started.elapsed();
    let written = stats.total(Counter::WhisperPointsWritten);
    let errors = stats.total(Counter::WhisperErrors);
    assert_eq!(errors, 0, "write errors during the bench");
    assert_eq!(written as usize, points + files * POINTS_PER_FILE);
    println!(
        "whisper_store files={files:>6} open-file budget={:>6} points/file/batch={POINTS_PER_FILE} \
         create+first={:.2}s  steady: {points} points in {:.2}s = {:.0} point updates/s ({:.0} files/s)",
        settings.max_open_files,
        create.as_secs_f64(),
        elapsed.as_secs_f64(),
        points as f64 / elapsed.as_secs_f64(),
        (files * rounds) as f64 / elapsed.as_secs_f64(),
    );
}

fn main() {
    // `cargo test --benches` runs this too: keep that quick.
    if std::env::args().any(|a| a == "--bench") {
        run(10_000, 6, 65_536);
        run(100_000, 3, 65_536);
        run(100_000, 3, 131_072);
    } else {
        run(1_000, 1, 65_536);
    }
}
