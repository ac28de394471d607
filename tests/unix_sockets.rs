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

/// An unprivileged account (not sluice's) to hand the socket files to:
/// the uid and gid of "daemon" or "nobody", from the system's tables.
fn other_account() -> (String, u32, String, u32) {
    let find = |table: &str, names: &[&str]| -> (String, u32) {
        let text = std::fs::read_to_string(table).expect("account table");
        for name in names {
            for line in text.lines() {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() > 2 && f[0] == *name {
                    return (name.to_string(), f[2].parse().expect("numeric id"));
                }
            }
        }
        panic!("none of {names:?} in {table}")
    };
    let (user, uid) = find("/etc/passwd", &["daemon", "nobody"]);
    let (group, gid) = find("/etc/group", &["daemon", "nogroup", "nobody"]);
    (user, uid, group, gid)
}

#[test]
fn socket_files_get_the_configured_owner_and_group() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let dgram = dir.path().join("dsd.socket");
    let (user, uid, group, gid) = other_account();
    let am_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    // Only root may give a file away; anyone may name their own group.
    let (owner, want_uid) = if am_root {
        (user.clone(), uid)
    } else {
        let mine = std::fs::metadata(dir.path()).expect("dir").uid();
        (mine.to_string(), mine)
    };
    let group_given = if am_root {
        group.clone()
    } else {
        std::fs::metadata(dir.path())
            .expect("dir")
            .gid()
            .to_string()
    };
    let want_gid = if am_root {
        gid
    } else {
        group_given.parse().expect("gid")
    };
    let config = crate::common::write_file(
        dir.path(),
        "sluice.toml",
        &format!(
            "[listen]\nunix_datagram = [{:?}]\nunix_owner = {owner:?}\nunix_group = {group_given:?}\nunix_mode = \"0660\"\n",
            dgram.to_str().expect("utf-8 path")
        ),
    );
    let capture = CarbonCapture::start();
    let _sluice = start_flushing_to(&capture, &["--config", config.to_str().expect("utf-8")]);
    wait_for_socket(&dgram);
    let meta = std::fs::metadata(&dgram).expect("socket metadata");
    assert_eq!((meta.uid(), meta.gid()), (want_uid, want_gid));
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    // A name that is not an account is refused, naming the key.
    let bad = crate::common::write_file(
        dir.path(),
        "bad.toml",
        "[listen]\nunix_group = \"no-such-group-here\"\n",
    );
    let out = Command::new(crate::common::binary())
        .args(["check-config", "--config", bad.to_str().expect("utf-8")])
        .output()
        .expect("run sluice check");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("listen.unix_group") && text.contains("/etc/group"),
        "{text}"
    );
}
