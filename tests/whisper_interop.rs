//! Interoperability with Graphite's own Python whisper 1.1.10, installed by
//! scripts/install-test-deps.sh (these tests fail, never skip, without it):
//! Python reads the files the real agent wrote through real flushes, the
//! CLI tools print what whisper-info / whisper-fetch print, and sluice
//! reads Python-written files with the same numbers as Python.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{send_tcp, send_udp, store_config, Sluice};
use serde_json::Value;
use sluice::store::format::WhisperFile;

fn python() -> PathBuf {
    let path = std::env::var_os("SLUICE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".test-deps/venv/bin/python")
        });
    assert!(
        path.exists(),
        "Python with whisper not found at {}: run scripts/install-test-deps.sh",
        path.display()
    );
    path
}

fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn python_tool(tool: &str, args: &[&str]) -> String {
    let script = python().with_file_name(tool);
    let out = Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .expect("run whisper tool");
    assert!(
        out.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn sluice_tool(args: &[&str]) -> String {
    let out = Command::new(common::binary())
        .args(args)
        .output()
        .expect("run sluice");
    assert!(
        out.status.success(),
        "sluice {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A config file with the whisper store in `store`, every metric kept at
/// `retentions` (1 s first, so each flush has its own slot), plus `extra`.
const SUM_RECENT: &str = r#"
import json, sys, time, whisper
out = {}
for path in sys.argv[1:]:
    # The final flush is stamped up to one interval ahead; look a little
    # into the future so fetch does not clamp it away.
    now = int(time.time()) + 5
    (start, end, step), values = whisper.fetch(path, now - 600, now=now)
    known = [v for v in values if v is not None]
    out[path] = {"sum": sum(known), "known": len(known), "last": known[-1] if known else None,
                 "info": whisper.info(path)}
print(json.dumps(out))
"#;

#[test]
fn python_whisper_reads_what_the_agent_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("whisper");
    let config = store_config(
        dir.path(),
        &store,
        "1s:1h,1m:1d",
        "[flush]\npercent_thresholds = [90]\n",
    );
    let sluice = Sluice::start(&[
        "--config",
        config.to_str().unwrap(),
        "--flush-interval",
        "1s",
    ]);
    for round in 0..3 {
        send_udp(
            sluice.udp,
            &[
                b"app.hits:2|c\napp.hits:3|c|@0.5",
                b"app.temp:21.5|g",
                b"app.lat:10|ms\napp.lat:30|ms",
            ],
        );
        send_tcp(sluice.tcp, &[b"app.tcp:1|c\n"]);
        send_udp(sluice.udp, &[b"bad..name:1|c\n;evil:1|c\nnested.a.b.c:7|c"]);
        if round < 2 {
            std::thread::sleep(Duration::from_millis(1100));
        }
    }
    assert!(sluice.terminate().success());
    let file = |name: &str| store.join(name).to_str().unwrap().to_string();
    let files = [
        file("stats_counts/app/hits.wsp"),
        file("stats/gauges/app/temp.wsp"),
        file("stats/timers/app/lat/mean.wsp"),
        file("stats/timers/app/lat/count.wsp"),
        file("stats_counts/app/tcp.wsp"),
        file("stats_counts/bad/name.wsp"),
        file("stats_counts/nested/a/b/c.wsp"),
    ];
    for f in &files {
        assert!(Path::new(f).exists(), "{f} missing");
    }
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let got: Value = serde_json::from_str(&run_python(SUM_RECENT, &args)).unwrap();
    // Every flush has its own 1 s slot, so the slots add up to all that was sent.
    assert_eq!(got[&files[0]]["sum"], 3.0 * (2.0 + 3.0 / 0.5));
    assert_eq!(got[&files[1]]["last"], 21.5);
    assert_eq!(got[&files[2]]["last"], 20.0);
    assert_eq!(got[&files[3]]["sum"], 6.0);
    assert_eq!(got[&files[4]]["sum"], 3.0);
    assert_eq!(got[&files[5]]["sum"], 3.0);
    assert_eq!(got[&files[6]]["sum"], 21.0);
    let info = &got[&files[0]]["info"];
    assert_eq!(info["archives"][0]["secondsPerPoint"], 1);
    assert_eq!(info["archives"][1]["points"], 1440);
    // The tagged-looking key ";evil" went to carbon's _tagged hash layout,
    // never outside the root.
    assert!(store.join("_tagged").is_dir());
}

#[test]
fn tools_print_what_whisper_tools_print() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.wsp");
    let p = path.to_str().unwrap();
    let created = sluice_tool(&[
        "whisper", "create", p, "10s:1h", "1m:1d", "--xff", "0.1", "--method", "max",
    ]);
    assert!(created.starts_with("Created:"));
    // Python writes points into our file, then both tools read it.
    let now = sluice::telemetry::unix_now_f64() as i64;
    run_python(
        "import sys, whisper\nnow=int(sys.argv[2])\nwhisper.update_many(sys.argv[1], [(now - 10*i, i * 1.5) for i in range(1, 30)], now=now)",
        &[p, &now.to_string()],
    );
    assert_eq!(
        sluice_tool(&["whisper", "info", p]),
        python_tool("whisper-info.py", &[p])
    );
    let (from, until) = ((now - 200).to_string(), (now - 20).to_string());
    assert_eq!(
        sluice_tool(&["whisper", "fetch", p, "--from", &from, "--until", &until]),
        python_tool("whisper-fetch.py", &["--from", &from, "--until", &until, p])
    );
}

const PY_FETCH_FIXTURES: &str = r#"
import json, sys, whisper
now = int(sys.argv[1]); out = {}
for path in sys.argv[2:]:
    rows = []
    for back in (60, 100, 600, 3600, 7200, 86400):
        r = whisper.fetch(path, now - back, now, now=now)
        rows.append(None if r is None else [list(r[0]), [None if v is None else repr(v) for v in r[1]]])
    out[path] = {"fetch": rows, "info": whisper.info(path)}
print(json.dumps(out))
"#;

#[test]
fn sluice_reads_python_written_files_like_python() {
    let fixtures = std::env::var_os("SLUICE_WHISPER_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/whisper-fixtures")
        });
    let mut files: Vec<String> = std::fs::read_dir(&fixtures)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wsp"))
        .map(|p| p.to_str().unwrap().to_string())
        .collect();
    files.sort();
    assert_eq!(files.len(), 21);
    let now = 1_700_000_000i64;
    let mut args = vec![now.to_string()];
    args.extend(files.iter().cloned());
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let python: Value = serde_json::from_str(&run_python(PY_FETCH_FIXTURES, &arg_refs)).unwrap();
    for path in &files {
        let mut f = WhisperFile::open_read(Path::new(path)).unwrap();
        let info = &python[path]["info"];
        assert_eq!(info["maxRetention"], f.header.max_retention);
        assert_eq!(info["aggregationMethod"], f.header.aggregation.name());
        assert_eq!(
            info["xFilesFactor"].as_f64().unwrap(),
            f64::from(f.header.x_files_factor)
        );
        for (i, back) in [60, 100, 600, 3600, 7200, 86400].iter().enumerate() {
            let ours = f.fetch(now - back, Some(now), now).unwrap();
            let theirs = &python[path]["fetch"][i];
            match ours {
                None => assert!(theirs.is_null(), "{path} back {back}"),
                Some(d) => {
                    assert_eq!(
                        theirs[0],
                        serde_json::json!([d.from, d.until, d.step]),
                        "{path} back {back}"
                    );
                    let values: Vec<Value> = d
                        .values
                        .iter()
                        .map(|v| v.map_or(Value::Null, |x| Value::String(py_repr(x))))
                        .collect();
                    assert_eq!(theirs[1], Value::Array(values), "{path} back {back}");
                }
            }
        }
    }
}

/// Python's repr of a float, for exact comparison of fetched values.
fn py_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let text = format!("{x:?}");
    // Rust prints 1e-5 and 1e300 where Python prints 1e-05 and 1e+300.
    match text.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => text,
    }
}

#[test]
fn a_bad_file_is_counted_and_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("whisper");
    // A corrupt file where stats_counts.broken will go, and a directory
    // where a file should be.
    std::fs::create_dir_all(store.join("stats_counts")).unwrap();
    std::fs::write(store.join("stats_counts/broken.wsp"), b"not whisper").unwrap();
    std::fs::create_dir_all(store.join("stats_counts/blocked.wsp")).unwrap();
    let mut capture = common::CarbonCapture::start();
    let carbon = capture.addr.to_string();
    let config = store_config(dir.path(), &store, "1s:1h", "");
    let sluice = Sluice::start(&[
        "--config",
        config.to_str().unwrap(),
        "--flush-interval",
        "1s",
        "--carbon",
        &carbon,
    ]);
    send_udp(sluice.udp, &[b"broken:1|c\nblocked:1|c\nfine:1|c"]);
    let errors = "stats_counts.statsd.whisper_errors";
    let flush = capture.flush_with(errors, Duration::from_secs(10));
    assert!(flush.value(errors) >= 2.0, "{}", flush.dump());
    assert!(sluice.terminate().success());
    let mut fine = WhisperFile::open_read(&store.join("stats_counts/fine.wsp")).unwrap();
    let now = sluice::telemetry::unix_now_f64() as i64 + 5;
    let got = fine.fetch(now - 60, Some(now), now).unwrap().unwrap();
    assert_eq!(got.values.iter().flatten().sum::<f64>(), 1.0);
    assert_eq!(
        std::fs::read(store.join("stats_counts/broken.wsp")).unwrap(),
        b"not whisper"
    );
}
