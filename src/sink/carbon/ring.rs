//! carbon's consistent-hash ring (carbon.hashing.ConsistentHashRing with
//! the default `carbon_ch` hash), so a metric goes to the carbon-cache that
//! carbon-relay's consistent-hashing router would pick for it.
//!
//! Each node (server, instance) gets 100 positions: the first 4 hex digits
//! of md5("('server', 'instance'):i") (Python's str of the tuple), moved up
//! by one while taken. A metric's position is the first 4 hex digits of
//! md5(name); its node is the first at or after that position, wrapping.

use md5::{Digest, Md5};

const REPLICAS: usize = 100;

/// carbon's ConsistentHashRing (carbon_ch).
pub struct HashRing {
    /// (position, node index), sorted.
    ring: Vec<(u32, usize)>,
}

/// The 16-bit position of `key`: int(md5(key).hexdigest()[:4], 16).
fn position(key: &[u8]) -> u32 {
    let digest = Md5::digest(key);
    (u32::from(digest[0]) << 8) | u32::from(digest[1])
}

/// Python's `str()` of a (server, instance) tuple: instance None or a str.
fn python_tuple(server: &str, instance: Option<&str>) -> String {
    let quote = |s: &str| {
        // repr() of a plain str: single quotes unless it contains one.
        if s.contains('\'') && !s.contains('"') {
            format!("\"{s}\"")
        } else {
            format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
        }
    };
    match instance {
        Some(i) => format!("({}, {})", quote(server), quote(i)),
        None => format!("({}, None)", quote(server)),
    }
}

impl HashRing {
    /// `nodes` are (server, instance) in configuration order.
    pub fn new(nodes: &[(String, Option<String>)]) -> HashRing {
        let mut ring: Vec<(u32, usize)> = Vec::with_capacity(nodes.len() * REPLICAS);
        for (index, (server, instance)) in nodes.iter().enumerate() {
            let key = python_tuple(server, instance.as_deref());
            for i in 0..REPLICAS {
                let mut pos = position(format!("{key}:{i}").as_bytes());
                while ring.iter().any(|(p, _)| *p == pos) {
                    pos += 1;
                }
                let at = ring.partition_point(|e| *e < (pos, index));
                ring.insert(at, (pos, index));
            }
        }
        HashRing { ring }
    }

    /// The index (in `new`'s order) of the node that owns `metric`.
    pub fn node_for(&self, metric: &str) -> usize {
        if self.ring.is_empty() {
            return 0;
        }
        self.ring[self.entry_of(metric.as_bytes())].1
    }

    /// The ring entry `metric` lands on; with [`HashRing::node_after`], a
    /// caller can skip nodes that are down and keep the entry cached.
    pub fn entry_of(&self, metric: &[u8]) -> usize {
        if self.ring.is_empty() {
            return 0;
        }
        let pos = position(metric);
        self.ring.partition_point(|(p, _)| *p < pos) % self.ring.len()
    }

    /// The node of the entry `steps` after `entry`, wrapping.
    pub fn node_after(&self, entry: usize, steps: usize) -> usize {
        if self.ring.is_empty() {
            return 0;
        }
        self.ring[(entry + steps) % self.ring.len()].1
    }

    /// Entries on the ring (100 per node).
    pub fn entries(&self) -> usize {
        self.ring.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_tuple_strings() {
        assert_eq!(python_tuple("127.0.0.1", None), "('127.0.0.1', None)");
        assert_eq!(python_tuple("h", Some("a")), "('h', 'a')");
    }

    #[test]
    fn every_metric_has_one_stable_node() {
        let nodes = vec![
            ("127.0.0.1".to_string(), Some("a".to_string())),
            ("127.0.0.1".to_string(), Some("b".to_string())),
        ];
        let ring = HashRing::new(&nodes);
        assert_eq!(ring.ring.len(), 200);
        let mut seen = [0usize; 2];
        for i in 0..1000 {
            let n = ring.node_for(&format!("stats.metric{i}"));
            assert_eq!(n, ring.node_for(&format!("stats.metric{i}")));
            seen[n] += 1;
        }
        assert!(seen[0] > 300 && seen[1] > 300, "{seen:?}");
    }
}
