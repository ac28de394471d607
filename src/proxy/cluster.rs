//! The proxy's backends: where each metric name goes (carbon's
//! consistent-hash ring over the backends), which backends are up (their
//! admin `health` command, Etsy's management protocol), and what each was
//! sent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::shutdown::Shutdown;
use crate::sink::carbon::ring::HashRing;
use crate::telemetry::{Counter, Telemetry};

/// One StatsD backend.
#[derive(Debug)]
pub struct Backend {
    /// `host:port` as configured (the ring's key and the stats' name).
    pub name: String,
    /// Where its StatsD lines go (UDP).
    pub statsd: SocketAddr,
    /// Its admin interface; without one the backend counts as always up.
    pub admin: Option<SocketAddr>,
    up: AtomicBool,
    forwarded: AtomicU64,
}

impl Backend {
    /// A backend that is up until a health check says otherwise.
    pub fn new(name: String, statsd: SocketAddr, admin: Option<SocketAddr>) -> Backend {
        Backend {
            name,
            statsd,
            admin,
            up: AtomicBool::new(true),
            forwarded: AtomicU64::new(0),
        }
    }

    /// Whether its last health check answered `health: up`.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Lines sent to it since start.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }

    pub(crate) fn add_forwarded(&self, lines: u64) {
        self.forwarded.fetch_add(lines, Ordering::Relaxed);
    }
}

/// The backends and the ring that shares the names out between them.
pub struct Cluster {
    /// In configuration order (the ring's node indexes).
    pub backends: Vec<Backend>,
    ring: HashRing,
    /// The proxy's counters.
    pub telemetry: Arc<Telemetry>,
}

impl Cluster {
    /// A ring over `backends`, keyed by their names.
    pub fn new(backends: Vec<Backend>, telemetry: Arc<Telemetry>) -> Cluster {
        let nodes: Vec<(String, Option<String>)> =
            backends.iter().map(|b| (b.name.clone(), None)).collect();
        Cluster {
            ring: HashRing::new(&nodes),
            backends,
            telemetry,
        }
    }

    /// The ring entry of a metric name (what forwarders cache per name).
    pub fn entry_of(&self, name: &[u8]) -> u32 {
        self.ring.entry_of(name) as u32
    }

    /// The backend for the name at ring `entry`: its owner, or while that
    /// one is down the next backend on the ring that is up; None when all
    /// are down.
    pub fn backend_at(&self, entry: u32) -> Option<usize> {
        (0..self.ring.entries())
            .map(|step| self.ring.node_after(entry as usize, step))
            .find(|&node| self.backends.get(node).is_some_and(Backend::is_up))
    }

    fn set_up(&self, index: usize, up: bool) {
        let Some(backend) = self.backends.get(index) else {
            return;
        };
        if backend.up.swap(up, Ordering::AcqRel) == up {
            return;
        }
        let changes = self.telemetry.add(Counter::ProxyBackendChanges, 1);
        if up {
            tracing::warn!(backend = %backend.name, changes, "backend is up again; its share of the names comes back to it");
        } else {
            tracing::warn!(backend = %backend.name, changes, "backend is down; its share of the names goes to the next on the ring");
        }
    }

    /// Checks every backend with an admin address once, one after the
    /// other (a refused connection answers at once; a silent host costs
    /// `timeout`).
    pub async fn check_all(&self, timeout: Duration) {
        for (index, backend) in self.backends.iter().enumerate() {
            if let Some(admin) = backend.admin {
                let up = is_healthy(admin, timeout).await;
                self.set_up(index, up);
            }
        }
    }

    /// Checks the backends every `every` until `shutdown`.
    pub async fn check_until(self: Arc<Self>, every: Duration, mut shutdown: Shutdown) {
        let timeout = (every / 2).clamp(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => self.check_all(timeout).await,
                _ = shutdown.wait() => return,
            }
        }
    }
}

/// Asks an Etsy-style admin interface `health`; up only on `health: up`
/// within `timeout`.
pub async fn is_healthy(admin: SocketAddr, timeout: Duration) -> bool {
    let ask = async {
        let mut stream = TcpStream::connect(admin).await.ok()?;
        stream.write_all(b"health\n").await.ok()?;
        let mut reply = String::new();
        BufReader::new(&mut stream)
            .read_line(&mut reply)
            .await
            .ok()?;
        Some(reply.trim() == "health: up")
    };
    matches!(tokio::time::timeout(timeout, ask).await, Ok(Some(true)))
}
