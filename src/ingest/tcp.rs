//! The TCP listener: newline framing with partial lines kept across reads,
//! a maximum line length, and a connection limit. As in Etsy, each read's
//! complete lines form one packet. Unlike Etsy, an unterminated last line is
//! processed when the client closes (statsd-ruby 1.4 and Logstash send no
//! newline at all over TCP).

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Packets;
use crate::net::{accept_loop, Acceptor};
use crate::shutdown::Shutdown;
use crate::telemetry::{Counter, LogLimit, Telemetry};

const READ_SIZE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
/// Limits of the StatsD TCP listener.
pub struct TcpLimits {
    /// Longest line kept (listen.tcp_max_line_length).
    pub max_line_length: usize,
    /// Connections served at once (listen.tcp_max_connections).
    pub max_connections: usize,
    /// A connection that completes no line for this long is closed
    /// (listen.tcp_idle_timeout).
    pub idle_timeout: std::time::Duration,
}

/// Accepts connections until `shutdown`, then waits for every connection
/// to drain what it holds. A connection over the limit is closed at once
/// and counted; the refusals are logged at most once a second.
/// `receiver` makes each connection's packet handler; `what` names the
/// listener in logs ("StatsD TCP", "StatsD unix stream").
pub async fn serve<P: Packets, L: Acceptor>(
    what: &'static str,
    listener: L,
    receiver: impl Fn() -> P,
    telemetry: Arc<Telemetry>,
    limits: TcpLimits,
    shutdown: Shutdown,
) where
    L::Stream: AsyncRead + Unpin + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    let mut refusals = LogLimit::per_second();
    accept_loop(what, &listener, shutdown.clone(), |stream, peer| {
        // Reap finished connections as we go.
        while connections.try_join_next().is_some() {}
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            let total = telemetry.add(Counter::TcpConnectionsRefused, 1);
            if let Some(suppressed) = refusals.ready() {
                tracing::warn!(
                    listener = what,
                    ?peer,
                    limit = limits.max_connections,
                    refused_total = total,
                    suppressed,
                    "connection refused: connection limit reached (listen.tcp_max_connections)"
                );
            }
            drop(stream);
            return;
        };
        let packets = receiver();
        let shutdown = shutdown.clone();
        let (max_line, idle) = (limits.max_line_length, limits.idle_timeout);
        connections.spawn(async move {
            handle(stream, packets, max_line, idle, shutdown).await;
            drop(permit);
        });
    })
    .await;
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Reads one connection until EOF, error or shutdown.
async fn handle(
    mut stream: impl AsyncRead + Unpin,
    mut packets: impl Packets,
    max_line: usize,
    idle: std::time::Duration,
    mut shutdown: Shutdown,
) {
    let mut framer = Framer::new(max_line);
    let mut chunk = vec![0u8; READ_SIZE];
    // A connection must complete a line every `idle`, or it goes: a client
    // trickling a byte a second (slowloris) holds no slot for ever.
    let mut deadline = tokio::time::Instant::now() + idle;
    loop {
        let read = tokio::select! {
            read = stream.read(&mut chunk) => read,
            _ = tokio::time::sleep_until(deadline) => {
                tracing::debug!(?idle, "TCP connection closed: no complete line within listen.tcp_idle_timeout");
                break;
            }
            _ = shutdown.wait() => {
                // Take what the socket already holds, then stop.
                // (A zero timeout still polls the read once: it takes
                // only what is already there.)
                while let Ok(Ok(n @ 1..)) =
                    tokio::time::timeout(std::time::Duration::ZERO, stream.read(&mut chunk)).await
                {
                    framer.feed(&chunk[..n], &mut packets);
                }
                break;
            }
        };
        match read {
            Ok(0) => break,
            Ok(n) => {
                if memchr::memchr(b'\n', &chunk[..n]).is_some() {
                    deadline = tokio::time::Instant::now() + idle;
                }
                framer.feed(&chunk[..n], &mut packets)
            }
            Err(e) => {
                tracing::debug!(error = %e, "TCP read failed");
                break;
            }
        }
    }
    framer.finish(&mut packets);
}

/// Newline framing over a byte stream.
struct Framer {
    partial: Vec<u8>,
    max_line: usize,
    /// Inside an over-long line: discard until the next newline.
    skipping: bool,
}

impl Framer {
    fn new(max_line: usize) -> Framer {
        Framer {
            partial: Vec::new(),
            max_line,
            skipping: false,
        }
    }

    fn feed(&mut self, mut data: &[u8], packets: &mut impl Packets) {
        if self.skipping {
            match memchr::memchr(b'\n', data) {
                Some(at) => {
                    data = &data[at + 1..];
                    self.skipping = false;
                }
                None => return,
            }
        }
        match memchr::memrchr(b'\n', data) {
            Some(last) => {
                if self.partial.is_empty() {
                    packets.packet(&data[..=last]);
                } else {
                    self.partial.extend_from_slice(&data[..=last]);
                    packets.packet(&self.partial);
                    self.partial.clear();
                }
                packets.commit();
                self.partial.extend_from_slice(&data[last + 1..]);
            }
            None => self.partial.extend_from_slice(data),
        }
        if self.partial.len() > self.max_line {
            packets.telemetry().add(Counter::LinesTooLong, 1);
            tracing::debug!(
                bytes = self.partial.len(),
                limit = self.max_line,
                "TCP line too long; dropped"
            );
            self.partial.clear();
            self.skipping = true;
        }
    }

    /// At close: an unterminated last line still counts.
    fn finish(&mut self, packets: &mut impl Packets) {
        if !self.partial.is_empty() && !self.skipping {
            packets.packet(&self.partial);
            packets.commit();
        }
        self.partial.clear();
    }
}
