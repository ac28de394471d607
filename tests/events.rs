//! Graphite's events API against the real graphite-web 1.1.8: the same
//! events posted to both, then the same `/events/get_data` questions
//! (what Grafana's annotations ask) must get the same answers. And on the
//! real binary, DogStatsD `_e{...}` lines become events that survive a
//! restart.

use std::time::{Duration, Instant};

use crate::common::{self, graphite_web::GraphiteWeb, http, send_udp, Sluice};
use crate::graphite_oracle::sluice_with_http;
use serde_json::Value;

const T0: i64 = 1_796_169_600;

fn parse(reply: &http::Reply, what: &str) -> Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{what}: {e}: {}", reply.body))
}

#[test]
fn events_agree_with_graphite_web() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("whisper");
    std::fs::create_dir_all(&root).expect("mkdir");
    let web = GraphiteWeb::start(&root);
    let sluice = sluice_with_http(&root, dir.path());
    let ours = sluice.logged_addr("http").expect("sluice's http address");

    let posts = [
        format!(
            r#"{{"what": "deploy v1", "tags": ["deploy", "app"], "when": {}, "data": "rolled out"}}"#,
            T0 + 100
        ),
        format!(
            r#"{{"what": "restart", "tags": "ops app", "when": {}}}"#,
            T0 + 200
        ),
        format!(
            r#"{{"what": "deploy v2", "tags": ["deploy"], "when": {}, "data": "canary"}}"#,
            T0 + 300
        ),
        format!(r#"{{"what": "untagged", "when": {}}}"#, T0 + 400),
        // Out of order: listed by time all the same.
        format!(
            r#"{{"what": "early", "tags": ["ops"], "when": {}}}"#,
            T0 + 50
        ),
    ];
    for body in &posts {
        for addr in [web.addr, ours] {
            let r = http::post(addr, "/events/", body).expect("answers");
            assert_eq!(r.status, 200, "{body}: {}", r.body);
        }
    }
    let bad = r#"{"what": "x", "tags": 5}"#;
    let theirs = http::post(web.addr, "/events/", bad).expect("answers");
    let mine = http::post(ours, "/events/", bad).expect("answers");
    assert_eq!((mine.status, theirs.status), (400, 400));
    assert_eq!(parse(&mine, bad), parse(&theirs, bad));

    let range = format!("from={}&until={}", T0, T0 + 1000);
    let mut failures = Vec::new();
    for query in [
        range.clone(),
        format!("{range}&tags=app"),
        format!("{range}&tags=app%20ops"),
        format!("{range}&tags=app%20ops&set=union"),
        format!("{range}&tags=deploy%20app&set=intersection"),
        format!("{range}&tags=nosuch"),
        format!("from={}&until={}", T0 + 150, T0 + 300),
        format!("from={}&until={}&tags=deploy", T0 + 150, T0 + 350),
        format!("from={}", T0 + 250),
        format!("until={}", T0 + 150),
        // Grafana's annotation query: its range as offsets, tags joined by spaces.
        "from=-30d&until=now&tags=deploy".to_string(),
        "from=-30d&until=now&tags=deploy%20app".to_string(),
    ] {
        let path = format!("/events/get_data?{query}");
        let theirs = http::get(web.addr, &path).expect("graphite-web answers");
        let mine = http::get(ours, &path).expect("sluice answers");
        if (mine.status, theirs.status) != (200, 200) {
            failures.push(format!("{path}: {} vs {}", mine.status, theirs.status));
            continue;
        }
        let (m, t) = (parse(&mine, &path), parse(&theirs, &path));
        if query == range {
            assert_eq!(
                t.as_array().map(Vec::len),
                Some(5),
                "graphite-web listed {t}"
            );
        }
        if m != t {
            failures.push(format!("{path}:\n  sluice       {m}\n  graphite-web {t}"));
        }
    }
    let jsonp = format!("/events/get_data?{range}&tags=ops&jsonp=cb");
    let (m, t) = (
        http::get(ours, &jsonp).expect("answers"),
        http::get(web.addr, &jsonp).expect("answers"),
    );
    assert!(
        m.body.starts_with("cb(") && t.body.starts_with("cb("),
        "{} / {}",
        m.body,
        t.body
    );
    let strip =
        |b: &str| -> Value { serde_json::from_str(&b[3..b.len() - 1]).expect("jsonp holds JSON") };
    assert_eq!(strip(&m.body), strip(&t.body));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn dogstatsd_events_are_recorded_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::store_and_http_config(dir.path());
    let args = ["--config", config.to_str().expect("utf-8 path")];
    let sluice = Sluice::start(&args);
    let addr = sluice.logged_addr("http").expect("http address");
    send_udp(
        sluice.udp,
        &[
            b"_e{9,12}:deploy v3|rolled\\nback|d:1796169900|h:web1|#deploy,env:prod\n\
_e{5,40}:short|text\nreal.metric:1|c\n",
        ],
    );
    let path = format!("/events/get_data?from={T0}&until={}", T0 + 3600);
    let want = serde_json::json!([{
        "when": 1_796_169_900,
        "what": "deploy v3",
        "data": "rolled\nback",
        "tags": ["deploy", "env:prod", "host:web1"],
        "id": 1,
    }]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = parse(&http::get(addr, &path).expect("answers"), &path);
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "{got} after 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Annotations as Grafana asks for them, by tag.
    let by_tag = format!("{path}&tags=env:prod");
    assert_eq!(
        parse(&http::get(addr, &by_tag).expect("answers"), &by_tag),
        want
    );
    sluice.terminate();

    let again = Sluice::start(&args);
    let addr = again.logged_addr("http").expect("http address");
    assert_eq!(
        parse(&http::get(addr, &path).expect("answers"), &path),
        want
    );
    let detail = http::get(addr, "/events/1").expect("answers");
    assert_eq!(parse(&detail, "detail")["when"], "2026-12-02T00:05:00Z");
}
