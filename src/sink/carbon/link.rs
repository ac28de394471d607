//! One carbon destination: a persistent TCP connection fed from a queue.
//!
//! Points that cannot be delivered stay queued, oldest first, within
//! `carbon.buffer_points` and `carbon.buffer_bytes`; past that the oldest
//! flushes are dropped and counted. A failed connection is retried with
//! capped exponential backoff, and the log says when the destination goes
//! down and comes back. Because a write that succeeded proves nothing
//! (carbon loses what it received but had not written when it stops), what
//! was sent within `carbon.resend_window` is sent again after a reconnect;
//! writing the same point twice into whisper is harmless.
//!
//! The queue and the history hold the flush's shared batch, not a copy:
//! points are encoded in pieces of `PIECE_BYTES` as they are written, so
//! a million-series flush never exists twice in memory.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::config::{CarbonConfig, CarbonProtocol, Destination};
use crate::protocol::{carbon, pickle};
use crate::sink::PointBatch;
use crate::telemetry::{unix_now_rounded, DestinationStats, GraphiteStats};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// A piece's write may take this long before the connection counts as
/// stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Points are encoded and written this many bytes at a time.
const PIECE_BYTES: usize = 256 * 1024;
/// carbon-relay's MAX_DATAPOINTS_PER_MESSAGE; frames stay far below 1 MiB.
const PICKLE_POINTS_PER_FRAME: usize = 500;
const PICKLE_BYTES_PER_FRAME: usize = 512 * 1024;

/// The points of one flush for one destination, with their encoded size
/// estimated for the byte budgets.
struct Chunk {
    batch: Arc<PointBatch>,
    points: usize,
    bytes: usize,
}

impl Chunk {
    fn new(batch: Arc<PointBatch>) -> Chunk {
        // Line format: name, value (~17), timestamp (10), 3 separators.
        let bytes = batch.name_bytes() + batch.len() * 30;
        Chunk {
            points: batch.len(),
            bytes,
            batch,
        }
    }
}

/// Appends points to `out` in the destination's protocol until `out`
/// holds at least PIECE_BYTES or the points run out.
fn encode_piece<'a>(
    protocol: CarbonProtocol,
    points: &mut std::iter::Peekable<impl Iterator<Item = (&'a str, f64)>>,
    timestamp: i64,
    out: &mut Vec<u8>,
) {
    let tail = carbon::LineTail::new(timestamp);
    while out.len() < PIECE_BYTES && points.peek().is_some() {
        match protocol {
            CarbonProtocol::Line => {
                if let Some((name, value)) = points.next() {
                    carbon::write_line_with(out, name, value, &tail);
                }
            }
            CarbonProtocol::Pickle => {
                let mut count = 0;
                let mut size = 0;
                let frame = std::iter::from_fn(|| {
                    if count == PICKLE_POINTS_PER_FRAME || size > PICKLE_BYTES_PER_FRAME {
                        return None;
                    }
                    let (name, value) = points.next()?;
                    count += 1;
                    size += name.len() + 20;
                    Some((name, timestamp, value))
                });
                pickle::encode_frame(out, frame);
            }
        }
    }
}

/// Writes a whole batch, piece by piece; returns the bytes written.
async fn write_batch(
    stream: &mut TcpStream,
    protocol: CarbonProtocol,
    batch: &PointBatch,
    scratch: &mut Vec<u8>,
) -> Result<usize, String> {
    let mut points = batch.iter().peekable();
    let mut written = 0;
    while points.peek().is_some() {
        scratch.clear();
        encode_piece(protocol, &mut points, batch.timestamp, scratch);
        match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(scratch)).await {
            Ok(Ok(())) => written += scratch.len(),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("write timed out".to_string()),
        }
    }
    Ok(written)
}

/// One destination's delivery task: connection, retry buffer, resend window.
pub struct Link {
    /// Where to.
    pub destination: Destination,
    config: CarbonConfig,
    shutdown_grace: Duration,
    graphite: Arc<GraphiteStats>,
    /// Its delivery counters.
    pub stats: Arc<DestinationStats>,
}

impl Link {
    /// A link to `destination`.
    pub fn new(
        destination: Destination,
        config: CarbonConfig,
        shutdown_grace: Duration,
        graphite: Arc<GraphiteStats>,
    ) -> Link {
        Link {
            destination,
            config,
            shutdown_grace,
            graphite,
            stats: Arc::default(),
        }
    }

    /// Runs until the queue closes, then delivers what it holds within the
    /// shutdown grace period.
    pub async fn run(self, mut batches: mpsc::Receiver<Arc<PointBatch>>) {
        let mut state = State {
            link: &self,
            pending: VecDeque::new(),
            pending_points: 0,
            pending_bytes: 0,
            history: VecDeque::new(),
            history_bytes: 0,
            scratch: Vec::with_capacity(PIECE_BYTES + 64 * 1024),
            stream: None,
            backoff: FIRST_BACKOFF,
            next_attempt: Instant::now(),
            down_since: None,
            resend_on_connect: false,
        };
        loop {
            let wait = state.retry_wait();
            tokio::select! {
                batch = batches.recv() => match batch {
                    Some(batch) => {
                        state.enqueue(Chunk::new(batch));
                        state.deliver(Some(&mut batches)).await;
                    }
                    None => break,
                },
                _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {
                    state.deliver(Some(&mut batches)).await;
                }
            }
        }
        let deadline = Instant::now() + self.shutdown_grace;
        loop {
            state.deliver(None).await;
            if state.pending.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let wait = state.retry_wait().unwrap_or(FIRST_BACKOFF);
            tokio::time::sleep(wait.min(deadline - now)).await;
        }
        if let Some(mut stream) = state.stream.take() {
            let _ = stream.shutdown().await;
        }
        let sent = self.stats.sent_points.load(Ordering::Relaxed);
        let dropped = self.stats.dropped_points.load(Ordering::Relaxed);
        if state.pending_points > 0 {
            tracing::error!(
                destination = %self.destination.address(),
                undelivered_points = state.pending_points,
                sent_points = sent,
                dropped_points = dropped,
                "shutting down with points this carbon destination never received"
            );
        } else {
            tracing::info!(
                destination = %self.destination.address(),
                sent_points = sent,
                dropped_points = dropped,
                "carbon destination finished"
            );
        }
    }
}

struct State<'a> {
    link: &'a Link,
    pending: VecDeque<Chunk>,
    pending_points: usize,
    pending_bytes: usize,
    /// Chunks written recently: (when, chunk), oldest first.
    history: VecDeque<(Instant, Chunk)>,
    history_bytes: usize,
    /// Reused buffer for the piece being written.
    scratch: Vec<u8>,
    stream: Option<TcpStream>,
    backoff: Duration,
    next_attempt: Instant,
    down_since: Option<Instant>,
    /// Set by a failure: the next connection first re-sends the history.
    resend_on_connect: bool,
}

impl State<'_> {
    fn stats(&self) -> &DestinationStats {
        &self.link.stats
    }

    fn enqueue(&mut self, chunk: Chunk) {
        if chunk.points == 0 {
            return;
        }
        self.pending_points += chunk.points;
        self.pending_bytes += chunk.bytes;
        self.pending.push_back(chunk);
        let cfg = &self.link.config;
        while (self.pending_points > cfg.buffer_points || self.pending_bytes > cfg.buffer_bytes)
            && self.pending.len() > 1
        {
            let Some(old) = self.pending.pop_front() else {
                break;
            };
            self.pending_points -= old.points;
            self.pending_bytes -= old.bytes;
            let total = self
                .stats()
                .dropped_points
                .fetch_add(old.points as u64, Ordering::Relaxed)
                + old.points as u64;
            tracing::warn!(
                destination = %self.link.destination.address(),
                dropped = old.points,
                dropped_total = total,
                "carbon buffer full; oldest points dropped"
            );
        }
        self.publish_buffered();
    }

    fn publish_buffered(&self) {
        self.stats()
            .buffered_points
            .store(self.pending_points as u64, Ordering::Relaxed);
    }

    /// Connects if due, re-sends the history after a failure, then writes
    /// queued chunks until done or failed. Between chunks, flushes that
    /// arrived meanwhile are taken into the queue, so the buffer limits
    /// (not the channel) bound what waits behind a slow carbon.
    async fn deliver(&mut self, mut incoming: Option<&mut mpsc::Receiver<Arc<PointBatch>>>) {
        if self.pending.is_empty() && !self.resend_on_connect {
            return;
        }
        if let Some(stream) = &self.stream {
            if peer_closed(stream) {
                self.failed("connection closed by carbon");
            }
        }
        if self.stream.is_none() {
            if Instant::now() < self.next_attempt {
                return;
            }
            self.connect().await;
            if self.stream.is_none() {
                return;
            }
            if self.resend_on_connect {
                self.resend_history().await;
                if self.stream.is_none() {
                    return;
                }
            }
        }
        let protocol = self.link.destination.protocol;
        while let Some(chunk) = self.pending.front() {
            let batch = chunk.batch.clone();
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            let started = Instant::now();
            match write_batch(stream, protocol, &batch, &mut self.scratch).await {
                Ok(written) => {
                    let g = &self.link.graphite;
                    g.flush_time_ms
                        .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                    g.flush_length.store(written as u64, Ordering::Relaxed);
                    g.last_flush.store(unix_now_rounded(), Ordering::Relaxed);
                    if let Some(flush_started) = batch.started {
                        self.stats().delivery_ms.store(
                            flush_started.elapsed().as_millis() as u64,
                            Ordering::Relaxed,
                        );
                    }
                    self.stats()
                        .sent_points
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    let Some(chunk) = self.pending.pop_front() else {
                        break;
                    };
                    self.pending_points -= chunk.points;
                    self.pending_bytes -= chunk.bytes;
                    self.remember(chunk);
                    if let Some(incoming) = incoming.as_deref_mut() {
                        while let Ok(batch) = incoming.try_recv() {
                            self.enqueue(Chunk::new(batch));
                        }
                    }
                }
                Err(why) => self.failed(&why),
            }
        }
        self.publish_buffered();
    }

    /// Keeps a written chunk for re-sending, within the window and the
    /// byte budget.
    fn remember(&mut self, chunk: Chunk) {
        let window = self.link.config.resend_window;
        if window.is_zero() {
            return;
        }
        self.history_bytes += chunk.bytes;
        self.history.push_back((Instant::now(), chunk));
        let budget = self.link.config.resend_bytes;
        while let Some((at, old)) = self.history.front() {
            if at.elapsed() <= window && self.history_bytes <= budget {
                break;
            }
            self.history_bytes -= old.bytes;
            self.history.pop_front();
        }
    }

    async fn resend_history(&mut self) {
        self.resend_on_connect = false;
        let window = self.link.config.resend_window;
        let history = std::mem::take(&mut self.history);
        self.history_bytes = 0;
        let mut resent = 0usize;
        let mut kept = VecDeque::new();
        for (at, chunk) in history {
            if at.elapsed() > window {
                continue;
            }
            let Some(stream) = self.stream.as_mut() else {
                kept.push_back((at, chunk));
                continue;
            };
            let protocol = self.link.destination.protocol;
            match write_batch(stream, protocol, &chunk.batch, &mut self.scratch).await {
                Ok(_) => resent += chunk.points,
                Err(why) => self.failed(&why),
            }
            kept.push_back((Instant::now(), chunk));
        }
        self.history_bytes = kept.iter().map(|(_, c)| c.bytes).sum();
        self.history = kept;
        if resent > 0 {
            self.stats()
                .resent_points
                .fetch_add(resent as u64, Ordering::Relaxed);
            tracing::info!(
                destination = %self.link.destination.address(),
                resent_points = resent,
                "re-sent recent points after reconnecting"
            );
        }
    }

    async fn connect(&mut self) {
        let address = self.link.destination.address();
        let connecting = TcpStream::connect(&address);
        match tokio::time::timeout(self.link.config.connect_timeout, connecting).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                if let Some(since) = self.down_since.take() {
                    tracing::info!(
                        destination = %address,
                        down_for = ?since.elapsed(),
                        queued_points = self.pending_points,
                        "carbon destination is back"
                    );
                }
                self.stream = Some(stream);
                self.stats().up.store(true, Ordering::Relaxed);
                self.backoff = FIRST_BACKOFF;
            }
            Ok(Err(e)) => self.failed(&e.to_string()),
            Err(_) => self.failed("connect timed out"),
        }
    }

    fn failed(&mut self, why: &str) {
        self.stream = None;
        self.resend_on_connect = true;
        let stats = self.stats();
        stats.up.store(false, Ordering::Relaxed);
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
        let now = unix_now_rounded();
        stats.last_failure.store(now, Ordering::Relaxed);
        self.link
            .graphite
            .last_exception
            .store(now, Ordering::Relaxed);
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            tracing::warn!(
                destination = %self.link.destination.address(),
                error = why,
                queued_points = self.pending_points,
                "carbon destination down; points kept for retry"
            );
        }
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.link.config.max_backoff);
    }

    fn retry_wait(&self) -> Option<Duration> {
        (self.stream.is_none() && (!self.pending.is_empty() || self.resend_on_connect))
            .then(|| self.next_attempt.saturating_duration_since(Instant::now()))
    }
}

/// carbon never writes to us: a readable socket means it closed (EOF) or
/// reset the connection, so the next write would vanish.
fn peer_closed(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 64];
    match stream.try_read(&mut probe) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}
