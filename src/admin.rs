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
/// Admin connections served at once; more are told so and closed.
pub const MAX_CONNECTIONS: usize = 16;

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
    /// Held while a command runs: one dump or delete at a time.
    pub heavy: std::sync::Mutex<()>,
    /// The live tap (`tap PATTERN`).
    pub tap: Arc<crate::tap::Tap>,
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
            "Commands: stats, counters, timers, gauges, sets, delcounters, deltimers, delgauges, delsets, health, config, tap PATTERN, quit\n\n"
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
        "counters" | "timers" | "gauges" | "sets" => {
            let mut text = String::new();
            if let Some(kind) = dump_kind(command) {
                stream_dump(&ctx.aggregator, kind, &mut |chunk| {
                    text.push_str(&chunk);
                    true
                });
            }
            Reply::text(text)
        }
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
    // Who runs into the series caps (refused samples since start).
    for (prefix, n) in ctx.aggregator.top_refused_prefixes(10) {
        let _ = writeln!(out, "sluice.series_refused_by_prefix.{prefix}: {n}");
    }
    out.push_str("END\n\n");
    out
}

fn delete(ctx: &AdminContext, kind: Kind, patterns: &[&str]) -> String {
    let mut out = String::new();
    for pattern in patterns {
        let Some(glob) = Glob::new(pattern) else {
            let _ = writeln!(
                out,
                "ERROR pattern too complex: {} characters",
                pattern.len()
            );
            continue;
        };
        let deleted = ctx.aggregator.delete(kind, &|key| glob.matches(key));
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

/// A delete pattern: `*` matches any run of characters (dots included),
/// `?` one character, everything else itself, so Etsy's `a.*` works as
/// before. Compiled once to a regular expression, which matches in time
/// linear in the key, whatever the pattern (a 32,000-character glob held
/// the shard locks for 10 s with the backtracking matcher).
pub struct Glob(regex::Regex);

impl Glob {
    /// Compiles `pattern`; None when it is too big to compile.
    pub fn new(pattern: &str) -> Option<Glob> {
        let mut re = String::with_capacity(pattern.len() * 2 + 8);
        re.push_str("^(?s:");
        for c in pattern.chars() {
            match c {
                '*' => re.push_str(".*"),
                '?' => re.push('.'),
                c => re.push_str(&regex::escape(c.encode_utf8(&mut [0u8; 4]))),
            }
        }
        re.push_str(")$");
        regex::RegexBuilder::new(&re)
            .size_limit(64 << 20)
            .build()
            .ok()
            .map(Glob)
    }

    /// Whether `key` matches.
    pub fn matches(&self, key: &str) -> bool {
        self.0.is_match(key)
    }
}

/// `pattern` matches `text` (see [`Glob`]).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    Glob::new(pattern).is_some_and(|g| g.matches(text))
}

/// The kind a dump command dumps.
fn dump_kind(command: &str) -> Option<Kind> {
    Some(match command {
        "counters" => Kind::Counter,
        "timers" => Kind::Timer,
        "gauges" => Kind::Gauge,
        "sets" => Kind::Set,
        _ => return None,
    })
}

/// Widest dump printed on one line, as Node's `util.inspect` decides.
const ONE_LINE_WIDTH: usize = 76;

/// A dump in [`inspect`]'s shape (`END` included), handed to `send` a
/// shard at a time so a dump of millions of keys is never whole in
/// memory; stops when `send` returns false (the client left). Small dumps
/// keep the one-line form; a streamed dump is sorted within each shard.
pub fn stream_dump(aggregator: &Aggregator, kind: Kind, send: &mut dyn FnMut(String) -> bool) {
    let mut held: Vec<String> = Vec::new();
    let mut width = 4;
    let mut streaming = false;
    let mut open = true;
    aggregator.dump_each(kind, &mut |entries| {
        let mut chunk = String::new();
        for (k, v) in &entries {
            let rendered = format!("{}: {}", inspect_key(k), inspect_value(v));
            if streaming {
                chunk.push_str(",\n  ");
                chunk.push_str(&rendered);
                continue;
            }
            width += rendered.len() + 2;
            let multi_line = rendered.contains('\n');
            held.push(rendered);
            if width > ONE_LINE_WIDTH || multi_line {
                streaming = true;
                chunk.push_str("{\n  ");
                chunk.push_str(&held.join(",\n  "));
                held.clear();
            }
        }
        open = chunk.is_empty() || send(chunk);
        open
    });
    if !open {
        return;
    }
    let end = if streaming {
        "\n}\nEND\n\n".to_string()
    } else if held.is_empty() {
        "{}\nEND\n\n".to_string()
    } else {
        format!("{{ {} }}\nEND\n\n", held.join(", "))
    };
    send(end);
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

/// Writes tapped lines to `write` as they come, and every second how many
/// a slow reader missed, until the client sends anything, goes away or
/// the agent stops.
async fn stream_tap<R, W>(
    mut sub: crate::tap::Subscription,
    reader: &mut R,
    write: &mut W,
    stop: &mut Shutdown,
) where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut byte = [0u8; 1];
    loop {
        let out: Vec<u8> = tokio::select! {
            line = sub.lines.recv() => match line {
                Some(line) => [&line[..], b"\n"].concat(),
                None => return,
            },
            _ = tick.tick() => match sub.take_missed() {
                0 => continue,
                n => format!("# missed {n} lines (reading too slowly)\n").into_bytes(),
            },
            _ = reader.read(&mut byte) => return,
            _ = stop.wait() => return,
        };
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// Serves the admin interface until `shutdown`.
pub async fn serve(listener: TcpListener, ctx: Arc<AdminContext>, shutdown: Shutdown) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut refusals = crate::telemetry::LogLimit::per_second();
    accept_loop("admin", &listener, shutdown.clone(), |mut stream, peer| {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if let Some(suppressed) = refusals.ready() {
                tracing::warn!(%peer, limit = MAX_CONNECTIONS, suppressed, "admin connection refused: too many open");
            }
            tokio::spawn(async move {
                let _ = stream.write_all(b"ERROR too many admin connections\n").await;
            });
            return;
        };
        let ctx = ctx.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
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
                let line = String::from_utf8_lossy(&buf).trim().to_string();
                if let Some(pattern) = line.strip_prefix("tap ") {
                    let Some(sub) = ctx.tap.subscribe(pattern.trim()) else {
                        let _ = write.write_all(b"ERROR pattern too complex\n").await;
                        continue;
                    };
                    // Until the client sends anything or goes away.
                    stream_tap(sub, &mut reader, &mut write, &mut stop).await;
                    break;
                }
                if let Some(kind) = dump_kind(line.split_whitespace().next().unwrap_or("")) {
                    // Streamed: a shard's text at a time through a small
                    // channel, written while the next shard is read.
                    let (chunks, mut received) = tokio::sync::mpsc::channel::<String>(2);
                    let worker = ctx.clone();
                    let dumping = tokio::task::spawn_blocking(move || {
                        let _one = worker.heavy.lock();
                        stream_dump(&worker.aggregator, kind, &mut |chunk| {
                            chunks.blocking_send(chunk).is_ok()
                        });
                    });
                    let mut failed = false;
                    while let Some(chunk) = received.recv().await {
                        if write.write_all(chunk.as_bytes()).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    drop(received);
                    if dumping.await.is_err() || failed {
                        break;
                    }
                    continue;
                }
                // Deletes walk every shard: off the runtime's workers, and
                // one at a time, so neither the flush nor the other
                // listeners wait on an admin client.
                let worker = ctx.clone();
                let heavy = matches!(
                    line.split_whitespace().next().unwrap_or(""),
                    "delcounters" | "deltimers" | "delgauges" | "delsets"
                );
                let reply = match tokio::task::spawn_blocking(move || {
                    let _one = heavy.then(|| worker.heavy.lock());
                    respond(&worker, &line)
                })
                .await
                {
                    Ok(reply) => reply,
                    Err(_) => break,
                };
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
