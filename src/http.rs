//! An optional HTTP endpoint (off by default; bind it to loopback) for
//! operators who scrape rather than push: `GET /health` (200 "up" or 503
//! "down", the same flag as the admin `health` command) and `GET /metrics`
//! (Prometheus text format: the agent's own counters and gauges).

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::aggregate::Aggregator;
use crate::selfstats::{host_udp_errors, GraphiteStats, SelfStats};
use crate::sink::SinkMonitor;

pub struct HttpContext {
    pub aggregator: Arc<Aggregator>,
    pub selfstats: Arc<SelfStats>,
    pub graphite: Arc<GraphiteStats>,
    /// Replaced on reload.
    pub sinks: Arc<std::sync::Mutex<Vec<SinkMonitor>>>,
    pub healthy: Arc<AtomicBool>,
    pub started: Instant,
}

/// The response to a request for `path`: (status line, body).
pub fn respond(ctx: &HttpContext, path: &str) -> (&'static str, String) {
    match path {
        "/health" => {
            if ctx.healthy.load(Ordering::Relaxed) {
                ("200 OK", "up\n".into())
            } else {
                ("503 Service Unavailable", "down\n".into())
            }
        }
        "/metrics" => ("200 OK", metrics(ctx)),
        _ => ("404 Not Found", "not found\n".into()),
    }
}

fn metrics(ctx: &HttpContext) -> String {
    let mut out = String::new();
    let s = &ctx.selfstats;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |v: u64| vec![(String::new(), v as f64)];
    family(
        "sluice_uptime_seconds",
        "gauge",
        "Seconds since start.",
        &[(String::new(), ctx.started.elapsed().as_secs_f64().floor())],
    );
    family(
        "sluice_packets_received_total",
        "counter",
        "Datagrams and TCP reads received.",
        &one(load(&s.packets_total)),
    );
    family(
        "sluice_lines_received_total",
        "counter",
        "Non-empty lines received (statsd.metrics_received).",
        &one(load(&s.lines_total)),
    );
    family(
        "sluice_bad_lines_total",
        "counter",
        "Lines refused (statsd.bad_lines_seen).",
        &one(load(&s.bad_lines_total)),
    );
    family(
        "sluice_kernel_dropped_datagrams_total",
        "counter",
        "Datagrams the kernel dropped on sluice's sockets (SO_RXQ_OVFL).",
        &one(load(&s.kernel_dropped_total)),
    );
    family(
        "sluice_tcp_lines_too_long_total",
        "counter",
        "TCP lines dropped for exceeding the maximum length.",
        &one(load(&s.lines_too_long)),
    );
    family(
        "sluice_tcp_connections_refused_total",
        "counter",
        "TCP connections refused by the connection limit.",
        &one(load(&s.tcp_connections_refused)),
    );
    if let Some((in_errors, rcvbuf)) = host_udp_errors() {
        family(
            "sluice_host_udp_in_errors_total",
            "counter",
            "Host UDP InErrors (/proc/net/snmp).",
            &one(in_errors),
        );
        family(
            "sluice_host_udp_rcvbuf_errors_total",
            "counter",
            "Host UDP RcvbufErrors (/proc/net/snmp).",
            &one(rcvbuf),
        );
    }
    let [c, t, g, st] = ctx.aggregator.series();
    let series: Vec<(String, f64)> = [("counter", c), ("timer", t), ("gauge", g), ("set", st)]
        .iter()
        .map(|(k, n)| (format!("{{type=\"{k}\"}}"), *n as f64))
        .collect();
    family("sluice_series", "gauge", "Live series per type.", &series);
    let sinks = ctx.sinks.lock().map(|m| m.clone()).unwrap_or_default();
    let depth: Vec<(String, f64)> = sinks
        .iter()
        .map(|m| (format!("{{sink=\"{}\"}}", m.label()), m.depth() as f64))
        .collect();
    family(
        "sluice_sink_queue_depth",
        "gauge",
        "Flushes waiting in each sink's queue.",
        &depth,
    );
    let dropped: Vec<(String, f64)> = sinks
        .iter()
        .map(|m| {
            (
                format!("{{sink=\"{}\"}}", m.label()),
                load(&m.dropped) as f64,
            )
        })
        .collect();
    family(
        "sluice_sink_dropped_flushes_total",
        "counter",
        "Flushes dropped because a sink's queue was full.",
        &dropped,
    );
    if let Ok(destinations) = ctx.graphite.destinations.lock() {
        let mut per_stat: Vec<(&'static str, Vec<(String, f64)>)> = Vec::new();
        for (label, stats) in destinations.iter() {
            for (stat, value) in stats.snapshot() {
                let sample = (format!("{{destination=\"{label}\"}}"), value);
                match per_stat.iter_mut().find(|(s, _)| *s == stat) {
                    Some((_, v)) => v.push(sample),
                    None => per_stat.push((stat, vec![sample])),
                }
            }
        }
        for (stat, samples) in per_stat {
            let kind = if stat == "buffered_points" || stat == "last_failure" {
                "gauge"
            } else {
                "counter"
            };
            let name = if kind == "counter" {
                format!("sluice_carbon_{stat}_total")
            } else {
                format!("sluice_carbon_{stat}")
            };
            family(
                &name,
                kind,
                "Carbon destination delivery (see README).",
                &samples,
            );
        }
    }
    out
}

/// Serves HTTP until `shutdown` turns true. One request per connection.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<HttpContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut stream, _)) = accepted else { continue };
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let mut head = Vec::with_capacity(1024);
                    let mut buf = [0u8; 1024];
                    let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                    });
                    if read.await.is_err() {
                        return;
                    }
                    let text = String::from_utf8_lossy(&head);
                    let mut parts = text.split_whitespace();
                    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    let (status, body) = if method == "GET" {
                        respond(&ctx, path.split('?').next().unwrap_or(""))
                    } else {
                        ("405 Method Not Allowed", "GET only\n".into())
                    };
                    let kind = if path.starts_with("/metrics") { "text/plain; version=0.0.4" } else { "text/plain" };
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}
