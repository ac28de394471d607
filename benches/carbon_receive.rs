//! Carbon's line protocol into the store: parse + cache alone (criterion,
//! one thread), and end to end, a line sender into sluice's line receiver
//! and into a real carbon-cache (Debian's graphite-carbon) on loopback in
//! the same run, timed until every point is in the files, then checked
//! point by point (zero lost). Bounded: a fixed number of points.
//!
//! Run: cargo bench --bench carbon_receive   (`cargo test --benches` runs
//! a small version).

#[allow(dead_code)]
#[path = "../tests/common/carbon_cache.rs"]
mod carbon_cache;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, Throughput};
use sluice::protocol::carbon::parse_received;
use sluice::store::cache::ReceivedCache;
use sluice::store::format::WhisperFile;
use sluice::store::path::metric_path;

/// Used by carbon_cache.rs.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

const POINTS_PER_METRIC: i64 = 5;

/// `metrics` x POINTS_PER_METRIC lines with timestamps from `base`, 10 s
/// apart; values m + k, so every point can be checked.
fn payload(metrics: usize, base: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(metrics * 60 * POINTS_PER_METRIC as usize);
    for k in 0..POINTS_PER_METRIC {
        for m in 0..metrics {
            let _ = writeln!(
                out,
                "bench.carbon.h{:03}.m{m:06} {} {}",
                m % 100,
                m as i64 + k,
                base + k * 10
            );
        }
    }
    out
}

fn bench_parse_and_cache(c: &mut Criterion) {
    let mut group = c.benchmark_group("carbon_receive");
    for metrics in [10_000usize, 100_000] {
        let data = payload(metrics, 1_796_169_600);
        let lines = data.iter().filter(|b| **b == b'\n').count();
        group.throughput(Throughput::Elements(lines as u64));
        group.bench_function(format!("parse_and_cache_{metrics}_metrics"), |b| {
            let cache = ReceivedCache::new(usize::MAX);
            b.iter(|| {
                for line in data.split(|b| *b == b'\n') {
                    if let Ok(Some(p)) = parse_received(line, 0) {
                        cache.insert(p.name, p.timestamp, p.value);
                    }
                }
            });
        });
    }
    group.finish();
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn send(to: SocketAddr, data: &[u8]) {
    let mut s = TcpStream::connect(to).expect("connect");
    s.write_all(data).expect("send");
}

/// Seconds from `started` until the last point of `metrics` was stored
/// under `root`, or None if not every point is there within `limit`. The
/// files are polled (a sample first, then each file until it is complete),
/// but the time is read from the newest file's mtime, so reading 100 K
/// files back is not counted against either daemon.
fn time_until_stored(
    root: &std::path::Path,
    metrics: usize,
    base: i64,
    started: SystemTime,
    limit: Duration,
) -> Option<f64> {
    let path = |m: usize| {
        let name = format!("bench.carbon.h{:03}.m{m:06}", m % 100);
        metric_path(&name).ok().map(|p| root.join(p))
    };
    let complete = |m: usize| -> bool {
        let Some(mut f) = path(m).and_then(|p| WhisperFile::open_read(&p).ok()) else {
            return false;
        };
        let now = base + 60;
        match f.fetch(
            base - 10,
            Some(now),
            now.max(sluice::telemetry::unix_now_f64() as i64),
        ) {
            Ok(Some(d)) => {
                let known: Vec<f64> = d.values.iter().flatten().copied().collect();
                (0..POINTS_PER_METRIC).all(|k| known.contains(&((m as i64 + k) as f64)))
            }
            _ => false,
        }
    };
    let out_of_time = || started.elapsed().map_or(true, |e| e > limit);
    let poll = Duration::from_millis(50);
    let sample: Vec<usize> = (0..metrics)
        .step_by((metrics / 50).max(1))
        .chain([metrics - 1])
        .collect();
    while !sample.iter().all(|m| complete(*m)) {
        if out_of_time() {
            return None;
        }
        std::thread::sleep(poll);
    }
    let mut missing: Vec<usize> = (0..metrics).collect();
    loop {
        missing.retain(|m| !complete(*m));
        if missing.is_empty() {
            break;
        }
        if out_of_time() {
            return None;
        }
        std::thread::sleep(poll);
    }
    let last_write = (0..metrics)
        .filter_map(|m| std::fs::metadata(path(m)?).ok()?.modified().ok())
        .max()?;
    Some(last_write.duration_since(started).ok()?.as_secs_f64())
}

fn end_to_end(metrics: usize) {
    let points = metrics as i64 * POINTS_PER_METRIC;
    let base = sluice::telemetry::unix_now_f64() as i64 - 300;
    let limit = Duration::from_secs(300);

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("whisper");
    let line_port = free_port();
    let schemas = dir.path().join("schemas.conf");
    std::fs::write(&schemas, "[all]\npattern = .*\nretentions = 10s:1d\n").unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\ncarbon_line = [\"127.0.0.1:{line_port}\"]\n\
             [flush]\ninterval = \"1h\"\n[admin]\naddress = \"\"\n[whisper]\ndir = {:?}\nschemas = {:?}\n[log]\nlevel = \"warn\"\n",
            store.to_str().unwrap(),
            schemas.to_str().unwrap()
        ),
    )
    .unwrap();
    let _sluice = Child(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["--config", config.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sluice"),
    );
    let addr: SocketAddr = format!("127.0.0.1:{line_port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "sluice did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Round 1 creates the files; round 2, into existing files, is the
    // sustained rate.
    let first = time_round(addr, &store, metrics, base, limit);
    let data2_base = base + 60;
    let sustained = time_round(addr, &store, metrics, data2_base, limit);

    let carbon_dir = tempfile::tempdir().unwrap();
    let carbon = carbon_cache::CarbonCache::start(carbon_dir.path());
    let carbon_addr = SocketAddr::from(([127, 0, 0, 1], carbon.line_port));
    let carbon_first = time_round(carbon_addr, &carbon.whisper_dir(), metrics, base, limit);
    let carbon_sustained = time_round(
        carbon_addr,
        &carbon.whisper_dir(),
        metrics,
        data2_base,
        limit,
    );
    let rate = |t: Option<f64>| {
        t.map(|t| format!("{:>9.0} points/s ({t:.2} s)", points as f64 / t))
            .unwrap_or_else(|| "not complete in 300 s".into())
    };
    let ratio = |o: Option<f64>, t: Option<f64>| match (o, t) {
        (Some(o), Some(t)) => format!("{:.1}x", t / o),
        _ => "n/a".into(),
    };
    println!(
        "carbon_receive {metrics} metrics x {POINTS_PER_METRIC} points, every point checked in the files:\n  \
         creating files: sluice {} | carbon-cache {} | {}\n  \
         existing files (sustained): sluice {} | carbon-cache {} | {}",
        rate(first),
        rate(carbon_first),
        ratio(first, carbon_first),
        rate(sustained),
        rate(carbon_sustained),
        ratio(sustained, carbon_sustained)
    );
}

/// Sends one round and times it until every point is in the files.
fn time_round(
    to: SocketAddr,
    root: &std::path::Path,
    metrics: usize,
    base: i64,
    limit: Duration,
) -> Option<f64> {
    let data = payload(metrics, base);
    let started = SystemTime::now();
    send(to, &data);
    time_until_stored(root, metrics, base, started, limit)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default().configure_from_args();
    if full {
        bench_parse_and_cache(&mut c);
        c.final_summary();
    }
    for metrics in if full {
        vec![10_000, 100_000]
    } else {
        vec![200]
    } {
        end_to_end(metrics);
    }
}
