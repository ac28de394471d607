//! The page at `/` in a real browser (Debian's chromium, headless) against
//! the real binary with data sent in the test: the tree shows the names
//! sent, a graph's data table holds the values sent, a bad target shows
//! the API's error, the agent view shows the lines received, the tap
//! view shows matching lines as they arrive, and nothing
//! is refused or fails on the way. Screenshots go to
//! target/test-artifacts/.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{self, http, send_udp, Sluice};

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir
}

/// (DOM after the page settled, the browser's log) for `url`; with
/// `screenshot`, a 1280x800 picture of it too.
fn browse(url: &str, screenshot: Option<&Path>) -> (String, String) {
    browse_as(url, screenshot, &["--window-size=1280,800"])
}

/// [`browse`] with other window flags (a phone's width, a dark scheme).
fn browse_as(url: &str, screenshot: Option<&Path>, window: &[&str]) -> (String, String) {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=8000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(window);
    match screenshot {
        Some(path) => cmd.arg(format!("--screenshot={}", path.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd
        .arg(url)
        .output()
        .expect("run chromium (scripts/install-test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of `expression` in `url` after `seconds` of real time, and
/// every console error, exception and failed request meanwhile (through
/// the DevTools protocol: a stream never finishes loading, so a DOM dump
/// would not wait for it).
fn evaluate_live(url: &str, seconds: f64, expression: &str) -> (serde_json::Value, Vec<String>) {
    evaluate_after(url, seconds, &[], expression)
}

/// [`evaluate_live`] after `steps` (tests/cdp_eval.py: `key:ArrowRight`,
/// `js:...`, `wait:0.5`).
fn evaluate_after(
    url: &str,
    seconds: f64,
    steps: &[&str],
    expression: &str,
) -> (serde_json::Value, Vec<String>) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join(".test-deps/venv/bin/python"))
        .arg(root.join("tests/cdp_eval.py"))
        .args([url, &seconds.to_string(), expression])
        .args(steps)
        .output()
        .expect("run tests/cdp_eval.py (scripts/install-test-deps.sh installs its client)");
    assert!(
        out.status.success(),
        "cdp_eval: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cdp_eval prints JSON");
    let problems = reply["problems"]
        .as_array()
        .map(|p| p.iter().map(|x| x.to_string()).collect())
        .unwrap_or_default();
    (reply["value"].clone(), problems)
}

/// No script error, no refused or failed request in the browser's log.
fn assert_clean(log: &str, what: &str) {
    for bad in [
        "Uncaught",
        "Refused to",
        "Failed to load resource",
        "net::ERR_",
    ] {
        assert!(
            !log.contains(bad),
            "{what}: {bad} in the browser log:\n{log}"
        );
    }
}

#[test]
fn the_page_shows_the_tree_graphs_errors_and_the_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::store_and_http_config(dir.path());
    let sluice = Sluice::start(&[
        "--config",
        config.to_str().expect("utf-8"),
        "--flush-interval",
        "1s",
    ]);
    let addr = sluice.logged_addr("http").expect("http address");
    for value in [4, 7, 9] {
        send_udp(
            sluice.udp,
            &[
                format!("page.hits:{value}|c\npage.temp:2{value}|g\npage.tagged:3|g|#dc:eu\n")
                    .as_bytes(),
            ],
        );
        std::thread::sleep(Duration::from_millis(1100));
    }
    // Wait until the read API has every value, so the browser sees them.
    let render = "/render?target=stats_counts.page.hits&from=-5min&format=json";
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body = http::get(addr, render).expect("render").body;
        if ["[4.0,", "[7.0,", "[9.0,"].iter().all(|v| body.contains(v)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store never held 4, 7 and 9: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let base = format!("http://{addr}/");
    // The policy that keeps every request on this host.
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        conn,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut head = String::new();
    conn.read_to_string(&mut head).expect("read");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self'")
            && head.contains("connect-src 'self'"),
        "{head}"
    );

    let graph = format!(
        "{base}#view=graph&target=stats_counts.page.hits&target=stats.gauges.page.temp&from=-5min"
    );
    let (dom, log) = browse(&graph, None);
    assert_clean(&log, "graph");
    for name in ["stats", "stats_counts"] {
        assert!(
            dom.contains(&format!("data-path=\"{name}\"")),
            "tree lacks {name}:\n{dom}"
        );
    }
    assert!(dom.contains("data-drawn=\"2\""), "two series drawn:\n{dom}");
    for value in ["4", "7", "9", "24", "27", "29"] {
        assert!(
            dom.contains(&format!("data-value=\"{value}\"")),
            "no {value} in the data tables:\n{dom}"
        );
    }
    assert!(dom.contains("<path d=\"M"), "no line drawn");

    assert!(
        dom.contains("data-tag-path=\"dc\""),
        "the tag tree lacks dc:\n{dom}"
    );

    // By keyboard alone: into the tag tree, dc, eu, its series, onto the
    // graph; then the cursor moved along the graph by arrow keys.
    let (reading, problems) = evaluate_after(
        &graph,
        2.0,
        &[
            "js:document.querySelector('#tag-tree button').focus()",
            "key:ArrowRight",
            "key:ArrowRight",
            "key:ArrowRight",
            "key:ArrowRight",
            "key:Enter",
            "wait:1",
            "js:document.getElementById('chart').focus()",
            "key:End",
            "key:ArrowLeft",
            "key:ArrowLeft",
        ],
        "JSON.stringify({hash: decodeURIComponent(location.hash), cursor: \
         document.getElementById('cursor').textContent, drawn: document.body.dataset.drawn})",
    );
    assert!(problems.is_empty(), "keyboard: {problems:?}");
    let reading: serde_json::Value =
        serde_json::from_str(reading.as_str().unwrap_or("{}")).expect("JSON from the page");
    assert!(
        reading["hash"]
            .as_str()
            .unwrap_or("")
            .contains("target=stats.gauges.page.tagged;dc=eu&"),
        "the tagged series was not added by keyboard: {reading}"
    );
    assert_eq!(reading["drawn"], "3", "{reading}");
    assert!(
        reading["cursor"]
            .as_str()
            .unwrap_or("")
            .contains("stats.gauges.page.tagged;dc=eu = 3"),
        "the cursor by keyboard: {reading}"
    );

    let (dom, log) = browse(
        &format!("{base}#view=graph&target=nosuchFunc(stats.x)&from=-5min"),
        None,
    );
    assert_clean(&log, "bad target");
    assert!(
        dom.contains("400: Invalid parameters (Received request for unknown function: nosuchFunc)"),
        "the API's error is not shown:\n{dom}"
    );

    let (dom, log) = browse(&format!("{base}#view=agent"), None);
    assert_clean(&log, "agent");
    let received = dom
        .split("<td>sluice_metrics_received_total</td><td>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(received, Some(9), "the agent view's lines received:\n{dom}");
    // The summary: a rate once two readings are in (5 s apart).
    let rate = dom
        .split("<dt>StatsD lines/s</dt><dd>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or("");
    assert!(rate.parse::<f64>().is_ok(), "lines/s is {rate:?}:\n{dom}");
    assert!(dom.contains("<dt>live counters</dt><dd>"), "{dom}");
    // Lines by protocol: all nine came over UDP.
    assert!(
        dom.contains("<td>sluice_lines_udp_total</td><td>9</td>"),
        "UDP lines:\n{dom}"
    );
    assert!(dom.contains("<dt>… over UDP</dt><dd>"), "{dom}");

    let horizon = format!("{base}#view=horizon&target=stats_counts.page.*&from=-5min");
    let (dom, log) = browse(&horizon, None);
    assert_clean(&log, "horizon");
    assert!(dom.contains("data-bands=\"1\""), "one band:\n{dom}");
    assert!(
        dom.contains("class=\"band\" data-target=\"stats_counts.page.hits\""),
        "{dom}"
    );
    assert!(dom.contains("<rect "), "nothing drawn in the band");

    // The live tap, while lines arrive (a real-time wait: the stream
    // never finishes, so virtual time would not advance).
    let udp = sluice.udp;
    let sending = std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(6);
        while Instant::now() < until {
            send_udp(udp, &[b"page.live:1|c\npage.other:1|c\n"]);
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let (lines, problems) = evaluate_live(
        &format!("{base}#view=tap&pattern=page.live"),
        2.0,
        "document.getElementById('tap-lines').innerText",
    );
    sending.join().expect("sender");
    assert!(problems.is_empty(), "tap view: {problems:?}");
    let lines = lines.as_str().unwrap_or("").to_string();
    assert!(
        lines.lines().count() >= 5,
        "too few tapped lines: {lines:?}"
    );
    assert!(lines.lines().all(|l| l == "page.live:1|c"), "{lines:?}");

    let shots = artifacts();
    for (name, url) in [
        ("page-graph.png", graph.clone()),
        ("page-agent.png", format!("{base}#view=agent")),
    ] {
        let path = shots.join(name);
        let _ = std::fs::remove_file(&path);
        browse(&url, Some(&path));
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{name}: {size} bytes");
    }
    // A phone's width (one column), and the dark scheme.
    for (name, flags) in [
        ("page-phone.png", vec!["--window-size=390,844"]),
        (
            "page-dark.png",
            vec![
                "--window-size=1280,800",
                "--force-dark-mode",
                "--blink-settings=preferredColorScheme=0",
            ],
        ),
    ] {
        let path = shots.join(name);
        let _ = std::fs::remove_file(&path);
        browse_as(&graph, Some(&path), &flags);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{name}: {size} bytes");
    }
}
