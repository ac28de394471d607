//! `sluice bench`: an end-to-end load tool, as redis-benchmark is to Redis.
//!
//! It runs a carbon line listener of its own ([`listener`]), starts the
//! target daemon (sluice itself, Etsy's statsd, or collectd's statsd
//! plugin; [`targets`]) pointed at that listener, sends a deterministic
//! StatsD workload ([`workload`]) over UDP with sendmmsg, flat out or at a
//! given rate, then reads what the target flushed. Loss is accounted
//! exactly: counter totals (value/rate), timer counts and set members
//! flushed against what was sent; every counter, timer (count, sum,
//! lower, upper), gauge (last value) and set key is compared with its
//! expected aggregate. It also reports the kernel's UDP drop counters,
//! the target's CPU seconds per million lines, its peak RSS, and the
//! longest flush burst carbon saw. Everything runs on loopback and stops
//! by itself.

pub mod listener;
pub mod targets;
pub mod workload;

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::telemetry::host_udp_errors;
use listener::Listener;
use workload::{Expected, Type};
pub use workload::{Mix, Workload};

/// Which daemon to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// sluice itself.
    Sluice,
    /// Etsy's statsd (npm).
    Etsy,
    /// collectd's statsd plugin.
    Collectd,
    /// `sluice proxy` in front of one sluice aggregator (the proxy is
    /// measured; the aggregator's flushes are checked).
    SluiceProxy,
    /// Etsy's proxy.js (npm) in front of the same sluice aggregator.
    EtsyProxy,
    /// GitHub's brubeck (C), built from its source (`--brubeck PATH`).
    Brubeck,
    /// statsite (C), built from its source (`--statsite PATH`).
    Statsite,
}

/// How a target names what it flushes for the bench's keys: the name
/// of key `k` is a prefix, `k{k}`, and a suffix.
struct Names {
    counter: &'static str,
    timer: &'static str,
    /// A timer's lowest and highest value.
    lower: &'static str,
    upper: &'static str,
    gauge: &'static str,
    /// Sets, as (prefix, suffix); None where the target has none.
    set: Option<(&'static str, &'static str)>,
    /// Whether only counters are compared (their other names unknown).
    counters_only: bool,
}

impl Target {
    /// The target called `name`.
    pub fn parse(name: &str) -> Option<Target> {
        match name {
            "sluice" => Some(Target::Sluice),
            "etsy" => Some(Target::Etsy),
            "collectd" => Some(Target::Collectd),
            "sluice-proxy" => Some(Target::SluiceProxy),
            "etsy-proxy" => Some(Target::EtsyProxy),
            "brubeck" => Some(Target::Brubeck),
            "statsite" => Some(Target::Statsite),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Target::Sluice => "sluice",
            Target::Etsy => "etsy-statsd",
            Target::Collectd => "collectd",
            Target::SluiceProxy => "sluice-proxy",
            Target::EtsyProxy => "etsy-proxy.js",
            Target::Brubeck => "brubeck",
            Target::Statsite => "statsite",
        }
    }

    fn names(self) -> Names {
        match self {
            Target::Sluice | Target::Etsy | Target::SluiceProxy | Target::EtsyProxy => Names {
                counter: "stats_counts.bench.c.",
                timer: "stats.timers.bench.t.",
                lower: ".lower",
                upper: ".upper",
                gauge: "stats.gauges.bench.g.",
                set: Some(("stats.sets.bench.s.", ".count")),
                counters_only: false,
            },
            // No prefixes; timers as histograms (min, max); no sets.
            Target::Brubeck => Names {
                counter: "bench.c.",
                timer: "bench.t.",
                lower: ".min",
                upper: ".max",
                gauge: "bench.g.",
                set: None,
                counters_only: false,
            },
            // Type prefixes; sets counted by HyperLogLog (estimates).
            Target::Statsite => Names {
                counter: "counts.bench.c.",
                timer: "timers.bench.t.",
                lower: ".lower",
                upper: ".upper",
                gauge: "gauges.bench.g.",
                set: Some(("sets.bench.s.", "")),
                counters_only: false,
            },
            // CounterSum: <host>.statsd.count-bench_c_kN holds each
            // interval's increment.
            Target::Collectd => Names {
                counter: "bench.statsd.count-bench_c_",
                timer: "",
                lower: "",
                upper: "",
                gauge: "",
                set: None,
                counters_only: true,
            },
        }
    }
}

/// Sends every datagram with sendmmsg on a connected socket; paced when
/// `rate` (lines/s) is set. Returns the seconds it took.
fn send_all(sockets: &[UdpSocket], data: &[Vec<u8>], lines_per_datagram: usize, rate: u64) -> f64 {
    const BATCH: usize = 64;
    let started = Instant::now();
    let mut sent_lines = 0u64;
    for (n, chunk) in data.chunks(BATCH).enumerate() {
        // Batches rotate over the sockets: several clients' source ports,
        // which SO_REUSEPORT spreads over the target's receivers.
        let socket = &sockets[n % sockets.len()];
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
                // SAFETY: mmsghdr is plain data; zero is a valid empty header.
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

#[derive(Debug, Clone)]
/// One target's measurement.
pub struct Outcome {
    /// Which target.
    pub target: Target,
    /// Lines sent.
    pub sent_lines: u64,
    /// Seconds the sender took.
    pub send_seconds: f64,
    /// Lines of the countable types (counters, timers, sets) sent.
    pub countable_lines: u64,
    /// Of those, what the flushed aggregates account for.
    pub absorbed_lines: f64,
    /// The host's UDP RcvbufErrors during the run.
    pub kernel_rcvbuf_errors: u64,
    /// CPU seconds from the first datagram until the target had flushed
    /// the last of what it absorbed.
    pub cpu_seconds: f64,
    /// CPU seconds used while the sender was sending.
    pub cpu_while_sending: f64,
    /// Peak resident memory (VmHWM).
    pub peak_rss_kib: u64,
    /// The per-key check.
    pub check: Check,
    /// The longest time from a flush's first line to its last at the
    /// listener.
    pub flush_span: Duration,
    /// sluice only: the longest time from a flush's start to its last
    /// byte written (its own `delivery_ms`).
    pub delivery: Option<Duration>,
}

impl Outcome {
    /// Share of one core the target used while the sender was sending.
    pub fn core_share_while_sending(&self) -> f64 {
        self.cpu_while_sending / self.send_seconds.max(1e-9)
    }

    /// Lines per second offered.
    pub fn offered_rate(&self) -> f64 {
        self.sent_lines as f64 / self.send_seconds.max(1e-9)
    }

    /// Share of the countable lines lost.
    pub fn loss(&self) -> f64 {
        1.0 - self.absorbed_lines / self.countable_lines.max(1) as f64
    }

    /// Lines handled per CPU-second, scaled to every line sent (gauges
    /// included) by the countable share absorbed.
    pub fn cpu_per_million(&self) -> f64 {
        let handled = self.sent_lines as f64 * (1.0 - self.loss());
        self.cpu_seconds / (handled.max(1.0) / 1e6)
    }
}

/// The per-key comparison of flushed aggregates with the expected ones.
#[derive(Debug, Clone, Default)]
pub struct Check {
    /// Aggregates compared, and the ones that differ.
    pub compared: u64,
    /// Aggregates that differ.
    pub wrong: u64,
    /// The first few differences, for the report.
    pub examples: Vec<String>,
    /// False where the target's naming is not known (collectd beyond
    /// counters): only counters were compared.
    pub complete: bool,
}

impl Check {
    fn compare(&mut self, name: &str, got: Option<f64>, want: f64) {
        self.compared += 1;
        let close = got.is_some_and(|g| (g - want).abs() <= 1e-9 * want.abs().max(1.0));
        if !close {
            self.wrong += 1;
            if self.examples.len() < 5 {
                self.examples
                    .push(format!("{name}: got {got:?}, want {want}"));
            }
        }
    }
}

/// Runs the workload against one target and accounts for every line.
pub fn run(target: Target, w: &Workload) -> std::io::Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let listener = Listener::start()?;
    let port = targets::free_udp_port()?;
    let mut children = targets::spawn(target, port, listener.addr, w, dir.path())?;
    let result = match children.first() {
        Some(measured) => measure(target, w, &listener, port, measured),
        None => Err(std::io::Error::other("no target process")),
    };
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

/// Countable lines the flushed aggregates account for, per the target's
/// naming: counter totals and timer counts are scaled back to lines.
fn absorbed(target: Target, listener: &Listener, expected: &Expected) -> f64 {
    let scaled = |flushed: f64, want: f64, lines: u64| {
        if want > 0.0 {
            flushed / want * lines as f64
        } else {
            0.0
        }
    };
    let names = target.names();
    let counters_want: f64 = expected.counters.iter().sum();
    let mut lines = scaled(
        listener.sum_matching(names.counter, ""),
        counters_want,
        expected.lines_of(Type::Counter),
    );
    if !names.counters_only {
        let timers_want: f64 = expected.timers.iter().map(|t| t.count).sum();
        lines += scaled(
            listener.sum_matching(names.timer, ".count"),
            timers_want,
            expected.lines_of(Type::Timer),
        );
    }
    if let Some((prefix, suffix)) = names.set {
        lines += listener.sum_matching(prefix, suffix);
    }
    lines
}

fn check(target: Target, listener: &Listener, expected: &Expected) -> Check {
    let names = target.names();
    let mut c = Check {
        complete: !names.counters_only,
        ..Check::default()
    };
    let sum = |name: &str| listener.get(name).map(|r| r.sum);
    for (k, want) in expected.counters.iter().enumerate() {
        let name = format!("{}k{k}", names.counter);
        c.compare(&name, sum(&name), *want);
    }
    if names.counters_only {
        return c;
    }
    for (k, t) in expected.timers.iter().enumerate() {
        let base = format!("{}k{k}", names.timer);
        let stat = |s: &str| listener.get(&format!("{base}{s}"));
        c.compare(
            &format!("{base}.count"),
            stat(".count").map(|r| r.sum),
            t.count,
        );
        c.compare(&format!("{base}.sum"), stat(".sum").map(|r| r.sum), t.sum);
        c.compare(
            &format!("{base}{}", names.lower),
            stat(names.lower).map(|r| r.lowest),
            t.lower,
        );
        c.compare(
            &format!("{base}{}", names.upper),
            stat(names.upper).map(|r| r.highest),
            t.upper,
        );
    }
    for (k, want) in expected.gauges.iter().enumerate() {
        if let Some(want) = want {
            let name = format!("{}k{k}", names.gauge);
            c.compare(&name, listener.get(&name).map(|r| r.last), *want);
        }
    }
    if let Some((prefix, suffix)) = names.set {
        for (k, want) in expected.sets.iter().enumerate() {
            let name = format!("{prefix}k{k}{suffix}");
            c.compare(&name, sum(&name), *want as f64);
        }
    }
    c
}

fn measure(
    target: Target,
    w: &Workload,
    listener: &Listener,
    port: u16,
    child: &std::process::Child,
) -> std::io::Result<Outcome> {
    // Ready once a flush arrives; collectd flushes only once it has seen a
    // metric, so a warm-up key (not counted) is sent meanwhile.
    let warmup = UdpSocket::bind("127.0.0.1:0")?;
    let deadline = Instant::now() + Duration::from_secs(30) + w.flush * 3;
    while listener.lines() == 0 {
        if Instant::now() > deadline {
            return Err(std::io::Error::other(format!(
                "{} never flushed",
                target.name()
            )));
        }
        let _ = warmup.send_to(b"warmup:1|c", ("127.0.0.1", port));
        std::thread::sleep(Duration::from_millis(100));
    }
    let generated = workload::generate(w);
    let expected = &generated.expected;
    let names = target.names();
    let countable = expected.lines_of(Type::Counter)
        + if names.counters_only {
            0
        } else {
            expected.lines_of(Type::Timer)
        }
        + if names.set.is_some() {
            expected.lines_of(Type::Set)
        } else {
            0
        };
    let mut sockets = Vec::new();
    for _ in 0..w.sockets.max(1) {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.connect(("127.0.0.1", port))?;
        sockets.push(socket);
    }
    let kernel_before = host_udp_errors().map(|e| e.1).unwrap_or(0);
    let (cpu_before, _) = targets::process_usage(child.id());
    let send_seconds = send_all(&sockets, &generated.datagrams, w.lines_per_datagram, w.rate);
    let cpu_sent = targets::process_usage(child.id()).0;
    // Settle: poll until everything is accounted for, or until nothing
    // new arrived for two intervals. The CPU reading is the one taken when
    // the last new aggregate arrived, so idle intervals after the work do
    // not count against (or for) any target.
    let quiet_for = w.flush * 2 + Duration::from_millis(500);
    let settle_deadline = Instant::now() + Duration::from_secs(120) + w.flush * 10;
    let mut last = absorbed(target, listener, expected);
    let mut last_change = Instant::now();
    let mut cpu_at_last = targets::process_usage(child.id()).0;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = absorbed(target, listener, expected);
        if now != last {
            last = now;
            last_change = Instant::now();
            cpu_at_last = targets::process_usage(child.id()).0;
        }
        let complete = now >= countable as f64 * (1.0 - 1e-12);
        if complete || last_change.elapsed() > quiet_for || Instant::now() > settle_deadline {
            break;
        }
    }
    // The rest of the last flush (gauges, sets) may still be on its way.
    std::thread::sleep(Duration::from_millis(500));
    let (_, rss) = targets::process_usage(child.id());
    let kernel_after = host_udp_errors().map(|e| e.1).unwrap_or(0);
    Ok(Outcome {
        target,
        sent_lines: w.lines,
        send_seconds,
        countable_lines: countable,
        absorbed_lines: absorbed(target, listener, expected),
        kernel_rcvbuf_errors: kernel_after.saturating_sub(kernel_before),
        cpu_seconds: cpu_at_last - cpu_before,
        cpu_while_sending: cpu_sent - cpu_before,
        peak_rss_kib: rss,
        check: check(target, listener, expected),
        flush_span: listener.flush_span().0,
        delivery: listener
            .highest_with_suffix(".delivery_ms")
            .map(|ms| Duration::from_millis(ms as u64)),
    })
}

/// The report table, with ratios against the first target.
pub fn report(w: &Workload, outcomes: &[Outcome]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let rates: Vec<String> = w.sample_rates.iter().map(|r| r.to_string()).collect();
    let _ = writeln!(
        out,
        "workload: {} lines ({}; sample rates {}) over {} keys, {} lines/datagram, {}, flush {:?}, loopback, one sendmmsg sender thread, {} source socket(s)",
        w.lines,
        w.mix,
        if rates.is_empty() { "1".to_string() } else { rates.join(", ") },
        w.keys,
        w.lines_per_datagram,
        if w.rate == 0 { "flat out".to_string() } else { format!("{} lines/s", w.rate) },
        w.flush,
        w.sockets.max(1)
    );
    let _ = writeln!(
        out,
        "{:<12} {:>12} {:>12} {:>9} {:>12} {:>8} {:>7} {:>9} {:>10} {:>9} {:>16}",
        "target",
        "offered l/s",
        "absorbed l/s",
        "loss",
        "kernel drops",
        "CPU s/M",
        "core %",
        "peak RSS",
        "flush span",
        "delivery",
        "aggregates exact"
    );
    for o in outcomes {
        let exact = if o.check.wrong == 0 {
            format!("{}/{}", o.check.compared, o.check.compared)
        } else {
            format!("{} WRONG", o.check.wrong)
        };
        let _ = writeln!(
            out,
            "{:<12} {:>12.0} {:>12.0} {:>8.3}% {:>12} {:>8.3} {:>6.0}% {:>6.1} MB {:>7} ms {:>9} {:>16}{}",
            o.target.name(),
            o.offered_rate(),
            o.offered_rate() * (1.0 - o.loss()),
            o.loss() * 100.0,
            o.kernel_rcvbuf_errors,
            o.cpu_per_million(),
            o.core_share_while_sending() * 100.0,
            o.peak_rss_kib as f64 / 1024.0,
            o.flush_span.as_millis(),
            o.delivery
                .map(|d| format!("{} ms", d.as_millis()))
                .unwrap_or_else(|| "-".to_string()),
            exact,
            if o.check.complete {
                ""
            } else {
                " (counters only)"
            }
        );
    }
    for o in outcomes {
        for e in &o.check.examples {
            let _ = writeln!(out, "  {}: {e}", o.target.name());
        }
    }
    if let Some(first) = outcomes.first() {
        for o in &outcomes[1..] {
            let _ = writeln!(
                out,
                "{} vs {}: {} CPU per million lines is {:.1}x {}'s; loss {:.3}% vs {:.3}%",
                first.target.name(),
                o.target.name(),
                o.target.name(),
                o.cpu_per_million() / first.cpu_per_million().max(1e-9),
                first.target.name(),
                first.loss() * 100.0,
                o.loss() * 100.0
            );
        }
    }
    out
}
