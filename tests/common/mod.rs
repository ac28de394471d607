//! Test harness: the real `sluice` binary on loopback, a real TCP listener
//! standing in for carbon that captures every line, and helpers to send
//! real datagrams. Shared by the end-to-end and parity tests.
#![allow(dead_code)]

pub mod carbon_cache;
pub mod graphite_web;
pub mod http;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A TCP listener on 127.0.0.1 that collects the lines of every connection
/// and groups them into flushes (a flush ends with Etsy's last line,
/// `graphiteStats.flush_length`).
pub struct CarbonCapture {
    pub addr: SocketAddr,
    lines: Receiver<String>,
    partial: Vec<String>,
}

impl CarbonCapture {
    pub fn start() -> CarbonCapture {
        Self::on(TcpListener::bind("127.0.0.1:0").expect("bind capture"))
    }

    pub fn on(listener: TcpListener) -> CarbonCapture {
        let addr = listener.local_addr().expect("capture addr");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines() {
                        let Ok(line) = line else { return };
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        CarbonCapture {
            addr,
            lines: rx,
            partial: Vec::new(),
        }
    }

    /// The next complete flush, or panics after `timeout`.
    pub fn next_flush(&mut self, timeout: Duration) -> Flush {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let end = line.contains("graphiteStats.flush_length");
                    self.partial.push(line);
                    if end {
                        return Flush::parse(std::mem::take(&mut self.partial));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no flush within {timeout:?}; partial: {:?}", self.partial)
                }
                Err(RecvTimeoutError::Disconnected) => panic!("capture closed"),
            }
        }
    }

    /// Flushes until one has a line named `name`.
    pub fn flush_with(&mut self, name: &str, timeout: Duration) -> Flush {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let flush = self.next_flush(left);
            if flush.get(name).is_some() {
                return flush;
            }
        }
    }

    /// Every line received so far and within `wait`, flush or not.
    pub fn drain_lines(&mut self, wait: Duration) -> Vec<String> {
        let mut out = std::mem::take(&mut self.partial);
        let deadline = Instant::now() + wait;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            out.push(line);
        }
        out
    }
}

/// One flush: (name, value text, timestamp) in arrival order.
#[derive(Debug, Clone)]
pub struct Flush {
    pub lines: Vec<(String, String, i64)>,
}

impl Flush {
    pub fn parse(raw: Vec<String>) -> Flush {
        let lines = raw
            .iter()
            .map(|l| {
                let mut parts = l.rsplitn(3, ' ');
                let ts = parts.next().and_then(|t| t.parse().ok()).unwrap_or(-1);
                let value = parts.next().unwrap_or_default().to_string();
                let name = parts.next().unwrap_or_default().to_string();
                (name, value, ts)
            })
            .collect();
        Flush { lines }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| v.as_str())
    }

    /// The value of `name` as a number; panics with the flush if missing.
    pub fn value(&self, name: &str) -> f64 {
        match self.get(name) {
            Some(v) => v.parse().unwrap_or_else(|_| panic!("{name} = {v:?}")),
            None => panic!("{name} missing from flush:\n{}", self.dump()),
        }
    }

    pub fn names(&self) -> Vec<&str> {
        self.lines.iter().map(|(n, _, _)| n.as_str()).collect()
    }

    pub fn dump(&self) -> String {
        let mut lines: Vec<String> = self
            .lines
            .iter()
            .map(|(n, v, _)| format!("{n} {v}"))
            .collect();
        lines.sort();
        lines.join("\n")
    }
}

/// The real sluice binary, started with test flags.
pub struct Sluice {
    pub child: Child,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
}

impl Sluice {
    /// Starts sluice on 127.0.0.1 port 0 (UDP and TCP) with `extra` flags
    /// and waits until it logs its bound addresses.
    pub fn start(extra: &[&str]) -> Sluice {
        Self::start_with_env(extra, &[])
    }

    /// As `start`, with extra environment variables.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Sluice {
        Self::start_limited(extra, env, None)
    }

    /// As `start_with_env`, with the descriptor limit set to `nofile`.
    pub fn start_limited(extra: &[&str], env: &[(&str, &str)], nofile: Option<u64>) -> Sluice {
        let mut cmd = Command::new(binary());
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches only the
            // child between fork and exec; the struct lives on its stack.
            unsafe {
                cmd.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        cmd.envs(env.iter().copied());
        // Fixed addresses in `extra` (a restart on the same ports) replace
        // the port-0 defaults.
        if !extra.contains(&"--udp") {
            cmd.args(["--udp", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--tcp") {
            cmd.args(["--tcp", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--admin") {
            cmd.args(["--admin", ""]);
        }
        cmd.args(extra)
            .env("RUST_LOG", "sluice=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn sluice");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = channel();
        let log_writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                let _ = tx.send(line.clone());
                if let Ok(mut l) = log_writer.lock() {
                    l.push(line);
                }
            }
        });
        let (mut udp, mut tcp, mut admin) = (None, None, None);
        let want_admin = extra.contains(&"--admin");
        let deadline = Instant::now() + Duration::from_secs(20);
        while udp.is_none() || tcp.is_none() || (want_admin && admin.is_none()) {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("sluice did not report its addresses"));
            if line.contains("listening") {
                let addr = line
                    .split("addr=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|a| a.parse::<SocketAddr>().ok());
                if line.contains("protocol=\"udp\"") {
                    udp = addr;
                } else if line.contains("protocol=\"tcp\"") {
                    tcp = addr;
                } else if line.contains("protocol=\"admin\"") {
                    admin = addr;
                }
            }
        }
        Sluice {
            child,
            udp: udp.unwrap_or_else(|| unreachable!()),
            tcp: tcp.unwrap_or_else(|| unreachable!()),
            admin,
            log,
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("sluice did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address logged as `listening protocol="<protocol>"`, if any.
    pub fn logged_addr(&self, protocol: &str) -> Option<SocketAddr> {
        let needle = format!("protocol=\"{protocol}\"");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .log_text()
                .lines()
                .find(|l| l.contains("listening") && l.contains(&needle))
                .and_then(|l| {
                    l.split("addr=")
                        .nth(1)?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                });
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The datagrams of the worked example in specs/etsy-statsd.md 12.1: every
/// type at once, with sample rates, deltas, bad lines and tags.
pub const SPEC_EXAMPLE: &[&[u8]] = &[
    b"hits:1|c\nhits:2|c|@0.5\nhits:3|c",
    b"err:1|c|@0.1",
    b"lat:100|ms\nlat:200|ms\nlat:300|ms|@0.5\nlat:50|ms",
    b"lat:400|ms:120|ms\n\n",
    b"temp:50|g\ntemp:+10|g\ntemp:-5|g",
    b"neg:-3|g",
    b"users:alice|s\nusers:bob|s\nusers:alice|s\n",
    b"nocolon|c\nbad:abc|c\nnegtimer:-1|ms",
    b"odd:5|c",
    b"my key/with+junk:1|c",
    b"tagged:1|c|#env:prod,region:eu",
];

/// sluice without the whisper store, flushing every second to `capture`,
/// with `extra` flags.
pub fn start_flushing_to(capture: &CarbonCapture, extra: &[&str]) -> Sluice {
    let carbon = capture.addr.to_string();
    let mut args = vec![
        "--no-whisper",
        "--flush-interval",
        "1s",
        "--carbon",
        &carbon,
    ];
    args.extend_from_slice(extra);
    Sluice::start(&args)
}

/// [`start_flushing_to`] a fresh capturing carbon listener, with `config`
/// (TOML) written to `dir` as its config file.
pub fn start_captured(dir: &Path, config: &str, extra: &[&str]) -> (Sluice, CarbonCapture) {
    let capture = CarbonCapture::start();
    let path = write_file(dir, "sluice.toml", config);
    let path_text = path.to_str().expect("utf-8 path").to_string();
    let mut args = vec!["--config", path_text.as_str()];
    args.extend_from_slice(extra);
    (start_flushing_to(&capture, &args), capture)
}

/// Sends each datagram to `to` from a fresh loopback socket.
pub fn send_udp(to: SocketAddr, datagrams: &[&[u8]]) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    for d in datagrams {
        socket.send_to(d, to).expect("send datagram");
    }
}

/// Writes `pieces` to one TCP connection, pausing between them so each is
/// a separate read on the other side, then closes it.
pub fn send_tcp(to: SocketAddr, pieces: &[&[u8]]) {
    let mut stream = TcpStream::connect(to).expect("connect");
    stream.set_nodelay(true).ok();
    for p in pieces {
        stream.write_all(p).expect("write");
        stream.flush().ok();
        std::thread::sleep(Duration::from_millis(50));
    }
    stream.shutdown(std::net::Shutdown::Write).ok();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
}

pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// A loopback port that was free a moment ago (for peers that cannot bind
/// port 0 and report it).
/// A port free on 127.0.0.1 for both UDP and TCP, for peers that need a
/// port number before they start (carbon-cache, Etsy, collectd...). It is
/// taken below Linux's ephemeral range (32768-60999), which is where every
/// `bind(port 0)` of the tests running beside gets its port, so those can
/// never take it between this call and the peer's bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    for _ in 0..2000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(n.wrapping_mul(7919)) % 12_000) as u16;
        let udp = UdpSocket::bind(("127.0.0.1", port));
        let tcp = TcpListener::bind(("127.0.0.1", port));
        if udp.is_ok() && tcp.is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

/// [`store_config`] for a store at `dir/whisper` kept one hour at 1 s,
/// with the HTTP API on a loopback port of the kernel's choosing.
pub fn store_and_http_config(dir: &Path) -> PathBuf {
    store_config(
        dir,
        &dir.join("whisper"),
        "1s:1h",
        "[http]\naddress = \"127.0.0.1:0\"\n",
    )
}

/// A sluice config file in `dir` writing the whisper store at `store`
/// with one schema for every metric (`retentions`), plus `extra` TOML.
pub fn store_config(dir: &Path, store: &Path, retentions: &str, extra: &str) -> PathBuf {
    let schemas = write_file(
        dir,
        "schemas.conf",
        &format!("[all]\npattern = .*\nretentions = {retentions}\n"),
    );
    write_file(
        dir,
        "sluice.toml",
        &format!(
            "[whisper]\ndir = {:?}\nschemas = {:?}\n{extra}",
            store.to_str().unwrap(),
            schemas.to_str().unwrap()
        ),
    )
}
