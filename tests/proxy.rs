//! `sluice proxy` in front of real aggregators, each its own process on
//! loopback: what the backends flush together equals what one sluice fed
//! everything flushes, a backend that goes away and comes back loses
//! nothing that was sent while the proxy knew it was down, and Etsy's
//! statsd works as a backend through its management port.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{free_port, send_udp, CarbonCapture, Flush, Sluice};

/// A backend aggregator flushing only when it stops (its final flush), so
/// every sample of a timer is in one flush on one node.
fn aggregator(capture: &CarbonCapture, fixed: Option<(u16, u16)>) -> Sluice {
    let carbon = capture.addr.to_string();
    let (udp, admin) = match fixed {
        Some((u, a)) => (format!("127.0.0.1:{u}"), format!("127.0.0.1:{a}")),
        None => ("127.0.0.1:0".to_string(), "127.0.0.1:0".to_string()),
    };
    Sluice::start(&[
        "--no-whisper",
        "--flush-interval",
        "1h",
        "--carbon",
        &carbon,
        "--udp",
        &udp,
        "--admin",
        &admin,
    ])
}

fn backend_arg(node: &Sluice) -> String {
    let admin = node.admin.expect("backend admin address");
    format!("127.0.0.1:{}:{}", node.udp.port(), admin.port())
}

fn start_proxy(backends: &[String]) -> Sluice {
    let mut args = vec![
        "proxy",
        "--check-interval",
        "100ms",
        "--admin",
        "127.0.0.1:0",
    ];
    for b in backends {
        args.extend(["--backend", b.as_str()]);
    }
    Sluice::start(&args)
}

/// The proxy's admin `stats` as name -> value.
fn proxy_stats(proxy: &Sluice) -> BTreeMap<String, f64> {
    let admin = proxy.admin.expect("proxy admin");
    let mut stream = TcpStream::connect(admin).expect("proxy admin");
    stream.write_all(b"stats\n").expect("ask stats");
    let mut out = BTreeMap::new();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if line == "END" {
            break;
        }
        if let Some((k, v)) = line.split_once(": ") {
            if let Ok(v) = v.parse() {
                out.insert(k.to_string(), v);
            }
        }
    }
    out
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn forwarded(proxy: &Sluice) -> f64 {
    proxy_stats(proxy)
        .get("sluice.proxy_lines_forwarded")
        .copied()
        .unwrap_or(0.0)
}

/// Datagrams of every type over `keys` names (sample rates, several
/// timer values per datagram, set members), `rounds` times; returns them
/// and the number of lines.
fn workload(prefix: &str, keys: usize, rounds: usize) -> (Vec<Vec<u8>>, usize) {
    let mut datagrams = Vec::new();
    let mut lines = 0;
    for round in 0..rounds {
        let mut d = String::new();
        for k in 0..keys {
            let rate = [1.0, 0.5, 0.1][k % 3];
            d.push_str(&format!("{prefix}.c{k}:{}|c|@{rate}\n", round + k));
            d.push_str(&format!(
                "{prefix}.t{k}:{}|ms:{}|ms\n",
                (round * 7 + k) % 100,
                (round * 13 + k) % 250
            ));
            d.push_str(&format!("{prefix}.g{k}:{}|g\n", round * 3 + k));
            d.push_str(&format!("{prefix}.s{k}:m{}|s\n", (round + k) % 5));
            lines += 4;
            if d.len() > 1000 {
                datagrams.push(std::mem::take(&mut d).into_bytes());
            }
        }
        if !d.is_empty() {
            datagrams.push(d.into_bytes());
        }
    }
    (datagrams, lines)
}

/// The lines of `flush` whose names hold `prefix`, minus per-second rates
/// (they divide by each node's own flush interval, which differs by the
/// milliseconds between the nodes' starts).
fn of_workload(flush: &Flush, prefix: &str) -> BTreeMap<String, String> {
    flush
        .lines
        .iter()
        .filter(|(name, _, _)| name.contains(prefix))
        .filter(|(name, _, _)| {
            !name.ends_with("_ps") && !name.starts_with(&format!("stats.{prefix}"))
        })
        .map(|(name, value, _)| (name.clone(), value.clone()))
        .collect()
}

fn final_flush(node: Sluice, capture: &mut CarbonCapture) -> Flush {
    assert!(node.terminate().success());
    capture.next_flush(Duration::from_secs(20))
}

#[test]
fn three_aggregators_behind_the_proxy_flush_what_one_aggregator_flushes() {
    let prefix = "proxied";
    let (datagrams, lines) = workload(prefix, 120, 6);
    let mut captures: Vec<CarbonCapture> = (0..3).map(|_| CarbonCapture::start()).collect();
    let nodes: Vec<Sluice> = captures.iter().map(|c| aggregator(c, None)).collect();
    let proxy = start_proxy(&nodes.iter().map(backend_arg).collect::<Vec<_>>());
    let mut one_capture = CarbonCapture::start();
    let one = aggregator(&one_capture, None);

    // One source socket per target: a gauge's last value is only defined
    // when its datagrams reach one receiver thread in order.
    let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("client socket");
    for chunk in datagrams.chunks(50) {
        for d in chunk {
            client.send_to(d, proxy.udp).expect("send to the proxy");
            client.send_to(d, one.udp).expect("send to the one node");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_for(
        "the proxy to forward every line",
        Duration::from_secs(10),
        || forwarded(&proxy) >= lines as f64,
    );
    let stats = proxy_stats(&proxy);
    assert_eq!(
        stats.get("sluice.proxy_lines_forwarded"),
        Some(&(lines as f64))
    );
    let per_backend: Vec<f64> = stats
        .iter()
        .filter(|(k, _)| k.ends_with(".lines_forwarded"))
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(per_backend.len(), 3, "{stats:?}");
    assert!(
        per_backend.iter().all(|n| *n > lines as f64 / 10.0),
        "an even share each: {per_backend:?}"
    );
    // Give the backends' sockets a moment to be read before they stop.
    std::thread::sleep(Duration::from_millis(300));

    let mut union = BTreeMap::new();
    let mut names_per_node = Vec::new();
    for (node, capture) in nodes.into_iter().zip(captures.iter_mut()) {
        let got = of_workload(&final_flush(node, capture), prefix);
        names_per_node.push(got.len());
        for (name, value) in got {
            assert!(
                union.insert(name.clone(), value).is_none(),
                "{name} flushed by two nodes"
            );
        }
    }
    let expected = of_workload(&final_flush(one, &mut one_capture), prefix);
    assert!(expected.len() > 120 * 10, "{} names", expected.len());
    assert!(names_per_node.iter().all(|n| *n > 0), "{names_per_node:?}");
    let differing: Vec<_> = expected
        .iter()
        .filter(|(k, v)| union.get(*k) != Some(*v))
        .take(10)
        .map(|(k, v)| format!("{k}: one node {v}, proxied {:?}", union.get(k)))
        .collect();
    assert!(differing.is_empty(), "{differing:#?}");
    assert_eq!(union.len(), expected.len());
    drop(proxy);
}

/// Sum of `stats_counts.<prefix>.*` over every flush of a node.
fn counted(flushes: &[Flush], prefix: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for f in flushes {
        for (name, value, _) in &f.lines {
            if name.starts_with(&format!("stats_counts.{prefix}.")) {
                *out.entry(name.clone()).or_insert(0.0) += value.parse::<f64>().unwrap_or(f64::NAN);
            }
        }
    }
    out
}

#[test]
fn lines_sent_while_a_backend_is_down_go_to_the_others_and_none_is_lost() {
    let prefix = "failover";
    let mut captures: Vec<CarbonCapture> = (0..3).map(|_| CarbonCapture::start()).collect();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let mut nodes: Vec<Option<Sluice>> = captures
        .iter()
        .zip(&ports)
        .map(|(c, p)| Some(aggregator(c, Some(*p))))
        .collect();
    let backends: Vec<String> = ports
        .iter()
        .map(|(u, a)| format!("127.0.0.1:{u}:{a}"))
        .collect();
    let proxy = start_proxy(&backends);
    let keys = 200;
    let mut sent: BTreeMap<String, f64> = BTreeMap::new();
    let mut lines_sent = 0usize;
    let mut send_round = |round: usize, lines_sent: &mut usize| {
        let mut datagrams = Vec::new();
        let mut d = String::new();
        for k in 0..keys {
            d.push_str(&format!("{prefix}.k{k}:{}|c\n", round + 1));
            *sent
                .entry(format!("stats_counts.{prefix}.k{k}"))
                .or_insert(0.0) += (round + 1) as f64;
            if d.len() > 1000 {
                datagrams.push(std::mem::take(&mut d));
            }
        }
        datagrams.push(d);
        let refs: Vec<&[u8]> = datagrams.iter().map(|d| d.as_bytes()).collect();
        send_udp(proxy.udp, &refs);
        *lines_sent += keys;
    };
    let all_forwarded = |proxy: &Sluice, n: usize| {
        wait_for(
            "the proxy to forward every line",
            Duration::from_secs(10),
            || forwarded(proxy) >= n as f64,
        )
    };
    let up = |proxy: &Sluice, port: u16| {
        proxy_stats(proxy)
            .get(&format!("proxy.backends.127_0_0_1_{port}.up"))
            .copied()
    };

    send_round(0, &mut lines_sent);
    all_forwarded(&proxy, lines_sent);
    std::thread::sleep(Duration::from_millis(200));
    let mut flushes: Vec<Vec<Flush>> = vec![Vec::new(), Vec::new(), Vec::new()];
    // Backend 1 goes away (its final flush keeps what it had).
    let stopped = nodes[1].take().expect("node 1");
    flushes[1].push(final_flush(stopped, &mut captures[1]));
    wait_for(
        "the proxy to see backend 1 down",
        Duration::from_secs(10),
        || up(&proxy, ports[1].0) == Some(0.0),
    );
    for round in 1..4 {
        send_round(round, &mut lines_sent);
    }
    all_forwarded(&proxy, lines_sent);
    // Back on the same ports: its share comes home.
    nodes[1] = Some(aggregator(&captures[1], Some(ports[1])));
    wait_for(
        "the proxy to see backend 1 up",
        Duration::from_secs(10),
        || up(&proxy, ports[1].0) == Some(1.0),
    );
    send_round(4, &mut lines_sent);
    all_forwarded(&proxy, lines_sent);
    std::thread::sleep(Duration::from_millis(300));
    let stats = proxy_stats(&proxy);
    assert_eq!(
        stats.get("sluice.proxy_backend_changes"),
        Some(&2.0),
        "{stats:?}"
    );
    assert_eq!(
        stats.get("sluice.proxy_lines_dropped"),
        Some(&0.0),
        "{stats:?}"
    );
    for (i, node) in nodes.into_iter().enumerate() {
        let node = node.expect("running");
        flushes[i].push(final_flush(node, &mut captures[i]));
    }
    let per_node: Vec<BTreeMap<String, f64>> = flushes.iter().map(|f| counted(f, prefix)).collect();
    assert!(
        per_node.iter().all(|n| !n.is_empty()),
        "every node had a share"
    );
    let mut total: BTreeMap<String, f64> = BTreeMap::new();
    for node in &per_node {
        for (name, v) in node {
            *total.entry(name.clone()).or_insert(0.0) += v;
        }
    }
    assert_eq!(total, sent, "every count arrived exactly once");
    // While it was down, backend 1's names were counted elsewhere: some
    // name is on node 1 (rounds 0 and 4) and on another node (1-3).
    let moved = per_node[1]
        .keys()
        .filter(|n| per_node[0].contains_key(*n) || per_node[2].contains_key(*n))
        .count();
    assert!(
        moved > 0,
        "node 1's names were taken over while it was down"
    );
    drop(proxy);
}

/// Etsy's statsd (npm) as one of two backends, health-checked through its
/// management port: counters sent through the proxy come out of the two
/// daemons' flushes exactly.
#[test]
fn etsy_statsd_is_a_backend() {
    let prefix = "mixed";
    let mut etsy_capture = CarbonCapture::start();
    let etsy = crate::etsy_parity::start_plain_etsy(etsy_capture.addr);
    let (etsy_port, etsy_admin) = (etsy.udp.port(), etsy.mgmt.port());
    let mut sluice_capture = CarbonCapture::start();
    let node = aggregator(&sluice_capture, None);
    let proxy = start_proxy(&[
        format!("127.0.0.1:{etsy_port}:{etsy_admin}"),
        backend_arg(&node),
    ]);
    wait_for("the proxy to see Etsy up", Duration::from_secs(20), || {
        proxy_stats(&proxy).get(&format!("proxy.backends.127_0_0_1_{etsy_port}.up")) == Some(&1.0)
    });
    let mut expected = BTreeMap::new();
    let mut d = String::new();
    for k in 0..100 {
        d.push_str(&format!("{prefix}.k{k}:{}|c\n", k + 1));
        expected.insert(format!("stats_counts.{prefix}.k{k}"), (k + 1) as f64);
    }
    send_udp(proxy.udp, &[d.as_bytes()]);
    wait_for(
        "the proxy to forward every line",
        Duration::from_secs(10),
        || forwarded(&proxy) >= 100.0,
    );
    let stats = proxy_stats(&proxy);
    let etsy_share = stats
        .get(&format!(
            "proxy.backends.127_0_0_1_{etsy_port}.lines_forwarded"
        ))
        .copied()
        .unwrap_or(0.0);
    assert!(etsy_share > 10.0 && etsy_share < 90.0, "{stats:?}");
    // Etsy flushes every second; collect until its counts stop growing.
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while got.len() < etsy_share as usize && Instant::now() < deadline {
        let f = etsy_capture.next_flush(Duration::from_secs(10));
        for (name, v) in counted(&[f], prefix) {
            *got.entry(name).or_insert(0.0) += v;
        }
    }
    assert_eq!(got.len(), etsy_share as usize, "Etsy's counters: {got:?}");
    for (name, v) in counted(&[final_flush(node, &mut sluice_capture)], prefix) {
        assert!(got.insert(name.clone(), v).is_none(), "{name} on both");
    }
    assert_eq!(got, expected);
    drop(etsy);
    drop(proxy);
}
