//! Starting each target daemon on loopback, pointed at the bench's carbon
//! listener, and reading its CPU time and peak RSS from /proc.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};

use super::{Target, Workload};

/// A UDP port on 127.0.0.1 free at the moment of asking.
pub fn free_udp_port() -> std::io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `target` on loopback, flushing to `carbon` every `flush`.
pub fn spawn(
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
