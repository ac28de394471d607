//! Allocation count of the hot path: parsing a packet and applying it to
//! the shards must not allocate for keys (and set members) already seen.
//! A counting global allocator in its own test binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sluice::aggregate::Aggregator;
use sluice::config::{Config, RawConfig};
use sluice::ingest::{IngestContext, PacketParser};
use sluice::telemetry::Telemetry;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn known_keys_cost_no_allocation() {
    let config = Config::from_raw(&RawConfig::default()).unwrap();
    let ctx = IngestContext {
        aggregator: Arc::new(Aggregator::new(16, &config.stats)),
        telemetry: Arc::new(Telemetry::default()),
        sanitize_keys: true,
    };
    let packet: &[u8] = b"api.hits:1|c\napi.hits:2|c|@0.5\nweb.latency:12.5|ms\n\
        mem.free:+5|g\nusers:alice|s\nweird key/x:1|c\ntagged:1|c|#env:prod,az:b\n\
        multi:1|c:2|c\nbad:abc|c\n";
    let mut parser = PacketParser::default();
    // Warm up: the keys, the set member and the parser's buffers now exist.
    for _ in 0..3 {
        parser.packet(&ctx, packet);
        parser.commit(&ctx);
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    parser.packet(&ctx, packet);
    parser.commit(&ctx);
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(after - before, 0, "the hot path allocated for known keys");

    // A new key does allocate (the check above can fail). Keys up to 30
    // bytes live inline in the map, so this one is longer: it is boxed.
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    parser.packet(&ctx, b"brand.new.key.longer.than.thirty.bytes:1|c");
    parser.commit(&ctx);
    assert!(ALLOCATIONS.load(Ordering::Relaxed) > before);
}
