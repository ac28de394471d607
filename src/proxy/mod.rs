//! `sluice proxy`: Etsy's cluster proxy. StatsD lines received over UDP and
//! TCP go, unchanged, to one of several StatsD backends (sluice or Etsy
//! statsd) chosen by a consistent hash of the metric name, so each metric
//! is aggregated on exactly one node and timer percentiles stay exact.
//! Backends are health-checked through their admin `health` command; a
//! down backend's names go to the next backend on the ring until it is up
//! again. Nothing is aggregated here.
//!
//! The receive loops are the agent's ([`crate::ingest`]), with a
//! [`forward::Forwarder`] where the agent has its aggregator.

pub mod cluster;
pub mod forward;

use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::config::parse_duration;
use crate::ingest::tcp::{self, TcpLimits};
use crate::ingest::udp;
use crate::net::{accept_loop, bind_tcp, bind_udp_group};
use crate::shutdown::{Listeners, Shutdown, ShutdownTrigger};
use crate::telemetry::{Counter, Telemetry};

use cluster::{Backend, Cluster};
use forward::Forwarder;

/// The `[proxy]` table of a config file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    /// UDP listen addresses.
    pub udp: Option<Vec<String>>,
    /// TCP listen addresses.
    pub tcp: Option<Vec<String>>,
    /// `host:port[:admin_port]` of each backend.
    pub backends: Option<Vec<String>>,
    /// The proxy's own admin interface ("" for none).
    pub admin: Option<String>,
    /// Largest datagram sent to a backend, in bytes.
    pub max_datagram: Option<i64>,
    /// How often backends are health-checked.
    pub check_interval: Option<String>,
    /// UDP receiver threads per address.
    pub receivers: Option<i64>,
    /// Receive buffer of each UDP socket, in bytes.
    pub receive_buffer: Option<i64>,
}

/// A backend as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSpec {
    /// `host:port` (the ring's key).
    pub name: String,
    /// Where StatsD lines go.
    pub statsd: SocketAddr,
    /// Its admin interface, if it is to be health-checked.
    pub admin: Option<SocketAddr>,
}

/// The proxy's validated settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// UDP listen addresses.
    pub udp: Vec<SocketAddr>,
    /// TCP listen addresses.
    pub tcp: Vec<SocketAddr>,
    /// The backends, in ring order.
    pub backends: Vec<BackendSpec>,
    /// The proxy's admin interface.
    pub admin: Option<SocketAddr>,
    /// Largest datagram sent to a backend.
    pub max_datagram: usize,
    /// Health-check period.
    pub check_interval: Duration,
    /// UDP receiver threads per address.
    pub receivers: usize,
    /// UDP receive buffer bytes.
    pub receive_buffer: usize,
}

/// Etsy's repeater and most clients keep datagrams under a 1500-byte MTU.
const DEFAULT_MAX_DATAGRAM: usize = 1432;

fn address(key: &str, text: &str) -> anyhow::Result<SocketAddr> {
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| format!("{key} = {text:?}: expected host:port, e.g. 127.0.0.1:8125"))
}

/// `host:port[:admin_port]`, IPv6 hosts in brackets.
pub fn parse_backend(text: &str) -> anyhow::Result<BackendSpec> {
    let bad = || {
        anyhow::anyhow!(
            "proxy.backends: {text:?} is not host:port or host:port:admin_port (e.g. 10.0.0.5:8125:8126)"
        )
    };
    let (host, rest) = match text.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']').ok_or_else(bad)?;
            (format!("[{host}]"), rest.strip_prefix(':').ok_or_else(bad)?)
        }
        None => {
            let (host, rest) = text.split_once(':').ok_or_else(bad)?;
            (host.to_string(), rest)
        }
    };
    let (port, admin_port) = match rest.split_once(':') {
        Some((p, a)) => (p, Some(a)),
        None => (rest, None),
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    let name = format!("{host}:{port}");
    let statsd = address("proxy.backends", &name)?;
    let admin = match admin_port {
        Some(a) => {
            let a: u16 = a.parse().map_err(|_| bad())?;
            Some(SocketAddr::new(statsd.ip(), a))
        }
        None => None,
    };
    Ok(BackendSpec {
        name,
        statsd,
        admin,
    })
}

/// What the command line gives, over the file.
#[derive(Debug, Default, Clone)]
pub struct ProxyFlags {
    /// `--udp`.
    pub udp: Vec<String>,
    /// `--tcp`.
    pub tcp: Vec<String>,
    /// `--backend`.
    pub backends: Vec<String>,
    /// `--admin`.
    pub admin: Option<String>,
    /// `--max-datagram`.
    pub max_datagram: Option<i64>,
    /// `--check-interval`.
    pub check_interval: Option<String>,
}

impl ProxyConfig {
    /// The `[proxy]` table of `file` (if any), overridden by `flags`.
    pub fn load(file: Option<&Path>, flags: &ProxyFlags) -> anyhow::Result<ProxyConfig> {
        let mut raw = RawProxy::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let mut table: toml::Table =
                toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
            if let Some(proxy) = table.remove("proxy") {
                raw = proxy
                    .try_into()
                    .with_context(|| format!("{}: [proxy]", path.display()))?;
            }
        }
        if !flags.udp.is_empty() {
            raw.udp = Some(flags.udp.clone());
        }
        if !flags.tcp.is_empty() {
            raw.tcp = Some(flags.tcp.clone());
        }
        if !flags.backends.is_empty() {
            raw.backends = Some(flags.backends.clone());
        }
        if flags.admin.is_some() {
            raw.admin = flags.admin.clone();
        }
        if flags.max_datagram.is_some() {
            raw.max_datagram = flags.max_datagram;
        }
        if flags.check_interval.is_some() {
            raw.check_interval = flags.check_interval.clone();
        }
        ProxyConfig::from_raw(raw)
    }

    /// Validates `raw`; every error names the key, the value and what
    /// would be accepted.
    pub fn from_raw(raw: RawProxy) -> anyhow::Result<ProxyConfig> {
        let addresses = |key: &str, list: Option<Vec<String>>, default: &[&str]| {
            list.unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
                .iter()
                .filter(|a| !a.is_empty())
                .map(|a| address(key, a))
                .collect::<anyhow::Result<Vec<_>>>()
        };
        let udp = addresses("proxy.udp", raw.udp, &["127.0.0.1:8125"])?;
        let tcp = addresses("proxy.tcp", raw.tcp, &[])?;
        let backends = raw
            .backends
            .unwrap_or_default()
            .iter()
            .map(|b| parse_backend(b))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if backends.is_empty() {
            anyhow::bail!(
                "proxy.backends is empty: give at least one backend as host:port[:admin_port] (flag --backend)"
            );
        }
        let mut names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            anyhow::bail!("proxy.backends names {:?} twice: each backend once", w[0]);
        }
        let admin = match raw.admin.as_deref() {
            None => Some(address("proxy.admin", "127.0.0.1:8126")?),
            Some("") => None,
            Some(a) => Some(address("proxy.admin", a)?),
        };
        let max_datagram = match raw.max_datagram {
            None => DEFAULT_MAX_DATAGRAM,
            Some(n) if (1..=65507).contains(&n) => n as usize,
            Some(n) => anyhow::bail!(
                "proxy.max_datagram = {n}: expected 1 to 65507 bytes (1432 fits a 1500-byte MTU)"
            ),
        };
        let check_interval = match raw.check_interval.as_deref() {
            None => Duration::from_secs(1),
            Some(text) => parse_duration(text)
                .filter(|d| *d >= Duration::from_millis(10))
                .with_context(|| {
                    format!("proxy.check_interval = {text:?}: expected a duration of at least 10ms, e.g. 1s")
                })?,
        };
        let receivers = match raw.receivers {
            None => 1,
            Some(n) if (1..=64).contains(&n) => n as usize,
            Some(n) => anyhow::bail!("proxy.receivers = {n}: expected 1 to 64"),
        };
        let receive_buffer = match raw.receive_buffer {
            None => 8 << 20,
            Some(n) if n >= 4096 => n as usize,
            Some(n) => anyhow::bail!("proxy.receive_buffer = {n}: expected at least 4096 bytes"),
        };
        Ok(ProxyConfig {
            udp,
            tcp,
            backends,
            admin,
            max_datagram,
            check_interval,
            receivers,
            receive_buffer,
        })
    }
}

/// Runs the proxy until SIGTERM or SIGINT (blocking).
pub fn run(config: ProxyConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sluice-proxy")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: ProxyConfig) -> anyhow::Result<()> {
    let telemetry = Arc::new(Telemetry::default());
    let backends = config
        .backends
        .iter()
        .map(|b| Backend::new(b.name.clone(), b.statsd, b.admin))
        .collect();
    let cluster = Arc::new(Cluster::new(backends, telemetry.clone()));
    // Know who is up before the first line is routed.
    cluster
        .check_all(
            config
                .check_interval
                .clamp(Duration::from_millis(100), Duration::from_secs(1)),
        )
        .await;
    for b in &cluster.backends {
        tracing::info!(backend = %b.name, admin = ?b.admin, up = b.is_up(), "proxy backend");
    }

    let (trigger, stop) = ShutdownTrigger::new();
    let mut listeners = Listeners::default();
    for addr in &config.udp {
        let (bound, group) =
            bind_udp_group("proxy UDP", *addr, config.receivers, config.receive_buffer)?;
        tracing::info!(protocol = "udp", addr = %bound, receivers = group.len(), "listening");
        for (i, socket) in group.into_iter().enumerate() {
            let forwarder = Forwarder::new(cluster.clone(), config.max_datagram);
            let stop = stop.clone();
            listeners.spawn_thread(format!("proxy-udp-{}-{i}", bound.port()), move || {
                udp::receive_loop(socket, forwarder, stop)
            })?;
        }
    }
    let limits = TcpLimits {
        max_line_length: 64 * 1024,
        max_connections: 1024,
        idle_timeout: Duration::from_secs(300),
    };
    for addr in &config.tcp {
        let (bound, listener) = bind_tcp("proxy TCP", *addr)?;
        tracing::info!(protocol = "tcp", addr = %bound, "listening");
        let listener = TcpListener::from_std(listener)?;
        let (cluster, max) = (cluster.clone(), config.max_datagram);
        listeners.spawn(
            "tcp",
            tcp::serve(
                "proxy TCP",
                listener,
                move || Forwarder::new(cluster.clone(), max),
                telemetry.clone(),
                limits,
                stop.clone(),
            ),
        );
    }
    if let Some(addr) = config.admin {
        let (bound, listener) = bind_tcp("proxy admin", addr)?;
        tracing::info!(protocol = "admin", addr = %bound, "listening");
        let listener = TcpListener::from_std(listener)?;
        listeners.spawn("admin", admin(listener, cluster.clone(), stop.clone()));
    }
    listeners.spawn(
        "health checks",
        cluster
            .clone()
            .check_until(config.check_interval, stop.clone()),
    );
    crate::systemd::notify("READY=1");
    wait_for_signal().await;
    tracing::info!("proxy shutting down: draining sockets");
    crate::systemd::notify("STOPPING=1");
    trigger.trigger();
    listeners.drained().await;
    tracing::info!(
        forwarded = telemetry.total(Counter::ProxyLinesForwarded),
        dropped = telemetry.total(Counter::ProxyLinesDropped),
        "proxy stopped"
    );
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the proxy with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The proxy's admin interface: `health` (so a proxy can itself stand
/// behind a health check), `stats` (lines forwarded per backend, backend
/// state, drops), `quit`.
async fn admin(listener: TcpListener, cluster: Arc<Cluster>, shutdown: Shutdown) {
    let started = Instant::now();
    accept_loop("proxy admin", &listener, shutdown, |stream, _peer| {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read.take(64 * 1024)).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let reply = match line.trim() {
                    "health" => "health: up\n".to_string(),
                    "stats" => proxy_stats(&cluster, started),
                    "quit" => return,
                    "" => continue,
                    other => {
                        format!("ERROR: unknown command {other:?}; commands: health, stats, quit\n")
                    }
                };
                if write.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    })
    .await;
}

/// The counters a proxy moves (the rest of the table is the agent's).
const PROXY_COUNTERS: [Counter; 8] = [
    Counter::PacketsReceived,
    Counter::MetricsReceived,
    Counter::KernelDroppedDatagrams,
    Counter::LinesTooLong,
    Counter::TcpConnectionsRefused,
    Counter::ProxyLinesForwarded,
    Counter::ProxyLinesDropped,
    Counter::ProxyBackendChanges,
];

fn proxy_stats(cluster: &Cluster, started: Instant) -> String {
    let t = &cluster.telemetry;
    let mut out = String::new();
    let _ = writeln!(out, "uptime: {}", started.elapsed().as_secs());
    for counter in PROXY_COUNTERS {
        let def = &crate::telemetry::COUNTERS[counter as usize];
        let _ = writeln!(out, "sluice.{}: {}", def.name, t.total(counter));
    }
    for b in &cluster.backends {
        let name = b.name.replace(['.', ':'], "_");
        let _ = writeln!(
            out,
            "proxy.backends.{name}.lines_forwarded: {}",
            b.forwarded()
        );
        let _ = writeln!(out, "proxy.backends.{name}.up: {}", u8::from(b.is_up()));
    }
    out.push_str("END\n\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_parse_with_and_without_an_admin_port() {
        let b = parse_backend("127.0.0.1:8125:8126").unwrap();
        assert_eq!(b.name, "127.0.0.1:8125");
        assert_eq!(b.admin, Some("127.0.0.1:8126".parse().unwrap()));
        let b = parse_backend("[::1]:9125").unwrap();
        assert_eq!(b.statsd, "[::1]:9125".parse().unwrap());
        assert_eq!(b.admin, None);
        for bad in ["127.0.0.1", "h:x", "127.0.0.1:1:x", "[::1]9125"] {
            let e = parse_backend(bad).unwrap_err().to_string();
            assert!(e.contains("proxy.backends") && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn bad_settings_name_the_key_and_what_would_do() {
        let e = ProxyConfig::from_raw(RawProxy::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("proxy.backends"), "{e}");
        let raw = RawProxy {
            backends: Some(vec!["127.0.0.1:1".into()]),
            max_datagram: Some(70000),
            ..RawProxy::default()
        };
        let e = ProxyConfig::from_raw(raw).unwrap_err().to_string();
        assert!(
            e.contains("proxy.max_datagram = 70000") && e.contains("65507"),
            "{e}"
        );
        let raw = RawProxy {
            backends: Some(vec!["127.0.0.1:1".into(), "127.0.0.1:1:2".into()]),
            ..RawProxy::default()
        };
        let e = ProxyConfig::from_raw(raw).unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
    }
}
