//! `sluice bench`: an end-to-end load tool, as redis-benchmark is to Redis.
//!
//! It runs a carbon line listener of its own, starts the target daemon
//! (sluice itself, Etsy's statsd, or collectd's statsd plugin) pointed at
//! that listener, sends StatsD counters over UDP with sendmmsg (flat out or
//! at a given rate), then reads what the target flushed and accounts loss
//! exactly: absorbed = the sum of the flushed counts, against the lines
//! sent. It also reports the kernel's UDP drop counters and the target's
//! CPU seconds per million lines and peak RSS (from /proc). Everything runs
//! on loopback and stops by itself.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::selfstats::host_udp_errors;

/// Which daemon to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Sluice,
    Etsy,
    Collectd,
}

impl Target {
    pub fn parse(name: &str) -> Option<Target> {
        match name {
            "sluice" => Some(Target::Sluice),
            "etsy" => Some(Target::Etsy),
            "collectd" => Some(Target::Collectd),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Target::Sluice => "sluice",
            Target::Etsy => "etsy-statsd",
            Target::Collectd => "collectd",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Workload {
    /// Counter lines to send in all.
    pub lines: u64,
    /// Distinct keys.
    pub keys: u64,
    pub lines_per_datagram: usize,
    /// Lines per second; 0 = as fast as one sender thread can.
    pub rate: u64,
    pub flush: Duration,
    /// Path to Etsy's stats.js (for the etsy target).
    pub etsy_stats_js: PathBuf,
    /// Config file for the sluice target.
    pub sluice_config: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub target: Target,
    pub sent_lines: u64,
    pub send_seconds: f64,
    pub absorbed_lines: f64,
    pub kernel_rcvbuf_errors: u64,
    pub cpu_seconds: f64,
    pub peak_rss_kib: u64,
}

impl Outcome {
    pub fn offered_rate(&self) -> f64 {
        self.sent_lines as f64 / self.send_seconds.max(1e-9)
    }

    pub fn loss(&self) -> f64 {
        1.0 - self.absorbed_lines / self.sent_lines.max(1) as f64
    }

    pub fn cpu_per_million(&self) -> f64 {
        self.cpu_seconds / (self.absorbed_lines.max(1.0) / 1e6)
    }
}

/// Sums the counts a carbon listener receives, per metric name.
struct Receiver {
    addr: SocketAddr,
    sums: Arc<Mutex<HashMap<String, f64>>>,
    lines: Arc<Mutex<u64>>,
}

impl Receiver {
    fn start() -> std::io::Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let sums: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
        let lines: Arc<Mutex<u64>> = Arc::default();
        let (s, l) = (sums.clone(), lines.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (s, l) = (s.clone(), l.clone());
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        let mut parts = line.split_whitespace();
                        let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
                            continue;
                        };
                        if let (Ok(mut sums), Ok(v)) = (s.lock(), value.parse::<f64>()) {
                            *sums.entry(name.to_string()).or_default() += v;
                        }
                        if let Ok(mut n) = l.lock() {
                            *n += 1;
                        }
                    }
                });
            }
        });
        Ok(Receiver { addr, sums, lines })
    }

    fn lines(&self) -> u64 {
        self.lines.lock().map(|n| *n).unwrap_or(0)
    }

    /// Counts absorbed for the bench keys, per the target's naming.
    fn absorbed(&self, target: Target) -> f64 {
        let Ok(sums) = self.sums.lock() else {
            return 0.0;
        };
        sums.iter()
            .filter(|(name, _)| match target {
                Target::Sluice | Target::Etsy => name.starts_with("stats_counts.bench."),
                // collectd (CounterSum): <host>.statsd.count-bench_kN holds
                // each interval's increment.
                Target::Collectd => name.contains(".statsd.count-bench_"),
            })
            .map(|(_, v)| v)
            .sum()
    }
}

fn free_udp_port() -> std::io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn(
    target: Target,
    port: u16,
    carbon: SocketAddr,
    w: &Workload,
    dir: &std::path::Path,
) -> std::io::Result<Child> {
    let quiet = |c: &mut Command| {
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    };
    let flush = format!("{}ms", w.flush.as_millis());
    match target {
        Target::Sluice => {
            let mut c = Command::new(std::env::current_exe()?);
            c.args([
                "--udp",
                &format!("127.0.0.1:{port}"),
                "--tcp",
                "127.0.0.1:0",
                "--admin",
                "",
            ])
            .args([
                "--no-whisper",
                "--flush-interval",
                &flush,
                "--carbon",
                &carbon.to_string(),
            ])
            .args(["--log-level", "warn"]);
            if let Some(config) = &w.sluice_config {
                c.arg("--config").arg(config);
            }
            quiet(&mut c);
            c.spawn()
        }
        Target::Etsy => {
            let config = dir.join("etsy.js");
            let mgmt = free_udp_port()?;
            std::fs::write(
                &config,
                format!(
                    "{{ graphiteHost: \"127.0.0.1\", graphitePort: {}, port: {port}, address: \"127.0.0.1\", \
                     mgmt_port: {mgmt}, mgmt_address: \"127.0.0.1\", flushInterval: {}, \
                     backends: [\"./backends/graphite\"], automaticConfigReload: false }}",
                    carbon.port(),
                    w.flush.as_millis()
                ),
            )?;
            let mut c = Command::new("node");
            c.arg(&w.etsy_stats_js).arg(&config);
            quiet(&mut c);
            c.spawn()
        }
        Target::Collectd => {
            let config = dir.join("collectd.conf");
            std::fs::write(
                &config,
                format!(
                    "Hostname \"bench\"\nFQDNLookup false\nInterval {}\nBaseDir \"{}\"\nPIDFile \"{}/collectd.pid\"\n\
                     LoadPlugin statsd\nLoadPlugin write_graphite\n\
                     <Plugin statsd>\n  Host \"127.0.0.1\"\n  Port \"{port}\"\n  DeleteCounters false\n  CounterSum true\n</Plugin>\n\
                     <Plugin write_graphite>\n  <Node \"bench\">\n    Host \"127.0.0.1\"\n    Port \"{}\"\n    Protocol \"tcp\"\n    StoreRates false\n    AlwaysAppendDS false\n    SeparateInstances false\n  </Node>\n</Plugin>\n",
                    w.flush.as_secs_f64().max(1.0),
                    dir.display(),
                    dir.display(),
                    carbon.port()
                ),
            )?;
            let mut c = Command::new("collectd");
            c.args(["-f", "-C"]).arg(&config);
            quiet(&mut c);
            c.spawn()
        }
    }
}

/// CPU seconds (user + system) and peak RSS (KiB) of a process, from /proc.
fn process_usage(pid: u32) -> (f64, u64) {
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks)
        })
        .unwrap_or(0.0);
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    (cpu, rss)
}

/// The datagrams of the workload: `bench.k<i>:1|c` lines, keys in turn.
fn datagrams(w: &Workload) -> Vec<Vec<u8>> {
    let per = w.lines_per_datagram.max(1) as u64;
    let count = w.lines.div_ceil(per);
    let mut key = 0u64;
    let mut left = w.lines;
    (0..count)
        .map(|_| {
            let mut d = Vec::with_capacity(per as usize * 20);
            for _ in 0..per.min(left) {
                d.extend_from_slice(b"bench.k");
                d.extend_from_slice(itoa::Buffer::new().format(key).as_bytes());
                d.extend_from_slice(b":1|c\n");
                key = (key + 1) % w.keys.max(1);
                left -= 1;
            }
            d.pop();
            d
        })
        .collect()
}

/// Sends every datagram with sendmmsg on a connected socket; paced when
/// `rate` (lines/s) is set. Returns the seconds it took.
fn send_all(socket: &UdpSocket, data: &[Vec<u8>], lines_per_datagram: usize, rate: u64) -> f64 {
    const BATCH: usize = 64;
    let started = Instant::now();
    let mut sent_lines = 0u64;
    for chunk in data.chunks(BATCH) {
        let mut iov: Vec<libc::iovec> = chunk
            .iter()
            .map(|d| libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // mmsghdr is plain data; zero is a valid empty header.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        let mut offset = 0;
        while offset < headers.len() {
            // SAFETY: headers[offset..] point at iovecs that point at the
            // datagrams in `chunk`, all alive for this call; the socket is
            // connected, so no address is needed.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    headers[offset..].as_mut_ptr(),
                    (headers.len() - offset) as libc::c_uint,
                    0,
                )
            };
            if n <= 0 {
                // ENOBUFS/EAGAIN under load: try again.
                std::thread::yield_now();
                continue;
            }
            offset += n as usize;
        }
        sent_lines += (chunk.len() * lines_per_datagram) as u64;
        if rate > 0 {
            let due = Duration::from_secs_f64(sent_lines as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    started.elapsed().as_secs_f64()
}

/// Runs the workload against one target and accounts for every line.
pub fn run(target: Target, w: &Workload) -> std::io::Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let receiver = Receiver::start()?;
    let port = free_udp_port()?;
    let mut child = spawn(target, port, receiver.addr, w, dir.path())?;
    let result = measure(target, w, &receiver, port, &child);
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn measure(
    target: Target,
    w: &Workload,
    receiver: &Receiver,
    port: u16,
    child: &Child,
) -> std::io::Result<Outcome> {
    // Ready once a flush arrives; collectd flushes only once it has seen a
    // metric, so a warm-up key (not counted) is sent meanwhile.
    let warmup = UdpSocket::bind("127.0.0.1:0")?;
    let deadline = Instant::now() + Duration::from_secs(30) + w.flush * 3;
    while receiver.lines() == 0 {
        if Instant::now() > deadline {
            return Err(std::io::Error::other(format!(
                "{} never flushed",
                target.name()
            )));
        }
        let _ = warmup.send_to(b"warmup:1|c", ("127.0.0.1", port));
        std::thread::sleep(Duration::from_millis(100));
    }
    let data = datagrams(w);
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(("127.0.0.1", port))?;
    let kernel_before = host_udp_errors().map(|e| e.1).unwrap_or(0);
    let (cpu_before, _) = process_usage(child.id());
    let send_seconds = send_all(&socket, &data, w.lines_per_datagram, w.rate);
    // Settle: until two flushes in a row add nothing (bounded).
    let mut last = -1.0;
    let settle_deadline = Instant::now() + Duration::from_secs(60) + w.flush * 10;
    loop {
        std::thread::sleep(w.flush * 2 + Duration::from_millis(200));
        let now = receiver.absorbed(target);
        if now == last || Instant::now() > settle_deadline || now >= w.lines as f64 {
            if now >= w.lines as f64 && now != last {
                last = now;
                continue;
            }
            break;
        }
        last = now;
    }
    let (cpu_after, rss) = process_usage(child.id());
    let kernel_after = host_udp_errors().map(|e| e.1).unwrap_or(0);
    Ok(Outcome {
        target,
        sent_lines: w.lines,
        send_seconds,
        absorbed_lines: receiver.absorbed(target),
        kernel_rcvbuf_errors: kernel_after.saturating_sub(kernel_before),
        cpu_seconds: cpu_after - cpu_before,
        peak_rss_kib: rss,
    })
}

/// The report table, with ratios against the first target.
pub fn report(w: &Workload, outcomes: &[Outcome]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "workload: {} counter lines over {} keys, {} lines/datagram, {}, flush {:?}, loopback, one sendmmsg sender",
        w.lines,
        w.keys,
        w.lines_per_datagram,
        if w.rate == 0 { "flat out".to_string() } else { format!("{} lines/s", w.rate) },
        w.flush
    );
    let _ = writeln!(
        out,
        "{:<12} {:>14} {:>14} {:>9} {:>16} {:>14} {:>12}",
        "target",
        "offered l/s",
        "absorbed l/s",
        "loss",
        "kernel drops",
        "CPU s/M lines",
        "peak RSS MB"
    );
    for o in outcomes {
        let _ = writeln!(
            out,
            "{:<12} {:>14.0} {:>14.0} {:>8.3}% {:>16} {:>14.3} {:>12.1}",
            o.target.name(),
            o.offered_rate(),
            o.absorbed_lines / o.send_seconds.max(1e-9),
            o.loss() * 100.0,
            o.kernel_rcvbuf_errors,
            o.cpu_per_million(),
            o.peak_rss_kib as f64 / 1024.0
        );
    }
    if let Some(first) = outcomes.first() {
        for o in &outcomes[1..] {
            let _ = writeln!(
                out,
                "{} vs {}: {:.1}x less CPU per million lines, loss {:.3}% vs {:.3}%",
                first.target.name(),
                o.target.name(),
                o.cpu_per_million() / first.cpu_per_million().max(1e-9),
                first.loss() * 100.0,
                o.loss() * 100.0
            );
        }
    }
    out
}
