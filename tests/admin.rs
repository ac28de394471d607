//! The admin interface of the running binary over a real TCP connection:
//! Etsy's commands and reply shapes, pipelined commands, deletes with
//! patterns while traffic flows.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{send_udp, Sluice};

/// Sends `text` and reads until the reply holds `until` (or the peer closes).
fn ask(stream: &mut TcpStream, text: &str, until: &str) -> String {
    stream.write_all(text.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 65536];
    while !String::from_utf8_lossy(&reply).contains(until) {
        assert!(
            Instant::now() < deadline,
            "no {until:?} in {:?}",
            String::from_utf8_lossy(&reply)
        );
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{e}"),
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

fn start() -> Sluice {
    Sluice::start(&[
        "--no-whisper",
        "--flush-interval",
        "1h",
        "--admin",
        "127.0.0.1:0",
    ])
}

#[test]
fn etsy_commands_and_shapes() {
    let sluice = start();
    let mut admin = connect(sluice.admin.unwrap());
    assert_eq!(
        ask(&mut admin, "help\n", "\n\n"),
        "Commands: stats, counters, timers, gauges, sets, delcounters, deltimers, delgauges, delsets, health, config, tap PATTERN, quit\n\n"
    );
    assert_eq!(ask(&mut admin, "health\n", "\n"), "health: up\n");
    assert_eq!(ask(&mut admin, "health down\n", "\n"), "health: down\n");
    assert_eq!(ask(&mut admin, "health UP\n", "\n"), "health: up\n");
    assert_eq!(ask(&mut admin, "bogus\n", "\n"), "ERROR\n");

    send_udp(
        sluice.udp,
        &[b"hits:1|c\nlat:100|ms\nlat:200|ms\ntemp:55|g\nusers:alice|s\nusers:bob|s\nbad:x|c"],
    );
    std::thread::sleep(Duration::from_millis(300));
    let counters = ask(&mut admin, "counters\n", "END\n\n");
    assert!(counters.contains("hits: 1"), "{counters}");
    assert!(
        counters.contains("'statsd.bad_lines_seen': 0"),
        "{counters}"
    );
    assert!(counters.ends_with("}\nEND\n\n"), "{counters}");
    assert_eq!(
        ask(&mut admin, "timers\n", "END\n\n"),
        "{ lat: [ 100, 200 ] }\nEND\n\n"
    );
    assert_eq!(
        ask(&mut admin, "gauges\n", "END\n\n"),
        "{ temp: 55 }\nEND\n\n"
    );
    assert_eq!(
        ask(&mut admin, "sets\n", "END\n\n"),
        "{ users: [ 'alice', 'bob' ] }\nEND\n\n"
    );
    let stats = ask(&mut admin, "stats\n", "END\n\n");
    for line in [
        "uptime: ",
        "messages.last_msg_seen: ",
        "messages.bad_lines_seen: 1\n",
        "graphite.last_flush: ",
        "graphite.flush_length: ",
        "sluice.series.counters: 4\n",
        "sluice.series.sets: 1\n",
    ] {
        assert!(stats.contains(line), "{line:?} not in {stats}");
    }
    // With no failure, Etsy 0.9 prints now - 0 (its last_exception starts
    // at 0, unlike last_flush): checked against statsd 0.9.0's admin port.
    let last_exception: i64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("graphite.last_exception: "))
        .and_then(|v| v.parse().ok())
        .expect("graphite.last_exception line");
    let now = sluice::telemetry::unix_now_rounded();
    assert!(
        (now - last_exception).abs() <= 5,
        "{last_exception} vs {now}"
    );
    let config = ask(&mut admin, "config\n", "END\n\n");
    assert!(
        config.starts_with('\n')
            && config.contains("\nflush > interval: \"3600s\"\n")
            && config.contains("\nwhisper > enabled: false\n")
            && config.ends_with("\nEND\n\n"),
        "{config}"
    );

    // Pipelined: several commands in one write, answered in order.
    let both = ask(
        &mut admin,
        "health\ngauges\ndelgauges temp nothere\n",
        "nothere not found\nEND\n\n",
    );
    assert_eq!(
        both,
        "health: up\n{ temp: 55 }\nEND\n\ndeleted: temp\nmetric nothere not found\nEND\n\n"
    );
    assert_eq!(
        ask(&mut admin, "delsets users\n", "END\n\n"),
        "deleted: users\nEND\n\n"
    );
    assert_eq!(ask(&mut admin, "sets\n", "END\n\n"), "{}\nEND\n\n");

    // quit closes the connection.
    admin.write_all(b"quit\n").unwrap();
    let mut rest = Vec::new();
    admin
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(admin.read_to_end(&mut rest).unwrap(), 0);
    assert!(sluice.terminate().success());
}

#[test]
fn deletes_with_patterns_while_traffic_flows() {
    let sluice = start();
    let udp = sluice.udp;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // Traffic on keys outside the pattern, bounded in time.
    let sender = std::thread::spawn(move || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut sent = 0u64;
        while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
            let _ = socket.send_to(b"keep.me:1|c\nkeep.you:1|c", udp);
            sent += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
        sent
    });
    let names: String = (0..200).map(|i| format!("app.web{i}.hits:1|c\n")).collect();
    send_udp(udp, &[names.as_bytes()]);
    std::thread::sleep(Duration::from_millis(300));
    let mut admin = connect(sluice.admin.unwrap());
    let reply = ask(
        &mut admin,
        "delcounters app.web1* app.*.nothing\n",
        "END\n\n",
    );
    // app.web1, app.web10-19, app.web100-199: 111 keys.
    assert_eq!(reply.matches("deleted: app.web1").count(), 111, "{reply}");
    assert!(reply.contains("metric app.*.nothing not found\n"));
    let counters = ask(&mut admin, "counters\n", "END\n\n");
    assert!(!counters.contains("app.web1"), "{counters}");
    assert!(counters.contains("'app.web2.hits': 1"));
    assert!(counters.contains("'keep.me'"));
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    assert!(sent > 0);
    std::thread::sleep(Duration::from_millis(300));
    // The flowing keys were never touched by the deletes.
    let counters = ask(&mut admin, "counters\n", "END\n\n");
    let keep = counters
        .split("'keep.me': ")
        .nth(1)
        .and_then(|r| r.split([',', '\n', ' ']).next())
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(keep, Some(sent), "{counters}");
    assert!(sluice.terminate().success());
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn http_health_and_prometheus_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_file(
        dir.path(),
        "sluice.toml",
        "[http]\naddress = \"127.0.0.1:0\"\n",
    );
    let sluice = Sluice::start(&[
        "--no-whisper",
        "--flush-interval",
        "1s",
        "--admin",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]);
    let http = sluice.logged_addr("http").expect("http address in the log");
    send_udp(sluice.udp, &[b"a:1|c\nb:2|g\nbad\n", b"c:3|ms"]);
    // Past a flush: totals since start must not be the interval's part,
    // which the flush zeroes (a Prometheus counter never goes back).
    std::thread::sleep(Duration::from_millis(2300));
    let health = http_get(http, "/health");
    assert!(
        health.starts_with("HTTP/1.1 200 OK\r\n") && health.ends_with("\r\n\r\nup\n"),
        "{health}"
    );
    let metrics = http_get(http, "/metrics");
    for line in [
        "# TYPE sluice_packets_received_total counter\nsluice_packets_received_total 2\n",
        "sluice_metrics_received_total 4\n",
        "sluice_bad_lines_seen_total 1\n",
        "sluice_series{type=\"timers\"} 1\n",
        "sluice_kernel_dropped_datagrams_total 0\n",
        "# HELP sluice_whisper_errors_total ",
        "sluice_non_finite_dropped_total 0\n",
        "sluice_events_dropped_total 0\n",
    ] {
        assert!(metrics.contains(line), "{line:?} not in {metrics}");
    }
    let mut admin = connect(sluice.admin.unwrap());
    let stats = ask(&mut admin, "stats\n", "END\n\n");
    for line in [
        "messages.bad_lines_seen: 1\n",
        "sluice.bad_lines_seen: 1\n",
        "sluice.packets_received: 2\n",
        "sluice.whisper_names_rejected: 0\n",
    ] {
        assert!(stats.contains(line), "{line:?} not in {stats}");
    }
    // The admin health switch drives /health.
    assert_eq!(ask(&mut admin, "health down\n", "\n"), "health: down\n");
    assert!(http_get(http, "/health").starts_with("HTTP/1.1 503"));
    assert!(http_get(http, "/nope").starts_with("HTTP/1.1 404"));
    assert!(sluice.terminate().success());
}

/// Flush arrival gaps at the capture while `during` runs.
fn flush_gaps_during(
    capture: &mut common::CarbonCapture,
    during: impl FnOnce() + Send + 'static,
) -> Vec<Duration> {
    let worker = std::thread::spawn(during);
    let mut gaps = Vec::new();
    let mut last = Instant::now();
    while !worker.is_finished() {
        capture.next_flush(Duration::from_secs(30));
        gaps.push(last.elapsed());
        last = Instant::now();
    }
    worker.join().unwrap();
    gaps
}

fn many_counters(sluice: &Sluice, n: usize) {
    let lines: Vec<String> = (0..n).map(|i| format!("load.c{i:06}:1|c")).collect();
    let datagrams: Vec<Vec<u8>> = lines
        .chunks(200)
        .map(|c| c.join("\n").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
    send_udp(sluice.udp, &refs);
}

// Regression: eight parallel `counters` dumps ran on the async runtime and
// stalled carbon delivery; a 32,000-character glob held the shard locks
// for seconds, so the next flush carried several intervals as one.
#[test]
fn admin_dumps_and_huge_globs_never_delay_a_flush() {
    let mut capture = common::CarbonCapture::start();
    let sluice = common::start_flushing_to(&capture, &["--admin", "127.0.0.1:0"]);
    let admin = sluice.admin.unwrap();
    many_counters(&sluice, 30_000);
    capture.next_flush(Duration::from_secs(10));
    let gaps = flush_gaps_during(&mut capture, move || {
        let dumps: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut s = connect(admin);
                    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    ask(&mut s, "counters\n", "END\n\n")
                })
            })
            .collect();
        for d in dumps {
            // Streamed a shard at a time, still one well-formed dump with
            // every key once.
            let dump = d.join().unwrap();
            assert!(dump.starts_with("{\n  ") && dump.ends_with("\n}\nEND\n\n"));
            let keys: std::collections::BTreeSet<&str> = dump
                .lines()
                .filter_map(|l| l.trim().strip_prefix("'load.c"))
                .filter_map(|l| l.split('\'').next())
                .collect();
            assert_eq!(keys.len(), 30_000);
            assert_eq!(dump.matches("'load.c").count(), 30_000);
        }
        // A client that leaves in the middle of a dump stops it, and the
        // next command is served.
        let mut quitter = connect(admin);
        quitter.write_all(b"counters\n").unwrap();
        let mut first = [0u8; 64];
        quitter.read_exact(&mut first).unwrap();
        drop(quitter);
        let mut s = connect(admin);
        assert_eq!(ask(&mut s, "health\n", "\n"), "health: up\n");
        let glob = "*a".repeat(16_000);
        let started = Instant::now();
        let mut s = connect(admin);
        let reply = ask(&mut s, &format!("delcounters {glob}\n"), "END\n\n");
        assert!(reply.contains("not found"), "{reply}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the glob took {:?}",
            started.elapsed()
        );
    });
    assert!(!gaps.is_empty(), "no flush during the dumps");
    assert!(
        gaps.iter().all(|g| *g < Duration::from_millis(2500)),
        "a flush was delayed: {gaps:?}"
    );
    assert!(sluice.terminate().success());
}

#[test]
fn admin_connections_are_limited() {
    let sluice = start();
    let admin = sluice.admin.unwrap();
    let held: Vec<TcpStream> = (0..sluice::admin::MAX_CONNECTIONS)
        .map(|_| connect(admin))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = connect(admin);
    let reply = ask(&mut extra, "health\n", "\n");
    assert!(reply.contains("too many admin connections"), "{reply}");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let mut again = connect(admin);
    assert_eq!(ask(&mut again, "health\n", "\n"), "health: up\n");
    assert!(sluice.terminate().success());
}
