//! The read API end to end, side by side with graphite-web 1.1.8 on the
//! same whisper files in the same run: requests/s, p50 and p99 for renders
//! with maxDataPoints=1000 and for finds, each server over HTTP on
//! loopback; and the name index alone at 1,000,000 names (bytes per name
//! beyond the name, find p50/p99). Bounded: a fixed number of requests.
//!
//! Run: cargo bench --bench read_api   (`cargo test --benches` runs a
//! small version: 20 series, a few requests, 10,000 names).

// The test suite's HTTP client and graphite-web launcher, shared.
#[allow(dead_code)]
#[path = "../tests/common/graphite_web.rs"]
pub mod graphite_web;
#[allow(dead_code)]
#[path = "../tests/common/http.rs"]
pub mod http;
mod common {
    pub use crate::graphite_web;
    pub use crate::http;

    /// A free loopback port (the bench runs alone).
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port")
    }
}

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http::{encode, get};
use sluice::store::format::{Aggregation, WhisperFile};
use sluice::store::index::NameIndex;

const NOW: i64 = 1_796_169_600;

fn make_store(root: &std::path::Path, series: usize) {
    for i in 0..series {
        let path = root.join(format!("bench/s{i:04}/requests.wsp"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f =
            WhisperFile::create(&path, &[(10, 8640), (60, 10080)], 0.0, Aggregation::Sum).unwrap();
        let points: Vec<(i64, f64)> = (0..8640)
            .map(|k| (NOW - 86_400 + k * 10, ((k + i as i64) % 17) as f64))
            .collect();
        f.update_many(&points, NOW).unwrap();
    }
}

struct Sluice(std::process::Child);

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sluice(root: &std::path::Path, dir: &std::path::Path) -> (Sluice, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\n[admin]\naddress = \"\"\n[whisper]\ndir = {:?}\n[http]\naddress = \"{addr}\"\n[log]\nlevel = \"warn\"\n",
            root.to_str().unwrap()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--config", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sluice");
    let guard = Sluice(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(addr, "/version").is_none() {
        assert!(Instant::now() < deadline, "sluice did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the background index scan finish.
    std::thread::sleep(Duration::from_millis(500));
    (guard, addr)
}

/// (requests/s, p50 ms, p99 ms) of `count` sequential requests.
fn measure(addr: SocketAddr, path: &str, count: usize) -> (f64, f64, f64) {
    let reply = get(addr, path).expect("answer");
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    let mut times = Vec::with_capacity(count);
    let started = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        let r = get(addr, path).expect("answer");
        assert_eq!(r.status, 200, "{addr}{path}: {}", r.body);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    (rate, pick(0.5), pick(0.99))
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<usize>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

fn index_bench(names: usize, queries: usize) {
    let before = rss_bytes();
    let index = NameIndex::default();
    let mut name_bytes = 0;
    for i in 0..names {
        let name = format!("bench.h{:03}.s{i:07}.requests", i % 1000);
        name_bytes += name.len();
        index.insert(&name);
    }
    let grown = rss_bytes().saturating_sub(before);
    let per_name = grown as f64 / names as f64;
    let mut times = Vec::new();
    for q in 0..queries {
        let query = format!("bench.h{:03}.s00{}*.requests", q % 1000, q % 10);
        let t = Instant::now();
        let found = index.find(&query, 100_000);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(found);
    }
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "read_api index names={names} rss={:.1} MiB ({per_name:.0} B/name, {:.0} B/name beyond the name text) find p50={:.3} ms p99={:.3} ms",
        grown as f64 / 1048576.0,
        per_name - name_bytes as f64 / names as f64,
        pick(0.5),
        pick(0.99)
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (series, count, names) = if full {
        (1000, 200, 1_000_000)
    } else {
        (20, 3, 10_000)
    };
    index_bench(names, if full { 2000 } else { 50 });

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("whisper");
    let made = Instant::now();
    make_store(&root, series);
    println!(
        "read_api store: {series} series x 1 day at 10 s made in {:.1} s",
        made.elapsed().as_secs_f64()
    );
    let (_sluice, ours) = start_sluice(&root, dir.path());
    let web = common::graphite_web::GraphiteWeb::start(&root);
    let window = format!(
        "&from={}&until={NOW}&now={NOW}&format=json&maxDataPoints=1000",
        NOW - 86_400
    );
    let requests = [
        (
            "sumSeries over every series",
            format!(
                "/render?target={}{window}",
                encode("sumSeries(bench.*.requests)")
            ),
        ),
        (
            "aliasByNode of 10 series",
            format!(
                "/render?target={}{window}",
                encode("aliasByNode(bench.s000*.requests,1)")
            ),
        ),
        (
            "one series",
            format!("/render?target=bench.s0001.requests{window}"),
        ),
        ("find", "/metrics/find?query=bench.s00*".to_string()),
    ];
    println!(
        "{:<30} {:>12} {:>9} {:>9} | {:>12} {:>9} {:>9} | ratio",
        "request", "sluice req/s", "p50 ms", "p99 ms", "graphite-web", "p50 ms", "p99 ms"
    );
    for (what, path) in &requests {
        let (our_rate, our_p50, our_p99) = measure(ours, path, count);
        let (their_rate, their_p50, their_p99) = measure(web.addr, path, (count / 4).max(2));
        println!(
            "{what:<30} {our_rate:>12.1} {our_p50:>9.2} {our_p99:>9.2} | {their_rate:>12.1} {their_p50:>9.2} {their_p99:>9.2} | {:.1}x",
            our_rate / their_rate
        );
    }
}
