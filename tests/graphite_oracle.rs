//! The read API against the real graphite-web 1.1.8 on the same whisper
//! files: every request of the corpus below goes to both, and the answers
//! must agree (series names exactly, timestamps exactly, values within
//! 1e-9 relative, null where graphite-web has null). graphite-web is
//! Debian's package, installed by scripts/install-test-deps.sh.

use std::path::Path;
use std::time::Duration;

use crate::common;
use common::graphite_web::GraphiteWeb;
use common::http::{encode, get, post};
use serde_json::Value;
use sluice::store::format::{Aggregation, WhisperFile};

/// 2026-12-02 00:00:00 UTC, and the `now` every request passes.
const T0: i64 = 1_796_169_600;
const NOW: i64 = T0 + 4 * 3600;

fn write(
    root: &Path,
    name: &str,
    archives: &[(u32, u32)],
    method: Aggregation,
    value: impl Fn(i64) -> Option<f64>,
) {
    let path = root.join(name.replace('.', "/") + ".wsp");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut file = WhisperFile::create(&path, archives, 0.0, method).unwrap();
    let points: Vec<(i64, f64)> = (0..)
        .map(|i| T0 - 3 * 3600 + i * 10)
        .take_while(|ts| *ts <= NOW)
        .filter_map(|ts| value(ts).map(|v| (ts, v)))
        .collect();
    file.update_many(&points, NOW).unwrap();
}

/// The dataset of graphite-read-api.md's examples.
fn store(root: &Path) {
    let fine = [(10, 2160), (60, 10080)];
    let gap = |ts: i64| (100..130).contains(&ts.rem_euclid(300));
    write(
        root,
        "stats_counts.app.a.requests",
        &fine,
        Aggregation::Sum,
        |ts| (!gap(ts)).then_some(((ts / 10) % 7) as f64),
    );
    write(
        root,
        "stats_counts.app.b.requests",
        &fine,
        Aggregation::Sum,
        |ts| Some(10.0 + ((ts / 10) % 3) as f64),
    );
    write(
        root,
        "stats_counts.app.c.requests",
        &fine,
        Aggregation::Sum,
        |ts| Some(if (ts / 10) % 2 == 0 { 100.0 } else { 50.0 }),
    );
    write(
        root,
        "stats.timers.api.get.mean",
        &fine,
        Aggregation::Average,
        |ts| (!gap(ts)).then_some(20.0 + ((ts / 10) % 5) as f64),
    );
    write(
        root,
        "stats.timers.api.put.mean",
        &fine,
        Aggregation::Average,
        |ts| Some(40.0 + ((ts / 10) % 4) as f64 * 0.5),
    );
    write(root, "stats.gauges.x", &fine, Aggregation::Last, |ts| {
        Some((ts - T0) as f64 / 10.0)
    });
    write(
        root,
        "stats.counters.c1.count",
        &fine,
        Aggregation::Last,
        |ts| Some((((ts - T0) / 10 * 5 + 140).rem_euclid(1000)) as f64),
    );
    write(
        root,
        "stats.gauges.empty",
        &fine,
        Aggregation::Average,
        |_| None,
    );
    write(
        root,
        "stats.gauges.coarse",
        &[(60, 10080)],
        Aggregation::Average,
        |ts| (ts % 60 == 0).then(|| 1000.0 + (ts - T0) as f64 / 60.0),
    );
}

const A: &str = "stats_counts.app.*.requests";

/// Targets worth comparing; each is asked over several windows.
fn targets() -> Vec<String> {
    let a = "stats_counts.app.a.requests";
    let b = "stats_counts.app.b.requests";
    let c = "stats_counts.app.c.requests";
    let x = "stats.gauges.x";
    let c1 = "stats.counters.c1.count";
    let mut t: Vec<String> = vec![
        a.into(),
        x.into(),
        A.into(),
        "stats.gauges.*".into(),
        "stats.timers.api.{get,put}.mean".into(),
        "stats.gauges.coarse".into(),
        "stats.gauges.empty".into(),
        format!("sumSeries({A})"),
        format!("sum({A})"),
        format!("averageSeries({A})"),
        format!("avg({A})"),
        format!("maxSeries({A})"),
        format!("minSeries({A})"),
        format!("diffSeries({c},{a})"),
        format!("diffSeries({A})"),
        format!("multiplySeries({a},{b})"),
        format!("divideSeries({a},{b})"),
        format!("divideSeries({A},{b})"),
        format!("divideSeriesLists({A},{A})"),
        format!("asPercent({A})"),
        format!("asPercent({a},{b})"),
        format!("asPercent({A},100)"),
        format!("countSeries({A})"),
        format!("stddevSeries({A})"),
        format!("rangeOfSeries({A})"),
        format!("aggregate({A},'median')"),
        format!("aggregate({A},'sum')"),
        format!("percentileOfSeries({A},50)"),
        format!("sumSeries({x},stats.gauges.coarse)"),
        format!("sumSeries(consolidateBy({x},'max'),stats.gauges.coarse)"),
        format!("sumSeries({a},{b})"),
        format!("alias({a},'A')"),
        format!("aliasByNode({A},2)"),
        format!("aliasByNode({A},1,2)"),
        format!("aliasByNode({A},-2)"),
        format!("aliasByNode(sumSeries({A}),1)"),
        format!("aliasByMetric({A})"),
        format!("aliasSub({A},'^.*app\\.(\\w+)\\..*$','\\1')"),
        format!("aliasSub({x}, \"(^.*$)\", \"\\1 A\")"),
        format!("scale({x},2)"),
        format!("scale({x},2e1)"),
        format!("scale({x},-0.5)"),
        format!("scaleToSeconds({a},1)"),
        format!("scaleToSeconds({a},60)"),
        format!("offset({x},-10)"),
        format!("absolute(offset({x},-12))"),
        format!("invert({x})"),
        format!("pow({x},2)"),
        format!("squareRoot({x})"),
        format!("derivative({c1})"),
        format!("derivative({a})"),
        format!("nonNegativeDerivative({c1})"),
        format!("nonNegativeDerivative({c1},200)"),
        format!("perSecond({c1})"),
        format!("integral({a})"),
        format!("keepLastValue({a})"),
        format!("keepLastValue({a},1)"),
        format!("transformNull({a})"),
        format!("transformNull({a},-1)"),
        "removeEmptySeries(stats.gauges.*)".into(),
        format!("changed({a})"),
        format!("delay({x},2)"),
        format!("delay({x},-2)"),
        format!("exclude({A},'b')"),
        format!("grep({A},'[ab]')"),
        format!("movingAverage({x},3)"),
        format!("movingAverage({x},'30s')"),
        format!("movingAverage({a},3)"),
        format!("movingSum({a},3)"),
        format!("movingMax({a},'1min')"),
        format!("movingMin({x},5)"),
        format!("movingMedian({a},4)"),
        format!("timeShift({x},'1min')"),
        format!("timeShift({x},'+1min')"),
        format!("highestCurrent({A},1)"),
        format!("highestMax({A},2)"),
        format!("highestAverage({A},1)"),
        format!("lowestCurrent({A},1)"),
        format!("lowestAverage({A},1)"),
        format!("currentAbove({A},50)"),
        format!("currentBelow({A},50)"),
        format!("averageAbove({A},20)"),
        format!("maximumAbove({A},60)"),
        format!("removeAboveValue({x},12)"),
        format!("removeBelowValue({x},12)"),
        format!("limit({A},2)"),
        format!("sortByMaxima({A})"),
        format!("sortByName({A})"),
        format!("sortByName({A},true,true)"),
        format!("sortByTotal({A})"),
        "groupByNode(stats.*.api.*.mean,3)".into(),
        "groupByNode(stats.*.api.*.mean,1,'avg')".into(),
        format!("groupByNodes({A},'sum',0,3)"),
        format!("consolidateBy({x},'max')"),
        format!("cumulative({x})"),
        "constantLine(100)".into(),
        "threshold(50,'lim','red')".into(),
        format!("color({x},'red')"),
        format!("lineWidth({x},3)"),
        format!("alpha({x},0.5)"),
        format!("dashed({x})"),
        format!("stacked({x})"),
        format!("secondYAxis({x})"),
        format!("drawAsInfinite({x})"),
        format!("legendValue({x},'avg')"),
        format!("legendValue({x},'last','max')"),
        format!("nPercentile({a},50)"),
        format!("summarize({x},'1min')"),
        format!("summarize({x},'1min','sum',true)"),
        format!("summarize({x},'1min','avg')"),
        format!("summarize({x},'1min','max')"),
        format!("summarize({a},'1min','count')"),
        format!("summarize({a},'1min','median')"),
        format!("summarize({x},'45s','sum',true)"),
        format!("summarize({x},'1min','diff')"),
        format!("summarize({x},'1min','range')"),
        "currentBelow(stats.gauges.*,1e9)".into(),
        format!("averageBelow({A},20)"),
        format!("maximumBelow({A},60)"),
        format!("minimumAbove({A},5)"),
        "minimumBelow(stats.gauges.*,0)".into(),
        format!("filterSeries({A},'max','>',60)"),
        "filterSeries(stats.gauges.*,'last','!=',0)".into(),
        format!("filterSeries({A},'sum','>=',100)"),
        format!("isNonNull({a})"),
        format!("log({x})"),
        format!("log({x},2)"),
        format!("offsetToZero({x})"),
        format!("offsetToZero({a})"),
        format!("sortByMinima({A})"),
        "sortByMinima(stats.gauges.*)".into(),
        format!("sumSeriesWithWildcards({A},2)"),
        "sumSeriesWithWildcards(stats.*.api.*.mean,1,3)".into(),
        "averageSeriesWithWildcards(stats.timers.api.*.mean,3)".into(),
        format!("multiplySeriesWithWildcards({A},2)"),
        format!("aggregateWithWildcards({A},'max',2)"),
        "aggregateWithWildcards(stats.gauges.*,'sum',2)".into(),
        format!("hitcount({x},'1min')"),
        format!("hitcount({a},'45s')"),
        format!("hitcount({x},'1h',true)"),
        format!("hitcount({a},'1min',true)"),
        format!("{x}|scale(2)|alias('piped')"),
        "nosuch.*".into(),
        "sumSeries(nosuch.*)".into(),
    ];
    t.retain(|s| !s.is_empty());
    t
}

/// (from, until, extra) windows every target is asked over.
fn windows() -> Vec<(i64, i64, &'static str)> {
    vec![
        (T0 + 80, T0 + 140, ""),
        (T0 + 25, T0 + 185, ""),
        (T0, T0 + 3600, "&maxDataPoints=100"),
        (NOW - 25_140, NOW - 23_340, ""),
    ]
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Null => None,
        Value::Number(n) => n.as_f64(),
        other => panic!("not a number: {other}"),
    }
}

/// Why two json renders differ, or None.
pub(crate) fn json_difference(ours: &Value, theirs: &Value) -> Option<String> {
    let (Some(ours), Some(theirs)) = (ours.as_array(), theirs.as_array()) else {
        return Some("not both arrays".into());
    };
    if ours.len() != theirs.len() {
        let names = |v: &[Value]| {
            v.iter()
                .map(|s| s["target"].to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        return Some(format!(
            "{} series vs {}: [{}] vs [{}]",
            ours.len(),
            theirs.len(),
            names(ours),
            names(theirs)
        ));
    }
    for (o, t) in ours.iter().zip(theirs) {
        if o["target"] != t["target"] {
            return Some(format!("name {} vs {}", o["target"], t["target"]));
        }
        let (Some(op), Some(tp)) = (o["datapoints"].as_array(), t["datapoints"].as_array()) else {
            return Some("no datapoints".into());
        };
        if op.len() != tp.len() {
            return Some(format!(
                "{}: {} points vs {}",
                o["target"],
                op.len(),
                tp.len()
            ));
        }
        for (i, (a, b)) in op.iter().zip(tp).enumerate() {
            if a[1] != b[1] {
                return Some(format!(
                    "{}: point {i} at {} vs {}",
                    o["target"], a[1], b[1]
                ));
            }
            match (number(&a[0]), number(&b[0])) {
                (None, None) => {}
                (Some(x), Some(y)) if close(x, y) => {}
                (x, y) => {
                    return Some(format!(
                        "{}: point {i} ({}) {x:?} vs {y:?}",
                        o["target"], a[1]
                    ))
                }
            }
        }
    }
    None
}

pub(crate) fn sluice_with_http(store: &Path, dir: &Path) -> common::Sluice {
    let config = common::write_file(
        dir,
        "sluice.toml",
        &format!(
            "[whisper]\ndir = {:?}\n[http]\naddress = \"127.0.0.1:0\"\n",
            store.to_str().unwrap()
        ),
    );
    common::Sluice::start(&[
        "--config",
        config.to_str().unwrap(),
        "--flush-interval",
        "10s",
    ])
}

/// graphite-web and sluice on the same store (made under `dir`), sluice's
/// index scanned; sluice's HTTP address.
fn both_on(dir: &Path) -> (GraphiteWeb, common::Sluice, std::net::SocketAddr) {
    let root = dir.join("whisper");
    store(&root);
    let web = GraphiteWeb::start(&root);
    let sluice = sluice_with_http(&root, dir);
    let ours = sluice.logged_addr("http").expect("sluice's http address");
    // The index is scanned in the background at start.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sluice.log_text().contains("store index scanned") {
        assert!(std::time::Instant::now() < deadline, "no index scan");
        std::thread::sleep(Duration::from_millis(20));
    }
    (web, sluice, ours)
}

#[test]
fn render_and_find_agree_with_graphite_web() {
    let dir = tempfile::tempdir().unwrap();
    let (web, _sluice, ours) = both_on(dir.path());

    let mut requests: Vec<String> = Vec::new();
    for target in targets() {
        for (from, until, extra) in windows() {
            requests.push(format!(
                "/render?target={}&from={from}&until={until}&now={NOW}&format=json{extra}",
                encode(&target)
            ));
        }
    }
    for (query, format) in [
        ("stats.*", "treejson"),
        ("stats_counts.app.?.requests", "treejson"),
        ("stats.{gauges,timers}.*", "treejson"),
        ("stats.gauges.{x,nope}", "treejson"),
        ("stats_counts.app.[ab].requests", "json"),
        ("*", "treejson"),
        ("stats.timers.api.*", "treejson"),
        ("nosuch.*", "treejson"),
    ] {
        requests.push(format!(
            "/metrics/find?query={}&format={format}",
            encode(query)
        ));
    }
    for q in [
        "stats.*",
        "stats_counts.app.*.requests",
        "stats.timers.*.*.mean",
    ] {
        requests.push(format!("/metrics/expand?query={}", encode(q)));
    }
    requests.push("/metrics/index.json".into());
    assert!(requests.len() >= 200, "{} requests", requests.len());

    let mut failures = Vec::new();
    let mut compared = 0;
    for path in &requests {
        let theirs = get(web.addr, path).expect("graphite-web answers");
        if theirs.status != 200 {
            failures.push(format!(
                "graphite-web said {} to {path}: {}",
                theirs.status,
                theirs.body.lines().last().unwrap_or("")
            ));
            continue;
        }
        let ours_reply = get(ours, path).expect("sluice answers");
        if ours_reply.status != 200 {
            failures.push(format!(
                "{path}: sluice {} {}",
                ours_reply.status,
                ours_reply.body.trim()
            ));
            continue;
        }
        let (o, t): (Value, Value) = match (
            serde_json::from_str(&ours_reply.body),
            serde_json::from_str(&theirs.body),
        ) {
            (Ok(o), Ok(t)) => (o, t),
            _ => {
                failures.push(format!(
                    "{path}: not JSON: {} | {}",
                    ours_reply.body, theirs.body
                ));
                continue;
            }
        };
        compared += 1;
        let difference = if path.starts_with("/render") {
            json_difference(&o, &t)
        } else if path.contains("format=treejson") || path.starts_with("/metrics/find") {
            // Intervals hold wall-clock times: compare that they are there.
            let key = |v: &Value| {
                let mut items: Vec<String> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| {
                        let mut i = i.clone();
                        if let Some(n) = i.get("intervals").and_then(Value::as_array).map(Vec::len)
                        {
                            i["intervals"] = Value::from(n);
                        }
                        i.to_string()
                    })
                    .collect();
                items.sort();
                items
            };
            (key(&o) != key(&t)).then(|| format!("{o} vs {t}"))
        } else {
            (o != t).then(|| format!("{o} vs {t}"))
        };
        if let Some(d) = difference {
            failures.push(format!("{path}: {d}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests differ from graphite-web ({compared} compared):\n{}",
        failures.len(),
        requests.len(),
        failures.join("\n")
    );
}

/// A pickle reply as JSON, unpickled by the Python beside graphite-web
/// (graphite-web's own intervals become `[start, end]` pairs).
fn unpickle(bytes: &[u8]) -> Value {
    use std::io::Write;
    use std::process::{Command, Stdio};
    const SCRIPT: &str = r#"
import json, math, pickle, sys
def plain(o):
    if isinstance(o, dict):
        return {k: plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [plain(v) for v in o]
    if hasattr(o, 'intervals'):
        return [plain(i) for i in o.intervals]
    if hasattr(o, 'start') and hasattr(o, 'end'):
        return [o.start, o.end]
    if isinstance(o, float) and math.isnan(o):
        return None
    return o
print(json.dumps(plain(pickle.load(sys.stdin.buffer))))
"#;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "unpickling failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What a federating graphite-web reads: render and find as pickle, the
/// same data as graphite-web's own (compared after unpickling).
#[test]
fn pickle_replies_unpickle_to_what_graphite_web_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (web, _sluice, ours) = both_on(dir.path());
    let mut failures = Vec::new();
    for (target, from, until) in [
        (A, T0 + 80, T0 + 140),
        ("stats.gauges.*", T0, T0 + 3600),
        (
            "stats.timers.api.{get,put}.mean",
            NOW - 25_140,
            NOW - 23_340,
        ),
        ("sumSeries(stats_counts.app.*.requests)", T0 + 25, T0 + 185),
        ("consolidateBy(stats.gauges.x,'max')", T0, T0 + 600),
    ] {
        let path = format!(
            "/render/?format=pickle&local=1&noCache=1&target={}&from={from}&until={until}&now={NOW}",
            encode(target)
        );
        let (o, t) = (get(ours, &path).unwrap(), get(web.addr, &path).unwrap());
        assert_eq!((o.status, t.status), (200, 200), "{path}: {}", o.body);
        assert_eq!(o.content_type, "application/pickle");
        let (o, t) = (unpickle(&o.bytes), unpickle(&t.bytes));
        let (Some(os), Some(ts)) = (o.as_array(), t.as_array()) else {
            panic!("{path}: not lists: {o} | {t}");
        };
        if os.len() != ts.len() {
            failures.push(format!("{path}: {} series vs {}", os.len(), ts.len()));
            continue;
        }
        for (a, b) in os.iter().zip(ts) {
            for key in [
                "name",
                "pathExpression",
                "start",
                "end",
                "step",
                "valuesPerPoint",
                "consolidationFunc",
                "xFilesFactor",
            ] {
                if a[key] != b[key] {
                    failures.push(format!("{path}: {key} {} vs {}", a[key], b[key]));
                }
            }
            let (va, vb) = (a["values"].as_array(), b["values"].as_array());
            let same = match (va, vb) {
                (Some(va), Some(vb)) => {
                    va.len() == vb.len()
                        && va
                            .iter()
                            .zip(vb)
                            .all(|(x, y)| match (number(x), number(y)) {
                                (None, None) => true,
                                (Some(x), Some(y)) => close(x, y),
                                _ => false,
                            })
                }
                _ => false,
            };
            if !same {
                failures.push(format!("{path}: values {} vs {}", a["values"], b["values"]));
            }
        }
    }
    for query in [
        "stats.*",
        "stats.gauges.*",
        "stats_counts.app.?.requests",
        "nosuch.*",
    ] {
        let path = format!(
            "/metrics/find/?local=1&format=pickle&query={}",
            encode(query)
        );
        let (o, t) = (get(ours, &path).unwrap(), get(web.addr, &path).unwrap());
        assert_eq!((o.status, t.status), (200, 200), "{path}: {}", o.body);
        let key = |v: &Value| {
            let mut items: Vec<String> = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| {
                    let intervals = i.get("intervals").and_then(Value::as_array).map(Vec::len);
                    format!("{} {} {intervals:?}", i["path"], i["is_leaf"])
                })
                .collect();
            items.sort();
            items
        };
        let (o, t) = (unpickle(&o.bytes), unpickle(&t.bytes));
        if key(&o) != key(&t) {
            failures.push(format!("{path}: {o} vs {t}"));
        }
    }
    let nodelist = "/metrics/find?query=stats.*.*&format=nodelist&position=1";
    let (o, t) = (
        get(ours, nodelist).unwrap(),
        get(web.addr, nodelist).unwrap(),
    );
    if o.body != t.body {
        failures.push(format!("{nodelist}: {} vs {}", o.body, t.body));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn grafana_and_cubism_requests() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("whisper");
    store(&root);
    let web = GraphiteWeb::start(&root);
    let sluice = sluice_with_http(&root, dir.path());
    let ours = sluice.logged_addr("http").expect("sluice's http address");
    std::thread::sleep(Duration::from_millis(500));
    // Grafana's query: POST, each target wrapped in aliasSub with its refId.
    let form = format!(
        "target={}&target={}&from={}&until={}&now={NOW}&format=json&maxDataPoints=3",
        encode("aliasSub(stats.gauges.x, \"(^.*$)\", \"\\1 A\")"),
        encode("aliasSub(constantLine(100), \"(^.*$)\", \"\\1 B\")"),
        NOW - 3600,
        NOW
    );
    let (o, t) = (
        post(ours, "/render", &form).unwrap(),
        post(web.addr, "/render", &form).unwrap(),
    );
    assert_eq!((o.status, t.status), (200, 200), "{} | {}", o.body, t.body);
    let (ov, tv): (Value, Value) = (
        serde_json::from_str(&o.body).unwrap(),
        serde_json::from_str(&t.body).unwrap(),
    );
    assert_eq!(json_difference(&ov, &tv), None, "{} | {}", o.body, t.body);
    // "Save & test".
    let test = format!(
        "target={}&from=-1h&until=now&format=json&maxDataPoints=300",
        encode("aliasSub(constantLine(100), \"(^.*$)\", \"\\1 A\")")
    );
    let reply = post(ours, "/render", &test).unwrap();
    assert!(
        reply.status == 200 && reply.body.starts_with('['),
        "{reply:?}"
    );
    // The metric browser: POST /metrics/find with a raw body.
    let (o, t) = (
        post(ours, "/metrics/find", "query=stats.*").unwrap(),
        post(web.addr, "/metrics/find", "query=stats.*").unwrap(),
    );
    assert_eq!(o.body, t.body);
    // Version and functions.
    assert_eq!(get(ours, "/version").unwrap().body, "1.1.8\n");
    let functions: Value =
        serde_json::from_str(&get(ours, "/functions").unwrap().body).expect("strict JSON");
    assert!(functions["sumSeries"]["params"][0]["multiple"] == Value::Bool(true));
    assert_eq!(get(ours, "/functions/nosuch").unwrap().status, 404);
    let tags = get(ours, "/tags/autoComplete/tags?expr=name%3Dx&limit=100").unwrap();
    assert_eq!((tags.status, tags.body.as_str()), (200, "[]"));
    // Cubism: raw, alias(...,''), the summarize wrapper, completer.
    let cubism = format!(
        "/render?format=raw&target={}&from={}&until={}&now={NOW}",
        encode("alias(summarize(stats.gauges.x,'1min','sum'),'')"),
        T0 + 180,
        T0 + 599
    );
    let (o, t) = (get(ours, &cubism).unwrap(), get(web.addr, &cubism).unwrap());
    assert_eq!(o.body, t.body, "raw");
    let completer = "/metrics/find?query=stats.gau&format=completer";
    assert_eq!(
        get(ours, completer).unwrap().body,
        get(web.addr, completer).unwrap().body
    );
}

#[test]
fn bad_requests_are_4xx_that_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("whisper");
    store(&root);
    let sluice = sluice_with_http(&root, dir.path());
    let ours = sluice.logged_addr("http").expect("sluice's http address");
    for (path, status, says) in [
        (
            "/render?target=nosuchFunc(stats.gauges.x)&format=json",
            400,
            "unknown function: nosuchFunc",
        ),
        (
            "/render?target=sumSeries(stats.gauges.x&format=json",
            400,
            "position 24",
        ),
        (
            "/render?target=stats.gauges.x&from=bogus&format=json",
            400,
            "Unknown day reference: bogus",
        ),
        (
            "/render?target=stats.gauges.x&from=-1m&format=json",
            400,
            "Invalid offset unit 'm'",
        ),
        (
            "/render?target=stats.gauges.x&from=-1h&until=-1h&format=json",
            400,
            "Invalid empty time range",
        ),
        ("/render?target=stats.gauges.x&format=png", 400, "format"),
        (
            "/render?target=divideSeries(stats.gauges.x,stats_counts.app.*.requests)&format=json",
            400,
            "exactly one series",
        ),
        (
            "/render?target=movingAverage(stats.gauges.x)&format=json",
            400,
            "windowSize",
        ),
        ("/metrics/find", 400, "Missing required parameter 'query'"),
        ("/metrics/find?query=stats.*&format=nope", 400, "format"),
    ] {
        let reply = get(ours, path).unwrap();
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
        assert!(reply.body.contains(says), "{path}: {}", reply.body);
    }
    let long = format!("/render?format=json&target={}", "a".repeat(20_000));
    let reply = get(ours, &long).unwrap();
    assert!(
        reply.status == 400 && reply.body.contains("http.max_target_length"),
        "{}",
        reply.body
    );
    let big = "target=x&".repeat(200_000);
    let reply = post(ours, "/render", &big).unwrap();
    assert_eq!(reply.status, 413, "{}", reply.body);
}

#[test]
fn statsd_points_are_readable_right_after_their_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("whisper");
    let config = common::store_config(
        dir.path(),
        &store,
        "1s:1h",
        "[http]\naddress = \"127.0.0.1:0\"\n",
    );
    let mut capture = common::CarbonCapture::start();
    let carbon = capture.addr.to_string();
    let sluice = common::Sluice::start(&[
        "--config",
        config.to_str().unwrap(),
        "--flush-interval",
        "1s",
        "--carbon",
        &carbon,
    ]);
    let http = sluice.logged_addr("http").expect("http address");
    // A new metric is readable once its file exists (the writer's first
    // write); from then on each point is readable as soon as its flush
    // has been handed over, whether or not the writer has written it.
    common::send_udp(sluice.udp, &[b"ryw.hits:7|c"]);
    capture.flush_with("stats_counts.ryw.hits", Duration::from_secs(10));
    let file = store.join("stats_counts/ryw/hits.wsp");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !file.exists() {
        assert!(std::time::Instant::now() < deadline, "no file");
        std::thread::sleep(Duration::from_millis(5));
    }
    common::send_udp(sluice.udp, &[b"ryw.hits:5|c"]);
    loop {
        let flush = capture.flush_with("stats_counts.ryw.hits", Duration::from_secs(10));
        if flush.value("stats_counts.ryw.hits") == 5.0 {
            break;
        }
    }
    let reply = get(
        http,
        "/render?target=stats_counts.ryw.hits&from=-1min&format=json",
    )
    .unwrap();
    let v: Value = serde_json::from_str(&reply.body).unwrap();
    let points: Vec<f64> = v[0]["datapoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p[0].as_f64())
        .collect();
    assert_eq!(points.iter().sum::<f64>(), 12.0, "{}", reply.body);
    // And the tree shows the new metric without a rescan.
    let find = get(http, "/metrics/find?query=stats_counts.ryw.*").unwrap();
    assert!(find.body.contains("\"text\": \"hits\""), "{}", find.body);
    assert!(sluice.terminate().success());
}
