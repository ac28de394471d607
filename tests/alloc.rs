//! Allocation counts, with a counting global allocator that counts per
//! thread (so the other tests of this binary, running beside, do not
//! count): parsing and applying a packet must not allocate for keys (and
//! set members) already seen, and a steady flush (same series, recycled
//! batch) must not allocate anything new.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use sluice::aggregate::flush::Flusher;
use sluice::aggregate::Aggregator;
use sluice::config::{Config, RawConfig};
use sluice::ingest::{IngestContext, PacketParser};
use sluice::telemetry::{GraphiteStats, Telemetry};

struct Counting;

thread_local! {
    // const-initialised and without a destructor: touching it never
    // allocates, so the allocator may use it.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards unchanged to the system allocator, which
// upholds GlobalAlloc's contract; counting touches only a thread-local Cell.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn context() -> (Config, IngestContext) {
    let config = Config::from_raw(&RawConfig::default()).unwrap();
    let ctx = IngestContext {
        aggregator: Arc::new(Aggregator::new(16, &config.stats)),
        telemetry: Arc::new(Telemetry::default()),
        sanitize_keys: true,
        tag_style: sluice::protocol::statsd::TagStyle::Graphite,
        events: None,
        tap: None,
    };
    (config, ctx)
}

const MIXED_PACKET: &[u8] = b"api.hits:1|c\napi.hits:2|c|@0.5\nweb.latency:12.5|ms\n\
        mem.free:+5|g\nusers:alice|s\nweird key/x:1|c\ntagged:1|c|#env:prod,az:b\n\
        multi:1|c:2|c\nbad:abc|c\n";

#[test]
fn known_keys_cost_no_allocation() {
    let (_, ctx) = context();
    let mut parser = PacketParser::default();
    // Warm up: the keys, the set member and the parser's buffers now exist.
    for _ in 0..3 {
        parser.packet(&ctx, MIXED_PACKET);
        parser.commit(&ctx);
    }
    let n = allocations_in(|| {
        parser.packet(&ctx, MIXED_PACKET);
        parser.commit(&ctx);
    });
    assert_eq!(n, 0, "the hot path allocated for known keys");

    // A new key does allocate (the check above can fail). Keys up to 30
    // bytes live inline in the map, so this one is longer: it is boxed.
    let n = allocations_in(|| {
        parser.packet(&ctx, b"brand.new.key.longer.than.thirty.bytes:1|c");
        parser.commit(&ctx);
    });
    assert!(n > 0);
}

#[test]
fn a_steady_flush_allocates_nothing_new() {
    let (config, ctx) = context();
    let mut flusher = Flusher::new(
        ctx.aggregator.clone(),
        config.stats.clone(),
        config.naming.clone(),
        ctx.telemetry.clone(),
        Arc::new(GraphiteStats::new(0)),
    );
    // Counters and gauges: a set's members and a timer's values are new
    // in every interval by nature (a set starts empty, timer statistics
    // sort a fresh copy), which the claim does not cover.
    let packet: Vec<u8> = (0..500)
        .map(|i| format!("steady.c{i}:1|c\nsteady.g{i}:{i}|g\n"))
        .collect::<String>()
        .into_bytes();
    let mut parser = PacketParser::default();
    let mut ts = 1_000;
    for _ in 0..4 {
        parser.packet(&ctx, &packet);
        parser.commit(&ctx);
        ts += 10;
        let batch = flusher.flush(ts);
        flusher.recycle(batch);
    }
    let parse = allocations_in(|| {
        parser.packet(&ctx, &packet);
        parser.commit(&ctx);
    });
    let flush = allocations_in(|| {
        let batch = flusher.flush(ts + 10);
        flusher.recycle(batch);
    });
    assert_eq!(
        (parse, flush),
        (0, 0),
        "(parse, flush) allocated in a steady interval"
    );
}
