//! The bench's own carbon line listener: keeps, per bench metric name, the
//! sum, last, lowest and highest value it received, and times each flush
//! as carbon sees it: from the first to the last line stamped with that
//! flush's timestamp.

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What arrived for one name, over all flushes.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Sum of the values received.
    pub sum: f64,
    /// The last value.
    pub last: f64,
    /// The lowest value.
    pub lowest: f64,
    /// The highest value.
    pub highest: f64,
}

#[derive(Default)]
struct State {
    names: HashMap<Box<[u8]>, Received, ahash::RandomState>,
    lines: u64,
    /// Per flush timestamp: first and last arrival of its lines.
    spans: HashMap<i64, (Instant, Instant)>,
}

#[derive(Clone)]
/// A carbon line listener on loopback for the bench.
pub struct Listener {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

/// Names the bench keeps: those of its own keys, in Etsy's and sluice's
/// legacy naming and collectd's, and sluice's delivery times.
fn wanted(name: &[u8]) -> bool {
    // Etsy's names, brubeck's (no prefix) and statsite's (type prefixes).
    const PREFIXES: [&[u8]; 11] = [
        b"stats_counts.bench.",
        b"stats.timers.bench.",
        b"stats.gauges.bench.",
        b"stats.sets.bench.",
        b"bench.c.",
        b"bench.t.",
        b"bench.g.",
        b"counts.bench.",
        b"timers.bench.",
        b"gauges.bench.",
        b"sets.bench.",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
        || memchr::memmem::find(name, b".statsd.count-bench_").is_some()
        || (name.starts_with(b"stats.statsd.graphiteStats.destinations.")
            && name.ends_with(b".delivery_ms"))
}

impl Listener {
    /// Starts listening on 127.0.0.1, port 0.
    pub fn start() -> std::io::Result<Listener> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        std::thread::Builder::new()
            .name("bench-carbon".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let state = shared.clone();
                    let _ = std::thread::Builder::new()
                        .name("bench-carbon-conn".into())
                        .spawn(move || read_connection(stream, &state));
                }
            })?;
        Ok(Listener { addr, state })
    }

    fn with<T>(&self, f: impl FnOnce(&State) -> T) -> Option<T> {
        self.state.lock().ok().map(|s| f(&s))
    }

    /// Carbon lines received in all (any name).
    pub fn lines(&self) -> u64 {
        self.with(|s| s.lines).unwrap_or(0)
    }

    /// What arrived for `name`.
    pub fn get(&self, name: &str) -> Option<Received> {
        self.with(|s| s.names.get(name.as_bytes()).copied())
            .flatten()
    }

    /// Sum over the names that start with `prefix` and end with `suffix`.
    pub fn sum_matching(&self, prefix: &str, suffix: &str) -> f64 {
        self.with(|s| {
            s.names
                .iter()
                .filter(|(n, _)| n.starts_with(prefix.as_bytes()) && n.ends_with(suffix.as_bytes()))
                .map(|(_, r)| r.sum)
                .sum()
        })
        .unwrap_or(0.0)
    }

    /// The longest span of one flush's lines at the listener, and the
    /// number of flushes seen.
    pub fn flush_span(&self) -> (Duration, usize) {
        self.with(|s| {
            let longest = s
                .spans
                .values()
                .map(|(first, last)| last.duration_since(*first))
                .max()
                .unwrap_or_default();
            (longest, s.spans.len())
        })
        .unwrap_or_default()
    }

    /// The highest value any name with this suffix had (e.g. sluice's
    /// `.delivery_ms`).
    pub fn highest_with_suffix(&self, suffix: &str) -> Option<f64> {
        self.with(|s| {
            s.names
                .iter()
                .filter(|(n, _)| n.ends_with(suffix.as_bytes()))
                .map(|(_, r)| r.highest)
                .reduce(f64::max)
        })
        .flatten()
    }
}

fn read_connection(mut stream: TcpStream, state: &Mutex<State>) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut filled = 0usize;
    loop {
        let n = match stream.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let now = Instant::now();
        filled += n;
        let complete = match memchr::memrchr(b'\n', &buf[..filled]) {
            Some(end) => end + 1,
            None if filled == buf.len() => filled, // an absurd line: drop it
            None => continue,
        };
        let Ok(mut s) = state.lock() else { return };
        let mut lines = buf[..complete]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .peekable();
        // Lines of a read share a flush but for its edges: the first and
        // last line's timestamps time the spans.
        if let Some(first) = lines.peek() {
            note_span(&mut s, first, now);
        }
        let mut last_line: &[u8] = &[];
        for line in lines {
            s.lines += 1;
            record(&mut s, line);
            last_line = line;
        }
        note_span(&mut s, last_line, now);
        drop(s);
        buf.copy_within(complete..filled, 0);
        filled -= complete;
    }
}

fn note_span(s: &mut State, line: &[u8], now: Instant) {
    let Some(ts) = line
        .rsplit(|b| *b == b' ')
        .next()
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| t.trim().parse::<i64>().ok())
    else {
        return;
    };
    let span = s.spans.entry(ts).or_insert((now, now));
    span.1 = now;
}

fn record(s: &mut State, line: &[u8]) {
    let mut parts = line.split(|b| *b == b' ');
    let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
        return;
    };
    if !wanted(name) {
        return;
    }
    let Some(v) = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
    else {
        return;
    };
    match s.names.get_mut(name) {
        Some(r) => {
            r.sum += v;
            r.last = v;
            r.lowest = r.lowest.min(v);
            r.highest = r.highest.max(v);
        }
        None => {
            s.names.insert(
                Box::from(name),
                Received {
                    sum: v,
                    last: v,
                    lowest: v,
                    highest: v,
                },
            );
        }
    }
}
