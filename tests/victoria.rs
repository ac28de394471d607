//! VictoriaMetrics (Debian's victoria-metrics) as the store sluice forwards
//! into over Graphite's line protocol: every point sluice flushed, tagged
//! names included, is read back through VictoriaMetrics' own export API
//! with the tags as labels.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, http, send_udp, CarbonCapture, Sluice};

struct Victoria {
    child: Child,
    http: SocketAddr,
    graphite: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Victoria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_victoria() -> Victoria {
    let dir = tempfile::tempdir().expect("tempdir");
    let (http_port, graphite_port) = (free_port(), free_port());
    let child = Command::new("victoria-metrics")
        .arg(format!("-storageDataPath={}", dir.path().display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{http_port}"))
        .arg(format!("-graphiteListenAddr=127.0.0.1:{graphite_port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("victoria-metrics (Debian package victoria-metrics; scripts/install-test-deps.sh installs it)");
    let vm = Victoria {
        child,
        http: ([127, 0, 0, 1], http_port).into(),
        graphite: ([127, 0, 0, 1], graphite_port).into(),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(r) = http::get(vm.http, "/health") {
            if r.status == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "victoria-metrics did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    vm
}

/// A Graphite tagged name as VictoriaMetrics labels it.
fn labels_of(name: &str) -> BTreeMap<String, String> {
    let mut parts = name.split(';');
    let mut labels = BTreeMap::new();
    labels.insert(
        "__name__".to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    for tag in parts {
        let (k, v) = tag.split_once('=').expect("tags are k=v");
        labels.insert(k.to_string(), v.to_string());
    }
    labels
}

#[test]
fn every_flushed_point_and_tag_reads_back_from_victoria_metrics() {
    let vm = start_victoria();
    let mut capture = CarbonCapture::start();
    let (vm_dest, capture_dest) = (vm.graphite.to_string(), capture.addr.to_string());
    let sluice = Sluice::start(&[
        "--no-whisper",
        "--flush-interval",
        "1s",
        "--carbon",
        &vm_dest,
        "--carbon",
        &capture_dest,
    ]);
    for round in 0..3 {
        let datagram = format!(
            "vm.hits:{}|c|#test:vm,env:prod\nvm.lat:{}|ms|#test:vm,svc:web\nvm.lat:{}|ms|#test:vm,svc:web\n\
             vm.temp:{}|g|#test:vm,room:b12\nvm.plain:1|c|#test:vm\n",
            round + 1,
            10 * round + 5,
            200 - round,
            20.5 + round as f64
        );
        send_udp(sluice.udp, &[datagram.as_bytes()]);
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert!(sluice.terminate().success());
    // What sluice sent (to both destinations alike).
    let mut sent: BTreeMap<BTreeMap<String, String>, BTreeSet<(i64, String)>> = BTreeMap::new();
    for line in capture.drain_lines(Duration::from_millis(500)) {
        let mut fields = line.split(' ');
        let (Some(name), Some(value), Some(ts)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !name.contains(";test=vm") {
            continue;
        }
        let ts: i64 = ts.parse().expect("timestamp");
        let value: f64 = value.parse().expect("value");
        sent.entry(labels_of(name))
            .or_default()
            .insert((ts * 1000, format!("{value}")));
    }
    assert!(sent.len() >= 15, "tagged series flushed: {}", sent.len());
    assert!(
        sent.keys()
            .any(|l| l.get("svc").map(String::as_str) == Some("web")
                && l["__name__"] == "stats.timers.vm.lat.upper"),
        "{:?}",
        sent.keys().collect::<Vec<_>>()
    );

    // What VictoriaMetrics holds.
    let _ = http::post(vm.http, "/internal/force_flush", "");
    let mut stored: BTreeMap<BTreeMap<String, String>, BTreeSet<(i64, String)>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored != sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        let _ = http::post(vm.http, "/internal/force_flush", "");
        let reply = http::get(
            vm.http,
            "/api/v1/export?start=0&match[]=%7Btest%3D%22vm%22%7D",
        )
        .expect("export");
        assert_eq!(reply.status, 200, "{}", reply.body);
        stored.clear();
        for line in reply.body.lines().filter(|l| !l.is_empty()) {
            let series: serde_json::Value = serde_json::from_str(line).expect("export line");
            let labels: BTreeMap<String, String> = series["metric"]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect();
            let values = series["values"].as_array().expect("values");
            let stamps = series["timestamps"].as_array().expect("timestamps");
            let points = stored.entry(labels).or_default();
            for (v, t) in values.iter().zip(stamps) {
                points.insert((
                    t.as_i64().unwrap_or(0),
                    format!("{}", v.as_f64().unwrap_or(f64::NAN)),
                ));
            }
        }
    }
    let missing: Vec<_> = sent
        .iter()
        .filter(|(labels, points)| stored.get(*labels) != Some(*points))
        .take(5)
        .map(|(labels, points)| {
            format!(
                "{labels:?}: sent {points:?}, stored {:?}",
                stored.get(labels)
            )
        })
        .collect();
    assert!(missing.is_empty(), "{missing:#?}");
    assert_eq!(stored.len(), sent.len(), "no series beyond what was sent");
}
