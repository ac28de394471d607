//! The bench's own carbon line listener: keeps, per bench metric name, the
//! sum, last, lowest and highest value it received, and times each flush
//! as carbon sees it (from the first to the last byte of a burst).

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What arrived for one name, over all flushes.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub sum: f64,
    pub last: f64,
    pub lowest: f64,
    pub highest: f64,
}

#[derive(Default)]
struct State {
    names: HashMap<Box<[u8]>, Received, ahash::RandomState>,
    lines: u64,
    /// Longest burst of one flush, and how many bursts were seen.
    longest_flush: Duration,
    flushes: u64,
}

/// A gap this long between reads ends one flush's burst.
const BURST_GAP: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct Listener {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

/// Names the bench keeps: those of its own keys, in Etsy's and sluice's
/// legacy naming and collectd's.
fn wanted(name: &[u8]) -> bool {
    const PREFIXES: [&[u8]; 4] = [
        b"stats_counts.bench.",
        b"stats.timers.bench.",
        b"stats.gauges.bench.",
        b"stats.sets.bench.",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
        || memchr::memmem::find(name, b".statsd.count-bench_").is_some()
}

impl Listener {
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

    /// The longest flush burst seen, and the number of bursts.
    pub fn flush_timing(&self) -> (Duration, u64) {
        self.with(|s| (s.longest_flush, s.flushes))
            .unwrap_or_default()
    }
}

fn read_connection(mut stream: TcpStream, state: &Mutex<State>) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut filled = 0usize;
    let mut burst: Option<(Instant, Instant)> = None;
    // Short reads time out so a burst's end is noticed while idle.
    let _ = stream.set_read_timeout(Some(BURST_GAP / 2));
    loop {
        let read = stream.read(&mut buf[filled..]);
        let now = Instant::now();
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                0
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
            Err(_) => break,
        };
        let Ok(mut s) = state.lock() else { return };
        match burst {
            Some((first, last)) if now.duration_since(last) > BURST_GAP => {
                s.flushes += 1;
                s.longest_flush = s.longest_flush.max(last.duration_since(first));
                burst = (n > 0).then_some((now, now));
            }
            Some((first, _)) if n > 0 => burst = Some((first, now)),
            None if n > 0 => burst = Some((now, now)),
            _ => {}
        }
        if n == 0 {
            continue;
        }
        filled += n;
        let complete = match memchr::memrchr(b'\n', &buf[..filled]) {
            Some(end) => end + 1,
            None if filled == buf.len() => filled, // an absurd line: drop it
            None => continue,
        };
        for line in buf[..complete].split(|b| *b == b'\n') {
            if line.is_empty() {
                continue;
            }
            s.lines += 1;
            record(&mut s, line);
        }
        buf.copy_within(complete..filled, 0);
        filled -= complete;
    }
    if let (Some((first, last)), Ok(mut s)) = (burst, state.lock()) {
        s.flushes += 1;
        s.longest_flush = s.longest_flush.max(last.duration_since(first));
    }
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
