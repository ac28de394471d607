//! sluice as carbon-cache: the line (TCP and UDP) and pickle receivers of
//! the real binary, fed by hand-written senders shaped as real ones (the
//! Salt returner, UDP), by Python's pickle module and by a real
//! carbon-relay, and compared with a real carbon-cache 1.1.7 fed the same
//! lines. Every good point is read back from the files, whatever hostile
//! input is mixed in.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use common::carbon_cache::CarbonCache;
use common::Sluice;
use sluice::store::format::WhisperFile;
use sluice::store::path::metric_path;

struct Receiver {
    sluice: Sluice,
    store: PathBuf,
    line: SocketAddr,
    pickle: SocketAddr,
    _dir: tempfile::TempDir,
}

fn start() -> Receiver {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("whisper");
    let config = common::store_config(dir.path(), &store, "1s:1h", "");
    let sluice = Sluice::start(&[
        "--config",
        config.to_str().unwrap(),
        "--line-receiver",
        "127.0.0.1:0",
        "--pickle-receiver",
        "127.0.0.1:0",
    ]);
    let line = sluice
        .logged_addr("carbon-line")
        .expect("line receiver address");
    let pickle = sluice
        .logged_addr("carbon-pickle")
        .expect("pickle receiver address");
    Receiver {
        sluice,
        store,
        line,
        pickle,
        _dir: dir,
    }
}

/// (timestamp, value) points of `metric` under `root` in the last hour.
fn points(root: &Path, metric: &str) -> Vec<(i64, f64)> {
    let Ok(relative) = metric_path(metric) else {
        return Vec::new();
    };
    let Ok(mut file) = WhisperFile::open_read(&root.join(relative)) else {
        return Vec::new();
    };
    let now = sluice::telemetry::unix_now_f64() as i64 + 10;
    match file.fetch(now - 3500, Some(now), now) {
        Ok(Some(f)) => f
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (f.from + i as i64 * f.step, v)))
            .collect(),
        _ => Vec::new(),
    }
}

fn wait_for(root: &Path, metric: &str, want: &[(i64, f64)]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = points(root, metric);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{metric}: {got:?}, wanted {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The Salt carbon returner's shape: a connection per batch, several
/// lines, shutdown of the write side, close.
fn send_batch(to: SocketAddr, payload: &[u8]) {
    let mut s = TcpStream::connect(to).unwrap();
    s.write_all(payload).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
}

fn now() -> i64 {
    sluice::telemetry::unix_now_f64() as i64
}

#[test]
fn line_receiver_keeps_every_good_point_around_bad_input() {
    let r = start();
    let t = now() - 100;
    let mut payload = Vec::new();
    payload.extend_from_slice(format!("rx.plain 1.5 {t}\n").as_bytes());
    payload.extend_from_slice(format!("rx.spaces \t 2   {}\r\n", t + 1).as_bytes());
    payload.extend_from_slice(format!("rx.float 3 {}.75\n", t + 2).as_bytes());
    payload.extend_from_slice(b"rx.nan nan 1700000000\n");
    payload.extend_from_slice(b"rx.bad not-a-number 1700000000\n");
    payload.extend_from_slice(b"rx.\xff\xfe 1 1700000000\n");
    payload.extend_from_slice(b"rx.inf 1 inf\n");
    payload.extend_from_slice(&vec![b'x'; 1_000_000]);
    payload.extend_from_slice(b"\n");
    payload.extend_from_slice(format!("rx.after 4 {t}\n").as_bytes());
    payload.extend_from_slice(format!("rx.tagged;b=2;a=1 5 {t}\n").as_bytes());
    payload.extend_from_slice(format!("rx.last 6 {t}").as_bytes()); // no newline
    send_batch(r.line, &payload);
    // -1 means now.
    send_batch(r.line, b"rx.now 7 -1\n");
    // UDP, several lines per datagram.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(
        format!("rx.udp.a 8 {t}\nrx.udp.b 9 {t}\n").as_bytes(),
        r.line,
    )
    .unwrap();

    wait_for(&r.store, "rx.plain", &[(t, 1.5)]);
    wait_for(&r.store, "rx.spaces", &[(t + 1, 2.0)]);
    wait_for(&r.store, "rx.float", &[(t + 2, 3.0)]);
    wait_for(&r.store, "rx.after", &[(t, 4.0)]);
    wait_for(&r.store, "rx.last", &[(t, 6.0)]);
    wait_for(&r.store, "rx.udp.a", &[(t, 8.0)]);
    wait_for(&r.store, "rx.udp.b", &[(t, 9.0)]);
    wait_for(&r.store, "rx.tagged;a=1;b=2", &[(t, 5.0)]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while points(&r.store, "rx.now").is_empty() {
        assert!(Instant::now() < deadline, "rx.now never written");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(points(&r.store, "rx.now")[0].0 >= now() - 5);
    assert!(points(&r.store, "rx.nan").is_empty());
    let log = r.sluice.log_text();
    assert!(
        log.contains("carbon line skipped") || log.contains("carbon line too long"),
        "{log}"
    );
    assert!(r.sluice.terminate().success());
}

const PY_PICKLES: &str = r#"
import pickle, struct, sys
t = int(sys.argv[1])
out = sys.stdout.buffer
def frame(data): out.write(struct.pack("!I", len(data)) + data)
for proto in (0, 1, 2, 4):
    frame(pickle.dumps([("px.p%d" % proto, (t, 1.5 + proto)), ("px.both", (t + proto, proto))], protocol=proto))
# statsd's pickle writer: values and timestamps as strings.
frame(pickle.dumps([("px.strings", (str(t), "3.5"))], protocol=0))
# Hostile: a global (os.system) must never run, random bytes, not a list.
frame(b"cos\nsystem\n(S'touch /tmp/sluice-pwned'\ntR.")
frame(bytes(range(256)))
frame(pickle.dumps({"a": 1}, protocol=2))
# A bad element among good ones: only it is skipped.
frame(pickle.dumps([("px.good", (t, 9)), ("px.bad", "x"), ("px.good2", (t, 10))], protocol=2))
"#;

#[test]
fn pickle_receiver_takes_every_protocol_and_refuses_the_rest() {
    let r = start();
    let t = now() - 50;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", PY_PICKLES, &t.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success());
    let _ = std::fs::remove_file("/tmp/sluice-pwned");
    let mut s = TcpStream::connect(r.pickle).unwrap();
    s.write_all(&out.stdout).unwrap();
    // A frame over the limit is skipped, and the connection goes on.
    let big = vec![0u8; 2 << 20];
    s.write_all(&(big.len() as u32).to_be_bytes()).unwrap();
    s.write_all(&big).unwrap();
    let after = Command::new("/usr/bin/python3")
        .args(["-c", "import pickle,struct,sys; d=pickle.dumps([('px.after',(int(sys.argv[1]),11.0))],protocol=2); sys.stdout.buffer.write(struct.pack('!I',len(d))+d)", &t.to_string()])
        .output()
        .unwrap();
    s.write_all(&after.stdout).unwrap();
    drop(s);
    for proto in [0, 1, 2, 4] {
        wait_for(
            &r.store,
            &format!("px.p{proto}"),
            &[(t, 1.5 + proto as f64)],
        );
    }
    wait_for(
        &r.store,
        "px.both",
        &[(t, 0.0), (t + 1, 1.0), (t + 2, 2.0), (t + 4, 4.0)],
    );
    wait_for(&r.store, "px.strings", &[(t, 3.5)]);
    wait_for(&r.store, "px.good", &[(t, 9.0)]);
    wait_for(&r.store, "px.good2", &[(t, 10.0)]);
    wait_for(&r.store, "px.after", &[(t, 11.0)]);
    assert!(
        !Path::new("/tmp/sluice-pwned").exists(),
        "a pickled global ran"
    );
    assert!(r.sluice.terminate().success());
}

#[test]
fn a_real_carbon_relay_forwards_into_the_pickle_receiver() {
    let r = start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["conf", "storage/log"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let line_port = common::free_port();
    let pickle_port = common::free_port();
    let rr = root.display();
    std::fs::write(
        root.join("conf/carbon.conf"),
        format!(
            "[relay]\nSTORAGE_DIR = {rr}/storage/\nLOG_DIR = {rr}/storage/log/\nPID_DIR = {rr}/storage/\nUSER =\n\
             LINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {line_port}\n\
             PICKLE_RECEIVER_INTERFACE = 127.0.0.1\nPICKLE_RECEIVER_PORT = {pickle_port}\n\
             RELAY_METHOD = rules\nDESTINATIONS = {}\nMAX_QUEUE_SIZE = 10000\nUSE_FLOW_CONTROL = True\n\
             CARBON_METRIC_INTERVAL = 0\n",
            r.pickle
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("conf/storage-schemas.conf"),
        "[all]\npattern = .*\nretentions = 1s:1h\n",
    )
    .unwrap();
    std::fs::write(
        root.join("conf/relay-rules.conf"),
        "[default]\ndefault = true\ndestinations = ".to_string() + &r.pickle.to_string() + "\n",
    )
    .unwrap();
    let mut relay = Command::new("/usr/bin/carbon-relay")
        .arg(format!("--config={rr}/conf/carbon.conf"))
        .args(["--nodaemon", "start"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("carbon-relay");
    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", line_port)) {
            break s;
        }
        assert!(Instant::now() < deadline, "carbon-relay did not start");
        std::thread::sleep(Duration::from_millis(100));
    };
    let t = now() - 30;
    let mut s = stream;
    for i in 0..50 {
        s.write_all(format!("relayed.m{} {} {}\n", i % 5, i, t + i / 5).as_bytes())
            .unwrap();
    }
    drop(s);
    for m in 0..5i64 {
        let want: Vec<(i64, f64)> = (0..10i64).map(|k| (t + k, (k * 5 + m) as f64)).collect();
        wait_for(&r.store, &format!("relayed.m{m}"), &want);
    }
    let _ = relay.kill();
    let _ = relay.wait();
    assert!(r.sluice.terminate().success());
}

#[test]
fn the_same_lines_give_the_same_files_as_carbon_cache() {
    let r = start();
    let carbon_dir = tempfile::tempdir().unwrap();
    let carbon = CarbonCache::start(carbon_dir.path());
    let t = now() - 200;
    // Input both accept; carbon would lose the connection on the lines
    // sluice skips (non-UTF-8, inf timestamps), so those are not here.
    let mut lines = String::new();
    for i in 0..40 {
        lines.push_str(&format!("same.a.m{} {} {}\n", i % 4, i as f64 * 0.5, t + i));
    }
    lines.push_str(&format!("same.ws \t 3  {}\r\n", t));
    lines.push_str(&format!("same.float 4 {}.9\n", t + 1));
    lines.push_str(&format!("same.dup 1 {t}\nsame.dup 2 {t}\n"));
    lines.push_str(&format!("same.tag;z=1;a=2 5 {t}\n"));
    lines.push_str("same.nan nan 1700000000\n");
    send_batch(r.line, lines.as_bytes());
    send_batch(
        SocketAddr::from(([127, 0, 0, 1], carbon.line_port)),
        lines.as_bytes(),
    );
    let names = [
        "same.a.m0",
        "same.a.m1",
        "same.a.m2",
        "same.a.m3",
        "same.ws",
        "same.float",
        "same.dup",
        "same.tag;a=2;z=1",
    ];
    for name in names {
        carbon.wait_until(name, Duration::from_secs(20), |c| {
            !c.points(name).is_empty()
        });
        let theirs = carbon.points(name);
        wait_for(&r.store, name, &theirs);
        // The same file, at the same path.
        let relative = metric_path(name).unwrap();
        assert!(
            carbon.whisper_dir().join(&relative).exists() && r.store.join(&relative).exists(),
            "{name}"
        );
    }
    assert!(carbon.points("same.nan").is_empty() && points(&r.store, "same.nan").is_empty());
    assert!(r.sluice.terminate().success());
}

/// A TCP proxy on loopback that records every line passing to `to`.
fn recording_proxy(to: SocketAddr) -> (SocketAddr, std::sync::Arc<std::sync::Mutex<String>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let record = record.clone();
            std::thread::spawn(move || {
                let Ok(mut upstream) = TcpStream::connect(to) else {
                    return;
                };
                let mut client = client;
                let mut buf = [0u8; 65536];
                while let Ok(n) = std::io::Read::read(&mut client, &mut buf) {
                    if n == 0 || upstream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    if let Ok(mut r) = record.lock() {
                        r.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Every (name, timestamp, value) line recorded that has a newline.
fn recorded_points(text: &str) -> Vec<(String, i64, f64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (name, value, ts) = (f.next()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?);
            Some((name.to_string(), ts, value))
        })
        .collect()
}

fn all_points_stored(store: &Path, sent: &[(String, i64, f64)]) -> Result<(), String> {
    for (name, ts, value) in sent {
        let got = points(store, name);
        match got.iter().find(|(t, _)| t == ts) {
            Some((_, v)) if (v - value).abs() <= 1e-9 * value.abs().max(1.0) => {}
            other => return Err(format!("{name} at {ts}: sent {value}, stored {other:?}")),
        }
    }
    Ok(())
}

#[test]
fn collectd_write_graphite_into_the_line_receiver() {
    let r = start();
    let (proxy, seen) = recording_proxy(r.line);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let conf = dir.path().join("collectd.conf");
    std::fs::write(
        &conf,
        format!(
            "Hostname \"sluicetest\"\nFQDNLookup false\nInterval 1\nBaseDir \"{d}\"\nPIDFile \"{d}/collectd.pid\"\n\
             PluginDir \"/usr/lib/collectd\"\nTypesDB \"/usr/share/collectd/types.db\"\n\
             LoadPlugin load\nLoadPlugin memory\nLoadPlugin write_graphite\n\
             <Plugin write_graphite>\n  <Node \"sluice\">\n    Host \"127.0.0.1\"\n    Port \"{}\"\n    Protocol \"tcp\"\n\
             Prefix \"collectd.\"\n    StoreRates true\n    AlwaysAppendDS false\n    EscapeCharacter \"_\"\n  </Node>\n</Plugin>\n",
            proxy.port()
        ),
    )
    .unwrap();
    assert!(
        Path::new("/usr/sbin/collectd").exists(),
        "collectd is not installed: run scripts/install-test-deps.sh"
    );
    let mut collectd = Command::new("/usr/sbin/collectd")
        .args(["-f", "-C", conf.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("collectd");
    std::thread::sleep(Duration::from_secs(4));
    let _ = collectd.kill();
    let _ = collectd.wait();
    let sent = recorded_points(&seen.lock().unwrap().clone());
    assert!(sent.len() >= 6, "collectd sent {} points", sent.len());
    assert!(
        sent.iter()
            .any(|(n, _, _)| n.starts_with("collectd.sluicetest.load.")),
        "{sent:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(why) = all_points_stored(&r.store, &sent) {
        assert!(Instant::now() < deadline, "{why}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(r.sluice.terminate().success());
}

#[test]
fn carbon_c_relay_forwards_into_the_line_receiver() {
    let r = start();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let conf = dir.path().join("relay.conf");
    std::fs::write(
        &conf,
        format!(
            "listen type linemode 127.0.0.1:{port} proto tcp;\ncluster sluice forward {}:{} proto tcp;\nmatch * send to sluice stop;\n",
            r.line.ip(),
            r.line.port()
        ),
    )
    .unwrap();
    assert!(
        Path::new("/usr/bin/carbon-c-relay").exists(),
        "carbon-c-relay is not installed: run scripts/install-test-deps.sh"
    );
    let mut relay = Command::new("/usr/bin/carbon-c-relay")
        .args([
            "-f",
            conf.to_str().unwrap(),
            "-l",
            dir.path().join("relay.log").to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("carbon-c-relay");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            break s;
        }
        assert!(Instant::now() < deadline, "carbon-c-relay did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let t = now() - 40;
    let mut sent = Vec::new();
    for i in 0..60 {
        let (name, ts, value) = (format!("crelay.m{}", i % 6), t + i / 6, i as f64 * 1.25);
        s.write_all(format!("{name} {value} {ts}\n").as_bytes())
            .unwrap();
        sent.push((name, ts, value));
    }
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Err(why) = all_points_stored(&r.store, &sent) {
        assert!(Instant::now() < deadline, "{why}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = relay.kill();
    let _ = relay.wait();
    assert!(r.sluice.terminate().success());
}

#[test]
fn received_points_are_relayed_to_carbon_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("whisper");
    let config = common::store_config(
        dir.path(),
        &store,
        "1s:1h",
        "[carbon]\nrelay_received = true\n",
    );
    let mut capture = common::CarbonCapture::start();
    let carbon = capture.addr.to_string();
    let sluice = Sluice::start(&[
        "--config",
        config.to_str().unwrap(),
        "--line-receiver",
        "127.0.0.1:0",
        "--carbon",
        &carbon,
        "--flush-interval",
        "1h",
    ]);
    let line = sluice.logged_addr("carbon-line").unwrap();
    let t = now() - 20;
    send_batch(
        line,
        format!("relay.a 1.5 {t}\nrelay.b 2 {}\nrelay.a 3 {}\n", t, t + 1).as_bytes(),
    );
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 3 {
        assert!(Instant::now() < deadline, "relayed: {seen:?}");
        seen.extend(
            capture
                .drain_lines(Duration::from_millis(200))
                .into_iter()
                .filter(|l| l.starts_with("relay.")),
        );
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            format!("relay.a 1.5 {t}"),
            format!("relay.a 3 {}", t + 1),
            format!("relay.b 2 {t}")
        ]
    );
    // And stored too.
    wait_for(&store, "relay.a", &[(t, 1.5), (t + 1, 3.0)]);
    assert!(sluice.terminate().success());
}

const PY_SAME_PICKLES: &str = r#"
import pickle, struct, sys
t = int(sys.argv[1])
out = sys.stdout.buffer
def frame(data): out.write(struct.pack("!I", len(data)) + data)
frame(pickle.dumps([("samep.a", (t, 1.5)), ("samep.a", (t + 1, 2)), ("samep.b", (float(t) + 0.5, 3))], protocol=2))
frame(pickle.dumps([("samep.s", (str(t), "4.25")), ("samep.tag;z=1;a=2", (t, 5))], protocol=0))
frame(pickle.dumps([("samep.nan", (t, float("nan"))), ("samep.c", (t, 6))], protocol=4))
"#;

#[test]
fn the_same_pickles_give_the_same_files_as_carbon_cache() {
    let r = start();
    let carbon_dir = tempfile::tempdir().unwrap();
    let carbon = CarbonCache::start(carbon_dir.path());
    let t = now() - 100;
    let frames = Command::new("/usr/bin/python3")
        .args(["-c", PY_SAME_PICKLES, &t.to_string()])
        .output()
        .unwrap()
        .stdout;
    for to in [
        r.pickle,
        SocketAddr::from(([127, 0, 0, 1], carbon.pickle_port)),
    ] {
        let mut s = TcpStream::connect(to).unwrap();
        s.write_all(&frames).unwrap();
    }
    for name in [
        "samep.a",
        "samep.b",
        "samep.s",
        "samep.tag;a=2;z=1",
        "samep.c",
    ] {
        carbon.wait_until(name, Duration::from_secs(20), |c| {
            !c.points(name).is_empty()
        });
        wait_for(&r.store, name, &carbon.points(name));
    }
    assert!(carbon.points("samep.nan").is_empty() && points(&r.store, "samep.nan").is_empty());
    assert!(r.sluice.terminate().success());
}

#[test]
fn random_bytes_on_both_receivers_lose_no_good_point() {
    let r = start();
    let t = now() - 60;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    // Lines: noise between good lines, each good line on its own line.
    let mut lines = Vec::new();
    for i in 0..20 {
        lines.extend_from_slice(&noise(3000));
        lines.extend_from_slice(format!("\nnoisy.line.m{i} {i} {t}\n").as_bytes());
    }
    send_batch(r.line, &lines);
    // Pickle: garbage frames with small lengths between good frames; a good
    // frame after each (a huge declared length would swallow what follows,
    // in carbon and here alike, so those go on connections of their own).
    let good = |i: i64| {
        Command::new("/usr/bin/python3")
            .args(["-c", "import pickle,struct,sys; d=pickle.dumps([(sys.argv[1],(int(sys.argv[2]),float(sys.argv[3])))],protocol=2); sys.stdout.buffer.write(struct.pack('!I',len(d))+d)", &format!("noisy.pickle.m{i}"), &t.to_string(), &i.to_string()])
            .output()
            .unwrap()
            .stdout
    };
    let mut frames = Vec::new();
    for i in 0..10 {
        let junk = noise(500);
        frames.extend_from_slice(&(junk.len() as u32).to_be_bytes());
        frames.extend_from_slice(&junk);
        frames.extend_from_slice(&good(i));
    }
    let mut s = TcpStream::connect(r.pickle).unwrap();
    s.write_all(&frames).unwrap();
    drop(s);
    let mut huge = TcpStream::connect(r.pickle).unwrap();
    huge.write_all(&u32::MAX.to_be_bytes()).unwrap();
    huge.write_all(&noise(10_000)).unwrap();
    drop(huge);
    for i in 0..20 {
        wait_for(&r.store, &format!("noisy.line.m{i}"), &[(t, i as f64)]);
    }
    for i in 0..10 {
        wait_for(&r.store, &format!("noisy.pickle.m{i}"), &[(t, i as f64)]);
    }
    assert!(r.sluice.terminate().success(), "the agent died");
}
