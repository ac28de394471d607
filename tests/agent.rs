//! End-to-end: the real binary on loopback, real datagrams and TCP streams
//! in, a real TCP listener capturing what the carbon sink writes.

use crate::common;

use std::time::Duration;

use common::{
    send_tcp, send_udp, start_flushing_to, write_file, CarbonCapture, Sluice, SPEC_EXAMPLE,
};

const WAIT: Duration = Duration::from_secs(10);

fn start(capture: &CarbonCapture, extra: &[&str]) -> Sluice {
    start_flushing_to(capture, extra)
}

/// The worked example of specs/etsy-statsd.md 12.1, every type at once.
#[test]
fn every_type_aggregates_like_etsy() {
    let mut capture = CarbonCapture::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(
        dir.path(),
        "sluice.toml",
        r#"
[flush]
percent_thresholds = [90, -10, 50]
histogram = [{ metric = "lat", bins = [100, 250.5, "inf"] }]
"#,
    );
    let sluice = start(&capture, &["--config", config.to_str().unwrap()]);
    capture.next_flush(WAIT);
    send_udp(sluice.udp, SPEC_EXAMPLE);
    let f = capture.flush_with("stats.hits", WAIT);
    let expect: &[(&str, f64)] = &[
        ("stats.statsd.bad_lines_seen", 3.0),
        ("stats_counts.statsd.bad_lines_seen", 3.0),
        ("stats_counts.statsd.packets_received", 11.0),
        ("stats_counts.statsd.metrics_received", 22.0),
        ("stats.hits", 8.0),
        ("stats_counts.hits", 8.0),
        ("stats.err", 10.0),
        ("stats.odd", 5.0),
        ("stats.my_key-withjunk", 1.0),
        ("stats_counts.tagged;env=prod;region=eu", 1.0),
        ("stats.timers.lat.count_90", 5.0),
        ("stats.timers.lat.mean_90", 154.0),
        ("stats.timers.lat.upper_90", 300.0),
        ("stats.timers.lat.sum_90", 770.0),
        ("stats.timers.lat.sum_squares_90", 156900.0),
        ("stats.timers.lat.count_top10", 1.0),
        ("stats.timers.lat.lower_top10", 400.0),
        ("stats.timers.lat.sum_squares_top10", 160000.0),
        ("stats.timers.lat.mean_50", 90.0),
        ("stats.timers.lat.upper_50", 120.0),
        ("stats.timers.lat.std", 121.62099599438686),
        ("stats.timers.lat.upper", 400.0),
        ("stats.timers.lat.lower", 50.0),
        ("stats.timers.lat.count", 7.0),
        ("stats.timers.lat.count_ps", 7.0),
        ("stats.timers.lat.sum", 1170.0),
        ("stats.timers.lat.sum_squares", 316900.0),
        ("stats.timers.lat.mean", 195.0),
        ("stats.timers.lat.median", 160.0),
        ("stats.timers.lat.histogram.bin_100", 1.0),
        ("stats.timers.lat.histogram.bin_250_5", 3.0),
        ("stats.timers.lat.histogram.bin_inf", 2.0),
        ("stats.gauges.temp", 55.0),
        ("stats.gauges.neg", -3.0),
        ("stats.sets.users.count", 2.0),
        ("statsd.numStats", 13.0),
    ];
    for (name, value) in expect {
        assert_eq!(f.value(name), *value, "{name} in\n{}", f.dump());
    }
    assert_eq!(f.get("stats.timers.lat.std"), Some("121.62099599438686"));
    // The next flush: counters zeroed, gauges kept, idle timer reports 0.
    let next = capture.next_flush(WAIT);
    assert_eq!(next.value("stats.hits"), 0.0);
    assert_eq!(next.value("stats.gauges.temp"), 55.0);
    assert_eq!(next.value("stats.timers.lat.count"), 0.0);
    assert_eq!(next.get("stats.timers.lat.mean"), None);
    assert_eq!(next.value("stats.sets.users.count"), 0.0);
    assert_eq!(next.value("stats.gauges.statsd.timestamp_lag"), 0.0);
    assert!(sluice.terminate().success());
}

#[test]
fn sample_rates_and_number_forms() {
    let mut capture = CarbonCapture::start();
    let sluice = start(&capture, &[]);
    capture.next_flush(WAIT);
    send_udp(
        sluice.udp,
        &[
            b"r1:1|c|@0.1\nr2:1|c|@1e-05\nr3:3|c|@.5\nr4:1|c|@0.5 ",
            b"hexed:0x10|c\nexp:1e3|c\ntiny:1e-7|c\nhuge:1e21|c",
            b"sampled:100|ms|@0.1",
            b"gr:1|g|@0.5",
        ],
    );
    let f = capture.flush_with("stats.r1", WAIT);
    assert_eq!(f.value("stats_counts.r1"), 10.0);
    assert_eq!(f.value("stats_counts.r2"), 1.0 * (1.0 / 1e-5));
    assert_eq!(f.value("stats_counts.r3"), 6.0);
    assert_eq!(f.value("stats_counts.r4"), 2.0);
    assert_eq!(f.value("stats_counts.hexed"), 16.0);
    assert_eq!(f.value("stats_counts.exp"), 1000.0);
    assert_eq!(f.get("stats_counts.tiny"), Some("1e-7"));
    assert_eq!(f.get("stats_counts.huge"), Some("1e+21"));
    assert_eq!(f.value("stats.timers.sampled.count"), 10.0);
    assert_eq!(f.value("stats.timers.sampled.count_ps"), 10.0);
    assert_eq!(f.value("stats.timers.sampled.mean"), 100.0);
    assert_eq!(f.value("stats.gauges.gr"), 1.0);
    // Values that overflow to infinity are never written, only counted.
    send_udp(sluice.udp, &[b"big:1e308|c\nbig:1e308|c"]);
    let f = capture.flush_with("stats_counts.statsd.non_finite_dropped", WAIT);
    assert!(f.value("stats_counts.statsd.non_finite_dropped") >= 2.0);
    sluice.terminate();
}

#[test]
fn bad_lines_are_counted_and_never_hurt_their_neighbours() {
    let mut capture = CarbonCapture::start();
    let sluice = start(&capture, &[]);
    capture.next_flush(WAIT);
    // Etsy crashes on the @+0.5 / @ 0.5 / @Infinity rates and toString
    // timers; here they are bad lines and the good lines around them count.
    let hostile: &[&[u8]] = &[
        b"good:1|c\ncrash:1|c|@+0.5\ngood:1|c",
        b"crash:1|c|@ 0.5\ngood:1|c\ncrash:1|c|@Infinity",
        b"toString:1|ms\nconstructor:1|c\n__proto__:1|c\ngood:1|c",
        b"ea:1|c|@0\ninf:Infinity|c\nnan:NaN|g\n\xff\xfe:1|c\ngood:1|c",
        b"u:v:1|c\n:\n|\n||||\n:::\n@\n",
        b"\x00\x01\x02",
        b"_e{5,4}:title|text\n_sc|check|0\ngood:1|c",
    ];
    send_udp(sluice.udp, hostile);
    let f = capture.flush_with("stats.good", WAIT);
    assert_eq!(f.value("stats_counts.good"), 6.0, "{}", f.dump());
    assert_eq!(f.value("stats_counts.u"), 1.0);
    assert_eq!(f.value("stats.timers.toString.count"), 1.0);
    assert_eq!(f.value("stats_counts.constructor"), 1.0);
    assert_eq!(f.value("stats_counts.__proto__"), 1.0);
    // Bad: 3 crash rates, @0, Infinity, NaN gauge, 'v' of u:v:1|c, ':' (no
    // type), '|', '||||', ':::' (3 empty samples), '@', and the NUL line.
    assert_eq!(
        f.value("stats_counts.statsd.bad_lines_seen"),
        15.0,
        "{}",
        f.dump()
    );
    assert_eq!(f.value("stats_counts.statsd.events_dropped"), 2.0);
    assert_eq!(f.value("stats_counts.statsd.packets_received"), 7.0);
    // The agent is still alive and well.
    send_udp(sluice.udp, &[b"after:1|c"]);
    let f = capture.flush_with("stats.after", WAIT);
    assert_eq!(f.value("stats_counts.after"), 1.0);
    assert!(sluice.terminate().success());
}

#[test]
fn tcp_partial_lines_are_joined_across_reads() {
    let mut capture = CarbonCapture::start();
    let sluice = start(&capture, &[]);
    capture.next_flush(WAIT);
    send_tcp(
        sluice.tcp,
        &[b"tcpc:1|c\ntcpc:2", b"|c\ntcpc:4|c\r\n", b"tcpc:100|c"],
    );
    // Unterminated last line before close: counted (statsd-ruby sends no
    // newline over TCP at all).
    send_tcp(sluice.tcp, &[b"ruby:1|c"]);
    let f = capture.flush_with("stats.tcpc", WAIT);
    let f = if f.get("stats.ruby").is_some() {
        f
    } else {
        let next = capture.flush_with("stats.ruby", WAIT);
        assert_eq!(next.value("stats_counts.tcpc"), 0.0);
        f
    };
    assert_eq!(f.value("stats_counts.tcpc"), 107.0, "{}", f.dump());
    sluice.terminate();
}

#[test]
fn tcp_overlong_lines_are_dropped_and_counted() {
    let mut capture = CarbonCapture::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(
        dir.path(),
        "sluice.toml",
        "[listen]\ntcp_max_line_length = 100\n",
    );
    let sluice = start(&capture, &["--config", config.to_str().unwrap()]);
    capture.next_flush(WAIT);
    let long = format!("long{}:1|c", "x".repeat(300));
    let first = format!("before:1|c\n{}", &long[..150]);
    let second = format!("{}\nafter:1|c\n", &long[150..]);
    send_tcp(sluice.tcp, &[first.as_bytes(), second.as_bytes()]);
    let f = capture.flush_with("stats.after", WAIT);
    assert_eq!(f.value("stats_counts.after"), 1.0, "{}", f.dump());
    assert_eq!(f.value("stats_counts.statsd.lines_too_long"), 1.0);
    assert!(f.names().iter().all(|n| !n.contains("longx")));
    sluice.terminate();
}

#[test]
fn sigterm_flushes_everything_received() {
    let mut capture = CarbonCapture::start();
    let carbon = capture.addr.to_string();
    // A long interval: the only flush with data is the final one.
    let sluice = Sluice::start(&[
        "--no-whisper",
        "--flush-interval",
        "1h",
        "--carbon",
        &carbon,
    ]);
    let datagrams: Vec<String> = (0..200).map(|i| format!("last:1|c\nlt:{i}|ms")).collect();
    let refs: Vec<&[u8]> = datagrams.iter().map(|d| d.as_bytes()).collect();
    send_udp(sluice.udp, &refs);
    send_tcp(sluice.tcp, &[b"lasttcp:5|c\n"]);
    std::thread::sleep(Duration::from_millis(100));
    let status = sluice.terminate();
    assert!(status.success(), "exit status {status:?}");
    let f = capture.flush_with("stats.last", WAIT);
    assert_eq!(f.value("stats_counts.last"), 200.0);
    assert_eq!(f.value("stats_counts.lasttcp"), 5.0);
    assert_eq!(f.value("stats.timers.lt.count"), 200.0);
    assert_eq!(f.value("stats.timers.lt.upper"), 199.0);
}

#[test]
fn non_legacy_naming_prefixes_suffix_and_idle_deletion() {
    let mut capture = CarbonCapture::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(
        dir.path(),
        "sluice.toml",
        r#"
[flush]
percent_thresholds = [95]
delete_idle_stats = true
gauges_max_ttl = 2
[graphite]
legacy_namespace = false
global_prefix = "pfx"
prefix_counter = ""
prefix_timer = "t"
prefix_gauge = "g"
prefix_set = "s"
global_suffix = "host1"
prefix_stats = "agg"
"#,
    );
    let sluice = start(&capture, &["--config", config.to_str().unwrap()]);
    capture.next_flush(WAIT);
    send_udp(
        sluice.udp,
        &[
            b"cnt:3|c",
            b"tm:10|ms\ntm:20|ms\ntm:30|ms",
            b"gau:7|g",
            b"st:x|s",
            b"tagd:2|c|#k:v",
        ],
    );
    let f = capture.flush_with("pfx.cnt.count.host1", WAIT);
    assert_eq!(f.value("pfx.cnt.rate.host1"), 3.0);
    assert_eq!(f.value("pfx.tagd.count.host1;k=v"), 2.0);
    assert_eq!(f.value("pfx.t.tm.mean_95.host1"), 20.0);
    assert_eq!(f.value("pfx.t.tm.std.host1"), 8.16496580927726);
    assert_eq!(f.value("pfx.g.gau.host1"), 7.0);
    assert_eq!(f.value("pfx.s.st.count.host1"), 1.0);
    assert_eq!(f.value("pfx.agg.numStats.host1"), 9.0);
    assert!(f.get("pfx.agg.metrics_received.count.host1").is_some());
    assert!(f.get("pfx.agg.graphiteStats.flush_length.host1").is_some());
    let second = capture.next_flush(WAIT);
    assert_eq!(second.get("pfx.cnt.count.host1"), None, "{}", second.dump());
    assert_eq!(second.get("pfx.t.tm.count.host1"), None);
    assert_eq!(second.value("pfx.g.gau.host1"), 7.0);
    let third = capture.next_flush(WAIT);
    assert_eq!(third.get("pfx.g.gau.host1"), None);
    assert_eq!(third.value("pfx.agg.numStats.host1"), 4.0);
    sluice.terminate();
}

#[test]
fn points_survive_carbon_being_down_at_first() {
    // Reserve a port, start sluice against it with nothing listening.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let carbon = addr.to_string();
    let sluice = Sluice::start(&[
        "--no-whisper",
        "--flush-interval",
        "1s",
        "--carbon",
        &carbon,
    ]);
    send_udp(sluice.udp, &[b"early:1|c"]);
    std::thread::sleep(Duration::from_millis(2500));
    let mut capture = CarbonCapture::on(std::net::TcpListener::bind(addr).unwrap());
    let f = capture.flush_with("stats.early", Duration::from_secs(20));
    assert!(f.value("stats_counts.early") == 1.0 || f.value("stats_counts.early") == 0.0);
    let lines = capture.drain_lines(Duration::from_secs(2));
    let mut all: Vec<String> = f.lines.iter().map(|(n, v, _)| format!("{n} {v}")).collect();
    all.extend(
        lines
            .iter()
            .map(|l| l.rsplit_once(' ').map(|x| x.0).unwrap_or("").to_string()),
    );
    assert!(all.iter().any(|l| l == "stats_counts.early 1"), "{all:?}");
    assert!(sluice.log_text().contains("carbon destination down"));
    sluice.terminate();
}

#[test]
fn check_config_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write_file(dir.path(), "bad.toml", "[flush]\ninterval = \"often\"\n");
    let out = std::process::Command::new(common::binary())
        .args(["check-config", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("flush.interval") && err.contains("often") && err.contains("10s"),
        "{err}"
    );

    let out = std::process::Command::new(common::binary())
        .args([
            "check-config",
            "--config",
            "config/sluice.toml",
            "--flush-interval",
            "2s",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("[flush]\ninterval = \"2s\"\n"),
        "the printout uses the file's own names: {text}"
    );
}

// Regression: the signal handlers used to be installed only after READY=1,
// so a SIGTERM right after READY killed the process with a failure status.
#[test]
fn tells_systemd_when_ready_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let sluice = Sluice::start_with_env(
        &["--no-whisper", "--flush-interval", "1h"],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    assert!(sluice.terminate().success());
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
}

// Regression: SO_REUSEPORT let a second sluice bind the port a running
// one held; the two split the traffic (200 datagrams came out as 103 and
// 97) and wrote the same whisper files.
#[test]
fn a_second_agent_on_a_held_port_refuses_to_start() {
    let first = Sluice::start(&["--no-whisper"]);
    let held = first.udp.to_string();
    let mut second = std::process::Command::new(common::binary())
        .args([
            "--no-whisper",
            "--admin",
            "",
            "--tcp",
            "127.0.0.1:0",
            "--udp",
            &held,
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: were the port taken again, the second agent would run on.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while second.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second agent started on {held}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = second.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&held) && err.contains("already in use"),
        "the refusal names the address: {err}"
    );
    assert!(first.terminate().success());
}

// Regression: 300 slowloris connections (a byte a second) kept their slots
// for ever, and each refusal past the limit wrote a WARN line.
#[test]
fn slowloris_connections_lose_their_slots_and_refusals_log_once_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_file(
        dir.path(),
        "sluice.toml",
        "[listen]\ntcp_max_connections = 4\ntcp_idle_timeout = \"1s\"\n[whisper]\nenabled = false\n",
    );
    let capture = common::CarbonCapture::start();
    let carbon = capture.addr.to_string();
    let mut capture = capture;
    let sluice = Sluice::start(&[
        "--config",
        config.to_str().unwrap(),
        "--flush-interval",
        "1s",
        "--carbon",
        &carbon,
    ]);
    // Four trickling clients take every slot.
    let trickle: Vec<std::net::TcpStream> = (0..4)
        .map(|_| std::net::TcpStream::connect(sluice.tcp).unwrap())
        .collect();
    let trickler = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let mut streams = trickle;
        while started.elapsed() < Duration::from_secs(4) {
            for s in &mut streams {
                let _ = std::io::Write::write_all(s, b"x");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    // Past the limit: refused, counted, logged once a second at most.
    for _ in 0..200 {
        let _ = std::net::TcpStream::connect(sluice.tcp);
    }
    // Once the tricklers time out, a normal client gets through.
    std::thread::sleep(Duration::from_millis(2000));
    send_tcp(sluice.tcp, &[b"after.slowloris:5|c\n"]);
    let flush = capture.flush_with("stats_counts.after.slowloris", Duration::from_secs(10));
    assert_eq!(flush.value("stats_counts.after.slowloris"), 5.0);
    trickler.join().unwrap();
    let refusal_lines = sluice
        .log_text()
        .lines()
        .filter(|l| l.contains("connection refused: connection limit reached"))
        .count();
    assert!(sluice.terminate().success());
    assert!(
        (1..=6).contains(&refusal_lines),
        "{refusal_lines} refusal log lines"
    );
}

/// CPU ticks (user + system) of process `pid`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit(')').next().unwrap();
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

// Regression: out of descriptors, the accept loops retried at once and the
// agent burnt 75 % of a core doing nothing.
#[test]
fn out_of_descriptors_the_accept_loops_back_off() {
    let sluice = Sluice::start_limited(&["--no-whisper", "--admin", "127.0.0.1:0"], &[], Some(64));
    let admin = sluice.admin.unwrap();
    let mut held = Vec::new();
    for _ in 0..150 {
        if let Ok(s) = std::net::TcpStream::connect(sluice.tcp) {
            held.push(s);
        }
    }
    for _ in 0..30 {
        if let Ok(s) = std::net::TcpStream::connect(admin) {
            held.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let pid = sluice.child.id();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    // 200 ticks would be a whole core for 2 s; spinning used ~150.
    assert!(used < 40, "{used} ticks in 2 s while out of descriptors");
    assert!(
        sluice.log_text().contains("accept failed; pausing"),
        "the exhaustion is logged"
    );
    drop(held);
    assert!(sluice.terminate().success());
}
