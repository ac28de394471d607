//! Forwards points to one carbon line receiver (`path value ts\n`, port
//! 2003) over a persistent TCP connection.
//!
//! Points that cannot be delivered stay queued, oldest first, up to
//! `carbon.buffer_points`; past that the oldest flushes are dropped and
//! counted. A failed connection is retried with capped exponential backoff.
//! At shutdown the sink keeps trying until its grace period ends, then
//! reports what it could not deliver.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{PointBatch, Sink};
use crate::config::CarbonConfig;
use crate::protocol::carbon::write_line;
use crate::selfstats::{unix_now_rounded, GraphiteStats};

/// Counters for one destination.
#[derive(Debug, Default)]
pub struct CarbonSinkStats {
    pub sent_points: AtomicU64,
    pub dropped_points: AtomicU64,
    pub reconnects: AtomicU64,
}

pub struct CarbonLineSink {
    destination: String,
    config: CarbonConfig,
    shutdown_grace: Duration,
    graphite: Arc<GraphiteStats>,
    pub stats: Arc<CarbonSinkStats>,
}

/// One flush, encoded.
struct Chunk {
    bytes: Vec<u8>,
    points: usize,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

impl CarbonLineSink {
    pub fn new(
        destination: String,
        config: CarbonConfig,
        shutdown_grace: Duration,
        graphite: Arc<GraphiteStats>,
    ) -> CarbonLineSink {
        CarbonLineSink {
            destination,
            config,
            shutdown_grace,
            graphite,
            stats: Arc::default(),
        }
    }
}

struct Link<'a> {
    sink: &'a CarbonLineSink,
    pending: VecDeque<Chunk>,
    pending_points: usize,
    stream: Option<TcpStream>,
    backoff: Duration,
    next_attempt: Instant,
    down_since: Option<Instant>,
}

impl Link<'_> {
    fn enqueue(&mut self, batch: &PointBatch) {
        if batch.is_empty() {
            return;
        }
        let mut bytes = Vec::with_capacity(batch.name_bytes() + batch.len() * 24);
        for (name, value) in batch.iter() {
            write_line(&mut bytes, name, value, batch.timestamp);
        }
        self.pending_points += batch.len();
        self.pending.push_back(Chunk {
            bytes,
            points: batch.len(),
        });
        let limit = self.sink.config.buffer_points;
        while self.pending_points > limit && self.pending.len() > 1 {
            if let Some(old) = self.pending.pop_front() {
                self.pending_points -= old.points;
                let total = self
                    .sink
                    .stats
                    .dropped_points
                    .fetch_add(old.points as u64, Ordering::Relaxed)
                    + old.points as u64;
                tracing::warn!(
                    destination = %self.sink.destination,
                    dropped = old.points,
                    dropped_total = total,
                    "carbon buffer full; oldest points dropped"
                );
            }
        }
    }

    /// Connects if due, then writes queued chunks until done or failed.
    async fn deliver(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if self.stream.is_none() {
            if Instant::now() < self.next_attempt {
                return;
            }
            self.connect().await;
        }
        while let (Some(stream), Some(chunk)) = (self.stream.as_mut(), self.pending.front()) {
            let started = Instant::now();
            let written = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&chunk.bytes)).await;
            match written {
                Ok(Ok(())) => {
                    let g = &self.sink.graphite;
                    g.flush_time_ms
                        .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                    g.flush_length
                        .store(chunk.bytes.len() as u64, Ordering::Relaxed);
                    g.last_flush.store(unix_now_rounded(), Ordering::Relaxed);
                    self.sink
                        .stats
                        .sent_points
                        .fetch_add(chunk.points as u64, Ordering::Relaxed);
                    self.pending_points -= chunk.points;
                    self.pending.pop_front();
                }
                Ok(Err(e)) => self.failed(&e.to_string()),
                Err(_) => self.failed("write timed out"),
            }
        }
    }

    async fn connect(&mut self) {
        let connecting = TcpStream::connect(&self.sink.destination);
        match tokio::time::timeout(self.sink.config.connect_timeout, connecting).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                if let Some(since) = self.down_since.take() {
                    tracing::info!(
                        destination = %self.sink.destination,
                        down_for = ?since.elapsed(),
                        queued_points = self.pending_points,
                        "carbon destination is back"
                    );
                }
                self.stream = Some(stream);
                self.backoff = FIRST_BACKOFF;
            }
            Ok(Err(e)) => self.failed(&e.to_string()),
            Err(_) => self.failed("connect timed out"),
        }
    }

    fn failed(&mut self, why: &str) {
        self.stream = None;
        self.sink.stats.reconnects.fetch_add(1, Ordering::Relaxed);
        self.sink
            .graphite
            .last_exception
            .store(unix_now_rounded(), Ordering::Relaxed);
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            tracing::warn!(
                destination = %self.sink.destination,
                error = why,
                queued_points = self.pending_points,
                "carbon destination unreachable; points kept for retry"
            );
        }
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.sink.config.max_backoff);
    }

    fn retry_wait(&self) -> Option<Duration> {
        (self.stream.is_none() && !self.pending.is_empty())
            .then(|| self.next_attempt.saturating_duration_since(Instant::now()))
    }
}

impl Sink for CarbonLineSink {
    fn describe(&self) -> String {
        format!("carbon {}", self.destination)
    }

    async fn run(self, mut batches: mpsc::Receiver<Arc<PointBatch>>) {
        let mut link = Link {
            sink: &self,
            pending: VecDeque::new(),
            pending_points: 0,
            stream: None,
            backoff: FIRST_BACKOFF,
            next_attempt: Instant::now(),
            down_since: None,
        };
        loop {
            let wait = link.retry_wait();
            tokio::select! {
                batch = batches.recv() => match batch {
                    Some(batch) => {
                        link.enqueue(&batch);
                        link.deliver().await;
                    }
                    None => break,
                },
                _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {
                    link.deliver().await;
                }
            }
        }
        // Shutdown: keep trying within the grace period.
        let deadline = Instant::now() + self.shutdown_grace;
        loop {
            link.deliver().await;
            if link.pending.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let wait = link.retry_wait().unwrap_or(FIRST_BACKOFF);
            tokio::time::sleep(wait.min(deadline - now)).await;
        }
        if let Some(mut stream) = link.stream.take() {
            let _ = stream.shutdown().await;
        }
        if link.pending_points > 0 {
            tracing::error!(
                destination = %self.destination,
                undelivered_points = link.pending_points,
                "shutting down with points carbon never received"
            );
        }
    }
}
