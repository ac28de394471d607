//! The live tap on the real binary: admin `tap PATTERN` and `/tap` stream
//! the lines whose name matches, as they arrive; a reader that stops
//! reading loses tap lines (and is told how many), never ingest lines.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::{self, send_tcp, send_udp, CarbonCapture};

/// Reads lines from `reader` until one equals or starts with `want`;
/// every line read, in order.
fn read_until(reader: &mut impl BufRead, want: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "no {want:?} within {within:?}; read {seen:?}"
        );
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => panic!("closed before {want:?}; read {seen:?}"),
            Ok(_) => {
                let line = line.trim_end().to_string();
                let done = line.starts_with(want);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("reading the tap: {e}"),
        }
    }
}

fn admin_tap(admin: SocketAddr, pattern: &str) -> BufReader<TcpStream> {
    let mut conn = TcpStream::connect(admin).expect("connect admin");
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    writeln!(conn, "tap {pattern}").expect("send tap");
    // The subscription is made when the command is read.
    std::thread::sleep(Duration::from_millis(300));
    BufReader::new(conn)
}

#[test]
fn admin_and_http_taps_stream_matching_lines() {
    let capture = CarbonCapture::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::store_and_http_config(dir.path());
    let sluice = common::Sluice::start(&[
        "--config",
        config.to_str().expect("utf-8"),
        "--admin",
        "127.0.0.1:0",
        "--carbon",
        &capture.addr.to_string(),
    ]);
    let admin = sluice.admin.expect("admin address");
    let http_addr = sluice.logged_addr("http").expect("http address");

    let mut tap = admin_tap(admin, "tap.*");
    let mut sse = TcpStream::connect(http_addr).expect("connect http");
    write!(sse, "GET /tap?pattern=tap.a* HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    sse.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut sse = BufReader::new(sse);
    read_until(&mut sse, ": tapping", Duration::from_secs(5));

    // UDP and TCP are received on different threads: one at a time, so
    // the order is known.
    send_udp(
        sluice.udp,
        &[b"tap.a:1|c\nother.b:2|c\ntap.c:3|g|#env:prod\n"],
    );
    let mut admin_lines = read_until(&mut tap, "tap.c:3|g", Duration::from_secs(5));
    let mut sse_lines = read_until(&mut sse, "data: tap.a:1|c", Duration::from_secs(5));
    send_tcp(sluice.tcp, &[b"tap.a:4|ms\n"]);
    admin_lines.extend(read_until(&mut tap, "tap.a:4|ms", Duration::from_secs(5)));
    sse_lines.extend(read_until(
        &mut sse,
        "data: tap.a:4|ms",
        Duration::from_secs(5),
    ));
    assert_eq!(
        admin_lines,
        ["tap.a:1|c", "tap.c:3|g|#env:prod", "tap.a:4|ms"]
    );
    sse_lines.retain(|l| l.starts_with("data: "));
    assert_eq!(sse_lines, ["data: tap.a:1|c", "data: tap.a:4|ms"]);

    // Sending anything ends an admin tap; the connection closes.
    tap.get_mut().write_all(b"\n").expect("send");
    let mut rest = Vec::new();
    tap.get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = tap.get_mut().read_to_end(&mut rest);
}

#[test]
fn a_slow_tap_reader_loses_tap_lines_never_ingest_lines() {
    let sluice = common::Sluice::start(&[
        "--no-whisper",
        "--admin",
        "127.0.0.1:0",
        "--flush-interval",
        "60s",
    ]);
    let admin = sluice.admin.expect("admin address");
    // A reader with a tiny window that does not read.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    socket.connect(&admin.into()).expect("connect admin");
    let mut conn: TcpStream = socket.into();
    writeln!(conn, "tap flood").expect("send tap");
    std::thread::sleep(Duration::from_millis(300));

    const LINES: usize = 1_000_000;
    let chunk = "flood:1|c\n".repeat(10_000);
    let pieces: Vec<&[u8]> = (0..LINES / 10_000).map(|_| chunk.as_bytes()).collect();
    send_tcp(sluice.tcp, &pieces);

    // Every line counted all the same.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut ask = TcpStream::connect(admin).expect("connect admin");
        ask.write_all(b"counters\n").expect("ask");
        ask.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut dump = String::new();
        let mut reader = BufReader::new(ask);
        while !dump.ends_with("END\n\n") {
            if reader.read_line(&mut dump).unwrap_or(0) == 0 {
                break;
            }
        }
        if dump.contains(&format!("flood: {LINES}")) {
            break;
        }
        assert!(Instant::now() < deadline, "counted: {dump}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Reading again: the queued lines, then how many were missed.
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut reader = BufReader::new(conn);
    let seen = read_until(&mut reader, "# missed ", Duration::from_secs(30));
    let missed: usize = seen
        .last()
        .and_then(|l| l.strip_prefix("# missed "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a missed count");
    let delivered = seen.iter().filter(|l| *l == "flood:1|c").count();
    assert!(
        missed > 0 && delivered > 0,
        "missed {missed}, delivered {delivered}"
    );
    assert!(
        delivered + missed <= LINES,
        "missed {missed} + delivered {delivered}"
    );
}
