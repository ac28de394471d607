//! Forwarding throughput to one real carbon-cache (Debian's graphite-carbon,
//! /usr/bin/carbon-cache): points per second written over the line and the
//! pickle protocol through sluice's carbon forwarder, and the CPU sluice's
//! side used for it (getrusage of this process, which runs only the
//! forwarder). carbon-cache runs on loopback with a private config and
//! stops when the bench ends. Bounded: 20 flushes of 50 K points per
//! protocol.
//!
//! Run: cargo bench --bench carbon_forward

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::config::{Config, Destination, RawConfig};
use sluice::sink::carbon::CarbonForwarder;
use sluice::sink::{PointBatch, SinkHandle};
use sluice::telemetry::GraphiteStats;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let (line_port, pickle_port) = (free_port(), free_port());
    let mut carbon = None;
    if quick {
        // `cargo test --benches`: a plain TCP sink stands in, briefly.
        for port in [line_port, pickle_port] {
            let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
            std::thread::spawn(move || {
                for s in listener.incoming().flatten() {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut &s, &mut std::io::sink());
                    });
                }
            });
        }
    } else {
        for d in ["conf", "storage/whisper", "storage/log"] {
            std::fs::create_dir_all(root.join(d)).expect("dirs");
        }
        let r = root.display();
        std::fs::write(
            root.join("conf/carbon.conf"),
            format!(
                "[cache]\nSTORAGE_DIR = {r}/storage/\nLOCAL_DATA_DIR = {r}/storage/whisper/\nCONF_DIR = {r}/conf/\n\
                 LOG_DIR = {r}/storage/log/\nPID_DIR = {r}/storage/\nUSER =\nMAX_CACHE_SIZE = inf\n\
                 MAX_UPDATES_PER_SECOND = 500\nMAX_CREATES_PER_MINUTE = 600\nLINE_RECEIVER_INTERFACE = 127.0.0.1\n\
                 LINE_RECEIVER_PORT = {line_port}\nPICKLE_RECEIVER_INTERFACE = 127.0.0.1\nPICKLE_RECEIVER_PORT = {pickle_port}\n\
                 CACHE_QUERY_INTERFACE = 127.0.0.1\nCACHE_QUERY_PORT = {}\nENABLE_UDP_LISTENER = False\n\
                 USE_FLOW_CONTROL = False\nLOG_UPDATES = False\nLOG_CREATES = False\nENABLE_TAGS = False\n\
                 CARBON_METRIC_INTERVAL = 0\n",
                free_port()
            ),
        )
        .expect("carbon.conf");
        std::fs::write(
            root.join("conf/storage-schemas.conf"),
            "[all]\npattern = .*\nretentions = 10s:1h\n",
        )
        .expect("schemas");
        let child = Command::new("/usr/bin/carbon-cache")
            .arg(format!("--config={}/conf/carbon.conf", r))
            .args(["--nodaemon", "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("carbon-cache (apt-get install graphite-carbon)");
        carbon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", pickle_port)).is_err() {
            assert!(Instant::now() < deadline, "carbon-cache did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    let (flushes, per_flush) = if quick { (2, 1000) } else { (20, 50_000) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    for (proto, port) in [("line", line_port), ("pickle", pickle_port)] {
        let mut cfg = Config::from_raw(&RawConfig::default())
            .expect("config")
            .carbon;
        cfg.destinations =
            vec![Destination::parse(&format!("{proto}:127.0.0.1:{port}")).expect("dest")];
        let graphite = Arc::new(GraphiteStats::new(0));
        let handle = SinkHandle::spawn(
            CarbonForwarder::new(cfg, Duration::from_secs(60), graphite.clone()),
            runtime.handle(),
        );
        let batches: Vec<Arc<PointBatch>> = (0..flushes)
            .map(|f| {
                let mut b = PointBatch::new(1_795_300_000 + 10 * f as i64);
                for i in 0..per_flush {
                    b.push_with((i * f) as f64 * 0.25, |n| {
                        n.push_str("bench.forward.metric");
                        n.push_str(&i.to_string());
                    });
                }
                Arc::new(b)
            })
            .collect();
        let total = (flushes * per_flush) as u64;
        let cpu = cpu_seconds();
        let started = Instant::now();
        for b in batches {
            handle.submit(b);
        }
        let sent = || {
            graphite
                .destinations
                .lock()
                .ok()
                .and_then(|d| {
                    d.first()
                        .map(|(_, s)| s.sent_points.load(Ordering::Relaxed))
                })
                .unwrap_or(0)
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while sent() < total && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let elapsed = started.elapsed().as_secs_f64();
        let used = cpu_seconds() - cpu;
        println!(
            "carbon_forward {proto:>6}: {} of {total} points in {elapsed:.2}s = {:.0} points/s; sluice CPU {used:.2}s ({:.2} CPU-s per million points){}",
            sent(),
            sent() as f64 / elapsed,
            used / (sent().max(1) as f64 / 1e6),
            if quick { " [quick run against a plain TCP sink]" } else { " to a real carbon-cache" }
        );
        runtime.block_on(handle.close(Duration::from_secs(5)));
    }
    if let Some(mut c) = carbon {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let _ = c.wait();
    }
}
