//! Starting each target daemon on loopback, pointed at the bench's carbon
//! listener, and reading its CPU time and peak RSS from /proc.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};

use super::{Target, Workload};

/// A UDP port on 127.0.0.1 free at the moment of asking.
pub fn free_udp_port() -> std::io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `target` on loopback, listening on `port` and (itself or the
/// aggregator behind it) flushing to `carbon` every `flush`. The first
/// process is the one measured; a proxy's aggregator follows it.
pub fn spawn(
    target: Target,
    port: u16,
    carbon: SocketAddr,
    w: &Workload,
    dir: &std::path::Path,
) -> std::io::Result<Vec<Child>> {
    match target {
        Target::SluiceProxy | Target::EtsyProxy => {
            let backend = free_udp_port()?;
            let admin = free_udp_port()?;
            let aggregator = spawn_daemon(Target::Sluice, backend, carbon, w, dir, Some(admin))?;
            let proxy = spawn_proxy(target, port, (backend, admin), w, dir)?;
            Ok(vec![proxy, aggregator])
        }
        _ => Ok(vec![spawn_daemon(target, port, carbon, w, dir, None)?]),
    }
}

fn quiet(c: &mut Command) {
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
}

/// A proxy on `port` forwarding to the aggregator at `backend`
/// (StatsD port, admin port).
fn spawn_proxy(
    target: Target,
    port: u16,
    backend: (u16, u16),
    w: &Workload,
    dir: &std::path::Path,
) -> std::io::Result<Child> {
    let (statsd, admin) = backend;
    if target == Target::EtsyProxy {
        let config = dir.join("proxy.js");
        let mgmt = free_udp_port()?;
        std::fs::write(
            &config,
            format!(
                "{{ nodes: [{{host: \"127.0.0.1\", port: {statsd}, adminport: {admin}}}], \
                 server: \"./servers/udp\", host: \"127.0.0.1\", port: {port}, udp_version: \"udp4\", \
                 mgmt_address: \"127.0.0.1\", mgmt_port: {mgmt}, forkCount: 0, checkInterval: 1000, cacheSize: 10000 }}"
            ),
        )?;
        let proxy_js = w
            .etsy_stats_js
            .parent()
            .map(|d| d.join("proxy.js"))
            .unwrap_or_else(|| "proxy.js".into());
        let mut c = Command::new("node");
        c.arg(proxy_js).arg(&config);
        quiet(&mut c);
        return c.spawn();
    }
    let mut c = Command::new(std::env::current_exe()?);
    c.args([
        "--udp",
        &format!("127.0.0.1:{port}"),
        "--admin",
        "",
        "--log-level",
        "warn",
        "proxy",
        "--backend",
        &format!("127.0.0.1:{statsd}:{admin}"),
    ]);
    quiet(&mut c);
    c.spawn()
}

fn spawn_daemon(
    target: Target,
    port: u16,
    carbon: SocketAddr,
    w: &Workload,
    dir: &std::path::Path,
    admin: Option<u16>,
) -> std::io::Result<Child> {
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
                &admin.map(|a| format!("127.0.0.1:{a}")).unwrap_or_default(),
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
        Target::Brubeck => {
            let bin = w
                .brubeck
                .as_ref()
                .ok_or_else(|| std::io::Error::other("the brubeck target needs --brubeck PATH"))?;
            // Its receive threads as many as the cores, one SO_REUSEPORT
            // socket each, 64 datagrams per recvmmsg; no HTTP endpoint.
            let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
            let config = dir.join("brubeck.json");
            std::fs::write(
                &config,
                serde_json::json!({
                    "sharding": false,
                    "server_name": "bench",
                    "dumpfile": dir.join("brubeck.dump"),
                    "capacity": 20,
                    "expire": 0,
                    "backends": [{
                        "type": "carbon",
                        "address": "127.0.0.1",
                        "port": carbon.port(),
                        "frequency": w.flush.as_secs().max(1),
                    }],
                    "samplers": [{
                        "type": "statsd",
                        "address": "127.0.0.1",
                        "port": port,
                        "workers": workers,
                        "multisock": true,
                        "multimsg": 64,
                    }],
                })
                .to_string(),
            )?;
            let mut c = Command::new(bin);
            c.arg("--config").arg(&config);
            quiet(&mut c);
            c.spawn()
        }
        Target::Statsite => {
            let bin = w.statsite.as_ref().ok_or_else(|| {
                std::io::Error::other("the statsite target needs --statsite PATH")
            })?;
            // statsite pipes each flush (`key|value|timestamp` lines) to a
            // command; its own graphite sink is Python 2, so the bench
            // writes a Python 3 one that sends the lines to the listener.
            let sink = dir.join("statsite_sink.py");
            std::fs::write(
                &sink,
                "import socket, sys\n\
                 out = socket.create_connection((sys.argv[1], int(sys.argv[2])))\n\
                 out.sendall(''.join(l.replace('|', ' ') for l in sys.stdin).encode())\n\
                 out.close()\n",
            )?;
            let tcp = free_tcp_port()?;
            let config = dir.join("statsite.ini");
            std::fs::write(
                &config,
                format!(
                    "[statsite]\nbind_address = 127.0.0.1\ntcp_port = {tcp}\nudp_port = {port}\n\
                     udp_rcvbuf = 8388608\nflush_interval = {}\nlog_level = WARN\n\
                     stream_cmd = python3 {} 127.0.0.1 {}\n",
                    w.flush.as_secs().max(1),
                    sink.display(),
                    carbon.port()
                ),
            )?;
            let mut c = Command::new(bin);
            c.arg("-f").arg(&config);
            quiet(&mut c);
            c.spawn()
        }
        Target::SluiceProxy | Target::EtsyProxy => {
            Err(std::io::Error::other("a proxy is not a daemon"))
        }
    }
}

/// A TCP port on 127.0.0.1 free at the moment of asking.
fn free_tcp_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// CPU seconds (user + system) and peak RSS (KiB) of a process, from /proc.
pub fn process_usage(pid: u32) -> (f64, u64) {
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
