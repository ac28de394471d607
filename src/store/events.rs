//! Graphite's events (deploys, restarts: what Grafana draws as
//! annotations), kept beside the store in `_events.jsonl`: one JSON object
//! per line, appended as events arrive, read back and compacted at start.
//! Bounded by age and by count, so a chatty sender cannot fill the disk.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use super::line_file::LineFile;

/// The file, under the store's root.
pub const EVENTS_FILE: &str = "_events.jsonl";

/// Longest `what`, as graphite-web's column allows.
const MAX_WHAT: usize = 255;
/// Longest `data` kept.
const MAX_DATA: usize = 64 * 1024;

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Its id, from 1, in arrival order.
    pub id: u64,
    /// When it happened (Unix seconds).
    pub when: f64,
    /// What happened.
    pub what: String,
    /// Details.
    pub data: String,
    /// Its tags.
    pub tags: Vec<String>,
}

/// How long and how many events are kept.
#[derive(Debug, Clone, Copy)]
pub struct EventBounds {
    /// Events older than this many seconds are forgotten.
    pub retention_seconds: f64,
    /// At most this many, the oldest forgotten first.
    pub max_events: usize,
}

impl Default for EventBounds {
    fn default() -> Self {
        EventBounds {
            retention_seconds: 90.0 * 86_400.0,
            max_events: 100_000,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Sorted by (when, id).
    events: Vec<Event>,
    next_id: u64,
}

/// The events, shared by whoever records them (HTTP, DogStatsD) and the
/// read API.
#[derive(Debug, Default)]
pub struct EventLog {
    inner: RwLock<Inner>,
    bounds: RwLock<EventBounds>,
    /// `_events.jsonl`, once backed by a store.
    file: LineFile,
    /// Lines appended since the file was last compacted.
    appended: AtomicUsize,
}

impl EventLog {
    /// An event log held in memory only, within `bounds`.
    pub fn in_memory(bounds: EventBounds) -> EventLog {
        EventLog {
            bounds: RwLock::new(bounds),
            ..EventLog::default()
        }
    }

    /// Reads `_events.jsonl` under `root`, drops what is past `bounds`,
    /// rewrites the file compacted, and appends to it from now on; returns
    /// how many events were kept.
    pub fn load(&self, root: &Path, bounds: EventBounds, now: f64) -> usize {
        let path = root.join(EVENTS_FILE);
        let mut events: Vec<Event> = Vec::new();
        let mut unreadable = 0usize;
        if let Ok(file) = File::open(&path) {
            for line in BufReader::new(file).lines() {
                let Ok(line) = line else {
                    unreadable += 1;
                    break;
                };
                match serde_json::from_str::<Event>(&line) {
                    Ok(e) => events.push(e),
                    Err(_) if line.trim().is_empty() => {}
                    // A line cut by a crash, or edited by hand: skipped.
                    Err(_) => unreadable += 1,
                }
            }
        }
        if unreadable > 0 {
            tracing::warn!(path = %path.display(), lines = unreadable, "events: unreadable lines skipped");
        }
        let next_id = events.iter().map(|e| e.id).max().unwrap_or(0) + 1;
        events.sort_by(|a, b| a.when.total_cmp(&b.when).then(a.id.cmp(&b.id)));
        if let Ok(mut b) = self.bounds.write() {
            *b = bounds;
        }
        let kept = {
            let Ok(mut inner) = self.inner.write() else {
                return 0;
            };
            inner.events = events;
            inner.next_id = next_id;
            trim(&mut inner.events, bounds, now);
            inner.events.len()
        };
        self.file.bind(&path);
        self.rewrite();
        kept
    }

    /// Records an event; `when` defaults to `now`. Returns its id.
    pub fn add(
        &self,
        when: Option<f64>,
        what: &str,
        data: &str,
        tags: Vec<String>,
        now: f64,
    ) -> u64 {
        let bounds = self.bounds.read().map(|b| *b).unwrap_or_default();
        let event = {
            let Ok(mut inner) = self.inner.write() else {
                return 0;
            };
            let id = inner.next_id.max(1);
            inner.next_id = id + 1;
            let event = Event {
                id,
                when: when.unwrap_or(now),
                what: truncate(what, MAX_WHAT),
                data: truncate(data, MAX_DATA),
                tags,
            };
            let at = inner
                .events
                .partition_point(|e| e.when.total_cmp(&event.when).then(e.id.cmp(&id)).is_lt());
            inner.events.insert(at, event.clone());
            trim(&mut inner.events, bounds, now);
            event
        };
        self.file.append(&event_line(&event));
        // The file sheds what the bounds forgot once it has grown by the
        // bound, so a flood of events cannot fill the disk.
        if self.appended.fetch_add(1, Ordering::Relaxed) + 1 > bounds.max_events {
            self.appended.store(0, Ordering::Relaxed);
            self.rewrite();
        }
        event.id
    }

    /// Events with `from <= when <= until`, by time; with `tags`, those
    /// carrying all of them (or any, with `union`).
    pub fn find(&self, from: f64, until: f64, tags: Option<&[&str]>, union: bool) -> Vec<Event> {
        let Ok(inner) = self.inner.read() else {
            return Vec::new();
        };
        inner
            .events
            .iter()
            .filter(|e| e.when >= from && e.when <= until)
            .filter(|e| match tags {
                None => true,
                Some(wanted) if union => wanted.iter().any(|t| e.tags.iter().any(|h| h == t)),
                Some(wanted) => wanted.iter().all(|t| e.tags.iter().any(|h| h == t)),
            })
            .cloned()
            .collect()
    }

    /// One event by id.
    pub fn get(&self, id: u64) -> Option<Event> {
        let inner = self.inner.read().ok()?;
        inner.events.iter().find(|e| e.id == id).cloned()
    }

    fn rewrite(&self) {
        self.file.replace(|| match self.inner.read() {
            Ok(inner) => inner.events.iter().map(event_line).collect(),
            Err(_) => Vec::new(),
        });
    }
}

fn event_line(event: &Event) -> String {
    serde_json::to_string(event).unwrap_or_default()
}

fn trim(events: &mut Vec<Event>, bounds: EventBounds, now: f64) {
    let oldest = now - bounds.retention_seconds;
    events.retain(|e| e.when >= oldest);
    if events.len() > bounds.max_events {
        let excess = events.len() - bounds.max_events;
        events.drain(..excess);
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_found_by_time_and_tags_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::default();
        log.load(dir.path(), EventBounds::default(), 1000.0);
        log.add(
            Some(700.0),
            "deploy v1",
            "rolled out",
            vec!["deploy".into(), "app".into()],
            1000.0,
        );
        log.add(
            Some(800.0),
            "restart",
            "",
            vec!["ops".into(), "app".into()],
            1000.0,
        );
        log.add(None, "now", "", vec![], 1000.0);
        let ids = |v: Vec<Event>| v.iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(ids(log.find(0.0, 2000.0, None, false)), [1, 2, 3]);
        assert_eq!(
            ids(log.find(0.0, 2000.0, Some(&["app", "ops"]), false)),
            [2]
        );
        assert_eq!(
            ids(log.find(0.0, 2000.0, Some(&["app", "ops"]), true)),
            [1, 2]
        );
        assert_eq!(ids(log.find(750.0, 900.0, None, false)), [2]);

        let again = EventLog::default();
        let bounds = EventBounds {
            retention_seconds: 250.0,
            max_events: 10,
        };
        assert_eq!(again.load(dir.path(), bounds, 1000.0), 2);
        assert_eq!(again.add(Some(990.0), "next", "", vec![], 1000.0), 4);
        let third = EventLog::default();
        assert_eq!(third.load(dir.path(), bounds, 1000.0), 3);
        assert_eq!(third.get(2).map(|e| e.what), Some("restart".to_string()));
    }

    #[test]
    fn the_count_bound_forgets_the_oldest() {
        let log = EventLog::default();
        *log.bounds.write().unwrap() = EventBounds {
            retention_seconds: 1e9,
            max_events: 2,
        };
        for i in 0..5 {
            log.add(Some(f64::from(i)), "e", "", vec![], 10.0);
        }
        let kept: Vec<u64> = log
            .find(0.0, 10.0, None, false)
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(kept, [4, 5]);
    }

    #[test]
    fn the_file_is_compacted_as_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::default();
        let bounds = EventBounds {
            retention_seconds: 1e9,
            max_events: 10,
        };
        log.load(dir.path(), bounds, 0.0);
        for i in 0..1000 {
            log.add(Some(f64::from(i)), "e", "", vec![], 0.0);
        }
        let lines = std::fs::read_to_string(dir.path().join(EVENTS_FILE))
            .unwrap()
            .lines()
            .count();
        assert!((10..=21).contains(&lines), "{lines} lines");
    }
}
