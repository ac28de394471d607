//! Criterion benches of the hot path and the flush:
//! - parse: lines/s and bytes/s over realistic mixed StatsD packets;
//! - shard_update: parse + apply to the shards at 20 K and 1 M live keys;
//! - flush: turning 100 K and 1 M counter series into a carbon payload.
//!
//! Run: cargo bench --bench hot_path

mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::aggregate::flush::Flusher;
use sluice::ingest::{IngestContext, PacketParser};
use sluice::protocol::carbon::{write_line_with, LineTail};
use sluice::protocol::statsd::{lines, parse_line, Line};

/// Datagrams of 25 lines: 70% counters (some sampled), 15% timers, 10%
/// gauges, 5% sets, over `keys` distinct keys.
fn packets(keys: usize, count: usize) -> Vec<Vec<u8>> {
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let mut p = String::new();
            for _ in 0..25 {
                let k = next() as usize % keys;
                let roll = next() % 100;
                let line = match roll {
                    0..=49 => format!("app.service{}.requests.count:1|c\n", k),
                    50..=69 => format!("app.service{}.bytes:{}|c|@0.5\n", k, next() % 5000),
                    70..=84 => format!(
                        "app.service{}.latency:{}.{}|ms\n",
                        k,
                        next() % 900,
                        next() % 10
                    ),
                    85..=94 => format!("app.service{}.queue:{}|g\n", k, next() % 100),
                    _ => format!("app.service{}.users:u{}|s\n", k, next() % 1000),
                };
                p.push_str(&line);
            }
            p.into_bytes()
        })
        .collect()
}

fn bench_parse(c: &mut Criterion) {
    let data = packets(10_000, 1000);
    let bytes: usize = data.iter().map(Vec::len).sum();
    let lines_total: usize = data.iter().map(|p| lines(p).count()).sum();
    let mut group = c.benchmark_group("parse");
    let parse_all = |key: &mut Vec<u8>| {
        let mut n = 0usize;
        for p in &data {
            for line in lines(p) {
                if let Line::Metric(m) = parse_line(line) {
                    key.clear();
                    m.write_key(key, true);
                    n += m.samples().filter(|s| s.is_ok()).count();
                }
            }
        }
        n
    };
    // The same work measured two ways: bytes/s and lines/s.
    for (name, throughput) in [
        ("mixed_bytes", Throughput::Bytes(bytes as u64)),
        ("mixed_lines", Throughput::Elements(lines_total as u64)),
    ] {
        group.throughput(throughput);
        group.bench_function(name, |b| {
            let mut key = Vec::with_capacity(256);
            b.iter(|| parse_all(&mut key))
        });
    }
    group.finish();
}

/// Parses `packets` and commits every 32 of them: one receive batch, as
/// the UDP receiver does.
fn feed(parser: &mut PacketParser, ctx: &IngestContext, packets: &[Vec<u8>]) {
    for batch in packets.chunks(32) {
        for p in batch {
            parser.packet(ctx, p);
        }
        parser.commit(ctx);
    }
}

fn bench_shard_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("shard_update");
    group.sample_size(20);
    for keys in [20_000usize, 1_000_000] {
        let ctx = support::ingest_context(&support::config());
        // Populate every key first so the bench measures known keys.
        let mut parser = PacketParser::default();
        for chunk in (0..keys).collect::<Vec<_>>().chunks(25) {
            let mut p = String::new();
            for k in chunk {
                p.push_str(&format!("app.service{k}.requests.count:1|c\n"));
            }
            parser.packet(&ctx, p.as_bytes());
            parser.commit(&ctx);
        }
        let counters: Vec<Vec<u8>> = {
            let mut out = Vec::new();
            let mut k = 0usize;
            for _ in 0..2000 {
                let mut p = String::new();
                for _ in 0..25 {
                    k = (k + 7919) % keys;
                    p.push_str(&format!("app.service{k}.requests.count:1|c\n"));
                }
                out.push(p.into_bytes());
            }
            out
        };
        // Keys of up to 30 bytes, as `sluice bench` sends and most StatsD
        // keys are, are stored inline; these 31-byte ones are not.
        let short: Vec<Vec<u8>> = counters
            .iter()
            .map(|p| {
                String::from_utf8_lossy(p)
                    .replace("app.service", "app.svc")
                    .into_bytes()
            })
            .collect();
        // Known keys, so the bench measures updates, not creation.
        feed(&mut parser, &ctx, &short);
        let mixed = packets(keys, 2000);
        for (name, packets) in [
            ("counters", &counters),
            ("short_counters", &short),
            ("mixed", &mixed),
        ] {
            group.throughput(Throughput::Elements((packets.len() * 25) as u64));
            group.bench_function(format!("{name}_{keys}_keys"), |b| {
                b.iter(|| feed(&mut parser, &ctx, packets))
            });
        }
    }
    group.finish();
}

/// A flusher over `series` counters, each updated once.
fn flusher_with_counters(series: usize) -> Flusher {
    let cfg = support::config();
    let ctx = support::ingest_context(&cfg);
    let mut parser = PacketParser::default();
    for k in 0..series {
        parser.packet(&ctx, format!("app.service{k}.requests:1|c").as_bytes());
        if k % 32 == 0 {
            parser.commit(&ctx);
        }
    }
    parser.commit(&ctx);
    support::flusher(&cfg, &ctx)
}

/// Flush: snapshot, naming (count and rate per counter) and the carbon
/// line text, as one interval after another would run it (buffers reused
/// as the agent reuses them once the sinks are done).
fn bench_flush(c: &mut Criterion) {
    let mut group = c.benchmark_group("flush");
    group.sample_size(10);
    for series in [100_000usize, 1_000_000] {
        let mut flusher = flusher_with_counters(series);
        let mut out = Vec::new();
        let mut ts = 1_700_000_000;
        group.throughput(Throughput::Elements(series as u64));
        group.bench_function(format!("counters_{}k_to_carbon_text", series / 1000), |b| {
            b.iter(|| {
                ts += 1;
                let batch = flusher.flush(ts);
                out.clear();
                let tail = LineTail::new(batch.timestamp);
                for (name, value) in batch.iter() {
                    write_line_with(&mut out, name, value, &tail);
                }
                flusher.recycle(batch);
                out.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_parse, bench_shard_update, bench_flush);
criterion_main!(benches);
