//! The management interface (Etsy's mgmt_console, port 8126): help, stats,
//! counters, timers, gauges, sets, delcounters, deltimers, delgauges,
//! delsets, health, config, quit, with Etsy's reply shapes and END markers.
//! Unlike Etsy, commands are line-framed (several in one write work), sets
//! and delsets exist, and deletes take glob patterns (`*`, `?`).
//!
//! [`respond`] is a pure function of the command and the agent's state;
//! [`serve`] is the TCP framing around it.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::aggregate::{Aggregator, Dumped, Kind};
use crate::net::accept_loop;
use crate::protocol::number::js_number_string;
use crate::shutdown::Shutdown;
use crate::telemetry::{
    admin_lines, unix_now_rounded, Counter, GraphiteStats, Readings, Telemetry,
};

/// Longest command line accepted.
const MAX_LINE: usize = 64 * 1024;

/// What the admin interface reads.
pub struct AdminContext {
    /// The live aggregates (dumps and deletes).
    pub aggregator: Arc<Aggregator>,
    /// The agent's counters.
    pub telemetry: Arc<Telemetry>,
    /// Etsy's graphiteStats values.
    pub graphite: Arc<GraphiteStats>,
    /// `key: value` lines of the effective configuration.
    pub config_lines: Vec<String>,
    /// When the agent started (uptime).
    pub started: Instant,
    /// The health flag (`health up|down`, HTTP /health).
    pub healthy: Arc<AtomicBool>,
    /// The agent's gauges, for `stats`.
    pub readings: Readings,
}

/// A reply, and whether to close the connection after it.
pub struct Reply {
    /// The reply text.
    pub text: String,
    /// Close the connection after the reply (`quit`).
    pub close: bool,
}

impl Reply {
    fn text(text: String) -> Reply {
        Reply { text, close: false }
    }
}

/// Answers one command line.
pub fn respond(ctx: &AdminContext, line: &str) -> Reply {
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    match command {
        "help" => Reply::text(
            "Commands: stats, counters, timers, gauges, sets, delcounters, deltimers, delgauges, delsets, health, config, quit\n\n"
                .into(),
        ),
        "health" => {
            if let Some(word) = args.first() {
                match word.to_ascii_lowercase().as_str() {
                    "up" => ctx.healthy.store(true, Ordering::Relaxed),
                    "down" => ctx.healthy.store(false, Ordering::Relaxed),
                    _ => {}
                }
            }
            let state = if ctx.healthy.load(Ordering::Relaxed) { "up" } else { "down" };
            Reply::text(format!("health: {state}\n"))
        }
        "stats" => Reply::text(stats(ctx)),
        "counters" => Reply::text(format!("{}\nEND\n\n", inspect(&ctx.aggregator.dump(Kind::Counter)))),
        "timers" => Reply::text(format!("{}\nEND\n\n", inspect(&ctx.aggregator.dump(Kind::Timer)))),
        "gauges" => Reply::text(format!("{}\nEND\n\n", inspect(&ctx.aggregator.dump(Kind::Gauge)))),
        "sets" => Reply::text(format!("{}\nEND\n\n", inspect(&ctx.aggregator.dump(Kind::Set)))),
        "delcounters" => Reply::text(delete(ctx, Kind::Counter, &args)),
        "deltimers" => Reply::text(delete(ctx, Kind::Timer, &args)),
        "delgauges" => Reply::text(delete(ctx, Kind::Gauge, &args)),
        "delsets" => Reply::text(delete(ctx, Kind::Set, &args)),
        "config" => {
            let mut out = String::from("\n");
            for l in &ctx.config_lines {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str("END\n\n");
            Reply::text(out)
        }
        "quit" => Reply {
            text: String::new(),
            close: true,
        },
        _ => Reply::text("ERROR\n".into()),
    }
}

fn stats(ctx: &AdminContext) -> String {
    let now = unix_now_rounded();
    let s = &ctx.telemetry;
    let g = &ctx.graphite;
    let mut out = String::new();
    let load_i = |a: &std::sync::atomic::AtomicI64| a.load(Ordering::Relaxed);
    let load_u = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as i64;
    // Etsy prints every `last_*` stat as seconds since then.
    let lines = [
        ("uptime", ctx.started.elapsed().as_secs() as i64),
        ("messages.last_msg_seen", now - load_i(&s.last_msg_seen)),
        (
            "messages.bad_lines_seen",
            s.total(Counter::BadLinesSeen) as i64,
        ),
        ("graphite.last_flush", now - load_i(&g.last_flush)),
        ("graphite.last_exception", now - load_i(&g.last_exception)),
        ("graphite.flush_time", load_u(&g.flush_time_ms)),
        ("graphite.flush_length", load_u(&g.flush_length)),
    ];
    for (name, value) in lines {
        let _ = writeln!(out, "{name}: {value}");
    }
    for (name, value) in admin_lines(&ctx.telemetry, &(ctx.readings)()) {
        let _ = writeln!(out, "{name}: {}", js_number_string(value));
    }
    out.push_str("END\n\n");
    out
}

fn delete(ctx: &AdminContext, kind: Kind, patterns: &[&str]) -> String {
    let mut out = String::new();
    for pattern in patterns {
        let deleted = ctx.aggregator.delete(kind, &|key| glob_match(pattern, key));
        if deleted.is_empty() {
            let _ = writeln!(out, "metric {pattern} not found");
        }
        for key in deleted {
            let _ = writeln!(out, "deleted: {key}");
        }
    }
    out.push_str("END\n\n");
    out
}

/// `*` matches any run of characters (dots included), `?` one character;
/// everything else matches itself. So Etsy's `a.*` works as before.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Node's `util.inspect` shape for the dumps: `{ key: value, 'a.b': [ 1, 2 ] }`,
/// one entry per line when it would not fit in 80 columns.
pub fn inspect(entries: &[(String, Dumped)]) -> String {
    if entries.is_empty() {
        return "{}".into();
    }
    let rendered: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}: {}", inspect_key(k), inspect_value(v)))
        .collect();
    let width: usize = rendered.iter().map(|r| r.len() + 2).sum::<usize>() + 4;
    if width <= 76 && !rendered.iter().any(|r| r.contains('\n')) {
        format!("{{ {} }}", rendered.join(", "))
    } else {
        format!("{{\n  {}\n}}", rendered.join(",\n  "))
    }
}

fn inspect_key(key: &str) -> String {
    let identifier = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if identifier {
        key.to_string()
    } else {
        format!("'{}'", key.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

fn inspect_value(v: &Dumped) -> String {
    match v {
        Dumped::Number(n) => js_number_string(*n),
        Dumped::Numbers(ns) if ns.is_empty() => "[]".into(),
        Dumped::Numbers(ns) => {
            let items: Vec<String> = ns.iter().map(|n| js_number_string(*n)).collect();
            format!("[ {} ]", items.join(", "))
        }
        Dumped::Summary(n) => format!("'<{n} values in a histogram>'"),
        Dumped::Strings(ss) if ss.is_empty() => "[]".into(),
        Dumped::Strings(ss) => {
            let items: Vec<String> = ss.iter().map(|s| inspect_key_string(s)).collect();
            format!("[ {} ]", items.join(", "))
        }
    }
}

fn inspect_key_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Serves the admin interface until `shutdown`.
pub async fn serve(listener: TcpListener, ctx: Arc<AdminContext>, shutdown: Shutdown) {
    accept_loop("admin", &listener, shutdown.clone(), |stream, _| {
        let ctx = ctx.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(read);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let mut limited = (&mut reader).take(MAX_LINE as u64 + 1);
                let read = tokio::select! {
                    read = limited.read_until(b'\n', &mut buf) => read,
                    _ = stop.wait() => break,
                };
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) if buf.len() > MAX_LINE => break,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&buf);
                let reply = respond(&ctx, line.trim());
                if write.write_all(reply.text.as_bytes()).await.is_err() || reply.close {
                    break;
                }
            }
        });
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        // Etsy's delete vectors over {a.b, a.c, c}.
        let keys = ["a.b", "a.c", "c"];
        let hits =
            |p: &str| -> Vec<&str> { keys.iter().copied().filter(|k| glob_match(p, k)).collect() };
        assert_eq!(hits("d"), Vec::<&str>::new());
        assert_eq!(hits("a"), Vec::<&str>::new());
        assert_eq!(hits("c.*"), Vec::<&str>::new());
        assert_eq!(hits("a.b"), vec!["a.b"]);
        assert_eq!(hits("c"), vec!["c"]);
        assert_eq!(hits("a.*"), vec!["a.b", "a.c"]);
        assert_eq!(hits("?.?"), vec!["a.b", "a.c"]);
        assert_eq!(hits("*"), vec!["a.b", "a.c", "c"]);
    }

    #[test]
    fn inspect_shapes() {
        assert_eq!(inspect(&[]), "{}");
        assert_eq!(
            inspect(&[("lat".into(), Dumped::Numbers(vec![]))]),
            "{ lat: [] }"
        );
        assert_eq!(
            inspect(&[
                ("statsd.timestamp_lag".into(), Dumped::Number(0.0)),
                ("temp".into(), Dumped::Number(55.0))
            ]),
            "{ 'statsd.timestamp_lag': 0, temp: 55 }"
        );
        let long: Vec<(String, Dumped)> = (0..6)
            .map(|i| (format!("statsd.metric_{i}"), Dumped::Number(0.0)))
            .collect();
        assert!(inspect(&long).starts_with("{\n  'statsd.metric_0': 0,\n"));
    }
}
