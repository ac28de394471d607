//! The embedded Graphite store, a library that writers and readers share:
//! whisper's file format (`format`), carbon's storage-schemas.conf and
//! storage-aggregation.conf (`schema`), metric names to paths (`path`), the in-memory name index (`index`) and tag index (`tags`),
//! writer threads (`writer`) and the `sluice whisper` tools (`tools`).
//! It knows nothing of StatsD.

pub mod cache;
pub mod events;
pub mod format;
pub mod index;
pub mod line_file;
pub mod path;
pub mod pending;
pub mod schema;
pub mod slot;
pub mod tags;
pub mod tools;
pub mod writer;

use std::sync::Arc;

/// What the store's writers and its readers share: the name index and the
/// flushes not yet written.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// Every metric with a file.
    pub index: Arc<index::NameIndex>,
    /// Graphite's events (annotations).
    pub events: Arc<events::EventLog>,
    /// Every tagged series with a file, by tag.
    pub tags: Arc<tags::TagIndex>,
    /// Flushes the writers still hold.
    pub pending: Arc<pending::Pending>,
    /// Points received over carbon's protocols, not yet written.
    pub cache: Arc<cache::ReceivedCache>,
    /// Points queued for the writer threads.
    pub queued_points: Arc<std::sync::atomic::AtomicUsize>,
}
