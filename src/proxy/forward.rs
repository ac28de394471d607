//! One receiver's forwarding: each StatsD line goes, unchanged, to the
//! backend that owns its metric name, batched into datagrams of at most
//! `max_datagram` bytes. Nothing is parsed beyond the name (the bytes
//! before the first `:`), so every type, sample rate and tag reaches the
//! backend as the client sent it.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use crate::ingest::Packets;
use crate::protocol::statsd::lines;
use crate::telemetry::{BatchTally, Counter, LogLimit, Telemetry};

use super::cluster::Cluster;

/// Names whose ring entry a forwarder remembers before it starts over
/// (about 60 MB at 30-byte names; hashing a name is md5, so it is worth
/// not doing per line).
const MAX_CACHED_NAMES: usize = 1 << 20;

/// A backend's datagram being filled.
#[derive(Default)]
struct Outgoing {
    datagram: Vec<u8>,
    lines: u64,
}

/// Forwards the packets of one receiver (a UDP thread or a TCP connection).
pub struct Forwarder {
    cluster: Arc<Cluster>,
    /// Send sockets for IPv4 and IPv6 backends, opened when first needed.
    sockets: [Option<UdpSocket>; 2],
    max_datagram: usize,
    outgoing: Vec<Outgoing>,
    /// Ring entry per metric name (stable: the ring never changes); the
    /// backend is looked up from it per line, so an up/down change applies
    /// at once.
    entries: HashMap<Box<[u8]>, u32, ahash::RandomState>,
    tally: BatchTally,
    dropped: u64,
    log: LogLimit,
}

impl Forwarder {
    /// A forwarder sending from a socket of its own.
    pub fn new(cluster: Arc<Cluster>, max_datagram: usize) -> Forwarder {
        Forwarder {
            outgoing: cluster
                .backends
                .iter()
                .map(|_| Outgoing::default())
                .collect(),
            cluster,
            sockets: [None, None],
            max_datagram: max_datagram.max(1),
            entries: HashMap::with_hasher(ahash::RandomState::new()),
            tally: BatchTally::default(),
            dropped: 0,
            log: LogLimit::per_second(),
        }
    }

    fn backend_for(&mut self, name: &[u8]) -> Option<usize> {
        let entry = match self.entries.get(name) {
            Some(e) => *e,
            None => {
                if self.entries.len() >= MAX_CACHED_NAMES {
                    self.entries.clear();
                }
                let e = self.cluster.entry_of(name);
                self.entries.insert(name.into(), e);
                e
            }
        };
        self.cluster.backend_at(entry)
    }

    fn send(&mut self, backend: usize) {
        let Some(out) = self.outgoing.get_mut(backend) else {
            return;
        };
        if out.datagram.is_empty() {
            return;
        }
        let target = &self.cluster.backends[backend];
        let family = usize::from(target.statsd.is_ipv6());
        if self.sockets[family].is_none() {
            self.sockets[family] = send_socket(&self.cluster, target.statsd.is_ipv6());
        }
        let sent = match &self.sockets[family] {
            Some(socket) => socket.send_to(&out.datagram, target.statsd),
            None => Err(std::io::Error::other("no socket to send on")),
        };
        match sent {
            Ok(_) => {
                target.add_forwarded(out.lines);
                self.cluster
                    .telemetry
                    .add(Counter::ProxyLinesForwarded, out.lines);
            }
            Err(e) => {
                self.dropped += out.lines;
                if let Some(suppressed) = self.log.ready() {
                    tracing::warn!(backend = %target.name, error = %e, lines = out.lines, suppressed,
                        "proxy: send to backend failed; lines dropped");
                }
            }
        }
        out.datagram.clear();
        out.lines = 0;
    }
}

/// A socket to send to the backends of one family from: bound to loopback
/// when every such backend is on loopback (nothing listens wider than it
/// must), to the unspecified address otherwise.
fn send_socket(cluster: &Cluster, ipv6: bool) -> Option<UdpSocket> {
    let local_only = cluster
        .backends
        .iter()
        .filter(|b| b.statsd.is_ipv6() == ipv6)
        .all(|b| b.statsd.ip().is_loopback());
    let ip: std::net::IpAddr = match (ipv6, local_only) {
        (false, true) => std::net::Ipv4Addr::LOCALHOST.into(),
        (false, false) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        (true, true) => std::net::Ipv6Addr::LOCALHOST.into(),
        (true, false) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    match UdpSocket::bind(SocketAddr::new(ip, 0)) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "proxy: cannot open a socket to send on; lines are dropped");
            None
        }
    }
}

/// The metric name of a StatsD line: the bytes before the first `:` (the
/// whole line when there is none; the backend will count it as bad).
fn name_of(line: &[u8]) -> &[u8] {
    memchr::memchr(b':', line).map_or(line, |at| &line[..at])
}

impl Packets for Forwarder {
    fn packet(&mut self, packet: &[u8]) {
        self.tally.packets += 1;
        for line in lines(packet) {
            self.tally.lines += 1;
            let Some(backend) = self.backend_for(name_of(line)) else {
                self.dropped += 1;
                continue;
            };
            let room = self.max_datagram;
            if self.outgoing[backend].datagram.len() + line.len() + 1 > room {
                self.send(backend);
            }
            let out = &mut self.outgoing[backend];
            out.datagram.extend_from_slice(line);
            out.datagram.push(b'\n');
            out.lines += 1;
        }
    }

    fn commit(&mut self) {
        for backend in 0..self.outgoing.len() {
            self.send(backend);
        }
        let telemetry = &self.cluster.telemetry;
        telemetry.add_tally(&self.tally);
        self.tally = BatchTally::default();
        if self.dropped > 0 {
            let total = telemetry.add(Counter::ProxyLinesDropped, self.dropped);
            if let Some(suppressed) = self.log.ready() {
                tracing::warn!(
                    dropped = self.dropped,
                    dropped_total = total,
                    suppressed,
                    "proxy: lines dropped (no backend up, or a send failed)"
                );
            }
            self.dropped = 0;
        }
    }

    fn telemetry(&self) -> &Telemetry {
        &self.cluster.telemetry
    }
}

#[cfg(test)]
mod tests {
    use super::name_of;

    #[test]
    fn the_name_is_what_comes_before_the_first_colon() {
        assert_eq!(name_of(b"a.b:1|c"), b"a.b");
        assert_eq!(name_of(b"multi:1|c:2|ms"), b"multi");
        assert_eq!(name_of(b"dd.x:1|c|#env:prod"), b"dd.x");
        assert_eq!(name_of(b"noval"), b"noval");
    }
}
