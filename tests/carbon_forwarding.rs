//! Forwarding to a real carbon-cache (Debian's graphite-carbon, installed
//! by scripts/install-test-deps.sh; these tests fail, never skip, without
//! it): line and pickle, an outage with nothing lost, a buffer overflow
//! whose reported drops equal what carbon misses, and hash mode against
//! carbon's own consistent-hash ring.

use crate::common;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::carbon_cache::CarbonCache;
use common::{send_udp, write_file, CarbonCapture, Sluice};

const PATIENCE: Duration = Duration::from_secs(40);

fn sum(points: &[(i64, f64)]) -> f64 {
    points.iter().map(|p| p.1).sum()
}

/// Sends `name:1|c` every 10 ms from a thread until stopped; returns how
/// many it sent.
struct Stream {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stream {
    fn start(to: std::net::SocketAddr, name: &'static str) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let line = format!("{name}:1|c");
            // Bounded: at most 60 s of sending.
            for _ in 0..6000 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                if socket.send_to(line.as_bytes(), to).is_ok() {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Stream {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.sent.load(Ordering::Relaxed)
    }
}

fn config_file(dir: &std::path::Path, carbon: &str) -> String {
    write_file(dir, "sluice.toml", &format!("[carbon]\n{carbon}\n"))
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn line_and_pickle_points_reach_carbon() {
    let dir = tempfile::tempdir().unwrap();
    let carbon = CarbonCache::start(&dir.path().join("carbon"));
    let line = format!("line:127.0.0.1:{}", carbon.line_port);
    let pickle = format!("pickle:127.0.0.1:{}", carbon.pickle_port);
    let by_line = Sluice::start(&["--no-whisper", "--flush-interval", "1s", "--carbon", &line]);
    let by_pickle = Sluice::start(&[
        "--no-whisper",
        "--flush-interval",
        "1s",
        "--carbon",
        &pickle,
    ]);
    for (sluice, name) in [(&by_line, "vialine"), (&by_pickle, "viapickle")] {
        let text = format!("{name}.hits:3|c\n{name}.hits:2|c|@0.5\n{name}.temp:21.5|g\n{name}.lat:10|ms\n{name}.lat:30|ms");
        send_udp(sluice.udp, &[text.as_bytes()]);
    }
    assert!(by_line.terminate().success());
    assert!(by_pickle.terminate().success());
    for name in ["vialine", "viapickle"] {
        let hits = format!("stats_counts.{name}.hits");
        carbon.wait_until(&hits, PATIENCE, |c| sum(&c.points(&hits)) == 7.0);
        let temp = format!("stats.gauges.{name}.temp");
        carbon.wait_until(&temp, PATIENCE, |c| {
            c.points(&temp).last().map(|p| p.1) == Some(21.5)
        });
        let mean = format!("stats.timers.{name}.lat.mean");
        carbon.wait_until(&mean, PATIENCE, |c| {
            c.points(&mean).iter().any(|p| p.1 == 20.0)
        });
    }
}

#[test]
fn nothing_is_lost_across_a_carbon_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut carbon = CarbonCache::start(&dir.path().join("carbon"));
    let dest = format!("127.0.0.1:{}", carbon.line_port);
    let sluice = Sluice::start(&["--no-whisper", "--flush-interval", "1s", "--carbon", &dest]);
    let stream = Stream::start(sluice.udp, "outage.hits");
    std::thread::sleep(Duration::from_secs(3));
    carbon.stop();
    // Several flush intervals with carbon down.
    std::thread::sleep(Duration::from_secs(5));
    carbon.restart();
    std::thread::sleep(Duration::from_secs(3));
    let sent = stream.finish();
    assert!(sluice.terminate().success());
    let log = std::fs::read_to_string(dir.path().join("carbon/carbon.out")).unwrap_or_default();
    carbon.wait_until("every counted point", PATIENCE, |c| {
        sum(&c.points("stats_counts.outage.hits")) == sent as f64
    });
    assert!(sent > 500, "only {sent} sent; log {log}");
}

#[test]
fn overflow_drops_only_what_it_reports() {
    let dir = tempfile::tempdir().unwrap();
    let mut carbon = CarbonCache::start(&dir.path().join("carbon"));
    let mut capture = CarbonCapture::start();
    let config = config_file(
        dir.path(),
        &format!(
            "destinations = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\nbuffer_points = 100\nmax_backoff = \"500ms\"\n",
            carbon.line_port,
            capture.addr.port()
        ),
    );
    let sluice = Sluice::start(&[
        "--no-whisper",
        "--flush-interval",
        "1s",
        "--config",
        &config,
    ]);
    let stream = Stream::start(sluice.udp, "overflow.hits");
    std::thread::sleep(Duration::from_secs(3));
    carbon.stop();
    std::thread::sleep(Duration::from_secs(7));
    carbon.restart();
    // Long enough for sluice to reconnect and report its final drop count
    // in a flush that carbon and the capture both receive.
    std::thread::sleep(Duration::from_secs(4));
    stream.finish();
    let log = sluice.log.clone();
    assert!(sluice.terminate().success());
    let sluice_log = log.lock().map(|l| l.join("\n")).unwrap_or_default();

    // Everything the always-up capture got is what sluice flushed.
    let lines = capture.drain_lines(Duration::from_secs(2));
    let flushed: Vec<(String, i64, f64)> = lines
        .iter()
        .filter_map(|l| {
            let mut p = l.rsplitn(3, ' ');
            let ts = p.next()?.parse().ok()?;
            let v = p.next()?.parse().ok()?;
            Some((p.next()?.to_string(), ts, v))
        })
        .collect();
    let label = format!("127_0_0_1_{}", carbon.line_port);
    let reported = flushed
        .iter()
        .filter(|(n, _, _)| n.ends_with(&format!("destinations.{label}.dropped_points")))
        .map(|(_, _, v)| *v)
        .fold(0.0, f64::max);
    assert!(reported > 0.0, "the buffer never overflowed");
    // `up` went 1 (connected), then 0 (the outage), then 1 (back); before
    // the first connection it is 0 too.
    let up: Vec<f64> = flushed
        .iter()
        .filter(|(n, _, _)| n.ends_with(&format!("destinations.{label}.up")))
        .map(|(_, _, v)| *v)
        .collect();
    let connected = up.iter().position(|v| *v == 1.0);
    let down = connected.and_then(|c| up[c..].iter().position(|v| *v == 0.0).map(|d| c + d));
    assert!(
        down.is_some_and(|d| up[d..].contains(&1.0)),
        "up over the flushes: {up:?}"
    );
    // The total the agent logs at exit agrees with what it reported.
    let logged = sluice_log
        .lines()
        .filter(|l| {
            l.contains("carbon destination finished")
                && l.contains(&format!(":{}", carbon.line_port))
        })
        .find_map(|l| {
            l.split("dropped_points=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        });
    assert_eq!(logged, Some(reported), "{sluice_log}");
    let missing = |c: &CarbonCache| {
        let mut cache: HashMap<&str, HashMap<i64, f64>> = HashMap::new();
        flushed
            .iter()
            .filter(|(name, ts, value)| {
                let points = cache
                    .entry(name.as_str())
                    .or_insert_with(|| c.points(name).into_iter().collect());
                points.get(ts) != Some(value)
            })
            .count() as f64
    };
    let wait = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        carbon.wait_until("all but the dropped points", PATIENCE, |c| {
            missing(c) <= reported
        })
    }));
    if wait.is_err() || missing(&carbon) != reported {
        let mut by_ts: std::collections::BTreeMap<i64, (usize, usize)> = Default::default();
        for (name, ts, value) in &flushed {
            let e = by_ts.entry(*ts).or_default();
            e.0 += 1;
            if carbon
                .points(name)
                .iter()
                .all(|p| (p.0, p.1) != (*ts, *value))
            {
                e.1 += 1;
            }
        }
        panic!(
            "reported {reported} dropped, missing {}; per flush (points, missing): {by_ts:?}\nsluice log:\n{sluice_log}",
            missing(&carbon)
        );
    }
}

#[test]
fn hash_mode_puts_each_metric_where_carbons_ring_does() {
    let dir = tempfile::tempdir().unwrap();
    let a = CarbonCache::start(&dir.path().join("a"));
    let b = CarbonCache::start(&dir.path().join("b"));
    let config = config_file(
        dir.path(),
        &format!(
            "mode = \"hash\"\ndestinations = [\"127.0.0.1:{}:a\", \"pickle:127.0.0.1:{}:b\"]\n",
            a.line_port, b.pickle_port
        ),
    );
    let sluice = Sluice::start(&[
        "--no-whisper",
        "--flush-interval",
        "1s",
        "--config",
        &config,
    ]);
    let names: Vec<String> = (0..40)
        .map(|i| format!("stats_counts.hashed.m{i}"))
        .collect();
    let text: String = (0..40).map(|i| format!("hashed.m{i}:1|c\n")).collect();
    send_udp(sluice.udp, &[text.as_bytes()]);
    assert!(sluice.terminate().success());
    // carbon's own ring, from Debian's carbon package.
    let script = "import sys\nfrom carbon.hashing import ConsistentHashRing\n\
        r = ConsistentHashRing([('127.0.0.1', 'a'), ('127.0.0.1', 'b')])\n\
        for n in sys.argv[1:]: print(r.get_node(n)[1])";
    let out = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .args(&names)
        .output()
        .expect("python3 with carbon");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let owners: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(owners.len(), names.len());
    assert!(owners.iter().any(|o| o == "a") && owners.iter().any(|o| o == "b"));
    for (name, owner) in names.iter().zip(&owners) {
        let (home, other) = if owner == "a" { (&a, &b) } else { (&b, &a) };
        home.wait_until(name, PATIENCE, |c| sum(&c.points(name)) == 1.0);
        assert!(
            other.points(name).is_empty(),
            "{name} also on the other carbon"
        );
    }
}

#[test]
fn our_ring_matches_carbons_ring() {
    let names: Vec<String> = (0..2000)
        .map(|i| format!("stats.service{}.metric{}", i % 37, i))
        .collect();
    let script = "import sys\nfrom carbon.hashing import ConsistentHashRing\n\
        r = ConsistentHashRing([('10.0.0.1', None), ('10.0.0.2', None), ('10.0.0.3', 'c')])\n\
        for n in sys.stdin.read().split(): print(r.get_node(n))";
    let mut child = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with carbon");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(names.join("\n").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let theirs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    let nodes = vec![
        ("10.0.0.1".to_string(), None),
        ("10.0.0.2".to_string(), None),
        ("10.0.0.3".to_string(), Some("c".to_string())),
    ];
    let ring = sluice::sink::carbon::ring::HashRing::new(&nodes);
    let rendered = [
        "('10.0.0.1', None)",
        "('10.0.0.2', None)",
        "('10.0.0.3', 'c')",
    ];
    for (name, theirs) in names.iter().zip(&theirs) {
        assert_eq!(rendered[ring.node_for(name)], theirs, "{name}");
    }
}
