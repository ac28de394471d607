//! Wiring: binds the sockets, starts the receivers, the flush thread and
//! the sinks, and runs the one shutdown sequence (stop listening, drain the
//! sockets, final flush, let the sinks deliver within the grace period).
//!
//! [`BoundSockets::bind`] is separate from [`run`] so tests and `main` bind
//! first (port 0 works) and learn the real addresses before traffic starts.

use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

use crate::admin::{self, AdminContext};
use crate::aggregate::flush::Flusher;
use crate::aggregate::Aggregator;
use crate::config::Config;
use crate::http::{self, HttpContext};
use crate::ingest::tcp::TcpLimits;
use crate::ingest::{tcp, udp, IngestContext};
use crate::selfstats::{unix_now_f64, unix_now_rounded, GraphiteStats, SelfStats};
use crate::sink::carbon::CarbonForwarder;
use crate::sink::console::ConsoleSink;
use crate::sink::whisper::WhisperSink;
use crate::sink::PointBatch;
use crate::sink::{SinkHandle, SinkMonitor};
use crate::store::schema::Schemas;
use crate::store::writer::{open_file_budget, prepare_root, StoreSettings};

/// Listening sockets, bound before the agent runs.
pub struct BoundSockets {
    /// Per UDP address: one SO_REUSEPORT socket per receiver thread.
    pub udp: Vec<(SocketAddr, Vec<UdpSocket>)>,
    pub tcp: Vec<(SocketAddr, std::net::TcpListener)>,
    pub admin: Option<(SocketAddr, std::net::TcpListener)>,
    pub http: Option<(SocketAddr, std::net::TcpListener)>,
}

impl BoundSockets {
    pub fn bind(config: &Config) -> anyhow::Result<BoundSockets> {
        let listen = &config.listen;
        let mut udp = Vec::new();
        for wanted in &listen.udp {
            let mut sockets = Vec::new();
            let mut actual = *wanted;
            for _ in 0..listen.udp_receivers {
                let socket = udp_socket(actual, listen.udp_receive_buffer)
                    .with_context(|| format!("cannot bind UDP {wanted}"))?;
                actual = socket.local_addr()?;
                sockets.push(socket);
            }
            udp.push((actual, sockets));
        }
        let mut tcp = Vec::new();
        for wanted in &listen.tcp {
            let socket = Socket::new(Domain::for_address(*wanted), Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            socket
                .bind(&(*wanted).into())
                .with_context(|| format!("cannot bind TCP {wanted}"))?;
            socket.listen(1024)?;
            socket.set_nonblocking(true)?;
            let listener: std::net::TcpListener = socket.into();
            tcp.push((listener.local_addr()?, listener));
        }
        let admin = match config.admin {
            None => None,
            Some(addr) => {
                let listener = std::net::TcpListener::bind(addr)
                    .with_context(|| format!("cannot bind the admin interface on {addr}"))?;
                listener.set_nonblocking(true)?;
                Some((listener.local_addr()?, listener))
            }
        };
        let http = match config.http {
            None => None,
            Some(addr) => {
                let listener = std::net::TcpListener::bind(addr)
                    .with_context(|| format!("cannot bind the HTTP endpoint on {addr}"))?;
                listener.set_nonblocking(true)?;
                Some((listener.local_addr()?, listener))
            }
        };
        Ok(BoundSockets {
            udp,
            tcp,
            admin,
            http,
        })
    }
}

fn udp_socket(addr: SocketAddr, receive_buffer: usize) -> anyhow::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    set_receive_buffer(&socket, receive_buffer);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Asks for `wanted` bytes of receive buffer: SO_RCVBUFFORCE (exceeds
/// rmem_max, needs CAP_NET_ADMIN), else SO_RCVBUF (capped by rmem_max).
fn set_receive_buffer(socket: &Socket, wanted: usize) {
    let size = wanted.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt reads exactly size_of::<c_int>() bytes from `size`,
    // which lives for the call.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        let _ = socket.set_recv_buffer_size(wanted);
    }
    let got = socket.recv_buffer_size().unwrap_or(0);
    tracing::debug!(wanted, got, forced, "UDP receive buffer");
    if got < wanted {
        tracing::warn!(
            wanted,
            got,
            "UDP receive buffer smaller than configured (raise net.core.rmem_max or grant CAP_NET_ADMIN)"
        );
    }
}

/// What can change a running agent: new configurations (SIGHUP) and the
/// log level.
pub struct Reloads {
    pub configs: tokio::sync::mpsc::UnboundedReceiver<Config>,
    /// Sets the log level ("info", "debug"...).
    pub set_log_level: Box<dyn Fn(&str) + Send + Sync>,
}

impl Reloads {
    /// No reloads (tests, embedding).
    pub fn none() -> Reloads {
        let (_tx, configs) = tokio::sync::mpsc::unbounded_channel();
        Reloads {
            configs,
            set_log_level: Box::new(|_| {}),
        }
    }
}

/// Runs the agent until `shutdown` completes, then shuts down in order.
/// `extra_sinks` are added to the sinks the config asks for (tests pass a
/// spy sink here). Configurations arriving on `reloads` are applied live
/// where they can be.
pub async fn run(
    config: Config,
    sockets: BoundSockets,
    extra_sinks: Vec<SinkHandle>,
    shutdown: impl Future<Output = ()>,
    mut reloads: Reloads,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Handle::current();
    let startup = unix_now_rounded();
    let selfstats = Arc::new(SelfStats::default());
    let graphite = Arc::new(GraphiteStats::new(startup));
    let aggregator = Arc::new(Aggregator::new(config.listen.shards, &config.stats));
    let ctx = Arc::new(IngestContext {
        aggregator: aggregator.clone(),
        selfstats: selfstats.clone(),
        sanitize_keys: config.stats.key_name_sanitize,
    });

    let mut sinks = extra_sinks;
    sinks.extend(build_sinks(&config, &graphite, &selfstats, &runtime)?);
    for sink in &sinks {
        tracing::info!(sink = %sink.name, "sink started");
    }

    // Receivers.
    let stop_udp = Arc::new(AtomicBool::new(false));
    let mut udp_threads = Vec::new();
    for (addr, group) in sockets.udp {
        tracing::info!(protocol = "udp", %addr, receivers = group.len(), "listening");
        for (i, socket) in group.into_iter().enumerate() {
            let ctx = ctx.clone();
            let stop = stop_udp.clone();
            let thread = std::thread::Builder::new()
                .name(format!("udp-{}-{i}", addr.port()))
                .spawn(move || udp::receive_loop(socket, ctx, stop))?;
            udp_threads.push(thread);
        }
    }
    let (stop_tcp, tcp_stopping) = watch::channel(false);
    let mut tcp_tasks = Vec::new();
    for (addr, listener) in sockets.tcp {
        tracing::info!(protocol = "tcp", %addr, "listening");
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let limits = TcpLimits {
            max_line_length: config.listen.tcp_max_line_length,
            max_connections: config.listen.tcp_max_connections,
        };
        tcp_tasks.push(tokio::spawn(tcp::serve(
            listener,
            ctx.clone(),
            limits,
            tcp_stopping.clone(),
        )));
    }

    let monitors: SharedMonitors = Arc::new(std::sync::Mutex::new(
        sinks.iter().map(SinkHandle::monitor).collect(),
    ));
    let healthy = Arc::new(AtomicBool::new(true));
    let mut admin_task = None;
    if let Some((addr, listener)) = sockets.admin {
        tracing::info!(protocol = "admin", %addr, "listening");
        let ctx = Arc::new(AdminContext {
            aggregator: aggregator.clone(),
            selfstats: selfstats.clone(),
            graphite: graphite.clone(),
            config_lines: config_lines(&config),
            started: Instant::now(),
            healthy: healthy.clone(),
            extra_stats: Box::new(own_stats(
                aggregator.clone(),
                graphite.clone(),
                selfstats.clone(),
                monitors.clone(),
            )),
        });
        let listener = tokio::net::TcpListener::from_std(listener)?;
        admin_task = Some(tokio::spawn(admin::serve(
            listener,
            ctx,
            tcp_stopping.clone(),
        )));
    }

    let mut http_task = None;
    if let Some((addr, listener)) = sockets.http {
        tracing::info!(protocol = "http", %addr, "listening");
        let ctx = Arc::new(HttpContext {
            aggregator: aggregator.clone(),
            selfstats: selfstats.clone(),
            graphite: graphite.clone(),
            sinks: monitors.clone(),
            healthy: healthy.clone(),
            started: Instant::now(),
        });
        let listener = tokio::net::TcpListener::from_std(listener)?;
        http_task = Some(tokio::spawn(http::serve(
            listener,
            ctx,
            tcp_stopping.clone(),
        )));
    }

    // Flush thread: the arithmetic runs off the async runtime.
    let (control, flush_control) = mpsc::channel::<FlushControl>();
    let mut flusher = Flusher::new(
        aggregator.clone(),
        config.stats.clone(),
        config.naming.clone(),
        selfstats.clone(),
        graphite.clone(),
    );
    flusher.set_agent_gauges(Box::new(agent_gauges(aggregator.clone(), monitors.clone())));
    let interval = config.stats.flush_interval;
    let grace = config.shutdown_timeout + Duration::from_secs(1);
    let closer = runtime.clone();
    let flush_thread = std::thread::Builder::new()
        .name("flush".into())
        .spawn(move || flush_loop(flusher, interval, sinks, flush_control, closer, grace))?;
    tracing::info!(?interval, "agent running");
    crate::systemd::notify("READY=1");

    let mut running = config;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(new) = reloads.configs.recv() => {
                crate::systemd::notify_reloading();
                reload(&mut running, new, &reloads, &graphite, &selfstats, &runtime, &monitors, &control);
            }
        }
    }
    let config = running;
    crate::systemd::notify("STOPPING=1");
    tracing::info!("shutting down: draining sockets");
    stop_udp.store(true, std::sync::atomic::Ordering::Release);
    let _ = stop_tcp.send(true);
    tokio::task::spawn_blocking(move || {
        for t in udp_threads {
            let _ = t.join();
        }
    })
    .await?;
    for t in tcp_tasks {
        let _ = t.await;
    }
    for t in [admin_task, http_task].into_iter().flatten() {
        let _ = t.await;
    }
    tracing::info!("final flush");
    let _ = control.send(FlushControl::Stop);
    let sinks = tokio::task::spawn_blocking(move || flush_thread.join())
        .await?
        .unwrap_or_default();

    let grace = config.shutdown_timeout + Duration::from_secs(1);
    for sink in sinks {
        sink.close(grace).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Sinks watched by the admin interface and the self-metrics; replaced on
/// reload.
type SharedMonitors = Arc<std::sync::Mutex<Vec<SinkMonitor>>>;

/// The sinks `config` asks for: the whisper store, carbon, the console.
fn build_sinks(
    config: &Config,
    graphite: &Arc<GraphiteStats>,
    selfstats: &Arc<SelfStats>,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<Vec<SinkHandle>> {
    let mut sinks = Vec::new();
    if config.whisper.enabled {
        let w = &config.whisper;
        let schemas = Schemas::load(w.schemas.as_deref(), w.aggregation.as_deref())?;
        // Several flushes in one whisper slot overwrite each other (the last
        // wins), and a flush longer than a slot leaves gaps.
        let finest = schemas.spec_for("stats_counts.example").archives[0].0;
        if Duration::from_secs(u64::from(finest)) != config.stats.flush_interval {
            tracing::warn!(
                flush_interval = ?config.stats.flush_interval,
                finest_retention_secs = finest,
                "the flush interval differs from the finest whisper precision for stats.*; \
                 counts in whisper will be overwritten or gappy"
            );
        }
        prepare_root(&w.dir).with_context(|| {
            format!(
                "whisper.dir {} is not a writable directory",
                w.dir.display()
            )
        })?;
        let settings = StoreSettings {
            root: w.dir.clone(),
            writers: w.writers,
            queue_flushes: w.queue_flushes,
            max_open_files: open_file_budget(w.max_open_files),
        };
        let sink = WhisperSink::new(settings, schemas, selfstats.clone());
        sinks.push(SinkHandle::spawn(sink, runtime));
    }
    if !config.carbon.destinations.is_empty() {
        let forwarder = CarbonForwarder::new(
            config.carbon.clone(),
            config.shutdown_timeout,
            graphite.clone(),
        );
        sinks.push(SinkHandle::spawn(forwarder, runtime));
    }
    if config.console {
        sinks.push(SinkHandle::spawn(ConsoleSink, runtime));
    }
    Ok(sinks)
}

/// Applies a new configuration: statistics, naming, flush interval, sinks
/// and log level live; what needs new sockets is reported as needing a
/// restart and left as it was.
#[allow(clippy::too_many_arguments)]
fn reload(
    running: &mut Config,
    mut new: Config,
    reloads: &Reloads,
    graphite: &Arc<GraphiteStats>,
    selfstats: &Arc<SelfStats>,
    runtime: &tokio::runtime::Handle,
    monitors: &SharedMonitors,
    control: &mpsc::Sender<FlushControl>,
) {
    let json = |v: &dyn erased::Json| v.json();
    let mut restart = Vec::new();
    if json(&running.listen.udp) != json(&new.listen.udp) {
        restart.push("listen.udp");
    }
    if json(&running.listen.tcp) != json(&new.listen.tcp) {
        restart.push("listen.tcp");
    }
    if running.listen.udp_receivers != new.listen.udp_receivers {
        restart.push("listen.udp_receivers");
    }
    if running.listen.udp_receive_buffer != new.listen.udp_receive_buffer {
        restart.push("listen.udp_receive_buffer");
    }
    if running.listen.tcp_max_line_length != new.listen.tcp_max_line_length {
        restart.push("listen.tcp_max_line_length");
    }
    if running.listen.tcp_max_connections != new.listen.tcp_max_connections {
        restart.push("listen.tcp_max_connections");
    }
    if running.listen.shards != new.listen.shards {
        restart.push("listen.shards");
    }
    if running.admin != new.admin {
        restart.push("admin.address");
    }
    if running.http != new.http {
        restart.push("http.address");
    }
    if running.stats.key_name_sanitize != new.stats.key_name_sanitize {
        restart.push("flush.key_name_sanitize");
        new.stats.key_name_sanitize = running.stats.key_name_sanitize;
    }
    for key in &restart {
        tracing::warn!(
            key,
            "changed in the reloaded config, but takes effect only after a restart"
        );
    }
    // Keep what cannot change, so the next reload compares with reality.
    new.listen = running.listen.clone();
    new.admin = running.admin;
    new.http = running.http;

    if new.log_level != running.log_level {
        (reloads.set_log_level)(&new.log_level);
    }
    let sinks_changed = json(&running.whisper) != json(&new.whisper)
        || json(&running.carbon) != json(&new.carbon)
        || running.console != new.console
        || running.shutdown_timeout != new.shutdown_timeout;
    let sinks = if sinks_changed {
        match build_sinks(&new, graphite, selfstats, runtime) {
            Ok(sinks) => {
                if let Ok(mut m) = monitors.lock() {
                    *m = sinks.iter().map(SinkHandle::monitor).collect();
                }
                for sink in &sinks {
                    tracing::info!(sink = %sink.name, "sink started (reload)");
                }
                Some(sinks)
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "reload: the new sinks cannot start; keeping the running ones");
                new.whisper = running.whisper.clone();
                new.carbon = running.carbon.clone();
                new.console = running.console;
                None
            }
        }
    } else {
        None
    };
    let _ = control.send(FlushControl::Reload {
        stats: Box::new(new.stats.clone()),
        naming: Box::new(new.naming.clone()),
        sinks,
    });
    tracing::info!(interval = ?new.stats.flush_interval, "configuration reloaded");
    crate::systemd::notify("READY=1");
    *running = new;
}

/// Compares config parts through their serialized form.
mod erased {
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

/// sluice's own health figures, for the admin `stats` command: live series
/// per type, each sink's queue, each carbon destination's delivery.
fn own_stats(
    aggregator: Arc<Aggregator>,
    graphite: Arc<GraphiteStats>,
    selfstats: Arc<SelfStats>,
    sinks: SharedMonitors,
) -> impl Fn() -> Vec<(String, f64)> + Send + Sync {
    let gauges = agent_gauges(aggregator, sinks);
    move || {
        let mut out = gauges();
        let total =
            |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed) as f64;
        out.push((
            "sluice.kernel_dropped_datagrams".into(),
            total(&selfstats.kernel_dropped_total),
        ));
        out.push((
            "sluice.lines_too_long".into(),
            total(&selfstats.lines_too_long),
        ));
        out.push((
            "sluice.tcp_connections_refused".into(),
            total(&selfstats.tcp_connections_refused),
        ));
        if let Ok(destinations) = graphite.destinations.lock() {
            for (label, stats) in destinations.iter() {
                for (stat, value) in stats.snapshot() {
                    out.push((format!("sluice.destinations.{label}.{stat}"), value));
                }
            }
        }
        out
    }
}

/// Gauges sluice reports on every flush: live series per type and each
/// sink's queue depth and dropped flushes.
fn agent_gauges(
    aggregator: Arc<Aggregator>,
    sinks: SharedMonitors,
) -> impl Fn() -> Vec<(String, f64)> + Send + Sync {
    move || {
        let mut out = Vec::new();
        let [c, t, g, s] = aggregator.series();
        for (kind, n) in [("counters", c), ("timers", t), ("gauges", g), ("sets", s)] {
            out.push((format!("sluice.series.{kind}"), n as f64));
        }
        // Host-wide (this network namespace), totals since boot.
        if let Some((in_errors, rcvbuf_errors)) = crate::selfstats::host_udp_errors() {
            out.push(("sluice.host_udp_in_errors".into(), in_errors as f64));
            out.push(("sluice.host_udp_rcvbuf_errors".into(), rcvbuf_errors as f64));
        }
        let sinks = sinks.lock().map(|m| m.clone()).unwrap_or_default();
        for sink in &sinks {
            let label = sink.label();
            out.push((
                format!("sluice.sinks.{label}.queue_depth"),
                sink.depth() as f64,
            ));
            out.push((
                format!("sluice.sinks.{label}.dropped_flushes"),
                sink.dropped.load(std::sync::atomic::Ordering::Relaxed) as f64,
            ));
        }
        out
    }
}

/// The effective configuration as `key: value` / `section > key: value`
/// lines (Etsy's admin `config` shape).
fn config_lines(config: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    let Ok(toml::Value::Table(table)) = toml::Value::try_from(config) else {
        return lines;
    };
    for (key, value) in table {
        match value {
            toml::Value::Table(inner) => {
                for (k, v) in inner {
                    lines.push(format!("{key} > {k}: {v}"));
                }
            }
            other => lines.push(format!("{key}: {other}")),
        }
    }
    lines
}

/// The timestamp of a flush: now rounded (as Etsy), but always after the
/// previous flush so two flushes never share a second (a later one would
/// overwrite the earlier one's slot in whisper). The final flush at shutdown
/// is stamped where the next regular flush would have been, so its partial
/// interval lands in its own slot instead of replacing the last full one.
fn flush_timestamp(now: f64, previous: Option<i64>, interval: Duration, last: bool) -> i64 {
    let rounded = now.round() as i64;
    match previous {
        None => rounded,
        Some(p) if last => rounded.max(p + (interval.as_secs_f64().round() as i64).max(1)),
        Some(p) => rounded.max(p + 1),
    }
}

/// Messages to the flush thread.
enum FlushControl {
    /// Final flush, then hand the sinks back.
    Stop,
    /// New settings from the next flush on; `sinks` replace the current
    /// ones when given (the old ones finish delivering on their own).
    Reload {
        stats: Box<crate::config::StatsConfig>,
        naming: Box<crate::config::Naming>,
        sinks: Option<Vec<SinkHandle>>,
    },
}

/// Flushes every `interval`, each flush due one interval after the
/// previous one was due, and once more when told to stop. Returns the sinks
/// for the shutdown sequence to close.
fn flush_loop(
    mut flusher: Flusher,
    mut interval: Duration,
    mut sinks: Vec<SinkHandle>,
    control: mpsc::Receiver<FlushControl>,
    runtime: tokio::runtime::Handle,
    grace: Duration,
) -> Vec<SinkHandle> {
    let mut due = Instant::now() + interval;
    let mut previous_ts = None;
    let mut last_batch: Option<Arc<PointBatch>> = None;
    loop {
        let wait = due.saturating_duration_since(Instant::now());
        let stopping = match control.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Ok(FlushControl::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
            Ok(FlushControl::Reload {
                stats,
                naming,
                sinks: new_sinks,
            }) => {
                if stats.flush_interval != interval {
                    // The flush already due keeps its time; the new
                    // interval counts from there.
                    interval = stats.flush_interval;
                }
                flusher.reload(*stats, *naming);
                if let Some(new_sinks) = new_sinks {
                    for old in std::mem::replace(&mut sinks, new_sinks) {
                        runtime.spawn(old.close(grace));
                    }
                }
                continue;
            }
        };
        let ts = flush_timestamp(unix_now_f64(), previous_ts, interval, stopping);
        previous_ts = Some(ts);
        // Reuse the last batch's buffers if every sink is done with it.
        if let Some(Ok(spent)) = last_batch.take().map(Arc::try_unwrap) {
            flusher.recycle(spent);
        }
        let batch = Arc::new(flusher.flush(ts));
        tracing::debug!(points = batch.len(), ts, "flushed");
        for sink in &sinks {
            sink.submit(batch.clone());
        }
        last_batch = Some(batch);
        if stopping {
            return sinks;
        }
        // Skip due times already missed (a very slow flush) rather than
        // flushing back to back.
        let now = Instant::now();
        due += interval;
        while due <= now {
            due += interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_timestamps_never_repeat() {
        let ten = Duration::from_secs(10);
        assert_eq!(flush_timestamp(100.4, None, ten, false), 100);
        assert_eq!(flush_timestamp(100.4, Some(100), ten, false), 101);
        assert_eq!(flush_timestamp(110.2, Some(100), ten, false), 110);
        // SIGTERM 3 s after a flush: stamped at the next grid point.
        assert_eq!(flush_timestamp(103.0, Some(100), ten, true), 110);
        assert_eq!(flush_timestamp(125.0, Some(100), ten, true), 125);
    }
}
