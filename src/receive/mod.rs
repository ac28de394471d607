//! Carbon's receivers, so whatever feeds carbon-cache feeds sluice: the
//! line protocol over TCP and UDP (`line`) and the pickle protocol over TCP
//! (`pickle`). Received points go into the store's cache
//! (`store::cache`), which the writer threads drain into the files, with
//! carbon's last-wins rule; names go through the store's path rules there.
//! Bad input is counted, logged at most once a second, and skipped; a
//! connection never ends because of it.

pub mod line;
pub mod pickle;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::point::PointBatch;
use crate::sink::Submitter;
use crate::store::cache::ReceivedCache;
use crate::telemetry::{unix_now_rounded, Counter, LogLimit, Telemetry};

/// What every receiver shares.
pub struct ReceiveContext {
    /// Where points go.
    pub cache: Arc<ReceivedCache>,
    /// The agent's counters.
    pub telemetry: Arc<Telemetry>,
    /// Longest line kept (carbon: 16 KiB).
    pub max_line_length: usize,
    /// Largest pickle frame accepted (carbon: 1 MiB).
    pub max_frame_bytes: usize,
    /// Where received points are relayed (carbon.relay_received); set and
    /// cleared by the agent as sinks come and go.
    pub relay: Relay,
}

/// The carbon forwarder's queue, when received points are relayed.
pub type Relay = Arc<RwLock<Option<Submitter>>>;

/// Accepts connections on `listener` until `shutdown`, running
/// `connection` for each, then waits for the open ones to drain.
pub(crate) async fn serve_connections<F, Fut>(
    what: &'static str,
    listener: tokio::net::TcpListener,
    ctx: Arc<ReceiveContext>,
    shutdown: crate::shutdown::Shutdown,
    connection: F,
) where
    F: Fn(tokio::net::TcpStream, Arc<ReceiveContext>, crate::shutdown::Shutdown) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut connections = tokio::task::JoinSet::new();
    crate::net::accept_loop(what, &listener, shutdown.clone(), |stream, _| {
        while connections.try_join_next().is_some() {}
        connections.spawn(connection(stream, ctx.clone(), shutdown.clone()));
    })
    .await;
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// One connection's or socket's tally and log limiter.
pub(crate) struct Intake<'a> {
    ctx: &'a ReceiveContext,
    log: LogLimit,
    now: i64,
    /// Points of this read to relay, by timestamp.
    relayed: BTreeMap<i64, PointBatch>,
    relaying: bool,
}

impl Drop for Intake<'_> {
    fn drop(&mut self) {
        self.relay_now();
    }
}

impl<'a> Intake<'a> {
    pub(crate) fn new(ctx: &'a ReceiveContext) -> Intake<'a> {
        Intake {
            ctx,
            log: LogLimit::per_second(),
            now: unix_now_rounded(),
            relayed: BTreeMap::new(),
            relaying: false,
        }
    }

    /// Starts a read: refreshes `now` (for `-1` timestamps), and relays
    /// what the last read received.
    pub(crate) fn tick(&mut self) {
        self.relay_now();
        self.now = unix_now_rounded();
        self.relaying = self.ctx.relay.read().map(|r| r.is_some()).unwrap_or(false);
    }

    /// Hands the points received so far to the carbon forwarder, one batch
    /// per timestamp (a batch carries one).
    pub(crate) fn relay_now(&mut self) {
        if self.relayed.is_empty() {
            return;
        }
        let batches = std::mem::take(&mut self.relayed);
        if let Ok(relay) = self.ctx.relay.read() {
            if let Some(submitter) = relay.as_ref() {
                for (_, batch) in batches {
                    submitter.submit(Arc::new(batch));
                }
            }
        }
    }

    /// One received line.
    pub(crate) fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        match crate::protocol::carbon::parse_received(line, self.now) {
            Ok(Some(p)) => self.point(p.name, p.timestamp, p.value),
            Ok(None) => {
                self.ctx.telemetry.add(Counter::CarbonNanDropped, 1);
            }
            Err(why) => {
                let total = self.ctx.telemetry.add(Counter::CarbonBadLines, 1);
                if let Some(suppressed) = self.log.ready() {
                    let shown = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
                    tracing::warn!(line = %shown.escape_debug(), reason = %why, bad_lines_total = total,
                        suppressed, "carbon line skipped");
                }
            }
        }
    }

    /// One received point.
    pub(crate) fn point(&mut self, name: &str, timestamp: i64, value: f64) {
        if self.relaying {
            self.relayed
                .entry(timestamp)
                .or_insert_with(|| PointBatch::new(timestamp))
                .push(name, value);
        }
        if self.ctx.cache.insert(name, timestamp, value) {
            self.ctx.telemetry.add(Counter::CarbonPointsReceived, 1);
        } else {
            let total = self.ctx.telemetry.add(Counter::CarbonPointsDropped, 1);
            if let Some(suppressed) = self.log.ready() {
                tracing::warn!(
                    dropped_total = total,
                    suppressed,
                    cache_points = self.ctx.cache.len(),
                    "carbon cache full (listen.carbon_cache_points); point dropped"
                );
            }
        }
    }

    /// A line over the length limit.
    pub(crate) fn too_long(&mut self, bytes: usize) {
        let total = self.ctx.telemetry.add(Counter::CarbonBadLines, 1);
        if let Some(suppressed) = self.log.ready() {
            tracing::warn!(
                bytes,
                limit = self.ctx.max_line_length,
                bad_lines_total = total,
                suppressed,
                "carbon line too long; skipped"
            );
        }
    }
}
