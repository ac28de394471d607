//! A sluice storage cluster read through graphite-web, as the scaling-out
//! issue lays it out: one sluice takes carbon lines, keeps them all in its
//! own store and relays each metric to one of two sluice nodes by carbon's
//! consistent hash; a real graphite-web 1.1.8 with CLUSTER_SERVERS naming
//! the two nodes (and no files of its own) must answer find and render as
//! the sluice that holds everything does.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common;
use crate::graphite_oracle::json_difference;
use common::graphite_web::GraphiteWeb;
use common::http::{encode, get};
use serde_json::Value;

/// A sluice with a store, a carbon line receiver and the read API; `extra`
/// is more config.
fn node(dir: &std::path::Path, extra: &str) -> common::Sluice {
    let store = dir.join("whisper");
    let config = common::store_config(
        dir,
        &store,
        "10s:1d",
        &format!("[http]\naddress = \"127.0.0.1:0\"\n{extra}"),
    );
    common::Sluice::start(&[
        "--config",
        config.to_str().unwrap(),
        "--line-receiver",
        "127.0.0.1:0",
        "--flush-interval",
        "1h",
    ])
}

/// The series of a json render, by name.
fn render(at: SocketAddr, target: &str, window: &str) -> Value {
    let reply = get(
        at,
        &format!("/render?target={}{window}&format=json", encode(target)),
    )
    .expect("render answered");
    assert_eq!(reply.status, 200, "{target}: {}", reply.body);
    serde_json::from_str(&reply.body).expect("json")
}

fn known_points(v: &Value) -> usize {
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["datapoints"].as_array().cloned().unwrap_or_default())
        .filter(|p| !p[0].is_null())
        .count()
}

#[test]
fn graphite_web_federating_two_sluice_nodes_answers_as_one_node() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let n1 = node(dirs[0].path(), "");
    let n2 = node(dirs[1].path(), "");
    let line = |n: &common::Sluice| n.logged_addr("carbon-line").expect("line receiver");
    let relay = node(
        dirs[2].path(),
        &format!(
            // Instances tell two nodes on one host apart on carbon's ring.
            "[carbon]\nrelay_received = true\nmode = \"hash\"\ndestinations = [\"{}:a\", \"{}:b\"]\n",
            line(&n1),
            line(&n2)
        ),
    );
    let http = |n: &common::Sluice| n.logged_addr("http").expect("http address");

    // 40 metrics x 30 points, each value its own, in one connection.
    let now = sluice::telemetry::unix_now_f64() as i64;
    let t0 = now - now.rem_euclid(10) - 300;
    let mut lines = String::new();
    for h in 0..4 {
        for m in 0..10 {
            for k in 0..30 {
                let value = h * 1000 + m * 100 + k;
                lines.push_str(&format!("fed.h{h}.m{m} {value} {}\n", t0 + k * 10));
            }
        }
    }
    let mut s = TcpStream::connect(line(&relay)).unwrap();
    s.write_all(lines.as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    drop(s);

    let window = format!("&from={}&until={}&now={}", t0 - 10, t0 + 300, now + 1);
    let all = 40 * 30;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let whole = known_points(&render(http(&relay), "fed.*.*", &window));
        let split = known_points(&render(http(&n1), "fed.*.*", &window))
            + known_points(&render(http(&n2), "fed.*.*", &window));
        if whole == all && split == all {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stored: {whole} on the relay, {split} on the nodes, of {all}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The hash split the metrics: each node holds some, none holds all.
    for n in [&n1, &n2] {
        let held = render(http(n), "fed.*.*", &window);
        let count = held.as_array().map_or(0, Vec::len);
        assert!((1..40).contains(&count), "a node holds {count} of 40");
    }

    let front = GraphiteWeb::start_federating(dirs[3].path(), &[http(&n1), http(&n2)]);
    let mut failures = Vec::new();
    for target in [
        "fed.*.*",
        "fed.h1.*",
        "fed.{h0,h3}.m[1-3]",
        "sumSeries(fed.*.m1)",
        "averageSeries(fed.h2.*)",
        "aliasByNode(fed.*.m7,1)",
        "highestMax(fed.*.*,3)",
        "summarize(fed.h0.m0,'1min','sum')",
        "scale(fed.h3.m9,0.5)",
    ] {
        let (theirs, ours) = (
            render(front.addr, target, &window),
            render(http(&relay), target, &window),
        );
        if let Some(d) = json_difference(&ours, &theirs) {
            failures.push(format!("render {target}: {d}"));
        }
    }
    for query in ["*", "fed.*", "fed.h2.*", "fed.*.m?", "nosuch.*"] {
        let path = format!("/metrics/find?query={}", encode(query));
        let (theirs, ours) = (
            get(front.addr, &path).unwrap(),
            get(http(&relay), &path).unwrap(),
        );
        let key = |body: &str| {
            let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            let mut items: Vec<String> = v
                .as_array()
                .into_iter()
                .flatten()
                .map(Value::to_string)
                .collect();
            items.sort();
            items
        };
        if theirs.status != 200 || key(&theirs.body) != key(&ours.body) {
            failures.push(format!("find {query}: {} vs {}", theirs.body, ours.body));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for n in [n1, n2, relay] {
        assert!(n.terminate().success());
    }
}
