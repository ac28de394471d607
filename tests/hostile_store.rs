//! A hostile or half-made whisper store must never kill or wedge the real
//! agent: crafted headers are an error for that one metric (counted), files
//! left empty by an interrupted creation are replaced, and kill -9 in the
//! middle of creating thousands of files leaves only whole files.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{send_udp, CarbonCapture, Sluice};
use sluice::store::format::WhisperFile;

/// The reliability issue's 64-byte file: two archives (1 s x 1 point and
/// 0xFFFFFFF0 s x 1 point) that fit in the file; the first roll-up tried to
/// allocate 64 GiB and the agent aborted (exit 134).
fn crafted_rollup_file() -> Vec<u8> {
    let mut b = Vec::new();
    for w in [1u32, 0xFFFF_FFFF, 0, 2, 40, 1, 1, 52, 0xFFFF_FFF0, 1] {
        b.extend_from_slice(&w.to_be_bytes());
    }
    b.resize(64, 0);
    b
}

fn config_for(dir: &Path, store: &Path) -> String {
    common::store_config(dir, store, "1s:1h", "")
        .to_str()
        .unwrap()
        .to_string()
}

/// sluice on `config`, flushing every second to a capturing listener.
fn start_on(config: &str) -> (Sluice, CarbonCapture) {
    let capture = CarbonCapture::start();
    let carbon = capture.addr.to_string();
    let sluice = Sluice::start(&[
        "--config",
        config,
        "--flush-interval",
        "1s",
        "--carbon",
        &carbon,
    ]);
    (sluice, capture)
}

fn sum_of(path: &Path) -> f64 {
    let mut f = WhisperFile::open_read(path).unwrap();
    let now = sluice::telemetry::unix_now_f64() as i64 + 5;
    let got = f.fetch(now - 600, Some(now), now).unwrap().unwrap();
    got.values.iter().flatten().sum()
}

#[test]
fn regression_crafted_header_does_not_abort_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("whisper");
    std::fs::create_dir_all(store.join("stats_counts/adv")).unwrap();
    let evil = store.join("stats_counts/adv/evil.wsp");
    std::fs::write(&evil, crafted_rollup_file()).unwrap();
    let (sluice, mut capture) = start_on(&config_for(dir.path(), &store));
    send_udp(sluice.udp, &[b"adv.evil:1|c\nadv.good:2|c"]);
    let errors = "stats_counts.statsd.whisper_errors";
    let flush = capture.flush_with(errors, Duration::from_secs(10));
    assert!(flush.value(errors) >= 1.0, "{}", flush.dump());
    // Still alive a flush later, and it stops cleanly.
    send_udp(sluice.udp, &[b"adv.evil:1|c\nadv.good:3|c"]);
    capture.flush_with(errors, Duration::from_secs(10));
    assert!(sluice.terminate().success(), "the agent died");
    assert_eq!(std::fs::read(&evil).unwrap(), crafted_rollup_file());
    assert_eq!(sum_of(&store.join("stats_counts/adv/good.wsp")), 5.0);
}

#[test]
fn regression_crafted_header_fetch_is_an_error_not_an_abort() {
    // A 40-byte file whose maxRetention (0xFFFFFFFF) sized the fetch.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.wsp");
    let mut b = Vec::new();
    for w in [1u32, 0xFFFF_FFFF, 0, 1, 28, 1, 1] {
        b.extend_from_slice(&w.to_be_bytes());
    }
    b.resize(40, 0);
    std::fs::write(&path, &b).unwrap();
    let out = std::process::Command::new(common::binary())
        .args(["whisper", "fetch", path.to_str().unwrap(), "--from", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("maxRetention"), "{err}");
}

#[test]
fn interrupted_creations_are_replaced_and_other_files_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("whisper");
    let counts = store.join("stats_counts");
    std::fs::create_dir_all(&counts).unwrap();
    // What the old three-step creation left after a kill: an empty file,
    // and a header with no archives behind it.
    std::fs::write(counts.join("empty.wsp"), b"").unwrap();
    let model = dir.path().join("model.wsp");
    WhisperFile::create(
        &model,
        &[(1, 3600)],
        0.5,
        sluice::store::format::Aggregation::Sum,
    )
    .unwrap();
    std::fs::write(
        counts.join("headeronly.wsp"),
        &std::fs::read(&model).unwrap()[..28],
    )
    .unwrap();
    // Not ours to replace: it holds more than a header.
    let foreign = b"some operator's file that is not whisper at all".to_vec();
    std::fs::write(counts.join("foreign.wsp"), &foreign).unwrap();

    let (sluice, mut capture) = start_on(&config_for(dir.path(), &store));
    send_udp(sluice.udp, &[b"empty:4|c\nheaderonly:6|c\nforeign:1|c"]);
    let errors = "stats_counts.statsd.whisper_errors";
    let flush = capture.flush_with(errors, Duration::from_secs(10));
    assert_eq!(
        flush.value(errors),
        1.0,
        "only foreign.wsp fails: {}",
        flush.dump()
    );
    assert!(sluice.terminate().success());
    assert_eq!(sum_of(&counts.join("empty.wsp")), 4.0);
    assert_eq!(sum_of(&counts.join("headeronly.wsp")), 6.0);
    assert_eq!(std::fs::read(counts.join("foreign.wsp")).unwrap(), foreign);
}

/// Every `.wsp` under `dir` (recursively).
fn whisper_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            whisper_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "wsp") {
            out.push(path);
        }
    }
}

#[test]
fn kill_9_while_creating_files_leaves_only_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("whisper");
    let config = config_for(dir.path(), &store);
    for round in 0..2 {
        let mut sluice = Sluice::start(&["--config", &config, "--flush-interval", "1s"]);
        // 20 000 new counters each round: two files each, created while
        // the agent is killed.
        let lines: Vec<Vec<u8>> = (0..800)
            .map(|d| {
                (0..25)
                    .map(|i| format!("r{round}.k{d}_{i}:1|c"))
                    .collect::<Vec<_>>()
                    .join("\n")
                    .into_bytes()
            })
            .collect();
        let datagrams: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        send_udp(sluice.udp, &datagrams);
        // Kill as soon as the first files of this round appear.
        let first = store.join(format!("stats_counts/r{round}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !first.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(30));
        sluice.child.kill().unwrap();
        sluice.child.wait().unwrap();
    }
    let mut files = Vec::new();
    whisper_files(&store, &mut files);
    assert!(files.len() > 100, "only {} files were created", files.len());
    for path in &files {
        if let Err(e) = WhisperFile::open_read(path) {
            panic!("{} is not a whole whisper file: {e}", path.display());
        }
    }
}

// Regression: with --flush-interval 1s and the shipped 10 s schema, each
// flush overwrote the one before it in the slot, so counters were stored
// as 0 and only one timer mean survived.
#[test]
fn one_second_flushes_into_the_shipped_ten_second_schema_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("whisper");
    let config = common::write_file(
        dir.path(),
        "sluice.toml",
        &format!(
            "[whisper]\ndir = {:?}\nschemas = {:?}\naggregation = {:?}\n",
            store.to_str().unwrap(),
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/storage-schemas.conf"),
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/config/storage-aggregation.conf"
            ),
        ),
    );
    let (sluice, mut capture) = start_on(config.to_str().unwrap());
    let mut sent = 0.0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        send_udp(sluice.udp, &[b"fine.hits:3|c\nfine.g:7|g"]);
        sent += 3.0;
        std::thread::sleep(Duration::from_millis(250));
    }
    capture.flush_with("stats_counts.fine.hits", Duration::from_secs(5));
    assert!(sluice.terminate().success());
    assert_eq!(sum_of(&store.join("stats_counts/fine/hits.wsp")), sent);
    let mut gauge = WhisperFile::open_read(&store.join("stats/gauges/fine/g.wsp")).unwrap();
    let now = sluice::telemetry::unix_now_f64() as i64 + 15;
    let fetched = gauge.fetch(now - 600, Some(now), now).unwrap().unwrap();
    assert!(
        fetched.values.iter().flatten().all(|v| *v == 7.0),
        "{fetched:?}"
    );
}

// Regression: after `rm` of a live file, the cached handle kept writing
// into the deleted inode (its space never released, the metric gone for
// good); carbon-cache reopens per write and recreates it.
#[test]
fn a_deleted_file_is_recreated_and_its_handle_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("whisper");
    let (sluice, mut capture) = start_on(&config_for(dir.path(), &store));
    let file = store.join("stats_counts/gone/soon.wsp");
    send_udp(sluice.udp, &[b"gone.soon:1|c"]);
    capture.flush_with("stats_counts.gone.soon", Duration::from_secs(10));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !file.exists() {
        assert!(std::time::Instant::now() < deadline, "never created");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_file(&file).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !file.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the deleted file never came back"
        );
        send_udp(sluice.udp, &[b"gone.soon:2|c"]);
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sluice.terminate().success());
    assert!(sum_of(&file) >= 2.0, "the new file holds the new points");
}

// Regression: a name whose full path exceeds the file system's limit
// (ENAMETOOLONG) was a write error; it is a refused name.
#[test]
fn a_path_too_long_for_the_file_system_is_a_refused_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("whisper");
    let (sluice, mut capture) = start_on(&config_for(dir.path(), &store));
    let long: Vec<String> = (0..20).map(|i| format!("{i}{}", "x".repeat(240))).collect();
    let line = format!("{}:1|c\nshort.ok:1|c", long.join("."));
    send_udp(sluice.udp, &[line.as_bytes()]);
    let rejected = "stats_counts.statsd.whisper_names_rejected";
    let flush = capture.flush_with(rejected, Duration::from_secs(10));
    assert!(flush.value(rejected) >= 1.0, "{}", flush.dump());
    assert!(
        flush.get("stats_counts.statsd.whisper_errors").is_none(),
        "{}",
        flush.dump()
    );
    assert!(sluice.terminate().success());
    assert_eq!(sum_of(&store.join("stats_counts/short/ok.wsp")), 1.0);
}

// Regression: the writer queues were bounded in flushes only, so a flush
// of many new keys weighed one and RSS grew while the depth read 0.
#[test]
fn writer_queues_are_bounded_in_points_and_report_their_depth() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("whisper");
    let config = common::store_config(
        dir.path(),
        &store,
        "1s:1h",
        "writers = 1\nqueue_points = 1000\n",
    );
    let (sluice, mut capture) = start_on(config.to_str().unwrap());
    let lines: Vec<String> = (0..20_000).map(|i| format!("flood.k{i:05}:1|c")).collect();
    let datagrams: Vec<Vec<u8>> = lines
        .chunks(250)
        .map(|c| c.join("\n").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
    // Several flushes of 20 000 points each against a 1 000-point bound.
    for _ in 0..3 {
        send_udp(sluice.udp, &refs);
        std::thread::sleep(Duration::from_millis(1100));
    }
    let dropped = "stats_counts.statsd.whisper_points_dropped";
    let flush = capture.flush_with(dropped, Duration::from_secs(15));
    assert!(flush.value(dropped) > 0.0, "{}", flush.dump());
    assert!(
        flush
            .get("stats.statsd.sluice.whisper_queue_points")
            .is_some(),
        "the queue depth is reported: {}",
        flush.dump()
    );
    assert!(sluice.terminate().success());
}

/// A small tmpfs mounted for one test (root only), unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

// Regression: after a full disk, `rm` of files nobody writes any more
// freed nothing (the writers' cached handles held the deleted inodes), so
// every new metric kept failing with ENOSPC; carbon-cache, which opens per
// write, recovers at once.
#[test]
fn deleting_files_on_a_full_disk_frees_space_for_new_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("disk");
    let Some(_disk) = SmallDisk::mount(&store, "1m") else {
        // Not root (or no mount rights in a container): nothing to fill.
        eprintln!("deleting_files_on_a_full_disk: SKIPPED, mounting a tmpfs needs root");
        return;
    };
    // 1 s x 10 min: two pages per file, so the 1 MiB disk holds ~120.
    let config = common::store_config(
        dir.path(),
        &store,
        "1s:10m",
        "[flush]\ndelete_counters = true\n",
    );
    let (sluice, mut capture) = start_on(config.to_str().unwrap());
    // Far more files than fit: the disk fills, the rest fail.
    let old: Vec<String> = (0..150).map(|i| format!("old.m{i:03}:1|c")).collect();
    for chunk in old.chunks(50) {
        send_udp(sluice.udp, &[chunk.join("\n").as_bytes()]);
    }
    capture.flush_with("stats_counts.old.m000", Duration::from_secs(10));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !sluice.log_text().contains("No space left on device") {
        assert!(
            std::time::Instant::now() < deadline,
            "the disk never filled: {}",
            sluice.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Idle counters are no longer flushed: nobody writes old.* again.
    std::thread::sleep(Duration::from_millis(2500));
    std::fs::remove_dir_all(store.join("stats_counts/old")).unwrap();
    std::fs::remove_dir_all(store.join("stats/old")).unwrap();
    let new: Vec<String> = (0..20).map(|i| format!("new.m{i:02}:1|c")).collect();
    let files: Vec<_> = (0..20)
        .flat_map(|i| {
            [
                store.join(format!("stats_counts/new/m{i:02}.wsp")),
                store.join(format!("stats/new/m{i:02}.wsp")),
            ]
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let missing = files.iter().filter(|f| !f.exists()).count();
        if missing == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{missing} of {} new files never created: the deleted files' space was not freed",
            files.len()
        );
        send_udp(sluice.udp, &[new.join("\n").as_bytes()]);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        sluice
            .log_text()
            .contains("closed handles of deleted or replaced"),
        "{}",
        sluice.log_text()
    );
    assert!(sluice.terminate().success());
}
