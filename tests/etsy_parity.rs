//! Parity with Etsy's statsd 0.9.0 (npm package `statsd`), run for real:
//! both daemons get the same datagrams and TCP writes, each flushes to its
//! own capturing TCP listener, and every flush must hold the same names
//! and values (timestamps aside; for timing-dependent internal metrics,
//! the name only).
//!
//! Etsy is installed by scripts/install-test-deps.sh into .test-deps/; this
//! test fails (never skips) when it is missing. Inputs where sluice
//! deliberately differs (README, "Differences from Etsy statsd") are
//! covered by tests/agent.rs instead.

use crate::common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    free_port, send_tcp, send_udp, write_file, CarbonCapture, Flush, Sluice, SPEC_EXAMPLE,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

struct Case {
    name: &'static str,
    udp: Vec<&'static [u8]>,
    tcp: Vec<&'static [u8]>,
}

fn udp(name: &'static str, datagrams: &[&'static [u8]]) -> Case {
    Case {
        name,
        udp: datagrams.to_vec(),
        tcp: Vec::new(),
    }
}

struct Group {
    name: &'static str,
    /// Etsy config keys beyond the ports and backend.
    etsy: serde_json::Value,
    /// The same settings for sluice.
    sluice: &'static str,
    cases: Vec<Case>,
}

fn etsy_stats_js() -> PathBuf {
    let path = std::env::var_os("SLUICE_ETSY_STATSD")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(".test-deps/node_modules/statsd/stats.js")
        });
    assert!(
        path.exists(),
        "Etsy statsd not found at {}: run scripts/install-test-deps.sh",
        path.display()
    );
    path
}

pub(crate) struct Etsy {
    child: Child,
    pub(crate) udp: SocketAddr,
    tcp: SocketAddr,
    /// The management port (`health`, `stats`...).
    pub(crate) mgmt: SocketAddr,
    _dir: tempfile::TempDir,
}

/// Etsy's statsd with its defaults, flushing every second to `carbon`
/// (for tests that use it as a peer rather than compare with it).
pub(crate) fn start_plain_etsy(carbon: SocketAddr) -> Etsy {
    let group = Group {
        name: "plain",
        etsy: json!({}),
        sluice: "",
        cases: Vec::new(),
    };
    start_etsy(&group, carbon)
}

impl Drop for Etsy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Etsy's statsd and waits until its TCP server accepts; free
/// ports are only free when asked, so a start that lost one to a test
/// running beside is retried with others.
fn start_etsy(group: &Group, carbon: SocketAddr) -> Etsy {
    for _ in 0..5 {
        let mut etsy = start_etsy_once(group, carbon);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(etsy.tcp).is_ok() {
                return etsy;
            }
            if etsy.child.try_wait().ok().flatten().is_some()
                || std::time::Instant::now() > deadline
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("Etsy's statsd did not start (node, .test-deps/node_modules/statsd)");
}

fn start_etsy_once(group: &Group, carbon: SocketAddr) -> Etsy {
    let stats_js = etsy_stats_js();
    let dir = tempfile::tempdir().unwrap();
    let (udp_port, tcp_port, mgmt_port) = (free_port(), free_port(), free_port());
    let mut config = json!({
        "graphiteHost": "127.0.0.1",
        "graphitePort": carbon.port(),
        "mgmt_address": "127.0.0.1",
        "mgmt_port": mgmt_port,
        "flushInterval": 1000,
        "automaticConfigReload": false,
        "backends": ["./backends/graphite"],
        "servers": [
            {"server": "./servers/udp", "address": "127.0.0.1", "port": udp_port},
            {"server": "./servers/tcp", "address": "127.0.0.1", "port": tcp_port}
        ]
    });
    if let (Some(base), Some(extra)) = (config.as_object_mut(), group.etsy.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    let path = write_file(dir.path(), "config.js", &config.to_string());
    let child = Command::new("node")
        .arg(&stats_js)
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node (install Node.js: scripts/install-test-deps.sh)");
    Etsy {
        child,
        udp: ([127, 0, 0, 1], udp_port).into(),
        tcp: ([127, 0, 0, 1], tcp_port).into(),
        mgmt: ([127, 0, 0, 1], mgmt_port).into(),
        _dir: dir,
    }
}

/// Waits for a flush, then for each case: send it, take the next flush.
fn drive(
    capture: &mut CarbonCapture,
    udp_to: SocketAddr,
    tcp_to: SocketAddr,
    cases: &[Case],
) -> Vec<Flush> {
    capture.next_flush(WAIT);
    cases
        .iter()
        .map(|case| {
            send_udp(udp_to, &case.udp);
            if !case.tcp.is_empty() {
                send_tcp(tcp_to, &case.tcp);
            }
            capture.next_flush(WAIT)
        })
        .collect()
}

/// name -> value, with the values of timing-dependent metrics masked.
fn comparable(flush: &Flush) -> BTreeMap<String, String> {
    const TIMING: [&str; 4] = [
        "processing_time",
        "calculationtime",
        "graphiteStats.",
        "timestamp_lag",
    ];
    flush
        .lines
        .iter()
        // sluice's own delivery and health gauges (documented additions).
        .filter(|(name, _, _)| {
            !name.contains("graphiteStats.destinations.") && !name.contains(".sluice.")
        })
        .map(|(name, value, _)| {
            let value = if TIMING.iter().any(|t| name.contains(t)) {
                "*".to_string()
            } else {
                value.clone()
            };
            (name.clone(), value)
        })
        .collect()
}

fn run_group(group: &Group) -> Vec<String> {
    let mut etsy_capture = CarbonCapture::start();
    let etsy = start_etsy(group, etsy_capture.addr);
    let mut sluice_capture = CarbonCapture::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(
        dir.path(),
        "sluice.toml",
        &format!(
            "[flush]\ninterval = \"1s\"\ntag_style = \"etsy\"\n{}",
            group.sluice
        ),
    );
    let carbon = sluice_capture.addr.to_string();
    let sluice = Sluice::start(&[
        "--no-whisper",
        "--config",
        config.to_str().unwrap(),
        "--carbon",
        &carbon,
    ]);
    let (etsy_flushes, sluice_flushes) = std::thread::scope(|s| {
        let e = s.spawn(|| drive(&mut etsy_capture, etsy.udp, etsy.tcp, &group.cases));
        let l = s.spawn(|| drive(&mut sluice_capture, sluice.udp, sluice.tcp, &group.cases));
        (
            e.join().expect("etsy driver"),
            l.join().expect("sluice driver"),
        )
    });
    let mut problems = Vec::new();
    for ((case, e), l) in group.cases.iter().zip(&etsy_flushes).zip(&sluice_flushes) {
        // Each case's input must have landed in the flush compared with it.
        let packets = case.udp.len() + case.tcp.len();
        let received = e
            .lines
            .iter()
            .find(|(n, _, _)| {
                n.contains("packets_received")
                    && (n.starts_with("stats_counts.") || n.contains(".count"))
            })
            .map(|(_, v, _)| v.clone());
        if received != Some(packets.to_string()) {
            problems.push(format!(
                "[{} / {}] Etsy's flush shows {received:?} packets, {packets} were sent",
                group.name, case.name
            ));
        }
        let (e, l) = (comparable(e), comparable(l));
        let mut diff = Vec::new();
        for (name, ev) in &e {
            match l.get(name) {
                None => diff.push(format!("  only Etsy:   {name} {ev}")),
                Some(lv) if lv != ev => {
                    diff.push(format!("  differs:     {name} Etsy {ev}, sluice {lv}"))
                }
                _ => {}
            }
        }
        for (name, lv) in &l {
            if !e.contains_key(name) {
                diff.push(format!("  only sluice: {name} {lv}"));
            }
        }
        if !diff.is_empty() {
            problems.push(format!(
                "[{} / {}]\n{}",
                group.name,
                case.name,
                diff.join("\n")
            ));
        }
    }
    assert!(sluice.terminate().success());
    problems
}

fn legacy_group() -> Group {
    Group {
        name: "legacy, worked example config",
        etsy: json!({
            "percentThreshold": [90, -10, 50],
            "histogram": [{"metric": "lat", "bins": [100, 250.5, "inf"]}]
        }),
        sluice: "percent_thresholds = [90, -10, 50]\nhistogram = [{ metric = \"lat\", bins = [100, 250.5, \"inf\"] }]\n",
        cases: vec![
            udp("spec 12.1 worked example", SPEC_EXAMPLE),
            udp("idle flush after the example", &[]),
            udp("plain counter", &[b"a:1|c"]),
            udp("sampled counter", &[b"b:3|c|@0.25"]),
            udp("negative counter", &[b"c:-5|c"]),
            udp("float counter sum", &[b"d:0.1|c\nd:0.2|c"]),
            udp("exponent value", &[b"e:1e-06|c"]),
            udp("tiny value in exponent form", &[b"f:1e-7|c"]),
            udp("huge value in exponent form", &[b"g:1e21|c"]),
            udp("hex value", &[b"ec:0x10|c"]),
            udp("blank value counts 0", &[b"ed: |c"]),
            udp("fields after the rate ignored", &[b"ee:1|c|@0.5|extra"]),
            udp("blanks around value and type", &[b"lead: 5|c\ntyp:1| c\ntyp2:1|c "]),
            udp("rate with trailing blank, rate .5, rate above 1", &[b"rate2:1|c|@0.5 \nrate:1|c|@.5\ner:1|c|@1.5"]),
            udp("gauge set, delta down, delta up", &[b"gg:10|g\ngg:-10|g\ngg:+5|g"]),
            udp("gauge blank before sign is absolute", &[b"gsp: +5|g\ngsp:+2|g"]),
            udp("gauge ignores rate", &[b"ei:1|g|@0.5"]),
            udp("new negative gauge", &[b"gn:-3|g\ngf:3.14159|g"]),
            udp("set members", &[b"s1:a|s\ns1:b|s\ns1:a|s"]),
            udp("empty set member is 0", &[b"eh:|s\neh:0|s"]),
            udp("set members are exact strings", &[b"s2:1|s\ns2:1.0|s\ns2:01|s"]),
            udp("set with a bad sample", &[b"set2:a:b|s"]),
            udp("several samples, one bad", &[b"u:v:1|c"]),
            udp("same key, two types", &[b"foo:1|c:2|ms"]),
            udp("single timer value", &[b"t1:100|ms"]),
            udp("sampled timer", &[b"t2:100|ms|@0.1"]),
            udp("twenty timer values", &[b"t3:1|ms\nt3:2|ms\nt3:3|ms\nt3:4|ms\nt3:5|ms\nt3:6|ms\nt3:7|ms\nt3:8|ms\nt3:9|ms\nt3:10|ms\nt3:11|ms\nt3:12|ms\nt3:13|ms\nt3:14|ms\nt3:15|ms\nt3:16|ms\nt3:17|ms\nt3:18|ms\nt3:19|ms\nt3:20|ms"]),
            udp("fractional timer values", &[b"t4:0.5|ms\nt4:1.25|ms\nt4:3.75|ms\nt4:0.1|ms"]),
            udp("several timer samples with rates", &[b"ms2:1|ms|@0.5:2|ms|@0.25"]),
            udp("timer exponent and zeroes", &[b"ep:1e3|ms\ntz:0|ms\ntz:-0.0|ms\ntz:+0.0|ms"]),
            udp("histogram by substring", &[b"api.latency:50|ms\napi.latency:150|ms\napi.latency:300|ms\napi.latency:100|ms"]),
            udp("even count median and top percent", &[b"tm:300|ms\ntm:200|ms\ntm:400|ms\ntm:100|ms\ntm:10|ms\ntm:10|ms\ntm:10|ms\ntm:10|ms\ntm:10|ms\ntm:10|ms"]),
            udp("bad lines", &[b"nocolon|c\nbad:abc|c\nek:1\nemptyval:|c\nx:0,345|ms\nr:1|c|@blah\nr2:1|c|@-1.0\nr3:1|c|@.\nemptyg:|g\nemptyms:|ms"]),
            udp("blank line is a bad line", &[b" \n"]),
            udp("sanitising", &[b"my key/with+junk:2|c\na\tb:1|c\nfo/o:1|c\nb ar:1|c\nfoo+bar:1|c\ndots..x:1|c"]),
            udp("non-ascii key sanitised away", &[b"\xc3\xbc:1|c\ncaf\xc3\xa9:1|c"]),
            udp("dogstatsd tags", &[b"tagged:1|c|#env:prod,region:eu\nex:1|c|#a:b:c,d"]),
            udp("graphite tags", &[b"fo/o;tag1=val1:250|c\nb ar;tag1=val1;tag2=val2:250|c"]),
            udp("tag with ; and :", &[b"foo+bar:250|c|#tag1:val;1,tag3:val3,tag2:val2"]),
            udp("tagged timer and gauge", &[b"tt:5|ms|#k:v\ntg:5|g|#k:v"]),
            udp("crlf line ends", &[b"el:1|c\r\nem:5|ms\r\n"]),
            udp("empty lines only", &[b"\n\n\n", b"\n"]),
            udp("dotted and numeric keys", &[b"a.b.c.d:1|c\n42:1|c\n7:1|g"]),
            udp("many datagrams", &[b"m:1|c", b"m:1|c", b"m:1|c", b"m:1|c", b"m:1|c", b"m:1|c", b"m:1|c", b"m:1|c"]),
            udp("internal counter written by a client", &[b"statsd.bad_lines_seen:5|c"]),
            Case {
                name: "tcp partial lines across writes",
                udp: vec![],
                tcp: vec![b"tcpc:1|c\ntcpc:2", b"|c\ntcpc:4|c\r\n"],
            },
        ],
    }
}

fn non_legacy_group() -> Group {
    Group {
        name: "non-legacy with prefixes and suffix",
        etsy: json!({
            "percentThreshold": [95, 99.9, -50],
            "prefixStats": "agg",
            "graphite": {
                "legacyNamespace": false, "globalPrefix": "pfx", "prefixCounter": "",
                "prefixTimer": "t", "prefixGauge": "g", "prefixSet": "s", "globalSuffix": "host1"
            }
        }),
        sluice: "percent_thresholds = [95, 99.9, -50]\n[graphite]\nlegacy_namespace = false\nglobal_prefix = \"pfx\"\nprefix_counter = \"\"\nprefix_timer = \"t\"\nprefix_gauge = \"g\"\nprefix_set = \"s\"\nglobal_suffix = \"host1\"\nprefix_stats = \"agg\"\n",
        cases: vec![
            udp("spec 12.2 input", &[b"cnt:3|c", b"tm:10|ms\ntm:20|ms\ntm:30|ms", b"gau:7|g", b"st:x|s", b"tagd:2|c|#k:v"]),
            udp("idle", &[]),
            udp("bad line and tags", &[b"x|z\nfo/o:1|c|#tag1:val1"]),
            udp("timer percentiles", &[b"p:1|ms\np:2|ms\np:3|ms\np:4|ms\np:5|ms\np:6|ms\np:7|ms"]),
        ],
    }
}

fn delete_idle_group() -> Group {
    Group {
        name: "deleteIdleStats with gaugesMaxTTL 2",
        etsy: json!({"deleteIdleStats": true, "gaugesMaxTTL": 2}),
        sluice: "delete_idle_stats = true\ngauges_max_ttl = 2\n",
        cases: vec![
            udp("every type", &[b"c:1|c\nt:5|ms\ng:+1|g\ns:a|s\nbad"]),
            udp("idle once", &[]),
            udp("idle twice", &[]),
            udp(
                "gauge delta after deletion starts at 0",
                &[b"g:+3|g\nc:2|c"],
            ),
        ],
    }
}

fn filtered_group() -> Group {
    Group {
        name: "non-legacy defaults, calculatedTimerMetrics, no counts",
        etsy: json!({
            "percentThreshold": [90, -10],
            "flush_counts": false,
            "histogram": [{"metric": "a_test", "bins": [1000]}],
            "calculatedTimerMetrics": ["count_ps", "count", "count_percent", "mean_percent", "histogram"],
            "graphite": {"legacyNamespace": false}
        }),
        sluice: "percent_thresholds = [90, -10]\nhistogram = [{ metric = \"a_test\", bins = [1000] }]\ncalculated_timer_metrics = [\"count_ps\", \"count\", \"count_percent\", \"mean_percent\", \"histogram\"]\n[graphite]\nlegacy_namespace = false\nflush_counts = false\n",
        cases: vec![
            udp("filtered timer", &[b"a_test_value:100|ms\na_test_value:2000|ms\nother:5|ms"]),
            udp("counter, gauge, set", &[b"a_test_value:100|c\ng:70|g\ns:1|s"]),
            udp("sanitised names", &[b"fo/o:250|c|#tag1:val1,tag2:val2"]),
        ],
    }
}

fn unsanitised_group() -> Group {
    Group {
        name: "keyNameSanitize false",
        etsy: json!({"keyNameSanitize": false}),
        sluice: "key_name_sanitize = false\n",
        cases: vec![
            udp(
                "names sanitised at write, tags kept",
                &[b"my key/with+junk:1|c\ntagged:1|c|#env:pr+od"],
            ),
            udp("timer and set", &[b"t/x:5|ms\ns+y:a|s"]),
        ],
    }
}

#[test]
fn same_flushes_as_etsy_statsd() {
    let groups = [
        legacy_group(),
        non_legacy_group(),
        delete_idle_group(),
        filtered_group(),
        unsanitised_group(),
    ];
    let total: usize = groups.iter().map(|g| g.cases.len()).sum();
    assert!(total >= 40, "parity needs at least 40 cases, has {total}");
    let problems: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = groups
            .iter()
            .map(|g| s.spawn(move || run_group(g)))
            .collect();
        runs.into_iter()
            .flat_map(|r| r.join().expect("group run"))
            .collect()
    });
    assert!(
        problems.is_empty(),
        "{} of {total} cases differ from Etsy statsd:\n{}",
        problems.len(),
        problems.join("\n")
    );
    println!("{total} cases identical to Etsy statsd 0.9.0");
}
