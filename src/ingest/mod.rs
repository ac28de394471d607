//! Ingest: sockets and framing (`udp`, `tcp`), and the glue that turns a
//! packet's lines into shard updates ([`PacketParser`]). ingest knows
//! nothing of Graphite names.

pub mod tcp;
pub mod udp;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::aggregate::{Aggregator, ShardBatch};
use crate::protocol::statsd::{
    packet_lines, parse_event, parse_line, BadSample, Line, PacketLine, TagStyle,
};
use crate::store::events::EventLog;
use crate::tap::Tap;
use crate::telemetry::{unix_now_rounded, BatchTally, Counter, Telemetry};

/// What a receiver does with the packets it reads: the agent aggregates
/// them ([`Aggregating`]), the proxy forwards them. One receive loop per
/// transport serves both.
pub trait Packets: Send + 'static {
    /// One packet: a datagram, or the complete lines of a TCP read.
    fn packet(&mut self, packet: &[u8]);
    /// The end of a receive batch: publish what the batch held.
    fn commit(&mut self);
    /// Where the receive loops count refusals, over-long lines and drops.
    fn telemetry(&self) -> &Telemetry;
}

/// The agent's receivers: packets parsed into shard updates.
pub struct Aggregating {
    ctx: Arc<IngestContext>,
    parser: PacketParser,
    per_protocol: Counter,
}

impl Aggregating {
    /// A receiver's state over the shared context; its lines are also
    /// counted in `per_protocol` (lines_udp, lines_tcp, lines_unix).
    pub fn new(ctx: Arc<IngestContext>, per_protocol: Counter) -> Aggregating {
        Aggregating {
            ctx,
            parser: PacketParser::default(),
            per_protocol,
        }
    }
}

impl Packets for Aggregating {
    fn packet(&mut self, packet: &[u8]) {
        self.parser.packet(&self.ctx, packet);
    }

    fn commit(&mut self) {
        self.ctx
            .telemetry
            .add(self.per_protocol, self.parser.tally.lines);
        self.parser.commit(&self.ctx);
    }

    fn telemetry(&self) -> &Telemetry {
        &self.ctx.telemetry
    }
}

/// What every receiver shares.
pub struct IngestContext {
    /// Where samples go.
    pub aggregator: Arc<Aggregator>,
    /// Where tallies go.
    pub telemetry: Arc<Telemetry>,
    /// Etsy's keyNameSanitize.
    pub sanitize_keys: bool,
    /// How tags join the name (flush.tag_style).
    pub tag_style: TagStyle,
    /// Where DogStatsD events go; `None`: dropped and counted.
    pub events: Option<Arc<EventLog>>,
    /// The live tap (admin `tap`, the page); `None`: never tapped.
    pub tap: Option<Arc<Tap>>,
}

/// Per-receiver parsing state, reused from batch to batch.
#[derive(Default)]
pub struct PacketParser {
    batch: ShardBatch,
    tally: BatchTally,
    bad_log: LogLimiter,
}

impl PacketParser {
    /// Records a DogStatsD event line, or counts it dropped or bad.
    fn event(&mut self, ctx: &IngestContext, raw: &[u8]) {
        let Some(log) = &ctx.events else {
            self.tally.events += 1;
            return;
        };
        match parse_event(raw) {
            Ok(e) => {
                let mut tags: Vec<String> = e.tags.iter().map(|t| t.to_string()).collect();
                if let Some(host) = e.host {
                    tags.push(format!("host:{host}"));
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                log.add(e.timestamp, e.title, &e.text, tags, now);
                self.tally.events_recorded += 1;
            }
            Err(why) => {
                self.tally.bad_lines += 1;
                self.bad_log.bad_line(raw, &why);
            }
        }
    }

    /// Parses one packet (a datagram, or the complete lines of a TCP read)
    /// into the pending batch.
    pub fn packet(&mut self, ctx: &IngestContext, packet: &[u8]) {
        self.tally.packets += 1;
        // One relaxed load per packet when nobody watches.
        let tap = ctx.tap.as_deref().filter(|t| t.is_active());
        for item in packet_lines(packet) {
            self.tally.lines += 1;
            let (line, plain) = match item {
                PacketLine::Plain {
                    line,
                    key,
                    from_key,
                    sample,
                    has_semicolon,
                } => {
                    // Graphite style sorts the `;k=v` tags a key may carry
                    // itself: the general parser does that.
                    let fast = !has_semicolon || ctx.tag_style == TagStyle::Etsy;
                    (line, fast.then_some((from_key, key.len(), sample)))
                }
                PacketLine::Other(line) => (line, None),
            };
            if let Some(tap) = tap {
                tap.offer(line);
            }
            if let Some((from_key, len, sample)) = plain {
                self.batch
                    .push_plain(&ctx.aggregator, from_key, len, &sample);
                continue;
            }
            let metric = match parse_line(line) {
                Line::Metric(m) => m,
                Line::Event(raw) => {
                    self.event(ctx, raw);
                    continue;
                }
                Line::ServiceCheck => {
                    self.tally.events += 1;
                    continue;
                }
            };
            // An unknown type means a garbled line (statsd-ruby 1.4's TCP
            // lines run together as `a:1|cb:2|g`): none of it is trusted.
            if metric
                .samples()
                .any(|s| matches!(s, Err(BadSample::UnknownType)))
            {
                self.tally.bad_lines += 1;
                self.bad_log.bad_line(line, &BadSample::UnknownType);
                continue;
            }
            let key = self.batch.add_key(&ctx.aggregator, |arena| {
                metric.write_key_as(arena, ctx.sanitize_keys, ctx.tag_style)
            });
            let mut pushed = false;
            for sample in metric.samples() {
                match sample {
                    Ok(sample) => {
                        self.batch.push(key, &sample);
                        pushed = true;
                    }
                    Err(why) => {
                        self.tally.bad_lines += 1;
                        self.bad_log.bad_line(line, &why);
                    }
                }
            }
            if !pushed {
                self.batch.drop_key(key);
            }
        }
    }

    /// Applies the pending batch to the shards and publishes the tallies.
    pub fn commit(&mut self, ctx: &IngestContext) {
        self.batch.commit(&ctx.aggregator);
        if self.tally.packets > 0 {
            ctx.telemetry.add_tally(&self.tally);
            ctx.telemetry
                .last_msg_seen
                .store(unix_now_rounded(), Ordering::Relaxed);
        }
        self.tally = BatchTally::default();
    }
}

/// Logs bad lines at debug level, at most once a second per receiver, with
/// the number left unlogged in between.
#[derive(Default)]
pub struct LogLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    fn bad_line(&mut self, line: &[u8], why: &dyn std::fmt::Display) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        let shown = &line[..line.len().min(200)];
        tracing::debug!(
            line = %String::from_utf8_lossy(shown),
            reason = %why,
            not_logged_since_last = self.suppressed,
            "bad line skipped"
        );
        self.last = Some(now);
        self.suppressed = 0;
    }
}
