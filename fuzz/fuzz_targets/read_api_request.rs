//! A read-API request (query string or form body) through the endpoints
//! the HTTP router dispatches to (render, find, expand, functions, tags,
//! events), over a small real store.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use sluice::graphite::events::EventRequest;
use sluice::graphite::tags::Method;
use sluice::graphite::{Params, ReadApi, ReadLimits};
use sluice::store::format::{Aggregation, WhisperFile};
use sluice::store::events::{EventBounds, EventLog};
use sluice::store::Shared;

fn api() -> &'static ReadApi {
    static API: OnceLock<ReadApi> = OnceLock::new();
    API.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("sluice-fuzz-store-{}", std::process::id()));
        // A small event bound, so the log's eviction runs often and a
        // long run does not slow down scanning 100,000 events per input.
        let store = Shared {
            events: Arc::new(EventLog::in_memory(EventBounds {
                retention_seconds: 90.0 * 86_400.0,
                max_events: 256,
            })),
            ..Shared::default()
        };
        for name in ["a.b", "a.c", "x.y.z"] {
            let path = root.join(name.replace('.', "/") + ".wsp");
            let _ = std::fs::create_dir_all(path.parent().unwrap_or(&root));
            if let Ok(mut f) =
                WhisperFile::create(&path, &[(10, 360), (60, 1440)], 0.0, Aggregation::Average)
            {
                let _ = f.update_many(
                    &[(1_700_000_000 - 10, 1.0), (1_700_000_000 - 20, 2.0)],
                    1_700_000_000,
                );
            }
            store.index.insert(name);
        }
        for tagged in ["disk.used;dc=eu;host=a", "disk.used;dc=us;host=b", "cpu;host=a"] {
            let _ = store.tags.insert(tagged);
        }
        ReadApi {
            root,
            store,
            limits: ReadLimits {
                max_series: 100,
                max_points: 100_000,
                max_target_length: 4096,
                max_targets: 20,
                max_find: 1000,
            },
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let params = Params(form_urlencoded::parse(data).into_owned().collect());
    let api = api();
    let _ = api.render(&params, 1_700_000_000);
    let _ = api.find(&params, 1_700_000_000);
    let _ = api.expand_names(&params);
    if let Some(name) = params.get("name") {
        let _ = api.functions(Some(name));
    }
    // One tag endpoint per input, chosen by its length: each one parses
    // (and compiles) every expression again, which would otherwise be
    // most of an input's time.
    const TAG_PATHS: [&str; 5] = [
        "/tags",
        "/tags/autoComplete/tags",
        "/tags/autoComplete/values",
        "/tags/findSeries",
        "/tags/host",
    ];
    let _ = api.tags(TAG_PATHS[data.len() % TAG_PATHS.len()], Method::Get, &params);
    // Registered and deleted again, so the index stays bounded.
    if params.has("path") {
        let _ = api.tags("/tags/tagSeries", Method::Post, &params);
        let _ = api.tags("/tags/delSeries", Method::Post, &params);
        // delSeries stops at the first bad path; what it did not reach
        // is removed here, or the index grows with every input.
        for path in params.all("path") {
            let _ = api.store.tags.remove(path);
        }
    }
    let now = 1_700_000_000.0;
    let get = EventRequest {
        post: false,
        query: &params,
        body: data,
    };
    let _ = api.events("/events/get_data", &get, now);
    // The event log bounds itself (whisper.max_events).
    let post = EventRequest { post: true, ..get };
    let _ = api.events("/events", &post, now);
});
