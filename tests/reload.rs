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
