//! StatsD over unix sockets: the Datadog Python client's `socket_path`
//! (datagrams, as to the Datadog agent's dsd.socket) and a stream client,
//! into the real binary; the socket files' mode, a stale file from an
//! earlier run replaced, a regular file left alone, the files removed at
//! shutdown.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{start_flushing_to, CarbonCapture};

fn venv_python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".test-deps/venv/bin/python")
}

fn wait_for_socket(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        assert!(Instant::now() < deadline, "no socket at {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dogstatsd_over_unix_datagram_and_stream_sockets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dgram = dir.path().join("dsd.socket");
    let stream = dir.path().join("statsd.stream");
    // A stale socket file, as a crashed run leaves it: bound, then closed.
    drop(std::os::unix::net::UnixDatagram::bind(&dgram).expect("stale socket"));
    assert!(dgram.exists());
    let mut capture = CarbonCapture::start();
    let (d, s) = (dgram.to_str().unwrap(), stream.to_str().unwrap());
    let sluice = start_flushing_to(&capture, &["--unix-datagram", d, "--unix-stream", s]);
    wait_for_socket(&dgram);
    wait_for_socket(&stream);
    for path in [&dgram, &stream] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o722, "{}", path.display());
    }

    let client = format!(
        r#"
from datadog.dogstatsd import DogStatsd
import socket
d = DogStatsd(socket_path={d:?})
d.increment("uds.hits", 3, tags=["env:prod"])
d.increment("uds.hits", 4, tags=["env:prod"])
d.gauge("uds.temp", 21.5)
d.timing("uds.lat", 12)
d.timing("uds.lat", 30)
d.flush()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect({s:?})
s.sendall(b"uds.stream:5|c\nuds.stream:6|c\nuds.tail:1|c")
s.close()
"#
    );
    let out = Command::new(venv_python())
        .args(["-c", &client])
        .output()
        .expect("the venv's python (scripts/install-test-deps.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The datagrams and the stream may land in two flushes.
    let mut flushes = vec![capture.flush_with("stats_counts.uds.tail", Duration::from_secs(10))];
    if flushes[0].get("stats.timers.uds.lat.upper").is_none() {
        flushes.push(capture.flush_with("stats.timers.uds.lat.upper", Duration::from_secs(5)));
    }
    let total = |name: &str| -> f64 {
        flushes
            .iter()
            .filter_map(|f| f.get(name)?.parse::<f64>().ok())
            .sum()
    };
    let last = |name: &str| {
        flushes
            .iter()
            .rev()
            .find_map(|f| f.get(name).map(str::to_string))
    };
    assert_eq!(total("stats_counts.uds.stream"), 11.0);
    assert_eq!(
        total("stats_counts.uds.tail"),
        1.0,
        "the unterminated last line counts"
    );
    assert_eq!(
        total("stats_counts.uds.hits;env=prod"),
        7.0,
        "{}",
        flushes[0].dump()
    );
    assert_eq!(last("stats.gauges.uds.temp").as_deref(), Some("21.5"));
    assert_eq!(last("stats.timers.uds.lat.upper").as_deref(), Some("30"));
    assert_eq!(last("stats.timers.uds.lat.count").as_deref(), Some("2"));

    assert!(sluice.terminate().success());
    assert!(
        !dgram.exists() && !stream.exists(),
        "socket files removed at shutdown"
    );
}

#[test]
fn a_regular_file_at_the_socket_path_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("not-a-socket");
    std::fs::write(&path, "keep me").unwrap();
    let out = Command::new(crate::common::binary())
        .args([
            "--no-whisper",
            "--udp",
            "127.0.0.1:0",
            "--tcp",
            "127.0.0.1:0",
            "--admin",
            "",
        ])
        .args(["--unix-datagram", path.to_str().unwrap()])
        .output()
        .expect("run sluice");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not-a-socket") && err.contains("not a socket"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
}
