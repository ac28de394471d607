//! The tag index against the real graphite-web 1.1.8 (its local tag
//! database) on the same tagged whisper files: the same registrations go
//! to both, then every `/tags` question and every tag render below must get
//! the same answer. And the real binary learns tagged series from StatsD
//! and carbon lines as it creates their files, and keeps them across a
//! restart.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{self, graphite_web::GraphiteWeb, http, send_udp, Sluice};
use crate::graphite_oracle::{json_difference, sluice_with_http};
use serde_json::Value;
use sluice::store::format::{Aggregation, WhisperFile};
use sluice::store::path::metric_path;

const T0: i64 = 1_796_169_600;
const NOW: i64 = T0 + 4 * 3600;

/// Registered in this order, with the tags as senders wrote them.
const SERIES: &[&str] = &[
    "disk.used;server=web01;dc=eu",
    "disk.used;dc=us;server=web02",
    "cpu.load;server=web01",
    "cpu.load;server=web02;dc=us;env=prod",
    "cpu.load;server=web03;dc=eu;env=prod",
    "http.hits;dc=eu;method=get;status=200",
    "http.hits;dc=eu;method=post;status=500",
    "http.hits;dc=us;method=get;status=200",
];

fn write_tagged(root: &Path, name: &str, seed: f64) {
    let path = root.join(metric_path(name).expect("a valid tagged name"));
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    let mut file = WhisperFile::create(&path, &[(10, 2160)], 0.0, Aggregation::Average)
        .expect("create whisper file");
    let points: Vec<(i64, f64)> = (0..360)
        .map(|i| (T0 + i * 10, seed + (i % 7) as f64))
        .collect();
    file.update_many(&points, NOW).expect("write points");
}

/// Both servers on one store with `SERIES` written and registered.
fn both(dir: &Path) -> (GraphiteWeb, Sluice, std::net::SocketAddr) {
    let root = dir.join("whisper");
    for (i, name) in SERIES.iter().enumerate() {
        write_tagged(&root, name, 10.0 * i as f64);
    }
    let web = GraphiteWeb::start(&root);
    let sluice = sluice_with_http(&root, dir);
    let ours = sluice.logged_addr("http").expect("sluice's http address");
    (web, sluice, ours)
}

/// The reply's JSON with every `id` removed (graphite-web's ids are rows
/// of its SQL tables, numbered as its inserts happened to run).
fn without_ids(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if let Some(id) = map.remove("id") {
                    assert!(id.is_u64(), "id {id} is not a positive integer");
                }
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

fn parse(reply: &http::Reply, what: &str) -> Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{what}: {e}: {}", reply.body))
}

#[test]
fn tag_endpoints_and_tag_renders_agree_with_graphite_web() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (web, _sluice, ours) = both(dir.path());

    // Registration: one by one, then the rest at once.
    let single = format!("path={}", http::encode(SERIES[0]));
    let multi: Vec<String> = SERIES[1..]
        .iter()
        .map(|s| format!("path={}", http::encode(s)))
        .collect();
    for (path, form) in [
        ("/tags/tagSeries", single.clone()),
        ("/tags/tagMultiSeries", multi.join("&")),
        // Again: nothing changes, the normal forms come back.
        ("/tags/tagSeries", single),
    ] {
        let theirs = http::post(web.addr, path, &form).expect("graphite-web answers");
        let mine = http::post(ours, path, &form).expect("sluice answers");
        assert_eq!(
            (mine.status, theirs.status),
            (200, 200),
            "{path}: {}",
            mine.body
        );
        assert_eq!(parse(&mine, path), parse(&theirs, path), "{path}");
    }

    let mut questions: Vec<String> = [
        "/tags",
        "/tags?filter=s",
        "/tags?limit=2",
        "/tags/server",
        "/tags/dc?filter=e",
        "/tags/nosuchtag",
        "/tags/autoComplete/tags",
        "/tags/autoComplete/tags?tagPrefix=s",
        "/tags/autoComplete/tags?limit=2",
        "/tags/autoComplete/values?tag=server",
        "/tags/autoComplete/values?tag=name&valuePrefix=c",
        "/tags/autoComplete/values?tag=nosuch",
        "/tags/autoComplete/values",
        "/tags/findSeries",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for exprs in [
        vec!["name=disk.used"],
        vec!["server=web01", "dc=~e.*"],
        vec!["server=web01", "dc!=eu"],
        vec!["name=cpu.load", "env="],
        vec!["name=~cpu|http", "dc!=~u"],
        vec!["name=http.hits", "status!=200"],
        vec!["server=~web0[23]"],
        vec!["env!="],
        vec!["server!=web01"],
        vec!["nosuch=1"],
    ] {
        let q: String = exprs
            .iter()
            .map(|e| format!("expr={}", http::encode(e)))
            .collect::<Vec<_>>()
            .join("&");
        questions.push(format!("/tags/findSeries?{q}"));
        questions.push(format!("/tags/autoComplete/tags?{q}"));
        questions.push(format!("/tags/autoComplete/values?tag=dc&{q}"));
        questions.push(format!(
            "/tags/autoComplete/values?tag=server&valuePrefix=web&{q}"
        ));
    }
    // Grafana's tag editor and template variables, as it sends them
    // (empty prefixes, its time range, limit 100 or 10000), and a
    // federating graphite-web's `local=1`.
    for grafana in [
        "/tags/autoComplete/tags?expr=name%3Dcpu.load&tagPrefix=&limit=100&from=-6h&until=now",
        "/tags/autoComplete/tags?expr=name%3Dcpu.load&expr=server%3Dweb02&tagPrefix=e&limit=100&from=-6h&until=now",
        "/tags/autoComplete/values?expr=name%3Dcpu.load&tag=server&valuePrefix=&limit=100&from=-6h&until=now",
        "/tags/autoComplete/values?expr=name%3D~%5Ecpu.*&tag=dc&valuePrefix=e&limit=100&from=-6h&until=now",
        "/tags/autoComplete/tags?tagPrefix=&limit=10000",
        "/tags/autoComplete/values?expr=dc%3Deu&tag=server&limit=10000",
        "/tags/autoComplete/values?tag=name&valuePrefix=&limit=10000",
        "/tags/autoComplete/tags?tagPrefix=&limit=100&local=1&expr=dc%3Dus",
        "/tags/autoComplete/values?tag=method&valuePrefix=&limit=100&local=1&expr=name%3Dhttp.hits",
        "/tags/autoComplete/tags?expr%5B%5D=name%3Ddisk.used",
    ] {
        questions.push(grafana.to_string());
    }
    let mut failures = Vec::new();
    for path in &questions {
        let theirs = http::get(web.addr, path).expect("graphite-web answers");
        let mine = http::get(ours, path).expect("sluice answers");
        if mine.status != theirs.status {
            failures.push(format!(
                "{path}: status {} vs graphite-web's {} ({} / {})",
                mine.status, theirs.status, mine.body, theirs.body
            ));
            continue;
        }
        let (m, t) = (
            without_ids(parse(&mine, path)),
            without_ids(parse(&theirs, path)),
        );
        if m != t {
            failures.push(format!("{path}: {m} vs graphite-web's {t}"));
        }
    }

    let window = format!("&from={}&until={}&now={NOW}&format=json", T0, T0 + 3600);
    for target in [
        "seriesByTag('name=disk.used')",
        "seriesByTag('server=web01')",
        "seriesByTag('name=http.hits','dc=eu')",
        "seriesByTag('name=cpu.load','env!=prod')",
        "seriesByTag('name=~cpu.*','dc=~(eu|us)')",
        "seriesByTag('nosuch=1')",
        "sumSeries(seriesByTag('name=cpu.load'))",
        "groupByTags(seriesByTag('name=cpu.load','dc=~.+'),'sum','dc')",
        "groupByTags(seriesByTag('name=http.hits'),'average','dc','method')",
        "groupByTags(seriesByTag('dc=~.+'),'max','name')",
        "groupByTags(seriesByTag('dc=~.+'),'sumSeries','dc')",
        "aliasByTags(seriesByTag('name=cpu.load'),'server','name')",
        "aliasByTags(seriesByTag('name=http.hits'),1,'status')",
        "seriesByTag('name=disk.used')|aliasByTags('dc')",
        "disk.used;dc=eu;server=web01",
    ] {
        let path = format!("/render?target={}{window}", http::encode(target));
        let theirs = http::get(web.addr, &path).expect("graphite-web answers");
        let mine = http::get(ours, &path).expect("sluice answers");
        if (mine.status, theirs.status) != (200, 200) {
            failures.push(format!(
                "{target}: status {} vs {} ({} / {})",
                mine.status, theirs.status, mine.body, theirs.body
            ));
            continue;
        }
        let (m, t) = (parse(&mine, target), parse(&theirs, target));
        if t.as_array().is_none_or(|a| a.is_empty()) && !target.contains("nosuch") {
            failures.push(format!("{target}: graphite-web rendered nothing: {t}"));
        }
        if let Some(d) = json_difference(&m, &t) {
            failures.push(format!("{target}: {d}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Deleting is the way back: the series is gone from both.
    let form = format!("path={}", http::encode(SERIES[2]));
    for addr in [web.addr, ours] {
        let r = http::post(addr, "/tags/delSeries", &form).expect("answers");
        assert_eq!((r.status, r.body.trim()), (200, "true"));
    }
    let q = "/tags/findSeries?expr=server%3Dweb01";
    let theirs = parse(&http::get(web.addr, q).expect("answers"), q);
    assert_eq!(parse(&http::get(ours, q).expect("answers"), q), theirs);
    assert_eq!(theirs, serde_json::json!(["disk.used;dc=eu;server=web01"]));
}

fn find_series(addr: std::net::SocketAddr, expr: &str) -> Value {
    let path = format!("/tags/findSeries?expr={}", http::encode(expr));
    let reply = http::get(addr, &path).expect("sluice answers");
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    parse(&reply, &path)
}

fn wait_for_series(addr: std::net::SocketAddr, expr: &str, want: &Value) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = find_series(addr, expr);
        if &got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{expr}: {got} after 15 s, wanted {want}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn series_written_by_statsd_and_carbon_are_tagged_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::store_and_http_config(dir.path());
    let args = [
        "--config",
        config.to_str().expect("utf-8 path"),
        "--flush-interval",
        "1s",
        "--line-receiver",
        "127.0.0.1:0",
    ];
    let sluice = Sluice::start(&args);
    let http_addr = sluice.logged_addr("http").expect("http address");
    let line = sluice.logged_addr("carbon-line").expect("line receiver");
    send_udp(
        sluice.udp,
        &[b"api.calls:3|c|#env:prod,svc:web\napi.calls:4|c|#svc:web,env:prod\n"],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let mut carbon = std::net::TcpStream::connect(line).expect("connect line receiver");
    writeln!(carbon, "collectd.load;host=db1;dc=eu 0.5 {now}").expect("send");
    writeln!(carbon, "collectd.load;dc=us;host=db2 1.5 {now}").expect("send");
    drop(carbon);

    let counts = serde_json::json!(["stats_counts.api.calls;env=prod;svc=web"]);
    wait_for_series(http_addr, "name=stats_counts.api.calls", &counts);
    let loads = serde_json::json!([
        "collectd.load;dc=eu;host=db1",
        "collectd.load;dc=us;host=db2"
    ]);
    wait_for_series(http_addr, "name=collectd.load", &loads);

    // Renders by tag read the files the flush wrote.
    let path = format!(
        "/render?target={}&from=-5min&format=json",
        http::encode("seriesByTag('name=stats_counts.api.calls','svc=web')")
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = http::get(http_addr, &path).expect("render answers");
        assert_eq!(reply.status, 200, "{}", reply.body);
        let v = parse(&reply, &path);
        let total: f64 = v[0]["datapoints"]
            .as_array()
            .map(|points| points.iter().filter_map(|p| p[0].as_f64()).sum())
            .unwrap_or(0.0);
        if total == 7.0 {
            assert_eq!(v[0]["tags"]["svc"], "web");
            break;
        }
        assert!(Instant::now() < deadline, "seriesByTag rendered {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    sluice.terminate();

    // The names file brings every series back without a scan.
    let again = Sluice::start(&args);
    let http_addr = again.logged_addr("http").expect("http address");
    assert_eq!(find_series(http_addr, "name=collectd.load"), loads);
    assert_eq!(
        find_series(http_addr, "svc=web"),
        serde_json::json!([
            "stats.api.calls;env=prod;svc=web",
            "stats_counts.api.calls;env=prod;svc=web"
        ])
    );
    let values = http::get(http_addr, "/tags/autoComplete/values?tag=host").expect("answers");
    assert_eq!(parse(&values, "values"), serde_json::json!(["db1", "db2"]));
}
