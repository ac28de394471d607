//! The embedded whisper store: Graphite's file format (`format`), carbon's
//! storage-schemas.conf / storage-aggregation.conf (`schema`), and the sink
//! that writes flushed points into files on its own threads (`store`).

pub mod format;
pub mod schema;
pub mod store;
pub mod tools;
