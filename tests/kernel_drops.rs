//! Kernel drops are reported: a tiny receive buffer is overflowed on
//! purpose, and the datagrams the kernel dropped on sluice's socket
//! (SO_RXQ_OVFL) must show up in the flushed statsd.kernel_dropped_datagrams
//! and equal the host's UdpRcvbufErrors delta from /proc/net/snmp.
//! (Its own test binary, so no other test's sockets share the host counter.)

use crate::common;

use std::time::{Duration, Instant};

use common::start_captured;

fn rcvbuf_errors() -> u64 {
    sluice::telemetry::host_udp_errors()
        .expect("/proc/net/snmp")
        .1
}

#[test]
fn overflowing_the_receive_buffer_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (sluice, mut capture) = start_captured(
        dir.path(),
        "[listen]\nudp_receivers = 1\nudp_receive_buffer = 4096\n",
        &["--admin", "127.0.0.1:0"],
    );
    capture.next_flush(Duration::from_secs(10));
    let before = rcvbuf_errors();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let payload = b"flood.hits:1|c\n".repeat(10);
    // Bounded burst: 200 000 datagrams as fast as one thread can send.
    for _ in 0..200_000 {
        let _ = socket.send_to(&payload, sluice.udp);
    }
    // Trailing datagrams, slowly, carry the final drop count to sluice.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(50));
        let _ = socket.send_to(b"tail:1|c", sluice.udp);
    }
    let host_delta = rcvbuf_errors() - before;
    assert!(host_delta > 0, "the burst did not overflow the buffer");

    let mut reported = 0.0;
    let deadline = Instant::now() + Duration::from_secs(15);
    while reported < host_delta as f64 && Instant::now() < deadline {
        let flush = capture.next_flush(Duration::from_secs(10));
        reported += flush
            .get("stats_counts.statsd.kernel_dropped_datagrams")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    assert_eq!(
        reported, host_delta as f64,
        "sluice reported {reported}, /proc/net/snmp says {host_delta}"
    );

    let mut admin = std::net::TcpStream::connect(sluice.admin.unwrap()).unwrap();
    use std::io::{Read, Write};
    admin.write_all(b"stats\nquit\n").unwrap();
    let mut text = String::new();
    admin.read_to_string(&mut text).unwrap();
    assert!(
        text.contains(&format!("sluice.kernel_dropped_datagrams: {host_delta}\n")),
        "{text}"
    );
    assert!(sluice.terminate().success());
}
