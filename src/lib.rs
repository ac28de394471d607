//! sluice: a StatsD aggregation agent. See ARCHITECTURE.md for the map.

#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod admin;
pub mod agent;
pub mod aggregate;
pub mod config;
pub mod graphite;
pub mod http;
pub mod ingest;
pub mod loadgen;
pub mod net;
pub mod point;
pub mod protocol;
pub mod proxy;
pub mod receive;
pub mod shutdown;
pub mod sink;
pub mod store;
pub mod systemd;
pub mod tap;
pub mod telemetry;
