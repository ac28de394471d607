//! The agent: starts every listener, the flush thread and the sinks, and
//! runs until the one shutdown signal, then shuts down in order: stop
//! listening and drain the sockets, flush one last time, let the sinks
//! deliver within the grace period.
//!
//! `bind` binds the sockets first ([`BoundSockets`], so `main` and the tests
//! learn the real addresses), `reload` decides what a new configuration
//! changes, `flush_thread` owns the flush schedule and `sinks` builds the
//! sinks and the agent's gauges.

mod bind;
mod flush_thread;
mod reload;
mod sinks;

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

pub use bind::BoundSockets;

use crate::admin::{self, AdminContext};
use crate::aggregate::flush::Flusher;
use crate::aggregate::Aggregator;
use crate::config::Config;
use crate::graphite::{ReadApi, ReadLimits};
use crate::http::{self, HttpContext, HttpSettings};
use crate::ingest::tcp::TcpLimits;
use crate::ingest::{tcp, udp, Aggregating, IngestContext};
use crate::receive::{self, ReceiveContext, Relay};
use crate::shutdown::{Listeners, ShutdownTrigger};
use crate::sink::SinkHandle;
use crate::store::events::EventBounds;
use crate::store::Shared;
use crate::tap::Tap;
use crate::telemetry::{unix_now_rounded, Counter, GraphiteStats, Readings, Telemetry};
use flush_thread::FlushThread;
use sinks::{build_sinks, SharedMonitors};

/// What can change a running agent: new configurations (SIGHUP) and the
/// log level.
pub struct Reloads {
    /// Validated configurations to apply.
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

/// The parts of a running agent that reloads touch.
struct Running {
    config: Config,
    relay: Relay,
    store: Shared,
    graphite: Arc<GraphiteStats>,
    telemetry: Arc<Telemetry>,
    monitors: SharedMonitors,
    flush: FlushThread,
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
    let started = Instant::now();
    let telemetry = Arc::new(Telemetry::default());
    let graphite = Arc::new(GraphiteStats::new(unix_now_rounded()));
    let aggregator = Arc::new(Aggregator::new(config.listen.shards, &config.stats));
    // The store's names: new files join as the writers create them; the
    // files already there are scanned in the background.
    let store = Shared::default();
    let tap = Arc::new(Tap::default());
    let ingest = Arc::new(IngestContext {
        aggregator: aggregator.clone(),
        telemetry: telemetry.clone(),
        sanitize_keys: config.stats.key_name_sanitize,
        tag_style: config.stats.tag_style,
        events: config.whisper.enabled.then(|| store.events.clone()),
        tap: Some(tap.clone()),
    });
    store
        .cache
        .set_max_points(config.listen.carbon_cache_points);
    if config.whisper.enabled {
        // Before any writer runs, so no new tagged series misses the file.
        let tagged = store.tags.load(&config.whisper.dir);
        tracing::info!(series = tagged, "tag index loaded");
        let bounds = EventBounds {
            retention_seconds: config.whisper.events_retention_days as f64 * 86_400.0,
            max_events: config.whisper.max_events,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let events = store.events.load(&config.whisper.dir, bounds, now);
        tracing::info!(events, "events loaded");
        let (index, root) = (store.index.clone(), config.whisper.dir.clone());
        std::thread::Builder::new()
            .name("index-scan".into())
            .spawn(move || {
                let started = Instant::now();
                let n = index.scan(&root);
                tracing::info!(metrics = n, elapsed = ?started.elapsed(), "store index scanned");
            })?;
    }
    let built = build_sinks(&config, &store, &graphite, &telemetry, &runtime)?;
    let relay: Relay = Arc::new(RwLock::new(built.relay));
    let mut sinks = extra_sinks;
    sinks.extend(built.sinks);
    for sink in &sinks {
        tracing::info!(sink = %sink.name, "sink started");
    }
    let monitors: SharedMonitors =
        Arc::new(Mutex::new(sinks.iter().map(SinkHandle::monitor).collect()));
    let readings: Readings = sinks::readings(
        aggregator.clone(),
        monitors.clone(),
        graphite.clone(),
        store.clone(),
    );
    let healthy = Arc::new(AtomicBool::new(true));

    // Every listener: bound already, started here, stopped by one signal.
    let (trigger, stop) = ShutdownTrigger::new();
    let mut listeners = Listeners::default();
    for (addr, group) in sockets.udp {
        tracing::info!(protocol = "udp", %addr, receivers = group.len(), "listening");
        for (i, socket) in group.into_iter().enumerate() {
            let (ingest, stop) = (ingest.clone(), stop.clone());
            listeners.spawn_thread(format!("udp-{}-{i}", addr.port()), move || {
                udp::receive_loop(socket, Aggregating::new(ingest, Counter::LinesUdp), stop)
            })?;
        }
    }
    let limits = TcpLimits {
        max_line_length: config.listen.tcp_max_line_length,
        max_connections: config.listen.tcp_max_connections,
        idle_timeout: config.listen.tcp_idle_timeout,
    };
    for (addr, listener) in sockets.tcp {
        tracing::info!(protocol = "tcp", %addr, "listening");
        let listener = tokio::net::TcpListener::from_std(listener)?;
        listeners.spawn(
            "tcp",
            tcp::serve(
                "StatsD TCP",
                listener,
                {
                    let ingest = ingest.clone();
                    move || Aggregating::new(ingest.clone(), Counter::LinesTcp)
                },
                telemetry.clone(),
                limits,
                stop.clone(),
            ),
        );
    }
    let mut socket_files = Vec::new();
    for (path, socket) in sockets.unix_datagram {
        tracing::info!(protocol = "unix-datagram", path = %path.display(), "listening");
        let (ingest, stop) = (ingest.clone(), stop.clone());
        listeners.spawn_thread("unix-datagram", move || {
            udp::receive_loop(socket, Aggregating::new(ingest, Counter::LinesUnix), stop)
        })?;
        socket_files.push(path);
    }
    for (path, listener) in sockets.unix_stream {
        tracing::info!(protocol = "unix-stream", path = %path.display(), "listening");
        let listener = tokio::net::UnixListener::from_std(listener)?;
        let ingest = ingest.clone();
        listeners.spawn(
            "unix-stream",
            tcp::serve(
                "StatsD unix stream",
                listener,
                move || Aggregating::new(ingest.clone(), Counter::LinesUnix),
                telemetry.clone(),
                limits,
                stop.clone(),
            ),
        );
        socket_files.push(path);
    }
    let receive = Arc::new(ReceiveContext {
        cache: store.cache.clone(),
        telemetry: telemetry.clone(),
        max_line_length: config.listen.carbon_max_line_length,
        max_frame_bytes: config.listen.carbon_pickle_max_frame,
        relay: relay.clone(),
    });
    for (addr, tcp, udp) in sockets.carbon_line {
        tracing::info!(protocol = "carbon-line", %addr, "listening");
        let listener = tokio::net::TcpListener::from_std(tcp)?;
        listeners.spawn(
            "carbon-line",
            receive::line::serve_tcp(listener, receive.clone(), stop.clone()),
        );
        let (ctx, stop) = (receive.clone(), stop.clone());
        listeners.spawn_thread(format!("carbon-udp-{}", addr.port()), move || {
            receive::line::receive_udp(udp, ctx, stop)
        })?;
    }
    for (addr, listener) in sockets.carbon_pickle {
        tracing::info!(protocol = "carbon-pickle", %addr, "listening");
        let listener = tokio::net::TcpListener::from_std(listener)?;
        listeners.spawn(
            "carbon-pickle",
            receive::pickle::serve(listener, receive.clone(), stop.clone()),
        );
    }
    if let Some((addr, listener)) = sockets.admin {
        tracing::info!(protocol = "admin", %addr, "listening");
        let ctx = Arc::new(AdminContext {
            aggregator: aggregator.clone(),
            telemetry: telemetry.clone(),
            graphite: graphite.clone(),
            config_lines: crate::config::print::admin_lines(&config),
            started,
            healthy: healthy.clone(),
            readings: readings.clone(),
            heavy: std::sync::Mutex::new(()),
            tap: tap.clone(),
        });
        let listener = tokio::net::TcpListener::from_std(listener)?;
        listeners.spawn("admin", admin::serve(listener, ctx, stop.clone()));
    }
    if let Some((addr, listener)) = sockets.http {
        tracing::info!(protocol = "http", %addr, "listening");
        let h = &config.http;
        let read_api = config.whisper.enabled.then(|| {
            Arc::new(ReadApi {
                root: config.whisper.dir.clone(),
                store: store.clone(),
                limits: ReadLimits {
                    max_series: h.max_series,
                    max_points: h.max_points,
                    max_target_length: h.max_target_length,
                    max_targets: h.max_targets,
                    max_find: h.max_find,
                },
            })
        });
        let ctx = Arc::new(HttpContext {
            telemetry: telemetry.clone(),
            readings: readings.clone(),
            healthy: healthy.clone(),
            started,
            graphite: read_api,
            settings: HttpSettings {
                max_body_bytes: h.max_body_bytes,
                max_concurrent_renders: h.max_concurrent_renders,
                cors_origin: h.cors_origin.clone(),
            },
            tap: tap.clone(),
        });
        let listener = tokio::net::TcpListener::from_std(listener)?;
        listeners.spawn("http", http::serve(listener, ctx, stop.clone()));
    }

    let mut flusher = Flusher::new(
        aggregator.clone(),
        config.stats.clone(),
        config.naming.clone(),
        telemetry.clone(),
        graphite.clone(),
    );
    flusher.set_readings(readings);
    let interval = config.stats.flush_interval;
    let flush = FlushThread::start(flusher, interval, sinks, runtime.clone(), grace(&config))?;
    tracing::info!(?interval, "agent running");
    crate::systemd::notify("READY=1");

    let mut running = Running {
        config,
        relay: relay.clone(),
        store,
        graphite,
        telemetry,
        monitors,
        flush,
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(new) = reloads.configs.recv() => {
                crate::systemd::notify_reloading();
                running.reload(new, &reloads, &runtime);
                crate::systemd::notify("READY=1");
            }
        }
    }

    crate::systemd::notify("STOPPING=1");
    tracing::info!("shutting down: draining sockets");
    trigger.trigger();
    listeners.drained().await;
    for path in &socket_files {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the socket file");
        }
    }
    // The relay's queue handle would keep the carbon sink open.
    if let Ok(mut r) = relay.write() {
        *r = None;
    }
    tracing::info!("final flush");
    let grace = grace(&running.config);
    for sink in running.flush.finish().await {
        sink.close(grace).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// How long sinks get to deliver what they hold when they close.
fn grace(config: &Config) -> Duration {
    config.shutdown_timeout + Duration::from_secs(1)
}

impl Running {
    /// Applies a new configuration as far as it can be applied live.
    fn reload(&mut self, new: Config, reloads: &Reloads, runtime: &tokio::runtime::Handle) {
        let mut plan = reload::plan(&self.config, new);
        for key in &plan.needs_restart {
            tracing::warn!(
                key,
                "changed in the reloaded config, but takes effect only after a restart"
            );
        }
        for warning in &plan.warnings {
            tracing::warn!("reload: {warning}");
        }
        if plan.log_level_changed {
            (reloads.set_log_level)(&plan.config.log_level);
        }
        let sinks = if plan.sinks_changed {
            match build_sinks(
                &plan.config,
                &self.store,
                &self.graphite,
                &self.telemetry,
                runtime,
            ) {
                Ok(built) => {
                    let sinks = built.sinks;
                    if let Ok(mut r) = self.relay.write() {
                        *r = built.relay;
                    }
                    if let Ok(mut m) = self.monitors.lock() {
                        *m = sinks.iter().map(SinkHandle::monitor).collect();
                    }
                    for sink in &sinks {
                        tracing::info!(sink = %sink.name, "sink started (reload)");
                    }
                    Some(sinks)
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"),
                        "reload: the new sinks cannot start; keeping the running ones");
                    plan.config.whisper = self.config.whisper.clone();
                    plan.config.carbon = self.config.carbon.clone();
                    plan.config.console = self.config.console;
                    None
                }
            }
        } else {
            None
        };
        let config = plan.config;
        self.flush
            .reload(config.stats.clone(), config.naming.clone(), sinks);
        tracing::info!(interval = ?config.stats.flush_interval, "configuration reloaded");
        self.config = config;
    }
}
