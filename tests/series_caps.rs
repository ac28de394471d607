//! The series caps on the real binary: past `--max-series`, samples that
//! would create a series are refused and counted exactly; known series
//! stay exact; the agent stays up; admin `stats` names who hit the cap.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::{send_udp, start_flushing_to, CarbonCapture};

#[test]
fn new_series_past_the_cap_are_refused_and_counted_known_ones_stay_exact() {
    let mut capture = CarbonCapture::start();
    let sluice = start_flushing_to(&capture, &["--max-series", "60", "--admin", "127.0.0.1:0"]);
    let known: Vec<String> = (0..10).map(|k| format!("known.k{k}:1|c\n")).collect();
    send_udp(sluice.udp, &[known.concat().as_bytes()]);
    capture.flush_with("stats_counts.known.k9", Duration::from_secs(10));
    // A flood of new names, with the known ones still sent beside them.
    let flood: Vec<String> = (0..2000).map(|k| format!("flood.f{k}:1|c\n")).collect();
    let mut datagrams: Vec<String> = flood.chunks(50).map(|c| c.concat()).collect();
    for _ in 0..5 {
        datagrams.push(known.concat());
    }
    let refs: Vec<&[u8]> = datagrams.iter().map(|d| d.as_bytes()).collect();
    send_udp(sluice.udp, &refs);
    send_udp(sluice.udp, &[b"known.k0:0|c\n"]);
    let mut admitted = 0usize;
    let mut dropped = 0.0;
    let mut known_total = [0.0f64; 10];
    for _ in 0..4 {
        let flush = capture.next_flush(Duration::from_secs(10));
        for (name, value, _) in &flush.lines {
            let v: f64 = value.parse().unwrap_or(0.0);
            if name.starts_with("stats_counts.flood.") && v > 0.0 {
                admitted += 1;
            }
            if name == "stats_counts.statsd.series_dropped" {
                dropped += v;
            }
            if let Some(k) = name.strip_prefix("stats_counts.known.k") {
                if let Ok(k) = k.parse::<usize>() {
                    known_total[k] += v;
                }
            }
        }
    }
    assert!(admitted < 60, "the cap held: {admitted} flood series");
    assert!(dropped > 0.0);
    assert_eq!(
        admitted as f64 + dropped,
        2000.0,
        "every flood sample admitted or counted"
    );
    assert_eq!(known_total, [5.0; 10], "known series exact");

    let admin = sluice.admin.expect("admin");
    let mut s = TcpStream::connect(admin).unwrap();
    s.write_all(b"stats\n").unwrap();
    let mut lines = BufReader::new(s).lines();
    let mut refused_flood = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line == "END" {
            break;
        }
        if let Some(v) = line.strip_prefix("sluice.series_refused_by_prefix.flood: ") {
            refused_flood = v.parse::<f64>().ok();
        }
    }
    assert_eq!(refused_flood, Some(dropped));
    assert!(sluice.terminate().success());
}
