//! Memory per live series, by type: 1 M series of one type are created
//! through the receivers' path (PacketParser into the shards), then one
//! flush empties their interval state, as an idle series looks between
//! bursts. Two measures for each: bytes the allocator was asked for (a
//! counting global allocator) and the process RSS growth (malloc overhead
//! and hash table slack included), both per series.
//!
//! Run: cargo bench --bench series_memory

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use sluice::ingest::PacketParser;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Series per type under `cargo bench`; `cargo test --benches` runs this
/// too, with a quick count instead.
const SERIES: usize = 1_000_000;
const QUICK_SERIES: usize = 10_000;

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// Creates SERIES series with `line(k)`, flushes once, and returns the
/// (allocated, RSS) bytes per series the aggregator holds afterwards.
fn measure(line: &dyn Fn(usize) -> String, series_wanted: usize) -> (f64, f64) {
    let cfg = support::config();
    let before_alloc = LIVE.load(Ordering::Relaxed);
    let before_rss = rss_bytes();
    let ctx = support::ingest_context(&cfg);
    let aggregator = ctx.aggregator.clone();
    let mut parser = PacketParser::default();
    let mut packet = String::new();
    for k in 0..series_wanted {
        packet.push_str(&line(k));
        packet.push('\n');
        if k % 25 == 24 {
            parser.packet(&ctx, packet.as_bytes());
            parser.commit(&ctx);
            packet.clear();
        }
    }
    parser.packet(&ctx, packet.as_bytes());
    parser.commit(&ctx);
    // One flush: interval state goes, the series stay (Etsy's defaults
    // keep every key), as between bursts.
    let mut flusher = support::flusher(&cfg, &ctx);
    drop(flusher.flush(1_700_000_000));
    drop(flusher);
    drop(parser);
    let alloc = (LIVE.load(Ordering::Relaxed) - before_alloc) as f64 / series_wanted as f64;
    let rss = rss_bytes().saturating_sub(before_rss) as f64 / series_wanted as f64;
    let series: usize = aggregator.series().iter().sum();
    assert!(series >= series_wanted, "only {series} series live");
    drop(ctx);
    drop(aggregator);
    (alloc, rss)
}

fn main() {
    // Run each type in a fresh process so RSS growth is not hidden by
    // memory an earlier type freed.
    let kinds: [(&str, &dyn Fn(usize) -> String); 4] = [
        ("counter", &|k| format!("app.service.requests.k{k}:1|c")),
        ("gauge", &|k| format!("app.service.queue.k{k}:{k}|g")),
        ("timer", &|k| {
            format!("app.service.latency.k{k}:{}|ms", k % 900)
        }),
        ("set", &|k| format!("app.service.users.k{k}:u{k}|s")),
    ];
    let args: Vec<String> = std::env::args().collect();
    if let (Some(kind), Some(count)) = (args.get(1), args.get(2)) {
        if let (Some((name, line)), Ok(count)) = (
            kinds.iter().find(|(n, _)| n == kind),
            count.parse::<usize>(),
        ) {
            let (alloc, rss) = measure(*line, count);
            println!(
                "{name:<8} {alloc:>10.0} B allocated {rss:>10.0} B RSS per idle series ({count} series, keys ~27 bytes)"
            );
            return;
        }
    }
    let series = if args.iter().any(|a| a == "--bench") {
        SERIES
    } else {
        QUICK_SERIES
    };
    let Ok(exe) = std::env::current_exe() else {
        eprintln!("cannot find this bench's executable");
        return;
    };
    println!("memory per idle series, by type (after one flush):");
    for (name, _) in kinds {
        match std::process::Command::new(&exe)
            .arg(name)
            .arg(series.to_string())
            .output()
        {
            Ok(out) => print!("{}", String::from_utf8_lossy(&out.stdout)),
            Err(e) => eprintln!("{name}: {e}"),
        }
    }
}
