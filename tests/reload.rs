//! SIGHUP reloads the config file: changed statistics apply from the next
//! flush without losing counts, a broken file keeps the running config,
//! and settings that need new sockets are reported, not applied.

use crate::common;

use std::time::Duration;

use common::{start_captured, write_file, Flush, Sluice};

const WAIT: Duration = Duration::from_secs(10);

fn hup(sluice: &Sluice) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(sluice.child.id() as i32, libc::SIGHUP);
    }
}

fn counted(flush: &Flush, name: &str) -> f64 {
    flush.get(name).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

#[test]
fn new_percentiles_apply_at_the_next_flush_and_no_count_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (sluice, mut capture) =
        start_captured(dir.path(), "[flush]\npercent_thresholds = [90]\n", &[]);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = 0u64;
    let mut total = 0.0;
    let send_some = |n: usize, sent: &mut u64| {
        for i in 0..n {
            let line = format!("reload.hits:1|c\nreload.lat:{}|ms", i % 10);
            socket.send_to(line.as_bytes(), sluice.udp).unwrap();
            *sent += 1;
        }
    };
    // Before: mean_90.
    send_some(50, &mut sent);
    let before = capture.flush_with("stats.timers.reload.lat.mean_90", WAIT);
    total += counted(&before, "stats_counts.reload.hits");
    write_file(
        dir.path(),
        "sluice.toml",
        "[flush]\npercent_thresholds = [50, -10]\n",
    );
    send_some(50, &mut sent);
    hup(&sluice);
    send_some(50, &mut sent);
    // Flushes until the new stats show, counting every hit on the way.
    let mut after = None;
    for _ in 0..10 {
        let f = capture.next_flush(WAIT);
        total += counted(&f, "stats_counts.reload.hits");
        if f.get("stats.timers.reload.lat.mean_50").is_some() {
            after = Some(f);
            break;
        }
        assert!(
            f.get("stats.timers.reload.lat.upper_90").is_some()
                || f.get("stats.timers.reload.lat.count").is_some()
        );
    }
    let after = after.expect("the reloaded percentiles never showed");
    assert!(
        after.get("stats.timers.reload.lat.lower_top10").is_some(),
        "{}",
        after.dump()
    );
    assert_eq!(after.get("stats.timers.reload.lat.mean_90"), None);
    send_some(50, &mut sent);
    assert!(sluice.log_text().contains("configuration reloaded"));
    let log = sluice.log.clone();
    assert!(sluice.terminate().success());
    // The rest, up to the final flush.
    for line in capture.drain_lines(Duration::from_secs(2)) {
        if let Some(v) = line.strip_prefix("stats_counts.reload.hits ") {
            total += v
                .split(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    assert_eq!(
        total,
        sent as f64,
        "log: {:?}",
        log.lock().map(|l| l.join("\n"))
    );
}

#[test]
fn a_broken_file_keeps_the_running_config() {
    let dir = tempfile::tempdir().unwrap();
    let (sluice, mut capture) =
        start_captured(dir.path(), "[flush]\npercent_thresholds = [75]\n", &[]);
    write_file(
        dir.path(),
        "sluice.toml",
        "[flush]\npercent_thresholds = [175]\n[listen\n",
    );
    hup(&sluice);
    std::thread::sleep(Duration::from_millis(300));
    common::send_udp(sluice.udp, &[b"still:5|ms"]);
    let f = capture.flush_with("stats.timers.still.mean_75", WAIT);
    assert_eq!(f.value("stats.timers.still.mean_75"), 5.0);
    assert!(
        sluice.log_text().contains("reload refused"),
        "{}",
        sluice.log_text()
    );

    // A valid file that changes the receivers: reported, not applied.
    write_file(
        dir.path(),
        "sluice.toml",
        "[listen]\nudp_receivers = 3\n[flush]\npercent_thresholds = [75]\n",
    );
    hup(&sluice);
    std::thread::sleep(Duration::from_millis(300));
    common::send_udp(sluice.udp, &[b"same:1|c"]);
    let f = capture.flush_with("stats.same", WAIT);
    assert_eq!(f.value("stats_counts.same"), 1.0);
    let log = sluice.log_text();
    assert!(
        log.contains("only after a restart") && log.contains("listen.udp"),
        "{log}"
    );
    assert!(sluice.terminate().success());
}

// Regression: SIGHUP with an emptied config file was taken as "all
// defaults": carbon forwarding silently off and the store turned on at
// ./data/whisper.
#[test]
fn an_empty_file_on_sighup_is_refused_and_the_running_config_stays() {
    let dir = tempfile::tempdir().unwrap();
    let (sluice, mut capture) =
        start_captured(dir.path(), "[flush]\npercent_thresholds = [90]\n", &[]);
    common::send_udp(sluice.udp, &[b"empty.before:1|c"]);
    capture.flush_with("stats_counts.empty.before", WAIT);
    write_file(
        dir.path(),
        "sluice.toml",
        "# truncated by a botched deploy\n",
    );
    hup(&sluice);
    let deadline = std::time::Instant::now() + WAIT;
    while !sluice.log_text().contains("reload refused") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            sluice.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        sluice.log_text().contains("empty file is refused"),
        "{}",
        sluice.log_text()
    );
    // Still forwarding to carbon.
    common::send_udp(sluice.udp, &[b"empty.after:2|c"]);
    let flush = capture.flush_with("stats_counts.empty.after", WAIT);
    assert_eq!(counted(&flush, "stats_counts.empty.after"), 2.0);
    assert!(sluice.terminate().success());
}

#[test]
fn a_reload_that_turns_carbon_off_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut capture = common::CarbonCapture::start();
    let with_carbon = format!("[carbon]\ndestinations = [\"{}\"]\n", capture.addr);
    let config = write_file(dir.path(), "sluice.toml", &with_carbon);
    let sluice = Sluice::start(&[
        "--config",
        config.to_str().unwrap(),
        "--no-whisper",
        "--flush-interval",
        "1s",
    ]);
    capture.next_flush(WAIT);
    write_file(
        dir.path(),
        "sluice.toml",
        "[flush]\npercent_thresholds = [90]\n",
    );
    hup(&sluice);
    let deadline = std::time::Instant::now() + WAIT;
    while !sluice
        .log_text()
        .contains("carbon forwarding is turned off")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            sluice.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let warned = sluice
        .log_text()
        .lines()
        .any(|l| l.contains("WARN") && l.contains("carbon forwarding is turned off"));
    assert!(warned, "at warn level: {}", sluice.log_text());
    assert!(sluice.terminate().success());
}
